/*
 * daemon.c: `gcdrop run`, the main loop, and the watcher's decisions.
 *
 * DESIGN
 * Start-up order: options; block SIGTERM, SIGINT and SIGHUP (before any thread
 * exists, so every later thread inherits the mask) and ignore SIGPIPE; logging;
 * the configuration (exit 78 when bad); the queue (exit 1 when it cannot be
 * opened); the single-instance lock (flock on STATE_DIR/gcdrop.lock, exit 1 when
 * another daemon holds it); leases of a previous life are released; the watches
 * are recorded in the queue, set, and every watch folder is rescanned, so that
 * nothing dropped while the daemon was down is missed; READY=1.
 *
 * One thread, one epoll loop. struct daemon holds the configuration, the queue,
 * the watcher (inotify), the settling cases and a small table of epoll handlers
 * (fd + callback): the inotify fd, a signalfd (SIGTERM/SIGINT stop, SIGHUP
 * reloads) and one timerfd. The timerfd is always armed to the earliest of: the
 * first settle deadline, the next periodic scan (watch folders on a network
 * filesystem, past the watch limit, or missing), the 1-second tick (operator
 * requests from the queue, the watchdog, the STATUS= line) and any wake-up asked
 * for with daemon_wake_at(). There is no polling loop and no sleep: every turn
 * handles what epoll reported, then everything that is due, then calls
 * daemon_pipeline_tick() once, the hook where the upload pool and the job poller
 * plug in (they add their own fds with daemon_add_handler()).
 *
 * A case's life here (spec section 2 steps 1-3): an event (or a rescan, or an
 * enqueue request) makes it known: "case 'x' detected, settling" is logged, its
 * directories are watched, and settle (a pure state machine, see settle.h) says
 * when to walk it with scan_case() and when it is ready. A ready case goes into
 * the queue with its files and fingerprint, in state queued; a case that cannot
 * settle or cannot be read goes in as failed with the reason, so the operator
 * sees it in `gcdrop status`. Either way its watches are released. Settling cases
 * live in memory: after a restart the start-up rescan finds them again. They
 * are also listed in the queue's settling table, for `gcdrop status` only:
 * cleared at start (before the rescan) and at a clean stop, written once per
 * loop turn in the turn's transaction (settling_flush()).
 *
 * `gcdrop hold --all` is a setting in the queue (store_hold_all_get()), written
 * by the CLI with its request: read at start and at every 1-second tick, it
 * holds every case queued while it is set, across restarts.
 *
 * Rescans (start-up, inotify queue overflow, a watch folder re-appearing, and
 * every scan_interval for polled folders) reconcile the folder with the queue: a
 * child that is not settling is walked once; if the queue already holds its
 * (watch, name, fingerprint) it is left alone silently (queued cases are not
 * disturbed, and a restart does not log every kept case again); otherwise it
 * starts settling. A settling case whose folder entry vanished is forgotten.
 * Children found already queued are remembered with their lstat identity
 * (device, inode, mtime, ctime), so that the next rescan of the folder skips
 * them while that is unchanged: polled folders are rescanned every
 * scan_interval and may keep thousands of finished cases.
 *
 * De-duplication is the queue's: store_case_insert() refuses a known (watch,
 * name, fingerprint) with -EEXIST, logged once at NOTICE. The same name with
 * another fingerprint is a new case.
 *
 * The service manager (spec section 6; every message goes through notify.h, a
 * no-op without NOTIFY_SOCKET): READY=1 once the queue is open, the leases of a
 * previous life are released, the watches are set, the folders rescanned and
 * the workers started. Every 1-second tick the disk guard (diskguard.h)
 * measures state_dir and every results_dir: below min_free_space the pipeline
 * takes no new case (pipeline_set_intake(), what is in flight goes on) until
 * space returns; settling cases are still queued, which costs a row, not a
 * file. The tick also samples the bytes sent for the rate, and at least every
 * DAEMON_STATUS_MS the STATUS= line (progress.h: counts per state with the
 * settling cases, bytes left, rate) is sent when it changed. The watchdog is
 * pinged from this loop only, so a hung loop stops the pings, and only while
 * no worker has gone without progress for the stall limit (a part upload
 * counts only while its bytes move): a hung worker stops them too, and
 * systemd restarts the service; they resume when it moves again. SIGHUP:
 * RELOADING=1, the new configuration parsed and validated aside, watches
 * diffed, the pipeline and the disk guard given the new configuration,
 * READY=1; a bad file keeps the old configuration. SIGTERM/SIGINT: STOPPING=1
 * first, then the pipeline stops taking work and lets transfers in flight
 * finish until DAEMON_STOP_GRACE_MS after the signal, cuts the rest (a cut
 * part is not recorded, so it resumes after the next start) and the daemon
 * exits 0, well within the unit's TimeoutStopSec=10.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "diskguard.h"
#include "http.h"
#include "log.h"
#include "notify.h"
#include "pipeline.h"
#include "progress.h"
#include "scan.h"
#include "settle.h"
#include "sha256.h"
#include "store.h"
#include "watch.h"

#define DAEMON_MAX_HANDLERS 16
#define DAEMON_TICK_MS 1000
#define DAEMON_WALKS_PER_TURN 2000	/* settle walks per loop turn, so signals stay prompt */
#define DAEMON_REQUESTS_PER_TICK 1000
#define DAEMON_INOTIFY_BYTES_PER_TURN (4 * 1024 * 1024)
#define DAEMON_RETRY_STORE_MS 30000	/* a queue write failed: try the case again after this */
#define DAEMON_LOCK_NAME "gcdrop.lock"
#define DAEMON_STATUS_MS 2000		/* the STATUS= line at least this often */
/*
 * A busy worker without progress for this long counts as hung and stops the
 * watchdog pings. Longer than any legitimate silence: an API call may take its
 * connect timeout plus its 120 s limit, and completing an upload hashes the
 * whole file first. GCDROP_STALL_LIMIT_MS overrides it (tests).
 */
#define DAEMON_STALL_LIMIT_MS (5 * 60 * 1000)
/* After SIGTERM, transfers in flight may finish for this long, then are cut. */
#define DAEMON_STOP_GRACE_MS 6000
/* MESSAGE_ID of "a worker is stalled" / "moves again" (belongs in log.h with the others). */
#define DAEMON_MID_STALL "e93889fd6aa94e43a0e853be1bdb0de5"

static const char daemon_usage[] = "usage: gcdrop run [-c FILE]\n";

struct daemon_handler {
	int fd;
	int (*fn)(struct daemon *d, void *userdata);
	void *userdata;
};

/*
 * A child of a watch folder that a rescan found already queued (or failed), with
 * what lstat said about it then: while that stays the same, later rescans skip
 * it instead of walking it again (polled folders are rescanned every
 * scan_interval, and a folder may keep thousands of finished cases).
 */
struct known {
	char *name;
	dev_t dev;
	ino_t ino;
	struct timespec mtim;
	struct timespec ctim;
};

/* One configured watch at run time. */
struct dwatch {
	unsigned id;			/* stable across reloads; the watcher's root id */
	const struct config_watch *cfg;	/* into d->cfg; re-pointed on reload */
	bool watched;			/* the folder is watched with inotify */
	bool polled;			/* network filesystem or watch limit: periodic scans */
	bool missing;			/* absent or unusable: retried every scan_interval */
	bool said_missing;
	bool said_polled;
	int64_t next_scan;		/* when polled or missing */
	struct known *known;		/* sorted by name, from the last rescan */
	size_t n_known;
};

/* The daemon's side of one settling case (the settle case's userdata). */
struct dcase {
	unsigned watch_id;
	char *dir;			/* the folder holding the case */
	char *name;
	char *quoted;			/* the name quoted for messages */
	struct settle_case *sc;
	struct watch_case *wc;
	struct scan_result prev;	/* the last successful walk */
	bool have_prev;
	bool polled;			/* no inotify for this case */
	bool marker_ok;			/* may use the ready marker (a directory, not enqueued) */
	char *last_error;		/* the message of the last failed walk */
	int64_t since;			/* unix seconds: when it started settling */
	bool recorded;			/* its row is in the queue's settling table */
	struct dcase *pprev, *pnext;	/* in d->pending while its row is not written */
};

/* A row of the settling table to delete at the next flush. */
struct settling_gone {
	char *watch;
	char *name;
};

struct daemon {
	struct pipeline *pipeline;	/* archive and reader-study cases (pipeline.h) */
	const char *config_path;
	struct config *cfg;
	struct store *store;
	struct watch *watch;
	struct settle *settle;
	struct dwatch *watches;
	size_t n_watches;
	unsigned next_id;
	int epfd;
	int sfd;
	int tfd;
	int lockfd;
	struct daemon_handler handlers[DAEMON_MAX_HANDLERS];
	size_t n_handlers;
	bool stop;
	int64_t stop_ms;		/* when SIGTERM/SIGINT arrived */
	bool reload;
	bool rescan_all;
	bool hold_all;			/* `gcdrop hold --all` until `release --all` (in the queue) */
	struct dcase *pending;		/* settling cases whose row is not written yet */
	struct settling_gone *gone;	/* rows to delete, written with the next flush */
	size_t n_gone, cap_gone;
	bool said_limit;
	bool status_dirty;		/* refresh the STATUS= line at the next tick */
	int64_t next_tick;
	int64_t next_status;
	int64_t wake_at;		/* daemon_wake_at(), SETTLE_NEVER when none */
	int64_t armed;
	struct diskguard *guard;	/* min_free_space */
	bool may_start;			/* the guard's verdict at the last tick */
	struct progress prog;		/* bytes sent, for the rate */
	char status[PROGRESS_LINE_MAX];	/* the STATUS= line last sent */
	struct notify_watchdog wd;
	int64_t stall_limit_ms;
	bool stalled;			/* a worker is past the stall limit */
};

static void daemon_pipeline_tick(struct daemon *d);

/* ---- small helpers ---- */

int64_t
daemon_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const struct config *
daemon_config(const struct daemon *d)
{
	return d->cfg;
}

struct store *
daemon_store(const struct daemon *d)
{
	return d->store;
}

void
daemon_wake_at(struct daemon *d, int64_t when_ms)
{
	if (when_ms < d->wake_at)
		d->wake_at = when_ms;
}

static char *
path_join(const char *dir, const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

static struct dwatch *
dwatch_by_id(struct daemon *d, unsigned id)
{
	for (size_t i = 0; i < d->n_watches; i++)
		if (d->watches[i].id == id)
			return &d->watches[i];
	return NULL;
}

static struct dwatch *
dwatch_by_name(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->n_watches; i++)
		if (strcmp(d->watches[i].cfg->name, name) == 0)
			return &d->watches[i];
	return NULL;
}

static struct log_ctx
case_ctx(const struct dwatch *dw, const char *name, const char *state, const char *mid)
{
	struct log_ctx ctx = LOG_CTX_INIT;

	ctx.watch = dw != NULL ? dw->cfg->name : NULL;
	ctx.case_name = name;
	ctx.state = state;
	ctx.message_id = mid;
	return ctx;
}

/* Context of an event about a watch (or about the daemon, when watch is NULL). */
static struct log_ctx
event_ctx(const char *watch, const char *mid)
{
	struct log_ctx ctx = LOG_CTX_INIT;

	ctx.watch = watch;
	ctx.message_id = mid;
	return ctx;
}

static struct log_ctx
watch_ctx(const struct dwatch *dw)
{
	return event_ctx(dw->cfg->name, LOG_MID_WATCH);
}

/*
 * Settle parameters of a case of watch 'cw'. Only a directory can hold a ready
 * marker, and an enqueued case is ready by request, so 'marker_ok' is false for
 * those and they settle on quiet time.
 */
static struct settle_params
settle_params_for(const struct config_watch *cw, bool marker_ok, bool polled)
{
	struct settle_params p = {
		.settle_ms = (int64_t)cw->settle_seconds * 1000,
		.max_settle_ms = (int64_t)cw->max_settle_seconds * 1000,
		.poll_ms = polled ? (int64_t)cw->scan_interval * 1000 : 0,
		.marker = cw->ready_marker != NULL && marker_ok,
	};

	return p;
}

/* ---- settling cases ---- */

static struct dcase *
dcase_free(struct dcase *dc)
{
	if (dc == NULL)
		return NULL;
	scan_result_clear(&dc->prev);
	free(dc->dir);
	free(dc->name);
	free(dc->quoted);
	free(dc->last_error);
	free(dc);
	return NULL;
}

/*
 * The settling table (store_settling_*): `gcdrop status` shows the cases settling
 * here from it. Its writes are not made where a case starts or stops settling
 * (inotify events arrive outside any transaction, and 10,000 cases dropped at
 * once would be 10,000 commits) but collected and written by settling_flush(),
 * in the loop turn's one transaction: a case that starts and ends settling
 * within one turn never gets a row, and the row of a case that is queued goes
 * away in the transaction that queues it.
 */
static void
pending_unlink(struct daemon *d, struct dcase *dc)
{
	if (dc->pprev != NULL)
		dc->pprev->pnext = dc->pnext;
	else if (d->pending == dc)
		d->pending = dc->pnext;
	if (dc->pnext != NULL)
		dc->pnext->pprev = dc->pprev;
	dc->pprev = dc->pnext = NULL;
}

static void
pending_add(struct daemon *d, struct dcase *dc)
{
	dc->pprev = NULL;
	dc->pnext = d->pending;
	if (d->pending != NULL)
		d->pending->pprev = dc;
	d->pending = dc;
}

/* A settling case goes away: unwritten, forget its row; written, delete it at the flush. */
static void
settling_drop(struct daemon *d, struct dcase *dc)
{
	struct dwatch *dw = dwatch_by_id(d, dc->watch_id);
	struct settling_gone *g;

	if (!dc->recorded) {
		pending_unlink(d, dc);
		return;
	}
	if (dw == NULL || dw->cfg == NULL)
		return;	/* the watch is gone: the flush cannot name it; cleared at the next start */
	if (d->n_gone == d->cap_gone) {
		size_t cap = d->cap_gone ? d->cap_gone * 2 : 64;

		g = realloc(d->gone, cap * sizeof(*g));
		if (g == NULL)
			return;
		d->gone = g;
		d->cap_gone = cap;
	}
	g = &d->gone[d->n_gone];
	g->watch = strdup(dw->cfg->name);
	g->name = strdup(dc->name);
	if (g->watch == NULL || g->name == NULL) {
		free(g->watch);
		free(g->name);
		return;
	}
	d->n_gone++;
}

static void
settling_gone_free(struct daemon *d)
{
	for (size_t i = 0; i < d->n_gone; i++) {
		free(d->gone[i].watch);
		free(d->gone[i].name);
	}
	d->n_gone = 0;
}

/*
 * Write what changed in the settling table since the last flush: deletions
 * first (a case forgotten and detected again under the same name keeps its new
 * row). Call it inside the turn's transaction. A failed write costs only what
 * `gcdrop status` shows, never a case.
 */
static void
settling_flush(struct daemon *d)
{
	int r = 0;

	for (size_t i = 0; i < d->n_gone && r == 0; i++)
		r = store_settling_remove(d->store, d->gone[i].watch, d->gone[i].name);
	settling_gone_free(d);
	while (d->pending != NULL && r == 0) {
		struct dcase *dc = d->pending;
		struct dwatch *dw = dwatch_by_id(d, dc->watch_id);

		pending_unlink(d, dc);
		if (dw == NULL || dw->cfg == NULL)
			continue;
		r = store_settling_add(d->store, dw->cfg->name, dc->name, dc->since);
		dc->recorded = r == 0;
	}
	while (d->pending != NULL)
		pending_unlink(d, d->pending);
	if (r < 0)
		log_debug("recording the settling cases for gcdrop status failed: %s",
			  store_errmsg(d->store));
}

/* Stop settling a case: release its watches and forget it. */
static void
case_forget(struct daemon *d, struct dcase *dc)
{
	settling_drop(d, dc);
	dc->wc = watch_case_remove(d->watch, dc->wc);
	settle_remove(d->settle, dc->sc);
	dcase_free(dc);
}

static void
forget_cb(struct settle_case *sc, void *ud)
{
	case_forget(ud, settle_case_userdata(sc));
}

/* Switch a case to periodic walks (watch limit, or no inotify for its folder). */
static void
case_poll(struct daemon *d, struct dcase *dc, const struct dwatch *dw)
{
	struct settle_params p;

	if (dc->polled)
		return;
	dc->polled = true;
	if (!d->said_limit && dw->watched) {
		d->said_limit = true;
		struct log_ctx ctx = watch_ctx(dw);

		log_event(LOG_WARNING, &ctx,
			  "the inotify watch limit is reached; cases that cannot be watched are "
			  "scanned every scan_interval instead (raise it with "
			  "'sysctl fs.inotify.max_user_watches=N')");
	}
	p = settle_params_for(dw->cfg, dc->marker_ok, true);
	settle_set_params(d->settle, dc->sc, &p);
}

enum detect_origin {
	DETECT_EVENT,		/* inotify said so */
	DETECT_RESCAN,		/* found by a rescan: leave it alone if already queued */
	DETECT_ENQUEUE,		/* `gcdrop enqueue` */
	DETECT_RETRY,		/* `gcdrop retry` of a case that failed while settling */
};

/* The fingerprint recorded for a case that failed without a successful walk. */
static void
error_fingerprint(const char *msg, char ret_hex[SHA256_HEX_SIZE])
{
	struct sha256 ctx;
	uint8_t digest[SHA256_DIGEST_SIZE];

	sha256_init(&ctx);
	sha256_update(&ctx, "gcdrop-failed\n", 14);
	sha256_update(&ctx, msg, strlen(msg));
	sha256_final(&ctx, digest);
	sha256_to_hex(digest, ret_hex);
}

/*
 * For a rescan: is this child already in the queue as it is now? One walk; a
 * case that fails to walk the same way as recorded counts as known too.
 */
static bool
case_known(struct daemon *d, const struct dwatch *dw, const char *dir, const char *name)
{
	struct scan_opts opts = { .ready_marker = dw->cfg->ready_marker };
	struct scan_result res = { 0 };
	char fp[SHA256_HEX_SIZE];
	char *msg = NULL;
	int64_t id;
	int r;

	r = scan_case(AT_FDCWD, dir, name, &opts, &res, &msg);
	if (r == -ENOENT) {
		free(msg);
		return true;	/* gone already: nothing to do */
	}
	if (r < 0) {
		error_fingerprint(msg != NULL ? msg : strerror(-r), fp);
		free(msg);
	} else {
		memcpy(fp, res.fingerprint, sizeof(fp));
		scan_result_clear(&res);
	}
	return store_case_find(d->store, dw->cfg->name, name, fp, &id) == 0;
}

/*
 * Start settling case 'name' of watch 'dw', found in folder 'dir' (the watch
 * folder, except for enqueued paths); its first walk is due at once and made by
 * daemon_due(), which bounds the walks per loop turn. Returns true when the case
 * started settling (or already was: then its quiet period restarts), false when
 * it is already queued as it is (rescans only), gone, or on out-of-memory.
 */
static bool
case_detect(struct daemon *d, struct dwatch *dw, const char *dir, const char *name,
	    enum detect_origin origin)
{
	bool in_watch = strcmp(dir, dw->cfg->path) == 0;
	struct settle_params p;
	struct settle_case *sc;
	struct dcase *dc;
	struct stat st;
	char *path;
	int64_t now = daemon_now_ms();
	int r;

	sc = settle_find(d->settle, dw->id, name);
	if (sc != NULL) {
		settle_activity(d->settle, sc, now);
		return true;
	}
	if (scan_name_ignored(name))
		return false;
	path = path_join(dir, name);
	if (path == NULL)
		return false;
	r = lstat(path, &st);
	free(path);
	if (r < 0)
		return false;
	if (origin == DETECT_RESCAN && case_known(d, dw, dir, name))
		return false;
	dc = calloc(1, sizeof(*dc));
	if (dc == NULL)
		return false;
	dc->watch_id = dw->id;
	dc->dir = strdup(dir);
	dc->name = strdup(name);
	dc->quoted = scan_quote(name, strlen(name));
	if (dc->dir == NULL || dc->name == NULL || dc->quoted == NULL) {
		dcase_free(dc);
		return false;
	}
	dc->polled = dw->polled || !dw->watched || !in_watch;
	dc->marker_ok = S_ISDIR(st.st_mode) && origin != DETECT_ENQUEUE;
	p = settle_params_for(dw->cfg, dc->marker_ok, dc->polled);
	dc->sc = settle_add(d->settle, dw->id, name, &p, now, dc);
	if (dc->sc == NULL) {
		dcase_free(dc);
		return false;
	}
	dc->since = (int64_t)time(NULL);
	pending_add(d, dc);
	{
		struct log_ctx ctx = case_ctx(dw, name, "settling", LOG_MID_CASE_STATE);

		log_event(LOG_NOTICE, &ctx, "case '%s' detected%s, settling", dc->quoted,
			  origin == DETECT_ENQUEUE ? " (enqueued)"
			  : origin == DETECT_RETRY ? " (retry)"
			  : origin == DETECT_RESCAN ? " by a rescan" : "");
	}
	if (!dc->polled) {
		r = watch_case_add(d->watch, dw->id, dir, name, dc, &dc->wc);
		if (r == -ENOSPC) {
			dc->polled = false;	/* let case_poll switch it and say so */
			case_poll(d, dc, dw);
		} else if (r < 0) {
			log_debug("case '%s': cannot watch it: %s", dc->quoted, strerror(-r));
		}
	}
	return true;
}

/* Record a case that cannot be queued as failed, with its reason. */
static void
case_fail(struct daemon *d, struct dcase *dc, const char *msg)
{
	struct dwatch *dw = dwatch_by_id(d, dc->watch_id);
	struct store_case_new nc = { 0 };
	char fp[SHA256_HEX_SIZE];
	char *path = path_join(dc->dir, dc->name);
	int64_t id = 0;
	int r;

	if (dc->have_prev)
		memcpy(fp, dc->prev.fingerprint, sizeof(fp));
	else
		error_fingerprint(msg, fp);
	nc.watch = dw->cfg->name;
	nc.name = dc->name;
	nc.path = path != NULL ? path : dc->dir;
	nc.fingerprint = fp;
	nc.state = STORE_FAILED;
	nc.error = msg;
	r = store_case_insert(d->store, &nc, &id);
	if (r == -EEXIST) {
		struct log_ctx ctx = case_ctx(dw, dc->name, "failed", LOG_MID_CASE_DUPLICATE);

		log_event(LOG_NOTICE, &ctx,
			  "case '%s' is already in the queue as failed (case %" PRId64 "), "
			  "not recorded again: %s", dc->quoted, id, msg);
	} else if (r < 0) {
		struct log_ctx ctx = case_ctx(dw, dc->name, "failed", LOG_MID_CASE_FAILED);

		log_event(LOG_ERR, &ctx,
		          "case '%s' failed: %s (and recording it in the queue failed: %s)",
		          dc->quoted, msg, store_errmsg(d->store));
	} else {
		struct log_ctx ctx = case_ctx(dw, dc->name, "failed", LOG_MID_CASE_FAILED);

		log_event(LOG_ERR, &ctx, "case '%s' failed: %s", dc->quoted, msg);
		d->status_dirty = true;
	}
	free(path);
	case_forget(d, dc);
}

static void
case_fail_reason(struct daemon *d, struct dcase *dc)
{
	struct dwatch *dw = dwatch_by_id(d, dc->watch_id);
	const struct config_watch *cw = dw->cfg;
	char *msg = NULL;
	int r = -1;

	switch (settle_case_reason(dc->sc)) {
	case SETTLE_REASON_WALK_ERROR:
		r = asprintf(&msg, "%s",
		             dc->last_error != NULL ? dc->last_error : "the case cannot be read");
		break;
	case SETTLE_REASON_EMPTY:
		r = asprintf(&msg, "the case folder is still empty after %d s (max_settle_seconds)",
			     cw->max_settle_seconds);
		break;
	case SETTLE_REASON_NO_MARKER:
		r = asprintf(
		    &msg, "the ready marker '%s' did not appear within %d s (max_settle_seconds)",
		    cw->ready_marker, cw->max_settle_seconds);
		break;
	case SETTLE_REASON_MARKER_EMPTY:
		r = asprintf(&msg, "the ready marker '%s' is present but the case has no files",
			     cw->ready_marker);
		break;
	case SETTLE_REASON_CHANGING:
	case SETTLE_REASON_NONE:
		r = asprintf(&msg, "the case is still changing after %d s (max_settle_seconds)",
			     cw->max_settle_seconds);
		break;
	}
	case_fail(d, dc, r >= 0 ? msg : "the case did not settle");
	free(msg);
}

/* A ready case goes into the queue. */
static void
case_queue(struct daemon *d, struct dcase *dc, int64_t now)
{
	struct dwatch *dw = dwatch_by_id(d, dc->watch_id);
	struct store_case_new nc = { 0 };
	struct store_file *files;
	char *path = path_join(dc->dir, dc->name);
	int64_t id = 0;
	int r;

	files = calloc(dc->prev.n + 1, sizeof(*files));
	if (files == NULL || path == NULL) {
		free(files);
		free(path);
		settle_retry(d->settle, dc->sc, now + DAEMON_RETRY_STORE_MS);
		return;
	}
	for (size_t i = 0; i < dc->prev.n; i++) {
		files[i].relpath = dc->prev.entries[i].relpath;
		files[i].size = dc->prev.entries[i].size;
		files[i].mtime_ns = dc->prev.entries[i].mtime_ns;
	}
	nc.watch = dw->cfg->name;
	nc.name = dc->name;
	nc.path = path;
	nc.fingerprint = dc->prev.fingerprint;
	nc.state = STORE_QUEUED;
	nc.files = files;
	nc.n_files = dc->prev.n;
	r = store_case_insert(d->store, &nc, &id);
	free(files);
	free(path);
	if (r == -EEXIST) {
		struct log_ctx ctx = case_ctx(dw, dc->name, NULL, LOG_MID_CASE_DUPLICATE);

		log_event(LOG_NOTICE, &ctx,
			  "case '%s' is already in the queue with the same content (case %" PRId64
			  "), not queued again", dc->quoted, id);
	} else if (r < 0) {
		struct log_ctx ctx = case_ctx(dw, dc->name, "settling", LOG_MID_CASE_STATE);

		log_event(LOG_WARNING, &ctx,
		          "case '%s': recording it in the queue failed: %s, will retry in %ds",
		          dc->quoted, store_errmsg(d->store), DAEMON_RETRY_STORE_MS / 1000);
		settle_retry(d->settle, dc->sc, now + DAEMON_RETRY_STORE_MS);
		return;
	} else {
		struct log_ctx ctx = case_ctx(dw, dc->name, "queued", LOG_MID_CASE_STATE);

		for (size_t i = 0; i < dc->prev.n_warnings; i++) {
			struct log_ctx wctx = case_ctx(dw, dc->name, NULL, LOG_MID_CASE_STATE);

			log_event(LOG_WARNING, &wctx, "case '%s': %s, ignoring", dc->quoted,
				  dc->prev.warnings[i]);
		}
		ctx.bytes = dc->prev.total_bytes;
		if (d->pipeline != NULL)
			pipeline_kick(d->pipeline);
		log_event(LOG_NOTICE, &ctx, "case '%s' queued: %zu file%s, %" PRId64 " bytes",
			  dc->quoted, dc->prev.n, dc->prev.n == 1 ? "" : "s", dc->prev.total_bytes);
		if (d->hold_all && store_case_set_held(d->store, id, true) < 0)
			log_warning("case '%s': holding it failed: %s", dc->quoted,
			            store_errmsg(d->store));
		d->status_dirty = true;
	}
	case_forget(d, dc);
}

/* Walk a case whose walk is due, and act on settle's verdict. */
static void
case_walk(struct daemon *d, struct dcase *dc, int64_t now)
{
	struct dwatch *dw = dwatch_by_id(d, dc->watch_id);
	struct scan_opts opts = { .ready_marker = dw->cfg->ready_marker };
	struct scan_result res = { 0 };
	struct settle_walk sw = { 0 };
	enum settle_verdict v;
	char *msg = NULL;
	int r;

	r = scan_case(AT_FDCWD, dc->dir, dc->name, &opts, &res, &msg);
	if (r == -ENOENT) {
		struct log_ctx ctx = case_ctx(dw, dc->name, NULL, LOG_MID_CASE_STATE);

		log_event(LOG_INFO, &ctx, "case '%s' vanished before it was queued, forgetting it",
			  dc->quoted);
		free(msg);
		case_forget(d, dc);
		return;
	}
	if (r < 0) {
		sw.error = r;
		free(dc->last_error);
		dc->last_error = msg != NULL ? msg : strdup(strerror(-r));
		msg = NULL;
		scan_result_clear(&dc->prev);
		dc->have_prev = false;
	} else {
		sw.n_files = res.n;
		sw.marker = res.marker_present;
		sw.changed = res.changed;
		sw.same = dc->have_prev && scan_same(&dc->prev, &res);
		scan_result_clear(&dc->prev);
		dc->prev = res;
		dc->have_prev = true;
	}
	free(msg);
	v = settle_walked(d->settle, dc->sc, now, &sw);
	switch (v) {
	case SETTLE_READY:
		case_queue(d, dc, now);
		break;
	case SETTLE_FAIL:
		case_fail_reason(d, dc);
		break;
	case SETTLE_WAIT:
	case SETTLE_WALK:
		break;
	}
}

/* ---- watch folders ---- */

/*
 * Reconcile one watch folder with what is settling: children not settling are
 * detected (unless already queued as they are), settling cases whose entry
 * vanished are forgotten. 'activity': events may have been lost (overflow), so
 * settling cases restart their quiet period.
 */
struct rescan_ctx {
	struct daemon *d;
	char **names;
	size_t n;
	bool activity;
	int64_t now;
};

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
rescan_settling_cb(struct settle_case *sc, void *ud)
{
	struct rescan_ctx *rc = ud;
	struct dcase *dc = settle_case_userdata(sc);
	const char *key = dc->name;
	struct dwatch *dw = dwatch_by_id(rc->d, dc->watch_id);

	if (strcmp(dc->dir, dw->cfg->path) != 0)
		return;	/* enqueued from elsewhere: not in this folder */
	if (bsearch(&key, rc->names, rc->n, sizeof(*rc->names), name_cmp) == NULL) {
		struct log_ctx ctx = case_ctx(dw, dc->name, NULL, LOG_MID_CASE_STATE);

		log_event(LOG_INFO, &ctx, "case '%s' vanished before it was queued, forgetting it",
			  dc->quoted);
		case_forget(rc->d, dc);
	} else if (rc->activity) {
		settle_activity(rc->d->settle, sc, rc->now);
	}
}

static void
known_free(struct known *k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(k[i].name);
	free(k);
}

static int
known_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct known *)elem)->name);
}

static bool
known_same(const struct known *k, const struct stat *st)
{
	return k->dev == st->st_dev && k->ino == st->st_ino &&
	       k->mtim.tv_sec == st->st_mtim.tv_sec && k->mtim.tv_nsec == st->st_mtim.tv_nsec &&
	       k->ctim.tv_sec == st->st_ctim.tv_sec && k->ctim.tv_nsec == st->st_ctim.tv_nsec;
}

static int
rescan_watch(struct daemon *d, struct dwatch *dw, bool activity)
{
	struct rescan_ctx rc = { .d = d, .activity = activity, .now = daemon_now_ms() };
	struct known *nk;
	size_t n_nk = 0;
	int r;

	r = scan_list_cases(AT_FDCWD, dw->cfg->path, &rc.names, &rc.n);
	if (r < 0)
		return r;
	settle_foreach(d->settle, dw->id, rescan_settling_cb, &rc);
	nk = calloc(rc.n + 1, sizeof(*nk));
	for (size_t i = 0; i < rc.n; i++) {
		const struct known *k;
		struct stat st;
		char *path;

		if (settle_find(d->settle, dw->id, rc.names[i]) != NULL)
			continue;
		path = path_join(dw->cfg->path, rc.names[i]);
		r = path != NULL ? lstat(path, &st) : -1;
		free(path);
		if (r < 0)
			continue;
		k = dw->known != NULL ? bsearch(rc.names[i], dw->known, dw->n_known, sizeof(*k),
						known_cmp)
				      : NULL;
		if ((k == NULL || !known_same(k, &st)) &&
		    case_detect(d, dw, dw->cfg->path, rc.names[i], DETECT_RESCAN))
			continue;
		/* Already queued as it is: remember it (names come sorted). */
		if (nk != NULL) {
			nk[n_nk].name = rc.names[i];
			rc.names[i] = NULL;
			nk[n_nk].dev = st.st_dev;
			nk[n_nk].ino = st.st_ino;
			nk[n_nk].mtim = st.st_mtim;
			nk[n_nk].ctim = st.st_ctim;
			n_nk++;
		}
	}
	known_free(dw->known, dw->n_known);
	dw->known = nk;
	dw->n_known = n_nk;
	scan_names_free(rc.names, rc.n);
	return 0;
}

/*
 * Start watching a watch folder: inotify when it is local, periodic scans on a
 * network filesystem or past the watch limit. A missing folder is an error in
 * the log naming the watch and the path, and is retried every scan_interval.
 * Returns true when the folder is usable (watched or polled).
 */
static bool
dwatch_start(struct daemon *d, struct dwatch *dw)
{
	const struct config_watch *cw = dw->cfg;
	struct log_ctx ctx = watch_ctx(dw);
	enum watch_fs fs;
	struct stat st;
	int r;

	dw->next_scan = daemon_now_ms() + (int64_t)cw->scan_interval * 1000;
	r = stat(cw->path, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	if (r == 0)
		r = watch_fs_kind(cw->path, &fs);
	if (r < 0) {
		if (!dw->said_missing)
			log_event(
			    LOG_ERR, &ctx,
			    "watch '%s': folder '%s' is not usable: %s; checking again every %d s",
			    cw->name, cw->path, strerror(-r), cw->scan_interval);
		dw->said_missing = true;
		dw->missing = true;
		return false;
	}
	dw->missing = false;
	dw->polled = false;
	if (fs == WATCH_FS_NETWORK) {
		if (!dw->said_polled)
			log_event(
			    LOG_WARNING, &ctx,
			    "watch '%s': folder '%s' is on a network filesystem, where inotify "
			    "misses other hosts' writes; scanning it every %d s instead",
			    cw->name, cw->path, cw->scan_interval);
		dw->said_polled = true;
		dw->polled = true;
	} else {
		r = watch_root_add(d->watch, dw->id, cw->path, cw->ready_marker);
		if (r == -ENOSPC) {
			if (!dw->said_polled)
				log_event(
				    LOG_WARNING, &ctx,
				    "watch '%s': the inotify watch limit is reached; scanning '%s' "
				    "every %d s instead (raise it with "
				    "'sysctl fs.inotify.max_user_watches=N')",
				    cw->name, cw->path, cw->scan_interval);
			dw->said_polled = true;
			dw->polled = true;
		} else if (r < 0) {
			if (!dw->said_missing)
				log_event(LOG_ERR, &ctx,
				          "watch '%s': cannot watch folder '%s': %s; trying again "
				          "every %d s",
				          cw->name, cw->path, strerror(-r), cw->scan_interval);
			dw->said_missing = true;
			dw->missing = true;
			return false;
		}
		dw->watched = r == 0;
	}
	if (dw->said_missing) {
		log_event(LOG_NOTICE, &ctx, "watch '%s': folder '%s' is back, watching it",
		          cw->name, cw->path);
		dw->said_missing = false;
	}
	return true;
}

static void
dwatch_stop(struct daemon *d, struct dwatch *dw)
{
	settle_foreach(d->settle, dw->id, forget_cb, d);
	watch_root_remove(d->watch, dw->id);
	known_free(dw->known, dw->n_known);
	dw->known = NULL;
	dw->n_known = 0;
	dw->watched = false;
}

static void
dwatch_lost(struct daemon *d, struct dwatch *dw)
{
	struct log_ctx ctx = watch_ctx(dw);

	if (dw->missing)
		return;
	log_event(LOG_ERR, &ctx,
		  "watch '%s': folder '%s' was deleted or moved away; checking for it every %d s",
		  dw->cfg->name, dw->cfg->path, dw->cfg->scan_interval);
	dwatch_stop(d, dw);
	dw->said_missing = true;
	dw->missing = true;
	/* It may be back already (rm -rf and mkdir): look again at the next tick. */
	dw->next_scan = daemon_now_ms() + DAEMON_TICK_MS;
}

static void
dwatch_periodic(struct daemon *d, struct dwatch *dw, int64_t now)
{
	int r;

	if ((!dw->missing && !dw->polled) || now < dw->next_scan)
		return;
	dw->next_scan = now + (int64_t)dw->cfg->scan_interval * 1000;
	if (dw->missing) {
		if (!dwatch_start(d, dw))
			return;
	}
	r = rescan_watch(d, dw, false);
	if (r < 0 && r != -ENOENT)
		log_debug("watch '%s': rescan failed: %s", dw->cfg->name, strerror(-r));
	if (r == -ENOENT)
		dwatch_lost(d, dw);
}

/* ---- inotify ---- */

static void
on_watch_event(const struct watch_event *ev, void *ud)
{
	struct daemon *d = ud;
	struct dwatch *dw = ev->kind == WATCH_EV_OVERFLOW ? NULL : dwatch_by_id(d, ev->root);
	int64_t now = daemon_now_ms();
	struct settle_case *sc;
	struct dcase *dc;

	switch (ev->kind) {
	case WATCH_EV_CHILD:
		if (dw == NULL)
			return;
		(void)case_detect(d, dw, dw->cfg->path, ev->case_name, DETECT_EVENT);
		break;
	case WATCH_EV_CHILD_GONE:
		if (dw == NULL)
			return;
		sc = settle_find(d->settle, dw->id, ev->case_name);
		if (sc == NULL)
			return;
		dc = settle_case_userdata(sc);
		if (strcmp(dc->dir, dw->cfg->path) != 0)
			return;
		{
			struct log_ctx ctx = case_ctx(dw, dc->name, NULL, LOG_MID_CASE_STATE);

			log_event(LOG_INFO, &ctx,
			          "case '%s' vanished before it was queued, forgetting it",
			          dc->quoted);
		}
		case_forget(d, dc);
		break;
	case WATCH_EV_ACTIVITY:
		dc = ev->case_userdata;
		if (ev->marker)
			settle_marker(d->settle, dc->sc, now);
		else
			settle_activity(d->settle, dc->sc, now);
		break;
	case WATCH_EV_LIMIT:
		dc = ev->case_userdata;
		if (dw != NULL)
			case_poll(d, dc, dw);
		break;
	case WATCH_EV_ROOT_GONE:
		if (dw != NULL)
			dwatch_lost(d, dw);
		break;
	case WATCH_EV_OVERFLOW:
		log_msg(LOG_WARNING, "the inotify event queue overflowed, events were lost; "
				     "rescanning every watch folder");
		d->rescan_all = true;
		break;
	}
}

static int
on_inotify(struct daemon *d, void *ud)
{
	(void)ud;
	return watch_read(d->watch, DAEMON_INOTIFY_BYTES_PER_TURN, on_watch_event, d);
}

/* ---- operator requests ---- */

struct id_list {
	int64_t *ids;
	size_t n, cap;
	bool only_failed;
};

static int
collect_cb(const struct store_case *c, void *ud)
{
	struct id_list *l = ud;

	if (l->only_failed ? c->state != STORE_FAILED : store_state_is_terminal(c->state))
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		int64_t *ids = realloc(l->ids, cap * sizeof(*ids));

		if (ids == NULL)
			return -ENOMEM;
		l->ids = ids;
		l->cap = cap;
	}
	l->ids[l->n++] = c->id;
	return 0;
}

static void
request_hold(struct daemon *d, int64_t case_id, bool held)
{
	struct id_list l = { 0 };

	if (case_id == 0) {
		/* The CLI recorded the setting; the daemon holds or releases what is queued. */
		d->hold_all = held;
		if (store_case_foreach(d->store, NULL, collect_cb, &l) < 0)
			log_warning("%s all cases: listing them failed: %s",
			            held ? "holding" : "releasing", store_errmsg(d->store));
		for (size_t i = 0; i < l.n; i++)
			if (store_case_set_held(d->store, l.ids[i], held) < 0)
				log_warning("case %" PRId64 ": %s failed: %s", l.ids[i],
					    held ? "holding" : "releasing", store_errmsg(d->store));
		log_msg(LOG_NOTICE, "%s every case (%zu now in the queue)",
			held ? "holding" : "released", l.n);
		free(l.ids);
	} else {
		struct store_case c = { 0 };

		if (store_case_get(d->store, case_id, &c) < 0) {
			log_warning("%s request for case %" PRId64
			            ", which is not in the queue, ignoring",
			            held ? "hold" : "release", case_id);
			return;
		}
		if (store_case_set_held(d->store, case_id, held) < 0) {
			log_warning("case %" PRId64 ": %s failed: %s", case_id,
			            held ? "holding" : "releasing", store_errmsg(d->store));
		} else {
			struct log_ctx ctx = LOG_CTX_INIT;
			char *q = scan_quote(c.name, strlen(c.name));

			ctx.watch = c.watch;
			ctx.case_name = c.name;
			ctx.state = store_state_name(c.state);
			ctx.message_id = LOG_MID_CASE_STATE;
			log_event(LOG_NOTICE, &ctx, "case '%s' %s", q != NULL ? q : "?",
				  held ? "held" : "released");
			free(q);
		}
		store_case_clear(&c);
	}
	d->status_dirty = true;
}

static void
request_retry_one(struct daemon *d, int64_t case_id)
{
	struct store_case c = { 0 };
	struct store_file *files = NULL;
	size_t n_files = 0;
	struct log_ctx ctx = LOG_CTX_INIT;
	char *q = NULL;

	if (store_case_get(d->store, case_id, &c) < 0) {
		log_warning("retry request for case %" PRId64
		            ", which is not in the queue, ignoring",
		            case_id);
		return;
	}
	q = scan_quote(c.name, strlen(c.name));
	ctx.watch = c.watch;
	ctx.case_name = c.name;
	ctx.message_id = LOG_MID_CASE_RETRY;
	if (c.state != STORE_FAILED && c.state != STORE_CANCELLED) {
		ctx.state = store_state_name(c.state);
		log_event(LOG_WARNING, &ctx, "retry request for case '%s', which is %s, ignoring",
			  q != NULL ? q : "?", store_state_name(c.state));
		goto out;
	}
	if (store_file_list(d->store, case_id, &files, &n_files) == 0 && n_files == 0 &&
	    c.path != NULL) {
		/* It failed while settling: forget the record and let it settle again. */
		struct dwatch *dw = dwatch_by_name(d, c.watch);
		char *p1 = strdup(c.path), *p2 = strdup(c.path);

		if (dw != NULL && p1 != NULL && p2 != NULL &&
		    store_case_forget(d->store, case_id) == 0)
			(void)case_detect(d, dw, dirname(p1), basename(p2), DETECT_RETRY);
		else
			log_event(LOG_WARNING, &ctx, "retry of case '%s' failed, ignoring",
			          q != NULL ? q : "?");
		free(p1);
		free(p2);
	} else if (store_case_reset(d->store, case_id, STORE_QUEUED) < 0) {
		log_event(LOG_WARNING, &ctx, "retry of case '%s' failed: %s, ignoring",
		          q != NULL ? q : "?", store_errmsg(d->store));
	} else {
		ctx.state = "queued";
		log_event(LOG_NOTICE, &ctx, "case '%s' sent back to the queue (retry)",
		          q != NULL ? q : "?");
	}
	store_file_list_free(files, n_files);
out:
	free(q);
	store_case_clear(&c);
	d->status_dirty = true;
}

static void
request_enqueue(struct daemon *d, const struct store_request *rq)
{
	struct dwatch *dw = rq->watch != NULL ? dwatch_by_name(d, rq->watch) : NULL;
	char *p1, *p2, *dir, *name;
	size_t len;

	if (dw == NULL) {
		log_warning("enqueue request for watch '%s', which is not configured, ignoring",
			    rq->watch != NULL ? rq->watch : "");
		return;
	}
	if (rq->path == NULL || rq->path[0] != '/') {
		log_warning("enqueue request for watch '%s' without an absolute path, ignoring",
		            dw->cfg->name);
		return;
	}
	p1 = strdup(rq->path);
	p2 = strdup(rq->path);
	if (p1 == NULL || p2 == NULL)
		goto out;
	/* Strip trailing slashes so that the case name is the last component. */
	len = strlen(p1);
	while (len > 1 && p1[len - 1] == '/') {
		p1[--len] = '\0';
		p2[len] = '\0';
	}
	dir = dirname(p1);
	name = basename(p2);
	if (strcmp(name, "/") == 0 || scan_name_ignored(name)) {
		char *q = scan_quote(rq->path, strlen(rq->path));

		log_warning("enqueue request for '%s': not a usable case name, ignoring",
		            q != NULL ? q : "?");
		free(q);
		goto out;
	}
	{
		struct settle_case *sc = settle_find(d->settle, dw->id, name);

		if (sc != NULL &&
		    strcmp(((struct dcase *)settle_case_userdata(sc))->dir, dir) != 0) {
			char *q = scan_quote(name, strlen(name));

			log_warning("enqueue request for '%s': a case of that name is settling in "
			            "watch '%s'; "
			            "enqueue it again later, ignoring",
			            q != NULL ? q : "?", dw->cfg->name);
			free(q);
			goto out;
		}
	}
	if (!case_detect(d, dw, dir, name, DETECT_ENQUEUE)) {
		char *q = scan_quote(rq->path, strlen(rq->path));

		log_warning("enqueue request for '%s' (watch '%s'): it does not exist, ignoring",
			    q != NULL ? q : "?", dw->cfg->name);
		free(q);
	}
out:
	free(p1);
	free(p2);
}

/* Re-read `gcdrop hold --all` from the queue (the CLI writes it). */
static void
hold_all_refresh(struct daemon *d)
{
	bool held;

	if (store_hold_all_get(d->store, &held) < 0) {
		log_debug("reading the hold --all setting failed: %s", store_errmsg(d->store));
		return;
	}
	if (held != d->hold_all)
		log_msg(LOG_INFO, "%s", held ? "new cases are held (gcdrop hold --all)"
					     : "new cases are no longer held");
	d->hold_all = held;
}

static void
requests_consume(struct daemon *d)
{
	for (int i = 0; i < DAEMON_REQUESTS_PER_TICK; i++) {
		struct store_request rq = { 0 };
		int r = store_request_next(d->store, &rq);

		if (r == -ENOENT)
			return;
		if (r < 0) {
			log_debug("reading operator requests failed: %s", store_errmsg(d->store));
			return;
		}
		switch (rq.kind) {
		case STORE_REQ_ENQUEUE:
			request_enqueue(d, &rq);
			break;
		case STORE_REQ_HOLD:
		case STORE_REQ_RELEASE:
			request_hold(d, rq.case_id, rq.kind == STORE_REQ_HOLD);
			break;
		case STORE_REQ_RETRY:
			if (rq.case_id != 0) {
				request_retry_one(d, rq.case_id);
			} else {
				struct id_list l = { .only_failed = true };

				if (store_case_foreach(d->store, NULL, collect_cb, &l) == 0)
					for (size_t k = 0; k < l.n; k++)
						request_retry_one(d, l.ids[k]);
				free(l.ids);
			}
			break;
		}
		if (d->pipeline != NULL)
			pipeline_kick(d->pipeline);
		if (store_request_done(d->store, rq.id) < 0) {
			log_warning("marking operator request %" PRId64
			            " done failed: %s, ignoring",
			            rq.id, store_errmsg(d->store));
			store_request_clear(&rq);
			return;
		}
		store_request_clear(&rq);
	}
}

/* ---- the STATUS= line, the disk guard, the watchdog ---- */

/*
 * Send the STATUS= line (progress.h) when it differs from the last one sent.
 * Settling cases live only here, so their count is added to the queue's.
 */
static void
status_update(struct daemon *d, int64_t now)
{
	struct progress_summary s = PROGRESS_SUMMARY_INIT;
	char line[PROGRESS_LINE_MAX];

	d->status_dirty = false;
	d->next_status = now + DAEMON_STATUS_MS;
	if (progress_collect(d->store, &s) < 0) {
		log_debug("reading the queue for the status line failed: %s",
			  store_errmsg(d->store));
		return;
	}
	s.counts[STORE_SETTLING] += (int64_t)settle_count(d->settle);
	s.rate = progress_rate(&d->prog, now);
	progress_format(&s, line, sizeof(line));
	if (strcmp(line, d->status) == 0)
		return;
	if (notify_status(line) == 0)
		snprintf(d->status, sizeof(d->status), "%s", line);
}

/* Measure free space; below min_free_space the pipeline takes no new case. */
static void
diskguard_tick(struct daemon *d)
{
	bool ok = diskguard_check_all(d->guard);

	if (ok == d->may_start)
		return;
	d->may_start = ok;
	if (d->pipeline != NULL)
		pipeline_set_intake(d->pipeline, ok);
	d->status_dirty = true;
}

/*
 * Ping the watchdog when one is due, vouching for progress: this runs on the
 * main loop, and no worker may be busy without progress past the stall limit.
 * The stall is logged once when it starts and once when it ends, whether or
 * not systemd's watchdog is on.
 */
static void
watchdog_tick(struct daemon *d, int64_t now)
{
	int64_t since;
	bool stalled = d->pipeline != NULL &&
		       pipeline_oldest_busy_since(d->pipeline, &since) == 0 &&
		       now - since >= d->stall_limit_ms;

	if (stalled && !d->stalled) {
		struct log_ctx ctx = event_ctx(NULL, DAEMON_MID_STALL);

		log_event(LOG_WARNING, &ctx,
			  "a worker has made no progress for %" PRId64 " s (the stall limit is "
			  "%" PRId64 " s)%s", (now - since) / 1000, d->stall_limit_ms / 1000,
			  d->wd.interval_usec > 0
				  ? "; watchdog pings stop, so systemd restarts gcdrop unless it "
				    "moves again"
				  : "");
	} else if (!stalled && d->stalled) {
		struct log_ctx ctx = event_ctx(NULL, DAEMON_MID_STALL);

		log_event(LOG_NOTICE, &ctx, "the workers make progress again%s",
			  d->wd.interval_usec > 0 ? "; watchdog pings resume" : "");
	}
	d->stalled = stalled;
	if (notify_watchdog_due(&d->wd, notify_now_usec(), !stalled))
		(void)notify_watchdog();
}

/* ---- signals, reload ---- */

static int
daemon_sync_watches(struct daemon *d)
{
	for (size_t i = 0; i < d->cfg->n_watches; i++) {
		const struct config_watch *w = &d->cfg->watches[i];

		if (store_watch_sync(d->store, w->name, w->path, config_dest_name(w->dest),
		                     w->slug) < 0) {
			log_warning("recording watch '%s' in the queue failed: %s, ignoring",
			            w->name, store_errmsg(d->store));
		}
	}
	return 0;
}

static bool
watch_same_folder(const struct config_watch *a, const struct config_watch *b)
{
	const char *ma = a->ready_marker != NULL ? a->ready_marker : "";
	const char *mb = b->ready_marker != NULL ? b->ready_marker : "";

	return strcmp(a->path, b->path) == 0 && strcmp(ma, mb) == 0;
}

struct reparam_ctx {
	struct daemon *d;
	const struct dwatch *dw;
};

static void
reparam_cb(struct settle_case *sc, void *ud)
{
	struct reparam_ctx *rc = ud;
	struct dcase *dc = settle_case_userdata(sc);
	struct settle_params p = settle_params_for(rc->dw->cfg, dc->marker_ok, dc->polled);

	settle_set_params(rc->d->settle, sc, &p);
}

static void
daemon_reload(struct daemon *d)
{
	struct config *ncfg = NULL;
	struct log_ctx ctx;
	struct dwatch *nw;
	char *msg = NULL;
	size_t n_new;
	int r;

	(void)notify_reloading();
	r = config_load(d->config_path, 0, &ncfg, &msg);
	if (r < 0) {
		log_err("reloading the configuration failed, keeping the old one: %s",
			msg != NULL ? msg : strerror(-r));
		free(msg);
		(void)notify_ready();
		return;
	}
	if (strcmp(ncfg->state_dir, d->cfg->state_dir) != 0)
		log_warning("state_dir changed to '%s'; that takes a restart, still using '%s'",
			    ncfg->state_dir, d->cfg->state_dir);
	n_new = ncfg->n_watches;
	nw = calloc(n_new + 1, sizeof(*nw));
	if (nw == NULL) {
		log_err("reloading the configuration failed, keeping the old one: out of memory");
		config_free(ncfg);
		(void)notify_ready();
		return;
	}
	/* Watches that are gone or moved to another folder stop; the others carry over. */
	for (size_t i = 0; i < d->n_watches; i++) {
		struct dwatch *old = &d->watches[i];
		const struct config_watch *cw = config_find_watch(ncfg, old->cfg->name);

		if (cw == NULL || !watch_same_folder(cw, old->cfg)) {
			struct log_ctx wctx = watch_ctx(old);

			log_event(LOG_NOTICE, &wctx, "watch '%s' %s", old->cfg->name,
				  cw == NULL ? "removed" : "changed folder");
			dwatch_stop(d, old);
			old->cfg = NULL;
		}
	}
	for (size_t i = 0; i < n_new; i++) {
		const struct config_watch *cw = &ncfg->watches[i];
		struct dwatch *old = NULL;

		for (size_t k = 0; k < d->n_watches; k++)
			if (d->watches[k].cfg != NULL &&
			    strcmp(d->watches[k].cfg->name, cw->name) == 0)
				old = &d->watches[k];
		if (old != NULL) {
			nw[i] = *old;
		} else {
			nw[i].id = d->next_id++;
			nw[i].watched = false;
		}
		nw[i].cfg = cw;
	}
	free(d->watches);
	d->watches = nw;
	d->n_watches = n_new;
	/* The pipeline borrows the configuration: give it the new one first. */
	if (d->pipeline != NULL && pipeline_reload(d->pipeline, ncfg) < 0)
		log_warning("the uploads keep their previous settings");
	config_free(d->cfg);
	d->cfg = ncfg;
	log_set_level(d->cfg->log_level);
	if (diskguard_set_config(d->guard, d->cfg) < 0)
		log_warning("the disk guard keeps its previous paths: out of memory");
	d->status_dirty = true;
	daemon_sync_watches(d);
	for (size_t i = 0; i < d->n_watches; i++) {
		struct dwatch *dw = &d->watches[i];

		if (!dw->watched && !dw->polled && !dw->missing) {
			if (dwatch_start(d, dw))
				(void)rescan_watch(d, dw, false);
		} else {
			struct reparam_ctx rc = { d, dw };

			settle_foreach(d->settle, dw->id, reparam_cb, &rc);
		}
	}
	ctx = event_ctx(NULL, LOG_MID_RELOADED);
	log_event(LOG_NOTICE, &ctx, "configuration reloaded from '%s', %zu watch(es)",
		  d->cfg->path, d->cfg->n_watches);
	(void)notify_ready();
}

static int
on_signal(struct daemon *d, void *ud)
{
	struct signalfd_siginfo si;

	(void)ud;
	for (;;) {
		ssize_t n = read(d->sfd, &si, sizeof(si));

		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(si))
			return 0;
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			/* The stop deadline counts from the first signal. */
			if (!d->stop)
				d->stop_ms = daemon_now_ms();
			d->stop = true;
		} else if (si.ssi_signo == SIGHUP) {
			d->reload = true;
		}
	}
}

static int
on_timer(struct daemon *d, void *ud)
{
	uint64_t expirations;

	(void)ud;
	while (read(d->tfd, &expirations, sizeof(expirations)) < 0 && errno == EINTR)
		;
	d->armed = SETTLE_NEVER;
	return 0;
}

/* ---- the loop ---- */

int
daemon_add_handler(struct daemon *d, int fd, int (*fn)(struct daemon *d, void *userdata),
                   void *userdata)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct daemon_handler *h;

	if (d->n_handlers == DAEMON_MAX_HANDLERS)
		return -ENOSPC;
	h = &d->handlers[d->n_handlers];
	h->fd = fd;
	h->fn = fn;
	h->userdata = userdata;
	ev.data.fd = fd;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	d->n_handlers++;
	return 0;
}

void
daemon_remove_handler(struct daemon *d, int fd)
{
	for (size_t i = 0; i < d->n_handlers; i++) {
		if (d->handlers[i].fd == fd) {
			epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
			memmove(&d->handlers[i], &d->handlers[i + 1],
				(d->n_handlers - i - 1) * sizeof(d->handlers[0]));
			d->n_handlers--;
			return;
		}
	}
}

/*
 * The hook where the upload pool and the job poller plug in: called once per
 * loop turn on the main thread, after events and deadlines were handled. Empty
 * until the upload issue lands: queued cases stay queued.
 */
static void
daemon_pipeline_tick(struct daemon *d)
{
	int64_t now, next;

	if (d->pipeline == NULL)
		return;
	now = daemon_now_ms();
	pipeline_tick(d->pipeline, now);
	next = pipeline_next_deadline(d->pipeline, daemon_now_ms());
	if (next != INT64_MAX)
		daemon_wake_at(d, next);
}

/* The pool's eventfd: completed operations. */
static int
on_pipeline(struct daemon *d, void *ud)
{
	(void)ud;
	pipeline_on_event(d->pipeline);
	return 0;
}

/* The pipeline saw a case change while it was uploading it: let it settle again. */
static void
pipeline_resettle(void *ud, const char *watch, const char *case_name)
{
	struct daemon *d = ud;
	struct dwatch *dw = dwatch_by_name(d, watch);

	if (dw != NULL && dw->cfg != NULL)
		case_detect(d, dw, dw->cfg->path, case_name, DETECT_RESCAN);
}

/* Start the pipeline (after the watches are set). Returns 0 or -1 (logged). */
static int
daemon_pipeline_start(struct daemon *d)
{
	struct pipeline_opts o = {0};
	const char *ps = getenv("GCDROP_PART_SIZE");	/* tests only: small parts */
	char *msg = NULL;
	int fd, r;

	if (ps != NULL)
		o.part_size = strtoll(ps, NULL, 10);
	o.resettle = pipeline_resettle;
	o.resettle_ud = d;
	if (http_global_init() < 0) {
		log_err("cannot initialise libcurl");
		return -1;
	}
	r = pipeline_new(d->cfg, d->store, &o, &d->pipeline, &msg);
	if (r < 0) {
		log_err("cannot start the uploads: %s", msg != NULL ? msg : strerror(-r));
		free(msg);
		return -1;
	}
	fd = pipeline_eventfd(d->pipeline);
	r = daemon_add_handler(d, fd, on_pipeline, NULL);
	if (r < 0) {
		log_err("cannot watch the worker pool: %s", strerror(-r));
		return -1;
	}
	return 0;
}

static void
daemon_arm(struct daemon *d, int64_t now)
{
	int64_t when = d->next_tick;
	struct itimerspec its = { 0 };
	int64_t due = settle_next_due(d->settle);

	if (due < when)
		when = due;
	if (d->wake_at < when)
		when = d->wake_at;
	/* While stalled no ping is due, whatever the time: the tick looks again. */
	if (!d->stalled && d->wd.interval_usec > 0) {
		int64_t wd = (int64_t)((notify_watchdog_next_usec(&d->wd) + 999) / 1000);

		if (wd < when)
			when = wd;
	}
	for (size_t i = 0; i < d->n_watches; i++)
		if ((d->watches[i].missing || d->watches[i].polled) &&
		    d->watches[i].next_scan < when)
			when = d->watches[i].next_scan;
	if (when == d->armed)
		return;
	d->armed = when;
	if (when <= now)
		when = now + 1;	/* an it_value of zero would disarm the timer */
	/* Absolute CLOCK_MONOTONIC time: daemon_now_ms() reads the same clock. */
	its.it_value.tv_sec = when / 1000;
	its.it_value.tv_nsec = (long)(when % 1000) * 1000000;
	if (timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		log_warning("timerfd_settime: %s, ignoring", strerror(errno));
}

static void
daemon_due(struct daemon *d)
{
	int64_t now = daemon_now_ms();
	struct settle_case *sc;
	bool batch;
	int walks = 0;

	/*
	 * One transaction per turn: thousands of cases settling together are
	 * recorded with one commit. Each insert is its own savepoint inside it.
	 */
	batch = store_begin(d->store) == 0;
	if (d->rescan_all) {
		d->rescan_all = false;
		for (size_t i = 0; i < d->n_watches; i++) {
			struct dwatch *dw = &d->watches[i];

			if (dw->missing)
				continue;
			if (rescan_watch(d, dw, true) == -ENOENT)
				dwatch_lost(d, dw);
		}
		now = daemon_now_ms();
	}
	while (walks < DAEMON_WALKS_PER_TURN && (sc = settle_pop_due(d->settle, now)) != NULL) {
		struct dcase *dc = settle_case_userdata(sc);

		switch (settle_check(d->settle, sc, now)) {
		case SETTLE_WALK:
			case_walk(d, dc, now);
			walks++;
			break;
		case SETTLE_FAIL:
			case_fail_reason(d, dc);
			break;
		case SETTLE_WAIT:
		case SETTLE_READY:
			/* Cannot happen for a due case; do not spin on it. */
			settle_activity(d->settle, sc, now);
			break;
		}
		now = daemon_now_ms();
	}
	for (size_t i = 0; i < d->n_watches; i++)
		dwatch_periodic(d, &d->watches[i], now);
	if (now >= d->next_tick) {
		d->next_tick = now + DAEMON_TICK_MS;
		requests_consume(d);
		hold_all_refresh(d);
		diskguard_tick(d);
		progress_sample(&d->prog, now,
				d->pipeline != NULL ? pipeline_bytes_sent(d->pipeline) : 0);
		if (d->status_dirty || now >= d->next_status)
			status_update(d, now);
	}
	watchdog_tick(d, now);
	if (d->wake_at <= now)
		d->wake_at = SETTLE_NEVER;
	/* Only inside the batch: row by row, 10,000 settling cases would be 10,000 commits. */
	if (batch)
		settling_flush(d);
	if (batch && store_commit(d->store) < 0) {
		/*
		 * What this turn recorded is lost, and those cases are forgotten in
		 * memory: find them again with a rescan.
		 */
		log_warning("writing to the queue failed: %s, rescanning the watch folders",
			    store_errmsg(d->store));
		d->rescan_all = true;
		daemon_wake_at(d, now + DAEMON_RETRY_STORE_MS);
	}
}

static int
daemon_loop(struct daemon *d)
{
	struct epoll_event evs[DAEMON_MAX_HANDLERS];

	while (!d->stop) {
		int n;

		daemon_arm(d, daemon_now_ms());
		n = epoll_wait(d->epfd, evs, DAEMON_MAX_HANDLERS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("epoll_wait: %s", strerror(errno));
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			for (size_t k = 0; k < d->n_handlers; k++) {
				struct daemon_handler *h = &d->handlers[k];
				int r;

				if (h->fd != evs[i].data.fd)
					continue;
				r = h->fn(d, h->userdata);
				if (r < 0)
					log_warning("event handler for fd %d: %s, ignoring", h->fd,
					            strerror(-r));
				break;
			}
		}
		if (d->stop)
			break;
		if (d->reload) {
			d->reload = false;
			daemon_reload(d);
		}
		daemon_due(d);
		daemon_pipeline_tick(d);
	}
	return 0;
}

/* ---- start-up and shutdown ---- */

static int
daemon_lock(struct daemon *d)
{
	char *path = path_join(d->cfg->state_dir, DAEMON_LOCK_NAME);
	int fd, r = 0;

	if (path == NULL)
		return -ENOMEM;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		r = -errno;
		log_err("cannot open the lock file '%s': %s", path, strerror(-r));
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		if (r == -EWOULDBLOCK)
			log_err("another gcdrop daemon is running on state directory '%s' (it "
			        "holds '%s'); "
			        "exiting",
			        d->cfg->state_dir, path);
		else
			log_err("cannot lock '%s': %s", path, strerror(-r));
		close(fd);
		goto out;
	}
	d->lockfd = fd;
out:
	free(path);
	return r;
}

static void
daemon_free(struct daemon *d)
{
	d->pipeline = pipeline_free(d->pipeline);
	d->guard = diskguard_free(d->guard);
	if (d->settle != NULL)
		settle_foreach(d->settle, SETTLE_ALL_WATCHES, forget_cb, d);
	d->settle = settle_free(d->settle);
	settling_gone_free(d);
	free(d->gone);
	d->watch = watch_free(d->watch);
	for (size_t i = 0; i < d->n_watches; i++)
		known_free(d->watches[i].known, d->watches[i].n_known);
	free(d->watches);
	if (d->tfd >= 0)
		close(d->tfd);
	if (d->sfd >= 0)
		close(d->sfd);
	if (d->epfd >= 0)
		close(d->epfd);
	d->store = store_close(d->store);
	if (d->lockfd >= 0)
		close(d->lockfd);
	d->cfg = config_free(d->cfg);
}

int
daemon_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct daemon d = {
		.config_path = CONFIG_DEFAULT_PATH,
		.epfd = -1, .sfd = -1, .tfd = -1, .lockfd = -1,
		.wake_at = SETTLE_NEVER, .armed = SETTLE_NEVER,
	};
	struct log_ctx ctx;
	uint64_t wd_usec = 0;
	char *msg = NULL;
	sigset_t mask;
	int c, r, rc = EX_OK;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			d.config_path = optarg;
			break;
		case 'h':
			fputs(daemon_usage, stdout);
			return EX_OK;
		default:
			fprintf(stderr, "gcdrop run: unknown option '%s'\n%s", argv[optind - 1],
			        daemon_usage);
			return EX_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "gcdrop run: unexpected argument '%s'\n%s", argv[optind],
		        daemon_usage);
		return EX_USAGE;
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	log_init(LOG_MODE_AUTO, LOG_INFO);
	r = config_load(d.config_path, 0, &d.cfg, &msg);
	if (r < 0) {
		log_err("%s", msg != NULL ? msg : strerror(-r));
		free(msg);
		return EX_CONFIG;
	}
	log_set_level(d.cfg->log_level);
	r = store_open(d.cfg->state_dir, 0, &d.store, &msg);
	if (r < 0) {
		log_err("cannot open the queue: %s", msg != NULL ? msg : strerror(-r));
		free(msg);
		rc = 1;
		goto out;
	}
	if (daemon_lock(&d) < 0) {
		rc = 1;
		goto out;
	}
	/*
	 * A damaged queue is refused before anything writes to it: the operator
	 * restores it or moves it aside; gcdrop never overwrites it.
	 */
	r = store_integrity_check(d.store, &msg);
	if (r < 0) {
		log_err("the queue is damaged (malformed database), refusing to start: %s; restore "
			"'%s/" STORE_DB_NAME "' from a backup or move it aside, gcdrop will not write to it",
			msg != NULL ? msg : store_errmsg(d.store), d.cfg->state_dir);
		free(msg);
		rc = 1;
		goto out;
	}
	if (store_release_all_leases(d.store) < 0)
		log_warning("releasing old leases failed: %s, ignoring", store_errmsg(d.store));
	/* Settling cases of a previous life: the start-up rescan finds them again. */
	if (store_settling_clear(d.store) < 0)
		log_warning("clearing the settling cases failed: %s, ignoring",
			    store_errmsg(d.store));
	if (store_hold_all_get(d.store, &d.hold_all) < 0)
		log_warning("reading the hold --all setting failed: %s, ignoring",
			    store_errmsg(d.store));
	else if (d.hold_all)
		log_msg(LOG_NOTICE, "new cases are held (gcdrop hold --all; gcdrop release --all "
				    "ends it)");
	daemon_sync_watches(&d);

	r = watch_new(&d.watch);
	if (r < 0) {
		log_err("cannot start inotify: %s%s", strerror(-r),
		        r == -EMFILE ? " (raise it with 'sysctl fs.inotify.max_user_instances=N')"
		                     : "");
		rc = 1;
		goto out;
	}
	d.settle = settle_new();
	d.epfd = epoll_create1(EPOLL_CLOEXEC);
	d.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	d.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (d.settle == NULL || d.epfd < 0 || d.sfd < 0 || d.tfd < 0) {
		log_err("cannot set up the main loop: %s",
		        d.settle == NULL ? strerror(ENOMEM) : strerror(errno));
		rc = 1;
		goto out;
	}
	if (daemon_add_handler(&d, watch_fd(d.watch), on_inotify, NULL) < 0 ||
	    daemon_add_handler(&d, d.sfd, on_signal, NULL) < 0 ||
	    daemon_add_handler(&d, d.tfd, on_timer, NULL) < 0) {
		log_err("cannot set up the main loop: %s", strerror(errno));
		rc = 1;
		goto out;
	}

	d.n_watches = d.cfg->n_watches;
	d.watches = calloc(d.n_watches + 1, sizeof(*d.watches));
	if (d.watches == NULL) {
		log_err("out of memory");
		rc = 1;
		goto out;
	}
	for (size_t i = 0; i < d.n_watches; i++) {
		d.watches[i].id = d.next_id++;
		d.watches[i].cfg = &d.cfg->watches[i];
		(void)dwatch_start(&d, &d.watches[i]);
	}
	/* Watches are set before the rescan, so nothing falls between the two. */
	for (size_t i = 0; i < d.n_watches; i++) {
		struct dwatch *dw = &d.watches[i];

		if (!dw->missing && rescan_watch(&d, dw, false) < 0)
			dwatch_lost(&d, dw);
	}
	if (store_begin(d.store) == 0) {
		settling_flush(&d);
		if (store_commit(d.store) < 0)
			log_debug("recording the settling cases failed: %s",
				  store_errmsg(d.store));
	}
	/* The disk guard decides before the pipeline takes its first case. */
	d.guard = diskguard_new(NULL);
	if (d.guard == NULL || diskguard_set_config(d.guard, d.cfg) < 0) {
		log_err("out of memory");
		rc = 1;
		goto out;
	}
	d.may_start = diskguard_check_all(d.guard);
	if (daemon_pipeline_start(&d) < 0) {
		rc = 1;
		goto out;
	}
	pipeline_set_intake(d.pipeline, d.may_start);
	progress_init(&d.prog);
	if (notify_watchdog_usec(&wd_usec) < 0) {
		log_warning("WATCHDOG_USEC or WATCHDOG_PID is malformed, running without the "
			    "watchdog");
		wd_usec = 0;
	}
	notify_watchdog_init(&d.wd, wd_usec);
	d.stall_limit_ms = DAEMON_STALL_LIMIT_MS;
	if (getenv("GCDROP_STALL_LIMIT_MS") != NULL) {
		long long v = strtoll(getenv("GCDROP_STALL_LIMIT_MS"), NULL, 10);

		if (v > 0)
			d.stall_limit_ms = v;
	}
	d.next_tick = daemon_now_ms();
	d.status_dirty = true;
	ctx = event_ctx(NULL, LOG_MID_STARTED);
	log_event(LOG_NOTICE, &ctx,
		  "gcdrop %s started with '%s', %zu watch(es), %zu case(s) settling",
		  PACKAGE_VERSION, d.cfg->path, d.cfg->n_watches, settle_count(d.settle));
	(void)notify_ready();

	if (daemon_loop(&d) < 0)
		rc = 1;

	/* First tell systemd, then stop: the stop may take up to DAEMON_STOP_GRACE_MS. */
	(void)notify_stopping();
	if (d.stop_ms == 0)
		d.stop_ms = daemon_now_ms();
	if (d.pipeline != NULL)
		(void)notify_status("stopping: transfers in flight finish or are left to resume");
	ctx = event_ctx(NULL, LOG_MID_STOPPING);
	log_event(LOG_NOTICE, &ctx,
		  "gcdrop stopping: no new work, transfers in flight may finish for %d s, "
		  "%zu case(s) still settling (found again at the next start)",
		  DAEMON_STOP_GRACE_MS / 1000, settle_count(d.settle));
	if (d.pipeline != NULL) {
		pipeline_stop(d.pipeline, d.stop_ms + DAEMON_STOP_GRACE_MS);
		log_msg(LOG_INFO, "workers stopped %" PRId64 " ms after the signal",
			daemon_now_ms() - d.stop_ms);
	}
	/* Nothing settles any more: status stops showing them (the next start finds them). */
	if (store_settling_clear(d.store) < 0)
		log_debug("clearing the settling cases failed: %s", store_errmsg(d.store));
out:
	daemon_free(&d);
	return rc;
}
