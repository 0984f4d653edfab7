/*
 * check_config.c: the configuration module.
 *
 * Properties: a file loads into the documented defaults and values; every
 * invalid file is refused with a message that starts "FILE:LINE: KEY: " (spec
 * section 3: name the file, line and key), the exact prefix asserted; the
 * token comes from token_file, then $CREDENTIALS_DIRECTORY/gcdrop-token, then
 * $GRAND_CHALLENGE_AUTHORIZATION, normalised as gcapi does, and never appears
 * in a message; a token file that group or others can access is refused, and
 * one the daemon's user cannot read gives a clear error; the shipped example
 * loads.
 *
 * Inputs are written to temporary files by each test, so that each test shows
 * the file it loads; each CONF() argument is one line of that file, so the
 * expected line numbers can be counted in the source.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <check.h>

#include "config.h"
#include "testutil.h"

#ifndef ABS_TOP_SRCDIR
#define ABS_TOP_SRCDIR ".."
#endif

#define TOKEN_HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* A valid watch on one line, to complete configurations that test other keys. */
#define WATCH_LINE "watches = ( { name = \"a\"; path = \"/srv/a\"; algorithm = \"algo\"; } );"

/* Per-TCase base directory (removed by the parent even when tests fail) and per-test one. */
static char *basedir;
static char *tmpdir;

static void
suite_setup(void)
{
	basedir = tu_mkdtemp("config");
	/* Every test's tu_mkdtemp() now lands under basedir. */
	setenv("TMPDIR", basedir, 1);
}

static void
suite_teardown(void)
{
	unsetenv("TMPDIR");
	tu_rmtree(basedir);
	free(basedir);
	basedir = NULL;
}

static void
setup(void)
{
	tmpdir = tu_mkdtemp("t");
	unsetenv("CREDENTIALS_DIRECTORY");
	unsetenv("GRAND_CHALLENGE_AUTHORIZATION");
}

static void
teardown(void)
{
	free(tmpdir);
	tmpdir = NULL;
}

/* Join lines (NULL-terminated) into a file text, one '\n' after each. */
#define CONF(...) conf_join((const char *const[]){__VA_ARGS__, NULL})

static char *
conf_join(const char *const *lines)
{
	size_t n = 1;
	char *text;

	for (size_t i = 0; lines[i]; i++)
		n += strlen(lines[i]) + 1;
	text = malloc(n);
	ck_assert_ptr_nonnull(text);
	text[0] = '\0';
	for (size_t i = 0; lines[i]; i++) {
		strcat(text, lines[i]);
		strcat(text, "\n");
	}
	return text;
}

/* Write 'text' (freed) to a new file in the test's directory; malloc'd path. */
static char *
write_conf(char *text)
{
	static int seq;
	char *path = tu_strdupf("%s/gcdrop-%d.conf", tmpdir, ++seq);

	tu_write_file(path, text, -1, 0644);
	free(text);
	return path;
}

/* Load 'text' (freed); assert success; returns the config. */
static struct config *
load_ok(char *text, int flags)
{
	char *path = write_conf(text);
	struct config *c = NULL;
	char *msg = NULL;
	int r;

	r = config_load(path, flags, &c, &msg);
	ck_assert_msg(r == 0, "config_load: %d: %s", r, msg ? msg : "(no message)");
	ck_assert_ptr_null(msg);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->path, path);
	free(path);
	return c;
}

/*
 * Load 'text' (freed) and assert that it fails with 'err' and a message that
 * starts with exactly "FILE:LINE: KEY: " (without LINE when line is 0, without
 * KEY when key is NULL) and contains 'reason'. Returns the message.
 */
static char *
expect_fail(char *text, int flags, int err, unsigned int line, const char *key, const char *reason)
{
	char *path = write_conf(text);
	struct config *c = NULL;
	char *msg = NULL, *prefix;
	int r;

	r = config_load(path, flags, &c, &msg);
	ck_assert_msg(r == err, "config_load returned %d, expected %d (%s)", r, err,
	              msg ? msg : "(no message)");
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(msg);
	if (line > 0 && key)
		prefix = tu_strdupf("%s:%u: %s: ", path, line, key);
	else if (line > 0)
		prefix = tu_strdupf("%s:%u: ", path, line);
	else if (key)
		prefix = tu_strdupf("%s: %s: ", path, key);
	else
		prefix = tu_strdupf("%s: ", path);
	ck_assert_msg(strncmp(msg, prefix, strlen(prefix)) == 0,
	              "message '%s' does not start with '%s'", msg, prefix);
	ck_assert_msg(strstr(msg + strlen(prefix), reason), "message '%s' does not contain '%s'",
	              msg, reason);
	free(prefix);
	free(path);
	return msg;
}

static void
expect_error(char *text, unsigned int line, const char *key, const char *reason)
{
	free(expect_fail(text, CONFIG_LOAD_NO_TOKEN, -EINVAL, line, key, reason));
}

/* A file in the test directory with the given content and mode; malloc'd path. */
static char *
make_file(const char *name, const char *content, mode_t mode)
{
	char *path = tu_strdupf("%s/%s", tmpdir, name);

	tu_write_file(path, content, -1, mode);
	ck_assert_int_eq(chmod(path, mode), 0);
	return path;
}

/* ---- core ---- */

/* Assumptions: a minimal file (one watch) gets every documented default. */
START_TEST(test_defaults)
{
	struct config *c = load_ok(CONF("watches = (", "  {", "    name = \"scans\";",
	                                "    path = \"/srv/gcdrop/scans\";",
	                                "    algorithm = \"my-algo\";", "  }", ");"),
	                           CONFIG_LOAD_NO_TOKEN);
	const struct config_watch *w;

	ck_assert_str_eq(c->api_url, "https://grand-challenge.org/api/v1/");
	ck_assert_ptr_null(c->token_file);
	ck_assert_ptr_null(c->ca_file);
	ck_assert_str_eq(c->state_dir, "/var/lib/gcdrop");
	ck_assert_int_eq(c->workers, 4);
	ck_assert_int_eq(c->max_send_speed, 0);
	ck_assert_int_eq(c->max_attempts, 10);
	ck_assert_int_eq(c->min_free_space, INT64_C(1) << 30);
	ck_assert_int_eq(c->log_level, LOG_INFO);
	ck_assert_uint_eq(c->n_watches, 1);
	w = &c->watches[0];
	ck_assert_str_eq(w->name, "scans");
	ck_assert_str_eq(w->path, "/srv/gcdrop/scans");
	ck_assert_int_eq(w->dest, CONFIG_DEST_ALGORITHM);
	ck_assert_str_eq(w->slug, "my-algo");
	ck_assert_ptr_null(w->socket);
	ck_assert_ptr_null(w->values);
	ck_assert_uint_eq(w->n_values, 0);
	ck_assert_int_eq(w->settle_seconds, 30);
	ck_assert_int_eq(w->max_settle_seconds, 86400);
	ck_assert_int_eq(w->scan_interval, 60);
	ck_assert_ptr_null(w->ready_marker);
	ck_assert_int_eq(w->job_timeout, 86400);
	ck_assert_ptr_null(w->results_dir);
	ck_assert_int_eq(w->on_success, CONFIG_ACTION_KEEP);
	ck_assert_int_eq(w->on_failure, CONFIG_ACTION_KEEP);
	ck_assert_ptr_null(w->done_dir);
	ck_assert_ptr_null(w->failed_dir);
	ck_assert_int_eq(w->line, 2);
	ck_assert_ptr_null(config_free(c));
}
END_TEST

/* Assumptions: tests/data/config/full.conf sets every key to a non-default value. */
START_TEST(test_full)
{
	char *path = tu_strdupf("%s/config/full.conf",
	                        tu_env("GCDROP_TEST_DATA", ABS_TOP_SRCDIR "/tests/data"));
	struct config *c = NULL;
	const struct config_watch *w;
	char *msg = NULL;
	int r;

	r = config_load(path, CONFIG_LOAD_NO_TOKEN, &c, &msg);
	ck_assert_msg(r == 0, "%s", msg ? msg : "");
	ck_assert_str_eq(c->path, path);
	ck_assert_str_eq(c->api_url, "http://127.0.0.1:8443/api/v1/");
	ck_assert_ptr_null(c->token_file);
	ck_assert_str_eq(c->ca_file, "/etc/gcdrop/ca.pem");
	ck_assert_str_eq(c->state_dir, "/var/lib/gcdrop-test");
	ck_assert_int_eq(c->workers, 8);
	ck_assert_int_eq(c->max_send_speed, 50 << 20);
	ck_assert_int_eq(c->max_attempts, 3);
	ck_assert_int_eq(c->min_free_space, INT64_C(10) << 30);
	ck_assert_int_eq(c->log_level, LOG_DEBUG);
	ck_assert_uint_eq(c->n_watches, 3);

	w = &c->watches[0];
	ck_assert_str_eq(w->name, "corads");
	ck_assert_str_eq(w->path, "/srv/gcdrop/in/corads");
	ck_assert_int_eq(w->dest, CONFIG_DEST_ALGORITHM);
	ck_assert_str_eq(w->slug, "corads-ai");
	ck_assert_str_eq(w->socket, "ct-image");
	ck_assert_uint_eq(w->n_values, 2);
	ck_assert_str_eq(w->values[0].socket, "lung-volume");
	ck_assert_str_eq(w->values[0].json, "1.234");
	ck_assert_str_eq(w->values[1].socket, "patient-info");
	ck_assert_str_eq(w->values[1].json, "{\"age\": 61, \"sex\": \"F\"}");
	ck_assert_int_eq(w->settle_seconds, 5);
	ck_assert_int_eq(w->max_settle_seconds, 3600);
	ck_assert_int_eq(w->scan_interval, 15);
	ck_assert_str_eq(w->ready_marker, "READY");
	ck_assert_int_eq(w->job_timeout, 7200);
	ck_assert_str_eq(w->results_dir, "/srv/gcdrop/results/corads");
	ck_assert_int_eq(w->on_success, CONFIG_ACTION_MOVE);
	ck_assert_str_eq(w->done_dir, "/srv/gcdrop/done/corads");
	ck_assert_int_eq(w->on_failure, CONFIG_ACTION_MOVE);
	ck_assert_str_eq(w->failed_dir, "/srv/gcdrop/failed/corads");
	ck_assert_int_eq(w->line, 14);

	w = &c->watches[1];
	ck_assert_int_eq(w->dest, CONFIG_DEST_ARCHIVE);
	ck_assert_str_eq(w->slug, "my-archive");
	ck_assert_int_eq(w->on_success, CONFIG_ACTION_DELETE);
	ck_assert_int_eq(w->on_failure, CONFIG_ACTION_KEEP);

	w = &c->watches[2];
	ck_assert_int_eq(w->dest, CONFIG_DEST_READER_STUDY);
	ck_assert_str_eq(w->slug, "my-reader-study");
	ck_assert_int_eq(w->settle_seconds, 0);
	ck_assert_int_eq(w->max_settle_seconds, 0);

	ck_assert_ptr_eq(config_find_watch(c, "study"), &c->watches[2]);
	ck_assert_ptr_eq(config_find_watch(c, "corads"), &c->watches[0]);
	ck_assert_ptr_null(config_find_watch(c, "nope"));
	ck_assert_ptr_null(config_find_watch(c, NULL));
	ck_assert_ptr_null(config_find_watch(NULL, "corads"));
	config_free(c);
	free(path);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(config_dest_name(CONFIG_DEST_ALGORITHM), "algorithm");
	ck_assert_str_eq(config_dest_name(CONFIG_DEST_ARCHIVE), "archive");
	ck_assert_str_eq(config_dest_name(CONFIG_DEST_READER_STUDY), "reader_study");
	ck_assert_str_eq(config_action_name(CONFIG_ACTION_KEEP), "keep");
	ck_assert_str_eq(config_action_name(CONFIG_ACTION_MOVE), "move");
	ck_assert_str_eq(config_action_name(CONFIG_ACTION_DELETE), "delete");
	ck_assert_ptr_null(config_free(NULL));
}
END_TEST

/*
 * Assumptions: the shipped example loads without a token (gcdrop status) and,
 * with $GRAND_CHALLENGE_AUTHORIZATION set, as the daemon loads it; it has one
 * watch of each destination.
 */
START_TEST(test_example)
{
	char *path = tu_strdupf("%s/etc/gcdrop.conf.example", tu_env("top_srcdir", ABS_TOP_SRCDIR));
	struct config *c = NULL;
	char *msg = NULL;
	bool seen[3] = {false, false, false};
	int r;

	r = config_load(path, CONFIG_LOAD_NO_TOKEN, &c, &msg);
	ck_assert_msg(r == 0, "%s", msg ? msg : "");
	ck_assert_uint_ge(c->n_watches, 3);
	for (size_t i = 0; i < c->n_watches; i++)
		seen[c->watches[i].dest] = true;
	ck_assert(seen[CONFIG_DEST_ALGORITHM] && seen[CONFIG_DEST_ARCHIVE] &&
	          seen[CONFIG_DEST_READER_STUDY]);
	config_free(c);

	setenv("GRAND_CHALLENGE_AUTHORIZATION", "Bearer " TOKEN_HEX, 1);
	c = NULL;
	r = config_load(path, 0, &c, &msg);
	ck_assert_msg(r == 0, "%s", msg ? msg : "");
	config_free(c);
	free(path);
}
END_TEST

/* Assumptions: an api_url without its final '/' gets one; loopback may use http. */
static const struct {
	const char *in, *out;
} good_urls[] = {
    {"https://grand-challenge.org/api/v1", "https://grand-challenge.org/api/v1/"},
    {"https://example.org:8443/api/v1/", "https://example.org:8443/api/v1/"},
    {"https://example.org", "https://example.org/"},
    {"HTTPS://example.org/api/", "HTTPS://example.org/api/"},
    {"http://localhost:8000/api/v1/", "http://localhost:8000/api/v1/"},
    {"http://127.0.0.1:8000/api/v1", "http://127.0.0.1:8000/api/v1/"},
    {"http://127.10.20.30/api/v1/", "http://127.10.20.30/api/v1/"},
    {"http://[::1]:8000/api/v1/", "http://[::1]:8000/api/v1/"},
    {"https://[2001:db8::1]/api/v1/", "https://[2001:db8::1]/api/v1/"},
};

START_TEST(test_api_url_ok)
{
	char *line = tu_strdupf("api_url = \"%s\";", good_urls[_i].in);
	struct config *c = load_ok(CONF(line, WATCH_LINE), CONFIG_LOAD_NO_TOKEN);

	ck_assert_str_eq(c->api_url, good_urls[_i].out);
	config_free(c);
	free(line);
}
END_TEST

/* Assumptions: sizes are bytes, or digits with K/M/G/T (powers of 1024). */
static const struct {
	const char *value;
	int64_t bytes;
} good_sizes[] = {
    {"0", 0},
    {"\"0\"", 0},
    {"4096", 4096},
    {"\"1024\"", 1024},
    {"\"1k\"", 1024},
    {"\"512M\"", INT64_C(512) << 20},
    {"\"1G\"", INT64_C(1) << 30},
    {"\"3g\"", INT64_C(3) << 30},
    {"\"2T\"", INT64_C(2) << 40},
    {"10737418240L", INT64_C(10737418240)},
};

START_TEST(test_sizes)
{
	char *l1 = tu_strdupf("min_free_space = %s;", good_sizes[_i].value);
	char *l2 = tu_strdupf("max_send_speed = %s;", good_sizes[_i].value);
	struct config *c = load_ok(CONF(l1, l2, WATCH_LINE), CONFIG_LOAD_NO_TOKEN);

	ck_assert_int_eq(c->min_free_space, good_sizes[_i].bytes);
	ck_assert_int_eq(c->max_send_speed, good_sizes[_i].bytes);
	config_free(c);
	free(l1);
	free(l2);
}
END_TEST

static const struct {
	const char *name;
	int level;
} levels[] = {
    {"err", LOG_ERR},   {"warning", LOG_WARNING}, {"notice", LOG_NOTICE},
    {"info", LOG_INFO}, {"debug", LOG_DEBUG},
};

START_TEST(test_log_levels)
{
	char *line = tu_strdupf("log_level = \"%s\";", levels[_i].name);
	struct config *c = load_ok(CONF(line, WATCH_LINE), CONFIG_LOAD_NO_TOKEN);

	ck_assert_int_eq(c->log_level, levels[_i].level);
	config_free(c);
	free(line);
}
END_TEST

/*
 * Assumptions: paths are normalised ("//", ".", trailing '/'), and the overlap
 * test compares components: /srv/a/b and /srv/a/bc are apart, so are a watch
 * and a done_dir beside it. "" means "not set" for optional keys.
 */
START_TEST(test_paths)
{
	struct config *c =
	    load_ok(CONF("state_dir = \"/var/lib//gcdrop/./\";", "ca_file = \"\";", "watches = (",
	                 "  { name = \"x\"; path = \"/srv/a/b/\"; archive = \"ar\";",
	                 "    socket = \"\"; ready_marker = \"\"; results_dir = \"\";",
	                 "    on_success = \"move\"; done_dir = \"/srv/a/b-done\"; },",
	                 "  { name = \"y\"; path = \"/srv/a/bc\"; archive = \"ar\"; }", ");"),
	            CONFIG_LOAD_NO_TOKEN);

	ck_assert_str_eq(c->state_dir, "/var/lib/gcdrop");
	ck_assert_ptr_null(c->ca_file);
	ck_assert_str_eq(c->watches[0].path, "/srv/a/b");
	ck_assert_ptr_null(c->watches[0].socket);
	ck_assert_ptr_null(c->watches[0].ready_marker);
	ck_assert_ptr_null(c->watches[0].results_dir);
	ck_assert_str_eq(c->watches[0].done_dir, "/srv/a/b-done");
	ck_assert_str_eq(c->watches[1].path, "/srv/a/bc");
	config_free(c);
}
END_TEST

/* Assumptions: an error in an @include'd file names that file and its line. */
START_TEST(test_include)
{
	char *inc = make_file("watches.conf",
	                      "watches = (\n  { name = \"a\"; path = \"/srv/a\"; archive = \"x\";\n"
	                      "    colour = \"blue\"; }\n);\n",
	                      0644);
	char *line = tu_strdupf("@include \"%s\"", inc);
	char *path = write_conf(CONF("workers = 2;", line));
	struct config *c = NULL;
	char *msg = NULL, *want = tu_strdupf("%s:3: watches[0].colour: unknown key", inc);

	ck_assert_int_eq(config_load(path, CONFIG_LOAD_NO_TOKEN, &c, &msg), -EINVAL);
	ck_assert_str_eq(msg, want);
	free(msg);
	free(want);
	free(path);
	free(line);
	free(inc);
}
END_TEST

/* ---- errors ---- */

START_TEST(test_missing_file)
{
	char *path = tu_strdupf("%s/nope.conf", tmpdir);
	char *want = tu_strdupf("%s: cannot open: %s", path, strerror(ENOENT));
	struct config *c = NULL;
	char *msg = NULL;

	ck_assert_int_eq(config_load(path, CONFIG_LOAD_NO_TOKEN, &c, &msg), -ENOENT);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(msg, want);
	free(msg);
	free(want);

	/* A directory is no configuration file either. */
	ck_assert_int_eq(config_load(tmpdir, CONFIG_LOAD_NO_TOKEN, &c, &msg), -EISDIR);
	ck_assert_ptr_nonnull(strstr(msg, "is a directory"));
	free(msg);
	free(path);
}
END_TEST

START_TEST(test_syntax_error)
{
	expect_error(CONF("workers = 4;", "", "log_level = = \"info\";", WATCH_LINE), 3, NULL,
	             "syntax error");
	expect_error(CONF("workers = 4;", "workers = 5;", WATCH_LINE), 2, NULL,
	             "duplicate setting name");
}
END_TEST

START_TEST(test_unknown_keys)
{
	expect_error(CONF(WATCH_LINE, "wokers = 4;"), 2, "wokers", "unknown key");
	expect_error(CONF("path = \"/srv/x\";", WATCH_LINE), 1, "path",
	             "unknown key at the top level (it belongs inside a watch");
	expect_error(CONF("watches = (",
	                  "  { name = \"a\"; path = \"/srv/a\"; algorithm = \"algo\"; },",
	                  "  { name = \"b\"; path = \"/srv/b\"; algorithm = \"algo\";",
	                  "    settle = 30; }", ");"),
	             4, "watches[1].settle", "unknown key");
	expect_error(CONF("watches = ( {",
	                  "  name = \"a\"; path = \"/srv/a\"; algorithm = \"algo\";",
	                  "  values = (", "    { socket = \"s\"; json = \"1\"; },",
	                  "    { socket = \"t\"; json = \"2\"; value = 3; }", "  );", "} );"),
	             5, "watches[0].values[1].value", "unknown key");
}
END_TEST

START_TEST(test_wrong_types)
{
	expect_error(CONF("workers = \"4\";", WATCH_LINE), 1, "workers",
	             "expected an integer, got a string");
	expect_error(CONF(WATCH_LINE, "workers = 4.0;"), 2, "workers",
	             "expected an integer, got a floating-point number");
	expect_error(CONF("api_url = 5;", WATCH_LINE), 1, "api_url", "expected a string");
	expect_error(CONF("min_free_space = true;", WATCH_LINE), 1, "min_free_space",
	             "expected a size");
	expect_error(CONF("log_level = [ \"info\" ];", WATCH_LINE), 1, "log_level",
	             "expected a string, got an array");
	expect_error(CONF("watches = { name = \"a\"; };"), 1, "watches",
	             "expected a list of watches");
	expect_error(CONF("watches = ( \"a\" );"), 1, "watches[0]", "expected a group");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; algorithm = \"x\";",
	                  "  on_success = 1; } );"),
	             2, "watches[0].on_success", "expected a string, got an integer");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; algorithm = \"x\";",
	                  "  values = { socket = \"s\"; json = \"1\"; }; } );"),
	             2, "watches[0].values", "expected a list");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; algorithm = \"x\";",
	                  "  values = ( \"s\" ); } );"),
	             2, "watches[0].values[0]", "expected a group");
	expect_error(CONF("watches = ( { name = 7; path = \"/srv/a\"; algorithm = \"x\"; } );"), 1,
	             "watches[0].name", "expected a string");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; algorithm = \"x\";",
	                  "  settle_seconds = \"30\"; } );"),
	             2, "watches[0].settle_seconds", "expected an integer");
}
END_TEST

START_TEST(test_destinations)
{
	expect_error(
	    CONF("watches = (", "  {", "    name = \"a\";", "    path = \"/srv/a\";", "  }", ");"),
	    2, "watches[0]", "no destination: set one of algorithm, archive or reader_study");
	expect_error(CONF("watches = (", "  {", "    name = \"a\";", "    path = \"/srv/a\";",
	                  "    algorithm = \"algo\";", "    archive = \"arch\";", "  }", ");"),
	             6, "watches[0].archive",
	             "exactly one destination, but algorithm is set too (line 5)");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\";",
	                  "  reader_study = \"rs\"; algorithm = \"al\"; } );"),
	             2, "watches[0].algorithm", "but reader_study is set too");
	expect_error(
	    CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; algorithm = \"a b\"; } );"), 1,
	    "watches[0].algorithm", "invalid slug \"a b\"");
	expect_error(
	    CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"../x\"; } );"), 1,
	    "watches[0].archive", "invalid slug");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"\"; } );"), 1,
	             "watches[0].archive", "invalid slug");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  socket = \"ct image\"; } );"),
	             2, "watches[0].socket", "invalid socket slug");
}
END_TEST

START_TEST(test_missing_keys)
{
	expect_error(CONF("workers = 2;"), 0, "watches", "missing");
	expect_error(CONF("workers = 2;", "watches = ();"), 2, "watches", "no watches");
	expect_error(CONF("watches = (", "  { path = \"/srv/a\"; algorithm = \"x\"; }", ");"), 2,
	             "watches[0].name", "missing");
	expect_error(CONF("watches = (", "  { name = \"a\"; algorithm = \"x\"; }", ");"), 2,
	             "watches[0].path", "missing");
}
END_TEST

START_TEST(test_watch_names)
{
	static const char *const bad[] = {
	    "", "a/b", ".hidden", "with space", "tab\\tname",
	    /* 65 characters */
	    "x2345678901234567890123456789012345678901234567890123456789012345"};

	for (size_t i = 0; i < GC_ARRAY_SIZE(bad); i++) {
		char *line = tu_strdupf("watches = ( { name = \"%s\"; path = \"/srv/a\"; "
		                        "archive = \"x\"; } );",
		                        bad[i]);

		expect_error(CONF("workers = 1;", line), 2, "watches[0].name",
		             "invalid watch name");
		free(line);
	}
	expect_error(CONF("watches = (",
	                  "  { name = \"scans\"; path = \"/srv/a\"; archive = \"x\"; },",
	                  "  { name = \"other\"; path = \"/srv/b\"; archive = \"x\"; },",
	                  "  { name = \"scans\"; path = \"/srv/c\"; archive = \"x\"; }", ");"),
	             4, "watches[2].name", "duplicate watch name 'scans' (first used at line 2)");
}
END_TEST

START_TEST(test_overlaps)
{
	/* The same folder twice. */
	expect_error(CONF("watches = (",
	                  "  { name = \"a\"; path = \"/srv/in\"; archive = \"x\"; },",
	                  "  { name = \"b\"; path = \"/srv//in/\"; archive = \"x\"; }", ");"),
	             3, "watches[1].path",
	             "'/srv/in' is the same as the path '/srv/in' of watch 'a' (line 2)");
	/* Nested, the inner one last. */
	expect_error(CONF("watches = (",
	                  "  { name = \"a\"; path = \"/srv/in\"; archive = \"x\"; },",
	                  "  { name = \"b\"; path = \"/srv/in/b\"; archive = \"x\"; }", ");"),
	             3, "watches[1].path", "'/srv/in/b' is inside the path '/srv/in' of watch 'a'");
	/* Nested, the outer one last. */
	expect_error(CONF("watches = (",
	                  "  { name = \"a\"; path = \"/srv/in/a\"; archive = \"x\"; },",
	                  "  { name = \"b\"; path = \"/srv\"; archive = \"x\"; }", ");"),
	             3, "watches[1].path", "'/srv' contains the path '/srv/in/a' of watch 'a'");
	/* A watch's own done_dir inside it would be taken for a case. */
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/in\"; archive = \"x\";",
	                  "  on_success = \"move\";", "  done_dir = \"/srv/in/done\"; } );"),
	             3, "watches[0].done_dir",
	             "'/srv/in/done' is inside the path '/srv/in' of watch 'a'");
	/* Another watch inside a results_dir. */
	expect_error(
	    CONF("watches = (", "  { name = \"a\"; path = \"/srv/res/in\"; archive = \"x\"; },",
	         "  { name = \"b\"; path = \"/srv/in\"; algorithm = \"x\";",
	         "    results_dir = \"/srv/res\"; }", ");"),
	    4, "watches[1].results_dir", "'/srv/res' contains the path '/srv/res/in' of watch 'a'");
	expect_error(CONF("watches = (",
	                  "  { name = \"a\"; path = \"/srv/in\"; archive = \"x\"; },",
	                  "  { name = \"b\"; path = \"/srv/in2\"; algorithm = \"x\";",
	                  "    on_failure = \"move\"; failed_dir = \"/srv/in\"; }", ");"),
	             4, "watches[1].failed_dir", "is the same as the path '/srv/in' of watch 'a'");
	expect_error(CONF("state_dir = \"/srv/in/.state\";",
	                  "watches = ( { name = \"a\"; path = \"/srv/in\"; archive = \"x\"; } );"),
	             1, "state_dir", "'/srv/in/.state' is inside the path '/srv/in' of watch 'a'");
	expect_error(CONF("token_file = \"/srv/in/token\";",
	                  "watches = ( { name = \"a\"; path = \"/srv/in\"; archive = \"x\"; } );"),
	             1, "token_file", "would be uploaded");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/\"; archive = \"x\"; } );"), 1,
	             "watches[0].path", "must not be the root directory");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/in\"; algorithm = \"x\";",
	                  "  on_success = \"move\"; done_dir = \"/srv/out\";",
	                  "  results_dir = \"/srv/out\"; } );"),
	             3, "watches[0].results_dir", "would collide");
}
END_TEST

/* Assumptions: every path key refuses a relative path, and "..". */
static const char *const path_keys[] = {
    "path", "state_dir", "results_dir", "done_dir", "failed_dir", "token_file", "ca_file",
};

START_TEST(test_relative_paths)
{
	const char *k = path_keys[_i];
	bool top = strcmp(k, "state_dir") == 0 || strcmp(k, "token_file") == 0 ||
	           strcmp(k, "ca_file") == 0;
	char *key = top ? strdup(k) : tu_strdupf("watches[0].%s", k);

	for (int dots = 0; dots < 2; dots++) {
		const char *value = dots ? "/srv/x/../y" : "srv/x";
		char *top_line =
		    top ? tu_strdupf("%s = \"%s\";", k, value) : strdup("workers = 1;");
		char *watch, *watch_line;

		/* The key under test gets the bad value; the other paths are absolute. */
		if (top)
			watch = strdup("{ name = \"a\"; archive = \"x\"; path = \"/srv/a\"; }");
		else if (strcmp(k, "path") == 0)
			watch =
			    tu_strdupf("{ name = \"a\"; archive = \"x\"; path = \"%s\"; }", value);
		else
			watch = tu_strdupf("{ name = \"a\"; archive = \"x\"; path = \"/srv/a\"; "
			                   "%s = \"%s\"; }",
			                   k, value);
		watch_line = tu_strdupf("watches = ( %s );", watch);
		expect_error(CONF(top_line, watch_line), top ? 1 : 2, key,
		             dots ? "must not contain '..' components"
		                  : "must be an absolute path");
		free(top_line);
		free(watch);
		free(watch_line);
	}
	free(key);
}
END_TEST

START_TEST(test_actions)
{
	expect_error(CONF("watches = ( {", "  name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  on_success = \"move\";", "} );"),
	             3, "watches[0].on_success", "\"move\" needs done_dir");
	expect_error(CONF("watches = ( {", "  name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  on_success = \"move\"; done_dir = \"/srv/done\";",
	                  "  on_failure = \"move\";", "} );"),
	             4, "watches[0].on_failure", "\"move\" needs failed_dir");
	expect_error(CONF("watches = ( {", "  name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  on_success = \"remove\";", "} );"),
	             3, "watches[0].on_success",
	             "invalid value \"remove\"; expected keep, move or delete");
	expect_error(CONF("watches = ( {", "  name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  on_failure = \"Keep\";", "} );"),
	             3, "watches[0].on_failure", "invalid value \"Keep\"");
}
END_TEST

START_TEST(test_values)
{
	expect_error(CONF("watches = ( { name = \"corads\"; path = \"/srv/a\"; algorithm = \"x\";",
	                  "  values = (", "    { socket = \"lung-volume\";",
	                  "      json = \"{1.234\"; }", "  ); } );"),
	             4, "watches[0].values[0].json",
	             "invalid JSON for socket 'lung-volume' of watch 'corads'");
	expect_error(CONF("watches = ( { name = \"corads\"; path = \"/srv/a\"; algorithm = \"x\";",
	                  "  values = ( { socket = \"s\"; json = \"1 2\"; } ); } );"),
	             2, "watches[0].values[0].json",
	             "invalid JSON for socket 's' of watch 'corads'");
	expect_error(CONF("watches = ( { name = \"corads\"; path = \"/srv/a\"; algorithm = \"x\";",
	                  "  values = ( { socket = \"s\"; json = \"\"; } ); } );"),
	             2, "watches[0].values[0].json", "invalid JSON");
	expect_error(CONF("watches = ( { name = \"corads\"; path = \"/srv/a\"; algorithm = \"x\";",
	                  "  values = (", "    { json = \"1\"; }", "  ); } );"),
	             3, "watches[0].values[0].socket", "missing");
	expect_error(CONF("watches = ( { name = \"corads\"; path = \"/srv/a\"; algorithm = \"x\";",
	                  "  values = (", "    { socket = \"s\"; }", "  ); } );"),
	             3, "watches[0].values[0].json",
	             "missing: the value for socket 's' of watch 'corads'");
	expect_error(CONF("watches = ( { name = \"corads\"; path = \"/srv/a\"; algorithm = \"x\";",
	                  "  values = (", "    { socket = \"s\"; json = \"1\"; },",
	                  "    { socket = \"s\"; json = \"2\"; }", "  ); } );"),
	             4, "watches[0].values[1].socket",
	             "socket 's' has two values in watch 'corads'");
	expect_error(CONF("watches = ( { name = \"corads\"; path = \"/srv/a\"; algorithm = \"x\";",
	                  "  socket = \"s\";",
	                  "  values = ( { socket = \"s\"; json = \"2\"; } ); } );"),
	             3, "watches[0].values[0].socket", "is the watch's image socket too");
}
END_TEST

START_TEST(test_api_url_bad)
{
	static const struct {
		const char *url, *reason;
	} bad[] = {
	    {"ftp://example.org/api/v1/", "must start with https://"},
	    {"grand-challenge.org/api/v1/", "must start with https://"},
	    {"http://grand-challenge.org/api/v1/", "not a loopback address"},
	    {"http://127.0.0.1.evil.example/api/", "not a loopback address"},
	    {"http://[2001:db8::1]/api/", "not a loopback address"},
	    {"http://128.0.0.1/api/", "not a loopback address"},
	    {"https://user:pw@example.org/api/", "must not contain user credentials"},
	    {"https:///api/v1/", "has no host"},
	    {"https://example.org:0/api/", "has an invalid port"},
	    {"https://example.org:99999/", "has an invalid port"},
	    {"https://example.org:/", "has an invalid port"},
	    {"https://example.org/api/?x=1", "must not have a query"},
	    {"https://exa mple.org/", "must not contain spaces"},
	    {"https://2001:db8::1/", "write IPv6 addresses in brackets"},
	    {"", "must not be empty"},
	};

	for (size_t i = 0; i < GC_ARRAY_SIZE(bad); i++) {
		char *line = tu_strdupf("api_url = \"%s\";", bad[i].url);

		expect_error(CONF(WATCH_LINE, line), 2, "api_url", bad[i].reason);
		free(line);
	}
	/* Regression: user credentials in the URL are not repeated in the message. */
	{
		char *msg = expect_fail(CONF(WATCH_LINE, "api_url = \"https://user:s3cret@example.org/\";"),
					CONFIG_LOAD_NO_TOKEN, -EINVAL, 2, "api_url",
					"must not contain user credentials");

		ck_assert_ptr_null(strstr(msg, "s3cret"));
		free(msg);
	}
}
END_TEST

START_TEST(test_numbers_bad)
{
	expect_error(CONF("workers = 0;", WATCH_LINE), 1, "workers",
	             "must be between 1 and 64 (got 0)");
	expect_error(CONF("workers = 65;", WATCH_LINE), 1, "workers", "must be between 1 and 64");
	expect_error(CONF("workers = -2;", WATCH_LINE), 1, "workers",
	             "must not be negative (got -2)");
	expect_error(CONF("max_attempts = 0;", WATCH_LINE), 1, "max_attempts", "must be between 1");
	expect_error(CONF("max_send_speed = -1;", WATCH_LINE), 1, "max_send_speed",
	             "must not be negative (got -1)");
	expect_error(CONF("min_free_space = \"-1G\";", WATCH_LINE), 1, "min_free_space",
	             "must not be negative");
	expect_error(CONF("min_free_space = \"1.5G\";", WATCH_LINE), 1, "min_free_space",
	             "invalid size \"1.5G\"");
	expect_error(CONF("min_free_space = \"10X\";", WATCH_LINE), 1, "min_free_space",
	             "invalid size");
	expect_error(CONF("min_free_space = \"G\";", WATCH_LINE), 1, "min_free_space",
	             "invalid size");
	expect_error(CONF("min_free_space = \"1GB\";", WATCH_LINE), 1, "min_free_space",
	             "invalid size");
	expect_error(CONF("max_send_speed = \"\";", WATCH_LINE), 1, "max_send_speed",
	             "invalid size");
	expect_error(CONF("log_level = \"verbose\";", WATCH_LINE), 1, "log_level",
	             "invalid level \"verbose\"");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  settle_seconds = -1; } );"),
	             2, "watches[0].settle_seconds", "must not be negative");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  scan_interval = 0; } );"),
	             2, "watches[0].scan_interval", "must be between 1");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  job_timeout = -5; } );"),
	             2, "watches[0].job_timeout", "must not be negative");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  settle_seconds = 60;", "  max_settle_seconds = 59; } );"),
	             3, "watches[0].max_settle_seconds",
	             "max_settle_seconds (59) must not be less than settle_seconds (60)");
	/* Only settle_seconds set, above the default maximum: its own line is named. */
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  settle_seconds = 90000; } );"),
	             2, "watches[0].settle_seconds",
	             "must not be less than settle_seconds (90000)");
}
END_TEST

/*
 * Assumptions: libconfig 1.5 keeps only the low 32 bits of a plain integer
 * literal; the module notices instead of running with workers = 4.
 */
START_TEST(test_truncated_literals)
{
	expect_error(CONF("workers = 4294967300;", WATCH_LINE), 1, "workers",
	             "number too large for a plain integer");
	expect_error(CONF(WATCH_LINE, "min_free_space = 10737418240;"), 2, "min_free_space",
	             "write it with an L suffix");
	expect_error(CONF("max_send_speed=99999999999999999999999;", WATCH_LINE), 1,
	             "max_send_speed", "number too large");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  settle_seconds = 0; max_settle_seconds = 4294967296; } );"),
	             2, "watches[0].max_settle_seconds", "number too large");
	/* Two watches on one line, same key, different (valid) values: no false alarm. */
	config_free(load_ok(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\"; "
	                         "settle_seconds = 5; }, { name = \"b\"; path = \"/srv/b\"; "
	                         "archive = \"x\"; settle_seconds = 7; } );"),
	                    CONFIG_LOAD_NO_TOKEN));
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\"; "
	                  "settle_seconds = 5; }, { name = \"b\"; path = \"/srv/b\"; "
	                  "archive = \"x\"; settle_seconds = 4294967303; } );"),
	             1, "watches[1].settle_seconds", "number too large");
	/* Hexadecimal, and the largest negative int, are read as libconfig reads them. */
	config_free(load_ok(CONF("workers = 0x10;", WATCH_LINE), CONFIG_LOAD_NO_TOKEN));
	expect_error(CONF("workers = 0x100000004;", WATCH_LINE), 1, "workers", "number too large");
}
END_TEST

START_TEST(test_ready_marker)
{
	static const char *const bad[] = {"a/b", "/READY", "..", "."};

	for (size_t i = 0; i < GC_ARRAY_SIZE(bad); i++) {
		char *line = tu_strdupf("  ready_marker = \"%s\"; } );", bad[i]);

		expect_error(
		    CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\";", line),
		    2, "watches[0].ready_marker", "must be a bare file name");
		free(line);
	}
}
END_TEST

/* ---- token ---- */

static const struct {
	const char *raw, *header;
} norm_table[] = {
    {TOKEN_HEX, "Bearer " TOKEN_HEX},
    {"Bearer " TOKEN_HEX, "Bearer " TOKEN_HEX},
    {"BEARER " TOKEN_HEX, "Bearer " TOKEN_HEX},
    {"bearer " TOKEN_HEX, "Bearer " TOKEN_HEX},
    {"   Bearer     " TOKEN_HEX "   ", "Bearer " TOKEN_HEX},
    {TOKEN_HEX "\n", "Bearer " TOKEN_HEX},
    {"\t Bearer\t" TOKEN_HEX " \r\n\n", "Bearer " TOKEN_HEX},
    /* gcapi ignores the first of two words; so do we. */
    {"Token abc", "Bearer abc"},
    {"a b c", NULL},
    {"Bearer abc def", NULL},
    {"", NULL},
    {"   \n", NULL},
    {"Bearer", NULL},
    {" bearer \n", NULL},
    {"abc\ndef", NULL},
    {"abc\x01", NULL},
    {"Bearer ab\x7f", NULL},
};

START_TEST(test_normalise)
{
	char *h = config_token_normalise(norm_table[_i].raw);

	if (norm_table[_i].header)
		ck_assert_pstr_eq(h, norm_table[_i].header);
	else
		ck_assert_msg(h == NULL, "'%s' normalised to '%s'", norm_table[_i].raw, h);
	config_token_free(h);
}
END_TEST

START_TEST(test_normalise_null)
{
	ck_assert_ptr_null(config_token_normalise(NULL));
	config_token_free(NULL);
}
END_TEST

/* Get the token with a token_file (NULL: none); asserts the result code. */
static char *
token_with(const char *token_file, int want_r, char **ret_msg)
{
	char path[] = "test.conf";
	char *tf = token_file ? strdup(token_file) : NULL;
	struct config c = {.path = path, .token_file = tf};
	char *header = NULL, *msg = NULL;
	int r;

	r = config_token(&c, &header, &msg);
	ck_assert_msg(r == want_r, "config_token returned %d, expected %d (%s)", r, want_r,
	              msg ? msg : "no message");
	if (r == 0) {
		ck_assert_ptr_null(msg);
		ck_assert_ptr_nonnull(header);
	} else {
		ck_assert_ptr_null(header);
		ck_assert_ptr_nonnull(msg);
	}
	free(tf);
	if (ret_msg)
		*ret_msg = msg;
	else
		free(msg);
	return header;
}

/* Assumptions: a 0600 token file is read; whitespace and the newline are ignored. */
START_TEST(test_token_file)
{
	char *file = make_file("token", "  Bearer " TOKEN_HEX "  \n\n", 0600);
	char *h = token_with(file, 0, NULL);

	ck_assert_str_eq(h, "Bearer " TOKEN_HEX);
	config_token_free(h);
	/* config_token accepts a NULL config: no token_file. */
	setenv("GRAND_CHALLENGE_AUTHORIZATION", "abc", 1);
	{
		char *msg = NULL;

		ck_assert_int_eq(config_token(NULL, &h, &msg), 0);
		ck_assert_str_eq(h, "Bearer abc");
		config_token_free(h);
	}
	free(file);
}
END_TEST

/* Assumptions: group- or world-accessible token files are refused, naming file and mode. */
START_TEST(test_token_file_mode)
{
	char *file = make_file("token", TOKEN_HEX "\n", 0644);
	char *msg = NULL, *want;

	ck_assert_ptr_null(token_with(file, -EPERM, &msg));
	want = tu_strdupf(
	    "token file '%s' is readable by group or others (mode 0644); chmod 600 it", file);
	ck_assert_str_eq(msg, want);
	ck_assert_ptr_null(strstr(msg, TOKEN_HEX));
	free(msg);
	free(want);

	ck_assert_int_eq(chmod(file, 0640), 0);
	ck_assert_ptr_null(token_with(file, -EPERM, &msg));
	ck_assert_ptr_nonnull(strstr(msg, "readable by group or others (mode 0640)"));
	free(msg);

	ck_assert_int_eq(chmod(file, 0620), 0);
	ck_assert_ptr_null(token_with(file, -EPERM, &msg));
	ck_assert_ptr_nonnull(strstr(msg, "accessible by group or others (mode 0620)"));
	free(msg);

	ck_assert_int_eq(chmod(file, 0400), 0);
	config_token_free(token_with(file, 0, NULL));
	free(file);
}
END_TEST

START_TEST(test_token_file_errors)
{
	char *file = tu_strdupf("%s/missing-token", tmpdir);
	char *msg = NULL, *want, *big;

	/* A missing token_file is an error, not a reason to look elsewhere. */
	setenv("GRAND_CHALLENGE_AUTHORIZATION", TOKEN_HEX, 1);
	ck_assert_ptr_null(token_with(file, -ENOENT, &msg));
	want = tu_strdupf("cannot open token file '%s': %s", file, strerror(ENOENT));
	ck_assert_str_eq(msg, want);
	free(msg);
	free(want);
	free(file);

	/* Three words: invalid, and the words are not repeated in the message. */
	file = make_file("token3", "Bearer secretpart " TOKEN_HEX "\n", 0600);
	ck_assert_ptr_null(token_with(file, -EINVAL, &msg));
	ck_assert_ptr_nonnull(strstr(msg, file));
	ck_assert_ptr_nonnull(strstr(msg, "invalid format"));
	ck_assert_ptr_null(strstr(msg, "secretpart"));
	ck_assert_ptr_null(strstr(msg, TOKEN_HEX));
	free(msg);
	free(file);

	/* An empty file. */
	file = make_file("token0", "", 0600);
	ck_assert_ptr_null(token_with(file, -EINVAL, &msg));
	free(msg);
	free(file);

	/* Not a regular file. */
	ck_assert_ptr_null(token_with(tmpdir, -EINVAL, &msg));
	ck_assert_ptr_nonnull(strstr(msg, "is not a regular file"));
	free(msg);

	/* Larger than the cap. */
	big = malloc(5000);
	ck_assert_ptr_nonnull(big);
	memset(big, 'a', 4999);
	big[4999] = '\0';
	file = make_file("tokenbig", big, 0600);
	ck_assert_ptr_null(token_with(file, -EFBIG, &msg));
	ck_assert_ptr_nonnull(strstr(msg, "larger than 4096 bytes"));
	free(msg);
	free(file);
	free(big);
}
END_TEST

/* Assumptions: token_file, then $CREDENTIALS_DIRECTORY/gcdrop-token, then the environment. */
START_TEST(test_token_precedence)
{
	char *file = make_file("token", "from-file\n", 0600);
	char *creds = tu_strdupf("%s/creds", tmpdir);
	char *cred = tu_strdupf("%s/gcdrop-token", creds);
	char *h, *msg = NULL;

	ck_assert_int_eq(mkdir(creds, 0700), 0);
	/* systemd makes credentials 0400 or 0440; the mode is not ours to police. */
	tu_write_file(cred, "Bearer from-credential\n", -1, 0440);
	setenv("CREDENTIALS_DIRECTORY", creds, 1);
	setenv("GRAND_CHALLENGE_AUTHORIZATION", "Bearer from-env", 1);

	h = token_with(file, 0, NULL);
	ck_assert_str_eq(h, "Bearer from-file");
	config_token_free(h);

	h = token_with(NULL, 0, NULL);
	ck_assert_str_eq(h, "Bearer from-credential");
	config_token_free(h);

	/* No credential in the directory: the environment. */
	ck_assert_int_eq(unlink(cred), 0);
	h = token_with(NULL, 0, NULL);
	ck_assert_str_eq(h, "Bearer from-env");
	config_token_free(h);

	unsetenv("CREDENTIALS_DIRECTORY");
	setenv("GRAND_CHALLENGE_AUTHORIZATION", "BEARER   from-env-2 ", 1);
	h = token_with(NULL, 0, NULL);
	ck_assert_str_eq(h, "Bearer from-env-2");
	config_token_free(h);

	/* Invalid in the environment: named, not shown. */
	setenv("GRAND_CHALLENGE_AUTHORIZATION", "Bearer two secretword", 1);
	ck_assert_ptr_null(token_with(NULL, -EINVAL, &msg));
	ck_assert_ptr_nonnull(strstr(msg, "$GRAND_CHALLENGE_AUTHORIZATION has an invalid format"));
	ck_assert_ptr_null(strstr(msg, "secretword"));
	free(msg);

	/* Nothing at all. */
	unsetenv("GRAND_CHALLENGE_AUTHORIZATION");
	ck_assert_ptr_null(token_with(NULL, -ENOENT, &msg));
	ck_assert_str_eq(msg,
	                 "no token: token_file is not set, there is no credential 'gcdrop-token' "
	                 "($CREDENTIALS_DIRECTORY is not set), and $GRAND_CHALLENGE_AUTHORIZATION "
	                 "is not set");
	free(msg);
	free(file);
	free(cred);
	free(creds);
}
END_TEST

struct nobody_case {
	const char *file;
	int r;
	char msg[512];
};

static int
nobody_token(void *ud)
{
	struct nobody_case *nc = ud;
	char path[] = "test.conf";
	struct config c = {.path = path, .token_file = strdup(nc->file)};
	char *header = NULL, *msg = NULL;
	char *want = tu_strdupf("cannot open token file '%s': %s", nc->file, strerror(EACCES));
	int r;

	if (geteuid() != 65534)
		return 10;
	r = config_token(&c, &header, &msg);
	if (r != -EACCES)
		return 11;
	if (header || !msg)
		return 12;
	if (strcmp(msg, want) != 0)
		return 13;
	free(msg);
	free(want);
	free(c.token_file);
	return 0;
}

/*
 * Assumptions: a 0600 root-owned token file is unreadable for the daemon's
 * unprivileged user, which gets a clear error naming the file (root ignores
 * file modes, so the check runs as nobody in a child).
 */
START_TEST(test_token_unreadable)
{
	struct nobody_case nc = {0};
	char *file = make_file("token", TOKEN_HEX "\n", 0600);

	/* Let nobody reach the file itself, so that its mode is what stops it. */
	ck_assert_int_eq(chmod(basedir, 0755), 0);
	ck_assert_int_eq(chmod(tmpdir, 0755), 0);
	nc.file = file;
	ck_assert_int_eq(tu_as_nobody(nobody_token, &nc), 0);
	free(file);
}
END_TEST

/* Assumptions: config_load checks the token sources unless told not to. */
START_TEST(test_load_token)
{
	char *file = make_file("token", TOKEN_HEX "\n", 0644);
	char *line = tu_strdupf("token_file = \"%s\";", file);
	char *msg, *want;
	struct config *c;

	/* No token anywhere: fine for gcdrop status, an error for gcdrop run. */
	c = load_ok(CONF(WATCH_LINE), CONFIG_LOAD_NO_TOKEN);
	config_free(c);
	msg = expect_fail(CONF(WATCH_LINE), 0, -ENOENT, 0, NULL, "no token: token_file is not set");
	free(msg);
	setenv("GRAND_CHALLENGE_AUTHORIZATION", "a b c", 1);
	msg = expect_fail(CONF(WATCH_LINE), 0, -EINVAL, 0, NULL,
	                  "$GRAND_CHALLENGE_AUTHORIZATION has an invalid format");
	free(msg);
	setenv("GRAND_CHALLENGE_AUTHORIZATION", TOKEN_HEX, 1);
	c = load_ok(CONF(WATCH_LINE), 0);
	config_free(c);

	/* A 0644 token_file is refused, also when the token is not needed now. */
	want = tu_strdupf(
	    "token file '%s' is readable by group or others (mode 0644); chmod 600 it", file);
	for (int flags = 0; flags <= CONFIG_LOAD_NO_TOKEN; flags += CONFIG_LOAD_NO_TOKEN) {
		msg = expect_fail(CONF("workers = 1;", line, WATCH_LINE), flags,
		                  flags ? -EINVAL : -EPERM, 2, "token_file", want);
		free(msg);
	}
	free(want);

	/* 0600 is accepted, and token_file is kept. */
	ck_assert_int_eq(chmod(file, 0600), 0);
	c = load_ok(CONF("workers = 1;", line, WATCH_LINE), 0);
	ck_assert_str_eq(c->token_file, file);
	config_free(c);
	free(line);

	/* A token_file that does not exist. */
	line = tu_strdupf("token_file = \"%s/none\";", tmpdir);
	msg = expect_fail(CONF(line, WATCH_LINE), CONFIG_LOAD_NO_TOKEN, -EINVAL, 1, "token_file",
	                  "does not exist");
	free(msg);
	msg = expect_fail(CONF(line, WATCH_LINE), 0, -ENOENT, 1, "token_file",
	                  "cannot open token file");
	free(msg);
	free(line);
	free(file);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_bounds_ok)
{
	struct config *c = load_ok(
	    CONF("workers = 64;", "max_attempts = 1;", "max_send_speed = 9223372036854775807L;",
	         "min_free_space = \"8388607T\";", "watches = ( {",
	         /* 64 characters */
	         "  name = \"x234567890123456789012345678901234567890123456789"
	         "012345678901234\";",
	         "  path = \"/srv/a\"; archive = \"x\";",
	         "  settle_seconds = 0; max_settle_seconds = 0;",
	         "  scan_interval = 1; job_timeout = 31536000;", "  values = ();", "} );"),
	    CONFIG_LOAD_NO_TOKEN);

	ck_assert_int_eq(c->workers, 64);
	ck_assert_int_eq(c->max_attempts, 1);
	ck_assert_int_eq(c->max_send_speed, INT64_MAX);
	ck_assert_int_eq(c->min_free_space, INT64_C(8388607) << 40);
	ck_assert_uint_eq(strlen(c->watches[0].name), 64);
	ck_assert_int_eq(c->watches[0].job_timeout, 31536000);
	ck_assert_uint_eq(c->watches[0].n_values, 0);
	config_free(c);

	c = load_ok(CONF("workers = 1;", "min_free_space = \"9223372036854775807\";", WATCH_LINE),
	            CONFIG_LOAD_NO_TOKEN);
	ck_assert_int_eq(c->workers, 1);
	ck_assert_int_eq(c->min_free_space, INT64_MAX);
	config_free(c);
}
END_TEST

START_TEST(test_bounds_bad)
{
	expect_error(CONF("min_free_space = \"8388608T\";", WATCH_LINE), 1, "min_free_space",
	             "is too large");
	expect_error(CONF("min_free_space = \"9223372036854775808\";", WATCH_LINE), 1,
	             "min_free_space", "is too large");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  job_timeout = 31536001; } );"),
	             2, "watches[0].job_timeout", "must be between 1 and 31536000");
	expect_error(CONF("watches = ( { name = \"a\"; path = \"/srv/a\"; archive = \"x\";",
	                  "  settle_seconds = 2147483647; } );"),
	             2, "watches[0].settle_seconds", "must be between 0 and 31536000");
}
END_TEST

/* Assumptions: many watches load, each found by name, none overlapping its neighbours. */
START_TEST(test_many_watches)
{
	enum { N = 300 };
	size_t cap = 64 + N * 128, len;
	char *text = malloc(cap);
	struct config *c;

	ck_assert_ptr_nonnull(text);
	len = (size_t)snprintf(text, cap, "watches = (\n");
	for (int i = 0; i < N; i++)
		len +=
		    (size_t)snprintf(text + len, cap - len,
		                     "  { name = \"w%d\"; path = \"/srv/in/w%d\"; archive = \"x\"; "
		                     "results_dir = \"/srv/out/w%d\"; }%s\n",
		                     i, i, i, i + 1 < N ? "," : "");
	snprintf(text + len, cap - len, ");\n");
	c = load_ok(text, CONFIG_LOAD_NO_TOKEN);
	ck_assert_uint_eq(c->n_watches, N);
	for (int i = 0; i < N; i += 37) {
		char name[16];
		const struct config_watch *w;

		snprintf(name, sizeof(name), "w%d", i);
		w = config_find_watch(c, name);
		ck_assert_ptr_nonnull(w);
		ck_assert_int_eq(w->line, i + 2);
	}
	config_free(c);
}
END_TEST

/* Assumptions: a token file exactly at the cap is read; whitespace padding is no token. */
START_TEST(test_token_cap)
{
	char *content = malloc(4097);
	char *file, *h;

	ck_assert_ptr_nonnull(content);
	memset(content, ' ', 4096);
	memcpy(content + 100, TOKEN_HEX, strlen(TOKEN_HEX));
	content[4096] = '\0';
	file = make_file("token", content, 0600);
	h = token_with(file, 0, NULL);
	ck_assert_str_eq(h, "Bearer " TOKEN_HEX);
	config_token_free(h);
	free(file);
	free(content);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_example);
	tcase_add_loop_test(tc, test_api_url_ok, 0, GC_ARRAY_SIZE(good_urls));
	tcase_add_loop_test(tc, test_sizes, 0, GC_ARRAY_SIZE(good_sizes));
	tcase_add_loop_test(tc, test_log_levels, 0, GC_ARRAY_SIZE(levels));
	tcase_add_test(tc, test_paths);
	tcase_add_test(tc, test_include);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_syntax_error);
	tcase_add_test(tc, test_unknown_keys);
	tcase_add_test(tc, test_wrong_types);
	tcase_add_test(tc, test_destinations);
	tcase_add_test(tc, test_missing_keys);
	tcase_add_test(tc, test_watch_names);
	tcase_add_test(tc, test_overlaps);
	tcase_add_loop_test(tc, test_relative_paths, 0, GC_ARRAY_SIZE(path_keys));
	tcase_add_test(tc, test_actions);
	tcase_add_test(tc, test_values);
	tcase_add_test(tc, test_api_url_bad);
	tcase_add_test(tc, test_numbers_bad);
	tcase_add_test(tc, test_truncated_literals);
	tcase_add_test(tc, test_ready_marker);
	suite_add_tcase(s, tc);

	tc = tcase_create("token");
	tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_normalise, 0, GC_ARRAY_SIZE(norm_table));
	tcase_add_test(tc, test_normalise_null);
	tcase_add_test(tc, test_token_file);
	tcase_add_test(tc, test_token_file_mode);
	tcase_add_test(tc, test_token_file_errors);
	tcase_add_test(tc, test_token_precedence);
	tcase_add_test(tc, test_token_unreadable);
	tcase_add_test(tc, test_load_token);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_bounds_ok);
	tcase_add_test(tc, test_bounds_bad);
	tcase_add_test(tc, test_many_watches);
	tcase_add_test(tc, test_token_cap);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
