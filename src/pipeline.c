/*
 * pipeline.c: the per-case state machine of every watch (archive, reader study, algorithm).
 *
 * DESIGN
 * One owner: the main thread. It picks queued cases from the store, keeps at
 * most max_active_cases of them in memory (struct pl_case), and advances each
 * one by handing operations (struct pipeline_op) to a pool of cfg->workers
 * threads. A worker runs one self-contained op with its own struct http and
 * struct api (made in the pool's ctx_new from the shared token, and made again
 * when a reload changes the token) and hands it back; its done callback, on
 * the main thread, records the result in the store and decides what comes
 * next. Workers never touch a case.
 *
 * A case's phases in memory:
 *   RESOLVE  walk the case again (scan_case) and compare the fingerprint with
 *            the queued one; look the destination and the sockets up (struct
 *            dest, cached per watch);
 *   PREPARE  map the files to sockets (casemap_map; a case that cannot
 *            succeed fails here, before any upload), give every file its
 *            upload name (persisted), queued -> uploading;
 *   UPLOAD   every file through upload.c; uploading -> importing. Only the
 *            files being uploaded are in memory, opened from their rows and
 *            freed once their completion is recorded; the case keeps a file id
 *            per file, and the import (or the job's inputs) is built from the
 *            rows, so memory does not grow with a case's file count;
 *   IMPORT   sessions, the item, the values, polling (dest.c);
 *   JOB      algorithm watches instead of IMPORT (jobs.c): sessions, the job
 *            (uploading -> submitted when it exists -> running when it left
 *            "Validating inputs"), polling, outputs written on workers;
 *   CHECK    a PATCH (or a job) said uploads are gone: GET each one, reset
 *            the missing;
 *   FINISH   receipt, on_success / on_failure (results.c), the final state.
 * After a restart every phase is re-entered from what the store holds: a case
 * in uploading lists its parts, one in importing finds its item by title, one
 * with a job intent reconciles it (jobs.h), one in submitted or running goes
 * straight back to its job (its files are not read again).
 *
 * A job refused for now (job limit, credits) pushes the "job creations" gate
 * (5 s, 10 s, ... with jitter, to 5 min, or Retry-After) and puts the case in
 * retry-wait until then, counting no attempt against max_attempts; its
 * uploads and sessions are kept, so only the creation is repeated. Archive
 * and reader-study creations have their own gate and are not held up.
 *
 * Intake (pipeline_set_intake, the disk guard): closed, no case leaves queued
 * and no upload is created; everything already started goes on.
 *
 * Durability and batching: the store writes of one loop turn (results of
 * every drained op, state changes) go into one transaction, and the ops those
 * results make possible are only submitted after its commit, so nothing is
 * sent that depends on an unrecorded fact (an upload pk, a part, an intent).
 *
 * Failures (spec section 3), decided on the op's struct api_error:
 *   API_RETRY  the case backs off in memory (1 s, 2 s, 4 s, full jitter, or
 *              Retry-After) and tries again; after OP_TRIES failed tries in a
 *              row it goes to retry-wait in the store (an attempt is counted;
 *              max_attempts applies to server errors, connectivity errors are
 *              retried without limit); a 429 pushes the global gate of its kind
 *              of call instead and costs no attempt;
 *   API_LIMIT  pushes the gate of its kind ("uploads", "creations", "polls"),
 *              so the whole daemon slows down; no attempt is counted;
 *   API_AUTH   pauses every op, says so once, and probes every auth_retry_ms;
 *              nothing is failed;
 *   API_FAIL   (and an unexpected API_GONE) fails the case with the server's
 *              message.
 *
 * A case whose files changed or vanished while it was being worked on is
 * marked failed ("changed while being uploaded ...") without its on_failure
 * action, its open uploads are aborted, and the daemon is asked to let the
 * folder settle again (opts.resettle): the new content becomes a new case
 * with a new fingerprint, which is what the queue's de-duplication expects.
 *
 * Leases: the daemon holds the single-instance lock on the state directory,
 * so no other process works on cases; store_case_claim() hands out cases in
 * its own order and cannot skip the algorithm cases this pipeline must leave
 * alone, so cases are found with store_case_foreach() instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "casemap.h"
#include "config.h"
#include "dest.h"
#include "http.h"
#include "jobs.h"
#include "log.h"
#include "outputs.h"
#include "pipeline.h"
#include "results.h"
#include "scan.h"
#include "store.h"
#include "upload.h"

#define OP_TRIES 5			/* failed tries of ops in a row before retry-wait */
#define SCAN_IDLE_MS 30000		/* look at the queue at least this often */
#define PROGRESS_EVERY_MS 1000
#define LIMIT_DEFAULT_MS 60000		/* a platform limit without Retry-After */
#define JOB_LIMIT_BASE_MS 5000		/* job limit: 5 s, 10 s, ... (jitter), to 5 min */
#define TITLE_MAX 255

enum pl_phase {
	PC_RESOLVE,
	PC_PREPARE,
	PC_UPLOAD,
	PC_IMPORT,
	PC_CHECK,
	PC_JOB,
	PC_FINISH,
};

enum pl_end {
	END_NONE,
	END_RETRY,	/* retry-wait */
	END_FAIL,	/* failed, with on_failure */
	END_CHANGED,	/* failed, settle again, no on_failure */
	END_DROP,	/* leave it as it is in the store (held, reload, stop) */
};

struct pl_case {
	struct pl_case *next;
	struct pipeline *p;
	struct store_case sc;
	enum store_state state;		/* its state in the store now */
	const struct config_watch *w;	/* NULL after a reload removed the watch */
	struct dest *dest;
	enum pl_phase phase;
	struct scan_result scan;
	bool have_scan;
	char **cands;
	size_t n_cands;
	struct casemap_result map;
	bool have_map;
	int64_t *file_ids;		/* the files to upload (rows), in the map's order */
	size_t n_files;
	size_t next_file;		/* file_ids[next_file ..) not opened yet */
	struct pl_file *open;		/* the files being uploaded, in order */
	int64_t bytes_closed;		/* bytes of the files uploaded and closed */
	bool single_file;		/* a one-file case: sc.path is the file */
	struct dest_import imp;
	bool have_imp;
	struct jobs_run run;		/* algorithm watches */
	bool have_run;
	enum store_state end_state;	/* END_FAIL: failed, or cancelled (a cancelled job) */
	char *title;
	struct pipeline_op *waiting;	/* ops made, not submitted yet */
	int inflight;			/* ops submitted, not done */
	int failures;			/* failed ops in a row */
	int64_t not_before_ms;		/* backoff: no new ops before */
	bool stopping;
	enum pl_end end;
	char *end_msg;
	bool end_had_status;
	int64_t end_retry_after_ms;
	int64_t bytes_total;
	int64_t progress_ms;
	int64_t progress_bytes;
	int checks_out;			/* PC_CHECK: GETs out */
	bool checks_reset;		/* PC_CHECK: an upload was reset */
	bool finished;			/* removed from the list at the end of the turn */
};

/* A file being uploaded: opened from its row, closed (freed) once done. */
struct pl_file {
	struct upload_file uf;		/* first: op->sub points here */
	struct pl_file *next;
};

struct pl_worker {
	struct pipeline *p;
	struct http *http;
	struct api *api;
	unsigned gen;
};

struct pipeline {
	const struct config *cfg;
	struct store *store;
	struct pipeline_opts o;
	struct pool *pool;
	unsigned workers;
	/* Shared with the workers, under mu. */
	pthread_mutex_t mu;
	char *auth;
	char *api_url;
	char *ca_file;
	int64_t max_send_speed;
	unsigned gen;
	atomic_int cancel;

	struct dest **dests;
	size_t n_dests;
	struct pl_case *cases;
	unsigned n_active;
	struct backoff_gate gates[_PIPELINE_GATE_MAX];
	unsigned gate_hits[_PIPELINE_GATE_MAX];
	struct backoff_rng rng;
	bool kick;
	int64_t next_scan_ms;
	int64_t next_retry_wall;	/* earliest retry-wait case seen by the last scan */
	bool auth_paused;
	int64_t auth_probe_ms;
	bool probe_out;
	bool stopping;
	bool no_intake;			/* pipeline_set_intake(false) */
	size_t out;			/* ops in the pool */
	bool in_txn;
	struct pipeline_stats stats;
};

static void case_end(struct pipeline *p, struct pl_case *c, enum pl_end end, const char *fmt, ...)
	GC_PRINTF(4, 5);

/* ---- ops ---- */

struct pipeline_op *
pipeline_op_new(enum pipeline_op_kind kind)
{
	struct pipeline_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->kind = kind;
	op->item.data = op;
	op->err.retry_after_ms = -1;
	return op;
}

struct pipeline_op *
pipeline_op_free(struct pipeline_op *op)
{
	if (op == NULL)
		return NULL;
	free(op->path);
	free(op->url);
	free(op->title);
	free(op->parent);
	api_upload_clear(&op->upload);
	free(op->numbers);
	api_parts_free(op->parts, op->n_parts);
	if (op->urls != NULL) {
		for (size_t i = 0; i < op->n_numbers; i++)
			free(op->urls[i]);
		free(op->urls);
	}
	casemap_names_free(op->strs, op->n_strs);
	cJSON_Delete(op->json);
	free(op->slug);
	free(op->etag);
	api_session_clear(&op->session);
	api_item_clear(&op->item_out);
	api_collection_clear(&op->coll);
	if (op->sockets != NULL) {
		for (size_t i = 0; i < op->n_strs; i++)
			api_socket_clear(&op->sockets[i]);
		free(op->sockets);
	}
	free(op->socket_found);
	api_algorithm_clear(&op->alg);
	api_job_clear(&op->job);
	api_jobs_free(op->jobs, op->n_jobs);
	outputs_items_free(op->oitem, op->oitem != NULL ? 1 : 0);
	free(op);
	return NULL;
}

enum pipeline_gate
pipeline_op_gate(enum pipeline_op_kind kind)
{
	switch (kind) {
	case PIPELINE_OP_SESSION_CREATE:
	case PIPELINE_OP_ITEM_CREATE:
	case PIPELINE_OP_ITEM_PATCH:
		return PIPELINE_GATE_CREATIONS;
	case PIPELINE_OP_JOB_CREATE:
		return PIPELINE_GATE_JOBS;
	case PIPELINE_OP_DEST_RESOLVE:
	case PIPELINE_OP_SESSION_GET:
	case PIPELINE_OP_ITEM_FIND:
	case PIPELINE_OP_ITEM_GET:
	case PIPELINE_OP_PING:
	case PIPELINE_OP_JOB_GET:
	case PIPELINE_OP_JOB_FIND:
	case PIPELINE_OP_JOB_LIST:
	case PIPELINE_OP_OUTPUT_WRITE:
		return PIPELINE_GATE_POLLS;
	default:
		return PIPELINE_GATE_UPLOADS;
	}
}

static const char *const op_names[_PIPELINE_OP_MAX] = {
	[PIPELINE_OP_UPLOAD_CREATE] = "creating an upload",
	[PIPELINE_OP_UPLOAD_PRESIGN] = "asking for part URLs",
	[PIPELINE_OP_UPLOAD_PUT] = "sending a part",
	[PIPELINE_OP_UPLOAD_COMPLETE] = "completing an upload",
	[PIPELINE_OP_UPLOAD_ABORT] = "aborting an upload",
	[PIPELINE_OP_UPLOAD_LIST_PARTS] = "listing the parts of an upload",
	[PIPELINE_OP_UPLOAD_GET] = "checking an upload",
	[PIPELINE_OP_DEST_RESOLVE] = "looking up the destination",
	[PIPELINE_OP_SESSION_CREATE] = "creating an upload session",
	[PIPELINE_OP_SESSION_GET] = "polling an upload session",
	[PIPELINE_OP_ITEM_CREATE] = "creating the item",
	[PIPELINE_OP_ITEM_FIND] = "finding the item by title",
	[PIPELINE_OP_ITEM_PATCH] = "setting the item's values",
	[PIPELINE_OP_ITEM_GET] = "polling the item",
	[PIPELINE_OP_PING] = "checking the token",
	[PIPELINE_OP_JOB_CREATE] = "creating the job",
	[PIPELINE_OP_JOB_GET] = "polling the job",
	[PIPELINE_OP_JOB_FIND] = "finding the job by its input image",
	[PIPELINE_OP_JOB_LIST] = "finding the job among the algorithm's jobs",
	[PIPELINE_OP_OUTPUT_WRITE] = "writing an output",
};

const char *
pipeline_op_name(enum pipeline_op_kind kind)
{
	return (unsigned)kind < _PIPELINE_OP_MAX ? op_names[kind] : "?";
}

void
pipeline_op_run(struct api *api, struct pipeline_op *op)
{
	if (op->kind <= PIPELINE_OP_UPLOAD_GET)
		upload_op_run(api, op, &op->pipeline->cancel);
	else if (op->kind >= PIPELINE_OP_JOB_CREATE)
		jobs_op_run(api, op);
	else
		dest_op_run(api, op);
}

static const char *const gate_names[_PIPELINE_GATE_MAX] = {"uploads", "creations", "polls",
							    "job creations"};

/* ---- titles ---- */

char *
pipeline_title(const char *watch, const char *case_name, const char *fingerprint)
{
	char fp[13];
	char *raw = NULL, *out;
	size_t len, o = 0, max;

	snprintf(fp, sizeof(fp), "%.12s", fingerprint != NULL ? fingerprint : "");
	if (asprintf(&raw, "%s/%s", watch, case_name) < 0)
		return NULL;
	len = strlen(raw);
	out = malloc(TITLE_MAX + 1);
	if (out == NULL) {
		free(raw);
		return NULL;
	}
	max = TITLE_MAX - 1 - strlen(fp);
	for (size_t i = 0; i < len && o < max;) {
		unsigned char ch = (unsigned char)raw[i];
		size_t n = scan_utf8_seq((const unsigned char *)raw + i, len - i);

		if (n == 0 || ch < 0x20 || ch == 0x7f) {
			out[o++] = '_';
			i++;
			continue;
		}
		if (o + n > max)
			break;
		memcpy(out + o, raw + i, n);
		o += n;
		i += n;
	}
	out[o++] = '/';
	memcpy(out + o, fp, strlen(fp) + 1);
	free(raw);
	return out;
}

/* ---- workers ---- */

static int
worker_refresh(struct pl_worker *wk)
{
	struct pipeline *p = wk->p;
	struct http_opts ho = {0};
	struct http *h;
	struct api *a;
	unsigned gen;
	int r = 0;

	pthread_mutex_lock(&p->mu);
	gen = p->gen;
	if (wk->api != NULL && gen == wk->gen) {
		pthread_mutex_unlock(&p->mu);
		return 0;
	}
	ho.api_url = p->api_url;
	ho.authorization = p->auth;
	ho.ca_file = p->ca_file;
	ho.max_send_speed = p->max_send_speed;
	h = http_new(&ho);
	pthread_mutex_unlock(&p->mu);
	a = h != NULL ? api_new(h, ho.api_url != NULL ? p->api_url : "") : NULL;
	if (a == NULL) {
		http_free(h);
		return -ENOMEM;
	}
	api_set_cancel(a, &p->cancel);
	api_free(wk->api);
	http_free(wk->http);
	wk->api = a;
	wk->http = h;
	wk->gen = gen;
	return r;
}

static void *
worker_new(void *ud)
{
	struct pl_worker *wk = calloc(1, sizeof(*wk));

	if (wk == NULL)
		return NULL;
	wk->p = ud;
	if (worker_refresh(wk) < 0) {
		free(wk);
		return NULL;
	}
	return wk;
}

static void
worker_free(void *ctx)
{
	struct pl_worker *wk = ctx;

	api_free(wk->api);
	http_free(wk->http);
	free(wk);
}

static void
worker_run(void *ctx, struct pool_item *it)
{
	struct pl_worker *wk = ctx;
	struct pipeline_op *op = it->data;

	if (worker_refresh(wk) < 0) {
		op->rc = -ENOMEM;
		op->err.cls = API_RETRY;
		snprintf(op->err.message, sizeof(op->err.message), "out of memory");
		return;
	}
	pipeline_op_run(wk->api, op);
}

/* ---- store transaction of one turn ---- */

static void
txn_begin(struct pipeline *p)
{
	if (p->in_txn)
		return;
	if (store_begin(p->store) == 0)
		p->in_txn = true;
	else
		log_warning("cannot begin a queue transaction: %s", store_errmsg(p->store));
}

static void
txn_commit(struct pipeline *p)
{
	if (!p->in_txn)
		return;
	p->in_txn = false;
	if (store_commit(p->store) < 0)
		log_warning("cannot commit to the queue: %s", store_errmsg(p->store));
}

/* ---- logging ---- */

static void
case_log(int prio, const struct pl_case *c, const char *mid, const char *state, int64_t bytes,
	 const char *fmt, ...) GC_PRINTF(6, 7);

static void
case_log(int prio, const struct pl_case *c, const char *mid, const char *state, int64_t bytes,
	 const char *fmt, ...)
{
	struct log_ctx ctx = LOG_CTX_INIT;
	char *msg = NULL;
	va_list ap;

	ctx.watch = c->sc.watch;
	ctx.case_name = c->sc.name;
	ctx.state = state;
	ctx.message_id = mid;
	ctx.bytes = bytes;
	ctx.attempt = c->sc.attempts > 0 ? c->sc.attempts : -1;
	if (c->have_run)
		ctx.job = c->run.job_url;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	log_event(prio, &ctx, "case '%s' of watch '%s': %s", c->sc.name, c->sc.watch,
		  msg != NULL ? msg : "(out of memory)");
	free(msg);
}

static int
transition(struct pipeline *p, struct pl_case *c, enum store_state to, const char *error)
{
	int r = store_case_transition(p->store, c->sc.id, c->state, to, error);

	if (r < 0) {
		log_warning("case '%s': cannot record the state %s: %s", c->sc.name,
			    store_state_name(to), r == -ESTALE ? "it was changed meanwhile" :
							       store_errmsg(p->store));
		return r;
	}
	c->state = to;
	return 0;
}

/* ---- the case list ---- */

static struct pl_case *
case_find(struct pipeline *p, int64_t id)
{
	for (struct pl_case *c = p->cases; c != NULL; c = c->next)
		if (c->sc.id == id)
			return c;
	return NULL;
}

static void
free_waiting(struct pl_case *c)
{
	while (c->waiting != NULL) {
		struct pipeline_op *op = c->waiting;

		c->waiting = op->next;
		if (op->kind == PIPELINE_OP_DEST_RESOLVE)
			((struct dest *)op->sub)->resolving = false;
		else if (op->kind <= PIPELINE_OP_UPLOAD_GET && op->sub != NULL &&
		    op->kind != PIPELINE_OP_UPLOAD_ABORT) {
			if (c->phase == PC_CHECK && op->kind == PIPELINE_OP_UPLOAD_GET)
				c->checks_out--;
			else
				upload_file_forget_op(op->sub, op);
		} else if (op->sub == &c->imp) {
			c->imp.busy = false;
		} else if (c->have_run && op->sub == &c->run) {
			if (op->kind == PIPELINE_OP_OUTPUT_WRITE)
				c->run.writing[op->number] = false;
			if (c->run.busy > 0)
				c->run.busy--;
		}
		pipeline_op_free(op);
	}
}

static void
case_free(struct pl_case *c)
{
	free_waiting(c);
	while (c->open != NULL) {
		struct pl_file *f = c->open;

		c->open = f->next;
		upload_file_done(&f->uf);
		free(f);
	}
	free(c->file_ids);
	if (c->have_imp)
		dest_import_done(&c->imp);
	if (c->have_run)
		jobs_run_done(&c->run);
	if (c->have_map)
		casemap_result_clear(&c->map);
	if (c->have_scan)
		scan_result_clear(&c->scan);
	casemap_names_free(c->cands, c->n_cands);
	store_case_clear(&c->sc);
	free(c->title);
	free(c->end_msg);
	free(c);
}

static struct dest *
dest_for(struct pipeline *p, const struct config_watch *w)
{
	struct dest **nd;
	struct dest *d;

	for (size_t i = 0; i < p->n_dests; i++) {
		d = p->dests[i];
		if (strcmp(d->watch, w->name) == 0 && strcmp(d->slug, w->slug) == 0 &&
		    d->kind == w->dest)
			return d;
	}
	d = dest_new(w);
	if (d == NULL)
		return NULL;
	nd = realloc(p->dests, (p->n_dests + 1) * sizeof(*nd));
	if (nd == NULL) {
		dest_free(d);
		return NULL;
	}
	p->dests = nd;
	nd[p->n_dests++] = d;
	return d;
}

static bool
watch_is_ours(const struct config_watch *w)
{
	return w != NULL && (w->dest == CONFIG_DEST_ARCHIVE || w->dest == CONFIG_DEST_READER_STUDY ||
			     w->dest == CONFIG_DEST_ALGORITHM);
}

static int64_t
wall_now(void)
{
	return (int64_t)time(NULL);
}

static bool
is_alg(const struct pl_case *c)
{
	return c->w != NULL && c->w->dest == CONFIG_DEST_ALGORITHM;
}

/* What the receipt says about the destination of case c. */
static void
receipt_dest(const struct pl_case *c, struct results_dest *rd)
{
	switch (c->w->dest) {
	case CONFIG_DEST_ARCHIVE:
		rd->kind = "archive";
		rd->url = c->dest != NULL && c->dest->have_coll ? c->dest->coll.api_url : NULL;
		break;
	case CONFIG_DEST_READER_STUDY:
		rd->kind = "reader-study";
		rd->url = c->dest != NULL && c->dest->have_coll ? c->dest->coll.api_url : NULL;
		break;
	default:
		rd->kind = "algorithm";
		rd->url = c->dest != NULL && c->dest->have_alg ? c->dest->alg.api_url : NULL;
		break;
	}
	rd->slug = c->w->slug;
}

static enum store_remote_kind
result_kind(const struct pl_case *c)
{
	switch (c->w->dest) {
	case CONFIG_DEST_ARCHIVE:
		return STORE_REMOTE_ARCHIVE_ITEM;
	case CONFIG_DEST_READER_STUDY:
		return STORE_REMOTE_DISPLAY_SET;
	default:
		return STORE_REMOTE_JOB;
	}
}

/* ---- ending a case ---- */

static void submit_abort(struct pipeline *p, struct pipeline_op *op);

static void
finish_failed(struct pipeline *p, struct pl_case *c)
{
	struct results_plan plan = {0};
	struct results_dest rd = {0};
	char *receipt = NULL, *msg = NULL;

	enum store_state to = c->end == END_FAIL && c->end_state == STORE_CANCELLED ?
			      STORE_CANCELLED : STORE_FAILED;

	if (transition(p, c, to, c->end_msg) < 0)
		return;
	case_log(LOG_ERR, c, LOG_MID_CASE_FAILED, store_state_name(to), -1, "%s: %s",
		 store_state_name(to), c->end_msg);
	if (c->w == NULL || c->end == END_CHANGED)
		return;
	if (results_plan_make(c->w, &c->sc, false, NULL, &plan) < 0)
		return;
	receipt_dest(c, &rd);
	if (plan.receipt_dir != NULL)
		if (results_receipt_build(p->store, c->sc.id, &rd, wall_now(), &receipt) < 0)
			receipt = NULL;
	if (plan.results != NULL)
		(void)store_case_set_results(p->store, c->sc.id, plan.results);
	txn_commit(p);
	txn_begin(p);
	if (results_execute(&plan, c->sc.path, receipt, &msg) < 0)
		case_log(LOG_WARNING, c, NULL, NULL, -1, "on_failure: %s", msg ? msg : "failed");
	free(msg);
	free(receipt);
	results_plan_clear(&plan);
}

/* Everything is back from the workers: write the end into the store. */
static void
case_finalize(struct pipeline *p, struct pl_case *c)
{
	switch (c->end) {
	case END_RETRY: {
		struct backoff_policy pol = {
			.base_ms = p->o.retry_base_ms,
			.cap_ms = p->o.retry_cap_ms,
			.max_attempts = 0,
		};
		int attempts = c->sc.attempts + 1;
		int64_t delay;

		if (c->end_had_status && p->cfg->max_attempts > 0 &&
		    attempts >= p->cfg->max_attempts) {
			char *m = NULL;

			if (asprintf(&m, "gave up after %d attempts: %s", attempts, c->end_msg) >= 0) {
				free(c->end_msg);
				c->end_msg = m;
			}
			c->end = END_FAIL;
			finish_failed(p, c);
			break;
		}
		delay = backoff_next_ms(&pol, (unsigned)c->sc.attempts, &p->rng,
					c->end_retry_after_ms);
		if (store_case_retry_wait(p->store, c->sc.id, c->state,
					  wall_now() + (delay + 999) / 1000, c->end_msg) == 0) {
			c->sc.attempts = attempts;
			case_log(LOG_WARNING, c, LOG_MID_CASE_RETRY, "retry-wait", -1,
				 "%s, will retry in %" PRId64 "s", c->end_msg, (delay + 999) / 1000);
			if (p->next_retry_wall == 0 ||
			    wall_now() + (delay + 999) / 1000 < p->next_retry_wall)
				p->next_retry_wall = wall_now() + (delay + 999) / 1000;
		}
		break;
	}
	case END_FAIL:
		finish_failed(p, c);
		break;
	case END_CHANGED:
		for (struct pl_file *f = c->open; f != NULL; f = f->next) {
			struct pipeline_op *op = upload_file_abort_op(&f->uf);

			if (op != NULL)
				submit_abort(p, op);
		}
		finish_failed(p, c);
		if (p->o.resettle != NULL && c->w != NULL)
			p->o.resettle(p->o.resettle_ud, c->sc.watch, c->sc.name);
		break;
	default:
		break;
	}
	c->finished = true;
}

static void
case_end(struct pipeline *p, struct pl_case *c, enum pl_end end, const char *fmt, ...)
{
	va_list ap;

	if (c->stopping)
		return;
	c->stopping = true;
	c->end = end;
	free(c->end_msg);
	c->end_msg = NULL;
	if (fmt != NULL) {
		va_start(ap, fmt);
		if (vasprintf(&c->end_msg, fmt, ap) < 0)
			c->end_msg = NULL;
		va_end(ap);
	}
	if (c->end_msg == NULL)
		c->end_msg = strdup("unknown error");
	free_waiting(c);
	if (c->inflight == 0)
		case_finalize(p, c);
}

/* ---- op results ---- */

/* What a failed op means for its case (and for everyone, for gates and auth). */
static void
op_failed(struct pipeline *p, struct pl_case *c, struct pipeline_op *op)
{
	const struct api_error *e = &op->err;
	enum pipeline_gate g = pipeline_op_gate(op->kind);
	int64_t now = backoff_now_ms();
	int64_t delay;

	p->stats.ops_failed++;
	switch (e->cls) {
	case API_OK:
		return;
	case API_LIMIT:
	case API_RETRY:
		if (e->cls == API_LIMIT || e->status == 429) {
			struct backoff_policy pol = {.base_ms = 1000, .cap_ms = 300000};

			if (g == PIPELINE_GATE_JOBS)
				pol.base_ms = JOB_LIMIT_BASE_MS;
			delay = e->retry_after_ms >= 0 ? e->retry_after_ms :
				e->cls == API_LIMIT && g != PIPELINE_GATE_JOBS ? LIMIT_DEFAULT_MS :
				backoff_delay_ms(&pol, p->gate_hits[g], &p->rng);
			if (g == PIPELINE_GATE_JOBS && delay < JOB_LIMIT_BASE_MS / 2)
				delay = JOB_LIMIT_BASE_MS / 2;
			if (backoff_gate_ready(&p->gates[g], now))
				log_event(LOG_WARNING, NULL, "the platform asks to slow down (%s: %s), "
					  "pausing %s for %" PRId64 "s", pipeline_op_name(op->kind),
					  e->message, gate_names[g], (delay + 999) / 1000);
			backoff_gate_push(&p->gates[g], now, delay);
			if (p->gate_hits[g] < 16)
				p->gate_hits[g]++;
			return;
		}
		c->failures++;
		if (c->failures >= OP_TRIES) {
			c->end_had_status = e->status != 0;
			c->end_retry_after_ms = e->retry_after_ms;
			case_end(p, c, END_RETRY, "%s: %s", pipeline_op_name(op->kind), e->message);
			return;
		}
		{
			struct backoff_policy pol = {.base_ms = p->o.retry_base_ms, .cap_ms = 30000};

			delay = e->retry_after_ms >= 0 ? e->retry_after_ms :
				backoff_delay_ms(&pol, (unsigned)c->failures, &p->rng);
		}
		log_debug("case '%s': %s failed (%s), trying again in %" PRId64 " ms", c->sc.name,
			  pipeline_op_name(op->kind), e->message, delay);
		if (c->not_before_ms < now + delay)
			c->not_before_ms = now + delay;
		return;
	case API_AUTH:
		if (!p->auth_paused) {
			log_event(LOG_ERR, &(struct log_ctx){.attempt = -1, .bytes = -1,
							    .message_id = LOG_MID_AUTH},
				  "the platform refuses the token (%s): every case is paused; "
				  "checking again every %" PRId64 "s", e->message,
				  p->o.auth_retry_ms / 1000);
			p->auth_paused = true;
			p->auth_probe_ms = now + p->o.auth_retry_ms;
		}
		return;
	case API_GONE:
	case API_FAIL:
		case_end(p, c, END_FAIL, "%s: %s", pipeline_op_name(op->kind), e->message);
		return;
	}
}

static void build_import(struct pipeline *p, struct pl_case *c);
static void check_uploads(struct pipeline *p, struct pl_case *c);

static void
on_check_done(struct pipeline *p, struct pl_case *c, struct pipeline_op *op)
{
	c->checks_out--;
	if (op->cancelled)
		return;
	if (op->err.cls == API_GONE ||
	    (op->err.cls == API_OK && (op->upload.status == NULL ||
				       strcmp(op->upload.status, "Completed") != 0))) {
		/* No file is open now: UPLOAD opens them again from their rows. */
		if (store_file_reset_upload(p->store, op->file_id) == 0)
			c->checks_reset = true;
	} else if (op->err.cls != API_OK) {
		op_failed(p, c, op);
	}
}

static void
upload_event(struct pipeline *p, struct pl_case *c, struct pipeline_op *op, enum upload_event ev)
{
	struct upload_file *uf = op->sub;

	switch (ev) {
	case UPLOAD_PROGRESS:
	case UPLOAD_AGAIN:
		if (ev == UPLOAD_PROGRESS && op->kind == PIPELINE_OP_UPLOAD_PUT && !op->cancelled) {
			p->stats.parts_sent++;
			p->stats.bytes_sent += op->length;
		}
		if (!op->cancelled && op->err.cls == API_OK)
			c->failures = 0;
		break;
	case UPLOAD_FINISHED:
		c->failures = 0;
		log_debug("case '%s': '%s' uploaded (%" PRId64 " bytes)", c->sc.name, uf->relpath,
			  uf->size);
		break;
	case UPLOAD_CHANGED:
		case_end(p, c, END_CHANGED, "'%s' changed or vanished while being uploaded; the "
			 "case will be picked up again when it settles", uf->relpath);
		break;
	case UPLOAD_ERROR:
		op_failed(p, c, op);
		break;
	}
}

static void
dest_event(struct pipeline *p, struct pl_case *c, struct pipeline_op *op, enum dest_event ev)
{
	switch (ev) {
	case DEST_PROGRESS:
		if (!op->cancelled)
			c->failures = 0;
		break;
	case DEST_FINISHED:
		c->failures = 0;
		c->phase = PC_FINISH;
		break;
	case DEST_FAILURE:
		case_end(p, c, END_FAIL, "%s", c->imp.error != NULL ? c->imp.error : "import failed");
		break;
	case DEST_ERROR:
		op_failed(p, c, op);
		break;
	case DEST_EXPIRED:
		/* Uploads the platform no longer has: find and re-send them. */
		log_info("case '%s': the platform no longer knows some uploads, checking them",
			 c->sc.name);
		c->phase = PC_CHECK;
		c->checks_reset = false;
		c->failures++;
		check_uploads(p, c);
		break;
	}
}

/*
 * CHECK: one GET per upload of the case, from the file rows (a rare event: the
 * rows are read once, and no file is held open between UPLOAD and IMPORT).
 */
static void
check_uploads(struct pipeline *p, struct pl_case *c)
{
	struct store_file *files = NULL;
	size_t nf = 0;

	if (store_file_list(p->store, c->sc.id, &files, &nf) < 0) {
		log_warning("case '%s': cannot read its files from the queue: %s", c->sc.name,
			    store_errmsg(p->store));
		return;
	}
	for (size_t i = 0; i < nf; i++) {
		struct pipeline_op *g;

		if (files[i].upload_pk == NULL)
			continue;
		g = pipeline_op_new(PIPELINE_OP_UPLOAD_GET);
		if (g == NULL || (g->upload.pk = strdup(files[i].upload_pk)) == NULL) {
			pipeline_op_free(g);
			continue;
		}
		g->file_id = files[i].id;
		g->sub = c;	/* not a file: on_check_done() takes it */
		g->owner = c;
		g->next = c->waiting;
		c->waiting = g;
		c->checks_out++;
	}
	store_file_list_free(files, nf);
}

/* Mark the case's state with the job's, when it is behind (submitted, running). */
static void
job_state(struct pipeline *p, struct pl_case *c, enum store_state to)
{
	if (c->state >= to || c->state == STORE_RETRY_WAIT)
		return;
	if (transition(p, c, to, NULL) < 0) {
		case_end(p, c, END_DROP, NULL);
		return;
	}
	if (to == STORE_SUBMITTED)
		case_log(LOG_NOTICE, c, LOG_MID_CASE_STATE, "submitted", -1, "job %s created (%s)",
			 c->run.job_url, c->run.job_status != NULL ? c->run.job_status : "?");
	else
		case_log(LOG_NOTICE, c, LOG_MID_CASE_STATE, "running", -1, "job %s is %s",
			 c->run.job_url, c->run.job_status != NULL ? c->run.job_status : "?");
}

static void
jobs_event(struct pipeline *p, struct pl_case *c, struct pipeline_op *op, enum jobs_event ev)
{
	struct api_error e = {0};

	switch (ev) {
	case JOBS_PROGRESS:
		if (!op->cancelled && op->err.cls == API_OK)
			c->failures = 0;
		break;
	case JOBS_SUBMITTED:
		c->failures = 0;
		p->gate_hits[PIPELINE_GATE_JOBS] = 0;
		job_state(p, c, STORE_SUBMITTED);
		if (c->run.job_status != NULL && strcmp(c->run.job_status, "Validating inputs") != 0)
			job_state(p, c, STORE_RUNNING);
		break;
	case JOBS_RUNNING:
		c->failures = 0;
		job_state(p, c, STORE_SUBMITTED);
		job_state(p, c, STORE_RUNNING);
		break;
	case JOBS_TIMEOUT: {
		char *m = NULL;

		if (asprintf(&m, "the job %s is still %s after job_timeout (%d s); it is left to "
			     "the operator (gcdrop keeps polling it slowly)", c->run.job_url,
			     c->run.job_status, c->w->job_timeout) < 0)
			break;
		if (store_case_transition(p->store, c->sc.id, c->state, c->state, m) == 0)
			case_log(LOG_ERR, c, LOG_MID_CASE_FAILED, store_state_name(c->state), -1,
				 "%s", m);
		free(m);
		break;
	}
	case JOBS_FINISHED:
		c->failures = 0;
		c->phase = PC_FINISH;
		break;
	case JOBS_FAILURE:
		if (jobs_write_failed_json(&c->run, &e) < 0)
			case_log(LOG_WARNING, c, NULL, NULL, -1, "cannot write job.json: %s",
				 e.message);
		c->end_state = c->run.end_state;
		case_end(p, c, END_FAIL, "%s", c->run.error != NULL ? c->run.error : "job failed");
		break;
	case JOBS_ERROR:
		op_failed(p, c, op);
		break;
	case JOBS_LIMIT:
		/* The global schedule of job creations; the case waits with its uploads. */
		op_failed(p, c, op);
		c->end_had_status = false;
		c->end_retry_after_ms = backoff_gate_wait(&p->gates[PIPELINE_GATE_JOBS],
							  backoff_now_ms());
		case_end(p, c, END_RETRY, "the platform refuses the job for now (%s)",
			 op->err.message);
		break;
	case JOBS_REFUSED:
		dest_forget(c->dest);
		case_end(p, c, END_FAIL, "the platform refused the job's inputs (the algorithm "
			 "will be looked up again for the next case): %s", op->err.message);
		break;
	case JOBS_EXPIRED:
		dest_event(p, c, op, DEST_EXPIRED);
		break;
	}
}

static void
op_done(struct pool_item *it, bool cancelled)
{
	struct pipeline_op *op = it->data;
	struct pipeline *p = op->pipeline;
	struct pl_case *c = op->owner;

	op->cancelled = cancelled;
	p->out--;
	txn_begin(p);
	if (op->kind == PIPELINE_OP_PING) {
		p->probe_out = false;
		if (!cancelled && op->err.cls == API_OK) {
			log_notice("the platform accepts the token again: resuming");
			p->auth_paused = false;
		} else {
			p->auth_probe_ms = backoff_now_ms() + p->o.auth_retry_ms;
		}
		goto out;
	}
	if (op->kind == PIPELINE_OP_DEST_RESOLVE) {
		struct dest *d = op->sub;
		enum api_class cls = dest_on_resolved(d, op);

		if (cls == API_OK) {
			d->failures = 0;
		} else if (cls == API_AUTH || cls == API_LIMIT ||
			   (cls == API_RETRY && op->err.status == 429)) {
			op_failed(p, NULL, op);
		} else if (cls != API_GONE) {
			struct backoff_policy pol = {.base_ms = p->o.retry_base_ms, .cap_ms = 60000};

			d->failures++;
			d->not_before_ms = backoff_now_ms() +
					   backoff_delay_ms(&pol, d->failures, &p->rng);
			log_warning("looking up the destination of watch '%s' failed (%s), will "
				    "retry", d->watch, op->err.message);
		}
		goto out;
	}
	if (c == NULL)
		goto out;	/* fire and forget (aborts) */
	c->inflight--;
	if (c->phase == PC_CHECK && op->kind == PIPELINE_OP_UPLOAD_GET && op->owner == c &&
	    op->upload.api_url == NULL && op->path == NULL) {
		on_check_done(p, c, op);
	} else if (op->kind <= PIPELINE_OP_UPLOAD_GET) {
		enum upload_event ev = upload_file_on_done(op->sub, p->store, op);

		if (!c->stopping)
			upload_event(p, c, op, ev);
	} else if (c->have_run && op->sub == &c->run) {
		enum jobs_event ev = jobs_run_on_done(&c->run, p->store, op);

		if (!c->stopping)
			jobs_event(p, c, op, ev);
	} else {
		enum dest_event ev = dest_import_on_done(&c->imp, p->store, op);

		if (!c->stopping)
			dest_event(p, c, op, ev);
	}
	if (c->stopping && c->inflight == 0 && !c->finished)
		case_finalize(p, c);
out:
	pipeline_op_free(op);
}

static void
submit_abort(struct pipeline *p, struct pipeline_op *op)
{
	op->pipeline = p;
	op->owner = NULL;
	op->item.work = worker_run;
	op->item.done = op_done;
	if (p->stopping || pool_submit(p->pool, &op->item) < 0) {
		pipeline_op_free(op);
		return;
	}
	p->out++;
}

/* ---- advancing a case ---- */

static int
read_at_case(void *ud, const struct scan_entry *e, size_t max, char **ret, size_t *ret_len)
{
	return casemap_read_at(ud, e, max, ret, ret_len);
}

/*
 * The folder that holds the case: where it was queued from (sc.path), which is
 * the watch folder for a dropped case and anywhere for `gcdrop enqueue`. The
 * returned string is malloc'd; NULL on out of memory.
 */
static char *
case_parent_dir(const struct pl_case *c)
{
	const char *slash;

	if (c->sc.path == NULL || (slash = strrchr(c->sc.path, '/')) == NULL)
		return strdup(c->w->path);
	if (slash == c->sc.path)
		return strdup("/");
	return strndup(c->sc.path, (size_t)(slash - c->sc.path));
}

/* RESOLVE: walk, compare, make sure the destination and its sockets are known. */
static void
adv_resolve(struct pipeline *p, struct pl_case *c, int64_t now)
{
	struct scan_opts so = {0};
	struct pipeline_op *op = NULL;
	char *msg = NULL, *parent;
	int r;

	if (!c->have_scan) {
		so.ready_marker = c->w->ready_marker;
		parent = case_parent_dir(c);
		if (parent == NULL) {
			case_end(p, c, END_RETRY, "out of memory");
			return;
		}
		r = scan_case(AT_FDCWD, parent, c->sc.name, &so, &c->scan, &msg);
		free(parent);
		if (r == -ENOENT) {
			free(msg);
			case_end(p, c, END_CHANGED, "the case vanished before it was uploaded");
			return;
		}
		if (r < 0) {
			case_end(p, c, END_FAIL, "%s", msg != NULL ? msg : strerror(-r));
			free(msg);
			return;
		}
		c->have_scan = true;
		if (strcmp(c->scan.fingerprint, c->sc.fingerprint) != 0) {
			case_end(p, c, END_CHANGED, "the case changed after it was queued; it will be "
				 "picked up again when it settles");
			return;
		}
		if (casemap_candidate_slugs(c->scan.entries, c->scan.n, &c->cands, &c->n_cands) < 0) {
			c->cands = NULL;
			c->n_cands = 0;
		}
	}
	if (c->dest->fatal != NULL) {
		case_end(p, c, END_FAIL, "%s", c->dest->fatal);
		return;
	}
	if (dest_ready(c->dest, c->w, c->cands, c->n_cands)) {
		c->phase = PC_PREPARE;
		return;
	}
	if (c->dest->resolving || now < c->dest->not_before_ms)
		return;
	r = dest_resolve_op(c->dest, c->w, c->cands, c->n_cands, &op);
	if (r < 0 || op == NULL)
		return;
	op->sub = c->dest;
	op->owner = NULL;
	/* Resolves belong to no case: keep them on this case's list only to submit them. */
	op->next = c->waiting;
	c->waiting = op;
}

/*
 * The row of 'relpath' in 'files', which store_file_list() gives in relpath
 * order (SQLite's BINARY collation, memcmp; relpaths hold no NUL, so strcmp
 * orders them the same way): a binary search, not a scan per file.
 */
static struct store_file *
file_by_relpath(struct store_file *files, size_t n, const char *relpath)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int d = strcmp(files[mid].relpath, relpath);

		if (d == 0)
			return &files[mid];
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * Persist each mapped file's upload name and socket, and list the files to
 * upload (their row ids, in the map's order) and their total size.
 */
static int
set_values(struct pipeline *p, struct pl_case *c, char **names)
{
	struct store_file *files = NULL;
	size_t nf = 0;
	size_t total = 0;
	int r;

	r = store_file_list(p->store, c->sc.id, &files, &nf);
	if (r < 0)
		return r;
	for (size_t v = 0; v < c->map.n; v++)
		if (c->map.values[v].source == CASEMAP_SRC_FILES)
			total += c->map.values[v].n_files;
	c->single_file = !c->scan.is_dir;
	c->file_ids = calloc(total + 1, sizeof(*c->file_ids));
	if (c->file_ids == NULL) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t v = 0; v < c->map.n; v++) {
		const struct casemap_value *cv = &c->map.values[v];

		if (cv->source != CASEMAP_SRC_FILES)
			continue;
		for (size_t k = 0; k < cv->n_files; k++) {
			const struct scan_entry *e = &c->scan.entries[cv->files[k]];
			struct store_file *f = file_by_relpath(files, nf, e->relpath);

			if (f == NULL) {
				r = -ESTALE;
				goto out;
			}
			if (f->upload_name == NULL || f->socket == NULL ||
			    strcmp(f->socket, cv->socket) != 0) {
				r = store_file_set_upload_name(p->store, f->id, names[cv->files[k]],
							       cv->socket);
				if (r < 0)
					goto out;
				free(f->upload_name);
				free(f->socket);
				f->upload_name = strdup(names[cv->files[k]]);
				f->socket = strdup(cv->socket);
			}
			c->file_ids[c->n_files++] = f->id;
			c->bytes_total += f->size;
		}
	}
	r = 0;
out:
	store_file_list_free(files, nf);
	return r;
}

/* PREPARE: map the case, name the files, load their upload state. */
static void
adv_prepare(struct pipeline *p, struct pl_case *c)
{
	struct casemap_dest cd = {0};
	struct casemap_reader rd;
	char **names = NULL;
	char *msg = NULL, *parent;
	int dirfd;
	int r;

	cd.kind = c->w->dest;
	cd.slug = c->w->slug;
	cd.sockets = c->dest->sockets;
	cd.n_sockets = c->dest->n_sockets;
	cd.socket = c->w->socket;
	cd.values = c->w->values;
	cd.n_values = c->w->n_values;
	parent = c->scan.is_dir ? NULL : case_parent_dir(c);
	dirfd = open(c->scan.is_dir ? c->sc.path : parent != NULL ? parent : c->w->path,
		     O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(parent);
	if (dirfd < 0) {
		case_end(p, c, END_CHANGED, "the case vanished before it was uploaded");
		return;
	}
	rd.read = read_at_case;
	rd.userdata = &dirfd;
	if (is_alg(c))
		r = jobs_map(c->scan.entries, c->scan.n, c->dest, c->w, &rd, &c->map, &msg);
	else
		r = casemap_map(c->scan.entries, c->scan.n, &cd, &rd, &c->map, &msg);
	close(dirfd);
	if (r == -EINVAL) {
		case_end(p, c, END_FAIL, "%s", msg != NULL ? msg : "the case cannot be mapped");
		free(msg);
		return;
	}
	if (r < 0) {
		case_end(p, c, END_CHANGED, "%s", msg != NULL ? msg : strerror(-r));
		free(msg);
		return;
	}
	free(msg);
	c->have_map = true;
	if (casemap_upload_names(c->scan.entries, c->scan.n, &names) < 0) {
		case_end(p, c, END_RETRY, "out of memory");
		return;
	}
	r = set_values(p, c, names);
	casemap_names_free(names, c->scan.n);
	if (r == -ESTALE) {
		case_end(p, c, END_CHANGED, "the queued files do not match the case any more");
		return;
	}
	if (r < 0) {
		case_end(p, c, END_RETRY, "cannot prepare the upload: %s", strerror(-r));
		return;
	}
	c->title = pipeline_title(c->sc.watch, c->sc.name, c->sc.fingerprint);
	if (c->title == NULL) {
		case_end(p, c, END_RETRY, "out of memory");
		return;
	}
	if (c->state == STORE_QUEUED) {
		if (transition(p, c, STORE_UPLOADING, NULL) < 0) {
			case_end(p, c, END_DROP, NULL);
			return;
		}
		case_log(LOG_NOTICE, c, LOG_MID_CASE_STATE, "uploading", c->bytes_total,
			 "uploading %zu file(s), %" PRId64 " bytes", c->n_files, c->bytes_total);
	}
	/*
	 * The walk and the candidate slugs served RESOLVE and PREPARE only (the
	 * map refers to files by index, and c->files is what comes next): a case
	 * of many files does not keep a second copy of its file list.
	 */
	scan_result_clear(&c->scan);
	c->have_scan = false;
	casemap_names_free(c->cands, c->n_cands);
	c->cands = NULL;
	c->n_cands = 0;
	c->phase = c->state == STORE_IMPORTING && !is_alg(c) ? PC_IMPORT : PC_UPLOAD;
	if (c->phase == PC_IMPORT)
		build_import(p, c);
}

/* The job's run, from the map and the uploads (or, once the job is known, from the store). */
static void
build_run(struct pipeline *p, struct pl_case *c)
{
	struct jobs_input *in = NULL;
	struct jobs_opts jo = {0};
	struct store_file *rows = NULL;
	char **urls = NULL, **names = NULL;
	char *case_dir = NULL;
	int r = -ENOMEM;

	if (c->have_run) {
		jobs_run_done(&c->run);
		c->have_run = false;
	}
	if (c->have_map) {
		/* From the file rows: a job's inputs are few files, read once. */
		rows = calloc(c->n_files + 1, sizeof(*rows));
		urls = calloc(c->n_files + 1, sizeof(char *));
		names = calloc(c->n_files + 1, sizeof(char *));
		if (rows == NULL || urls == NULL || names == NULL)
			goto out;
		for (size_t i = 0; i < c->n_files; i++) {
			r = store_file_get(p->store, c->file_ids[i], &rows[i]);
			if (r < 0)
				goto out;
			urls[i] = rows[i].upload_url;
			names[i] = rows[i].upload_name;
		}
		r = jobs_inputs_build(&c->map, urls, names, c->n_files, &in);
		if (r < 0)
			goto out;
	}
	if (c->w->results_dir != NULL &&
	    asprintf(&case_dir, "%s/%s", c->w->results_dir, c->sc.name) < 0) {
		case_dir = NULL;
		r = -ENOMEM;
		goto out;
	}
	jo.poll_base_ms = p->o.poll_base_ms;
	jo.poll_cap_ms = p->o.poll_cap_ms;
	jo.timeout_s = c->w->job_timeout > 0 ? c->w->job_timeout : 86400;
	jo.case_dir = case_dir;
	jo.watch = c->sc.watch;
	jo.case_name = c->sc.name;
	jo.fingerprint = c->sc.fingerprint;
	r = jobs_run_init(&c->run, p->store, c->sc.id, c->dest, c->title, &in,
			  c->have_map ? c->map.n : 0, &jo);
	if (r < 0) {
		jobs_run_done(&c->run);
		goto out;
	}
	c->have_run = true;
	if (c->run.phase == JOBS_OUTPUTS || c->run.phase == JOBS_POLL)
		job_state(p, c, STORE_SUBMITTED);
	if (c->run.phase == JOBS_OUTPUTS)
		job_state(p, c, STORE_RUNNING);
out:
	if (in != NULL)
		jobs_inputs_free(in, c->map.n);
	if (rows != NULL)
		store_file_list_free(rows, c->n_files);
	free(urls);
	free(names);
	free(case_dir);
	if (r < 0)
		case_end(p, c, END_RETRY, "cannot prepare the job: %s", strerror(-r));
}

/* The values of the item, from the map and the uploads. */
static void
build_import(struct pipeline *p, struct pl_case *c)
{
	struct dest_value *vals;
	size_t fi = 0;
	int r;

	if (c->have_imp) {
		dest_import_done(&c->imp);
		c->have_imp = false;
	}
	vals = calloc(c->map.n + 1, sizeof(*vals));
	if (vals == NULL) {
		case_end(p, c, END_RETRY, "out of memory");
		return;
	}
	for (size_t v = 0; v < c->map.n; v++) {
		const struct casemap_value *cv = &c->map.values[v];
		struct dest_value *dv = &vals[v];

		dv->socket = strdup(cv->socket);
		if (cv->source == CASEMAP_SRC_JSON) {
			dv->src = DEST_SRC_VALUE;
			dv->json = strdup(cv->json);
			continue;
		}
		dv->src = cv->super_kind == CASEMAP_FILE ? DEST_SRC_USER_UPLOAD :
			  cv->n_files <= DEST_SESSION_MAX ? DEST_SRC_SESSION : DEST_SRC_USER_UPLOADS;
		dv->upload_urls = calloc(cv->n_files + 1, sizeof(char *));
		if (dv->upload_urls == NULL)
			break;
		for (size_t k = 0; k < cv->n_files && fi < c->n_files; k++, fi++) {
			struct store_file row;

			r = store_file_get(p->store, c->file_ids[fi], &row);
			if (r < 0)
				goto fail;
			dv->upload_urls[k] = row.upload_url != NULL ? row.upload_url : strdup("");
			row.upload_url = NULL;
			store_file_clear(&row);
			dv->n_uploads++;
		}
	}
	r = dest_import_init(&c->imp, p->store, c->sc.id, c->dest, c->title, &vals, c->map.n,
			     p->o.poll_base_ms, p->o.poll_cap_ms, p->o.import_timeout_s);
	dest_values_free(vals, c->map.n);
	if (r < 0) {
		dest_import_done(&c->imp);
		case_end(p, c, END_RETRY, "cannot prepare the import: %s", strerror(-r));
		return;
	}
	c->have_imp = true;
	return;
fail:
	dest_values_free(vals, c->map.n);
	case_end(p, c, END_RETRY, "cannot prepare the import: %s", strerror(-r));
}

/* Free the open files that are uploaded (recorded in their rows) and have no op out. */
static void
close_done(struct pl_case *c)
{
	struct pl_file **link = &c->open;

	while (*link != NULL) {
		struct pl_file *f = *link;

		if (f->uf.phase != UPLOAD_DONE || f->uf.busy || f->uf.presigning ||
		    f->uf.in_flight > 0) {
			link = &f->next;
			continue;
		}
		*link = f->next;
		c->bytes_closed += f->uf.size;
		upload_file_done(&f->uf);
		free(f);
	}
}

/* Open the next file of the case from its row (its recorded upload and parts). */
static int
open_next(struct pipeline *p, struct pl_case *c, struct pl_file **ret_file)
{
	struct store_file row;
	struct pl_file *f;
	int r;

	r = store_file_get(p->store, c->file_ids[c->next_file], &row);
	if (r < 0)
		return r;
	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		store_file_clear(&row);
		return -ENOMEM;
	}
	r = upload_file_init(&f->uf, p->store, &row, c->sc.path, c->single_file,
			     p->o.part_size);
	store_file_clear(&row);
	if (r < 0) {
		free(f);
		return r;
	}
	c->next_file++;
	*ret_file = f;
	return 0;
}

/*
 * UPLOAD: hand out the next ops of the files, in order, within the budget.
 * Only the files being uploaded are in memory (c->open, about as many as ops
 * fit in the budget): a file is opened from its row when the budget reaches
 * it and freed once its completion is recorded, so a case of many files holds
 * nothing for the files done or not started, and the import is built from the
 * rows. Files finish roughly in order, so the list stays short and is walked
 * on every turn.
 */
static void
adv_upload(struct pipeline *p, struct pl_case *c, int64_t now, int budget)
{
	struct pl_file **tail = &c->open;
	int r;

	close_done(c);
	for (struct pl_file *f = c->open; f != NULL; f = f->next) {
		int n;

		tail = &f->next;
		if (budget <= 0 || f->uf.phase == UPLOAD_DONE)
			continue;
		n = upload_file_next(&f->uf, now, budget, &c->waiting);
		if (n > 0)
			budget -= n;
	}
	while (budget > 0 && c->next_file < c->n_files) {
		struct pl_file *f = NULL;
		int n;

		r = open_next(p, c, &f);
		if (r < 0) {
			case_end(p, c, END_RETRY, "cannot read a file of the case from the queue: %s",
				 strerror(-r));
			return;
		}
		if (f->uf.phase == UPLOAD_DONE) {
			/* Completed before a restart (or a check): nothing to hold. */
			c->bytes_closed += f->uf.size;
			upload_file_done(&f->uf);
			free(f);
			continue;
		}
		*tail = f;
		tail = &f->next;
		n = upload_file_next(&f->uf, now, budget, &c->waiting);
		if (n > 0)
			budget -= n;
	}
	for (struct pipeline_op *op = c->waiting; op != NULL; op = op->next)
		op->owner = c;
	close_done(c);
	if (c->open != NULL || c->next_file < c->n_files || c->inflight > 0 ||
	    c->waiting != NULL)
		return;
	if (is_alg(c)) {
		/* The case stays "uploading" until the job exists ("submitted"). */
		(void)store_case_set_progress(p->store, c->sc.id, c->bytes_total, c->bytes_total);
		case_log(LOG_INFO, c, NULL, "uploading", c->bytes_total, "uploaded, creating the job");
		c->phase = PC_JOB;
		build_run(p, c);
		return;
	}
	if (transition(p, c, STORE_IMPORTING, NULL) < 0) {
		case_end(p, c, END_DROP, NULL);
		return;
	}
	(void)store_case_set_progress(p->store, c->sc.id, c->bytes_total, c->bytes_total);
	case_log(LOG_NOTICE, c, LOG_MID_CASE_STATE, "importing", c->bytes_total,
		 "uploaded, creating the %s", c->w->dest == CONFIG_DEST_ARCHIVE ? "archive item" :
										  "display set");
	c->phase = PC_IMPORT;
	build_import(p, c);
}

static void
adv_finish(struct pipeline *p, struct pl_case *c)
{
	struct results_plan plan = {0};
	struct results_dest rd = {0};
	struct store_case now = {0};
	char *receipt = NULL, *msg = NULL;
	int r;

	if (store_case_get(p->store, c->sc.id, &now) < 0)
		return;
	r = results_plan_make(c->w, &c->sc, true, now.results, &plan);
	store_case_clear(&now);
	if (r < 0) {
		case_end(p, c, END_RETRY, "cannot plan the results: %s", strerror(-r));
		return;
	}
	receipt_dest(c, &rd);
	/* The receipt says "succeeded": that is what it records once it is visible. */
	if (plan.receipt_dir != NULL) {
		r = results_receipt_build(p->store, c->sc.id, &rd, wall_now(), &receipt);
		if (r == 0) {
			cJSON *j = cJSON_Parse(receipt);

			free(receipt);
			receipt = NULL;
			if (j != NULL) {
				cJSON_ReplaceItemInObject(j, "state", cJSON_CreateString("succeeded"));
				receipt = cJSON_Print(j);
				cJSON_Delete(j);
			}
		}
	}
	if (plan.results != NULL)
		(void)store_case_set_results(p->store, c->sc.id, plan.results);
	/* The plan is durable before anything is moved. */
	txn_commit(p);
	txn_begin(p);
	r = results_execute(&plan, c->sc.path, receipt, &msg);
	if (r < 0)
		case_log(LOG_WARNING, c, NULL, NULL, -1, "on_success: %s", msg ? msg : strerror(-r));
	free(msg);
	free(receipt);
	results_plan_clear(&plan);
	if (transition(p, c, STORE_SUCCEEDED, NULL) == 0) {
		struct store_remote rem = {0};
		const char *what = c->w->dest == CONFIG_DEST_ARCHIVE ? "archive item" :
				   c->w->dest == CONFIG_DEST_READER_STUDY ? "display set" : "job";

		if (store_remote_get(p->store, c->sc.id, result_kind(c), "", &rem) < 0)
			memset(&rem, 0, sizeof(rem));
		case_log(LOG_NOTICE, c, LOG_MID_CASE_STATE, "succeeded", c->bytes_total,
			 "succeeded: %s %s", what, rem.url != NULL ? rem.url : "?");
		store_remote_clear(&rem);
	}
	c->finished = true;
}

static void
adv_import(struct pipeline *p, struct pl_case *c, int64_t now)
{
	struct pipeline_op *op = NULL;

	if (!c->have_imp)
		return;
	if (dest_import_next(&c->imp, p->store, now, &op) < 0) {
		case_end(p, c, END_RETRY, "cannot record the import in the queue: %s",
			 store_errmsg(p->store));
		return;
	}
	if (op != NULL) {
		op->owner = c;
		op->next = c->waiting;
		c->waiting = op;
	}
}

static void
adv_job(struct pipeline *p, struct pl_case *c, int64_t now, int budget)
{
	if (!c->have_run)
		return;
	do {
		struct pipeline_op *op = NULL;

		if (jobs_run_next(&c->run, p->store, now, &op) < 0) {
			case_end(p, c, END_RETRY, "cannot go on with the job: %s",
				 c->run.error != NULL ? c->run.error : store_errmsg(p->store));
			return;
		}
		if (op == NULL)
			break;
		op->owner = c;
		op->next = c->waiting;
		c->waiting = op;
	} while (--budget > 0);
	if (c->run.phase == JOBS_DONE)
		c->phase = PC_FINISH;
}

static void
adv_check(struct pipeline *p, struct pl_case *c)
{
	if (c->checks_out > 0)
		return;
	/* Sessions made of the old uploads cannot be used again. */
	for (size_t v = 0; v < c->map.n; v++)
		(void)store_remote_delete(p->store, c->sc.id, STORE_REMOTE_SESSION,
					  c->map.values[v].socket);
	if (!c->checks_reset) {
		if (c->failures >= OP_TRIES) {
			case_end(p, c, END_RETRY, "the platform refuses the uploads of this case "
				 "(\"Invalid hyperlink - Object does not exist.\")");
			return;
		}
		if (is_alg(c)) {
			c->phase = PC_JOB;
			build_run(p, c);
			return;
		}
		c->phase = PC_IMPORT;
		build_import(p, c);
		return;
	}
	if (c->state != STORE_UPLOADING && transition(p, c, STORE_UPLOADING, NULL) < 0) {
		case_end(p, c, END_DROP, NULL);
		return;
	}
	case_log(LOG_NOTICE, c, LOG_MID_CASE_STATE, "uploading", -1,
		 "some uploads expired on the platform; sending them again");
	c->next_file = 0;	/* some files are no longer done: open them all again */
	c->bytes_closed = 0;
	c->phase = PC_UPLOAD;
}

static void
case_advance(struct pipeline *p, struct pl_case *c, int64_t now, int budget)
{
	if (c->stopping || c->finished || c->w == NULL)
		return;
	if (now < c->not_before_ms || p->auth_paused)
		return;
	if (p->no_intake && c->state == STORE_QUEUED)
		return;	/* intake closed: it does not leave queued */
	switch (c->phase) {
	case PC_RESOLVE:
		adv_resolve(p, c, now);
		if (c->phase != PC_PREPARE || c->stopping)
			break;
		/* fall through */
	case PC_PREPARE:
		adv_prepare(p, c);
		if (c->stopping || c->phase != PC_UPLOAD)
			break;
		/* fall through */
	case PC_UPLOAD:
		adv_upload(p, c, now, budget);
		break;
	case PC_IMPORT:
		adv_import(p, c, now);
		if (c->phase == PC_FINISH)
			adv_finish(p, c);
		break;
	case PC_CHECK:
		adv_check(p, c);
		break;
	case PC_JOB:
		adv_job(p, c, now, budget > 0 ? budget : 1);
		if (c->phase == PC_FINISH)
			adv_finish(p, c);
		break;
	case PC_FINISH:
		adv_finish(p, c);
		break;
	}
	if (c->phase == PC_UPLOAD && !c->stopping && now - c->progress_ms >= PROGRESS_EVERY_MS) {
		int64_t done = c->bytes_closed;

		for (struct pl_file *f = c->open; f != NULL; f = f->next)
			done += f->uf.bytes_done;
		if (done != c->progress_bytes) {
			(void)store_case_set_progress(p->store, c->sc.id, done, c->bytes_total);
			c->progress_bytes = done;
		}
		c->progress_ms = now;
	}
}

/* ---- finding cases ---- */

struct scan_ctx {
	struct pipeline *p;
	int64_t now_wall;
	int64_t *ids;
	size_t n;
	size_t cap;
	int64_t next_retry;
};

static int
scan_cb(const struct store_case *sc, void *ud)
{
	struct scan_ctx *s = ud;
	struct pipeline *p = s->p;
	const struct config_watch *w;
	struct pl_case *c;

	if (sc->state != STORE_QUEUED && sc->state != STORE_UPLOADING &&
	    sc->state != STORE_IMPORTING && sc->state != STORE_RETRY_WAIT &&
	    sc->state != STORE_SUBMITTED && sc->state != STORE_RUNNING)
		return 0;
	c = case_find(p, sc->id);
	if (c != NULL) {
		if (sc->held && !c->stopping)
			case_end(p, c, END_DROP, NULL);
		return 0;
	}
	w = config_find_watch(p->cfg, sc->watch);
	if (!watch_is_ours(w) || sc->held)
		return 0;
	if (p->no_intake && sc->state == STORE_QUEUED)
		return 0;
	if (sc->state == STORE_RETRY_WAIT && sc->next_attempt > s->now_wall) {
		if (s->next_retry == 0 || sc->next_attempt < s->next_retry)
			s->next_retry = sc->next_attempt;
		return 0;
	}
	if (s->n < s->cap)
		s->ids[s->n++] = sc->id;
	return 0;
}

static void
activate(struct pipeline *p, int64_t id)
{
	struct pl_case *c = calloc(1, sizeof(*c));
	const struct config_watch *w;
	struct store_remote rem = {0};

	if (c == NULL)
		return;
	c->p = p;
	if (store_case_get(p->store, id, &c->sc) < 0)
		goto drop;
	if (c->sc.state == STORE_RETRY_WAIT) {
		if (store_case_resume(p->store, id, -1) < 0)
			goto drop;
		store_case_clear(&c->sc);
		if (store_case_get(p->store, id, &c->sc) < 0)
			goto drop;
	}
	w = config_find_watch(p->cfg, c->sc.watch);
	if (!watch_is_ours(w))
		goto drop;
	c->w = w;
	c->state = c->sc.state;
	c->dest = dest_for(p, w);
	if (c->dest == NULL)
		goto drop;
	c->phase = PC_RESOLVE;
	c->end_state = STORE_FAILED;
	if (w->dest == CONFIG_DEST_ALGORITHM &&
	    (c->state == STORE_SUBMITTED || c->state == STORE_RUNNING)) {
		/* The job exists: the case's files are not needed any more. */
		c->next = p->cases;
		p->cases = c;
		p->n_active++;
		case_log(LOG_INFO, c, NULL, store_state_name(c->state), -1, "resuming (%s)",
			 store_state_name(c->state));
		c->phase = PC_JOB;
		build_run(p, c);
		return;
	}
	/* An import that finished before a crash: only the finish is left. */
	if (c->state == STORE_IMPORTING &&
	    store_remote_get(p->store, id, w->dest == CONFIG_DEST_ARCHIVE ?
			     STORE_REMOTE_ARCHIVE_ITEM : STORE_REMOTE_DISPLAY_SET, "", &rem) == 0 &&
	    rem.status != NULL && strcmp(rem.status, "done") == 0)
		c->phase = PC_FINISH;
	store_remote_clear(&rem);
	if (c->state == STORE_QUEUED)
		log_debug("case '%s' of watch '%s': taken from the queue", c->sc.name, c->sc.watch);
	else
		case_log(LOG_INFO, c, NULL, store_state_name(c->state), -1, "resuming (%s)",
			 store_state_name(c->state));
	c->next = p->cases;
	p->cases = c;
	p->n_active++;
	return;
drop:
	case_free(c);
}

static void
scan_queue(struct pipeline *p, int64_t now)
{
	struct scan_ctx s = {.p = p, .now_wall = wall_now()};
	unsigned room = p->o.max_active_cases > p->n_active ? p->o.max_active_cases - p->n_active : 0;

	s.cap = room;
	s.ids = calloc(room + 1, sizeof(int64_t));
	if (s.ids == NULL)
		return;
	if (store_case_foreach(p->store, NULL, scan_cb, &s) < 0)
		log_warning("cannot read the queue: %s", store_errmsg(p->store));
	for (size_t i = 0; i < s.n; i++)
		activate(p, s.ids[i]);
	free(s.ids);
	p->kick = s.n == room && room > 0;	/* more may be waiting */
	p->next_retry_wall = s.next_retry;
	p->next_scan_ms = now + SCAN_IDLE_MS;
	if (s.next_retry != 0) {
		int64_t at = now + (s.next_retry - s.now_wall) * 1000;

		if (at < p->next_scan_ms)
			p->next_scan_ms = at;
	}
}

/* ---- submitting ---- */

static unsigned
cap_out(const struct pipeline *p)
{
	return p->workers * 2;
}

static void
submit_ready(struct pipeline *p, int64_t now)
{
	for (struct pl_case *c = p->cases; c != NULL && p->out < cap_out(p); c = c->next) {
		struct pipeline_op **pp = &c->waiting;

		while (*pp != NULL && p->out < cap_out(p)) {
			struct pipeline_op *op = *pp;
			enum pipeline_gate g = pipeline_op_gate(op->kind);

			if (op->not_before_ms > now || !backoff_gate_ready(&p->gates[g], now) ||
			    p->auth_paused || (p->no_intake && op->kind == PIPELINE_OP_UPLOAD_CREATE)) {
				pp = &op->next;
				continue;
			}
			*pp = op->next;
			op->next = NULL;
			op->pipeline = p;
			op->item.work = worker_run;
			op->item.done = op_done;
			if (pool_submit(p->pool, &op->item) < 0) {
				op->next = *pp;
				*pp = op;
				return;
			}
			p->out++;
			p->stats.ops_submitted++;
			if (op->owner != NULL)
				c->inflight++;
		}
	}
}

static void
reap(struct pipeline *p)
{
	struct pl_case **pp = &p->cases;

	while (*pp != NULL) {
		struct pl_case *c = *pp;

		if (c->finished && c->inflight == 0) {
			*pp = c->next;
			p->n_active--;
			case_free(c);
			p->kick = true;
		} else {
			pp = &c->next;
		}
	}
}

/* ---- the public API ---- */

static int
load_shared(struct pipeline *p, const struct config *cfg, char **reterr_msg)
{
	char *auth = NULL, *url = NULL, *ca = NULL;
	int r;

	r = config_token(cfg, &auth, reterr_msg);
	if (r < 0)
		return r;
	log_add_secret(auth);
	if (strlen(auth) > 7)
		log_add_secret(auth + 7);
	url = strdup(cfg->api_url);
	ca = cfg->ca_file != NULL ? strdup(cfg->ca_file) : NULL;
	if (url == NULL || (cfg->ca_file != NULL && ca == NULL)) {
		config_token_free(auth);
		free(url);
		free(ca);
		return -ENOMEM;
	}
	pthread_mutex_lock(&p->mu);
	config_token_free(p->auth);
	free(p->api_url);
	free(p->ca_file);
	p->auth = auth;
	p->api_url = url;
	p->ca_file = ca;
	p->max_send_speed = cfg->max_send_speed;
	p->gen++;
	pthread_mutex_unlock(&p->mu);
	return 0;
}

int
pipeline_new(const struct config *cfg, struct store *store, const struct pipeline_opts *opts,
	     struct pipeline **ret, char **reterr_msg)
{
	struct pipeline *p = calloc(1, sizeof(*p));
	int r;

	if (p == NULL)
		return -ENOMEM;
	pthread_mutex_init(&p->mu, NULL);
	atomic_init(&p->cancel, 0);
	p->cfg = cfg;
	p->store = store;
	if (opts != NULL)
		p->o = *opts;
	if (p->o.poll_base_ms <= 0)
		p->o.poll_base_ms = 2000;
	if (p->o.poll_cap_ms <= 0)
		p->o.poll_cap_ms = 60000;
	if (p->o.import_timeout_s <= 0)
		p->o.import_timeout_s = 3600;
	if (p->o.retry_base_ms <= 0)
		p->o.retry_base_ms = 1000;
	if (p->o.retry_cap_ms <= 0)
		p->o.retry_cap_ms = 300000;
	if (p->o.auth_retry_ms <= 0)
		p->o.auth_retry_ms = 300000;
	p->workers = cfg->workers > 0 ? (unsigned)cfg->workers : 4;
	if (p->o.max_active_cases == 0)
		p->o.max_active_cases = p->workers * 2 > 4 ? p->workers * 2 : 4;
	for (int g = 0; g < _PIPELINE_GATE_MAX; g++)
		backoff_gate_init(&p->gates[g], gate_names[g]);
	backoff_rng_seed(&p->rng, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
	r = load_shared(p, cfg, reterr_msg);
	if (r < 0)
		goto fail;
	p->pool = pool_new(p->workers, p->workers * 4 + 16, worker_new, worker_free, p);
	if (p->pool == NULL) {
		r = errno > 0 ? -errno : -ENOMEM;
		if (reterr_msg != NULL && asprintf(reterr_msg, "cannot start %u workers: %s",
						   p->workers, strerror(-r)) < 0)
			*reterr_msg = NULL;
		goto fail;
	}
	p->kick = true;
	*ret = p;
	return 0;
fail:
	pipeline_free(p);
	return r;
}

int
pipeline_eventfd(const struct pipeline *p)
{
	return pool_eventfd(p->pool);
}

void
pipeline_kick(struct pipeline *p)
{
	p->kick = true;
}

void
pipeline_tick(struct pipeline *p, int64_t now)
{
	int budget;

	txn_begin(p);
	if (p->pool != NULL)
		(void)pool_drain(p->pool);
	if (p->stopping) {
		txn_commit(p);
		return;
	}
	if (p->auth_paused && !p->probe_out && now >= p->auth_probe_ms) {
		struct pipeline_op *op = pipeline_op_new(PIPELINE_OP_PING);

		if (op != NULL) {
			op->pipeline = p;
			op->item.work = worker_run;
			op->item.done = op_done;
			if (pool_submit(p->pool, &op->item) == 0) {
				p->out++;
				p->probe_out = true;
			} else {
				pipeline_op_free(op);
			}
		}
	}
	if (!p->auth_paused && (p->kick || now >= p->next_scan_ms))
		scan_queue(p, now);
	budget = (int)p->workers;
	for (struct pl_case *c = p->cases; c != NULL; c = c->next) {
		int have = c->inflight;

		for (struct pipeline_op *op = c->waiting; op != NULL; op = op->next)
			have++;
		case_advance(p, c, now, budget - have);
	}
	txn_commit(p);
	/* Only what is committed may be depended on by a request. */
	submit_ready(p, now);
	reap(p);
}

void
pipeline_on_event(struct pipeline *p)
{
	pipeline_tick(p, backoff_now_ms());
}

int64_t
pipeline_next_deadline(struct pipeline *p, int64_t now)
{
	int64_t t = p->next_scan_ms;

	if (p->stopping)
		return INT64_MAX;
	if (p->kick)
		return now;
	if (p->auth_paused && !p->probe_out && p->auth_probe_ms < t)
		t = p->auth_probe_ms;
	for (struct pl_case *c = p->cases; c != NULL; c = c->next) {
		if (c->finished)
			return now;
		if (c->not_before_ms > now && c->not_before_ms < t)
			t = c->not_before_ms;
		if (c->have_imp && c->phase == PC_IMPORT && dest_import_wake(&c->imp) < t)
			t = dest_import_wake(&c->imp);
		if (c->have_run && c->phase == PC_JOB && jobs_run_wake(&c->run) < t)
			t = jobs_run_wake(&c->run);
		if (c->phase == PC_RESOLVE && c->dest->not_before_ms > now &&
		    c->dest->not_before_ms < t)
			t = c->dest->not_before_ms;
		for (struct pipeline_op *op = c->waiting; op != NULL; op = op->next) {
			int64_t g = now + backoff_gate_wait(&p->gates[pipeline_op_gate(op->kind)], now);

			if (p->no_intake && op->kind == PIPELINE_OP_UPLOAD_CREATE)
				continue;	/* held until intake opens */

			if (op->not_before_ms > g)
				g = op->not_before_ms;
			if (g < t)
				t = g;
		}
		if (c->phase == PC_UPLOAD && c->not_before_ms <= now && c->waiting == NULL &&
		    c->inflight == 0 && !p->auth_paused && !c->stopping)
			return now;
	}
	return t < now ? now : t;
}

int
pipeline_reload(struct pipeline *p, const struct config *cfg)
{
	char *msg = NULL;
	int r;

	r = load_shared(p, cfg, &msg);
	if (r < 0) {
		log_warning("reload: cannot read the token (%s); keeping the old one",
			    msg != NULL ? msg : strerror(-r));
		free(msg);
	}
	p->cfg = cfg;
	for (struct pl_case *c = p->cases; c != NULL; c = c->next) {
		const struct config_watch *w = config_find_watch(cfg, c->sc.watch);

		if (!watch_is_ours(w) || strcmp(w->slug, c->dest->slug) != 0 ||
		    w->dest != c->dest->kind || strcmp(w->path, c->w->path) != 0) {
			c->w = w != NULL && watch_is_ours(w) ? w : NULL;
			case_end(p, c, END_DROP, NULL);
			c->w = NULL;
		} else {
			c->w = w;
		}
	}
	/* Sockets (and algorithms) are looked up again; a missing destination may exist now. */
	for (size_t i = 0; i < p->n_dests; i++)
		dest_forget(p->dests[i]);
	p->auth_paused = false;
	p->kick = true;
	return 0;
}

size_t
pipeline_inflight(struct pipeline *p)
{
	return p->out;
}

void
pipeline_stop(struct pipeline *p, int64_t deadline_ms)
{
	if (p->pool == NULL)
		return;
	if (!p->stopping) {
		p->stopping = true;
		txn_begin(p);
		for (struct pl_case *c = p->cases; c != NULL; c = c->next)
			case_end(p, c, END_DROP, NULL);
		txn_commit(p);
		pool_shutdown(p->pool, true);
	}
	while (p->out > 0) {
		int64_t left = deadline_ms - backoff_now_ms();
		struct pollfd pfd = {.fd = pool_eventfd(p->pool), .events = POLLIN};

		if (left <= 0)
			break;
		(void)poll(&pfd, 1, left > 200 ? 200 : (int)left);
		txn_begin(p);
		(void)pool_drain(p->pool);
		txn_commit(p);
	}
	/* Past the deadline: cut the transfers; a cut part is not recorded. */
	atomic_store(&p->cancel, 1);
	txn_begin(p);
	pool_stop(p->pool, true);
	txn_commit(p);
	reap(p);
}

struct pipeline *
pipeline_free(struct pipeline *p)
{
	if (p == NULL)
		return NULL;
	if (p->pool != NULL) {
		pipeline_stop(p, backoff_now_ms());
		p->pool = pool_free(p->pool);
	}
	while (p->cases != NULL) {
		struct pl_case *c = p->cases;

		p->cases = c->next;
		case_free(c);
	}
	for (size_t i = 0; i < p->n_dests; i++)
		dest_free(p->dests[i]);
	free(p->dests);
	config_token_free(p->auth);
	free(p->api_url);
	free(p->ca_file);
	pthread_mutex_destroy(&p->mu);
	free(p);
	return NULL;
}

void
pipeline_get_stats(const struct pipeline *p, struct pipeline_stats *ret)
{
	*ret = p->stats;
	ret->active_cases = p->n_active;
	ret->auth_paused = p->auth_paused;
}

void
pipeline_set_intake(struct pipeline *p, bool accept)
{
	if (p->no_intake == !accept)
		return;
	p->no_intake = !accept;
	if (accept)
		p->kick = true;
}

int
pipeline_oldest_busy_since(struct pipeline *p, int64_t *ret_ms)
{
	if (p->pool == NULL)
		return -ENOENT;
	return pool_oldest_busy_since(p->pool, ret_ms);
}

int64_t
pipeline_bytes_sent(const struct pipeline *p)
{
	return p->stats.bytes_sent;
}
