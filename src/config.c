/*
 * config.c: the gcdrop configuration file (spec section 4) into a struct config.
 *
 * DESIGN
 *
 * config_load() works in three steps, as the style guide asks (rule 9):
 *
 *   1. defaults: a struct config is allocated and filled with the documented
 *      defaults;
 *   2. lookups: libconfig parses the file, and every setting of the root group,
 *      of each watch and of each `values` entry is walked *in file order* and
 *      dispatched through a key table (name, parser, offset, range). A setting
 *      whose name is not in the table is an error, so a typo can never be
 *      silently ignored; a setting of the wrong type is an error too (no
 *      libconfig auto-conversion);
 *   3. cross-checks: things no single setting can know (a missing or second
 *      destination, "move" without its directory, duplicate watch names,
 *      overlapping folders, the token file's mode, whether a token exists).
 *
 * The first problem found stops the load; its message has the form
 * "FILE:LINE: KEY: reason" (spec section 3), where FILE and LINE come from
 * libconfig (config_setting_source_file/line, so an @include'd file is named
 * correctly) and KEY is a path such as "workers" or "watches[1].values[0].json"
 * (watches and values are counted from 0, in file order). A problem with no
 * line (a missing top-level key, the token sources) reads "FILE: KEY: reason";
 * a syntax error reads "FILE:LINE: reason", with libconfig's own text.
 *
 * Every string in the result is a copy: libconfig owns the strings it hands
 * out and they die with config_destroy(), which runs before config_load()
 * returns. The struct is never modified after it is returned.
 *
 * Paths are checked lexically: they must be absolute, "." components and
 * repeated or trailing slashes are dropped, ".." is refused (it would make the
 * lexical overlap test lie). Folders need not exist at load time, so that
 * `gcdrop check` can validate a file written for another machine; symlinks are
 * therefore not resolved.
 *
 * The token (config_token) is read from the first source that exists:
 * token_file, then $CREDENTIALS_DIRECTORY/gcdrop-token (systemd
 * LoadCredential=), then $GRAND_CHALLENGE_AUTHORIZATION. Every buffer that held
 * it is wiped with explicit_bzero() before it is freed, and no message ever
 * contains it: messages name the source, not the content.
 *
 * Choices the spec leaves open: an empty or missing watch list is an error
 * (a daemon with nothing to do is a misconfiguration an operator wants to
 * hear about); "" means "not set" for every optional string; watch names are
 * restricted to [A-Za-z0-9._-] (they end up in file names, journal fields and
 * command lines). libconfig 1.5 silently truncates integer literals that do not
 * fit in 32 bits; int_literal_intact() catches that.
 *
 * Without CONFIG_LOAD_NO_TOKEN, config_load() also requires a usable token (it
 * reads and wipes it); with it, a set token_file is still checked for
 * existence and mode, so `gcdrop status` and `gcdrop run` agree on what a
 * valid file is.
 *
 * This module never logs; it returns errors and messages (style rule 7).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libconfig.h>

#include "config.h"

#define DEFAULT_API_URL "https://grand-challenge.org/api/v1/"
#define DEFAULT_STATE_DIR "/var/lib/gcdrop"

/* Environment and credential names of the token sources (spec section 4). */
#define TOKEN_ENV "GRAND_CHALLENGE_AUTHORIZATION"
#define TOKEN_CREDENTIAL "gcdrop-token"

/* Caps on what is read from disk. A grand-challenge token is 64 characters. */
#define TOKEN_FILE_MAX 4096
#define CONFIG_SOURCE_MAX (1024 * 1024)

/* Longest accepted duration, in seconds (one year), and other ranges. */
#define SECONDS_MAX (365 * 24 * 3600)
#define WORKERS_MAX 64
#define ATTEMPTS_MAX 1000000
#define WATCH_NAME_MAX 64
#define SLUG_MAX 255

/* Key paths are short; a longer unknown key name is cut, which is harmless. */
#define KEY_MAX 256

struct loader {
	const char *path; /* the file given to config_load(), for messages */
	config_t lc;
	char *msg; /* the first error, "FILE:LINE: KEY: reason" */
	/* One cached source file, for int_literal_intact(). */
	char *src_name;
	char *src_text;
};

struct key_def;
typedef int (*key_parser)(struct loader *l, const config_setting_t *s, const char *key,
                          const struct key_def *k, void *base);

struct key_def {
	const char *name;
	key_parser parse;
	size_t offset;      /* of the field in the struct behind 'base' */
	long long min, max; /* for numbers */
};

/* printf into a malloc'd string; NULL on out-of-memory. */
static char *
str_vprintf(const char *fmt, va_list ap)
{
	va_list aq;
	char *s;
	int n;

	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

static char *str_printf(const char *fmt, ...) GC_PRINTF(1, 2);

static char *
str_printf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = str_vprintf(fmt, ap);
	va_end(ap);
	return s;
}

/*
 * Record an error about setting 's' (NULL: no line known) and key 'key' (NULL:
 * no key) and return -EINVAL. Only the first error is kept.
 */
static int fail(struct loader *l, const config_setting_t *s, const char *key, const char *fmt, ...)
    GC_PRINTF(4, 5);

static int
fail(struct loader *l, const config_setting_t *s, const char *key, const char *fmt, ...)
{
	const char *file = l->path;
	unsigned int line = 0;
	char *reason, *msg;
	va_list ap;

	if (l->msg)
		return -EINVAL;
	if (s) {
		if (config_setting_source_file(s))
			file = config_setting_source_file(s);
		line = config_setting_source_line(s);
	}
	va_start(ap, fmt);
	reason = str_vprintf(fmt, ap);
	va_end(ap);
	if (!reason)
		return -ENOMEM;
	if (line > 0 && key)
		msg = str_printf("%s:%u: %s: %s", file, line, key, reason);
	else if (line > 0)
		msg = str_printf("%s:%u: %s", file, line, reason);
	else if (key)
		msg = str_printf("%s: %s: %s", file, key, reason);
	else
		msg = str_printf("%s: %s", file, reason);
	free(reason);
	if (!msg)
		return -ENOMEM;
	l->msg = msg;
	return -EINVAL;
}

/* Format a key path into buf; a path longer than the buffer is cut, harmlessly. */
static void key_fmt(char *buf, size_t size, const char *fmt, ...) GC_PRINTF(3, 4);

static void
key_fmt(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

static const char *
type_name(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_GROUP:
		return "a group { ... }";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a floating-point number";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array [ ... ]";
	case CONFIG_TYPE_LIST:
		return "a list ( ... )";
	default:
		return "an unknown type";
	}
}

static char **
field_str(void *base, const struct key_def *k)
{
	return (char **)((char *)base + k->offset);
}

static int *
field_int(void *base, const struct key_def *k)
{
	return (int *)((char *)base + k->offset);
}

/* ---- the integer literal check ---- */

/* The text of 'file' (cached: almost every call is about the main file). */
static const char *
source_text(struct loader *l, const char *file)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	if (l->src_name && strcmp(l->src_name, file) == 0)
		return l->src_text;
	free(l->src_name);
	free(l->src_text);
	l->src_name = NULL;
	l->src_text = NULL;

	f = fopen(file, "re");
	if (!f)
		return NULL;
	text = malloc(CONFIG_SOURCE_MAX + 1);
	if (text)
		len = fread(text, 1, CONFIG_SOURCE_MAX, f);
	fclose(f);
	if (!text)
		return NULL;
	text[len] = '\0';
	l->src_name = strdup(file);
	if (!l->src_name) {
		free(text);
		return NULL;
	}
	l->src_text = text;
	return text;
}

static bool
is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '*';
}

/*
 * libconfig 1.5 reads an integer literal written without the L suffix into an
 * int and, when it does not fit, silently keeps its low 32 bits: "workers =
 * 4294967300;" reads as 4, "min_free_space = 10737418240;" as 2 GiB. We read the
 * literals of this key on the source line again (there may be several: two
 * watches on one line) and return false only when none of them is 'value' and
 * one of them is too large for an int (and so may be where 'value' came from).
 * When the line cannot be read or no literal is recognised (unusual layout),
 * libconfig is trusted.
 */
static bool
int_literal_intact(struct loader *l, const config_setting_t *s, long long value)
{
	const char *file = config_setting_source_file(s) ? config_setting_source_file(s) : l->path;
	const char *name = config_setting_name(s);
	unsigned int line = config_setting_source_line(s);
	const char *p, *eol, *q;
	bool exact = false, too_large = false;
	size_t name_len;

	if (!name || line == 0)
		return true;
	p = source_text(l, file);
	for (unsigned int i = 1; p && i < line; i++) {
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	if (!p)
		return true;
	eol = strchr(p, '\n');
	if (!eol)
		eol = p + strlen(p);
	name_len = strlen(name);

	for (q = p; q + name_len <= eol; q++) {
		unsigned long long u;
		const char *r, *digits;
		char *end;
		bool neg = false;
		int base = 10;

		if (memcmp(q, name, name_len) != 0 || (q > p && is_name_char(q[-1])) ||
		    is_name_char(q[name_len]))
			continue;
		r = q + name_len;
		while (*r == ' ' || *r == '\t')
			r++;
		if (*r != '=' && *r != ':')
			continue;
		r++;
		while (*r == ' ' || *r == '\t')
			r++;
		if (*r == '-' || *r == '+')
			neg = *r++ == '-';
		digits = r;
		if (r[0] == '0' && (r[1] == 'x' || r[1] == 'X')) {
			base = 16;
			digits = r + 2;
		}
		if (!(*digits >= '0' && *digits <= '9') &&
		    !(base == 16 &&
		      ((*digits >= 'a' && *digits <= 'f') || (*digits >= 'A' && *digits <= 'F'))))
			continue;
		errno = 0;
		u = strtoull(digits, &end, base);
		if (end == digits || *end == 'L')
			continue;
		if (errno == ERANGE || u > (unsigned long long)INT_MAX + (neg ? 1 : 0)) {
			too_large = true;
			continue;
		}
		if ((neg ? -(long long)u : (long long)u) == value)
			exact = true;
	}
	return exact || !too_large;
}

/* ---- scalar parsers ---- */

static int
get_string(struct loader *l, const config_setting_t *s, const char *key, const char **ret)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(l, s, key, "expected a string, got %s", type_name(s));
	*ret = config_setting_get_string(s);
	return 0;
}

static int
get_integer(struct loader *l, const config_setting_t *s, const char *key, long long min,
            long long max, long long *ret)
{
	long long v;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		v = config_setting_get_int(s);
		if (!int_literal_intact(l, s, v))
			return fail(l, s, key,
			            "number too large for a plain integer; write it with an L "
			            "suffix (e.g. 10737418240L)");
		break;
	case CONFIG_TYPE_INT64:
		v = config_setting_get_int64(s);
		break;
	default:
		return fail(l, s, key, "expected an integer, got %s", type_name(s));
	}
	if (v < 0 && min >= 0)
		return fail(l, s, key, "must not be negative (got %lld)", v);
	if (v < min || v > max)
		return fail(l, s, key, "must be between %lld and %lld (got %lld)", min, max, v);
	*ret = v;
	return 0;
}

static int
parse_int(struct loader *l, const config_setting_t *s, const char *key, const struct key_def *k,
          void *base)
{
	long long v;
	int r;

	r = get_integer(l, s, key, k->min, k->max, &v);
	if (r < 0)
		return r;
	*field_int(base, k) = (int)v;
	return 0;
}

/*
 * A size: an integer number of bytes, or a string of digits with an optional
 * K, M, G or T suffix (powers of 1024, either case). Returns -EINVAL for a
 * malformed string, -ERANGE when it does not fit in int64_t.
 */
static int
size_from_string(const char *text, int64_t *ret)
{
	unsigned long long v = 0;
	const char *p = text;
	int shift = 0;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned long long digit = (unsigned long long)(*p - '0');

		if (v > ((unsigned long long)INT64_MAX - digit) / 10)
			return -ERANGE;
		v = v * 10 + digit;
	}
	switch (*p) {
	case '\0':
		break;
	case 'K':
	case 'k':
		shift = 10;
		break;
	case 'M':
	case 'm':
		shift = 20;
		break;
	case 'G':
	case 'g':
		shift = 30;
		break;
	case 'T':
	case 't':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (shift && p[1] != '\0')
		return -EINVAL;
	if (v > (unsigned long long)INT64_MAX >> shift)
		return -ERANGE;
	*ret = (int64_t)(v << shift);
	return 0;
}

static int
parse_size(struct loader *l, const config_setting_t *s, const char *key, const struct key_def *k,
           void *base)
{
	int64_t *dest = (int64_t *)((char *)base + k->offset);
	const char *text = NULL;
	long long v;
	int64_t bytes;
	int r;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		if (config_setting_type(s) != CONFIG_TYPE_INT &&
		    config_setting_type(s) != CONFIG_TYPE_INT64)
			return fail(l, s, key,
			            "expected a size (a number of bytes, or a string such as "
			            "\"512M\"), got %s",
			            type_name(s));
		r = get_integer(l, s, key, 0, INT64_MAX, &v);
		if (r < 0)
			return r;
		*dest = v;
		return 0;
	}
	text = config_setting_get_string(s);
	if (text[0] == '-')
		return fail(l, s, key, "must not be negative (got \"%s\")", text);
	r = size_from_string(text, &bytes);
	if (r == -ERANGE)
		return fail(l, s, key, "size \"%s\" is too large", text);
	if (r < 0)
		return fail(l, s, key,
		            "invalid size \"%s\": expected a whole number of bytes, optionally "
		            "followed by K, M, G or T (powers of 1024)",
		            text);
	*dest = bytes;
	return 0;
}

/*
 * Normalise an absolute path lexically: repeated and trailing slashes and "."
 * components go, ".." is refused. On failure *reterr_reason is a static text.
 */
static int
path_normalise(const char *in, char **ret, const char **reterr_reason)
{
	size_t n = strlen(in), o = 0;
	const char *p = in;
	char *out;

	if (in[0] != '/') {
		*reterr_reason = "must be an absolute path";
		return -EINVAL;
	}
	if (n >= PATH_MAX) {
		*reterr_reason = "is too long";
		return -EINVAL;
	}
	out = malloc(n + 2);
	if (!out)
		return -ENOMEM;
	while (*p) {
		const char *e;
		size_t len;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		for (e = p; *e && *e != '/'; e++)
			;
		len = (size_t)(e - p);
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			free(out);
			*reterr_reason = "must not contain '..' components";
			return -EINVAL;
		}
		if (!(len == 1 && p[0] == '.')) {
			out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
		}
		p = e;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	*ret = out;
	return 0;
}

/* An absolute path; "" is refused, or means "not set" when 'optional'. */
static int
parse_path_common(struct loader *l, const config_setting_t *s, const char *key,
                  const struct key_def *k, void *base, bool optional)
{
	char **dest = field_str(base, k);
	const char *text = NULL, *reason = NULL;
	char *norm = NULL;
	int r;

	r = get_string(l, s, key, &text);
	if (r < 0)
		return r;
	if (text[0] == '\0') {
		if (!optional)
			return fail(l, s, key, "must not be empty");
		free(*dest);
		*dest = NULL;
		return 0;
	}
	r = path_normalise(text, &norm, &reason);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return fail(l, s, key, "'%s' %s", text, reason);
	free(*dest);
	*dest = norm;
	return 0;
}

static int
parse_path(struct loader *l, const config_setting_t *s, const char *key, const struct key_def *k,
           void *base)
{
	return parse_path_common(l, s, key, k, base, false);
}

static int
parse_opt_path(struct loader *l, const config_setting_t *s, const char *key,
               const struct key_def *k, void *base)
{
	return parse_path_common(l, s, key, k, base, true);
}

/* Slugs go into URLs: letters, digits, '-' and '_' only (Django's slug set). */
static bool
slug_valid(const char *slug)
{
	size_t n = strlen(slug);

	if (n == 0 || n > SLUG_MAX)
		return false;
	for (const char *p = slug; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return false;
	return true;
}

static int
slug_copy(struct loader *l, const config_setting_t *s, const char *key, const char *what,
          char **ret)
{
	const char *text = NULL;
	char *copy;
	int r;

	r = get_string(l, s, key, &text);
	if (r < 0)
		return r;
	if (!slug_valid(text))
		return fail(l, s, key, "invalid %s \"%s\": use 1 to %d letters, digits, '-' or '_'",
		            what, text, SLUG_MAX);
	copy = strdup(text);
	if (!copy)
		return -ENOMEM;
	*ret = copy;
	return 0;
}

static int
parse_log_level(struct loader *l, const config_setting_t *s, const char *key,
                const struct key_def *k, void *base)
{
	static const struct {
		const char *name;
		int level;
	} levels[] = {
	    {"err", LOG_ERR},   {"warning", LOG_WARNING}, {"notice", LOG_NOTICE},
	    {"info", LOG_INFO}, {"debug", LOG_DEBUG},
	};
	const char *text = NULL;
	int r;

	r = get_string(l, s, key, &text);
	if (r < 0)
		return r;
	for (size_t i = 0; i < GC_ARRAY_SIZE(levels); i++)
		if (strcmp(text, levels[i].name) == 0) {
			*field_int(base, k) = levels[i].level;
			return 0;
		}
	return fail(l, s, key, "invalid level \"%s\"; expected err, warning, notice, info or debug",
	            text);
}

/* Is 'host' (without brackets) a loopback name or address? */
static bool
host_is_loopback(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return memcmp(&a6, &in6addr_loopback, sizeof(a6)) == 0;
	return false;
}

/*
 * Check an API root URL: http(s) only, a host, an optional numeric port, no
 * user credentials, query or fragment; plain http only to loopback (spec
 * section 6). On failure *reterr_reason is a static text.
 */
static int
url_check(const char *url, const char **reterr_reason)
{
	char host[256];
	const char *auth, *end, *h, *hend, *port = NULL;
	bool tls;

	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f) {
			*reterr_reason = "must not contain spaces or control characters";
			return -EINVAL;
		}
	if (strncasecmp(url, "https://", 8) == 0) {
		tls = true;
		auth = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		tls = false;
		auth = url + 7;
	} else {
		*reterr_reason = "must start with https:// (or http:// for a loopback address)";
		return -EINVAL;
	}
	if (strpbrk(url, "?#")) {
		*reterr_reason = "must not have a query or a fragment";
		return -EINVAL;
	}
	end = strchr(auth, '/');
	if (!end)
		end = auth + strlen(auth);
	if (memchr(auth, '@', (size_t)(end - auth))) {
		*reterr_reason = "must not contain user credentials";
		return -EINVAL;
	}
	if (auth[0] == '[') {
		h = auth + 1;
		hend = memchr(h, ']', (size_t)(end - h));
		if (!hend) {
			*reterr_reason = "has an unterminated IPv6 address";
			return -EINVAL;
		}
		if (hend + 1 < end) {
			if (hend[1] != ':') {
				*reterr_reason = "has an invalid host";
				return -EINVAL;
			}
			port = hend + 2;
		}
	} else {
		h = auth;
		hend = memchr(h, ':', (size_t)(end - h));
		if (hend && memchr(hend + 1, ':', (size_t)(end - hend - 1))) {
			*reterr_reason = "has an invalid host (write IPv6 addresses in brackets)";
			return -EINVAL;
		}
		if (hend)
			port = hend + 1;
		else
			hend = end;
	}
	if (hend == h) {
		*reterr_reason = "has no host";
		return -EINVAL;
	}
	if ((size_t)(hend - h) >= sizeof(host)) {
		*reterr_reason = "has a host name that is too long";
		return -EINVAL;
	}
	memcpy(host, h, (size_t)(hend - h));
	host[hend - h] = '\0';
	if (auth[0] == '[') {
		struct in6_addr a6;

		if (inet_pton(AF_INET6, host, &a6) != 1) {
			*reterr_reason = "has an invalid IPv6 address";
			return -EINVAL;
		}
	}
	if (port) {
		unsigned long n = 0;
		const char *p;

		for (p = port; p < end && *p >= '0' && *p <= '9' && n <= 65535; p++)
			n = n * 10 + (unsigned long)(*p - '0');
		if (p == port || p != end || n == 0 || n > 65535) {
			*reterr_reason = "has an invalid port";
			return -EINVAL;
		}
	}
	if (!tls && !host_is_loopback(host)) {
		*reterr_reason = "uses plain http:// to a host that is not a loopback address "
		                 "(only 127.0.0.0/8, ::1 and localhost may); use https://";
		return -EINVAL;
	}
	return 0;
}

static int
parse_api_url(struct loader *l, const config_setting_t *s, const char *key, const struct key_def *k,
              void *base)
{
	char **dest = field_str(base, k);
	const char *text = NULL, *reason = NULL;
	size_t n;
	char *copy;
	int r;

	r = get_string(l, s, key, &text);
	if (r < 0)
		return r;
	if (text[0] == '\0')
		return fail(l, s, key, "must not be empty");
	if (url_check(text, &reason) < 0) {
		/* A URL with user credentials is not repeated: they may be a secret. */
		if (strchr(text, '@') != NULL)
			return fail(l, s, key, "the URL %s", reason);
		return fail(l, s, key, "'%s' %s", text, reason);
	}
	n = strlen(text);
	copy = malloc(n + 2);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, n + 1);
	/* URLs are joined to it ("uploads/"), so it must end in '/'. */
	if (copy[n - 1] != '/') {
		copy[n] = '/';
		copy[n + 1] = '\0';
	}
	free(*dest);
	*dest = copy;
	return 0;
}

/* ---- watches ---- */

static const char *const action_names[] = {
    [CONFIG_ACTION_KEEP] = "keep",
    [CONFIG_ACTION_MOVE] = "move",
    [CONFIG_ACTION_DELETE] = "delete",
};

static const char *const dest_names[] = {
    [CONFIG_DEST_ALGORITHM] = "algorithm",
    [CONFIG_DEST_ARCHIVE] = "archive",
    [CONFIG_DEST_READER_STUDY] = "reader_study",
};

/*
 * Watch names appear in journal fields, file names and on command lines:
 * letters, digits, '.', '_' and '-', not starting with '.'.
 */
static bool
watch_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > WATCH_NAME_MAX || name[0] == '.')
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

static int
parse_watch_name(struct loader *l, const config_setting_t *s, const char *key,
                 const struct key_def *k, void *base)
{
	char **dest = field_str(base, k);
	const char *text = NULL;
	int r;

	r = get_string(l, s, key, &text);
	if (r < 0)
		return r;
	if (!watch_name_valid(text))
		return fail(l, s, key,
		            "invalid watch name \"%s\": use 1 to %d letters, digits, '.', '_' "
		            "or '-', not starting with '.'",
		            text, WATCH_NAME_MAX);
	free(*dest);
	*dest = strdup(text);
	return *dest ? 0 : -ENOMEM;
}

/* algorithm / archive / reader_study: k->min carries the enum config_dest. */
static int
parse_dest(struct loader *l, const config_setting_t *s, const char *key, const struct key_def *k,
           void *base)
{
	struct config_watch *w = base;
	char *slug = NULL;
	int r;

	if (w->slug) {
		const config_setting_t *first =
		    config_setting_get_member(config_setting_parent(s), dest_names[w->dest]);

		return fail(l, s, key,
		            "a watch has exactly one destination, but %s is set too (line %u)",
		            dest_names[w->dest], first ? config_setting_source_line(first) : 0);
	}
	r = slug_copy(l, s, key, "slug", &slug);
	if (r < 0)
		return r;
	w->slug = slug;
	w->dest = (enum config_dest)k->min;
	return 0;
}

static int
parse_opt_socket(struct loader *l, const config_setting_t *s, const char *key,
                 const struct key_def *k, void *base)
{
	char **dest = field_str(base, k);
	const char *text = NULL;
	int r;

	r = get_string(l, s, key, &text);
	if (r < 0)
		return r;
	free(*dest);
	*dest = NULL;
	if (text[0] == '\0')
		return 0;
	return slug_copy(l, s, key, "socket slug", dest);
}

static int
parse_marker(struct loader *l, const config_setting_t *s, const char *key, const struct key_def *k,
             void *base)
{
	char **dest = field_str(base, k);
	const char *text = NULL;
	int r;

	r = get_string(l, s, key, &text);
	if (r < 0)
		return r;
	free(*dest);
	*dest = NULL;
	if (text[0] == '\0')
		return 0;
	if (strchr(text, '/') || strcmp(text, ".") == 0 || strcmp(text, "..") == 0 ||
	    strlen(text) > NAME_MAX)
		return fail(l, s, key, "\"%s\" must be a bare file name (no '/')", text);
	*dest = strdup(text);
	return *dest ? 0 : -ENOMEM;
}

static int
parse_action(struct loader *l, const config_setting_t *s, const char *key, const struct key_def *k,
             void *base)
{
	enum config_action *dest = (enum config_action *)((char *)base + k->offset);
	const char *text = NULL;
	int r;

	r = get_string(l, s, key, &text);
	if (r < 0)
		return r;
	for (size_t i = 0; i < GC_ARRAY_SIZE(action_names); i++)
		if (strcmp(text, action_names[i]) == 0) {
			*dest = (enum config_action)i;
			return 0;
		}
	return fail(l, s, key, "invalid value \"%s\"; expected keep, move or delete", text);
}

/* One `values` entry: { socket = "..."; json = "..."; }. */
static int
parse_value(struct loader *l, const config_setting_t *s, const char *key, const char *watch_name,
            struct config_value *v)
{
	char subkey[KEY_MAX];
	const config_setting_t *sock, *json;
	const char *text = NULL;
	const char *parse_end = NULL;
	cJSON *tree;
	int r;

	if (!config_setting_is_group(s))
		return fail(l, s, key, "expected a group { socket = ...; json = ...; }, got %s",
		            type_name(s));
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *m = config_setting_get_elem(s, (unsigned int)i);
		const char *name = config_setting_name(m);

		if (strcmp(name, "socket") != 0 && strcmp(name, "json") != 0) {
			key_fmt(subkey, sizeof(subkey), "%s.%s", key, name);
			return fail(l, m, subkey, "unknown key (a value has socket and json)");
		}
	}
	sock = config_setting_get_member(s, "socket");
	key_fmt(subkey, sizeof(subkey), "%s.socket", key);
	if (!sock)
		return fail(l, s, subkey, "missing: each value needs a socket and its json");
	r = slug_copy(l, sock, subkey, "socket slug", &v->socket);
	if (r < 0)
		return r;

	json = config_setting_get_member(s, "json");
	key_fmt(subkey, sizeof(subkey), "%s.json", key);
	if (!json)
		return fail(l, s, subkey, "missing: the value for socket '%s' of watch '%s'",
		            v->socket, watch_name);
	r = get_string(l, json, subkey, &text);
	if (r < 0)
		return r;
	tree = cJSON_ParseWithOpts(text, &parse_end, 1);
	if (!tree)
		return fail(l, json, subkey,
		            "invalid JSON for socket '%s' of watch '%s' (at offset %td)", v->socket,
		            watch_name, parse_end ? parse_end - text : (ptrdiff_t)0);
	cJSON_Delete(tree);
	v->json = strdup(text);
	return v->json ? 0 : -ENOMEM;
}

static int
parse_values(struct loader *l, const config_setting_t *s, const char *key, const struct key_def *k,
             void *base)
{
	struct config_watch *w = base;
	char subkey[KEY_MAX];
	size_t n;
	int r;

	if (config_setting_type(s) != CONFIG_TYPE_LIST)
		return fail(l, s, key,
		            "expected a list ( { socket = ...; json = ...; }, ... ), got %s",
		            type_name(s));
	n = (size_t)config_setting_length(s);
	if (n == 0)
		return 0;
	w->values = calloc(n, sizeof(*w->values));
	if (!w->values)
		return -ENOMEM;
	w->n_values = n;
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned int)i);

		key_fmt(subkey, sizeof(subkey), "%s[%zu]", key, i);
		r = parse_value(l, e, subkey, w->name, &w->values[i]);
		if (r < 0)
			return r;
		for (size_t j = 0; j < i; j++)
			if (strcmp(w->values[j].socket, w->values[i].socket) == 0) {
				key_fmt(subkey, sizeof(subkey), "%s[%zu].socket", key, i);
				return fail(l, config_setting_get_member(e, "socket"), subkey,
				            "socket '%s' has two values in watch '%s'",
				            w->values[i].socket, w->name);
			}
	}
	return 0;
}

#define W(field) offsetof(struct config_watch, field)

static const struct key_def watch_keys[] = {
    {"name", parse_watch_name, W(name), 0, 0},
    {"path", parse_path, W(path), 0, 0},
    {"algorithm", parse_dest, 0, CONFIG_DEST_ALGORITHM, 0},
    {"archive", parse_dest, 0, CONFIG_DEST_ARCHIVE, 0},
    {"reader_study", parse_dest, 0, CONFIG_DEST_READER_STUDY, 0},
    {"socket", parse_opt_socket, W(socket), 0, 0},
    {"values", parse_values, 0, 0, 0},
    {"settle_seconds", parse_int, W(settle_seconds), 0, SECONDS_MAX},
    {"max_settle_seconds", parse_int, W(max_settle_seconds), 0, SECONDS_MAX},
    {"scan_interval", parse_int, W(scan_interval), 1, SECONDS_MAX},
    {"ready_marker", parse_marker, W(ready_marker), 0, 0},
    {"job_timeout", parse_int, W(job_timeout), 1, SECONDS_MAX},
    {"results_dir", parse_opt_path, W(results_dir), 0, 0},
    {"on_success", parse_action, W(on_success), 0, 0},
    {"on_failure", parse_action, W(on_failure), 0, 0},
    {"done_dir", parse_opt_path, W(done_dir), 0, 0},
    {"failed_dir", parse_opt_path, W(failed_dir), 0, 0},
};

#undef W

static const struct key_def *
key_find(const struct key_def *table, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(table[i].name, name) == 0)
			return &table[i];
	return NULL;
}

/* The member 'name' of a watch group, for a message's line; may be NULL. */
static const config_setting_t *
member(const config_setting_t *group, const char *name)
{
	return config_setting_get_member(group, name);
}

/* Checks that need the whole of one watch. */
static int
watch_check(struct loader *l, const config_setting_t *g, const char *prefix, struct config_watch *w)
{
	char key[KEY_MAX];

	if (!w->path) {
		key_fmt(key, sizeof(key), "%s.path", prefix);
		return fail(l, g, key, "missing: the folder to watch");
	}
	if (strcmp(w->path, "/") == 0) {
		key_fmt(key, sizeof(key), "%s.path", prefix);
		return fail(l, member(g, "path"), key, "must not be the root directory");
	}
	if (!w->slug)
		return fail(l, g, prefix,
		            "no destination: set one of algorithm, archive or reader_study");
	if (w->max_settle_seconds < w->settle_seconds) {
		const config_setting_t *s = member(g, "max_settle_seconds");

		key_fmt(key, sizeof(key), "%s.%s", prefix,
		        s ? "max_settle_seconds" : "settle_seconds");
		return fail(l, s ? s : member(g, "settle_seconds"), key,
		            "max_settle_seconds (%d) must not be less than settle_seconds (%d)",
		            w->max_settle_seconds, w->settle_seconds);
	}
	if (w->on_success == CONFIG_ACTION_MOVE && !w->done_dir) {
		key_fmt(key, sizeof(key), "%s.on_success", prefix);
		return fail(l, member(g, "on_success"), key, "\"move\" needs done_dir");
	}
	if (w->on_failure == CONFIG_ACTION_MOVE && !w->failed_dir) {
		key_fmt(key, sizeof(key), "%s.on_failure", prefix);
		return fail(l, member(g, "on_failure"), key, "\"move\" needs failed_dir");
	}
	if (w->results_dir && ((w->done_dir && strcmp(w->results_dir, w->done_dir) == 0) ||
	                       (w->failed_dir && strcmp(w->results_dir, w->failed_dir) == 0))) {
		key_fmt(key, sizeof(key), "%s.results_dir", prefix);
		return fail(l, member(g, "results_dir"), key,
		            "'%s' is also done_dir or failed_dir; results and moved cases "
		            "would collide",
		            w->results_dir);
	}
	for (size_t i = 0; w->socket && i < w->n_values; i++) {
		const config_setting_t *entry;

		if (strcmp(w->socket, w->values[i].socket) != 0)
			continue;
		entry = config_setting_get_elem(member(g, "values"), (unsigned int)i);
		key_fmt(key, sizeof(key), "%s.values[%zu].socket", prefix, i);
		return fail(l, member(entry, "socket"), key,
		            "socket '%s' is the watch's image socket too", w->socket);
	}
	return 0;
}

static int
parse_watch(struct loader *l, const config_setting_t *g, size_t index, struct config_watch *w)
{
	char prefix[KEY_MAX], key[KEY_MAX];
	const config_setting_t *name;
	int r;

	key_fmt(prefix, sizeof(prefix), "watches[%zu]", index);
	if (!config_setting_is_group(g))
		return fail(l, g, prefix,
		            "expected a group { name = ...; path = ...; ... }, got %s",
		            type_name(g));
	w->line = (int)config_setting_source_line(g);

	/* The name first, whatever its place, so that later messages can use it. */
	key_fmt(key, sizeof(key), "%s.name", prefix);
	name = member(g, "name");
	if (!name)
		return fail(l, g, key, "missing: every watch needs a name");
	r = parse_watch_name(l, name, key, &watch_keys[0], w);
	if (r < 0)
		return r;

	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned int)i);
		const struct key_def *k;

		key_fmt(key, sizeof(key), "%s.%s", prefix, config_setting_name(s));
		k = key_find(watch_keys, GC_ARRAY_SIZE(watch_keys), config_setting_name(s));
		if (!k)
			return fail(l, s, key, "unknown key");
		if (k == &watch_keys[0])
			continue;
		r = k->parse(l, s, key, k, w);
		if (r < 0)
			return r;
	}
	return watch_check(l, g, prefix, w);
}

static int
parse_watches(struct loader *l, const config_setting_t *s, const char *key, const struct key_def *k,
              void *base)
{
	struct config *c = base;
	size_t n;
	int r;

	if (config_setting_type(s) != CONFIG_TYPE_LIST)
		return fail(l, s, key, "expected a list of watches ( { ... }, ... ), got %s",
		            type_name(s));
	n = (size_t)config_setting_length(s);
	if (n == 0)
		return fail(l, s, key, "no watches: gcdrop would have nothing to do");
	c->watches = calloc(n, sizeof(*c->watches));
	if (!c->watches)
		return -ENOMEM;
	c->n_watches = n;
	for (size_t i = 0; i < n; i++) {
		struct config_watch *w = &c->watches[i];

		w->settle_seconds = 30;
		w->max_settle_seconds = 86400;
		w->scan_interval = 60;
		w->job_timeout = 86400;
		w->on_success = CONFIG_ACTION_KEEP;
		w->on_failure = CONFIG_ACTION_KEEP;
		r = parse_watch(l, config_setting_get_elem(s, (unsigned int)i), i, w);
		if (r < 0)
			return r;
	}
	return 0;
}

#define C(field) offsetof(struct config, field)

static const struct key_def root_keys[] = {
    {"api_url", parse_api_url, C(api_url), 0, 0},
    {"token_file", parse_opt_path, C(token_file), 0, 0},
    {"ca_file", parse_opt_path, C(ca_file), 0, 0},
    {"state_dir", parse_path, C(state_dir), 0, 0},
    {"workers", parse_int, C(workers), 1, WORKERS_MAX},
    {"max_send_speed", parse_size, C(max_send_speed), 0, 0},
    {"max_attempts", parse_int, C(max_attempts), 1, ATTEMPTS_MAX},
    {"min_free_space", parse_size, C(min_free_space), 0, 0},
    {"log_level", parse_log_level, C(log_level), 0, 0},
    {"watches", parse_watches, 0, 0, 0},
};

#undef C

/* ---- cross-checks between watches ---- */

/* Is 'child' strictly below 'parent'? Both normalised, compared by component. */
static bool
path_below(const char *child, const char *parent)
{
	size_t n = strlen(parent);

	if (n == 1)
		return child[1] != '\0';
	return strncmp(child, parent, n) == 0 && child[n] == '/';
}

/* How 'a' relates to 'b': NULL when apart, else words for a message. */
static const char *
path_relation(const char *a, const char *b)
{
	if (strcmp(a, b) == 0)
		return "is the same as";
	if (path_below(a, b))
		return "is inside";
	if (path_below(b, a))
		return "contains";
	return NULL;
}

static const config_setting_t *
watch_group(struct loader *l, size_t i)
{
	return config_setting_get_elem(config_lookup(&l->lc, "watches"), (unsigned int)i);
}

static int
check_watches(struct loader *l, const struct config *c)
{
	static const char *const dir_keys[] = {"results_dir", "done_dir", "failed_dir"};
	char key[KEY_MAX];

	for (size_t j = 0; j < c->n_watches; j++) {
		const struct config_watch *wj = &c->watches[j];
		const config_setting_t *gj = watch_group(l, j);

		for (size_t i = 0; i < j; i++) {
			const struct config_watch *wi = &c->watches[i];
			const char *rel;

			if (strcmp(wi->name, wj->name) == 0) {
				key_fmt(key, sizeof(key), "watches[%zu].name", j);
				return fail(l, member(gj, "name"), key,
				            "duplicate watch name '%s' (first used at line %d)",
				            wj->name, wi->line);
			}
			rel = path_relation(wj->path, wi->path);
			if (rel) {
				key_fmt(key, sizeof(key), "watches[%zu].path", j);
				return fail(l, member(gj, "path"), key,
				            "'%s' %s the path '%s' of watch '%s' (line %d); "
				            "watch folders must not overlap",
				            wj->path, rel, wi->path, wi->name, wi->line);
			}
		}
	}

	/* A folder gcdrop writes to must not be inside a watch, nor hold one. */
	for (size_t j = 0; j < c->n_watches; j++) {
		const struct config_watch *wj = &c->watches[j];
		const char *const dirs[] = {wj->results_dir, wj->done_dir, wj->failed_dir};

		for (size_t d = 0; d < GC_ARRAY_SIZE(dirs); d++) {
			if (!dirs[d])
				continue;
			for (size_t i = 0; i < c->n_watches; i++) {
				const struct config_watch *wi = &c->watches[i];
				const char *rel = path_relation(dirs[d], wi->path);

				if (!rel)
					continue;
				key_fmt(key, sizeof(key), "watches[%zu].%s", j, dir_keys[d]);
				return fail(l, member(watch_group(l, j), dir_keys[d]), key,
				            "'%s' %s the path '%s' of watch '%s' (line %d); it "
				            "must be outside every watch folder",
				            dirs[d], rel, wi->path, wi->name, wi->line);
			}
		}
	}
	for (size_t i = 0; i < c->n_watches; i++) {
		const struct config_watch *w = &c->watches[i];
		const char *rel = path_relation(c->state_dir, w->path);

		if (rel) {
			const config_setting_t *s = config_lookup(&l->lc, "state_dir");

			return fail(l, s, "state_dir",
			            "'%s' %s the path '%s' of watch '%s' (line %d); it must be "
			            "outside every watch folder",
			            c->state_dir, rel, w->path, w->name, w->line);
		}
		/* A secret inside a watch folder would be uploaded as a case. */
		if (c->token_file && path_below(c->token_file, w->path))
			return fail(l, config_lookup(&l->lc, "token_file"), "token_file",
			            "'%s' is inside the path '%s' of watch '%s' (line %d); it "
			            "would be uploaded",
			            c->token_file, w->path, w->name, w->line);
		if (c->ca_file && path_below(c->ca_file, w->path))
			return fail(l, config_lookup(&l->lc, "ca_file"), "ca_file",
			            "'%s' is inside the path '%s' of watch '%s' (line %d); it "
			            "would be uploaded",
			            c->ca_file, w->path, w->name, w->line);
	}
	return 0;
}

/* ---- the token ---- */

static void
wipe_free(char *s)
{
	if (!s)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

char *
config_token_normalise(const char *raw)
{
	const char *start, *end, *p, *word = NULL;
	size_t words = 0, word_len = 0;
	char *out;

	if (!raw)
		return NULL;
	start = raw;
	end = raw + strlen(raw);
	while (start < end && is_space(*start))
		start++;
	while (end > start && is_space(end[-1]))
		end--;

	/*
	 * gcapi collapses runs of spaces and splits on them; we also accept tabs
	 * between the words. Any other control character (a newline inside, a
	 * NUL-free binary file) makes the format invalid: it would otherwise end up
	 * inside an HTTP header.
	 */
	for (p = start; p < end;) {
		const char *w = p;

		while (p < end && !is_blank(*p)) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				return NULL;
			p++;
		}
		words++;
		word = w;
		word_len = (size_t)(p - w);
		while (p < end && is_blank(*p))
			p++;
	}
	if (words == 0 || words > 2)
		return NULL;
	/* A lone keyword is a header without its token, not a token. */
	if (words == 1 && word_len == 6 && strncasecmp(word, "Bearer", 6) == 0)
		return NULL;

	out = malloc(7 + word_len + 1);
	if (!out)
		return NULL;
	memcpy(out, "Bearer ", 7);
	memcpy(out + 7, word, word_len);
	out[7 + word_len] = '\0';
	return out;
}

void
config_token_free(char *header)
{
	wipe_free(header);
}

/*
 * Read a token file into a malloc'd, NUL-terminated buffer (wipe it after use).
 * With 'check_mode', a file that group or others may access is refused, on the
 * open descriptor so that the check and the read see the same file. On failure
 * returns a negative errno and a malloc'd reason naming the file.
 */
static int
token_file_read(const char *file, bool check_mode, char **ret_raw, char **reterr_reason)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd, r;

	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		*reterr_reason = str_printf("cannot open token file '%s': %s", file, strerror(-r));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		*reterr_reason = str_printf("cannot stat token file '%s': %s", file, strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		*reterr_reason = str_printf("token file '%s' is not a regular file", file);
		goto out;
	}
	if (check_mode && (st.st_mode & 077)) {
		r = -EPERM;
		*reterr_reason = str_printf("token file '%s' is %s by group or others (mode %04o); "
		                            "chmod 600 it",
		                            file, (st.st_mode & 044) ? "readable" : "accessible",
		                            (unsigned int)(st.st_mode & 07777));
		goto out;
	}
	buf = malloc(TOKEN_FILE_MAX + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, TOKEN_FILE_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			*reterr_reason =
			    str_printf("cannot read token file '%s': %s", file, strerror(-r));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > TOKEN_FILE_MAX) {
			r = -EFBIG;
			*reterr_reason = str_printf("token file '%s' is larger than %d bytes", file,
			                            TOKEN_FILE_MAX);
			goto out;
		}
	}
	buf[len] = '\0';
	if (memchr(buf, '\0', len)) {
		r = -EINVAL;
		*reterr_reason = str_printf("token file '%s' contains a NUL byte", file);
		goto out;
	}
	*ret_raw = buf;
	buf = NULL;
	r = 0;
out:
	if (buf) {
		explicit_bzero(buf, TOKEN_FILE_MAX + 1);
		free(buf);
	}
	if (fd >= 0)
		close(fd);
	return r;
}

#define TOKEN_FORMAT_HINT "expected the token, or \"Bearer <token>\""

/* The token from one file: read, normalise, wipe. */
static int
token_from_file(const char *file, bool check_mode, char **ret_header, char **reterr_reason)
{
	char *raw = NULL, *header;
	int r;

	r = token_file_read(file, check_mode, &raw, reterr_reason);
	if (r < 0)
		return r;
	header = config_token_normalise(raw);
	wipe_free(raw);
	if (!header) {
		*reterr_reason = str_printf(
		    "token file '%s' has an invalid format (" TOKEN_FORMAT_HINT ")", file);
		return -EINVAL;
	}
	*ret_header = header;
	return 0;
}

int
config_token(const struct config *config, char **ret_header, char **reterr_msg)
{
	const char *dir, *env;
	char *reason = NULL, *cred = NULL, *header = NULL;
	int r;

	if (config && config->token_file) {
		r = token_from_file(config->token_file, true, &header, &reason);
		goto out;
	}

	/*
	 * systemd's LoadCredential= puts the file in a private directory that only
	 * the service's user can read; its mode is systemd's business, not the
	 * operator's, so it is not checked. A missing credential falls through to
	 * the environment.
	 */
	dir = getenv("CREDENTIALS_DIRECTORY");
	if (dir && dir[0]) {
		cred = str_printf("%s/%s", dir, TOKEN_CREDENTIAL);
		if (!cred) {
			r = -ENOMEM;
			goto out;
		}
		r = token_from_file(cred, false, &header, &reason);
		if (r != -ENOENT)
			goto out;
		free(reason);
		reason = NULL;
	}

	env = getenv(TOKEN_ENV);
	if (env) {
		header = config_token_normalise(env);
		r = header ? 0 : -EINVAL;
		if (!header)
			reason = str_printf("$" TOKEN_ENV
			                    " has an invalid format (" TOKEN_FORMAT_HINT ")");
		goto out;
	}
	r = -ENOENT;
	reason = str_printf("no token: token_file is not set, there is no credential '%s'%s, "
	                    "and $" TOKEN_ENV " is not set",
	                    TOKEN_CREDENTIAL,
	                    dir && dir[0] ? " in $CREDENTIALS_DIRECTORY"
	                                  : " ($CREDENTIALS_DIRECTORY is not set)");
out:
	free(cred);
	if (r < 0) {
		if (reterr_msg)
			*reterr_msg = reason ? reason : strdup(strerror(-r));
		else
			free(reason);
		return r;
	}
	*ret_header = header;
	return 0;
}

/*
 * The token checks of config_load(). Without CONFIG_LOAD_NO_TOKEN the token
 * must be obtainable now (gcdrop run, gcdrop check). With it, a set token_file
 * is still checked for its mode when we can see it; a file we may not even
 * stat (an operator running `gcdrop status` as another user) is no error then.
 */
static int
check_token(struct loader *l, const struct config *c, int flags)
{
	const config_setting_t *s = config_lookup(&l->lc, "token_file");
	char *header = NULL, *reason = NULL;
	struct stat st;
	int r;

	if (flags & CONFIG_LOAD_NO_TOKEN) {
		if (!c->token_file)
			return 0;
		if (stat(c->token_file, &st) < 0) {
			if (errno != ENOENT)
				return 0;
			return fail(l, s, "token_file", "token file '%s' does not exist",
			            c->token_file);
		}
		if (!S_ISREG(st.st_mode))
			return fail(l, s, "token_file", "token file '%s' is not a regular file",
			            c->token_file);
		if (st.st_mode & 077)
			return fail(l, s, "token_file",
			            "token file '%s' is %s by group or others (mode %04o); "
			            "chmod 600 it",
			            c->token_file, (st.st_mode & 044) ? "readable" : "accessible",
			            (unsigned int)(st.st_mode & 07777));
		return 0;
	}

	r = config_token(c, &header, &reason);
	config_token_free(header);
	if (r == -ENOMEM && !reason)
		return r;
	if (r < 0) {
		/* Without token_file the reason names its source ("$GRAND_..."). */
		int rf = fail(l, c->token_file ? s : NULL, c->token_file ? "token_file" : NULL,
		              "%s", reason ? reason : strerror(-r));

		free(reason);
		return rf == -ENOMEM ? rf : r;
	}
	return 0;
}

/* ---- loading ---- */

static int
read_file(struct loader *l)
{
	struct stat st;
	int fd, r;

	fd = open(l->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		fail(l, NULL, NULL, "cannot open: %s", strerror(-r));
		return r;
	}
	r = fstat(fd, &st) < 0 ? -errno : 0;
	close(fd);
	if (r < 0) {
		fail(l, NULL, NULL, "cannot stat: %s", strerror(-r));
		return r;
	}
	if (S_ISDIR(st.st_mode)) {
		fail(l, NULL, NULL, "is a directory");
		return -EISDIR;
	}
	if (config_read_file(&l->lc, l->path) == CONFIG_TRUE)
		return 0;
	if (config_error_type(&l->lc) == CONFIG_ERR_FILE_IO) {
		fail(l, NULL, NULL, "cannot read: %s", config_error_text(&l->lc));
		return -EIO;
	}
	/* Messages from libconfig: "syntax error", "duplicate setting name", ... */
	l->msg =
	    str_printf("%s:%d: %s", config_error_file(&l->lc) ? config_error_file(&l->lc) : l->path,
	               config_error_line(&l->lc), config_error_text(&l->lc));
	return l->msg ? -EINVAL : -ENOMEM;
}

static int
parse_root(struct loader *l, struct config *c)
{
	const config_setting_t *root = config_root_setting(&l->lc);
	int r;

	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *s = config_setting_get_elem(root, (unsigned int)i);
		const char *name = config_setting_name(s);
		const struct key_def *k = key_find(root_keys, GC_ARRAY_SIZE(root_keys), name);

		if (!k) {
			if (key_find(watch_keys, GC_ARRAY_SIZE(watch_keys), name))
				return fail(l, s, name,
				            "unknown key at the top level (it belongs inside a "
				            "watch: watches = ( { ... } ))");
			return fail(l, s, name, "unknown key");
		}
		r = k->parse(l, s, name, k, c);
		if (r < 0)
			return r;
	}
	if (!c->watches)
		return fail(l, NULL, "watches",
		            "missing: no watches, gcdrop would have nothing to do");
	return 0;
}

static struct config *
config_new(const char *path)
{
	struct config *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->path = strdup(path);
	c->api_url = strdup(DEFAULT_API_URL);
	c->state_dir = strdup(DEFAULT_STATE_DIR);
	c->workers = 4;
	c->max_send_speed = 0;
	c->max_attempts = 10;
	c->min_free_space = INT64_C(1) << 30;
	c->log_level = LOG_INFO;
	if (!c->path || !c->api_url || !c->state_dir)
		return config_free(c);
	return c;
}

/*
 * 'path' NULL means CONFIG_DEFAULT_PATH. reterr_msg may be NULL. *reterr_msg is
 * NULL only when even the message could not be allocated.
 */
int
config_load(const char *path, int flags, struct config **ret_config, char **reterr_msg)
{
	struct loader l = {.path = path ? path : CONFIG_DEFAULT_PATH};
	struct config *c;
	int r;

	config_init(&l.lc);
	c = config_new(l.path);
	if (!c) {
		r = -ENOMEM;
		goto out;
	}
	r = read_file(&l);
	if (r < 0)
		goto out;
	r = parse_root(&l, c);
	if (r < 0)
		goto out;
	r = check_watches(&l, c);
	if (r < 0)
		goto out;
	r = check_token(&l, c, flags);
	if (r < 0)
		goto out;
	*ret_config = c;
	c = NULL;
out:
	if (r < 0 && reterr_msg) {
		if (!l.msg)
			l.msg = str_printf("%s: %s", l.path, strerror(-r));
		*reterr_msg = l.msg;
		l.msg = NULL;
	}
	free(l.msg);
	free(l.src_name);
	free(l.src_text);
	config_destroy(&l.lc);
	config_free(c);
	return r;
}

const struct config_watch *
config_find_watch(const struct config *config, const char *name)
{
	if (!config || !name)
		return NULL;
	for (size_t i = 0; i < config->n_watches; i++)
		if (strcmp(config->watches[i].name, name) == 0)
			return &config->watches[i];
	return NULL;
}

const char *
config_dest_name(enum config_dest dest)
{
	if ((size_t)dest >= GC_ARRAY_SIZE(dest_names))
		return "unknown";
	return dest_names[dest];
}

const char *
config_action_name(enum config_action action)
{
	if ((size_t)action >= GC_ARRAY_SIZE(action_names))
		return "unknown";
	return action_names[action];
}

static void
watch_free(struct config_watch *w)
{
	free(w->name);
	free(w->path);
	free(w->slug);
	free(w->socket);
	for (size_t i = 0; i < w->n_values; i++) {
		free(w->values[i].socket);
		free(w->values[i].json);
	}
	free(w->values);
	free(w->ready_marker);
	free(w->results_dir);
	free(w->done_dir);
	free(w->failed_dir);
}

struct config *
config_free(struct config *config)
{
	if (!config)
		return NULL;
	for (size_t i = 0; i < config->n_watches; i++)
		watch_free(&config->watches[i]);
	free(config->watches);
	free(config->path);
	free(config->api_url);
	free(config->token_file);
	free(config->ca_file);
	free(config->state_dir);
	free(config);
	return NULL;
}
