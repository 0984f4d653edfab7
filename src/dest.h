/*
 * dest.h: destinations, and turning uploads into one archive item or display set (dest_ prefix).
 *
 * struct dest caches, per watch, what the platform says about its destination:
 * the archive or reader study (looked up by slug) and the sockets a case of
 * that watch may use (the watch's socket, the static values' sockets, and the
 * slugs a case's top-level entries could be named after), so that each socket
 * is looked up once per daemon life (and again after a reload). For an
 * algorithm one lookup (algorithms/?slug=) gives everything: its interfaces,
 * whose input sockets are the only sockets a case may use.
 *
 * struct dest_import is one case's way from completed uploads to a finished
 * item (contract 4.2, 4.4, 4.5), as a sequence of operations on the main
 * thread:
 *   1. an upload session per Image value of at most DEST_SESSION_MAX files
 *      (its error_message is the only explanation of a failed import); an
 *      Image value with more files uses "user_uploads", for which the platform
 *      reports no error text;
 *   2. the item: store_remote_intent() with its stable title is written before
 *      the POST; an intent without an answer (a crash, a lost response) is
 *      reconciled by finding the title in the collection before any POST, so
 *      that a case never gets a second item;
 *   3. one PATCH with every value ("upload_session", "user_uploads",
 *      "user_upload", inline "value"), recorded as "patching" before and
 *      "patched" after;
 *   4. polling, with backoff, of the sessions until Succeeded / Failed and of
 *      the item until every socket has its value.
 * A PATCH (or session) refused with "Invalid hyperlink - Object does not
 * exist." means uploads expired or were consumed: the caller checks them
 * (DEST_EXPIRED), re-uploads the missing ones and comes back.
 */
#ifndef GCDROP_DEST_H
#define GCDROP_DEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrs.h"
#include "casemap.h"
#include "config.h"
#include "pipeline.h"
#include "store.h"

#define DEST_SESSION_MAX 100	/* contract 4.2: files per upload session */

struct dest {
	char *watch;
	enum config_dest kind;
	char *slug;
	bool have_coll;
	struct api_collection coll;
	struct casemap_socket *sockets;	/* the sockets found so far */
	size_t n_sockets;
	char **absent;			/* slugs that are not sockets */
	size_t n_absent;
	bool resolving;			/* a resolve op is out */
	char *fatal;			/* the destination does not exist: every case fails */
	int64_t not_before_ms;		/* a failed lookup: not again before */
	unsigned failures;		/* failed lookups in a row */
	/* Algorithms: the algorithm and its interfaces (inputs as socket slugs). */
	bool have_alg;
	struct api_algorithm alg;
	struct casemap_interface *ifaces;
	size_t n_ifaces;
};

/* A new, empty cache for watch 'w'. NULL when out of memory. */
struct dest *dest_new(const struct config_watch *w);
/* Accepts NULL; returns NULL. */
struct dest *dest_free(struct dest *d);

/*
 * Forget everything looked up (sockets, the collection's absence, the
 * algorithm), so that the next case looks it up again: after a reload, and
 * when the platform refused a job for a reason of its inputs. A resolve op
 * still out is taken when it comes back.
 */
void dest_forget(struct dest *d);

/*
 * The slugs a case of watch 'w' with these top-level candidate slugs needs
 * looked up that are neither known sockets nor known to be absent. Returns an
 * op (PIPELINE_OP_DEST_RESOLVE) in *ret_op, or NULL there when everything is
 * known (or a resolve is already out). Returns 0 or -ENOMEM.
 */
int dest_resolve_op(struct dest *d, const struct config_watch *w, char *const *candidates,
		    size_t n_candidates, struct pipeline_op **ret_op) GC_WUR;

/* Whether everything a case with these candidates needs is known. */
bool dest_ready(const struct dest *d, const struct config_watch *w, char *const *candidates,
		size_t n_candidates);

/*
 * Take a resolve op's result into the cache. Returns API_OK, or the class of
 * the failure (then op->err says more; API_GONE for a missing collection sets
 * d->fatal).
 */
enum api_class dest_on_resolved(struct dest *d, struct pipeline_op *op);

/* The socket known under 'slug', or NULL. */
const struct casemap_socket *dest_socket(const struct dest *d, const char *slug);

/* ---- the import of one case ---- */

enum dest_source {
	DEST_SRC_SESSION,	/* Image, <= DEST_SESSION_MAX files */
	DEST_SRC_USER_UPLOADS,	/* Image, more files */
	DEST_SRC_USER_UPLOAD,	/* File */
	DEST_SRC_VALUE,		/* Value, inline JSON */
};

struct dest_value {
	char *socket;
	enum dest_source src;
	char **upload_urls;		/* the uploads' api_urls */
	size_t n_uploads;
	char *json;			/* DEST_SRC_VALUE */
	char *session_url;		/* DEST_SRC_SESSION, once created */
	char *session_status;
	bool present;			/* the item has this socket's value */
};

enum dest_phase {
	DEST_SESSIONS,
	DEST_ITEM,
	DEST_PATCH,
	DEST_POLL,
	DEST_DONE,
	DEST_FAILED,
};

struct dest_import {
	int64_t case_id;
	struct dest *dest;		/* borrowed */
	char *title;
	struct dest_value *values;
	size_t n_values;
	enum dest_phase phase;
	bool busy;			/* one op at a time */
	bool intent_only;		/* an intent without an answer: find before create */
	bool patch_resumed;		/* a PATCH may have gone out before a crash */
	char *item_pk;
	char *item_url;
	char *item_status;
	int64_t next_poll_ms;
	int64_t poll_delay_ms;
	int64_t poll_base_ms;
	int64_t poll_cap_ms;
	int64_t deadline_ms;		/* values that do not appear by then fail the case */
	int64_t timeout_s;
	size_t poll_index;		/* which session / the item is polled next */
	char *error;			/* DEST_FAILED: why, for the operator */
};

/*
 * Set up the import of case 'case_id' with the values 'values' (taken: the
 * import owns them and their strings afterwards; *values is set to NULL).
 * Reads what the store recorded (sessions, item, intent). Returns 0 or a
 * negative errno.
 */
int dest_import_init(struct dest_import *imp, struct store *store, int64_t case_id,
		     struct dest *dest, const char *title, struct dest_value **values, size_t n,
		     int64_t poll_base_ms, int64_t poll_cap_ms, int64_t timeout_s) GC_WUR;
void dest_import_done(struct dest_import *imp);

/*
 * The next op of the import at 'now_ms', or NULL in *ret_op when there is none
 * now (busy, waiting to poll, finished). Intents are recorded in the store here
 * (inside the caller's transaction) before the op is handed out. Returns 0 or
 * a negative errno.
 */
int dest_import_next(struct dest_import *imp, struct store *store, int64_t now_ms,
		     struct pipeline_op **ret_op) GC_WUR;

/* When the import next wants to run (a poll); INT64_MAX when it waits for nothing. */
int64_t dest_import_wake(const struct dest_import *imp);

enum dest_event {
	DEST_PROGRESS,
	DEST_FINISHED,		/* every value is on the item */
	DEST_FAILURE,		/* imp->error says why; the case fails */
	DEST_ERROR,		/* the op failed: the caller decides on op->err.cls */
	DEST_EXPIRED,		/* uploads are gone: check and re-send them */
};

enum dest_event dest_import_on_done(struct dest_import *imp, struct store *store,
				    struct pipeline_op *op);

/* Free an array of values. Accepts NULL. */
void dest_values_free(struct dest_value *v, size_t n);

/* Run a dest op on a worker. */
void dest_op_run(struct api *api, struct pipeline_op *op);

#endif
