/*
 * fuzz_api.c: libFuzzer target for the API response parsers (src/api.c).
 *
 * api.c keeps its JSON parsers static and reaches the network only through
 * http_request(). The target is therefore linked with -Wl,--wrap=http_request:
 * api.c's calls land in __wrap_http_request() below, which answers from the
 * fuzz input instead of a server. Every public api_* endpoint function can so
 * be driven with arbitrary responses, through the same code path as in
 * production (classification, JSON parsing, the per-endpoint parser, paging).
 *
 * Input format (text, so that captured emulator responses make the seeds):
 *
 *   <endpoint>\n                     e.g. "job_get"; see endpoints[] below; an
 *                                    unknown name picks one by its first byte
 *   <status> [<content-type>]\n      the first response: HTTP status (or a
 *   <body ...>                       negative errno: no response at all)
 *   \n--8<--\n                       separator, then the next response (lists
 *   <status> ...                     are paged; uploads may retry) ...
 *
 * When the responses run out, the http layer "fails" with -ECONNREFUSED.
 *
 * Invariants checked besides memory safety: api.c sends requests only to the
 * API root's origin (the token never leaves it, contract 1.3) with bodies that
 * are valid JSON; an endpoint returns 0 with API_OK, or a negative errno with
 * another class, a NUL-terminated message and its ret_* untouched (all zero);
 * api_error_text() output fits its buffer, has no control characters and is
 * valid UTF-8 whenever the body is.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "fuzz.h"
#include "http.h"
#include "scan.h"

#define ROOT "https://gc.example/api/v1/"
#define MAX_RESPONSES 16
#define SEPARATOR "\n--8<--\n"

struct fresp {
	long status;		/* < 0: that errno, no response */
	char *content_type;
	const char *body;
	size_t body_len;
};

static struct fresp responses[MAX_RESPONSES];
static size_t n_responses, next_response;
static struct http *fuzz_http;

int __wrap_http_request(struct http *h, const struct http_req *req, struct http_resp *ret,
			struct http_error *reterr);

/* The http layer, as api.c sees it: the next response of the input. */
int
__wrap_http_request(struct http *h, const struct http_req *req, struct http_resp *ret,
		    struct http_error *reterr)
{
	const struct fresp *f;
	size_t cap = req->max_response ? req->max_response : HTTP_RESPONSE_MAX;

	(void)h;
	FUZZ_ASSERT(req && req->url && ret && reterr);
	if (!http_same_origin(req->url, ROOT))
		fprintf(stderr, "request to another origin: %s\n", req->url);
	FUZZ_ASSERT(http_same_origin(req->url, ROOT));
	if (req->json) {
		cJSON *j = cJSON_Parse(req->json);

		FUZZ_ASSERT(j != NULL);
		cJSON_Delete(j);
	}
	memset(reterr, 0, sizeof(*reterr));
	if (next_response >= n_responses || responses[next_response].status < 0) {
		long st = next_response < n_responses ? responses[next_response].status : 0;
		/* An errno of the input's choosing; LONG_MIN and the like become EIO. */
		int e = st == 0 ? ECONNREFUSED : st >= -4095 ? (int)-st : EIO;

		next_response++;
		reterr->code = -e;
		reterr->cls = HTTP_CLASS_RETRY;
		snprintf(reterr->message, sizeof(reterr->message), "fuzz: %s", strerror(e));
		return -e;
	}
	f = &responses[next_response++];
	if (f->body_len > cap) {
		reterr->code = -E2BIG;
		reterr->status = f->status;
		reterr->cls = HTTP_CLASS_FAIL;
		snprintf(reterr->message, sizeof(reterr->message), "response too large");
		return -E2BIG;
	}
	memset(ret, 0, sizeof(*ret));
	ret->status = f->status;
	ret->body = malloc(f->body_len + 1);
	ret->content_type = f->content_type ? strdup(f->content_type) : NULL;
	if (!ret->body) {
		free(ret->content_type);
		reterr->code = -ENOMEM;
		return -ENOMEM;
	}
	memcpy(ret->body, f->body, f->body_len);
	ret->body[f->body_len] = '\0';
	ret->body_len = f->body_len;
	ret->retry_after_ms = -1;
	ret->bytes = (int64_t)f->body_len;
	return 0;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct http_opts opts = { .api_url = ROOT, .authorization = "Bearer fuzz" };

	(void)argc;
	(void)argv;
	if (http_global_init() < 0)
		abort();
	fuzz_http = http_new(&opts);
	if (!fuzz_http)
		abort();
	return 0;
}

static bool
all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		if (c[i])
			return false;
	return true;
}

static bool
utf8_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t l = scan_utf8_seq((const unsigned char *)s + i, n - i);

		if (l == 0)
			return false;
		i += l;
	}
	return true;
}

/* After an endpoint call: the error contract of api.h. */
static void
check_outcome(int r, const struct api_error *err, const void *ret, size_t ret_size)
{
	FUZZ_ASSERT(memchr(err->message, '\0', sizeof(err->message)) != NULL);
	if (r == 0) {
		FUZZ_ASSERT(err->cls == API_OK);
		return;
	}
	FUZZ_ASSERT(r < 0 && err->cls != API_OK);
	if (ret && !all_zero(ret, ret_size))
		fprintf(stderr, "ret_* written on failure (r=%d)\n", r);
	FUZZ_ASSERT(!ret || all_zero(ret, ret_size));
}

#define CHECK(r, err, ret) check_outcome((r), (err), (ret), sizeof(*(ret)))

static void
check_error_text(const struct fresp *f)
{
	static const size_t caps[] = { 1, 2, 7, 64, 512 };
	char *body, out[512];

	body = fuzz_cstring(f->body, f->body_len);
	if (!body)
		return;
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		size_t len;

		memset(out, 'Z', sizeof(out));
		api_error_text(body, out, caps[i]);
		FUZZ_ASSERT(memchr(out, '\0', caps[i]) != NULL);
		len = strlen(out);
		for (size_t k = 0; k < len; k++)
			FUZZ_ASSERT((unsigned char)out[k] >= 0x20 && out[k] != 0x7f);
		if (utf8_valid(body, strlen(body)) && !utf8_valid(out, len))
			fprintf(stderr, "api_error_text cut UTF-8 at cap %zu\n", caps[i]);
		if (utf8_valid(body, strlen(body)))
			FUZZ_ASSERT(utf8_valid(out, len));
	}
	api_error_text(NULL, out, sizeof(out));
	free(body);
}

enum ep {
	EP_PING, EP_ALGORITHM_GET, EP_ARCHIVE_GET, EP_READER_STUDY_GET, EP_SOCKET_GET,
	EP_UPLOAD_CREATE, EP_UPLOAD_GET, EP_UPLOAD_PRESIGN, EP_UPLOAD_COMPLETE, EP_UPLOAD_ABORT,
	EP_UPLOAD_LIST_PARTS, EP_SESSION_CREATE, EP_SESSION_GET, EP_ARCHIVE_ITEM_CREATE,
	EP_DISPLAY_SET_CREATE, EP_ITEM_SET_VALUES, EP_ITEM_GET, EP_ARCHIVE_ITEM_FIND,
	EP_DISPLAY_SET_FIND, EP_JOB_CREATE, EP_JOB_GET, EP_JOBS_FIND, EP_IMAGE_GET, EP_ERROR_TEXT,
	EP_COUNT
};

static const char *const endpoints[EP_COUNT] = {
	"ping", "algorithm_get", "archive_get", "reader_study_get", "socket_get",
	"upload_create", "upload_get", "upload_presign", "upload_complete", "upload_abort",
	"upload_list_parts", "session_create", "session_get", "archive_item_create",
	"display_set_create", "item_set_values", "item_get", "archive_item_find",
	"display_set_find", "job_create", "job_get", "jobs_find", "image_get", "error_text",
};

#define UPLOAD_PK "eb1167b3-67a9-4378-bc65-c1e582e2e662"
#define S3_ID "5ba91faf7a024204f7c1bd874da5e709d4713d60c8a70639"

static void
call_endpoint(struct api *api, enum ep ep)
{
	struct api_error err;
	struct api_upload u = {
		.pk = UPLOAD_PK, .api_url = ROOT "uploads/" UPLOAD_PK "/", .filename = "ct.mha",
		.s3_upload_id = S3_ID, .status = "Initialized",
	};
	struct api_part parts[2] = { { 2, "\"e2\"", 5 }, { 1, "\"e1\"", 5 } };
	static const int numbers[] = { 1, 2 };
	const char *uploads[] = { ROOT "uploads/" UPLOAD_PK "/" };
	cJSON *values = cJSON_Parse("[{\"interface\": \"lung-volume\", \"value\": 1.5}]");
	int r;

	switch (ep) {
	case EP_PING:
		r = api_ping(api, &err);
		CHECK(r, &err, (char *)NULL);
		break;
	case EP_ALGORITHM_GET: {
		struct api_algorithm a = { 0 };

		r = api_algorithm_get(api, "demo-algorithm", &a, &err);
		CHECK(r, &err, &a);
		api_algorithm_clear(&a);
		break;
	}
	case EP_ARCHIVE_GET:
	case EP_READER_STUDY_GET: {
		struct api_collection c = { 0 };

		r = ep == EP_ARCHIVE_GET ? api_archive_get(api, "demo-archive", &c, &err)
					 : api_reader_study_get(api, "demo-reader-study", &c, &err);
		CHECK(r, &err, &c);
		api_collection_clear(&c);
		break;
	}
	case EP_SOCKET_GET: {
		struct api_socket s = { 0 };

		r = api_socket_get(api, "ct-image", &s, &err);
		CHECK(r, &err, &s);
		api_socket_clear(&s);
		break;
	}
	case EP_UPLOAD_CREATE:
	case EP_UPLOAD_GET:
	case EP_UPLOAD_COMPLETE: {
		struct api_upload got = { 0 };

		if (ep == EP_UPLOAD_CREATE)
			r = api_upload_create(api, "ct.mha", &got, &err);
		else if (ep == EP_UPLOAD_GET)
			r = api_upload_get(api, UPLOAD_PK, &got, &err);
		else
			r = api_upload_complete(api, &u, parts, 2, &got, &err);
		CHECK(r, &err, &got);
		api_upload_clear(&got);
		break;
	}
	case EP_UPLOAD_PRESIGN: {
		char **urls = NULL;

		r = api_upload_presign(api, &u, numbers, 2, &urls, &err);
		CHECK(r, &err, &urls);
		if (r == 0) {
			for (size_t i = 0; i < 2; i++) {
				FUZZ_ASSERT(urls[i] && http_check_url(urls[i]) == 0);
				free(urls[i]);
			}
			free(urls);
		}
		break;
	}
	case EP_UPLOAD_ABORT:
		r = api_upload_abort(api, &u, &err);
		CHECK(r, &err, (char *)NULL);
		break;
	case EP_UPLOAD_LIST_PARTS: {
		struct api_part *got = NULL;
		size_t n = 0;

		r = api_upload_list_parts(api, &u, &got, &n, &err);
		CHECK(r, &err, &got);
		if (r == 0)
			FUZZ_ASSERT((n == 0) == (got == NULL));
		else
			FUZZ_ASSERT(n == 0);
		api_parts_free(got, n);
		break;
	}
	case EP_SESSION_CREATE:
	case EP_SESSION_GET: {
		struct api_session s = { 0 };

		if (ep == EP_SESSION_CREATE)
			r = api_session_create(api, uploads, 1, &s, &err);
		else
			r = api_session_get(api, ROOT "cases/upload-sessions/d9b8a714/", &s, &err);
		CHECK(r, &err, &s);
		api_session_clear(&s);
		break;
	}
	case EP_ARCHIVE_ITEM_CREATE:
	case EP_DISPLAY_SET_CREATE:
	case EP_ITEM_SET_VALUES:
	case EP_ITEM_GET:
	case EP_ARCHIVE_ITEM_FIND:
	case EP_DISPLAY_SET_FIND: {
		struct api_item it = { 0 };

		if (ep == EP_ARCHIVE_ITEM_CREATE)
			r = api_archive_item_create(api, ROOT "archives/d3e3dd1c/", "case-1", &it,
						    &err);
		else if (ep == EP_DISPLAY_SET_CREATE)
			r = api_display_set_create(api, "demo-reader-study", "case-1", &it, &err);
		else if (ep == EP_ITEM_SET_VALUES)
			r = api_item_set_values(api, ROOT "archives/items/b4862b21/", values, &it,
						&err);
		else if (ep == EP_ITEM_GET)
			r = api_item_get(api, ROOT "archives/items/b4862b21/", &it, &err);
		else if (ep == EP_ARCHIVE_ITEM_FIND)
			r = api_archive_item_find(api, "d3e3dd1c", "case-1", &it, &err);
		else
			r = api_display_set_find(api, "a1b2c3", "case-1", &it, &err);
		CHECK(r, &err, &it);
		api_item_clear(&it);
		break;
	}
	case EP_JOB_CREATE:
	case EP_JOB_GET: {
		struct api_job j = { 0 };

		if (ep == EP_JOB_CREATE)
			r = api_job_create(api, ROOT "algorithms/ac7f1d09/", values, &j, &err);
		else
			r = api_job_get(api, ROOT "algorithms/jobs/ea7e9d49/", &j, &err);
		CHECK(r, &err, &j);
		if (r == 0 && j.status)
			(void)api_job_status_is_terminal(j.status);
		api_job_clear(&j);
		break;
	}
	case EP_JOBS_FIND: {
		struct api_job *jobs = NULL;
		size_t n = 0;

		r = api_jobs_find_by_input_image(api, "ac7f1d09", "8f4ff31e", &jobs, &n, &err);
		CHECK(r, &err, &jobs);
		if (r == 0)
			FUZZ_ASSERT((n == 0) == (jobs == NULL));
		api_jobs_free(jobs, n);
		break;
	}
	case EP_IMAGE_GET: {
		struct api_image im = { 0 };

		r = api_image_get(api, ROOT "cases/images/8f4ff31e/", &im, &err);
		CHECK(r, &err, &im);
		api_image_clear(&im);
		break;
	}
	case EP_ERROR_TEXT:
	case EP_COUNT:
		break;
	}
	cJSON_Delete(values);
}

/* Split the input into responses (see the file comment). */
static void
parse_responses(const char *s, const char *end)
{
	n_responses = next_response = 0;
	while (s <= end && n_responses < MAX_RESPONSES) {
		const char *sep = memmem(s, (size_t)(end - s), SEPARATOR, strlen(SEPARATOR));
		const char *stop = sep ? sep : end;
		const char *nl = memchr(s, '\n', (size_t)(stop - s));
		const char *line_end = nl ? nl : stop;
		struct fresp *f = &responses[n_responses++];
		char line[64];
		size_t ll = (size_t)(line_end - s);
		char *sp;

		if (ll >= sizeof(line))
			ll = sizeof(line) - 1;
		memcpy(line, s, ll);
		line[ll] = '\0';
		f->status = strtol(line, NULL, 10);
		sp = strchr(line, ' ');
		f->content_type = sp && sp[1] && strcmp(sp + 1, "-") != 0 ? strdup(sp + 1) : NULL;
		f->body = nl ? nl + 1 : stop;
		f->body_len = (size_t)(stop - f->body);
		if (!sep)
			break;
		s = sep + strlen(SEPARATOR);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *end = s + size, *nl;
	char name[32];
	size_t nlen;
	enum ep ep = EP_COUNT;
	struct api *api;

	if (size > (1 << 20))
		return 0;
	nl = memchr(s, '\n', size);
	nlen = nl ? (size_t)(nl - s) : size;
	if (nlen < sizeof(name)) {
		memcpy(name, s, nlen);
		name[nlen] = '\0';
		for (int i = 0; i < EP_COUNT; i++)
			if (strcmp(name, endpoints[i]) == 0)
				ep = (enum ep)i;
	}
	if (ep == EP_COUNT)
		ep = (enum ep)(size ? data[0] % EP_COUNT : 0);
	parse_responses(nl ? nl + 1 : end, end);

	for (size_t i = 0; i < n_responses; i++)
		check_error_text(&responses[i]);
	if (ep != EP_ERROR_TEXT) {
		api = api_new(fuzz_http, ROOT);
		FUZZ_ASSERT(api != NULL);
		call_endpoint(api, ep);
		api_free(api);
	}
	for (size_t i = 0; i < n_responses; i++)
		free(responses[i].content_type);
	n_responses = 0;
	return 0;
}
