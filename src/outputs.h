/*
 * outputs.h: an algorithm job's outputs written to the results folder (outputs_ prefix).
 *
 * Three steps, so that the pipeline can put each on the right thread:
 *
 *   outputs_plan()     pure: the job's "outputs" array (contract 5.4) into one
 *                      struct outputs_item per socket value, every field checked
 *                      (a hostile relative_path cannot leave the case folder);
 *   outputs_write()    one item into <case_dir>/<relative_path>: a Value as JSON
 *                      (indent 2, like gcapi), a File downloaded, an Image's files
 *                      downloaded into the directory <relative_path>/ as
 *                      "<image pk>.<extension of the URL>" (contract 5.6);
 *   outputs_finish()   stale temporary files removed, then job.json written, last:
 *                      its presence means the folder is complete.
 *
 * The case folder (results_dir/<case>/) belongs to gcdrop: whatever lies at an
 * output's path is replaced (rename over it), so writing the same outputs again
 * (after a crash, or a retry) leaves exactly one copy of each. Every file
 * appears atomically: it is written as "<dir>/.<name>.gcdrop-part", fsynced,
 * renamed into place, and the directory is fsynced. A temporary file left by a
 * crash is deleted before that file is written again (downloads restart from
 * the beginning; there is no partial resume), and outputs_finish() deletes any
 * that remain. Paths below case_dir are opened one component at a time without
 * following symlinks, so a symlink planted inside the case folder cannot
 * redirect a write outside it.
 *
 * Errors: functions return 0 or a negative errno. outputs_write() and
 * outputs_finish() fill struct api_error (may be NULL) with a message naming
 * the socket and the path: download failures keep the class api_download()
 * gave them (API_RETRY, API_GONE, API_AUTH, API_FAIL ...); local file system
 * trouble (disk full, permissions) is API_RETRY, so the caller's attempt cap
 * ends it; an output over its size cap, or an image without files, is
 * API_FAIL. Nothing here logs above debug.
 *
 * Threads: outputs_plan() and outputs_finish() touch no network; outputs_write()
 * takes the calling worker's struct api (never shared). Two items of one plan
 * never write the same path (outputs_plan() refuses overlaps), so they may be
 * written in parallel; outputs_finish() must run after all of them.
 */
#ifndef GCDROP_OUTPUTS_H
#define GCDROP_OUTPUTS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "attrs.h"
#include "http.h"

/* Default cap of one downloaded file (a File output, or one file of an image). */
#define OUTPUTS_DOWNLOAD_MAX ((int64_t)4 << 30)
/* Cap of an inline JSON value, as compact text. */
#define OUTPUTS_VALUE_MAX ((size_t)4 << 20)
/* Cap of a relative_path, and of one of its components. */
#define OUTPUTS_PATH_MAX 1024
#define OUTPUTS_NAME_MAX 200
/* The file outputs_finish() writes, and the suffix of temporary files. */
#define OUTPUTS_JOB_JSON "job.json"
#define OUTPUTS_TEMP_SUFFIX ".gcdrop-part"

/* One output socket value. Strings are malloc'd; free with outputs_items_free(). */
struct outputs_item {
	char *socket; /* slug */
	char *kind;   /* display label ("Float", "PDF file"); "" when absent */
	enum api_super_kind super_kind;
	char *relative_path; /* validated: relative, no "." / ".." / empty components */
	char *value_json;    /* Value: the value as compact JSON text; else NULL */
	char *url;           /* File: the file URL; Image: the image api_url; else NULL */
	int64_t pk;          /* the socket value's pk; -1 when absent */
};

/*
 * Plan the outputs of a job: job_outputs is the "outputs" array of the job
 * (borrowed; NULL or empty gives no items). Each element must be an object
 * with an "interface" object holding a string "slug", a "super_kind" of
 * "Image", "File" or "Value" and a string "relative_path"; an Image needs a
 * string "image", a File a string "file", a Value a "value" member (any JSON,
 * null included, at most OUTPUTS_VALUE_MAX as text). relative_path must be
 * relative, at most OUTPUTS_PATH_MAX bytes, without empty, "." or ".."
 * components, without components starting with '.' or longer than
 * OUTPUTS_NAME_MAX, not "job.json" or "gcdrop-receipt.json" at the top, and
 * two items may neither share a socket nor a path, nor may one's path lie
 * inside another's. On success *ret_items is a malloc'd array of *ret_n items
 * (NULL and 0 when there are none). On failure returns -EINVAL (or -ENOMEM)
 * and, when reterr_msg is not NULL, stores a malloc'd message naming the
 * element or the socket, e.g. "output 'report-pdf': relative_path '../x'
 * leaves the results folder".
 */
int outputs_plan(const cJSON *job_outputs, struct outputs_item **ret_items, size_t *ret_n,
                 char **reterr_msg) GC_WUR;

/* Free n items and the array. Accepts NULL; returns NULL. */
struct outputs_item *outputs_items_free(struct outputs_item *items, size_t n);

/* "Image", "File", "Value" (the names store_output rows use). */
const char *outputs_super_kind_name(enum api_super_kind k);

/* Options of outputs_write(); a zeroed struct (or NULL) means the defaults. */
struct outputs_opts {
	int64_t max_bytes;        /* per downloaded file; 0: OUTPUTS_DOWNLOAD_MAX */
	const atomic_int *cancel; /* non-zero aborts a download (-ECANCELED, API_RETRY) */
	void (*progress)(void *ud, int64_t done, int64_t total); /* per file, see http_xfer */
	void *progress_ud;
};

/*
 * Write one planned item under case_dir (an absolute path, made with its
 * parents, mode 0755, when missing): a Value as JSON text to
 * <case_dir>/<relative_path>; a File downloaded with api_download() to the
 * same place; an Image fetched with api_image_get(), then its files (the MHD
 * ones when there are any, e.g. a .mha, or a .mhd with its .zraw; else all)
 * downloaded into the directory <case_dir>/<relative_path>/. api may be NULL
 * for a Value. Each file is written aside and renamed into place; an existing
 * file of that name is replaced. *ret_bytes (may be NULL) is the number of
 * bytes written. Blocking: call it on a worker thread with that worker's api.
 */
int outputs_write(struct api *api, const char *case_dir, const struct outputs_item *item,
                  const struct outputs_opts *opts, int64_t *ret_bytes,
                  struct api_error *reterr) GC_WUR;

/* What job.json says about the job and the case. Every pointer is borrowed. */
struct outputs_job {
	const char *pk;
	const char *api_url;
	const char *url; /* the job's web page; NULL: left out */
	const char *status;
	const char *error; /* NULL: null */
	/*
	 * Unix seconds, <= 0: null. The job API has no timestamps (contract
	 * 5.4), so these are the client's: when it submitted the job, first saw
	 * it past "Validating inputs", first saw it finished.
	 */
	int64_t created;
	int64_t started;
	int64_t finished;
	/* The platform's ISO-8601 durations ("P0DT00H22M17S"); NULL: null. */
	const char *exec_duration;
	const char *invoke_duration;
	const char *watch;
	const char *case_name;
	const char *fingerprint;
	/*
	 * The job's inputs: either the "inputs" array of the job (hyperlinked
	 * socket values) or the array that was sent to create it ({"interface":
	 * slug, ...}); NULL: an empty object.
	 */
	const cJSON *inputs;
};

/*
 * Finish the case folder: delete every temporary file (".*.gcdrop-part")
 * left below case_dir, then write <case_dir>/job.json atomically:
 *   {"pk", "api_url", "url", "status", "error", "created", "started", "finished"
 *    (ISO 8601 UTC or null), "exec_duration", "invoke_duration" (as the
 *    platform gives them, or null), "case": {"watch", "name", "fingerprint"},
 *    "inputs": {slug: {"value": v} | {"image": url} | {"file": url} | ...},
 *    "outputs": {slug: {"super_kind": "Value", "kind", "path", "value": v}
 *              | {"super_kind": "File", "kind", "path", "url"}
 *              | {"super_kind": "Image", "kind", "path", "url", "files": [...]}}}
 * where "path" is the relative_path written, "url" the source without query
 * string, and "files" the image files present in the image's directory.
 * Call it after every outputs_write() of the case succeeded. items may be
 * NULL when n is 0 (a failed job).
 */
int outputs_finish(const char *case_dir, const struct outputs_job *job,
                   const struct outputs_item *items, size_t n, struct api_error *reterr) GC_WUR;

#endif
