/*
 * e2e_watch.c: the watcher end to end, with the real `gcdrop run` ($GCDROP_BIN).
 *
 * Property proved by the whole suite: every case dropped into a watch folder is
 * queued exactly once, never before its last write plus settle_seconds, whether
 * it is moved in, copied file by file, written slowly, dropped while the daemon
 * is down, killed or overloaded, or when inotify cannot serve the folder (watch
 * limit reached, network filesystem: faked through the GCDROP_TEST_* seam of
 * watch.h, the folder is then scanned every scan_interval and that is said
 * once); bad cases end failed with the reason, and nothing else is disturbed.
 *
 * Each test writes its own configuration in a temporary folder (api_url on the
 * discard port of 127.0.0.1: nothing is contacted yet; the token comes from
 * GRAND_CHALLENGE_AUTHORIZATION), starts the daemon, drops cases, and reads the
 * queue through `gcdrop status --json`. Waiting is always "until condition or
 * deadline". settle_seconds is 1 to keep the suite fast.
 */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "testutil.h"

#define WAIT_MS 30000

struct env {
	char *dir;
	char *drop;		/* watch "a": quiet time */
	char *mdrop;		/* watch "m": ready marker READY */
	char *state;
	char *conf;
	char *log;
	pid_t pid;
};

static struct env E;

/* Extra "NAME=value" entries for the daemon's environment (the watch.h test seam). */
static char *daemon_env[3];

/* A mutable copy of $GCDROP_BIN, for argv arrays. */
static char *
bin(void)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "%s", tu_gcdrop_bin());
	return buf;
}

static char *
token_env(void)
{
	static char buf[256];
	const char *t = tu_env("GRAND_CHALLENGE_AUTHORIZATION", "e2e-watch-test-token-0123456789");

	snprintf(buf, sizeof(buf), "GRAND_CHALLENGE_AUTHORIZATION=%s", t);
	return buf;
}

/* Write the configuration; 'extra' is appended inside the watches list (may be ""). */
static void
write_config(int max_settle, const char *extra)
{
	char *text = tu_strdupf(
		"api_url = \"http://127.0.0.1:9/api/v1/\";\n"
		"state_dir = \"%s\";\n"
		"log_level = \"debug\";\n"
		"watches = (\n"
		"  { name = \"a\"; path = \"%s\"; algorithm = \"alg\"; settle_seconds = 1;\n"
		"    max_settle_seconds = %d; scan_interval = 1; },\n"
		"  { name = \"m\"; path = \"%s\"; archive = \"arch\"; settle_seconds = 1;\n"
		"    max_settle_seconds = %d; scan_interval = 1; ready_marker = \"READY\"; }%s\n"
		");\n",
		E.state, E.drop, max_settle, E.mdrop, max_settle, extra);

	tu_write_file(E.conf, text, -1, 0644);
	free(text);
}

static void
setup(void)
{
	E.dir = tu_mkdtemp("e2e-watch");
	chmod(E.dir, 0755);	/* the nobody tests traverse it */
	E.drop = tu_strdupf("%s/drop", E.dir);
	E.mdrop = tu_strdupf("%s/mdrop", E.dir);
	E.state = tu_strdupf("%s/state", E.dir);
	E.conf = tu_strdupf("%s/gcdrop.conf", E.dir);
	E.log = tu_strdupf("%s/daemon.log", E.dir);
	E.pid = -1;
	memset(daemon_env, 0, sizeof(daemon_env));
	ck_assert_int_eq(mkdir(E.drop, 0755), 0);
	ck_assert_int_eq(mkdir(E.mdrop, 0755), 0);
	ck_assert_int_eq(mkdir(E.state, 0755), 0);
	write_config(60, "");
}

static void
teardown(void)
{
	if (E.pid > 0)
		tu_stop(E.pid, SIGKILL, 5000);
	tu_rmtree(E.dir);
	free(E.dir);
	free(E.drop);
	free(E.mdrop);
	free(E.state);
	free(E.conf);
	free(E.log);
}

/* ---- the daemon ---- */

static bool
log_has(const char *s)
{
	char *text = tu_read_file(E.log, NULL);
	bool found = text != NULL && strstr(text, s) != NULL;

	free(text);
	return found;
}

static bool
log_has_cb(void *ud)
{
	return log_has(ud);
}

static size_t
log_count(const char *s)
{
	char *text = tu_read_file(E.log, NULL);
	size_t n = 0;

	for (const char *p = text; p != NULL && (p = strstr(p, s)) != NULL; p++)
		n++;
	free(text);
	return n;
}

/* Start the daemon, as root or as nobody, and wait until it has started. */
static void
start_daemon_as(bool nobody)
{
	char *argv[] = { bin(), "run", "-c", E.conf, NULL };
	size_t before = log_count("started with");
	long long deadline = tu_now_ms() + WAIT_MS;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(E.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		sigset_t none;

		dup2(fd, 1);
		dup2(fd, 2);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (nobody && (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0))
			_exit(126);
		putenv(token_env());
		for (size_t i = 0; i < GC_ARRAY_SIZE(daemon_env) && daemon_env[i] != NULL; i++)
			putenv(daemon_env[i]);
		execv(argv[0], argv);
		_exit(127);
	}
	E.pid = pid;
	while (log_count("started with") <= before) {
		int status;

		ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0, "gcdrop run exited at start-up");
		ck_assert_msg(tu_now_ms() < deadline, "gcdrop run did not start");
		usleep(10000);
	}
}

static void
start_daemon(void)
{
	start_daemon_as(false);
}

static void
stop_daemon(int sig)
{
	int status = tu_stop(E.pid, sig, 15000);

	if (sig == SIGTERM)
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "gcdrop run did not exit 0 on SIGTERM (status %d)", status);
	E.pid = -1;
}

/* ---- the queue, through `gcdrop status --json` ---- */

static cJSON *
status(void)
{
	char *argv[] = { bin(), "status", "-c", E.conf, "--json", NULL };
	char *env[] = { token_env(), NULL };
	char *out = NULL, *err = NULL;
	cJSON *root;
	int rc = tu_run(argv, env, 60000, &out, &err);

	ck_assert_msg(rc == 0, "gcdrop status failed (%d): %s", rc, err);
	root = cJSON_Parse(out);
	ck_assert_msg(root != NULL, "gcdrop status --json is not JSON: %.200s", out);
	free(out);
	free(err);
	return root;
}

/*
 * Cases with this name (NULL: any) and state (NULL: any state of the queue) in a
 * status document. Cases still settling (listed without an id) count only when
 * 'state' is "settling": "in the queue" means queued or further.
 */
static int
count_in(const cJSON *root, const char *watch, const char *name, const char *state)
{
	const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases"), *c;
	int n = 0;

	cJSON_ArrayForEach(c, cases)
	{
		const char *w = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "watch"));
		const char *nm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name"));
		const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "state"));

		if ((watch == NULL || (w != NULL && strcmp(w, watch) == 0)) &&
		    (name == NULL || (nm != NULL && strcmp(nm, name) == 0)) &&
		    (state == NULL ? st == NULL || strcmp(st, "settling") != 0
				   : st != NULL && strcmp(st, state) == 0))
			n++;
	}
	return n;
}

static int
count_cases(const char *name, const char *state)
{
	cJSON *root = status();
	int n = count_in(root, NULL, name, state);

	cJSON_Delete(root);
	return n;
}

/* The case object named 'name' (first one); NULL when absent. */
static const cJSON *
find_case(const cJSON *root, const char *name)
{
	const cJSON *c;

	cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases"))
	{
		const char *nm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name"));

		if (nm != NULL && strcmp(nm, name) == 0)
			return c;
	}
	return NULL;
}

struct want {
	const char *name;
	const char *state;
	int n;
};

static bool
want_cb(void *ud)
{
	const struct want *w = ud;

	return count_cases(w->name, w->state) >= w->n;
}

/* Wait until at least n cases named 'name' (NULL: any) are in 'state'. */
static void
wait_cases(const char *name, const char *state, int n, int timeout_ms)
{
	struct want w = { name, state, n };

	ck_assert_msg(tu_wait_until(want_cb, &w, timeout_ms),
	              "timed out waiting for %d case(s) '%s' %s", n, name != NULL ? name : "*",
	              state);
}

/* ---- making cases ---- */

static char *
pathf(const char *dir, const char *name)
{
	return tu_strdupf("%s/%s", dir, name);
}

static void
mkdir_p(const char *path)
{
	ck_assert_msg(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir '%s': %s", path,
	              strerror(errno));
}

/* A case folder 'name' in 'dir' with n files of 'size' bytes, built aside and moved in. */
static void
drop_case(const char *dir, const char *name, int n, int size)
{
	char *stage = tu_strdupf("%s/.stage-%s", E.dir, name), *dst = pathf(dir, name);
	char *data = malloc((size_t)size + 1);

	memset(data, 'x', (size_t)size);
	mkdir_p(stage);
	for (int i = 0; i < n; i++) {
		char *f = tu_strdupf("%s/file%03d.dcm", stage, i);

		tu_write_file(f, data, size, 0644);
		free(f);
	}
	ck_assert_int_eq(rename(stage, dst), 0);
	free(stage);
	free(dst);
	free(data);
}

/* ---- core ---- */

/*
 * Property: a case moved in at once, one copied file by file, and a single-file
 * case are each queued once with all their files; the copied one is not queued
 * before its last write plus settle_seconds.
 */
START_TEST(test_moved_copied_single)
{
	char *copied = pathf(E.drop, "copied"), *f;
	long long last_write;
	cJSON *root;

	start_daemon();
	drop_case(E.drop, "moved", 3, 1000);
	mkdir_p(copied);
	for (int i = 0; i < 4; i++) {
		f = tu_strdupf("%s/slice%d.dcm", copied, i);
		tu_write_file(f, "0123456789", 10, 0644);
		free(f);
		usleep(300000);	/* pauses shorter than settle_seconds */
	}
	last_write = tu_now_ms();
	f = pathf(E.drop, "single.mha");
	tu_write_file(f, "single", -1, 0644);
	free(f);
	/* Not too early: nothing of 'copied' until its last write + 1 s (minus polling slack). */
	while (tu_now_ms() < last_write + 850)
		ck_assert_int_eq(count_cases("copied", NULL), 0);
	wait_cases("copied", "queued", 1, WAIT_MS);
	wait_cases("moved", "queued", 1, WAIT_MS);
	wait_cases("single.mha", "queued", 1, WAIT_MS);
	root = status();
	ck_assert_int_eq(count_in(root, "a", NULL, NULL), 3);
	ck_assert_int_eq(
	    cJSON_GetNumberValue(cJSON_GetObjectItem(find_case(root, "moved"), "bytes_total")),
	    3000);
	ck_assert_int_eq(
	    cJSON_GetNumberValue(cJSON_GetObjectItem(find_case(root, "copied"), "bytes_total")),
	    40);
	ck_assert_int_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(find_case(root, "single.mha"),
								   "bytes_total")), 6);
	cJSON_Delete(root);
	ck_assert(log_has("case 'copied' detected, settling"));
	ck_assert(log_has("case 'moved' queued: 3 files, 3000 bytes"));
	stop_daemon(SIGTERM);
	free(copied);
}
END_TEST

/*
 * Property: a file growing slowly for longer than settle_seconds, in pauses
 * shorter than it, is queued only after it stopped, with its final size.
 */
START_TEST(test_growing_file)
{
	char *p = pathf(E.drop, "growing.raw");
	long long stopped;
	cJSON *root;
	int fd;

	start_daemon();
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(write(fd, "0123456789abcdef", 16), 16);
		usleep(600000);
		ck_assert_int_eq(count_cases("growing.raw", NULL), 0);
	}
	ck_assert_int_eq(write(fd, "end", 3), 3);
	stopped = tu_now_ms();
	close(fd);
	while (tu_now_ms() < stopped + 850)
		ck_assert_int_eq(count_cases("growing.raw", NULL), 0);
	wait_cases("growing.raw", "queued", 1, WAIT_MS);
	root = status();
	ck_assert_int_eq(count_in(root, NULL, "growing.raw", NULL), 1);
	ck_assert_int_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(find_case(root, "growing.raw"),
								   "bytes_total")), 8 * 16 + 3);
	cJSON_Delete(root);
	stop_daemon(SIGTERM);
	free(p);
}
END_TEST

/*
 * Property: with a ready marker, a case waits for it however quiet it is, and is
 * queued right after it appears; the marker is not part of the case. Prints the
 * time from the marker's creation to `queued` (the "Done when" number).
 */
START_TEST(test_marker_latency)
{
	char *c = pathf(E.mdrop, "study-1"), *f;
	long long t0, t1 = 0;
	cJSON *root;

	start_daemon();
	mkdir_p(c);
	f = pathf(c, "image.mha");
	tu_write_file(f, "0123456789", 10, 0644);
	free(f);
	ck_assert(tu_wait_until(log_has_cb, "case 'study-1' detected", WAIT_MS));
	usleep(1500000);	/* longer than settle_seconds: still not ready without the marker */
	ck_assert_int_eq(count_cases("study-1", NULL), 0);
	f = pathf(c, "READY");
	t0 = tu_now_ms();
	tu_write_file(f, "", 0, 0644);
	free(f);
	while (tu_now_ms() < t0 + WAIT_MS) {
		if (count_cases("study-1", "queued") == 1) {
			t1 = tu_now_ms();
			break;
		}
	}
	ck_assert_msg(t1 > 0, "not queued after the marker");
	fprintf(stderr, "e2e_watch: ready marker -> queued: %lld ms (status polled back to back)\n",
		t1 - t0);
	root = status();
	ck_assert_int_eq(
	    cJSON_GetNumberValue(cJSON_GetObjectItem(find_case(root, "study-1"), "bytes_total")),
	    10);
	cJSON_Delete(root);
	stop_daemon(SIGTERM);
	free(c);
}
END_TEST

/*
 * Property: `gcdrop enqueue --watch NAME PATH` queues a folder outside the watch
 * folder (named after its last component) through the same walk and de-dup.
 */
START_TEST(test_enqueue_cli)
{
	char *outside = pathf(E.dir, "outside"), *c = pathf(outside, "manual case"),
	     *f = pathf(c, "f.dcm");
	char *argv[] = { bin(), "enqueue", "-c", E.conf, "--watch", "a", c, NULL };
	char *env[] = { token_env(), NULL };

	mkdir_p(outside);
	mkdir_p(c);
	tu_write_file(f, "hello", -1, 0644);
	start_daemon();
	ck_assert_int_eq(tu_run(argv, env, 20000, NULL, NULL), 0);
	wait_cases("manual case", "queued", 1, WAIT_MS);
	/* The same path again: same content, not queued twice. */
	ck_assert_int_eq(tu_run(argv, env, 20000, NULL, NULL), 0);
	ck_assert(
	    tu_wait_until(log_has_cb, "is already in the queue with the same content", WAIT_MS));
	ck_assert_int_eq(count_cases("manual case", NULL), 1);
	stop_daemon(SIGTERM);
	free(outside);
	free(c);
	free(f);
}
END_TEST

static bool
held_is(const char *name, bool held)
{
	cJSON *root = status();
	const cJSON *c = find_case(root, name);
	bool r = c != NULL && cJSON_IsTrue(cJSON_GetObjectItem(c, "held")) == held;

	cJSON_Delete(root);
	return r;
}

static bool
held_cb(void *ud)
{
	return held_is("h1", *(bool *)ud);
}

/* Property: hold and release requests (per case and --all) are consumed by the daemon. */
START_TEST(test_hold_release)
{
	char *hold[] = { bin(), "hold", "-c", E.conf, "h1", NULL };
	char *release_all[] = { bin(), "release", "-c", E.conf, "--all", NULL };
	char *hold_all[] = { bin(), "hold", "-c", E.conf, "--all", NULL };
	char *env[] = { token_env(), NULL };
	bool yes = true, no = false;

	start_daemon();
	drop_case(E.drop, "h1", 1, 10);
	wait_cases("h1", "queued", 1, WAIT_MS);
	ck_assert(held_is("h1", false));
	ck_assert_int_eq(tu_run(hold, env, 20000, NULL, NULL), 0);
	ck_assert(tu_wait_until(held_cb, &yes, 10000));
	ck_assert_int_eq(tu_run(release_all, env, 20000, NULL, NULL), 0);
	ck_assert(tu_wait_until(held_cb, &no, 10000));
	/* hold --all also holds cases queued afterwards. */
	ck_assert_int_eq(tu_run(hold_all, env, 20000, NULL, NULL), 0);
	ck_assert(tu_wait_until(held_cb, &yes, 10000));
	drop_case(E.drop, "h2", 1, 10);
	wait_cases("h2", "queued", 1, WAIT_MS);
	ck_assert(held_is("h2", true));
	stop_daemon(SIGTERM);
}
END_TEST

/*
 * Property: two cases with the same name dropped one after the other with
 * different content are two cases; the first one dropped again unchanged (same
 * paths, sizes and mtimes: the same fingerprint) is not queued again, and that
 * is said once.
 */
START_TEST(test_same_name_different_content)
{
	char *c = pathf(E.drop, "dup"), *kept = pathf(E.dir, "kept-dup");

	start_daemon();
	drop_case(E.drop, "dup", 2, 100);
	wait_cases("dup", "queued", 1, WAIT_MS);
	ck_assert_int_eq(rename(c, kept), 0);
	drop_case(E.drop, "dup", 2, 200);
	wait_cases("dup", "queued", 2, WAIT_MS);
	tu_rmtree(c);
	ck_assert_int_eq(rename(kept, c), 0);
	ck_assert(tu_wait_until(
	    log_has_cb, "case 'dup' is already in the queue with the same content", WAIT_MS));
	ck_assert_int_eq(count_cases("dup", NULL), 2);
	ck_assert_uint_eq(log_count("case 'dup' is already in the queue"), 1);
	stop_daemon(SIGTERM);
	free(c);
	free(kept);
}
END_TEST

/* Property: names with spaces, quotes, newlines and non-UTF-8 bytes are cases like any other. */
START_TEST(test_odd_names)
{
	static const char *const names[] = {"with space", "q'uo\"te", "new\nline",
	                                    "bad\xff\xfe-utf8"};
	cJSON *root;

	start_daemon();
	for (size_t i = 0; i < 4; i++)
		drop_case(E.drop, names[i], 1, 7);
	wait_cases(NULL, "queued", 4, WAIT_MS);
	root = status();
	ck_assert_int_eq(count_in(root, "a", NULL, NULL), 4);
	ck_assert_int_eq(count_in(root, NULL, "with space", "queued"), 1);
	ck_assert_int_eq(count_in(root, NULL, "q'uo\"te", "queued"), 1);
	ck_assert_int_eq(count_in(root, NULL, "new\nline", "queued"), 1);
	ck_assert_int_eq(count_in(root, NULL, "bad\xef\xbf\xbd\xef\xbf\xbd-utf8", "queued"), 1);
	cJSON_Delete(root);
	/* Each event is one log line, however the name looks. */
	ck_assert(log_has("case 'new\\nline' queued"));
	stop_daemon(SIGTERM);
}
END_TEST

/* ---- limits ---- */

/* Property: a case of 20,000 files in nested folders 10 levels deep is queued once, complete. */
START_TEST(test_big_deep_case)
{
	char *stage = pathf(E.dir, "big"), *dst = pathf(E.drop, "big"), *p = strdup(stage), *q;
	cJSON *root;

	mkdir_p(stage);
	for (int i = 0; i < 10; i++) {
		q = tu_strdupf("%s/level%d", p, i);
		mkdir_p(q);
		free(p);
		p = q;
	}
	q = pathf(p, "deepest.dcm");
	tu_write_file(q, "deep", -1, 0644);
	free(q);
	for (int d = 0; d < 20; d++) {
		char *sub = tu_strdupf("%s/series%02d", stage, d);

		mkdir_p(sub);
		for (int i = 0; i < 1000; i++) {
			if (d == 19 && i == 999)
				break;	/* 19,999 here plus the deepest file */
			q = tu_strdupf("%s/img%04d.dcm", sub, i);
			tu_write_file(q, "12345678", 8, 0644);
			free(q);
		}
		free(sub);
	}
	start_daemon();
	ck_assert_int_eq(rename(stage, dst), 0);
	wait_cases("big", "queued", 1, 60000);
	root = status();
	ck_assert_int_eq(count_in(root, NULL, "big", NULL), 1);
	ck_assert_int_eq(
	    cJSON_GetNumberValue(cJSON_GetObjectItem(find_case(root, "big"), "bytes_total")),
	    19999 * 8 + 4);
	cJSON_Delete(root);
	ck_assert(log_has("case 'big' queued: 20000 files, 159996 bytes"));
	stop_daemon(SIGTERM);
	free(stage);
	free(dst);
	free(p);
}
END_TEST

/*
 * Property: an empty case folder is not a case yet: it waits (no failure after
 * settle_seconds) and is queued once files arrive; one that stays empty fails
 * after max_settle_seconds with a message saying so.
 */
START_TEST(test_empty_folders)
{
	char *late = pathf(E.drop, "filled-late"), *never = pathf(E.drop, "never-filled"), *f;
	cJSON *root;
	const char *err;

	write_config(5, "");
	start_daemon();
	mkdir_p(late);
	mkdir_p(never);
	usleep(2500000);
	ck_assert_int_eq(count_cases(NULL, NULL), 0);
	f = pathf(late, "now.dcm");
	tu_write_file(f, "data", -1, 0644);
	free(f);
	wait_cases("filled-late", "queued", 1, WAIT_MS);
	wait_cases("never-filled", "failed", 1, WAIT_MS);
	root = status();
	err = cJSON_GetStringValue(cJSON_GetObjectItem(find_case(root, "never-filled"), "error"));
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, "still empty after 5 s") != NULL, "error: %s", err);
	cJSON_Delete(root);
	/* Filled afterwards, `gcdrop retry` lets it settle again: one case, queued. */
	f = pathf(never, "finally.dcm");
	tu_write_file(f, "data", -1, 0644);
	free(f);
	{
		char *argv[] = { bin(), "retry", "-c", E.conf, "never-filled", NULL };
		char *env[] = { token_env(), NULL };

		ck_assert_int_eq(tu_run(argv, env, 20000, NULL, NULL), 0);
	}
	wait_cases("never-filled", "queued", 1, WAIT_MS);
	ck_assert_int_eq(count_cases("never-filled", NULL), 1);
	stop_daemon(SIGTERM);
	free(late);
	free(never);
}
END_TEST

/*
 * Property: 10,000 cases dropped at once, while the daemon is stopped long enough
 * for the inotify queue to overflow (each case: mkdir under a temporary name,
 * one file, rename = 3 events, 30,000 > max_queued_events 16384), are all found,
 * each exactly once.
 */
START_TEST(test_10000_cases_overflow)
{
	enum { N = 10000 };
	cJSON *root;
	int distinct = 0;
	long long t0;

	start_daemon();
	ck_assert_int_eq(kill(E.pid, SIGSTOP), 0);
	for (int i = 0; i < N; i++) {
		char *tmp = tu_strdupf("%s/c%05d.tmp", E.drop, i),
		     *dst = tu_strdupf("%s/c%05d", E.drop, i);
		char *f = tu_strdupf("%s/f.dcm", tmp);

		ck_assert_int_eq(mkdir(tmp, 0755), 0);
		tu_write_file(f, "x", 1, 0644);
		ck_assert_int_eq(rename(tmp, dst), 0);
		free(tmp);
		free(dst);
		free(f);
	}
	t0 = tu_now_ms();
	ck_assert_int_eq(kill(E.pid, SIGCONT), 0);
	wait_cases(NULL, "queued", N, 100000);
	fprintf(stderr, "e2e_watch: 10000 cases queued %lld ms after the daemon resumed\n",
		tu_now_ms() - t0);
	ck_assert(log_has("inotify event queue overflowed"));
	root = status();
	ck_assert_int_eq(count_in(root, NULL, NULL, NULL), N);
	for (int i = 0; i < N; i += 997) {
		char name[16];

		snprintf(name, sizeof(name), "c%05d", i);
		distinct += count_in(root, "a", name, "queued");
	}
	ck_assert_int_eq(distinct, (N + 996) / 997);
	cJSON_Delete(root);
	stop_daemon(SIGTERM);
}
END_TEST

/*
 * Drop cases 'prefix'0..n-1 (one file each) and wait until all are queued; then,
 * over a few more scan intervals, each must stay queued exactly once, and no
 * rescan may have met one as a new case again.
 */
static void
drop_and_check_once(const char *dir, const char *prefix, int n)
{
	char name[32];
	cJSON *root;

	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s%d", prefix, i);
		drop_case(dir, name, 1, 10 + i);
	}
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s%d", prefix, i);
		wait_cases(name, "queued", 1, WAIT_MS);
	}
	usleep(3500000);	/* three more scans: the property is that nothing happens */
	root = status();
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s%d", prefix, i);
		ck_assert_msg(count_in(root, "a", name, NULL) == 1, "case %s not queued once",
			      name);
	}
	cJSON_Delete(root);
	ck_assert_uint_eq(log_count("is already in the queue"), 0);
}

/*
 * Property: with the inotify watch budget exhausted before the first watch
 * (fs.inotify.max_user_watches, faked by GCDROP_TEST_WATCH_LIMIT=0) every
 * watch folder is scanned every scan_interval instead, which is logged once per
 * watch with the sysctl to raise; cases dropped are found by those scans and
 * queued exactly once, however many scans follow.
 */
START_TEST(test_watch_limit_root)
{
	daemon_env[0] = "GCDROP_TEST_WATCH_LIMIT=0";
	start_daemon();
	drop_and_check_once(E.drop, "lim", 3);
	ck_assert(log_has("case 'lim0' detected by a rescan, settling"));
	ck_assert_uint_eq(log_count("watch 'a': the inotify watch limit is reached; scanning"),
			  1);
	ck_assert_uint_eq(log_count("watch 'm': the inotify watch limit is reached; scanning"),
			  1);
	ck_assert(log_has("'sysctl fs.inotify.max_user_watches=N'"));
	/* A restart says it once again, no more. */
	stop_daemon(SIGTERM);
	start_daemon();
	drop_and_check_once(E.drop, "again", 1);
	ck_assert_uint_eq(log_count("watch 'a': the inotify watch limit is reached; scanning"),
			  2);
	stop_daemon(SIGTERM);
}
END_TEST

/*
 * Property: with a budget that covers the two watch folders but no case
 * (GCDROP_TEST_WATCH_LIMIT=2), cases are still detected by the folder's
 * watch and settle by periodic walks instead of inotify: the limit is logged
 * once for the daemon (with the sysctl), and every case is queued exactly once,
 * with all its files.
 */
START_TEST(test_watch_limit_cases)
{
	cJSON *root;

	daemon_env[0] = "GCDROP_TEST_WATCH_LIMIT=2";
	start_daemon();
	drop_and_check_once(E.drop, "deep", 3);
	ck_assert_uint_eq(log_count("cases that cannot be watched are scanned every "
				    "scan_interval instead"), 1);
	ck_assert(log_has("'sysctl fs.inotify.max_user_watches=N'"));
	root = status();
	ck_assert_int_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(find_case(root, "deep2"),
								   "bytes_total")), 12);
	cJSON_Delete(root);
	stop_daemon(SIGTERM);
}
END_TEST

/*
 * Property: a watch folder on a network filesystem (statfs f_type NFS, faked by
 * GCDROP_TEST_NETFS) is scanned every scan_interval instead of watched, which is
 * logged once; its cases are found by those scans and queued exactly once; the
 * other (local) watch keeps inotify.
 */
START_TEST(test_network_folder)
{
	char *env = tu_strdupf("GCDROP_TEST_NETFS=%s", E.drop);

	daemon_env[0] = env;
	start_daemon();
	drop_and_check_once(E.drop, "nfs", 3);
	ck_assert(log_has("case 'nfs0' detected by a rescan, settling"));
	ck_assert_uint_eq(log_count("is on a network filesystem, where inotify misses other "
				    "hosts' writes; scanning it every 1 s instead"), 1);
	/* The local watch is not affected: a case there is found by inotify. */
	drop_case(E.mdrop, "local", 1, 5);
	{
		char *m = pathf(E.mdrop, "local/READY");

		tu_write_file(m, "", 0, 0644);
		free(m);
	}
	wait_cases("local", "queued", 1, WAIT_MS);
	ck_assert(log_has("case 'local' detected, settling"));
	stop_daemon(SIGTERM);
	free(env);
}
END_TEST

/* ---- errors ---- */

static int
prepare_for_nobody(void)
{
	return chown(E.state, 65534, 65534);
}

/*
 * Property: a daemon running unprivileged fails a case holding a folder it
 * cannot read, naming the path; the other cases are not disturbed.
 */
START_TEST(test_unreadable_dir)
{
	char *c = pathf(E.drop, "locked"), *sub = pathf(c, "private"), *f = pathf(sub, "x.dcm");
	cJSON *root;
	const char *err;

	ck_assert_int_eq(prepare_for_nobody(), 0);
	mkdir_p(c);
	mkdir_p(sub);
	tu_write_file(f, "secret", -1, 0644);
	chmod(sub, 0700);	/* root's; the daemon runs as nobody */
	start_daemon_as(true);
	drop_case(E.drop, "fine", 1, 5);
	wait_cases("locked", "failed", 1, WAIT_MS);
	wait_cases("fine", "queued", 1, WAIT_MS);
	root = status();
	err = cJSON_GetStringValue(cJSON_GetObjectItem(find_case(root, "locked"), "error"));
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, "private") != NULL, "error does not name the folder: %s", err);
	cJSON_Delete(root);
	ck_assert(log_has("case 'locked' failed"));
	stop_daemon(SIGTERM);
	free(c);
	free(sub);
	free(f);
}
END_TEST

/*
 * Property: a symlink loop inside a case is skipped with a warning and the case
 * is queued; a symlink pointing outside the watch folder fails its case with a
 * clear message.
 */
START_TEST(test_symlinks)
{
	char *loop = pathf(E.dir, "loopcase"), *out = pathf(E.dir, "outcase"), *p;
	cJSON *root;
	const char *err;

	mkdir_p(loop);
	p = pathf(loop, "a.dcm");
	tu_write_file(p, "aaaa", -1, 0644);
	free(p);
	p = pathf(loop, "l1");
	ck_assert_int_eq(symlink("l2", p), 0);
	free(p);
	p = pathf(loop, "l2");
	ck_assert_int_eq(symlink("l1", p), 0);
	free(p);
	mkdir_p(out);
	p = pathf(out, "b.dcm");
	tu_write_file(p, "bbbb", -1, 0644);
	free(p);
	p = pathf(out, "passwd");
	ck_assert_int_eq(symlink("/etc/passwd", p), 0);
	free(p);
	start_daemon();
	p = pathf(E.drop, "loopcase");
	ck_assert_int_eq(rename(loop, p), 0);
	free(p);
	p = pathf(E.drop, "outcase");
	ck_assert_int_eq(rename(out, p), 0);
	free(p);
	wait_cases("loopcase", "queued", 1, WAIT_MS);
	wait_cases("outcase", "failed", 1, WAIT_MS);
	root = status();
	ck_assert_int_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(find_case(root, "loopcase"),
								   "bytes_total")), 4);
	err = cJSON_GetStringValue(cJSON_GetObjectItem(find_case(root, "outcase"), "error"));
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, "outside") != NULL, "error: %s", err);
	cJSON_Delete(root);
	stop_daemon(SIGTERM);
	free(loop);
	free(out);
}
END_TEST

/*
 * Property: files vanishing while a case settles (and while it is walked) leave
 * a case queued once with exactly the files that remain.
 */
START_TEST(test_files_vanish)
{
	char *c = pathf(E.drop, "shrinking");
	cJSON *root;

	mkdir_p(c);
	for (int i = 0; i < 3000; i++) {
		char *f = tu_strdupf("%s/f%04d", c, i);

		tu_write_file(f, "12", 2, 0644);
		free(f);
	}
	start_daemon();
	for (int i = 0; i < 3000; i += 2) {
		char *f = tu_strdupf("%s/f%04d", c, i);

		ck_assert_int_eq(unlink(f), 0);
		free(f);
	}
	wait_cases("shrinking", "queued", 1, WAIT_MS);
	root = status();
	ck_assert_int_eq(count_in(root, NULL, "shrinking", NULL), 1);
	ck_assert_int_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(find_case(root, "shrinking"),
								   "bytes_total")), 1500 * 2);
	cJSON_Delete(root);
	stop_daemon(SIGTERM);
	free(c);
}
END_TEST

/*
 * Property: a watch folder missing at start-up is a clear error naming the watch
 * and the path; the other watches work; the folder is picked up when it appears.
 */
START_TEST(test_missing_watch_at_startup)
{
	char *missing = pathf(E.dir, "later");
	char *extra = tu_strdupf(",\n  { name = \"late\"; path = \"%s\"; algorithm = \"alg\";"
				 " settle_seconds = 1; scan_interval = 1; }", missing);
	char *expect = tu_strdupf("watch 'late': folder '%s' is not usable", missing);

	write_config(60, extra);
	start_daemon();
	ck_assert(log_has(expect));
	drop_case(E.drop, "ok-case", 1, 3);
	wait_cases("ok-case", "queued", 1, WAIT_MS);
	mkdir_p(missing);
	drop_case(missing, "late-case", 1, 3);
	wait_cases("late-case", "queued", 1, WAIT_MS);
	ck_assert(log_has("watch 'late': folder"));
	ck_assert(log_has("is back, watching it"));
	stop_daemon(SIGTERM);
	free(missing);
	free(extra);
	free(expect);
}
END_TEST

/* Property: a second daemon on the same state directory exits 1 and says why. */
START_TEST(test_second_instance)
{
	char *argv[] = { bin(), "run", "-c", E.conf, NULL };
	char *env[] = { token_env(), NULL };
	char *err = NULL;

	start_daemon();
	ck_assert_int_eq(tu_run(argv, env, 20000, NULL, &err), 1);
	ck_assert_msg(strstr(err, "another gcdrop daemon is running") != NULL, "stderr: %s", err);
	free(err);
	stop_daemon(SIGTERM);
}
END_TEST

/* Property: a bad configuration refuses to start with exit status 78 and the file named. */
START_TEST(test_bad_config)
{
	char *argv[] = { bin(), "run", "-c", E.conf, NULL };
	char *env[] = { token_env(), NULL };
	char *err = NULL;

	tu_write_file(E.conf, "api_url = 5;\n", -1, 0644);
	ck_assert_int_eq(tu_run(argv, env, 20000, NULL, &err), 78);
	ck_assert_msg(strstr(err, E.conf) != NULL, "stderr: %s", err);
	free(err);
}
END_TEST

/* ---- recovery ---- */

/* Drop n cases, one every 'gap_us', alternately moved in and written in place. */
static pid_t
start_dropper(int n, int gap_us)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid != 0)
		return pid;
	for (int i = 0; i < n; i++) {
		char name[32];

		snprintf(name, sizeof(name), "r%03d", i);
		if (i % 2 == 0) {
			drop_case(E.drop, name, 2, 50);
		} else {
			char *c = pathf(E.drop, name), *f;

			mkdir_p(c);
			f = pathf(c, "one.dcm");
			tu_write_file(f, "in place", -1, 0644);
			free(f);
			free(c);
		}
		usleep((useconds_t)gap_us);
	}
	_exit(0);
}

static void
check_all_once(int n)
{
	cJSON *root = status();

	ck_assert_int_eq(count_in(root, NULL, NULL, NULL), n);
	for (int i = 0; i < n; i++) {
		char name[32];

		snprintf(name, sizeof(name), "r%03d", i);
		ck_assert_msg(count_in(root, "a", name, "queued") == 1,
		              "case %s not queued exactly once", name);
	}
	cJSON_Delete(root);
}

/*
 * Property: killing the daemon (SIGKILL, then SIGTERM) while a script keeps
 * dropping cases loses none and duplicates none: after restarts every case is
 * queued exactly once.
 */
START_TEST(test_restart_while_dropping)
{
	enum { N = 60 };
	pid_t dropper;
	int status;

	start_daemon();
	dropper = start_dropper(N, 60000);	/* about 3.6 s of drops */
	usleep(1200000);
	stop_daemon(SIGKILL);
	usleep(300000);	/* cases keep arriving while it is down */
	start_daemon();
	usleep(1000000);
	stop_daemon(SIGTERM);
	start_daemon();
	ck_assert_int_eq(waitpid(dropper, &status, 0), dropper);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	wait_cases(NULL, "queued", N, 60000);
	check_all_once(N);
	/* A further restart finds nothing new and queues nothing twice. */
	stop_daemon(SIGTERM);
	start_daemon();
	usleep(1500000);
	check_all_once(N);
	stop_daemon(SIGTERM);
}
END_TEST

/* Property: a case dropped while the daemon is down is found at the next start. */
START_TEST(test_dropped_while_down)
{
	drop_case(E.drop, "offline", 2, 10);
	start_daemon();
	wait_cases("offline", "queued", 1, WAIT_MS);
	ck_assert(log_has("case 'offline' detected by a rescan, settling"));
	stop_daemon(SIGTERM);
}
END_TEST

/*
 * Property: a watch folder deleted and re-created is watched again (within
 * scan_interval) and cases dropped into the new folder are queued.
 */
START_TEST(test_watch_folder_recreated)
{
	start_daemon();
	drop_case(E.drop, "before", 1, 3);
	wait_cases("before", "queued", 1, WAIT_MS);
	tu_rmtree(E.drop);
	ck_assert(tu_wait_until(log_has_cb, "was deleted or moved away", WAIT_MS));
	mkdir_p(E.drop);
	drop_case(E.drop, "after", 1, 3);
	wait_cases("after", "queued", 1, WAIT_MS);
	ck_assert_int_eq(count_cases(NULL, NULL), 2);
	stop_daemon(SIGTERM);
}
END_TEST

/* Property: SIGHUP reloads the configuration; a watch added there starts working. */
START_TEST(test_reload_adds_watch)
{
	char *added = pathf(E.dir, "added");
	char *extra = tu_strdupf(",\n  { name = \"new\"; path = \"%s\"; archive = \"arch\";"
				 " settle_seconds = 1; scan_interval = 1; }", added);

	mkdir_p(added);
	start_daemon();
	write_config(60, extra);
	ck_assert_int_eq(kill(E.pid, SIGHUP), 0);
	ck_assert(tu_wait_until(log_has_cb, "configuration reloaded", WAIT_MS));
	drop_case(added, "via-reload", 1, 3);
	wait_cases("via-reload", "queued", 1, WAIT_MS);
	/* A broken file on reload keeps the old configuration. */
	tu_write_file(E.conf, "watches = 7;\n", -1, 0644);
	ck_assert_int_eq(kill(E.pid, SIGHUP), 0);
	ck_assert(tu_wait_until(log_has_cb, "keeping the old one", WAIT_MS));
	write_config(60, extra);	/* for `gcdrop status`; the daemon is not told */
	drop_case(added, "still-watched", 1, 3);
	wait_cases("still-watched", "queued", 1, WAIT_MS);
	stop_daemon(SIGTERM);
	free(added);
	free(extra);
}
END_TEST

static Suite *
e2e_suite(void)
{
	Suite *s = suite_create("e2e_watch");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_moved_copied_single);
	tcase_add_test(tc, test_growing_file);
	tcase_add_test(tc, test_marker_latency);
	tcase_add_test(tc, test_enqueue_cli);
	tcase_add_test(tc, test_hold_release);
	tcase_add_test(tc, test_same_name_different_content);
	tcase_add_test(tc, test_odd_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_big_deep_case);
	tcase_add_test(tc, test_empty_folders);
	tcase_add_test(tc, test_10000_cases_overflow);
	tcase_add_test(tc, test_watch_limit_root);
	tcase_add_test(tc, test_watch_limit_cases);
	tcase_add_test(tc, test_network_folder);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_unreadable_dir);
	tcase_add_test(tc, test_symlinks);
	tcase_add_test(tc, test_files_vanish);
	tcase_add_test(tc, test_missing_watch_at_startup);
	tcase_add_test(tc, test_second_instance);
	tcase_add_test(tc, test_bad_config);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_restart_while_dropping);
	tcase_add_test(tc, test_dropped_while_down);
	tcase_add_test(tc, test_watch_folder_recreated);
	tcase_add_test(tc, test_reload_adds_watch);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(e2e_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
