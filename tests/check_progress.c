/*
 * check_progress.c: tests of the one-line summary (src/progress.c).
 *
 * Table-driven: byte sizes at every rounding and unit boundary, the line for
 * each rule of progress.h (order, omitted states, the uploading details, held,
 * idle), truncation, the moving-average rate under regular, bursty, very fast
 * and stopped sampling and after a counter reset, and the summary read from a
 * real queue.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attrs.h"
#include "progress.h"
#include "store.h"
#include "testutil.h"

#define KIB INT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

/* ---- core: sizes ---- */

static const struct {
	int64_t bytes;
	const char *text;
} bytes_cases[] = {
	{ 0, "0 B" },
	{ 1, "1 B" },
	{ 1023, "1023 B" },
	{ 1024, "1 KiB" },			/* ".0" is dropped */
	{ 1075, "1 KiB" },			/* 1.0498 rounds down */
	{ 1076, "1.1 KiB" },			/* 1.0508 rounds up */
	{ 1536, "1.5 KiB" },
	{ 10188, "9.9 KiB" },			/* 9.949 */
	{ 10189, "10 KiB" },			/* 9.950 -> 10.0: whole numbers from 10 */
	{ 10240, "10 KiB" },
	{ 10751, "10 KiB" },			/* 10.499 */
	{ 10752, "11 KiB" },			/* 10.5 rounds half up */
	{ 1048063, "1023 KiB" },		/* 1023.499 KiB */
	{ 1048064, "1 MiB" },			/* 1023.5 KiB would be "1024 KiB": next unit */
	{ 88 * MIB, "88 MiB" },
	{ 512 * MIB, "512 MiB" },
	{ GIB, "1 GiB" },
	{ 1395864371, "1.3 GiB" },		/* 1.3 * 2^30 */
	{ 5 * GIB / 2, "2.5 GiB" },
	{ 1023 * GIB, "1023 GiB" },
	{ 1024 * GIB, "1 TiB" },
	{ 1024 * 1024 * GIB, "1 PiB" },
	{ INT64_MAX, "8 EiB" },			/* 7.99999... EiB */
};

START_TEST(test_bytes)
{
	char buf[PROGRESS_BYTES_MAX];
	int n;

	n = progress_bytes(bytes_cases[_i].bytes, buf, sizeof(buf));
	ck_assert_str_eq(buf, bytes_cases[_i].text);
	ck_assert_int_eq(n, (int)strlen(bytes_cases[_i].text));
}
END_TEST

/* ---- core: the line ---- */

enum {
	S_SET = STORE_SETTLING, S_QUE = STORE_QUEUED, S_UPL = STORE_UPLOADING,
	S_IMP = STORE_IMPORTING, S_SUB = STORE_SUBMITTED, S_RUN = STORE_RUNNING,
	S_OK = STORE_SUCCEEDED, S_FAIL = STORE_FAILED, S_CAN = STORE_CANCELLED,
	S_RW = STORE_RETRY_WAIT,
};

static const struct {
	const char *why;
	int64_t counts[_STORE_STATE_MAX];
	int64_t held, left, rate;
	const char *line;
} line_cases[] = {
	{ "empty queue", { 0 }, 0, -1, -1, "idle" },
	{ "only history", { [S_OK] = 40, [S_CAN] = 2 }, 0, -1, -1, "idle" },
	{ "history with held: still idle", { [S_OK] = 1 }, 1, -1, -1, "idle" },
	{ "the spec's example",
	  { [S_UPL] = 2, [S_RUN] = 3, [S_FAIL] = 1, [S_OK] = 17 }, 0, 1395864371, 88 * MIB,
	  "2 uploading (1.3 GiB left, 88 MiB/s), 3 running, 1 failed" },
	{ "lifecycle order, every shown state",
	  { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, 0, -1, -1,
	  "1 settling, 2 queued, 3 uploading, 4 importing, 5 submitted, 6 running, "
	  "10 retry-wait, 8 failed" },
	{ "uploading without details", { [S_UPL] = 1 }, 0, -1, -1, "1 uploading" },
	{ "bytes left only", { [S_UPL] = 1 }, 0, 5 * MIB, -1, "1 uploading (5 MiB left)" },
	{ "rate only", { [S_UPL] = 1 }, 0, -1, 1536, "1 uploading (1.5 KiB/s)" },
	{ "stalled upload", { [S_UPL] = 1 }, 0, 700, 0, "1 uploading (700 B left, 0 B/s)" },
	{ "nothing left yet", { [S_UPL] = 1 }, 0, 0, 0, "1 uploading (0 B left, 0 B/s)" },
	{ "details only with uploading", { [S_RUN] = 2 }, 0, 10 * MIB, 88 * MIB, "2 running" },
	{ "held counted among the others", { [S_QUE] = 3 }, 2, -1, -1, "3 queued, 2 held" },
	{ "held after failed", { [S_QUE] = 1, [S_FAIL] = 1 }, 1, -1, -1,
	  "1 queued, 1 failed, 1 held" },
	{ "negative counts are 0", { [S_QUE] = -3, [S_RUN] = 1 }, -1, -1, -1, "1 running" },
	{ "retry-wait alone", { [S_RW] = 4 }, 0, -1, -1, "4 retry-wait" },
};

START_TEST(test_line)
{
	struct progress_summary s = PROGRESS_SUMMARY_INIT;
	char buf[PROGRESS_LINE_MAX];
	int n;

	/* Assumptions: line_cases[_i].why. */
	memcpy(s.counts, line_cases[_i].counts, sizeof(s.counts));
	s.held = line_cases[_i].held;
	s.bytes_left = line_cases[_i].left;
	s.rate = line_cases[_i].rate;
	n = progress_format(&s, buf, sizeof(buf));
	ck_assert_msg(strcmp(buf, line_cases[_i].line) == 0, "%s: got '%s', want '%s'",
	    line_cases[_i].why, buf, line_cases[_i].line);
	ck_assert_int_eq(n, (int)strlen(line_cases[_i].line));
}
END_TEST

/* ---- limits ---- */

START_TEST(test_line_fits)
{
	struct progress_summary s = PROGRESS_SUMMARY_INIT;
	char buf[PROGRESS_LINE_MAX];
	int n;

	/* Assumptions: the largest line there can be still fits PROGRESS_LINE_MAX. */
	for (int i = 0; i < _STORE_STATE_MAX; i++)
		s.counts[i] = INT64_MAX;
	s.held = INT64_MAX;
	s.bytes_left = INT64_MAX - 1;
	s.rate = 1023 * GIB + 1;
	n = progress_format(&s, buf, sizeof(buf));
	ck_assert_int_lt(n, PROGRESS_LINE_MAX);
	ck_assert_int_eq(n, (int)strlen(buf));
	ck_assert_ptr_nonnull(
	    strstr(buf, "9223372036854775807 uploading (8 EiB left, 1023 GiB/s)"));
	ck_assert_ptr_nonnull(strstr(buf, ", 9223372036854775807 held"));
}
END_TEST

START_TEST(test_truncation)
{
	struct progress_summary s = PROGRESS_SUMMARY_INIT;
	const char *full = "2 uploading (1.3 GiB left, 88 MiB/s), 3 running";
	char buf[12];
	char tiny[4];
	int n;

	/* Assumptions: a short buffer gets a NUL-terminated prefix and snprintf's return value. */
	s.counts[STORE_UPLOADING] = 2;
	s.counts[STORE_RUNNING] = 3;
	s.bytes_left = 1395864371;
	s.rate = 88 * MIB;
	n = progress_format(&s, buf, sizeof(buf));
	ck_assert_int_eq(n, (int)strlen(full));
	ck_assert_str_eq(buf, "2 uploading");
	ck_assert_int_eq(progress_format(&s, NULL, 0), (int)strlen(full));
	ck_assert_int_eq(progress_bytes(1395864371, tiny, sizeof(tiny)), 7);
	ck_assert_str_eq(tiny, "1.3");
	ck_assert_int_eq(progress_bytes(-1, tiny, sizeof(tiny)), 3);
	ck_assert_str_eq(tiny, "0 B");
}
END_TEST

/* ---- core: the rate ---- */

START_TEST(test_rate_steady)
{
	struct progress p;

	/* Assumptions: one sample a second, 1 MiB a second for 30 s, then 3 MiB a second. */
	progress_init(&p);
	ck_assert_int_eq(progress_rate(&p, 0), -1);
	for (int64_t t = 0; t <= 30; t++)
		progress_sample(&p, t * 1000, t * MIB);
	ck_assert_int_eq(progress_rate(&p, 30000), MIB);
	for (int64_t t = 31; t <= 40; t++)
		progress_sample(&p, t * 1000, 30 * MIB + (t - 30) * 3 * MIB);
	/* The base is the sample of t = 30 s: only the new speed is in the window. */
	ck_assert_int_eq(progress_rate(&p, 40000), 3 * MIB);
	/* Half-way through the change the window holds 5 s of each. */
	progress_init(&p);
	for (int64_t t = 0; t <= 30; t++)
		progress_sample(&p, t * 1000, t * MIB);
	for (int64_t t = 31; t <= 35; t++)
		progress_sample(&p, t * 1000, 30 * MIB + (t - 30) * 3 * MIB);
	ck_assert_int_eq(progress_rate(&p, 35000), 2 * MIB);
}
END_TEST

START_TEST(test_rate_fast_sampling)
{
	struct progress p;
	int64_t bytes = 0, r;

	/*
	 * Assumptions: a sample every 7 ms (every loop turn), 100000 B/s for 30 s and
	 * then 300000 B/s for 5 s. The thinned samples must still reach ~10 s back,
	 * so the rate is the mix of both speeds, not the last few milliseconds.
	 */
	progress_init(&p);
	for (int64_t t = 0; t <= 30000; t += 7) {
		bytes = t * 100;
		progress_sample(&p, t, bytes);
	}
	r = progress_rate(&p, 29995);
	ck_assert_int_eq(r, 100000);
	for (int64_t t = 30002; t <= 35000; t += 7)
		progress_sample(&p, t, bytes + (t - 29995) * 300);
	r = progress_rate(&p, 35000);
	/* About (5 * 300000 + 5 * 100000) / 10 = 200000, within the 333 ms spacing. */
	ck_assert_msg(r > 190000 && r < 210000, "rate %lld", (long long)r);
}
END_TEST

START_TEST(test_rate_short_span)
{
	struct progress p;

	/* Assumptions: under a second of samples is not a rate yet. */
	progress_init(&p);
	progress_sample(&p, 5000, 0);
	ck_assert_int_eq(progress_rate(&p, 5000), -1);	/* one sample */
	progress_sample(&p, 5500, 1000);
	ck_assert_int_eq(progress_rate(&p, 5500), -1);	/* 0.5 s */
	ck_assert_int_eq(progress_rate(&p, 6000), 1000);	/* 1000 B over 1 s up to now */
	ck_assert_int_eq(progress_rate(&p, 4000), -1);	/* before every sample */
}
END_TEST

/* ---- recovery: sampling stops, counters reset, clocks go back ---- */

START_TEST(test_rate_decays_when_sampling_stops)
{
	struct progress p;

	/* Assumptions: 1 MiB/s for 10 s, then no sample at all. */
	progress_init(&p);
	for (int64_t t = 0; t <= 10; t++)
		progress_sample(&p, t * 1000, t * MIB);
	ck_assert_int_eq(progress_rate(&p, 10000), MIB);
	/* At 15 s the window is 5 s..15 s and holds 5 MiB. */
	ck_assert_int_eq(progress_rate(&p, 15000), MIB / 2);
	/* Nothing known within the last 10 s: unknown, not a stale number. */
	ck_assert_int_eq(progress_rate(&p, 20000), -1);
	ck_assert_int_eq(progress_rate(&p, 60000), -1);
}
END_TEST

START_TEST(test_rate_restarts)
{
	struct progress p;

	/* Assumptions: a counter that goes down, or a time that goes back, restarts the average. */
	progress_init(&p);
	for (int64_t t = 0; t <= 10; t++)
		progress_sample(&p, t * 1000, t * MIB);
	progress_sample(&p, 11000, 0);
	ck_assert_int_eq(progress_rate(&p, 11000), -1);
	progress_sample(&p, 13000, 2000);
	ck_assert_int_eq(progress_rate(&p, 13000), 1000);

	for (int64_t t = 0; t <= 10; t++)
		progress_sample(&p, 100000 + t * 1000, 2000 + t * MIB);
	progress_sample(&p, 50000, 20 * MIB);
	ck_assert_int_eq(progress_rate(&p, 50000), -1);
	progress_sample(&p, 52000, 22 * MIB);
	ck_assert_int_eq(progress_rate(&p, 52000), MIB);
}
END_TEST

/* ---- core: from a real queue ---- */

static char *g_dir;

static void
store_setup(void)
{
	g_dir = tu_mkdtemp("progress");
}

static void
store_teardown(void)
{
	tu_rmtree(g_dir);
	free(g_dir);
	g_dir = NULL;
}

static int64_t
add_case(struct store *st, const char *name, enum store_state state)
{
	struct store_case_new c = {
		.watch = "w", .name = name, .path = "/drop/x", .fingerprint = name, .state = state,
	};
	int64_t id = -1;

	ck_assert_int_eq(store_case_insert(st, &c, &id), 0);
	return id;
}

START_TEST(test_collect)
{
	struct progress_summary s;
	struct store *st = NULL;
	char *msg = NULL;
	char line[PROGRESS_LINE_MAX];
	int64_t a, b, q, tail;

	/*
	 * Assumptions: two uploading cases with 900 and 2048 bytes left, one queued
	 * and held, one failed, one succeeded; then a third uploading case with no
	 * total recorded yet.
	 */
	ck_assert_int_eq(store_open(g_dir, 0, &st, &msg), 0);
	a = add_case(st, "a", STORE_UPLOADING);
	b = add_case(st, "b", STORE_UPLOADING);
	q = add_case(st, "q", STORE_QUEUED);
	(void)add_case(st, "f", STORE_FAILED);
	(void)add_case(st, "s", STORE_SUCCEEDED);
	ck_assert_int_eq(store_case_set_progress(st, a, 100, 1000), 0);
	ck_assert_int_eq(store_case_set_progress(st, b, 0, 2048), 0);
	ck_assert_int_eq(store_case_set_held(st, q, true), 0);

	ck_assert_int_eq(progress_collect(st, &s), 0);
	ck_assert_int_eq(s.counts[STORE_UPLOADING], 2);
	ck_assert_int_eq(s.counts[STORE_QUEUED], 1);
	ck_assert_int_eq(s.counts[STORE_SUCCEEDED], 1);
	ck_assert_int_eq(s.held, 1);
	ck_assert_int_eq(s.bytes_left, 900 + 2048);
	ck_assert_int_eq(s.rate, -1);
	progress_format(&s, line, sizeof(line));
	ck_assert_str_eq(line, "1 queued, 2 uploading (2.9 KiB left), 1 failed, 1 held");

	tail = add_case(st, "t", STORE_UPLOADING);
	ck_assert_int_gt(tail, 0);
	ck_assert_int_eq(progress_collect(st, &s), 0);
	ck_assert_int_eq(s.counts[STORE_UPLOADING], 3);
	ck_assert_int_eq(s.bytes_left, -1);
	progress_format(&s, line, sizeof(line));
	ck_assert_str_eq(line, "1 queued, 3 uploading, 1 failed, 1 held");

	/* Nothing uploading: no sum is needed, and none is shown. */
	ck_assert_int_eq(store_case_transition(st, a, STORE_UPLOADING, STORE_IMPORTING, NULL), 0);
	ck_assert_int_eq(store_case_transition(st, b, STORE_UPLOADING, STORE_IMPORTING, NULL), 0);
	ck_assert_int_eq(store_case_transition(st, tail, STORE_UPLOADING, STORE_FAILED, "x"), 0);
	ck_assert_int_eq(progress_collect(st, &s), 0);
	ck_assert_int_eq(s.bytes_left, -1);
	progress_format(&s, line, sizeof(line));
	ck_assert_str_eq(line, "1 queued, 2 importing, 2 failed, 1 held");
	st = store_close(st);
	free(msg);
}
END_TEST

static Suite *
progress_suite(void)
{
	Suite *s = suite_create("progress");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_loop_test(tc, test_bytes, 0, GC_ARRAY_SIZE(bytes_cases));
	tcase_add_loop_test(tc, test_line, 0, GC_ARRAY_SIZE(line_cases));
	tcase_add_test(tc, test_rate_steady);
	tcase_add_test(tc, test_rate_fast_sampling);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_line_fits);
	tcase_add_test(tc, test_truncation);
	tcase_add_test(tc, test_rate_short_span);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_test(tc, test_rate_decays_when_sampling_stops);
	tcase_add_test(tc, test_rate_restarts);
	suite_add_tcase(s, tc);

	tc = tcase_create("store");
	tcase_add_checked_fixture(tc, store_setup, store_teardown);
	tcase_add_test(tc, test_collect);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(progress_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
