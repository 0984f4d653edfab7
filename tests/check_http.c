/*
 * check_http.c: tests of the libcurl layer (src/http.c) against
 * tests/httpd-test.py, a scripted HTTPS/HTTP server on 127.0.0.1.
 *
 * main() makes a throw-away CA with the openssl CLI ($OPENSSL) in a temporary
 * directory (a CA, a server certificate for IP:127.0.0.1 signed by it, and an
 * unrelated "wrong" CA), starts the server once, and stops it at the end. The
 * server has two HTTPS listeners (the "api" origin and an "other" origin on
 * another port) and one plain-HTTP listener, and logs every request it gets
 * (method, path, headers, body length and MD5) as JSON lines; each test finds
 * its own requests by a tag in the path (its name).
 *
 * core: methods, headers, bodies, captured response headers.
 * security: the token only to the API origin (also across redirects, never on
 * uploads), TLS with the test CA and never with another, http:// only to
 * loopback (refused before any traffic), origin comparison, URL redaction.
 * limits: response caps, exact PUT of a file range.
 * errors: Retry-After from real responses, classification, redirect loops,
 * cut and stalled connections, refused connections.
 * recovery: a cancel flag stops a slow upload; the handle works on afterwards.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "attrs.h"
#include "http.h"
#include "testutil.h"

#define TOKEN "Bearer 0123456789abcdef0123456789abcdef-test"

static char *tmpdir, *ca_pem, *wrong_ca_pem, *log_path, *openssl_bin, *python_bin;
static int port_api, port_other, port_plain;
static pid_t server_pid;

static void suite_setup(void);

/* ---- fixture (runs once, in main) ---- */

static int
run_quiet(char *const argv[])
{
	char *out = NULL, *err = NULL;
	int st = tu_run(argv, NULL, 30000, &out, &err);

	if (st != 0)
		fprintf(stderr, "%s failed (%d): %s%s\n", argv[0], st, out ? out : "",
		    err ? err : "");
	free(out);
	free(err);
	return st;
}

static bool
make_certs(void)
{
	char *openssl = openssl_bin;
	char *ca_key = tu_strdupf("%s/ca.key", tmpdir);
	char *wrong_key = tu_strdupf("%s/wrong.key", tmpdir);
	char *srv_key = tu_strdupf("%s/server.key", tmpdir);
	char *srv_csr = tu_strdupf("%s/server.csr", tmpdir);
	char *srv_pem = tu_strdupf("%s/server.pem", tmpdir);
	char *ext = tu_strdupf("%s/ext.cnf", tmpdir);
	char *serial = tu_strdupf("%s/ca.srl", tmpdir);
	bool ok;

	tu_write_file(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
	    "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n", -1, 0644);
	{
		char *ca[] = { openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
			"ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca_key, "-out", ca_pem,
			"-days", "2", "-subj", "/CN=gcdrop test CA", NULL };
		char *wrong[] = { openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
			"ec_paramgen_curve:prime256v1", "-nodes", "-keyout", wrong_key, "-out",
			wrong_ca_pem, "-days", "2", "-subj", "/CN=gcdrop wrong CA", NULL };
		char *csr[] = { openssl, "req", "-new", "-newkey", "ec", "-pkeyopt",
			"ec_paramgen_curve:prime256v1", "-nodes", "-keyout", srv_key, "-out",
			srv_csr, "-subj", "/CN=127.0.0.1", NULL };
		char *sign[] = { openssl, "x509", "-req", "-in", srv_csr, "-CA", ca_pem,
			"-CAkey", ca_key, "-CAserial", serial, "-CAcreateserial", "-out", srv_pem,
			"-days", "2", "-extfile", ext, NULL };

		ok = run_quiet(ca) == 0 && run_quiet(wrong) == 0 && run_quiet(csr) == 0 &&
		    run_quiet(sign) == 0;
	}
	free(ca_key);
	free(wrong_key);
	free(srv_key);
	free(srv_csr);
	free(srv_pem);
	free(ext);
	free(serial);
	return ok;
}

static bool
server_ready(void *ud)
{
	char *out = tu_read_file((const char *)ud, NULL), *line;
	bool ok = false;

	if (!out)
		return false;
	line = strstr(out, "{\"api\"");
	if (line && strchr(line, '\n'))
		ok = sscanf(line, "{\"api\": %d, \"other\": %d, \"plain\": %d}", &port_api,
		    &port_other, &port_plain) == 3;
	free(out);
	return ok;
}

static bool
start_server(void)
{
	char *script = tu_strdupf("%s/tests/httpd-test.py", tu_env("top_srcdir", "."));
	char *out = tu_strdupf("%s/server.out", tmpdir);
	char *cert = tu_strdupf("%s/server.pem", tmpdir);
	char *key = tu_strdupf("%s/server.key", tmpdir);
	char *argv[] = { python_bin, script, "--cert", cert,
		"--key", key, "--log", log_path, NULL };
	bool ok;

	server_pid = tu_spawn(argv, NULL, out);
	ok = tu_wait_until(server_ready, out, 20000);
	if (!ok) {
		char *text = tu_read_file(out, NULL);

		fprintf(stderr, "httpd-test.py did not start: %s\n", text ? text : "");
		free(text);
	}
	free(script);
	free(out);
	free(cert);
	free(key);
	return ok;
}

/* ---- helpers ---- */

static char *
url(const char *scheme_listener, const char *path)
{
	if (strcmp(scheme_listener, "api") == 0)
		return tu_strdupf("https://127.0.0.1:%d%s", port_api, path);
	if (strcmp(scheme_listener, "other") == 0)
		return tu_strdupf("https://127.0.0.1:%d%s", port_other, path);
	return tu_strdupf("http://127.0.0.1:%d%s", port_plain, path);
}

static struct http *
new_handle(const char *ca, const char *auth)
{
	char *api = url("api", "/api/v1/");
	struct http_opts o = { .api_url = api, .authorization = auth, .ca_file = ca };
	struct http *h = http_new(&o);

	ck_assert_ptr_nonnull(h);
	free(api);
	return h;
}

/* The logged requests of one tag, in order; a cJSON array the caller deletes. */
static cJSON *
log_entries(const char *tag)
{
	char *text = tu_read_file(log_path, NULL), *line, *save = NULL;
	cJSON *arr = cJSON_CreateArray(), *e, *t;

	for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
	    line = strtok_r(NULL, "\n", &save)) {
		e = cJSON_Parse(line);
		ck_assert_ptr_nonnull(e);
		t = cJSON_GetObjectItem(e, "tag");
		if (cJSON_IsString(t) && strcmp(t->valuestring, tag) == 0)
			cJSON_AddItemToArray(arr, e);
		else
			cJSON_Delete(e);
	}
	free(text);
	return arr;
}

static const char *
entry_str(const cJSON *e, const char *key)
{
	const cJSON *v = cJSON_GetObjectItem(e, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *
entry_header(const cJSON *e, const char *name)
{
	return entry_str(cJSON_GetObjectItem(e, "headers"), name);
}

static long
entry_num(const cJSON *e, const char *key)
{
	const cJSON *v = cJSON_GetObjectItem(e, key);

	ck_assert(cJSON_IsNumber(v));
	return (long)v->valuedouble;
}

static int
get(struct http *h, const char *u, size_t cap, struct http_resp *resp, struct http_error *err)
{
	struct http_req req = { .method = HTTP_GET, .url = u, .max_response = cap };

	return http_request(h, &req, resp, err);
}

static char *
make_temp_file(const char *name, size_t size, off_t sparse_size)
{
	char *path = tu_strdupf("%s/%s", tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char *data = malloc(size ? size : 1);
	size_t i;
	uint32_t x = 12345;

	ck_assert_int_ge(fd, 0);
	for (i = 0; i < size; i++) {
		x = x * 1103515245 + 12345;
		data[i] = (char)(x >> 16);
	}
	ck_assert_int_eq(write(fd, data, size), (ssize_t)size);
	if (sparse_size)
		ck_assert_int_eq(ftruncate(fd, sparse_size), 0);
	close(fd);
	free(data);
	return path;
}

/* MD5 of bytes [off, off+len) of a file, with the openssl CLI (hex). */
static char *
md5_of_range(const char *path, off_t off, size_t len)
{
	char *part = tu_strdupf("%s/range.bin", tmpdir), *out = NULL, *sp;
	char *buf = malloc(len ? len : 1);
	int fd = open(path, O_RDONLY);
	char *argv[] = { openssl_bin, "dgst", "-md5", "-r", part,
		NULL };

	ck_assert_int_eq(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
	tu_write_file(part, buf, (ssize_t)len, 0600);
	ck_assert_int_eq(tu_run(argv, NULL, 10000, &out, NULL), 0);
	sp = strchr(out, ' ');
	ck_assert_ptr_nonnull(sp);
	*sp = '\0';
	free(buf);
	free(part);
	return out;
}

/* ---- core ---- */

START_TEST(test_get_json)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *u = url("api", "/get_json/json");
	cJSON *log, *body;
	const cJSON *ent;

	ck_assert_int_eq(get(h, u, 0, &r, &e), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.content_type, "application/json");
	body = cJSON_Parse(r.body);
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(body, "ok")));
	ck_assert_str_eq(cJSON_GetObjectItem(body, "method")->valuestring, "GET");
	ck_assert_uint_eq(r.body_len, strlen(r.body));
	ck_assert_int_eq(r.retry_after_ms, -1);
	ck_assert_int_eq(http_classify(0, &e, &r), HTTP_CLASS_OK);
	cJSON_Delete(body);

	log = log_entries("get_json");
	ck_assert_int_eq(cJSON_GetArraySize(log), 1);
	ent = cJSON_GetArrayItem(log, 0);
	ck_assert_str_eq(entry_str(ent, "method"), "GET");
	ck_assert_str_eq(entry_str(ent, "listener"), "api");
	ck_assert_str_eq(entry_header(ent, "authorization"), TOKEN);
	ck_assert_str_eq(entry_header(ent, "accept"), "application/json");
	ck_assert_str_eq(entry_header(ent, "user-agent"), "gcdrop/" PACKAGE_VERSION);
	ck_assert_ptr_null(entry_header(ent, "content-type"));
	cJSON_Delete(log);
	http_resp_done(&r);
	free(u);
	http_free(h);
}
END_TEST

START_TEST(test_methods_and_bodies)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *u = url("api", "/methods/json");
	const char *json = "{\"a\": 1, \"b\": \"x\"}";
	struct http_req post = { .method = HTTP_POST, .url = u, .json = json };
	struct http_req patch = { .method = HTTP_PATCH, .url = u };
	struct http_req put = { .method = HTTP_PUT, .url = u, .json = "[]" };
	struct http_req del = { .method = HTTP_DELETE, .url = u };
	struct http_req post_empty = { .method = HTTP_POST, .url = u };
	cJSON *log;
	const cJSON *ent;

	/* POST with JSON, PATCH without body, PUT with JSON, DELETE, POST without body. */
	ck_assert_int_eq(http_request(h, &post, &r, &e), 0);
	ck_assert_int_eq(r.status, 200);
	http_resp_done(&r);
	ck_assert_int_eq(http_request(h, &patch, &r, &e), 0);
	http_resp_done(&r);
	ck_assert_int_eq(http_request(h, &put, &r, &e), 0);
	http_resp_done(&r);
	ck_assert_int_eq(http_request(h, &del, &r, &e), 0);
	http_resp_done(&r);
	ck_assert_int_eq(http_request(h, &post_empty, &r, &e), 0);
	http_resp_done(&r);

	log = log_entries("methods");
	ck_assert_int_eq(cJSON_GetArraySize(log), 5);
	ent = cJSON_GetArrayItem(log, 0);
	ck_assert_str_eq(entry_str(ent, "method"), "POST");
	ck_assert_str_eq(entry_header(ent, "content-type"), "application/json");
	ck_assert_int_eq(entry_num(ent, "body_len"), (long)strlen(json));
	ck_assert_ptr_null(entry_header(ent, "expect"));

	/* A PATCH without a body sends no body and no Content-Type. */
	ent = cJSON_GetArrayItem(log, 1);
	ck_assert_str_eq(entry_str(ent, "method"), "PATCH");
	ck_assert_ptr_null(entry_header(ent, "content-type"));
	ck_assert_int_eq(entry_num(ent, "body_len"), 0);

	ent = cJSON_GetArrayItem(log, 2);
	ck_assert_str_eq(entry_str(ent, "method"), "PUT");
	ck_assert_str_eq(entry_header(ent, "content-type"), "application/json");
	ck_assert_int_eq(entry_num(ent, "body_len"), 2);

	ent = cJSON_GetArrayItem(log, 3);
	ck_assert_str_eq(entry_str(ent, "method"), "DELETE");
	ck_assert_ptr_null(entry_header(ent, "content-type"));

	ent = cJSON_GetArrayItem(log, 4);
	ck_assert_str_eq(entry_str(ent, "method"), "POST");
	ck_assert_ptr_null(entry_header(ent, "content-type"));
	ck_assert_str_eq(entry_header(ent, "content-length"), "0");
	cJSON_Delete(log);
	free(u);
	http_free(h);
}
END_TEST

START_TEST(test_headers_captured)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *u1 = url("api", "/captured/etag"), *u2 = url("api", "/captured/redirect-self/json");
	cJSON *log;

	/* The ETag comes back verbatim, quotes included. */
	ck_assert_int_eq(get(h, u1, 0, &r, &e), 0);
	ck_assert_str_eq(r.etag, "\"0123abcd\"");
	http_resp_done(&r);

	/* API calls do not follow redirects: the 302 and its Location come back. */
	ck_assert_int_eq(get(h, u2, 0, &r, &e), 0);
	ck_assert_int_eq(r.status, 302);
	ck_assert_str_eq(r.location, "/captured/json");
	ck_assert_str_eq(r.body, "moved");
	ck_assert_int_eq(http_classify(0, &e, &r), HTTP_CLASS_FAIL);
	http_resp_done(&r);
	log = log_entries("captured");
	ck_assert_int_eq(cJSON_GetArraySize(log), 2);
	cJSON_Delete(log);
	free(u1);
	free(u2);
	http_free(h);
}
END_TEST

START_TEST(test_plain_http_loopback)
{
	char *api = url("plain", "/api/v1/"), *u = url("plain", "/plain/json");
	struct http_opts o = { .api_url = api, .authorization = TOKEN };
	struct http *h = http_new(&o);
	struct http_resp r = { 0 };
	struct http_error e;
	cJSON *log;

	/* http:// to 127.0.0.1 is allowed, and is then the API origin like any other. */
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(get(h, u, 0, &r, &e), 0);
	ck_assert_int_eq(r.status, 200);
	log = log_entries("plain");
	ck_assert_int_eq(cJSON_GetArraySize(log), 1);
	ck_assert_str_eq(entry_header(cJSON_GetArrayItem(log, 0), "authorization"), TOKEN);
	cJSON_Delete(log);
	http_resp_done(&r);
	http_free(h);
	free(api);
	free(u);
}
END_TEST

/* ---- security ---- */

START_TEST(test_token_only_to_api_origin)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *other = url("other", "/origin/json"), *plain = url("plain", "/origin/json");
	char *api = url("api", "/origin/json");
	char *api_host = tu_strdupf("https://LOCALHOST:%d/origin/json", port_api);
	cJSON *log;
	int i;

	/* Same host, other port; other scheme; same origin; another name for the same host. */
	ck_assert_int_eq(get(h, other, 0, &r, &e), 0);
	http_resp_done(&r);
	ck_assert_int_eq(get(h, plain, 0, &r, &e), 0);
	http_resp_done(&r);
	ck_assert_int_eq(get(h, api, 0, &r, &e), 0);
	http_resp_done(&r);
	log = log_entries("origin");
	ck_assert_int_eq(cJSON_GetArraySize(log), 3);
	for (i = 0; i < 3; i++) {
		const cJSON *ent = cJSON_GetArrayItem(log, i);
		bool is_api = strcmp(entry_str(ent, "listener"), "api") == 0;

		ck_assert_msg(is_api == (entry_header(ent, "authorization") != NULL),
		    "listener %s: authorization %s", entry_str(ent, "listener"),
		    entry_header(ent, "authorization") ? "sent" : "not sent");
	}
	cJSON_Delete(log);
	/* "localhost" is not the origin "127.0.0.1": no token (and the certificate says so too). */
	ck_assert(!http_same_origin(api_host, api));
	free(other);
	free(plain);
	free(api);
	free(api_host);
	http_free(h);
}
END_TEST

START_TEST(test_download_redirect_drops_token)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *u = url("api", "/dlredir/redirect-other/download/100000");
	char *path = tu_strdupf("%s/dl.bin", tmpdir), *data;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	size_t len, i;
	cJSON *log;
	const cJSON *ent;

	/* The platform answers a download with a 302 to storage on another origin. */
	ck_assert_int_eq(http_download(h, u, fd, NULL, &r, &e), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(r.bytes, 100000);
	close(fd);
	data = tu_read_file(path, &len);
	ck_assert_uint_eq(len, 100000);
	for (i = 0; i < len; i++)
		ck_assert_int_eq((unsigned char)data[i], i % 251);
	free(data);

	log = log_entries("dlredir");
	ck_assert_int_eq(cJSON_GetArraySize(log), 2);
	ent = cJSON_GetArrayItem(log, 0);
	ck_assert_str_eq(entry_str(ent, "listener"), "api");
	ck_assert_str_eq(entry_header(ent, "authorization"), TOKEN);
	ent = cJSON_GetArrayItem(log, 1);
	ck_assert_str_eq(entry_str(ent, "listener"), "other");
	ck_assert_str_eq(entry_str(ent, "path"), "/dlredir/download/100000");
	ck_assert_ptr_null(entry_header(ent, "authorization"));
	cJSON_Delete(log);
	http_resp_done(&r);
	free(u);
	free(path);
	http_free(h);
}
END_TEST

START_TEST(test_download_per_hop_decision)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *u = url("api", "/hops/redirect-other/redirect-api/download/10");
	int fd = open("/dev/null", O_WRONLY);
	cJSON *log;

	/*
	 * api (first hop: token) -> other (no token) -> back to api (a redirect
	 * hop: still no token, although it is the API origin: storage served from
	 * the API's own origin, as the emulator does, must not see it either).
	 */
	ck_assert_int_eq(http_download(h, u, fd, NULL, &r, &e), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(r.bytes, 10);
	log = log_entries("hops");
	ck_assert_int_eq(cJSON_GetArraySize(log), 3);
	ck_assert_str_eq(entry_str(cJSON_GetArrayItem(log, 0), "listener"), "api");
	ck_assert_str_eq(entry_header(cJSON_GetArrayItem(log, 0), "authorization"), TOKEN);
	ck_assert_str_eq(entry_str(cJSON_GetArrayItem(log, 1), "listener"), "other");
	ck_assert_ptr_null(entry_header(cJSON_GetArrayItem(log, 1), "authorization"));
	ck_assert_str_eq(entry_str(cJSON_GetArrayItem(log, 2), "listener"), "api");
	ck_assert_str_eq(entry_str(cJSON_GetArrayItem(log, 2), "path"), "/hops/download/10");
	ck_assert_ptr_null(entry_header(cJSON_GetArrayItem(log, 2), "authorization"));
	cJSON_Delete(log);
	close(fd);
	http_resp_done(&r);
	free(u);
	http_free(h);
}
END_TEST

START_TEST(test_put_never_sends_token)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *file = make_temp_file("tok.bin", 1000, 0);
	char *u = url("api", "/puttoken/upload/part1?X-Amz-Signature=abc");
	int fd = open(file, O_RDONLY);
	cJSON *log;

	/* Even a presigned URL on the API origin itself gets no token. */
	ck_assert_int_eq(http_put_file(h, u, fd, 0, 1000, NULL, &r, &e), 0);
	ck_assert_int_eq(r.status, 200);
	log = log_entries("puttoken");
	ck_assert_int_eq(cJSON_GetArraySize(log), 1);
	ck_assert_ptr_null(entry_header(cJSON_GetArrayItem(log, 0), "authorization"));
	cJSON_Delete(log);
	close(fd);
	http_resp_done(&r);
	free(u);
	free(file);
	http_free(h);
}
END_TEST

START_TEST(test_tls_wrong_ca_refused)
{
	struct http *wrong = new_handle(wrong_ca_pem, TOKEN);
	struct http *system = new_handle(NULL, TOKEN);
	struct http_resp r = { .status = 12345 };
	struct http_error e;
	char *u = url("api", "/wrongca/json");
	cJSON *log;

	/* A CA that did not sign the server's certificate: refused, no fallback. */
	ck_assert_int_eq(get(wrong, u, 0, &r, &e), -EPROTO);
	ck_assert_int_eq(e.code, -EPROTO);
	ck_assert_int_eq(e.curl_code, CURLE_PEER_FAILED_VERIFICATION);
	ck_assert_int_eq(e.cls, HTTP_CLASS_RETRY);
	ck_assert_int_eq(r.status, 12345);	/* untouched on failure */
	ck_assert_str_ne(e.message, "");
	/* The system store does not know the test CA either. */
	ck_assert_int_eq(get(system, u, 0, &r, &e), -EPROTO);
	/* No request ever reached the server (the handshake failed first). */
	log = log_entries("wrongca");
	ck_assert_int_eq(cJSON_GetArraySize(log), 0);
	cJSON_Delete(log);
	free(u);
	http_free(wrong);
	http_free(system);
}
END_TEST

START_TEST(test_http_non_loopback_refused)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { .status = 12345 };
	struct http_error e;
	int fd = open("/dev/null", O_RDWR);
	long long t0 = tu_now_ms();

	/* TEST-NET-1: refused before any connection attempt, so it returns at once. */
	ck_assert_int_eq(get(h, "http://192.0.2.1/api/v1/", 0, &r, &e), -EACCES);
	ck_assert_int_eq(e.curl_code, 0);
	ck_assert_int_eq(e.cls, HTTP_CLASS_FAIL);
	ck_assert_ptr_nonnull(strstr(e.message, "loopback"));
	ck_assert_int_eq(http_put_file(h, "http://192.0.2.1/b/k?sig=1", fd, 0, 0, NULL, &r, &e),
	    -EACCES);
	ck_assert_ptr_null(strstr(e.message, "sig=1"));
	ck_assert_int_eq(http_download(h, "http://192.0.2.1/media/x", fd, NULL, &r, &e), -EACCES);
	ck_assert_int_eq(e.curl_code, 0);
	ck_assert_int_eq(r.status, 12345);
	ck_assert_int_lt(tu_now_ms() - t0, 1000);
	close(fd);
	http_free(h);
}
END_TEST

START_TEST(test_redirect_to_far_http_refused)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *u = url("api", "/far/redirect-far/secret?x=1");
	int fd = open("/dev/null", O_WRONLY);
	cJSON *log;

	/* A hop to http:// on a non-loopback host stops the download before connecting. */
	ck_assert_int_eq(http_download(h, u, fd, NULL, &r, &e), -EACCES);
	ck_assert_int_eq(e.curl_code, 0);
	log = log_entries("far");
	ck_assert_int_eq(cJSON_GetArraySize(log), 1);
	cJSON_Delete(log);
	close(fd);
	free(u);
	http_free(h);
}
END_TEST

static const struct {
	const char *url;
	int rc;
} check_url_cases[] = {
	{ "https://grand-challenge.org/api/v1/", 0 },
	{ "https://192.0.2.1/", 0 },
	{ "http://127.0.0.1:8000/api/v1/", 0 },
	{ "http://127.1.2.3/", 0 },
	{ "http://localhost:9/", 0 },
	{ "http://LOCALHOST/", 0 },
	{ "http://[::1]:8080/", 0 },
	{ "http://[::ffff:127.0.0.1]/", 0 },
	{ "HTTP://127.0.0.1/", 0 },
	{ "http://192.0.2.1/", -EACCES },
	{ "http://10.0.0.1/", -EACCES },
	{ "http://128.0.0.1/", -EACCES },
	{ "http://grand-challenge.org/", -EACCES },
	{ "http://localhost.example.com/", -EACCES },
	{ "http://127.0.0.1.example.com/", -EACCES },
	{ "http://[::2]/", -EACCES },
	{ "http://[::ffff:10.0.0.1]/", -EACCES },
	{ "ftp://127.0.0.1/", -EPROTONOSUPPORT },
	{ "file:///etc/passwd", -EINVAL },
	{ "gopher://127.0.0.1/", -EPROTONOSUPPORT },
	{ "not a url", -EINVAL },
	{ "/api/v1/", -EINVAL },
	{ "", -EINVAL },
};

START_TEST(test_check_url)
{
	int rc = http_check_url(check_url_cases[_i].url);

	ck_assert_msg(rc == check_url_cases[_i].rc, "'%s': %d, want %d", check_url_cases[_i].url,
	    rc, check_url_cases[_i].rc);
}
END_TEST

static const struct {
	const char *a, *b;
	bool same;
} origin_cases[] = {
	{ "https://grand-challenge.org/api/v1/", "https://grand-challenge.org/media/x", true },
	{ "https://Grand-Challenge.ORG/a", "https://grand-challenge.org:443/b", true },
	{ "HTTPS://grand-challenge.org/a", "https://grand-challenge.org/b?x=1", true },
	{ "http://127.0.0.1/a", "http://127.0.0.1:80/b", true },
	{ "https://grand-challenge.org/", "http://grand-challenge.org/", false },
	{ "https://grand-challenge.org/", "https://grand-challenge.org:8443/", false },
	{ "https://grand-challenge.org/", "https://s3.amazonaws.com/", false },
	{ "https://grand-challenge.org/", "https://evil.org/grand-challenge.org/", false },
	{ "https://grand-challenge.org/", "https://grand-challenge.org.evil.org/", false },
	{ "https://user@grand-challenge.org/", "https://grand-challenge.org/", true },
	{ "https://grand-challenge.org/", "not a url", false },
};

START_TEST(test_same_origin)
{
	ck_assert_msg(http_same_origin(origin_cases[_i].a, origin_cases[_i].b) ==
	    origin_cases[_i].same, "'%s' vs '%s'", origin_cases[_i].a, origin_cases[_i].b);
}
END_TEST

static const struct {
	const char *in, *out;
} redact_cases[] = {
	{ "https://bucket.s3.amazonaws.com/key/part?X-Amz-Signature=abc&X-Amz-Credential=x",
	  "https://bucket.s3.amazonaws.com/key/part" },
	{ "https://grand-challenge.org/api/v1/uploads/?limit=10#frag",
	  "https://grand-challenge.org/api/v1/uploads/" },
	{ "https://user:secret@example.com:8443/a/b?q", "https://example.com:8443/a/b" },
	{ "https://example.com/plain", "https://example.com/plain" },
	{ "http://127.0.0.1:9/x#only-fragment", "http://127.0.0.1:9/x" },
	{ "not a url?token=1", "not a url" },
	/* Regression (fuzz_url): a string curl refuses still loses its userinfo. */
	{ "https://user:secret@host/a b?X-Amz-Signature=s", "https://host/a b" },
	{ "https://u@x:p@w@host\t/p?q", "https://host\t/p" },
	{ "", "" },
};

START_TEST(test_redact)
{
	char *s = http_redact_url(redact_cases[_i].in);

	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s, redact_cases[_i].out);
	free(s);
}
END_TEST

START_TEST(test_bad_api_url)
{
	struct http_opts o = { .api_url = "ftp://example.com/" };
	struct http_opts o2 = { .api_url = "no url" };
	struct http_opts none = { 0 };
	struct http *h;

	ck_assert_ptr_null(http_new(&o));
	ck_assert_ptr_null(http_new(&o2));
	/* No API URL: a handle that never sends a token. */
	h = http_new(&none);
	ck_assert_ptr_nonnull(h);
	ck_assert_ptr_null(http_free(h));
	ck_assert_ptr_null(http_free(NULL));
}
END_TEST

/* ---- limits ---- */

START_TEST(test_response_cap)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *exact = url("api", "/cap/big/4096"), *over = url("api", "/cap/big/4097");
	char *chunked = url("api", "/cap/big-chunked/300000");
	char *dflt = tu_strdupf("https://127.0.0.1:%d/cap/big/%zu", port_api,
	    HTTP_RESPONSE_MAX + 1);
	char *ok = url("api", "/cap/json");

	/* Exactly the cap fits. */
	ck_assert_int_eq(get(h, exact, 4096, &r, &e), 0);
	ck_assert_uint_eq(r.body_len, 4096);
	http_resp_done(&r);
	/* One byte more is refused, announced by Content-Length ... */
	ck_assert_int_eq(get(h, over, 4096, &r, &e), -E2BIG);
	ck_assert_int_eq(e.cls, HTTP_CLASS_FAIL);
	ck_assert_ptr_nonnull(strstr(e.message, "response too large"));
	/* ... or found while streaming a chunked body. */
	ck_assert_int_eq(get(h, chunked, 100000, &r, &e), -E2BIG);
	ck_assert_ptr_nonnull(strstr(e.message, "response too large"));
	/* The default cap is HTTP_RESPONSE_MAX. */
	ck_assert_int_eq(get(h, dflt, 0, &r, &e), -E2BIG);
	/* The handle is still good. */
	ck_assert_int_eq(get(h, ok, 0, &r, &e), 0);
	ck_assert_int_eq(r.status, 200);
	http_resp_done(&r);
	free(exact);
	free(over);
	free(chunked);
	free(dflt);
	free(ok);
	http_free(h);
}
END_TEST

START_TEST(test_download_cap)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	struct http_xfer x = { .max_bytes = 1000 };
	char *u = url("api", "/dlcap/download/1001"), *u2 = url("api", "/dlcap/download/1000");
	int fd = open("/dev/null", O_WRONLY);

	ck_assert_int_eq(http_download(h, u, fd, &x, &r, &e), -E2BIG);
	ck_assert_int_eq(http_download(h, u2, fd, &x, &r, &e), 0);
	ck_assert_int_eq(r.bytes, 1000);
	http_resp_done(&r);
	close(fd);
	free(u);
	free(u2);
	http_free(h);
}
END_TEST

static int64_t progress_last, progress_total;
static int progress_calls;

static void
on_progress(void *ud, int64_t done, int64_t total)
{
	ck_assert_ptr_eq(ud, &progress_calls);
	ck_assert_int_ge(done, progress_last);
	progress_last = done;
	progress_total = total;
	progress_calls++;
}

START_TEST(test_put_file_range)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	struct http_xfer x = { .progress = on_progress, .progress_ud = &progress_calls };
	char *file = make_temp_file("range.src", 3 << 20, 0);
	char *u = url("other", "/putrange/upload/part?X-Amz-Signature=s");
	char *md5 = md5_of_range(file, 123457, 2000003), *want;
	int fd = open(file, O_RDONLY);
	cJSON *log;
	const cJSON *ent;

	/* 2,000,003 bytes from offset 123,457 go up as exactly those bytes. */
	ck_assert_int_eq(lseek(fd, 77, SEEK_SET), 77);
	ck_assert_int_eq(http_put_file(h, u, fd, 123457, 2000003, &x, &r, &e), 0);
	ck_assert_int_eq(r.status, 200);
	want = tu_strdupf("\"%s\"", md5);
	ck_assert_str_eq(r.etag, want);
	/* The fd's offset is not moved (pread). */
	ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 77);
	ck_assert_int_gt(progress_calls, 0);
	ck_assert_int_eq(progress_last, 2000003);
	ck_assert_int_eq(progress_total, 2000003);

	log = log_entries("putrange");
	ck_assert_int_eq(cJSON_GetArraySize(log), 1);
	ent = cJSON_GetArrayItem(log, 0);
	ck_assert_str_eq(entry_str(ent, "method"), "PUT");
	ck_assert_str_eq(entry_header(ent, "content-length"), "2000003");
	ck_assert_ptr_null(entry_header(ent, "transfer-encoding"));
	ck_assert_ptr_null(entry_header(ent, "expect"));
	ck_assert_ptr_null(entry_header(ent, "content-type"));
	ck_assert_int_eq(entry_num(ent, "body_len"), 2000003);
	ck_assert_str_eq(entry_str(ent, "body_md5"), md5);
	cJSON_Delete(log);
	http_resp_done(&r);

	/* An empty range is a valid, empty PUT. */
	ck_assert_int_eq(http_put_file(h, u, fd, 0, 0, NULL, &r, &e), 0);
	ck_assert_str_eq(r.etag, "\"d41d8cd98f00b204e9800998ecf8427e\"");
	http_resp_done(&r);
	close(fd);
	free(want);
	free(md5);
	free(u);
	free(file);
	http_free(h);
}
END_TEST

START_TEST(test_put_file_shrunk)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { .status = 12345 };
	struct http_error e;
	char *file = make_temp_file("short.src", 1000, 0);
	char *u = url("other", "/putshort/upload/p");
	int fd = open(file, O_RDONLY);

	/* The file ends before offset + length: it changed under us. */
	ck_assert_int_eq(http_put_file(h, u, fd, 500, 1000, NULL, &r, &e), -ENODATA);
	ck_assert_int_eq(e.cls, HTTP_CLASS_FAIL);
	ck_assert_int_eq(r.status, 12345);
	/* A bad fd is a read error. */
	ck_assert_int_eq(http_put_file(h, u, -1, 0, 10, NULL, &r, &e), -EINVAL);
	close(fd);
	free(u);
	free(file);
	http_free(h);
}
END_TEST

/* ---- errors ---- */

START_TEST(test_retry_after_from_response)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *secs = url("api", "/ra/retry-after/7");
	char *date = url("api", "/ra/retry-after-date/120");
	char *junk = url("api", "/ra/retry-after/soon%20please");

	ck_assert_int_eq(get(h, secs, 0, &r, &e), 0);
	ck_assert_int_eq(r.status, 429);
	ck_assert_int_eq(r.retry_after_ms, 7000);
	ck_assert_str_eq(r.content_type, "text/html");
	ck_assert_int_eq(http_classify(0, &e, &r), HTTP_CLASS_RETRY);
	http_resp_done(&r);

	ck_assert_int_eq(get(h, date, 0, &r, &e), 0);
	ck_assert_int_ge(r.retry_after_ms, 117000);
	ck_assert_int_le(r.retry_after_ms, 121000);
	http_resp_done(&r);

	/* Unparseable: -1, the caller keeps its own delay. */
	ck_assert_int_eq(get(h, junk, 0, &r, &e), 0);
	ck_assert_int_eq(r.status, 429);
	ck_assert_int_eq(r.retry_after_ms, -1);
	http_resp_done(&r);
	free(secs);
	free(date);
	free(junk);
	http_free(h);
}
END_TEST

static const struct {
	const char *path;
	long status;
	enum http_class cls;
} classify_cases[] = {
	{ "/cls/status/200", 200, HTTP_CLASS_OK },
	{ "/cls/status/201", 201, HTTP_CLASS_OK },
	{ "/cls/status/204", 204, HTTP_CLASS_OK },
	{ "/cls/status/400", 400, HTTP_CLASS_FAIL },
	{ "/cls/status/401", 401, HTTP_CLASS_AUTH },
	{ "/cls/403-token", 403, HTTP_CLASS_AUTH },
	{ "/cls/status/403", 403, HTTP_CLASS_FAIL },
	{ "/cls/status/404", 404, HTTP_CLASS_FAIL },
	{ "/cls/status/408", 408, HTTP_CLASS_RETRY },
	{ "/cls/status/429", 429, HTTP_CLASS_RETRY },
	{ "/cls/status/500", 500, HTTP_CLASS_RETRY },
	{ "/cls/status/502", 502, HTTP_CLASS_RETRY },
	{ "/cls/status/503", 503, HTTP_CLASS_RETRY },
	{ "/cls/status/504", 504, HTTP_CLASS_RETRY },
	{ "/cls/status/507", 507, HTTP_CLASS_RETRY },
};

START_TEST(test_classify_responses)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *u = url("api", classify_cases[_i].path);

	ck_assert_int_eq(get(h, u, 0, &r, &e), 0);
	ck_assert_int_eq(r.status, classify_cases[_i].status);
	ck_assert_int_eq(http_classify(0, &e, &r), classify_cases[_i].cls);
	http_resp_done(&r);
	free(u);
	http_free(h);
}
END_TEST

START_TEST(test_classify_status)
{
	ck_assert_int_eq(http_classify_status(403, "{\"detail\": \"Authentication credentials "
	    "were not provided.\"}"), HTTP_CLASS_AUTH);
	ck_assert_int_eq(http_classify_status(403, "{\"detail\": \"Upload limit reached\"}"),
	    HTTP_CLASS_FAIL);
	ck_assert_int_eq(http_classify_status(403, NULL), HTTP_CLASS_FAIL);
	ck_assert_int_eq(http_classify_status(100, NULL), HTTP_CLASS_FAIL);
	ck_assert_int_eq(http_classify_status(599, NULL), HTTP_CLASS_RETRY);
	ck_assert_int_eq(http_classify_status(0, NULL), HTTP_CLASS_FAIL);
	ck_assert_str_eq(http_class_name(HTTP_CLASS_OK), "ok");
	ck_assert_str_eq(http_class_name(HTTP_CLASS_RETRY), "retry");
	ck_assert_str_eq(http_class_name(HTTP_CLASS_AUTH), "auth");
	ck_assert_str_eq(http_class_name(HTTP_CLASS_FAIL), "fail");
}
END_TEST

START_TEST(test_redirect_loop)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { .status = 12345 };
	struct http_error e;
	char *u = url("api", "/rloop/loop");
	int fd = open("/dev/null", O_WRONLY);
	cJSON *log;

	ck_assert_int_eq(http_download(h, u, fd, NULL, &r, &e), -ELOOP);
	ck_assert_int_eq(e.cls, HTTP_CLASS_FAIL);
	ck_assert_ptr_nonnull(strstr(e.message, "too many redirects"));
	ck_assert_int_eq(r.status, 12345);
	/* The first request and HTTP_MAX_REDIRECTS hops, then it stopped. */
	log = log_entries("rloop");
	ck_assert_int_eq(cJSON_GetArraySize(log), 1 + HTTP_MAX_REDIRECTS);
	cJSON_Delete(log);
	close(fd);
	free(u);
	http_free(h);
}
END_TEST

START_TEST(test_cut_mid_body)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *u = url("api", "/cut/cut/100000"), *ok = url("api", "/cut/json");

	ck_assert_int_lt(get(h, u, 0, &r, &e), 0);
	ck_assert_int_eq(e.cls, HTTP_CLASS_RETRY);
	ck_assert_int_ne(e.curl_code, 0);
	ck_assert_str_ne(e.message, "");
	/* The next request on the same handle opens a fresh connection and works. */
	ck_assert_int_eq(get(h, ok, 0, &r, &e), 0);
	http_resp_done(&r);
	free(u);
	free(ok);
	http_free(h);
}
END_TEST

START_TEST(test_stalled_body_times_out)
{
	char *api = url("api", "/api/v1/"), *u = url("api", "/stall/slow/100000");
	struct http_opts o = { .api_url = api, .ca_file = ca_pem, .low_speed_limit = 1000,
		.low_speed_time_s = 1 };
	struct http *h = http_new(&o);
	struct http_resp r = { 0 };
	struct http_error e;
	long long t0 = tu_now_ms();

	ck_assert_int_eq(get(h, u, 0, &r, &e), -ETIMEDOUT);
	ck_assert_int_eq(e.curl_code, CURLE_OPERATION_TIMEDOUT);
	ck_assert_int_eq(e.cls, HTTP_CLASS_RETRY);
	ck_assert_int_lt(tu_now_ms() - t0, 10000);
	free(api);
	free(u);
	http_free(h);
}
END_TEST

START_TEST(test_connection_refused)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	struct sockaddr_in sa = {
		.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)
	};
	socklen_t len = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	char *u;

	/* A port that was just free: nothing listens there. */
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&sa, &len), 0);
	close(s);
	u = tu_strdupf("https://127.0.0.1:%d/x", ntohs(sa.sin_port));
	ck_assert_int_eq(get(h, u, 0, &r, &e), -ECONNREFUSED);
	ck_assert_int_eq(e.cls, HTTP_CLASS_RETRY);
	free(u);
	http_free(h);
}
END_TEST

/* ---- recovery ---- */

struct canceller {
	atomic_int flag;
	long long set_at;
};

static void *
cancel_later(void *arg)
{
	struct canceller *c = arg;
	struct timespec ts = { 0, 300 * 1000000 };

	nanosleep(&ts, NULL);
	c->set_at = tu_now_ms();
	atomic_store(&c->flag, 1);
	return NULL;
}

START_TEST(test_cancel_slow_upload)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { .status = 12345 };
	struct http_error e;
	struct canceller c = { 0 };
	struct http_xfer x = { .cancel = &c.flag };
	char *file = make_temp_file("big.src", 0, (off_t)256 << 20);
	char *u = url("other", "/cancel/slow-upload/p"), *ok = url("api", "/cancel/json");
	int fd = open(file, O_RDONLY);
	pthread_t t;
	long long done_at;
	double mult;

	/* 256 MiB to a server that reads 320 KiB/s: only the cancel flag can end it soon. */
	pthread_create(&t, NULL, cancel_later, &c);
	ck_assert_int_eq(http_put_file(h, u, fd, 0, (int64_t)256 << 20, &x, &r, &e), -ECANCELED);
	done_at = tu_now_ms();
	pthread_join(t, NULL);
	ck_assert_int_eq(e.cls, HTTP_CLASS_RETRY);
	ck_assert_int_eq(r.status, 12345);
	/*
	 * libcurl looks at the flag about once a second even on a stalled
	 * connection (about 0.75 s here); slow runners (valgrind) scale the bound
	 * with Check's CK_TIMEOUT_MULTIPLIER.
	 */
	mult = strtod(tu_env("CK_TIMEOUT_MULTIPLIER", "1"), NULL);
	ck_assert_msg(done_at - c.set_at < 2000 * (mult >= 1 ? mult : 1),
	    "the cancel took %lld ms", done_at - c.set_at);

	/* The handle is usable again. */
	ck_assert_int_eq(get(h, ok, 0, &r, &e), 0);
	ck_assert_int_eq(r.status, 200);
	http_resp_done(&r);
	close(fd);
	free(file);
	free(u);
	free(ok);
	http_free(h);
}
END_TEST

START_TEST(test_keepalive_many)
{
	struct http *h = new_handle(ca_pem, TOKEN);
	struct http_resp r = { 0 };
	struct http_error e;
	char *u = url("api", "/many/json");
	int i;

	/* One handle, many requests (reusing its connection). */
	for (i = 0; i < 50; i++) {
		ck_assert_int_eq(get(h, u, 0, &r, &e), 0);
		ck_assert_int_eq(r.status, 200);
		http_resp_done(&r);
	}
	free(u);
	http_free(h);
}
END_TEST

static Suite *
http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_unchecked_fixture(tc, suite_setup, NULL);
	tcase_add_test(tc, test_get_json);
	tcase_add_test(tc, test_methods_and_bodies);
	tcase_add_test(tc, test_headers_captured);
	tcase_add_test(tc, test_plain_http_loopback);
	tcase_set_timeout(tc, 20);
	suite_add_tcase(s, tc);

	tc = tcase_create("security");
	tcase_add_unchecked_fixture(tc, suite_setup, NULL);
	tcase_add_test(tc, test_token_only_to_api_origin);
	tcase_add_test(tc, test_download_redirect_drops_token);
	tcase_add_test(tc, test_download_per_hop_decision);
	tcase_add_test(tc, test_put_never_sends_token);
	tcase_add_test(tc, test_tls_wrong_ca_refused);
	tcase_add_test(tc, test_http_non_loopback_refused);
	tcase_add_test(tc, test_redirect_to_far_http_refused);
	tcase_add_loop_test(tc, test_check_url, 0, (int)GC_ARRAY_SIZE(check_url_cases));
	tcase_add_loop_test(tc, test_same_origin, 0, (int)GC_ARRAY_SIZE(origin_cases));
	tcase_add_loop_test(tc, test_redact, 0, (int)GC_ARRAY_SIZE(redact_cases));
	tcase_add_test(tc, test_bad_api_url);
	tcase_set_timeout(tc, 20);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_unchecked_fixture(tc, suite_setup, NULL);
	tcase_add_test(tc, test_response_cap);
	tcase_add_test(tc, test_download_cap);
	tcase_add_test(tc, test_put_file_range);
	tcase_add_test(tc, test_put_file_shrunk);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_unchecked_fixture(tc, suite_setup, NULL);
	tcase_add_test(tc, test_retry_after_from_response);
	tcase_add_loop_test(tc, test_classify_responses, 0, (int)GC_ARRAY_SIZE(classify_cases));
	tcase_add_test(tc, test_classify_status);
	tcase_add_test(tc, test_redirect_loop);
	tcase_add_test(tc, test_cut_mid_body);
	tcase_add_test(tc, test_stalled_body_times_out);
	tcase_add_test(tc, test_connection_refused);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_unchecked_fixture(tc, suite_setup, NULL);
	tcase_add_test(tc, test_cancel_slow_upload);
	tcase_add_test(tc, test_keepalive_many);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	return s;
}

/*
 * Unchecked fixture of every TCase: it runs in the parent process, where
 * Check's assertions work and where state persists, so the CA and the server
 * are made only once for the whole suite. main() stops the server at the end.
 */
static void
suite_setup(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	tmpdir = tu_mkdtemp("http");
	ca_pem = tu_strdupf("%s/ca.pem", tmpdir);
	wrong_ca_pem = tu_strdupf("%s/wrong-ca.pem", tmpdir);
	log_path = tu_strdupf("%s/requests.log", tmpdir);
	ck_assert_msg(make_certs(), "could not make the test CA with '%s'", openssl_bin);
	ck_assert_msg(start_server(), "could not start httpd-test.py");
}

int
main(void)
{
	SRunner *sr;
	int failed, status;

	openssl_bin = strdup(tu_env("OPENSSL", "/usr/bin/openssl"));
	python_bin = strdup(tu_env("PYTHON3", "/usr/bin/python3"));
	if (access(openssl_bin, X_OK) != 0) {
		fprintf(stderr, "check_http: no openssl CLI ($OPENSSL), skipping\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	if (http_global_init() < 0)
		return EXIT_FAILURE;

	sr = srunner_create(http_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);

	if (server_pid > 0) {
		kill(server_pid, SIGTERM);
		waitpid(server_pid, &status, 0);
	}
	tu_rmtree(tmpdir);
	free(tmpdir);
	free(ca_pem);
	free(wrong_ca_pem);
	free(log_path);
	free(openssl_bin);
	free(python_bin);
	http_global_cleanup();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
