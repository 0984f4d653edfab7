/*
 * results.h: receipts and what happens to a finished case's files (results_ prefix).
 *
 * The receipt, gcdrop-receipt.json, tells what a case became: its fingerprint,
 * every file with its size and mtime (what its upload was checked against; the
 * content is not hashed), the platform objects (pks and URLs) and the times.
 * It is written atomically (a temporary file in the same directory,
 * fsync, rename, fsync of the directory), either into results_dir/<case>/ when
 * the watch has a results_dir, or beside a case that was moved
 * (done_dir/<case>/gcdrop-receipt.json for a directory case,
 * done_dir/<case>.gcdrop-receipt.json for a one-file case; failed_dir likewise).
 * A case that is kept in its watch folder without a results_dir gets no
 * receipt file (writing into the watch folder would change the case): the queue
 * holds the same facts (`gcdrop status CASE`).
 *
 * on_success / on_failure: keep does nothing; move renames the case into
 * done_dir / failed_dir (rename(2) without replacing anything; across file
 * systems a copy with fsync under a temporary name, a rename, then the
 * original is deleted), never overwriting an existing entry: "-1", "-2", ...
 * is added before the extension; delete removes the case without following
 * symlinks. Nothing here logs; errors come back with a message.
 */
#ifndef GCDROP_RESULTS_H
#define GCDROP_RESULTS_H

#include <stdbool.h>
#include <stdint.h>

#include "attrs.h"
#include "config.h"
#include "store.h"

#define RESULTS_RECEIPT_NAME "gcdrop-receipt.json"

/* What the receipt says about the destination. Borrowed strings. */
struct results_dest {
	const char *kind;		/* "archive", "reader-study" */
	const char *slug;
	const char *url;		/* the collection's api_url, may be NULL */
};

/*
 * Build the receipt of case 'case_id' from the store (the case, its files, its
 * remotes). 'finished' is the wall-clock time to put in it. On success stores a
 * malloc'd JSON text in *ret_json. Returns 0 or a negative errno.
 */
int results_receipt_build(struct store *store, int64_t case_id, const struct results_dest *dest,
			  int64_t finished, char **ret_json) GC_WUR;

/*
 * Write 'data' as the file dir/name atomically (creating dir and its parents
 * with mode 0755 when missing). Returns 0 or a negative errno.
 */
int results_write_atomic(const char *dir, const char *name, const char *data, size_t len) GC_WUR;

/*
 * A path in 'dir' for an entry named 'name' that does not exist yet: dir/name,
 * else dir/<stem>-1<ext>, -2, ... (the extension, from the first '.' after
 * the first character, is kept). malloc'd in *ret_path. Returns 0, -EEXIST
 * after 10000 tries, or a negative errno.
 */
int results_free_target(const char *dir, const char *name, char **ret_path) GC_WUR;

/*
 * Move 'src' (a file or a directory tree) to 'dst', which must not exist:
 * renameat2(RENAME_NOREPLACE), or across file systems a copy (files fsynced,
 * symlinks copied as symlinks) under a temporary name in dst's directory, a
 * rename into place, and the removal of src. Returns 0, -EEXIST when dst
 * exists, or a negative errno with a message in *reterr_msg (may be NULL).
 * 'force_copy' makes it take the copy path (for tests).
 */
int results_move(const char *src, const char *dst, bool force_copy, char **reterr_msg) GC_WUR;

/* Remove a file or a directory tree without following symlinks. -ENOENT when absent. */
int results_delete(const char *path) GC_WUR;

/* The plan for a finished case (computed before anything is done, so it can be recorded). */
struct results_plan {
	enum config_action action;
	char *target;		/* move: where the case goes */
	char *receipt_dir;	/* where the receipt goes; NULL: no receipt file */
	char *receipt_name;
	char *results;		/* what `gcdrop status` shows as results; NULL: none */
};

/*
 * Plan what to do with case 'c' of watch 'w' that ended succeeded (ok) or
 * failed. 'recorded' is the results path recorded by an earlier attempt (a
 * crash after the move), or NULL. Returns 0 or a negative errno.
 */
int results_plan_make(const struct config_watch *w, const struct store_case *c, bool ok,
		      const char *recorded, struct results_plan *ret) GC_WUR;
void results_plan_clear(struct results_plan *p);

/*
 * Carry out a plan for the case at 'case_path' with receipt text 'receipt'
 * (may be NULL: none). A case already gone (moved or deleted by an earlier
 * attempt) is not an error. Returns 0 or a negative errno with a message.
 */
int results_execute(const struct results_plan *p, const char *case_path, const char *receipt,
		    char **reterr_msg) GC_WUR;

#endif
