/*
 * e2e_ops.c: gcdrop run as systemd runs it, end to end, with the real binary.
 *
 * Property proved by the suite: the daemon speaks the service manager's
 * protocol (READY=1 once it works, a STATUS= line that follows the cases,
 * RELOADING=1 / READY=1 around SIGHUP, STOPPING=1, watchdog pings that stop
 * while a worker is stuck and resume when it moves), reloads watches without
 * losing a case, stops within TimeoutStopSec during an upload and resumes it
 * without uploading twice, obeys hold / release within a second (hold --all
 * also across a restart), shows the cases it settles in `gcdrop status`, logs every
 * state change once with its GCDROP_* fields and never a secret, and starts
 * no new work while the state directory is short of space.
 *
 * Each test starts the emulator (tests/fakegc over HTTPS, one CA for the
 * whole suite through opts.tls_dir) and a notification socket of its own (an
 * AF_UNIX datagram socket in the test's directory, read by a thread that
 * timestamps every message), writes a configuration with archive watches,
 * and runs `gcdrop run` with NOTIFY_SOCKET pointing at it. GCDROP_PART_SIZE
 * makes parts 64 KiB, so that a few MiB are many parts. Waiting is "until
 * condition or deadline"; fixed sleeps appear only where the property is that
 * nothing happens for a while.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "fakegc-client.h"
#include "sha256.h"
#include "testutil.h"

#define WAIT_MS 60000

static const char MHA_HEAD[] = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 1\n"
			       "ElementSpacing = 1 1 1\nElementType = MET_UCHAR\n"
			       "ElementDataFile = LOCAL\n";

/* Made once by main() (before any fork), so that every emulator reuses one CA. */
static char *tls_dir;

static struct fakegc *fg;
static char *dir, *conf, *log_path, *tok_path;
static pid_t pid = -1;
static int settle_seconds = 1;	/* of every watch write_conf() writes */

/* ---- the notification socket ---- */

struct nmsg {
	long long t;	/* tu_now_ms() at reception */
	char *text;	/* the datagram, NUL-terminated */
};

static struct {
	pthread_mutex_t mu;
	struct nmsg *v;
	size_t n, cap;
	int fd;
	atomic_bool stop;
	pthread_t th;
	bool running;
	char path[108];
} nl = { .mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };

static void *
notify_reader(void *ud)
{
	char buf[4096];

	(void)ud;
	while (!atomic_load(&nl.stop)) {
		ssize_t n = recv(nl.fd, buf, sizeof(buf) - 1, 0);

		if (n < 0)
			continue;	/* the receive timeout: look at the stop flag */
		buf[n] = '\0';
		pthread_mutex_lock(&nl.mu);
		if (nl.n == nl.cap) {
			nl.cap = nl.cap ? nl.cap * 2 : 256;
			nl.v = realloc(nl.v, nl.cap * sizeof(*nl.v));
		}
		nl.v[nl.n].t = tu_now_ms();
		nl.v[nl.n].text = strdup(buf);
		nl.n++;
		pthread_mutex_unlock(&nl.mu);
	}
	return NULL;
}

static void
notify_open(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };

	ck_assert_int_lt(snprintf(nl.path, sizeof(nl.path), "%s/notify.sock", dir),
			 (int)sizeof(sa.sun_path));
	memcpy(sa.sun_path, nl.path, strlen(nl.path) + 1);
	nl.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(nl.fd, 0);
	ck_assert_int_eq(bind(nl.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(setsockopt(nl.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	atomic_store(&nl.stop, false);
	ck_assert_int_eq(pthread_create(&nl.th, NULL, notify_reader, NULL), 0);
	nl.running = true;
}

static void
notify_close(void)
{
	if (nl.running) {
		atomic_store(&nl.stop, true);
		pthread_join(nl.th, NULL);
		nl.running = false;
	}
	if (nl.fd >= 0)
		close(nl.fd);
	nl.fd = -1;
	for (size_t i = 0; i < nl.n; i++)
		free(nl.v[i].text);
	free(nl.v);
	nl.v = NULL;
	nl.n = nl.cap = 0;
}

/* Whether datagram 'text' holds the line 'line' ("READY=1") or a line starting with it. */
static bool
has_line(const char *text, const char *line, bool prefix)
{
	size_t len = strlen(line);

	for (const char *p = text; p != NULL && *p != '\0';) {
		const char *nl_ = strchr(p, '\n');
		size_t l = nl_ != NULL ? (size_t)(nl_ - p) : strlen(p);

		if (prefix ? l >= len && strncmp(p, line, len) == 0
			   : l == len && strncmp(p, line, len) == 0)
			return true;
		p = nl_ != NULL ? nl_ + 1 : NULL;
	}
	return false;
}

/* Index of the first message at or after 'from' holding 'line' (exact); -1 when none. */
static long
notify_find(size_t from, const char *line)
{
	long r = -1;

	pthread_mutex_lock(&nl.mu);
	for (size_t i = from; i < nl.n && r < 0; i++)
		if (has_line(nl.v[i].text, line, false))
			r = (long)i;
	pthread_mutex_unlock(&nl.mu);
	return r;
}

static size_t
notify_n(void)
{
	size_t n;

	pthread_mutex_lock(&nl.mu);
	n = nl.n;
	pthread_mutex_unlock(&nl.mu);
	return n;
}

/* A copy of message i's text and its time. */
static char *
notify_get(size_t i, long long *ret_t)
{
	char *s;

	pthread_mutex_lock(&nl.mu);
	s = strdup(nl.v[i].text);
	if (ret_t != NULL)
		*ret_t = nl.v[i].t;
	pthread_mutex_unlock(&nl.mu);
	return s;
}

struct nwait {
	size_t from;
	const char *line;
};

static bool
notify_seen_cond(void *ud)
{
	const struct nwait *w = ud;

	return notify_find(w->from, w->line) >= 0;
}

/* Wait for 'line' in a message at or after 'from'; returns its index. */
static size_t
notify_wait(size_t from, const char *line, int timeout_ms)
{
	struct nwait w = { from, line };
	char *log;

	if (tu_wait_until(notify_seen_cond, &w, timeout_ms))
		return (size_t)notify_find(from, line);
	log = tu_read_file(log_path, NULL);
	ck_abort_msg("no %s from the daemon in time; daemon log:\n%s", line, log ? log : "");
	return 0;
}

/* Whether the latest STATUS= message says "idle". */
static bool
last_status_idle(void *ud)
{
	bool idle = false;

	(void)ud;
	pthread_mutex_lock(&nl.mu);
	for (size_t i = nl.n; i-- > 0;) {
		if (strncmp(nl.v[i].text, "STATUS=", 7) == 0) {
			idle = strcmp(nl.v[i].text, "STATUS=idle") == 0;
			break;
		}
	}
	pthread_mutex_unlock(&nl.mu);
	return idle;
}

/* Times of the WATCHDOG=1 pings; the caller frees. */
static long long *
ping_times(size_t *ret_n)
{
	long long *t;
	size_t n = 0;

	pthread_mutex_lock(&nl.mu);
	t = calloc(nl.n + 1, sizeof(*t));
	for (size_t i = 0; i < nl.n; i++)
		if (has_line(nl.v[i].text, "WATCHDOG=1", false))
			t[n++] = nl.v[i].t;
	pthread_mutex_unlock(&nl.mu);
	*ret_n = n;
	return t;
}

/* ---- set-up ---- */

static char *
bin(void)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "%s", tu_gcdrop_bin());
	return buf;
}

/* Start the emulator with 'faults' (may be NULL) and make the test directory. */
static void
start_emulator(double tick, const char *faults)
{
	struct fakegc_opts o = { .tls = true, .tick = tick, .min_part_size = 1,
				 .faults = faults, .tls_dir = tls_dir };
	char *s;

	ck_assert_int_eq(fakegc_start(&o, &fg), 0);
	s = tu_strdupf("%s/state", dir);
	if (mkdir(s, 0700) < 0)
		ck_assert_int_eq(errno, EEXIST);
	free(s);
	tok_path = tu_strdupf("%s/token", dir);
	tu_write_file(tok_path, fakegc_token(fg), -1, 0600);
}

static void
setup(void)
{
	dir = tu_mkdtemp("e2e_ops");
	conf = tu_strdupf("%s/gcdrop.conf", dir);
	log_path = tu_strdupf("%s/daemon.log", dir);
	settle_seconds = 1;
	notify_open();
}

static void
teardown(void)
{
	if (pid > 0)
		tu_stop(pid, SIGKILL, 5000);
	pid = -1;
	fakegc_stop(fg);
	fg = NULL;
	notify_close();
	tu_rmtree(dir);
	free(dir);
	free(conf);
	free(log_path);
	free(tok_path);
	tok_path = NULL;
}

/* A watch folder under the test directory (made if needed); malloc'd path. */
static char *
watch_dir(const char *name)
{
	char *p = tu_strdupf("%s/in-%s", dir, name);

	if (mkdir(p, 0755) < 0)
		ck_assert_int_eq(errno, EEXIST);
	return p;
}

/*
 * (Re)write the configuration: archive watches named by 'watches' (NULL-
 * terminated), each on folder in-<name>, with 'extra' top-level settings.
 */
static void
write_conf(const char *const *watches, int workers, const char *min_free, const char *state_dir)
{
	char *text, *ws = strdup(""), *sd;

	sd = state_dir != NULL ? strdup(state_dir) : tu_strdupf("%s/state", dir);
	for (const char *const *w = watches; *w != NULL; w++) {
		char *path = watch_dir(*w);
		char *n = tu_strdupf("%s%s { name = \"%s\"; path = \"%s\"; archive = "
				     "\"demo-archive\"; settle_seconds = %d; }",
				     ws, ws[0] != '\0' ? ",\n" : "", *w, path, settle_seconds);

		free(ws);
		free(path);
		ws = n;
	}
	text = tu_strdupf("api_url = \"%s\";\ntoken_file = \"%s\";\nca_file = \"%s\";\n"
			  "state_dir = \"%s\";\nworkers = %d;\nmax_attempts = 6;\n"
			  "min_free_space = \"%s\";\nlog_level = \"info\";\n"
			  "watches = (\n%s\n);\n",
			  fakegc_api_url(fg), tok_path, fakegc_ca_file(fg), sd, workers, min_free,
			  ws);
	tu_write_file(conf, text, -1, 0644);
	free(text);
	free(ws);
	free(sd);
}

/*
 * Start `gcdrop run` with NOTIFY_SOCKET and small parts. With watchdog_ms > 0
 * it also gets WATCHDOG_USEC, and WATCHDOG_PID = its own pid (through a shell
 * that execs it, so the pid is known before the daemon runs), and the stall
 * limit GCDROP_STALL_LIMIT_MS = stall_ms.
 */
static void
start_daemon_wd(long watchdog_ms, long stall_ms)
{
	char *ns = tu_strdupf("NOTIFY_SOCKET=%s", nl.path);
	char *wd = tu_strdupf("WATCHDOG_USEC=%ld", watchdog_ms * 1000);
	char *sl = tu_strdupf("GCDROP_STALL_LIMIT_MS=%ld", stall_ms);
	char *env[] = { "GCDROP_PART_SIZE=65536", ns, NULL, NULL, NULL };
	char *argv[] = { bin(), "run", "-c", conf, NULL };
	char *shargv[] = { "/bin/sh", "-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\"", bin(), "run",
			   "-c", conf, NULL };

	if (watchdog_ms > 0) {
		env[2] = wd;
		env[3] = sl;
	}
	pid = tu_spawn(watchdog_ms > 0 ? shargv : argv, env, log_path);
	ck_assert_int_gt(pid, 0);
	/* The child has its copies; the parent's strings can go. */
	free(ns);
	free(wd);
	free(sl);
}

static void
start_daemon(void)
{
	start_daemon_wd(0, 0);
}

static int
stop_daemon(int sig)
{
	int st = tu_stop(pid, sig, 15000);

	pid = -1;
	return st;
}

/* ---- the queue and the platform ---- */

static cJSON *
status(void)
{
	char *argv[] = { bin(), "status", "-c", conf, "--json", NULL };
	char *out = NULL;
	cJSON *j;
	int rc = tu_run(argv, NULL, 10000, &out, NULL);

	ck_assert_int_eq(rc, 0);
	j = cJSON_Parse(out);
	free(out);
	ck_assert_ptr_nonnull(j);
	return j;
}

static cJSON *
find_case(cJSON *root, const char *name)
{
	cJSON *c;

	cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
		const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(c, "name"));

		if (n != NULL && strcmp(n, name) == 0)
			return c;
	}
	return NULL;
}

/* The state of case 'name' in `gcdrop status --json`; malloc'd, NULL when absent. */
static char *
case_state(const char *name)
{
	cJSON *root = status(), *c = find_case(root, name);
	const char *st = c ? cJSON_GetStringValue(cJSON_GetObjectItem(c, "state")) : NULL;
	char *r = st != NULL ? strdup(st) : NULL;

	cJSON_Delete(root);
	return r;
}

struct want {
	const char *const *names;
	const char *state;
};

static bool
all_in_state(void *ud)
{
	const struct want *w = ud;
	bool ok = true;

	for (const char *const *n = w->names; *n != NULL && ok; n++) {
		char *st = case_state(*n);

		ok = st != NULL && strcmp(st, w->state) == 0;
		free(st);
	}
	return ok;
}

static void
wait_state(const char *const *names, const char *state, int timeout_ms)
{
	struct want w = { names, state };
	char *log;

	if (tu_wait_until(all_in_state, &w, timeout_ms))
		return;
	log = tu_read_file(log_path, NULL);
	ck_abort_msg("cases not %s in time; daemon log:\n%s", state, log ? log : "");
}

static void
write_mha(const char *path, size_t size, unsigned seed)
{
	size_t head = strlen(MHA_HEAD);
	char *data = malloc(size + head + 1);

	memcpy(data, MHA_HEAD, head);
	for (size_t i = head; i < size + head; i++) {
		seed = seed * 1103515245 + 12345;
		data[i] = (char)(seed >> 16);
	}
	tu_write_file(path, data, (ssize_t)(size + head), 0644);
	free(data);
}

/*
 * Drop a case of one .mha image of 'size' bytes into watch 'watch' (built
 * aside, then moved in, as scanners do); its sha256 into ret_sha (may be NULL).
 */
static void
drop_case(const char *watch, const char *name, size_t size, char ret_sha[SHA256_HEX_SIZE])
{
	char *stage = tu_strdupf("%s/stage-%s", dir, name);
	char *wdir = watch_dir(watch);
	char *dst = tu_strdupf("%s/%s", wdir, name);
	char *f = tu_strdupf("%s/image.mha", stage);

	ck_assert_int_eq(mkdir(stage, 0755), 0);
	unsigned seed = (unsigned)size;

	for (const char *c = name; *c != '\0'; c++)
		seed = seed * 31u + (unsigned char)*c;	/* distinct content per case */
	write_mha(f, size, seed);
	if (ret_sha != NULL)
		ck_assert_int_eq(sha256_file(AT_FDCWD, f, ret_sha), 0);
	ck_assert_int_eq(rename(stage, dst), 0);
	free(stage);
	free(wdir);
	free(dst);
	free(f);
}

static int
array_size(cJSON *st, const char *key)
{
	return cJSON_GetArraySize(cJSON_GetObjectItem(st, key));
}

/* Requests the emulator counted whose key contains 'what' (NULL: all but control). */
static int
requests(const char *what)
{
	cJSON *st = fakegc_state(fg), *x;
	int n = 0;

	ck_assert_ptr_nonnull(st);
	cJSON_ArrayForEach(x, cJSON_GetObjectItem(st, "requests")) {
		if (strstr(x->string, "__fakegc__") != NULL)
			continue;
		if (what == NULL || strstr(x->string, what) != NULL)
			n += x->valueint;
	}
	cJSON_Delete(st);
	return n;
}

static bool
puts_at_least(void *ud)
{
	return requests("PUT /s3/") >= *(int *)ud;
}

/* Uploads on the platform whose sha256 is 'sha'. */
static int
uploads_with_sha(const char *sha)
{
	cJSON *st = fakegc_state(fg), *u;
	int n = 0;

	cJSON_ArrayForEach(u, cJSON_GetObjectItem(st, "uploads")) {
		const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(u, "sha256"));

		if (s != NULL && strcmp(s, sha) == 0)
			n++;
	}
	cJSON_Delete(st);
	return n;
}

static int
count_in_log(const char *s)
{
	return tu_count_in_file(log_path, s);
}

static bool
log_has_cond(void *ud)
{
	return count_in_log(ud) > 0;
}

static void
wait_log(const char *s, int timeout_ms)
{
	char *copy = strdup(s), *log;
	bool ok = tu_wait_until(log_has_cond, copy, timeout_ms);

	free(copy);
	if (ok)
		return;
	log = tu_read_file(log_path, NULL);
	ck_abort_msg("'%s' not logged in time; daemon log:\n%s", s, log ? log : "");
}

/* ---- the STATUS= line ---- */

static const char *const state_names[] = { "settling", "queued", "uploading", "importing",
					   "submitted", "running", "retry-wait", "failed", NULL };

/*
 * Whether a STATUS= value follows progress.h's grammar: "idle", or items
 * "N state" (uploading may carry "(X left, R/s)"), ", "-separated, in
 * lifecycle order, optionally ending in ", N held".
 */
static bool
status_parses(const char *line)
{
	const char *p = line;
	int last = -1;

	if (strcmp(line, "idle") == 0)
		return true;
	while (*p != '\0') {
		char *end;
		long n = strtol(p, &end, 10);
		int k;

		if (end == p || n <= 0 || *end != ' ')
			return false;
		p = end + 1;
		for (k = 0; state_names[k] != NULL; k++) {
			size_t l = strlen(state_names[k]);

			if (strncmp(p, state_names[k], l) == 0 &&
			    (p[l] == '\0' || p[l] == ',' || p[l] == ' '))
				break;
		}
		if (state_names[k] == NULL) {
			if (strncmp(p, "held", 4) == 0 && p[4] == '\0')
				return last >= 0;
			return false;
		}
		if (k <= last)
			return false;
		last = k;
		p += strlen(state_names[k]);
		if (*p == ' ') {
			const char *close = strchr(p, ')');

			if (strcmp(state_names[k], "uploading") != 0 || p[1] != '(' ||
			    close == NULL)
				return false;
			p = close + 1;
		}
		if (*p == '\0')
			break;
		if (strncmp(p, ", ", 2) != 0)
			return false;
		p += 2;
	}
	return last >= 0;
}

/* ---- the tests ---- */

START_TEST(test_notify_protocol)
{
	/*
	 * Property: READY=1 comes once the daemon works; STATUS= lines all parse
	 * and follow the cases (uploading with bytes left, then idle once they
	 * succeeded); SIGHUP brings RELOADING=1 (with MONOTONIC_USEC) then READY=1;
	 * SIGTERM brings STOPPING=1 and exit 0.
	 */
	static const char *const watches[] = { "a", NULL };
	static const char *const names[] = { "c1", "c2", NULL };
	bool saw_uploading = false, saw_left = false, saw_idle_after = false;
	size_t i, n, reload, ready2;
	char *text;
	int st;

	start_emulator(0.05, "{\"rules\": [{\"route\": \"s3-put\", \"action\": \"latency\", "
			     "\"latency\": 0.05}], \"limits\": {\"min_part_size\": 1}}");
	write_conf(watches, 2, "1M", NULL);
	start_daemon();
	notify_wait(0, "READY=1", 15000);
	/* Nothing settles before READY=1: the first status comes with or after it. */
	ck_assert_int_eq(notify_find(0, "STOPPING=1"), -1);
	drop_case("a", "c1", 40 * 65536, NULL);
	drop_case("a", "c2", 1000, NULL);
	wait_state(names, "succeeded", WAIT_MS);
	/* The STATUS= line after success: idle (succeeded is history). */
	ck_assert_msg(tu_wait_until(last_status_idle, NULL, 5000), "no STATUS=idle at the end");
	n = notify_n();
	for (i = 0; i < n; i++) {
		long long t;

		text = notify_get(i, &t);
		if (strncmp(text, "STATUS=", 7) == 0) {
			const char *line = text + 7;

			ck_assert_msg(strchr(line, '\n') == NULL, "multi-line status '%s'", line);
			ck_assert_msg(status_parses(line), "STATUS line does not parse: '%s'",
				      line);
			if (strstr(line, "uploading") != NULL) {
				saw_uploading = true;
				if (strstr(line, " left") != NULL)
					saw_left = true;
			}
			if (saw_uploading && strcmp(line, "idle") == 0)
				saw_idle_after = true;
		}
		free(text);
	}
	ck_assert_msg(saw_uploading, "no STATUS line showed an upload");
	ck_assert_msg(saw_left, "no STATUS line showed the bytes left");
	ck_assert_msg(saw_idle_after, "STATUS did not go back to idle");

	/* Reload: RELOADING=1 with MONOTONIC_USEC, then READY=1. */
	n = notify_n();
	kill(pid, SIGHUP);
	reload = notify_wait(n, "RELOADING=1", 10000);
	text = notify_get(reload, NULL);
	ck_assert_msg(has_line(text, "MONOTONIC_USEC=", true),
		      "RELOADING=1 without MONOTONIC_USEC");
	free(text);
	ready2 = notify_wait(reload, "READY=1", 10000);
	ck_assert_uint_gt(ready2, reload);

	n = notify_n();
	kill(pid, SIGTERM);
	st = stop_daemon(0);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
	ck_assert_int_ge(notify_find(n, "STOPPING=1"), 0);
}
END_TEST

START_TEST(test_bad_reload_keeps_config)
{
	/*
	 * Property: a SIGHUP with a broken configuration logs the error, still
	 * answers RELOADING=1 / READY=1, and the old watches keep working.
	 */
	static const char *const watches[] = { "a", NULL };
	static const char *const names[] = { "after-bad", NULL };
	size_t n, r;

	start_emulator(0.05, NULL);
	write_conf(watches, 2, "1M", NULL);
	start_daemon();
	notify_wait(0, "READY=1", 15000);
	tu_write_file(conf, "watches = ( { name = \"a\"; unknown_key = 1; } );\n", -1, 0644);
	n = notify_n();
	kill(pid, SIGHUP);
	r = notify_wait(n, "RELOADING=1", 10000);
	notify_wait(r, "READY=1", 10000);
	wait_log("keeping the old one", 5000);
	/* Put the good file back for `gcdrop status` (the daemon does not read it again). */
	write_conf(watches, 2, "1M", NULL);
	drop_case("a", "after-bad", 3000, NULL);
	wait_state(names, "succeeded", WAIT_MS);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

START_TEST(test_watchdog_stall)
{
	/*
	 * Property: with WATCHDOG_USEC=2 s the daemon pings about every second;
	 * when every worker is stuck in a part PUT (the emulator holds it 6 s, the
	 * stall limit is 1.5 s) the pings stop for longer than WATCHDOG_USEC, so
	 * systemd would restart it, and resume when the PUT answers; the case
	 * still succeeds. The stall is logged once, and its end once.
	 */
	static const char *const watches[] = { "a", NULL };
	static const char *const names[] = { "slow", NULL };
	long long *t, stall_start, max_gap_before = 0, max_gap = 0;
	size_t n, before = 0, after = 0;
	int one = 1;

	start_emulator(0.05, NULL);
	write_conf(watches, 2, "1M", NULL);
	start_daemon_wd(2000, 1500);
	notify_wait(0, "READY=1", 15000);
	/* Pings while idle: at least 3 in 3.5 s (every second). */
	usleep(3500 * 1000);
	t = ping_times(&n);
	ck_assert_msg(n >= 3, "%zu pings while idle", n);
	free(t);

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"route\": \"s3-put\", \"action\": "
					   "\"latency\", \"latency\": 6, \"count\": 2}],"
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	drop_case("a", "slow", 4 * 65536, NULL);
	ck_assert(tu_wait_until(puts_at_least, &one, WAIT_MS));
	stall_start = tu_now_ms();
	wait_state(names, "succeeded", WAIT_MS);
	/* Pings after the stall: wait for two more. */
	{
		size_t n0;

		free(ping_times(&n0));
		for (long long end = tu_now_ms() + 5000; tu_now_ms() < end;) {
			free(ping_times(&n));
			if (n >= n0 + 2)
				break;
			usleep(50 * 1000);
		}
	}
	t = ping_times(&n);
	for (size_t i = 1; i < n; i++) {
		long long gap = t[i] - t[i - 1];

		if (t[i] < stall_start) {
			if (gap > max_gap_before)
				max_gap_before = gap;
			before++;
		} else {
			if (gap > max_gap)
				max_gap = gap;
			if (t[i - 1] >= stall_start)
				after++;
		}
	}
	fprintf(stderr, "watchdog: longest gap %lld ms before the stall, %lld ms during it; "
		"%zu pings after it\n", max_gap_before, max_gap, after);
	ck_assert_msg(max_gap_before <= 1700, "pings %lld ms apart while healthy", max_gap_before);
	ck_assert_msg(max_gap >= 3000, "pings went on while a worker was stuck (gap %lld ms)",
		      max_gap);
	ck_assert_msg(after >= 2, "pings did not resume");
	free(t);
	ck_assert_int_eq(count_in_log("has made no progress"), 1);
	ck_assert_int_eq(count_in_log("make progress again"), 1);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

START_TEST(test_reload_watches)
{
	/*
	 * Property: SIGHUP adds and removes watches while cases are in flight and
	 * none is lost: the removed watch's cases stay resumable (and finish once
	 * the watch is back), the new watch takes its cases (present before the
	 * reload and dropped after), and every case ends succeeded exactly once,
	 * as one upload and one archive item, with nothing uploaded twice.
	 */
	static const char *const w_ab[] = { "a", "b", NULL };
	static const char *const w_bc[] = { "b", "c", NULL };
	static const char *const w_abc[] = { "a", "b", "c", NULL };
	static const char *const all[] = { "a1", "a2", "b1", "b2", "c0", "c1", NULL };
	static const char *const bc[] = { "b1", "b2", "c0", "c1", NULL };
	char sha[6][SHA256_HEX_SIZE];
	int want = 8;
	size_t n, r;
	cJSON *st;

	start_emulator(0.05, "{\"rules\": [{\"route\": \"s3-put\", \"action\": \"latency\", "
			     "\"latency\": 0.1}], \"limits\": {\"min_part_size\": 1}}");
	write_conf(w_ab, 2, "1M", NULL);
	start_daemon();
	notify_wait(0, "READY=1", 15000);
	drop_case("a", "a1", 30 * 65536, sha[0]);
	drop_case("a", "a2", 30 * 65536, sha[1]);
	drop_case("b", "b1", 10 * 65536, sha[2]);
	drop_case("b", "b2", 2000, sha[3]);
	/* c's folder gets a case before c is a watch: the reload's rescan must find it. */
	drop_case("c", "c0", 3000, sha[4]);
	ck_assert(tu_wait_until(puts_at_least, &want, WAIT_MS));

	write_conf(w_bc, 2, "1M", NULL);
	n = notify_n();
	kill(pid, SIGHUP);
	r = notify_wait(n, "RELOADING=1", 10000);
	notify_wait(r, "READY=1", 10000);
	drop_case("c", "c1", 5 * 65536, sha[5]);
	wait_state(bc, "succeeded", WAIT_MS);
	/* a's cases are not lost: still in the queue, not finished, not failed. */
	{
		char *s1 = case_state("a1"), *s2 = case_state("a2");

		ck_assert_ptr_nonnull(s1);
		ck_assert_ptr_nonnull(s2);
		ck_assert_msg(strcmp(s1, "failed") != 0 && strcmp(s2, "failed") != 0,
			      "a removed watch failed its cases (%s, %s)", s1, s2);
		free(s1);
		free(s2);
	}

	/* Watch a comes back: its cases resume and finish. */
	write_conf(w_abc, 2, "1M", NULL);
	n = notify_n();
	kill(pid, SIGHUP);
	r = notify_wait(n, "RELOADING=1", 10000);
	notify_wait(r, "READY=1", 10000);
	wait_state(all, "succeeded", WAIT_MS);

	st = fakegc_state(fg);
	ck_assert_int_eq(array_size(st, "archive_items"), 6);
	ck_assert_int_eq(array_size(st, "uploads"), 6);
	cJSON_Delete(st);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(uploads_with_sha(sha[i]), 1);
	ck_assert_int_eq(requests("POST /api/v1/uploads/"), 6);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

/* Whether the daemon has exited (reaped here); its status into *ud. */
static bool
exited(void *ud)
{
	return waitpid(pid, ud, WNOHANG) == pid;
}

START_TEST(test_sigterm_during_upload)
{
	/*
	 * Property: SIGTERM during a 64 MiB upload, while parts are in flight and
	 * held by the platform longer than the stop deadline, ends the daemon
	 * with status 0 within 10 s (TimeoutStopSec); after a restart the upload
	 * resumes: one upload created, one item, the bytes on the platform
	 * identical to the file.
	 */
	static const char *const watches[] = { "a", NULL };
	static const char *const names[] = { "big", NULL };
	char sha[SHA256_HEX_SIZE];
	int want = 100, stuck, status_ = 0;
	long long t0, took;
	cJSON *st;
	size_t n;

	start_emulator(0.05, "{\"rules\": [{\"route\": \"s3-put\", \"action\": \"latency\", "
			     "\"latency\": 0.02}], \"limits\": {\"min_part_size\": 1}}");
	write_conf(watches, 4, "1M", NULL);
	start_daemon();
	notify_wait(0, "READY=1", 15000);
	drop_case("a", "big", 64 * 1024 * 1024, sha);
	ck_assert(tu_wait_until(puts_at_least, &want, WAIT_MS));
	/* From now on every part is held 30 s by the platform: the stop must cut them. */
	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"route\": \"s3-put\", \"action\": "
					   "\"latency\", \"latency\": 30}],"
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	/* Every worker is stuck once the count of PUTs stays the same for a second. */
	stuck = requests("PUT /s3/");
	for (long long last = tu_now_ms(), end = last + 10000; tu_now_ms() - last < 1000;) {
		int k = requests("PUT /s3/");

		ck_assert_msg(tu_now_ms() < end, "PUTs do not stall");
		if (k != stuck) {
			stuck = k;
			last = tu_now_ms();
		}
		usleep(50 * 1000);
	}
	n = notify_n();
	t0 = tu_now_ms();
	kill(pid, SIGTERM);
	ck_assert_msg(tu_wait_until(exited, &status_, 12000), "no exit 12 s after SIGTERM");
	took = tu_now_ms() - t0;
	pid = -1;
	fprintf(stderr, "SIGTERM to exit with 4 parts held by the platform: %lld ms\n", took);
	ck_assert_msg(WIFEXITED(status_) && WEXITSTATUS(status_) == 0, "exit status %d", status_);
	ck_assert_msg(took < 10000, "took %lld ms to stop", took);
	ck_assert_int_ge(notify_find(n, "STOPPING=1"), 0);
	{
		char *s = case_state("big");

		ck_assert_str_eq(s, "uploading");
		free(s);
	}

	/* Restart without the fault: the upload resumes. */
	ck_assert_int_eq(fakegc_set_faults(fg, "{\"limits\": {\"min_part_size\": 1}}"), 0);
	start_daemon();
	wait_state(names, "succeeded", 120000);
	st = fakegc_state(fg);
	ck_assert_int_eq(array_size(st, "uploads"), 1);
	ck_assert_int_eq(array_size(st, "archive_items"), 1);
	cJSON_Delete(st);
	ck_assert_int_eq(uploads_with_sha(sha), 1);
	ck_assert_int_eq(requests("POST /api/v1/uploads/"), 1);

	/* A stop with nothing in flight is prompt. */
	t0 = tu_now_ms();
	kill(pid, SIGTERM);
	ck_assert(tu_wait_until(exited, &status_, 12000));
	pid = -1;
	fprintf(stderr, "SIGTERM to exit when idle: %lld ms\n", tu_now_ms() - t0);
	ck_assert(WIFEXITED(status_) && WEXITSTATUS(status_) == 0);
}
END_TEST

static int
run_cli(const char *cmd, const char *arg)
{
	char *c = strdup(cmd), *a = strdup(arg);
	char *argv[] = { bin(), c, "-c", conf, a, NULL };
	int r = tu_run(argv, NULL, 10000, NULL, NULL);

	free(c);
	free(a);
	return r;
}

START_TEST(test_hold_release)
{
	/*
	 * Property: `gcdrop hold CASE` during its upload stops it within about a
	 * second: the platform sees no further request for several seconds; the
	 * case is still resumable, and `gcdrop release CASE` finishes it as one
	 * upload and one item with identical bytes.
	 */
	static const char *const watches[] = { "a", NULL };
	static const char *const names[] = { "h1", NULL };
	char sha[SHA256_HEX_SIZE];
	long long t_hold, t_quiet;
	int want = 20, last;

	start_emulator(0.05, "{\"rules\": [{\"route\": \"s3-put\", \"action\": \"latency\", "
			     "\"latency\": 0.05}], \"limits\": {\"min_part_size\": 1}}");
	write_conf(watches, 4, "1M", NULL);
	start_daemon();
	notify_wait(0, "READY=1", 15000);
	drop_case("a", "h1", 400 * 65536, sha);
	ck_assert(tu_wait_until(puts_at_least, &want, WAIT_MS));
	t_hold = tu_now_ms();
	ck_assert_int_eq(run_cli("hold", "h1"), 0);
	/* Quiet: the request count stops moving; the last change is the quiet time. */
	last = requests(NULL);
	t_quiet = tu_now_ms();
	for (long long end = tu_now_ms() + 8000; tu_now_ms() < end;) {
		int now_n = requests(NULL);

		if (now_n != last) {
			last = now_n;
			t_quiet = tu_now_ms();
		}
		if (tu_now_ms() - t_quiet >= 3000)
			break;
		usleep(50 * 1000);
	}
	fprintf(stderr, "hold to quiet: %lld ms\n", t_quiet - t_hold);
	ck_assert_msg(tu_now_ms() - t_quiet >= 3000, "requests kept coming after hold");
	ck_assert_msg(t_quiet - t_hold <= 2000, "hold took %lld ms to quiet",
		      t_quiet - t_hold);
	/* Still nothing after a few more seconds, and the case is neither done nor failed. */
	usleep(2000 * 1000);
	ck_assert_int_eq(requests(NULL), last);
	{
		char *s = case_state("h1");

		ck_assert_msg(strcmp(s, "uploading") == 0 || strcmp(s, "queued") == 0,
			      "held case is %s", s);
		free(s);
	}
	ck_assert_int_eq(run_cli("release", "h1"), 0);
	wait_state(names, "succeeded", WAIT_MS);
	ck_assert_int_eq(uploads_with_sha(sha), 1);
	ck_assert_int_eq(requests("POST /api/v1/uploads/"), 1);
	ck_assert_int_eq(count_in_log("case 'h1' held"), 1);
	ck_assert_int_eq(count_in_log("case 'h1' released"), 1);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

/* Whether case 'name' is in `gcdrop status --json` and held. */
static bool
case_held(const char *name)
{
	cJSON *root = status(), *c = find_case(root, name);
	bool held = c != NULL && cJSON_IsTrue(cJSON_GetObjectItem(c, "held"));

	cJSON_Delete(root);
	return held;
}

START_TEST(test_hold_all_persists)
{
	/*
	 * Property: `gcdrop hold --all` outlives the daemon: after a restart a
	 * case dropped is queued held and nothing of it reaches the platform;
	 * status says new cases are held; `gcdrop release --all` lets it go on to
	 * succeeded and ends the setting (a case dropped after that is not held).
	 */
	static const char *const watches[] = { "a", NULL };
	static const char *const n1[] = { "p1", NULL };
	static const char *const n2[] = { "p2", NULL };
	char *argv[] = { bin(), "status", "-c", conf, NULL };
	char *out = NULL;

	start_emulator(0.05, NULL);
	write_conf(watches, 2, "1M", NULL);
	start_daemon();
	notify_wait(0, "READY=1", 15000);
	ck_assert_int_eq(run_cli("hold", "--all"), 0);
	wait_log("holding every case", 10000);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
	start_daemon();
	wait_log("new cases are held (gcdrop hold --all", 15000);
	drop_case("a", "p1", 3000, NULL);
	wait_state(n1, "queued", WAIT_MS);
	ck_assert(case_held("p1"));
	/* The property is that nothing happens for a while. */
	usleep(2500 * 1000);
	{
		char *st = case_state("p1");

		ck_assert_str_eq(st, "queued");
		free(st);
	}
	ck_assert_int_eq(requests("POST /api/v1/uploads/"), 0);
	ck_assert_int_eq(tu_run(argv, NULL, 10000, &out, NULL), 0);
	ck_assert_msg(strncmp(out, "1 queued, 1 held\n", 17) == 0 &&
		      strstr(out, "\nnew cases are held") != NULL, "status: %s", out);
	free(out);
	ck_assert_int_eq(run_cli("release", "--all"), 0);
	wait_state(n1, "succeeded", WAIT_MS);
	ck_assert(!case_held("p1"));
	drop_case("a", "p2", 3000, NULL);
	wait_state(n2, "succeeded", WAIT_MS);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

struct settling_want {
	const char *name;
	bool settling;		/* true: listed as settling, without id; false: with an id */
};

/* Exactly one entry named w->name, settling (id null) or not (a number). */
static bool
settling_is(void *ud)
{
	const struct settling_want *w = ud;
	cJSON *root = status(), *c, *hit = NULL;
	int n = 0;
	bool ok;

	cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
		const char *nm = cJSON_GetStringValue(cJSON_GetObjectItem(c, "name"));

		if (nm != NULL && strcmp(nm, w->name) == 0) {
			hit = c;
			n++;
		}
	}
	ck_assert_int_le(n, 1);
	ok = hit != NULL;
	if (ok && w->settling) {
		const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(hit, "state"));

		ok = st != NULL && strcmp(st, "settling") == 0 &&
		     cJSON_IsNull(cJSON_GetObjectItem(hit, "id")) &&
		     cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "summary"),
							      "settling")) >= 1;
	} else if (ok) {
		ok = cJSON_IsNumber(cJSON_GetObjectItem(hit, "id"));
	}
	cJSON_Delete(root);
	return ok;
}

START_TEST(test_settling_visible)
{
	/*
	 * Property: a case settling in the daemon (settle_seconds 4) is shown by
	 * `gcdrop status` (another process) as settling, without an id, in the
	 * JSON and in the table with the summary line on top; once it settles it
	 * is shown once, queued (or further) with its id, and never both. A case
	 * still settling when the daemon stops is no longer shown.
	 */
	static const char *const watches[] = { "a", NULL };
	struct settling_want sw = { "slow", true }, qw = { "slow", false };
	struct settling_want lw = { "left", true };
	char *argv[] = { bin(), "status", "-c", conf, NULL };
	char *out = NULL;
	cJSON *root;

	settle_seconds = 4;
	start_emulator(0.05, NULL);
	write_conf(watches, 2, "1M", NULL);
	start_daemon();
	notify_wait(0, "READY=1", 15000);
	drop_case("a", "slow", 3000, NULL);
	ck_assert_msg(tu_wait_until(settling_is, &sw, 3500), "not shown as settling");
	ck_assert_int_eq(tu_run(argv, NULL, 10000, &out, NULL), 0);
	ck_assert_msg(strncmp(out, "1 settling\n\n", 12) == 0, "status: %s", out);
	ck_assert_msg(strstr(out, "slow") != NULL && strstr(out, " settling ") != NULL,
		      "status: %s", out);
	free(out);
	ck_assert_msg(tu_wait_until(settling_is, &qw, WAIT_MS), "not queued");
	/* Settling again, then the daemon stops: status no longer shows it. */
	settle_seconds = 60;
	write_conf(watches, 2, "1M", NULL);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_log("configuration reloaded", 15000);
	drop_case("a", "left", 3000, NULL);
	ck_assert_msg(tu_wait_until(settling_is, &lw, WAIT_MS), "'left' not settling");
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
	root = status();
	ck_assert_ptr_null(find_case(root, "left"));
	ck_assert_ptr_nonnull(find_case(root, "slow"));
	cJSON_Delete(root);
}
END_TEST

/* The value of field 'name' ("GCDROP_CASE") on a log line; malloc'd, NULL when absent. */
static char *
field(const char *line, const char *name)
{
	char key[64];
	const char *p, *e;

	snprintf(key, sizeof(key), "%s=", name);
	for (p = line; (p = strstr(p, key)) != NULL; p++)
		if (p == line || p[-1] == ' ' || p[-1] == '[')
			break;
	if (p == NULL)
		return NULL;
	p += strlen(key);
	e = p + strcspn(p, " ]");
	return strndup(p, (size_t)(e - p));
}

START_TEST(test_journal_lines)
{
	/*
	 * Property: every state change of a case is one log line with
	 * GCDROP_WATCH, GCDROP_CASE, GCDROP_STATE and a MESSAGE_ID; a case logs each
	 * state once however often it is polled (imports take several polls here);
	 * no line carries the token, a presigned signature or an upload id query.
	 */
	static const char *const watches[] = { "a", NULL };
	static const char *const names[] = { "j1", "j2", NULL };
	char *log, *save = NULL;
	int state_lines = 0;

	/*
	 * A slow emulator clock (2.5 s per asynchronous step): imports take
	 * several polls. One presign answers 503: a retry is not a state change.
	 */
	start_emulator(2.5, "{\"rules\": [{\"route\": \"uploads-presign\", \"status\": 503, "
			    "\"count\": 1}], \"limits\": {\"min_part_size\": 1}}");
	write_conf(watches, 2, "1M", NULL);
	start_daemon();
	notify_wait(0, "READY=1", 15000);
	drop_case("a", "j1", 8 * 65536, NULL);
	drop_case("a", "j2", 1000, NULL);
	wait_state(names, "succeeded", WAIT_MS);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);

	log = tu_read_file(log_path, NULL);
	ck_assert_ptr_nonnull(log);
	ck_assert_msg(strstr(log, fakegc_token(fg)) == NULL, "the token is in the log");
	ck_assert_msg(strstr(log, "X-Amz-Signature") == NULL, "a presigned signature is logged");
	ck_assert_msg(strstr(log, "?uploadId") == NULL && strstr(log, "uploadId=") == NULL,
		      "an upload id query is logged");
	/* (case, state) pairs seen with the case-state MESSAGE_ID, and repeated lines. */
	{
		char *pairs[256];
		int n_pairs = 0;

		for (char *line = strtok_r(log, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save)) {
			char *c = field(line, "GCDROP_CASE"), *s = field(line, "GCDROP_STATE");
			char *w = field(line, "GCDROP_WATCH"), *m = field(line, "MESSAGE_ID");

			if (c != NULL && s != NULL) {
				ck_assert_msg(w != NULL, "state change without GCDROP_WATCH: %s",
					      line);
				ck_assert_msg(m != NULL && strlen(m) == 32,
					      "state change without MESSAGE_ID: %s", line);
				state_lines++;
				/* Identical lines are a repeat, whatever their kind. */
				for (int i = 0; i < n_pairs; i++)
					ck_assert_msg(strcmp(pairs[i], line) != 0,
						      "line repeated: %s", line);
				if (n_pairs < 256)
					pairs[n_pairs++] = line;
			}
			free(c);
			free(s);
			free(w);
			free(m);
		}
	}
	/* Each case: settling, queued, uploading, importing, succeeded, one line each. */
	for (const char *const *n = names; *n != NULL; n++) {
		static const char *const want[] = { "settling", "queued", "uploading",
						    "importing", "succeeded", NULL };

		for (const char *const *s = want; *s != NULL; s++) {
			char *pat = tu_strdupf("GCDROP_CASE=%s GCDROP_STATE=%s ", *n, *s);
			int k = count_in_log(pat);

			ck_assert_msg(k == 1, "%d lines for %s", k, pat);
			free(pat);
		}
	}
	ck_assert_int_ge(state_lines, 10);
	free(log);
}
END_TEST

/* Whether mount(2) is allowed here: a private mount namespace for this test process. */
static bool
private_mounts(void)
{
	if (unshare(CLONE_NEWNS) < 0)
		return false;
	return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
}

static int
posts_uploads(void)
{
	return requests("POST /api/v1/uploads/");
}

START_TEST(test_disk_guard)
{
	/*
	 * Property: with the state directory (a 16 MiB tmpfs) below min_free_space
	 * (8 MiB) no new case starts: a case dropped then is queued and stays
	 * queued, the platform sees no new upload, one warning is logged; when
	 * space returns the case goes on to succeeded and that is logged once.
	 */
	static const char *const watches[] = { "a", NULL };
	static const char *const n1[] = { "d1", NULL };
	static const char *const n2[] = { "d2", NULL };
	char *state = NULL, *filler = NULL;
	int before;

	if (!private_mounts()) {
		fprintf(stderr, "test_disk_guard: SKIPPED: cannot make a private mount namespace "
			"(%s); needs root with CAP_SYS_ADMIN\n", strerror(errno));
		return;
	}
	state = tu_strdupf("%s/state", dir);
	ck_assert_int_eq(mkdir(state, 0700), 0);
	if (mount("tmpfs", state, "tmpfs", 0, "size=16m,mode=0700") < 0) {
		fprintf(stderr, "test_disk_guard: SKIPPED: cannot mount a tmpfs: %s\n",
			strerror(errno));
		free(state);
		return;
	}
	start_emulator(0.05, NULL);
	write_conf(watches, 2, "8M", state);
	start_daemon();
	notify_wait(0, "READY=1", 15000);
	drop_case("a", "d1", 3000, NULL);
	wait_state(n1, "succeeded", WAIT_MS);

	/* Fill the state directory to 6 MiB free. */
	filler = tu_strdupf("%s/filler", state);
	{
		size_t len = 10 * 1024 * 1024;
		char *junk = calloc(1, len);

		tu_write_file(filler, junk, (ssize_t)len, 0600);
		free(junk);
	}
	wait_log("below min_free_space", 5000);
	before = posts_uploads();
	drop_case("a", "d2", 3000, NULL);
	wait_state(n2, "queued", WAIT_MS);
	/* Nothing starts for a while: the property is that nothing happens. */
	usleep(4000 * 1000);
	{
		char *s = case_state("d2");

		ck_assert_str_eq(s, "queued");
		free(s);
	}
	ck_assert_int_eq(posts_uploads(), before);
	ck_assert_int_eq(count_in_log("below min_free_space"), 1);

	ck_assert_int_eq(unlink(filler), 0);
	wait_state(n2, "succeeded", WAIT_MS);
	ck_assert_int_eq(count_in_log("below min_free_space"), 1);
	ck_assert_int_eq(count_in_log("again, at least min_free_space"), 1);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
	free(filler);
	free(state);
}
END_TEST

static Suite *
e2e_suite(void)
{
	Suite *s = suite_create("e2e_ops");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_notify_protocol);
	tcase_add_test(tc, test_journal_lines);
	tcase_add_test(tc, test_hold_release);
	tcase_add_test(tc, test_hold_all_persists);
	tcase_add_test(tc, test_settling_visible);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_watchdog_stall);
	tcase_add_test(tc, test_disk_guard);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_bad_reload_keeps_config);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_sigterm_during_upload);
	tcase_add_test(tc, test_reload_watches);
	tcase_set_timeout(tc, 240);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(e2e_suite());
	int failed;

	/* Not tu_mkdtemp() or tu_strdupf(): their ck_asserts only work inside a test. */
	if (asprintf(&tls_dir, "%s/e2e_ops-tls-XXXXXX", tu_env("TMPDIR", "/tmp")) < 0 ||
	    mkdtemp(tls_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	tu_rmtree(tls_dir);
	free(tls_dir);
	return failed == 0 ? 0 : 1;
}
