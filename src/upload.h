/*
 * upload.h: the multipart upload of one file (upload_ prefix).
 *
 * A struct upload_file is the main thread's view of one file of a case on its
 * way to the platform (contract section 3): it is built from the file's store
 * row and recorded parts, hands out operations (struct pipeline_op) for the
 * pool, and takes their results back, writing to the store everything a later
 * step needs before the network call that depends on it:
 *
 *   create  -> store_file_set_upload (pk, api_url, s3_upload_id) at once;
 *   presign -> URLs kept in memory only (they expire; asking again is free);
 *   PUT     -> store_part_done (number, ETag, size) for every part;
 *   complete-> store_file_set_completed.
 *
 * After a restart a file with an upload but not completed first lists the
 * parts the platform holds (list-parts) and keeps those whose size is right;
 * an upload the platform no longer knows is forgotten (store_file_reset_upload)
 * and the file starts again. Before every part and at completion the worker
 * compares the file's size and mtime with the queued ones: a difference (or a
 * vanished file) is reported as UPLOAD_CHANGED and nothing is recorded.
 *
 * Part size: UPLOAD_PART_SIZE, or for a file that would need more than
 * UPLOAD_MAX_PARTS parts the smallest multiple of 1 MiB that fits. A 0-byte
 * file is sent as one empty part (storage needs at least one part; a
 * completion with none is refused).
 */
#ifndef GCDROP_UPLOAD_H
#define GCDROP_UPLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrs.h"
#include "pipeline.h"
#include "store.h"

#define UPLOAD_PART_SIZE ((int64_t)32 << 20)
#define UPLOAD_MAX_PARTS 10000
#define UPLOAD_PRESIGN_BATCH 16
#define UPLOAD_URL_TTL_MS ((int64_t)30 * 60 * 1000)	/* ask again before they expire */

/*
 * The part size for a file of 'size' bytes when parts of 'base' bytes are
 * wanted (0: UPLOAD_PART_SIZE): base, unless size / base needs more than
 * UPLOAD_MAX_PARTS parts; then the smallest multiple of 1 MiB that fits.
 */
int64_t upload_part_size(int64_t size, int64_t base);

/* The number of parts of a file: at least 1 (an empty file has one empty part). */
int upload_part_count(int64_t size, int64_t part_size);

enum upload_phase {
	UPLOAD_NEED_CREATE,
	UPLOAD_RECONCILE,	/* after a restart: list-parts first */
	UPLOAD_PARTS,
	UPLOAD_COMPLETE,
	UPLOAD_DONE,
};

/* The main thread's state of one file. Use the API; visible for embedding. */
struct upload_file {
	int64_t file_id;
	const char *case_root;	/* borrowed (upload_file_init): the case, or the one file */
	bool single_file;	/* the path is case_root itself, not case_root/relpath */
	size_t root_len;	/* case_root[0..root_len) is the folder holding the case */
	char *relpath;
	char *upload_name;
	int64_t size;
	int64_t mtime_ns;
	enum upload_phase phase;
	bool busy;		/* the single op of create/reconcile/complete is out */
	bool presigning;
	struct api_upload up;	/* pk, api_url, s3_upload_id once created */
	int64_t part_size;
	int n_parts;
	unsigned char *state;	/* per part: 0 missing, 1 in flight, 2 done */
	char **etags;		/* per part, when done */
	char **urls;		/* per part, presigned, when known */
	int64_t urls_at_ms;	/* when the URLs were signed */
	int in_flight;		/* PUTs out */
	int parts_done;
	int64_t bytes_done;	/* bytes of parts recorded */
	enum upload_phase check_from;	/* a GET of the upload is due (check) ... */
	bool check;			/* ... after a refusal in this phase */
};

/*
 * Set up 'uf' for the file row 'f' of a case whose files live under
 * 'case_root' (the case directory, or for a one-file case the file itself:
 * then relpath is not appended). 'case_root' is borrowed: it must outlive
 * 'uf' (the file's path is built from it for each operation, so that a case
 * of many files does not hold a path per file). The recorded parts are read
 * from the store. part_size 0 means UPLOAD_PART_SIZE. Returns 0 or a negative
 * errno.
 */
int upload_file_init(struct upload_file *uf, struct store *store, const struct store_file *f,
		     const char *case_root, bool single_file, int64_t part_size) GC_WUR;

/* Free what 'uf' holds. */
void upload_file_done(struct upload_file *uf);

/* Forget the upload (after a reset in the store): start again with create. */
void upload_file_restart(struct upload_file *uf);

/*
 * The next operations of this file, at most 'max' of them, appended to the list
 * *ops (linked through op->next). Returns how many were added, or -ENOMEM.
 */
int upload_file_next(struct upload_file *uf, int64_t now_ms, int max, struct pipeline_op **ops) GC_WUR;

/* What a finished operation means for the file. */
enum upload_event {
	UPLOAD_PROGRESS,	/* recorded; ask for the next ops */
	UPLOAD_FINISHED,	/* the file's upload is complete */
	UPLOAD_CHANGED,		/* the file changed or vanished: the case must settle again */
	UPLOAD_ERROR,		/* the op failed: the caller decides on op->err.cls */
	UPLOAD_AGAIN,		/* the file's state was repaired (reset, new URLs); go on */
};

/*
 * Take the result of 'op' (one of this file's, already run or cancelled) and
 * record it in the store (inside the caller's transaction). The op stays the
 * caller's. A cancelled op just returns its part to "missing".
 */
enum upload_event upload_file_on_done(struct upload_file *uf, struct store *store,
				      struct pipeline_op *op);

/* An op was dropped without running (the case stopped): undo its in-flight mark. */
void upload_file_forget_op(struct upload_file *uf, const struct pipeline_op *op);

/* An abort op for this file's upload (best effort, e.g. after a change); NULL if none. */
struct pipeline_op *upload_file_abort_op(const struct upload_file *uf);

/* Run an upload op on a worker. */
void upload_op_run(struct api *api, struct pipeline_op *op, const atomic_int *cancel);

#endif
