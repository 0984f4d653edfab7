/*
 * diskguard.h: min_free_space for the state and results directories (diskguard_ prefix).
 *
 * Spec section 3: when free space on the state directory or on a results
 * directory falls below min_free_space, the daemon stops taking new work, says
 * so once, keeps what is queued, and goes on when space returns. This module
 * measures and remembers; the daemon decides what "no new work" means.
 *
 * Free space is what an unprivileged writer may use: statvfs() f_bavail *
 * f_frsize (root's reserved blocks do not count: the daemon runs as its own
 * user). A path that does not exist yet (a results_dir the first result will
 * create) is measured on its nearest existing ancestor, which is the filesystem
 * it will be created on. "Enough" is free >= min_free: exactly at the threshold
 * is enough. A min_free <= 0 disables the guard (nothing is measured).
 *
 * Logging, once per transition and per path, with MESSAGE_ID LOG_MID_DISK and
 * GCDROP_BYTES = the free bytes:
 *   WARNING "free space on '/var/lib/gcdrop' is 512 MiB, below min_free_space
 *            1 GiB: no new work is started until space returns"
 *   NOTICE  "free space on '/var/lib/gcdrop' is 2.5 GiB again, at least
 *            min_free_space 1 GiB: new work is started again"
 *   (when both sizes round to the same text, the warning gives them in bytes:
 *   "is 1073741823 B, below min_free_space 1073741824 B")
 *   WARNING "cannot measure free space on 'PATH': REASON, ignoring" (once per
 *            distinct error; the path keeps its previous verdict meanwhile)
 * Everything here belongs to the main thread; nothing is thread-safe.
 */
#ifndef GCDROP_DISKGUARD_H
#define GCDROP_DISKGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrs.h"
#include "config.h"

/*
 * How free space is measured. fn returns 0 and sets *ret_free (bytes), or a
 * negative errno. Tests inject a table; a NULL probe (or a NULL fn) means
 * diskguard_statvfs().
 */
struct diskguard_probe {
	int (*fn)(const char *path, int64_t *ret_free, void *userdata);
	void *userdata;
};

/*
 * The real probe: statvfs() f_bavail * f_frsize of the filesystem holding path,
 * or of its nearest existing ancestor when path does not exist (capped at
 * INT64_MAX). Returns 0 and sets *ret_free, or a negative errno (-EACCES, ...).
 */
int diskguard_statvfs(const char *path, int64_t *ret_free) GC_WUR;

/*
 * What the guard remembers about one path. Start it with DISKGUARD_STATE_INIT.
 * Use the API; the members are visible so that the state can be embedded.
 */
struct diskguard_state {
	bool tripped;		/* below min_free at the last successful probe */
	int error;		/* the failed probe's errno last logged; 0 after a success */
	int64_t free;		/* bytes at the last successful probe; -1 unknown */
};

#define DISKGUARD_STATE_INIT { .tripped = false, .error = 0, .free = -1 }

/*
 * Measure path with probe and compare with min_free, updating *state and logging
 * on a transition only (see the top of this file). Returns 0 when there is
 * enough space (or min_free <= 0: no probe is made and the state is cleared),
 * -ENOSPC when there is less than min_free, or the probe's negative errno when
 * it failed (state->tripped is then left as it was, and decides).
 */
int diskguard_check(const char *path, int64_t min_free, const struct diskguard_probe *probe,
    struct diskguard_state *state);

/* ---- a set of paths checked together ---- */

struct diskguard;

/*
 * A guard with no paths and min_free 0. probe is copied (NULL: statvfs).
 * Returns NULL on out-of-memory.
 */
struct diskguard *diskguard_new(const struct diskguard_probe *probe);

/* Free a guard. Accepts NULL; returns NULL. */
struct diskguard *diskguard_free(struct diskguard *g);

/*
 * Replace the guarded paths and the minimum (on start and on every reload).
 * paths[] are copied; NULL entries and duplicates are skipped. A path that was
 * guarded before keeps its state, so a reload does not repeat a warning; the
 * state of a dropped path is forgotten. Returns 0 or -ENOMEM (the guard is then
 * unchanged).
 */
int diskguard_set(struct diskguard *g, int64_t min_free, const char *const *paths,
    size_t n_paths) GC_WUR;

/*
 * diskguard_set() with the configuration's min_free_space, its state_dir and
 * the results_dir of every watch that has one.
 */
int diskguard_set_config(struct diskguard *g, const struct config *cfg) GC_WUR;

/*
 * Measure every path (each logs its own transitions) and return whether new
 * work may start: true when no path is tripped.
 */
bool diskguard_check_all(struct diskguard *g);

/* The verdict of the last diskguard_check_all(), without measuring. */
bool diskguard_ok(const struct diskguard *g);

/* The number of guarded paths, and one path's name and state (NULL past the end). */
size_t diskguard_n_paths(const struct diskguard *g);
const char *diskguard_path(const struct diskguard *g, size_t i);
const struct diskguard_state *diskguard_path_state(const struct diskguard *g, size_t i);

#endif
