/*
 * check_store.c: tests of the SQLite queue (src/store.c).
 *
 * core: open, schema version, insert and de-duplication, files and parts,
 * remote objects, outputs, events, requests, counts and iteration.
 * transitions: accepted and refused (-ESTALE / -ENOENT) transitions, retry-wait
 * and resume, nested transactions, and a differential check of random
 * transition sequences against a small state table kept by the test.
 * concurrency: two handles racing for one case (exactly one wins), several
 * handles draining a queue (every case claimed once), lease expiry.
 * recovery: data (with names holding newlines, quotes and non-UTF-8 bytes)
 * survives close, reopen and SIGKILL; migrations from an empty file and from a
 * version-1 file; read-only handles, also without write access.
 * errors: no write access, a file that is not a database, a schema newer than
 * ours, bad arguments. Every test works in its own temporary directory.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "testutil.h"

static char *g_dir;

static void
setup(void)
{
	g_dir = tu_mkdtemp("store");
}

static void
teardown(void)
{
	tu_rmtree(g_dir);
	free(g_dir);
	g_dir = NULL;
}

static char *
db_path(void)
{
	return tu_strdupf("%s/%s", g_dir, STORE_DB_NAME);
}

static struct store *
open_rw(void)
{
	struct store *st = NULL;
	char *msg = NULL;
	int r;

	r = store_open(g_dir, 0, &st, &msg);
	ck_assert_msg(r == 0, "store_open: %d %s", r, msg ? msg : "");
	ck_assert_ptr_null(msg);
	return st;
}

static int64_t
add_case(struct store *st, const char *watch, const char *name, const char *fp,
         enum store_state state)
{
	struct store_case_new c = {
	    .watch = watch,
	    .name = name,
	    .path = "/drop/x",
	    .fingerprint = fp,
	    .state = state,
	};
	int64_t id = -1;

	ck_assert_int_eq(store_case_insert(st, &c, &id), 0);
	ck_assert_int_gt(id, 0);
	return id;
}

static enum store_state
case_state(struct store *st, int64_t id)
{
	struct store_case c;
	enum store_state s;

	ck_assert_int_eq(store_case_get(st, id, &c), 0);
	s = c.state;
	store_case_clear(&c);
	return s;
}

/* Run SQL on a file with a plain SQLite connection (no store.c involved). */
static void
raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *err = NULL;

	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql,
	              err ? err : "");
	sqlite3_close(db);
}

static char *
raw_text(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char *out = NULL;

	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		out = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	ck_assert_ptr_nonnull(out);
	return out;
}

/* The schema as text: every object's SQL in name order (ANALYZE's tables left out). */
static char *
schema_dump(const char *path)
{
	return raw_text(path,
	                "SELECT group_concat(type || ' ' || name || ': ' || coalesce(sql, ''), "
	                "char(10)) FROM (SELECT * FROM sqlite_master "
	                "WHERE name NOT LIKE 'sqlite_stat%' ORDER BY name)");
}

static void
assert_file_unchanged(const char *path, const char *before, size_t before_len)
{
	size_t len = 0;
	char *now = tu_read_file(path, &len);

	ck_assert_ptr_nonnull(now);
	ck_assert_uint_eq(len, before_len);
	ck_assert_msg(memcmp(now, before, len) == 0, "'%s' was modified", path);
	free(now);
}

/* ------------------------------------------------------------------ core */

START_TEST(test_open_new)
{
	struct store *st;
	char *path = db_path(), *mode;
	struct stat stb;

	/* A new state directory: the file is created, in WAL mode, at our version. */
	st = open_rw();
	ck_assert_int_eq(store_schema_version(), 4);
	ck_assert_int_eq(store_file_version(st), store_schema_version());
	ck_assert_int_eq(stat(path, &stb), 0);
	st = store_close(st);
	ck_assert_ptr_null(st);
	ck_assert_ptr_null(store_close(NULL));
	mode = raw_text(path, "PRAGMA journal_mode");
	ck_assert_str_eq(mode, "wal");
	free(mode);
	free(path);
}
END_TEST

START_TEST(test_state_names)
{
	/* Every state has a name that maps back; bad values map to NULL / -1. */
	for (int s = 0; s < _STORE_STATE_MAX; s++) {
		const char *n = store_state_name((enum store_state)s);

		ck_assert_ptr_nonnull(n);
		ck_assert_int_eq(store_state_from_name(n), s);
	}
	ck_assert_str_eq(store_state_name(STORE_RETRY_WAIT), "retry-wait");
	ck_assert_ptr_null(store_state_name(_STORE_STATE_MAX));
	ck_assert_ptr_null(store_state_name((enum store_state) - 1));
	ck_assert_int_eq(store_state_from_name("bogus"), -1);
	ck_assert_int_eq(store_state_from_name(NULL), -1);
	ck_assert(store_state_is_terminal(STORE_SUCCEEDED));
	ck_assert(store_state_is_terminal(STORE_FAILED));
	ck_assert(store_state_is_terminal(STORE_CANCELLED));
	ck_assert(!store_state_is_terminal(STORE_RETRY_WAIT));
	ck_assert(!store_state_is_terminal(STORE_QUEUED));
	ck_assert_str_eq(store_remote_kind_name(STORE_REMOTE_JOB), "job");
	ck_assert_ptr_null(store_remote_kind_name(_STORE_REMOTE_MAX));
}
END_TEST

START_TEST(test_insert_dedup)
{
	struct store *st = open_rw();
	struct store_file files[] = {
	    {.relpath = "b/2.dcm", .size = 20, .mtime_ns = 2},
	    {.relpath = "a/1.dcm", .size = 10, .mtime_ns = 1},
	};
	struct store_case_new c = {
	    .watch = "w",
	    .name = "scan 1",
	    .path = "/drop/scan 1",
	    .fingerprint = "f1",
	    .state = STORE_QUEUED,
	    .files = files,
	    .n_files = 2,
	};
	struct store_file *fl = NULL;
	struct store_case got;
	int64_t id = 0, id2 = 0, other = 0;
	size_t n = 0;

	ck_assert_int_eq(store_case_insert(st, &c, &id), 0);

	/* The same watch, name and fingerprint again: -EEXIST and the existing id. */
	ck_assert_int_eq(store_case_insert(st, &c, &id2), -EEXIST);
	ck_assert_int_eq(id2, id);
	ck_assert_int_eq(store_case_find(st, "w", "scan 1", "f1", &id2), 0);
	ck_assert_int_eq(id2, id);
	ck_assert_int_eq(store_case_find(st, "w", "scan 1", "f2", &id2), -ENOENT);

	/* Same name, other fingerprint (the case changed): a new case. So is another watch. */
	c.fingerprint = "f2";
	ck_assert_int_eq(store_case_insert(st, &c, &other), 0);
	ck_assert_int_ne(other, id);
	c.watch = "w2";
	ck_assert_int_eq(store_case_insert(st, &c, &id2), 0);
	ck_assert_int_ne(id2, other);

	ck_assert_int_eq(store_case_get(st, id, &got), 0);
	ck_assert_int_eq(got.id, id);
	ck_assert_str_eq(got.watch, "w");
	ck_assert_str_eq(got.name, "scan 1");
	ck_assert_str_eq(got.path, "/drop/scan 1");
	ck_assert_str_eq(got.fingerprint, "f1");
	ck_assert_int_eq(got.state, STORE_QUEUED);
	ck_assert(!got.held);
	ck_assert_int_eq(got.attempts, 0);
	ck_assert_int_eq(got.bytes_total, 30);
	ck_assert_int_eq(got.bytes_done, 0);
	ck_assert_ptr_null(got.error);
	ck_assert_ptr_null(got.results);
	ck_assert_ptr_null(got.lease_owner);
	ck_assert_int_gt(got.created, 0);
	store_case_clear(&got);
	ck_assert_int_eq(store_case_get(st, 999999, &got), -ENOENT);

	/* Files come back in relpath order. */
	ck_assert_int_eq(store_file_list(st, id, &fl, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(fl[0].relpath, "a/1.dcm");
	ck_assert_int_eq(fl[0].size, 10);
	ck_assert_int_eq(fl[0].mtime_ns, 1);
	ck_assert_int_eq(fl[0].case_id, id);
	ck_assert_str_eq(fl[1].relpath, "b/2.dcm");
	ck_assert_ptr_null(fl[1].upload_pk);
	ck_assert(!fl[1].completed);
	store_file_list_free(fl, n);

	/* A case queued directly as failed keeps its message. */
	c.watch = "w";
	c.name = "bad";
	c.state = STORE_FAILED;
	c.error = "unknown socket 'x'";
	c.n_files = 0;
	ck_assert_int_eq(store_case_insert(st, &c, &id2), 0);
	ck_assert_int_eq(store_case_get(st, id2, &got), 0);
	ck_assert_int_eq(got.state, STORE_FAILED);
	ck_assert_str_eq(got.error, "unknown socket 'x'");
	store_case_clear(&got);
	store_close(st);
}
END_TEST

START_TEST(test_files_parts)
{
	struct store *st = open_rw();
	struct store_file files[] = {{.relpath = "img.mha", .size = 300, .mtime_ns = 7}};
	struct store_case_new c = {
	    .watch = "w",
	    .name = "c",
	    .fingerprint = "f",
	    .state = STORE_QUEUED,
	    .files = files,
	    .n_files = 1,
	};
	struct store_file *fl = NULL;
	struct store_part *parts = NULL;
	int64_t id, fid;
	size_t n = 0;

	ck_assert_int_eq(store_case_insert(st, &c, &id), 0);
	ck_assert_int_eq(store_file_list(st, id, &fl, &n), 0);
	fid = fl[0].id;
	store_file_list_free(fl, n);

	ck_assert_int_eq(store_file_set_upload_name(st, fid, "img.mha", "ct-image"), 0);
	ck_assert_int_eq(store_file_set_upload(st, fid, "pk-1", "https://x/uploads/pk-1/", "mp-1"),
	                 0);
	ck_assert_int_eq(store_part_done(st, fid, 1, "\"e1\"", 100), 0);
	ck_assert_int_eq(store_part_done(st, fid, 2, "\"e2\"", 100), 0);
	/* A part recorded again replaces the earlier record. */
	ck_assert_int_eq(store_part_done(st, fid, 1, "\"e1b\"", 150), 0);

	ck_assert_int_eq(store_part_list(st, fid, &parts, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(parts[0].number, 1);
	ck_assert_str_eq(parts[0].etag, "\"e1b\"");
	ck_assert_int_eq(parts[0].size, 150);
	ck_assert_int_eq(parts[1].number, 2);
	store_part_list_free(parts, n);

	ck_assert_int_eq(store_file_list(st, id, &fl, &n), 0);
	ck_assert_str_eq(fl[0].upload_name, "img.mha");
	ck_assert_str_eq(fl[0].socket, "ct-image");
	ck_assert_str_eq(fl[0].upload_pk, "pk-1");
	ck_assert_str_eq(fl[0].upload_url, "https://x/uploads/pk-1/");
	ck_assert_str_eq(fl[0].multipart_id, "mp-1");
	ck_assert_int_eq(fl[0].parts_done, 2);
	ck_assert_int_eq(fl[0].bytes_done, 250);
	store_file_list_free(fl, n);

	ck_assert_int_eq(store_file_set_completed(st, fid), 0);
	ck_assert_int_eq(store_file_list(st, id, &fl, &n), 0);
	ck_assert(fl[0].completed);
	store_file_list_free(fl, n);

	/* Forgetting the upload drops its parts. */
	ck_assert_int_eq(store_file_reset_upload(st, fid), 0);
	ck_assert_int_eq(store_part_list(st, fid, &parts, &n), 0);
	ck_assert_uint_eq(n, 0);
	store_part_list_free(parts, n);
	ck_assert_int_eq(store_file_list(st, id, &fl, &n), 0);
	ck_assert_ptr_null(fl[0].upload_pk);
	ck_assert_ptr_null(fl[0].multipart_id);
	ck_assert_int_eq(fl[0].parts_done, 0);
	ck_assert_int_eq(fl[0].bytes_done, 0);
	ck_assert(!fl[0].completed);
	store_file_list_free(fl, n);

	/* A new upload starts without the old parts. */
	ck_assert_int_eq(store_part_done(st, fid, 1, "x", 1), 0);
	ck_assert_int_eq(store_file_set_upload(st, fid, "pk-2", NULL, "mp-2"), 0);
	ck_assert_int_eq(store_part_list(st, fid, &parts, &n), 0);
	ck_assert_uint_eq(n, 0);
	store_part_list_free(parts, n);

	/* Rows that do not exist. */
	ck_assert_int_eq(store_part_done(st, 4242, 1, "x", 1), -ENOENT);
	ck_assert_int_eq(store_file_set_upload(st, 4242, "a", "b", "c"), -ENOENT);
	ck_assert_int_eq(store_file_set_completed(st, 4242), -ENOENT);
	ck_assert_int_eq(store_file_reset_upload(st, 4242), -ENOENT);
	ck_assert_int_eq(store_part_done(st, fid, 0, "x", 1), -EINVAL);
	store_close(st);
}
END_TEST

START_TEST(test_remotes_outputs)
{
	struct store *st = open_rw();
	struct store_remote rm, *rl = NULL;
	struct store_output o = {0}, *ol = NULL;
	int64_t id = add_case(st, "w", "c", "f", STORE_QUEUED);
	size_t n = 0;

	/* The intent is recorded before the request; the answer completes it. */
	ck_assert_int_eq(store_remote_intent(st, id, STORE_REMOTE_JOB, NULL, "gcdrop c f"), 0);
	ck_assert_int_eq(store_remote_get(st, id, STORE_REMOTE_JOB, "", &rm), 0);
	ck_assert(rm.intent_only);
	ck_assert_str_eq(rm.title, "gcdrop c f");
	ck_assert_str_eq(rm.key, "");
	ck_assert_ptr_null(rm.pk);
	ck_assert_int_eq(rm.kind, STORE_REMOTE_JOB);
	store_remote_clear(&rm);

	ck_assert_int_eq(store_remote_set(st, id, STORE_REMOTE_JOB, NULL, "pk9",
	                                  "https://x/jobs/pk9/", "Queued", "{\"pk\":\"pk9\"}"),
	                 0);
	/* A poll updates the status only; the rest stays. */
	ck_assert_int_eq(
	    store_remote_set(st, id, STORE_REMOTE_JOB, NULL, NULL, NULL, "Started", NULL), 0);
	/* A repeated intent does not erase the answer. */
	ck_assert_int_eq(store_remote_intent(st, id, STORE_REMOTE_JOB, NULL, NULL), 0);
	ck_assert_int_eq(store_remote_get(st, id, STORE_REMOTE_JOB, NULL, &rm), 0);
	ck_assert(!rm.intent_only);
	ck_assert_str_eq(rm.pk, "pk9");
	ck_assert_str_eq(rm.url, "https://x/jobs/pk9/");
	ck_assert_str_eq(rm.status, "Started");
	ck_assert_str_eq(rm.json, "{\"pk\":\"pk9\"}");
	ck_assert_str_eq(rm.title, "gcdrop c f");
	store_remote_clear(&rm);

	ck_assert_int_eq(
	    store_remote_set(st, id, STORE_REMOTE_SESSION, "ct-image", "s1", NULL, NULL, NULL), 0);
	ck_assert_int_eq(store_remote_list(st, id, &rl, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(rl[0].kind, STORE_REMOTE_JOB);
	ck_assert_int_eq(rl[1].kind, STORE_REMOTE_SESSION);
	ck_assert_str_eq(rl[1].key, "ct-image");
	store_remote_list_free(rl, n);

	ck_assert_int_eq(store_remote_delete(st, id, STORE_REMOTE_SESSION, "ct-image"), 0);
	ck_assert_int_eq(store_remote_delete(st, id, STORE_REMOTE_SESSION, "ct-image"), -ENOENT);
	ck_assert_int_eq(store_remote_get(st, id, STORE_REMOTE_SESSION, "ct-image", &rm), -ENOENT);
	ck_assert_int_eq(store_remote_intent(st, 4242, STORE_REMOTE_JOB, NULL, NULL), -ENOENT);
	ck_assert_int_eq(store_remote_intent(st, id, _STORE_REMOTE_MAX, NULL, NULL), -EINVAL);

	/* Outputs: put, put again (path kept), set the path. */
	o.case_id = id;
	o.socket = "lung-volume";
	o.super_kind = "Value";
	o.value_json = "1.5";
	ck_assert_int_eq(store_output_put(st, &o), 0);
	o.socket = "mask";
	o.super_kind = "Image";
	o.value_json = NULL;
	o.url = "https://x/images/1/";
	ck_assert_int_eq(store_output_put(st, &o), 0);
	ck_assert_int_eq(store_output_set_path(st, id, "mask", "/res/c/mask.mha"), 0);
	ck_assert_int_eq(store_output_put(st, &o), 0);
	ck_assert_int_eq(store_output_set_path(st, id, "nope", "/x"), -ENOENT);
	ck_assert_int_eq(store_output_list(st, id, &ol, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(ol[0].socket, "lung-volume");
	ck_assert_str_eq(ol[0].value_json, "1.5");
	ck_assert_ptr_null(ol[0].url);
	ck_assert_ptr_null(ol[0].path);
	ck_assert_str_eq(ol[1].socket, "mask");
	ck_assert_str_eq(ol[1].super_kind, "Image");
	ck_assert_str_eq(ol[1].url, "https://x/images/1/");
	ck_assert_str_eq(ol[1].path, "/res/c/mask.mha");
	store_output_list_free(ol, n);
	o.case_id = 4242;
	ck_assert_int_eq(store_output_put(st, &o), -ENOENT);
	store_close(st);
}
END_TEST

START_TEST(test_requests_watches)
{
	struct store *st = open_rw();
	struct store_request q;

	/* Requests come out oldest first, and are gone once done. */
	ck_assert_int_eq(store_request_next(st, &q), -ENOENT);
	ck_assert_int_eq(store_request_add(st, STORE_REQ_HOLD, 0, NULL, NULL), 0);
	ck_assert_int_eq(store_request_add(st, STORE_REQ_ENQUEUE, 0, "w", "/drop/a b"), 0);
	ck_assert_int_eq(store_request_add(st, (enum store_request_kind)17, 0, NULL, NULL),
	                 -EINVAL);
	ck_assert_int_eq(store_request_next(st, &q), 0);
	ck_assert_int_eq(q.kind, STORE_REQ_HOLD);
	ck_assert_int_eq(q.case_id, 0);
	ck_assert_ptr_null(q.watch);
	ck_assert_int_eq(store_request_done(st, q.id), 0);
	ck_assert_int_eq(store_request_done(st, q.id), -ENOENT);
	store_request_clear(&q);
	ck_assert_int_eq(store_request_next(st, &q), 0);
	ck_assert_int_eq(q.kind, STORE_REQ_ENQUEUE);
	ck_assert_str_eq(q.watch, "w");
	ck_assert_str_eq(q.path, "/drop/a b");
	ck_assert_int_eq(store_request_done(st, q.id), 0);
	store_request_clear(&q);
	ck_assert_int_eq(store_request_next(st, &q), -ENOENT);

	ck_assert_int_eq(store_watch_sync(st, "w", "/drop", "algorithm", "corads-ai"), 0);
	ck_assert_int_eq(store_watch_sync(st, "w", "/drop2", "archive", "arch"), 0);
	ck_assert_int_eq(store_watch_sync(st, "w", NULL, "archive", "arch"), -EINVAL);
	store_close(st);
	{
		char *p = db_path(), *v = raw_text(p, "SELECT path || ' ' || dest || ' ' || slug "
		                                      "FROM watches WHERE name = 'w'");

		ck_assert_str_eq(v, "/drop2 archive arch");
		free(v);
		free(p);
	}
}
END_TEST

struct count_ctx {
	int64_t seen;
	int64_t last_id;
	int64_t stop_after;
	struct store *st;
	int64_t nested;
};

static int
count_cb(const struct store_case *c, void *ud)
{
	struct count_ctx *ctx = ud;

	ck_assert_int_gt(c->id, ctx->last_id);
	ctx->last_id = c->id;
	ck_assert_ptr_nonnull(c->name);
	ck_assert_ptr_nonnull(c->watch);
	ctx->seen++;
	if (ctx->stop_after > 0 && ctx->seen == ctx->stop_after)
		return -ECANCELED;
	return 0;
}

static int
nested_cb(const struct store_case *c, void *ud)
{
	struct count_ctx *ctx = ud;
	struct count_ctx inner = {0};
	char name[32];

	/* Writes (one with its own transaction) from inside the walk, and a walk inside it. */
	ck_assert_int_eq(store_case_set_progress(ctx->st, c->id, 1, 2), 0);
	ck_assert_int_eq(store_case_reset(ctx->st, c->id, c->state), 0);
	ck_assert_int_eq(store_case_foreach(ctx->st, "w1", count_cb, &inner), 0);
	ctx->nested += inner.seen;
	snprintf(name, sizeof(name), "%" PRId64, c->id);
	ck_assert_str_eq(c->name, name);
	ctx->seen++;
	return ctx->seen == ctx->stop_after ? -ECANCELED : 0;
}

START_TEST(test_count_foreach)
{
	struct store *st = open_rw();
	int64_t expect[_STORE_STATE_MAX] = {0}, counts[_STORE_STATE_MAX], held = -1;
	int64_t want_held = 0, w1 = 0;
	struct count_ctx ctx = {0};
	const int n = 3000;

	/* Many cases, in one batch, spread over every state, some held. */
	ck_assert_int_eq(store_begin(st), 0);
	for (int i = 1; i <= n; i++) {
		enum store_state s = (enum store_state)(i % _STORE_STATE_MAX);
		char name[32];
		int64_t id;

		snprintf(name, sizeof(name), "%d", i);
		id = add_case(st, i % 3 ? "w1" : "w2", name, "f", s);
		ck_assert_int_eq(id, i);
		expect[s]++;
		if (i % 7 == 0) {
			ck_assert_int_eq(store_case_set_held(st, id, true), 0);
			want_held++;
		}
		w1 += i % 3 != 0;
	}
	ck_assert_int_eq(store_commit(st), 0);

	ck_assert_int_eq(store_count_states(st, counts, &held), 0);
	for (int s = 0; s < _STORE_STATE_MAX; s++)
		ck_assert_int_eq(counts[s], expect[s]);
	ck_assert_int_eq(held, want_held);

	ck_assert_int_eq(store_case_foreach(st, NULL, count_cb, &ctx), 0);
	ck_assert_int_eq(ctx.seen, n);
	memset(&ctx, 0, sizeof(ctx));
	ck_assert_int_eq(store_case_foreach(st, "w1", count_cb, &ctx), 0);
	ck_assert_int_eq(ctx.seen, w1);
	memset(&ctx, 0, sizeof(ctx));
	ck_assert_int_eq(store_case_foreach(st, "nope", count_cb, &ctx), 0);
	ck_assert_int_eq(ctx.seen, 0);

	/* A callback that returns < 0 stops the walk with its value. */
	memset(&ctx, 0, sizeof(ctx));
	ctx.stop_after = 10;
	ck_assert_int_eq(store_case_foreach(st, NULL, count_cb, &ctx), -ECANCELED);
	ck_assert_int_eq(ctx.seen, 10);

	/* Re-entrant use from the callback. */
	memset(&ctx, 0, sizeof(ctx));
	ctx.st = st;
	ctx.stop_after = 5;
	ck_assert_int_eq(store_case_foreach(st, "w2", nested_cb, &ctx), -ECANCELED);
	ck_assert_int_eq(ctx.seen, 5);
	ck_assert_int_eq(ctx.nested, 5 * w1);
	store_close(st);
}
END_TEST

/*
 * The status walk against a simple model: for every case, the row it hands out
 * must match store_case_get() and, with STORE_STATUS_FULL, the first URL per
 * kind (in key order) of store_remote_list(). Remotes without a URL (intents)
 * are not URLs; cases of other watches are skipped with the filter.
 */
struct status_ctx {
	struct store *st;
	int full;
	int seen;
	int64_t last_id;
	int stop_after;
};

static int
status_cb(const struct store_status_row *row, void *ud)
{
	struct status_ctx *ctx = ud;
	struct store_case c;
	struct store_remote *r = NULL;
	const char *want[_STORE_REMOTE_MAX] = {NULL};
	size_t n = 0;

	ck_assert_int_gt(row->id, ctx->last_id);
	ctx->last_id = row->id;
	ck_assert_int_eq(store_case_get(ctx->st, row->id, &c), 0);
	ck_assert_str_eq(row->watch, c.watch);
	ck_assert_uint_eq(row->name_len, strlen(c.name));
	ck_assert_mem_eq(row->name, c.name, row->name_len);
	ck_assert_int_eq(row->state, c.state);
	ck_assert_int_eq(row->held, c.held);
	ck_assert_int_eq(row->attempts, c.attempts);
	ck_assert_int_eq(row->bytes_done, c.bytes_done);
	ck_assert_int_eq(row->bytes_total, c.bytes_total);
	if (c.error == NULL)
		ck_assert_ptr_null(row->error);
	else
		ck_assert_str_eq(row->error, c.error);
	if (ctx->full) {
		ck_assert_int_eq(row->next_attempt, c.next_attempt);
		ck_assert_int_eq(row->created, c.created);
		ck_assert_int_eq(row->updated, c.updated);
		ck_assert_str_eq(row->fingerprint, c.fingerprint);
		if (c.results == NULL)
			ck_assert_ptr_null(row->results);
		else
			ck_assert_str_eq(row->results, c.results);
		ck_assert_int_eq(store_remote_list(ctx->st, row->id, &r, &n), 0);
		for (size_t i = 0; i < n; i++)
			if (r[i].url != NULL && want[r[i].kind] == NULL)
				want[r[i].kind] = r[i].url;
		for (int k = 0; k < _STORE_REMOTE_MAX; k++) {
			if (want[k] == NULL)
				ck_assert_ptr_null(row->remote_url[k]);
			else
				ck_assert_str_eq(row->remote_url[k], want[k]);
		}
		store_remote_list_free(r, n);
	} else {
		ck_assert_ptr_null(row->fingerprint);
		ck_assert_ptr_null(row->results);
		for (int k = 0; k < _STORE_REMOTE_MAX; k++)
			ck_assert_ptr_null(row->remote_url[k]);
	}
	store_case_clear(&c);
	ctx->seen++;
	return ctx->stop_after > 0 && ctx->seen == ctx->stop_after ? -ECANCELED : 0;
}

START_TEST(test_status_foreach)
{
	struct store *st = open_rw();
	struct status_ctx ctx = {0};
	const int n = 500;
	int w1 = 0;
	char url[96];

	/* Cases in two watches with every kind of remote, some without URL, several sessions. */
	ck_assert_int_eq(store_begin(st), 0);
	for (int i = 1; i <= n; i++) {
		char name[32];
		int64_t id;

		snprintf(name, sizeof(name), i % 11 ? "case %d" : "odd\n'\"\\ %d", i);
		id = add_case(st, i % 4 ? "w1" : "w2", name, "fp", (enum store_state)(i % 6));
		w1 += i % 4 != 0;
		if (i % 5 == 0)
			ck_assert_int_eq(store_case_retry_wait(st, id, (enum store_state)(i % 6),
			                                       99, "try later"), 0);
		if (i % 3 == 0)
			ck_assert_int_eq(store_case_set_results(st, id, "/results/x"), 0);
		ck_assert_int_eq(store_case_set_progress(st, id, i, 2 * i), 0);
		/* Sessions under keys "b" then "a": "a" comes first in key order. */
		if (i % 2 == 0) {
			snprintf(url, sizeof(url), "http://h/s/%d/b/", i);
			ck_assert_int_eq(store_remote_set(st, id, STORE_REMOTE_SESSION, "b", "pk",
			                                  url, NULL, NULL), 0);
		}
		if (i % 4 == 0) {
			snprintf(url, sizeof(url), "http://h/s/%d/a/", i);
			ck_assert_int_eq(store_remote_set(st, id, STORE_REMOTE_SESSION, "a", "pk",
			                                  url, NULL, NULL), 0);
		}
		if (i % 7 == 0)
			ck_assert_int_eq(store_remote_intent(st, id, STORE_REMOTE_JOB, NULL, "t"),
			                 0);
		if (i % 14 == 0) {
			snprintf(url, sizeof(url), "http://h/j/%d/", i);
			ck_assert_int_eq(store_remote_set(st, id, STORE_REMOTE_JOB, NULL, "pk", url,
			                                  "Succeeded", NULL), 0);
		}
		if (i % 9 == 0)
			ck_assert_int_eq(store_remote_set(st, id, STORE_REMOTE_DISPLAY_SET, NULL,
			                                  "p", "http://h/d/", NULL, NULL), 0);
	}
	ck_assert_int_eq(store_commit(st), 0);

	ctx.st = st;
	for (ctx.full = 0; ctx.full < 2; ctx.full++) {
		int flags = ctx.full ? STORE_STATUS_FULL : 0;

		ctx.seen = 0;
		ctx.last_id = 0;
		ck_assert_int_eq(store_status_foreach(st, NULL, flags, status_cb, &ctx), 0);
		ck_assert_int_eq(ctx.seen, n);
		ctx.seen = 0;
		ctx.last_id = 0;
		ck_assert_int_eq(store_status_foreach(st, "w1", flags, status_cb, &ctx), 0);
		ck_assert_int_eq(ctx.seen, w1);
		ctx.seen = 0;
		ctx.last_id = 0;
		ck_assert_int_eq(store_status_foreach(st, "w2", flags, status_cb, &ctx), 0);
		ck_assert_int_eq(ctx.seen, n - w1);
		ctx.seen = 0;
		ctx.last_id = 0;
		ck_assert_int_eq(store_status_foreach(st, "nope", flags, status_cb, &ctx), 0);
		ck_assert_int_eq(ctx.seen, 0);
	}

	/* A negative return of the callback stops the walk with its value; bad arguments. */
	ctx.seen = 0;
	ctx.last_id = 0;
	ctx.full = 1;
	ctx.stop_after = 7;
	ck_assert_int_eq(store_status_foreach(st, NULL, STORE_STATUS_FULL, status_cb, &ctx),
	                 -ECANCELED);
	ck_assert_int_eq(ctx.seen, 7);
	ck_assert_int_eq(store_status_foreach(st, NULL, 0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(store_status_foreach(NULL, NULL, 0, status_cb, &ctx), -EINVAL);
	store_close(st);

	/* The same walk through a read-only handle (what `gcdrop status` uses). */
	ck_assert_int_eq(store_open(g_dir, STORE_OPEN_READONLY, &st, NULL), 0);
	memset(&ctx, 0, sizeof(ctx));
	ctx.st = st;
	ctx.full = 1;
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_status_foreach(st, NULL, STORE_STATUS_FULL, status_cb, &ctx), 0);
	ck_assert_int_eq(store_commit(st), 0);
	ck_assert_int_eq(ctx.seen, n);
	store_close(st);
}
END_TEST

START_TEST(test_events_forget)
{
	struct store *st = open_rw();
	struct store_file files[] = {{.relpath = "a", .size = 1}};
	struct store_case_new c = {
	    .watch = "w",
	    .name = "c",
	    .fingerprint = "f",
	    .state = STORE_QUEUED,
	    .files = files,
	    .n_files = 1,
	};
	struct store_event *ev = NULL;
	struct store_file *fl = NULL;
	char *msg = NULL;
	int64_t id;
	size_t n = 0;

	/* Every transition appends one event, in order. */
	ck_assert_int_eq(store_case_insert(st, &c, &id), 0);
	ck_assert_int_eq(store_case_transition(st, id, STORE_QUEUED, STORE_UPLOADING, NULL), 0);
	ck_assert_int_eq(store_case_retry_wait(st, id, STORE_UPLOADING, 50, "HTTP 503"), 0);
	ck_assert_int_eq(store_case_transition(st, id, STORE_QUEUED, STORE_FAILED, "x"), -ESTALE);
	ck_assert_int_eq(store_case_resume(st, id, -1), 0);
	ck_assert_int_eq(store_event_add(st, id, NULL, "note"), 0);
	ck_assert_int_eq(store_event_list(st, id, &ev, &n), 0);
	ck_assert_uint_eq(n, 5);
	ck_assert_str_eq(ev[0].state, "queued");
	ck_assert_str_eq(ev[1].state, "uploading");
	ck_assert_str_eq(ev[2].state, "retry-wait");
	ck_assert_str_eq(ev[2].message, "HTTP 503");
	ck_assert_str_eq(ev[3].state, "uploading");
	ck_assert_ptr_null(ev[4].state);
	ck_assert_str_eq(ev[4].message, "note");
	ck_assert_int_gt(ev[0].time, 0);
	store_event_list_free(ev, n);

	ck_assert_int_eq(store_integrity_check(st, &msg), 0);
	ck_assert_ptr_null(msg);

	/* Forgetting a case removes it with everything that hangs off it. */
	ck_assert_int_eq(store_case_forget(st, id), 0);
	ck_assert_int_eq(store_case_forget(st, id), -ENOENT);
	ck_assert_int_eq(store_file_list(st, id, &fl, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(store_event_list(st, id, &ev, &n), 0);
	ck_assert_uint_eq(n, 0);
	store_close(st);
}
END_TEST

/* ----------------------------------------------------------- transitions */

START_TEST(test_transition_basic)
{
	struct store *st = open_rw();
	int64_t id = add_case(st, "w", "c", "f", STORE_QUEUED);
	struct store_case c;

	/* Accepted when the case is in 'from'; refused with -ESTALE when not. */
	ck_assert_int_eq(store_case_transition(st, id, STORE_QUEUED, STORE_UPLOADING, NULL), 0);
	ck_assert_int_eq(case_state(st, id), STORE_UPLOADING);
	ck_assert_int_eq(store_case_transition(st, id, STORE_QUEUED, STORE_UPLOADING, NULL),
	                 -ESTALE);
	ck_assert_int_eq(
	    store_case_transition(st, id, STORE_UPLOADING, STORE_FAILED, "HTTP 400: bad"), 0);
	ck_assert_int_eq(store_case_get(st, id, &c), 0);
	ck_assert_int_eq(c.state, STORE_FAILED);
	ck_assert_str_eq(c.error, "HTTP 400: bad");
	store_case_clear(&c);

	/* Unknown case, bad states. */
	ck_assert_int_eq(store_case_transition(st, id + 100, STORE_QUEUED, STORE_FAILED, NULL),
	                 -ENOENT);
	ck_assert_int_eq(store_case_transition(st, id, _STORE_STATE_MAX, STORE_FAILED, NULL),
	                 -EINVAL);
	ck_assert_int_eq(store_case_transition(st, id, STORE_FAILED, (enum store_state) - 3, NULL),
	                 -EINVAL);

	/* reset: back to work whatever the state, attempts and error cleared. */
	ck_assert_int_eq(store_case_reset(st, id, STORE_QUEUED), 0);
	ck_assert_int_eq(store_case_get(st, id, &c), 0);
	ck_assert_int_eq(c.state, STORE_QUEUED);
	ck_assert_ptr_null(c.error);
	ck_assert_int_eq(c.attempts, 0);
	store_case_clear(&c);
	ck_assert_int_eq(store_case_reset(st, id + 100, STORE_QUEUED), -ENOENT);

	/* progress, results, held. */
	ck_assert_int_eq(store_case_set_progress(st, id, 5, 10), 0);
	ck_assert_int_eq(store_case_set_results(st, id, "/res/c"), 0);
	ck_assert_int_eq(store_case_set_held(st, id, true), 0);
	ck_assert_int_eq(store_case_set_held(st, id, true), 0);
	ck_assert_int_eq(store_case_get(st, id, &c), 0);
	ck_assert_int_eq(c.bytes_done, 5);
	ck_assert_int_eq(c.bytes_total, 10);
	ck_assert_str_eq(c.results, "/res/c");
	ck_assert(c.held);
	store_case_clear(&c);
	ck_assert_int_eq(store_case_set_held(st, id, false), 0);
	ck_assert_int_eq(store_case_set_held(st, id + 100, false), -ENOENT);
	ck_assert_int_eq(store_case_set_progress(st, id + 100, 1, 1), -ENOENT);
	ck_assert_int_eq(store_case_set_results(st, id + 100, NULL), -ENOENT);
	store_close(st);
}
END_TEST

START_TEST(test_retry_wait_resume)
{
	struct store *st = open_rw();
	int64_t id = add_case(st, "w", "c", "f", STORE_UPLOADING);
	struct store_case c;

	/* retry-wait remembers where to go back to and counts the attempt. */
	ck_assert_int_eq(store_case_retry_wait(st, id, STORE_QUEUED, 100, "x"), -ESTALE);
	ck_assert_int_eq(store_case_retry_wait(st, id, STORE_UPLOADING, 100, "HTTP 502"), 0);
	ck_assert_int_eq(store_case_get(st, id, &c), 0);
	ck_assert_int_eq(c.state, STORE_RETRY_WAIT);
	ck_assert_int_eq(c.resume_state, STORE_UPLOADING);
	ck_assert_int_eq(c.attempts, 1);
	ck_assert_int_eq(c.next_attempt, 100);
	ck_assert_str_eq(c.error, "HTTP 502");
	store_case_clear(&c);

	/* Waiting again from retry-wait keeps the state to resume and counts again. */
	ck_assert_int_eq(store_case_retry_wait(st, id, STORE_RETRY_WAIT, 200, "HTTP 503"), 0);
	ck_assert_int_eq(store_case_get(st, id, &c), 0);
	ck_assert_int_eq(c.resume_state, STORE_UPLOADING);
	ck_assert_int_eq(c.attempts, 2);
	store_case_clear(&c);

	ck_assert_int_eq(store_case_resume(st, id, -1), 0);
	ck_assert_int_eq(store_case_get(st, id, &c), 0);
	ck_assert_int_eq(c.state, STORE_UPLOADING);
	ck_assert_int_eq(c.next_attempt, 0);
	ck_assert_int_eq(c.attempts, 2);
	store_case_clear(&c);
	ck_assert_int_eq(store_case_resume(st, id, -1), -ESTALE);
	ck_assert_int_eq(store_case_resume(st, id + 1, -1), -ENOENT);

	/* Resume to an explicit state. */
	ck_assert_int_eq(store_case_retry_wait(st, id, STORE_UPLOADING, 300, NULL), 0);
	ck_assert_int_eq(store_case_resume(st, id, STORE_QUEUED), 0);
	ck_assert_int_eq(case_state(st, id), STORE_QUEUED);
	ck_assert_int_eq(store_case_resume(st, id, 99), -EINVAL);
	store_close(st);
}
END_TEST

START_TEST(test_nested_transactions)
{
	struct store *st = open_rw();
	int64_t a = add_case(st, "w", "a", "f", STORE_QUEUED);
	int64_t b = add_case(st, "w", "b", "f", STORE_QUEUED);
	int64_t id;

	ck_assert_int_eq(store_commit(st), -EINVAL);
	ck_assert_int_eq(store_rollback(st), -EINVAL);

	/* An inner rollback undoes only the inner work. */
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_case_transition(st, a, STORE_QUEUED, STORE_UPLOADING, NULL), 0);
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_case_transition(st, b, STORE_QUEUED, STORE_UPLOADING, NULL), 0);
	ck_assert_int_eq(store_rollback(st), 0);
	/* A refused transition inside the batch does not spoil it. */
	ck_assert_int_eq(store_case_transition(st, b, STORE_RUNNING, STORE_FAILED, NULL), -ESTALE);
	ck_assert_int_eq(store_commit(st), 0);
	ck_assert_int_eq(case_state(st, a), STORE_UPLOADING);
	ck_assert_int_eq(case_state(st, b), STORE_QUEUED);

	/* An outer rollback undoes everything, inner commits included. */
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_case_transition(st, b, STORE_QUEUED, STORE_UPLOADING, NULL), 0);
	id = add_case(st, "w", "c", "f", STORE_QUEUED);
	ck_assert_int_eq(store_commit(st), 0);
	ck_assert_int_eq(store_rollback(st), 0);
	ck_assert_int_eq(case_state(st, b), STORE_QUEUED);
	ck_assert_int_eq(store_case_find(st, "w", "c", "f", NULL), -ENOENT);
	ck_assert_int_eq(store_case_transition(st, id, STORE_QUEUED, STORE_FAILED, NULL), -ENOENT);
	store_close(st);
}
END_TEST

/*
 * The differential check: a seeded random sequence of transitions, retry-waits,
 * resumes, resets and holds, some inside batches that are committed or rolled
 * back, run against the store and against a plain array; after every step the
 * touched case and the return code must agree.
 */
struct model_case {
	enum store_state state;
	int resume; /* -1: none */
	int attempts;
	bool held;
};

#define MODEL_N 12

static uint64_t
rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void
model_check(struct store *st, const int64_t *ids, const struct model_case *m, int i, uint64_t seed,
            int step)
{
	struct store_case c;

	ck_assert_int_eq(store_case_get(st, ids[i], &c), 0);
	ck_assert_msg(c.state == m[i].state, "seed %" PRIu64 " step %d case %d: state %s, model %s",
	              seed, step, i, store_state_name(c.state), store_state_name(m[i].state));
	ck_assert_msg((int)c.resume_state == (m[i].resume < 0 ? (int)STORE_QUEUED : m[i].resume),
	              "seed %" PRIu64 " step %d: resume_state", seed, step);
	ck_assert_msg(c.attempts == m[i].attempts, "seed %" PRIu64 " step %d: attempts %d != %d",
	              seed, step, c.attempts, m[i].attempts);
	ck_assert_msg(c.held == m[i].held, "seed %" PRIu64 " step %d: held", seed, step);
	store_case_clear(&c);
}

START_TEST(test_transition_differential)
{
	struct store *st = open_rw();
	struct model_case m[MODEL_N], saved[MODEL_N];
	int64_t ids[MODEL_N], counts[_STORE_STATE_MAX], want[_STORE_STATE_MAX] = {0}, held;
	uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(_i + 1), s = seed;
	bool in_batch = false;
	int refused = 0, accepted = 0;

	for (int i = 0; i < MODEL_N; i++) {
		char name[16];

		snprintf(name, sizeof(name), "c%d", i);
		ids[i] = add_case(st, "w", name, "f", STORE_QUEUED);
		m[i] = (struct model_case){.state = STORE_QUEUED, .resume = -1};
	}
	for (int step = 0; step < 3000; step++) {
		int i = (int)(rng_next(&s) % MODEL_N), op = (int)(rng_next(&s) % 6), r, want_r;
		enum store_state from = rng_next(&s) % 2
		                            ? m[i].state
		                            : (enum store_state)(rng_next(&s) % _STORE_STATE_MAX);
		enum store_state to = (enum store_state)(rng_next(&s) % _STORE_STATE_MAX);
		struct model_case *c = &m[i];

		if (!in_batch && rng_next(&s) % 40 == 0) {
			ck_assert_int_eq(store_begin(st), 0);
			memcpy(saved, m, sizeof(m));
			in_batch = true;
		} else if (in_batch && rng_next(&s) % 15 == 0) {
			if (rng_next(&s) % 2) {
				ck_assert_int_eq(store_commit(st), 0);
			} else {
				ck_assert_int_eq(store_rollback(st), 0);
				memcpy(m, saved, sizeof(m));
			}
			in_batch = false;
		}
		switch (op) {
		case 0:
		case 1:
			r = store_case_transition(st, ids[i], from, to, NULL);
			want_r = from == c->state ? 0 : -ESTALE;
			if (want_r == 0) {
				if (to == STORE_RETRY_WAIT && from != STORE_RETRY_WAIT)
					c->resume = (int)from;
				c->state = to;
			}
			break;
		case 2:
			r = store_case_retry_wait(st, ids[i], from, 10, "wait");
			want_r = from == c->state ? 0 : -ESTALE;
			if (want_r == 0) {
				if (from != STORE_RETRY_WAIT)
					c->resume = (int)from;
				c->state = STORE_RETRY_WAIT;
				c->attempts++;
			}
			break;
		case 3: {
			int dest = rng_next(&s) % 3 == 0 ? (int)to : -1;

			r = store_case_resume(st, ids[i], dest);
			want_r = c->state == STORE_RETRY_WAIT ? 0 : -ESTALE;
			if (want_r == 0) {
				c->state = dest >= 0        ? (enum store_state)dest
				           : c->resume >= 0 ? (enum store_state)c->resume
				                            : STORE_QUEUED;
				c->resume = -1;
			}
			break;
		}
		case 4:
			if (rng_next(&s) % 4) {
				bool hold = rng_next(&s) % 2;

				/* A value, not a toggle: setting the current one is a no-op. */
				r = store_case_set_held(st, ids[i], hold);
				want_r = 0;
				c->held = hold;
			} else {
				r = store_case_reset(st, ids[i], to);
				want_r = 0;
				c->state = to;
				c->attempts = 0;
				c->resume = -1;
			}
			break;
		default:
			r = store_case_transition(st, ids[i] + 1000, from, to, NULL);
			want_r = -ENOENT;
			break;
		}
		ck_assert_msg(r == want_r, "seed %" PRIu64 " step %d op %d: got %d, model says %d",
		              seed, step, op, r, want_r);
		if (r == 0)
			accepted++;
		else
			refused++;
		model_check(st, ids, m, i, seed, step);
	}
	if (in_batch)
		ck_assert_int_eq(store_commit(st), 0);
	for (int i = 0; i < MODEL_N; i++) {
		model_check(st, ids, m, i, seed, -1);
		want[m[i].state]++;
	}
	ck_assert_int_eq(store_count_states(st, counts, &held), 0);
	for (int k = 0; k < _STORE_STATE_MAX; k++)
		ck_assert_int_eq(counts[k], want[k]);
	/* The sequence exercised both outcomes. */
	ck_assert_int_gt(accepted, 500);
	ck_assert_int_gt(refused, 500);
	store_close(st);
}
END_TEST

/* ----------------------------------------------------------- concurrency */

struct racer {
	struct store *st;
	const char *owner;
	pthread_barrier_t *start, *done;
	int rounds;
	int64_t *got; /* per round: the claimed id, or a negative errno */
};

static void *
racer_main(void *arg)
{
	struct racer *rc = arg;

	for (int i = 0; i < rc->rounds; i++) {
		struct store_case c;
		int r;

		pthread_barrier_wait(rc->start);
		r = store_case_claim(rc->st, rc->owner, 1000, 60, &c);
		rc->got[i] = r == 0 ? c.id : r;
		if (r == 0)
			store_case_clear(&c);
		pthread_barrier_wait(rc->done);
	}
	return NULL;
}

START_TEST(test_claim_race)
{
	enum { ROUNDS = 300 };
	struct store *main_st = open_rw();
	int64_t id = add_case(main_st, "w", "c", "f", STORE_QUEUED);
	static int64_t got_a[ROUNDS], got_b[ROUNDS];
	pthread_barrier_t start, done;
	struct racer a = {.owner = "A", .rounds = ROUNDS, .got = got_a};
	struct racer b = {.owner = "B", .rounds = ROUNDS, .got = got_b};
	pthread_t ta, tb;
	int wins_a = 0, wins_b = 0;

	/* Two threads, each with its own handle, claim the one case at once. */
	a.st = open_rw();
	b.st = open_rw();
	pthread_barrier_init(&start, NULL, 3);
	pthread_barrier_init(&done, NULL, 3);
	a.start = b.start = &start;
	a.done = b.done = &done;
	ck_assert_int_eq(pthread_create(&ta, NULL, racer_main, &a), 0);
	ck_assert_int_eq(pthread_create(&tb, NULL, racer_main, &b), 0);
	for (int i = 0; i < ROUNDS; i++) {
		pthread_barrier_wait(&start);
		pthread_barrier_wait(&done);
		/* Exactly one wins; the other finds nothing claimable. */
		ck_assert_msg((got_a[i] == id && got_b[i] == -ENOENT) ||
		                  (got_b[i] == id && got_a[i] == -ENOENT),
		              "round %d: A %" PRId64 ", B %" PRId64, i, got_a[i], got_b[i]);
		wins_a += got_a[i] == id;
		wins_b += got_b[i] == id;
		ck_assert_int_eq(store_release_all_leases(main_st), 0);
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	ck_assert_int_eq(wins_a + wins_b, ROUNDS);
	pthread_barrier_destroy(&start);
	pthread_barrier_destroy(&done);
	store_close(a.st);
	store_close(b.st);
	store_close(main_st);
}
END_TEST

enum { DRAIN_CASES = 400, DRAIN_THREADS = 4 };

struct drainer {
	struct store *st;
	char owner[8];
	int64_t ids[DRAIN_CASES];
	int n;
	int err;
};

static void *
drainer_main(void *arg)
{
	struct drainer *d = arg;
	struct store_case c;
	int r;

	while ((r = store_case_claim(d->st, d->owner, 1000, 60, &c)) == 0) {
		d->ids[d->n++] = c.id;
		/* Finish it, so that our own lease does not make it claimable again. */
		r = store_case_transition(d->st, c.id, c.state, STORE_SUCCEEDED, NULL);
		store_case_clear(&c);
		if (r < 0)
			break;
	}
	d->err = r == -ENOENT ? 0 : r;
	return NULL;
}

START_TEST(test_claim_drain)
{
	struct store *st = open_rw();
	static struct drainer d[DRAIN_THREADS];
	static char seen[DRAIN_CASES * 2 + 8];
	pthread_t t[DRAIN_THREADS];
	int total = 0, claimable = 0;

	/*
	 * Several handles drain one queue: every claimable case is claimed exactly
	 * once; held, finished and not-yet-due cases never are.
	 */
	ck_assert_int_eq(store_begin(st), 0);
	for (int i = 0; i < DRAIN_CASES; i++) {
		char name[16];
		int64_t id;

		snprintf(name, sizeof(name), "c%d", i);
		id = add_case(st, "w", name, "f", i % 10 == 1 ? STORE_FAILED : STORE_QUEUED);
		if (i % 10 == 2)
			ck_assert_int_eq(store_case_set_held(st, id, true), 0);
		if (i % 10 == 3)
			ck_assert_int_eq(store_case_retry_wait(st, id, STORE_QUEUED, 5000, NULL),
			                 0);
		if (i % 10 == 4)
			ck_assert_int_eq(store_case_retry_wait(st, id, STORE_QUEUED, 999, NULL), 0);
		claimable += i % 10 != 1 && i % 10 != 2 && i % 10 != 3;
	}
	ck_assert_int_eq(store_commit(st), 0);
	for (int i = 0; i < DRAIN_THREADS; i++) {
		memset(&d[i], 0, sizeof(d[i]));
		d[i].st = open_rw();
		snprintf(d[i].owner, sizeof(d[i].owner), "t%d", i);
	}
	for (int i = 0; i < DRAIN_THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, drainer_main, &d[i]), 0);
	for (int i = 0; i < DRAIN_THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < DRAIN_THREADS; i++) {
		ck_assert_int_eq(d[i].err, 0);
		for (int k = 0; k < d[i].n; k++) {
			int64_t id = d[i].ids[k];
			int idx = (int)(id - 1) % 10;

			ck_assert_int_le(id, DRAIN_CASES);
			ck_assert_msg(!seen[id], "case %" PRId64 " claimed twice", id);
			ck_assert_msg(idx != 1 && idx != 2 && idx != 3, "case %" PRId64 " claimed",
			              id);
			seen[id] = 1;
		}
		total += d[i].n;
		store_close(d[i].st);
	}
	ck_assert_int_eq(total, claimable);
	store_close(st);
}
END_TEST

START_TEST(test_lease_expiry)
{
	struct store *a = open_rw(), *b = open_rw();
	int64_t id = add_case(a, "w", "c", "f", STORE_QUEUED);
	struct store_case c;

	/* A claims at t=1000 for 30 s. */
	ck_assert_int_eq(store_case_claim(a, "A", 1000, 30, &c), 0);
	ck_assert_int_eq(c.id, id);
	ck_assert_str_eq(c.lease_owner, "A");
	ck_assert_int_eq(c.lease_until, 1030);
	store_case_clear(&c);

	/* A live lease is not taken by another owner; its holder may claim it again. */
	ck_assert_int_eq(store_case_claim(b, "B", 1029, 30, &c), -ENOENT);
	ck_assert_int_eq(store_case_claim(a, "A", 1010, 30, &c), 0);
	ck_assert_int_eq(c.lease_until, 1040);
	store_case_clear(&c);
	ck_assert_int_eq(store_case_renew(a, id, "A", 1050), 0);
	ck_assert_int_eq(store_case_claim(b, "B", 1049, 30, &c), -ENOENT);

	/* Once expired, B takes it over; A can no longer renew or drop it. */
	ck_assert_int_eq(store_case_claim(b, "B", 1050, 30, &c), 0);
	ck_assert_int_eq(c.id, id);
	ck_assert_str_eq(c.lease_owner, "B");
	store_case_clear(&c);
	ck_assert_int_eq(store_case_renew(a, id, "A", 2000), -ESTALE);
	ck_assert_int_eq(store_case_unclaim(a, id, "A"), -ESTALE);
	ck_assert_int_eq(store_case_renew(a, id + 1, "A", 2000), -ENOENT);
	ck_assert_int_eq(store_case_claim(a, "A", 1060, 30, &c), -ENOENT);

	/* Dropped, it is free again; release_all drops every lease. */
	ck_assert_int_eq(store_case_unclaim(b, id, "B"), 0);
	ck_assert_int_eq(store_case_claim(a, "A", 1060, 30, &c), 0);
	store_case_clear(&c);
	ck_assert_int_eq(store_release_all_leases(b), 0);
	ck_assert_int_eq(store_case_get(b, id, &c), 0);
	ck_assert_ptr_null(c.lease_owner);
	store_case_clear(&c);
	ck_assert_int_eq(store_case_claim(b, "B", 1061, 30, NULL), 0);

	/* Held, finished and future cases are not claimable. */
	ck_assert_int_eq(store_case_unclaim(b, id, "B"), 0);
	ck_assert_int_eq(store_case_set_held(a, id, true), 0);
	ck_assert_int_eq(store_case_claim(a, "A", 1100, 30, &c), -ENOENT);
	ck_assert_int_eq(store_case_set_held(a, id, false), 0);
	ck_assert_int_eq(store_case_retry_wait(a, id, STORE_QUEUED, 1200, NULL), 0);
	ck_assert_int_eq(store_case_claim(a, "A", 1199, 30, &c), -ENOENT);
	ck_assert_int_eq(store_case_claim(a, "A", 1200, 30, &c), 0);
	ck_assert_int_eq(c.state, STORE_RETRY_WAIT);
	store_case_clear(&c);
	ck_assert_int_eq(store_case_transition(a, id, STORE_RETRY_WAIT, STORE_CANCELLED, NULL), 0);
	ck_assert_int_eq(store_case_claim(b, "B", 5000, 30, &c), -ENOENT);
	store_close(a);
	store_close(b);
}
END_TEST

/* -------------------------------------------------------------- recovery */

/* Names that a naive layer would mangle. */
static char *const odd_names[] = {
    "two\nlines",
    "quote ' and \" and `",
    "bytes \xff\xfe\x80 not utf-8",
    " lead and trail ",
    "back\\slash\ttab; DROP TABLE cases; --",
    "%s %n %%",
};

static void
fill_queue(struct store *st, int64_t *ids)
{
	for (size_t i = 0; i < GC_ARRAY_SIZE(odd_names); i++) {
		struct store_file files[] = {
		    {.relpath = odd_names[i], .size = 100 + (int64_t)i, .mtime_ns = 123456789},
		    {.relpath = "sub/\n\xc3\x28.dcm", .size = 1, .mtime_ns = -1},
		};
		struct store_case_new c = {
		    .watch = "w",
		    .name = odd_names[i],
		    .path = odd_names[i],
		    .fingerprint = "fp",
		    .state = STORE_QUEUED,
		    .files = files,
		    .n_files = 2,
		};
		struct store_output o = {
		    .socket = "out",
		    .super_kind = "Value",
		    .value_json = odd_names[i],
		};
		struct store_file *fl;
		size_t n, k;

		ck_assert_int_eq(store_case_insert(st, &c, &ids[i]), 0);
		ck_assert_int_eq(
		    store_case_transition(st, ids[i], STORE_QUEUED, STORE_UPLOADING, odd_names[i]),
		    0);
		ck_assert_int_eq(store_file_list(st, ids[i], &fl, &n), 0);
		k = strcmp(fl[0].relpath, odd_names[i]) == 0 ? 0 : 1;
		ck_assert_str_eq(fl[k].relpath, odd_names[i]);
		ck_assert_int_eq(store_file_set_upload(st, fl[k].id, "pk", "url", "mp"), 0);
		ck_assert_int_eq(store_part_done(st, fl[k].id, 1, "etag-1", 60), 0);
		ck_assert_int_eq(store_part_done(st, fl[k].id, 2, "etag-2", 40), 0);
		store_file_list_free(fl, n);
		ck_assert_int_eq(
		    store_remote_intent(st, ids[i], STORE_REMOTE_JOB, NULL, odd_names[i]), 0);
		o.case_id = ids[i];
		ck_assert_int_eq(store_output_put(st, &o), 0);
		ck_assert_int_eq(store_request_add(st, STORE_REQ_ENQUEUE, 0, "w", odd_names[i]), 0);
	}
}

static void
check_queue(struct store *st, const int64_t *ids)
{
	for (size_t i = 0; i < GC_ARRAY_SIZE(odd_names); i++) {
		struct store_case c;
		struct store_file *fl;
		struct store_part *p;
		struct store_remote r;
		struct store_output *o;
		int64_t found;
		size_t n, np;

		ck_assert_int_eq(store_case_find(st, "w", odd_names[i], "fp", &found), 0);
		ck_assert_int_eq(found, ids[i]);
		ck_assert_int_eq(store_case_get(st, ids[i], &c), 0);
		ck_assert_str_eq(c.name, odd_names[i]);
		ck_assert_str_eq(c.path, odd_names[i]);
		ck_assert_str_eq(c.error, odd_names[i]);
		ck_assert_int_eq(c.state, STORE_UPLOADING);
		store_case_clear(&c);

		ck_assert_int_eq(store_file_list(st, ids[i], &fl, &n), 0);
		ck_assert_uint_eq(n, 2);
		for (size_t k = 0; k < n; k++) {
			if (strcmp(fl[k].relpath, odd_names[i]) != 0) {
				ck_assert_str_eq(fl[k].relpath, "sub/\n\xc3\x28.dcm");
				ck_assert_int_eq(fl[k].mtime_ns, -1);
				continue;
			}
			ck_assert_int_eq(fl[k].size, 100 + (int64_t)i);
			ck_assert_int_eq(fl[k].mtime_ns, 123456789);
			ck_assert_str_eq(fl[k].multipart_id, "mp");
			ck_assert_int_eq(fl[k].parts_done, 2);
			ck_assert_int_eq(fl[k].bytes_done, 100);
			ck_assert_int_eq(store_part_list(st, fl[k].id, &p, &np), 0);
			ck_assert_uint_eq(np, 2);
			ck_assert_str_eq(p[1].etag, "etag-2");
			store_part_list_free(p, np);
		}
		store_file_list_free(fl, n);

		ck_assert_int_eq(store_remote_get(st, ids[i], STORE_REMOTE_JOB, NULL, &r), 0);
		ck_assert(r.intent_only);
		ck_assert_str_eq(r.title, odd_names[i]);
		store_remote_clear(&r);
		ck_assert_int_eq(store_output_list(st, ids[i], &o, &n), 0);
		ck_assert_uint_eq(n, 1);
		ck_assert_str_eq(o[0].value_json, odd_names[i]);
		store_output_list_free(o, n);
	}
}

static int
name_cb(const struct store_case *c, void *ud)
{
	size_t *i = ud;

	ck_assert_str_eq(c->name, odd_names[*i]);
	(*i)++;
	return 0;
}

START_TEST(test_reopen_roundtrip)
{
	int64_t ids[GC_ARRAY_SIZE(odd_names)];
	struct store *st = open_rw();
	struct store_request q;
	char *msg = NULL;
	size_t i = 0;

	fill_queue(st, ids);
	store_close(st);

	/* Reopened read-write and read-only, every byte is back. */
	st = open_rw();
	check_queue(st, ids);
	store_close(st);
	ck_assert_int_eq(store_open(g_dir, STORE_OPEN_READONLY, &st, &msg), 0);
	check_queue(st, ids);
	ck_assert_int_eq(store_case_foreach(st, NULL, name_cb, &i), 0);
	ck_assert_uint_eq(i, GC_ARRAY_SIZE(odd_names));
	ck_assert_int_eq(store_request_next(st, &q), 0);
	ck_assert_str_eq(q.path, odd_names[0]);
	store_request_clear(&q);
	store_close(st);
}
END_TEST

START_TEST(test_sigkill)
{
	char *path = db_path();
	struct store *st;
	pid_t pid;
	int status;

	/*
	 * A process killed mid-transaction: what it committed is there, the
	 * transaction it had open is not, and the file is consistent.
	 */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct store_case_new c = {
		    .watch = "w",
		    .name = "kept",
		    .fingerprint = "f",
		    .state = STORE_QUEUED,
		};
		int64_t id;

		if (store_open(g_dir, 0, &st, NULL) < 0 || store_case_insert(st, &c, &id) < 0)
			_exit(1);
		if (store_begin(st) < 0)
			_exit(2);
		c.name = "lost";
		if (store_case_insert(st, &c, &id) < 0 ||
		    store_case_transition(st, 1, STORE_QUEUED, STORE_FAILED, NULL) < 0)
			_exit(3);
		raise(SIGKILL);
		_exit(4);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	st = open_rw();
	ck_assert_int_eq(store_case_find(st, "w", "kept", "f", NULL), 0);
	ck_assert_int_eq(store_case_find(st, "w", "lost", "f", NULL), -ENOENT);
	ck_assert_int_eq(case_state(st, 1), STORE_QUEUED);
	ck_assert_int_eq(store_integrity_check(st, NULL), 0);
	store_close(st);
	free(path);
}
END_TEST

/* Commits synced and relaxed since 'base' (the stats then). */
static void
sync_delta(struct store *st, const uint64_t base[2], uint64_t want_synced, uint64_t want_relaxed)
{
	uint64_t synced, relaxed;

	store_sync_stats(st, &synced, &relaxed);
	ck_assert_uint_eq(synced - base[0], want_synced);
	ck_assert_uint_eq(relaxed - base[1], want_relaxed);
}

START_TEST(test_sync_policy)
{
	struct store *st;
	struct store_file files[] = {{.relpath = "a", .size = 10, .mtime_ns = 1}};
	struct store_case_new c = {
	    .watch = "w", .name = "c", .fingerprint = "f", .state = STORE_QUEUED,
	    .files = files, .n_files = 1,
	};
	struct store_file *fl = NULL;
	struct store_part *parts = NULL;
	uint64_t base[2];
	int64_t id, fid;
	size_t n = 0;
	pid_t pid;
	int status;

	/*
	 * Only commits made of re-doable rows skip the sync; anything else in
	 * the same commit makes it a synced one. Both survive a kill.
	 */
	st = open_rw();
	store_sync_stats(st, &base[0], &base[1]);
	ck_assert_int_eq(store_case_insert(st, &c, &id), 0);
	sync_delta(st, base, 1, 0);
	ck_assert_int_eq(store_file_list(st, id, &fl, &n), 0);
	fid = fl[0].id;
	store_file_list_free(fl, n);
	ck_assert_int_eq(store_file_set_upload(st, fid, "pk", NULL, "mp"), 0);
	sync_delta(st, base, 2, 0);

	/* Alone, or batched in one transaction: relaxed. */
	ck_assert_int_eq(store_part_done(st, fid, 1, "e1", 5), 0);
	sync_delta(st, base, 2, 1);
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_part_done(st, fid, 2, "e2", 5), 0);
	ck_assert_int_eq(store_file_set_completed(st, fid), 0);
	ck_assert_int_eq(store_case_set_progress(st, id, 10, 10), 0);
	ck_assert_int_eq(store_commit(st), 0);
	sync_delta(st, base, 2, 2);

	/* One strict row in the batch: synced. */
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_case_set_progress(st, id, 5, 10), 0);
	ck_assert_int_eq(store_case_transition(st, id, STORE_QUEUED, STORE_UPLOADING, NULL), 0);
	ck_assert_int_eq(store_commit(st), 0);
	sync_delta(st, base, 3, 2);

	/* Nothing written: no commit to sync. A rolled-back batch is forgotten. */
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_commit(st), 0);
	sync_delta(st, base, 3, 2);
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_part_done(st, fid, 3, "e3", 5), 0);
	ck_assert_int_eq(store_rollback(st), 0);
	ck_assert_int_eq(store_case_set_progress(st, id, 6, 10), 0);
	sync_delta(st, base, 3, 3);
	store_close(st);

	/* A relaxed commit is in the -wal file when it returns: a kill keeps it. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (store_open(g_dir, 0, &st, NULL) < 0 || store_part_done(st, fid, 3, "e3", 5) < 0)
			_exit(1);
		raise(SIGKILL);
		_exit(2);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	st = open_rw();
	ck_assert_int_eq(store_part_list(st, fid, &parts, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(parts[2].etag, "e3");
	store_part_list_free(parts, n);
	ck_assert_int_eq(store_integrity_check(st, NULL), 0);
	store_close(st);
}
END_TEST

START_TEST(test_migrate_empty_file)
{
	char *path = db_path();
	struct store *st;

	/* An empty file is an empty database: it gets the whole schema. */
	tu_write_file(path, "", 0, 0600);
	st = open_rw();
	ck_assert_int_eq(store_file_version(st), store_schema_version());
	add_case(st, "w", "c", "f", STORE_QUEUED);
	ck_assert_int_eq(store_request_add(st, STORE_REQ_RETRY, 1, NULL, NULL), 0);
	store_close(st);
	free(path);
}
END_TEST

START_TEST(test_migrate_from_v1)
{
	const char *data = tu_env("GCDROP_TEST_DATA", "tests/data");
	char *sql_path = tu_strdupf("%s/store/schema-v1.sql", data);
	char *sql = tu_read_file(sql_path, NULL);
	char *path = db_path(), *fresh_dir = tu_mkdtemp("store-fresh");
	char *fresh_path = tu_strdupf("%s/%s", fresh_dir, STORE_DB_NAME);
	char *v1, *v2, *s_migrated, *s_fresh;
	struct store *st;
	struct store_case c;
	struct store_file *fl;
	char *msg = NULL;
	size_t n;

	/* A version-1 queue, built from the frozen SQL of migration 1, with data in it. */
	ck_assert_msg(sql != NULL, "cannot read '%s'", sql_path);
	raw_exec(path, sql);
	raw_exec(path,
	         "PRAGMA user_version = 1;"
	         "INSERT INTO cases (id, watch, name, fingerprint, state, created, updated) "
	         "VALUES (7, 'w', 'old case', 'fp', 'uploading', 1, 1);"
	         "INSERT INTO files (case_id, relpath, size, mtime_ns) VALUES (7, 'a.mha', 5, 9);"
	         "INSERT INTO events (case_id, time, state) VALUES (7, 1, 'queued');");
	v1 = raw_text(path, "PRAGMA user_version");
	ck_assert_str_eq(v1, "1");

	/* A reader refuses the old schema rather than guess. */
	ck_assert_int_eq(store_open(g_dir, STORE_OPEN_READONLY, &st, &msg), -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(msg, "older"));
	free(msg);
	msg = NULL;

	/* Opened read-write, it is migrated and keeps its data. */
	st = open_rw();
	ck_assert_int_eq(store_file_version(st), store_schema_version());
	ck_assert_int_eq(store_case_get(st, 7, &c), 0);
	ck_assert_str_eq(c.name, "old case");
	ck_assert_int_eq(c.state, STORE_UPLOADING);
	store_case_clear(&c);
	ck_assert_int_eq(store_file_list(st, 7, &fl, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(fl[0].relpath, "a.mha");
	store_file_list_free(fl, n);
	ck_assert_int_eq(store_request_add(st, STORE_REQ_HOLD, 7, NULL, NULL), 0);
	ck_assert_int_eq(store_case_transition(st, 7, STORE_UPLOADING, STORE_QUEUED, NULL), 0);
	store_close(st);
	v2 = raw_text(path, "PRAGMA user_version");
	ck_assert_int_eq(atoi(v2), store_schema_version());

	/* The migrated schema is the schema of a new file. */
	ck_assert_int_eq(store_open(fresh_dir, 0, &st, NULL), 0);
	store_close(st);
	s_migrated = schema_dump(path);
	s_fresh = schema_dump(fresh_path);
	ck_assert_msg(strcmp(s_migrated, s_fresh) == 0, "migrated schema differs from a new one");

	free(s_migrated);
	free(s_fresh);
	free(v1);
	free(v2);
	free(sql);
	free(sql_path);
	free(path);
	tu_rmtree(fresh_dir);
	free(fresh_dir);
	free(fresh_path);
}
END_TEST

/*
 * Property: a version-3 queue with data in it (cases, a pending request) is
 * migrated to version 4 in one step: its data stays, the settings and settling
 * tables start empty, and the schema is that of a new file.
 */
START_TEST(test_migrate_from_v3)
{
	const char *data = tu_env("GCDROP_TEST_DATA", "tests/data");
	char *sql_path = tu_strdupf("%s/store/schema-v3.sql", data);
	char *sql = tu_read_file(sql_path, NULL);
	char *path = db_path(), *fresh_dir = tu_mkdtemp("store-fresh");
	char *fresh_path = tu_strdupf("%s/%s", fresh_dir, STORE_DB_NAME);
	char *v, *s_migrated, *s_fresh;
	struct store *st;
	struct store_case c;
	struct store_request q;
	int64_t n = -1;
	bool held = true;

	ck_assert_msg(sql != NULL, "cannot read '%s'", sql_path);
	raw_exec(path, sql);
	raw_exec(path,
	         "PRAGMA user_version = 3;"
	         "INSERT INTO cases (id, watch, name, fingerprint, state, held, created, updated) "
	         "VALUES (3, 'w', 'kept', 'fp', 'queued', 1, 1, 1);"
	         "INSERT INTO requests (kind, case_id, created) VALUES ('release', 3, 1);");
	st = open_rw();
	ck_assert_int_eq(store_file_version(st), 4);
	ck_assert_int_eq(store_case_get(st, 3, &c), 0);
	ck_assert_str_eq(c.name, "kept");
	ck_assert(c.held);
	store_case_clear(&c);
	ck_assert_int_eq(store_request_next(st, &q), 0);
	ck_assert_int_eq(q.kind, STORE_REQ_RELEASE);
	ck_assert_int_eq(q.case_id, 3);
	store_request_clear(&q);
	ck_assert_int_eq(store_hold_all_get(st, &held), 0);
	ck_assert(!held);
	ck_assert_int_eq(store_settling_count(st, &n), 0);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(store_hold_all_set(st, true), 0);
	store_close(st);
	v = raw_text(path, "PRAGMA user_version");
	ck_assert_str_eq(v, "4");
	free(v);
	v = raw_text(path, "SELECT value FROM settings WHERE name = 'hold_all'");
	ck_assert_str_eq(v, "1");
	free(v);

	ck_assert_int_eq(store_open(fresh_dir, 0, &st, NULL), 0);
	store_close(st);
	s_migrated = schema_dump(path);
	s_fresh = schema_dump(fresh_path);
	ck_assert_msg(strcmp(s_migrated, s_fresh) == 0, "migrated schema differs from a new one");
	free(s_migrated);
	free(s_fresh);
	free(sql);
	free(sql_path);
	free(path);
	tu_rmtree(fresh_dir);
	free(fresh_dir);
	free(fresh_path);
}
END_TEST

/*
 * Property: settings survive close and reopen, are read by other handles (the
 * CLI writes, the daemon reads), and a NULL value removes one.
 */
START_TEST(test_settings)
{
	struct store *st = open_rw(), *other;
	char *v = NULL, *msg = NULL;
	bool held = true;

	ck_assert_int_eq(store_setting_get(st, "nothing", &v), -ENOENT);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(store_hold_all_get(st, &held), 0);
	ck_assert(!held);
	ck_assert_int_eq(store_setting_set(st, "k", "first"), 0);
	ck_assert_int_eq(store_setting_set(st, "k", "second"), 0);
	ck_assert_int_eq(store_setting_get(st, "k", &v), 0);
	ck_assert_str_eq(v, "second");
	free(v);
	ck_assert_int_eq(store_hold_all_set(st, true), 0);
	ck_assert_int_eq(store_setting_set(st, NULL, "x"), -EINVAL);
	/* Another handle (read-only, as `gcdrop status`) sees them. */
	ck_assert_int_eq(store_open(g_dir, STORE_OPEN_READONLY, &other, &msg), 0);
	ck_assert_int_eq(store_hold_all_get(other, &held), 0);
	ck_assert(held);
	ck_assert_int_eq(store_hold_all_set(other, false), -EROFS);
	store_close(other);
	store_close(st);
	st = open_rw();
	ck_assert_int_eq(store_hold_all_get(st, &held), 0);
	ck_assert(held);
	ck_assert_int_eq(store_hold_all_set(st, false), 0);
	ck_assert_int_eq(store_hold_all_get(st, &held), 0);
	ck_assert(!held);
	ck_assert_int_eq(store_setting_set(st, "k", NULL), 0);
	ck_assert_int_eq(store_setting_get(st, "k", &v), -ENOENT);
	ck_assert_int_eq(store_setting_set(st, "k", NULL), 0);
	store_close(st);
}
END_TEST

struct settling_seen {
	int n;
	char names[8][32];
	int64_t since[8];
};

static int
settling_cb(const struct store_settling *row, void *ud)
{
	struct settling_seen *s = ud;

	ck_assert_uint_eq(row->name_len, strlen(row->name));
	if (s->n < 8) {
		snprintf(s->names[s->n], sizeof(s->names[0]), "%s/%s", row->watch, row->name);
		s->since[s->n] = row->since;
	}
	s->n++;
	return s->n >= 100 ? -ECANCELED : 0;
}

/*
 * Property: the settling table lists (watch, name, since) oldest first, per
 * watch or all; adding twice updates since; removing a missing row is fine;
 * clear empties it; another handle reads it; odd names come back byte for
 * byte; 10,000 rows in one transaction are quick.
 */
START_TEST(test_settling)
{
	struct store *st = open_rw(), *ro;
	struct settling_seen seen = { 0 };
	int64_t n = -1;
	long long t0;

	ck_assert_int_eq(store_settling_add(st, "a", "late", 300), 0);
	ck_assert_int_eq(store_settling_add(st, "a", "early", 100), 0);
	ck_assert_int_eq(store_settling_add(st, "b", "new\nline", 200), 0);
	ck_assert_int_eq(store_settling_add(st, "a", "late", 400), 0);
	ck_assert_int_eq(store_settling_add(st, NULL, "x", 1), -EINVAL);
	ck_assert_int_eq(store_settling_count(st, &n), 0);
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(store_settling_foreach(st, NULL, settling_cb, &seen), 0);
	ck_assert_int_eq(seen.n, 3);
	ck_assert_str_eq(seen.names[0], "a/early");
	ck_assert_str_eq(seen.names[1], "b/new\nline");
	ck_assert_str_eq(seen.names[2], "a/late");
	ck_assert_int_eq(seen.since[2], 400);
	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(store_settling_foreach(st, "b", settling_cb, &seen), 0);
	ck_assert_int_eq(seen.n, 1);
	ck_assert_int_eq(store_settling_remove(st, "a", "early"), 0);
	ck_assert_int_eq(store_settling_remove(st, "a", "early"), 0);
	ck_assert_int_eq(store_open(g_dir, STORE_OPEN_READONLY, &ro, NULL), 0);
	ck_assert_int_eq(store_settling_count(ro, &n), 0);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(store_settling_clear(st), 0);
	ck_assert_int_eq(store_settling_count(ro, &n), 0);
	ck_assert_int_eq(n, 0);
	/* 10,000 cases dropped at once: one transaction, well under a second. */
	t0 = tu_now_ms();
	ck_assert_int_eq(store_begin(st), 0);
	for (int i = 0; i < 10000; i++) {
		char name[16];

		snprintf(name, sizeof(name), "c%05d", i);
		ck_assert_int_eq(store_settling_add(st, "a", name, 1000 + i), 0);
	}
	ck_assert_int_eq(store_commit(st), 0);
	ck_assert_int_eq(store_begin(st), 0);
	for (int i = 0; i < 10000; i += 2) {
		char name[16];

		snprintf(name, sizeof(name), "c%05d", i);
		ck_assert_int_eq(store_settling_remove(st, "a", name), 0);
	}
	ck_assert_int_eq(store_commit(st), 0);
	ck_assert_msg(tu_now_ms() - t0 < 5000, "10,000 settling rows took %lld ms",
		      tu_now_ms() - t0);
	ck_assert_int_eq(store_settling_count(ro, &n), 0);
	ck_assert_int_eq(n, 5000);
	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(store_settling_foreach(ro, NULL, settling_cb, &seen), -ECANCELED);
	ck_assert_int_eq(seen.n, 100);
	ck_assert_str_eq(seen.names[0], "a/c00001");
	store_close(ro);
	store_close(st);
}
END_TEST

/* Property: bytes left of a state is one sum over that state's cases; totals not known are counted. */
START_TEST(test_bytes_left)
{
	struct store *st = open_rw();
	int64_t a = add_case(st, "w", "a", "1", STORE_UPLOADING);
	int64_t b = add_case(st, "w", "b", "2", STORE_UPLOADING);
	int64_t left = -1, unknown = -1;

	add_case(st, "w", "q", "3", STORE_QUEUED);
	ck_assert_int_eq(store_bytes_left(st, STORE_UPLOADING, &left, &unknown), 0);
	ck_assert_int_eq(left, 0);
	ck_assert_int_eq(unknown, 2);
	ck_assert_int_eq(store_case_set_progress(st, a, 100, 1000), 0);
	ck_assert_int_eq(store_case_set_progress(st, b, 2048, 2048), 0);
	ck_assert_int_eq(store_bytes_left(st, STORE_UPLOADING, &left, &unknown), 0);
	ck_assert_int_eq(left, 900);
	ck_assert_int_eq(unknown, 0);
	ck_assert_int_eq(store_bytes_left(st, STORE_RUNNING, &left, NULL), 0);
	ck_assert_int_eq(left, 0);
	ck_assert_int_eq(store_bytes_left(st, (enum store_state)99, &left, NULL), -EINVAL);
	store_close(st);
}
END_TEST

START_TEST(test_readonly_handle)
{
	struct store *rw, *ro = NULL;
	int64_t counts[_STORE_STATE_MAX], held;
	char *msg = NULL;
	int64_t id;

	/* No queue yet: -ENOENT and a message saying so. */
	ck_assert_int_eq(store_open(g_dir, STORE_OPEN_READONLY, &ro, &msg), -ENOENT);
	ck_assert_ptr_null(ro);
	ck_assert_ptr_nonnull(strstr(msg, "does not exist yet"));
	free(msg);
	msg = NULL;

	/* A reader sees what the writer commits, while both are open; it cannot write. */
	rw = open_rw();
	ck_assert_int_eq(store_open(g_dir, STORE_OPEN_READONLY, &ro, &msg), 0);
	id = add_case(rw, "w", "c", "f", STORE_QUEUED);
	ck_assert_int_eq(case_state(ro, id), STORE_QUEUED);
	ck_assert_int_eq(store_case_transition(rw, id, STORE_QUEUED, STORE_UPLOADING, NULL), 0);
	ck_assert_int_eq(case_state(ro, id), STORE_UPLOADING);
	ck_assert_int_eq(store_case_transition(ro, id, STORE_UPLOADING, STORE_FAILED, NULL),
	                 -EROFS);
	ck_assert_ptr_nonnull(strstr(store_errmsg(ro), "readonly"));
	ck_assert_int_eq(store_request_add(ro, STORE_REQ_HOLD, 0, NULL, NULL), -EROFS);

	/* A read transaction gives one snapshot across queries. */
	ck_assert_int_eq(store_begin(ro), 0);
	ck_assert_int_eq(store_count_states(ro, counts, &held), 0);
	ck_assert_int_eq(store_case_transition(rw, id, STORE_UPLOADING, STORE_FAILED, NULL), 0);
	ck_assert_int_eq(case_state(ro, id), STORE_UPLOADING);
	ck_assert_int_eq(store_commit(ro), 0);
	ck_assert_int_eq(case_state(ro, id), STORE_FAILED);
	store_close(ro);
	store_close(rw);
}
END_TEST

static int
nobody_reads(void *ud)
{
	struct store *st = NULL;
	int64_t counts[_STORE_STATE_MAX], held;
	char *msg = NULL;
	int r;

	(void)ud;
	r = store_open(g_dir, STORE_OPEN_READONLY, &st, &msg);
	if (r < 0) {
		fprintf(stderr, "read-only open as nobody: %d %s\n", r, msg ? msg : "");
		return 10;
	}
	if (store_count_states(st, counts, &held) < 0 || counts[STORE_QUEUED] != 2)
		return 11;
	store_close(st);
	return 0;
}

START_TEST(test_readonly_as_nobody)
{
	char *path = db_path();
	char *wal = tu_strdupf("%s-wal", path), *shm = tu_strdupf("%s-shm", path);
	struct store *st;

	/*
	 * `gcdrop status` by a user who may read the queue but not write the
	 * directory: with the daemon's -wal/-shm present, and without them.
	 */
	ck_assert_int_eq(chmod(g_dir, 0755), 0);
	st = open_rw();
	add_case(st, "w", "a", "f", STORE_QUEUED);
	add_case(st, "w", "b", "f", STORE_QUEUED);
	store_close(st);
	ck_assert_int_eq(chmod(path, 0644), 0);
	ck_assert_int_eq(access(shm, F_OK), 0);
	ck_assert_int_eq(tu_as_nobody(nobody_reads, NULL), 0);

	ck_assert_int_eq(unlink(wal), 0);
	ck_assert_int_eq(unlink(shm), 0);
	ck_assert_int_eq(tu_as_nobody(nobody_reads, NULL), 0);
	free(wal);
	free(shm);
	free(path);
}
END_TEST

/* ---------------------------------------------------------------- errors */

static int
nobody_writes(void *ud)
{
	const char *expect = ud;
	struct store *st = NULL;
	char *msg = NULL, *path = db_path();
	int r;

	r = store_open(g_dir, 0, &st, &msg);
	if (r != -EROFS) {
		fprintf(stderr, "read-write open as nobody: %d %s\n", r, msg ? msg : "");
		return 20;
	}
	if (st != NULL || msg == NULL || strstr(msg, path) == NULL || strstr(msg, expect) == NULL) {
		fprintf(stderr, "unexpected message: %s\n", msg ? msg : "(null)");
		return 21;
	}
	free(msg);
	free(path);
	return 0;
}

START_TEST(test_rw_as_nobody)
{
	char *path = db_path();
	struct store *st;

	/* The directory is root's: nobody can create the queue in it. */
	ck_assert_int_eq(chmod(g_dir, 0755), 0);
	ck_assert_int_eq(tu_as_nobody(nobody_writes, "cannot create"), 0);
	ck_assert_int_ne(access(path, F_OK), 0);

	/* The queue exists but is root's: a clear error naming it, not a silent read-only open. */
	st = open_rw();
	add_case(st, "w", "c", "f", STORE_QUEUED);
	store_close(st);
	ck_assert_int_eq(chmod(path, 0644), 0);
	ck_assert_int_eq(tu_as_nobody(nobody_writes, "not writable"), 0);
	free(path);
}
END_TEST

static void
check_refused(const char *bytes, size_t len, int want, const char *what)
{
	char *path = db_path();
	struct store *st = NULL;
	char *msg = NULL;

	tu_write_file(path, bytes, (ssize_t)len, 0600);
	for (int ro = 0; ro < 2; ro++) {
		ck_assert_int_eq(store_open(g_dir, ro ? STORE_OPEN_READONLY : 0, &st, &msg), want);
		ck_assert_ptr_null(st);
		ck_assert_msg(msg != NULL && strstr(msg, path) != NULL && strstr(msg, what) != NULL,
		              "message: %s", msg ? msg : "(null)");
		free(msg);
		msg = NULL;
		assert_file_unchanged(path, bytes, len);
	}
	free(path);
}

START_TEST(test_corrupt_file)
{
	enum { LEN = 8192 };
	static char bytes[LEN];
	uint64_t s = 12345;

	/* Random bytes: refused by the header check, file unchanged. */
	for (size_t i = 0; i < LEN; i++)
		bytes[i] = (char)rng_next(&s);
	check_refused(bytes, LEN, -EIO, "not an SQLite database");

	/* The right magic, garbage after it: SQLite itself refuses, file unchanged. */
	memcpy(bytes, "SQLite format 3", 16);
	check_refused(bytes, LEN, -EIO, "cannot read");

	/* A file shorter than the header. */
	check_refused("SQLite", 6, -EIO, "not an SQLite database");
}
END_TEST

START_TEST(test_newer_version)
{
	char *path = db_path(), *before;
	struct store *st;
	char *msg = NULL;
	size_t len;

	st = open_rw();
	add_case(st, "w", "c", "f", STORE_QUEUED);
	store_close(st);
	raw_exec(path, "PRAGMA user_version = 99");
	before = tu_read_file(path, &len);
	ck_assert_ptr_nonnull(before);

	/* A schema newer than ours: refused, with both versions named, file untouched. */
	for (int ro = 0; ro < 2; ro++) {
		st = NULL;
		ck_assert_int_eq(store_open(g_dir, ro ? STORE_OPEN_READONLY : 0, &st, &msg),
		                 -ENOTSUP);
		ck_assert_ptr_null(st);
		ck_assert_ptr_nonnull(strstr(msg, path));
		ck_assert_ptr_nonnull(strstr(msg, "version 99"));
		ck_assert_ptr_nonnull(strstr(msg, "newer"));
		free(msg);
		msg = NULL;
		assert_file_unchanged(path, before, len);
	}
	free(before);
	free(path);
}
END_TEST

START_TEST(test_bad_args)
{
	struct store *st = NULL;
	struct store_file dup[] = {{.relpath = "a"}, {.relpath = "a"}};
	struct store_case_new c = {
	    .watch = "w",
	    .name = "c",
	    .fingerprint = "f",
	    .state = STORE_QUEUED,
	    .files = dup,
	    .n_files = 2,
	};
	char *msg = NULL, *missing = tu_strdupf("%s/nope", g_dir);
	int64_t id = 77;

	/* A missing state directory, for writers and readers. */
	ck_assert_int_eq(store_open(missing, 0, &st, &msg), -ENOENT);
	ck_assert_ptr_nonnull(strstr(msg, missing));
	free(msg);
	ck_assert_int_eq(store_open(missing, STORE_OPEN_READONLY, &st, &msg), -ENOENT);
	ck_assert_ptr_nonnull(strstr(msg, "does not exist yet"));
	free(msg);
	ck_assert_int_eq(store_open(NULL, 0, &st, NULL), -EINVAL);
	ck_assert_ptr_null(st);

	/* Two files with one relpath: refused, and nothing of the case is left behind. */
	st = open_rw();
	ck_assert_int_eq(store_case_insert(st, &c, &id), -EINVAL);
	ck_assert_int_eq(id, 77);
	ck_assert_int_eq(store_case_find(st, "w", "c", "f", NULL), -ENOENT);
	c.n_files = 0;
	c.name = NULL;
	ck_assert_int_eq(store_case_insert(st, &c, &id), -EINVAL);
	c.name = "c";
	c.state = _STORE_STATE_MAX;
	ck_assert_int_eq(store_case_insert(st, &c, &id), -EINVAL);
	ck_assert_int_eq(store_case_claim(st, NULL, 0, 1, NULL), -EINVAL);
	store_close(st);
	free(missing);
}
END_TEST

static Suite *
store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_open_new);
	tcase_add_test(tc, test_state_names);
	tcase_add_test(tc, test_insert_dedup);
	tcase_add_test(tc, test_files_parts);
	tcase_add_test(tc, test_remotes_outputs);
	tcase_add_test(tc, test_requests_watches);
	tcase_add_test(tc, test_count_foreach);
	tcase_add_test(tc, test_status_foreach);
	tcase_add_test(tc, test_events_forget);
	tcase_add_test(tc, test_settings);
	tcase_add_test(tc, test_settling);
	tcase_add_test(tc, test_bytes_left);
	suite_add_tcase(s, tc);

	tc = tcase_create("transitions");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_transition_basic);
	tcase_add_test(tc, test_retry_wait_resume);
	tcase_add_test(tc, test_nested_transactions);
	tcase_add_loop_test(tc, test_transition_differential, 0, 4);
	suite_add_tcase(s, tc);

	tc = tcase_create("concurrency");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_claim_race);
	tcase_add_test(tc, test_claim_drain);
	tcase_add_test(tc, test_lease_expiry);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_reopen_roundtrip);
	tcase_add_test(tc, test_sigkill);
	tcase_add_test(tc, test_sync_policy);
	tcase_add_test(tc, test_migrate_empty_file);
	tcase_add_test(tc, test_migrate_from_v1);
	tcase_add_test(tc, test_migrate_from_v3);
	tcase_add_test(tc, test_readonly_handle);
	tcase_add_test(tc, test_readonly_as_nobody);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_rw_as_nobody);
	tcase_add_test(tc, test_corrupt_file);
	tcase_add_test(tc, test_newer_version);
	tcase_add_test(tc, test_bad_args);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(store_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
