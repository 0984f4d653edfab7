/*
 * store.h: the SQLite queue (store_ prefix).
 *
 * The queue is one SQLite file, STATE_DIR/gcdrop.db, in WAL mode with a busy
 * timeout. Its schema is versioned with PRAGMA user_version and created or
 * migrated by an ordered list of migrations when the file is opened read-write.
 *
 * Ownership of writes: inside the daemon only the main thread writes; the CLI
 * writes only the `requests` table (retry, hold, release, enqueue), which the
 * daemon reads. Every transition names the state it expects to leave, so two
 * writers can never both move a case: the loser gets -ESTALE.
 *
 * Durability rule: everything a later step needs to resume (upload pk, multipart
 * id, the intent to create an object) is written before the network call that
 * depends on it.
 *
 * All functions return 0 or a negative errno; -ENOENT for "no such row",
 * -ESTALE for a refused transition, -EROFS when the database cannot be written,
 * -EIO for other SQLite errors (store_errmsg() then says what SQLite said).
 * ret_* parameters are written only on success. Strings in returned structs are
 * malloc'd and owned by the caller (free them with the matching *_clear()).
 */
#ifndef GCDROP_STORE_H
#define GCDROP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrs.h"

struct store;

/* Case states, spec section 2. The order is the lifecycle order. */
enum store_state {
	STORE_SETTLING,
	STORE_QUEUED,
	STORE_UPLOADING,
	STORE_IMPORTING,
	STORE_SUBMITTED,
	STORE_RUNNING,
	STORE_SUCCEEDED,
	STORE_FAILED,
	STORE_CANCELLED,
	STORE_RETRY_WAIT,
	_STORE_STATE_MAX,
};

/* "settling", "queued", …, "retry-wait"; NULL for an invalid value. */
const char *store_state_name(enum store_state state);
/* The inverse; -1 when unknown. */
int store_state_from_name(const char *name);
/* succeeded, failed, cancelled. */
bool store_state_is_terminal(enum store_state state);

#define STORE_DB_NAME "gcdrop.db"

enum {
	STORE_OPEN_READONLY = 1 << 0,	/* CLI readers: never create, never migrate */
};

/*
 * Open (and, unless read-only, create and migrate) STATE_DIR/gcdrop.db.
 * On failure returns a negative errno and a malloc'd message naming the file
 * and the cause in *reterr_msg (for example a database that is not SQLite, a
 * schema newer than this program, a directory without write permission).
 */
int store_open(const char *state_dir, int flags, struct store **ret_store, char **reterr_msg) GC_WUR;
struct store *store_close(struct store *store);

/* The message of the last SQLite error on this handle (owned by the handle). */
const char *store_errmsg(struct store *store);

/* The schema version this program writes, and the version of the open file. */
int store_schema_version(void);
int store_file_version(struct store *store);

/*
 * Run a group of writes in one transaction (used to batch per loop turn).
 * A commit is synced to disk before it returns unless every row it changed
 * came from a re-doable write (store_part_done, store_file_set_completed,
 * store_case_set_progress): those may be lost to a power cut, never to a kill,
 * and a synced commit makes every earlier one durable (store.c, DESIGN).
 * The outer BEGIN runs just before the group's first statement (its -EBUSY is
 * that statement's); a group that ran none ends without touching the file.
 */
int store_begin(struct store *store);
int store_commit(struct store *store);
int store_rollback(struct store *store);

/* Commits of this handle synced to disk, and those left to a later sync (re-doable only). */
void store_sync_stats(const struct store *store, uint64_t *ret_synced, uint64_t *ret_relaxed);

/* ---- cases ---- */

struct store_case {
	int64_t id;
	char *watch;		/* watch name */
	char *name;		/* case name (may hold any bytes but NUL) */
	char *path;		/* absolute path of the case when it was queued */
	char *fingerprint;	/* hex digest of the walk (scan_fingerprint) */
	enum store_state state;
	enum store_state resume_state;	/* for retry-wait: the state to go back to */
	bool held;
	int attempts;
	int64_t next_attempt;	/* unix seconds; 0 = now */
	char *error;		/* NULL when none */
	int64_t bytes_done;
	int64_t bytes_total;
	char *results;		/* results folder, NULL when none */
	int64_t created;	/* unix seconds */
	int64_t updated;
	char *lease_owner;	/* NULL when not claimed */
	int64_t lease_until;
};

void store_case_clear(struct store_case *c);

/* One file of a case, as the walk found it. */
struct store_file {
	int64_t id;
	int64_t case_id;
	char *relpath;		/* path relative to the case (the file name for a one-file case) */
	char *upload_name;	/* name used on the platform, unique within the case */
	char *socket;		/* socket slug it maps to, NULL until mapped */
	int64_t size;
	int64_t mtime_ns;
	char *upload_pk;	/* NULL until POST uploads/ answered */
	char *upload_url;	/* api_url of the upload */
	char *multipart_id;	/* s3_upload_id */
	int parts_done;
	int64_t bytes_done;
	bool completed;		/* complete-multipart-upload answered 200 */
};

void store_file_clear(struct store_file *f);

/* A new case and its files, inserted in one transaction. */
struct store_case_new {
	const char *watch;
	const char *name;
	const char *path;
	const char *fingerprint;
	enum store_state state;		/* normally STORE_QUEUED */
	const char *error;		/* for a case queued directly as failed */
	const struct store_file *files;	/* relpath, size, mtime_ns are used */
	size_t n_files;
};

/*
 * Insert a case. Returns -EEXIST (and the existing id in *ret_id) when the same
 * watch, name and fingerprint are already queued: that is the de-duplication of
 * spec section 2 step 3.
 */
int store_case_insert(struct store *store, const struct store_case_new *c, int64_t *ret_id) GC_WUR;

/* Look up by (watch, name, fingerprint); -ENOENT when absent. */
int store_case_find(struct store *store, const char *watch, const char *name,
		    const char *fingerprint, int64_t *ret_id) GC_WUR;

int store_case_get(struct store *store, int64_t id, struct store_case *ret_case) GC_WUR;

/*
 * Move case 'id' from 'from' to 'to', recording 'error' (NULL clears it) and an
 * event. Returns -ESTALE when the case is not in 'from' (someone else moved it).
 */
int store_case_transition(struct store *store, int64_t id, enum store_state from,
			  enum store_state to, const char *error) GC_WUR;

/*
 * Put case 'id' (in state 'from') into retry-wait until 'next_attempt', counting
 * one more attempt; resume_state becomes 'from'. -ESTALE as above.
 */
int store_case_retry_wait(struct store *store, int64_t id, enum store_state from,
			  int64_t next_attempt, const char *error) GC_WUR;

/* Back from retry-wait to its resume_state (or to 'to' when given >= 0). */
int store_case_resume(struct store *store, int64_t id, int to) GC_WUR;

int store_case_set_held(struct store *store, int64_t id, bool held) GC_WUR;
/* Re-doable (not synced on its own, see store_begin). */
int store_case_set_progress(struct store *store, int64_t id, int64_t bytes_done, int64_t bytes_total);
int store_case_set_results(struct store *store, int64_t id, const char *results);
/* Reset attempts and error and set the state (used by retry). */
int store_case_reset(struct store *store, int64_t id, enum store_state to) GC_WUR;

/*
 * Claim one case that has work to do: not terminal, not held, next_attempt <=
 * now, and not under a live lease (lease_until > now held by another owner).
 * The claim sets lease_owner and lease_until = now + lease_seconds in one
 * statement, so of two concurrent claimers exactly one gets a given case.
 * Returns -ENOENT when nothing is claimable.
 */
int store_case_claim(struct store *store, const char *owner, int64_t now, int lease_seconds,
		     struct store_case *ret_case) GC_WUR;
int store_case_renew(struct store *store, int64_t id, const char *owner, int64_t until) GC_WUR;
int store_case_unclaim(struct store *store, int64_t id, const char *owner);
/* Drop every lease (the daemon, which holds the single-instance lock, at start-up). */
int store_release_all_leases(struct store *store);

/* Iterate over cases in id order; watch may be NULL (all). cb returns < 0 to stop. */
typedef int (*store_case_cb)(const struct store_case *c, void *userdata);
int store_case_foreach(struct store *store, const char *watch, store_case_cb cb, void *userdata);

/* Counts per state (index enum store_state) over all cases; held cases counted in ret_held. */
int store_count_states(struct store *store, int64_t ret_counts[_STORE_STATE_MAX], int64_t *ret_held);

/* Delete a case and everything attached to it (files, parts, remotes, outputs, events). */
int store_case_forget(struct store *store, int64_t id);

/* ---- files and parts ---- */

/* All files of a case in relpath order; *ret_files is a malloc'd array. */
int store_file_list(struct store *store, int64_t case_id, struct store_file **ret_files, size_t *ret_n) GC_WUR;
void store_file_list_free(struct store_file *files, size_t n);

/*
 * One file row by id, into *ret_file (free its strings with store_file_clear).
 * Returns 0, -ENOENT when there is no such row, or another negative errno.
 */
int store_file_get(struct store *store, int64_t file_id, struct store_file *ret_file) GC_WUR;

int store_file_set_upload_name(struct store *store, int64_t file_id, const char *upload_name, const char *socket);
/* Record the upload created for a file (before any part is sent). */
int store_file_set_upload(struct store *store, int64_t file_id, const char *upload_pk,
			  const char *upload_url, const char *multipart_id) GC_WUR;
/* Forget the upload of a file (expired, aborted): parts are dropped too. */
int store_file_reset_upload(struct store *store, int64_t file_id) GC_WUR;
/* Mark the file's upload complete. Re-doable (not synced on its own, see store_begin). */
int store_file_set_completed(struct store *store, int64_t file_id) GC_WUR;

struct store_part {
	int number;
	char *etag;
	int64_t size;
};

/*
 * Record one part acknowledged by storage (replaces an earlier record of the same
 * number). Re-doable (not synced on its own, see store_begin).
 */
int store_part_done(struct store *store, int64_t file_id, int number, const char *etag, int64_t size) GC_WUR;
int store_part_list(struct store *store, int64_t file_id, struct store_part **ret_parts, size_t *ret_n) GC_WUR;
void store_part_list_free(struct store_part *parts, size_t n);

/* ---- remote objects (upload sessions, archive items, display sets, jobs) ---- */

enum store_remote_kind {
	STORE_REMOTE_SESSION,
	STORE_REMOTE_ARCHIVE_ITEM,
	STORE_REMOTE_DISPLAY_SET,
	STORE_REMOTE_JOB,
	_STORE_REMOTE_MAX,
};

const char *store_remote_kind_name(enum store_remote_kind kind);

struct store_remote {
	int64_t case_id;
	enum store_remote_kind kind;
	char *key;		/* distinguishes several of one kind per case (e.g. a socket slug); "" when one */
	bool intent_only;	/* creation requested, answer not recorded yet */
	char *title;		/* stable title used to find it again, NULL when none */
	char *pk;
	char *url;		/* api_url */
	char *status;
	char *json;		/* last raw JSON seen */
	int64_t updated;
};

void store_remote_clear(struct store_remote *r);

/* Record the intent to create (before the request). */
int store_remote_intent(struct store *store, int64_t case_id, enum store_remote_kind kind,
			const char *key, const char *title) GC_WUR;
/* Record what the server answered (clears intent_only). */
int store_remote_set(struct store *store, int64_t case_id, enum store_remote_kind kind, const char *key,
		     const char *pk, const char *url, const char *status, const char *json) GC_WUR;
int store_remote_get(struct store *store, int64_t case_id, enum store_remote_kind kind, const char *key,
		     struct store_remote *ret) GC_WUR;
int store_remote_list(struct store *store, int64_t case_id, struct store_remote **ret, size_t *ret_n) GC_WUR;
void store_remote_list_free(struct store_remote *r, size_t n);
int store_remote_delete(struct store *store, int64_t case_id, enum store_remote_kind kind, const char *key);

/* ---- the status walk ---- */

/*
 * A case as `gcdrop status` shows it. Every string is borrowed from the walk
 * (valid only during the callback) and, except error, results and the URLs,
 * never NULL. With STORE_STATUS_FULL the fields marked "full" are read too;
 * without, they are 0 / NULL. remote_url[k] is the URL of the first remote
 * object of kind k (in key order) that has one, NULL when none (full only).
 */
struct store_status_row {
	int64_t id;
	const char *watch;
	const char *name;	/* any bytes but NUL */
	size_t name_len;
	enum store_state state;
	bool held;
	int attempts;
	int64_t bytes_done;
	int64_t bytes_total;
	const char *error;
	int64_t next_attempt;	/* full */
	const char *results;	/* full */
	int64_t created;	/* full */
	int64_t updated;	/* full */
	const char *fingerprint;	/* full */
	const char *remote_url[_STORE_REMOTE_MAX];	/* full */
};

enum {
	STORE_STATUS_FULL = 1 << 0,	/* also the "full" fields and the remote URLs */
};

typedef int (*store_status_cb)(const struct store_status_row *row, void *userdata);

/*
 * Walk the cases of 'watch' (NULL: all) in id order for `gcdrop status`: one
 * query over the columns status shows and, with STORE_STATUS_FULL, one more
 * over every remote URL, merged with the first by case id, so the cost is two
 * table scans whatever the number of cases (no query per case). Call it inside
 * store_begin()/store_commit() for one snapshot. cb may read through other store
 * functions (not write); a negative return of cb stops the walk and is returned.
 * Returns 0, -EINVAL (store or cb NULL), -ENOMEM, or the store's errors.
 */
int store_status_foreach(struct store *store, const char *watch, int flags, store_status_cb cb,
			 void *userdata) GC_WUR;

/* ---- job outputs ---- */

struct store_output {
	int64_t case_id;
	char *socket;
	char *super_kind;	/* "Image", "File", "Value" */
	char *value_json;	/* inline value, NULL for files/images */
	char *url;		/* file or image URL, NULL for values */
	char *path;		/* where it was written, NULL until written */
};

void store_output_clear(struct store_output *o);
int store_output_put(struct store *store, const struct store_output *o) GC_WUR;
int store_output_set_path(struct store *store, int64_t case_id, const char *socket, const char *path) GC_WUR;
int store_output_list(struct store *store, int64_t case_id, struct store_output **ret, size_t *ret_n) GC_WUR;
void store_output_list_free(struct store_output *o, size_t n);

/* ---- event log ---- */

int store_event_add(struct store *store, int64_t case_id, const char *state, const char *message);

/* One row of a case's history (added by store.c's author, for `gcdrop status CASE`). */
struct store_event {
	int64_t id;
	int64_t case_id;
	int64_t time;		/* unix seconds */
	char *state;		/* state name at that point, NULL when none */
	char *message;		/* NULL when none */
};

void store_event_clear(struct store_event *e);
/* The events of a case, oldest first; *ret is a malloc'd array (empty: NULL, 0). */
int store_event_list(struct store *store, int64_t case_id, struct store_event **ret, size_t *ret_n) GC_WUR;
void store_event_list_free(struct store_event *e, size_t n);

/* ---- operator requests (written by the CLI, consumed by the daemon) ---- */

enum store_request_kind {
	STORE_REQ_RETRY,
	STORE_REQ_HOLD,
	STORE_REQ_RELEASE,
	STORE_REQ_ENQUEUE,
};

struct store_request {
	int64_t id;
	enum store_request_kind kind;
	int64_t case_id;	/* 0 = all (hold --all, retry --failed) */
	char *watch;		/* enqueue */
	char *path;		/* enqueue */
};

void store_request_clear(struct store_request *r);
int store_request_add(struct store *store, enum store_request_kind kind, int64_t case_id,
		      const char *watch, const char *path) GC_WUR;
/* Oldest pending request; -ENOENT when none. */
int store_request_next(struct store *store, struct store_request *ret) GC_WUR;
int store_request_done(struct store *store, int64_t id) GC_WUR;

/* ---- watches ---- */

/* Record the configured watches (name, path, destination) for status and checks. */
int store_watch_sync(struct store *store, const char *name, const char *path, const char *dest,
		     const char *slug) GC_WUR;

/* ---- settings (operator choices that outlive the daemon) ---- */

/* `gcdrop hold --all`: cases queued while it is "1" are held. */
#define STORE_SETTING_HOLD_ALL "hold_all"

/*
 * The value of setting 'name' as a malloc'd string in *ret_value; -ENOENT when
 * it is not set.
 */
int store_setting_get(struct store *store, const char *name, char **ret_value) GC_WUR;
/* Set setting 'name' to 'value'; a NULL value removes it. */
int store_setting_set(struct store *store, const char *name, const char *value) GC_WUR;
/* STORE_SETTING_HOLD_ALL as a bool (false when unset). */
int store_hold_all_get(struct store *store, bool *ret_held) GC_WUR;
int store_hold_all_set(struct store *store, bool held) GC_WUR;

/* ---- settling cases (written by the daemon, read by `gcdrop status`) ---- */

/*
 * The daemon records every case it is settling, (watch, name) with the unix
 * time it started settling, so that `gcdrop status` (another process) can show
 * it. Settling cases have no id: they get one when they are queued, and then
 * the daemon removes their row in the same transaction. The daemon clears the
 * table when it starts (before its start-up rescan finds them again) and when
 * it stops. Adding a row that exists updates 'since'; removing a missing row is
 * not an error.
 */
int store_settling_add(struct store *store, const char *watch, const char *name, int64_t since) GC_WUR;
int store_settling_remove(struct store *store, const char *watch, const char *name) GC_WUR;
int store_settling_clear(struct store *store) GC_WUR;
int store_settling_count(struct store *store, int64_t *ret_n) GC_WUR;

/* One settling case; the strings are borrowed (valid during the callback). */
struct store_settling {
	const char *watch;
	const char *name;	/* any bytes but NUL */
	size_t name_len;
	int64_t since;		/* unix seconds */
};

typedef int (*store_settling_cb)(const struct store_settling *row, void *userdata);

/*
 * The settling cases of 'watch' (NULL: all), oldest first. cb may not write;
 * its negative return stops the walk and is returned.
 */
int store_settling_foreach(struct store *store, const char *watch, store_settling_cb cb,
			   void *userdata) GC_WUR;

/*
 * Bytes left of the cases in 'state': the sum of bytes_total - bytes_done over
 * them (one aggregate query over that state's rows only), and in *ret_unknown
 * (may be NULL) how many of them have no total recorded yet.
 */
int store_bytes_left(struct store *store, enum store_state state, int64_t *ret_left,
		     int64_t *ret_unknown) GC_WUR;

/* PRAGMA integrity_check; 0 when "ok", -EIO with the message otherwise. */
int store_integrity_check(struct store *store, char **reterr_msg) GC_WUR;

#endif
