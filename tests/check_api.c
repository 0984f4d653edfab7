/*
 * check_api.c: tests of the REST contract module (src/api.c).
 *
 * Most tests run against the platform emulator (tests/fakegc) over HTTPS with a
 * throw-away CA: main() makes the CA and the server certificate once (python3 -m
 * fakegc.tls), and a checked fixture starts a fresh emulator for every test, so
 * no test sees another's objects or faults. The emulator is started with
 * PR_SET_PDEATHSIG, so a failing test (whose checked teardown does not run)
 * cannot leave it behind. Limits and faults are set per test through the
 * emulator's control endpoint (/__fakegc__/faults), and its recorded state
 * (/__fakegc__/state) shows what reached it.
 *
 * text: api_error_text() over every DRF error shape and non-JSON bodies,
 * api_classify() over synthetic responses, URL and origin rules (pure, no
 * server).
 * lookups: algorithms, archives, reader studies, sockets by slug; not found;
 * unknown and missing token; malformed list bodies.
 * uploads: the multipart protocol end to end, and each of its refusals.
 * sessions: create and get, the 100-file cap, the post-processing limit.
 * items: archive items and display sets, values, paged find by title.
 * jobs: create, poll, find by input image, duplicates, limits, images and
 * downloads (the token never reaches storage).
 * errors: 5xx, 429 with Retry-After, non-JSON and malformed 2xx bodies, cut
 * connections.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api.h"
#include "attrs.h"
#include "http.h"
#include "testutil.h"

#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define TOKEN_OTHER "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define TOKEN_UNKNOWN "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

/* A small MetaImage the emulator's importer turns into one image. */
static const char MHA[] = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 1\n"
                          "ElementSpacing = 1 1 1\nElementType = MET_UCHAR\n"
                          "ElementDataFile = LOCAL\n\1\2\3\4";

static char *tls_dir; /* made once in main() */

/* ---- the emulator fixture ---- */

static pid_t fake_pid = -1;
static int fake_out = -1;
static char *fake_base;    /* https://127.0.0.1:<port>/ */
static char *api_root_url; /* fake_base + "api/v1/" */
static char *tmp;          /* per-test directory */
static struct http *H;
static struct api *A;

static struct http *
new_http(const char *token)
{
	char *ca = tu_strdupf("%s/ca.pem", tls_dir);
	char *auth = token ? tu_strdupf("Bearer %s", token) : NULL;
	struct http_opts o = {
	    .api_url = api_root_url,
	    .authorization = auth,
	    .ca_file = ca,
	    .connect_timeout_s = 5,
	    .low_speed_time_s = 10,
	};
	struct http *h = http_new(&o);

	ck_assert_ptr_nonnull(h);
	free(ca);
	free(auth);
	return h;
}

/* Read the emulator's first stdout line (its base URL) within 20 s. */
static char *
read_base_url(int fd)
{
	char line[512];
	size_t len = 0;
	long long deadline = tu_now_ms() + 20000;

	while (len < sizeof(line) - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = deadline - tu_now_ms();
		ssize_t n;

		ck_assert_msg(left > 0, "the emulator did not print its URL in time");
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		n = read(fd, line + len, 1);
		ck_assert_msg(n == 1, "the emulator exited before printing its URL");
		if (line[len] == '\n')
			break;
		len++;
	}
	line[len] = '\0';
	ck_assert_msg(strncmp(line, "https://", 8) == 0, "unexpected first line '%s'", line);
	return strdup(line);
}

static void
fake_start(void)
{
	char *python = strdup(tu_env("PYTHON3", "/usr/bin/python3"));
	const char *dir = tu_env("FAKEGC_DIR", NULL);
	char *cert = tu_strdupf("%s/server.pem", tls_dir);
	char *key = tu_strdupf("%s/server.key", tls_dir);
	char *argv[] = {
	    python,    "-m",        "fakegc",  "--port",          "0",
	    "--token", TOKEN,       "--token", TOKEN_OTHER,       "--tls-cert",
	    cert,      "--tls-key", key,       "--min-part-size", "1",
	    "--tick",  "0.2",       NULL,
	};
	pid_t parent = getpid();
	int p[2];

	ck_assert_ptr_nonnull(dir);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	fake_pid = fork();
	ck_assert_int_ge(fake_pid, 0);
	if (fake_pid == 0) {
		/*
		 * Die with the test process, even when its teardown does not run; in a
		 * process group of its own, so that Check's SIGKILL to the test's group
		 * does not stop it before it removed its data directory.
		 */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		dup2(p[1], 1);
		if (chdir(dir) != 0)
			_exit(127);
		setenv("PYTHONPATH", dir, 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	fake_out = p[0];
	fake_base = read_base_url(fake_out);
	api_root_url = tu_strdupf("%sapi/v1/", fake_base);
	free(python);
	free(cert);
	free(key);
}

static void
fake_stop(void)
{
	if (fake_pid > 0)
		tu_stop(fake_pid, SIGTERM, 5000);
	fake_pid = -1;
	if (fake_out >= 0)
		close(fake_out);
	fake_out = -1;
	free(fake_base);
	free(api_root_url);
	fake_base = api_root_url = NULL;
}

static void
setup(void)
{
	fake_start();
	tmp = tu_mkdtemp("check_api");
	H = new_http(TOKEN);
	A = api_new(H, api_root_url);
	ck_assert_ptr_nonnull(A);
}

static void
teardown(void)
{
	A = api_free(A);
	H = http_free(H);
	fake_stop();
	tu_rmtree(tmp);
	free(tmp);
	tmp = NULL;
}

/* ---- emulator control ---- */

static long
fake_request(enum http_method m, const char *path, const char *json, char **ret_body)
{
	char *url = tu_strdupf("%s%s", fake_base, path);
	struct http_req req = {.method = m, .url = url, .json = json};
	struct http_resp resp = {0};
	struct http_error err = {0};
	long status;
	int r;

	r = http_request(H, &req, &resp, &err);
	ck_assert_msg(r == 0, "control request %s failed: %s", path, err.message);
	status = resp.status;
	if (ret_body) {
		*ret_body = resp.body;
		resp.body = NULL;
	}
	http_resp_done(&resp);
	free(url);
	return status;
}

static void
fake_faults(const char *json)
{
	char *body = NULL;
	long st = fake_request(HTTP_POST, "__fakegc__/faults", json, &body);

	ck_assert_msg(st == 200, "faults %s refused: %s", json, body ? body : "");
	free(body);
}

static void
fake_advance(double seconds)
{
	char *json = tu_strdupf("{\"advance\": %g}", seconds);

	ck_assert_int_eq(fake_request(HTTP_POST, "__fakegc__/clock", json, NULL), 200);
	free(json);
}

/* The emulator's recorded state; the caller deletes it. */
static cJSON *
fake_state(void)
{
	char *body = NULL;
	cJSON *st;

	ck_assert_int_eq(fake_request(HTTP_GET, "__fakegc__/state", NULL, &body), 200);
	st = cJSON_Parse(body);
	ck_assert_ptr_nonnull(st);
	free(body);
	return st;
}

/* How often the emulator saw "<METHOD> <route>" (its request counters). */
static int
fake_count(const char *key)
{
	cJSON *st = fake_state();
	const cJSON *n =
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(st, "requests"), key);
	int v = cJSON_IsNumber(n) ? n->valueint : 0;

	cJSON_Delete(st);
	return v;
}

/* ---- helpers ---- */

#define ck_api_ok(r, e)                                                                            \
	ck_assert_msg((r) == 0, "rc %d (%s), class %s, status %ld: %s", (r), strerror(-(r)),       \
	              api_class_name((e).cls), (e).status, (e).message)

#define ck_api_fail(r, e, want_cls)                                                                \
	do {                                                                                       \
		ck_assert_msg((r) < 0, "unexpected success");                                      \
		ck_assert_msg((e).cls == (want_cls), "class %s, want %s (status %ld: %s)",         \
		              api_class_name((e).cls), api_class_name(want_cls), (e).status,       \
		              (e).message);                                                        \
	} while (0)

static int
temp_file(const void *data, size_t len)
{
	char *path = tu_strdupf("%s/data.XXXXXX", tmp);
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	free(path);
	return fd;
}

/* PUT [off, off+len) of fd to a presigned URL; returns the ETag (caller frees). */
static char *
put_part(const char *url, int fd, off_t off, int64_t len)
{
	struct http_resp resp = {0};
	struct http_error err = {0};
	struct api_error e;
	char *etag;
	int r;

	r = http_put_file(H, url, fd, off, len, NULL, &resp, &err);
	api_classify(r, &err, r == 0 ? &resp : NULL, &e);
	ck_assert_msg(r == 0 && e.cls == API_OK, "PUT: %s", e.message);
	ck_assert_ptr_nonnull(resp.etag);
	etag = strdup(resp.etag);
	http_resp_done(&resp);
	return etag;
}

/* A completed one-part upload of data under name. */
static void
upload_bytes(const char *name, const void *data, size_t len, struct api_upload *ret)
{
	struct api_upload u = {0};
	struct api_part part = {.number = 1};
	struct api_error e;
	char **urls = NULL;
	int fd, r, one = 1;

	r = api_upload_create(A, name, &u, &e);
	ck_api_ok(r, e);
	r = api_upload_presign(A, &u, &one, 1, &urls, &e);
	ck_api_ok(r, e);
	fd = temp_file(data, len);
	part.etag = put_part(urls[0], fd, 0, (int64_t)len);
	close(fd);
	r = api_upload_complete(A, &u, &part, 1, ret, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(ret->status, "Completed");
	free(part.etag);
	free(urls[0]);
	free(urls);
	api_upload_clear(&u);
}

static bool
starts_with(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ==== text: pure tests, no server ==== */

static const struct {
	const char *body;
	const char *want;
} error_texts[] = {
    /* field errors */
    {"{\"filename\": [\"../../foo.bat is not a valid filename\"]}",
     "filename: ../../foo.bat is not a valid filename"},
    {"{\"a\": [\"m1\", \"m2\"], \"b\": [\"m3\"]}", "a: m1; a: m2; b: m3"},
    /* object-level errors */
    {"{\"non_field_errors\": [\"You have created too many uploads. Please try again later.\"]}",
     "You have created too many uploads. Please try again later."},
    /* raised after validation: a bare array */
    {"[\"Values can only be added via update\"]", "Values can only be added via update"},
    /* nested lists: one object per item, {} for good ones */
    {"{\"inputs\": [{}, {\"value\": [\"x\"]}]}", "inputs[1].value: x"},
    {"{\"inputs\": [{\"__all__\": [\"JSON does not fulfill schema: 'a' is not a number\"]}]}",
     "inputs[0]: JSON does not fulfill schema: 'a' is not a number"},
    {"{\"values\": [{}, {\"non_field_errors\": [\"You can only provide one of [x] for each "
     "socket.\"]}]}",
     "values[1]: You can only provide one of [x] for each socket."},
    /* list-of-scalars field: keyed by index */
    {"{\"part_numbers\": {\"0\": [\"Ensure this value is greater than or equal to 1.\"]}}",
     "part_numbers[0]: Ensure this value is greater than or equal to 1."},
    /* 401/403/404/405 */
    {"{\"detail\": \"Invalid token.\"}", "Invalid token."},
    {"{\"detail\": \"Method \\\"PUT\\\" not allowed.\"}", "Method \"PUT\" not allowed."},
    /* odd but valid JSON */
    {"\"a bare string\"", "a bare string"},
    {"{\"count\": 3, \"ok\": false, \"none\": null}", "count: 3; ok: false"},
    {"{\"a\": {\"b\": {\"c\": [\"deep\"]}}}", "a.b.c: deep"},
    {"{}", ""},
    {"[]", ""},
    {"null", ""},
    {"", ""},
    /* control characters and UTF-8 */
    {"{\"detail\": \"line one\\nline two\\u0007\"}", "line one line two "},
    {"{\"detail\": \"caf\\u00e9 \\u2713\"}", "caf\xc3\xa9 \xe2\x9c\x93"},
    /* Django's 500 page: its title, never the whole page */
    {"\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Server Error (500)</title>\n"
     "</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n",
     "Server Error (500)"},
    {"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>", "502 Bad Gateway"},
    /* S3 XML: code and message only (the rest quotes the request) */
    {"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchUpload</Code><Message>The "
     "specified upload does not exist.</Message><UploadId>abc</UploadId>"
     "<StringToSign>secret</StringToSign></Error>",
     "NoSuchUpload: The specified upload does not exist."},
    /* plain text: query strings of quoted URLs are cut */
    {"failed at https://s3.example/b/k?X-Amz-Signature=abc&x=1 try later",
     "failed at https://s3.example/b/k try later"},
    {"Really?  Yes.", "Really? Yes."},
    /* trailing garbage after JSON is not JSON */
    {"{\"detail\": \"x\"} trailing", "{\"detail\": \"x\"} trailing"},
    /* invalid UTF-8 and binary in a non-JSON body */
    {"bad \xff\xfe bytes", "bad ?? bytes"},
};

START_TEST(test_error_text_table)
{
	char out[512];

	api_error_text(error_texts[_i].body, out, sizeof(out));
	ck_assert_msg(strcmp(out, error_texts[_i].want) == 0, "body %s: got '%s', want '%s'",
	              error_texts[_i].body, out, error_texts[_i].want);
}
END_TEST

/* Assumptions: output is bounded, NUL-terminated, never split inside a UTF-8 character. */
START_TEST(test_error_text_limits)
{
	char out[8], big[512], *html, *deep;
	size_t i;

	api_error_text("{\"detail\": \"abcdefghijklmnop\"}", out, sizeof(out));
	ck_assert_str_eq(out, "abcdefg");
	api_error_text("{\"detail\": \"abcdef\\u00e9\"}", out, sizeof(out));
	ck_assert_str_eq(out, "abcdef");
	api_error_text("{\"detail\": \"x\"}", out, 1);
	ck_assert_str_eq(out, "");
	api_error_text(NULL, big, sizeof(big));
	ck_assert_str_eq(big, "");

	/* A long non-JSON body yields a short excerpt, not a dump. */
	html = malloc(100001);
	memset(html, 'x', 100000);
	html[100000] = '\0';
	api_error_text(html, big, sizeof(big));
	ck_assert_uint_le(strlen(big), 100);
	free(html);

	/* Hostile nesting: deeper than cJSON accepts (an excerpt), and deep but accepted. */
	deep = malloc(4100);
	for (i = 0; i < 2000; i++) {
		deep[i] = '[';
		deep[2003 + i] = ']';
	}
	memcpy(deep + 2000, "\"m\"", 3);
	deep[4003] = '\0';
	api_error_text(deep, big, sizeof(big));
	ck_assert_uint_le(strlen(big), 100);
	ck_assert(starts_with(big, "[[[["));
	deep[2003 + 500] = '\0';
	api_error_text(deep + 1500, big, sizeof(big));
	ck_assert_str_eq(big, "");
	free(deep);
}
END_TEST

/*
 * Assumptions: mutated DRF bodies (random bytes flipped, cut short) never crash
 * the flattener and always give a bounded, NUL-terminated, control-free line.
 */
START_TEST(test_error_text_mutations)
{
	static const char *const seeds[] = {
	    "{\"inputs\": [{}, {\"value\": [\"x\"]}, {\"__all__\": [\"y\"]}]}",
	    "{\"part_numbers\": {\"0\": [\"m\"]}, \"detail\": \"d\"}",
	    "[\"Values can only be added via update\", null, 1.5e308, true]",
	    "<Error><Code>C</Code><Message>M</Message></Error>",
	};
	unsigned long long x = 0x9e3779b97f4a7c15ULL;
	char body[256], out[64];
	size_t len, k, i;
	int round;

	for (round = 0; round < 20000; round++) {
		const char *seed = seeds[round % GC_ARRAY_SIZE(seeds)];

		len = strlen(seed);
		memcpy(body, seed, len + 1);
		for (k = 0; k < 4; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			body[x % len] = (char)(x >> 32);
		}
		body[(x >> 40) % (len + 1)] = '\0';
		api_error_text(body, out, sizeof(out));
		ck_assert_uint_lt(strlen(out), sizeof(out));
		for (i = 0; out[i]; i++)
			ck_assert_msg((unsigned char)out[i] >= 0x20 && out[i] != 0x7f,
			              "control character in '%s'", out);
	}
}
END_TEST

static void
classify_status(long status, const char *body, int64_t retry_after, struct api_error *ret)
{
	struct http_resp resp = {0};

	resp.status = status;
	resp.body = strdup(body);
	resp.body_len = strlen(body);
	resp.retry_after_ms = retry_after;
	api_classify(0, NULL, &resp, ret);
	free(resp.body);
}

static const struct {
	long status;
	const char *body;
	enum api_class cls;
	const char *message;
} classes[] = {
    {200, "{}", API_OK, ""},
    {201, "{\"pk\": \"x\"}", API_OK, ""},
    {400,
     "{\"non_field_errors\": [\"You have created too many uploads. Please try again "
     "later.\"]}",
     API_LIMIT, "You have created too many uploads. Please try again later."},
    {400,
     "{\"non_field_errors\": [\"You have too many active jobs, please try again after "
     "they have completed\"]}",
     API_LIMIT, "You have too many active jobs, please try again after they have completed"},
    {400, "{\"non_field_errors\": [\"You have run out of algorithm credits\"]}", API_LIMIT,
     "You have run out of algorithm credits"},
    {400,
     "{\"non_field_errors\": [\"You currently have 16 active image post processing tasks. "
     "Please wait for them to complete before trying again.\"]}",
     API_LIMIT,
     "You currently have 16 active image post processing tasks. Please wait for "
     "them to complete before trying again."},
    {400,
     "{\"non_field_errors\": [\"A result for these inputs with the current image and "
     "model already exists.\"]}",
     API_FAIL, "A result for these inputs with the current image and model already exists."},
    {400, "{\"filename\": [\"This field may not be blank.\"]}", API_FAIL,
     "filename: This field may not be blank."},
    {400, "", API_FAIL, "HTTP 400"},
    {401, "{\"detail\": \"Invalid token.\"}", API_AUTH, "Invalid token."},
    {403, "{\"detail\": \"Upload limit reached\"}", API_LIMIT, "Upload limit reached"},
    {403, "{\"detail\": \"You do not have permission to perform this action.\"}", API_FAIL,
     "You do not have permission to perform this action."},
    {403, "{\"detail\": \"Authentication credentials were not provided.\"}", API_AUTH,
     "Authentication credentials were not provided."},
    {404, "{\"detail\": \"Not found.\"}", API_GONE, "Not found."},
    {404, "<Error><Code>NoSuchUpload</Code><Message>gone</Message></Error>", API_GONE,
     "HTTP 404: NoSuchUpload: gone"},
    {405, "{\"detail\": \"Method \\\"PUT\\\" not allowed.\"}", API_FAIL,
     "Method \"PUT\" not allowed."},
    {302, "", API_FAIL, "HTTP 302"},
    {408, "", API_RETRY, "HTTP 408"},
    {429, "<html><body><h1>429</h1></body></html>", API_RETRY, "HTTP 429: 429"},
    {500, "<html><head><title>Server Error (500)</title></head><body>...</body></html>", API_RETRY,
     "HTTP 500: Server Error (500)"},
    {502, "", API_RETRY, "HTTP 502"},
    {503, "{\"detail\": \"down for maintenance\"}", API_RETRY, "HTTP 503: down for maintenance"},
};

START_TEST(test_classify_table)
{
	struct api_error e;

	classify_status(classes[_i].status, classes[_i].body, -1, &e);
	ck_assert_msg(e.cls == classes[_i].cls, "%ld %s: class %s", classes[_i].status,
	              classes[_i].body, api_class_name(e.cls));
	ck_assert_int_eq(e.status, classes[_i].status);
	ck_assert_str_eq(e.message, classes[_i].message);
	ck_assert_int_eq(e.retry_after_ms, -1);
}
END_TEST

/* Assumptions: Retry-After passes through; transport errors keep curl's text. */
START_TEST(test_classify_transport)
{
	struct http_error herr = {0};
	struct api_error e;

	classify_status(429, "", 7000, &e);
	ck_assert_int_eq(e.cls, API_RETRY);
	ck_assert_int_eq(e.retry_after_ms, 7000);
	classify_status(503, "", 0, &e);
	ck_assert_int_eq(e.retry_after_ms, 0);

	herr.code = -ECONNREFUSED;
	herr.cls = HTTP_CLASS_RETRY;
	snprintf(herr.message, sizeof(herr.message), "Failed to connect to 127.0.0.1 port 9");
	api_classify(-ECONNREFUSED, &herr, NULL, &e);
	ck_assert_int_eq(e.cls, API_RETRY);
	ck_assert_int_eq(e.status, 0);
	ck_assert_str_eq(e.message, "Failed to connect to 127.0.0.1 port 9");
	ck_assert_int_eq(e.retry_after_ms, -1);

	herr.code = -E2BIG;
	herr.cls = HTTP_CLASS_FAIL;
	snprintf(herr.message, sizeof(herr.message), "response too large");
	api_classify(-E2BIG, &herr, NULL, &e);
	ck_assert_int_eq(e.cls, API_FAIL);

	api_classify(-ECANCELED, NULL, NULL, &e);
	ck_assert_int_eq(e.cls, API_RETRY);
	ck_assert_str_eq(e.message, strerror(ECANCELED));

	ck_assert_str_eq(api_class_name(API_LIMIT), "limit");
	ck_assert_str_eq(api_class_name(API_GONE), "gone");
}
END_TEST

/*
 * Assumptions: a bad root is refused; absolute URLs off the root's origin are
 * refused before any traffic (the root's port is closed, so a request would fail
 * differently).
 */
START_TEST(test_origin_rules)
{
	struct http_opts o = {.api_url = "https://127.0.0.1:9/api/v1/",
	                      .authorization = "Bearer " TOKEN};
	struct http *h = http_new(&o);
	struct api *a;
	struct api_job job;
	struct api_item item;
	struct api_session s;
	struct api_image im;
	struct api_error e;
	int64_t bytes;
	int r;

	ck_assert_ptr_nonnull(h);
	ck_assert_ptr_null(api_new(h, "https://127.0.0.1:9/api/v1"));
	ck_assert_ptr_null(api_new(h, "http://example.org/api/v1/"));
	ck_assert_ptr_null(api_new(h, "ftp://127.0.0.1/api/v1/"));
	ck_assert_ptr_null(api_new(h, ""));
	ck_assert_ptr_null(api_new(NULL, "https://127.0.0.1:9/api/v1/"));
	a = api_new(h, "https://127.0.0.1:9/api/v1/");
	ck_assert_ptr_nonnull(a);
	ck_assert_str_eq(api_root(a), "https://127.0.0.1:9/api/v1/");
	ck_assert_ptr_eq(api_http(a), h);

	r = api_job_get(a, "https://evil.example/api/v1/algorithms/jobs/1/", &job, &e);
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_int_eq(e.cls, API_FAIL);
	ck_assert_str_eq(e.message, "invalid target URL");
	r = api_job_get(a, "https://127.0.0.1:10/api/v1/algorithms/jobs/1/", &job, &e);
	ck_assert_int_eq(r, -EINVAL);
	r = api_job_get(a, "http://127.0.0.1:9/api/v1/algorithms/jobs/1/", &job, &e);
	ck_assert_int_eq(r, -EINVAL);
	r = api_item_get(a, "https://127.0.0.1.evil.example:9/x/", &item, &e);
	ck_assert_int_eq(r, -EINVAL);
	r = api_session_get(a, "/api/v1/cases/upload-sessions/1/", &s, &e);
	ck_assert_int_eq(r, -EINVAL);
	r = api_image_get(a, NULL, &im, &e);
	ck_assert_int_eq(r, -EINVAL);
	r = api_download(a, "https://cdn.example/media/x", 1, NULL, &bytes, &e);
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_str_eq(e.message, "invalid target URL");

	/* The same origin passes the check and then fails on the closed port. */
	r = api_job_get(a, "https://127.0.0.1:9/api/v1/algorithms/jobs/1/", &job, &e);
	ck_assert_int_ne(r, -EINVAL);
	ck_assert_int_eq(e.cls, API_RETRY);

	/* Bad arguments are refused without traffic. */
	r = api_upload_presign(a, NULL, NULL, 0, NULL, &e);
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_int_eq(api_archive_get(a, "", NULL, &e), -EINVAL);
	ck_assert(api_job_status_is_terminal("Succeeded"));
	ck_assert(api_job_status_is_terminal("Cancelled"));
	ck_assert(api_job_status_is_terminal("Failed"));
	ck_assert(!api_job_status_is_terminal("Executing"));
	ck_assert(!api_job_status_is_terminal(NULL));

	api_free(a);
	http_free(h);
}
END_TEST

/* ==== lookups ==== */

START_TEST(test_ping)
{
	struct api_error e;
	int r;

	r = api_ping(A, &e);
	ck_api_ok(r, e);
	ck_assert_int_eq(fake_count("GET /api/v1/gcapi/"), 1);
}
END_TEST

/* Assumptions: the default fixtures' demo-algorithm (one interface: image in; value and file out).
 */
START_TEST(test_algorithm_found)
{
	struct api_algorithm alg;
	struct api_error e;
	char *want;
	int r;

	r = api_algorithm_get(A, "demo-algorithm", &alg, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(alg.slug, "demo-algorithm");
	ck_assert_str_eq(alg.title, "Demo Algorithm");
	want = tu_strdupf("%salgorithms/%s/", api_root_url, alg.pk);
	ck_assert_str_eq(alg.api_url, want);
	free(want);
	ck_assert_uint_eq(alg.n_interfaces, 1);
	ck_assert_uint_eq(alg.interfaces[0].n_inputs, 1);
	ck_assert_str_eq(alg.interfaces[0].inputs[0].slug, "generic-medical-image");
	ck_assert_int_eq(alg.interfaces[0].inputs[0].super_kind, API_SUPER_IMAGE);
	ck_assert_str_eq(alg.interfaces[0].inputs[0].kind, "Image");
	ck_assert_uint_eq(alg.interfaces[0].n_outputs, 2);
	ck_assert_str_eq(alg.interfaces[0].outputs[0].slug, "lung-volume");
	ck_assert_int_eq(alg.interfaces[0].outputs[0].super_kind, API_SUPER_VALUE);
	ck_assert_str_eq(alg.interfaces[0].outputs[0].relative_path, "lung-volume.json");
	ck_assert_int_eq(alg.interfaces[0].outputs[1].super_kind, API_SUPER_FILE);
	api_algorithm_clear(&alg);
	api_algorithm_clear(&alg); /* idempotent */

	r = api_algorithm_get(A, "multi-input-algorithm", &alg, &e);
	ck_api_ok(r, e);
	ck_assert_uint_eq(alg.n_interfaces, 2);
	ck_assert_uint_eq(alg.interfaces[0].n_inputs, 3);
	api_algorithm_clear(&alg);
}
END_TEST

START_TEST(test_collections_found)
{
	struct api_collection c;
	struct api_socket s;
	struct api_error e;
	int r;

	r = api_archive_get(A, "demo-archive", &c, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(c.slug, "demo-archive"); /* not in the body: kept from the request */
	ck_assert_str_eq(c.title, "Demo Archive");
	ck_assert(starts_with(c.api_url, api_root_url));
	ck_assert_ptr_nonnull(strstr(c.api_url, c.pk));
	api_collection_clear(&c);

	r = api_reader_study_get(A, "demo-reader-study", &c, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(c.slug, "demo-reader-study");
	ck_assert_str_eq(c.title, "Demo Reader Study");
	api_collection_clear(&c);

	r = api_socket_get(A, "report-pdf", &s, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(s.slug, "report-pdf");
	ck_assert_str_eq(s.kind, "PDF file");
	ck_assert_int_eq(s.super_kind, API_SUPER_FILE);
	ck_assert_str_eq(s.relative_path, "report.pdf");
	api_socket_clear(&s);

	/* A JSON kind stored as a file is File, not Value: super_kind decides. */
	r = api_socket_get(A, "results-json-file", &s, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(s.kind, "Anything");
	ck_assert_int_eq(s.super_kind, API_SUPER_FILE);
	api_socket_clear(&s);
	r = api_socket_get(A, "case-metadata", &s, &e);
	ck_api_ok(r, e);
	ck_assert_int_eq(s.super_kind, API_SUPER_VALUE);
	api_socket_clear(&s);
}
END_TEST

/* Assumptions: slugs are percent-encoded, so a slug with '&' cannot add a filter. */
START_TEST(test_lookup_not_found)
{
	struct api_algorithm alg;
	struct api_collection c;
	struct api_socket s;
	struct api_error e;
	int r;

	r = api_algorithm_get(A, "no-such-algorithm", &alg, &e);
	ck_api_fail(r, e, API_GONE);
	ck_assert_int_eq(r, -EIO);
	ck_assert_int_eq(e.status, 200);
	ck_assert_str_eq(e.message,
	                 "no algorithm with slug 'no-such-algorithm' visible to this token");
	r = api_archive_get(A, "demo-archive&slug=demo-archive", &c, &e);
	ck_api_fail(r, e, API_GONE);
	ck_assert_str_eq(e.message, "no archive with slug 'demo-archive&slug=demo-archive' "
	                            "visible to this token");
	r = api_reader_study_get(A, "x y/../", &c, &e);
	ck_api_fail(r, e, API_GONE);
	ck_assert_str_eq(e.message, "no reader study with slug 'x y/../' visible to this token");
	r = api_socket_get(A, "nope", &s, &e);
	ck_api_fail(r, e, API_GONE);
	ck_assert_str_eq(e.message, "no socket with slug 'nope' visible to this token");
}
END_TEST

/*
 * Assumptions: an unknown token is 401 (API_AUTH); no token at all is an
 * anonymous user, whose list of private algorithms is empty (200, API_GONE).
 */
START_TEST(test_lookup_tokens)
{
	struct http *h;
	struct api *a;
	struct api_algorithm alg;
	struct api_error e;
	int r;

	h = new_http(TOKEN_UNKNOWN);
	a = api_new(h, api_root_url);
	r = api_algorithm_get(a, "demo-algorithm", &alg, &e);
	ck_api_fail(r, e, API_AUTH);
	ck_assert_int_eq(e.status, 401);
	ck_assert_str_eq(e.message, "Invalid token.");
	r = api_ping(a, &e);
	ck_api_fail(r, e, API_AUTH);
	api_free(a);
	http_free(h);

	h = new_http(NULL);
	a = api_new(h, api_root_url);
	r = api_algorithm_get(a, "demo-algorithm", &alg, &e);
	ck_api_fail(r, e, API_GONE);
	ck_assert_str_eq(e.message,
	                 "no algorithm with slug 'demo-algorithm' visible to this token");
	r = api_upload_create(a, "x.mha", &(struct api_upload){0}, &e);
	ck_api_fail(r, e, API_AUTH);
	ck_assert_str_eq(e.message, "Authentication credentials were not provided.");
	api_free(a);
	http_free(h);
}
END_TEST

/* Hostile or broken list bodies given by a fault rule: each is a retryable malformed response. */
static const struct {
	const char *body;
	enum api_class cls;
	const char *why;
} bad_lists[] = {
    {"{\"results\": \"x\"}", API_RETRY, "'results' is not an array"},
    {"{\"count\": 1}", API_RETRY, "'results' is missing"},
    {"[1, 2]", API_RETRY, "not a list page"},
    {"\"text\"", API_RETRY, "not a list page"},
    {"{\"results\": [7]}", API_RETRY, "a result is not an object"},
    {"{\"results\": [{\"pk\": \"p\", \"api_url\": null, \"interfaces\": []}]}", API_RETRY,
     "'api_url' is missing"},
    {"{\"results\": [{\"pk\": true, \"api_url\": \"u\", \"interfaces\": []}]}", API_RETRY,
     "'pk' is not a string"},
    {"{\"results\": [{\"pk\": \"\", \"api_url\": \"u\", \"interfaces\": []}]}", API_RETRY,
     "'pk' is empty"},
    {"{\"results\": [{\"pk\": \"p\", \"api_url\": \"u\", \"interfaces\": {}}]}", API_RETRY,
     "'interfaces' is not an array"},
    {"{\"results\": [{\"pk\": \"p\", \"api_url\": \"u\", \"interfaces\": [{\"inputs\": [1], "
     "\"outputs\": []}]}]}",
     API_RETRY, "a socket is not an object"},
    {"{\"results\": [{\"pk\": \"p\", \"api_url\": \"u\", \"interfaces\": [{\"inputs\": "
     "[{\"slug\": \"s\", \"super_kind\": \"Blob\"}], \"outputs\": []}]}]}",
     API_RETRY, "socket 's' has an unknown super_kind"},
    {"{\"results\": [{\"pk\": \"p\", \"api_url\": \"u\", \"interfaces\": [{\"inputs\": "
     "[{\"slug\": \"s\", \"super_kind\": \"Image\"}]}]}]}",
     API_RETRY, "'outputs' is missing"},
    {"{\"results\": [{\"pk\": 1, \"api_url\": \"u\", \"interfaces\": []}, {\"pk\": 2, "
     "\"api_url\": \"u\", \"interfaces\": []}]}",
     API_FAIL, NULL},
};

START_TEST(test_lookup_malformed)
{
	struct api_algorithm alg;
	struct api_error e;
	cJSON *rule = cJSON_CreateObject();
	char *json, *want, *text;
	int r;

	cJSON_AddStringToObject(rule, "route", "algorithms-list");
	cJSON_AddNumberToObject(rule, "status", 200);
	cJSON_AddItemToObject(rule, "body", cJSON_Parse(bad_lists[_i].body));
	text = cJSON_PrintUnformatted(rule);
	json = tu_strdupf("{\"rules\": [%s]}", text);
	fake_faults(json);
	cJSON_free(text);
	free(json);
	r = api_algorithm_get(A, "demo-algorithm", &alg, &e);
	ck_api_fail(r, e, bad_lists[_i].cls);
	ck_assert_int_eq(r, -EIO);
	if (bad_lists[_i].why) {
		want = tu_strdupf("unexpected response from %salgorithms/: %s", api_root_url,
		                  bad_lists[_i].why);
		ck_assert_str_eq(e.message, want);
		free(want);
	} else {
		ck_assert_str_eq(e.message, "2 algorithms match slug 'demo-algorithm'");
	}
	cJSON_Delete(rule);
}
END_TEST

/* Assumptions: numeric pks (sockets have integer pks) are accepted and printed. */
START_TEST(test_lookup_numeric_pk)
{
	struct api_collection c;
	struct api_error e;
	int r;

	fake_faults("{\"rules\": [{\"route\": \"archives-list\", \"status\": 200, \"body\": "
	            "{\"count\": 1, \"next\": null, \"results\": [{\"pk\": 42, \"api_url\": "
	            "\"https://x/\", \"title\": null, \"extra\": [1, {\"a\": null}]}]}}]}");
	r = api_archive_get(A, "demo-archive", &c, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(c.pk, "42");
	ck_assert_str_eq(c.title, "");
	api_collection_clear(&c);
}
END_TEST

/* ==== uploads ==== */

/*
 * Assumptions: create → presign two parts → PUT each (no token) → list-parts →
 * complete (given out of order: sent ascending) → get; each step's state shows.
 */
START_TEST(test_upload_flow)
{
	static const char data[] = "0123456789abcdefghij";
	struct api_upload u, done, got;
	struct api_part parts[2], *listed;
	struct api_error e;
	char **urls, *want;
	int nums[] = {1, 2}, fd, r;
	size_t n;
	cJSON *st, *up;

	r = api_upload_create(A, "scan.mha", &u, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(u.status, "Initialized");
	ck_assert_str_eq(u.filename, "scan.mha");
	ck_assert_str_ne(u.s3_upload_id, "");
	want = tu_strdupf("%suploads/%s/", api_root_url, u.pk);
	ck_assert_str_eq(u.api_url, want);
	free(want);

	r = api_upload_presign(A, &u, nums, 2, &urls, &e);
	ck_api_ok(r, e);
	ck_assert_ptr_nonnull(strstr(urls[0], "partNumber=1"));
	ck_assert_ptr_nonnull(strstr(urls[1], "partNumber=2"));
	ck_assert(starts_with(urls[0], fake_base));

	fd = temp_file(data, 20);
	parts[1].number = 1;
	parts[1].etag = put_part(urls[0], fd, 0, 10);
	parts[0].number = 2;
	parts[0].etag = put_part(urls[1], fd, 10, 10);
	close(fd);
	ck_assert_int_eq(parts[1].etag[0], '"');

	r = api_upload_list_parts(A, &u, &listed, &n, &e);
	ck_api_ok(r, e);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(listed[0].number, 1);
	ck_assert_str_eq(listed[0].etag, parts[1].etag);
	ck_assert_int_eq(listed[0].size, 10);
	ck_assert_int_eq(listed[1].number, 2);
	api_parts_free(listed, n);

	r = api_upload_complete(A, &u, parts, 2, &done, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(done.status, "Completed");
	ck_assert_str_eq(done.pk, u.pk);

	r = api_upload_get(A, u.pk, &got, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(got.status, "Completed");

	st = fake_state();
	up = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "uploads"), 0);
	ck_assert_int_eq(cJSON_GetObjectItem(up, "size")->valueint, 20);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "leaks")), 0);
	cJSON_Delete(st);

	free(parts[0].etag);
	free(parts[1].etag);
	free(urls[0]);
	free(urls[1]);
	free(urls);
	api_upload_clear(&u);
	api_upload_clear(&done);
	api_upload_clear(&got);
}
END_TEST

START_TEST(test_upload_abort)
{
	struct api_upload u, got;
	struct api_error e;
	int r;

	r = api_upload_create(A, "a.mha", &u, &e);
	ck_api_ok(r, e);
	r = api_upload_abort(A, &u, &e);
	ck_api_ok(r, e);
	r = api_upload_get(A, u.pk, &got, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(got.status, "Aborted");
	ck_assert_str_eq(got.s3_upload_id, "");
	/* An aborted upload has no S3 upload id left: no action can be built. */
	r = api_upload_abort(A, &got, &e);
	ck_assert_int_eq(r, -EINVAL);
	api_upload_clear(&u);
	api_upload_clear(&got);
}
END_TEST

/* Assumptions: S3 refuses a completion with a wrong ETag; Django turns that into a 500 page. */
START_TEST(test_upload_complete_bad_etag)
{
	struct api_upload u, done;
	struct api_part part = {.number = 1, .etag = "\"00000000000000000000000000000000\""};
	struct api_error e;
	char **urls, *etag;
	int one = 1, fd, r;

	r = api_upload_create(A, "a.mha", &u, &e);
	ck_api_ok(r, e);
	r = api_upload_presign(A, &u, &one, 1, &urls, &e);
	ck_api_ok(r, e);
	fd = temp_file("abc", 3);
	etag = put_part(urls[0], fd, 0, 3);
	close(fd);
	r = api_upload_complete(A, &u, &part, 1, &done, &e);
	ck_api_fail(r, e, API_RETRY);
	ck_assert_int_eq(r, -EIO);
	ck_assert_int_eq(e.status, 500);
	ck_assert_str_eq(e.message, "HTTP 500: Server Error (500)");

	/* Duplicate part numbers and parts without an ETag are refused before sending. */
	{
		struct api_part two[2] = {{.number = 1, .etag = etag}, {.number = 1, .etag = etag}};
		struct api_part none = {.number = 1, .etag = NULL};

		ck_assert_int_eq(api_upload_complete(A, &u, two, 2, &done, &e), -EINVAL);
		ck_assert_int_eq(api_upload_complete(A, &u, &none, 1, &done, &e), -EINVAL);
	}
	part.etag = etag;
	r = api_upload_complete(A, &u, &part, 1, &done, &e);
	ck_api_ok(r, e);
	api_upload_clear(&done);
	free(etag);
	free(urls[0]);
	free(urls);
	api_upload_clear(&u);
}
END_TEST

/*
 * Assumptions: a 500 from complete is retryable, and the upload's state tells
 * whether it happened ("after": completed, then the answer was lost; contract 7.4).
 */
START_TEST(test_upload_complete_lost_response)
{
	struct api_upload u, done, got;
	struct api_part part = {.number = 1};
	struct api_error e;
	char **urls;
	int one = 1, fd, r;

	r = api_upload_create(A, "a.mha", &u, &e);
	ck_api_ok(r, e);
	r = api_upload_presign(A, &u, &one, 1, &urls, &e);
	ck_api_ok(r, e);
	fd = temp_file("abc", 3);
	part.etag = put_part(urls[0], fd, 0, 3);
	close(fd);

	fake_faults("{\"complete\": {\"count\": 1, \"when\": \"before\"}}");
	r = api_upload_complete(A, &u, &part, 1, &done, &e);
	ck_api_fail(r, e, API_RETRY);
	ck_assert_int_eq(e.status, 500);
	r = api_upload_get(A, u.pk, &got, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(got.status, "Initialized");
	api_upload_clear(&got);

	fake_faults("{\"complete\": {\"count\": 1, \"when\": \"after\"}}");
	r = api_upload_complete(A, &u, &part, 1, &done, &e);
	ck_api_fail(r, e, API_RETRY);
	r = api_upload_get(A, u.pk, &got, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(got.status, "Completed");
	api_upload_clear(&got);

	free(part.etag);
	free(urls[0]);
	free(urls);
	api_upload_clear(&u);
}
END_TEST

START_TEST(test_upload_presign_quota)
{
	struct api_upload u;
	struct api_error e;
	char **urls = NULL;
	int one = 1, bad = 0, r;

	r = api_upload_create(A, "a.mha", &u, &e);
	ck_api_ok(r, e);
	fake_faults("{\"presign_quota\": {\"count\": 1}}");
	r = api_upload_presign(A, &u, &one, 1, &urls, &e);
	ck_api_fail(r, e, API_LIMIT);
	ck_assert_int_eq(e.status, 403);
	ck_assert_str_eq(e.message, "Upload limit reached");
	ck_assert_ptr_null(urls);
	/* The next try succeeds. */
	r = api_upload_presign(A, &u, &one, 1, &urls, &e);
	ck_api_ok(r, e);
	free(urls[0]);
	free(urls);
	/* Part numbers outside 1..10000 never reach the server. */
	ck_assert_int_eq(api_upload_presign(A, &u, &bad, 1, &urls, &e), -EINVAL);
	api_upload_clear(&u);
}
END_TEST

START_TEST(test_upload_too_many)
{
	struct api_upload u1, u2;
	struct api_error e;
	int r;

	fake_faults("{\"limits\": {\"max_uploads\": 0}}");
	r = api_upload_create(A, "a.mha", &u1, &e);
	ck_api_ok(r, e);
	r = api_upload_create(A, "b.mha", &u2, &e);
	ck_api_fail(r, e, API_LIMIT);
	ck_assert_int_eq(e.status, 400);
	ck_assert_str_eq(e.message, "You have created too many uploads. Please try again later.");
	api_upload_clear(&u1);
}
END_TEST

START_TEST(test_upload_refusals)
{
	struct api_upload u, got, fake;
	struct api_error e;
	char **urls;
	int one = 1, r;

	r = api_upload_create(A, "../../foo.bat", &u, &e);
	ck_api_fail(r, e, API_FAIL);
	ck_assert_int_eq(e.status, 400);
	ck_assert_str_eq(e.message, "filename: ../../foo.bat is not a valid filename");
	r = api_upload_create(A, "", &u, &e);
	ck_api_fail(r, e, API_FAIL);
	ck_assert_str_eq(e.message, "filename: This field may not be blank.");

	r = api_upload_get(A, "0f0e0d0c-0b0a-4909-8807-060504030201", &got, &e);
	ck_api_fail(r, e, API_GONE);
	ck_assert_int_eq(e.status, 404);

	/* A wrong S3 upload id (here one that needs escaping) is a 404 on every action. */
	r = api_upload_create(A, "a.mha", &u, &e);
	ck_api_ok(r, e);
	fake = u;
	fake.s3_upload_id = "not the id?";
	r = api_upload_presign(A, &fake, &one, 1, &urls, &e);
	ck_api_fail(r, e, API_GONE);
	r = api_upload_abort(A, &fake, &e);
	ck_api_fail(r, e, API_GONE);
	ck_assert_int_eq(fake_count("PATCH /api/v1/uploads/{pk}/{uid}/abort-multipart-upload/"), 1);
	api_upload_clear(&u);
}
END_TEST

/*
 * Assumptions: storage answers in S3 XML: a tampered presigned URL is a 403
 * (FAIL), a PUT to an aborted upload a 404 (GONE); neither message quotes the URL.
 */
START_TEST(test_upload_part_refused)
{
	struct api_upload u;
	struct http_resp resp = {0};
	struct http_error herr = {0};
	struct api_error e;
	char **urls, *bad, *q;
	int one = 1, fd, r;

	r = api_upload_create(A, "a.mha", &u, &e);
	ck_api_ok(r, e);
	r = api_upload_presign(A, &u, &one, 1, &urls, &e);
	ck_api_ok(r, e);
	fd = temp_file("abc", 3);

	q = strstr(urls[0], "partNumber=1");
	ck_assert_ptr_nonnull(q);
	bad = tu_strdupf("%.*spartNumber=2%s", (int)(q - urls[0]), urls[0], q + 12);
	r = http_put_file(H, bad, fd, 0, 3, NULL, &resp, &herr);
	api_classify(r, &herr, r == 0 ? &resp : NULL, &e);
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(e.cls, API_FAIL);
	ck_assert_int_eq(e.status, 403);
	ck_assert(starts_with(e.message, "HTTP 403: SignatureDoesNotMatch: The request signature"));
	ck_assert_ptr_null(strstr(e.message, "X-Amz"));
	http_resp_done(&resp);
	free(bad);

	r = api_upload_abort(A, &u, &e);
	ck_api_ok(r, e);
	r = http_put_file(H, urls[0], fd, 0, 3, NULL, &resp, &herr);
	api_classify(r, &herr, r == 0 ? &resp : NULL, &e);
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(e.status, 404);
	ck_assert_int_eq(e.cls, API_GONE);
	ck_assert(starts_with(e.message, "HTTP 404: NoSuchUpload"));
	http_resp_done(&resp);

	close(fd);
	free(urls[0]);
	free(urls);
	api_upload_clear(&u);
}
END_TEST

/* ==== sessions ==== */

START_TEST(test_session_create_get)
{
	struct api_upload up;
	struct api_session s, got;
	struct api_error e;
	const char *urls[1];
	int r;

	upload_bytes("ct.mha", MHA, sizeof(MHA) - 1, &up);
	urls[0] = up.api_url;
	r = api_session_create(A, urls, 1, &s, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(s.status, "Queued");
	ck_assert_str_eq(s.error_message, "");
	ck_assert_uint_eq(s.n_images, 0);
	ck_assert(starts_with(s.api_url, api_root_url));

	r = api_session_get(A, s.api_url, &got, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(got.pk, s.pk);
	ck_assert_str_eq(got.status, "Queued");
	api_session_clear(&got);
	api_session_clear(&s);
	api_upload_clear(&up);
}
END_TEST

START_TEST(test_session_refusals)
{
	struct api_upload up;
	struct api_session s;
	struct api_error e;
	const char *urls[101];
	char *gone;
	int i, r;

	upload_bytes("ct.mha", MHA, sizeof(MHA) - 1, &up);
	for (i = 0; i < 101; i++)
		urls[i] = up.api_url;
	r = api_session_create(A, urls, 101, &s, &e);
	ck_api_fail(r, e, API_FAIL);
	ck_assert_str_eq(e.message, "Too many files uploaded. A maximum of 100 files may be "
	                            "uploaded per session.");

	fake_faults("{\"limits\": {\"post_processing_tasks\": 16}}");
	r = api_session_create(A, urls, 1, &s, &e);
	ck_api_fail(r, e, API_LIMIT);
	ck_assert_str_eq(e.message, "You currently have 16 active image post processing tasks. "
	                            "Please wait for them to complete before trying again.");

	gone = tu_strdupf("%scases/upload-sessions/0f0e0d0c-0b0a-4909-8807-060504030201/",
	                  api_root_url);
	r = api_session_get(A, gone, &s, &e);
	ck_api_fail(r, e, API_GONE);
	free(gone);
	api_upload_clear(&up);
}
END_TEST

/* ==== archive items and display sets ==== */

static cJSON *
value_list(const char *socket, double v)
{
	cJSON *values = cJSON_CreateArray();
	cJSON *one = cJSON_CreateObject();

	cJSON_AddStringToObject(one, "interface", socket);
	cJSON_AddNumberToObject(one, "value", v);
	cJSON_AddItemToArray(values, one);
	return values;
}

START_TEST(test_archive_item)
{
	struct api_collection arc;
	struct api_item it, set, got;
	struct api_error e;
	cJSON *values, *v;
	char *want;
	int r;

	r = api_archive_get(A, "demo-archive", &arc, &e);
	ck_api_ok(r, e);
	r = api_archive_item_create(A, arc.api_url, "case-1", &it, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(it.title, "case-1");
	want = tu_strdupf("%sarchives/items/%s/", api_root_url, it.pk);
	ck_assert_str_eq(it.api_url, want);
	free(want);

	values = value_list("lung-volume", 12.5);
	r = api_item_set_values(A, it.api_url, values, &set, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(set.pk, it.pk);
	ck_assert_str_eq(set.api_url, it.api_url);
	ck_assert_int_eq(cJSON_GetArraySize(set.values), 1);
	v = cJSON_GetArrayItem(set.values, 0);
	ck_assert_double_eq(cJSON_GetObjectItem(v, "value")->valuedouble, 12.5);

	r = api_item_get(A, it.api_url, &got, &e);
	ck_api_ok(r, e);
	ck_assert_int_eq(cJSON_GetArraySize(got.values), 1);
	api_item_clear(&got);

	/* A bad value: the nested error, flattened. */
	cJSON_Delete(values);
	values = value_list("no-such-socket", 1);
	r = api_item_set_values(A, it.api_url, values, &got, &e);
	ck_api_fail(r, e, API_FAIL);
	ck_assert_str_eq(e.message, "values[0].interface: Object with slug=no-such-socket does "
	                            "not exist.");
	/* A foreign archive URL. */
	r = api_archive_item_create(A, api_root_url, NULL, &got, &e);
	ck_api_fail(r, e, API_FAIL);
	ck_assert(starts_with(e.message, "archive: Invalid hyperlink"));

	cJSON_Delete(values);
	api_item_clear(&it);
	api_item_clear(&set);
	api_collection_clear(&arc);
}
END_TEST

/* Assumptions: 105 items make two pages of 100; the wanted one is on the second. */
START_TEST(test_archive_item_find_paged)
{
	struct api_collection arc;
	struct api_item it, found;
	struct api_error e;
	char title[32];
	int i, r;

	r = api_archive_get(A, "demo-archive", &arc, &e);
	ck_api_ok(r, e);
	for (i = 0; i < 105; i++) {
		snprintf(title, sizeof(title), "case-%03d", i);
		r = api_archive_item_create(A, arc.api_url, title, &it, &e);
		ck_api_ok(r, e);
		api_item_clear(&it);
	}
	r = api_archive_item_find(A, arc.pk, "case-103", &found, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(found.title, "case-103");
	ck_assert(starts_with(found.api_url, api_root_url));
	ck_assert_ptr_nonnull(strstr(found.api_url, found.pk));
	api_item_clear(&found);

	r = api_archive_item_find(A, arc.pk, "case-000", &found, &e);
	ck_api_ok(r, e);
	api_item_clear(&found);

	/* Not there: every page is read, then -ENOENT. */
	r = api_archive_item_find(A, arc.pk, "case-999", &found, &e);
	ck_assert_int_eq(r, -ENOENT);
	ck_assert_int_eq(e.cls, API_GONE);
	ck_assert_int_ge(fake_count("GET /api/v1/archives/items/"), 4);
	api_collection_clear(&arc);
}
END_TEST

START_TEST(test_display_set)
{
	struct api_collection rs;
	struct api_item ds, set, found, it;
	struct api_error e;
	cJSON *values;
	char *json, title[32];
	int i, r;

	r = api_reader_study_get(A, "demo-reader-study", &rs, &e);
	ck_api_ok(r, e);
	r = api_display_set_create(A, rs.slug, "reading-1", &ds, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(ds.title, "reading-1");
	ck_assert(starts_with(ds.api_url, api_root_url));

	values = value_list("lung-volume", 3);
	r = api_item_set_values(A, ds.api_url, values, &set, &e);
	ck_api_ok(r, e);
	ck_assert_int_eq(cJSON_GetArraySize(set.values), 1);
	api_item_clear(&set);

	for (i = 0; i < 101; i++) {
		snprintf(title, sizeof(title), "more-%03d", i);
		r = api_display_set_create(A, rs.slug, title, &it, &e);
		ck_api_ok(r, e);
		api_item_clear(&it);
	}
	r = api_display_set_find(A, rs.pk, "more-100", &found, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(found.title, "more-100");
	api_item_clear(&found);
	r = api_display_set_find(A, rs.pk, "reading-1", &found, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(found.pk, ds.pk);
	ck_assert_str_eq(found.api_url, ds.api_url);
	api_item_clear(&found);

	/* Once answered, a display set refuses changes: a bare-array error. */
	json = tu_strdupf("{\"display_set\": \"%s\"}", ds.pk);
	ck_assert_int_eq(fake_request(HTTP_POST, "__fakegc__/answer", json, NULL), 200);
	free(json);
	r = api_item_set_values(A, ds.api_url, values, &set, &e);
	ck_api_fail(r, e, API_FAIL);
	ck_assert_str_eq(e.message,
	                 "This display set cannot be changed, as answers for it already exist.");

	/* An unknown reader study. */
	r = api_display_set_create(A, "no-such-study", NULL, &it, &e);
	ck_api_fail(r, e, API_FAIL);
	ck_assert_str_eq(e.message, "reader_study: Object with slug=no-such-study does not exist.");

	cJSON_Delete(values);
	api_item_clear(&ds);
	api_collection_clear(&rs);
}
END_TEST

/* ==== jobs ==== */

/* A job of demo-algorithm on a fresh upload of MHA; *ret_alg is its algorithm. */
static void
start_job(struct api_algorithm *ret_alg, struct api_job *ret)
{
	struct api_upload up;
	struct api_error e;
	cJSON *inputs, *one, *list;
	int r;

	r = api_algorithm_get(A, "demo-algorithm", ret_alg, &e);
	ck_api_ok(r, e);
	upload_bytes("ct.mha", MHA, sizeof(MHA) - 1, &up);
	inputs = cJSON_CreateArray();
	one = cJSON_CreateObject();
	cJSON_AddStringToObject(one, "interface", "generic-medical-image");
	list = cJSON_AddArrayToObject(one, "user_uploads");
	cJSON_AddItemToArray(list, cJSON_CreateString(up.api_url));
	cJSON_AddItemToArray(inputs, one);
	r = api_job_create(A, ret_alg->api_url, inputs, ret, &e);
	ck_api_ok(r, e);
	cJSON_Delete(inputs);
	api_upload_clear(&up);
}

/* The api_url of the job output (or input) on socket slug, in field "image" or "file". */
static char *
value_url(const cJSON *values, const char *slug, const char *field)
{
	const cJSON *v, *itf, *s;

	for (v = values ? values->child : NULL; v; v = v->next) {
		itf = cJSON_GetObjectItem(v, "interface");
		s = cJSON_GetObjectItem(itf, "slug");
		if (cJSON_IsString(s) && strcmp(s->valuestring, slug) == 0 &&
		    cJSON_IsString(cJSON_GetObjectItem(v, field)))
			return strdup(cJSON_GetObjectItem(v, field)->valuestring);
	}
	return NULL;
}

/*
 * Assumptions: the 201 has no api_url (built from the pk); the job runs to
 * Succeeded when the emulator's clock moves; its input image finds it again.
 */
START_TEST(test_job_flow)
{
	struct api_algorithm alg;
	struct api_job job, got, *found;
	struct api_image im;
	struct api_error e;
	char *want, *image_url;
	size_t n;
	int r;

	start_job(&alg, &job);
	ck_assert_str_eq(job.status, "Validating inputs");
	want = tu_strdupf("%salgorithms/jobs/%s/", api_root_url, job.pk);
	ck_assert_str_eq(job.api_url, want);
	free(want);
	ck_assert(!api_job_status_is_terminal(job.status));
	/* The 201 has no durations (JobPostSerializer). */
	ck_assert_ptr_null(job.exec_duration);
	ck_assert_ptr_null(job.invoke_duration);

	fake_advance(60);
	r = api_job_get(A, job.api_url, &got, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(got.status, "Succeeded");
	ck_assert(api_job_status_is_terminal(got.status));
	ck_assert_int_eq(cJSON_GetArraySize(got.outputs), 2);
	/* A finished job has ISO-8601 durations (contract 5.4): one tick of Executing. */
	ck_assert_ptr_nonnull(got.exec_duration);
	ck_assert_msg(starts_with(got.exec_duration, "P0DT00H") &&
	                  got.exec_duration[strlen(got.exec_duration) - 1] == 'S',
	              "exec_duration '%s'", got.exec_duration);
	ck_assert_ptr_nonnull(got.invoke_duration);

	image_url = value_url(got.inputs, "generic-medical-image", "image");
	ck_assert_ptr_nonnull(image_url);
	r = api_image_get(A, image_url, &im, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(im.api_url, image_url);
	ck_assert_uint_eq(im.n_files, 1);
	ck_assert_str_eq(im.files[0].image_type, "MHD");
	ck_assert(starts_with(im.files[0].url, fake_base));

	r = api_jobs_find_by_input_image(A, alg.pk, im.pk, &found, &n, &e);
	ck_api_ok(r, e);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(found[0].pk, job.pk);
	ck_assert_str_eq(found[0].api_url, job.api_url);
	ck_assert_str_eq(found[0].status, "Succeeded");
	api_jobs_free(found, n);

	/* Another algorithm did not use it: an empty list, not an error. */
	api_algorithm_clear(&alg);
	r = api_algorithm_get(A, "multi-input-algorithm", &alg, &e);
	ck_api_ok(r, e);
	r = api_jobs_find_by_input_image(A, alg.pk, im.pk, &found, &n, &e);
	ck_api_ok(r, e);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(found);

	/* An image pk the server does not know is a filter error (django-filter's choices). */
	r = api_jobs_find_by_input_image(A, alg.pk, "0f0e0d0c-0b0a-4909-8807-060504030201", &found,
	                                 &n, &e);
	ck_api_fail(r, e, API_FAIL);
	ck_assert(starts_with(e.message, "input_image: Select a valid choice."));

	free(image_url);
	api_image_clear(&im);
	api_job_clear(&got);
	api_job_clear(&job);
	api_algorithm_clear(&alg);
}
END_TEST

/*
 * Assumptions: the job's durations are read as the platform sends them, and
 * are optional: null, absent or of another type they are NULL, never a reason
 * to refuse the job's answer (its status and outputs are what matter).
 */
static const struct {
	const char *members; /* spliced into a job body */
	const char *exec, *invoke;
} job_durations[] = {
    {"\"exec_duration\": \"P0DT00H22M17S\", \"invoke_duration\": \"P1DT02H03M04S\"",
     "P0DT00H22M17S", "P1DT02H03M04S"},
    {"\"exec_duration\": null, \"invoke_duration\": null", NULL, NULL},
    {"\"exec_duration\": 1337, \"invoke_duration\": {\"s\": 1}", NULL, NULL},
    {"\"other\": 1", NULL, NULL},
};

START_TEST(test_job_durations)
{
	struct api_job got;
	struct api_error e;
	char *url, *json;
	int r;

	url = tu_strdupf("%salgorithms/jobs/0f0e0d0c-0b0a-4909-8807-060504030201/", api_root_url);
	json = tu_strdupf("{\"rules\": [{\"route\": \"jobs-detail\", \"status\": 200, \"body\": "
	                  "{\"pk\": \"0f0e0d0c-0b0a-4909-8807-060504030201\", \"api_url\": \"%s\", "
	                  "\"status\": \"Succeeded\", \"inputs\": [], \"outputs\": [], %s}}]}",
	                  url, job_durations[_i].members);
	fake_faults(json);
	free(json);
	r = api_job_get(A, url, &got, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(got.status, "Succeeded");
	ck_assert_pstr_eq(got.exec_duration, job_durations[_i].exec);
	ck_assert_pstr_eq(got.invoke_duration, job_durations[_i].invoke);
	api_job_clear(&got);
	free(url);
}
END_TEST

/* Assumptions: the same existing image again is the platform's duplicate refusal. */
START_TEST(test_job_duplicate)
{
	struct api_algorithm alg;
	struct api_job job, got, dup;
	struct api_error e;
	cJSON *inputs, *one;
	char *image_url, *gone;
	int r;

	start_job(&alg, &job);
	fake_advance(60);
	r = api_job_get(A, job.api_url, &got, &e);
	ck_api_ok(r, e);
	image_url = value_url(got.inputs, "generic-medical-image", "image");
	ck_assert_ptr_nonnull(image_url);

	inputs = cJSON_CreateArray();
	one = cJSON_CreateObject();
	cJSON_AddStringToObject(one, "interface", "generic-medical-image");
	cJSON_AddStringToObject(one, "image", image_url);
	cJSON_AddItemToArray(inputs, one);
	r = api_job_create(A, alg.api_url, inputs, &dup, &e);
	ck_api_fail(r, e, API_FAIL);
	ck_assert_int_eq(e.status, 400);
	ck_assert_str_eq(
	    e.message,
	    "A result for these inputs with the current image and model already exists.");

	gone = tu_strdupf("%salgorithms/jobs/0f0e0d0c-0b0a-4909-8807-060504030201/", api_root_url);
	r = api_job_get(A, gone, &dup, &e);
	ck_api_fail(r, e, API_GONE);
	free(gone);

	cJSON_Delete(inputs);
	free(image_url);
	api_job_clear(&got);
	api_job_clear(&job);
	api_algorithm_clear(&alg);
}
END_TEST

START_TEST(test_job_limits)
{
	struct api_algorithm alg;
	struct api_upload up;
	struct api_job job;
	struct api_error e;
	cJSON *inputs, *one, *list;
	int r;

	r = api_algorithm_get(A, "demo-algorithm", &alg, &e);
	ck_api_ok(r, e);
	upload_bytes("ct.mha", MHA, sizeof(MHA) - 1, &up);
	inputs = cJSON_CreateArray();
	one = cJSON_CreateObject();
	cJSON_AddStringToObject(one, "interface", "generic-medical-image");
	list = cJSON_AddArrayToObject(one, "user_uploads");
	cJSON_AddItemToArray(list, cJSON_CreateString(up.api_url));
	cJSON_AddItemToArray(inputs, one);

	fake_faults("{\"limits\": {\"max_active_jobs\": 0}}");
	r = api_job_create(A, alg.api_url, inputs, &job, &e);
	ck_api_fail(r, e, API_LIMIT);
	ck_assert_str_eq(e.message, "You have too many active jobs, please try again after they "
	                            "have completed");

	fake_faults("{\"limits\": {\"credits\": 0}}");
	r = api_job_create(A, alg.api_url, inputs, &job, &e);
	ck_api_fail(r, e, API_LIMIT);
	ck_assert_str_eq(e.message, "You have run out of algorithm credits");

	/* A wrong input set: validation, never retried. */
	fake_faults("{}");
	cJSON_ReplaceItemInObject(one, "interface", cJSON_CreateString("ct-image"));
	r = api_job_create(A, alg.api_url, inputs, &job, &e);
	ck_api_fail(r, e, API_FAIL);
	ck_assert(starts_with(e.message, "The set of inputs provided does not match any of the "
	                                 "algorithm's interfaces."));
	ck_assert_int_eq(fake_count("POST /api/v1/algorithms/jobs/"), 3);

	cJSON_Delete(inputs);
	api_upload_clear(&up);
	api_algorithm_clear(&alg);
}
END_TEST

/*
 * Assumptions: outputs are fetched through /media/ (token) with a redirect to
 * /s3/ (no token): the bytes arrive, and the emulator saw no token at /s3/.
 */
START_TEST(test_job_download)
{
	struct api_algorithm alg;
	struct api_job job, got;
	struct api_image im;
	struct api_error e;
	char *file_url, *image_url, *path, *data;
	int64_t bytes;
	size_t len;
	int fd, r;

	start_job(&alg, &job);
	fake_advance(60);
	r = api_job_get(A, job.api_url, &got, &e);
	ck_api_ok(r, e);
	file_url = value_url(got.outputs, "report-pdf", "file");
	ck_assert_ptr_nonnull(file_url);
	ck_assert(starts_with(file_url, fake_base));

	path = tu_strdupf("%s/report.pdf", tmp);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	r = api_download(A, file_url, fd, NULL, &bytes, &e);
	ck_api_ok(r, e);
	close(fd);
	data = tu_read_file(path, &len);
	ck_assert_int_eq((int64_t)len, bytes);
	ck_assert(starts_with(data, "%PDF-1.4"));
	free(data);

	/* The input image's file, the same way. */
	image_url = value_url(got.inputs, "generic-medical-image", "image");
	r = api_image_get(A, image_url, &im, &e);
	ck_api_ok(r, e);
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	r = api_download(A, im.files[0].url, fd, NULL, &bytes, &e);
	ck_api_ok(r, e);
	close(fd);
	ck_assert_int_gt(bytes, 0);

	/* A media URL that does not exist: Django's 404 page, gone. */
	data =
	    tu_strdupf("%smedia/components/componentinterfacevalue/00/00/999999/x.pdf", fake_base);
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	r = api_download(A, data, fd, NULL, &bytes, &e);
	close(fd);
	ck_api_fail(r, e, API_GONE);
	ck_assert_str_eq(e.message, "HTTP 404: Not Found");
	free(data);

	ck_assert_int_ge(fake_count("GET /s3/{object}"), 2);

	free(path);
	free(file_url);
	free(image_url);
	api_image_clear(&im);
	api_job_clear(&got);
	api_job_clear(&job);
	api_algorithm_clear(&alg);
}
END_TEST

/*
 * Assumptions: the platform token reaches neither the presigned part PUT nor
 * the storage hop of a download. The emulator serves its fake S3 on the API's
 * own origin (contract 8.1), so this holds only when the redirect hop of a
 * download goes without the token even on the API origin.
 */
START_TEST(test_job_download_no_token_to_storage)
{
	struct api_algorithm alg;
	struct api_job job, got;
	struct api_error e;
	char *file_url;
	int64_t bytes;
	int fd, r;
	cJSON *st, *leak;

	start_job(&alg, &job);
	fake_advance(60);
	r = api_job_get(A, job.api_url, &got, &e);
	ck_api_ok(r, e);
	file_url = value_url(got.outputs, "report-pdf", "file");
	ck_assert_ptr_nonnull(file_url);
	fd = temp_file("", 0);
	r = api_download(A, file_url, fd, NULL, &bytes, &e);
	ck_api_ok(r, e);
	close(fd);
	ck_assert_int_eq(fake_count("GET /s3/{object}"), 1);

	st = fake_state();
	for (leak = cJSON_GetObjectItem(st, "leaks")->child; leak; leak = leak->next)
		fprintf(stderr, "leak: %s %s\n", cJSON_GetObjectItem(leak, "method")->valuestring,
		        cJSON_GetObjectItem(leak, "path")->valuestring);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "leaks")), 0);
	cJSON_Delete(st);

	free(file_url);
	api_job_clear(&got);
	api_job_clear(&job);
	api_algorithm_clear(&alg);
}
END_TEST

/* ==== errors: faults injected into the emulator ==== */

START_TEST(test_fault_5xx)
{
	struct api_collection c;
	struct api_error e;
	int r;

	fake_faults("{\"rules\": [{\"route\": \"archives-list\", \"status\": 503, \"count\": 1}]}");
	r = api_archive_get(A, "demo-archive", &c, &e);
	ck_api_fail(r, e, API_RETRY);
	ck_assert_int_eq(r, -EIO);
	ck_assert_int_eq(e.status, 503);
	ck_assert_str_eq(e.message, "HTTP 503: 503");
	ck_assert_int_eq(e.retry_after_ms, -1);
	r = api_archive_get(A, "demo-archive", &c, &e);
	ck_api_ok(r, e);
	api_collection_clear(&c);
}
END_TEST

START_TEST(test_fault_429)
{
	struct api_upload u;
	struct api_error e;
	int r;

	fake_faults("{\"rules\": [{\"route\": \"uploads-list\", \"method\": \"POST\", "
	            "\"status\": 429, \"retry_after\": 7, \"count\": 1}, "
	            "{\"route\": \"uploads-detail\", \"status\": 429, \"retry_after_date\": 30, "
	            "\"count\": 1}]}");
	r = api_upload_create(A, "a.mha", &u, &e);
	ck_api_fail(r, e, API_RETRY);
	ck_assert_int_eq(e.status, 429);
	ck_assert_int_eq(e.retry_after_ms, 7000);

	r = api_upload_get(A, "0f0e0d0c-0b0a-4909-8807-060504030201", &u, &e);
	ck_api_fail(r, e, API_RETRY);
	ck_assert_int_gt(e.retry_after_ms, 20000);
	ck_assert_int_le(e.retry_after_ms, 31000);
}
END_TEST

/* Assumptions: a 2xx that is not JSON (a proxy page) or lacks fields is retryable, with a reason.
 */
START_TEST(test_fault_malformed_2xx)
{
	struct api_upload u;
	struct api_job job;
	struct api_error e;
	char *want;
	int r;

	fake_faults("{\"rules\": [{\"route\": \"uploads-list\", \"method\": \"POST\", "
	            "\"status\": 200, \"count\": 1}]}");
	r = api_upload_create(A, "a.mha", &u, &e);
	ck_api_fail(r, e, API_RETRY);
	ck_assert_int_eq(r, -EIO);
	ck_assert_int_eq(e.status, 200);
	want =
	    tu_strdupf("unexpected response from %suploads/: the body is not JSON", api_root_url);
	ck_assert_str_eq(e.message, want);
	free(want);

	fake_faults("{\"rules\": [{\"route\": \"uploads-list\", \"method\": \"POST\", "
	            "\"status\": 201, \"body\": {\"pk\": \"x\", \"status\": \"Initialized\"}}]}");
	r = api_upload_create(A, "a.mha", &u, &e);
	ck_api_fail(r, e, API_RETRY);
	want =
	    tu_strdupf("unexpected response from %suploads/: 'api_url' is missing", api_root_url);
	ck_assert_str_eq(e.message, want);
	free(want);

	fake_faults("{\"rules\": [{\"route\": \"jobs-detail\", \"status\": 200, \"body\": "
	            "{\"pk\": \"x\", \"status\": 13, \"inputs\": []}}]}");
	want = tu_strdupf("%salgorithms/jobs/x/", api_root_url);
	r = api_job_get(A, want, &job, &e);
	ck_api_fail(r, e, API_RETRY);
	ck_assert_ptr_nonnull(strstr(e.message, "'status' is not a string"));

	fake_faults("{\"rules\": [{\"route\": \"jobs-detail\", \"status\": 200, \"body\": "
	            "{\"pk\": \"x\", \"status\": \"Queued\", \"inputs\": {}}}]}");
	r = api_job_get(A, want, &job, &e);
	ck_api_fail(r, e, API_RETRY);
	ck_assert_ptr_nonnull(strstr(e.message, "'inputs' is not an array"));

	/* Well-formed, with unknown members and no api_url: the asked URL is kept. */
	fake_faults("{\"rules\": [{\"route\": \"jobs-detail\", \"status\": 200, \"body\": "
	            "{\"pk\": \"x\", \"status\": \"Queued\", \"inputs\": [], \"outputs\": null, "
	            "\"whatever\": {\"a\": [1]}}}]}");
	r = api_job_get(A, want, &job, &e);
	ck_api_ok(r, e);
	ck_assert_str_eq(job.api_url, want);
	ck_assert_ptr_null(job.outputs);
	ck_assert_int_eq(cJSON_GetArraySize(job.inputs), 0);
	api_job_clear(&job);
	free(want);
}
END_TEST

START_TEST(test_fault_connection)
{
	struct api_collection c;
	struct api_error e;
	int r;

	/*
	 * Two refusals: libcurl transparently retries a request once when a reused
	 * keep-alive connection turns out to be closed.
	 */
	fake_faults("{\"down\": {\"requests\": 2}}");
	r = api_archive_get(A, "demo-archive", &c, &e);
	ck_api_fail(r, e, API_RETRY);
	ck_assert_int_eq(e.status, 0); /* no response at all: curl's message */
	ck_assert_str_ne(e.message, "");
	ck_assert(!starts_with(e.message, "HTTP "));

	fake_faults("{\"rules\": [{\"route\": \"archives-list\", \"action\": \"truncate\", "
	            "\"count\": 1}]}");
	r = api_archive_get(A, "demo-archive", &c, &e);
	ck_api_fail(r, e, API_RETRY);

	r = api_archive_get(A, "demo-archive", &c, &e);
	ck_api_ok(r, e);
	api_collection_clear(&c);
}
END_TEST

/* ==== the suite ==== */

static Suite *
api_suite(void)
{
	Suite *s = suite_create("api");
	TCase *tc;

	tc = tcase_create("text");
	tcase_add_loop_test(tc, test_error_text_table, 0, (int)GC_ARRAY_SIZE(error_texts));
	tcase_add_test(tc, test_error_text_limits);
	tcase_add_test(tc, test_error_text_mutations);
	tcase_add_loop_test(tc, test_classify_table, 0, (int)GC_ARRAY_SIZE(classes));
	tcase_add_test(tc, test_classify_transport);
	tcase_add_test(tc, test_origin_rules);
	suite_add_tcase(s, tc);

	tc = tcase_create("lookups");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_ping);
	tcase_add_test(tc, test_algorithm_found);
	tcase_add_test(tc, test_collections_found);
	tcase_add_test(tc, test_lookup_not_found);
	tcase_add_test(tc, test_lookup_tokens);
	tcase_add_loop_test(tc, test_lookup_malformed, 0, (int)GC_ARRAY_SIZE(bad_lists));
	tcase_add_test(tc, test_lookup_numeric_pk);
	suite_add_tcase(s, tc);

	tc = tcase_create("uploads");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_upload_flow);
	tcase_add_test(tc, test_upload_abort);
	tcase_add_test(tc, test_upload_complete_bad_etag);
	tcase_add_test(tc, test_upload_complete_lost_response);
	tcase_add_test(tc, test_upload_presign_quota);
	tcase_add_test(tc, test_upload_too_many);
	tcase_add_test(tc, test_upload_refusals);
	tcase_add_test(tc, test_upload_part_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("sessions");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_session_create_get);
	tcase_add_test(tc, test_session_refusals);
	suite_add_tcase(s, tc);

	tc = tcase_create("items");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_archive_item);
	tcase_add_test(tc, test_archive_item_find_paged);
	tcase_add_test(tc, test_display_set);
	suite_add_tcase(s, tc);

	tc = tcase_create("jobs");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_job_flow);
	tcase_add_loop_test(tc, test_job_durations, 0, (int)GC_ARRAY_SIZE(job_durations));
	tcase_add_test(tc, test_job_duplicate);
	tcase_add_test(tc, test_job_limits);
	tcase_add_test(tc, test_job_download);
	tcase_add_test(tc, test_job_download_no_token_to_storage);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_fault_5xx);
	tcase_add_test(tc, test_fault_429);
	tcase_add_test(tc, test_fault_malformed_2xx);
	tcase_add_test(tc, test_fault_connection);
	suite_add_tcase(s, tc);
	return s;
}

/*
 * The test CA and server certificate, once for the whole run. This runs
 * outside any test, where Check's assertions (and the tu_ helpers built on
 * them) cannot be used.
 */
static void
make_tls(void)
{
	const char *python = tu_env("PYTHON3", "/usr/bin/python3");
	const char *dir = tu_env("FAKEGC_DIR", NULL);
	int status;
	pid_t pid;

	if (!dir) {
		fprintf(stderr, "check_api: FAKEGC_DIR is not set\n");
		exit(99);
	}
	if (asprintf(&tls_dir, "%s/check_api_tls.XXXXXX", tu_env("TMPDIR", "/tmp")) < 0 ||
	    !mkdtemp(tls_dir)) {
		perror("check_api: mkdtemp");
		exit(99);
	}
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		setenv("PYTHONPATH", dir, 1);
		execlp(python, python, "-m", "fakegc.tls", tls_dir, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "check_api: making the test CA with %s -m fakegc.tls failed\n",
		        python);
		exit(99);
	}
}

int
main(void)
{
	SRunner *sr;
	int failed;

	if (http_global_init() < 0)
		return 99;
	make_tls();
	sr = srunner_create(api_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	{
		pid_t pid = fork();

		if (pid == 0) {
			execlp("rm", "rm", "-rf", tls_dir, (char *)NULL);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	free(tls_dir);
	http_global_cleanup();
	return failed ? 1 : 0;
}
