/*
 * check_pipeline.c: the pipeline (src/pipeline.c, dest.c, results.c) against the emulator.
 *
 * Each test writes a configuration with an archive watch and a reader-study
 * watch, opens a real store, queues cases the way the daemon does (scan_case,
 * store_case_insert) and runs the pipeline in a small loop of its own (poll on
 * its eventfd, pipeline_tick) until the cases are terminal or a deadline
 * passes. The emulator runs plain HTTP on loopback with 64 KiB parts allowed.
 *
 * core: an archive case and a reader-study case end as exactly one item each
 * with their values, byte-identical uploads, a receipt and the move; titles.
 * errors: a case that cannot be mapped uploads nothing; a failed import fails
 * the case with the platform's message.
 * recovery: a lost answer to the item POST is reconciled by title (one item);
 * 5xx and 429 faults on every route still end in success; a pipeline freed
 * mid-upload and started again finishes without a second upload.
 * results: free target names, the cross-device move, atomic receipts.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "config.h"
#include "fakegc-client.h"
#include "http.h"
#include "log.h"
#include "pipeline.h"
#include "results.h"
#include "scan.h"
#include "sha256.h"
#include "store.h"
#include "testutil.h"

#define PART ((int64_t)64 << 10)

static const char MHA_HEAD[] = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 1\n"
			       "ElementSpacing = 1 1 1\nElementType = MET_UCHAR\n"
			       "ElementDataFile = LOCAL\n";

static struct fakegc *fg;
static struct config *cfg;
static struct store *S;
static struct pipeline *P;
static char *tmp;

static void
write_config(const char *extra_archive)
{
	char *path = tu_strdupf("%s/gcdrop.conf", tmp);
	char *tok = tu_strdupf("%s/token", tmp);
	char *text, *msg = NULL;

	tu_write_file(tok, fakegc_token(fg), -1, 0600);
	text = tu_strdupf(
		"api_url = \"%s\";\ntoken_file = \"%s\";\nstate_dir = \"%s/state\";\n"
		"workers = 4;\nmax_attempts = 4;\nlog_level = \"debug\";\n"
		"watches = (\n"
		" { name = \"arch\"; path = \"%s/in-a\"; archive = \"demo-archive\";\n"
		"   results_dir = \"%s/results\"; on_success = \"move\"; done_dir = \"%s/done\";\n"
		"   on_failure = \"move\"; failed_dir = \"%s/failed\"; %s },\n"
		" { name = \"study\"; path = \"%s/in-s\"; reader_study = \"demo-reader-study\"; }\n"
		");\n",
		fakegc_api_url(fg), tok, tmp, tmp, tmp, tmp, tmp, extra_archive ? extra_archive : "",
		tmp);
	tu_write_file(path, text, -1, 0644);
	config_free(cfg);
	cfg = NULL;
	ck_assert_msg(config_load(path, 0, &cfg, &msg) == 0, "%s", msg ? msg : "");
	free(text);
	free(path);
	free(tok);
}

static void
start_pipeline(void)
{
	struct pipeline_opts o = {
		.part_size = PART,
		.poll_base_ms = 50,
		.poll_cap_ms = 400,
		.import_timeout_s = 20,
		.retry_base_ms = 50,
		.retry_cap_ms = 500,
	};
	char *msg = NULL;

	ck_assert_msg(pipeline_new(cfg, S, &o, &P, &msg) == 0, "%s", msg ? msg : "");
}

static void
setup_with(const char *faults)
{
	struct fakegc_opts o = {.tick = 0.05, .min_part_size = 1, .faults = faults};
	char *msg = NULL, *d;

	log_init(LOG_MODE_STDERR, LOG_DEBUG);
	tmp = tu_mkdtemp("check_pipeline");
	ck_assert_int_eq(fakegc_start(&o, &fg), 0);
	for (const char *const *n = (const char *const[]){"in-a", "in-s", "state", NULL}; *n; n++) {
		d = tu_strdupf("%s/%s", tmp, *n);
		ck_assert_int_eq(mkdir(d, 0755), 0);
		free(d);
	}
	write_config(NULL);
	d = tu_strdupf("%s/state", tmp);
	ck_assert_msg(store_open(d, 0, &S, &msg) == 0, "%s", msg ? msg : "");
	free(d);
	start_pipeline();
}

static void
setup(void)
{
	setup_with(NULL);
}

static void
teardown(void)
{
	P = pipeline_free(P);
	store_close(S);
	config_free(cfg);
	cfg = NULL;
	fakegc_stop(fg);
	tu_rmtree(tmp);
	free(tmp);
}

/* Write an importable .mha of about 'size' bytes. */
static void
write_mha(const char *path, size_t size, unsigned seed)
{
	size_t head = strlen(MHA_HEAD);
	char *data = malloc(size + head + 4);

	memcpy(data, MHA_HEAD, head);
	for (size_t i = head; i < size + head; i++) {
		seed = seed * 1103515245 + 12345;
		data[i] = (char)(seed >> 16);
	}
	tu_write_file(path, data, (ssize_t)(size + head), 0644);
	free(data);
}

/* Queue the case 'name' of watch 'watch' (folder 'dir') as the daemon does. */
static int64_t
queue_case(const char *watch, const char *dir, const char *name)
{
	char *root = tu_strdupf("%s/%s", tmp, dir);
	char *path = tu_strdupf("%s/%s", root, name);
	struct scan_result res = {0};
	struct store_case_new cn = {0};
	struct store_file *files;
	char *msg = NULL;
	int64_t id;

	ck_assert_msg(scan_case(AT_FDCWD, root, name, NULL, &res, &msg) == 0, "%s", msg ? msg : "");
	files = calloc(res.n, sizeof(*files));
	for (size_t i = 0; i < res.n; i++) {
		files[i].relpath = res.entries[i].relpath;
		files[i].size = res.entries[i].size;
		files[i].mtime_ns = res.entries[i].mtime_ns;
	}
	cn.watch = watch;
	cn.name = name;
	cn.path = path;
	cn.fingerprint = res.fingerprint;
	cn.state = STORE_QUEUED;
	cn.files = files;
	cn.n_files = res.n;
	ck_assert_int_eq(store_case_insert(S, &cn, &id), 0);
	free(files);
	scan_result_clear(&res);
	free(root);
	free(path);
	pipeline_kick(P);
	return id;
}

static enum store_state
state_of(int64_t id)
{
	struct store_case c = {0};
	enum store_state st;

	ck_assert_int_eq(store_case_get(S, id, &c), 0);
	st = c.state;
	store_case_clear(&c);
	return st;
}

/* Run the pipeline until every case in ids[] is terminal, or timeout_ms. */
static bool
run_until_done(const int64_t *ids, size_t n, int timeout_ms)
{
	long long deadline = tu_now_ms() + timeout_ms;

	for (;;) {
		int64_t now = backoff_now_ms();
		int64_t next = pipeline_next_deadline(P, now);
		struct pollfd pfd = {.fd = pipeline_eventfd(P), .events = POLLIN};
		bool all = true;
		long long wait;

		for (size_t i = 0; i < n; i++)
			all = all && store_state_is_terminal(state_of(ids[i]));
		if (all)
			return true;
		if (tu_now_ms() >= deadline)
			return false;
		wait = next - now;
		if (wait > 100)
			wait = 100;
		if (wait < 0)
			wait = 0;
		(void)poll(&pfd, 1, (int)wait);
		pipeline_tick(P, backoff_now_ms());
	}
}

/* Run until the pipeline has sent at least 'parts' parts. */
static void
run_until_parts(uint64_t parts, int timeout_ms)
{
	long long deadline = tu_now_ms() + timeout_ms;
	struct pipeline_stats st;

	for (;;) {
		struct pollfd pfd = {.fd = pipeline_eventfd(P), .events = POLLIN};

		pipeline_get_stats(P, &st);
		if (st.parts_sent >= parts)
			return;
		ck_assert_msg(tu_now_ms() < deadline, "no progress");
		(void)poll(&pfd, 1, 20);
		pipeline_tick(P, backoff_now_ms());
	}
}

static cJSON *
find_by(cJSON *arr, const char *key, const char *value)
{
	cJSON *x;

	cJSON_ArrayForEach(x, arr) {
		const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(x, key));

		if (v != NULL && strcmp(v, value) == 0)
			return x;
	}
	return NULL;
}

static char *
error_of(int64_t id)
{
	struct store_case c = {0};
	char *e;

	ck_assert_int_eq(store_case_get(S, id, &c), 0);
	e = c.error != NULL ? strdup(c.error) : NULL;
	store_case_clear(&c);
	return e;
}

/* A directory case of two images, one of several parts, and a Value socket file. */
static void
make_archive_case(const char *name)
{
	char *d = tu_strdupf("%s/in-a/%s", tmp, name);
	char *f;

	ck_assert_int_eq(mkdir(d, 0755), 0);
	f = tu_strdupf("%s/scan.mha", d);
	write_mha(f, 3 * PART + 999, 7);
	free(f);
	free(d);
}

START_TEST(test_title)
{
	char *t = pipeline_title("w", "case", "0123456789abcdef");
	char *long_name = malloc(400);
	char *u;

	ck_assert_str_eq(t, "w/case/0123456789ab");
	free(t);
	t = pipeline_title("w", "ca\nse\xff", "0123456789abcdef");
	ck_assert_str_eq(t, "w/ca_se_/0123456789ab");
	free(t);
	memset(long_name, 'x', 399);
	long_name[399] = '\0';
	t = pipeline_title("w", long_name, "0123456789abcdef");
	ck_assert_uint_le(strlen(t), 255);
	ck_assert_str_eq(t + strlen(t) - 13, "/0123456789ab");
	u = pipeline_title("w", long_name, "0123456789abcdef");
	ck_assert_str_eq(t, u);	/* stable */
	free(t);
	free(u);
	free(long_name);
}
END_TEST

START_TEST(test_archive_case)
{
	/* Assumptions: one directory case -> one archive item with the image, moved to done. */
	int64_t id;
	cJSON *st, *items, *item, *u;
	char *receipt, *done, *scan_path;
	char sha[SHA256_HEX_SIZE], mtime[64];
	struct stat sb;

	make_archive_case("c1");
	scan_path = tu_strdupf("%s/in-a/c1/scan.mha", tmp);
	ck_assert_int_eq(sha256_file(AT_FDCWD, scan_path, sha), 0);
	/* The receipt names the file's size and mtime, what the upload was checked against. */
	ck_assert_int_eq(stat(scan_path, &sb), 0);
	{
		struct tm tm;
		size_t n;

		ck_assert_ptr_nonnull(gmtime_r(&sb.st_mtim.tv_sec, &tm));
		n = strftime(mtime, sizeof(mtime), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(mtime + n, sizeof(mtime) - n, ".%09ldZ", (long)sb.st_mtim.tv_nsec);
	}
	id = queue_case("arch", "in-a", "c1");
	ck_assert_msg(run_until_done(&id, 1, 30000), "case not finished");
	ck_assert_int_eq(state_of(id), STORE_SUCCEEDED);
	st = fakegc_state(fg);
	items = cJSON_GetObjectItem(st, "archive_items");
	ck_assert_int_eq(cJSON_GetArraySize(items), 1);
	item = cJSON_GetArrayItem(items, 0);
	ck_assert_int_eq(strncmp(cJSON_GetStringValue(cJSON_GetObjectItem(item, "title")),
				 "arch/c1/", 8), 0);
	ck_assert_ptr_nonnull(find_by(cJSON_GetObjectItem(item, "values"), "interface",
				      "generic-medical-image"));
	/* Every upload byte-identical and one upload for the one file. */
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "uploads")), 1);
	u = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "uploads"), 0);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(u, "sha256")), sha);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "leaks")), 0);
	cJSON_Delete(st);
	/* Moved, with the receipt in results_dir. */
	done = tu_strdupf("%s/done/c1/scan.mha", tmp);
	ck_assert_int_eq(access(done, F_OK), 0);
	ck_assert_int_ne(access(scan_path, F_OK), 0);
	receipt = tu_strdupf("%s/results/c1/gcdrop-receipt.json", tmp);
	{
		char *text = tu_read_file(receipt, NULL);
		cJSON *j = cJSON_Parse(text);
		cJSON *f;

		ck_assert_ptr_nonnull(j);
		ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(j, "state")), "succeeded");
		f = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "files"), 0);
		ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(f, "mtime")), mtime);
		ck_assert_int_eq((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(f, "size")),
				 (int64_t)sb.st_size);
		ck_assert_ptr_null(cJSON_GetObjectItem(f, "sha256"));
		ck_assert_ptr_nonnull(find_by(cJSON_GetObjectItem(j, "remote"), "kind",
					      "archive-item"));
		cJSON_Delete(j);
		free(text);
	}
	free(receipt);
	free(done);
	free(scan_path);
}
END_TEST

START_TEST(test_reader_study_case)
{
	/* Assumptions: a one-file case with a static value -> one display set with both. */
	char *f = tu_strdupf("%s/in-s/one.mha", tmp);
	int64_t id;
	cJSON *st, *ds;

	write_mha(f, 1000, 3);
	id = queue_case("study", "in-s", "one.mha");
	ck_assert_msg(run_until_done(&id, 1, 30000), "case not finished");
	ck_assert_int_eq(state_of(id), STORE_SUCCEEDED);
	st = fakegc_state(fg);
	ds = cJSON_GetObjectItem(st, "display_sets");
	ck_assert_int_eq(cJSON_GetArraySize(ds), 1);
	ck_assert_ptr_nonnull(find_by(cJSON_GetObjectItem(cJSON_GetArrayItem(ds, 0), "values"),
				      "interface", "generic-medical-image"));
	cJSON_Delete(st);
	/* keep: the case stays. */
	ck_assert_int_eq(access(f, F_OK), 0);
	free(f);
}
END_TEST

START_TEST(test_many_files)
{
	/* Assumptions: 150 DICOM-like files (> 100): user_uploads, one item, no error text. */
	char *d = tu_strdupf("%s/in-a/dcm", tmp);
	int64_t id;
	cJSON *st;

	ck_assert_int_eq(mkdir(d, 0755), 0);
	for (int i = 0; i < 150; i++) {
		char *f = tu_strdupf("%s/IM%04d.dcm", d, i);

		tu_write_file(f, "DICM-ish", -1, 0644);
		free(f);
	}
	id = queue_case("arch", "in-a", "dcm");
	ck_assert_msg(run_until_done(&id, 1, 60000), "case not finished");
	ck_assert_int_eq(state_of(id), STORE_SUCCEEDED);
	st = fakegc_state(fg);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "archive_items")), 1);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "uploads")), 150);
	cJSON_Delete(st);
	free(d);
}
END_TEST

START_TEST(test_unmappable)
{
	/* Assumptions: a stray entry next to a socket-named one fails at once, nothing uploaded. */
	char *d = tu_strdupf("%s/in-a/bad", tmp);
	char *f;
	int64_t id;
	cJSON *st;
	char *err;

	ck_assert_int_eq(mkdir(d, 0755), 0);
	f = tu_strdupf("%s/lung-volume.json", d);
	tu_write_file(f, "{not json", -1, 0644);
	free(f);
	id = queue_case("arch", "in-a", "bad");
	ck_assert(run_until_done(&id, 1, 20000));
	ck_assert_int_eq(state_of(id), STORE_FAILED);
	err = error_of(id);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, "lung-volume"));
	st = fakegc_state(fg);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "uploads")), 0);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "archive_items")), 0);
	cJSON_Delete(st);
	/* on_failure = move */
	f = tu_strdupf("%s/failed/bad/lung-volume.json", tmp);
	ck_assert_int_eq(access(f, F_OK), 0);
	free(f);
	free(err);
	free(d);
}
END_TEST

START_TEST(test_import_fails)
{
	/* Assumptions: the platform's import error ends the case failed with its message. */
	int64_t id;
	char *err;

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"imports\": [{\"count\": 5, \"filename\": "
					   "\"scan\", \"error\": \"Image too odd to import\"}],"
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	make_archive_case("c2");
	id = queue_case("arch", "in-a", "c2");
	ck_assert(run_until_done(&id, 1, 30000));
	ck_assert_int_eq(state_of(id), STORE_FAILED);
	err = error_of(id);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, "Image too odd to import") != NULL, "error: %s", err);
	free(err);
}
END_TEST

START_TEST(test_item_post_lost)
{
	/* Assumptions: the POST creates the item but its answer is cut: found by title, one item. */
	int64_t id;
	cJSON *st;

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"route\": \"POST /api/v1/archives/items/\","
					   " \"action\": \"truncate\", \"count\": 1}],"
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	make_archive_case("c3");
	id = queue_case("arch", "in-a", "c3");
	ck_assert(run_until_done(&id, 1, 30000));
	ck_assert_int_eq(state_of(id), STORE_SUCCEEDED);
	st = fakegc_state(fg);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "archive_items")), 1);
	{
		cJSON *f = cJSON_GetObjectItem(st, "faults"), *x;
		char *s = cJSON_PrintUnformatted(f);

		(void)x;
		ck_assert_msg(strstr(s, "\"hits\":1") != NULL || strstr(s, "\"hits\": 1") != NULL,
			      "the fault was not hit: %s", s);
		free(s);
	}
	cJSON_Delete(st);
}
END_TEST

START_TEST(test_faults_still_succeed)
{
	/* Assumptions: 20 % 503 and some 429 everywhere: both cases still succeed, one item each. */
	int64_t ids[2];
	cJSON *st;

	ck_assert_int_eq(fakegc_set_faults(fg,
		"{\"seed\": 3, \"rules\": ["
		" {\"route\": \"/api/v1/\", \"status\": 503, \"fraction\": 0.2},"
		" {\"route\": \"s3-put\", \"status\": 500, \"fraction\": 0.2},"
		" {\"route\": \"uploads-presign\", \"status\": 429, \"retry_after\": 1, \"count\": 2}],"
		" \"limits\": {\"min_part_size\": 1}}"), 0);
	make_archive_case("c4");
	{
		char *f = tu_strdupf("%s/in-s/two.mha", tmp);

		write_mha(f, 2 * PART + 10, 9);
		free(f);
	}
	ids[0] = queue_case("arch", "in-a", "c4");
	ids[1] = queue_case("study", "in-s", "two.mha");
	ck_assert(run_until_done(ids, 2, 90000));
	ck_assert_int_eq(state_of(ids[0]), STORE_SUCCEEDED);
	ck_assert_int_eq(state_of(ids[1]), STORE_SUCCEEDED);
	st = fakegc_state(fg);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "archive_items")), 1);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "display_sets")), 1);
	cJSON_Delete(st);
}
END_TEST

START_TEST(test_restart_mid_upload)
{
	/* Assumptions: the pipeline dropped after some parts resumes the same upload. */
	int64_t id;
	cJSON *st;
	char *d = tu_strdupf("%s/in-a/big", tmp);
	char *f = tu_strdupf("%s/big.mha", d);

	ck_assert_int_eq(mkdir(d, 0755), 0);
	write_mha(f, 40 * PART, 11);
	id = queue_case("arch", "in-a", "big");
	run_until_parts(5, 30000);
	/* A crash: no memory state survives (stop cancels what is in flight). */
	P = pipeline_free(P);
	start_pipeline();
	ck_assert(run_until_done(&id, 1, 60000));
	ck_assert_int_eq(state_of(id), STORE_SUCCEEDED);
	st = fakegc_state(fg);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "uploads")), 1);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "archive_items")), 1);
	cJSON_Delete(st);
	free(f);
	free(d);
}
END_TEST

START_TEST(test_changed_case)
{
	/* Assumptions: a case changed after it was queued fails with "changed", no on_failure move. */
	int64_t id;
	char *f, *err;

	make_archive_case("c5");
	id = queue_case("arch", "in-a", "c5");
	f = tu_strdupf("%s/in-a/c5/extra.mha", tmp);
	write_mha(f, 10, 1);
	ck_assert(run_until_done(&id, 1, 20000));
	ck_assert_int_eq(state_of(id), STORE_FAILED);
	err = error_of(id);
	ck_assert_ptr_nonnull(strstr(err, "changed"));
	ck_assert_int_eq(access(f, F_OK), 0);	/* not moved */
	free(err);
	free(f);
}
END_TEST

/* ---- results ---- */

START_TEST(test_free_target)
{
	char *t = tu_mkdtemp("results");
	char *p, *q;

	ck_assert_int_eq(results_free_target(t, "scan.nii.gz", &p), 0);
	q = tu_strdupf("%s/scan.nii.gz", t);
	ck_assert_str_eq(p, q);
	tu_write_file(p, "x", -1, 0644);
	free(p);
	free(q);
	ck_assert_int_eq(results_free_target(t, "scan.nii.gz", &p), 0);
	q = tu_strdupf("%s/scan-1.nii.gz", t);
	ck_assert_str_eq(p, q);
	free(p);
	free(q);
	ck_assert_int_eq(results_free_target(t, ".hidden", &p), 0);
	free(p);
	tu_rmtree(t);
	free(t);
}
END_TEST

START_TEST(test_move_copy)
{
	/* Assumptions: the copy path (as across devices) keeps every byte and never overwrites. */
	char *t = tu_mkdtemp("results");
	char *src = tu_strdupf("%s/src", t), *sub = tu_strdupf("%s/src/sub", t);
	char *f = tu_strdupf("%s/src/sub/a.txt", t), *dst = tu_strdupf("%s/out/dst", t);
	char *g = tu_strdupf("%s/out/dst/sub/a.txt", t), *lnk = tu_strdupf("%s/src/l", t);
	char *msg = NULL;
	char *text;

	ck_assert_int_eq(mkdir(src, 0755), 0);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	tu_write_file(f, "hello", -1, 0600);
	ck_assert_int_eq(symlink("sub/a.txt", lnk), 0);
	ck_assert_int_eq(results_move(src, dst, true, &msg), 0);
	text = tu_read_file(g, NULL);
	ck_assert_str_eq(text, "hello");
	free(text);
	ck_assert_int_ne(access(src, F_OK), 0);
	/* Never overwrite. */
	ck_assert_int_eq(mkdir(src, 0755), 0);
	ck_assert_int_eq(results_move(src, dst, false, &msg), -EEXIST);
	ck_assert_int_eq(results_move(src, dst, true, &msg), -EEXIST);
	ck_assert_int_eq(results_delete(dst), 0);
	ck_assert_int_ne(access(dst, F_OK), 0);
	tu_rmtree(t);
	free(t);
	free(src);
	free(sub);
	free(f);
	free(dst);
	free(g);
	free(lnk);
}
END_TEST

START_TEST(test_atomic_receipt)
{
	/* Assumptions: the receipt replaces an old one whole; no temporary file stays. */
	char *t = tu_mkdtemp("results");
	char *d = tu_strdupf("%s/a/b", t), *p = tu_strdupf("%s/a/b/r.json", t);
	char *text;
	int n = 0;

	ck_assert_int_eq(results_write_atomic(d, "r.json", "{\"v\": 1}", 8), 0);
	ck_assert_int_eq(results_write_atomic(d, "r.json", "{\"v\": 2}", 8), 0);
	text = tu_read_file(p, NULL);
	ck_assert_str_eq(text, "{\"v\": 2}");
	free(text);
	{
		char *cmd = tu_strdupf("ls -A %s | wc -l > %s/n", d, t);
		char *np = tu_strdupf("%s/n", t);

		ck_assert_int_eq(system(cmd), 0);
		text = tu_read_file(np, NULL);
		n = atoi(text);
		free(text);
		free(cmd);
		free(np);
	}
	ck_assert_int_eq(n, 1);
	tu_rmtree(t);
	free(t);
	free(d);
	free(p);
}
END_TEST

static Suite *
pipeline_suite(void)
{
	Suite *s = suite_create("pipeline");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_test(tc, test_title);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_archive_case);
	tcase_add_test(tc, test_reader_study_case);
	tcase_add_test(tc, test_many_files);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_unmappable);
	tcase_add_test(tc, test_import_fails);
	tcase_add_test(tc, test_changed_case);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_item_post_lost);
	tcase_add_test(tc, test_faults_still_succeed);
	tcase_add_test(tc, test_restart_mid_upload);
	tcase_set_timeout(tc, 180);
	suite_add_tcase(s, tc);

	tc = tcase_create("results");
	tcase_add_test(tc, test_free_target);
	tcase_add_test(tc, test_move_copy);
	tcase_add_test(tc, test_atomic_receipt);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(pipeline_suite());
	int failed;

	if (http_global_init() < 0)
		return 1;
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	http_global_cleanup();
	return failed == 0 ? 0 : 1;
}
