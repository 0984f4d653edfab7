/*
 * check_settle.c: the settle state machine (src/settle.*), with injected times.
 *
 * core:   table-driven scenarios, one per row of settle.h's rules: a case moved
 *         in at once, copied file by file, written without events, re-armed by
 *         changes, waiting for its marker.
 * limits: empty folders, max_settle, settle_seconds = 0, many cases at once.
 * errors: walks that fail (transiently and for good).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "settle.h"

enum op {
	OP_END,
	OP_ACT,		/* settle_activity at t */
	OP_MARKER,	/* settle_marker at t */
	OP_CHECK,	/* settle_check at t: expect 'expect' */
	OP_WALK,	/* settle_walked at t with w: expect 'expect' */
	OP_DUE,		/* expect settle_next_due() == due */
};

struct step {
	enum op op;
	int64_t t;
	struct settle_walk w;
	enum settle_verdict expect;
	int64_t due;			/* OP_DUE, and after OP_WALK returning WAIT when >= 0 */
	enum settle_reason reason;	/* when expect is SETTLE_FAIL */
};

struct scenario {
	const char *name;
	struct settle_params p;
	struct step steps[16];
};

#define QUIET { .settle_ms = 1000, .max_settle_ms = 10000 }
#define MARKER { .settle_ms = 1000, .max_settle_ms = 10000, .marker = true }
#define W(n, same_) { .n_files = (n), .same = (same_) }
#define MW(n) ((struct settle_walk){ .n_files = (n), .marker = true })
#define EW(e) ((struct settle_walk){ .error = (e) })
#define WALK(t_, w_, v_, due_) { OP_WALK, (t_), w_, (v_), (due_), SETTLE_REASON_NONE }
#define WALKF(t_, w_, reason_) { OP_WALK, (t_), w_, SETTLE_FAIL, -1, (reason_) }
#define CHECK(t_, v_) { OP_CHECK, (t_), { 0 }, (v_), -1, SETTLE_REASON_NONE }
#define CHECKF(t_, reason_) { OP_CHECK, (t_), { 0 }, SETTLE_FAIL, -1, (reason_) }
#define ACT(t_) { OP_ACT, (t_), { 0 }, 0, -1, 0 }
#define MARK(t_) { OP_MARKER, (t_), { 0 }, 0, -1, 0 }
#define DUE(d_) { OP_DUE, 0, { 0 }, 0, (d_), 0 }

static const struct scenario scenarios[] = {
	{ "moved in at once: ready one quiet period after detection", QUIET, {
		DUE(0), CHECK(0, SETTLE_WALK),
		WALK(0, W(3, false), SETTLE_WAIT, 1000),
		CHECK(999, SETTLE_WAIT), CHECK(1000, SETTLE_WALK),
		WALK(1000, W(3, true), SETTLE_READY, -1) } },
	{ "copied file by file: the events explain the difference, one confirming walk", QUIET, {
		WALK(0, W(1, false), SETTLE_WAIT, 1000),
		ACT(200), DUE(1200), ACT(700), DUE(1700),
		CHECK(1699, SETTLE_WAIT),
		WALK(1700, W(3, false), SETTLE_WAIT, 2200),
		WALK(2200, W(3, true), SETTLE_READY, -1) } },
	{ "written without events: an unexplained difference restarts the quiet period", QUIET, {
		WALK(0, W(1, false), SETTLE_WAIT, 1000),
		WALK(1000, W(1, false), SETTLE_WAIT, 2000),
		WALK(2000, W(1, false), SETTLE_WAIT, 3000),
		WALK(3000, W(1, true), SETTLE_READY, -1) } },
	{ "re-armed by every change, never ready before last change + settle", QUIET, {
		WALK(0, W(2, false), SETTLE_WAIT, 1000),
		ACT(500), ACT(1400), ACT(2300), DUE(3300),
		CHECK(3299, SETTLE_WAIT),
		WALK(3300, W(2, true), SETTLE_READY, -1) } },
	{ "a change between the due time and the walk postpones readiness", QUIET, {
		WALK(0, W(2, false), SETTLE_WAIT, 1000),
		ACT(990),
		WALK(1000, W(2, true), SETTLE_WAIT, 1990),
		WALK(1990, W(2, true), SETTLE_READY, -1) } },
	{ "the baseline walk is not postponed by events", QUIET, {
		ACT(10), ACT(20), DUE(0),
		WALK(20, W(1, false), SETTLE_WAIT, 1020),
		WALK(1020, W(1, true), SETTLE_READY, -1) } },
	{ "something changed during the walk: the quiet period restarts", QUIET, {
		WALK(0, W(2, false), SETTLE_WAIT, 1000),
		WALK(1000, ((struct settle_walk){ .n_files = 2, .same = true, .changed = true }),
		     SETTLE_WAIT, 2000),
		WALK(2000, W(2, true), SETTLE_READY, -1) } },
	{ "marker: waits for it, then ready at once", MARKER, {
		WALK(0, W(2, false), SETTLE_WAIT, 10000),
		ACT(500), DUE(10000),
		MARK(3000), DUE(3000), CHECK(3000, SETTLE_WALK),
		WALK(3000, MW(2), SETTLE_READY, -1) } },
	{ "marker present when detected: ready at the first walk", MARKER, {
		WALK(0, MW(1), SETTLE_READY, -1) } },
	{ "marker but the walk saw changes: a confirming walk", MARKER, {
		WALK(0, ((struct settle_walk){ .n_files = 1, .marker = true, .changed = true }),
		     SETTLE_WAIT, 500),
		WALK(500, MW(1), SETTLE_READY, -1) } },
	{ "marker that never comes fails at max_settle", MARKER, {
		WALK(0, W(2, false), SETTLE_WAIT, 10000),
		CHECK(9999, SETTLE_WAIT), CHECKF(10000, SETTLE_REASON_NO_MARKER) } },
	{ "marker in an empty folder fails", MARKER, {
		WALKF(0, MW(0),
		      SETTLE_REASON_MARKER_EMPTY) } },
};

static const struct scenario limit_scenarios[] = {
	{ "empty folder waits for files instead of failing", QUIET, {
		WALK(0, W(0, false), SETTLE_WAIT, 10000),
		CHECK(5000, SETTLE_WAIT),
		ACT(6000), DUE(7000),
		WALK(7000, W(2, false), SETTLE_WAIT, 7500),
		WALK(7500, W(2, true), SETTLE_READY, -1) } },
	{ "empty folder still empty at max_settle fails", QUIET, {
		WALK(0, W(0, false), SETTLE_WAIT, 10000),
		CHECKF(10000, SETTLE_REASON_EMPTY) } },
	{ "still changing at max_settle fails", QUIET, {
		WALK(0, W(1, false), SETTLE_WAIT, 1000),
		ACT(800), ACT(1600), ACT(2400), ACT(3200), ACT(4000), ACT(4800), ACT(5600),
		ACT(6400), ACT(7200), ACT(8000), ACT(8800), ACT(9600), DUE(10000),
		CHECKF(10000, SETTLE_REASON_CHANGING) } },
	{ "settle_seconds = 0: ready at the first confirming walk", { .max_settle_ms = 0 }, {
		WALKF(0, W(1, false), SETTLE_REASON_CHANGING) } },
	{ "settle_seconds = 0 with room: confirmation after the minimum recheck",
	  { .settle_ms = 0, .max_settle_ms = 1000 }, {
		WALK(0, W(1, false), SETTLE_WAIT, SETTLE_MIN_RECHECK_MS),
		WALK(SETTLE_MIN_RECHECK_MS, W(1, true), SETTLE_READY, -1) } },
	{ "polled: an empty folder is walked every poll_ms",
	  { .settle_ms = 1000, .max_settle_ms = 60000, .poll_ms = 5000 }, {
		WALK(0, W(0, false), SETTLE_WAIT, 5000),
		WALK(5000, W(0, true), SETTLE_WAIT, 10000),
		WALK(10000, W(1, false), SETTLE_WAIT, 11000),
		WALK(11000, W(1, true), SETTLE_READY, -1) } },
	{ "polled marker mode: walked every poll_ms until the marker shows",
	  { .settle_ms = 1000, .max_settle_ms = 60000, .poll_ms = 5000, .marker = true }, {
		WALK(0, W(1, false), SETTLE_WAIT, 5000),
		WALK(5000, MW(1), SETTLE_READY, -1) } },
};

static const struct scenario error_scenarios[] = {
	{ "unreadable for a whole quiet period: fails", QUIET, {
		WALK(0, EW(-EACCES), SETTLE_WAIT, 1000),
		WALKF(1000, EW(-EACCES), SETTLE_REASON_WALK_ERROR) } },
	{ "unreadable, then fixed: settles normally", QUIET, {
		WALK(0, EW(-EACCES), SETTLE_WAIT, 1000),
		WALK(1000, W(1, false), SETTLE_WAIT, 1500),
		WALK(1500, W(1, true), SETTLE_READY, -1) } },
	{ "a failing walk waits for quiet after events", QUIET, {
		WALK(0, EW(-ELOOP), SETTLE_WAIT, 1000),
		ACT(800), DUE(1800),
		WALKF(1800, EW(-ELOOP), SETTLE_REASON_WALK_ERROR) } },
	{ "marker mode: a failing walk is failed after a quiet period too", MARKER, {
		MARK(0),
		WALK(0, EW(-EACCES), SETTLE_WAIT, 1000),
		WALKF(1000, EW(-EACCES), SETTLE_REASON_WALK_ERROR) } },
};

static void
run_scenario(const struct scenario *sc)
{
	struct settle *s = settle_new();
	struct settle_case *c;

	ck_assert_ptr_nonnull(s);
	c = settle_add(s, 1, "case", &sc->p, 0, NULL);
	ck_assert_ptr_nonnull(c);
	for (size_t i = 0; i < sizeof(sc->steps) / sizeof(sc->steps[0]); i++) {
		const struct step *st = &sc->steps[i];
		enum settle_verdict v;

		switch (st->op) {
		case OP_END:
			goto done;
		case OP_ACT:
			settle_activity(s, c, st->t);
			break;
		case OP_MARKER:
			settle_marker(s, c, st->t);
			break;
		case OP_DUE:
			ck_assert_msg(settle_next_due(s) == st->due,
				      "%s: step %zu: due %lld, expected %lld", sc->name, i,
				      (long long)settle_next_due(s), (long long)st->due);
			break;
		case OP_CHECK:
		case OP_WALK:
			if (st->op == OP_CHECK)
				v = settle_check(s, c, st->t);
			else
				v = settle_walked(s, c, st->t, &st->w);
			ck_assert_msg(v == st->expect, "%s: step %zu: verdict %d, expected %d",
				      sc->name, i, (int)v, (int)st->expect);
			if (v == SETTLE_FAIL)
				ck_assert_msg(settle_case_reason(c) == st->reason,
					      "%s: step %zu: reason %d, expected %d", sc->name, i,
					      (int)settle_case_reason(c), (int)st->reason);
			if (st->op == OP_WALK && v == SETTLE_WAIT && st->due >= 0)
				ck_assert_msg(settle_case_due(c) == st->due,
					      "%s: step %zu: due %lld, expected %lld", sc->name, i,
					      (long long)settle_case_due(c), (long long)st->due);
			if (v == SETTLE_READY || v == SETTLE_FAIL)
				goto done;
			break;
		}
	}
done:
	settle_free(s);
}

START_TEST(test_core_scenarios)
{
	run_scenario(&scenarios[_i]);
}
END_TEST

START_TEST(test_limit_scenarios)
{
	run_scenario(&limit_scenarios[_i]);
}
END_TEST

START_TEST(test_error_scenarios)
{
	run_scenario(&error_scenarios[_i]);
}
END_TEST

/* Assumptions: lookups are by (watch, name); removing a case keeps the others. */
START_TEST(test_set_find_remove)
{
	struct settle_params p = QUIET;
	struct settle *s = settle_new();
	struct settle_case *a, *b, *c;
	int ud = 7;

	a = settle_add(s, 1, "a", &p, 100, &ud);
	b = settle_add(s, 2, "a", &p, 50, NULL);
	c = settle_add(s, 1, "b", &p, 70, NULL);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_null(settle_add(s, 1, "a", &p, 0, NULL));
	ck_assert_ptr_eq(settle_find(s, 1, "a"), a);
	ck_assert_ptr_eq(settle_find(s, 2, "a"), b);
	ck_assert_ptr_null(settle_find(s, 3, "a"));
	ck_assert_ptr_eq(settle_case_userdata(a), &ud);
	ck_assert_str_eq(settle_case_name(c), "b");
	ck_assert_uint_eq(settle_case_watch(b), 2);
	ck_assert_uint_eq(settle_count(s), 3);
	ck_assert_int_eq(settle_next_due(s), 50);
	ck_assert_ptr_eq(settle_pop_due(s, 60), b);
	ck_assert_ptr_null(settle_pop_due(s, 49));
	settle_remove(s, b);
	ck_assert_ptr_null(settle_find(s, 2, "a"));
	ck_assert_int_eq(settle_next_due(s), 70);
	settle_retry(s, a, 20);
	ck_assert_ptr_eq(settle_pop_due(s, 30), a);
	settle_free(s);
}
END_TEST

static void
remove_cb(struct settle_case *c, void *ud)
{
	settle_remove(ud, c);
}

/* Assumptions: foreach may remove the case it is given, per watch or for all. */
START_TEST(test_foreach_remove)
{
	struct settle_params p = QUIET;
	struct settle *s = settle_new();
	char name[32];

	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		ck_assert_ptr_nonnull(settle_add(s, (unsigned)(i % 3), name, &p, i, NULL));
	}
	settle_foreach(s, 1, remove_cb, s);
	ck_assert_uint_eq(settle_count(s), 67);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		ck_assert(settle_find(s, (unsigned)(i % 3), name) != NULL || i % 3 == 1);
	}
	settle_foreach(s, SETTLE_ALL_WATCHES, remove_cb, s);
	ck_assert_uint_eq(settle_count(s), 0);
	ck_assert(settle_next_due(s) == SETTLE_NEVER);
	settle_free(s);
}
END_TEST

/*
 * Assumptions: with 20,000 cases whose due times move at random, popping the
 * earliest always gives the true minimum (compared with a linear scan).
 */
START_TEST(test_many_cases_heap_order)
{
	enum { N = 20000 };
	struct settle_params p = QUIET;
	struct settle *s = settle_new();
	struct settle_case **cs = calloc(N, sizeof(*cs));
	char name[32];
	unsigned seed = 12345;

	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "case-%d", i);
		cs[i] = settle_add(s, 0, name, &p, rand_r(&seed) % 100000, NULL);
		ck_assert_ptr_nonnull(cs[i]);
	}
	for (int i = 0; i < 50000; i++)
		settle_retry(s, cs[rand_r(&seed) % N], rand_r(&seed) % 1000000);
	for (int round = 0; round < 200; round++) {
		int64_t min = SETTLE_NEVER;
		struct settle_case *first;
		int k = -1;

		for (int i = 0; i < N; i++)
			if (cs[i] != NULL && settle_case_due(cs[i]) < min)
				min = settle_case_due(cs[i]);
		ck_assert(settle_next_due(s) == min);
		first = settle_pop_due(s, min);
		ck_assert_ptr_nonnull(first);
		ck_assert(settle_case_due(first) == min);
		for (int i = 0; i < N; i++)
			if (cs[i] == first)
				k = i;
		settle_remove(s, first);
		cs[k] = NULL;
	}
	ck_assert_uint_eq(settle_count(s), N - 200);
	free(cs);
	settle_free(s);
}
END_TEST

/* Assumptions: every reason has a text (used in the failed case's message). */
START_TEST(test_reason_text)
{
	for (int r = SETTLE_REASON_NONE; r <= SETTLE_REASON_MARKER_EMPTY; r++)
		ck_assert_str_ne(settle_reason_text((enum settle_reason)r), "?");
}
END_TEST

static Suite *
settle_suite(void)
{
	Suite *s = suite_create("settle");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_loop_test(tc, test_core_scenarios, 0,
			    (int)(sizeof(scenarios) / sizeof(scenarios[0])));
	tcase_add_test(tc, test_set_find_remove);
	tcase_add_test(tc, test_foreach_remove);
	tcase_add_test(tc, test_reason_text);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_loop_test(tc, test_limit_scenarios, 0,
			    (int)(sizeof(limit_scenarios) / sizeof(limit_scenarios[0])));
	tcase_add_test(tc, test_many_cases_heap_order);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_loop_test(tc, test_error_scenarios, 0,
			    (int)(sizeof(error_scenarios) / sizeof(error_scenarios[0])));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(settle_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
