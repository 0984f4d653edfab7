/*
 * check_notify.c: tests of the sd_notify wrapper and the watchdog policy (src/notify.c).
 *
 * Each test that sends binds its own AF_UNIX datagram socket in a per-test
 * directory, points NOTIFY_SOCKET at it and reads back exactly what libsystemd
 * sent, one datagram per call. The socket is non-blocking: a datagram on a local
 * socket is queued before sendmsg() returns, so "nothing was sent" is a recv()
 * that fails with EAGAIN at once, with no waiting. The watchdog policy is a
 * table of (time, progress_ok) steps with the expected answer and next deadline.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "attrs.h"
#include "notify.h"
#include "testutil.h"

#define SEC UINT64_C(1000000)

static char *g_dir;
static char *g_path;
static int g_fd = -1;

static void
setup(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	g_dir = tu_mkdtemp("notify");
	g_path = tu_strdupf("%s/notify.sock", g_dir);
	ck_assert_uint_lt(strlen(g_path), sizeof(sa.sun_path));
	strcpy(sa.sun_path, g_path);
	g_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ck_assert_int_ge(g_fd, 0);
	ck_assert_int_eq(bind(g_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void
teardown(void)
{
	if (g_fd >= 0)
		close(g_fd);
	g_fd = -1;
	tu_rmtree(g_dir);
	free(g_dir);
	free(g_path);
	g_dir = g_path = NULL;
}

/* The next datagram as a malloc'd string; NULL when none is queued. */
static char *
next_msg(void)
{
	char buf[4096];
	ssize_t n;

	n = recv(g_fd, buf, sizeof(buf) - 1, 0);
	if (n < 0) {
		ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK, "recv: %s", strerror(errno));
		return NULL;
	}
	buf[n] = '\0';
	return strdup(buf);
}

static void
expect_msg(const char *want)
{
	char *got = next_msg();

	ck_assert_msg(got != NULL, "no datagram, want '%s'", want);
	ck_assert_str_eq(got, want);
	free(got);
}

static void
expect_none(void)
{
	char *got = next_msg();

	ck_assert_msg(got == NULL, "unexpected datagram '%s'", got ? got : "");
}

/* ---- core: the messages ---- */

START_TEST(test_messages)
{
	/* Assumptions: NOTIFY_SOCKET names our socket; each call is one datagram. */
	setenv("NOTIFY_SOCKET", g_path, 1);
	ck_assert_int_eq(notify_ready(), 0);
	expect_msg("READY=1");
	ck_assert_int_eq(notify_status("2 uploading (1.3 GiB left, 88 MiB/s), 3 running, 1 failed"),
	    0);
	expect_msg("STATUS=2 uploading (1.3 GiB left, 88 MiB/s), 3 running, 1 failed");
	ck_assert_int_eq(notify_watchdog(), 0);
	expect_msg("WATCHDOG=1");
	ck_assert_int_eq(notify_stopping(), 0);
	expect_msg("STOPPING=1");
	expect_none();
	/* The environment is kept: a second round still reaches the socket. */
	ck_assert_str_eq(getenv("NOTIFY_SOCKET"), g_path);
	ck_assert_int_eq(notify_ready(), 0);
	expect_msg("READY=1");
}
END_TEST

START_TEST(test_reloading)
{
	uint64_t before, after, mono;
	char *got;
	int end = 0;

	/* Assumptions: RELOADING=1 and MONOTONIC_USEC=<now> travel in one datagram. */
	setenv("NOTIFY_SOCKET", g_path, 1);
	before = notify_now_usec();
	ck_assert_int_eq(notify_reloading(), 0);
	after = notify_now_usec();
	got = next_msg();
	ck_assert_ptr_nonnull(got);
	ck_assert_int_eq(sscanf(got, "RELOADING=1\nMONOTONIC_USEC=%" SCNu64 "%n", &mono, &end), 1);
	ck_assert_int_eq(end, (int)strlen(got));
	ck_assert_uint_ge(mono, before);
	ck_assert_uint_le(mono, after);
	free(got);
	expect_none();
}
END_TEST

START_TEST(test_status_sanitised)
{
	/* Assumptions: a newline in the text cannot forge another assignment. */
	setenv("NOTIFY_SOCKET", g_path, 1);
	ck_assert_int_eq(notify_status("case 'a\nREADY=1\tb\r\x7f' queued"), 0);
	expect_msg("STATUS=case 'a READY=1 b  ' queued");
	ck_assert_int_eq(notify_status(NULL), 0);
	expect_msg("STATUS=");
	ck_assert_int_eq(notify_status("grüße"), 0);
	expect_msg("STATUS=grüße");
	expect_none();
}
END_TEST

/* ---- limits ---- */

START_TEST(test_status_long)
{
	char line[NOTIFY_STATUS_MAX + 200], want[NOTIFY_STATUS_MAX + 16];

	/* Assumptions: text past NOTIFY_STATUS_MAX is cut, never inside a UTF-8 character. */
	setenv("NOTIFY_SOCKET", g_path, 1);
	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	ck_assert_int_eq(notify_status(line), 0);
	snprintf(want, sizeof(want), "STATUS=%.*s", NOTIFY_STATUS_MAX, line);
	expect_msg(want);

	/* "é" (2 bytes) straddles the limit: it goes entirely. */
	memset(line, 'y', NOTIFY_STATUS_MAX - 1);
	strcpy(line + NOTIFY_STATUS_MAX - 1, "\xc3\xa9zz");
	ck_assert_int_eq(notify_status(line), 0);
	snprintf(want, sizeof(want), "STATUS=%.*s", NOTIFY_STATUS_MAX - 1, line);
	expect_msg(want);

	/* Exactly NOTIFY_STATUS_MAX bytes are kept whole. */
	line[NOTIFY_STATUS_MAX] = '\0';
	memset(line, 'z', NOTIFY_STATUS_MAX);
	ck_assert_int_eq(notify_status(line), 0);
	snprintf(want, sizeof(want), "STATUS=%.*s", NOTIFY_STATUS_MAX, line);
	expect_msg(want);
}
END_TEST

/* ---- errors ---- */

START_TEST(test_no_socket)
{
	uint64_t usec = 12345;

	/* Assumptions: without NOTIFY_SOCKET every call is a successful no-op. */
	ck_assert_int_eq(notify_ready(), 0);
	ck_assert_int_eq(notify_reloading(), 0);
	ck_assert_int_eq(notify_status("idle"), 0);
	ck_assert_int_eq(notify_watchdog(), 0);
	ck_assert_int_eq(notify_stopping(), 0);
	ck_assert_int_eq(notify_watchdog_usec(&usec), 0);
	ck_assert_uint_eq(usec, 0);
	expect_none();
}
END_TEST

START_TEST(test_dead_socket)
{
	char *gone = tu_strdupf("%s/nobody-listens.sock", g_dir);

	/* Assumptions: a NOTIFY_SOCKET nobody listens on is an error, never a crash. */
	setenv("NOTIFY_SOCKET", gone, 1);
	ck_assert_int_lt(notify_ready(), 0);
	ck_assert_int_lt(notify_status("idle"), 0);
	ck_assert_int_lt(notify_reloading(), 0);
	ck_assert_int_lt(notify_watchdog(), 0);
	ck_assert_int_lt(notify_stopping(), 0);
	expect_none();
	free(gone);
}
END_TEST

/* ---- core: the watchdog interval from the environment ---- */

static const struct {
	const char *usec;	/* NULL: unset */
	int pid;		/* 0: unset, 1: ours, 2: someone else's, 3: garbage */
	int r;			/* 0, or 1 for "some negative errno" */
	uint64_t want;
} interval_cases[] = {
	{ NULL, 0, 0, 0 },
	{ "2000000", 0, 0, 2000000 },		/* no WATCHDOG_PID: meant for us */
	{ "2000000", 1, 0, 2000000 },
	{ "60000000", 1, 0, 60000000 },
	{ "2000000", 2, 0, 0 },			/* meant for another process */
	{ NULL, 1, 0, 0 },
	{ "soon", 1, 1, 0 },
	{ "0", 1, 1, 0 },
	{ "2000000", 3, 1, 0 },
};

START_TEST(test_watchdog_interval)
{
	uint64_t usec = 777;
	char pid[32];
	int r;

	if (interval_cases[_i].usec != NULL)
		setenv("WATCHDOG_USEC", interval_cases[_i].usec, 1);
	switch (interval_cases[_i].pid) {
	case 1:
		snprintf(pid, sizeof(pid), "%ld", (long)getpid());
		setenv("WATCHDOG_PID", pid, 1);
		break;
	case 2:
		setenv("WATCHDOG_PID", "1", 1);	/* init: never a test process */
		break;
	case 3:
		setenv("WATCHDOG_PID", "me", 1);
		break;
	}
	r = notify_watchdog_usec(&usec);
	if (interval_cases[_i].r) {
		ck_assert_int_lt(r, 0);
		ck_assert_uint_eq(usec, 777);	/* untouched on failure */
	} else {
		ck_assert_int_eq(r, 0);
		ck_assert_uint_eq(usec, interval_cases[_i].want);
	}
}
END_TEST

START_TEST(test_watchdog_end_to_end)
{
	struct notify_watchdog w;
	uint64_t usec = 0, now;
	char pid[32];

	/* Assumptions: systemd asked for 4 s; the loop pings at 0 s and 2 s, not at 1 s. */
	setenv("NOTIFY_SOCKET", g_path, 1);
	setenv("WATCHDOG_USEC", "4000000", 1);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_int_eq(notify_watchdog_usec(&usec), 0);
	ck_assert_uint_eq(usec, 4 * SEC);
	notify_watchdog_init(&w, usec);
	now = notify_now_usec();
	for (uint64_t t = now; t <= now + 2 * SEC; t += SEC)
		if (notify_watchdog_due(&w, t, true))
			ck_assert_int_eq(notify_watchdog(), 0);
	expect_msg("WATCHDOG=1");
	expect_msg("WATCHDOG=1");
	expect_none();
}
END_TEST

/* ---- core: the watchdog policy ---- */

struct wd_step {
	uint64_t now;
	bool ok;	/* progress_ok */
	bool due;	/* expected answer */
	uint64_t next;	/* expected notify_watchdog_next_usec() afterwards */
};

static const struct {
	const char *why;
	uint64_t interval;
	struct wd_step steps[16];
	size_t n;
} wd_cases[] = {
	{ "disabled: never due", 0, {
		{ 0, true, false, UINT64_MAX },
		{ 100 * SEC, true, false, UINT64_MAX },
		{ 200 * SEC, false, false, UINT64_MAX },
	  }, 3 },
	{ "healthy: the first call pings, then every half interval", 10 * SEC, {
		{ 1 * SEC, true, true, 6 * SEC },
		{ 2 * SEC, true, false, 6 * SEC },
		{ 6 * SEC - 1, true, false, 6 * SEC },
		{ 6 * SEC, true, true, 11 * SEC },
		{ 7 * SEC, true, false, 11 * SEC },
		{ 13 * SEC, true, true, 18 * SEC },	/* a late loop turn pings at once */
	  }, 6 },
	{ "a hung worker stops the pings; progress resumes them at once", 10 * SEC, {
		{ 0, true, true, 5 * SEC },
		{ 5 * SEC, false, false, 5 * SEC },
		{ 6 * SEC, false, false, 5 * SEC },
		{ 9 * SEC, false, false, 5 * SEC },
		{ 9 * SEC + 1, true, true, 14 * SEC + 1 },
		{ 10 * SEC, true, false, 14 * SEC + 1 },
		{ 14 * SEC + 1, false, false, 14 * SEC + 1 },
		{ 30 * SEC, false, false, 14 * SEC + 1 },	/* systemd restarted us by now */
	  }, 8 },
	{ "no progress from the start: no first ping until there is", 2 * SEC, {
		{ 0, false, false, 0 },
		{ 1 * SEC, false, false, 0 },
		{ 1 * SEC, true, true, 2 * SEC },
		{ 2 * SEC, true, true, 3 * SEC },
		{ 2 * SEC, true, false, 3 * SEC },	/* two calls in one turn: one ping */
	  }, 5 },
	{ "a one-microsecond interval is due on every call", 1, {
		{ 5, true, true, 5 },
		{ 5, true, true, 5 },
		{ 6, false, false, 5 },
	  }, 3 },
};

START_TEST(test_watchdog_policy)
{
	struct notify_watchdog w;

	notify_watchdog_init(&w, wd_cases[_i].interval);
	ck_assert_uint_eq(notify_watchdog_next_usec(&w), wd_cases[_i].interval ? 0 : UINT64_MAX);
	for (size_t k = 0; k < wd_cases[_i].n; k++) {
		const struct wd_step *s = &wd_cases[_i].steps[k];
		bool due = notify_watchdog_due(&w, s->now, s->ok);

		ck_assert_msg(due == s->due, "%s: step %zu: due %d, want %d", wd_cases[_i].why, k,
		    due, s->due);
		ck_assert_msg(notify_watchdog_next_usec(&w) == s->next,
		    "%s: step %zu: next %" PRIu64 ", want %" PRIu64, wd_cases[_i].why, k,
		    notify_watchdog_next_usec(&w), s->next);
	}
}
END_TEST

START_TEST(test_watchdog_policy_overflow)
{
	struct notify_watchdog w;

	/* Assumptions: a ping near the end of the clock does not wrap the deadline. */
	notify_watchdog_init(&w, 10 * SEC);
	ck_assert(notify_watchdog_due(&w, UINT64_MAX - 1, true));
	ck_assert_uint_eq(notify_watchdog_next_usec(&w), UINT64_MAX);
	ck_assert(!notify_watchdog_due(&w, UINT64_MAX - 1, true));
}
END_TEST

static Suite *
notify_suite(void)
{
	Suite *s = suite_create("notify");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_messages);
	tcase_add_test(tc, test_reloading);
	tcase_add_test(tc, test_status_sanitised);
	tcase_add_loop_test(tc, test_watchdog_interval, 0, GC_ARRAY_SIZE(interval_cases));
	tcase_add_test(tc, test_watchdog_end_to_end);
	tcase_add_loop_test(tc, test_watchdog_policy, 0, GC_ARRAY_SIZE(wd_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_status_long);
	tcase_add_test(tc, test_watchdog_policy_overflow);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_no_socket);
	tcase_add_test(tc, test_dead_socket);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(notify_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
