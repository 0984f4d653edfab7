/*
 * check_log.c: the log module.
 *
 * Properties: structured fields reach the output in stderr mode and in journal
 * mode (read back from a journal socket the test creates when the machine has
 * none); one event is always one whole line, also from many threads at once;
 * the registered token never appears; the level filters.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <check.h>

#include "log.h"
#include "testutil.h"

static char *tmpdir;
static char *errpath;

/* Redirect stderr to a file in a per-test directory. */
static void
setup(void)
{
	int fd;

	tmpdir = tu_mkdtemp("log");
	errpath = tu_strdupf("%s/stderr", tmpdir);
	fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	ck_assert_int_ge(fd, 0);
	dup2(fd, STDERR_FILENO);
	close(fd);
	unsetenv("JOURNAL_STREAM");
}

static void
teardown(void)
{
	tu_rmtree(tmpdir);
	free(tmpdir);
	free(errpath);
}

static char *
read_stderr(void)
{
	char *s = tu_read_file(errpath, NULL);

	ck_assert_ptr_nonnull(s);
	return s;
}

START_TEST(test_stderr_fields)
{
	struct log_ctx ctx = LOG_CTX_INIT;
	char *out;

	/* Assumptions: stderr mode, every field set, one event. */
	log_init(LOG_MODE_STDERR, LOG_DEBUG);
	ctx.watch = "corads";
	ctx.case_name = "scan-0042";
	ctx.state = "queued";
	ctx.session = "https://gc/api/v1/cases/upload-sessions/1/";
	ctx.job = "https://gc/api/v1/algorithms/jobs/2/";
	ctx.attempt = 3;
	ctx.bytes = 123456;
	ctx.message_id = LOG_MID_CASE_STATE;
	log_event(LOG_NOTICE, &ctx, "case '%s' is %s", "scan-0042", "queued");
	out = read_stderr();
	ck_assert_str_eq(out, "<5>case 'scan-0042' is queued [GCDROP_WATCH=corads GCDROP_CASE=scan-0042 "
			      "GCDROP_STATE=queued GCDROP_SESSION=https://gc/api/v1/cases/upload-sessions/1/ "
			      "GCDROP_JOB=https://gc/api/v1/algorithms/jobs/2/ GCDROP_ATTEMPT=3 "
			      "GCDROP_BYTES=123456 MESSAGE_ID=" LOG_MID_CASE_STATE "]\n");
	free(out);
}
END_TEST

START_TEST(test_stderr_escaping)
{
	struct log_ctx ctx = LOG_CTX_INIT;
	char *out;

	/* Assumptions: a case name with a newline, a space, a quote and a non-UTF-8 byte. */
	log_init(LOG_MODE_STDERR, LOG_INFO);
	ctx.case_name = "a b\n\"c\xff";
	log_event(LOG_INFO, &ctx, "line one\nline two");
	out = read_stderr();
	ck_assert_str_eq(out, "<6>line one line two [GCDROP_CASE=a\\x20b\\x0a\\x22c\\xff]\n");
	free(out);
}
END_TEST

START_TEST(test_level_filter)
{
	char *out;

	log_init(LOG_MODE_STDERR, LOG_WARNING);
	log_info("not shown");
	log_debug("not shown either");
	log_warning("shown");
	log_err("also shown");
	out = read_stderr();
	ck_assert_str_eq(out, "<4>shown\n<3>also shown\n");
	free(out);
	ck_assert_int_eq(log_level_from_name("debug"), LOG_DEBUG);
	ck_assert_int_eq(log_level_from_name("err"), LOG_ERR);
	ck_assert_int_eq(log_level_from_name("loud"), -1);
	ck_assert_str_eq(log_level_name(LOG_NOTICE), "notice");
}
END_TEST

START_TEST(test_secret_redacted)
{
	const char *token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	struct log_ctx ctx = LOG_CTX_INIT;
	char *out;

	/* Assumptions: the token is registered and then passed by mistake, in the message and a field. */
	log_init(LOG_MODE_STDERR, LOG_DEBUG);
	log_add_secret(token);
	ctx.job = token;
	log_event(LOG_ERR, &ctx, "header was Bearer %s!", token);
	out = read_stderr();
	ck_assert_ptr_null(strstr(out, token));
	ck_assert_ptr_null(strstr(out, "0123456789abcdef"));
	ck_assert_ptr_nonnull(strstr(out, "Bearer [redacted]!"));
	free(out);
	log_clear_secrets();
}
END_TEST

#define THREADS 8
#define PER_THREAD 2000

static void *
log_thread(void *arg)
{
	struct log_ctx ctx = LOG_CTX_INIT;
	char name[32];

	snprintf(name, sizeof(name), "case-%ld", (long)(intptr_t)arg);
	ctx.case_name = name;
	ctx.watch = "w";
	for (int i = 0; i < PER_THREAD; i++) {
		ctx.attempt = i;
		log_event(LOG_INFO, &ctx, "event %d of thread %ld with some padding to make lines long "
					  "enough to interleave if they were written in pieces",
			  i, (long)(intptr_t)arg);
	}
	return NULL;
}

START_TEST(test_threads_whole_lines)
{
	pthread_t t[THREADS];
	int seen[THREADS][1] = { { 0 } };
	char *out, *line, *save = NULL;
	int lines = 0;

	/* Assumptions: 8 threads log 2000 events each to the same stderr file. */
	log_init(LOG_MODE_STDERR, LOG_INFO);
	for (long i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, log_thread, (void *)(intptr_t)i), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	out = read_stderr();
	for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		int ev, th, at;
		char tail[64];

		ck_assert_msg(sscanf(line, "<6>event %d of thread %d with some padding %*[^[][GCDROP_WATCH=w "
					   "GCDROP_CASE=case-%*d GCDROP_ATTEMPT=%d%63s",
				     &ev, &th, &at, tail) == 4,
			      "torn line: %s", line);
		ck_assert_str_eq(tail, "]");
		ck_assert_int_eq(ev, at);
		ck_assert(th >= 0 && th < THREADS);
		seen[th][0]++;
		lines++;
	}
	ck_assert_int_eq(lines, THREADS * PER_THREAD);
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(seen[i][0], PER_THREAD);
	free(out);
}
END_TEST

START_TEST(test_auto_mode)
{
	struct stat st;
	char buf[64];

	/* Assumptions: JOURNAL_STREAM naming our stderr selects the journal; another inode does not. */
	ck_assert_int_eq(fstat(STDERR_FILENO, &st), 0);
	snprintf(buf, sizeof(buf), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", buf, 1);
	log_init(LOG_MODE_AUTO, LOG_INFO);
	ck_assert_int_eq(log_mode(), LOG_MODE_JOURNAL);
	snprintf(buf, sizeof(buf), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + 1);
	setenv("JOURNAL_STREAM", buf, 1);
	log_init(LOG_MODE_AUTO, LOG_INFO);
	ck_assert_int_eq(log_mode(), LOG_MODE_STDERR);
	unsetenv("JOURNAL_STREAM");
	log_init(LOG_MODE_AUTO, LOG_INFO);
	ck_assert_int_eq(log_mode(), LOG_MODE_STDERR);
}
END_TEST

/*
 * Find "NAME=value" in a native journal datagram. Fields are "NAME=value\n",
 * or "NAME\n" + little-endian 64-bit length + value + "\n" for binary values.
 */
static char *
journal_field(const char *dg, size_t len, const char *name)
{
	size_t nl = strlen(name);
	size_t i = 0;

	while (i < len) {
		const char *end = memchr(dg + i, '\n', len - i);
		const char *eq;
		size_t l;

		if (end == NULL)
			break;
		l = (size_t)(end - (dg + i));
		eq = memchr(dg + i, '=', l);
		if (eq != NULL) {
			if ((size_t)(eq - (dg + i)) == nl && memcmp(dg + i, name, nl) == 0)
				return strndup(eq + 1, (size_t)(end - eq - 1));
			i += l + 1;
		} else {
			uint64_t vl;

			memcpy(&vl, end + 1, 8);
			if (l == nl && memcmp(dg + i, name, nl) == 0)
				return strndup(end + 9, (size_t)vl);
			i += l + 1 + 8 + (size_t)vl + 1;
		}
	}
	return NULL;
}

START_TEST(test_journal_fields)
{
	const char *sock = "/run/systemd/journal/socket";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct log_ctx ctx = LOG_CTX_INIT;
	char dg[65536];
	char *v;
	ssize_t n;
	int fd;

	/*
	 * Assumptions: this machine has no journald (no PID 1 systemd); the test
	 * stands in for it by binding the journal's socket. With a real journald
	 * the entry would go to it, so the test then only checks nothing crashes.
	 */
	if (access(sock, F_OK) == 0) {
		log_init(LOG_MODE_JOURNAL, LOG_INFO);
		log_info("gcdrop check_log: journal test entry");
		return;
	}
	mkdir("/run/systemd", 0755);
	mkdir("/run/systemd/journal", 0755);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		ck_abort_msg("cannot bind %s: %s (run as root)", sock, strerror(errno));
	}
	log_init(LOG_MODE_JOURNAL, LOG_DEBUG);
	log_add_secret("secret-token-value-1234");
	ctx.watch = "corads";
	ctx.case_name = "scan\n0042";
	ctx.state = "uploading";
	ctx.attempt = 2;
	ctx.bytes = 77;
	ctx.message_id = LOG_MID_CASE_STATE;
	log_event(LOG_NOTICE, &ctx, "case is uploading with secret-token-value-1234");
	n = recv(fd, dg, sizeof(dg), MSG_DONTWAIT);
	unlink(sock);
	close(fd);
	ck_assert_int_gt(n, 0);
	v = journal_field(dg, (size_t)n, "GCDROP_WATCH");
	ck_assert_str_eq(v, "corads");
	free(v);
	v = journal_field(dg, (size_t)n, "GCDROP_CASE");
	ck_assert_str_eq(v, "scan\n0042");
	free(v);
	v = journal_field(dg, (size_t)n, "GCDROP_STATE");
	ck_assert_str_eq(v, "uploading");
	free(v);
	v = journal_field(dg, (size_t)n, "GCDROP_ATTEMPT");
	ck_assert_str_eq(v, "2");
	free(v);
	v = journal_field(dg, (size_t)n, "GCDROP_BYTES");
	ck_assert_str_eq(v, "77");
	free(v);
	v = journal_field(dg, (size_t)n, "PRIORITY");
	ck_assert_str_eq(v, "5");
	free(v);
	v = journal_field(dg, (size_t)n, "MESSAGE_ID");
	ck_assert_str_eq(v, LOG_MID_CASE_STATE);
	free(v);
	v = journal_field(dg, (size_t)n, "MESSAGE");
	ck_assert_str_eq(v, "case is uploading with [redacted]");
	free(v);
	ck_assert_ptr_null(journal_field(dg, (size_t)n, "GCDROP_JOB"));
	log_clear_secrets();
}
END_TEST

static Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_stderr_fields);
	tcase_add_test(tc, test_stderr_escaping);
	tcase_add_test(tc, test_level_filter);
	tcase_add_test(tc, test_secret_redacted);
	tcase_add_test(tc, test_auto_mode);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_threads_whole_lines);
	suite_add_tcase(s, tc);

	tc = tcase_create("journal");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_journal_fields);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(log_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
