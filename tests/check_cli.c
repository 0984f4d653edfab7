/*
 * check_cli.c: the command-line frame, run as the real gcdrop binary.
 *
 * Properties: usage errors exit 64 with a usage line; a bad configuration
 * exits 78 and names file, line and key; `status` on a fresh state directory
 * shows an empty queue, as a table and as the JSON of spec section 5; with
 * cases, its first line is the STATUS= summary (without rate), settling cases
 * are listed last without an id, and hold --all is said and kept in the queue.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "fakegc-client.h"
#include "store.h"
#include "testutil.h"

/* argv entries are char *; the strings here are constant and never written. */
#define S(x) ((char *)(uintptr_t)(x))

static char *dir;
static char *conf;

/* mkdir parent/name (0700); the path is freed (valgrind and LSan count it otherwise). */
static void
mkdir_in(const char *parent, const char *name)
{
	char *path = tu_strdupf("%s/%s", parent, name);

	mkdir(path, 0700);
	free(path);
}

static void
setup(void)
{
	char *text;

	dir = tu_mkdtemp("cli");
	conf = tu_strdupf("%s/gcdrop.conf", dir);
	text = tu_strdupf("api_url = \"https://127.0.0.1:1/api/v1/\";\n"
			  "state_dir = \"%s/state\";\n"
			  "watches = ( { name = \"in\"; path = \"%s/in\"; archive = \"demo-archive\"; } );\n",
			  dir, dir);
	tu_write_file(conf, text, -1, 0644);
	free(text);
	mkdir_in(dir, "state");
	mkdir_in(dir, "in");
}

static void
teardown(void)
{
	tu_rmtree(dir);
	free(dir);
	free(conf);
}

static int
run(char **out, char **err, const char *a1, const char *a2, const char *a3, const char *a4)
{
	char *argv[] = { S(tu_gcdrop_bin()), S(a1), S(a2), S(a3), S(a4), NULL };

	return tu_run(argv, NULL, 20000, out, err);
}

START_TEST(test_usage_errors)
{
	char *out, *err;

	ck_assert_int_eq(run(&out, &err, NULL, NULL, NULL, NULL), 64);
	ck_assert_ptr_nonnull(strstr(err, "usage: gcdrop"));
	free(out);
	free(err);
	ck_assert_int_eq(run(&out, &err, "frobnicate", NULL, NULL, NULL), 64);
	ck_assert_ptr_nonnull(strstr(err, "unknown command 'frobnicate'"));
	free(out);
	free(err);
	ck_assert_int_eq(run(&out, &err, "status", "--bogus", NULL, NULL), 64);
	ck_assert_ptr_nonnull(strstr(err, "usage: gcdrop status"));
	free(out);
	free(err);
	ck_assert_int_eq(run(&out, &err, "status", "-c", NULL, NULL), 64);
	free(out);
	free(err);
	ck_assert_int_eq(run(&out, &err, "enqueue", "-c", conf, "/tmp"), 64);
	ck_assert_ptr_nonnull(strstr(err, "--watch"));
	free(out);
	free(err);
	ck_assert_int_eq(run(&out, &err, "retry", "-c", conf, NULL), 64);
	free(out);
	free(err);
	ck_assert_int_eq(run(&out, &err, "run", "-c", conf, "extra"), 64);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_help_version)
{
	const char *cmds[] = { "run", "status", "retry", "enqueue", "hold", "release", "check" };
	char *out, *err;

	ck_assert_int_eq(run(&out, &err, "--version", NULL, NULL, NULL), 0);
	ck_assert_str_eq(out, PACKAGE_NAME " " PACKAGE_VERSION "\n");
	free(out);
	free(err);
	ck_assert_int_eq(run(&out, &err, "--help", NULL, NULL, NULL), 0);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		ck_assert_ptr_nonnull(strstr(out, cmds[i]));
	free(out);
	free(err);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char *want = tu_strdupf("usage: gcdrop %s", cmds[i]);

		ck_assert_int_eq(run(&out, &err, cmds[i], "--help", NULL, NULL), 0);
		ck_assert_msg(strstr(out, want) != NULL, "%s --help: %s", cmds[i], out);
		free(want);
		free(out);
		free(err);
	}
}
END_TEST

START_TEST(test_bad_config)
{
	char *out, *err, *bad = tu_strdupf("%s/bad.conf", dir), *want;

	/* Assumptions: an unknown key on line 2 of the file. */
	tu_write_file(bad, "state_dir = \"/tmp\";\nfrobnicate = 1;\nwatches = ();\n", -1, 0644);
	want = tu_strdupf("%s:2: frobnicate", bad);
	ck_assert_int_eq(run(&out, &err, "status", "-c", bad, NULL), 78);
	ck_assert_msg(strstr(err, want) != NULL, "stderr: %s", err);
	free(out);
	free(err);
	ck_assert_int_eq(run(&out, &err, "run", "-c", bad, NULL), 78);
	ck_assert_msg(strstr(err, want) != NULL, "stderr: %s", err);
	free(out);
	free(err);
	free(want);
	/* A file that does not exist. */
	ck_assert_int_eq(run(&out, &err, "check", "-c", "/nonexistent/gcdrop.conf", NULL), 78);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/gcdrop.conf"));
	free(out);
	free(err);
	free(bad);
}
END_TEST

START_TEST(test_status_empty)
{
	char *out, *err;
	cJSON *j, *cases, *sum;

	/* Assumptions: the state directory exists but holds no queue yet. */
	ck_assert_int_eq(run(&out, &err, "status", "-c", conf, NULL), 0);
	ck_assert_str_eq(out, "queue empty\n");
	free(out);
	free(err);
	ck_assert_int_eq(run(&out, &err, "status", "-c", conf, "--json"), 0);
	j = cJSON_Parse(out);
	ck_assert_ptr_nonnull(j);
	sum = cJSON_GetObjectItem(j, "summary");
	cases = cJSON_GetObjectItem(j, "cases");
	ck_assert(cJSON_IsObject(sum));
	ck_assert_int_eq(cJSON_GetArraySize(sum), 0);
	ck_assert(cJSON_IsArray(cases));
	ck_assert_int_eq(cJSON_GetArraySize(cases), 0);
	cJSON_Delete(j);
	free(out);
	free(err);
	/* A case that does not exist is an error, not an empty answer. */
	ck_assert_int_eq(run(&out, &err, "status", "-c", conf, "nosuchcase"), 1);
	ck_assert_ptr_nonnull(strstr(err, "no case 'nosuchcase'"));
	free(out);
	free(err);
	ck_assert_int_eq(run(&out, &err, "status", "-c", conf, "--watch=elsewhere"), 64);
	free(out);
	free(err);
}
END_TEST

/*
 * Property: the table starts with the daemon's STATUS= line (no rate: counts of
 * the work states, bytes left of the uploads, held), then the cases, then the
 * settling ones ("-" for the id); JSON has them with id null and the summary
 * counts them; a settling case can be named; hold --all is recorded in the
 * queue (and said by status), release --all ends it.
 */
START_TEST(test_status_summary_settling)
{
	char *state = tu_strdupf("%s/state", dir), *out, *err, *nl;
	struct store *st = NULL;
	struct store_case_new nc = { .watch = "in", .name = "up", .path = "/x", .fingerprint = "f1",
				     .state = STORE_UPLOADING };
	int64_t id = 0;
	bool held = false;
	cJSON *j, *c, *last = NULL;

	ck_assert_int_eq(store_open(state, 0, &st, NULL), 0);
	ck_assert_int_eq(store_case_insert(st, &nc, &id), 0);
	ck_assert_int_eq(store_case_set_progress(st, id, 1024, 3 * 1024 * 1024 + 1024), 0);
	nc.name = "done";
	nc.fingerprint = "f2";
	nc.state = STORE_SUCCEEDED;
	ck_assert_int_eq(store_case_insert(st, &nc, &id), 0);
	ck_assert_int_eq(store_settling_add(st, "in", "fresh", 1700000000), 0);
	store_close(st);

	ck_assert_int_eq(run(&out, &err, "status", "-c", conf, NULL), 0);
	nl = strchr(out, '\n');
	ck_assert_ptr_nonnull(nl);
	*nl = '\0';
	ck_assert_str_eq(out, "1 settling, 1 uploading (3 MiB left)");
	ck_assert_ptr_nonnull(strstr(nl + 1, "done"));
	ck_assert_ptr_nonnull(strstr(nl + 1, "     -  in           fresh                    settling"));
	ck_assert_ptr_nonnull(strstr(nl + 1, "since 2023-11-14T22:13:20Z"));
	ck_assert_ptr_null(strstr(nl + 1, "new cases are held"));
	free(out);
	free(err);

	ck_assert_int_eq(run(&out, &err, "status", "-c", conf, "--json"), 0);
	j = cJSON_Parse(out);
	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "summary"),
								   "settling")), 1);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "cases")), 3);
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases"))
		last = c;
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(last, "name")), "fresh");
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(last, "state")), "settling");
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(last, "id")));
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(last, "fingerprint")));
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(last, "created")),
			 "2023-11-14T22:13:20Z");
	cJSON_Delete(j);
	free(out);
	free(err);

	ck_assert_int_eq(run(&out, &err, "status", "-c", conf, "fresh"), 0);
	ck_assert_ptr_nonnull(strstr(out, "settling since 2023-11-14T22:13:20Z"));
	free(out);
	free(err);

	/* hold --all: the setting is in the queue, with a request for the daemon. */
	ck_assert_int_eq(run(&out, &err, "hold", "-c", conf, "--all"), 0);
	free(out);
	free(err);
	ck_assert_int_eq(store_open(state, STORE_OPEN_READONLY, &st, NULL), 0);
	ck_assert_int_eq(store_hold_all_get(st, &held), 0);
	ck_assert(held);
	store_close(st);
	ck_assert_int_eq(run(&out, &err, "status", "-c", conf, NULL), 0);
	ck_assert_ptr_nonnull(strstr(out, "\nnew cases are held (gcdrop hold --all"));
	free(out);
	free(err);
	ck_assert_int_eq(run(&out, &err, "release", "-c", conf, "--all"), 0);
	free(out);
	free(err);
	ck_assert_int_eq(store_open(state, STORE_OPEN_READONLY, &st, NULL), 0);
	ck_assert_int_eq(store_hold_all_get(st, &held), 0);
	ck_assert(!held);
	store_close(st);
	free(state);
}
END_TEST

START_TEST(test_example_config_checks)
{
	char *example = tu_strdupf("%s/etc/gcdrop.conf.example", tu_env("top_srcdir", ".."));
	char *argv[] = { S(tu_gcdrop_bin()), S("check"), S("--offline"), S("-c"), example, NULL };
	char *env[] = { S("GRAND_CHALLENGE_AUTHORIZATION=0123456789abcdef0123456789abcdef"), NULL };
	char *out, *err;
	int rc;

	/*
	 * Assumptions: the shipped example must always parse. Its folders do not
	 * exist on a test machine, so check may report those (exit 1), but never a
	 * configuration error (78).
	 */
	rc = tu_run(argv, env, 20000, &out, &err);
	ck_assert_msg(rc == 0 || rc == 1, "rc %d, stderr: %s", rc, err);
	ck_assert_ptr_nonnull(strstr(out, "ok:      configuration"));
	ck_assert_ptr_nonnull(strstr(out, "token found (not shown)"));
	ck_assert_ptr_null(strstr(out, "0123456789abcdef"));
	free(out);
	free(err);
	free(example);
}
END_TEST


/*
 * `gcdrop check` against the emulator: each problem it promises to catch is
 * reported by name and makes it exit 1; a sound setup exits 0.
 */
static char *
check_conf(const char *api_url, const char *algorithm, const char *archive, const char *socket)
{
	char *path = tu_strdupf("%s/check.conf", dir);
	char *text;

	mkdir_in(dir, "alg");
	text = tu_strdupf("api_url = \"%s\";\nstate_dir = \"%s/state\";\n"
			  "watches = (\n"
			  "  { name = \"alg\"; path = \"%s/alg\"; algorithm = \"%s\"; },\n"
			  "  { name = \"arc\"; path = \"%s/in\"; archive = \"%s\"; socket = \"%s\"; }\n"
			  ");\n",
			  api_url, dir, dir, algorithm, dir, archive, socket);
	tu_write_file(path, text, -1, 0644);
	free(text);
	return path;
}

static int
run_check(const char *conf_path, const char *token, char **out)
{
	char *envtok = tu_strdupf("GRAND_CHALLENGE_AUTHORIZATION=%s", token);
	char *argv[] = { S(tu_gcdrop_bin()), S("check"), S("-c"), S(conf_path), NULL };
	char *env[] = { envtok, NULL };
	char *err = NULL;
	int rc = tu_run(argv, env, 60000, out, &err);

	ck_assert_ptr_null(strstr(*out, token));
	ck_assert_ptr_null(strstr(err, token));
	free(err);
	free(envtok);
	return rc;
}

START_TEST(test_check_online)
{
	struct fakegc *fg = NULL;
	const char *tok;
	char *c, *out;

	ck_assert_int_eq(fakegc_start(NULL, &fg), 0);
	tok = fakegc_token(fg);

	/* Assumptions: everything exists and the token is right. */
	c = check_conf(fakegc_api_url(fg), "demo-algorithm", "demo-archive", "generic-medical-image");
	ck_assert_msg(run_check(c, tok, &out) == 0, "%s", out);
	ck_assert_ptr_nonnull(strstr(out, "accepts the token"));
	ck_assert_ptr_nonnull(strstr(out, "watch 'alg': algorithm 'demo-algorithm'"));
	ck_assert_ptr_nonnull(strstr(out, "watch 'arc': archive 'demo-archive'"));
	ck_assert_ptr_nonnull(strstr(out, "configuration OK"));
	free(out);

	/* A wrong token. */
	ck_assert_int_eq(run_check(c, "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", &out), 1);
	ck_assert_msg(strstr(out, "the token is not valid") != NULL, "%s", out);
	free(out);
	free(c);

	/* An algorithm and an archive the server does not have, and a socket it does not know. */
	c = check_conf(fakegc_api_url(fg), "no-such-algorithm", "no-such-archive", "no-such-socket");
	ck_assert_int_eq(run_check(c, tok, &out), 1);
	ck_assert_msg(strstr(out, "PROBLEM: watch 'alg': algorithm 'no-such-algorithm'") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "PROBLEM: watch 'arc': archive 'no-such-archive'") != NULL, "%s", out);
	free(out);
	free(c);
	c = check_conf(fakegc_api_url(fg), "demo-algorithm", "demo-archive", "no-such-socket");
	ck_assert_int_eq(run_check(c, tok, &out), 1);
	ck_assert_msg(strstr(out, "PROBLEM: watch 'arc': socket 'no-such-socket'") != NULL, "%s", out);
	free(out);
	free(c);
	ck_assert_int_eq(fakegc_stop(fg), 0);

	/* The server does not answer (nothing listens on the port any more). */
	c = check_conf("http://127.0.0.1:9/api/v1/", "demo-algorithm", "demo-archive",
		       "generic-medical-image");
	ck_assert_int_eq(run_check(c, FAKEGC_DEFAULT_TOKEN, &out), 1);
	ck_assert_msg(strstr(out, "PROBLEM: server 'http://127.0.0.1:9/api/v1/'") != NULL, "%s", out);
	free(out);
	free(c);
}
END_TEST

static Suite *
cli_suite(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_usage_errors);
	tcase_add_test(tc, test_help_version);
	tcase_add_test(tc, test_bad_config);
	tcase_add_test(tc, test_status_empty);
	tcase_add_test(tc, test_status_summary_settling);
	tcase_add_test(tc, test_example_config_checks);
	suite_add_tcase(s, tc);

	tc = tcase_create("check");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_check_online);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(cli_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
