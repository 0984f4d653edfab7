/*
 * pipeline.h: the per-case pipeline of every watch (pipeline_ prefix).
 *
 * The pipeline takes queued cases from the store and drives each one, on the
 * main thread, through spec section 2 steps 5-8: resolve the destination, walk
 * the case again and map it to sockets, upload every file with the multipart
 * protocol (upload.h), create exactly one archive item or display set and set
 * its values (dest.h), or start exactly one algorithm job, poll it to its end
 * and write its outputs (jobs.h, outputs.h); poll until the platform has
 * finished, write the receipt and apply on_success / on_failure (results.h).
 *
 * Threads: everything here runs on the main thread except the work of an
 * operation (struct pipeline_op), which a pool worker runs with its own
 * struct api. Only the main thread changes case state or writes the store.
 *
 * The daemon's side:
 *   p = pipeline_new(cfg, store, &opts, &msg);
 *   epoll on pipeline_eventfd(p) -> pipeline_on_event(p)
 *   every loop turn: pipeline_tick(p, now_ms); arm the timer for
 *   pipeline_next_deadline(p, now_ms)
 *   SIGHUP: pipeline_reload(p, new_cfg); SIGTERM: pipeline_stop(p, deadline_ms)
 *   pipeline_free(p)
 */
#ifndef GCDROP_PIPELINE_H
#define GCDROP_PIPELINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "attrs.h"
#include "pool.h"

struct config;
struct store;
struct pipeline;
struct outputs_item;

/* ---- operations: the unit of work a pool worker runs ---- */

enum pipeline_op_kind {
	/* upload.c */
	PIPELINE_OP_UPLOAD_CREATE,
	PIPELINE_OP_UPLOAD_PRESIGN,
	PIPELINE_OP_UPLOAD_PUT,
	PIPELINE_OP_UPLOAD_COMPLETE,	/* fstat check (size, mtime), then complete */
	PIPELINE_OP_UPLOAD_ABORT,
	PIPELINE_OP_UPLOAD_LIST_PARTS,
	PIPELINE_OP_UPLOAD_GET,
	/* dest.c */
	PIPELINE_OP_DEST_RESOLVE,
	PIPELINE_OP_SESSION_CREATE,
	PIPELINE_OP_SESSION_GET,
	PIPELINE_OP_ITEM_CREATE,
	PIPELINE_OP_ITEM_FIND,
	PIPELINE_OP_ITEM_PATCH,
	PIPELINE_OP_ITEM_GET,
	PIPELINE_OP_PING,
	/* jobs.c */
	PIPELINE_OP_JOB_CREATE,
	PIPELINE_OP_JOB_GET,
	PIPELINE_OP_JOB_FIND,		/* jobs of the algorithm with an input image */
	PIPELINE_OP_JOB_LIST,		/* every job of the algorithm (value-only inputs) */
	PIPELINE_OP_OUTPUT_WRITE,
	_PIPELINE_OP_MAX,
};

/* Which global gate (backoff.h) slows an operation down after a 429 or a limit. */
enum pipeline_gate {
	PIPELINE_GATE_UPLOADS,
	PIPELINE_GATE_CREATIONS,
	PIPELINE_GATE_POLLS,
	PIPELINE_GATE_JOBS,		/* job creation: the per-user job limit, credits */
	_PIPELINE_GATE_MAX,
};

/*
 * One operation. Inputs are copies owned by the op (freed by
 * pipeline_op_free()); the worker writes only the outputs. The main thread
 * owns it from pipeline_op_new() to pipeline_op_free(), except while a worker
 * runs it.
 */
struct pipeline_op {
	struct pool_item item;		/* item.data points to the op */
	enum pipeline_op_kind kind;
	struct pipeline_op *next;	/* main thread: waiting list */
	struct pipeline *pipeline;	/* set when submitted */
	void *owner;			/* the case (pipeline.c) */
	void *sub;			/* the file (upload.c) or the import (dest.c) */
	int64_t not_before_ms;		/* not submitted before (op retry backoff) */
	unsigned tries;			/* failed tries of this op so far */
	bool cancelled;			/* the pool cancelled it without running */

	/* inputs */
	char *path;			/* the file, absolute */
	int64_t offset;			/* PUT */
	int64_t length;			/* PUT */
	int64_t exp_size;		/* the file's size and mtime as queued */
	int64_t exp_mtime_ns;
	size_t root_len;		/* path[0..root_len) is the folder holding the case */
	int number;			/* PUT: part number */
	int64_t file_id;		/* upload check GET: the file's row (pipeline.c) */
	char *url;			/* PUT: presigned URL; gets: the api_url */
	char *title;			/* item create / find; upload create: the filename */
	char *parent;			/* item create: archive url / reader-study slug; find: pk */
	bool display_set;		/* item kinds: a display set (else an archive item) */
	struct api_upload upload;	/* upload ops: pk, s3_upload_id (in); answers (out) */
	int *numbers;			/* presign */
	size_t n_numbers;
	struct api_part *parts;		/* complete (in), list-parts (out) */
	size_t n_parts;
	char **strs;			/* session create: upload urls; resolve: socket slugs */
	size_t n_strs;
	cJSON *json;			/* item patch: the values array (owned) */
	char *slug;			/* resolve: the archive / reader-study slug (NULL: known) */
	bool algorithm;			/* resolve: slug is an algorithm's */
	struct outputs_item *oitem;	/* output write: the item (owned copy) */

	/* outputs */
	int rc;				/* 0 or a negative errno */
	struct api_error err;
	bool changed;			/* the file changed or vanished (size, mtime, missing) */
	char *etag;			/* PUT */
	char **urls;			/* presign: one per number */
	struct api_session session;	/* session create / get */
	struct api_item item_out;	/* item create / find / patch / get */
	struct api_collection coll;	/* resolve */
	bool coll_ok;
	struct api_socket *sockets;	/* resolve: one per strs[] slug ... */
	bool *socket_found;		/* ... and whether it exists */
	struct api_algorithm alg;	/* resolve of an algorithm */
	bool alg_ok;
	struct api_job job;		/* job create / get */
	struct api_job *jobs;		/* job find / list */
	size_t n_jobs;
	int64_t bytes;			/* output write: bytes written */
};

/* A zeroed op of this kind; NULL when out of memory. */
struct pipeline_op *pipeline_op_new(enum pipeline_op_kind kind);

/* Free an op and everything it holds. Accepts NULL; returns NULL. */
struct pipeline_op *pipeline_op_free(struct pipeline_op *op);

/* The gate of an op kind, and its name for messages ("create upload", ...). */
enum pipeline_gate pipeline_op_gate(enum pipeline_op_kind kind);
const char *pipeline_op_name(enum pipeline_op_kind kind);

/*
 * Run an op on a worker thread with that worker's api handle (dispatches to
 * upload_op_run() / dest_op_run()). Writes only the op's outputs.
 */
void pipeline_op_run(struct api *api, struct pipeline_op *op);

/* ---- the pipeline ---- */

struct pipeline_opts {
	int64_t part_size;		/* bytes per part; 0: UPLOAD_PART_SIZE (32 MiB) */
	int64_t poll_base_ms;		/* first poll interval; 0: 2000 */
	int64_t poll_cap_ms;		/* longest poll interval; 0: 60000 */
	int64_t import_timeout_s;	/* a value that never appears; 0: 3600 */
	int64_t retry_base_ms;		/* first retry delay; 0: 1000 */
	int64_t retry_cap_ms;		/* longest retry delay; 0: 300000 */
	int64_t auth_retry_ms;		/* probe interval while the token is refused; 0: 300000 */
	unsigned max_active_cases;	/* cases worked on at once; 0: 2 x workers, at least 4 */
	/*
	 * Called when a case changed or vanished while it was being uploaded: the
	 * daemon lets it settle again (the new content will be a new case).
	 */
	void (*resettle)(void *ud, const char *watch, const char *case_name);
	void *resettle_ud;
};

/*
 * Start the pipeline: copies what it needs of 'cfg' (borrowed; it must stay
 * valid until pipeline_reload() gives a new one or pipeline_free()), borrows
 * 'store', reads the token (config_token, registered with log_add_secret) and
 * starts cfg->workers threads. opts may be NULL. http_global_init() must have
 * run. Returns 0, or a negative errno with a malloc'd message.
 */
int pipeline_new(const struct config *cfg, struct store *store, const struct pipeline_opts *opts,
		 struct pipeline **ret, char **reterr_msg) GC_WUR;

/* The eventfd to watch (EPOLLIN); owned by the pipeline. */
int pipeline_eventfd(const struct pipeline *p);

/* Drain completed operations (their results are recorded, next steps queued). */
void pipeline_on_event(struct pipeline *p);

/*
 * Do what is due at 'now_ms' (CLOCK_MONOTONIC milliseconds): take new cases
 * from the store, submit operations whose time has come, poll, finish cases.
 * The store writes of one call are batched in one transaction.
 */
void pipeline_tick(struct pipeline *p, int64_t now_ms);

/* The next time pipeline_tick() has something to do; INT64_MAX when nothing. */
int64_t pipeline_next_deadline(struct pipeline *p, int64_t now_ms);

/* Ask for a look at the queue at the next tick (a case was queued or released). */
void pipeline_kick(struct pipeline *p);

/*
 * Use a new configuration (borrowed, as in pipeline_new()): the token is read
 * again and the destinations are looked up again. Returns 0 or a negative
 * errno (the old configuration stays in use).
 */
int pipeline_reload(struct pipeline *p, const struct config *cfg) GC_WUR;

/*
 * Stop: no new work; in-flight operations may finish until 'deadline_ms'
 * (monotonic), then their transfers are cancelled (a cancelled part is not
 * recorded and stays resumable); the workers are joined. Blocks at most until
 * a little after the deadline.
 */
void pipeline_stop(struct pipeline *p, int64_t deadline_ms);

/* Whether pipeline_stop() has begun and operations are still in flight. */
size_t pipeline_inflight(struct pipeline *p);

/* Free the pipeline (stopping it at once if needed). Accepts NULL; returns NULL. */
struct pipeline *pipeline_free(struct pipeline *p);

/*
 * Intake (the disk guard): with accept false no new case is started (nothing
 * leaves `queued`, no new upload is created; a case already resolving waits
 * before it would leave `queued`); work in flight (parts of existing uploads,
 * polls, creations of sessions, items and jobs) continues. Starts true.
 */
void pipeline_set_intake(struct pipeline *p, bool accept);

/*
 * For the watchdog: pool_oldest_busy_since() of the workers. A part upload
 * counts as progress only while bytes actually move. Returns 0 and sets
 * *ret_ms (CLOCK_MONOTONIC ms), or -ENOENT when no worker is busy.
 */
int pipeline_oldest_busy_since(struct pipeline *p, int64_t *ret_ms) GC_WUR;

/* Total bytes of parts acknowledged by storage since the start (monotonic). */
int64_t pipeline_bytes_sent(const struct pipeline *p);

/* Counters for tests and the STATUS line. */
struct pipeline_stats {
	uint64_t ops_submitted;
	uint64_t ops_failed;
	uint64_t parts_sent;
	int64_t bytes_sent;
	unsigned active_cases;
	bool auth_paused;
};
void pipeline_get_stats(const struct pipeline *p, struct pipeline_stats *ret);

/*
 * The stable title of a case's item: "<watch>/<case name>/<first 12 hex of the
 * fingerprint>", with bytes that are not valid UTF-8 or are control characters
 * replaced by '_', cut (on a character boundary, keeping the fingerprint) to at
 * most 255 bytes. Returns a malloc'd string or NULL when out of memory.
 */
char *pipeline_title(const char *watch, const char *case_name, const char *fingerprint);

#endif
