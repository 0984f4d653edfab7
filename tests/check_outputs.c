/*
 * check_outputs.c: tests of writing a job's outputs (src/outputs.c).
 *
 * plan: outputs_plan() over hand-written JSON (a table of hostile inputs:
 * traversal, wrong types, nulls, unknown super kinds, overlaps), values
 * written as indented JSON, job.json from plain items (no server).
 * core: against the platform emulator (tests/fakegc over HTTPS; the CA and the
 * fixtures are made once in main() and shared by every start). The fixtures
 * add an algorithm "all-outputs" with an Image, two Values and two Files as
 * outputs; each test runs a job of it to Succeeded and writes what
 * api_job_get() returned: byte-exact files, images, job.json, and the
 * emulator's "leaks" list stays empty (the token never reached storage).
 * recovery: a download killed before its rename leaves no file under the
 * final name and the next run cleans up; writing everything again leaves one
 * copy of each; symlinks and strays inside the case folder are replaced, never
 * followed.
 * errors: 404, 5xx, size cap, foreign origin, an unwritable results folder.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api.h"
#include "fakegc-client.h"
#include "http.h"
#include "outputs.h"
#include "sha256.h"
#include "testutil.h"

/* A small MetaImage the emulator's importer turns into one image. */
static const char MHA[] = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 1\n"
                          "ElementSpacing = 1 1 1\nElementType = MET_UCHAR\n"
                          "ElementDataFile = LOCAL\n\1\2\3\4";

static char *shared_dir; /* TLS material and fixtures, made once in main() */
static char *fixtures;   /* shared_dir/fixtures.json */

static struct fakegc *fg;
static struct http *H;
static struct api *A;
static char *tmp;      /* per-test directory */
static char *case_dir; /* tmp/results/case 1 */

#define ck_api_ok(r, e)                                                                            \
	ck_assert_msg((r) == 0, "rc %d (%s), class %s, status %ld: %s", (r), strerror(-(r)),       \
	              api_class_name((e).cls), (e).status, (e).message)

/* ---- fixtures ---- */

static struct http *
new_http(void)
{
	char *auth = tu_strdupf("Bearer %s", fakegc_token(fg));
	struct http_opts o = {
	    .api_url = fakegc_api_url(fg),
	    .authorization = auth,
	    .ca_file = fakegc_ca_file(fg),
	    .connect_timeout_s = 5,
	    .low_speed_time_s = 10,
	};
	struct http *h = http_new(&o);

	ck_assert_ptr_nonnull(h);
	free(auth);
	return h;
}

static void
setup_plain(void)
{
	tmp = tu_mkdtemp("check_outputs");
	case_dir = tu_strdupf("%s/results/case 1", tmp);
}

static void
teardown_plain(void)
{
	tu_rmtree(tmp);
	free(tmp);
	free(case_dir);
	tmp = case_dir = NULL;
}

static void
setup_server(void)
{
	struct fakegc_opts o = {
	    .tls = true,
	    .tls_dir = shared_dir,
	    .fixtures = fixtures,
	    .tick = 0.05,
	    .min_part_size = 1,
	};

	setup_plain();
	ck_assert_int_eq(fakegc_start(&o, &fg), 0);
	H = new_http();
	A = api_new(H, fakegc_api_url(fg));
	ck_assert_ptr_nonnull(A);
}

static void
teardown_server(void)
{
	A = api_free(A);
	H = http_free(H);
	fakegc_stop(fg);
	fg = NULL;
	teardown_plain();
}

/* ---- helpers ---- */

static char *
path_in(const char *rel)
{
	return tu_strdupf("%s/%s", case_dir, rel);
}

static bool
exists(const char *rel)
{
	char *p = path_in(rel);
	struct stat st;
	bool ok = lstat(p, &st) == 0;

	free(p);
	return ok;
}

static char *
read_rel(const char *rel, size_t *ret_len)
{
	char *p = path_in(rel), *data = tu_read_file(p, ret_len);

	ck_assert_msg(data != NULL, "cannot read '%s'", p);
	free(p);
	return data;
}

/* Every entry below dir, as "rel" lines sorted by readdir order per level, into b. */
static void
list_tree(const char *dir, const char *prefix, char *out, size_t cap)
{
	struct dirent **ents;
	int n, i;

	n = scandir(dir, &ents, NULL, alphasort);
	if (n < 0)
		return;
	for (i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;

		if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0) {
			char *rel = tu_strdupf("%s%s", prefix, name);
			char *full = tu_strdupf("%s/%s", dir, name);
			struct stat st;

			strncat(out, rel, cap - strlen(out) - 1);
			strncat(out, "\n", cap - strlen(out) - 1);
			if (lstat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
				char *sub = tu_strdupf("%s/", rel);

				list_tree(full, sub, out, cap);
				free(sub);
			}
			free(rel);
			free(full);
		}
		free(ents[i]);
	}
	free(ents);
}

/* A completed one-part upload of data under name; returns its api_url. */
static char *
upload_bytes(const char *name, const void *data, size_t len)
{
	struct api_upload u = {0}, done = {0};
	struct api_part part = {.number = 1};
	struct http_resp resp = {0};
	struct http_error herr = {0};
	struct api_error e;
	char **urls = NULL, *path, *url;
	int fd, r, one = 1;

	r = api_upload_create(A, name, &u, &e);
	ck_api_ok(r, e);
	r = api_upload_presign(A, &u, &one, 1, &urls, &e);
	ck_api_ok(r, e);
	path = tu_strdupf("%s/upload.bin", tmp);
	tu_write_file(path, data, (ssize_t)len, 0600);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	r = http_put_file(H, urls[0], fd, 0, (int64_t)len, NULL, &resp, &herr);
	ck_assert_msg(r == 0 && resp.status == 200, "PUT: %s", herr.message);
	close(fd);
	part.etag = resp.etag;
	r = api_upload_complete(A, &u, &part, 1, &done, &e);
	ck_api_ok(r, e);
	url = strdup(done.api_url);
	http_resp_done(&resp);
	free(urls[0]);
	free(urls);
	free(path);
	api_upload_clear(&u);
	api_upload_clear(&done);
	return url;
}

/* Run a job of all-outputs to Succeeded; *ret is what api_job_get() says. */
static void
run_job(struct api_job *ret)
{
	struct api_algorithm alg;
	struct api_job job;
	struct api_error e;
	cJSON *inputs, *one, *list;
	char *up;
	int r, i;

	r = api_algorithm_get(A, "all-outputs", &alg, &e);
	ck_api_ok(r, e);
	up = upload_bytes("ct.mha", MHA, sizeof(MHA) - 1);
	inputs = cJSON_CreateArray();
	one = cJSON_CreateObject();
	cJSON_AddStringToObject(one, "interface", "generic-medical-image");
	list = cJSON_AddArrayToObject(one, "user_uploads");
	cJSON_AddItemToArray(list, cJSON_CreateString(up));
	cJSON_AddItemToArray(inputs, one);
	r = api_job_create(A, alg.api_url, inputs, &job, &e);
	ck_api_ok(r, e);
	for (i = 0; i < 20; i++) {
		ck_assert_int_eq(fakegc_advance(fg, 60), 0);
		r = api_job_get(A, job.api_url, ret, &e);
		ck_api_ok(r, e);
		if (api_job_status_is_terminal(ret->status))
			break;
		api_job_clear(ret);
	}
	ck_assert_str_eq(ret->status, "Succeeded");
	cJSON_Delete(inputs);
	free(up);
	api_job_clear(&job);
	api_algorithm_clear(&alg);
}

static const struct outputs_item *
find_item(const struct outputs_item *items, size_t n, const char *slug)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(items[i].socket, slug) == 0)
			return &items[i];
	ck_abort_msg("no output '%s'", slug);
	return NULL;
}

/* The expected bytes of the emulator's PDF output of a job. */
static char *
expected_pdf(const char *job_pk)
{
	return tu_strdupf("%%PDF-1.4\n%% fakegc output of job %s\n1 0 obj << /Type /Catalog >> "
	                  "endobj\ntrailer << /Root 1 0 R >>\n%%%%EOF\n",
	                  job_pk);
}

static void
assert_no_leaks(void)
{
	cJSON *st = fakegc_state(fg), *leaks;

	ck_assert_ptr_nonnull(st);
	leaks = cJSON_GetObjectItem(st, "leaks");
	ck_assert(cJSON_IsArray(leaks));
	ck_assert_int_eq(cJSON_GetArraySize(leaks), 0);
	cJSON_Delete(st);
}

/* The emulator's sha256 of a job output file (socket slug), from its state. */
static char *
state_file_sha(const char *job_pk, const char *slug)
{
	cJSON *st = fakegc_state(fg), *j, *o;
	char *sha = NULL;

	ck_assert_ptr_nonnull(st);
	cJSON_ArrayForEach(j, cJSON_GetObjectItem(st, "jobs"))
	{
		if (strcmp(cJSON_GetObjectItem(j, "pk")->valuestring, job_pk) != 0)
			continue;
		cJSON_ArrayForEach(o, cJSON_GetObjectItem(j, "outputs"))
		{
			if (strcmp(cJSON_GetObjectItem(o, "interface")->valuestring, slug) == 0)
				sha = strdup(
				    cJSON_GetObjectItem(cJSON_GetObjectItem(o, "file"), "sha256")
				        ->valuestring);
		}
	}
	cJSON_Delete(st);
	ck_assert_ptr_nonnull(sha);
	return sha;
}

/* The emulator's sha256 of the one file of image pk. */
static char *
state_image_sha(const char *image_pk)
{
	cJSON *st = fakegc_state(fg), *im;
	char *sha = NULL;

	ck_assert_ptr_nonnull(st);
	cJSON_ArrayForEach(im, cJSON_GetObjectItem(st, "images"))
	{
		if (strcmp(cJSON_GetObjectItem(im, "pk")->valuestring, image_pk) == 0)
			sha = strdup(
			    cJSON_GetObjectItem(
			        cJSON_GetArrayItem(cJSON_GetObjectItem(im, "files"), 0), "sha256")
			        ->valuestring);
	}
	cJSON_Delete(st);
	ck_assert_ptr_nonnull(sha);
	return sha;
}

static void
assert_sha(const char *data, size_t len, const char *want)
{
	char hex[SHA256_HEX_SIZE];

	sha256_hex(data, len, hex);
	ck_assert_str_eq(hex, want);
}

/* The image pk at the end of an image api_url ".../cases/images/<pk>/". */
static char *
image_pk_of(const char *url)
{
	const char *end = url + strlen(url) - 1, *start = end;

	while (start > url && start[-1] != '/')
		start--;
	return strndup(start, (size_t)(end - start));
}

/* Plan the job's outputs and write every one of them. */
static void
write_all(const struct api_job *job, struct outputs_item **ret_items, size_t *ret_n)
{
	struct api_error e;
	char *msg = NULL;
	size_t i;
	int r;

	r = outputs_plan(job->outputs, ret_items, ret_n, &msg);
	ck_assert_msg(r == 0, "plan: %s", msg ? msg : "?");
	for (i = 0; i < *ret_n; i++) {
		r = outputs_write(A, case_dir, &(*ret_items)[i], NULL, NULL, &e);
		ck_api_ok(r, e);
	}
}

/* ==== plan (no server) ==== */

static const struct {
	const char *json;
	const char *msg; /* expected substring of the error */
} hostile[] = {
    {"{}", "outputs: not an array"},
    {"[1]", "output 0: not an object"},
    {"[{}]", "output 0: \"interface\" is missing or not an object"},
    {"[{\"interface\": \"lung-volume\", \"value\": 1}]",
     "output 0: \"interface\" is missing or not an object"},
    {"[{\"interface\": {\"super_kind\": \"Value\", \"relative_path\": \"a.json\"}, \"value\": 1}]",
     "output 0: the socket has no slug"},
    {"[{\"interface\": {\"slug\": null, \"super_kind\": \"Value\", \"relative_path\": \"a\"}}]",
     "output 0: the socket has no slug"},
    {"[{\"interface\": {\"slug\": \"x\", \"relative_path\": \"a.json\"}, \"value\": 1}]",
     "output 'x': the socket has no super_kind"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Blob\", \"relative_path\": \"a\"}}]",
     "output 'x': unknown super_kind 'Blob'"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": 2, \"relative_path\": \"a\"}}]",
     "output 'x': the socket has no super_kind"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\"}, \"value\": 1}]",
     "output 'x': the socket has no relative_path"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": 7}}]",
     "output 'x': the socket has no relative_path"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\"../../etc/passwd\"}, \"value\": 1}]",
     "output 'x': relative_path '../../etc/passwd' leaves the results folder"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\"a/../../b\"}, \"value\": 1}]",
     "relative_path 'a/../../b' leaves the results folder"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"File\", \"relative_path\": "
     "\"/etc/cron.d/x\"}, \"file\": \"https://h/x\"}]",
     "relative_path '/etc/cron.d/x' is absolute"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\"a//b.json\"}, \"value\": 1}]",
     "relative_path 'a//b.json' has an empty component"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\"a/\"}, \"value\": 1}]",
     "relative_path 'a/' has an empty component"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\"./a\"}, \"value\": 1}]",
     "relative_path './a' leaves the results folder"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\"\"}, \"value\": 1}]",
     "relative_path '' is empty"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\".a.json.gcdrop-part\"}, \"value\": 1}]",
     "has a hidden component"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\"job.json\"}, \"value\": 1}]",
     "relative_path 'job.json' is a name gcdrop writes itself"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\"a\\nb\"}, \"value\": 1}]",
     "has a control character"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\"a.json\"}}]",
     "output 'x': a Value without \"value\""},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"File\", \"relative_path\": "
     "\"a.pdf\"}, \"file\": null}]",
     "output 'x': File socket without \"file\" URL"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Image\", \"relative_path\": "
     "\"images/x\"}, \"image\": 5}]",
     "output 'x': Image socket without \"image\" URL"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"File\", \"relative_path\": "
     "\"a.pdf\"}, \"file\": \"file:///etc/passwd\"}]",
     "output 'x': \"file\" is not a usable URL"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"File\", \"relative_path\": "
     "\"a.pdf\"}, \"file\": \"http://example.org/a.pdf\"}]",
     "output 'x': \"file\" is not a usable URL"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\"a.json\"}, \"value\": 1}, {\"interface\": {\"slug\": \"x\", \"super_kind\": "
     "\"Value\", \"relative_path\": \"b.json\"}, \"value\": 2}]",
     "output 'x': the socket appears twice"},
    {"[{\"interface\": {\"slug\": \"x\", \"super_kind\": \"Value\", \"relative_path\": "
     "\"a.json\"}, \"value\": 1}, {\"interface\": {\"slug\": \"y\", \"super_kind\": "
     "\"Value\", \"relative_path\": \"a.json\"}, \"value\": 2}]",
     "relative_path 'a.json' overlaps output"},
    {"[{\"interface\": {\"slug\": \"img\", \"super_kind\": \"Image\", \"relative_path\": "
     "\"images/a\"}, \"image\": \"https://h/i/\"}, {\"interface\": {\"slug\": \"y\", "
     "\"super_kind\": \"Value\", \"relative_path\": \"images/a/x.json\"}, \"value\": 2}]",
     "output 'y': relative_path 'images/a/x.json' overlaps output 'img' ('images/a')"},
};

/* Assumptions: each hostile outputs array is refused with a message naming the element or socket.
 */
START_TEST(test_plan_hostile)
{
	cJSON *j = cJSON_Parse(hostile[_i].json);
	struct outputs_item *items = (void *)0x1;
	size_t n = 99;
	char *msg = NULL;
	int r;

	ck_assert_msg(j != NULL, "bad table JSON %d", _i);
	r = outputs_plan(j, &items, &n, &msg);
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_ptr_nonnull(msg);
	ck_assert_msg(strstr(msg, hostile[_i].msg) != NULL, "entry %d: '%s' lacks '%s'", _i, msg,
	              hostile[_i].msg);
	/* ret_* untouched on failure. */
	ck_assert_ptr_eq(items, (void *)0x1);
	ck_assert_uint_eq(n, 99);
	free(msg);
	cJSON_Delete(j);
}
END_TEST

/* Assumptions: NULL, JSON null and [] are no outputs; optional fields may be absent. */
START_TEST(test_plan_shapes)
{
	struct outputs_item *items = NULL;
	size_t n = 5;
	cJSON *j;
	int r;

	ck_assert_int_eq(outputs_plan(NULL, &items, &n, NULL), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(items);
	j = cJSON_Parse("[]");
	n = 5;
	ck_assert_int_eq(outputs_plan(j, &items, &n, NULL), 0);
	ck_assert_uint_eq(n, 0);
	cJSON_Delete(j);

	j = cJSON_Parse("[{\"interface\": {\"slug\": \"v\", \"super_kind\": \"Value\", "
	                "\"relative_path\": \"out/v.json\"}, \"value\": null, \"pk\": 12},"
	                " {\"interface\": {\"slug\": \"f\", \"super_kind\": \"File\", \"kind\": "
	                "\"PDF file\", \"relative_path\": \"f.pdf\"}, \"file\": "
	                "\"https://h.example/media/f.pdf\", \"image\": null, \"value\": null}]");
	r = outputs_plan(j, &items, &n, NULL);
	ck_assert_int_eq(r, 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(items[0].socket, "v");
	ck_assert_int_eq(items[0].super_kind, API_SUPER_VALUE);
	ck_assert_str_eq(items[0].value_json, "null");
	ck_assert_str_eq(items[0].relative_path, "out/v.json");
	ck_assert_int_eq(items[0].pk, 12);
	ck_assert_str_eq(items[0].kind, "");
	ck_assert_ptr_null(items[0].url);
	ck_assert_int_eq(items[1].super_kind, API_SUPER_FILE);
	ck_assert_str_eq(items[1].url, "https://h.example/media/f.pdf");
	ck_assert_str_eq(items[1].kind, "PDF file");
	ck_assert_int_eq(items[1].pk, -1);
	ck_assert_ptr_null(items[1].value_json);
	ck_assert_str_eq(outputs_super_kind_name(items[1].super_kind), "File");
	ck_assert_ptr_null(outputs_items_free(items, n));
	cJSON_Delete(j);
}
END_TEST

/* Assumptions: a JSON value over OUTPUTS_VALUE_MAX is refused at plan time. */
START_TEST(test_plan_value_cap)
{
	size_t len = OUTPUTS_VALUE_MAX + 10;
	char *big = malloc(len + 1);
	struct outputs_item *items = NULL;
	char *msg = NULL;
	size_t n = 0;
	cJSON *j, *el, *itf;

	memset(big, 'a', len);
	big[len] = '\0';
	j = cJSON_CreateArray();
	el = cJSON_CreateObject();
	itf = cJSON_AddObjectToObject(el, "interface");
	cJSON_AddStringToObject(itf, "slug", "big");
	cJSON_AddStringToObject(itf, "super_kind", "Value");
	cJSON_AddStringToObject(itf, "relative_path", "big.json");
	cJSON_AddStringToObject(el, "value", big);
	cJSON_AddItemToArray(j, el);
	ck_assert_int_eq(outputs_plan(j, &items, &n, &msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "output 'big': the value is larger than"));
	free(msg);
	free(big);
	cJSON_Delete(j);
}
END_TEST

static const char PRETTY_WANT[] = "{\n"
                                  "  \"a\": [\n"
                                  "    1,\n"
                                  "    2.5,\n"
                                  "    {\n"
                                  "      \"b\": null\n"
                                  "    }\n"
                                  "  ],\n"
                                  "  \"s\": \"x\\\"y\\n\\u0001\",\n"
                                  "  \"e\": {},\n"
                                  "  \"f\": [],\n"
                                  "  \"t\": true\n"
                                  "}";

/*
 * Assumptions: a Value is written as Python's json.dump(indent=2) would, into
 * missing parent folders, atomically (no temporary left); writing it again
 * replaces the one copy.
 */
START_TEST(test_value_written)
{
	struct outputs_item *items = NULL;
	struct api_error e;
	size_t n, len;
	char *data, listing[4096] = "";
	int64_t bytes = -1;
	cJSON *j;
	int r;

	j = cJSON_Parse("[{\"interface\": {\"slug\": \"meta\", \"super_kind\": \"Value\", "
	                "\"relative_path\": \"deep/er/meta.json\"}, \"value\": {\"a\": [1, 2.5, "
	                "{\"b\": null}], \"s\": \"x\\\"y\\n\\u0001\", \"e\": {}, \"f\": [], \"t\": "
	                "true}}, {\"interface\": {\"slug\": \"vol\", \"super_kind\": \"Value\", "
	                "\"relative_path\": \"vol.json\"}, \"value\": 1234.5}]");
	ck_assert_int_eq(outputs_plan(j, &items, &n, NULL), 0);
	r = outputs_write(NULL, case_dir, &items[0], NULL, &bytes, &e);
	ck_api_ok(r, e);
	ck_assert_int_eq(e.cls, API_OK);
	data = read_rel("deep/er/meta.json", &len);
	ck_assert_str_eq(data, PRETTY_WANT);
	ck_assert_int_eq(bytes, (int64_t)len);
	free(data);
	r = outputs_write(NULL, case_dir, &items[1], NULL, NULL, &e);
	ck_api_ok(r, e);
	data = read_rel("vol.json", &len);
	ck_assert_str_eq(data, "1234.5");
	free(data);

	/* Again: the same two files, nothing else. */
	r = outputs_write(NULL, case_dir, &items[0], NULL, NULL, &e);
	ck_api_ok(r, e);
	r = outputs_write(NULL, case_dir, &items[1], NULL, NULL, &e);
	ck_api_ok(r, e);
	list_tree(case_dir, "", listing, sizeof(listing));
	ck_assert_str_eq(listing, "deep\ndeep/er\ndeep/er/meta.json\nvol.json\n");

	outputs_items_free(items, n);
	cJSON_Delete(j);
}
END_TEST

/*
 * Assumptions: job.json holds the job, the case, inputs of the request shape
 * with URLs cut at the query string, and values inline; a failed job (no
 * outputs) gets one too, with its error.
 */
START_TEST(test_job_json_plain)
{
	struct outputs_item *items = NULL;
	struct outputs_job job = {
	    .pk = "j1",
	    .api_url = "https://h.example/api/v1/algorithms/jobs/j1/",
	    .status = "Succeeded",
	    .created = 1700000000,
	    .started = 1700000030,
	    .finished = 1700000060,
	    .exec_duration = "P0DT00H00M17S",
	    .watch = "corads",
	    .case_name = "case 1",
	    .fingerprint = "abcd",
	};
	struct api_error e;
	cJSON *outs, *inputs, *got, *o;
	char *data;
	size_t n;
	int r;

	outs =
	    cJSON_Parse("[{\"interface\": {\"slug\": \"vol\", \"super_kind\": \"Value\", "
	                "\"kind\": \"Float\", \"relative_path\": \"vol.json\"}, \"value\": 2.5}]");
	inputs = cJSON_Parse("[{\"interface\": \"generic-medical-image\", \"user_uploads\": "
	                     "[\"https://h.example/api/v1/uploads/u1/?sig=SECRET\"]}, "
	                     "{\"interface\": \"lung-volume\", \"value\": {\"q\": "
	                     "\"https://keep.example/?x=1\"}}]");
	ck_assert_int_eq(outputs_plan(outs, &items, &n, NULL), 0);
	job.inputs = inputs;
	ck_assert(!exists("job.json"));
	r = outputs_finish(case_dir, &job, items, n, &e);
	ck_api_ok(r, e);
	data = read_rel("job.json", NULL);
	ck_assert_ptr_null(strstr(data, "SECRET"));
	got = cJSON_Parse(data);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(cJSON_GetObjectItem(got, "pk")->valuestring, "j1");
	ck_assert_str_eq(cJSON_GetObjectItem(got, "status")->valuestring, "Succeeded");
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(got, "error")));
	ck_assert_ptr_null(cJSON_GetObjectItem(got, "url"));
	ck_assert_str_eq(cJSON_GetObjectItem(got, "created")->valuestring, "2023-11-14T22:13:20Z");
	ck_assert_str_eq(cJSON_GetObjectItem(got, "started")->valuestring, "2023-11-14T22:13:50Z");
	ck_assert_str_eq(cJSON_GetObjectItem(got, "finished")->valuestring, "2023-11-14T22:14:20Z");
	/* The platform's durations verbatim; one it did not give is null. */
	ck_assert_str_eq(cJSON_GetObjectItem(got, "exec_duration")->valuestring, "P0DT00H00M17S");
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(got, "invoke_duration")));
	o = cJSON_GetObjectItem(got, "case");
	ck_assert_str_eq(cJSON_GetObjectItem(o, "watch")->valuestring, "corads");
	ck_assert_str_eq(cJSON_GetObjectItem(o, "name")->valuestring, "case 1");
	ck_assert_str_eq(cJSON_GetObjectItem(o, "fingerprint")->valuestring, "abcd");
	o = cJSON_GetObjectItem(cJSON_GetObjectItem(got, "inputs"), "generic-medical-image");
	ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "user_uploads"), 0)->valuestring,
	                 "https://h.example/api/v1/uploads/u1/");
	o = cJSON_GetObjectItem(cJSON_GetObjectItem(got, "inputs"), "lung-volume");
	/* Values are what was sent, verbatim. */
	ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "value"), "q")->valuestring,
	                 "https://keep.example/?x=1");
	o = cJSON_GetObjectItem(cJSON_GetObjectItem(got, "outputs"), "vol");
	ck_assert_str_eq(cJSON_GetObjectItem(o, "super_kind")->valuestring, "Value");
	ck_assert_str_eq(cJSON_GetObjectItem(o, "kind")->valuestring, "Float");
	ck_assert_str_eq(cJSON_GetObjectItem(o, "path")->valuestring, "vol.json");
	ck_assert_double_eq(cJSON_GetObjectItem(o, "value")->valuedouble, 2.5);
	cJSON_Delete(got);
	free(data);

	/* A failed job: no outputs, the error. */
	job.status = "Failed";
	job.error = "Time limit exceeded";
	job.url = "https://h.example/algorithms/a/jobs/j1/";
	job.inputs = NULL;
	job.created = 0;
	job.started = -5;
	job.exec_duration = NULL;
	r = outputs_finish(case_dir, &job, NULL, 0, &e);
	ck_api_ok(r, e);
	data = read_rel("job.json", NULL);
	got = cJSON_Parse(data);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(cJSON_GetObjectItem(got, "error")->valuestring, "Time limit exceeded");
	ck_assert_str_eq(cJSON_GetObjectItem(got, "url")->valuestring, job.url);
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(got, "created")));
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(got, "started")));
	ck_assert_str_eq(cJSON_GetObjectItem(got, "finished")->valuestring, "2023-11-14T22:14:20Z");
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(got, "exec_duration")));
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(got, "outputs")), 0);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(got, "inputs")), 0);
	cJSON_Delete(got);
	free(data);

	outputs_items_free(items, n);
	cJSON_Delete(outs);
	cJSON_Delete(inputs);
}
END_TEST

/* Assumptions: bad arguments are refused before anything is touched. */
START_TEST(test_bad_arguments)
{
	struct outputs_item it = {.socket = "x",
	                          .super_kind = API_SUPER_FILE,
	                          .relative_path = "x.pdf",
	                          .url = "https://h/x.pdf"};
	struct outputs_job job = {0};
	struct api_error e;

	ck_assert_int_eq(outputs_write(NULL, case_dir, &it, NULL, NULL, &e), -EINVAL);
	ck_assert_int_eq(e.cls, API_FAIL);
	ck_assert_int_eq(outputs_write(NULL, "relative/dir", &it, NULL, NULL, &e), -EINVAL);
	it.super_kind = API_SUPER_VALUE;
	it.value_json = "1";
	it.relative_path = "../x.json";
	ck_assert_int_eq(outputs_write(NULL, case_dir, &it, NULL, NULL, &e), -EINVAL);
	ck_assert_int_eq(outputs_finish("rel", &job, NULL, 0, &e), -EINVAL);
	ck_assert(!exists(""));
}
END_TEST

/* ==== core: against the emulator ==== */

/* Assumptions: the real job's outputs plan into one item per socket, as the socket says. */
START_TEST(test_plan_from_job)
{
	struct outputs_item *items = NULL;
	const struct outputs_item *it;
	struct api_job job;
	char *msg = NULL, *base;
	size_t n = 0;
	int r;

	run_job(&job);
	r = outputs_plan(job.outputs, &items, &n, &msg);
	ck_assert_msg(r == 0, "plan: %s", msg ? msg : "?");
	ck_assert_uint_eq(n, 5);
	base = tu_strdupf("%scases/images/", fakegc_api_url(fg));

	it = find_item(items, n, "generic-overlay");
	ck_assert_int_eq(it->super_kind, API_SUPER_IMAGE);
	ck_assert_str_eq(it->relative_path, "images/generic-overlay");
	ck_assert_msg(strncmp(it->url, base, strlen(base)) == 0, "image url %s", it->url);
	it = find_item(items, n, "lung-volume");
	ck_assert_int_eq(it->super_kind, API_SUPER_VALUE);
	ck_assert_str_eq(it->value_json, "42.5");
	ck_assert_str_eq(it->relative_path, "lung-volume.json");
	ck_assert_int_ge(it->pk, 0);
	it = find_item(items, n, "case-metadata");
	ck_assert_str_eq(it->value_json, "{\"score\":[1,2],\"label\":\"ok\"}");
	it = find_item(items, n, "report-pdf");
	ck_assert_int_eq(it->super_kind, API_SUPER_FILE);
	ck_assert_str_eq(it->relative_path, "report.pdf");
	ck_assert_str_eq(it->kind, "PDF file");
	ck_assert_ptr_nonnull(strstr(it->url, "/media/components/componentinterfacevalue/"));
	it = find_item(items, n, "results-json-file");
	ck_assert_int_eq(it->super_kind, API_SUPER_FILE);
	ck_assert_str_eq(it->relative_path, "results.json");

	free(base);
	outputs_items_free(items, n);
	api_job_clear(&job);
}
END_TEST

/*
 * Assumptions: a File output is downloaded through /media/ and its redirect
 * to storage, byte for byte, with no temporary left and no token at storage.
 */
START_TEST(test_file_download)
{
	struct outputs_item *items = NULL;
	struct api_job job;
	struct api_error e;
	char *data, *want, *sha, listing[4096] = "";
	int64_t bytes = 0;
	size_t n, len;
	int r;

	run_job(&job);
	ck_assert_int_eq(outputs_plan(job.outputs, &items, &n, NULL), 0);
	r = outputs_write(A, case_dir, find_item(items, n, "report-pdf"), NULL, &bytes, &e);
	ck_api_ok(r, e);
	data = read_rel("report.pdf", &len);
	want = expected_pdf(job.pk);
	ck_assert_uint_eq(len, strlen(want));
	ck_assert_mem_eq(data, want, len);
	ck_assert_int_eq(bytes, (int64_t)len);
	sha = state_file_sha(job.pk, "report-pdf");
	assert_sha(data, len, sha);
	free(sha);
	free(data);
	free(want);

	/* A JSON file is written as served, not re-serialised. */
	r = outputs_write(A, case_dir, find_item(items, n, "results-json-file"), NULL, NULL, &e);
	ck_api_ok(r, e);
	data = read_rel("results.json", &len);
	sha = state_file_sha(job.pk, "results-json-file");
	assert_sha(data, len, sha);
	free(sha);
	free(data);

	list_tree(case_dir, "", listing, sizeof(listing));
	ck_assert_str_eq(listing, "report.pdf\nresults.json\n");
	assert_no_leaks();
	outputs_items_free(items, n);
	api_job_clear(&job);
}
END_TEST

/*
 * Assumptions: an Image output becomes the directory <relative_path>/ holding
 * "<image pk>.mha", byte for byte as the emulator stores it.
 */
START_TEST(test_image_output)
{
	struct outputs_item *items = NULL;
	const struct outputs_item *it;
	struct api_job job;
	struct api_error e;
	char *pk, *rel, *data, *sha, *listing_want, listing[4096] = "";
	int64_t bytes = 0;
	size_t n, len;
	int r;

	run_job(&job);
	ck_assert_int_eq(outputs_plan(job.outputs, &items, &n, NULL), 0);
	it = find_item(items, n, "generic-overlay");
	r = outputs_write(A, case_dir, it, NULL, &bytes, &e);
	ck_api_ok(r, e);
	pk = image_pk_of(it->url);
	rel = tu_strdupf("images/generic-overlay/%s.mha", pk);
	data = read_rel(rel, &len);
	ck_assert_int_eq(bytes, (int64_t)len);
	ck_assert(strncmp(data, "ObjectType = Image\n", 19) == 0);
	sha = state_image_sha(pk);
	assert_sha(data, len, sha);
	list_tree(case_dir, "", listing, sizeof(listing));
	listing_want = tu_strdupf("images\nimages/generic-overlay\n%s\n", rel);
	ck_assert_str_eq(listing, listing_want);
	assert_no_leaks();

	free(listing_want);
	free(sha);
	free(data);
	free(rel);
	free(pk);
	outputs_items_free(items, n);
	api_job_clear(&job);
}
END_TEST

/*
 * Assumptions: job.json comes last and describes what was written: image
 * files listed, file URLs without query, the job's own inputs.
 */
START_TEST(test_job_json_from_job)
{
	struct outputs_item *items = NULL;
	struct api_job job;
	struct outputs_job oj = {0};
	struct api_error e;
	struct stat st_json, st_pdf;
	cJSON *got, *o, *in;
	char *data, *pk, *p1, *p2, *want;
	size_t n;
	int r;

	run_job(&job);
	write_all(&job, &items, &n);
	ck_assert(!exists("job.json"));
	oj.pk = job.pk;
	oj.api_url = job.api_url;
	oj.status = job.status;
	oj.finished = 1700000000;
	oj.watch = "w";
	oj.case_name = "case 1";
	oj.fingerprint = "f";
	oj.inputs = job.inputs;
	r = outputs_finish(case_dir, &oj, items, n, &e);
	ck_api_ok(r, e);

	p1 = path_in("job.json");
	p2 = path_in("report.pdf");
	ck_assert_int_eq(stat(p1, &st_json), 0);
	ck_assert_int_eq(stat(p2, &st_pdf), 0);
	ck_assert(st_json.st_mtim.tv_sec > st_pdf.st_mtim.tv_sec ||
	          (st_json.st_mtim.tv_sec == st_pdf.st_mtim.tv_sec &&
	           st_json.st_mtim.tv_nsec >= st_pdf.st_mtim.tv_nsec));
	free(p1);
	free(p2);

	data = read_rel("job.json", NULL);
	got = cJSON_Parse(data);
	ck_assert_msg(got != NULL, "job.json does not parse: %s", data);
	ck_assert_str_eq(cJSON_GetObjectItem(got, "pk")->valuestring, job.pk);
	ck_assert_str_eq(cJSON_GetObjectItem(got, "api_url")->valuestring, job.api_url);
	o = cJSON_GetObjectItem(got, "outputs");
	ck_assert_int_eq(cJSON_GetArraySize(o), 5);
	ck_assert_double_eq(
	    cJSON_GetObjectItem(cJSON_GetObjectItem(o, "lung-volume"), "value")->valuedouble, 42.5);
	ck_assert_str_eq(
	    cJSON_GetObjectItem(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(o, "case-metadata"), "value"), "label")
	        ->valuestring,
	    "ok");
	ck_assert_str_eq(
	    cJSON_GetObjectItem(cJSON_GetObjectItem(o, "report-pdf"), "path")->valuestring,
	    "report.pdf");
	ck_assert_str_eq(
	    cJSON_GetObjectItem(cJSON_GetObjectItem(o, "report-pdf"), "url")->valuestring,
	    find_item(items, n, "report-pdf")->url);
	pk = image_pk_of(find_item(items, n, "generic-overlay")->url);
	want = tu_strdupf("images/generic-overlay/%s.mha", pk);
	ck_assert_str_eq(
	    cJSON_GetArrayItem(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(o, "generic-overlay"), "files"), 0)
	        ->valuestring,
	    want);
	in = cJSON_GetObjectItem(cJSON_GetObjectItem(got, "inputs"), "generic-medical-image");
	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(
	    strstr(cJSON_GetObjectItem(in, "image")->valuestring, "/cases/images/"));

	free(want);
	free(pk);
	cJSON_Delete(got);
	free(data);
	outputs_items_free(items, n);
	api_job_clear(&job);
}
END_TEST

/* ==== recovery ==== */

static void
kill_on_bytes(void *ud, int64_t done, int64_t total)
{
	(void)ud;
	(void)total;
	if (done > 0)
		raise(SIGKILL);
}

/*
 * Assumptions: a process killed while a download is in flight (after bytes
 * arrived, before the rename) leaves no file under the final name, only the
 * temporary; the next write deletes it and puts the complete file in place.
 */
START_TEST(test_crash_before_rename)
{
	struct outputs_item *items = NULL;
	const struct outputs_item *it;
	struct api_job job;
	struct api_error e;
	char *data, *want, listing[4096] = "";
	size_t n, len;
	pid_t pid;
	int r, status;

	run_job(&job);
	ck_assert_int_eq(outputs_plan(job.outputs, &items, &n, NULL), 0);
	it = find_item(items, n, "report-pdf");
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct http *h = new_http();
		struct api *a = api_new(h, fakegc_api_url(fg));
		struct outputs_opts o = {.progress = kill_on_bytes};

		r = outputs_write(a, case_dir, it, &o, NULL, &e);
		_exit(r == 0 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	              "the child was not killed mid-download (status %#x)", status);
	ck_assert(!exists("report.pdf"));
	ck_assert(exists(".report.pdf.gcdrop-part"));

	r = outputs_write(A, case_dir, it, NULL, NULL, &e);
	ck_api_ok(r, e);
	data = read_rel("report.pdf", &len);
	want = expected_pdf(job.pk);
	ck_assert_uint_eq(len, strlen(want));
	ck_assert_mem_eq(data, want, len);
	list_tree(case_dir, "", listing, sizeof(listing));
	ck_assert_str_eq(listing, "report.pdf\n");

	free(data);
	free(want);
	outputs_items_free(items, n);
	api_job_clear(&job);
}
END_TEST

/*
 * Assumptions: the same outputs written twice (a re-delivery after a crash)
 * leave exactly one copy of each; stale temporaries anywhere in the case
 * folder are swept before job.json appears.
 */
START_TEST(test_redelivery)
{
	struct outputs_item *items = NULL, *again = NULL;
	struct outputs_job oj = {.pk = "p", .api_url = "u", .status = "Succeeded"};
	struct api_job job;
	struct api_error e;
	char first[4096] = "", second[4096] = "", *stale, *pdf1, *pdf2;
	size_t n, n2, l1, l2;
	int r;

	run_job(&job);
	write_all(&job, &items, &n);
	r = outputs_finish(case_dir, &oj, items, n, &e);
	ck_api_ok(r, e);
	list_tree(case_dir, "", first, sizeof(first));
	ck_assert_ptr_nonnull(strstr(first, "\njob.json\n"));
	pdf1 = read_rel("report.pdf", &l1);

	/* Crash debris from an earlier attempt, in two folders. */
	stale = path_in(".lung-volume.json.gcdrop-part");
	tu_write_file(stale, "{", -1, 0644);
	free(stale);
	stale = path_in("images/generic-overlay/.x.mha.gcdrop-part");
	tu_write_file(stale, "half", -1, 0644);
	free(stale);

	write_all(&job, &again, &n2);
	ck_assert(exists("images/generic-overlay/.x.mha.gcdrop-part"));
	r = outputs_finish(case_dir, &oj, again, n2, &e);
	ck_api_ok(r, e);
	list_tree(case_dir, "", second, sizeof(second));
	ck_assert_str_eq(second, first);
	pdf2 = read_rel("report.pdf", &l2);
	ck_assert_uint_eq(l1, l2);
	ck_assert_mem_eq(pdf1, pdf2, l1);

	/* And job.json itself again: still one. */
	r = outputs_finish(case_dir, &oj, again, n2, &e);
	ck_api_ok(r, e);
	memset(second, 0, sizeof(second));
	list_tree(case_dir, "", second, sizeof(second));
	ck_assert_str_eq(second, first);

	free(pdf1);
	free(pdf2);
	outputs_items_free(items, n);
	outputs_items_free(again, n2);
	api_job_clear(&job);
}
END_TEST

/*
 * Assumptions: a symlink planted inside the case folder where an output's
 * directory goes is replaced, not followed; a stray file where a directory
 * must be, or a directory where a file must be, is replaced too (the case
 * folder belongs to gcdrop).
 */
START_TEST(test_symlink_not_followed)
{
	struct outputs_item *items = NULL;
	struct api_job job;
	struct api_error e;
	char *outside, *link, *dir, *names = NULL;
	char listing[4096] = "";
	struct stat st;
	size_t n, i;
	int r;

	run_job(&job);
	ck_assert_int_eq(outputs_plan(job.outputs, &items, &n, NULL), 0);
	outside = tu_strdupf("%s/outside", tmp);
	ck_assert_int_eq(mkdir(outside, 0755), 0);
	dir = tu_strdupf("%s/results", tmp);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	ck_assert_int_eq(mkdir(case_dir, 0755), 0);
	link = path_in("images");
	ck_assert_int_eq(symlink(outside, link), 0);
	free(link);
	/* A file link: writing report.pdf must not write through it either. */
	link = path_in("report.pdf");
	names = tu_strdupf("%s/victim", outside);
	tu_write_file(names, "keep", -1, 0644);
	ck_assert_int_eq(symlink(names, link), 0);
	free(link);
	/* A directory where a file goes. */
	link = path_in("results.json");
	ck_assert_int_eq(mkdir(link, 0755), 0);
	free(link);

	for (i = 0; i < n; i++) {
		r = outputs_write(A, case_dir, &items[i], NULL, NULL, &e);
		ck_api_ok(r, e);
	}
	list_tree(outside, "", listing, sizeof(listing));
	ck_assert_str_eq(listing, "victim\n");
	free(dir);
	dir = tu_read_file(names, NULL);
	ck_assert_str_eq(dir, "keep");
	link = path_in("images");
	ck_assert_int_eq(lstat(link, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	free(link);
	link = path_in("report.pdf");
	ck_assert_int_eq(lstat(link, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	free(link);
	link = path_in("results.json");
	ck_assert_int_eq(lstat(link, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	free(link);

	free(dir);
	free(names);
	free(outside);
	outputs_items_free(items, n);
	api_job_clear(&job);
}
END_TEST

/* ==== errors ==== */

static void
assert_nothing_written(void)
{
	char listing[4096] = "";

	list_tree(case_dir, "", listing, sizeof(listing));
	ck_assert_msg(listing[0] == '\0', "left behind: %s", listing);
}

/* Assumptions: an unknown media file is API_GONE, named by socket and path; nothing is left. */
START_TEST(test_download_gone)
{
	struct outputs_item it = {.socket = "report-pdf",
	                          .kind = "PDF file",
	                          .super_kind = API_SUPER_FILE,
	                          .relative_path = "report.pdf"};
	struct api_error e;
	int r;

	it.url = tu_strdupf("%smedia/components/componentinterfacevalue/00/00/999999/x.pdf",
	                    fakegc_base_url(fg));
	r = outputs_write(A, case_dir, &it, NULL, NULL, &e);
	ck_assert_int_lt(r, 0);
	ck_assert_int_eq(e.cls, API_GONE);
	ck_assert_int_eq(e.status, 404);
	ck_assert_msg(strstr(e.message, "output 'report-pdf': download of ") &&
	                  strstr(e.message, "case 1/report.pdf' failed: HTTP 404"),
	              "message: %s", e.message);
	assert_nothing_written();
	free(it.url);
}
END_TEST

/* Assumptions: storage answering 503 is API_RETRY; the temporary is removed. */
START_TEST(test_download_5xx)
{
	struct outputs_item *items = NULL;
	struct api_job job;
	struct api_error e;
	size_t n;
	int r;

	run_job(&job);
	ck_assert_int_eq(outputs_plan(job.outputs, &items, &n, NULL), 0);
	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"route\": \"s3-get\", \"status\": "
	                                       "503, \"retry_after\": 3, \"count\": 1}]}"),
	                 0);
	r = outputs_write(A, case_dir, find_item(items, n, "report-pdf"), NULL, NULL, &e);
	ck_assert_int_lt(r, 0);
	ck_assert_int_eq(e.cls, API_RETRY);
	ck_assert_int_eq(e.status, 503);
	ck_assert_int_eq(e.retry_after_ms, 3000);
	/* The folders exist, but no file and no temporary. */
	ck_assert(!exists("report.pdf"));
	ck_assert(!exists(".report.pdf.gcdrop-part"));
	r = outputs_write(A, case_dir, find_item(items, n, "report-pdf"), NULL, NULL, &e);
	ck_api_ok(r, e);
	outputs_items_free(items, n);
	api_job_clear(&job);
}
END_TEST

/* Assumptions: a file over the size cap fails for good (API_FAIL), leaving nothing. */
START_TEST(test_download_cap)
{
	struct outputs_item *items = NULL;
	struct outputs_opts o = {.max_bytes = 10};
	struct api_job job;
	struct api_error e;
	size_t n;
	int r;

	run_job(&job);
	ck_assert_int_eq(outputs_plan(job.outputs, &items, &n, NULL), 0);
	r = outputs_write(A, case_dir, find_item(items, n, "report-pdf"), &o, NULL, &e);
	ck_assert_int_eq(r, -E2BIG);
	ck_assert_int_eq(e.cls, API_FAIL);
	ck_assert_ptr_nonnull(strstr(e.message, "output 'report-pdf'"));
	ck_assert(!exists("report.pdf"));
	ck_assert(!exists(".report.pdf.gcdrop-part"));
	/* An image file over the cap, likewise. */
	r = outputs_write(A, case_dir, find_item(items, n, "generic-overlay"), &o, NULL, &e);
	ck_assert_int_eq(r, -E2BIG);
	ck_assert_int_eq(e.cls, API_FAIL);
	outputs_items_free(items, n);
	api_job_clear(&job);
}
END_TEST

/* Assumptions: a URL on another origin is refused before any request (the token stays home). */
START_TEST(test_foreign_origin)
{
	struct outputs_item it = {.socket = "report-pdf",
	                          .super_kind = API_SUPER_FILE,
	                          .relative_path = "report.pdf",
	                          .url = "https://evil.example/media/x.pdf"};
	struct api_error e;
	int r;

	r = outputs_write(A, case_dir, &it, NULL, NULL, &e);
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_int_eq(e.cls, API_FAIL);
	it.super_kind = API_SUPER_IMAGE;
	it.relative_path = "images/x";
	it.url = "https://evil.example/api/v1/cases/images/x/";
	r = outputs_write(A, case_dir, &it, NULL, NULL, &e);
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.message, "output 'report-pdf': image "));
	assert_no_leaks();
}
END_TEST

static int
write_as_nobody(void *ud)
{
	struct outputs_item it = {.socket = "vol",
	                          .super_kind = API_SUPER_VALUE,
	                          .relative_path = "vol.json",
	                          .value_json = "1"};
	struct api_error e;
	int r = outputs_write(NULL, ud, &it, NULL, NULL, &e);

	if (r != -EACCES || e.cls != API_RETRY || !strstr(e.message, "output 'vol': cannot "))
		return 1;
	return 0;
}

/* Assumptions: an unwritable results folder is a local error the caller retries. */
START_TEST(test_unwritable)
{
	char *dir = tu_strdupf("%s/results", tmp);

	ck_assert_int_eq(mkdir(dir, 0755), 0);
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	ck_assert_int_eq(tu_as_nobody(write_as_nobody, case_dir), 0);
	free(dir);
}
END_TEST

/* ---- suite ---- */

static Suite *
outputs_suite(void)
{
	Suite *s = suite_create("outputs");
	TCase *tc;

	tc = tcase_create("plan");
	tcase_add_checked_fixture(tc, setup_plain, teardown_plain);
	tcase_add_loop_test(tc, test_plan_hostile, 0, (int)GC_ARRAY_SIZE(hostile));
	tcase_add_test(tc, test_plan_shapes);
	tcase_add_test(tc, test_plan_value_cap);
	tcase_add_test(tc, test_value_written);
	tcase_add_test(tc, test_job_json_plain);
	tcase_add_test(tc, test_bad_arguments);
	suite_add_tcase(s, tc);

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup_server, teardown_server);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_plan_from_job);
	tcase_add_test(tc, test_file_download);
	tcase_add_test(tc, test_image_output);
	tcase_add_test(tc, test_job_json_from_job);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup_server, teardown_server);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_crash_before_rename);
	tcase_add_test(tc, test_redelivery);
	tcase_add_test(tc, test_symlink_not_followed);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup_server, teardown_server);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_download_gone);
	tcase_add_test(tc, test_download_5xx);
	tcase_add_test(tc, test_download_cap);
	tcase_add_test(tc, test_foreign_origin);
	tcase_add_test(tc, test_unwritable);
	suite_add_tcase(s, tc);
	return s;
}

/* A malloc'd copy of a whole file, or NULL (main() runs outside Check: no ck_* here). */
static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *data = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		data = calloc(1, (size_t)n + 1);
		if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
			free(data);
			data = NULL;
		}
	}
	fclose(f);
	return data;
}

/* The built-in fixtures plus an algorithm with an output of every super kind. */
static int
make_fixtures(void)
{
	const char *data = getenv("GCDROP_TEST_DATA");
	char *src = NULL, *text, *out;
	cJSON *root, *alg, *itf, *l, *vals;
	FILE *f;
	int ok;

	if (asprintf(&src, "%s/fakegc/default-fixtures.json", data ? data : "tests/data") < 0)
		return -1;
	text = slurp(src);
	root = text ? cJSON_Parse(text) : NULL;
	if (!root) {
		fprintf(stderr, "cannot read %s (is GCDROP_TEST_DATA set?)\n", src);
		free(src);
		free(text);
		return -1;
	}
	alg = cJSON_CreateObject();
	cJSON_AddStringToObject(alg, "slug", "all-outputs");
	cJSON_AddStringToObject(alg, "title", "All Outputs");
	itf = cJSON_CreateObject();
	l = cJSON_AddArrayToObject(itf, "inputs");
	cJSON_AddItemToArray(l, cJSON_CreateString("generic-medical-image"));
	l = cJSON_AddArrayToObject(itf, "outputs");
	cJSON_AddItemToArray(l, cJSON_CreateString("generic-overlay"));
	cJSON_AddItemToArray(l, cJSON_CreateString("lung-volume"));
	cJSON_AddItemToArray(l, cJSON_CreateString("case-metadata"));
	cJSON_AddItemToArray(l, cJSON_CreateString("report-pdf"));
	cJSON_AddItemToArray(l, cJSON_CreateString("results-json-file"));
	l = cJSON_AddArrayToObject(alg, "interfaces");
	cJSON_AddItemToArray(l, itf);
	vals = cJSON_AddObjectToObject(alg, "outputs");
	cJSON_AddNumberToObject(vals, "lung-volume", 42.5);
	cJSON_AddItemToObject(vals, "case-metadata",
	                      cJSON_Parse("{\"score\": [1, 2], \"label\": \"ok\"}"));
	cJSON_AddItemToArray(cJSON_GetObjectItem(root, "algorithms"), alg);
	out = cJSON_Print(root);
	ok = out && asprintf(&fixtures, "%s/fixtures.json", shared_dir) >= 0 &&
	     (f = fopen(fixtures, "w")) != NULL;
	if (ok) {
		ok = fputs(out, f) >= 0;
		ok = fclose(f) == 0 && ok;
	}
	free(out);
	cJSON_Delete(root);
	free(text);
	free(src);
	return ok ? 0 : -1;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	const char *tmpdir = getenv("TMPDIR");
	char *rm;

	if (asprintf(&shared_dir, "%s/check_outputs_shared.XXXXXX", tmpdir ? tmpdir : "/tmp") < 0 ||
	    !mkdtemp(shared_dir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	if (make_fixtures() < 0 || http_global_init() < 0)
		return EXIT_FAILURE;
	sr = srunner_create(outputs_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	/* tu_rmtree() asserts, and this runs outside any test. */
	if (asprintf(&rm, "rm -rf '%s'", shared_dir) >= 0) {
		if (system(rm) != 0)
			fprintf(stderr, "could not remove %s\n", shared_dir);
		free(rm);
	}
	free(shared_dir);
	free(fixtures);
	http_global_cleanup();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
