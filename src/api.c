/*
 * api.c: the grand-challenge REST contract, one blocking function per endpoint.
 *
 * A struct api is the API root (an absolute URL ending in '/') plus a borrowed
 * struct http, so it lives on one worker thread like its http handle. Every
 * function builds one URL, sends at most one JSON body, and turns the answer
 * into a plain struct whose strings the caller owns: nothing of a cJSON tree
 * outlives the call except the few members documented as cJSON (socket
 * values), which are detached from the tree and handed over.
 *
 * URLs. Relative paths are joined onto the root, and every path segment and
 * query value that comes from outside (slugs, pks, S3 upload ids, titles) is
 * percent-encoded, so nothing a server or a configuration says can change the
 * shape of a request. An absolute URL given by the server (an object's
 * api_url, a media file URL) is used as it is, but only when it has exactly
 * the origin of the root: the token is never sent anywhere else (contract
 * 1.3). Paged lists are walked with our own limit/offset; the server's "next"
 * link is only read as "there is more".
 *
 * Classification. api_classify() starts from http_classify() and refines it
 * with what only this layer knows: the platform's limit messages (contract
 * 7.2) are API_LIMIT, a 404 is API_GONE, any other 4xx is API_FAIL carrying the
 * server's message flattened from DRF's error shapes. A 2xx whose body is not
 * the JSON the contract promises is API_RETRY: during a deploy a proxy may
 * answer for the application, and the caller's attempt cap ends a loop.
 *
 * Defensive parsing. Bodies are capped by the http layer (HTTP_RESPONSE_MAX);
 * every member read is type-checked, every string is bounded by
 * API_FIELD_MAX and every array by API_ARRAY_MAX, and a body that breaks a
 * rule is refused as a whole, never half-applied. Error texts put in front of
 * an operator are sanitised: control characters become spaces, invalid UTF-8
 * becomes '?', and a non-JSON error page is cut down to its title (HTML) or
 * its Code and Message (S3 XML), never echoed whole.
 *
 * Nothing here logs above debug; URLs in debug lines are redacted.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "buf.h"
#include "log.h"

/* Longest URL we build or accept. */
#define API_URL_MAX 8192
/* Longest string member we copy out of a response. */
#define API_FIELD_MAX (64 * 1024)
/* Most elements we accept in any array of a response. */
#define API_ARRAY_MAX 10000
/* Page size of list walks (the platform's default and our lookups' limit). */
#define API_PAGE 100
/* Items a list walk visits at most before it gives up. */
#define API_WALK_MAX 1000000
/* Most part numbers in one presign call (each URL is about 500 bytes). */
#define API_PRESIGN_MAX 1000
/* S3's part number range. */
#define API_PART_MIN 1
#define API_PART_MAX 10000
/* Whole-transfer limit of one API call. */
#define API_TIMEOUT_S 120
/* Characters kept from a non-JSON error body. */
#define API_EXCERPT_MAX 100
/* Nesting followed when flattening an error body. */
#define API_ERROR_DEPTH 16

struct api {
	struct http *http; /* borrowed */
	char *root;        /* the API root, ending in '/' */
	const atomic_int *cancel;
};

/* ---- errors ---- */

static void err_set(struct api_error *e, enum api_class cls, long status, const char *fmt, ...)
    GC_PRINTF(4, 5);
static int err_inval(struct api_error *e, const char *fmt, ...) GC_PRINTF(2, 3);

static void
err_reset(struct api_error *e)
{
	memset(e, 0, sizeof(*e));
	e->cls = API_OK;
	e->retry_after_ms = -1;
}

static void
err_set(struct api_error *e, enum api_class cls, long status, const char *fmt, ...)
{
	va_list ap;

	err_reset(e);
	e->cls = cls;
	e->status = status;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

static int
err_nomem(struct api_error *e)
{
	err_set(e, API_RETRY, 0, "out of memory");
	return -ENOMEM;
}

static int
err_inval(struct api_error *e, const char *fmt, ...)
{
	va_list ap;

	err_reset(e);
	e->cls = API_FAIL;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

const char *
api_class_name(enum api_class cls)
{
	switch (cls) {
	case API_OK:
		return "ok";
	case API_RETRY:
		return "retry";
	case API_LIMIT:
		return "limit";
	case API_AUTH:
		return "auth";
	case API_GONE:
		return "gone";
	case API_FAIL:
		return "fail";
	}
	return "unknown";
}

/* ---- bounded, sanitising text output ---- */

/* A fixed char array filled with truncation; always NUL-terminated when cap > 0. */
struct tbuf {
	char *p;
	size_t cap;
	size_t len;
	bool full;
};

static void
tb_init(struct tbuf *t, char *out, size_t cap)
{
	t->p = out;
	t->cap = cap;
	t->len = 0;
	t->full = cap == 0;
	if (cap)
		out[0] = '\0';
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when invalid. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/*
 * Append n bytes of s: control characters become spaces, invalid UTF-8 becomes
 * '?', and when the space runs out the text stops at a character boundary.
 */
static void
tb_add(struct tbuf *t, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, l;

	while (i < n && !t->full) {
		l = utf8_len(u + i, n - i);
		if (t->len + (l ? l : 1) + 1 > t->cap) {
			t->full = true;
			break;
		}
		if (l == 0) {
			t->p[t->len++] = '?';
			i++;
		} else if (l == 1) {
			t->p[t->len++] = (u[i] < 0x20 || u[i] == 0x7f) ? ' ' : (char)u[i];
			i++;
		} else {
			memcpy(t->p + t->len, u + i, l);
			t->len += l;
			i += l;
		}
	}
	if (t->cap)
		t->p[t->len] = '\0';
}

static void
tb_adds(struct tbuf *t, const char *s)
{
	tb_add(t, s, strlen(s));
}

/* ---- flattening DRF error bodies ---- */

/* Keys whose messages belong to the enclosing object, not to a field. */
static bool
key_is_general(const char *k)
{
	return strcmp(k, "non_field_errors") == 0 || strcmp(k, "detail") == 0 ||
	       strcmp(k, "__all__") == 0;
}

static bool
key_is_index(const char *k)
{
	if (!*k)
		return false;
	for (; *k; k++)
		if (!isdigit((unsigned char)*k))
			return false;
	return true;
}

/* One message, prefixed by its field path; messages are joined with "; ". */
static void
flat_emit(struct tbuf *t, const char *path, const char *msg)
{
	if (t->len)
		tb_adds(t, "; ");
	if (*path) {
		tb_adds(t, path);
		tb_adds(t, ": ");
	}
	tb_adds(t, msg);
}

static void
flatten(const cJSON *node, const char *path, struct tbuf *t, int depth)
{
	char sub[256], num[64];
	const cJSON *c;
	int i = 0;

	if (depth > API_ERROR_DEPTH || t->full)
		return;
	if (cJSON_IsString(node)) {
		flat_emit(t, path, node->valuestring);
	} else if (cJSON_IsNumber(node)) {
		snprintf(num, sizeof(num), "%.15g", node->valuedouble);
		flat_emit(t, path, num);
	} else if (cJSON_IsBool(node)) {
		flat_emit(t, path, cJSON_IsTrue(node) ? "true" : "false");
	} else if (cJSON_IsArray(node)) {
		/* Scalars are messages of this path; objects are items of a nested list. */
		for (c = node ? node->child : NULL; c; c = c->next) {
			if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
				snprintf(sub, sizeof(sub), "%s[%d]", path, i);
				flatten(c, sub, t, depth + 1);
			} else {
				flatten(c, path, t, depth + 1);
			}
			i++;
		}
	} else if (cJSON_IsObject(node)) {
		for (c = node ? node->child : NULL; c; c = c->next) {
			if (!c->string || key_is_general(c->string))
				snprintf(sub, sizeof(sub), "%s", path);
			else if (key_is_index(c->string))
				snprintf(sub, sizeof(sub), "%s[%s]", path, c->string);
			else if (*path)
				snprintf(sub, sizeof(sub), "%s.%s", path, c->string);
			else
				snprintf(sub, sizeof(sub), "%s", c->string);
			flatten(c, sub, t, depth + 1);
		}
	}
	/* null: nothing to say */
}

/* Case-insensitive search for needle in [s, end). */
static const char *
find_ci(const char *s, const char *end, const char *needle)
{
	size_t nl = strlen(needle);

	for (; s && (size_t)(end - s) >= nl; s++)
		if (strncasecmp(s, needle, nl) == 0)
			return s;
	return NULL;
}

/* The text between <tag> and </tag> (case-insensitive), or false. */
static bool
tag_text(const char *s, const char *end, const char *tag, const char **ret_b, const char **ret_e)
{
	char open[32], close[34];
	const char *b, *e;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	b = find_ci(s, end, open);
	if (!b)
		return false;
	b += strlen(open);
	e = find_ci(b, end, close);
	if (!e)
		return false;
	*ret_b = b;
	*ret_e = e;
	return true;
}

/*
 * Visible text of [s, e): tags dropped, whitespace collapsed, ASCII only, and
 * any query string (from '?' to the next blank) left out, since a storage
 * error may quote a presigned URL.
 */
static void
excerpt_add(struct tbuf *t, const char *s, const char *e)
{
	bool in_tag = false, in_query = false, url_word = false, space = t->len > 0;
	char c;

	for (; s < e && !t->full; s++) {
		c = *s;
		if (c == '<') {
			in_tag = true;
			continue;
		}
		if (in_tag) {
			if (c == '>') {
				in_tag = false;
				space = t->len > 0;
			}
			continue;
		}
		if (isspace((unsigned char)c)) {
			in_query = url_word = false;
			space = t->len > 0;
			continue;
		}
		if (in_query)
			continue;
		if (c == '/')
			url_word = true;
		if (c == '?' && url_word) {
			in_query = true;
			continue;
		}
		if (space) {
			tb_add(t, " ", 1);
			space = false;
		}
		if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
			c = '?';
		tb_add(t, &c, 1);
	}
}

static void
excerpt(const char *body, size_t len, char *out, size_t cap)
{
	const char *end = body + len, *b, *e, *mb, *me;
	struct tbuf t;

	if (cap > API_EXCERPT_MAX + 1)
		cap = API_EXCERPT_MAX + 1;
	tb_init(&t, out, cap);
	if (tag_text(body, end, "title", &b, &e)) {
		excerpt_add(&t, b, e);
	} else if (tag_text(body, end, "Code", &b, &e)) {
		/* S3: <Error><Code>…</Code><Message>…</Message>… (nothing else: it quotes
		 * requests). */
		excerpt_add(&t, b, e);
		if (tag_text(body, end, "Message", &mb, &me)) {
			tb_adds(&t, ":");
			excerpt_add(&t, mb, me);
		}
	} else if (tag_text(body, end, "h1", &b, &e)) {
		excerpt_add(&t, b, e);
	} else {
		excerpt_add(&t, body, end);
	}
}

/*
 * Parse exactly len bytes of body (which has a NUL at body[len], as every body
 * from the http layer) as one JSON document: trailing garbage or an embedded
 * NUL make it "not JSON". cJSON's require_null_terminated check wants the
 * terminating NUL inside the given length, hence len + 1.
 */
static cJSON *
parse_json(const char *body, size_t len)
{
	if (!body || len == 0 || memchr(body, '\0', len))
		return NULL;
	return cJSON_ParseWithLengthOpts(body, len + 1, NULL, 1);
}

/* Flatten body into out; *ret_json tells whether it was JSON at all. */
static void
error_text(const char *body, size_t len, char *out, size_t cap, bool *ret_json)
{
	struct tbuf t;
	cJSON *tree;

	*ret_json = false;
	if (cap == 0)
		return;
	out[0] = '\0';
	if (!body || len == 0)
		return;
	tree = parse_json(body, len);
	if (!tree) {
		excerpt(body, len, out, cap);
		return;
	}
	*ret_json = true;
	tb_init(&t, out, cap);
	flatten(tree, "", &t, 0);
	cJSON_Delete(tree);
}

void
api_error_text(const char *body, char *out, size_t cap)
{
	bool json;

	error_text(body, body ? strlen(body) : 0, out, cap, &json);
}

/* ---- classification ---- */

/* The platform's "come back later" refusals (contract 7.2), all 400s. */
static const char *const limit_messages[] = {
    "You have created too many uploads",
    "You have too many active jobs",
    "You have run out of algorithm credits",
    "active image post processing tasks",
};

static enum api_class
from_http_class(enum http_class c)
{
	switch (c) {
	case HTTP_CLASS_OK:
		return API_OK;
	case HTTP_CLASS_RETRY:
		return API_RETRY;
	case HTTP_CLASS_AUTH:
		return API_AUTH;
	case HTTP_CLASS_FAIL:
		return API_FAIL;
	}
	return API_RETRY;
}

void
api_classify(int rc, const struct http_error *err, const struct http_resp *resp,
             struct api_error *ret)
{
	char text[sizeof(ret->message)];
	bool json;
	size_t i;

	err_reset(ret);
	if (rc < 0 || !resp) {
		ret->cls =
		    rc == -ECANCELED ? API_RETRY : from_http_class(http_classify(rc, err, resp));
		if (ret->cls == API_OK)
			ret->cls = API_RETRY;
		ret->status = err ? err->status : 0;
		if (err && err->message[0])
			snprintf(ret->message, sizeof(ret->message), "%s", err->message);
		else
			snprintf(ret->message, sizeof(ret->message), "%s",
			         strerror(rc < 0 ? -rc : EIO));
		return;
	}
	ret->status = resp->status;
	ret->retry_after_ms = resp->retry_after_ms;
	ret->cls = from_http_class(http_classify(rc, err, resp));
	if (ret->cls == API_OK)
		return;
	error_text(resp->body, resp->body ? resp->body_len : 0, text, sizeof(text), &json);
	if (resp->status == 400) {
		for (i = 0; i < GC_ARRAY_SIZE(limit_messages); i++)
			if (strstr(text, limit_messages[i]))
				ret->cls = API_LIMIT;
	} else if (resp->status == 403 && json && strcmp(text, "Upload limit reached") == 0) {
		ret->cls = API_LIMIT;
	} else if (resp->status == 404) {
		ret->cls = API_GONE;
	}
	/* A 4xx from the application speaks for itself; anything else is labelled. */
	if (json && text[0] && resp->status >= 400 && resp->status < 500)
		snprintf(ret->message, sizeof(ret->message), "%s", text);
	else if (text[0])
		snprintf(ret->message, sizeof(ret->message), "HTTP %ld: %s", resp->status, text);
	else
		snprintf(ret->message, sizeof(ret->message), "HTTP %ld", resp->status);
}

/* ---- the handle ---- */

struct api *
api_new(struct http *http, const char *api_url)
{
	struct api *api;
	size_t n;

	if (!http || !api_url)
		return NULL;
	n = strlen(api_url);
	if (n == 0 || n > API_URL_MAX || api_url[n - 1] != '/' || http_check_url(api_url) < 0)
		return NULL;
	api = calloc(1, sizeof(*api));
	if (!api)
		return NULL;
	api->http = http;
	api->root = strdup(api_url);
	if (!api->root)
		return api_free(api);
	return api;
}

struct api *
api_free(struct api *api)
{
	if (!api)
		return NULL;
	free(api->root);
	free(api);
	return NULL;
}

struct http *
api_http(struct api *api)
{
	return api->http;
}

const char *
api_root(const struct api *api)
{
	return api->root;
}

void
api_set_cancel(struct api *api, const atomic_int *cancel)
{
	api->cancel = cancel;
}

/* ---- URL building ---- */

/* A URL under construction: after the first failure every step is a no-op. */
struct urlb {
	struct buf b;
	int r;
};

static void
ub_init(struct urlb *u, const char *start)
{
	buf_init(&u->b, API_URL_MAX);
	u->r = buf_appends(&u->b, start);
}

static void
ub_lit(struct urlb *u, const char *s)
{
	if (u->r == 0)
		u->r = buf_appends(&u->b, s);
}

/* Percent-encode everything but RFC 3986's unreserved characters. */
static void
ub_esc(struct urlb *u, const char *s)
{
	for (; *s && u->r == 0; s++) {
		unsigned char c = (unsigned char)*s;

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
			u->r = buf_append(&u->b, s, 1);
		else
			u->r = buf_printf(&u->b, "%%%02X", c);
	}
}

static void
ub_num(struct urlb *u, long long n)
{
	if (u->r == 0)
		u->r = buf_printf(&u->b, "%lld", n);
}

/* The URL (caller frees), or NULL with the reason in reterr. */
static char *
ub_take(struct urlb *u, struct api_error *reterr)
{
	char *s;

	if (u->r == -E2BIG) {
		buf_clear(&u->b);
		err_inval(reterr, "request URL too long");
		return NULL;
	}
	if (u->r < 0) {
		buf_clear(&u->b);
		err_nomem(reterr);
		return NULL;
	}
	s = buf_take(&u->b, NULL);
	if (!s)
		err_nomem(reterr);
	return s;
}

/* The errno of a failed ub_take(). */
static int
url_error(const struct api_error *reterr)
{
	return reterr->cls == API_FAIL ? -EINVAL : -ENOMEM;
}

/* root + "<collection>/<escaped pk>/". */
static char *
detail_url(const struct api *api, const char *collection, const char *pk, struct api_error *reterr)
{
	struct urlb u;

	ub_init(&u, api->root);
	ub_lit(&u, collection);
	ub_esc(&u, pk);
	ub_lit(&u, "/");
	return ub_take(&u, reterr);
}

/*
 * A URL from the server (or from our own records of it) that we are about to
 * send the token to: it must be usable and have exactly the root's origin.
 */
static int
check_target(const struct api *api, const char *url, struct api_error *reterr)
{
	if (!url || !*url || strlen(url) > API_URL_MAX || http_check_url(url) < 0 ||
	    !http_same_origin(url, api->root))
		return err_inval(reterr, "invalid target URL");
	return 0;
}

static bool
nonempty(const char *s)
{
	return s && *s;
}

/* ---- parsing helpers ---- */

/* Why a 2xx body was refused. */
struct jerr {
	char why[200];
};

static int jbad(struct jerr *e, const char *fmt, ...) GC_PRINTF(2, 3);

static int
jbad(struct jerr *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->why, sizeof(e->why), fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

/* Turn a refused 2xx body into API_RETRY "unexpected response from <url>: <why>". */
static int
err_malformed(struct api_error *reterr, long status, const char *url, const struct jerr *e)
{
	char *red = http_redact_url(url);

	err_set(reterr, API_RETRY, status, "unexpected response from %s: %s",
	        red ? red : "the server", e->why);
	free(red);
	return -EIO;
}

enum {
	J_OPT = 0,           /* absent or null gives "" */
	J_REQ = 1 << 0,      /* must be present and not null */
	J_NONEMPTY = 1 << 1, /* must not be "" (implies J_REQ) */
	J_PK = 1 << 2,       /* an integer is accepted and printed */
	J_NULLABLE = 1 << 3, /* absent or null gives NULL instead of "" */
};

/*
 * Copy string member key of obj into *ret (malloc'd) according to flags.
 * Returns 0, -EBADMSG (reason in e) or -ENOMEM.
 */
static int
jstr(const cJSON *obj, const char *key, unsigned flags, char **ret, struct jerr *e)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	char num[32];
	const char *s;
	char *copy;

	if (flags & J_NONEMPTY)
		flags |= J_REQ;
	if (!v || cJSON_IsNull(v)) {
		if (flags & J_REQ)
			return jbad(e, "'%s' is missing", key);
		if (flags & J_NULLABLE) {
			*ret = NULL;
			return 0;
		}
		s = "";
	} else if (cJSON_IsString(v)) {
		s = v->valuestring;
	} else if ((flags & J_PK) && cJSON_IsNumber(v) && v->valuedouble >= 0 &&
	           v->valuedouble < 9007199254740992.0 && floor(v->valuedouble) == v->valuedouble) {
		snprintf(num, sizeof(num), "%.0f", v->valuedouble);
		s = num;
	} else {
		return jbad(e, "'%s' is not a string", key);
	}
	if (strlen(s) > API_FIELD_MAX)
		return jbad(e, "'%s' is too long", key);
	if ((flags & J_NONEMPTY) && !*s)
		return jbad(e, "'%s' is empty", key);
	copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	*ret = copy;
	return 0;
}

/* An integral number member in [min, max]. */
static int
jint(const cJSON *obj, const char *key, int64_t min, int64_t max, int64_t *ret, struct jerr *e)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!v || cJSON_IsNull(v))
		return jbad(e, "'%s' is missing", key);
	if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble ||
	    v->valuedouble < (double)min || v->valuedouble > (double)max)
		return jbad(e, "'%s' is not an integer in range", key);
	*ret = (int64_t)v->valuedouble;
	return 0;
}

/*
 * The array member key: *ret is NULL and *ret_n 0 when it is absent or null
 * and not required. Bounded by API_ARRAY_MAX.
 */
static int
jarr(const cJSON *obj, const char *key, bool required, const cJSON **ret, size_t *ret_n,
     struct jerr *e)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	int n;

	if (!v || cJSON_IsNull(v)) {
		if (required)
			return jbad(e, "'%s' is missing", key);
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	if (!cJSON_IsArray(v))
		return jbad(e, "'%s' is not an array", key);
	n = cJSON_GetArraySize(v);
	if (n < 0 || n > API_ARRAY_MAX)
		return jbad(e, "'%s' has too many elements", key);
	*ret = v;
	*ret_n = (size_t)n;
	return 0;
}

/* Detach array member key from obj (NULL when absent or null). */
static int
jdetach_array(cJSON *obj, const char *key, cJSON **ret, struct jerr *e)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!v || cJSON_IsNull(v)) {
		*ret = NULL;
		return 0;
	}
	if (!cJSON_IsArray(v))
		return jbad(e, "'%s' is not an array", key);
	if (cJSON_GetArraySize(v) > API_ARRAY_MAX)
		return jbad(e, "'%s' has too many elements", key);
	*ret = cJSON_DetachItemViaPointer(obj, v);
	return 0;
}

static char **
strv_free(char **v, size_t n)
{
	size_t i;

	if (!v)
		return NULL;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return NULL;
}

/* A bounded array of strings; every element must be a string. */
static int
jstrv(const cJSON *obj, const char *key, char ***ret, size_t *ret_n, struct jerr *e)
{
	const cJSON *arr, *c;
	char **v = NULL;
	size_t n, i = 0;
	int r;

	r = jarr(obj, key, false, &arr, &n, e);
	if (r < 0)
		return r;
	if (n) {
		v = calloc(n, sizeof(*v));
		if (!v)
			return -ENOMEM;
		for (c = arr ? arr->child : NULL; c; c = c->next) {
			if (!cJSON_IsString(c) || strlen(c->valuestring) > API_FIELD_MAX) {
				strv_free(v, n);
				return jbad(e, "'%s' holds a non-string", key);
			}
			v[i] = strdup(c->valuestring);
			if (!v[i]) {
				strv_free(v, n);
				return -ENOMEM;
			}
			i++;
		}
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* ---- the request ---- */

/*
 * One API call. On success (2xx with a JSON body) *ret_tree is the parsed body
 * (caller deletes it) and *ret_status the status. Failures fill reterr and
 * return the http layer's errno (no response), -EIO (a response classified as
 * a failure, or a 2xx body that is not JSON) or -ENOMEM.
 */
static int
api_call(struct api *api, enum http_method method, const char *url, const cJSON *body,
         cJSON **ret_tree, long *ret_status, struct api_error *reterr)
{
	struct http_req req = {0};
	struct http_resp resp = {0};
	struct http_error herr = {0};
	struct jerr je;
	char *json = NULL, *red;
	cJSON *tree;
	int r;

	if (body) {
		json = cJSON_PrintUnformatted(body);
		if (!json)
			return err_nomem(reterr);
	}
	req.method = method;
	req.url = url;
	req.json = json;
	req.timeout_s = API_TIMEOUT_S;
	req.cancel = api->cancel;
	r = http_request(api->http, &req, &resp, &herr);
	api_classify(r, &herr, r == 0 ? &resp : NULL, reterr);
	red = http_redact_url(url);
	log_debug("api: %s %s: %s %ld%s%s", http_method_name(method), red ? red : "?",
	          api_class_name(reterr->cls), reterr->status, reterr->message[0] ? ": " : "",
	          reterr->message);
	free(red);
	if (r < 0)
		goto out;
	if (reterr->cls != API_OK) {
		r = -EIO;
		goto out;
	}
	tree = parse_json(resp.body, resp.body_len);
	if (!tree) {
		snprintf(je.why, sizeof(je.why), "the body is not JSON");
		r = err_malformed(reterr, resp.status, url, &je);
		goto out;
	}
	*ret_tree = tree;
	*ret_status = resp.status;
	r = 0;
out:
	http_resp_done(&resp);
	cJSON_free(json);
	return r;
}

/*
 * Finish a parse step: -EBADMSG becomes a malformed-response error, -ENOMEM
 * an out-of-memory one.
 */
static int
parse_failed(int r, struct api_error *reterr, long status, const char *url, const struct jerr *e)
{
	if (r == -ENOMEM)
		return err_nomem(reterr);
	return err_malformed(reterr, status, url, e);
}

/* ---- sockets, algorithms, collections ---- */

void
api_socket_clear(struct api_socket *s)
{
	if (!s)
		return;
	free(s->slug);
	free(s->title);
	free(s->kind);
	free(s->relative_path);
	memset(s, 0, sizeof(*s));
}

static int
parse_socket(const cJSON *o, struct api_socket *ret, struct jerr *e)
{
	struct api_socket s = {0};
	char *sk = NULL;
	int r;

	if (!cJSON_IsObject(o))
		return jbad(e, "a socket is not an object");
	if ((r = jstr(o, "slug", J_NONEMPTY, &s.slug, e)) < 0 ||
	    (r = jstr(o, "title", J_OPT, &s.title, e)) < 0 ||
	    (r = jstr(o, "kind", J_OPT, &s.kind, e)) < 0 ||
	    (r = jstr(o, "relative_path", J_OPT, &s.relative_path, e)) < 0 ||
	    (r = jstr(o, "super_kind", J_REQ, &sk, e)) < 0)
		goto fail;
	if (strcmp(sk, "Image") == 0) {
		s.super_kind = API_SUPER_IMAGE;
	} else if (strcmp(sk, "File") == 0) {
		s.super_kind = API_SUPER_FILE;
	} else if (strcmp(sk, "Value") == 0) {
		s.super_kind = API_SUPER_VALUE;
	} else {
		r = jbad(e, "socket '%.64s' has an unknown super_kind", s.slug);
		goto fail;
	}
	free(sk);
	*ret = s;
	return 0;
fail:
	free(sk);
	api_socket_clear(&s);
	return r;
}

static void
sockets_free(struct api_socket *v, size_t n)
{
	size_t i;

	for (i = 0; v && i < n; i++)
		api_socket_clear(&v[i]);
	free(v);
}

static int
parse_sockets(const cJSON *o, const char *key, struct api_socket **ret, size_t *ret_n,
              struct jerr *e)
{
	const cJSON *arr, *c;
	struct api_socket *v = NULL;
	size_t n, i = 0;
	int r;

	r = jarr(o, key, true, &arr, &n, e);
	if (r < 0)
		return r;
	if (n) {
		v = calloc(n, sizeof(*v));
		if (!v)
			return -ENOMEM;
		for (c = arr ? arr->child : NULL; c; c = c->next) {
			r = parse_socket(c, &v[i], e);
			if (r < 0) {
				sockets_free(v, n);
				return r;
			}
			i++;
		}
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

void
api_algorithm_clear(struct api_algorithm *a)
{
	size_t i;

	if (!a)
		return;
	free(a->pk);
	free(a->api_url);
	free(a->slug);
	free(a->title);
	for (i = 0; a->interfaces && i < a->n_interfaces; i++) {
		sockets_free(a->interfaces[i].inputs, a->interfaces[i].n_inputs);
		sockets_free(a->interfaces[i].outputs, a->interfaces[i].n_outputs);
	}
	free(a->interfaces);
	memset(a, 0, sizeof(*a));
}

static int
parse_algorithm(const cJSON *o, const char *slug, struct api_algorithm *ret, struct jerr *e)
{
	struct api_algorithm a = {0};
	const cJSON *arr, *c;
	size_t n, i = 0;
	int r;

	if ((r = jstr(o, "pk", J_NONEMPTY | J_PK, &a.pk, e)) < 0 ||
	    (r = jstr(o, "api_url", J_NONEMPTY, &a.api_url, e)) < 0 ||
	    (r = jstr(o, "title", J_OPT, &a.title, e)) < 0 ||
	    (r = jarr(o, "interfaces", true, &arr, &n, e)) < 0)
		goto fail;
	a.slug = strdup(slug);
	if (!a.slug) {
		r = -ENOMEM;
		goto fail;
	}
	if (n) {
		a.interfaces = calloc(n, sizeof(*a.interfaces));
		if (!a.interfaces) {
			r = -ENOMEM;
			goto fail;
		}
		a.n_interfaces = n;
		for (c = arr ? arr->child : NULL; c; c = c->next) {
			struct api_interface *itf = &a.interfaces[i++];

			if (!cJSON_IsObject(c)) {
				r = jbad(e, "an interface is not an object");
				goto fail;
			}
			r = parse_sockets(c, "inputs", &itf->inputs, &itf->n_inputs, e);
			if (r < 0)
				goto fail;
			r = parse_sockets(c, "outputs", &itf->outputs, &itf->n_outputs, e);
			if (r < 0)
				goto fail;
		}
	}
	*ret = a;
	return 0;
fail:
	api_algorithm_clear(&a);
	return r;
}

void
api_collection_clear(struct api_collection *c)
{
	if (!c)
		return;
	free(c->pk);
	free(c->api_url);
	free(c->slug);
	free(c->title);
	memset(c, 0, sizeof(*c));
}

static int
parse_collection(const cJSON *o, const char *slug, struct api_collection *ret, struct jerr *e)
{
	struct api_collection c = {0};
	int r;

	if ((r = jstr(o, "pk", J_NONEMPTY | J_PK, &c.pk, e)) < 0 ||
	    (r = jstr(o, "api_url", J_NONEMPTY, &c.api_url, e)) < 0 ||
	    (r = jstr(o, "title", J_OPT, &c.title, e)) < 0)
		goto fail;
	/* Archives have no slug in their body: keep the one that was asked for. */
	c.slug = strdup(slug);
	if (!c.slug) {
		r = -ENOMEM;
		goto fail;
	}
	*ret = c;
	return 0;
fail:
	api_collection_clear(&c);
	return r;
}

int
api_ping(struct api *api, struct api_error *reterr)
{
	struct api_error scratch;
	struct urlb ub;
	struct jerr je;
	cJSON *tree = NULL;
	char *url;
	long status;
	int r;

	if (!reterr)
		reterr = &scratch;
	ub_init(&ub, api->root);
	ub_lit(&ub, "gcapi/");
	url = ub_take(&ub, reterr);
	if (!url)
		return url_error(reterr);
	r = api_call(api, HTTP_GET, url, NULL, &tree, &status, reterr);
	if (r < 0)
		goto out;
	if (!cJSON_IsObject(tree)) {
		r = err_malformed(reterr, status, url, (jbad(&je, "not an object"), &je));
		goto out;
	}
	err_reset(reterr);
	r = 0;
out:
	cJSON_Delete(tree);
	free(url);
	return r;
}

/*
 * GET <list>?slug=<slug>&offset=0&limit=100 and return the single result: the
 * tree (caller deletes) and a pointer into it. No result is API_GONE, two or
 * more API_FAIL.
 */
static int
lookup(struct api *api, const char *list, const char *kind, const char *slug, cJSON **ret_tree,
       const cJSON **ret_obj, char **ret_url, long *ret_status, struct api_error *reterr)
{
	struct urlb u;
	const cJSON *results;
	struct jerr je;
	cJSON *tree = NULL;
	char *url;
	long status;
	size_t n;
	int r;

	if (!nonempty(slug))
		return err_inval(reterr, "no %s slug given", kind);
	ub_init(&u, api->root);
	ub_lit(&u, list);
	ub_lit(&u, "?slug=");
	ub_esc(&u, slug);
	ub_lit(&u, "&offset=0&limit=100");
	url = ub_take(&u, reterr);
	if (!url)
		return -ENOMEM;
	r = api_call(api, HTTP_GET, url, NULL, &tree, &status, reterr);
	if (r < 0)
		goto fail;
	if (!cJSON_IsObject(tree)) {
		r = err_malformed(reterr, status, url, (jbad(&je, "not a list page"), &je));
		goto fail;
	}
	r = jarr(tree, "results", true, &results, &n, &je);
	if (r < 0) {
		r = parse_failed(r, reterr, status, url, &je);
		goto fail;
	}
	if (n == 0) {
		/* Also what an anonymous or foreign token sees for a private object (1.2). */
		err_set(reterr, API_GONE, status, "no %s with slug '%s' visible to this token",
		        kind, slug);
		r = -EIO;
		goto fail;
	}
	if (n > 1) {
		err_set(reterr, API_FAIL, status, "%zu %ss match slug '%s'", n, kind, slug);
		r = -EIO;
		goto fail;
	}
	if (!cJSON_IsObject(results->child)) {
		r = err_malformed(reterr, status, url,
		                  (jbad(&je, "a result is not an object"), &je));
		goto fail;
	}
	*ret_tree = tree;
	*ret_obj = results->child;
	*ret_url = url;
	*ret_status = status;
	return 0;
fail:
	cJSON_Delete(tree);
	free(url);
	return r;
}

int
api_algorithm_get(struct api *api, const char *slug, struct api_algorithm *ret,
                  struct api_error *reterr)
{
	struct api_error scratch;
	const cJSON *obj;
	struct jerr je;
	cJSON *tree;
	char *url;
	long status;
	int r;

	if (!reterr)
		reterr = &scratch;
	r = lookup(api, "algorithms/", "algorithm", slug, &tree, &obj, &url, &status, reterr);
	if (r < 0)
		return r;
	r = parse_algorithm(obj, slug, ret, &je);
	if (r < 0)
		r = parse_failed(r, reterr, status, url, &je);
	cJSON_Delete(tree);
	free(url);
	return r;
}

static int
collection_get(struct api *api, const char *list, const char *kind, const char *slug,
               struct api_collection *ret, struct api_error *reterr)
{
	struct api_error scratch;
	const cJSON *obj;
	struct jerr je;
	cJSON *tree;
	char *url;
	long status;
	int r;

	if (!reterr)
		reterr = &scratch;
	r = lookup(api, list, kind, slug, &tree, &obj, &url, &status, reterr);
	if (r < 0)
		return r;
	r = parse_collection(obj, slug, ret, &je);
	if (r < 0)
		r = parse_failed(r, reterr, status, url, &je);
	cJSON_Delete(tree);
	free(url);
	return r;
}

int
api_archive_get(struct api *api, const char *slug, struct api_collection *ret,
                struct api_error *reterr)
{
	return collection_get(api, "archives/", "archive", slug, ret, reterr);
}

int
api_reader_study_get(struct api *api, const char *slug, struct api_collection *ret,
                     struct api_error *reterr)
{
	return collection_get(api, "reader-studies/", "reader study", slug, ret, reterr);
}

int
api_socket_get(struct api *api, const char *slug, struct api_socket *ret, struct api_error *reterr)
{
	struct api_error scratch;
	const cJSON *obj;
	struct jerr je;
	cJSON *tree;
	char *url;
	long status;
	int r;

	if (!reterr)
		reterr = &scratch;
	r = lookup(api, "components/interfaces/", "socket", slug, &tree, &obj, &url, &status,
	           reterr);
	if (r < 0)
		return r;
	r = parse_socket(obj, ret, &je);
	if (r < 0)
		r = parse_failed(r, reterr, status, url, &je);
	cJSON_Delete(tree);
	free(url);
	return r;
}

/* ---- uploads ---- */

void
api_upload_clear(struct api_upload *u)
{
	if (!u)
		return;
	free(u->pk);
	free(u->api_url);
	free(u->filename);
	free(u->s3_upload_id);
	free(u->status);
	memset(u, 0, sizeof(*u));
}

void
api_parts_free(struct api_part *parts, size_t n)
{
	size_t i;

	for (i = 0; parts && i < n; i++)
		free(parts[i].etag);
	free(parts);
}

static int
parse_upload(const cJSON *o, struct api_upload *ret, struct jerr *e)
{
	struct api_upload u = {0};
	int r;

	if (!cJSON_IsObject(o))
		return jbad(e, "not an object");
	if ((r = jstr(o, "pk", J_NONEMPTY | J_PK, &u.pk, e)) < 0 ||
	    (r = jstr(o, "api_url", J_NONEMPTY, &u.api_url, e)) < 0 ||
	    (r = jstr(o, "status", J_NONEMPTY, &u.status, e)) < 0 ||
	    (r = jstr(o, "filename", J_OPT, &u.filename, e)) < 0 ||
	    (r = jstr(o, "s3_upload_id", J_OPT, &u.s3_upload_id, e)) < 0)
		goto fail;
	*ret = u;
	return 0;
fail:
	api_upload_clear(&u);
	return r;
}

/* Call, then parse the body as an upload object into *ret (NULL: check only). */
static int
upload_call(struct api *api, enum http_method method, const char *url, const cJSON *body,
            struct api_upload *ret, cJSON **ret_tree, struct api_error *reterr)
{
	struct api_upload u;
	struct jerr je;
	cJSON *tree = NULL;
	long status;
	int r;

	r = api_call(api, method, url, body, &tree, &status, reterr);
	if (r < 0)
		return r;
	r = parse_upload(tree, &u, &je);
	if (r < 0) {
		r = parse_failed(r, reterr, status, url, &je);
		cJSON_Delete(tree);
		return r;
	}
	if (ret)
		*ret = u;
	else
		api_upload_clear(&u);
	if (ret_tree)
		*ret_tree = tree;
	else
		cJSON_Delete(tree);
	return 0;
}

int
api_upload_create(struct api *api, const char *filename, struct api_upload *ret,
                  struct api_error *reterr)
{
	struct api_error scratch;
	struct urlb ub;
	cJSON *body = NULL;
	char *url = NULL;
	int r;

	if (!reterr)
		reterr = &scratch;
	if (!filename)
		return err_inval(reterr, "no file name given");
	ub_init(&ub, api->root);
	ub_lit(&ub, "uploads/");
	url = ub_take(&ub, reterr);
	if (!url)
		return -ENOMEM;
	body = cJSON_CreateObject();
	if (!body || !cJSON_AddStringToObject(body, "filename", filename)) {
		r = err_nomem(reterr);
		goto out;
	}
	r = upload_call(api, HTTP_POST, url, body, ret, NULL, reterr);
out:
	cJSON_Delete(body);
	free(url);
	return r;
}

int
api_upload_get(struct api *api, const char *upload_pk, struct api_upload *ret,
               struct api_error *reterr)
{
	struct api_error scratch;
	char *url;
	int r;

	if (!reterr)
		reterr = &scratch;
	if (!nonempty(upload_pk))
		return err_inval(reterr, "no upload pk given");
	url = detail_url(api, "uploads/", upload_pk, reterr);
	if (!url)
		return -ENOMEM;
	r = upload_call(api, HTTP_GET, url, NULL, ret, NULL, reterr);
	free(url);
	return r;
}

/* root + "uploads/<pk>/<s3 upload id>/<action>/". */
static char *
upload_action_url(struct api *api, const struct api_upload *u, const char *action,
                  struct api_error *reterr)
{
	struct urlb ub;

	if (!u || !nonempty(u->pk) || !nonempty(u->s3_upload_id)) {
		err_inval(reterr, "upload has no pk or S3 upload id");
		return NULL;
	}
	ub_init(&ub, api->root);
	ub_lit(&ub, "uploads/");
	ub_esc(&ub, u->pk);
	ub_lit(&ub, "/");
	ub_esc(&ub, u->s3_upload_id);
	ub_lit(&ub, "/");
	ub_lit(&ub, action);
	ub_lit(&ub, "/");
	return ub_take(&ub, reterr);
}

int
api_upload_presign(struct api *api, const struct api_upload *u, const int *numbers, size_t n,
                   char ***ret_urls, struct api_error *reterr)
{
	struct api_error scratch;
	const cJSON *map, *v;
	struct jerr je;
	cJSON *body = NULL, *arr, *tree = NULL;
	char **urls = NULL, *url = NULL, key[16];
	long status = 200;
	size_t i;
	int r;

	if (!reterr)
		reterr = &scratch;
	if (n == 0 || n > API_PRESIGN_MAX || !numbers)
		return err_inval(reterr, "between 1 and %d part numbers per presign call",
		                 API_PRESIGN_MAX);
	for (i = 0; i < n; i++)
		if (numbers[i] < API_PART_MIN || numbers[i] > API_PART_MAX)
			return err_inval(reterr, "part number %d out of range", numbers[i]);
	url = upload_action_url(api, u, "generate-presigned-urls", reterr);
	if (!url)
		return url_error(reterr);
	body = cJSON_CreateObject();
	arr = body ? cJSON_AddArrayToObject(body, "part_numbers") : NULL;
	for (i = 0; arr && i < n; i++)
		if (!cJSON_AddItemToArray(arr, cJSON_CreateNumber(numbers[i])))
			arr = NULL;
	if (!arr) {
		r = err_nomem(reterr);
		goto out;
	}
	r = upload_call(api, HTTP_PATCH, url, body, NULL, &tree, reterr);
	if (r < 0)
		goto out;
	map = cJSON_GetObjectItemCaseSensitive(tree, "presigned_urls");
	if (!cJSON_IsObject(map)) {
		r = err_malformed(reterr, status, url,
		                  (jbad(&je, "no 'presigned_urls' object"), &je));
		goto out;
	}
	urls = calloc(n, sizeof(*urls));
	if (!urls) {
		r = err_nomem(reterr);
		goto out;
	}
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "%d", numbers[i]);
		v = cJSON_GetObjectItemCaseSensitive(map, key);
		if (!cJSON_IsString(v) || strlen(v->valuestring) > API_URL_MAX ||
		    http_check_url(v->valuestring) < 0) {
			r = err_malformed(
			    reterr, status, url,
			    (jbad(&je, "no usable presigned URL for part %d", numbers[i]), &je));
			goto out;
		}
		urls[i] = strdup(v->valuestring);
		if (!urls[i]) {
			r = err_nomem(reterr);
			goto out;
		}
	}
	*ret_urls = urls;
	urls = NULL;
	r = 0;
out:
	strv_free(urls, n);
	cJSON_Delete(tree);
	cJSON_Delete(body);
	free(url);
	return r;
}

static int
part_cmp(const void *a, const void *b)
{
	const struct api_part *pa = a, *pb = b;

	return (pa->number > pb->number) - (pa->number < pb->number);
}

int
api_upload_complete(struct api *api, const struct api_upload *u, const struct api_part *parts,
                    size_t n, struct api_upload *ret, struct api_error *reterr)
{
	struct api_error scratch;
	struct api_part *sorted = NULL;
	cJSON *body = NULL, *arr, *p;
	char *url = NULL;
	size_t i;
	int r;

	if (!reterr)
		reterr = &scratch;
	if (n > API_PART_MAX || (n && !parts))
		return err_inval(reterr, "bad part list");
	url = upload_action_url(api, u, "complete-multipart-upload", reterr);
	if (!url)
		return url_error(reterr);
	if (n) {
		sorted = malloc(n * sizeof(*sorted));
		if (!sorted) {
			r = err_nomem(reterr);
			goto out;
		}
		memcpy(sorted, parts, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), part_cmp);
	}
	for (i = 0; i < n; i++) {
		if (sorted[i].number < API_PART_MIN || sorted[i].number > API_PART_MAX ||
		    !nonempty(sorted[i].etag) || (i && sorted[i].number == sorted[i - 1].number)) {
			r = err_inval(reterr, "bad part %d in the completion list",
			              sorted[i].number);
			goto out;
		}
	}
	/* Exactly ETag and PartNumber: S3 (through boto3) refuses any other key. */
	body = cJSON_CreateObject();
	arr = body ? cJSON_AddArrayToObject(body, "parts") : NULL;
	for (i = 0; arr && i < n; i++) {
		p = cJSON_CreateObject();
		if (!p || !cJSON_AddItemToArray(arr, p)) {
			cJSON_Delete(p);
			arr = NULL;
		} else if (!cJSON_AddStringToObject(p, "ETag", sorted[i].etag) ||
		           !cJSON_AddNumberToObject(p, "PartNumber", sorted[i].number)) {
			arr = NULL;
		}
	}
	if (!arr) {
		r = err_nomem(reterr);
		goto out;
	}
	r = upload_call(api, HTTP_PATCH, url, body, ret, NULL, reterr);
out:
	cJSON_Delete(body);
	free(sorted);
	free(url);
	return r;
}

int
api_upload_abort(struct api *api, const struct api_upload *u, struct api_error *reterr)
{
	struct api_error scratch;
	char *url;
	int r;

	if (!reterr)
		reterr = &scratch;
	url = upload_action_url(api, u, "abort-multipart-upload", reterr);
	if (!url)
		return url_error(reterr);
	r = upload_call(api, HTTP_PATCH, url, NULL, NULL, NULL, reterr);
	free(url);
	return r;
}

/* The "parts" of a list-parts body; *ret is NULL when there are none. */
static int
parse_parts(const cJSON *tree, struct api_part **ret, size_t *ret_n, struct jerr *e)
{
	struct api_part *parts = NULL;
	const cJSON *arr, *c;
	int64_t num, size;
	size_t n, i = 0;
	int r;

	r = jarr(tree, "parts", true, &arr, &n, e);
	if (r < 0)
		return r;
	if (n) {
		parts = calloc(n, sizeof(*parts));
		if (!parts)
			return -ENOMEM;
	}
	for (c = arr ? arr->child : NULL; c; c = c->next) {
		if (!cJSON_IsObject(c)) {
			r = jbad(e, "a part is not an object");
			goto fail;
		}
		if ((r = jint(c, "PartNumber", API_PART_MIN, API_PART_MAX, &num, e)) < 0 ||
		    (r = jint(c, "Size", 0, INT64_C(1) << 50, &size, e)) < 0 ||
		    (r = jstr(c, "ETag", J_NONEMPTY, &parts[i].etag, e)) < 0)
			goto fail;
		parts[i].number = (int)num;
		parts[i].size = size;
		i++;
	}
	*ret = parts;
	*ret_n = n;
	return 0;
fail:
	api_parts_free(parts, n);
	return r;
}

int
api_upload_list_parts(struct api *api, const struct api_upload *u, struct api_part **ret_parts,
                      size_t *ret_n, struct api_error *reterr)
{
	struct api_error scratch;
	struct jerr je;
	cJSON *tree = NULL;
	char *url;
	int r;

	if (!reterr)
		reterr = &scratch;
	url = upload_action_url(api, u, "list-parts", reterr);
	if (!url)
		return url_error(reterr);
	r = upload_call(api, HTTP_GET, url, NULL, NULL, &tree, reterr);
	if (r < 0)
		goto out;
	r = parse_parts(tree, ret_parts, ret_n, &je);
	if (r < 0)
		r = parse_failed(r, reterr, reterr->status, url, &je);
out:
	cJSON_Delete(tree);
	free(url);
	return r;
}

/* ---- upload sessions ---- */

void
api_session_clear(struct api_session *s)
{
	if (!s)
		return;
	free(s->pk);
	free(s->api_url);
	free(s->status);
	free(s->error_message);
	strv_free(s->image_set, s->n_images);
	memset(s, 0, sizeof(*s));
}

static int
parse_session(const cJSON *o, struct api_session *ret, struct jerr *e)
{
	struct api_session s = {0};
	int r;

	if (!cJSON_IsObject(o))
		return jbad(e, "not an object");
	if ((r = jstr(o, "pk", J_NONEMPTY | J_PK, &s.pk, e)) < 0 ||
	    (r = jstr(o, "api_url", J_NONEMPTY, &s.api_url, e)) < 0 ||
	    (r = jstr(o, "status", J_NONEMPTY, &s.status, e)) < 0 ||
	    (r = jstr(o, "error_message", J_OPT, &s.error_message, e)) < 0 ||
	    (r = jstrv(o, "image_set", &s.image_set, &s.n_images, e)) < 0)
		goto fail;
	*ret = s;
	return 0;
fail:
	api_session_clear(&s);
	return r;
}

static int
session_call(struct api *api, enum http_method method, const char *url, const cJSON *body,
             struct api_session *ret, struct api_error *reterr)
{
	struct jerr je;
	cJSON *tree;
	long status;
	int r;

	r = api_call(api, method, url, body, &tree, &status, reterr);
	if (r < 0)
		return r;
	r = parse_session(tree, ret, &je);
	if (r < 0)
		r = parse_failed(r, reterr, status, url, &je);
	cJSON_Delete(tree);
	return r;
}

int
api_session_create(struct api *api, const char *const *upload_urls, size_t n,
                   struct api_session *ret, struct api_error *reterr)
{
	struct api_error scratch;
	struct urlb ub;
	cJSON *body = NULL, *arr;
	char *url;
	size_t i;
	int r;

	if (!reterr)
		reterr = &scratch;
	if (n > API_ARRAY_MAX || (n && !upload_urls))
		return err_inval(reterr, "bad upload list");
	for (i = 0; i < n; i++)
		if (!nonempty(upload_urls[i]))
			return err_inval(reterr, "upload %zu has no URL", i);
	ub_init(&ub, api->root);
	ub_lit(&ub, "cases/upload-sessions/");
	url = ub_take(&ub, reterr);
	if (!url)
		return -ENOMEM;
	/* The server enforces its own cap (100 files): its message reaches the operator. */
	body = cJSON_CreateObject();
	arr = body ? cJSON_AddArrayToObject(body, "uploads") : NULL;
	for (i = 0; arr && i < n; i++)
		if (!cJSON_AddItemToArray(arr, cJSON_CreateString(upload_urls[i])))
			arr = NULL;
	if (!arr) {
		r = err_nomem(reterr);
		goto out;
	}
	r = session_call(api, HTTP_POST, url, body, ret, reterr);
out:
	cJSON_Delete(body);
	free(url);
	return r;
}

int
api_session_get(struct api *api, const char *session_url, struct api_session *ret,
                struct api_error *reterr)
{
	struct api_error scratch;
	int r;

	if (!reterr)
		reterr = &scratch;
	r = check_target(api, session_url, reterr);
	if (r < 0)
		return r;
	return session_call(api, HTTP_GET, session_url, NULL, ret, reterr);
}

/* ---- archive items and display sets ---- */

void
api_item_clear(struct api_item *i)
{
	if (!i)
		return;
	free(i->pk);
	free(i->api_url);
	free(i->title);
	cJSON_Delete(i->values);
	memset(i, 0, sizeof(*i));
}

/*
 * An item from o (which loses its "values"). Its api_url is the body's, else
 * fallback_url, else root + collection + pk + "/".
 */
static int
parse_item(struct api *api, cJSON *o, const char *collection, const char *fallback_url,
           struct api_item *ret, struct jerr *e)
{
	struct api_item it = {0};
	struct api_error scratch;
	int r;

	if (!cJSON_IsObject(o))
		return jbad(e, "not an object");
	if ((r = jstr(o, "pk", J_NONEMPTY | J_PK, &it.pk, e)) < 0 ||
	    (r = jstr(o, "api_url", J_NULLABLE, &it.api_url, e)) < 0 ||
	    (r = jstr(o, "title", J_OPT, &it.title, e)) < 0 ||
	    (r = jdetach_array(o, "values", &it.values, e)) < 0)
		goto fail;
	if (!nonempty(it.api_url)) {
		free(it.api_url);
		it.api_url = fallback_url ? strdup(fallback_url)
		                          : detail_url(api, collection, it.pk, &scratch);
		if (!it.api_url) {
			r = -ENOMEM;
			goto fail;
		}
	}
	*ret = it;
	return 0;
fail:
	api_item_clear(&it);
	return r;
}

static int
item_call(struct api *api, enum http_method method, const char *url, const cJSON *body,
          const char *collection, const char *fallback_url, struct api_item *ret,
          struct api_error *reterr)
{
	struct jerr je;
	cJSON *tree;
	long status;
	int r;

	r = api_call(api, method, url, body, &tree, &status, reterr);
	if (r < 0)
		return r;
	r = parse_item(api, tree, collection, fallback_url, ret, &je);
	if (r < 0)
		r = parse_failed(r, reterr, status, url, &je);
	cJSON_Delete(tree);
	return r;
}

/* POST {"<parent_key>": parent, "title": title} to root + collection. */
static int
item_create(struct api *api, const char *collection, const char *parent_key, const char *parent,
            const char *title, struct api_item *ret, struct api_error *reterr)
{
	struct urlb ub;
	cJSON *body;
	char *url;
	int r;

	ub_init(&ub, api->root);
	ub_lit(&ub, collection);
	url = ub_take(&ub, reterr);
	if (!url)
		return -ENOMEM;
	body = cJSON_CreateObject();
	if (!body || !cJSON_AddStringToObject(body, parent_key, parent) ||
	    (title && !cJSON_AddStringToObject(body, "title", title))) {
		r = err_nomem(reterr);
		goto out;
	}
	r = item_call(api, HTTP_POST, url, body, collection, NULL, ret, reterr);
out:
	cJSON_Delete(body);
	free(url);
	return r;
}

int
api_archive_item_create(struct api *api, const char *archive_url, const char *title,
                        struct api_item *ret, struct api_error *reterr)
{
	struct api_error scratch;

	if (!reterr)
		reterr = &scratch;
	if (!nonempty(archive_url))
		return err_inval(reterr, "no archive URL given");
	return item_create(api, "archives/items/", "archive", archive_url, title, ret, reterr);
}

int
api_display_set_create(struct api *api, const char *reader_study_slug, const char *title,
                       struct api_item *ret, struct api_error *reterr)
{
	struct api_error scratch;

	if (!reterr)
		reterr = &scratch;
	if (!nonempty(reader_study_slug))
		return err_inval(reterr, "no reader study slug given");
	return item_create(api, "reader-studies/display-sets/", "reader_study", reader_study_slug,
	                   title, ret, reterr);
}

int
api_item_set_values(struct api *api, const char *item_url, const cJSON *values,
                    struct api_item *ret, struct api_error *reterr)
{
	struct api_error scratch;
	cJSON *body = NULL, *copy;
	int r;

	if (!reterr)
		reterr = &scratch;
	if (!cJSON_IsArray(values))
		return err_inval(reterr, "values must be an array");
	r = check_target(api, item_url, reterr);
	if (r < 0)
		return r;
	body = cJSON_CreateObject();
	copy = cJSON_Duplicate(values, 1);
	if (!body || !copy || !cJSON_AddItemToObject(body, "values", copy)) {
		cJSON_Delete(copy);
		cJSON_Delete(body);
		return err_nomem(reterr);
	}
	r = item_call(api, HTTP_PATCH, item_url, body, NULL, item_url, ret, reterr);
	cJSON_Delete(body);
	return r;
}

int
api_item_get(struct api *api, const char *item_url, struct api_item *ret, struct api_error *reterr)
{
	struct api_error scratch;
	int r;

	if (!reterr)
		reterr = &scratch;
	r = check_target(api, item_url, reterr);
	if (r < 0)
		return r;
	return item_call(api, HTTP_GET, item_url, NULL, NULL, item_url, ret, reterr);
}

/*
 * One page of a list: visit each result (visit returns 1 to stop, 0 to go on,
 * or a negative errno with the reason in je, -EBADMSG for a malformed result).
 * Returns 1 when visit stopped the walk, 0 otherwise; *ret_n is the number of
 * results and *ret_more whether the page has a "next" link.
 */
static int
walk_page(cJSON *tree, int (*visit)(void *ud, cJSON *obj, struct jerr *je), void *ud, size_t *ret_n,
          bool *ret_more, struct jerr *je)
{
	const cJSON *results, *next;
	cJSON *c;
	size_t n;
	int r;

	if (!cJSON_IsObject(tree))
		return jbad(je, "not a list page");
	r = jarr(tree, "results", true, &results, &n, je);
	if (r < 0)
		return r;
	next = cJSON_GetObjectItemCaseSensitive(tree, "next");
	if (next && !cJSON_IsNull(next) && !cJSON_IsString(next))
		return jbad(je, "'next' is not a string");
	for (c = results ? results->child : NULL; c; c = c->next) {
		r = visit(ud, c, je);
		if (r != 0)
			return r;
	}
	*ret_n = n;
	*ret_more = cJSON_IsString(next);
	return 0;
}

/*
 * Visit every result of a paged list: prefix is the list URL with its filter
 * query ("…?archive=<pk>"), to which "&limit=100&offset=<n>" is added. Pages
 * are requested with our own offsets until one comes back empty or without a
 * "next" link (the link itself is not followed).
 */
static int
walk(struct api *api, const char *prefix, int (*visit)(void *ud, cJSON *obj, struct jerr *je),
     void *ud, struct api_error *reterr)
{
	struct urlb ub;
	struct jerr je;
	cJSON *tree = NULL;
	char *url = NULL;
	long status, offset = 0;
	size_t n = 0;
	bool more = false;
	int r;

	for (;;) {
		ub_init(&ub, prefix);
		ub_lit(&ub, "&limit=");
		ub_num(&ub, API_PAGE);
		ub_lit(&ub, "&offset=");
		ub_num(&ub, offset);
		url = ub_take(&ub, reterr);
		if (!url)
			return url_error(reterr);
		r = api_call(api, HTTP_GET, url, NULL, &tree, &status, reterr);
		if (r < 0)
			goto out;
		r = walk_page(tree, visit, ud, &n, &more, &je);
		if (r < 0) {
			r = parse_failed(r, reterr, status, url, &je);
			goto out;
		}
		if (r > 0 || n == 0 || !more)
			break;
		offset += (long)n;
		if (offset >= API_WALK_MAX) {
			err_set(reterr, API_FAIL, status, "list too long (over %d results)",
			        API_WALK_MAX);
			r = -EIO;
			goto out;
		}
		cJSON_Delete(tree);
		tree = NULL;
		free(url);
		url = NULL;
	}
	r = 0;
out:
	cJSON_Delete(tree);
	free(url);
	return r;
}

struct item_find {
	struct api *api;
	const char *collection;
	const char *title;
	bool found;
	struct api_item item;
};

static int
item_find_visit(void *ud, cJSON *obj, struct jerr *je)
{
	struct item_find *f = ud;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "title");
	int r;

	if (!cJSON_IsObject(obj))
		return jbad(je, "a result is not an object");
	if (t && !cJSON_IsNull(t) && !cJSON_IsString(t))
		return jbad(je, "'title' is not a string");
	if (!cJSON_IsString(t) || strcmp(t->valuestring, f->title) != 0)
		return 0;
	r = parse_item(f->api, obj, f->collection, NULL, &f->item, je);
	if (r < 0)
		return r;
	f->found = true;
	return 1;
}

static int
item_find(struct api *api, const char *collection, const char *filter, const char *parent_pk,
          const char *title, struct api_item *ret, struct api_error *reterr)
{
	struct item_find f = {0};
	struct urlb ub;
	char *prefix;
	int r;

	if (!nonempty(parent_pk) || !title)
		return err_inval(reterr, "no parent pk or title given");
	ub_init(&ub, api->root);
	ub_lit(&ub, collection);
	ub_lit(&ub, "?");
	ub_lit(&ub, filter);
	ub_lit(&ub, "=");
	ub_esc(&ub, parent_pk);
	prefix = ub_take(&ub, reterr);
	if (!prefix)
		return url_error(reterr);
	f.api = api;
	f.collection = collection;
	f.title = title;
	r = walk(api, prefix, item_find_visit, &f, reterr);
	free(prefix);
	if (r < 0)
		return r;
	if (!f.found) {
		err_set(reterr, API_GONE, 200, "no item titled '%s'", title);
		return -ENOENT;
	}
	*ret = f.item;
	err_reset(reterr);
	return 0;
}

int
api_archive_item_find(struct api *api, const char *archive_pk, const char *title,
                      struct api_item *ret, struct api_error *reterr)
{
	struct api_error scratch;

	return item_find(api, "archives/items/", "archive", archive_pk, title, ret,
	                 reterr ? reterr : &scratch);
}

int
api_display_set_find(struct api *api, const char *reader_study_pk, const char *title,
                     struct api_item *ret, struct api_error *reterr)
{
	struct api_error scratch;

	return item_find(api, "reader-studies/display-sets/", "reader_study", reader_study_pk,
	                 title, ret, reterr ? reterr : &scratch);
}

int
api_socket_value_add(cJSON *arr, const char *socket, enum api_value_src src,
		     const char *const *urls, size_t n, const char *text)
{
	cJSON *o, *x;

	if (arr == NULL || socket == NULL)
		return -EINVAL;
	o = cJSON_CreateObject();
	if (o == NULL)
		return -ENOMEM;
	if (!cJSON_AddItemToArray(arr, o) || cJSON_AddStringToObject(o, "interface", socket) == NULL)
		return -ENOMEM;
	switch (src) {
	case API_VALUE_SESSION:
	case API_VALUE_IMAGE:
		if (text == NULL)
			return -EINVAL;
		if (cJSON_AddStringToObject(o, src == API_VALUE_SESSION ? "upload_session" : "image",
					    text) == NULL)
			return -ENOMEM;
		return 0;
	case API_VALUE_USER_UPLOAD:
		if (n != 1 || urls == NULL || urls[0] == NULL)
			return -EINVAL;
		return cJSON_AddStringToObject(o, "user_upload", urls[0]) != NULL ? 0 : -ENOMEM;
	case API_VALUE_USER_UPLOADS:
		x = cJSON_AddArrayToObject(o, "user_uploads");
		if (x == NULL)
			return -ENOMEM;
		for (size_t k = 0; k < n; k++) {
			cJSON *s = cJSON_CreateString(urls[k]);

			if (s == NULL || !cJSON_AddItemToArray(x, s))
				return -ENOMEM;
		}
		return 0;
	case API_VALUE_JSON:
		x = text != NULL ? cJSON_Parse(text) : NULL;
		if (x == NULL)
			return -EINVAL;
		if (!cJSON_AddItemToObject(o, "value", x)) {
			cJSON_Delete(x);
			return -ENOMEM;
		}
		return 0;
	}
	return -EINVAL;
}

/* ---- algorithm jobs ---- */

void
api_job_clear(struct api_job *j)
{
	if (!j)
		return;
	free(j->pk);
	free(j->api_url);
	free(j->status);
	free(j->exec_duration);
	free(j->invoke_duration);
	cJSON_Delete(j->inputs);
	cJSON_Delete(j->outputs);
	memset(j, 0, sizeof(*j));
}

void
api_jobs_free(struct api_job *jobs, size_t n)
{
	size_t i;

	for (i = 0; jobs && i < n; i++)
		api_job_clear(&jobs[i]);
	free(jobs);
}

bool
api_job_status_is_terminal(const char *status)
{
	return status && (strcmp(status, "Succeeded") == 0 || strcmp(status, "Failed") == 0 ||
	                  strcmp(status, "Cancelled") == 0);
}

/*
 * A string member a client can do without: its copy, or NULL when it is
 * absent, null, not a string or too long (never an error but -ENOMEM).
 */
static int
jstr_lenient(const cJSON *obj, const char *key, char **ret)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	*ret = NULL;
	if (!cJSON_IsString(v) || strlen(v->valuestring) > API_FIELD_MAX)
		return 0;
	*ret = strdup(v->valuestring);
	return *ret ? 0 : -ENOMEM;
}

/* A job from o (which loses inputs and outputs); api_url as parse_item(). */
static int
parse_job(struct api *api, cJSON *o, const char *fallback_url, struct api_job *ret, struct jerr *e)
{
	struct api_job j = {0};
	struct api_error scratch;
	int r;

	if (!cJSON_IsObject(o))
		return jbad(e, "not an object");
	if ((r = jstr(o, "pk", J_NONEMPTY | J_PK, &j.pk, e)) < 0 ||
	    (r = jstr(o, "api_url", J_NULLABLE, &j.api_url, e)) < 0 ||
	    (r = jstr(o, "status", J_NONEMPTY, &j.status, e)) < 0 ||
	    (r = jdetach_array(o, "inputs", &j.inputs, e)) < 0 ||
	    (r = jdetach_array(o, "outputs", &j.outputs, e)) < 0 ||
	    (r = jstr_lenient(o, "exec_duration", &j.exec_duration)) < 0 ||
	    (r = jstr_lenient(o, "invoke_duration", &j.invoke_duration)) < 0)
		goto fail;
	if (!nonempty(j.api_url)) {
		/* The 201 of a create has none: the job URL is root + algorithms/jobs/<pk>/. */
		free(j.api_url);
		j.api_url = fallback_url ? strdup(fallback_url)
		                         : detail_url(api, "algorithms/jobs/", j.pk, &scratch);
		if (!j.api_url) {
			r = -ENOMEM;
			goto fail;
		}
	}
	*ret = j;
	return 0;
fail:
	api_job_clear(&j);
	return r;
}

static int
job_call(struct api *api, enum http_method method, const char *url, const cJSON *body,
         const char *fallback_url, struct api_job *ret, struct api_error *reterr)
{
	struct jerr je;
	cJSON *tree;
	long status;
	int r;

	r = api_call(api, method, url, body, &tree, &status, reterr);
	if (r < 0)
		return r;
	r = parse_job(api, tree, fallback_url, ret, &je);
	if (r < 0)
		r = parse_failed(r, reterr, status, url, &je);
	cJSON_Delete(tree);
	return r;
}

int
api_job_create(struct api *api, const char *algorithm_url, const cJSON *inputs, struct api_job *ret,
               struct api_error *reterr)
{
	struct api_error scratch;
	struct urlb ub;
	cJSON *body = NULL, *copy;
	char *url;
	int r;

	if (!reterr)
		reterr = &scratch;
	if (!nonempty(algorithm_url) || !cJSON_IsArray(inputs))
		return err_inval(reterr, "a job needs an algorithm URL and an inputs array");
	ub_init(&ub, api->root);
	ub_lit(&ub, "algorithms/jobs/");
	url = ub_take(&ub, reterr);
	if (!url)
		return url_error(reterr);
	body = cJSON_CreateObject();
	copy = cJSON_Duplicate(inputs, 1);
	if (!body || !copy || !cJSON_AddItemToObject(body, "inputs", copy)) {
		cJSON_Delete(copy);
		r = err_nomem(reterr);
		goto out;
	}
	if (!cJSON_AddStringToObject(body, "algorithm", algorithm_url)) {
		r = err_nomem(reterr);
		goto out;
	}
	r = job_call(api, HTTP_POST, url, body, NULL, ret, reterr);
out:
	cJSON_Delete(body);
	free(url);
	return r;
}

int
api_job_get(struct api *api, const char *job_url, struct api_job *ret, struct api_error *reterr)
{
	struct api_error scratch;
	int r;

	if (!reterr)
		reterr = &scratch;
	r = check_target(api, job_url, reterr);
	if (r < 0)
		return r;
	return job_call(api, HTTP_GET, job_url, NULL, job_url, ret, reterr);
}

struct job_list {
	struct api *api;
	struct api_job *jobs;
	size_t n, alloc;
};

static int
job_list_visit(void *ud, cJSON *obj, struct jerr *je)
{
	struct job_list *l = ud;
	struct api_job *grown;
	size_t alloc;
	int r;

	if (l->n == l->alloc) {
		if (l->n >= API_ARRAY_MAX)
			return jbad(je, "more than %d jobs", API_ARRAY_MAX);
		alloc = l->alloc ? l->alloc * 2 : 16;
		grown = realloc(l->jobs, alloc * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		l->jobs = grown;
		l->alloc = alloc;
	}
	memset(&l->jobs[l->n], 0, sizeof(l->jobs[l->n]));
	r = parse_job(l->api, obj, NULL, &l->jobs[l->n], je);
	if (r < 0)
		return r;
	l->n++;
	return 0;
}

int
api_jobs_find_by_input_image(struct api *api, const char *algorithm_pk, const char *image_pk,
                             struct api_job **ret_jobs, size_t *ret_n, struct api_error *reterr)
{
	struct api_error scratch;
	struct job_list l = {0};
	struct urlb ub;
	char *prefix;
	int r;

	if (!reterr)
		reterr = &scratch;
	if (!nonempty(algorithm_pk) || !nonempty(image_pk))
		return err_inval(reterr, "no algorithm or image pk given");
	ub_init(&ub, api->root);
	ub_lit(&ub, "algorithms/jobs/?algorithm_image__algorithm=");
	ub_esc(&ub, algorithm_pk);
	ub_lit(&ub, "&input_image=");
	ub_esc(&ub, image_pk);
	prefix = ub_take(&ub, reterr);
	if (!prefix)
		return url_error(reterr);
	l.api = api;
	r = walk(api, prefix, job_list_visit, &l, reterr);
	free(prefix);
	if (r < 0) {
		api_jobs_free(l.jobs, l.n);
		return r;
	}
	*ret_jobs = l.jobs;
	*ret_n = l.n;
	return 0;
}

/* ---- images and downloads ---- */

void
api_image_clear(struct api_image *i)
{
	size_t k;

	if (!i)
		return;
	free(i->pk);
	free(i->api_url);
	free(i->name);
	for (k = 0; i->files && k < i->n_files; k++) {
		free(i->files[k].url);
		free(i->files[k].image_type);
	}
	free(i->files);
	memset(i, 0, sizeof(*i));
}

static int
parse_image(const cJSON *o, const char *fallback_url, struct api_image *ret, struct jerr *e)
{
	struct api_image im = {0};
	const cJSON *arr, *c;
	size_t n, k = 0;
	int r;

	if (!cJSON_IsObject(o))
		return jbad(e, "not an object");
	if ((r = jstr(o, "pk", J_NONEMPTY | J_PK, &im.pk, e)) < 0 ||
	    (r = jstr(o, "api_url", J_NULLABLE, &im.api_url, e)) < 0 ||
	    (r = jstr(o, "name", J_OPT, &im.name, e)) < 0 ||
	    (r = jarr(o, "files", false, &arr, &n, e)) < 0)
		goto fail;
	if (!nonempty(im.api_url)) {
		free(im.api_url);
		im.api_url = strdup(fallback_url);
		if (!im.api_url) {
			r = -ENOMEM;
			goto fail;
		}
	}
	if (n) {
		im.files = calloc(n, sizeof(*im.files));
		if (!im.files) {
			r = -ENOMEM;
			goto fail;
		}
		im.n_files = n;
		for (c = arr ? arr->child : NULL; c; c = c->next) {
			if (!cJSON_IsObject(c)) {
				r = jbad(e, "a file entry is not an object");
				goto fail;
			}
			if ((r = jstr(c, "file", J_NONEMPTY, &im.files[k].url, e)) < 0 ||
			    (r = jstr(c, "image_type", J_OPT, &im.files[k].image_type, e)) < 0)
				goto fail;
			k++;
		}
	}
	*ret = im;
	return 0;
fail:
	api_image_clear(&im);
	return r;
}

int
api_image_get(struct api *api, const char *image_url, struct api_image *ret,
              struct api_error *reterr)
{
	struct api_error scratch;
	struct jerr je;
	cJSON *tree;
	long status;
	int r;

	if (!reterr)
		reterr = &scratch;
	r = check_target(api, image_url, reterr);
	if (r < 0)
		return r;
	r = api_call(api, HTTP_GET, image_url, NULL, &tree, &status, reterr);
	if (r < 0)
		return r;
	r = parse_image(tree, image_url, ret, &je);
	if (r < 0)
		r = parse_failed(r, reterr, status, image_url, &je);
	cJSON_Delete(tree);
	return r;
}

int
api_download(struct api *api, const char *url, int fd, const struct http_xfer *xfer,
             int64_t *ret_bytes, struct api_error *reterr)
{
	struct api_error scratch;
	struct http_resp resp = {0};
	struct http_error herr = {0};
	struct http_xfer x = {0};
	char *red;
	int r;

	if (!reterr)
		reterr = &scratch;
	r = check_target(api, url, reterr);
	if (r < 0)
		return r;
	if (xfer)
		x = *xfer;
	if (!x.cancel)
		x.cancel = api->cancel;
	r = http_download(api->http, url, fd, &x, &resp, &herr);
	api_classify(r, &herr, r == 0 ? &resp : NULL, reterr);
	red = http_redact_url(url);
	log_debug("api: download %s: %s %ld", red ? red : "?", api_class_name(reterr->cls),
	          reterr->status);
	free(red);
	if (r == 0 && reterr->cls != API_OK)
		r = -EIO;
	if (r == 0 && ret_bytes)
		*ret_bytes = resp.bytes;
	http_resp_done(&resp);
	return r;
}
