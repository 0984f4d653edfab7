/*
 * jobs.h: one case's algorithm job, from completed uploads to written outputs (jobs_ prefix).
 *
 * The algorithm counterpart of dest.h's import. jobs_map() is spec section 2
 * step 4 for an algorithm watch (casemap_map() against the algorithm's
 * interfaces, plus Image sockets given an existing image by the watch's
 * static values); jobs_inputs_build() turns the mapping and the completed
 * uploads into the job's inputs. struct jobs_run then drives, on the main
 * thread and one operation at a time (several for output downloads):
 *
 *   1. SESSIONS  an upload session without a target per Image input of at
 *                most JOBS_SESSION_MAX files (recorded as remote "session",
 *                key = socket): its error_message is the only explanation the
 *                platform gives when an input image cannot be imported, and
 *                its image is how a job is found again after a crash;
 *   2. CREATE    store_remote_intent(job) in the caller's transaction, then
 *                POST algorithms/jobs/; the answer recorded as remote "job"
 *                (pk, api_url, status, the job's JSON, and gcdrop's own
 *                facts: submitted / started / finished times, whether the
 *                timeout was reported); job_timeout counts from "submitted";
 *   3. POLL      GET the job with backoff (poll_base_ms doubling to
 *                poll_cap_ms, back to the base on a change of status) until
 *                Succeeded, Failed or Cancelled;
 *   4. EXPLAIN   (Failed / Cancelled) GET every session of the case for its
 *                error_message;
 *   5. OUTPUTS   (Succeeded) every output recorded (store_output_put); with
 *                a results folder each one written by outputs_write() on a
 *                worker, its path recorded, then outputs_finish() (job.json).
 *
 * Reconciliation (an intent without an answer: a crash or a lost response
 * between the POST and recording its answer). The API has no idempotency key,
 * so the job is found through what it consumed:
 *   - with a session input: GET the session. Still "Queued": no job consumed
 *     it (a reference is what starts its processing, and it can be consumed
 *     only once), so creating the job is safe. "Re-Queued"/"Started": a job
 *     consumed it and the image is being built: wait and look again.
 *     "Succeeded": its image_set names the image; the job is the one of this
 *     algorithm with that input image (algorithms/jobs/?input_image=), which
 *     no other case can share. "Failed": a job consumed it and was Cancelled
 *     by the platform for that input: the case ends cancelled with the
 *     session's message (the job cannot be found, and does not need to be);
 *   - without a session (only values, existing images, files): the POST is
 *     sent again. When every input is a value or an existing image the
 *     platform refuses a second identical job ("A result for these inputs with
 *     the current image and model already exists."): that refusal is the
 *     hint, and the job is found by listing the algorithm's jobs (with an
 *     image input, only those using that image) and matching the inputs.
 *     With a file input no such refusal exists; the same listing matches the
 *     value inputs and the file inputs' names, and the POST is sent again only
 *     when no job matches.
 *
 * A job the platform refuses for now (too many active jobs, credits) is
 * JOBS_LIMIT: the intent is dropped (nothing was created), the sessions and
 * uploads are kept, and the caller retries the creation later.
 */
#ifndef GCDROP_JOBS_H
#define GCDROP_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "attrs.h"
#include "casemap.h"
#include "config.h"
#include "dest.h"
#include "outputs.h"
#include "pipeline.h"
#include "store.h"

#define JOBS_SESSION_MAX 100	/* contract 4.2: files per upload session */
#define JOBS_MSG_DUPLICATE \
	"A result for these inputs with the current image and model already exists."

/*
 * Map a case to the inputs of the algorithm cached in d (d->have_alg): as
 * casemap_map() with the algorithm's input sockets and interfaces, except
 * that a static value of the watch for an Image socket must be a JSON string,
 * the api_url of an existing image (sent as "image"). Returns 0 and *ret (free
 * with casemap_result_clear(); such values have source CASEMAP_SRC_JSON and
 * super_kind CASEMAP_IMAGE, json the URL as a JSON string), or a negative
 * errno and a malloc'd message naming the socket (as casemap_map()).
 */
int jobs_map(const struct scan_entry *entries, size_t n, const struct dest *d,
	     const struct config_watch *w, const struct casemap_reader *reader,
	     struct casemap_result *ret, char **reterr_msg) GC_WUR;

enum jobs_source {
	JOBS_SRC_SESSION,	/* Image, <= JOBS_SESSION_MAX files: "upload_session" */
	JOBS_SRC_USER_UPLOADS,	/* Image, more files: "user_uploads" */
	JOBS_SRC_USER_UPLOAD,	/* File: "user_upload" */
	JOBS_SRC_VALUE,		/* Value: "value" */
	JOBS_SRC_IMAGE,		/* Image, an existing image: "image" */
};

struct jobs_input {
	char *socket;
	enum jobs_source src;
	char **upload_urls;	/* the uploads' api_urls */
	size_t n_uploads;
	char **upload_names;	/* their file names (reconciliation of file inputs) */
	char *json;		/* VALUE: the JSON text; IMAGE: the image api_url */
	char *session_url;	/* SESSION, once created */
	char *session_status;
};

/*
 * The inputs of a job from a mapping: values in map order; for a value with
 * files, the next n_files entries of upload_urls / upload_names (in the order
 * the files appear in the map) are its uploads. On success *ret is a malloc'd
 * array of map->n inputs (free with jobs_inputs_free()). Returns 0, -EINVAL
 * (fewer uploads than files, an image value that is not a JSON string) or
 * -ENOMEM.
 */
int jobs_inputs_build(const struct casemap_result *map, char *const *upload_urls,
		      char *const *upload_names, size_t n_uploads, struct jobs_input **ret)
	GC_WUR;
void jobs_inputs_free(struct jobs_input *in, size_t n);

/*
 * The "inputs" array of POST algorithms/jobs/ (contract 4.1): one object per
 * input with "interface" and its one source key. NULL when out of memory, or
 * when a session input has no session yet.
 */
cJSON *jobs_inputs_json(const struct jobs_input *in, size_t n);

/* What a refused POST algorithms/jobs/ means. */
enum jobs_refusal {
	JOBS_REFUSED_RETRY,	/* transient (5xx, network): the job may exist: reconcile */
	JOBS_REFUSED_LIMIT,	/* job limit, credits: nothing created; try again later */
	JOBS_REFUSED_DUPLICATE,	/* the same job exists: find it */
	JOBS_REFUSED_EXPIRED,	/* an upload or session is gone or consumed */
	JOBS_REFUSED_INPUTS,	/* the inputs do not fit the algorithm (sockets changed?) */
	JOBS_REFUSED_FAIL,	/* anything else that retrying cannot fix */
	JOBS_REFUSED_AUTH,
};

/* Classify the api_error of a job creation. Pure. */
enum jobs_refusal jobs_classify_create(const struct api_error *e);

enum jobs_phase {
	JOBS_SESSIONS,
	JOBS_RECONCILE,
	JOBS_CREATE,
	JOBS_FIND,
	JOBS_POLL,
	JOBS_EXPLAIN,
	JOBS_OUTPUTS,
	JOBS_DONE,
	JOBS_FAILED,
};

struct jobs_opts {
	int64_t poll_base_ms;
	int64_t poll_cap_ms;
	int64_t timeout_s;		/* job_timeout */
	const char *case_dir;		/* results_dir/<case>, absolute; NULL: no files */
	const char *watch;		/* for job.json */
	const char *case_name;
	const char *fingerprint;
};

struct jobs_run {
	int64_t case_id;
	struct dest *dest;		/* borrowed; NULL when the job is known */
	char *title;
	struct jobs_input *inputs;
	size_t n_inputs;
	struct jobs_opts o;		/* the numbers; its strings are NULL: */
	char *case_dir;			/* copies of the options' strings */
	char *watch;
	char *case_name;
	char *fingerprint;
	enum jobs_phase phase;
	int busy;			/* ops out */
	bool intent_only;		/* an intent without an answer: reconcile first */
	bool find_all;			/* JOBS_FIND: list every job of the algorithm */
	char *find_image;		/* JOBS_FIND: image pk to filter by */
	int find_misses;
	char *job_pk;
	char *job_url;
	char *job_status;
	cJSON *job_inputs;		/* the job's "inputs" (hyperlinked) */
	cJSON *job_outputs;
	char *exec_duration;		/* the platform's, as last seen (NULL: null) */
	char *invoke_duration;
	/*
	 * Unix seconds on gcdrop's clock (the job API has no timestamps), 0 when
	 * not yet: submitted = when the POST that created the job was decided
	 * (its intent); started = first seen past "Validating inputs"; finished =
	 * first seen in a terminal state. Kept in the job's record in the queue.
	 */
	int64_t submitted_s;
	int64_t started_s;
	int64_t finished_s;
	int64_t next_poll_ms;
	int64_t poll_delay_ms;
	int64_t deadline_ms;		/* submitted_s + job_timeout, on the monotonic clock */
	bool timed_out;			/* reported once (kept in the queue: once per job) */
	struct store_remote *sessions;	/* EXPLAIN: every session of the case */
	size_t n_sessions;
	size_t explain_next;
	char *explain;			/* EXPLAIN: what the sessions said */
	struct outputs_item *items;	/* OUTPUTS */
	size_t n_items;
	bool *written;
	bool *writing;
	char *error;			/* JOBS_FAILED: why */
	enum store_state end_state;	/* JOBS_FAILED: STORE_FAILED or STORE_CANCELLED */
};

/*
 * Set up the run of case 'case_id': inputs (taken; *inputs becomes NULL)
 * may be NULL when the store already records the job (submitted, running).
 * Reads what the store holds (sessions, the job, outputs). Returns 0 or a
 * negative errno (then call jobs_run_done()).
 */
int jobs_run_init(struct jobs_run *run, struct store *store, int64_t case_id, struct dest *dest,
		  const char *title, struct jobs_input **inputs, size_t n,
		  const struct jobs_opts *o) GC_WUR;
void jobs_run_done(struct jobs_run *run);

/*
 * The next op at now_ms into *ret_op, or NULL there (busy, waiting to poll,
 * finished). Intents are recorded here before the op is handed out (inside
 * the caller's transaction). Call again for more: output downloads run side
 * by side. Returns 0 or a negative errno.
 */
int jobs_run_next(struct jobs_run *run, struct store *store, int64_t now_ms,
		  struct pipeline_op **ret_op) GC_WUR;

/* When the run next wants to poll; INT64_MAX when it waits for nothing. */
int64_t jobs_run_wake(const struct jobs_run *run);

enum jobs_event {
	JOBS_PROGRESS,
	JOBS_SUBMITTED,		/* the job is known (created or found): "submitted" */
	JOBS_RUNNING,		/* the job left "Validating inputs" (or finished): "running" */
	JOBS_TIMEOUT,		/* still not finished after job_timeout (once) */
	JOBS_FINISHED,		/* Succeeded and every output written */
	JOBS_FAILURE,		/* run->error, run->end_state say how it ended */
	JOBS_ERROR,		/* the op failed: decide on op->err.cls */
	JOBS_LIMIT,		/* refused for now: retry the creation later */
	JOBS_EXPIRED,		/* uploads or sessions gone: check and re-send */
	JOBS_REFUSED,		/* the inputs do not fit: forget the algorithm, fail */
};

enum jobs_event jobs_run_on_done(struct jobs_run *run, struct store *store,
				 struct pipeline_op *op);

/* Run a jobs op on a worker (job create / get / find / list, output writes). */
void jobs_op_run(struct api *api, struct pipeline_op *op);

/*
 * Write job.json for a job that ended without outputs (failed, cancelled),
 * when the run has a results folder and a job. Blocking (a small file and
 * fsyncs). Returns 0 or a negative errno.
 */
int jobs_write_failed_json(const struct jobs_run *run, struct api_error *reterr) GC_WUR;

/* The pk at the end of an api_url (".../images/<pk>/"), malloc'd; NULL when none. */
char *jobs_url_pk(const char *url);

#endif
