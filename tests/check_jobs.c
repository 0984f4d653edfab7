/*
 * check_jobs.c: the pure parts of jobs.c: a case mapped to an algorithm's inputs
 * (every kind of socket, every error), the inputs of POST algorithms/jobs/, the
 * classification of a refused creation, and pks from URLs.
 *
 * Two algorithms as the emulator's fixtures have them: "demo" (one Image input,
 * generic-medical-image) and "multi" (ct-image + case-metadata (Value) +
 * results-json-file (File), or ct-image alone). Cases are lists of relpaths; a
 * table gives the content of the JSON files the mapping reads.
 *
 * recovery: the run's facts that must survive a restart, with a real queue
 * (a store in a temporary directory) and polls answered by hand: job_timeout
 * counts from the submission time kept in the queue, not from the daemon's
 * start, a reported timeout is not reported again, and the times job.json
 * shows (submitted, started, finished) are recorded as the job is seen.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "attrs.h"
#include "backoff.h"
#include "jobs.h"
#include "store.h"
#include "testutil.h"

static struct casemap_socket all_sockets[] = {
	{"ct-image", "Image", CASEMAP_IMAGE, "images/ct-image"},
	{"case-metadata", "Anything", CASEMAP_VALUE, "case-metadata.json"},
	{"results-json-file", "Anything", CASEMAP_FILE, "results.json"},
	{"generic-medical-image", "Image", CASEMAP_IMAGE, "images/generic-medical-image"},
};

static char *multi_full[] = {"ct-image", "case-metadata", "results-json-file"};
static char *multi_img[] = {"ct-image"};
static char *demo_in[] = {"generic-medical-image"};
static struct casemap_interface multi_ifaces[] = {{multi_full, 3}, {multi_img, 1}};
static struct casemap_interface demo_ifaces[] = {{demo_in, 1}};

static void
make_dest(bool multi, struct dest *d)
{
	memset(d, 0, sizeof(*d));
	d->kind = CONFIG_DEST_ALGORITHM;
	d->have_alg = true;
	d->sockets = multi ? all_sockets : all_sockets + 3;
	d->n_sockets = multi ? 3 : 1;
	d->ifaces = multi ? multi_ifaces : demo_ifaces;
	d->n_ifaces = multi ? 2 : 1;
}

struct content {
	const char *path;
	const char *data;
};

static const struct content *contents;

static int
table_read(void *ud, const struct scan_entry *e, size_t max, char **ret, size_t *ret_len)
{
	(void)ud;
	for (const struct content *c = contents; c != NULL && c->path != NULL; c++) {
		if (strcmp(c->path, e->relpath) != 0)
			continue;
		if (strlen(c->data) > max)
			return -EFBIG;
		*ret = strdup(c->data);
		*ret_len = strlen(c->data);
		return 0;
	}
	return -ENOENT;
}

#define MAX_FILES 4

struct map_row {
	const char *what;
	bool multi;
	const char *files[MAX_FILES + 1];	/* NULL-terminated */
	int n_dcm;				/* plus this many "d<i>.dcm" files */
	struct content json[3];
	const char *static_socket;		/* one static value, or NULL */
	const char *static_json;
	int rc;
	const char *want;	/* rc 0: "socket=SRC/nfiles ..." sorted; else a message excerpt */
};

static const char *const src_names[] = {"SESSION", "USER_UPLOADS", "USER_UPLOAD", "VALUE",
					"IMAGE"};

static const struct map_row map_rows[] = {
	{"one image file to the only input", false, {"scan.mha"}, 0, {{0}}, NULL, NULL, 0,
	 "generic-medical-image=SESSION/1"},
	{"an image directory to the only input", false, {"a/x.mha", "b.mha"}, 0, {{0}}, NULL, NULL,
	 0, "generic-medical-image=SESSION/2"},
	{"more than 100 files: user_uploads", false, {NULL}, 101, {{0}}, NULL, NULL, 0,
	 "generic-medical-image=USER_UPLOADS/101"},
	{"image + value + file named after sockets", true,
	 {"ct-image/s.mha", "case-metadata.json", "results-json-file.json"}, 0,
	 {{"case-metadata.json", "{\"a\": 1}"}}, NULL, NULL, 0,
	 "case-metadata=VALUE/0 ct-image=SESSION/1 results-json-file=USER_UPLOAD/1"},
	{"the second interface: the image alone", true, {"ct-image/s.mha"}, 0, {{0}}, NULL, NULL, 0,
	 "ct-image=SESSION/1"},
	{"a plain image to the interface left open", true, {"s.mha"}, 0, {{0}}, NULL, NULL, 0,
	 "ct-image=SESSION/1"},
	{"a static value for the Value socket", true,
	 {"ct-image/s.mha", "results-json-file.json"}, 0, {{0}}, "case-metadata", "{\"x\": 2}", 0,
	 "case-metadata=VALUE/0 ct-image=SESSION/1 results-json-file=USER_UPLOAD/1"},
	{"an existing image by static value", true,
	 {"case-metadata.json", "results-json-file.json"}, 0, {{"case-metadata.json", "3"}},
	 "ct-image", "\"https://gc.example/api/v1/cases/images/0f0f/\"", 0,
	 "case-metadata=VALUE/0 ct-image=IMAGE/0 results-json-file=USER_UPLOAD/1"},
	{"missing required input", true, {"ct-image/s.mha", "case-metadata.json"}, 0,
	 {{"case-metadata.json", "1"}}, NULL, NULL, -EINVAL, "results-json-file"},
	{"unknown socket", true, {"ct-image/s.mha", "lesion-count.json"}, 0,
	 {{"lesion-count.json", "1"}}, NULL, NULL, -EINVAL, "lesion-count"},
	{"wrong super_kind: JSON to an Image socket", true, {"ct-image.json"}, 0,
	 {{"ct-image.json", "1"}}, NULL, NULL, -EINVAL, "ct-image"},
	{"wrong super_kind: a directory to a Value socket", true,
	 {"ct-image/s.mha", "case-metadata/x.json", "results-json-file.json"}, 0, {{0}}, NULL, NULL,
	 -EINVAL, "case-metadata"},
	{"invalid JSON for a Value socket", true,
	 {"ct-image/s.mha", "case-metadata.json", "results-json-file.json"}, 0,
	 {{"case-metadata.json", "{\"a\": "}}, NULL, NULL, -EINVAL, "case-metadata"},
	{"null is no value", true,
	 {"ct-image/s.mha", "case-metadata.json", "results-json-file.json"}, 0,
	 {{"case-metadata.json", "null"}}, NULL, NULL, -EINVAL, "case-metadata"},
	{"a static image value that is no URL", true,
	 {"case-metadata.json", "results-json-file.json"}, 0, {{"case-metadata.json", "3"}},
	 "ct-image", "42", -EINVAL, "api_url of an existing image"},
	{"a static value for an unknown socket", true,
	 {"ct-image/s.mha", "case-metadata.json", "results-json-file.json"}, 0,
	 {{"case-metadata.json", "1"}}, "nope", "1", -EINVAL, "'nope'"},
	{"a stray entry beside socket-named ones", true,
	 {"ct-image/s.mha", "notes.txt", "case-metadata.json", "results-json-file.json"}, 0,
	 {{"case-metadata.json", "1"}}, NULL, NULL, -EINVAL, "notes.txt"},
};

static struct scan_entry *
make_entries(const struct map_row *row, size_t *ret_n)
{
	struct scan_entry *e = calloc(MAX_FILES + 200, sizeof(*e));
	size_t n = 0;

	for (size_t i = 0; row->files[i] != NULL; i++) {
		e[n].relpath = strdup(row->files[i]);
		e[n].relpath_len = strlen(row->files[i]);
		e[n].size = 10;
		e[n].mode = S_IFREG | 0644;
		n++;
	}
	for (int i = 0; i < row->n_dcm; i++) {
		char name[32];

		snprintf(name, sizeof(name), "d%03d.dcm", i);
		e[n].relpath = strdup(name);
		e[n].relpath_len = strlen(name);
		e[n].size = 10;
		e[n].mode = S_IFREG | 0644;
		n++;
	}
	*ret_n = n;
	return e;
}

START_TEST(test_map_table)
{
	/* Assumptions: map_rows[_i]; the watch has no `socket` and at most one static value. */
	const struct map_row *row = &map_rows[_i];
	struct config_value cv = {(char *)(uintptr_t)row->static_socket,
				  (char *)(uintptr_t)row->static_json};
	struct config_watch w = {0};
	struct casemap_reader rd = {table_read, NULL};
	struct casemap_result res = {0};
	struct jobs_input *in = NULL;
	struct dest d;
	struct scan_entry *e;
	char *msg = NULL, **urls, **names;
	char got[512] = "";
	size_t n, nf = 0;
	int r;

	make_dest(row->multi, &d);
	w.name = "w";
	w.slug = row->multi ? "multi" : "demo";
	w.dest = CONFIG_DEST_ALGORITHM;
	if (row->static_socket != NULL) {
		w.values = &cv;
		w.n_values = 1;
	}
	contents = row->json;
	e = make_entries(row, &n);
	r = jobs_map(e, n, &d, &w, &rd, &res, &msg);
	ck_assert_msg(r == row->rc, "%s: rc %d (%s)", row->what, r, msg ? msg : "");
	if (r < 0) {
		ck_assert_msg(msg != NULL && strstr(msg, row->want) != NULL, "%s: message '%s'",
			      row->what, msg ? msg : "(none)");
		goto out;
	}
	for (size_t v = 0; v < res.n; v++)
		nf += res.values[v].n_files;
	urls = calloc(nf + 1, sizeof(char *));
	names = calloc(nf + 1, sizeof(char *));
	for (size_t k = 0; k < nf; k++) {
		char b[64];

		snprintf(b, sizeof(b), "https://gc.example/api/v1/uploads/%zu/", k);
		urls[k] = strdup(b);
		snprintf(b, sizeof(b), "f%zu", k);
		names[k] = strdup(b);
	}
	ck_assert_int_eq(jobs_inputs_build(&res, urls, names, nf, &in), 0);
	for (size_t v = 0; v < res.n; v++) {
		size_t len = strlen(got);

		snprintf(got + len, sizeof(got) - len, "%s%s=%s/%zu", v ? " " : "", in[v].socket,
			 src_names[in[v].src], in[v].n_uploads);
	}
	ck_assert_msg(strcmp(got, row->want) == 0, "%s: got '%s', want '%s'", row->what, got,
		      row->want);
	/* Fewer uploads than files is refused. */
	if (nf > 0) {
		struct jobs_input *x = NULL;

		ck_assert_int_eq(jobs_inputs_build(&res, urls, names, nf - 1, &x), -EINVAL);
	}
	casemap_names_free(urls, nf);
	casemap_names_free(names, nf);
	jobs_inputs_free(in, res.n);
	casemap_result_clear(&res);
out:
	for (size_t i = 0; i < n; i++)
		free(e[i].relpath);
	free(e);
	free(msg);
}
END_TEST

START_TEST(test_inputs_json)
{
	/* Assumptions: one input of each source; a session input needs its session. */
	struct jobs_input in[5] = {0};
	char *u1[] = {"https://h/api/v1/uploads/1/"};
	char *u2[] = {"https://h/api/v1/uploads/2/", "https://h/api/v1/uploads/3/"};
	cJSON *j;
	char *s;

	in[0] = (struct jobs_input){.socket = "a", .src = JOBS_SRC_SESSION};
	in[1] = (struct jobs_input){.socket = "b", .src = JOBS_SRC_USER_UPLOAD, .upload_urls = u1,
				    .n_uploads = 1};
	in[2] = (struct jobs_input){.socket = "c", .src = JOBS_SRC_USER_UPLOADS,
				    .upload_urls = u2, .n_uploads = 2};
	in[3] = (struct jobs_input){.socket = "d", .src = JOBS_SRC_VALUE, .json = "{\"k\": [1]}"};
	in[4] = (struct jobs_input){.socket = "e", .src = JOBS_SRC_IMAGE,
				    .json = "https://h/api/v1/cases/images/9/"};
	ck_assert_ptr_null(jobs_inputs_json(in, 5));
	in[0].session_url = "https://h/api/v1/cases/upload-sessions/7/";
	j = jobs_inputs_json(in, 5);
	ck_assert_ptr_nonnull(j);
	s = cJSON_PrintUnformatted(j);
	ck_assert_str_eq(s,
		"[{\"interface\":\"a\",\"upload_session\":\"https://h/api/v1/cases/upload-sessions/7/\"},"
		"{\"interface\":\"b\",\"user_upload\":\"https://h/api/v1/uploads/1/\"},"
		"{\"interface\":\"c\",\"user_uploads\":[\"https://h/api/v1/uploads/2/\","
		"\"https://h/api/v1/uploads/3/\"]},"
		"{\"interface\":\"d\",\"value\":{\"k\":[1]}},"
		"{\"interface\":\"e\",\"image\":\"https://h/api/v1/cases/images/9/\"}]");
	free(s);
	cJSON_Delete(j);
}
END_TEST

struct class_row {
	enum api_class cls;
	const char *message;
	enum jobs_refusal want;
};

static const struct class_row class_rows[] = {
	{API_RETRY, "HTTP 503", JOBS_REFUSED_RETRY},
	{API_RETRY, "Operation timed out", JOBS_REFUSED_RETRY},
	{API_LIMIT, "You have too many active jobs, please try again after they have completed",
	 JOBS_REFUSED_LIMIT},
	{API_LIMIT, "You have run out of algorithm credits", JOBS_REFUSED_LIMIT},
	{API_AUTH, "Invalid token.", JOBS_REFUSED_AUTH},
	{API_FAIL, JOBS_MSG_DUPLICATE, JOBS_REFUSED_DUPLICATE},
	{API_FAIL, "inputs[0].upload_session: Invalid hyperlink - Object does not exist.",
	 JOBS_REFUSED_EXPIRED},
	{API_FAIL, "algorithm: Invalid hyperlink - Object does not exist.", JOBS_REFUSED_FAIL},
	{API_FAIL, "The set of inputs provided does not match any of the algorithm's interfaces. "
		   "This algorithm supports the following input combinations: ...",
	 JOBS_REFUSED_INPUTS},
	{API_FAIL, "inputs[1]: JSON does not fulfill schema: 'x' is not of type 'number'",
	 JOBS_REFUSED_INPUTS},
	{API_FAIL, "Algorithm image is not ready to be used", JOBS_REFUSED_FAIL},
};

START_TEST(test_classify)
{
	/* Assumptions: class_rows[_i], messages as api_error_text() flattens them. */
	struct api_error e = {.cls = class_rows[_i].cls, .status = 400, .retry_after_ms = -1};

	snprintf(e.message, sizeof(e.message), "%s", class_rows[_i].message);
	ck_assert_int_eq(jobs_classify_create(&e), class_rows[_i].want);
}
END_TEST

START_TEST(test_url_pk)
{
	/* Assumptions: api_urls end in "<pk>/"; anything else gives its last component. */
	static const char *const rows[][2] = {
		{"https://h/api/v1/cases/images/abc-1/", "abc-1"},
		{"https://h/api/v1/cases/images/abc-2", "abc-2"},
		{"https://h/api/v1/cases/images/abc-3//", "abc-3"},
		{"", NULL},
		{"/", NULL},
	};

	for (size_t i = 0; i < GC_ARRAY_SIZE(rows); i++) {
		char *pk = jobs_url_pk(rows[i][0]);

		if (rows[i][1] == NULL)
			ck_assert_ptr_null(pk);
		else
			ck_assert_str_eq(pk, rows[i][1]);
		free(pk);
	}
	ck_assert_ptr_null(jobs_url_pk(NULL));
}
END_TEST

/* ---- recovery ---- */

#define JOB_URL "https://h.example/api/v1/algorithms/jobs/j1/"

static char *rdir;
static struct store *rstore;
static int64_t rcase;

static void
rsetup(void)
{
	struct store_case_new c = {.watch = "alg", .name = "c1", .path = "/x/c1",
				   .fingerprint = "f1", .state = STORE_QUEUED};
	char *msg = NULL;

	rdir = tu_mkdtemp("check_jobs");
	ck_assert_msg(store_open(rdir, 0, &rstore, &msg) == 0, "%s", msg ? msg : "");
	ck_assert_int_eq(store_case_insert(rstore, &c, &rcase), 0);
}

static void
rteardown(void)
{
	rstore = store_close(rstore);
	tu_rmtree(rdir);
	free(rdir);
}

/* The job's record as a daemon leaves it: gcdrop is the "gcdrop" member, or NULL. */
static void
put_job(const char *status, const char *gcdrop)
{
	char *json = tu_strdupf("{\"pk\": \"j1\", \"api_url\": \"%s\", \"status\": \"%s\", "
				"\"inputs\": [], \"outputs\": []%s%s}", JOB_URL, status,
				gcdrop ? ", \"gcdrop\": " : "", gcdrop ? gcdrop : "");

	ck_assert_int_eq(store_remote_intent(rstore, rcase, STORE_REMOTE_JOB, "", "c1"), 0);
	ck_assert_int_eq(store_remote_set(rstore, rcase, STORE_REMOTE_JOB, "", "j1", JOB_URL,
					  status, json), 0);
	free(json);
}

static void
run_init(struct jobs_run *run, int64_t timeout_s)
{
	struct jobs_opts o = {.poll_base_ms = 10, .poll_cap_ms = 600000, .timeout_s = timeout_s};

	ck_assert_int_eq(jobs_run_init(run, rstore, rcase, NULL, "c1", NULL, 0, &o), 0);
}

/* One poll of the run answered with status: the event. */
static enum jobs_event
poll_once(struct jobs_run *run, const char *status)
{
	struct pipeline_op *op = NULL;
	enum jobs_event ev;

	ck_assert_int_eq(jobs_run_next(run, rstore, backoff_now_ms(), &op), 0);
	ck_assert_ptr_nonnull(op);
	ck_assert_int_eq(op->kind, PIPELINE_OP_JOB_GET);
	ck_assert_str_eq(op->url, JOB_URL);
	op->err.cls = API_OK;
	op->job.pk = strdup("j1");
	op->job.api_url = strdup(JOB_URL);
	op->job.status = strdup(status);
	op->job.exec_duration = strcmp(status, "Succeeded") == 0 ? strdup("P0DT00H01M00S") : NULL;
	ev = jobs_run_on_done(run, rstore, op);
	pipeline_op_free(op);
	return ev;
}

/* The "gcdrop" member of the job's record, parsed. */
static cJSON *
recorded(void)
{
	struct store_remote r = {0};
	cJSON *j, *g;

	ck_assert_int_eq(store_remote_get(rstore, rcase, STORE_REMOTE_JOB, "", &r), 0);
	j = cJSON_Parse(r.json);
	ck_assert_ptr_nonnull(j);
	g = cJSON_DetachItemFromObject(j, "gcdrop");
	ck_assert_ptr_nonnull(g);
	if (cJSON_GetObjectItem(j, "exec_duration") != NULL)
		cJSON_AddItemToObject(g, "exec_duration",
				      cJSON_DetachItemFromObject(j, "exec_duration"));
	cJSON_Delete(j);
	store_remote_clear(&r);
	return g;
}

START_TEST(test_timeout_from_submission)
{
	/*
	 * Assumptions: a job submitted 100 s ago with job_timeout 50 s is overdue
	 * the moment a restarted daemon polls it (the old code started the timer at
	 * start-up: no report for 50 s); the report is recorded, so the next
	 * restart does not report it again, and the job is still polled.
	 */
	struct jobs_run run;
	int64_t sub = (int64_t)time(NULL) - 100;
	char *g = tu_strdupf("{\"submitted\": %lld, \"started\": null, \"finished\": null, "
			     "\"timeout_reported\": false}", (long long)sub);
	cJSON *rec;

	put_job("Executing", g);
	free(g);
	run_init(&run, 50);
	ck_assert_int_le(run.deadline_ms, backoff_now_ms());
	ck_assert_int_eq(poll_once(&run, "Executing"), JOBS_TIMEOUT);
	ck_assert(run.timed_out);
	/* Not retried, not failed: it stays the same job, polled at the longest interval. */
	ck_assert_int_eq(run.phase, JOBS_POLL);
	ck_assert_int_ge(run.next_poll_ms, backoff_now_ms() + 500000);
	jobs_run_done(&run);
	rec = recorded();
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(rec, "timeout_reported")));
	ck_assert_int_eq((int64_t)cJSON_GetObjectItem(rec, "submitted")->valuedouble, sub);
	cJSON_Delete(rec);

	/* Restarted again: once per job. */
	run_init(&run, 50);
	ck_assert(run.timed_out);
	ck_assert_int_eq(poll_once(&run, "Executing"), JOBS_RUNNING);
	jobs_run_done(&run);
}
END_TEST

START_TEST(test_timeout_not_yet)
{
	/*
	 * Assumptions: submitted 10 s ago with job_timeout 50 s: the restarted run
	 * reports nothing yet, and its deadline is about 40 s away, not 50 s.
	 */
	struct jobs_run run;
	char *g = tu_strdupf("{\"submitted\": %lld, \"started\": %lld, \"finished\": null, "
			     "\"timeout_reported\": false}", (long long)time(NULL) - 10,
			     (long long)time(NULL) - 5);
	int64_t left;

	put_job("Executing", g);
	free(g);
	run_init(&run, 50);
	left = run.deadline_ms - backoff_now_ms();
	ck_assert_msg(left > 37000 && left <= 40000, "deadline in %lld ms", (long long)left);
	ck_assert_int_eq(poll_once(&run, "Executing"), JOBS_RUNNING);
	ck_assert(!run.timed_out);
	jobs_run_done(&run);
}
END_TEST

START_TEST(test_timeout_old_record)
{
	/*
	 * Assumptions: a record written before the times were kept (no "gcdrop")
	 * counts from its last update, which a restart does not move.
	 */
	struct jobs_run run;
	int64_t left;

	put_job("Executing", NULL);
	run_init(&run, 50);
	left = run.deadline_ms - backoff_now_ms();
	ck_assert_msg(left > 45000 && left <= 50000, "deadline in %lld ms", (long long)left);
	ck_assert_int_gt(run.submitted_s, 0);
	jobs_run_done(&run);
}
END_TEST

START_TEST(test_times_recorded)
{
	/*
	 * Assumptions: started is set when the job is first seen past "Validating
	 * inputs", finished when first seen terminal, both kept in the record with
	 * the platform's duration; the submission time is not moved by polls.
	 */
	struct jobs_run run;
	int64_t sub = (int64_t)time(NULL) - 30;
	char *g = tu_strdupf("{\"submitted\": %lld, \"started\": null, \"finished\": null, "
			     "\"timeout_reported\": false}", (long long)sub);
	cJSON *rec;

	put_job("Validating inputs", g);
	free(g);
	run_init(&run, 3600);
	ck_assert_int_eq(run.phase, JOBS_POLL);
	ck_assert_int_eq(poll_once(&run, "Validating inputs"), JOBS_PROGRESS);
	ck_assert_int_eq(run.started_s, 0);
	run.next_poll_ms = 0;
	ck_assert_int_eq(poll_once(&run, "Executing"), JOBS_RUNNING);
	ck_assert_int_ge(run.started_s, sub + 30);
	ck_assert_int_eq(run.finished_s, 0);
	rec = recorded();
	ck_assert_int_eq((int64_t)cJSON_GetObjectItem(rec, "started")->valuedouble, run.started_s);
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(rec, "finished")));
	cJSON_Delete(rec);
	run.next_poll_ms = 0;
	ck_assert_int_eq(poll_once(&run, "Succeeded"), JOBS_RUNNING);
	ck_assert_int_ge(run.finished_s, run.started_s);
	ck_assert_str_eq(run.exec_duration, "P0DT00H01M00S");
	jobs_run_done(&run);
	rec = recorded();
	ck_assert_int_eq((int64_t)cJSON_GetObjectItem(rec, "submitted")->valuedouble, sub);
	ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(rec, "finished")));
	ck_assert_str_eq(cJSON_GetObjectItem(rec, "exec_duration")->valuestring, "P0DT00H01M00S");
	cJSON_Delete(rec);

	/* A restart reads them back (and goes on with the outputs). */
	run_init(&run, 3600);
	ck_assert_int_eq(run.phase, JOBS_OUTPUTS);
	ck_assert_int_eq(run.submitted_s, sub);
	ck_assert_int_gt(run.finished_s, 0);
	ck_assert_str_eq(run.exec_duration, "P0DT00H01M00S");
	jobs_run_done(&run);
}
END_TEST

START_TEST(test_intent_time)
{
	/*
	 * Assumptions: a restart that finds only the intent of a create (the POST
	 * may have happened, its answer was lost) takes the intent's time as the
	 * submission, so a job found by reconciliation is timed from its POST.
	 */
	struct jobs_run run;
	struct jobs_opts o = {.poll_base_ms = 10, .poll_cap_ms = 1000, .timeout_s = 50};
	int64_t before = (int64_t)time(NULL), after;

	ck_assert_int_eq(store_remote_intent(rstore, rcase, STORE_REMOTE_JOB, "", "c1"), 0);
	after = (int64_t)time(NULL);
	ck_assert_int_eq(jobs_run_init(&run, rstore, rcase, NULL, "c1", NULL, 0, &o), 0);
	ck_assert(run.intent_only);
	ck_assert_int_ge(run.submitted_s, before);
	ck_assert_int_le(run.submitted_s, after);
	jobs_run_done(&run);
}
END_TEST

static Suite *
jobs_suite(void)
{
	Suite *s = suite_create("jobs");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_loop_test(tc, test_map_table, 0, (int)GC_ARRAY_SIZE(map_rows));
	tcase_add_test(tc, test_inputs_json);
	tcase_add_test(tc, test_url_pk);
	suite_add_tcase(s, tc);
	tc = tcase_create("errors");
	tcase_add_loop_test(tc, test_classify, 0, (int)GC_ARRAY_SIZE(class_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, rsetup, rteardown);
	tcase_add_test(tc, test_timeout_from_submission);
	tcase_add_test(tc, test_timeout_not_yet);
	tcase_add_test(tc, test_timeout_old_record);
	tcase_add_test(tc, test_times_recorded);
	tcase_add_test(tc, test_intent_time);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(jobs_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
