/*
 * settle.h: when a case is completely written (settle_ prefix), spec section 2 step 2.
 *
 * A struct settle is the set of cases that are settling, each with its own small
 * state machine, keyed by (watch id, case name), and ordered by the next moment
 * each one needs attention (its "due" time), so that the daemon can arm one
 * timerfd to the earliest of them.
 *
 * The module is pure: it never reads a clock, never touches the filesystem and
 * never logs. Every call gets the current time ('now', in milliseconds on any
 * monotonic clock) from its caller, and the walks of the case are made by the
 * caller (with scan_case) and summarised into a struct settle_walk. That keeps
 * the rules below testable with a table of (time, input, expected verdict).
 *
 * Rules, for one case:
 * - Every case starts with a walk: it is due at once.
 * - Quiet mode (no ready marker): the case is ready when a walk finds files, finds
 *   them equal (sizes, mtimes: scan_same) to the previous walk, saw nothing change
 *   while it ran, and comes at least settle_ms after the last change. A change is
 *   an event under the case (settle_activity), or a walk that differs from the
 *   previous walk although no event came between them (a write inotify did not
 *   report); either restarts the quiet period. So a case is never ready before
 *   its last write plus settle_ms, even where no event reports the writes.
 *   A walk that differs but whose difference the events already explain is
 *   confirmed by another walk SETTLE_CONFIRM_MS later (at most settle_ms), so a
 *   case copied in file by file is ready about settle_ms + 0.5 s after its last
 *   write rather than after two quiet periods.
 * - Marker mode: the case is ready as soon as a walk finds the marker, finds files
 *   and saw nothing change while it ran; the marker appearing (settle_marker) makes
 *   a walk due at once. The quiet period does not apply.
 * - A walk that finds no files (an empty folder) is not ready: the case waits for
 *   the next change, and fails only when max_settle_ms pass with it still empty.
 * - A walk that fails (unreadable file, symlink out of the watch, ...) fails the
 *   case only when it still fails settle_ms after the last change, so that a
 *   writer that fixes modes after writing is not failed early.
 * - A case not ready max_settle_ms after it started fails (still changing, still
 *   empty, or no marker).
 * - Polled cases (no inotify: network filesystem, watch limit, enqueued from
 *   outside a watch folder) set poll_ms > 0: while waiting for a marker or for
 *   files, a walk is due every poll_ms, since no event would announce them.
 *
 * Strings and user data: the case name is copied; 'userdata' belongs to the
 * caller, who must release it before (or after) settle_remove().
 */
#ifndef GCDROP_SETTLE_H
#define GCDROP_SETTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrs.h"

#define SETTLE_NEVER INT64_MAX
#define SETTLE_CONFIRM_MS 500	/* delay of a confirming walk */
#define SETTLE_MIN_RECHECK_MS 50	/* no walk is due sooner than this after another */

struct settle;

struct settle_params {
	int64_t settle_ms;	/* quiet period */
	int64_t max_settle_ms;	/* give up after this long */
	int64_t poll_ms;	/* > 0: walk at least this often while waiting (no inotify) */
	bool marker;		/* marker mode */
};

/* What the caller has to do next with a case. */
enum settle_verdict {
	SETTLE_WAIT,	/* nothing until settle_case_due() */
	SETTLE_WALK,	/* walk the case now and report it with settle_walked() */
	SETTLE_READY,	/* queue the case (the last walk is the one to record) */
	SETTLE_FAIL,	/* fail the case; settle_case_reason() says why */
};

enum settle_reason {
	SETTLE_REASON_NONE,
	SETTLE_REASON_CHANGING,		/* still changing after max_settle_ms */
	SETTLE_REASON_EMPTY,		/* still without files after max_settle_ms */
	SETTLE_REASON_NO_MARKER,	/* the marker did not appear within max_settle_ms */
	SETTLE_REASON_WALK_ERROR,	/* the walk kept failing (see the walk's message) */
	SETTLE_REASON_MARKER_EMPTY,	/* the marker appeared but the case has no files */
};

/* A walk of the case, summarised by the caller. */
struct settle_walk {
	int error;		/* 0, or the negative errno the walk failed with */
	size_t n_files;		/* regular files found (the marker excluded) */
	bool marker;		/* the ready marker exists */
	bool changed;		/* the walk saw something change while it ran */
	bool same;		/* equal to the previous successful walk (false when none) */
};

/* One settling case. The members are private: use the functions. */
struct settle_case {
	unsigned watch;
	char *name;
	void *userdata;
	struct settle_params p;
	int64_t started;
	int64_t last_change;	/* last event, or last walk that differed unexplained */
	int64_t last_walk;	/* time of the last successful walk */
	int64_t walk_due;	/* next walk, SETTLE_NEVER when none is planned */
	int64_t due;		/* min(walk_due, started + max_settle_ms): the heap key */
	bool have_walk;		/* a previous successful walk exists */
	bool empty;		/* the last walk found no files */
	bool error_pending;	/* the last walk failed */
	enum settle_reason reason;
	size_t heap_idx;
	struct settle_case *hnext;
};

/* A new empty set; NULL on out-of-memory. */
struct settle *settle_new(void);

/*
 * Free the set and every case still in it (their userdata is not touched: the
 * caller releases it first, e.g. with settle_foreach). Accepts NULL; returns NULL.
 */
struct settle *settle_free(struct settle *s);

/*
 * Start settling case 'name' of watch 'watch' at time 'now'; a walk is due at once.
 * 'name' is copied. Returns the case, or NULL on out-of-memory or when that case
 * is already settling (settle_find() it instead).
 */
struct settle_case *settle_add(struct settle *s, unsigned watch, const char *name,
			       const struct settle_params *p, int64_t now, void *userdata) GC_WUR;

/* The settling case (watch, name), or NULL. */
struct settle_case *settle_find(const struct settle *s, unsigned watch, const char *name);

/* Stop settling a case and free it (not its userdata). Accepts NULL. */
void settle_remove(struct settle *s, struct settle_case *c);

/* Number of settling cases. */
size_t settle_count(const struct settle *s);

/*
 * Call cb for every case of 'watch' (or of every watch when watch is
 * SETTLE_ALL_WATCHES). cb may settle_remove() the case it is given, and no other.
 */
#define SETTLE_ALL_WATCHES ((unsigned)-1)
void settle_foreach(struct settle *s, unsigned watch, void (*cb)(struct settle_case *c, void *ud),
		    void *ud);

/* The earliest due time over all cases, SETTLE_NEVER when there is none. */
int64_t settle_next_due(const struct settle *s);

/* The case with the earliest due time when that time is <= now, else NULL. */
struct settle_case *settle_pop_due(const struct settle *s, int64_t now);

/*
 * Something changed under the case at 'now' (an inotify event, or for the
 * daemon's own purposes any sign of a write): the quiet period restarts.
 */
void settle_activity(struct settle *s, struct settle_case *c, int64_t now);

/* The ready marker appeared: a walk is due at once. */
void settle_marker(struct settle *s, struct settle_case *c, int64_t now);

/*
 * What to do with a case at 'now': SETTLE_WALK when its walk is due, SETTLE_FAIL
 * when max_settle_ms have passed (the reason is set), else SETTLE_WAIT.
 */
enum settle_verdict settle_check(struct settle *s, struct settle_case *c, int64_t now);

/*
 * Report the walk made for a SETTLE_WALK verdict. Returns SETTLE_READY,
 * SETTLE_FAIL (reason set) or SETTLE_WAIT (due time updated).
 */
enum settle_verdict settle_walked(struct settle *s, struct settle_case *c, int64_t now,
				  const struct settle_walk *w);

/* Accessors. */
static inline const char *
settle_case_name(const struct settle_case *c)
{
	return c->name;
}

static inline unsigned
settle_case_watch(const struct settle_case *c)
{
	return c->watch;
}

static inline void *
settle_case_userdata(const struct settle_case *c)
{
	return c->userdata;
}

static inline int64_t
settle_case_due(const struct settle_case *c)
{
	return c->due;
}

static inline int64_t
settle_case_started(const struct settle_case *c)
{
	return c->started;
}

static inline enum settle_reason
settle_case_reason(const struct settle_case *c)
{
	return c->reason;
}

/*
 * Plan the next walk of a case at 'when' whatever its state (the caller could
 * not act on a verdict, e.g. a queue write failed, and tries again later).
 */
void settle_retry(struct settle *s, struct settle_case *c, int64_t when);

/* Change the parameters of a settling case (configuration reloaded). */
void settle_set_params(struct settle *s, struct settle_case *c, const struct settle_params *p);

/* A short English description of a reason, e.g. "still changing". */
const char *settle_reason_text(enum settle_reason reason);

#endif
