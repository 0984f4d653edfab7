/*
 * e2e_algorithm.c: algorithm watches end to end, with the real `gcdrop run`.
 *
 * Property proved by the suite: a case dropped into an algorithm watch ends as
 * exactly one algorithm job on the platform, polled to its end, with every
 * output recorded in the queue and written to results_dir/<case>/ byte for
 * byte as the platform serves it (job.json last), through the real protocol
 * over HTTPS; a job that fails ends the case failed with what is known; a job
 * refused by the job limit waits without re-sending its uploads; and SIGKILL
 * at each step (after the uploads, right after the create request, during
 * polling, during the output download) still gives exactly one job and
 * complete outputs, also for a job without an upload session to find it by
 * (values and files only); job.json carries the job's times in order; and a
 * job stuck past job_timeout is reported once, counted from its submission
 * across a restart, and left to the operator.
 *
 * Each test starts the emulator (tests/fakegc, HTTPS with a throw-away CA),
 * writes a configuration with two algorithm watches ("alg": demo-algorithm,
 * one image in; "multi": multi-input-algorithm, image + value + file in), runs
 * the daemon, drops cases, and reads the queue through `gcdrop status --json`
 * and the platform through the emulator's state. Outputs are fetched from the
 * emulator (media URL with the token, then its redirect to storage without)
 * and compared with the files on disk. Waiting is always "until condition or
 * deadline".
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "fakegc-client.h"
#include "testutil.h"

#define WAIT_MS 60000

static const char MHA_HEAD[] = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 1\n"
			       "ElementSpacing = 1 1 1\nElementType = MET_UCHAR\n"
			       "ElementDataFile = LOCAL\n";

static struct fakegc *fg;
static char *dir, *conf, *log_path, *alg_dir, *multi_dir;
static pid_t pid = -1;

/*
 * The configuration; alg_extra is added to the "alg" watch (e.g. "job_timeout
 * = 10;"), more_watches after the two watches (each starting with ",").
 */
static void
write_conf2(const char *alg_extra, const char *more_watches)
{
	char *tok = tu_strdupf("%s/token", dir);
	char *text = tu_strdupf(
		"api_url = \"%s\";\ntoken_file = \"%s\";\nca_file = \"%s\";\n"
		"state_dir = \"%s/state\";\nworkers = 4;\nmax_attempts = 6;\n"
		"min_free_space = \"1M\";\nlog_level = \"info\";\n"
		"watches = (\n"
		" { name = \"alg\"; path = \"%s\"; algorithm = \"demo-algorithm\";\n"
		"   settle_seconds = 1; results_dir = \"%s/results\"; %s },\n"
		" { name = \"multi\"; path = \"%s\"; algorithm = \"multi-input-algorithm\";\n"
		"   settle_seconds = 1; results_dir = \"%s/results-multi\"; }\n%s);\n",
		fakegc_api_url(fg), tok, fakegc_ca_file(fg), dir, alg_dir, dir, alg_extra,
		multi_dir, dir, more_watches);

	tu_write_file(tok, fakegc_token(fg), -1, 0600);
	tu_write_file(conf, text, -1, 0644);
	free(text);
	free(tok);
}

static void
write_conf(const char *alg_extra)
{
	write_conf2(alg_extra, "");
}

static void
setup(void)
{
	struct fakegc_opts o = {.tls = true, .tick = 0.05, .min_part_size = 1};
	char *tok;

	dir = tu_mkdtemp("e2e_algorithm");
	ck_assert_int_eq(fakegc_start(&o, &fg), 0);
	alg_dir = tu_strdupf("%s/in-alg", dir);
	multi_dir = tu_strdupf("%s/in-multi", dir);
	ck_assert_int_eq(mkdir(alg_dir, 0755), 0);
	ck_assert_int_eq(mkdir(multi_dir, 0755), 0);
	tok = tu_strdupf("%s/state", dir);
	ck_assert_int_eq(mkdir(tok, 0700), 0);
	free(tok);
	conf = tu_strdupf("%s/gcdrop.conf", dir);
	log_path = tu_strdupf("%s/daemon.log", dir);
	write_conf("");
}

static char *
bin(void)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "%s", tu_gcdrop_bin());
	return buf;
}

static void
start_daemon(void)
{
	char *argv[] = {bin(), "run", "-c", conf, NULL};
	char *env[] = {"GCDROP_PART_SIZE=65536", NULL};

	pid = tu_spawn(argv, env, log_path);
	ck_assert_int_gt(pid, 0);
}

static int
stop_daemon(int sig)
{
	int st = tu_stop(pid, sig, 15000);

	pid = -1;
	return st;
}

static void
teardown(void)
{
	if (pid > 0)
		stop_daemon(SIGKILL);
	fakegc_stop(fg);
	tu_rmtree(dir);
	free(dir);
	free(conf);
	free(log_path);
	free(alg_dir);
	free(multi_dir);
}

/* `gcdrop status --json`; NULL when it fails (only while the daemon opens the queue). */
static cJSON *
status_try(void)
{
	char *argv[] = {bin(), "status", "-c", conf, "--json", NULL};
	char *out = NULL;
	cJSON *j;

	if (tu_run(argv, NULL, 10000, &out, NULL) != 0) {
		free(out);
		return NULL;
	}
	j = cJSON_Parse(out);
	free(out);
	return j;
}

static cJSON *
status_json(void)
{
	char *argv[] = {bin(), "status", "-c", conf, "--json", NULL};
	char *out = NULL, *err = NULL;
	cJSON *j;
	int rc = tu_run(argv, NULL, 10000, &out, &err);

	ck_assert_msg(rc == 0, "gcdrop status failed (%d): %s", rc, err != NULL ? err : "");
	free(err);
	j = cJSON_Parse(out);
	free(out);
	ck_assert_ptr_nonnull(j);
	return j;
}

static char *
status_text(const char *name)
{
	char *n = strdup(name);
	char *argv[] = {bin(), "status", "-c", conf, n, NULL};
	char *out = NULL;

	ck_assert_int_eq(tu_run(argv, NULL, 10000, &out, NULL), 0);
	free(n);
	return out;
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

/* The case's state, malloc'd ("none" when absent). */
static char *
case_state(const char *name)
{
	cJSON *root = status_try();
	cJSON *c = find_case(root, name);
	const char *st = c ? cJSON_GetStringValue(cJSON_GetObjectItem(c, "state")) : NULL;
	char *s = strdup(st != NULL ? st : root == NULL ? "unknown" : "none");

	cJSON_Delete(root);
	return s;
}

struct want {
	const char *name;
	const char *state;
};

static bool
in_state(void *ud)
{
	const struct want *w = ud;
	char *st = case_state(w->name);
	bool ok = strstr(w->state, st) != NULL;

	free(st);
	return ok;
}

/* Wait until the case is in (one of the space-separated) state(s). */
static void
wait_state(const char *name, const char *states, int timeout_ms)
{
	struct want w = {name, states};
	char *log;

	if (tu_wait_until(in_state, &w, timeout_ms))
		return;
	log = tu_read_file(log_path, NULL);
	ck_abort_msg("case '%s' not %s in time; daemon log:\n%s", name, states, log ? log : "");
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

/* An image case "<name>/scan.mha" moved into the watch at once. */
static void
drop_image_case(const char *watchdir, const char *name, size_t size)
{
	char *stage = tu_strdupf("%s/stage-%s", dir, name);
	char *f = tu_strdupf("%s/scan.mha", stage);
	char *dst = tu_strdupf("%s/%s", watchdir, name);

	ck_assert_int_eq(mkdir(stage, 0755), 0);
	write_mha(f, size, 7);
	ck_assert_int_eq(rename(stage, dst), 0);
	free(stage);
	free(f);
	free(dst);
}

static int
count_requests(cJSON *st, const char *method, const char *part)
{
	cJSON *x;
	int n = 0;

	cJSON_ArrayForEach(x, cJSON_GetObjectItem(st, "requests")) {
		if (strstr(x->string, "__fakegc__") != NULL)
			continue;
		if ((method == NULL || strncmp(x->string, method, strlen(method)) == 0) &&
		    (part == NULL || strstr(x->string, part) != NULL))
			n += x->valueint;
	}
	return n;
}

static int
requests_now(const char *method, const char *part)
{
	cJSON *st = fakegc_state(fg);
	int n;

	ck_assert_ptr_nonnull(st);
	n = count_requests(st, method, part);
	cJSON_Delete(st);
	return n;
}

struct req_want {
	const char *method;
	const char *part;
	int n;
};

static bool
requests_seen(void *ud)
{
	const struct req_want *w = ud;

	return requests_now(w->method, w->part) >= w->n;
}

static int
n_jobs(void)
{
	cJSON *st = fakegc_state(fg);
	int n = cJSON_GetArraySize(cJSON_GetObjectItem(st, "jobs"));

	cJSON_Delete(st);
	return n;
}

static bool
job_exists(void *ud)
{
	(void)ud;
	return n_jobs() >= 1;
}

static bool
log_has(const char *s)
{
	char *log = tu_read_file(log_path, NULL);
	bool ok = log != NULL && strstr(log, s) != NULL;

	free(log);
	return ok;
}

/* ---- fetching what the emulator serves ---- */

struct mem {
	char *p;
	size_t n;
};

static size_t
mem_write(char *data, size_t sz, size_t nm, void *ud)
{
	struct mem *m = ud;

	m->p = realloc(m->p, m->n + sz * nm + 1);
	memcpy(m->p + m->n, data, sz * nm);
	m->n += sz * nm;
	return sz * nm;
}

/* GET url (with the token), then its redirect (without): the bytes a client gets. */
static struct mem
fetch(const char *url)
{
	struct mem m = {0};
	char *loc = NULL, *auth = tu_strdupf("Authorization: Bearer %s", fakegc_token(fg));
	struct curl_slist *h = curl_slist_append(NULL, auth);
	CURL *c = curl_easy_init();
	long code = 0;

	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, fakegc_ca_file(fg));
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
	ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (code == 302) {
		char *l = NULL;

		curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &l);
		ck_assert_ptr_nonnull(l);
		loc = strdup(l);
		free(m.p);
		m.p = NULL;
		m.n = 0;
		curl_easy_setopt(c, CURLOPT_URL, loc);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
		ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	}
	ck_assert_int_eq(code, 200);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	free(loc);
	free(auth);
	return m;
}

/* The API JSON at url. */
static cJSON *
fetch_json(const char *url)
{
	struct mem m = fetch(url);
	cJSON *j;

	m.p = realloc(m.p, m.n + 1);
	m.p[m.n] = '\0';
	j = cJSON_Parse(m.p);
	free(m.p);
	ck_assert_ptr_nonnull(j);
	return j;
}

static void
assert_same_file(const char *path, const char *url)
{
	struct mem m = fetch(url);
	size_t len = 0;
	char *disk = tu_read_file(path, &len);

	ck_assert_msg(disk != NULL, "'%s' missing", path);
	ck_assert_msg(len == m.n && memcmp(disk, m.p, len) == 0, "'%s' differs from %s", path, url);
	free(disk);
	free(m.p);
}

/*
 * job.json: the job, and its times (created <= started <= finished, ISO 8601
 * UTC, none null) with the platform's duration as it gave it.
 */
static void
assert_job_json(const char *path, const char *pk, const char *exec_duration)
{
	char *text = tu_read_file(path, NULL);
	cJSON *j = text != NULL ? cJSON_Parse(text) : NULL;
	const char *created, *started, *finished;

	ck_assert_msg(j != NULL, "'%s' missing or not JSON", path);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(j, "pk")), pk);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(j, "status")), "Succeeded");
	created = cJSON_GetStringValue(cJSON_GetObjectItem(j, "created"));
	started = cJSON_GetStringValue(cJSON_GetObjectItem(j, "started"));
	finished = cJSON_GetStringValue(cJSON_GetObjectItem(j, "finished"));
	ck_assert_msg(created != NULL && started != NULL && finished != NULL,
		      "job.json times: %s", text);
	ck_assert_uint_eq(strlen(created), 20);
	ck_assert_int_eq(created[19], 'Z');
	/* Same format, so text order is time order. */
	ck_assert_msg(strcmp(created, started) <= 0 && strcmp(started, finished) <= 0,
		      "job.json times out of order: %s", text);
	ck_assert_ptr_nonnull(exec_duration);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(j, "exec_duration")),
			 exec_duration);
	cJSON_Delete(j);
	free(text);
}

/*
 * Every output of the platform's only job of this case, compared with
 * results_dir/<case>/: values as JSON, files and image files byte for byte;
 * job.json present, no temporary files; the queue records every output path.
 */
static void
assert_outputs(const char *results, const char *name)
{
	cJSON *st = fakegc_state(fg), *jobs, *job, *o, *root, *c;
	const char *job_url = NULL;
	char *f, *txt;
	int n_out = 0;

	jobs = cJSON_GetObjectItem(st, "jobs");
	ck_assert_int_eq(cJSON_GetArraySize(jobs), 1);
	root = status_json();
	c = find_case(root, name);
	ck_assert_ptr_nonnull(c);
	job_url = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "remote"),
							   "job"));
	ck_assert_ptr_nonnull(job_url);
	job = fetch_json(job_url);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(job, "status")), "Succeeded");
	cJSON_ArrayForEach(o, cJSON_GetObjectItem(job, "outputs")) {
		cJSON *itf = cJSON_GetObjectItem(o, "interface");
		const char *sk = cJSON_GetStringValue(cJSON_GetObjectItem(itf, "super_kind"));
		const char *rel = cJSON_GetStringValue(cJSON_GetObjectItem(itf, "relative_path"));
		char *path = tu_strdupf("%s/%s/%s", results, name, rel);

		n_out++;
		if (strcmp(sk, "File") == 0) {
			assert_same_file(path, cJSON_GetStringValue(cJSON_GetObjectItem(o, "file")));
		} else if (strcmp(sk, "Value") == 0) {
			char *disk = tu_read_file(path, NULL);
			cJSON *v = disk != NULL ? cJSON_Parse(disk) : NULL;

			ck_assert_msg(v != NULL && cJSON_Compare(v, cJSON_GetObjectItem(o, "value"),
								 true), "value '%s'", path);
			cJSON_Delete(v);
			free(disk);
		} else {
			cJSON *img = fetch_json(cJSON_GetStringValue(cJSON_GetObjectItem(o, "image")));
			cJSON *file = cJSON_GetArrayItem(cJSON_GetObjectItem(img, "files"), 0);
			const char *furl = cJSON_GetStringValue(cJSON_GetObjectItem(file, "file"));
			const char *pk = cJSON_GetStringValue(cJSON_GetObjectItem(img, "pk"));
			char *ipath = tu_strdupf("%s/%s%s", path, pk, strrchr(furl, '.'));

			assert_same_file(ipath, furl);
			free(ipath);
			cJSON_Delete(img);
		}
		free(path);
	}
	ck_assert_int_gt(n_out, 0);
	f = tu_strdupf("%s/%s/job.json", results, name);
	assert_job_json(f, cJSON_GetStringValue(cJSON_GetObjectItem(job, "pk")),
			cJSON_GetStringValue(cJSON_GetObjectItem(job, "exec_duration")));
	free(f);
	{
		char *argv[] = {"/bin/sh", "-c", NULL, NULL};
		char *out = NULL;

		argv[2] = tu_strdupf("find '%s/%s' -name '*.gcdrop-part' | wc -l", results, name);
		ck_assert_int_eq(tu_run(argv, NULL, 10000, &out, NULL), 0);
		ck_assert_int_eq(atoi(out), 0);
		free(out);
		free(argv[2]);
	}
	/* gcdrop status CASE: the job, its URL, where every output went. */
	txt = status_text(name);
	ck_assert_ptr_nonnull(strstr(txt, job_url));
	ck_assert_ptr_nonnull(strstr(txt, "[Succeeded]"));
	ck_assert_ptr_null(strstr(txt, "(not written)"));
	f = tu_strdupf("results:   %s/%s", results, name);
	ck_assert_ptr_nonnull(strstr(txt, f));
	free(f);
	free(txt);
	cJSON_Delete(job);
	cJSON_Delete(root);
	cJSON_Delete(st);
}

/* ---- core ---- */

START_TEST(test_image_case)
{
	/*
	 * Property: an image case to a one-input algorithm ends succeeded, as one job
	 * whose input image is the case's file, with every output on disk as served,
	 * within a request bound; the token never reaches storage.
	 */
	char *results = tu_strdupf("%s/results", dir);
	cJSON *st;
	int req;

	start_daemon();
	drop_image_case(alg_dir, "img1", 3000);
	wait_state("img1", "succeeded", WAIT_MS);
	assert_outputs(results, "img1");
	st = fakegc_state(fg);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "leaks")), 0);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "uploads")), 1);
	/*
	 * Per case: upload create, presign, 1 PUT, complete (4); session (1); job
	 * create (1); polls (a few); the PDF output: media + storage (2); lookups:
	 * the algorithm (1). Bound: 20.
	 */
	req = count_requests(st, NULL, NULL);
	fprintf(stderr, "e2e_algorithm: requests for one image case: %d\n", req);
	ck_assert_msg(req <= 20, "%d requests", req);
	cJSON_Delete(st);
	ck_assert(log_has("GCDROP_JOB="));
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
	free(results);
}
END_TEST

START_TEST(test_multi_input)
{
	/*
	 * Property: a case named after sockets (an image directory, a JSON value, a
	 * file) to a multi-input algorithm becomes one job with the three inputs, and
	 * its three outputs (image, value, file) are written.
	 */
	char *stage = tu_strdupf("%s/stage-m1", dir), *f;
	char *results = tu_strdupf("%s/results-multi", dir);
	cJSON *st, *job, *in;
	bool value_ok = false;

	ck_assert_int_eq(mkdir(stage, 0755), 0);
	f = tu_strdupf("%s/ct-image", stage);
	ck_assert_int_eq(mkdir(f, 0755), 0);
	free(f);
	f = tu_strdupf("%s/ct-image/slice.mha", stage);
	write_mha(f, 2000, 3);
	free(f);
	f = tu_strdupf("%s/case-metadata.json", stage);
	tu_write_file(f, "{\"site\": \"A\", \"n\": 3}", -1, 0644);
	free(f);
	f = tu_strdupf("%s/results-json-file.json", stage);
	tu_write_file(f, "{\"previous\": [1, 2]}", -1, 0644);
	free(f);
	start_daemon();
	f = tu_strdupf("%s/m1", multi_dir);
	ck_assert_int_eq(rename(stage, f), 0);
	free(f);
	wait_state("m1", "succeeded", WAIT_MS);
	assert_outputs(results, "m1");
	st = fakegc_state(fg);
	job = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "jobs"), 0);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(job, "inputs")), 3);
	cJSON_ArrayForEach(in, cJSON_GetObjectItem(job, "inputs")) {
		char *s = cJSON_PrintUnformatted(in);

		value_ok = value_ok || strstr(s, "\"site\"") != NULL;
		free(s);
	}
	ck_assert_msg(value_ok, "the JSON value is not among the job's inputs");
	cJSON_Delete(st);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
	free(stage);
	free(results);
}
END_TEST

START_TEST(test_job_fails)
{
	/* Property: a job the platform fails ends the case failed, said in status and log. */
	cJSON *root, *c;
	const char *err;
	char *txt;

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"jobs\": [{\"count\": 1, \"algorithm\": "
					   "\"demo-algorithm\", \"after\": \"Executing\"}], "
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	start_daemon();
	drop_image_case(alg_dir, "bad1", 500);
	wait_state("bad1", "failed", WAIT_MS);
	root = status_json();
	c = find_case(root, "bad1");
	err = cJSON_GetStringValue(cJSON_GetObjectItem(c, "error"));
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, "the job failed"));
	ck_assert_ptr_nonnull(cJSON_GetStringValue(cJSON_GetObjectItem(
		cJSON_GetObjectItem(c, "remote"), "job")));
	cJSON_Delete(root);
	ck_assert(log_has("the job failed"));
	txt = status_text("bad1");
	ck_assert_ptr_nonnull(strstr(txt, "[Failed]"));
	free(txt);
	ck_assert_int_eq(n_jobs(), 1);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

START_TEST(test_job_limit)
{
	/*
	 * Property: refused by the job limit, the case waits in retry-wait with its
	 * uploads done; once the platform allows jobs again the job starts, and no
	 * upload was created or sent twice.
	 */
	int creates, puts;

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"limits\": {\"max_active_jobs\": 0, "
					   "\"min_part_size\": 1}}"), 0);
	start_daemon();
	drop_image_case(alg_dir, "lim1", 4 * 65536 - 1000);	/* 4 parts with the header */
	wait_state("lim1", "retry-wait", WAIT_MS);
	creates = requests_now("POST", "/uploads/");
	puts = requests_now("PUT", "/s3/");
	ck_assert_int_eq(creates, 1);
	ck_assert_int_eq(puts, 4);
	ck_assert_int_eq(n_jobs(), 0);
	ck_assert(log_has("too many active jobs"));
	ck_assert_int_eq(fakegc_set_faults(fg, "{\"limits\": {\"min_part_size\": 1}}"), 0);
	wait_state("lim1", "succeeded", WAIT_MS);
	ck_assert_int_eq(requests_now("POST", "/uploads/"), creates);
	ck_assert_int_eq(requests_now("PUT", "/s3/"), puts);
	ck_assert_int_eq(requests_now("POST", "/upload-sessions/"), 1);
	ck_assert_int_eq(n_jobs(), 1);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

/* ---- recovery: SIGKILL at each step ---- */

static void
kill_and_finish(const char *name)
{
	char *results = tu_strdupf("%s/results", dir);

	stop_daemon(SIGKILL);
	start_daemon();
	wait_state(name, "succeeded", WAIT_MS);
	ck_assert_int_eq(n_jobs(), 1);
	assert_outputs(results, name);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
	free(results);
}

START_TEST(test_kill_after_uploads)
{
	/* Property: killed once the upload is complete (before the job): one job, complete. */
	struct req_want w = {"PATCH", "complete-multipart-upload", 1};

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"route\": "
					   "\"upload-sessions\", \"action\": \"latency\", "
					   "\"latency\": 1.0, \"count\": 1}], "
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	start_daemon();
	drop_image_case(alg_dir, "k1", 1000);
	ck_assert(tu_wait_until(requests_seen, &w, WAIT_MS));
	kill_and_finish("k1");
}
END_TEST

START_TEST(test_kill_after_create)
{
	/*
	 * Property: killed right after the job POST left (its answer never read), the
	 * restarted daemon finds the job through its session's image: still one job.
	 */
	struct req_want w = {"POST", "/algorithms/jobs/", 1};

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"route\": "
					   "\"POST /api/v1/algorithms/jobs/\", \"action\": "
					   "\"latency\", \"latency\": 1.5, \"count\": 1}], "
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	start_daemon();
	drop_image_case(alg_dir, "k2", 1000);
	ck_assert(tu_wait_until(requests_seen, &w, WAIT_MS));
	stop_daemon(SIGKILL);
	/* The platform finishes the request the dead client sent. */
	ck_assert(tu_wait_until(job_exists, NULL, 10000));
	start_daemon();
	wait_state("k2", "succeeded", WAIT_MS);
	ck_assert_int_eq(n_jobs(), 1);
	ck_assert_int_eq(requests_now("POST", "/algorithms/jobs/"), 1);
	{
		char *results = tu_strdupf("%s/results", dir);

		assert_outputs(results, "k2");
		free(results);
	}
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

START_TEST(test_kill_during_polling)
{
	/* Property: killed while the job runs, the restart polls the same job to its end. */
	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"route\": \"jobs-detail\", "
					   "\"action\": \"latency\", \"latency\": 0.3}], "
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	start_daemon();
	drop_image_case(alg_dir, "k3", 1000);
	wait_state("k3", "submitted running", WAIT_MS);
	ck_assert_int_eq(fakegc_set_faults(fg, "{\"limits\": {\"min_part_size\": 1}}"), 0);
	kill_and_finish("k3");
	ck_assert_int_eq(requests_now("POST", "/algorithms/jobs/"), 1);
}
END_TEST

START_TEST(test_kill_during_download)
{
	/* Property: killed while an output downloads, the restart rewrites it: complete, one copy. */
	struct req_want w = {"GET", "/media/", 1};

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"route\": \"media-civ\", "
					   "\"action\": \"latency\", \"latency\": 1.5, "
					   "\"count\": 1}], \"limits\": {\"min_part_size\": 1}}"),
			 0);
	start_daemon();
	drop_image_case(alg_dir, "k4", 1000);
	ck_assert(tu_wait_until(requests_seen, &w, WAIT_MS));
	kill_and_finish("k4");
	ck_assert_int_eq(requests_now("POST", "/algorithms/jobs/"), 1);
}
END_TEST

/* ---- recovery without an upload session ---- */

/*
 * The emulator again, with the built-in fixtures plus "value-file-algorithm":
 * case-metadata (Value) alone, or with results-json-file (File), in; a lung
 * volume out. Jobs of it have no upload session, so a lost create is found
 * again without one (jobs.h: the duplicate refusal, or the algorithm's jobs).
 */
static void
restart_emulator_with_value_algorithm(void)
{
	struct fakegc_opts o = {.tls = true, .tick = 0.05, .min_part_size = 1};
	char *def = tu_strdupf("%s/fakegc/default-fixtures.json", getenv("GCDROP_TEST_DATA"));
	char *text = tu_read_file(def, NULL), *out, *path;
	cJSON *fx = text != NULL ? cJSON_Parse(text) : NULL;
	cJSON *alg = cJSON_Parse(
		"{\"slug\": \"value-file-algorithm\", \"title\": \"Value File Algorithm\", "
		"\"interfaces\": [{\"inputs\": [\"case-metadata\"], "
		"\"outputs\": [\"lung-volume\"]}, "
		"{\"inputs\": [\"case-metadata\", \"results-json-file\"], "
		"\"outputs\": [\"lung-volume\"]}], \"outputs\": {\"lung-volume\": 42.5}}");

	ck_assert_msg(fx != NULL, "cannot read '%s'", def);
	cJSON_AddItemToArray(cJSON_GetObjectItem(fx, "algorithms"), alg);
	out = cJSON_Print(fx);
	path = tu_strdupf("%s/fixtures.json", dir);
	tu_write_file(path, out, -1, 0644);
	fakegc_stop(fg);
	o.fixtures = path;
	ck_assert_int_eq(fakegc_start(&o, &fg), 0);
	cJSON_Delete(fx);
	cJSON_free(out);
	free(text);
	free(def);
	free(path);
}

static const struct {
	bool with_file;	/* else the value alone: the duplicate refusal is the hint */
	bool kill;	/* SIGKILL while the POST is on the platform; else its answer is cut */
	int posts;	/* POST algorithms/jobs/ requests in the end */
} sessionless[] = {
	{false, true, 2},
	{false, false, 2},
	{true, true, 1},
	{true, false, 1},
};

START_TEST(test_lost_create_without_session)
{
	/*
	 * Property: a job created without an upload session whose creation answer
	 * is lost (the daemon killed while the platform handles the POST, or the
	 * answer cut after the platform created the job) is found again, not
	 * created twice: with only values the second POST is refused as a
	 * duplicate and that refusal leads to the job; with a file input the
	 * algorithm's jobs are searched first and no second POST is sent. Either
	 * way: exactly one job, the case succeeded, its output written. The
	 * file's import takes 100 ticks (5 s), so the daemon that looks for the
	 * lost job meets it while it still lists only its value input (the
	 * platform attaches a file input once imported): it must wait for the
	 * job to validate instead of taking it for another and creating one
	 * (with the default 1 tick this was a race that CI lost under TSan).
	 */
	char *vf_dir = tu_strdupf("%s/in-vf", dir);
	char *results = tu_strdupf("%s/results-vf", dir);
	char *stage = tu_strdupf("%s/stage-v1", dir), *f, *watches;
	struct req_want w = {"POST", "/algorithms/jobs/", 1};
	cJSON *st, *job, *in;
	int n_in = 0;

	restart_emulator_with_value_algorithm();
	ck_assert_int_eq(mkdir(vf_dir, 0755), 0);
	watches = tu_strdupf(",{ name = \"vf\"; path = \"%s\"; algorithm = "
			     "\"value-file-algorithm\";\n   settle_seconds = 1; "
			     "results_dir = \"%s\"; }\n", vf_dir, results);
	write_conf2("", watches);
	free(watches);
	ck_assert_int_eq(fakegc_set_faults(
		fg, sessionless[_i].kill ?
		"{\"rules\": [{\"route\": \"POST /api/v1/algorithms/jobs/\", \"action\": "
		"\"latency\", \"latency\": 1.5, \"count\": 1}], "
		"\"file_import_ticks\": 100, \"limits\": {\"min_part_size\": 1}}" :
		"{\"rules\": [{\"route\": \"POST /api/v1/algorithms/jobs/\", \"action\": "
		"\"truncate\", \"count\": 1}], \"file_import_ticks\": 100, "
		"\"limits\": {\"min_part_size\": 1}}"), 0);
	ck_assert_int_eq(mkdir(stage, 0755), 0);
	f = tu_strdupf("%s/case-metadata.json", stage);
	tu_write_file(f, "{\"site\": \"V\", \"n\": 7}", -1, 0644);
	free(f);
	if (sessionless[_i].with_file) {
		f = tu_strdupf("%s/results-json-file.json", stage);
		tu_write_file(f, "{\"previous\": [3, 4]}", -1, 0644);
		free(f);
	}
	start_daemon();
	f = tu_strdupf("%s/v1", vf_dir);
	ck_assert_int_eq(rename(stage, f), 0);
	free(f);
	ck_assert(tu_wait_until(requests_seen, &w, WAIT_MS));
	if (sessionless[_i].kill) {
		stop_daemon(SIGKILL);
		/* The platform finishes the request the dead client sent. */
		ck_assert(tu_wait_until(job_exists, NULL, 10000));
		{
			/* The answer was never recorded: the queue knows no job. */
			char *cs = case_state("v1");

			ck_assert_msg(strstr("submitted running succeeded", cs) == NULL,
				      "state %s", cs);
			free(cs);
		}
		start_daemon();
	}
	wait_state("v1", "succeeded", WAIT_MS);
	ck_assert_int_eq(n_jobs(), 1);
	ck_assert_int_eq(requests_now("POST", "/algorithms/jobs/"), sessionless[_i].posts);
	ck_assert_int_eq(requests_now("POST", "/upload-sessions/"), 0);
	assert_outputs(results, "v1");
	st = fakegc_state(fg);
	job = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "jobs"), 0);
	cJSON_ArrayForEach(in, cJSON_GetObjectItem(job, "inputs"))
		n_in++;
	ck_assert_int_eq(n_in, sessionless[_i].with_file ? 2 : 1);
	cJSON_Delete(st);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
	free(vf_dir);
	free(results);
	free(stage);
}
END_TEST

/* How often s occurs in the daemon's log (all runs: the log is appended to). */
static int
log_count(const char *s)
{
	return tu_count_in_file(log_path, s);
}

static bool
log_has_timeout(void *ud)
{
	(void)ud;
	return log_has("after job_timeout");
}

static bool
clock_past(void *ud)
{
	return tu_now_ms() >= *(long long *)ud;
}

#define JOB_TIMEOUT_S 10

START_TEST(test_timeout_across_restart)
{
	/*
	 * Property: job_timeout counts from the job's submission, kept in the queue,
	 * not from the daemon's start. A job the platform leaves Executing for good
	 * (the emulator's "stall" fault) is submitted, the daemon is killed before
	 * the timeout and stays down past it; restarted, it reports the job at its
	 * first poll (well before JOB_TIMEOUT_S after the restart, when a timer
	 * started at start-up would fire), leaves it to the operator (the case
	 * stays running with the report as its error, no second job, nothing
	 * failed), and a further restart does not report it again.
	 */
	struct req_want w = {"POST", "/algorithms/jobs/", 1};
	long long posted, until, restarted, reported;
	int polls;
	cJSON *root, *c;
	const char *err;
	char *extra = tu_strdupf("job_timeout = %d;", JOB_TIMEOUT_S);

	write_conf(extra);
	free(extra);
	ck_assert_int_eq(fakegc_set_faults(fg, "{\"jobs\": [{\"count\": 1, \"algorithm\": "
					   "\"demo-algorithm\", \"stall\": \"Executing\"}], "
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	start_daemon();
	drop_image_case(alg_dir, "t1", 1000);
	ck_assert(tu_wait_until(requests_seen, &w, WAIT_MS));
	posted = tu_now_ms();	/* the job was submitted before this */
	wait_state("t1", "running", WAIT_MS);
	stop_daemon(SIGKILL);
	ck_assert_msg(tu_now_ms() - posted < JOB_TIMEOUT_S * 1000 - 1000,
		      "the machine is too slow for this test's timing");
	ck_assert(!log_has("after job_timeout"));

	/* Down past the job's deadline (the daemon being down is the point here). */
	until = posted + JOB_TIMEOUT_S * 1000 + 1500;
	ck_assert(tu_wait_until(clock_past, &until, JOB_TIMEOUT_S * 1000 + 5000));
	restarted = tu_now_ms();
	start_daemon();
	ck_assert_msg(tu_wait_until(log_has_timeout, NULL, JOB_TIMEOUT_S * 1000 - 2000),
		      "no timeout report within %d s of the restart", JOB_TIMEOUT_S - 2);
	reported = tu_now_ms();
	fprintf(stderr, "e2e_algorithm: timeout reported %lld ms after the restart, %lld ms "
		"after the job was created\n", reported - restarted, reported - posted);
	ck_assert_int_ge(reported - posted, JOB_TIMEOUT_S * 1000);
	/* Reported, left for the operator: still running, one job, not failed or retried. */
	root = status_json();
	c = find_case(root, "t1");
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(c, "state")), "running");
	err = cJSON_GetStringValue(cJSON_GetObjectItem(c, "error"));
	ck_assert_msg(err != NULL && strstr(err, "after job_timeout") != NULL &&
		      strstr(err, "left to the operator") != NULL, "error: %s", err ? err : "null");
	cJSON_Delete(root);
	ck_assert_int_eq(n_jobs(), 1);
	ck_assert_int_eq(requests_now("POST", "/algorithms/jobs/"), 1);
	ck_assert_int_eq(log_count("after job_timeout"), 1);

	/* Restarted once more: the job is polled again, the report is not repeated. */
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
	polls = requests_now("GET", "/algorithms/jobs/{pk}/");
	start_daemon();
	{
		struct req_want again = {"GET", "/algorithms/jobs/{pk}/", polls + 1};

		ck_assert(tu_wait_until(requests_seen, &again, WAIT_MS));
	}
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
	ck_assert_int_eq(log_count("after job_timeout"), 1);
	{
		char *st = case_state("t1");

		ck_assert_str_eq(st, "running");
		free(st);
	}
}
END_TEST

static Suite *
e2e_suite(void)
{
	Suite *s = suite_create("e2e_algorithm");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_image_case);
	tcase_add_test(tc, test_multi_input);
	tcase_add_test(tc, test_job_fails);
	tcase_add_test(tc, test_job_limit);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_kill_after_uploads);
	tcase_add_test(tc, test_kill_after_create);
	tcase_add_test(tc, test_kill_during_polling);
	tcase_add_test(tc, test_kill_during_download);
	tcase_add_test(tc, test_timeout_across_restart);
	tcase_add_loop_test(tc, test_lost_create_without_session, 0,
			    (int)(sizeof(sessionless) / sizeof(sessionless[0])));
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(e2e_suite());
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	return failed == 0 ? 0 : 1;
}
