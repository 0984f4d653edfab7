/*
 * http.c: the thin libcurl layer.
 *
 * One struct http per worker, wrapping one CURL easy handle that lives as long
 * as the worker: curl keeps its connection cache, DNS cache and TLS sessions in
 * the handle, so reusing it is what gives keep-alive. Before each request the
 * handle is reset (curl_easy_reset keeps those caches) and every option is set
 * again from scratch, so no option of one request can leak into the next: in
 * particular the Authorization header is decided anew for every request and
 * every redirect hop (a download sends it on its first hop only).
 *
 * The security rules (see http.h) are checked here, before curl sees a URL:
 * the scheme and loopback rule with http_check_url(), and the origin rule by
 * comparing normalised origins ("scheme://host:port", lower case, default
 * port filled in by curl's URL API) with the API origin computed once in
 * http_new(). Downloads follow redirects in their own loop, one hop at a time,
 * so the header decision is visible in one place and testable.
 *
 * Bodies: API responses go into a struct buf with a cap (HTTP_RESPONSE_MAX by
 * default); a bigger body aborts the transfer ("response too large"), and
 * curl closes that connection since it cannot be reused mid-body. Uploads are
 * read with pread() straight into curl's upload buffer (CURLOPT_UPLOAD_BUFFERSIZE,
 * 512 KiB), so memory stays flat whatever the part size, and they carry an exact
 * Content-Length: storage services refuse chunked uploads. Downloads are written
 * straight to the caller's fd.
 *
 * Cancellation: the transfer-info callback, which libcurl calls at least about
 * once a second even on a stalled connection, checks the caller's atomic flag.
 *
 * Nothing here logs above debug; with opts.verbose, libcurl's informational
 * lines (never headers, so never the token) go to log_debug with any query
 * string cut off.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "backoff.h"
#include "buf.h"
#include "http.h"
#include "log.h"

#define HTTP_USER_AGENT "gcdrop/" PACKAGE_VERSION
#define HTTP_UPLOAD_BUFFER (512 * 1024)
#define HTTP_DOWNLOAD_BUFFER (256 * 1024)
#define HTTP_HEADER_MAX 8192	/* longest header value we keep */

struct http {
	CURL *curl;
	char *api_origin;	/* normalised origin of api_url; NULL: none */
	char *auth_header;	/* "Authorization: ..."; NULL: none */
	char *ca_file;
	long connect_timeout_s;
	long low_speed_limit;
	long low_speed_time_s;
	int64_t max_send_speed;
	bool verbose;
	char errbuf[CURL_ERROR_SIZE];
};

/* Per-transfer state shared with the libcurl callbacks. */
struct xfer_state {
	/* the current response (reset at every status line) */
	long status;
	char *content_type;
	char *etag;
	char *location;
	char *retry_after;

	/* the body: to fd for a 2xx when fd >= 0, otherwise into body */
	struct buf body;
	bool truncate;		/* past the cap: drop the rest (error bodies) instead of failing */
	bool too_big;
	int fd;
	int64_t written;
	int64_t max_bytes;	/* fd: 0 unlimited */
	int write_errno;
	bool discard_redirects;	/* drop 3xx bodies (download hops) */

	/* upload source */
	int in_fd;
	off_t in_offset;
	int64_t in_length;
	int64_t in_pos;
	int read_errno;
	bool short_file;

	/* progress and cancel */
	bool upload;
	const atomic_int *cancel;
	bool cancelled;
	void (*progress)(void *ud, int64_t done, int64_t total);
	void *progress_ud;
};

/* ---- errors ---- */

static void GC_PRINTF(6, 7)
set_error(struct http_error *err, int code, int curl_code, long status, enum http_class cls,
    const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	err->code = code;
	err->curl_code = curl_code;
	err->status = status;
	err->cls = cls;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

const char *
http_class_name(enum http_class cls)
{
	switch (cls) {
	case HTTP_CLASS_OK:
		return "ok";
	case HTTP_CLASS_RETRY:
		return "retry";
	case HTTP_CLASS_AUTH:
		return "auth";
	case HTTP_CLASS_FAIL:
		return "fail";
	}
	return "fail";
}

enum http_class
http_classify_status(long status, const char *body)
{
	static const char *const token_words[] = {
		"Invalid token", "credentials were not provided", "Invalid token header",
		"Token has expired", "token_not_valid", "User inactive",
	};
	size_t i;

	if (status >= 200 && status < 300)
		return HTTP_CLASS_OK;
	if (status == 401)
		return HTTP_CLASS_AUTH;
	if (status == 403) {
		for (i = 0; body && i < GC_ARRAY_SIZE(token_words); i++)
			if (strcasestr(body, token_words[i]))
				return HTTP_CLASS_AUTH;
		return HTTP_CLASS_FAIL;
	}
	if (status == 408 || status == 429 || (status >= 500 && status < 600))
		return HTTP_CLASS_RETRY;
	return HTTP_CLASS_FAIL;
}

enum http_class
http_classify(int rc, const struct http_error *err, const struct http_resp *resp)
{
	if (rc < 0)
		return err ? err->cls : HTTP_CLASS_RETRY;
	return http_classify_status(resp->status, resp->body);
}

/* ---- URLs ---- */

static void
lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/*
 * Parse an absolute URL. On success the caller owns *ret_u and the strings.
 * Returns -EINVAL when curl's URL API refuses it.
 */
static int
url_parts(const char *url, CURLU **ret_u, char **ret_scheme, char **ret_host, char **ret_port)
{
	CURLU *u;
	char *scheme = NULL, *host = NULL, *port = NULL;

	if (!url)
		return -EINVAL;
	u = curl_url();
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		curl_free(scheme);
		curl_url_cleanup(u);
		return -EINVAL;
	}
	/* No port for an unknown scheme is fine: the scheme check refuses it anyway. */
	if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		port = NULL;
	lower(scheme);
	lower(host);
	*ret_u = u;
	*ret_scheme = scheme;
	*ret_host = host;
	*ret_port = port;
	return 0;
}

static bool
host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	char tmp[64];
	size_t len = strlen(host);

	if (strcmp(host, "localhost") == 0 || strcmp(host, "localhost.") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (len > 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(tmp)) {
		memcpy(tmp, host + 1, len - 2);
		tmp[len - 2] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return false;
		if (IN6_IS_ADDR_LOOPBACK(&a6))
			return true;
		/* ::ffff:127.x.y.z */
		return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
	}
	return false;
}

/* The normalised origin of url, malloc'ed; or a negative errno. */
static int
url_origin(const char *url, char **ret)
{
	CURLU *u;
	char *scheme, *host, *port;
	int r;

	r = url_parts(url, &u, &scheme, &host, &port);
	if (r < 0)
		return r;
	if (asprintf(ret, "%s://%s:%s", scheme, host, port ? port : "") < 0)
		r = -ENOMEM;
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return r;
}

int
http_check_url(const char *url)
{
	CURLU *u;
	char *scheme, *host, *port;
	int r;

	r = url_parts(url, &u, &scheme, &host, &port);
	if (r < 0)
		return r;
	if (strcmp(scheme, "https") == 0)
		r = 0;
	else if (strcmp(scheme, "http") == 0)
		r = host_is_loopback(host) ? 0 : -EACCES;
	else
		r = -EPROTONOSUPPORT;
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return r;
}

bool
http_same_origin(const char *a, const char *b)
{
	char *oa = NULL, *ob = NULL;
	bool same;

	same = url_origin(a, &oa) == 0 && url_origin(b, &ob) == 0 && strcmp(oa, ob) == 0;
	free(oa);
	free(ob);
	return same;
}

char *
http_redact_url(const char *url)
{
	CURLU *u;
	char *out = NULL, *copy;

	if (!url)
		return NULL;
	u = curl_url();
	if (u && curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_QUERY, NULL, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_USER, NULL, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_OPTIONS, NULL, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK) {
		copy = strdup(out);
		curl_free(out);
		curl_url_cleanup(u);
		return copy;
	}
	curl_url_cleanup(u);
	/*
	 * Not a URL curl understands: keep what precedes any query or fragment,
	 * and drop everything between the scheme and the last '@' before it. Only
	 * an '@' makes a user, password or login options, and curl's reading of
	 * malformed authorities is lenient ("https:/a@b" and "h:///a@b" both give
	 * user "a"), so the result holds no '@' at all, whatever its shape: it
	 * may lose a path's '@' in a URL that is broken anyway, never a secret.
	 * For example "https://u:p@host:port/a b" becomes "https://host:port/a b".
	 */
	{
		size_t len = strcspn(url, "?#");
		const char *at = memrchr(url, '@', len);
		const char *colon = memchr(url, ':', len);
		size_t head, tail;

		if (at == NULL)
			return strndup(url, len);
		head = colon != NULL && colon < at ? (size_t)(colon + 1 - url) : 0;
		while (head > 0 && url + head < at && url[head] == '/')
			head++; /* keep "scheme://" */
		tail = len - (size_t)(at + 1 - url);
		copy = malloc(head + tail + 1);
		if (copy == NULL)
			return NULL;
		memcpy(copy, url, head);
		memcpy(copy + head, at + 1, tail);
		copy[head + tail] = '\0';
		return copy;
	}
}

/* ---- the handle ---- */

int
http_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void
http_global_cleanup(void)
{
	curl_global_cleanup();
}

struct http *
http_new(const struct http_opts *opts)
{
	struct http *h;

	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	if (opts->api_url) {
		if (url_origin(opts->api_url, &h->api_origin) < 0)
			goto fail;
		if (strncmp(h->api_origin, "https://", 8) != 0 &&
		    strncmp(h->api_origin, "http://", 7) != 0)
			goto fail;
	}
	if (opts->authorization &&
	    asprintf(&h->auth_header, "Authorization: %s", opts->authorization) < 0) {
		h->auth_header = NULL;
		goto fail;
	}
	if (opts->ca_file && !(h->ca_file = strdup(opts->ca_file)))
		goto fail;
	h->connect_timeout_s = opts->connect_timeout_s > 0 ? opts->connect_timeout_s : 30;
	h->low_speed_limit = opts->low_speed_limit > 0 ? opts->low_speed_limit : 1;
	h->low_speed_time_s = opts->low_speed_time_s > 0 ? opts->low_speed_time_s : 60;
	h->max_send_speed = opts->max_send_speed > 0 ? opts->max_send_speed : 0;
	h->verbose = opts->verbose;
	h->curl = curl_easy_init();
	if (!h->curl)
		goto fail;
	return h;

fail:
	http_free(h);
	return NULL;
}

struct http *
http_free(struct http *h)
{
	if (!h)
		return NULL;
	if (h->curl)
		curl_easy_cleanup(h->curl);
	free(h->api_origin);
	if (h->auth_header) {
		/* Do not leave the token lying around in freed memory. */
		explicit_bzero(h->auth_header, strlen(h->auth_header));
		free(h->auth_header);
	}
	free(h->ca_file);
	free(h);
	return NULL;
}

void
http_resp_done(struct http_resp *r)
{
	free(r->body);
	free(r->content_type);
	free(r->etag);
	free(r->location);
	r->body = r->content_type = r->etag = r->location = NULL;
}

/* ---- callbacks ---- */

static void
state_reset_headers(struct xfer_state *st)
{
	free(st->content_type);
	free(st->etag);
	free(st->location);
	free(st->retry_after);
	st->content_type = st->etag = st->location = st->retry_after = NULL;
}

static void
state_init(struct xfer_state *st, size_t body_cap)
{
	memset(st, 0, sizeof(*st));
	buf_init(&st->body, body_cap);
	st->fd = -1;
	st->in_fd = -1;
}

static void
state_done(struct xfer_state *st)
{
	state_reset_headers(st);
	buf_clear(&st->body);
}

/* Keep a header value: trimmed, capped, replacing an earlier one. */
static void
keep_header(char **slot, const char *v, size_t len)
{
	while (len > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t' || v[len - 1] == '\r' ||
	    v[len - 1] == '\n'))
		len--;
	if (len > HTTP_HEADER_MAX)
		len = HTTP_HEADER_MAX;
	free(*slot);
	*slot = strndup(v, len);
}

static bool
header_is(const char *line, size_t len, const char *name, const char **ret_value, size_t *ret_len)
{
	size_t n = strlen(name);

	if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
		return false;
	*ret_value = line + n + 1;
	*ret_len = len - n - 1;
	return true;
}

static size_t
header_cb(char *data, size_t size, size_t nitems, void *ud)
{
	struct xfer_state *st = ud;
	size_t len = size * nitems;
	const char *v;
	size_t vlen;
	char code[4];

	/* A status line starts a new response (100 Continue, a redirect hop): forget the last. */
	if (len > 9 && strncmp(data, "HTTP/", 5) == 0) {
		const char *sp = memchr(data, ' ', len);

		state_reset_headers(st);
		st->status = 0;
		if (sp && (size_t)(sp - data) + 4 <= len) {
			memcpy(code, sp + 1, 3);
			code[3] = '\0';
			st->status = strtol(code, NULL, 10);
		}
		return len;
	}
	if (header_is(data, len, "Content-Type", &v, &vlen))
		keep_header(&st->content_type, v, vlen);
	else if (header_is(data, len, "ETag", &v, &vlen))
		keep_header(&st->etag, v, vlen);
	else if (header_is(data, len, "Location", &v, &vlen))
		keep_header(&st->location, v, vlen);
	else if (header_is(data, len, "Retry-After", &v, &vlen))
		keep_header(&st->retry_after, v, vlen);
	return len;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer_state *st = ud;
	size_t len = size * nmemb, done = 0;
	ssize_t n;
	size_t room;

	if (st->discard_redirects && st->status >= 300 && st->status < 400)
		return len;
	if (st->fd >= 0 && st->status >= 200 && st->status < 300) {
		if (st->max_bytes > 0 && st->written + (int64_t)len > st->max_bytes) {
			st->too_big = true;
			return 0;
		}
		while (done < len) {
			n = write(st->fd, data + done, len - done);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				st->write_errno = errno;
				return 0;
			}
			done += (size_t)n;
		}
		st->written += (int64_t)len;
		return len;
	}
	if (st->truncate) {
		room = st->body.cap - buf_len(&st->body);
		if (room > len)
			room = len;
		if (buf_append(&st->body, data, room) < 0)
			return 0;
		st->written += (int64_t)len;
		return len;
	}
	if (buf_append(&st->body, data, len) < 0) {
		st->too_big = true;
		return 0;
	}
	st->written += (int64_t)len;
	return len;
}

static size_t
read_cb(char *data, size_t size, size_t nitems, void *ud)
{
	struct xfer_state *st = ud;
	size_t want = size * nitems;
	int64_t left = st->in_length - st->in_pos;
	ssize_t n;

	if (left <= 0)
		return 0;
	if ((int64_t)want > left)
		want = (size_t)left;
	do
		n = pread(st->in_fd, data, want, st->in_offset + (off_t)st->in_pos);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		st->read_errno = errno;
		return CURL_READFUNC_ABORT;
	}
	if (n == 0) {
		/* The file is shorter than it was: it changed under us. */
		st->short_file = true;
		return CURL_READFUNC_ABORT;
	}
	st->in_pos += n;
	return (size_t)n;
}

/* curl rewinds when it must resend the body (e.g. a reused connection died). */
static int
seek_cb(void *ud, curl_off_t offset, int origin)
{
	struct xfer_state *st = ud;

	if (origin != SEEK_SET)
		return CURL_SEEKFUNC_CANTSEEK;
	if (offset < 0 || offset > st->in_length)
		return CURL_SEEKFUNC_FAIL;
	st->in_pos = offset;
	return CURL_SEEKFUNC_OK;
}

static int
xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer_state *st = ud;

	if (st->cancel && atomic_load_explicit(st->cancel, memory_order_relaxed)) {
		st->cancelled = true;
		return 1;
	}
	if (st->progress) {
		if (st->upload)
			st->progress(st->progress_ud, ulnow, ultotal);
		else
			st->progress(st->progress_ud, dlnow, dltotal);
	}
	return 0;
}

static int
debug_cb(CURL *c, curl_infotype type, char *data, size_t size, void *ud)
{
	size_t len;

	/* Only libcurl's own text: headers would show the token, data the bodies. */
	if (type != CURLINFO_TEXT)
		return 0;
	len = strcspn(data, "?\r\n");
	if (len > size)
		len = size;
	log_debug("curl: %.*s%s", (int)len, data, len < size && data[len] == '?' ? "?..." : "");
	return 0;
}

/* ---- performing a transfer ---- */

/* Options every request gets. */
static void
setup_common(struct http *h, const char *url, struct xfer_state *st)
{
	CURL *c = h->curl;

	curl_easy_reset(c);
	h->errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
	curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, h->connect_timeout_s);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, h->low_speed_limit);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, h->low_speed_time_s);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	if (h->max_send_speed > 0)
		curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)h->max_send_speed);
	if (h->verbose) {
		curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, debug_cb);
		curl_easy_setopt(c, CURLOPT_VERBOSE, 1L);
	}
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, st);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, st);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, st);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
}

/*
 * Start a header list; attach the Authorization header only when url's origin
 * is the API origin and auth is allowed for this kind of request.
 */
static int
base_headers(struct http *h, const char *url, bool auth, struct curl_slist **ret)
{
	struct curl_slist *l = NULL, *t;
	char *origin = NULL;
	int r;

	/*
	 * No "Expect: 100-continue": one round trip less, and no 1 s stall on
	 * servers that ignore it.
	 */
	l = curl_slist_append(NULL, "Expect:");
	if (!l)
		return -ENOMEM;
	if (auth && h->auth_header && h->api_origin) {
		r = url_origin(url, &origin);
		if (r < 0) {
			curl_slist_free_all(l);
			return r;
		}
		if (strcmp(origin, h->api_origin) == 0) {
			t = curl_slist_append(l, h->auth_header);
			if (!t) {
				free(origin);
				curl_slist_free_all(l);
				return -ENOMEM;
			}
			l = t;
		}
		free(origin);
	}
	*ret = l;
	return 0;
}

static int
add_header(struct curl_slist **l, const char *line)
{
	struct curl_slist *t = curl_slist_append(*l, line);

	if (!t)
		return -ENOMEM;
	*l = t;
	return 0;
}

/* Report a failure to build the request (out of memory). */
static int
build_error(int r, struct http_error *reterr)
{
	set_error(reterr, r, 0, 0, r == -ENOMEM ? HTTP_CLASS_RETRY : HTTP_CLASS_FAIL, "%s",
	    r == -ENOMEM ? "out of memory" : strerror(-r));
	return r;
}

/* Turn a refused URL into an error. */
static int
url_error(int r, const char *url, struct http_error *reterr)
{
	char *safe = http_redact_url(url);
	const char *what;

	switch (r) {
	case -EACCES:
		what = "plain http:// is only allowed to a loopback host";
		break;
	case -EPROTONOSUPPORT:
		what = "only https:// (and http:// to loopback) URLs are allowed";
		break;
	case -ENOMEM:
		what = "out of memory";
		break;
	default:
		what = "not a valid URL";
		break;
	}
	set_error(reterr, r, 0, 0, r == -ENOMEM ? HTTP_CLASS_RETRY : HTTP_CLASS_FAIL, "'%s': %s",
	    safe ? safe : "?", what);
	free(safe);
	return r;
}

/* Run the transfer; on failure fill reterr and return a negative errno. */
static int
perform(struct http *h, struct xfer_state *st, struct http_error *reterr)
{
	CURLcode cc;
	long status = 0;
	int r;
	enum http_class cls = HTTP_CLASS_RETRY;
	const char *msg;

	cc = curl_easy_perform(h->curl);
	curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
	if (cc == CURLE_OK)
		return 0;
	msg = h->errbuf[0] ? h->errbuf : curl_easy_strerror(cc);
	if (st->cancelled) {
		set_error(reterr, -ECANCELED, cc, status, HTTP_CLASS_RETRY, "cancelled");
		return -ECANCELED;
	}
	if (st->too_big || cc == CURLE_FILESIZE_EXCEEDED) {
		set_error(reterr, -E2BIG, cc, status, HTTP_CLASS_FAIL,
		    "response too large (over %zu bytes)",
		    st->fd >= 0 ? (size_t)st->max_bytes : st->body.cap);
		return -E2BIG;
	}
	if (st->short_file) {
		set_error(reterr, -ENODATA, cc, status, HTTP_CLASS_FAIL,
		    "file ended before %lld bytes from offset %lld (it changed)",
		    (long long)st->in_length, (long long)st->in_offset);
		return -ENODATA;
	}
	if (st->read_errno) {
		set_error(reterr, -st->read_errno, cc, status, HTTP_CLASS_FAIL, "read: %s",
		    strerror(st->read_errno));
		return -st->read_errno;
	}
	if (st->write_errno) {
		set_error(reterr, -st->write_errno, cc, status, HTTP_CLASS_FAIL, "write: %s",
		    strerror(st->write_errno));
		return -st->write_errno;
	}
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		r = -ETIMEDOUT;
		break;
	case CURLE_COULDNT_CONNECT:
		r = -ECONNREFUSED;
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		r = -EHOSTUNREACH;
		break;
	case CURLE_OUT_OF_MEMORY:
		r = -ENOMEM;
		break;
	case CURLE_URL_MALFORMAT:
		r = -EINVAL;
		cls = HTTP_CLASS_FAIL;
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
		r = -EPROTONOSUPPORT;
		cls = HTTP_CLASS_FAIL;
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		r = -EPROTO;
		break;
	default:
		r = -EIO;
		break;
	}
	set_error(reterr, r, cc, status, cls, "%s", msg);
	return r;
}

/* Move what a finished transfer collected into *ret. */
static int
fill_resp(struct http *h, struct xfer_state *st, struct http_resp *ret, struct http_error *reterr)
{
	struct http_resp r = { 0 };
	int64_t ra;

	curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &r.status);
	r.body = buf_take(&st->body, &r.body_len);
	if (!r.body) {
		set_error(reterr, -ENOMEM, 0, r.status, HTTP_CLASS_RETRY, "out of memory");
		return -ENOMEM;
	}
	r.content_type = st->content_type;
	r.etag = st->etag;
	r.location = st->location;
	st->content_type = st->etag = st->location = NULL;
	r.retry_after_ms = -1;
	if (st->retry_after && backoff_parse_retry_after(st->retry_after, time(NULL), &ra) == 0)
		r.retry_after_ms = ra;
	r.bytes = st->fd >= 0 ? st->written : (int64_t)r.body_len;
	*ret = r;
	return 0;
}

const char *
http_method_name(enum http_method m)
{
	switch (m) {
	case HTTP_GET:
		return "GET";
	case HTTP_POST:
		return "POST";
	case HTTP_PUT:
		return "PUT";
	case HTTP_PATCH:
		return "PATCH";
	case HTTP_DELETE:
		return "DELETE";
	}
	return "GET";
}

int
http_request(struct http *h, const struct http_req *req, struct http_resp *ret,
    struct http_error *reterr)
{
	struct xfer_state st;
	struct curl_slist *headers = NULL;
	int r;

	r = http_check_url(req->url);
	if (r < 0)
		return url_error(r, req->url, reterr);
	state_init(&st, req->max_response ? req->max_response : HTTP_RESPONSE_MAX);
	st.cancel = req->cancel;
	setup_common(h, req->url, &st);
	/* A Content-Length larger than the cap fails before any byte of the body. */
	curl_easy_setopt(h->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)st.body.cap);
	if (req->timeout_s > 0)
		curl_easy_setopt(h->curl, CURLOPT_TIMEOUT, req->timeout_s);

	r = base_headers(h, req->url, true, &headers);
	if (r == 0)
		r = add_header(&headers, "Accept: application/json");
	if (r < 0) {
		build_error(r, reterr);
		goto out;
	}
	if (req->method == HTTP_GET) {
		curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
	} else {
		/* A body, or an empty one: Content-Length: 0 and no Content-Type. */
		curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)(req->json ? strlen(req->json) : 0));
		curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, req->json ? req->json : "");
		if (req->method != HTTP_POST)
			curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, http_method_name(req->method));
		r = add_header(&headers, req->json ? "Content-Type: application/json"
		    : "Content-Type:");
		if (r < 0) {
			build_error(r, reterr);
			goto out;
		}
	}
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers);

	r = perform(h, &st, reterr);
	if (r < 0)
		goto out;
	r = fill_resp(h, &st, ret, reterr);
out:
	/* The handle must not keep pointers into this frame. */
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(headers);
	state_done(&st);
	return r;
}

int
http_put_file(struct http *h, const char *url, int fd, off_t offset, int64_t length,
    const struct http_xfer *xfer, struct http_resp *ret, struct http_error *reterr)
{
	struct xfer_state st;
	struct curl_slist *headers = NULL;
	int r;

	r = http_check_url(url);
	if (r < 0)
		return url_error(r, url, reterr);
	if (fd < 0 || offset < 0 || length < 0) {
		set_error(reterr, -EINVAL, 0, 0, HTTP_CLASS_FAIL, "bad file range");
		return -EINVAL;
	}
	state_init(&st, HTTP_ERROR_BODY_MAX);
	st.truncate = true;
	st.upload = true;
	st.in_fd = fd;
	st.in_offset = offset;
	st.in_length = length;
	if (xfer) {
		st.cancel = xfer->cancel;
		st.progress = xfer->progress;
		st.progress_ud = xfer->progress_ud;
	}
	setup_common(h, url, &st);
	curl_easy_setopt(h->curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(h->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)length);
	curl_easy_setopt(h->curl, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(h->curl, CURLOPT_READDATA, &st);
	curl_easy_setopt(h->curl, CURLOPT_SEEKFUNCTION, seek_cb);
	curl_easy_setopt(h->curl, CURLOPT_SEEKDATA, &st);
	curl_easy_setopt(h->curl, CURLOPT_UPLOAD_BUFFERSIZE, (long)HTTP_UPLOAD_BUFFER);

	/* Presigned storage URLs never get the token, whatever their origin. */
	r = base_headers(h, url, false, &headers);
	if (r == 0)
		r = add_header(&headers, "Content-Type:");
	if (r < 0) {
		build_error(r, reterr);
		goto out;
	}
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers);

	r = perform(h, &st, reterr);
	if (r < 0)
		goto out;
	r = fill_resp(h, &st, ret, reterr);
out:
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(headers);
	state_done(&st);
	return r;
}

int
http_download(struct http *h, const char *url, int fd, const struct http_xfer *xfer,
    struct http_resp *ret, struct http_error *reterr)
{
	struct xfer_state st;
	struct curl_slist *headers = NULL;
	char *cur = NULL, *next;
	long status;
	unsigned hop;
	int r;

	cur = strdup(url ? url : "");
	if (!cur) {
		set_error(reterr, -ENOMEM, 0, 0, HTTP_CLASS_RETRY, "out of memory");
		return -ENOMEM;
	}
	for (hop = 0;; hop++) {
		r = http_check_url(cur);
		if (r < 0) {
			url_error(r, cur, reterr);
			goto out;
		}
		state_init(&st, HTTP_ERROR_BODY_MAX);
		st.truncate = true;
		st.discard_redirects = true;
		st.fd = fd;
		if (xfer) {
			st.cancel = xfer->cancel;
			st.progress = xfer->progress;
			st.progress_ud = xfer->progress_ud;
			st.max_bytes = xfer->max_bytes;
		}
		setup_common(h, cur, &st);
		curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(h->curl, CURLOPT_BUFFERSIZE, (long)HTTP_DOWNLOAD_BUFFER);
		if (st.max_bytes > 0)
			curl_easy_setopt(h->curl, CURLOPT_MAXFILESIZE_LARGE,
			    (curl_off_t)st.max_bytes);
		/*
		 * The token goes to the first hop only (and only when it is on the API
		 * origin): that is the platform's media URL, which answers with a
		 * redirect to storage. Storage never needs the token, even when it is
		 * served from the API's own origin (as the local emulator does), so no
		 * redirect hop ever carries it.
		 */
		r = base_headers(h, cur, hop == 0, &headers);
		if (r < 0) {
			build_error(r, reterr);
			goto hop_out;
		}
		curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers);

		r = perform(h, &st, reterr);
		if (r < 0)
			goto hop_out;
		status = 0;
		curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
		if (status == 301 || status == 302 || status == 303 || status == 307 ||
		    status == 308) {
			next = NULL;
			curl_easy_getinfo(h->curl, CURLINFO_REDIRECT_URL, &next);
			if (!next) {
				/* A redirect without a usable Location: hand it back as it is. */
				r = fill_resp(h, &st, ret, reterr);
				goto hop_out;
			}
			if (hop + 1 > HTTP_MAX_REDIRECTS) {
				set_error(reterr, -ELOOP, 0, status, HTTP_CLASS_FAIL,
				    "too many redirects (more than %d)", HTTP_MAX_REDIRECTS);
				r = -ELOOP;
				goto hop_out;
			}
			next = strdup(next);
			if (!next) {
				r = -ENOMEM;
				set_error(reterr, r, 0, status, HTTP_CLASS_RETRY, "out of memory");
				goto hop_out;
			}
			free(cur);
			cur = next;
			curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
			curl_slist_free_all(headers);
			headers = NULL;
			state_done(&st);
			continue;
		}
		r = fill_resp(h, &st, ret, reterr);
hop_out:
		curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
		curl_slist_free_all(headers);
		headers = NULL;
		state_done(&st);
		break;
	}
out:
	free(cur);
	return r;
}
