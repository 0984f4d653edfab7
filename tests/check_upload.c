/*
 * check_upload.c: tests of the multipart upload state machine (src/upload.c).
 *
 * The tests drive a struct upload_file by hand, running each op it hands out
 * synchronously against the platform emulator (plain HTTP on loopback, parts
 * of 64 KiB, the emulator's minimum part size lowered to match), and record
 * results in a real store. A "crash" is simulated by throwing the in-memory
 * state away at a chosen step and rebuilding it from the store alone; the
 * emulator's state then shows whether any upload was duplicated and whether
 * the assembled bytes are the file's.
 *
 * core: part-size table; a file of several parts, byte-identical.
 * recovery: a crash after create, after some parts, after all parts, after
 * complete; an upload the platform expired; a complete that failed.
 * errors: a file that changes mid-upload, a file that vanishes.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "fakegc-client.h"
#include "http.h"
#include "pipeline.h"
#include "sha256.h"
#include "store.h"
#include "testutil.h"
#include "upload.h"

#define PART ((int64_t)64 << 10)

static struct fakegc *fg;
static struct http *H;
static struct api *A;
static struct store *S;
static char *tmp;

static void
setup(void)
{
	struct fakegc_opts o = {.tick = 0.05, .min_part_size = 1};
	struct http_opts ho = {0};
	char *auth, *msg = NULL;

	tmp = tu_mkdtemp("check_upload");
	ck_assert_int_eq(fakegc_start(&o, &fg), 0);
	auth = tu_strdupf("Bearer %s", fakegc_token(fg));
	ho.api_url = fakegc_api_url(fg);
	ho.authorization = auth;
	H = http_new(&ho);
	ck_assert_ptr_nonnull(H);
	A = api_new(H, fakegc_api_url(fg));
	ck_assert_ptr_nonnull(A);
	free(auth);
	ck_assert_msg(store_open(tmp, 0, &S, &msg) == 0, "%s", msg ? msg : "");
}

static void
teardown(void)
{
	store_close(S);
	api_free(A);
	http_free(H);
	fakegc_stop(fg);
	tu_rmtree(tmp);
	free(tmp);
}

/* Write a file of 'size' pseudo-random bytes; returns its path. */
static char *
make_file(const char *name, int64_t size, unsigned seed)
{
	char *path = tu_strdupf("%s/%s", tmp, name);
	char *data = malloc((size_t)size + 1);

	for (int64_t i = 0; i < size; i++) {
		seed = seed * 1103515245 + 12345;
		data[i] = (char)(seed >> 16);
	}
	tu_write_file(path, data, (ssize_t)size, 0644);
	free(data);
	return path;
}

/* Queue a one-file case for 'path' and return its file row. */
static void
queue_file(const char *path, struct store_file *ret)
{
	struct stat st;
	struct store_file f = {0};
	struct store_case_new cn = {0};
	struct store_file *files = NULL;
	size_t n = 0;
	int64_t id;

	ck_assert_int_eq(stat(path, &st), 0);
	f.relpath = strrchr(path, '/') + 1;
	f.size = st.st_size;
	f.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	cn.watch = "w";
	cn.name = f.relpath;
	cn.path = path;
	cn.fingerprint = "00";
	cn.state = STORE_UPLOADING;
	cn.files = &f;
	cn.n_files = 1;
	ck_assert_int_eq(store_case_insert(S, &cn, &id), 0);
	ck_assert_int_eq(store_file_list(S, id, &files, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(store_file_set_upload_name(S, files[0].id, f.relpath, "generic-medical-image"), 0);
	store_file_list_free(files, n);
	ck_assert_int_eq(store_file_list(S, id, &files, &n), 0);
	*ret = files[0];
	free(files);
}

static void
reload(struct upload_file *uf, const char *path, int64_t file_id)
{
	struct store_file *files = NULL;
	size_t n = 0;
	struct store_case c = {0};

	upload_file_done(uf);
	/* Find the case of the file. */
	for (int64_t id = 1; id < 100; id++) {
		if (store_case_get(S, id, &c) < 0)
			continue;
		store_case_clear(&c);
		ck_assert_int_eq(store_file_list(S, id, &files, &n), 0);
		for (size_t i = 0; i < n; i++)
			if (files[i].id == file_id)
				ck_assert_int_eq(upload_file_init(uf, S, &files[i], path, true, PART), 0);
		store_file_list_free(files, n);
	}
}

/*
 * Run ops until the file is done or 'stop_after' PUTs were recorded, or an
 * event other than progress shows up. Returns the last event.
 */
static enum upload_event
drive(struct upload_file *uf, int stop_after_parts, enum upload_phase stop_phase)
{
	enum upload_event ev = UPLOAD_PROGRESS;
	int parts = 0;

	for (int turn = 0; turn < 10000; turn++) {
		struct pipeline_op *ops = NULL;
		int n;

		if (uf->phase == stop_phase)
			return ev;
		n = upload_file_next(uf, tu_now_ms(), 4, &ops);
		ck_assert_int_ge(n, 0);
		if (n == 0)
			return uf->phase == UPLOAD_DONE ? UPLOAD_FINISHED : ev;
		while (ops != NULL) {
			struct pipeline_op *op = ops;

			ops = op->next;
			upload_op_run(A, op, NULL);
			ev = upload_file_on_done(uf, S, op);
			if (op->kind == PIPELINE_OP_UPLOAD_PUT && ev == UPLOAD_PROGRESS)
				parts++;
			pipeline_op_free(op);
			if (ev == UPLOAD_CHANGED || ev == UPLOAD_FINISHED) {
				while (ops != NULL) {
					op = ops;
					ops = op->next;
					upload_file_forget_op(uf, op);
					pipeline_op_free(op);
				}
				return ev;
			}
			if (stop_after_parts > 0 && parts >= stop_after_parts) {
				while (ops != NULL) {
					op = ops;
					ops = op->next;
					upload_file_forget_op(uf, op);
					pipeline_op_free(op);
				}
				return ev;
			}
		}
	}
	ck_abort_msg("the upload did not finish");
	return ev;
}

/* The emulator's uploads (not deleted), and the one with this pk. */
static int
count_uploads(const char *pk, char ret_sha[SHA256_HEX_SIZE], const char **ret_status)
{
	static char status[32];
	cJSON *st = fakegc_state(fg), *u;
	int n = 0;

	ck_assert_ptr_nonnull(st);
	cJSON_ArrayForEach(u, cJSON_GetObjectItem(st, "uploads")) {
		const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(u, "pk"));

		n++;
		if (pk != NULL && p != NULL && strcmp(p, pk) == 0) {
			const char *sha = cJSON_GetStringValue(cJSON_GetObjectItem(u, "sha256"));

			snprintf(ret_sha, SHA256_HEX_SIZE, "%s", sha != NULL ? sha : "");
			snprintf(status, sizeof(status), "%s",
				 cJSON_GetStringValue(cJSON_GetObjectItem(u, "status")));
			*ret_status = status;
		}
	}
	cJSON_Delete(st);
	return n;
}

static void
assert_uploaded(const struct upload_file *uf, const char *path, int expect_uploads)
{
	char want[SHA256_HEX_SIZE], got[SHA256_HEX_SIZE] = "";
	const char *status = "";

	ck_assert_int_eq(sha256_file(AT_FDCWD, path, want), 0);
	ck_assert_int_eq(uf->phase, UPLOAD_DONE);
	ck_assert_int_eq(count_uploads(uf->up.pk, got, &status), expect_uploads);
	ck_assert_str_eq(status, "Completed");
	ck_assert_str_eq(got, want);
}

START_TEST(test_part_size_table)
{
	/* Assumptions: 32 MiB parts until 10,000 of them do not suffice. */
	static const struct {
		int64_t size, base, want;
		int parts;
	} t[] = {
		{0, 0, 32 << 20, 1},
		{1, 0, 32 << 20, 1},
		{(int64_t)32 << 20, 0, 32 << 20, 1},
		{((int64_t)32 << 20) + 1, 0, 32 << 20, 2},
		{(int64_t)320000 << 20, 0, 32 << 20, 10000},
		{((int64_t)320000 << 20) + 1, 0, 33 << 20, 9697},
		{(int64_t)1 << 40, 0, 105 << 20, 9987},
		{(int64_t)5 << 40, 0, 525 << 20, 9987},
		{1000, 64, 64, 16},
		{640001, 64, 1 << 20, 1},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int64_t ps = upload_part_size(t[i].size, t[i].base);

		ck_assert_msg(ps == t[i].want, "row %zu: %lld != %lld", i, (long long)ps,
			      (long long)t[i].want);
		ck_assert_int_eq(upload_part_count(t[i].size, ps), t[i].parts);
		ck_assert_int_le(upload_part_count(t[i].size, ps), UPLOAD_MAX_PARTS);
	}
}
END_TEST

START_TEST(test_several_parts)
{
	/* Assumptions: 5 parts of 64 KiB and a short last one; byte-identical. */
	char *path = make_file("a.mha", 4 * PART + 1234, 1);
	struct store_file f;
	struct upload_file uf;

	queue_file(path, &f);
	ck_assert_int_eq(upload_file_init(&uf, S, &f, path, true, PART), 0);
	ck_assert_int_eq(uf.n_parts, 5);
	ck_assert_int_eq(drive(&uf, 0, -1), UPLOAD_FINISHED);
	assert_uploaded(&uf, path, 1);
	upload_file_done(&uf);
	store_file_clear(&f);
	free(path);
}
END_TEST

START_TEST(test_empty_file)
{
	/* Assumptions: a 0-byte file goes up as one empty part and completes. */
	char *path = make_file("empty.dat", 0, 1);
	struct store_file f;
	struct upload_file uf;

	queue_file(path, &f);
	ck_assert_int_eq(upload_file_init(&uf, S, &f, path, true, PART), 0);
	ck_assert_int_eq(drive(&uf, 0, -1), UPLOAD_FINISHED);
	assert_uploaded(&uf, path, 1);
	upload_file_done(&uf);
	store_file_clear(&f);
	free(path);
}
END_TEST

/* Crash points of the loop test: 0 after create, 1 after 2 parts, 2 before complete, 3 after. */
START_TEST(test_crash_resume)
{
	char *path = make_file("b.mha", 6 * PART + 77, 2);
	struct store_file f;
	struct upload_file uf;
	char *pk;

	queue_file(path, &f);
	ck_assert_int_eq(upload_file_init(&uf, S, &f, path, true, PART), 0);
	switch (_i) {
	case 0:
		drive(&uf, 0, UPLOAD_PARTS);
		break;
	case 1:
		drive(&uf, 2, -1);
		break;
	case 2:
		drive(&uf, 0, UPLOAD_COMPLETE);
		break;
	default:
		ck_assert_int_eq(drive(&uf, 0, -1), UPLOAD_FINISHED);
		break;
	}
	pk = strdup(uf.up.pk);
	/* The crash: nothing of the memory state survives. */
	reload(&uf, path, f.id);
	ck_assert_str_eq(uf.up.pk, pk);
	ck_assert_int_eq(uf.phase, _i == 3 ? UPLOAD_DONE : UPLOAD_RECONCILE);
	ck_assert_int_eq(drive(&uf, 0, -1), UPLOAD_FINISHED);
	ck_assert_str_eq(uf.up.pk, pk);
	assert_uploaded(&uf, path, 1);
	free(pk);
	upload_file_done(&uf);
	store_file_clear(&f);
	free(path);
}
END_TEST

START_TEST(test_expired_upload)
{
	/* Assumptions: an upload the platform expired is started again, not failed. */
	char *path = make_file("c.mha", 3 * PART, 3);
	struct store_file f;
	struct upload_file uf;
	char *pk;

	queue_file(path, &f);
	ck_assert_int_eq(upload_file_init(&uf, S, &f, path, true, PART), 0);
	drive(&uf, 1, -1);
	pk = strdup(uf.up.pk);
	ck_assert_int_eq(fakegc_set_faults(fg, "{\"limits\": {\"upload_max_age\": 60, "
					   "\"min_part_size\": 1}}"), 0);
	ck_assert_int_eq(fakegc_advance(fg, 120), 0);
	reload(&uf, path, f.id);
	ck_assert_int_eq(drive(&uf, 0, -1), UPLOAD_FINISHED);
	ck_assert_str_ne(uf.up.pk, pk);
	assert_uploaded(&uf, path, 2);	/* the expired one is still listed as deleted */
	free(pk);
	upload_file_done(&uf);
	store_file_clear(&f);
	free(path);
}
END_TEST

START_TEST(test_complete_lost_answer)
{
	/* Assumptions: complete succeeds on the platform but answers 500: GET decides. */
	char *path = make_file("d.mha", 2 * PART + 5, 4);
	struct store_file f;
	struct upload_file uf;
	enum upload_event ev;

	queue_file(path, &f);
	ck_assert_int_eq(fakegc_set_faults(fg, "{\"complete\": {\"count\": 1, \"when\": \"after\"},"
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	ck_assert_int_eq(upload_file_init(&uf, S, &f, path, true, PART), 0);
	/* The 500 makes it GET the upload, which says Completed: done, no second upload. */
	ev = drive(&uf, 0, -1);
	ck_assert_int_eq(ev, UPLOAD_FINISHED);
	assert_uploaded(&uf, path, 1);
	{
		cJSON *st = fakegc_state(fg);
		cJSON *rq = cJSON_GetObjectItem(st, "requests"), *x;
		int gets = 0;

		cJSON_ArrayForEach(x, rq)
			if (strncmp(x->string, "GET ", 4) == 0 && strstr(x->string, "uploads") &&
			    !strstr(x->string, "list-parts"))
				gets += x->valueint;
		ck_assert_int_ge(gets, 1);
		cJSON_Delete(st);
	}
	upload_file_done(&uf);
	store_file_clear(&f);
	free(path);
}
END_TEST

START_TEST(test_changed_mid_upload)
{
	/* Assumptions: a file that grows after two parts is detected; nothing more is sent. */
	char *path = make_file("e.mha", 4 * PART, 5);
	struct store_file f;
	struct upload_file uf;
	struct pipeline_op *ab;
	FILE *fp;

	queue_file(path, &f);
	ck_assert_int_eq(upload_file_init(&uf, S, &f, path, true, PART), 0);
	drive(&uf, 2, -1);
	fp = fopen(path, "a");
	fputs("more", fp);
	fclose(fp);
	ck_assert_int_eq(drive(&uf, 0, -1), UPLOAD_CHANGED);
	ab = upload_file_abort_op(&uf);
	ck_assert_ptr_nonnull(ab);
	upload_op_run(A, ab, NULL);
	ck_assert_int_eq(ab->err.cls, API_OK);
	pipeline_op_free(ab);
	{
		char sha[SHA256_HEX_SIZE];
		const char *st = "";

		count_uploads(uf.up.pk, sha, &st);
		ck_assert_str_eq(st, "Aborted");
	}
	upload_file_done(&uf);
	store_file_clear(&f);
	free(path);
}
END_TEST

START_TEST(test_vanished)
{
	/* Assumptions: a file deleted mid-upload is reported as changed. */
	char *path = make_file("f.mha", 3 * PART, 6);
	struct store_file f;
	struct upload_file uf;

	queue_file(path, &f);
	ck_assert_int_eq(upload_file_init(&uf, S, &f, path, true, PART), 0);
	drive(&uf, 1, -1);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(drive(&uf, 0, -1), UPLOAD_CHANGED);
	upload_file_done(&uf);
	store_file_clear(&f);
	free(path);
}
END_TEST

static Suite *
upload_suite(void)
{
	Suite *s = suite_create("upload");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_test(tc, test_part_size_table);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_several_parts);
	tcase_add_test(tc, test_empty_file);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_crash_resume, 0, 4);
	tcase_add_test(tc, test_expired_upload);
	tcase_add_test(tc, test_complete_lost_answer);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_changed_mid_upload);
	tcase_add_test(tc, test_vanished);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(upload_suite());
	int failed;

	if (http_global_init() < 0)
		return 1;
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	http_global_cleanup();
	return failed == 0 ? 0 : 1;
}
