/*
 * check_backoff.c: tests of the retry policy (src/backoff.c).
 *
 * Table-driven: ceilings and caps, full-jitter bounds with fixed seeds,
 * every Retry-After form (delta-seconds, decimal, the three HTTP-date forms),
 * garbage, huge and negative values, and the per-kind gates.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "attrs.h"
#include "backoff.h"

/* 2026-11-25 20:00:00 UTC, a Wednesday: the "now" of every Retry-After case. */
#define NOW ((time_t)1795636800)
#define DAY_MS BACKOFF_RETRY_AFTER_MAX_MS

/* ---- core: ceilings ---- */

static const struct {
	int64_t base, cap;
	unsigned attempt;
	int64_t ceiling;
} ceiling_cases[] = {
	{ 100, 10000, 0, 100 },
	{ 100, 10000, 1, 200 },
	{ 100, 10000, 2, 400 },
	{ 100, 10000, 6, 6400 },
	{ 100, 10000, 7, 10000 },	/* 12800 capped */
	{ 100, 10000, 40, 10000 },
	{ 100, 10000, 63, 10000 },	/* a shift that would overflow */
	{ 100, 10000, 1000, 10000 },
	{ 1000, 1000, 0, 1000 },	/* base == cap */
	{ 1000, 1000, 5, 1000 },
	{ 1, INT64_MAX, 62, INT64_MAX },
	{ 1, INT64_MAX, 61, (int64_t)1 << 61 },
	{ 3, 1000000, 10, 3072 },
	{ 0, 500, 3, 8 },		/* a zero base counts as 1 ms */
	{ 200, 100, 4, 200 },		/* a cap below the base is the base */
};

START_TEST(test_ceiling)
{
	struct backoff_policy p = { ceiling_cases[_i].base, ceiling_cases[_i].cap, 0 };

	ck_assert_int_eq(backoff_ceiling_ms(&p, ceiling_cases[_i].attempt),
	    ceiling_cases[_i].ceiling);
}
END_TEST

/* ---- core: full jitter with fixed seeds ---- */

static const uint64_t seeds[] = { 0, 1, 2, 42, 0xdeadbeef, UINT64_MAX };

START_TEST(test_jitter_bounds)
{
	struct backoff_policy p = { 100, 30000, 0 };
	struct backoff_rng rng;
	unsigned attempt, k;
	int64_t d, ceil, max_seen;

	/* Every delay lies in [0, ceiling], and the window is actually used. */
	backoff_rng_seed(&rng, seeds[_i]);
	for (attempt = 0; attempt < 20; attempt++) {
		ceil = backoff_ceiling_ms(&p, attempt);
		max_seen = 0;
		for (k = 0; k < 2000; k++) {
			d = backoff_delay_ms(&p, attempt, &rng);
			ck_assert_int_ge(d, 0);
			ck_assert_int_le(d, ceil);
			if (d > max_seen)
				max_seen = d;
		}
		ck_assert_int_ge(max_seen, ceil * 9 / 10);
	}
}
END_TEST

START_TEST(test_jitter_replay)
{
	struct backoff_policy p = { 100, 60000, 0 };
	struct backoff_rng a, b, c;
	unsigned i, same = 0;
	int64_t da, db;

	/* The same seed replays the same schedule; another seed gives another one. */
	backoff_rng_seed(&a, seeds[_i]);
	backoff_rng_seed(&b, seeds[_i]);
	backoff_rng_seed(&c, seeds[_i] + 1);
	for (i = 0; i < 100; i++) {
		da = backoff_delay_ms(&p, i % 12, &a);
		db = backoff_delay_ms(&p, i % 12, &b);
		ck_assert_int_eq(da, db);
		if (backoff_delay_ms(&p, i % 12, &c) == da)
			same++;
	}
	ck_assert_uint_lt(same, 10);
}
END_TEST

START_TEST(test_jitter_mean)
{
	struct backoff_rng rng;
	int64_t sum = 0;
	unsigned k, hist[10] = { 0 };
	const unsigned n = 100000;

	/* Uniform on [0, 9999]: mean near 5000 and every tenth about equally full. */
	backoff_rng_seed(&rng, 7);
	for (k = 0; k < n; k++) {
		int64_t v = backoff_rng_upto(&rng, 9999);

		sum += v;
		hist[v / 1000]++;
	}
	ck_assert_int_ge(sum / n, 4900);
	ck_assert_int_le(sum / n, 5100);
	for (k = 0; k < 10; k++) {
		ck_assert_uint_ge(hist[k], n / 10 * 95 / 100);
		ck_assert_uint_le(hist[k], n / 10 * 105 / 100);
	}
	ck_assert_int_eq(backoff_rng_upto(&rng, 0), 0);
	ck_assert_int_eq(backoff_rng_upto(&rng, -5), 0);
}
END_TEST

START_TEST(test_next_and_attempts)
{
	struct backoff_policy p = { 100, 10000, 3 };
	struct backoff_policy unlimited = { 100, 10000, 0 };
	struct backoff_rng rng;

	/* A usable Retry-After replaces the computed delay; -1 keeps it. */
	backoff_rng_seed(&rng, 1);
	ck_assert_int_eq(backoff_next_ms(&p, 5, &rng, 7000), 7000);
	ck_assert_int_eq(backoff_next_ms(&p, 5, &rng, 0), 0);
	ck_assert_int_eq(backoff_next_ms(&p, 5, &rng, DAY_MS * 3), DAY_MS);
	ck_assert_int_le(backoff_next_ms(&p, 0, &rng, -1), 100);

	/* max_attempts counts every try; 0 is unlimited. */
	ck_assert(backoff_may_retry(&p, 1));
	ck_assert(backoff_may_retry(&p, 2));
	ck_assert(!backoff_may_retry(&p, 3));
	ck_assert(!backoff_may_retry(&p, 100));
	ck_assert(backoff_may_retry(&unlimited, 1000000));
}
END_TEST

/* ---- Retry-After ---- */

static const struct {
	const char *value;
	int rc;
	int64_t ms;
} retry_after_cases[] = {
	/* delta-seconds */
	{ "120", 0, 120000 },
	{ "0", 0, 0 },
	{ "  7 ", 0, 7000 },
	{ "\t3", 0, 3000 },
	{ "007", 0, 7000 },
	/* decimal seconds, as gcapi tolerates them */
	{ "1.5", 0, 1500 },
	{ "0.25", 0, 250 },
	{ ".5", 0, 500 },
	{ "2.", 0, 2000 },
	{ "0.0001", 0, 0 },
	{ "+3", 0, 3000 },
	/* negative: no wait */
	{ "-5", 0, 0 },
	{ "-0.5", 0, 0 },
	/* huge: capped at one day */
	{ "86400", 0, DAY_MS },
	{ "86401", 0, DAY_MS },
	{ "99999999999999999999999999999999", 0, DAY_MS },
	{ "1e30", -EINVAL, 0 },
	/* IMF-fixdate */
	{ "Wed, 25 Nov 2026 20:01:00 GMT", 0, 60000 },
	{ "Wed, 25 Nov 2026 20:00:00 GMT", 0, 0 },
	{ "Wed, 25 Nov 2026 19:00:00 GMT", 0, 0 },	/* in the past */
	{ "Sun, 06 Nov 1994 08:49:37 GMT", 0, 0 },
	{ "Thu, 26 Nov 2026 20:00:00 GMT", 0, DAY_MS },
	{ "Fri, 27 Nov 2026 20:00:00 GMT", 0, DAY_MS },	/* capped */
	{ "Fri, 31 Dec 9999 23:59:59 GMT", 0, DAY_MS },
	{ "  Wed, 25 Nov 2026 20:00:05 GMT  ", 0, 5000 },
	{ "wed, 25 nov 2026 20:00:05 GMT", 0, 5000 },
	/* RFC 850 */
	{ "Wednesday, 25-Nov-26 20:00:30 GMT", 0, 30000 },
	{ "Sunday, 06-Nov-94 08:49:37 GMT", 0, 0 },
	/* asctime */
	{ "Wed Nov 25 20:00:10 2026", 0, 10000 },
	{ "Thu Nov 26 00:00:00 2026", 0, 4 * 3600 * 1000 },
	{ "Sun Nov  6 08:49:37 1994", 0, 0 },
	/* garbage */
	{ NULL, -EINVAL, 0 },
	{ "", -EINVAL, 0 },
	{ "   ", -EINVAL, 0 },
	{ "soon", -EINVAL, 0 },
	{ "12abc", -EINVAL, 0 },
	{ "1,5", -EINVAL, 0 },
	{ "0x10", -EINVAL, 0 },
	{ "inf", -EINVAL, 0 },
	{ "nan", -EINVAL, 0 },
	{ "-", -EINVAL, 0 },
	{ ".", -EINVAL, 0 },
	{ "1 2", -EINVAL, 0 },
	{ "Wed, 25 Nov 2026 20:01:00", -EINVAL, 0 },		/* no GMT */
	{ "Wed, 25 Nov 2026 20:01:00 UTC", -EINVAL, 0 },
	{ "Wed, 25 Nov 2026 20:01:00 GMT junk", -EINVAL, 0 },
	{ "Wed, 32 Nov 2026 20:01:00 GMT", -EINVAL, 0 },	/* no such day */
	{ "Sun, 29 Feb 2026 20:01:00 GMT", -EINVAL, 0 },	/* 2026 is no leap year */
	{ "Wed, 00 Nov 2026 20:01:00 GMT", -EINVAL, 0 },
	{ "Wed, 25 Foo 2026 20:01:00 GMT", -EINVAL, 0 },
	{ "Wed, 25 Nov 2026 24:00:00 GMT", -EINVAL, 0 },
	{ "Wed, 25 Nov 2026 20:60:00 GMT", -EINVAL, 0 },
	{ "Wed, 25 Nov 26 20:01:00 GMT", -EINVAL, 0 },
	{ "Wednes, 25 Nov 2026 20:01:00 GMT", -EINVAL, 0 },
	{ "Wednesday, 25-Nov-2026 20:00:30 GMT", -EINVAL, 0 },
	{ "Wed Nov 25 20:00:10", -EINVAL, 0 },
	{ "2026-11-25T20:01:00Z", -EINVAL, 0 },
};

START_TEST(test_retry_after)
{
	int64_t ms = -42;
	int rc;

	rc = backoff_parse_retry_after(retry_after_cases[_i].value, NOW, &ms);
	ck_assert_msg(rc == retry_after_cases[_i].rc, "'%s': rc %d, want %d",
	    retry_after_cases[_i].value ? retry_after_cases[_i].value : "(null)", rc,
	    retry_after_cases[_i].rc);
	if (rc == 0)
		ck_assert_msg(ms == retry_after_cases[_i].ms, "'%s': %lld ms, want %lld",
		    retry_after_cases[_i].value, (long long)ms,
		    (long long)retry_after_cases[_i].ms);
	else
		ck_assert_int_eq(ms, -42);	/* untouched on failure */
}
END_TEST

static const struct {
	const char *value;
	int64_t t;
} date_cases[] = {
	{ "Sun, 06 Nov 1994 08:49:37 GMT", 784111777 },
	{ "Sunday, 06-Nov-94 08:49:37 GMT", 784111777 },
	{ "Sun Nov  6 08:49:37 1994", 784111777 },
	{ "Sun Nov 6 08:49:37 1994", 784111777 },
	{ "Thu, 01 Jan 1970 00:00:00 GMT", 0 },
	{ "Tue, 29 Feb 2000 00:00:00 GMT", 951782400 },
	{ "Wed, 25 Nov 2026 20:00:00 GMT", 1795636800 },
	{ "Tuesday, 01-Jan-80 00:00:00 GMT", 315532800 },	/* 2080 is > 50 years ahead: 1980 */
	{ "Wednesday, 01-Jan-70 00:00:00 GMT", 3155760000 },	/* 2070 is not */
};

START_TEST(test_http_date)
{
	time_t t = 12345;

	ck_assert_int_eq(backoff_parse_http_date(date_cases[_i].value, NOW, &t), 0);
	ck_assert_msg((int64_t)t == date_cases[_i].t, "'%s': %lld, want %lld",
	    date_cases[_i].value, (long long)t, (long long)date_cases[_i].t);
}
END_TEST

/* ---- gates ---- */

START_TEST(test_gate)
{
	struct backoff_gate g;

	/* A fresh gate is open. */
	backoff_gate_init(&g, "uploads");
	ck_assert_str_eq(g.name, "uploads");
	ck_assert(backoff_gate_ready(&g, 1000));
	ck_assert_int_eq(backoff_gate_wait(&g, 1000), 0);

	/* A 429 with Retry-After: 5 closes it for 5 s. */
	backoff_gate_push(&g, 1000, 5000);
	ck_assert(!backoff_gate_ready(&g, 1000));
	ck_assert_int_eq(backoff_gate_wait(&g, 1000), 5000);
	ck_assert_int_eq(backoff_gate_wait(&g, 5999), 1);
	ck_assert(backoff_gate_ready(&g, 6000));
	ck_assert_int_eq(backoff_gate_wait(&g, 6000), 0);

	/* A shorter push does not reopen it early; a longer one extends it. */
	backoff_gate_push(&g, 2000, 1000);
	ck_assert_int_eq(backoff_gate_wait(&g, 2000), 4000);
	backoff_gate_push(&g, 2000, 10000);
	ck_assert_int_eq(backoff_gate_wait(&g, 2000), 10000);
	ck_assert(!backoff_gate_ready(&g, 11999));
	ck_assert(backoff_gate_ready(&g, 12000));

	/* A negative delay counts as 0 and never moves the gate back. */
	backoff_gate_push(&g, 3000, -500);
	ck_assert_int_eq(backoff_gate_wait(&g, 3000), 9000);
}
END_TEST

START_TEST(test_gates_independent)
{
	struct backoff_gate uploads, creations, polls;

	/* Each kind of call has its own gate: a refused creation does not stop uploads. */
	backoff_gate_init(&uploads, "uploads");
	backoff_gate_init(&creations, "creations");
	backoff_gate_init(&polls, "polls");
	backoff_gate_push(&creations, 100, 300000);
	ck_assert(backoff_gate_ready(&uploads, 200));
	ck_assert(backoff_gate_ready(&polls, 200));
	ck_assert(!backoff_gate_ready(&creations, 200));
}
END_TEST

START_TEST(test_now_monotonic)
{
	int64_t a = backoff_now_ms(), b = backoff_now_ms();

	ck_assert_int_gt(a, 0);
	ck_assert_int_ge(b, a);
}
END_TEST

static Suite *
backoff_suite(void)
{
	Suite *s = suite_create("backoff");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_loop_test(tc, test_ceiling, 0, (int)GC_ARRAY_SIZE(ceiling_cases));
	tcase_add_loop_test(tc, test_jitter_replay, 0, (int)GC_ARRAY_SIZE(seeds));
	tcase_add_test(tc, test_next_and_attempts);
	tcase_add_loop_test(tc, test_http_date, 0, (int)GC_ARRAY_SIZE(date_cases));
	tcase_add_test(tc, test_gate);
	tcase_add_test(tc, test_gates_independent);
	tcase_add_test(tc, test_now_monotonic);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_loop_test(tc, test_jitter_bounds, 0, (int)GC_ARRAY_SIZE(seeds));
	tcase_add_test(tc, test_jitter_mean);
	tcase_set_timeout(tc, 20);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_loop_test(tc, test_retry_after, 0, (int)GC_ARRAY_SIZE(retry_after_cases));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(backoff_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
