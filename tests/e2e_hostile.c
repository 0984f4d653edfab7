/*
 * e2e_hostile.c: the hostile input corpus, issue 8.
 *
 * Property proved: whatever bad input gcdrop is given (a broken configuration,
 * a damaged queue, a case that is empty, huge, not text, changed, replaced or
 * deleted while it is being uploaded, a state directory that fills up or turns
 * read-only, a server that answers garbage or redirects in circles or to
 * another host) it ends with a clear message and the right state for the case
 * concerned, and every other case is unaffected; it never crashes, never
 * writes over what it does not understand, and never sends the token to
 * another host.
 *
 * TCases:
 *   config   every configuration in tests/data/hostile/config (each with one
 *            kind of error) is refused by `gcdrop run` and `gcdrop check
 *            --offline` with exit status 78 and a message naming the file, the
 *            line and the key;
 *   queue    a queue file that is not SQLite, and one whose pages are damaged:
 *            the daemon refuses to start with a message naming the file, and the
 *            file is left byte for byte as it was;
 *   input    one daemon, many bad cases next to good ones (0-byte file, 100 MB
 *            JSON value, invalid UTF-8 and invalid JSON values, a directory for
 *            a Value socket, a symlink out of the watch, a FIFO, an empty
 *            folder, odd names, ignored names, deep nesting with repeated file
 *            names);
 *   changes  while uploading: a file truncated, a file grown, a case deleted, a
 *            case replaced by a symlink, a 5 GiB sparse case deleted mid-way;
 *   state    the state directory full (a small tmpfs) and made read-only under
 *            a running daemon;
 *   server   a local server (127.0.0.1, plain http is allowed for loopback) that
 *            answers every API request with HTML, truncated JSON, JSON of the
 *            wrong types, a 256 MiB body, a redirect loop, or a redirect to
 *            another host that records the Authorization header it receives.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "relutil.h"
#include "testutil.h"

static struct ru_env E;
static char *arch, *results;

static char *
bin(void)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "%s", tu_gcdrop_bin());
	return buf;
}

static void
setup_fg(void)
{
	struct fakegc_opts o = {.tick = 0.05, .min_part_size = 1};

	ru_setup(&E, "e2e_hostile", &o);
	arch = ru_mkdir(&E, "in-arch");
	results = ru_mkdir(&E, "results");
}

static void
setup_plain(void)
{
	ru_setup(&E, "e2e_hostile", NULL);
	arch = ru_mkdir(&E, "in-arch");
	results = ru_mkdir(&E, "results");
}

static void
teardown(void)
{
	char *m = tu_strdupf("%s", E.state);

	if (E.pid > 0)
		ru_stop(&E, SIGKILL);
	umount2(m, MNT_DETACH);	/* the state tests mount a tmpfs there */
	free(m);
	ru_teardown(&E);
	free(arch);
	free(results);
}

static void
write_config(const char *globals, const char *watch_extra)
{
	char *w = tu_strdupf(" { name = \"arch\"; path = \"%s\"; archive = \"demo-archive\";\n"
			     "   settle_seconds = 1; results_dir = \"%s\"; %s }",
			     arch, results, watch_extra);
	char *g = tu_strdupf("workers = 4;\nmin_free_space = \"1M\";\nlog_level = \"info\";\n%s",
			     globals);

	ru_write_config(&E, g, w);
	free(w);
	free(g);
}

static const char *
state_of(const cJSON *root, const char *name)
{
	return ru_case_str(ru_case(root, NULL, name), "state");
}

static const char *
error_of(const cJSON *root, const char *name)
{
	return ru_case_str(ru_case(root, NULL, name), "error");
}

static void
assert_case(const cJSON *root, const char *name, const char *state, const char *msg)
{
	const char *st = state_of(root, name), *err = error_of(root, name);

	ck_assert_msg(st != NULL && strcmp(st, state) == 0, "case '%s' is %s, not %s (%s)", name,
		      st ? st : "absent", state, err ? err : "no error");
	if (msg != NULL)
		ck_assert_msg(ru_has(err, msg), "case '%s': error '%s' lacks '%s'", name,
			      err ? err : "(null)", msg);
}

/* ================================================================ config */

struct bad_conf {
	const char *file;
	int line;		/* 0: the message has no line */
	const char *key;
	const char *msg;
};

static const struct bad_conf bad_confs[] = {
	{"syntax", 4, NULL, "syntax error"},
	{"unterminated-string", 5, NULL, "syntax error"},
	{"unknown-key", 4, "bogus_key", "unknown key"},
	{"wrong-type", 4, "workers", "expected an integer"},
	{"out-of-range", 4, "workers", "must be between"},
	{"huge-int", 4, "workers", "too large"},
	{"two-destinations", 5, "watches[0].algorithm", "exactly one destination"},
	{"no-destination", 4, "watches[0]", "no destination"},
	{"overlapping-paths", 5, "watches[1].path", "must not overlap"},
	{"duplicate-name", 5, "watches[1].name", "duplicate watch name"},
	{"token-readable", 2, "token_file", "readable by group or others"},
	{"token-missing", 2, "token_file", "no-such-token"},
	{"http-remote", 1, "api_url", "not a loopback address"},
	{"url-scheme", 1, "api_url", "must start with https://"},
	{"url-credentials", 1, "api_url", "must not contain user credentials"},
	{"bad-size", 4, "min_free_space", "invalid size"},
	{"bad-log-level", 4, "log_level", "invalid level"},
	{"invalid-utf8", 4, "log_level", "invalid level"},
	{"move-without-dir", 4, "watches[0].on_success", "needs done_dir"},
	{"bad-action", 4, "watches[0].on_failure", "invalid value"},
	{"settle-order", 5, "watches[0].max_settle_seconds", "must not be less than"},
	{"negative-settle", 4, "watches[0].settle_seconds", "must not be negative"},
	{"bad-value-json", 5, "watches[0].values[0].json", "invalid JSON"},
	{"relative-path", 4, "watches[0].path", "absolute path"},
	{"bad-slug", 4, "watches[0].archive", "invalid slug"},
	{"no-watches", 0, "watches", "no watches"},
	{"empty", 0, "watches", "no watches"},
};

/* Copy a corpus configuration into the test directory, @DIR@ replaced. */
static char *
corpus_conf(const char *name)
{
	char *src = tu_strdupf("%s/hostile/config/%s.conf", tu_env("GCDROP_TEST_DATA", "tests/data"),
			       name);
	char *dst = tu_strdupf("%s/%s.conf", E.dir, name);
	size_t len;
	char *text = tu_read_file(src, &len), *out, *p;
	size_t dl = strlen(E.dir), n = 0;

	ck_assert_msg(text != NULL, "cannot read %s", src);
	out = malloc(len * (dl + 1) + 1);
	for (p = text; *p != '\0';) {
		if (strncmp(p, "@DIR@", 5) == 0) {
			memcpy(out + n, E.dir, dl);
			n += dl;
			p += 5;
		} else {
			out[n++] = *p++;
		}
	}
	tu_write_file(dst, out, (ssize_t)n, 0644);
	free(out);
	free(text);
	free(src);
	return dst;
}

static void
setup_config(void)
{
	char *p;

	setup_plain();
	p = tu_strdupf("%s/token", E.dir);
	tu_write_file(p, "0123456789abcdef0123456789abcdef\n", -1, 0600);
	free(p);
	p = tu_strdupf("%s/token-open", E.dir);
	tu_write_file(p, "0123456789abcdef0123456789abcdef\n", -1, 0644);
	free(p);
	free(ru_mkdir(&E, "watch-a"));
	free(ru_mkdir(&E, "watch-a/sub"));
	free(ru_mkdir(&E, "watch-b"));
}

START_TEST(test_bad_config)
{
	const struct bad_conf *b = &bad_confs[_i];
	char *conf = corpus_conf(b->file);
	char *want = b->line > 0 ? tu_strdupf("%s:%d: %s%s", conf, b->line, b->key ? b->key : "",
					      b->key ? ": " : "")
				 : tu_strdupf("%s: %s: ", conf, b->key);
	char *run[] = {bin(), "run", "-c", conf, NULL};
	char *check[] = {bin(), "check", "--offline", "-c", conf, NULL};
	char *out = NULL, *err = NULL;
	int rc;

	/* Assumption: the configuration has exactly one error, named by want + msg. */
	rc = tu_run(run, NULL, 20000, &out, &err);
	ck_assert_msg(rc == 78, "%s: gcdrop run exited %d: %s", b->file, rc, err);
	ck_assert_msg(ru_has(err, want) && ru_has(err, b->msg), "%s: '%s' lacks '%s' / '%s'",
		      b->file, err, want, b->msg);
	free(out);
	free(err);
	rc = tu_run(check, NULL, 20000, &out, &err);
	ck_assert_msg(rc == 78, "%s: gcdrop check exited %d: %s", b->file, rc, err);
	ck_assert_msg(ru_has(err, want) && ru_has(err, b->msg), "%s: '%s' lacks '%s' / '%s'",
		      b->file, err, want, b->msg);
	/* Nothing was created in the state directory. */
	{
		char *db = tu_strdupf("%s/state/gcdrop.db", E.dir);

		ck_assert_int_ne(access(db, F_OK), 0);
		free(db);
	}
	free(out);
	free(err);
	free(want);
	free(conf);
}
END_TEST

/* ================================================================ queue */

static void
write_minimal_config(void)
{
	char *text = tu_strdupf("api_url = \"https://127.0.0.1:9/api/v1/\";\n"
				"state_dir = \"%s\";\nmin_free_space = \"1M\";\n"
				"watches = ( { name = \"arch\"; path = \"%s\"; "
				"archive = \"demo-archive\"; } );\n",
				E.state, arch);

	tu_write_file(E.conf, text, -1, 0644);
	free(text);
}

static char *tok_env = "GRAND_CHALLENGE_AUTHORIZATION=0123456789abcdef0123456789abcdef";

/* Start the daemon on the queue as it is; it must refuse with 'msg' and leave the file. */
static void
assert_refused(const char *db, const char *msg)
{
	char *run[] = {bin(), "run", "-c", E.conf, NULL};
	char *status[] = {bin(), "status", "-c", E.conf, NULL};
	char *env[] = {tok_env, NULL};
	char before[SHA256_HEX_SIZE], after[SHA256_HEX_SIZE];
	char *out = NULL, *err = NULL;
	struct stat st1, st2;
	int rc;

	ru_sha256(db, before);
	ck_assert_int_eq(stat(db, &st1), 0);
	rc = tu_run(run, env, 20000, &out, &err);
	ck_assert_msg(rc == 1, "gcdrop run exited %d on a damaged queue: %.600s", rc, err);
	ck_assert_msg(ru_has(err, db) && ru_has(err, msg), "message '%.600s' lacks '%s' / '%s'", err,
		      db, msg);
	free(out);
	free(err);
	rc = tu_run(status, env, 20000, &out, &err);
	ck_assert_msg(rc != 0 && rc < 128, "gcdrop status exited %d on a damaged queue", rc);
	ck_assert_msg(ru_has(err, db), "gcdrop status: '%s' does not name the file", err);
	ck_assert_msg(!ru_has(out, "queue empty") && !ru_has(out, "\"cases\""),
		      "gcdrop status shows an empty queue for a damaged one: '%s'", out);
	free(out);
	free(err);
	{
		/* --json, too: no empty "cases" array for a queue it cannot read. */
		char *sj[] = {bin(), "status", "-c", E.conf, "--json", NULL};

		rc = tu_run(sj, env, 20000, &out, &err);
		ck_assert_msg(rc != 0 && rc < 128, "gcdrop status --json exited %d on a damaged "
			      "queue", rc);
		ck_assert_msg(ru_has(err, db), "gcdrop status --json: '%s' does not name the file",
			      err);
		ck_assert_msg(!ru_has(out, "\"cases\"") && !ru_has(out, "\"summary\""),
			      "gcdrop status --json shows an empty queue for a damaged one: '%s'",
			      out);
		free(out);
		free(err);
	}
	ru_sha256(db, after);
	ck_assert_int_eq(stat(db, &st2), 0);
	ck_assert_str_eq(before, after);
	ck_assert_int_eq(st1.st_size, st2.st_size);
}

START_TEST(test_queue_not_sqlite)
{
	char *db = tu_strdupf("%s/gcdrop.db", E.state);

	/* Assumption: something else wrote over the queue (a text file of 10 KiB). */
	write_minimal_config();
	{
		char *junk = malloc(10240);

		for (int i = 0; i < 10240; i++)
			junk[i] = "not a database\n"[i % 15];
		tu_write_file(db, junk, 10240, 0600);
		free(junk);
	}
	assert_refused(db, "not an SQLite database");
	free(db);
}
END_TEST

START_TEST(test_queue_damaged_pages)
{
	char *db = tu_strdupf("%s/gcdrop.db", E.state);
	char *run[] = {bin(), "run", "-c", E.conf, NULL};
	char *env[] = {tok_env, NULL};
	int fd;
	struct stat st;

	/*
	 * Assumption: a real queue (made by the daemon, with cases in it) whose
	 * pages after the first were overwritten: the header is fine, the b-trees
	 * are not.
	 */
	write_minimal_config();
	for (int i = 0; i < 40; i++) {
		char *f = tu_strdupf("%s/case-%02d.mha", arch, i);

		ru_write_mha(f, 100, (uint64_t)i + 1);
		free(f);
	}
	{
		pid_t pid = tu_spawn(run, env, E.log);

		E.pid = pid;
		ck_assert(ru_wait_log(&E, "started with", 20000));
		ck_assert(ru_wait_log(&E, "case-39.mha", 20000));
		ck_assert_int_eq(ru_stop(&E, SIGTERM), 0);
	}
	ck_assert_int_eq(stat(db, &st), 0);
	ck_assert_int_gt(st.st_size, 4 * 4096);
	fd = open(db, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	{
		char junk[4096];

		memset(junk, 0xA5, sizeof(junk));
		for (off_t off = 4096; off + 4096 <= st.st_size; off += 4096)
			ck_assert_int_eq(pwrite(fd, junk, sizeof(junk), off), 4096);
	}
	close(fd);
	{
		char *wal = tu_strdupf("%s-wal", db);

		ck_assert(truncate(wal, 0) == 0 || errno == ENOENT);
		free(wal);
	}
	assert_refused(db, "malformed");
	free(db);
}
END_TEST

/* ================================================================ input */

struct dirspec {
	const char *files[6];	/* "relpath=content" ("relpath=@mha" for an image) */
};

static void
fill_dir(const char *path, void *ud)
{
	const struct dirspec *d = ud;

	for (int i = 0; i < 6 && d->files[i] != NULL; i++) {
		char *spec = strdup(d->files[i]), *eq = strchr(spec, '=');
		char *f, *slash;

		*eq = '\0';
		f = tu_strdupf("%s/%s", path, spec);
		for (slash = strchr(f + strlen(path) + 1, '/'); slash != NULL;
		     slash = strchr(slash + 1, '/')) {
			*slash = '\0';
			mkdir(f, 0755);
			*slash = '/';
		}
		if (strcmp(eq + 1, "@mha") == 0)
			ru_write_mha(f, 500 + (size_t)i, (uint64_t)(uintptr_t)d + (uint64_t)i);
		else
			tu_write_file(f, eq + 1, -1, 0644);
		free(f);
		free(spec);
	}
}

static void
fill_mha_small(const char *path, void *ud)
{
	ru_write_mha(path, 700, (uint64_t)(uintptr_t)ud);
}

static void
fill_empty(const char *path, void *ud)
{
	(void)ud;
	tu_write_file(path, "", 0, 0644);
}

static void
fill_big_value(const char *path, void *ud)
{
	char *img = tu_strdupf("%s/generic-medical-image.mha", path);
	char *js = tu_strdupf("%s/lung-volume.json", path);
	int fd;
	char *buf = malloc(1 << 20);

	(void)ud;
	ru_write_mha(img, 600, 77);
	/* "1.5" and 100 MB of spaces: valid JSON, far too large for a value. */
	fd = open(js, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "1.5", 3), 3);
	memset(buf, ' ', 1 << 20);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(write(fd, buf, 1 << 20), 1 << 20);
	close(fd);
	free(buf);
	free(img);
	free(js);
}

static void
fill_symlink_out(const char *path, void *ud)
{
	char *img = tu_strdupf("%s/scan.mha", path);
	char *ln = tu_strdupf("%s/secret.mha", path);

	(void)ud;
	ru_write_mha(img, 600, 78);
	ck_assert_int_eq(symlink("/etc/passwd", ln), 0);
	free(img);
	free(ln);
}

static void
fill_fifo(const char *path, void *ud)
{
	char *img = tu_strdupf("%s/scan.mha", path);
	char *ff = tu_strdupf("%s/pipe.mha", path);

	(void)ud;
	ru_write_mha(img, 600, 79);
	ck_assert_int_eq(mkfifo(ff, 0644), 0);
	free(img);
	free(ff);
}

static void
fill_nothing(const char *path, void *ud)
{
	(void)path;
	(void)ud;
}

static void
fill_deep(const char *path, void *ud)
{
	char *p = strdup(path);

	(void)ud;
	for (int i = 0; i < 24; i++) {
		char *q = tu_strdupf("%s/level%02d", p, i);

		ck_assert_int_eq(mkdir(q, 0755), 0);
		free(p);
		p = q;
	}
	{
		char *a = tu_strdupf("%s/slice.dcm", p), *b = tu_strdupf("%s/level00/slice.dcm", path);

		tu_write_file(a, "DICM deep", -1, 0644);
		tu_write_file(b, "DICM shallow", -1, 0644);
		free(a);
		free(b);
	}
	free(p);
}

START_TEST(test_bad_inputs)
{
	static const struct dirspec bad_utf8 = {{"generic-medical-image.mha=@mha",
						 "case-metadata.json=\"caf\xe9 \xff\"", NULL}};
	static const struct dirspec bad_json = {{"generic-medical-image.mha=@mha",
						 "lung-volume.json={\"unclosed\": ", NULL}};
	static const struct dirspec dir_for_value = {{"generic-medical-image.mha=@mha",
						      "lung-volume/a.json=1.5", NULL}};
	static const char *const good[] = {"good.mha", "with space and 'quotes'.mha",
					   "new\nline.mha", "caf\xe9-latin1.mha", NULL};
	/* As `gcdrop status --json` shows them: invalid UTF-8 becomes U+FFFD. */
	static const char *const good_shown[] = {"good.mha", "with space and 'quotes'.mha",
						 "new\nline.mha", "caf\xef\xbf\xbd-latin1.mha", NULL};
	static const char *const ignored[] = {".hidden.mha", "upload.tmp", "upload.partial",
					      "upload.part", "backup.mha~", NULL};
	const char *names[32];
	int n = 0;
	cJSON *root, *st;

	write_config("max_attempts = 3;\n", "max_settle_seconds = 4;");
	ru_start_wait(&E, NULL, 30000);
	for (int i = 0; good[i] != NULL; i++) {
		ru_drop(&E, arch, good[i], false, fill_mha_small, (void *)(uintptr_t)(i + 100));
		names[n++] = good_shown[i];
	}
	for (int i = 0; ignored[i] != NULL; i++)
		ru_drop(&E, arch, ignored[i], false, fill_mha_small, (void *)(uintptr_t)(i + 200));
	ru_drop(&E, arch, "zero.mha", false, fill_empty, NULL);
	names[n++] = "zero.mha";
	ru_drop(&E, arch, "big-value", true, fill_big_value, NULL);
	names[n++] = "big-value";
	ru_drop(&E, arch, "bad-utf8", true, fill_dir, (void *)(uintptr_t)&bad_utf8);
	names[n++] = "bad-utf8";
	ru_drop(&E, arch, "bad-json", true, fill_dir, (void *)(uintptr_t)&bad_json);
	names[n++] = "bad-json";
	ru_drop(&E, arch, "dir-for-value", true, fill_dir, (void *)(uintptr_t)&dir_for_value);
	names[n++] = "dir-for-value";
	ru_drop(&E, arch, "symlink-out", true, fill_symlink_out, NULL);
	names[n++] = "symlink-out";
	ru_drop(&E, arch, "fifo", true, fill_fifo, NULL);
	names[n++] = "fifo";
	ru_drop(&E, arch, "empty-dir", true, fill_nothing, NULL);
	names[n++] = "empty-dir";
	ru_drop(&E, arch, "deep", true, fill_deep, NULL);
	names[n++] = "deep";
	names[n] = NULL;
	ru_wait_terminal(&E, "arch", names, 90000);
	ck_assert_msg(ru_exited(&E, NULL) == false, "the daemon died");

	root = ru_status(&E);
	for (int i = 0; good_shown[i] != NULL; i++)
		assert_case(root, good_shown[i], "succeeded", NULL);
	assert_case(root, "deep", "succeeded", NULL);
	for (int i = 0; ignored[i] != NULL; i++)
		ck_assert_msg(ru_count(root, NULL, ignored[i], NULL) == 0, "'%s' was queued",
			      ignored[i]);
	assert_case(root, "big-value", "failed", "too large for a value");
	assert_case(root, "bad-utf8", "failed", "not valid UTF-8");
	assert_case(root, "bad-json", "failed", "JSON");
	assert_case(root, "dir-for-value", "failed", "lung-volume");
	assert_case(root, "symlink-out", "failed", "symlink");
	/* A FIFO is skipped with a warning (reading it would block); the rest goes up. */
	assert_case(root, "fifo", "succeeded", NULL);
	ck_assert(ru_log_has(&E, "'fifo/pipe.mha' skipped"));
	assert_case(root, "empty-dir", "failed", "still empty");
	assert_case(root, "zero.mha", "failed", "could not be imported");
	for (const char *const *p = names; *p != NULL; p++) {
		const char *err = error_of(root, *p);

		fprintf(stderr, "e2e_hostile input: %-16.16s %-9s %s\n", *p, state_of(root, *p),
			err ? err : "");
	}
	cJSON_Delete(root);

	/* Nothing of the symlink's target, the FIFO or the bad cases reached the platform. */
	st = ru_fg_state(&E);
	/* good x4, deep, fifo; zero.mha got its item before its import failed. */
	ck_assert_int_eq(ru_fg_count(st, "archive_items"), 7);
	ck_assert_int_eq(ru_fg_count(st, "leaks"), 0);
	cJSON_Delete(st);
	ck_assert_int_eq(ru_stop(&E, SIGTERM), 0);
	ck_assert_int_eq(ru_grep_tree(E.log, fakegc_token(E.fg)), 0);
}
END_TEST

/* ================================================================ changes */

struct bytes_want {
	const char *name;
	long long min;
};

static bool
uploading_past(void *ud)
{
	const struct bytes_want *w = ud;
	cJSON *root = ru_status(&E);
	const cJSON *c = ru_case(root, NULL, w->name);
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(c, "bytes_done");
	bool ok = b != NULL && b->valuedouble >= (double)w->min;

	cJSON_Delete(root);
	return ok;
}

static void
fill_big(const char *path, void *ud)
{
	ru_write_mha(path, 100 * 65536, (uint64_t)(uintptr_t)ud);
}

static void
fill_big_dir(const char *path, void *ud)
{
	char *f = tu_strdupf("%s/generic-medical-image.mha", path);

	ru_write_mha(f, 100 * 65536, (uint64_t)(uintptr_t)ud);
	free(f);
}

static void
fill_sparse(const char *path, void *ud)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	(void)ud;
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "ObjectType = Image\n", 19), 19);
	ck_assert_int_eq(ftruncate(fd, 5LL << 30), 0);
	close(fd);
}

/*
 * Wait until case 'name' has sent at least 'min' bytes, and check that its
 * upload is still under way: the change the test makes next must land in the
 * middle of the upload, not after it.
 */
static void
wait_uploading(const char *name, long long min)
{
	struct bytes_want w = {name, min};
	cJSON *root;
	const cJSON *c;
	const char *st;

	if (!tu_wait_until(uploading_past, &w, 60000)) {
		ru_log_tail(&E, 3000);
		ck_abort_msg("case '%s' did not start uploading", name);
	}
	root = ru_status(&E);
	c = ru_case(root, NULL, name);
	st = ru_case_str(c, "state");
	ck_assert_msg(st != NULL && strcmp(st, "uploading") == 0 &&
			      cJSON_GetObjectItemCaseSensitive(c, "bytes_done")->valuedouble <
				  cJSON_GetObjectItemCaseSensitive(c, "bytes_total")->valuedouble,
		      "case '%s' is %s, no longer mid-upload: the test came too late", name,
		      st ? st : "absent");
	cJSON_Delete(root);
}

struct err_want {
	const char *name;
	const char *text;
};

static bool
failed_with(void *ud)
{
	const struct err_want *w = ud;
	cJSON *root = ru_status(&E);
	const cJSON *c;
	bool ok = false;

	cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases"))
	{
		const char *n = ru_case_str(c, "name"), *st = ru_case_str(c, "state");

		ok = ok || (n != NULL && strcmp(n, w->name) == 0 && st != NULL &&
			    strcmp(st, "failed") == 0 && ru_has(ru_case_str(c, "error"), w->text));
	}
	cJSON_Delete(root);
	return ok;
}

/* Wait until a case named 'name' has failed with 'text' in its error. */
static void
wait_failed_with(const char *name, const char *text)
{
	struct err_want w = {name, text};

	if (!tu_wait_until(failed_with, &w, 60000)) {
		ru_log_tail(&E, 3000);
		ck_abort_msg("case '%s' did not fail with '%s'", name, text);
	}
}

static char orig_shas[8][SHA256_HEX_SIZE];
static int n_orig;

static void
remember(const char *rel)
{
	char *f = tu_strdupf("%s/%s", arch, rel);

	ru_sha256(f, orig_shas[n_orig++]);
	free(f);
}

static bool
known_sha(const char *s, const char *a, const char *b)
{
	if (s == NULL)
		return false;
	for (int i = 0; i < n_orig; i++)
		if (strcmp(s, orig_shas[i]) == 0)
			return true;
	return strcmp(s, a) == 0 || strcmp(s, b) == 0;
}

static bool
items_are(void *ud)
{
	cJSON *st = ru_fg_state(&E);
	bool ok = ru_fg_count(st, "archive_items") == *(int *)ud;

	cJSON_Delete(st);
	return ok;
}

/*
 * The cases are changed one after the other, each while its own upload is
 * under way: 100 parts of 64 KiB, every part PUT held 0.3 s by the emulator,
 * at most 4 in flight, so an upload takes at least 7.5 s and the change (made
 * as soon as the first part is recorded) lands in its middle whatever order
 * the daemon takes the cases in. (It used to drop all cases at once and
 * change them in a fixed order: a case the daemon happened to upload first
 * could be complete before the test reached it, and then rightly succeeded.)
 */
START_TEST(test_changes_while_uploading)
{
	const char *first[] = {"good.mha", "trunc.mha", "grow.mha", "gone", "swapped",
			       "sparse.mha", NULL};
	char *p, *q, sha_trunc[SHA256_HEX_SIZE], sha_grow[SHA256_HEX_SIZE];
	char sha_decoy[SHA256_HEX_SIZE] = "";
	cJSON *root;
	int items = 3;

	ck_assert_int_eq(fakegc_set_faults(E.fg, "{\"rules\": [{\"route\": \"s3-put\", "
					   "\"action\": \"latency\", \"latency\": 0.3}],"
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	write_config("max_attempts = 3;\n", "");
	ru_start_wait(&E, NULL, 30000);
	n_orig = 0;
	/* A case left alone, uploading next to the others: it is unaffected. */
	ru_drop(&E, arch, "good.mha", false, fill_big, (void *)1);
	remember("good.mha");

	/* A file truncated to half while its parts go up. */
	ru_drop(&E, arch, "trunc.mha", false, fill_big, (void *)2);
	remember("trunc.mha");
	wait_uploading("trunc.mha", 65536);
	p = tu_strdupf("%s/trunc.mha", arch);
	ck_assert_int_eq(truncate(p, 50 * 65536), 0);
	ru_sha256(p, sha_trunc);
	free(p);
	wait_failed_with("trunc.mha", "changed or vanished while being uploaded");

	/* A file that grows. */
	ru_drop(&E, arch, "grow.mha", false, fill_big, (void *)3);
	remember("grow.mha");
	wait_uploading("grow.mha", 65536);
	p = tu_strdupf("%s/grow.mha", arch);
	{
		int fd = open(p, O_WRONLY | O_APPEND);

		ck_assert_int_eq(write(fd, "more bytes", 10), 10);
		close(fd);
	}
	ru_sha256(p, sha_grow);
	free(p);
	wait_failed_with("grow.mha", "changed or vanished while being uploaded");

	/* A case deleted. */
	ru_drop(&E, arch, "gone", true, fill_big_dir, (void *)4);
	remember("gone/generic-medical-image.mha");
	wait_uploading("gone", 65536);
	p = tu_strdupf("%s/gone", arch);
	tu_rmtree(p);
	free(p);
	wait_failed_with("gone", "vanished");

	/*
	 * A case replaced by a symlink to a folder outside the watch: a decoy
	 * folder whose file has the same name, size and mtime but other bytes.
	 * The upload must notice (it opens nothing through a symlink) and never
	 * mix the two files.
	 */
	ru_drop(&E, arch, "swapped", true, fill_big_dir, (void *)5);
	remember("swapped/generic-medical-image.mha");
	wait_uploading("swapped", 65536);
	p = tu_strdupf("%s/swapped", arch);
	q = tu_strdupf("%s/elsewhere", E.dir);
	ck_assert_int_eq(rename(p, q), 0);
	{
		char *d = tu_strdupf("%s/decoy", E.dir);
		char *f = tu_strdupf("%s/decoy/generic-medical-image.mha", E.dir);
		char *o = tu_strdupf("%s/generic-medical-image.mha", q);
		struct stat sb;

		ck_assert_int_eq(mkdir(d, 0755), 0);
		ru_write_mha(f, 100 * 65536, 4242);
		ru_sha256(f, sha_decoy);
		ck_assert_int_eq(stat(o, &sb), 0);
		{
			struct timespec ts[2] = {sb.st_atim, sb.st_mtim};

			ck_assert_int_eq(utimensat(AT_FDCWD, f, ts, 0), 0);
		}
		ck_assert_int_eq(symlink(d, p), 0);
		free(d);
		free(f);
		free(o);
	}
	free(p);
	free(q);
	wait_failed_with("swapped", "changed or vanished while being uploaded");

	/* 5 GiB (sparse): queued without reading it, then deleted mid-way. */
	ru_drop(&E, arch, "sparse.mha", false, fill_sparse, NULL);
	wait_uploading("sparse.mha", 65536);
	root = ru_status(&E);
	{
		const cJSON *c = ru_case(root, NULL, "sparse.mha");

		ck_assert(cJSON_GetObjectItemCaseSensitive(c, "bytes_total")->valuedouble ==
			  (double)(5LL << 30) + 0.0);
	}
	cJSON_Delete(root);
	p = tu_strdupf("%s/sparse.mha", arch);
	ck_assert_int_eq(unlink(p), 0);
	free(p);

	ru_wait_terminal(&E, "arch", first, 120000);
	/* The symlink put in the swapped case's place is refused as its own case. */
	wait_failed_with("swapped", "is a symlink; symlinks are not followed");
	/* The truncated and the grown file settle again as new cases and succeed. */
	ck_assert_msg(ru_wait_state(&E, "trunc.mha", "succeeded", 60000), "trunc.mha not redone");
	ck_assert_msg(ru_wait_state(&E, "grow.mha", "succeeded", 60000), "grow.mha not redone");
	/* Exactly good, trunc and grow (redone) hold an item: no changed case got one. */
	if (!tu_wait_until(items_are, &items, 30000)) {
		cJSON *st = ru_fg_state(&E);

		ck_abort_msg("%d archive items, not %d", ru_fg_count(st, "archive_items"), items);
	}
	root = ru_status(&E);
	assert_case(root, "good.mha", "succeeded", NULL);
	ck_assert_int_eq(ru_count(root, NULL, "good.mha", NULL), 1);
	ck_assert_int_eq(ru_count(root, NULL, "trunc.mha", "failed"), 1);
	ck_assert_int_eq(ru_count(root, NULL, "grow.mha", "failed"), 1);
	ck_assert_int_eq(ru_count(root, NULL, "trunc.mha", NULL), 2);
	ck_assert_int_eq(ru_count(root, NULL, "grow.mha", NULL), 2);
	assert_case(root, "gone", "failed", "vanished");
	ck_assert_int_eq(ru_count(root, NULL, "gone", NULL), 1);
	assert_case(root, "sparse.mha", "failed", "vanished");
	ck_assert_int_eq(ru_count(root, NULL, "sparse.mha", NULL), 1);
	/* The swapped case and the symlink: two cases, both failed. */
	ck_assert_int_eq(ru_count(root, NULL, "swapped", "failed"), 2);
	ck_assert_int_eq(ru_count(root, NULL, "swapped", NULL), 2);
	{
		const cJSON *c;

		cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases"))
			fprintf(stderr, "e2e_hostile changes: %-10s %-9s %s\n",
				ru_case_str(c, "name"), ru_case_str(c, "state"),
				ru_case_str(c, "error") ? ru_case_str(c, "error") : "");
	}
	cJSON_Delete(root);
	{
		/* The bytes on the platform are the final ones, never a torn mix. */
		cJSON *st = ru_fg_state(&E);
		const cJSON *img, *u;
		bool t = false, g = false;

		cJSON_ArrayForEach(img, cJSON_GetObjectItemCaseSensitive(st, "images"))
		{
			const cJSON *f;

			cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(img, "files"))
			{
				const char *s = cJSON_GetStringValue(
				    cJSON_GetObjectItemCaseSensitive(f, "sha256"));

				t = t || (s != NULL && strcmp(s, sha_trunc) == 0);
				g = g || (s != NULL && strcmp(s, sha_grow) == 0);
				ck_assert_msg(s == NULL || strcmp(s, sha_decoy) != 0,
					      "the decoy outside the watch was uploaded");
			}
		}
		/* Every completed upload is the sha of a file as it was queued or redone. */
		cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(st, "uploads"))
		{
			const char *d = cJSON_GetStringValue(
			    cJSON_GetObjectItemCaseSensitive(u, "deleted"));
			const char *s = cJSON_GetStringValue(
			    cJSON_GetObjectItemCaseSensitive(u, "sha256"));

			if (d != NULL && strcmp(d, "consumed") == 0)
				ck_assert_msg(known_sha(s, sha_trunc, sha_grow),
					      "a consumed upload holds unknown bytes (torn?) %s", s);
		}
		ck_assert(t && g);
		ck_assert_int_eq(ru_fg_count(st, "archive_items"), items);
		ck_assert_int_eq(ru_fg_count(st, "leaks"), 0);
		cJSON_Delete(st);
	}
	ck_assert_msg(!ru_exited(&E, NULL), "the daemon died");
	ck_assert_int_eq(ru_stop(&E, SIGTERM), 0);
}
END_TEST

/* ================================================================ state */

START_TEST(test_disk_full)
{
	const char *names[] = {"before.mha", "during.mha", NULL};
	char *filler = tu_strdupf("%s/filler", E.state);
	cJSON *root;
	int fd;

	/* Assumption: the state directory is its own small filesystem (tmpfs, 8 MiB). */
	if (mount("tmpfs", E.state, "tmpfs", 0, "size=8m,mode=0700") < 0) {
		fprintf(stderr, "e2e_hostile: cannot mount a tmpfs (%s): the full-disk test needs "
				"root and CAP_SYS_ADMIN\n", strerror(errno));
		ck_assert_msg(errno == EPERM, "mount: %s", strerror(errno));
		return;
	}
	write_config("max_attempts = 3;\n", "");
	ru_start_wait(&E, NULL, 30000);
	ru_drop(&E, arch, "before.mha", false, fill_mha_small, (void *)1);
	ck_assert(ru_wait_state(&E, "before.mha", "succeeded", 60000));
	/* Fill the filesystem to the last byte. */
	fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	{
		char buf[65536];

		memset(buf, 0, sizeof(buf));
		while (write(fd, buf, sizeof(buf)) > 0)
			;
		while (write(fd, buf, 512) > 0)
			;
		while (write(fd, buf, 1) > 0)
			;
	}
	close(fd);
	ru_drop(&E, arch, "during.mha", false, fill_mha_small, (void *)2);
	ck_assert_msg(ru_wait_log(&E, "min_free_space", 30000) || ru_wait_log(&E, "space", 1),
		      "no message about the full state directory");
	ck_assert_msg(!ru_exited(&E, NULL), "the daemon died on a full state directory");
	/* Space returns: the case goes through. */
	ck_assert_int_eq(unlink(filler), 0);
	ru_wait_terminal(&E, "arch", names, 90000);
	root = ru_status(&E);
	assert_case(root, "before.mha", "succeeded", NULL);
	assert_case(root, "during.mha", "succeeded", NULL);
	cJSON_Delete(root);
	ck_assert_int_eq(ru_stop(&E, SIGTERM), 0);
	{
		char *msg = NULL;

		ck_assert_msg(ru_integrity(&E, &msg) == 0, "integrity: %s", msg);
	}
	fprintf(stderr, "e2e_hostile disk full: %zu log line(s) about space\n",
		ru_log_count(&E, "space"));
	ck_assert_int_eq(umount2(E.state, MNT_DETACH), 0);
	free(filler);
}
END_TEST

START_TEST(test_state_read_only_at_restart)
{
	const char *names[] = {"one.mha", NULL};
	char *run[] = {bin(), "run", "-c", E.conf, NULL};
	char *out = NULL, *err = NULL;
	cJSON *root;
	int rc;

	/*
	 * Assumption: the state directory is a tmpfs that is remounted read-only
	 * while the daemon is stopped (Linux refuses a read-only remount while the
	 * daemon holds the queue open for writing, so "at runtime" means between a
	 * crash and the restart, as after a filesystem error).
	 */
	if (mount("tmpfs", E.state, "tmpfs", 0, "size=8m,mode=0700") < 0) {
		ck_assert_msg(errno == EPERM, "mount: %s", strerror(errno));
		return;
	}
	write_config("max_attempts = 3;\n", "");
	ru_start_wait(&E, NULL, 30000);
	ru_drop(&E, arch, "one.mha", false, fill_mha_small, (void *)1);
	ck_assert(ru_wait_state(&E, "one.mha", "succeeded", 60000));
	ru_stop(&E, SIGKILL);
	ck_assert_int_eq(mount(NULL, E.state, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
	rc = tu_run(run, NULL, 20000, &out, &err);
	ck_assert_msg(rc == 1, "gcdrop run on a read-only state directory exited %d: %s", rc, err);
	ck_assert_msg(ru_has(err, E.state) && (ru_has(err, "writable") || ru_has(err, "read-only")),
		      "message: %s", err);
	fprintf(stderr, "e2e_hostile read-only: %s", err);
	free(out);
	free(err);
	/* status still reads it. */
	root = ru_status(&E);
	assert_case(root, "one.mha", "succeeded", NULL);
	cJSON_Delete(root);
	ck_assert_int_eq(mount(NULL, E.state, NULL, MS_REMOUNT, NULL), 0);
	ru_start_wait(&E, NULL, 30000);
	ru_drop(&E, arch, "two.mha", false, fill_mha_small, (void *)2);
	names[0] = "two.mha";
	ru_wait_terminal(&E, "arch", names, 60000);
	root = ru_status(&E);
	assert_case(root, "two.mha", "succeeded", NULL);
	cJSON_Delete(root);
	ck_assert_int_eq(ru_stop(&E, SIGTERM), 0);
	ck_assert_int_eq(umount2(E.state, MNT_DETACH), 0);
}
END_TEST

/* ================================================================ server */

enum hmode {
	H_NOT_JSON,
	H_TRUNCATED,
	H_WRONG_TYPES,
	H_HUGE,
	H_REDIRECT_LOOP,
	H_REDIRECT_HOST,
	H_MAX,
};

static const char *const hmode_names[] = {"not JSON", "truncated JSON", "wrong types",
					  "256 MiB body", "redirect loop", "redirect to another host"};

struct hsrv {
	int fd;
	int port;
	enum hmode mode;
	int other_port;		/* H_REDIRECT_HOST: where to send */
	pthread_t th;
	atomic_bool stop;
	atomic_int requests;
	atomic_int with_auth;
};

static void
send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void
hsrv_answer(struct hsrv *h, int c, const char *path)
{
	char head[1024];
	const char *body;

	switch (h->mode) {
	case H_NOT_JSON:
		body = "<html><body><h1>Down for maintenance</h1></body></html>";
		snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n", strlen(body));
		send_all(c, head, strlen(head));
		send_all(c, body, strlen(body));
		break;
	case H_TRUNCATED:
		body = "{\"count\": 1, \"next\": null, \"results\": [{\"pk\": \"3fa8";
		snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: 400\r\nConnection: close\r\n\r\n");
		send_all(c, head, strlen(head));
		send_all(c, body, strlen(body));
		break;
	case H_WRONG_TYPES:
		body = "{\"count\": \"one\", \"next\": 7, \"previous\": [], \"results\": "
		       "{\"pk\": 12, \"slug\": [\"demo-archive\"], \"api_url\": false, "
		       "\"title\": {}, \"inputs\": \"x\"}}";
		snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n", strlen(body));
		send_all(c, head, strlen(head));
		send_all(c, body, strlen(body));
		break;
	case H_HUGE: {
		static char chunk[65536];

		memset(chunk, 'a', sizeof(chunk));
		snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: %lld\r\nConnection: close\r\n\r\n{\"count\": 1, \"x\": \"",
			 256LL << 20);
		send_all(c, head, strlen(head));
		for (int i = 0; i < 4096 && !atomic_load(&h->stop); i++) {
			ssize_t w = send(c, chunk, sizeof(chunk), MSG_NOSIGNAL);

			if (w <= 0)
				break;
		}
		break;
	}
	case H_REDIRECT_LOOP:
		snprintf(head, sizeof(head), "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d%s"
			 "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", h->port, path);
		send_all(c, head, strlen(head));
		break;
	case H_REDIRECT_HOST:
		snprintf(head, sizeof(head), "HTTP/1.1 302 Found\r\nLocation: http://localhost:%d%s"
			 "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", h->other_port, path);
		send_all(c, head, strlen(head));
		break;
	default:
		break;
	}
}

static void *
hsrv_main(void *ud)
{
	struct hsrv *h = ud;

	while (!atomic_load(&h->stop)) {
		struct pollfd p = {h->fd, POLLIN, 0};
		char req[16384], path[2048] = "/";
		size_t n = 0;
		int c;

		if (poll(&p, 1, 100) <= 0)
			continue;
		c = accept(h->fd, NULL, NULL);
		if (c < 0)
			continue;
		while (n < sizeof(req) - 1) {
			struct pollfd q = {c, POLLIN, 0};
			ssize_t r;

			if (poll(&q, 1, 2000) <= 0)
				break;
			r = recv(c, req + n, sizeof(req) - 1 - n, 0);
			if (r <= 0)
				break;
			n += (size_t)r;
			req[n] = '\0';
			if (strstr(req, "\r\n\r\n") != NULL)
				break;
		}
		req[n] = '\0';
		sscanf(req, "%*s %2047s", path);
		atomic_fetch_add(&h->requests, 1);
		for (char *l = strstr(req, "\r\n"); l != NULL; l = strstr(l + 2, "\r\n"))
			if (strncasecmp(l + 2, "Authorization:", 14) == 0)
				atomic_fetch_add(&h->with_auth, 1);
		if (h->mode != H_MAX)
			hsrv_answer(h, c, path);
		else {
			const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
					 "Content-Length: 23\r\nConnection: close\r\n\r\n"
					 "{\"detail\":\"Not found.\"}";

			send_all(c, nf, strlen(nf));
		}
		shutdown(c, SHUT_WR);
		close(c);
	}
	return NULL;
}

static void
hsrv_start(struct hsrv *h, enum hmode mode)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);

	memset(h, 0, sizeof(*h));
	h->mode = mode;
	h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(h->fd, 0);
	ck_assert_int_eq(bind(h->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(h->fd, 64), 0);
	ck_assert_int_eq(getsockname(h->fd, (struct sockaddr *)&a, &al), 0);
	h->port = ntohs(a.sin_port);
	ck_assert_int_eq(pthread_create(&h->th, NULL, hsrv_main, h), 0);
}

static void
hsrv_stop(struct hsrv *h)
{
	atomic_store(&h->stop, true);
	pthread_join(h->th, NULL);
	close(h->fd);
}

static long
vm_hwm_kib(pid_t pid)
{
	char *p = tu_strdupf("/proc/%d/status", (int)pid);
	char *text = tu_read_file(p, NULL);
	const char *l = text != NULL ? strstr(text, "VmHWM:") : NULL;
	long v = l != NULL ? strtol(l + 6, NULL, 10) : -1;

	free(text);
	free(p);
	return v;
}

#define LOOKUP_FAILED "looking up the destination of watch 'arch' failed"

static const char TOKEN[] = "hostile0123456789abcdef0123456789abcdef0123456789abcdef01234567";

START_TEST(test_hostile_server)
{
	enum hmode mode = (enum hmode)_i;
	struct hsrv h, other;
	char *text, *tokenv = tu_strdupf("GRAND_CHALLENGE_AUTHORIZATION=%s", TOKEN);
	char *env[] = {tokenv, NULL};
	char *check[] = {bin(), "check", "-c", E.conf, NULL};
	char *out = NULL, *err = NULL;
	long long deadline;
	long hwm = 0;
	int rc;
	cJSON *root;

	/* Assumption: every API request is answered the hostile way; the case is good. */
	hsrv_start(&other, H_MAX);
	hsrv_start(&h, mode);
	h.other_port = other.port;
	text = tu_strdupf("api_url = \"http://127.0.0.1:%d/api/v1/\";\nstate_dir = \"%s\";\n"
			  "min_free_space = \"1M\";\nmax_attempts = 2;\nlog_level = \"info\";\n"
			  "watches = ( { name = \"arch\"; path = \"%s\"; archive = \"demo-archive\";"
			  " settle_seconds = 0; } );\n",
			  h.port, E.state, arch);
	tu_write_file(E.conf, text, -1, 0644);
	free(text);

	/* gcdrop check: a clear failure, not a crash. */
	rc = tu_run(check, env, 60000, &out, &err);
	ck_assert_msg(rc > 0 && rc < 128, "%s: gcdrop check exited %d", hmode_names[mode], rc);
	fprintf(stderr, "e2e_hostile server (%s): gcdrop check exited %d: %s%s",
		hmode_names[mode], rc, out, err);
	ck_assert_msg(!ru_has(out, TOKEN) && !ru_has(err, TOKEN), "the token is in the output");
	free(out);
	free(err);

	/*
	 * The daemon: the destination cannot be looked up, so the case waits in
	 * the queue (it is not its fault: not failed), the journal says why, the
	 * lookups back off, nothing crashes.
	 */
	ru_start_wait(&E, env, 30000);
	ru_drop(&E, arch, "h.mha", false, fill_mha_small, (void *)5);
	deadline = tu_now_ms() + 30000;
	while (ru_log_count(&E, LOOKUP_FAILED) < 2 && tu_now_ms() < deadline) {
		if (E.pid > 0) {
			long v = vm_hwm_kib(E.pid);

			hwm = v > hwm ? v : hwm;
		}
		usleep(100000);
	}
	ck_assert_msg(ru_log_count(&E, LOOKUP_FAILED) >= 2, "%s: no lookup failure in the log",
		      hmode_names[mode]);
	root = ru_status(&E);
	ck_assert_msg(strcmp(state_of(root, "h.mha"), "queued") == 0 ||
			  strcmp(state_of(root, "h.mha"), "retry-wait") == 0,
		      "%s: case %s", hmode_names[mode], state_of(root, "h.mha"));
	{
		char *logtext = tu_read_file(E.log, NULL);
		char *l = strstr(logtext, LOOKUP_FAILED), *nl = l != NULL ? strchr(l, '\n') : NULL;

		fprintf(stderr, "e2e_hostile server (%s): case %s; %d requests; VmHWM %ld KiB; "
			"journal: %.*s\n", hmode_names[mode], state_of(root, "h.mha"),
			atomic_load(&h.requests), hwm, l != NULL && nl != NULL ? (int)(nl - l) : 0,
			l != NULL ? l : "");
		free(logtext);
	}
	cJSON_Delete(root);
	ck_assert_msg(!ru_exited(&E, NULL), "the daemon died");
	if (E.pid > 0) {
		long v = vm_hwm_kib(E.pid);

		hwm = v > hwm ? v : hwm;
	}
	ck_assert_int_eq(ru_stop(&E, SIGTERM), 0);
	/* Two lookups about 2 s apart, and gcdrop check's few requests: no storm. */
	ck_assert_msg(atomic_load(&h.requests) <= 40, "%d requests: a retry storm",
		      atomic_load(&h.requests));
	/* The token never went to the other host. */
	ck_assert_int_eq(atomic_load(&other.with_auth), 0);
	if (mode == H_HUGE)
		ck_assert_msg(hwm < 100 * 1024, "VmHWM %ld KiB with a 256 MiB body", hwm);
	ck_assert_int_eq(ru_grep_tree(E.log, TOKEN), 0);
	ck_assert_int_eq(ru_grep_tree(E.state, TOKEN), 0);
	hsrv_stop(&h);
	hsrv_stop(&other);
	free(tokenv);
}
END_TEST

static Suite *
hostile_suite(void)
{
	Suite *s = suite_create("e2e_hostile");
	TCase *tc;

	tc = tcase_create("config");
	tcase_add_checked_fixture(tc, setup_config, teardown);
	tcase_add_loop_test(tc, test_bad_config, 0, (int)GC_ARRAY_SIZE(bad_confs));
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("queue");
	tcase_add_checked_fixture(tc, setup_plain, teardown);
	tcase_add_test(tc, test_queue_not_sqlite);
	tcase_add_test(tc, test_queue_damaged_pages);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("input");
	tcase_add_checked_fixture(tc, setup_fg, teardown);
	tcase_add_test(tc, test_bad_inputs);
	tcase_set_timeout(tc, 180);
	suite_add_tcase(s, tc);

	tc = tcase_create("changes");
	tcase_add_checked_fixture(tc, setup_fg, teardown);
	tcase_add_test(tc, test_changes_while_uploading);
	tcase_set_timeout(tc, 300);
	suite_add_tcase(s, tc);

	tc = tcase_create("state");
	tcase_add_checked_fixture(tc, setup_fg, teardown);
	tcase_add_test(tc, test_disk_full);
	tcase_add_test(tc, test_state_read_only_at_restart);
	tcase_set_timeout(tc, 180);
	suite_add_tcase(s, tc);

	tc = tcase_create("server");
	tcase_add_checked_fixture(tc, setup_plain, teardown);
	tcase_add_loop_test(tc, test_hostile_server, 0, H_MAX);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(hostile_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
