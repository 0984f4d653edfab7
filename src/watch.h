/*
 * watch.h: inotify for the watch folders and the cases settling in them (watch_ prefix).
 *
 * One struct watch is one inotify instance for the whole daemon. It knows two
 * kinds of watched directories:
 * - roots: the watch folders, identified by a small id the caller chooses (the
 *   daemon uses the index of its watch). A root reports its direct children
 *   appearing, changing and going away, and its own disappearance.
 * - cases: every directory of a directory case while it settles. A case is
 *   registered with watch_case_add(), which watches the case directory and every
 *   directory below it, and released with watch_case_remove() once the case is
 *   queued or failed (the kernel's watch budget, fs.inotify.max_user_watches, is
 *   finite). A directory created inside a case later is watched as soon as its
 *   event arrives, and then listed, because inotify is not recursive and anything
 *   created in it before its watch existed produced no event: the listing adds
 *   watches for its subdirectories, and the event reported for it restarts the
 *   case's quiet period, so the case's next walk sees those files.
 *
 * Events reach the caller through a callback, decoded into struct watch_event.
 * watch_read() reads the inotify descriptor; watch_feed() decodes a buffer of raw
 * struct inotify_event records, so tests can inject events without a kernel.
 *
 * Ignored names (scan_name_ignored(): '.'-names, *.tmp, *.part, *.partial, *~)
 * in a root produce no events: they are not cases. Inside a case they are not
 * part of the case either (scan skips them), but writing one means the case is
 * still being written, so they are reported as activity (never as the marker,
 * except the root's ready marker itself, which may well be ".ready"); ignored
 * directories inside a case are not watched.
 *
 * This module never logs above debug and never decides anything about a case:
 * the daemon does, from the events.
 *
 * Test seam (tests only; never set in production). Two environment variables,
 * read by this module, fake what a test machine cannot provide, so that the
 * fallbacks to periodic scanning run in the unit tests and in the real daemon:
 * - GCDROP_TEST_WATCH_LIMIT=N: a watcher (read at watch_new()) holds at most N
 *   watches; adding one more fails with ENOSPC, exactly as inotify_add_watch
 *   does when fs.inotify.max_user_watches is exhausted (0: not even the
 *   roots). Re-adding a directory that is already watched is refused too.
 * - GCDROP_TEST_NETFS=PATH: watch_fs_kind() reports WATCH_FS_NETWORK for PATH
 *   and every path below it (after statfs succeeded), as for an NFS mount.
 */
#ifndef GCDROP_WATCH_H
#define GCDROP_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrs.h"

struct watch;
struct watch_case;

enum watch_event_kind {
	/* A direct child of a root appeared or changed (created, moved in, written). */
	WATCH_EV_CHILD,
	/* A direct child of a root was deleted or moved away. */
	WATCH_EV_CHILD_GONE,
	/* Something changed inside a registered case (at any depth). */
	WATCH_EV_ACTIVITY,
	/* A root folder was deleted or moved away; its watch is gone. */
	WATCH_EV_ROOT_GONE,
	/* The kernel's event queue overflowed: events were lost, rescan every root. */
	WATCH_EV_OVERFLOW,
	/*
	 * The watch limit was reached while watching a new directory of a case:
	 * that case is no longer fully covered by inotify and must be polled.
	 */
	WATCH_EV_LIMIT,
};

struct watch_event {
	enum watch_event_kind kind;
	unsigned root;		/* root id (all kinds but OVERFLOW) */
	const char *case_name;	/* CHILD, CHILD_GONE, ACTIVITY, LIMIT */
	void *case_userdata;	/* ACTIVITY, LIMIT: what watch_case_add() was given */
	bool is_dir;		/* CHILD, CHILD_GONE: the child is a directory */
	bool marker;		/* CHILD, ACTIVITY: the ready marker appeared at the case's top */
	uint32_t mask;		/* the raw inotify mask, for debugging */
};

typedef void (*watch_cb)(const struct watch_event *ev, void *userdata);

#define WATCH_TEST_LIMIT_ENV "GCDROP_TEST_WATCH_LIMIT"
#define WATCH_TEST_NETFS_ENV "GCDROP_TEST_NETFS"

/* Filesystem kinds of watch_fs_kind(). */
enum watch_fs {
	WATCH_FS_LOCAL,
	WATCH_FS_NETWORK,	/* NFS, SMB, CIFS: inotify misses other hosts' writes */
};

/*
 * A new inotify instance (non-blocking, close-on-exec). Returns 0 and the watcher
 * in *ret, or a negative errno (-EMFILE when fs.inotify.max_user_instances is
 * reached, -ENOMEM).
 */
int watch_new(struct watch **ret) GC_WUR;

/*
 * Close the instance and free every root and case still registered (case handles
 * the caller still holds become invalid). Accepts NULL; returns NULL.
 */
struct watch *watch_free(struct watch *w);

/* The descriptor to poll for input. */
int watch_fd(const struct watch *w);

/*
 * Whether 'path' is on a network filesystem (statfs f_type NFS 0x6969, SMB
 * 0x517B, CIFS 0xFF534D42, SMB2 0xFE534D42; or below GCDROP_TEST_NETFS). Returns
 * 0 and stores the kind, or a negative errno from statfs (-ENOENT when the path
 * does not exist).
 */
int watch_fs_kind(const char *path, enum watch_fs *ret) GC_WUR;

/*
 * Watch root folder 'path' under id 'root' (any value but (unsigned)-1; ids are
 * the caller's, one per root). 'marker' is the ready marker name, or NULL. Both
 * strings are copied. Returns 0; -EEXIST when the id is in use; -ENOENT,
 * -ENOTDIR, -EACCES from inotify_add_watch for a missing or unusable folder;
 * -ENOSPC when the watch limit is reached (the caller polls the root instead).
 * The caller decides about network filesystems (watch_fs_kind) beforehand.
 */
int watch_root_add(struct watch *w, unsigned root, const char *path, const char *marker) GC_WUR;

/*
 * Stop watching root 'root' (no-op when it is not watched). Cases registered
 * under it are not touched: the caller removes them.
 */
void watch_root_remove(struct watch *w, unsigned root);

/* Whether root 'root' is currently watched. */
bool watch_root_watched(const struct watch *w, unsigned root);

/*
 * Register case 'name' of root 'root' (whose folder is 'root_path') and watch
 * its directory and every directory below it. A single-file case needs no watch
 * of its own (the root reports its changes); it still gets a handle. 'userdata'
 * comes back in the case's events. Returns 0 and the handle in *ret; -ENOSPC
 * when the watch limit was reached (the handle is still returned in *ret, with
 * the watches that could be set, and the caller must poll the case); -ENOENT
 * when the case is gone; -ENOMEM. On other errors nothing is registered.
 */
int watch_case_add(struct watch *w, unsigned root, const char *root_path, const char *name,
		   void *userdata, struct watch_case **ret) GC_WUR;

/* Number of inotify watches a case holds (tests and debugging). */
size_t watch_case_n_watches(const struct watch_case *c);

/* Remove the watches of a case and free its handle. Accepts NULL; returns NULL. */
struct watch_case *watch_case_remove(struct watch *w, struct watch_case *c);

/*
 * Decode 'len' bytes of raw struct inotify_event records and call cb for each
 * event they mean (zero or more per record). Returns 0, or -EBADMSG when the
 * buffer ends inside a record (the complete records before it are delivered).
 * Callbacks may add and remove roots and cases, except that a callback for
 * WATCH_EV_ACTIVITY must not remove the case it reports (a WATCH_EV_LIMIT for
 * the same case may follow it).
 */
int watch_feed(struct watch *w, const void *buf, size_t len, watch_cb cb, void *userdata);

/*
 * Read and decode everything the inotify descriptor holds, until it would block
 * or 'max_bytes' were read (0: no limit), so one busy loop turn cannot starve the
 * others. Returns 0 or a negative errno from read(2).
 */
int watch_read(struct watch *w, size_t max_bytes, watch_cb cb, void *userdata);

/* Total inotify watches held (roots and cases). */
size_t watch_n_watches(const struct watch *w);

#endif
