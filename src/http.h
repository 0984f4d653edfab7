/*
 * http.h: the thin libcurl layer (http_ prefix).
 *
 * One struct http per worker thread, holding one CURL easy handle for its whole
 * life, so that connections (and TLS sessions) are reused between requests.
 * A struct http must never be used by two threads at once.
 *
 * Security rules enforced here, for every request:
 *   - TLS is always verified (peer and host name); ca_file replaces the
 *     default CA bundle when set; there is no fallback to unverified TLS;
 *   - plain http:// is refused, before any network traffic, unless the host is
 *     a loopback address (127.0.0.0/8, ::1, localhost);
 *   - the Authorization header goes only to the API origin (scheme, host and
 *     port equal to those of api_url, host compared case-insensitively,
 *     default ports filled in), never to presigned storage URLs
 *     (http_put_file() never sends it) and never on a redirect hop
 *     (http_download() follows redirects itself, hop by hop, and sends the
 *     token on its first hop only: the media URL; its redirect goes to storage);
 *   - API calls (http_request()) do not follow redirects at all.
 *
 * Nothing here logs above debug, and debug output never contains the token or
 * a query string: URLs are reported through http_redact_url().
 *
 * Results: a function returns 0 when an HTTP response was received in full,
 * whatever its status (the caller classifies it with http_classify()), and a
 * negative errno when no usable response was received (network, TLS, refused
 * URL, response over its cap, cancelled). struct http_error then holds the
 * details; ret_* out-parameters are only written on success.
 */
#ifndef GCDROP_HTTP_H
#define GCDROP_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "attrs.h"

/* Default cap of a response body kept in memory (API calls). */
#define HTTP_RESPONSE_MAX ((size_t)4 << 20)
/* Cap of the error body kept from an upload or download that failed. */
#define HTTP_ERROR_BODY_MAX ((size_t)64 << 10)
/* Redirects http_download() follows before giving up. */
#define HTTP_MAX_REDIRECTS 5

struct http;

struct http_opts {
	const char *api_url;		/* scheme://host[:port]/..., the API root; may be NULL */
	const char *authorization;	/* the header value, "Bearer <token>"; NULL: none */
	const char *ca_file;		/* PEM bundle replacing the default; NULL: system store */
	long connect_timeout_s;		/* 0: 30 s */
	long low_speed_limit;		/* bytes/s; a transfer below it ... 0: 1 byte/s */
	long low_speed_time_s;		/* ... for this long is aborted; 0: 60 s */
	int64_t max_send_speed;		/* bytes/s per handle; 0: unlimited */
	bool verbose;			/* libcurl's informational text at debug level */
};

enum http_method {
	HTTP_GET,
	HTTP_POST,
	HTTP_PUT,
	HTTP_PATCH,
	HTTP_DELETE,
};

/* An API call. */
struct http_req {
	enum http_method method;
	const char *url;		/* absolute */
	const char *json;		/* request body, sent as application/json; NULL: no body */
	size_t max_response;		/* body cap; 0: HTTP_RESPONSE_MAX */
	long timeout_s;			/* whole-transfer limit; 0: only the low-speed limit */
	const atomic_int *cancel;	/* non-zero aborts the transfer; may be NULL */
};

/* A response. Free its members with http_resp_done(). */
struct http_resp {
	long status;			/* HTTP status of the final response */
	char *body;			/* NUL-terminated; "" when empty; owned */
	size_t body_len;
	char *content_type;		/* owned; NULL when absent */
	char *etag;			/* the ETag verbatim (with its quotes); NULL when absent */
	char *location;			/* the Location header verbatim; NULL when absent */
	int64_t retry_after_ms;		/* parsed Retry-After; -1 when absent or unparseable */
	int64_t bytes;			/* body bytes received (downloads: written to the fd) */
};

enum http_class {
	HTTP_CLASS_OK,		/* 2xx */
	HTTP_CLASS_RETRY,	/* network error, timeout, 408, 429, 5xx: try again later */
	HTTP_CLASS_AUTH,	/* 401, or 403 about the token: pause everything, fix the token */
	HTTP_CLASS_FAIL,	/* other 4xx, unexpected 1xx/3xx, refused URL, oversize */
};

struct http_error {
	int code;		/* the negative errno that was returned */
	int curl_code;		/* CURLcode; 0 when curl was not involved */
	long status;		/* HTTP status when one was received, else 0 */
	enum http_class cls;
	char message[256];	/* curl's error text or ours; never the token or a query */
};

/* Options of an upload or download. All members may be zero / NULL. */
struct http_xfer {
	const atomic_int *cancel;	/* non-zero aborts the transfer within about a second */
	/*
	 * Called on the worker thread about once a second and while bytes move,
	 * with the body bytes sent (uploads) or received (downloads) so far and
	 * the total when known (else 0).
	 */
	void (*progress)(void *ud, int64_t done, int64_t total);
	void *progress_ud;
	int64_t max_bytes;		/* downloads: size cap of the body; 0: unlimited */
};

/*
 * Call once from the main thread before any thread exists (curl_global_init).
 * Returns 0 or -EIO.
 */
int http_global_init(void) GC_WUR;
void http_global_cleanup(void);

/*
 * A new handle with copies of opts' strings. Returns NULL when out of memory,
 * when curl cannot make a handle, or when api_url is set but is not an absolute
 * http(s) URL.
 */
struct http *http_new(const struct http_opts *opts) GC_WUR;

/* Free the handle and its connections. Accepts NULL; returns NULL. */
struct http *http_free(struct http *h);

/*
 * One API call: req->method to req->url, with Accept: application/json, the
 * Authorization header when the URL's origin is the API origin, the JSON body
 * (Content-Type: application/json) if any; a PATCH, PUT, POST or DELETE without
 * a body sends an empty one (Content-Length: 0) and no Content-Type. Redirects
 * are not followed (a 3xx is returned with its Location). The body is kept up
 * to req->max_response bytes; a bigger one fails with -E2BIG ("response too
 * large") and the connection is dropped. On success *ret is filled (free it with
 * http_resp_done()). Errors: -EINVAL (bad URL), -EACCES (http:// to a non-loopback
 * host), -EPROTONOSUPPORT (not http or https), -E2BIG, -ECANCELED, -ETIMEDOUT,
 * -ECONNREFUSED, -EHOSTUNREACH (name resolution), -EIO (other transport errors,
 * TLS included), -ENOMEM.
 */
int http_request(struct http *h, const struct http_req *req, struct http_resp *ret,
    struct http_error *reterr) GC_WUR;

/*
 * Upload `length` bytes of fd starting at `offset` with PUT to url (a presigned
 * storage URL): streamed with pread() through curl's upload buffer, never the
 * whole range in memory, with an exact Content-Length (no chunked encoding) and
 * never an Authorization header. On success *ret holds the status, the ETag
 * verbatim, and the body (capped at HTTP_ERROR_BODY_MAX). The fd is not moved.
 * Errors as http_request(), plus -ENODATA when the file is shorter than
 * offset + length (it changed), and the errno of a failing pread().
 */
int http_put_file(struct http *h, const char *url, int fd, off_t offset, int64_t length,
    const struct http_xfer *xfer, struct http_resp *ret, struct http_error *reterr) GC_WUR;

/*
 * GET url and write a 2xx body to fd (from its current position), following up
 * to HTTP_MAX_REDIRECTS redirects one hop at a time: the Authorization header is
 * attached to the first hop only, when its origin is the API origin, and every hop
 * must pass the http:// rule. On success *ret holds the final status and the
 * bytes written; the body of a non-2xx final response is not written to fd but
 * returned in ret->body (capped at HTTP_ERROR_BODY_MAX). Errors as
 * http_request(), plus -ELOOP ("too many redirects"), -E2BIG past
 * xfer->max_bytes, and the errno of a failing write().
 */
int http_download(struct http *h, const char *url, int fd, const struct http_xfer *xfer,
    struct http_resp *ret, struct http_error *reterr) GC_WUR;

/* Free the members of a response (not the struct); accepts a zeroed struct. */
void http_resp_done(struct http_resp *r);

/*
 * The class of an outcome: rc and err from a call above, and the response when
 * rc is 0. For responses: 2xx OK; 401 AUTH; 403 AUTH when the body is about the
 * token ("Invalid token", "credentials were not provided", ...), else FAIL;
 * 408, 429 and 5xx RETRY; anything else FAIL.
 */
enum http_class http_classify(int rc, const struct http_error *err, const struct http_resp *resp);

/* The class of an HTTP status with its body (may be NULL). */
enum http_class http_classify_status(long status, const char *body);

/* "GET", "POST", "PUT", "PATCH", "DELETE". */
const char *http_method_name(enum http_method m);

/* "ok", "retry", "auth", "fail". */
const char *http_class_name(enum http_class cls);

/*
 * A copy of url fit for logs: without its query string, fragment and userinfo
 * (presigned URLs carry their signature in the query). Returns NULL when out of
 * memory; a string that is not a URL is returned cut at its first '?' or '#'.
 * The caller frees it.
 */
char *http_redact_url(const char *url) GC_WUR;

/*
 * Whether url may be used at all: 0 for https://, and for http:// to a loopback
 * host; -EACCES for http:// elsewhere, -EPROTONOSUPPORT for other schemes,
 * -EINVAL when it does not parse.
 */
int http_check_url(const char *url) GC_WUR;

/* Whether two absolute URLs have the same origin (scheme, host, port). */
bool http_same_origin(const char *a, const char *b);

#endif
