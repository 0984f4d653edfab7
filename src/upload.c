/*
 * upload.c: the multipart upload of one file, as a state machine of operations.
 *
 * DESIGN
 * The main thread keeps a struct upload_file per file being uploaded; workers
 * run the operations it hands out (upload_op_run) and never touch it. The
 * phases are
 *
 *   NEED_CREATE --create--> PARTS --all parts recorded--> COMPLETE --> DONE
 *        ^                    ^
 *        |   reset            |  list-parts (after a restart)
 *        +---- RECONCILE -----+
 *
 * In PARTS every missing part needs a presigned URL (asked for in batches of
 * UPLOAD_PRESIGN_BATCH, one presign at a time per file) and a PUT; several
 * PUTs of one file may be out at once, bounded only by what the caller asks
 * for (the pool's size). Memory per part in flight is the http layer's upload
 * buffer: a part is streamed from the file with pread(), never held whole.
 *
 * Every fact a later step needs is written to the store in upload_file_on_done,
 * inside the caller's per-turn transaction, before the next operation that
 * depends on it is handed out (the durability rule of store.h). A part is
 * recorded only with its ETag; a cancelled or failed part is simply not
 * recorded, so it is sent again.
 *
 * Refusals that say something about the upload itself are repaired here: a
 * PUT answered 403 (the URL expired) drops the URLs so that fresh ones are
 * asked for; storage's NoSuchUpload (404), a list-parts that the platform can
 * no longer serve, and an upload that is gone or aborted reset the file (its
 * parts are forgotten in the store) and start it again. A completion that
 * failed is checked with GET uploads/<pk>/ (contract 7.4): Completed means the
 * answer was lost and the file is done.
 */
#include <errno.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backoff.h"
#include "http.h"
#include "log.h"
#include "upload.h"

#define MIB ((int64_t)1 << 20)

int64_t
upload_part_size(int64_t size, int64_t base)
{
	int64_t ps;

	if (base <= 0)
		base = UPLOAD_PART_SIZE;
	if (size <= base * UPLOAD_MAX_PARTS)
		return base;
	/* The smallest multiple of 1 MiB with size <= ps * UPLOAD_MAX_PARTS. */
	ps = (size + UPLOAD_MAX_PARTS - 1) / UPLOAD_MAX_PARTS;
	ps = (ps + MIB - 1) / MIB * MIB;
	return ps;
}

int
upload_part_count(int64_t size, int64_t part_size)
{
	if (size <= 0 || part_size <= 0)
		return 1;
	return (int)((size + part_size - 1) / part_size);
}

static int64_t
part_len(const struct upload_file *uf, int number)
{
	int64_t off = (int64_t)(number - 1) * uf->part_size;
	int64_t left = uf->size - off;

	if (left < 0)
		return 0;
	return left < uf->part_size ? left : uf->part_size;
}

static void
free_urls(struct upload_file *uf)
{
	if (uf->urls == NULL)
		return;
	for (int i = 0; i < uf->n_parts; i++) {
		free(uf->urls[i]);
		uf->urls[i] = NULL;
	}
}

static void
free_parts(struct upload_file *uf)
{
	free_urls(uf);
	if (uf->etags != NULL)
		for (int i = 0; i < uf->n_parts; i++)
			free(uf->etags[i]);
	free(uf->etags);
	free(uf->urls);
	free(uf->state);
	uf->etags = NULL;
	uf->urls = NULL;
	uf->state = NULL;
	uf->parts_done = 0;
	uf->bytes_done = 0;
}

static int
alloc_parts(struct upload_file *uf)
{
	free_parts(uf);
	uf->state = calloc((size_t)uf->n_parts, 1);
	uf->etags = calloc((size_t)uf->n_parts, sizeof(char *));
	uf->urls = calloc((size_t)uf->n_parts, sizeof(char *));
	if (uf->state == NULL || uf->etags == NULL || uf->urls == NULL) {
		free_parts(uf);
		return -ENOMEM;
	}
	return 0;
}

static int
set_str(char **dst, const char *src)
{
	char *s = NULL;

	if (src != NULL) {
		s = strdup(src);
		if (s == NULL)
			return -ENOMEM;
	}
	free(*dst);
	*dst = s;
	return 0;
}

int
upload_file_init(struct upload_file *uf, struct store *store, const struct store_file *f,
		 const char *case_root, bool single_file, int64_t part_size)
{
	struct store_part *parts = NULL;
	size_t n = 0;
	int r;

	memset(uf, 0, sizeof(*uf));
	uf->file_id = f->id;
	uf->size = f->size;
	uf->mtime_ns = f->mtime_ns;
	uf->part_size = upload_part_size(f->size, part_size);
	uf->n_parts = upload_part_count(f->size, uf->part_size);
	/*
	 * The folder that holds the case is trusted as it is (it may sit behind a
	 * symlink, /srv -> /data/srv); from there on, open_checked() resolves no
	 * symlink at all, so a case swapped for a symlink is noticed.
	 */
	{
		const char *slash = strrchr(case_root, '/');

		uf->root_len = slash != NULL ? (size_t)(slash - case_root) : 0;
	}
	uf->case_root = case_root;
	uf->single_file = single_file;
	r = -ENOMEM;
	if (set_str(&uf->relpath, f->relpath) < 0 || set_str(&uf->upload_name, f->upload_name) < 0)
		goto fail;
	if (f->upload_pk == NULL) {
		uf->phase = UPLOAD_NEED_CREATE;
		return 0;
	}
	if (set_str(&uf->up.pk, f->upload_pk) < 0 || set_str(&uf->up.api_url, f->upload_url) < 0 ||
	    set_str(&uf->up.s3_upload_id, f->multipart_id) < 0)
		goto fail;
	if (f->completed) {
		uf->phase = UPLOAD_DONE;
		uf->bytes_done = uf->size;
		uf->parts_done = uf->n_parts;
		return 0;
	}
	if (alloc_parts(uf) < 0)
		goto fail;
	/* What the store recorded is a hint; list-parts decides what the platform holds. */
	r = store_part_list(store, f->id, &parts, &n);
	if (r < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		int k = parts[i].number - 1;

		if (k < 0 || k >= uf->n_parts || parts[i].size != part_len(uf, parts[i].number))
			continue;
		uf->etags[k] = parts[i].etag;
		parts[i].etag = NULL;
	}
	store_part_list_free(parts, n);
	uf->phase = UPLOAD_RECONCILE;
	return 0;
fail:
	upload_file_done(uf);
	return r;
}

void
upload_file_done(struct upload_file *uf)
{
	free_parts(uf);
	free(uf->relpath);
	free(uf->upload_name);
	api_upload_clear(&uf->up);
	memset(uf, 0, sizeof(*uf));
}

void
upload_file_restart(struct upload_file *uf)
{
	free_parts(uf);
	api_upload_clear(&uf->up);
	uf->phase = UPLOAD_NEED_CREATE;
	uf->busy = false;
	uf->presigning = false;
	uf->check = false;
	uf->in_flight = 0;
}

static struct pipeline_op *
new_op(struct upload_file *uf, enum pipeline_op_kind kind)
{
	struct pipeline_op *op = pipeline_op_new(kind);

	if (op == NULL)
		return NULL;
	op->sub = uf;
	op->exp_size = uf->size;
	op->exp_mtime_ns = uf->mtime_ns;
	if (kind != PIPELINE_OP_UPLOAD_CREATE &&
	    (set_str(&op->upload.pk, uf->up.pk) < 0 ||
	     set_str(&op->upload.api_url, uf->up.api_url) < 0 ||
	     set_str(&op->upload.s3_upload_id, uf->up.s3_upload_id) < 0))
		return pipeline_op_free(op);
	if (uf->single_file)
		op->path = strdup(uf->case_root);
	else if (asprintf(&op->path, "%s/%s", uf->case_root, uf->relpath) < 0)
		op->path = NULL;
	if (op->path == NULL)
		return pipeline_op_free(op);
	op->root_len = uf->root_len;
	return op;
}

static void
push(struct pipeline_op ***tail, struct pipeline_op *op)
{
	**tail = op;
	*tail = &op->next;
}

int
upload_file_next(struct upload_file *uf, int64_t now_ms, int max, struct pipeline_op **ops)
{
	struct pipeline_op **tail = ops;
	struct pipeline_op *op;
	int added = 0;

	while (*tail != NULL)
		tail = &(*tail)->next;
	if (max <= 0 || uf->busy)
		return 0;
	if (uf->check) {
		op = new_op(uf, PIPELINE_OP_UPLOAD_GET);
		if (op == NULL)
			return -ENOMEM;
		uf->busy = true;
		push(&tail, op);
		return 1;
	}
	switch (uf->phase) {
	case UPLOAD_NEED_CREATE:
		op = new_op(uf, PIPELINE_OP_UPLOAD_CREATE);
		if (op == NULL || set_str(&op->title, uf->upload_name) < 0) {
			pipeline_op_free(op);
			return -ENOMEM;
		}
		uf->busy = true;
		push(&tail, op);
		return 1;
	case UPLOAD_RECONCILE:
		op = new_op(uf, PIPELINE_OP_UPLOAD_LIST_PARTS);
		if (op == NULL)
			return -ENOMEM;
		uf->busy = true;
		push(&tail, op);
		return 1;
	case UPLOAD_COMPLETE:
		if (uf->in_flight > 0 || uf->presigning)
			return 0;
		op = new_op(uf, PIPELINE_OP_UPLOAD_COMPLETE);
		if (op == NULL)
			return -ENOMEM;
		op->parts = calloc((size_t)uf->n_parts, sizeof(*op->parts));
		if (op->parts == NULL) {
			pipeline_op_free(op);
			return -ENOMEM;
		}
		op->n_parts = (size_t)uf->n_parts;
		for (int i = 0; i < uf->n_parts; i++) {
			op->parts[i].number = i + 1;
			op->parts[i].size = part_len(uf, i + 1);
			if (set_str(&op->parts[i].etag, uf->etags[i]) < 0) {
				pipeline_op_free(op);
				return -ENOMEM;
			}
		}
		uf->busy = true;
		push(&tail, op);
		return 1;
	case UPLOAD_DONE:
		return 0;
	case UPLOAD_PARTS:
		break;
	}

	/* PARTS: URLs older than their useful life are dropped (asked for again). */
	if (uf->urls_at_ms != 0 && now_ms - uf->urls_at_ms > UPLOAD_URL_TTL_MS && !uf->presigning) {
		free_urls(uf);
		uf->urls_at_ms = 0;
	}
	for (int i = 0; i < uf->n_parts && added < max; i++) {
		if (uf->state[i] != 0 || uf->urls[i] == NULL)
			continue;
		op = new_op(uf, PIPELINE_OP_UPLOAD_PUT);
		if (op == NULL || set_str(&op->url, uf->urls[i]) < 0) {
			pipeline_op_free(op);
			return added > 0 ? added : -ENOMEM;
		}
		op->number = i + 1;
		op->offset = (int64_t)i * uf->part_size;
		op->length = part_len(uf, i + 1);
		uf->state[i] = 1;
		uf->in_flight++;
		push(&tail, op);
		added++;
	}
	if (added < max && !uf->presigning) {
		int nums[UPLOAD_PRESIGN_BATCH];
		size_t n = 0;

		for (int i = 0; i < uf->n_parts && n < UPLOAD_PRESIGN_BATCH; i++)
			if (uf->state[i] == 0 && uf->urls[i] == NULL)
				nums[n++] = i + 1;
		if (n > 0) {
			op = new_op(uf, PIPELINE_OP_UPLOAD_PRESIGN);
			if (op == NULL || (op->numbers = malloc(n * sizeof(int))) == NULL) {
				pipeline_op_free(op);
				return added > 0 ? added : -ENOMEM;
			}
			memcpy(op->numbers, nums, n * sizeof(int));
			op->n_numbers = n;
			uf->presigning = true;
			push(&tail, op);
			added++;
		}
	}
	if (uf->parts_done == uf->n_parts && uf->in_flight == 0) {
		uf->phase = UPLOAD_COMPLETE;
		if (added == 0)
			return upload_file_next(uf, now_ms, max, ops);
	}
	return added;
}

void
upload_file_forget_op(struct upload_file *uf, const struct pipeline_op *op)
{
	switch (op->kind) {
	case PIPELINE_OP_UPLOAD_PUT:
		if (op->number >= 1 && op->number <= uf->n_parts && uf->state != NULL &&
		    uf->state[op->number - 1] == 1) {
			uf->state[op->number - 1] = 0;
			uf->in_flight--;
		}
		break;
	case PIPELINE_OP_UPLOAD_PRESIGN:
		uf->presigning = false;
		break;
	default:
		uf->busy = false;
		break;
	}
}

/* Forget the file's upload in the store and in memory: it starts again. */
static enum upload_event
reset(struct upload_file *uf, struct store *store)
{
	int r = store_file_reset_upload(store, uf->file_id);

	if (r < 0)
		log_warning("cannot reset the upload of '%s' in the queue: %s", uf->relpath,
			    store_errmsg(store));
	upload_file_restart(uf);
	return UPLOAD_AGAIN;
}

static enum upload_event
record_completed(struct upload_file *uf, struct store *store)
{
	if (store_file_set_completed(store, uf->file_id) < 0)
		return UPLOAD_ERROR;
	free_parts(uf);
	/* Done: only the pk (a later check) and the api_url (the import) are needed. */
	free(uf->up.s3_upload_id);
	uf->up.s3_upload_id = NULL;
	uf->phase = UPLOAD_DONE;
	uf->parts_done = uf->n_parts;
	uf->bytes_done = uf->size;
	return UPLOAD_FINISHED;
}

static enum upload_event
on_put(struct upload_file *uf, struct store *store, struct pipeline_op *op)
{
	int k = op->number - 1;

	upload_file_forget_op(uf, op);
	if (op->cancelled)
		return UPLOAD_AGAIN;
	if (op->changed)
		return UPLOAD_CHANGED;
	if (op->err.cls == API_OK) {
		if (store_part_done(store, uf->file_id, op->number, op->etag, op->length) < 0) {
			snprintf(op->err.message, sizeof(op->err.message),
				 "cannot record a part in the queue: %s", store_errmsg(store));
			op->err.cls = API_RETRY;
			return UPLOAD_ERROR;
		}
		uf->state[k] = 2;
		free(uf->etags[k]);
		uf->etags[k] = op->etag;
		op->etag = NULL;
		free(uf->urls[k]);
		uf->urls[k] = NULL;
		uf->parts_done++;
		uf->bytes_done += op->length;
		if (uf->parts_done == uf->n_parts && uf->in_flight == 0)
			uf->phase = UPLOAD_COMPLETE;
		return UPLOAD_PROGRESS;
	}
	if (op->err.status == 403) {
		/* The URL expired or its signature is refused: sign again. */
		free_urls(uf);
		uf->urls_at_ms = 0;
		op->err.cls = API_RETRY;
		return UPLOAD_ERROR;
	}
	if (op->err.cls == API_GONE)
		return reset(uf, store);
	free(uf->urls[k]);
	uf->urls[k] = NULL;
	return UPLOAD_ERROR;
}

static enum upload_event
on_list_parts(struct upload_file *uf, struct store *store, struct pipeline_op *op)
{
	if (op->err.cls == API_GONE)
		return reset(uf, store);
	if (op->err.cls == API_RETRY && op->err.status >= 500) {
		/* Contract 7.4: Initialized with a failing list-parts means gone. */
		uf->check = true;
		uf->check_from = UPLOAD_RECONCILE;
		return UPLOAD_ERROR;
	}
	if (op->err.cls != API_OK)
		return UPLOAD_ERROR;
	for (int i = 0; i < uf->n_parts; i++) {
		uf->state[i] = 0;
		free(uf->etags[i]);
		uf->etags[i] = NULL;
	}
	uf->parts_done = 0;
	uf->bytes_done = 0;
	for (size_t i = 0; i < op->n_parts; i++) {
		const struct api_part *pt = &op->parts[i];
		int k = pt->number - 1;

		if (k < 0 || k >= uf->n_parts || uf->state[k] == 2 || pt->etag == NULL ||
		    pt->size != part_len(uf, pt->number))
			continue;
		if (store_part_done(store, uf->file_id, pt->number, pt->etag, pt->size) < 0)
			return UPLOAD_ERROR;
		uf->etags[k] = strdup(pt->etag);
		if (uf->etags[k] == NULL)
			return UPLOAD_ERROR;
		uf->state[k] = 2;
		uf->parts_done++;
		uf->bytes_done += pt->size;
	}
	uf->phase = uf->parts_done == uf->n_parts ? UPLOAD_COMPLETE : UPLOAD_PARTS;
	return UPLOAD_PROGRESS;
}

static enum upload_event
on_get(struct upload_file *uf, struct store *store, struct pipeline_op *op)
{
	const char *st = op->upload.status;

	if (op->err.cls == API_GONE)
		return reset(uf, store);
	if (op->err.cls != API_OK) {
		uf->check = true;
		return UPLOAD_ERROR;
	}
	if (st != NULL && strcmp(st, "Completed") == 0)
		return record_completed(uf, store);
	if (st == NULL || strcmp(st, "Initialized") != 0)
		return reset(uf, store);
	switch (uf->check_from) {
	case UPLOAD_PARTS:
		/* Initialized and presigning refused: the byte quota. */
		op->err.cls = API_LIMIT;
		snprintf(op->err.message, sizeof(op->err.message), "Upload limit reached");
		return UPLOAD_ERROR;
	case UPLOAD_RECONCILE:
		/* Still Initialized but its parts cannot be listed: start the file again. */
		return reset(uf, store);
	default:
		/* The completion failed and the upload is still open: list what it holds. */
		uf->phase = UPLOAD_RECONCILE;
		snprintf(op->err.message, sizeof(op->err.message),
			 "completing the upload of '%s' failed", uf->relpath);
		op->err.cls = API_RETRY;
		return UPLOAD_ERROR;
	}
}

enum upload_event
upload_file_on_done(struct upload_file *uf, struct store *store, struct pipeline_op *op)
{
	int64_t now = backoff_now_ms();

	if (op->kind == PIPELINE_OP_UPLOAD_PUT)
		return on_put(uf, store, op);
	upload_file_forget_op(uf, op);
	if (op->cancelled)
		return UPLOAD_AGAIN;
	switch (op->kind) {
	case PIPELINE_OP_UPLOAD_CREATE:
		if (op->err.cls != API_OK)
			return UPLOAD_ERROR;
		if (store_file_set_upload(store, uf->file_id, op->upload.pk, op->upload.api_url,
					  op->upload.s3_upload_id) < 0) {
			op->err.cls = API_RETRY;
			snprintf(op->err.message, sizeof(op->err.message),
				 "cannot record the upload in the queue: %s", store_errmsg(store));
			return UPLOAD_ERROR;
		}
		/*
		 * Held per file for the whole case: keep only what later steps use
		 * (pk, api_url, the multipart id), copied on the main thread; the
		 * rest of the answer goes with the op.
		 */
		api_upload_clear(&uf->up);
		if (set_str(&uf->up.pk, op->upload.pk) < 0 ||
		    set_str(&uf->up.api_url, op->upload.api_url) < 0 ||
		    set_str(&uf->up.s3_upload_id, op->upload.s3_upload_id) < 0 ||
		    alloc_parts(uf) < 0)
			return UPLOAD_ERROR;
		uf->phase = UPLOAD_PARTS;
		return UPLOAD_PROGRESS;
	case PIPELINE_OP_UPLOAD_PRESIGN:
		if (op->err.cls == API_LIMIT) {
			/* Quota, or the upload is no longer Initialized: find out which. */
			uf->check = true;
			uf->check_from = UPLOAD_PARTS;
			return UPLOAD_ERROR;
		}
		if (op->err.cls == API_GONE)
			return reset(uf, store);
		if (op->err.cls != API_OK)
			return UPLOAD_ERROR;
		for (size_t i = 0; i < op->n_numbers; i++) {
			int k = op->numbers[i] - 1;

			if (uf->state[k] != 0) {
				continue;
			}
			free(uf->urls[k]);
			uf->urls[k] = op->urls[i];
			op->urls[i] = NULL;
		}
		uf->urls_at_ms = now;
		return UPLOAD_PROGRESS;
	case PIPELINE_OP_UPLOAD_LIST_PARTS:
		return on_list_parts(uf, store, op);
	case PIPELINE_OP_UPLOAD_GET:
		uf->check = false;
		return on_get(uf, store, op);
	case PIPELINE_OP_UPLOAD_COMPLETE:
		if (op->changed)
			return UPLOAD_CHANGED;
		if (op->err.cls == API_OK)
			return record_completed(uf, store);
		if (op->err.cls == API_GONE)
			return reset(uf, store);
		/* A lost answer or a refusal: GET the upload (contract 7.4). */
		uf->check = true;
		uf->check_from = UPLOAD_COMPLETE;
		return UPLOAD_ERROR;
	default:
		return UPLOAD_ERROR;
	}
}

struct pipeline_op *
upload_file_abort_op(const struct upload_file *uf)
{
	struct pipeline_op *op;

	if (uf->up.pk == NULL || uf->up.s3_upload_id == NULL || uf->phase == UPLOAD_DONE)
		return NULL;
	op = pipeline_op_new(PIPELINE_OP_UPLOAD_ABORT);
	if (op == NULL)
		return NULL;
	if (set_str(&op->upload.pk, uf->up.pk) < 0 ||
	    set_str(&op->upload.api_url, uf->up.api_url) < 0 ||
	    set_str(&op->upload.s3_upload_id, uf->up.s3_upload_id) < 0)
		return pipeline_op_free(op);
	return op;
}

/* ---- worker side ---- */

/* Open the file and check that it is still what was queued. -ESTALE when it changed. */
/*
 * Open 'path' for reading without following any symlink below its first
 * 'root_len' bytes (the folder that holds the case): a case or a folder inside
 * it replaced by a symlink gives -ELOOP instead of the symlink's target.
 * openat2(RESOLVE_NO_SYMLINKS) does it in one call; kernels without it (before
 * 5.6) get the same rule by opening one component at a time with O_NOFOLLOW.
 * Returns the fd or a negative errno.
 */
static int
open_beneath(const char *path, size_t root_len)
{
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH,
	};
	char *root = root_len > 0 ? strndup(path, root_len) : strdup("/");
	const char *rel = path + root_len;
	int dfd, fd;

	if (root == NULL)
		return -ENOMEM;
	while (*rel == '/')
		rel++;
	dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(root);
	if (dfd < 0)
		return -errno;
	fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS) {
		char *copy = strdup(rel), *save = NULL, *comp, *next;
		int cur = dfd;

		if (copy == NULL) {
			close(dfd);
			return -ENOMEM;
		}
		for (comp = strtok_r(copy, "/", &save); comp != NULL; comp = next) {
			int e;

			next = strtok_r(NULL, "/", &save);
			fd = openat(cur, comp, (next != NULL ? O_DIRECTORY : O_NONBLOCK) | O_RDONLY |
				    O_NOFOLLOW | O_CLOEXEC);
			e = errno;
			close(cur);
			if (fd < 0) {
				free(copy);
				return -e;
			}
			cur = fd;
		}
		free(copy);
		return cur;
	}
	if (fd < 0) {
		int e = errno;

		close(dfd);
		return -e;
	}
	close(dfd);
	return fd;
}

static int
open_checked(const struct pipeline_op *op, int *ret_fd)
{
	struct stat st;
	int fd = open_beneath(op->path, op->root_len);

	if (fd < 0)
		return fd == -ENOENT || fd == -ELOOP || fd == -ENOTDIR || fd == -EXDEV ? -ESTALE : fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != op->exp_size ||
	    (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != op->exp_mtime_ns) {
		close(fd);
		return -ESTALE;
	}
	*ret_fd = fd;
	return 0;
}

static bool
still_same(int fd, const struct pipeline_op *op)
{
	struct stat st;

	return fstat(fd, &st) == 0 && st.st_size == op->exp_size &&
	       (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec == op->exp_mtime_ns;
}

static void
fail_local(struct pipeline_op *op, int rc, const char *what)
{
	op->rc = rc;
	op->err.cls = API_RETRY;
	op->err.status = 0;
	op->err.retry_after_ms = -1;
	snprintf(op->err.message, sizeof(op->err.message), "%s '%s': %s", what, op->path,
		 strerror(-rc));
}

/* The watchdog's view of a PUT: progress only when bytes actually moved. */
struct put_progress {
	struct pool_item *item;
	int64_t last;
};

static void
put_progress(void *ud, int64_t done, int64_t total)
{
	struct put_progress *pp = ud;

	(void)total;
	if (done > pp->last) {
		pp->last = done;
		pool_touch(pp->item);
	}
}

static void
run_put(struct api *api, struct pipeline_op *op, const atomic_int *cancel)
{
	struct put_progress pp = {.item = &op->item, .last = 0};
	struct http_xfer xfer = {.cancel = cancel, .progress = put_progress, .progress_ud = &pp};
	struct http_resp resp = {0};
	struct http_error herr = {0};
	int fd = -1;
	int r;

	r = open_checked(op, &fd);
	if (r == -ESTALE) {
		op->changed = true;
		return;
	}
	if (r < 0) {
		fail_local(op, r, "cannot open");
		return;
	}
	r = http_put_file(api_http(api), op->url, fd, (off_t)op->offset, op->length, &xfer, &resp,
			  &herr);
	if (r == -ENODATA || !still_same(fd, op)) {
		op->changed = true;
		goto out;
	}
	op->rc = r;
	api_classify(r, &herr, r == 0 ? &resp : NULL, &op->err);
	if (op->err.cls == API_OK) {
		if (resp.etag == NULL || resp.etag[0] == '\0') {
			op->err.cls = API_RETRY;
			snprintf(op->err.message, sizeof(op->err.message),
				 "storage answered part %d without an ETag", op->number);
		} else {
			op->etag = resp.etag;
			resp.etag = NULL;
		}
	}
out:
	http_resp_done(&resp);
	close(fd);
}

/*
 * The completion checks the file once more, by its metadata only: it is
 * opened the same way as for a part (no symlink below the case's folder) and
 * its size and mtime must still be the queued ones. Every part was checked
 * the same way right after its PUT, and each part's ETag ties the upload to
 * the bytes storage received. The content is not read again: a whole-file
 * hash here cost more CPU than the whole upload (spec section 8), and a
 * change that keeps size and mtime is beyond what the fingerprint of the
 * case can see anyway.
 */
static void
run_complete(struct api *api, struct pipeline_op *op)
{
	struct api_upload tmp = {0};
	int fd = -1;
	int r;

	r = open_checked(op, &fd);
	if (r == -ESTALE) {
		op->changed = true;
		return;
	}
	if (r < 0) {
		fail_local(op, r, "cannot open");
		return;
	}
	op->rc = api_upload_complete(api, &op->upload, op->parts, op->n_parts, &tmp, &op->err);
	if (op->rc == 0) {
		api_upload_clear(&op->upload);
		op->upload = tmp;
	}
	close(fd);
}

void
upload_op_run(struct api *api, struct pipeline_op *op, const atomic_int *cancel)
{
	struct api_upload tmp = {0};

	switch (op->kind) {
	case PIPELINE_OP_UPLOAD_CREATE:
		op->rc = api_upload_create(api, op->title, &op->upload, &op->err);
		break;
	case PIPELINE_OP_UPLOAD_PRESIGN:
		op->rc = api_upload_presign(api, &op->upload, op->numbers, op->n_numbers, &op->urls,
					    &op->err);
		break;
	case PIPELINE_OP_UPLOAD_PUT:
		run_put(api, op, cancel);
		break;
	case PIPELINE_OP_UPLOAD_COMPLETE:
		run_complete(api, op);
		break;
	case PIPELINE_OP_UPLOAD_ABORT:
		op->rc = api_upload_abort(api, &op->upload, &op->err);
		break;
	case PIPELINE_OP_UPLOAD_LIST_PARTS:
		op->rc = api_upload_list_parts(api, &op->upload, &op->parts, &op->n_parts, &op->err);
		break;
	case PIPELINE_OP_UPLOAD_GET:
		op->rc = api_upload_get(api, op->upload.pk, &tmp, &op->err);
		if (op->rc == 0) {
			api_upload_clear(&op->upload);
			op->upload = tmp;
		}
		break;
	default:
		break;
	}
}
