/*
 * api.h: the grand-challenge REST contract (api_ prefix).
 *
 * One blocking function per endpoint gcdrop uses, on top of one struct http
 * (so one struct api per worker thread, never shared). Requests and responses
 * follow the contract (shared/docs/grand-challenge-api.md, sections 1-7); cJSON
 * is used inside, and callers get plain structs whose strings they own. Slugs,
 * pks and other values put into a URL are percent-encoded.
 *
 * Every failure is classified into struct api_error:
 *   API_RETRY  network error, timeout, 408, 429, 5xx (retry_after_ms when the
 *              response had a usable Retry-After), a malformed 2xx (below);
 *   API_LIMIT  a platform limit that clears with time: 400 "too many uploads",
 *              "too many active jobs", credits, post-processing tasks, and 403
 *              "Upload limit reached" (quota, or the upload is no longer
 *              Initialized: the caller tells them apart with api_upload_get());
 *   API_AUTH   401 / 403 about the token: pause everything;
 *   API_GONE   404 (a detail URL, a media file, storage's NoSuchUpload), or a
 *              slug lookup with no result: not (or no longer) there;
 *   API_FAIL   a 4xx that retrying cannot fix; message holds the server's text
 *              verbatim (flattened by api_error_text()) for the operator, e.g.
 *              the duplicate-job refusal "A result for these inputs with the
 *              current image and model already exists.".
 * Messages: a JSON 4xx gives its flattened text alone; anything else is
 * "HTTP <status>" plus, when there is one, ": <short excerpt>" (an HTML
 * page's title, S3's Code and Message); no response at all gives curl's text.
 * The message never contains the token or a query string.
 *
 * A 2xx whose body is not the JSON the contract describes (not JSON, a
 * required member missing or of the wrong type, an array or string over its
 * bound) is API_RETRY with "unexpected response from <url>: <what>": a proxy
 * answering during a deploy looks like that; the caller's attempt cap ends it.
 *
 * Functions return 0 or a negative errno, and on every failure reterr is
 * filled (decide on reterr->cls, not on the errno):
 *   -EIO      a response classified as a failure, or a malformed 2xx;
 *   other     the http layer's errno when no response came (-ETIMEDOUT,
 *             -ECONNREFUSED, -ECANCELED, a write error of a download, ...);
 *   -EINVAL   bad arguments, or an absolute URL that is not on the API root's
 *             origin ("invalid target URL", API_FAIL): the token is never sent
 *             to another origin (contract 1.3);
 *   -ENOMEM   out of memory (API_RETRY);
 *   -ENOENT   only from the *_find functions: nothing matched (API_GONE).
 * ret_* are written only on success. reterr may be NULL. Nothing here logs
 * above debug.
 *
 * Parameters named *_url are absolute URLs the server gave (api_url members);
 * they must have the origin of the API root. Strings in returned structs are
 * malloc'd copies; free them with the matching *_clear / *_free function,
 * which accept NULL and zeroed structs.
 */
#ifndef GCDROP_API_H
#define GCDROP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "attrs.h"
#include "http.h"

struct api;

enum api_class {
	API_OK,
	API_RETRY,
	API_LIMIT,
	API_AUTH,
	API_GONE,
	API_FAIL,
};

/* On success the functions leave cls == API_OK. */
struct api_error {
	enum api_class cls;
	long status;            /* HTTP status, 0 when none was received */
	int64_t retry_after_ms; /* -1 when the server gave none */
	char message[512];      /* the server's message verbatim, or the transport error */
};

const char *api_class_name(enum api_class cls);

/*
 * The handle: api_url (copied) must be an absolute https:// URL (or http:// to
 * loopback) ending in '/'. The struct http is borrowed, not owned, and must
 * outlive the handle. Returns NULL on a bad api_url or when out of memory.
 */
struct api *api_new(struct http *http, const char *api_url) GC_WUR;
/* Accepts NULL; returns NULL. */
struct api *api_free(struct api *api);
struct http *api_http(struct api *api);
/* The API root, as given to api_new(); owned by the handle. */
const char *api_root(const struct api *api);
/*
 * A flag that aborts the transfer in progress (and every later one) while it is
 * non-zero; borrowed, may be NULL (the default). Such calls fail with
 * -ECANCELED and API_RETRY.
 */
void api_set_cancel(struct api *api, const atomic_int *cancel);

/* ---- sockets and destinations ---- */

enum api_super_kind {
	API_SUPER_IMAGE,
	API_SUPER_FILE,
	API_SUPER_VALUE,
};

struct api_socket {
	char *slug;
	char *title;
	char *kind; /* display label, e.g. "Image", "Float", "PDF file" */
	enum api_super_kind super_kind;
	char *relative_path;
};

void api_socket_clear(struct api_socket *s);

struct api_interface {
	struct api_socket *inputs;
	size_t n_inputs;
	struct api_socket *outputs;
	size_t n_outputs;
};

struct api_algorithm {
	char *pk;
	char *api_url;
	char *slug;
	char *title;
	struct api_interface *interfaces;
	size_t n_interfaces;
};

void api_algorithm_clear(struct api_algorithm *a);

/* An archive or a reader study: the fields gcdrop needs. */
struct api_collection {
	char *pk;
	char *api_url;
	char *slug; /* archives have none in their body: the slug asked for */
	char *title;
};

void api_collection_clear(struct api_collection *c);

/*
 * GET gcapi/: a reachability probe. The http layer attaches the token to every
 * request to the API origin, so a bad token answers 401 (API_AUTH) here too.
 */
int api_ping(struct api *api, struct api_error *reterr) GC_WUR;

/*
 * Lookups by slug (GET <list>?slug=<slug>&offset=0&limit=100). No match is
 * API_GONE "no <kind> with slug '<slug>' visible to this token" (an unknown
 * object, a private one, or a missing token all look like that: lists answer
 * 200 to anonymous callers); more than one match is API_FAIL. The slug in
 * the result is the one asked for (archives have none in their body).
 */
int api_algorithm_get(struct api *api, const char *slug, struct api_algorithm *ret,
                      struct api_error *reterr) GC_WUR;
int api_archive_get(struct api *api, const char *slug, struct api_collection *ret,
                    struct api_error *reterr) GC_WUR;
int api_reader_study_get(struct api *api, const char *slug, struct api_collection *ret,
                         struct api_error *reterr) GC_WUR;
int api_socket_get(struct api *api, const char *slug, struct api_socket *ret,
                   struct api_error *reterr) GC_WUR;

/* ---- uploads (contract section 3) ---- */

struct api_upload {
	char *pk;
	char *api_url;
	char *filename;
	char *s3_upload_id;
	char *status; /* "Initialized", "Completed", "Aborted" */
};

void api_upload_clear(struct api_upload *u);

struct api_part {
	int number;   /* 1 ... 10000 */
	char *etag;   /* verbatim, quotes included */
	int64_t size; /* from list-parts; not sent on completion */
};

/* Free n parts and the array. Accepts NULL. */
void api_parts_free(struct api_part *parts, size_t n);

/*
 * POST uploads/ {"filename": filename}: a new Initialized upload. filename must
 * be a bare name; the server's refusal ("filename: <name> is not a valid
 * filename") comes back as API_FAIL.
 */
int api_upload_create(struct api *api, const char *filename, struct api_upload *ret,
                      struct api_error *reterr) GC_WUR;
/* GET uploads/<pk>/: the upload's current state (404 when consumed or expired: API_GONE). */
int api_upload_get(struct api *api, const char *upload_pk, struct api_upload *ret,
                   struct api_error *reterr) GC_WUR;
/*
 * PATCH uploads/<pk>/<s3_upload_id>/generate-presigned-urls/ for 1 ... 1000
 * part numbers (each 1 ... 10000, else -EINVAL). *ret_urls is a malloc'd array
 * of n malloc'd strings in the order of 'numbers' (free each, then the array);
 * every URL passed http_check_url(). Storage URLs never get the token.
 */
int api_upload_presign(struct api *api, const struct api_upload *u, const int *numbers, size_t n,
                       char ***ret_urls, struct api_error *reterr) GC_WUR;
/*
 * PATCH .../complete-multipart-upload/ with exactly ETag and PartNumber per
 * part, sorted ascending here (parts is not modified). A duplicate part number
 * or a part without ETag is -EINVAL. A refusal by storage (wrong ETag, a
 * non-final part too small) is the server's 500: API_RETRY, after which the
 * caller checks api_upload_get() (contract 7.4).
 */
int api_upload_complete(struct api *api, const struct api_upload *u, const struct api_part *parts,
                        size_t n, struct api_upload *ret, struct api_error *reterr) GC_WUR;
/* PATCH .../abort-multipart-upload/ without a body. */
int api_upload_abort(struct api *api, const struct api_upload *u, struct api_error *reterr) GC_WUR;
/*
 * GET .../list-parts/: the parts storage holds, as listed (*ret_parts is NULL
 * when there are none; free with api_parts_free()).
 */
int api_upload_list_parts(struct api *api, const struct api_upload *u, struct api_part **ret_parts,
                          size_t *ret_n, struct api_error *reterr) GC_WUR;

/* ---- raw image upload sessions (section 4.2) ---- */

struct api_session {
	char *pk;
	char *api_url;
	char *status; /* "Queued", "Re-Queued", "Started", "Succeeded", "Failed", "Cancelled" */
	char *error_message; /* "" until a failure */
	char **image_set;    /* image api_urls, filled on success */
	size_t n_images;
};

void api_session_clear(struct api_session *s);

/*
 * POST cases/upload-sessions/ {"uploads": [...]} without a target. The server
 * refuses more than 100 uploads and duplicate file names (API_FAIL with its
 * message); this function does not pre-check either.
 */
int api_session_create(struct api *api, const char *const *upload_urls, size_t n,
                       struct api_session *ret, struct api_error *reterr) GC_WUR;
int api_session_get(struct api *api, const char *session_url, struct api_session *ret,
                    struct api_error *reterr) GC_WUR;

/*
 * The socket-value request object of contract section 4.1, appended to 'arr':
 * {"interface": socket, <key>: …} where the key follows 'src'. 'urls'/'n' are
 * the upload (one) or uploads (several) URLs; 'text' is the session URL, the
 * inline value as JSON text, or the existing image URL. Strings are copied.
 * Returns 0, -EINVAL (wrong number of URLs, text missing or not JSON), -ENOMEM.
 */
enum api_value_src {
	API_VALUE_SESSION,		/* "upload_session": text */
	API_VALUE_USER_UPLOAD,		/* "user_upload": urls[0], n == 1 */
	API_VALUE_USER_UPLOADS,		/* "user_uploads": urls[0..n) */
	API_VALUE_JSON,			/* "value": text parsed as JSON */
	API_VALUE_IMAGE,		/* "image": text */
};

int api_socket_value_add(cJSON *arr, const char *socket, enum api_value_src src,
			 const char *const *urls, size_t n, const char *text) GC_WUR;

/* ---- archive items and display sets (sections 4.4, 4.5) ---- */

struct api_item {
	char *pk;
	char *api_url; /* built from the pk when the body has none */
	char *title;
	cJSON *values; /* the "values" array as returned; owned; NULL when absent */
};

void api_item_clear(struct api_item *i);

/*
 * POST archives/items/ {"archive": archive_url, "title": title} (title NULL:
 * none sent). The body has no api_url: it is built as root + "archives/items/<pk>/".
 */
int api_archive_item_create(struct api *api, const char *archive_url, const char *title,
                            struct api_item *ret, struct api_error *reterr) GC_WUR;
/* POST reader-studies/display-sets/ {"reader_study": slug, "title": title} (title may be NULL). */
int api_display_set_create(struct api *api, const char *reader_study_slug, const char *title,
                           struct api_item *ret, struct api_error *reterr) GC_WUR;
/*
 * PATCH <item_url> {"values": values}; values (an array) is borrowed. For an
 * archive item or a display set. The result keeps item_url as its api_url
 * when the body has none.
 */
int api_item_set_values(struct api *api, const char *item_url, const cJSON *values,
                        struct api_item *ret, struct api_error *reterr) GC_WUR;
int api_item_get(struct api *api, const char *item_url, struct api_item *ret,
                 struct api_error *reterr) GC_WUR;
/*
 * Find the item with this exact title in an archive (archive_pk) or a reader
 * study (reader_study_pk), walking every page of the list (limit=100 and a
 * growing offset, until a page without "next"): the reconciliation of
 * section 4.7. -ENOENT (API_GONE) when there is none; the first match wins.
 */
int api_archive_item_find(struct api *api, const char *archive_pk, const char *title,
                          struct api_item *ret, struct api_error *reterr) GC_WUR;
int api_display_set_find(struct api *api, const char *reader_study_pk, const char *title,
                         struct api_item *ret, struct api_error *reterr) GC_WUR;

/* ---- algorithm jobs (sections 4.3, 5.3, 5.4) ---- */

struct api_job {
	char *pk;
	char *api_url; /* built from the pk after a create (the 201 has none) */
	char *status;
	cJSON *inputs;  /* owned, may be NULL */
	cJSON *outputs; /* owned, may be NULL; empty until Succeeded */
	/*
	 * The platform's ISO-8601 durations ("P0DT00H22M17S"), NULL when null,
	 * absent (the 201 of a create) or not a string. These are the only times
	 * the job API gives: no created / started / completed timestamps (5.4).
	 */
	char *exec_duration;
	char *invoke_duration;
};

void api_job_clear(struct api_job *j);

/*
 * POST algorithms/jobs/ {"algorithm": algorithm_url, "inputs": inputs}; inputs
 * (an array) is borrowed. The 201 has no api_url: it is built as
 * root + "algorithms/jobs/<pk>/".
 */
int api_job_create(struct api *api, const char *algorithm_url, const cJSON *inputs,
                   struct api_job *ret, struct api_error *reterr) GC_WUR;
int api_job_get(struct api *api, const char *job_url, struct api_job *ret,
                struct api_error *reterr) GC_WUR;
/*
 * Jobs of an algorithm that used an image as input (reconciliation, section
 * 4.7), all pages. *ret_jobs is NULL when there are none; free with
 * api_jobs_free(). An image pk the server does not know is a filter error
 * (400 "input_image: Select a valid choice. ...", API_FAIL).
 */
int api_jobs_find_by_input_image(struct api *api, const char *algorithm_pk, const char *image_pk,
                                 struct api_job **ret_jobs, size_t *ret_n,
                                 struct api_error *reterr) GC_WUR;
void api_jobs_free(struct api_job *jobs, size_t n);

/* "Succeeded", "Failed", "Cancelled". */
bool api_job_status_is_terminal(const char *status);

/* ---- images and downloads ---- */

struct api_image_file {
	char *url;
	char *image_type; /* "MHD", "TIFF", "DZI" */
};

struct api_image {
	char *pk;
	char *api_url;
	char *name;
	struct api_image_file *files;
	size_t n_files;
};

void api_image_clear(struct api_image *i);

int api_image_get(struct api *api, const char *image_url, struct api_image *ret,
                  struct api_error *reterr) GC_WUR;

/*
 * GET a media URL (an image file or a socket value's file; same origin as the
 * root, else -EINVAL) into fd, following its redirect to storage with
 * http_download(), which decides per hop whether the token goes along. xfer
 * may be NULL; without its own cancel flag the api's one is used. *ret_bytes
 * (may be NULL) is the number of bytes written. A non-2xx final response
 * writes nothing to fd.
 */
int api_download(struct api *api, const char *url, int fd, const struct http_xfer *xfer,
                 int64_t *ret_bytes, struct api_error *reterr) GC_WUR;

/*
 * Classify a finished HTTP exchange (exposed for the upload module's part PUTs
 * and for tests): rc and err from http_*, resp when rc is 0 (may be NULL
 * otherwise). Always fills *ret; a 2xx is API_OK. Pure: no traffic.
 */
void api_classify(int rc, const struct http_error *err, const struct http_resp *resp,
                  struct api_error *ret);

/*
 * Flatten a DRF error body into one line of at most cap - 1 bytes (always
 * NUL-terminated when cap > 0, never cut inside a UTF-8 character):
 *   {"field": ["m1", "m2"], "f2": ["m3"]}  -> "field: m1; field: m2; f2: m3"
 *   {"non_field_errors": ["m"]}, {"detail": "m"}, ["m"]  -> "m"
 *   {"inputs": [{}, {"value": ["m"]}]}     -> "inputs[1].value: m"
 *   {"inputs": [{"__all__": ["m"]}]}       -> "inputs[0]: m"
 *   {"part_numbers": {"0": ["m"]}}         -> "part_numbers[0]: m"
 * Control characters become spaces. A body that is not JSON (Django's HTML
 * error page, S3 XML) gives a short sanitised excerpt (at most 100 characters:
 * the page title, S3's "Code: Message", else the visible text, ASCII only,
 * without query strings). body may be NULL.
 */
void api_error_text(const char *body, char *out, size_t cap);

#endif
