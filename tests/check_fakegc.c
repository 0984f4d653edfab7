/*
 * check_fakegc.c: tests of the emulator helper (tests/fakegc-client.c).
 *
 * core: the emulator starts with TLS, its state and part counters parse, an
 * authenticated lookup of the demo algorithm succeeds with CA verification on, and
 * stop reaps it and removes its files.
 * errors: a different CA is refused, a bad token gets the platform's 401, a malformed
 * fault configuration is refused, a missing package directory is reported.
 * recovery: an injected 503 happens exactly once and shows in the request counts.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fakegc-client.h"
#include "testutil.h"

struct reply {
	long status;
	char *body;
	size_t len;
};

static size_t
collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct reply *r = ud;
	size_t n = size * nmemb;
	char *grown = realloc(r->body, r->len + n + 1);

	if (!grown)
		return 0;
	r->body = grown;
	memcpy(r->body + r->len, ptr, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

/* GET api_url + path with 'token' (NULL: none), trusting 'ca'; returns the curl code. */
static CURLcode
get(const struct fakegc *fg, const char *path, const char *token, const char *ca,
    struct reply *out)
{
	struct curl_slist *hdrs = NULL;
	char *url = tu_strdupf("%s%s", fakegc_api_url(fg), path);
	char *auth = NULL;
	CURL *c = curl_easy_init();
	CURLcode rc;

	ck_assert_ptr_nonnull(c);
	memset(out, 0, sizeof(*out));
	if (token) {
		auth = tu_strdupf("Authorization: Bearer %s", token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (ca)
		curl_easy_setopt(c, CURLOPT_CAINFO, ca);
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	free(auth);
	free(url);
	return rc;
}

static struct fakegc *
start_tls(void)
{
	struct fakegc_opts opts = { .tls = true };
	struct fakegc *fg = NULL;

	ck_assert_int_eq(fakegc_start(&opts, &fg), 0);
	ck_assert_ptr_nonnull(fg);
	return fg;
}

START_TEST(test_start_state_lookup_stop)
{
	struct fakegc *fg = start_tls();
	struct reply r;
	cJSON *state, *results, *count;
	char *dir;
	pid_t pid = fakegc_pid(fg);
	struct stat st;

	ck_assert_str_eq(fakegc_token(fg), FAKEGC_DEFAULT_TOKEN);
	ck_assert(strncmp(fakegc_base_url(fg), "https://127.0.0.1:", 18) == 0);
	ck_assert_str_eq(fakegc_api_url(fg) + strlen(fakegc_base_url(fg)), "api/v1/");
	ck_assert_ptr_nonnull(fakegc_ca_file(fg));
	ck_assert_int_eq(stat(fakegc_ca_file(fg), &st), 0);

	state = fakegc_state(fg);
	ck_assert_ptr_nonnull(state);
	ck_assert(cJSON_IsArray(cJSON_GetObjectItem(state, "uploads")));
	ck_assert(cJSON_IsArray(cJSON_GetObjectItem(state, "leaks")));
	cJSON_Delete(state);

	/* No part PUT yet: the per-part counters are empty. */
	state = fakegc_parts(fg);
	ck_assert_ptr_nonnull(state);
	ck_assert(cJSON_IsObject(cJSON_GetObjectItem(state, "uploads")));
	ck_assert_int_eq(cJSON_GetObjectItem(state, "puts")->valueint, 0);
	ck_assert_int_eq(cJSON_GetObjectItem(state, "acks")->valueint, 0);
	cJSON_Delete(state);

	/* The demo algorithm, by slug, with the token and the emulator's CA. */
	ck_assert_int_eq(get(fg, "algorithms/?slug=demo-algorithm", fakegc_token(fg),
			     fakegc_ca_file(fg), &r), CURLE_OK);
	ck_assert_int_eq(r.status, 200);
	state = cJSON_Parse(r.body);
	ck_assert_ptr_nonnull(state);
	count = cJSON_GetObjectItem(state, "count");
	ck_assert(cJSON_IsNumber(count) && count->valueint == 1);
	results = cJSON_GetObjectItem(state, "results");
	ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(results, 0), "slug")->valuestring,
			 "demo-algorithm");
	cJSON_Delete(state);
	free(r.body);

	/* The lookup was counted. */
	state = fakegc_state(fg);
	count = cJSON_GetObjectItem(cJSON_GetObjectItem(state, "requests"),
				    "GET /api/v1/algorithms/");
	ck_assert(cJSON_IsNumber(count) && count->valueint == 1);
	cJSON_Delete(state);

	/* Stop: the process is reaped after a clean exit and its files are gone. */
	dir = strdup(fakegc_ca_file(fg));
	*strrchr(dir, '/') = '\0';
	ck_assert_int_eq(fakegc_stop(fg), 0);
	ck_assert_int_eq(kill(pid, 0), -1);
	ck_assert_int_eq(errno, ESRCH);
	ck_assert_int_eq(stat(dir, &st), -1);
	free(dir);
}
END_TEST

START_TEST(test_wrong_ca_refused)
{
	struct fakegc *a = start_tls();
	struct fakegc *b = start_tls();
	struct reply r;

	/* b's CA does not vouch for a's certificate, nor do the system CAs. */
	ck_assert_int_eq(get(a, "gcapi/", NULL, fakegc_ca_file(b), &r),
			 CURLE_PEER_FAILED_VERIFICATION);
	free(r.body);
	ck_assert_int_eq(get(a, "gcapi/", NULL, NULL, &r), CURLE_PEER_FAILED_VERIFICATION);
	free(r.body);
	ck_assert_int_eq(get(a, "gcapi/", NULL, fakegc_ca_file(a), &r), CURLE_OK);
	ck_assert_int_eq(r.status, 200);
	free(r.body);
	fakegc_stop(a);
	fakegc_stop(b);
}
END_TEST

START_TEST(test_bad_token_and_bad_faults)
{
	struct fakegc *fg = NULL;
	struct reply r;

	ck_assert_int_eq(fakegc_start(NULL, &fg), 0);
	ck_assert(strncmp(fakegc_base_url(fg), "http://127.0.0.1:", 17) == 0);
	ck_assert_ptr_null(fakegc_ca_file(fg));
	ck_assert_int_eq(get(fg, "algorithms/", "ff", NULL, &r), CURLE_OK);
	ck_assert_int_eq(r.status, 401);
	ck_assert_str_eq(r.body, "{\"detail\":\"Invalid token.\"}");
	free(r.body);
	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"status\": 500}]}"), -EINVAL);
	ck_assert_int_eq(fakegc_set_faults(fg, "not json"), -EINVAL);
	fakegc_stop(fg);
}
END_TEST

START_TEST(test_missing_package)
{
	struct fakegc *fg = NULL;
	char *saved = strdup(tu_env("FAKEGC_DIR", ""));

	setenv("FAKEGC_DIR", "/nonexistent-fakegc-dir", 1);
	ck_assert_int_eq(fakegc_start(NULL, &fg), -ENOENT);
	ck_assert_ptr_null(fg);
	if (*saved)
		setenv("FAKEGC_DIR", saved, 1);
	else
		unsetenv("FAKEGC_DIR");
	free(saved);
}
END_TEST

START_TEST(test_fault_once)
{
	struct fakegc *fg = start_tls();
	struct reply r;
	cJSON *state, *n;

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"route\": \"algorithms-list\", "
					   "\"status\": 503, \"count\": 1}]}"), 0);
	ck_assert_int_eq(get(fg, "algorithms/", fakegc_token(fg), fakegc_ca_file(fg), &r),
			 CURLE_OK);
	ck_assert_int_eq(r.status, 503);
	free(r.body);
	ck_assert_int_eq(get(fg, "algorithms/", fakegc_token(fg), fakegc_ca_file(fg), &r),
			 CURLE_OK);
	ck_assert_int_eq(r.status, 200);
	free(r.body);
	state = fakegc_state(fg);
	n = cJSON_GetObjectItem(cJSON_GetObjectItem(state, "requests"), "GET /api/v1/algorithms/");
	ck_assert(cJSON_IsNumber(n) && n->valueint == 2);
	cJSON_Delete(state);
	ck_assert_int_eq(fakegc_advance(fg, 1.0), 0);
	fakegc_stop(fg);
}
END_TEST

static Suite *
fakegc_suite(void)
{
	Suite *s = suite_create("fakegc");
	TCase *core = tcase_create("core");
	TCase *errors = tcase_create("errors");
	TCase *recovery = tcase_create("recovery");

	tcase_set_timeout(core, 60);
	tcase_set_timeout(errors, 60);
	tcase_set_timeout(recovery, 60);
	tcase_add_test(core, test_start_state_lookup_stop);
	tcase_add_test(errors, test_wrong_ca_refused);
	tcase_add_test(errors, test_bad_token_and_bad_faults);
	tcase_add_test(errors, test_missing_package);
	tcase_add_test(recovery, test_fault_once);
	suite_add_tcase(s, core);
	suite_add_tcase(s, errors);
	suite_add_tcase(s, recovery);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	sr = srunner_create(fakegc_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
