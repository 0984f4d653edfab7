/*
 * cli.c: the operator commands.
 *
 * DESIGN
 * Every command follows the same steps: parse its options (getopt_long, with
 * "-c FILE" and "--help" everywhere), load the configuration (exit 78 with the
 * message when it is bad), open the queue with its own connection, act, and
 * return an exit status. Reading commands open the queue read-only, so that
 * `gcdrop status` never blocks the daemon and works for any user who can read
 * the state directory. Writing commands (retry, hold, release, enqueue) only
 * add rows to the `requests` table; the daemon, the one owner of case state,
 * carries them out within a second. When the daemon is not running the request
 * waits for its next start.
 */

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "casemap.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "http.h"
#include "progress.h"
#include "store.h"

/* Options every command understands. */
struct cli_common {
	const char *config_path;
	bool json;
	bool all;
	bool failed;
	bool offline;
	const char *watch;
};

enum {
	OPT_JSON = 0x100,
	OPT_ALL,
	OPT_FAILED,
	OPT_OFFLINE,
	OPT_WATCH,
};

static const struct option cli_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "help", no_argument, NULL, 'h' },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "all", no_argument, NULL, OPT_ALL },
	{ "failed", no_argument, NULL, OPT_FAILED },
	{ "offline", no_argument, NULL, OPT_OFFLINE },
	{ "watch", required_argument, NULL, OPT_WATCH },
	{ NULL, 0, NULL, 0 },
};

/*
 * Parse argv into 'o'. 'allowed' lists the long options (by their OPT_ value)
 * this command accepts. Returns the index of the first operand, -1 after
 * printing 'usage' for --help, or -2 after a usage error.
 */
static int
cli_parse(int argc, char **argv, struct cli_common *o, const int *allowed, const char *usage)
{
	int c;

	memset(o, 0, sizeof(*o));
	o->config_path = CONFIG_DEFAULT_PATH;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+c:h", cli_options, NULL)) != -1) {
		bool ok = false;

		if (c == 'c') {
			o->config_path = optarg;
			continue;
		}
		if (c == 'h') {
			printf("usage: gcdrop %s\n", usage);
			return -1;
		}
		for (const int *a = allowed; a != NULL && *a != 0; a++)
			if (*a == c)
				ok = true;
		if (!ok) {
			if (c == '?' && optopt != 0)
				fprintf(stderr, "gcdrop %s: option '-%c' is unknown or needs a value\n",
					argv[0], optopt);
			else
				fprintf(stderr, "gcdrop %s: option '%s' is not valid here\n", argv[0],
					argv[optind - 1]);
			fprintf(stderr, "usage: gcdrop %s\n", usage);
			return -2;
		}
		switch (c) {
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_ALL:
			o->all = true;
			break;
		case OPT_FAILED:
			o->failed = true;
			break;
		case OPT_OFFLINE:
			o->offline = true;
			break;
		case OPT_WATCH:
			o->watch = optarg;
			break;
		}
	}
	return optind;
}

/* Load the configuration; on failure print why and return NULL. */
static struct config *
cli_load_config(const char *path, int flags)
{
	struct config *cfg = NULL;
	char *msg = NULL;
	int r;

	r = config_load(path, flags, &cfg, &msg);
	if (r < 0) {
		fprintf(stderr, "gcdrop: %s\n", msg != NULL ? msg : strerror(-r));
		free(msg);
		return NULL;
	}
	return cfg;
}

/*
 * Open the queue. A missing queue is not an error for readers: 'ret' stays NULL
 * and 0 is returned, and the caller shows an empty queue.
 */
static int
cli_open_store(const struct config *cfg, int flags, struct store **ret)
{
	char *msg = NULL;
	int r;

	*ret = NULL;
	r = store_open(cfg->state_dir, flags, ret, &msg);
	if (r == -ENOENT && (flags & STORE_OPEN_READONLY)) {
		free(msg);
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "gcdrop: %s\n", msg != NULL ? msg : strerror(-r));
		free(msg);
		return r;
	}
	return 0;
}

static void
cli_iso_time(int64_t t, char *buf, size_t cap)
{
	struct tm tm;
	time_t tt = (time_t)t;

	gmtime_r(&tt, &tm);
	strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * A copy of 's' that is valid UTF-8 (invalid bytes become U+FFFD) and, for the
 * table, free of control characters (shown as '?'). Case names may hold any
 * byte; JSON output and terminals need something printable.
 */
static char *
cli_printable(const char *s, bool for_table)
{
	size_t n = strlen(s);
	char *out = malloc(n * 3 + 1);
	size_t o = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
		bool valid = len > 0 && i + len <= n;

		for (size_t k = 1; valid && k < len; k++)
			if (((unsigned char)s[i + k] >> 6) != 2)
				valid = false;
		if (valid && len == 2 && c < 0xc2)
			valid = false;
		if (!valid) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		if (len == 1 && for_table && (c < 0x20 || c == 0x7f)) {
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, s + i, len);
		o += len;
		i += len;
	}
	out[o] = '\0';
	return out;
}

static void
cli_human_bytes(int64_t b, char *buf, size_t cap)
{
	const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	size_t u = 0;

	while (v >= 1024.0 && u + 1 < GC_ARRAY_SIZE(units)) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, cap, "%lld B", (long long)b);
	else
		snprintf(buf, cap, "%.1f %s", v, units[u]);
}

/* Which cases the operator named: ids, names, or "watch/name". */
struct cli_selection {
	char **names;
	int n;
	const char *watch;
	bool *seen;
};

static bool
cli_selected(const struct cli_selection *sel, int64_t id, const char *watch, const char *name)
{
	char idbuf[32];

	if (sel->watch != NULL && strcmp(sel->watch, watch) != 0)
		return false;
	if (sel->n == 0)
		return true;
	snprintf(idbuf, sizeof(idbuf), "%" PRId64, id);
	for (int i = 0; i < sel->n; i++) {
		const char *a = sel->names[i];
		size_t wl = strlen(watch);
		bool hit = strcmp(a, idbuf) == 0 || strcmp(a, name) == 0 ||
			   (strncmp(a, watch, wl) == 0 && a[wl] == '/' && strcmp(a + wl + 1, name) == 0);

		if (hit) {
			if (sel->seen != NULL)
				sel->seen[i] = true;
			return true;
		}
	}
	return false;
}

/*
 * Output of `gcdrop status` without a CASE operand. With 100,000 cases the
 * table is about 10 MB and the JSON about 50 MB, and the command should take
 * well under a tenth of a second (spec section 8), so this path formats by
 * hand into one large buffer (no printf, no cJSON tree, no malloc per case)
 * and writes it out with one write per CLI_OUT_FLUSH bytes. The result is the
 * same text printf and cJSON would give.
 */
#define CLI_OUT_FLUSH (1 << 20)

struct cli_out {
	char *buf;
	size_t len;
	size_t cap;
	bool failed;		/* out of memory or a write error: the exit status says so */
};

static void
cli_out_flush(struct cli_out *o)
{
	if (o->len > 0 && !o->failed && fwrite(o->buf, 1, o->len, stdout) != o->len)
		o->failed = true;
	o->len = 0;
}

/* Room for n more bytes; false (and o->failed) when there is none. */
static bool
cli_out_room(struct cli_out *o, size_t n)
{
	char *p;
	size_t cap;

	if (o->len + n <= o->cap)
		return true;
	if (o->len >= CLI_OUT_FLUSH)
		cli_out_flush(o);
	if (o->len + n <= o->cap)
		return !o->failed;
	cap = o->len + n > CLI_OUT_FLUSH ? (o->len + n) * 2 : CLI_OUT_FLUSH * 2;
	p = realloc(o->buf, cap);
	if (p == NULL) {
		o->failed = true;
		return false;
	}
	o->buf = p;
	o->cap = cap;
	return !o->failed;
}

static void
cli_out_mem(struct cli_out *o, const char *s, size_t n)
{
	if (!cli_out_room(o, n))
		return;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void
cli_out_str(struct cli_out *o, const char *s)
{
	cli_out_mem(o, s, strlen(s));
}

/* Decimal digits of v into the end of buf[24]; returns where they start. */
static char *
cli_fmt_i64(int64_t v, char *end)
{
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	char *p = end;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--p = '-';
	return p;
}

static void
cli_out_i64(struct cli_out *o, int64_t v)
{
	char b[24], *p = cli_fmt_i64(v, b + sizeof(b));

	cli_out_mem(o, p, (size_t)(b + sizeof(b) - p));
}

/* s (n bytes) in a field of 'width': right-aligned or left-aligned (printf "%*s", "%-*s"). */
static void
cli_out_field(struct cli_out *o, const char *s, size_t n, size_t width, bool right)
{
	size_t pad = n < width ? width - n : 0;

	if (!cli_out_room(o, n + pad))
		return;
	if (right) {
		memset(o->buf + o->len, ' ', pad);
		o->len += pad;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	if (!right) {
		memset(o->buf + o->len, ' ', pad);
		o->len += pad;
	}
}

/*
 * cli_human_bytes() without floating point: "%.1f" of b / 1024^u is the
 * integer tenths b * 10 / 1024^u rounded half to even (the value is exact in
 * binary, so printf's rounding of a tie is to even too). Returns the length.
 */
static size_t
cli_fmt_bytes(int64_t b, char *buf, size_t cap)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	char d[24], *p;
	uint64_t unit = 1, q, rem;
	size_t u = 0, n = 0;

	if (b < 0 || b > INT64_MAX / 10) {
		cli_human_bytes(b, buf, cap);
		return strlen(buf);
	}
	while (u + 1 < GC_ARRAY_SIZE(units) && (uint64_t)b >= unit * 1024) {
		unit *= 1024;
		u++;
	}
	if (u == 0)
		q = (uint64_t)b;
	else {
		q = (uint64_t)b * 10 / unit;
		rem = (uint64_t)b * 10 % unit;
		if (rem * 2 > unit || (rem * 2 == unit && (q & 1)))
			q++;
	}
	p = cli_fmt_i64((int64_t)(u == 0 ? q : q / 10), d + sizeof(d));
	n = (size_t)(d + sizeof(d) - p);
	memcpy(buf, p, n);
	if (u > 0) {
		buf[n++] = '.';
		buf[n++] = (char)('0' + q % 10);
	}
	buf[n++] = ' ';
	memcpy(buf + n, units[u], strlen(units[u]) + 1);
	return n + strlen(units[u]);
}

/* True when every byte of s is printable ASCII: cli_printable() would copy it unchanged. */
static bool
cli_plain(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* s as a JSON string, escaped as cJSON does; "null" for NULL. */
static void
cli_out_json_str(struct cli_out *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t n, i = 0;
	char *w;

	if (s == NULL) {
		cli_out_mem(o, "null", 4);
		return;
	}
	n = strlen(s);
	if (!cli_out_room(o, n * 6 + 2))
		return;
	w = o->buf + o->len;
	*w++ = '"';
	while (i < n) {
		size_t run = i;
		unsigned char c;

		/* Most strings need no escape at all: copy runs of plain bytes at once. */
		while (run < n && (unsigned char)s[run] >= 0x20 && s[run] != '"' && s[run] != '\\')
			run++;
		memcpy(w, s + i, run - i);
		w += run - i;
		if (run == n)
			break;
		c = (unsigned char)s[run];
		i = run + 1;
		*w++ = '\\';
		switch (c) {
		case '"': *w++ = '"'; break;
		case '\\': *w++ = '\\'; break;
		case '\b': *w++ = 'b'; break;
		case '\f': *w++ = 'f'; break;
		case '\n': *w++ = 'n'; break;
		case '\r': *w++ = 'r'; break;
		case '\t': *w++ = 't'; break;
		default:
			memcpy(w, "u00", 3);
			w[3] = hex[c >> 4];
			w[4] = hex[c & 15];
			w += 5;
		}
	}
	*w++ = '"';
	o->len = (size_t)(w - o->buf);
}

/* ISO-8601 of t, remembering the last few: neighbouring cases share their times. */
struct cli_time_cache {
	int64_t t[4];
	char s[4][32];
	unsigned next;
};

static const char *
cli_iso_cached(struct cli_time_cache *tc, int64_t t)
{
	unsigned k;

	for (k = 0; k < GC_ARRAY_SIZE(tc->t); k++)
		if (tc->t[k] == t && tc->s[k][0] != '\0')
			return tc->s[k];
	k = tc->next++ % GC_ARRAY_SIZE(tc->t);
	tc->t[k] = t;
	cli_iso_time(t, tc->s[k], sizeof(tc->s[k]));
	return tc->s[k];
}

struct cli_list_ctx {
	struct cli_out out;
	const struct cli_selection *sel;
	bool json;
	int shown;
	struct cli_time_cache times;
};

/* One line of the table (the format of cli_status_one's printf before). */
static void
cli_list_table(struct cli_list_ctx *ctx, const struct store_status_row *c)
{
	struct cli_out *o = &ctx->out;
	char num[24], *p, done[40], total[40];
	const char *state = store_state_name(c->state);
	char *fixed = NULL;
	const char *name = c->name;
	size_t n;

	if (!cli_plain(c->name, c->name_len)) {
		fixed = cli_printable(c->name, true);
		name = fixed != NULL ? fixed : "?";
	}
	p = cli_fmt_i64(c->id, num + sizeof(num));
	cli_out_field(o, p, (size_t)(num + sizeof(num) - p), 6, true);
	cli_out_mem(o, "  ", 2);
	n = strlen(c->watch);
	cli_out_field(o, c->watch, n < 12 ? n : 12, 12, false);
	cli_out_mem(o, " ", 1);
	n = strlen(name);
	cli_out_field(o, name, n < 24 ? n : 24, 24, false);
	cli_out_mem(o, " ", 1);
	cli_out_field(o, state, strlen(state), 11, false);
	cli_out_mem(o, c->held ? "* " : "  ", 2);
	n = cli_fmt_bytes(c->bytes_done, done, sizeof(done));
	cli_out_field(o, done, n, 10, true);
	cli_out_mem(o, " / ", 3);
	n = cli_fmt_bytes(c->bytes_total, total, sizeof(total));
	cli_out_field(o, total, n, 10, false);
	cli_out_mem(o, " ", 1);
	p = cli_fmt_i64(c->attempts, num + sizeof(num));
	cli_out_field(o, p, (size_t)(num + sizeof(num) - p), 3, true);
	cli_out_mem(o, "  ", 2);
	if (c->error != NULL)
		cli_out_str(o, c->error);
	cli_out_mem(o, "\n", 1);
	free(fixed);
}

/* One case of the JSON "cases" array; the keys and their order are those of spec section 5. */
static void
cli_list_json(struct cli_list_ctx *ctx, const struct store_status_row *c)
{
	static const char *const keys[_STORE_REMOTE_MAX] = {
		[STORE_REMOTE_SESSION] = "upload_session",
		[STORE_REMOTE_ARCHIVE_ITEM] = "archive_item",
		[STORE_REMOTE_DISPLAY_SET] = "display_set",
		[STORE_REMOTE_JOB] = "job",
	};
	struct cli_out *o = &ctx->out;
	char *fixed = NULL;
	char t[32];

	if (!cli_plain(c->name, c->name_len))
		fixed = cli_printable(c->name, false);
	cli_out_str(o, ctx->shown > 1 ? ",{\"id\":" : "{\"id\":");
	cli_out_i64(o, c->id);
	cli_out_str(o, ",\"watch\":");
	cli_out_json_str(o, c->watch);
	cli_out_str(o, ",\"name\":");
	cli_out_json_str(o, fixed != NULL ? fixed : cli_plain(c->name, c->name_len) ? c->name : "");
	cli_out_str(o, ",\"state\":\"");
	cli_out_str(o, store_state_name(c->state));
	cli_out_str(o, c->held ? "\",\"held\":true,\"attempts\":"
			       : "\",\"held\":false,\"attempts\":");
	cli_out_i64(o, c->attempts);
	cli_out_str(o, ",\"next_attempt\":");
	if (c->state == STORE_RETRY_WAIT && c->next_attempt > 0) {
		cli_iso_time(c->next_attempt, t, sizeof(t));
		cli_out_json_str(o, t);
	} else {
		cli_out_mem(o, "null", 4);
	}
	cli_out_str(o, ",\"bytes_done\":");
	cli_out_i64(o, c->bytes_done);
	cli_out_str(o, ",\"bytes_total\":");
	cli_out_i64(o, c->bytes_total);
	cli_out_str(o, ",\"error\":");
	cli_out_json_str(o, c->error);
	cli_out_str(o, ",\"remote\":{");
	for (int k = 0; k < _STORE_REMOTE_MAX; k++) {
		cli_out_str(o, k > 0 ? ",\"" : "\"");
		cli_out_str(o, keys[k]);
		cli_out_str(o, "\":");
		cli_out_json_str(o, c->remote_url[k]);
	}
	cli_out_str(o, "},\"results\":");
	cli_out_json_str(o, c->results);
	cli_out_str(o, ",\"created\":\"");
	cli_out_str(o, cli_iso_cached(&ctx->times, c->created));
	cli_out_str(o, "\",\"updated\":\"");
	cli_out_str(o, cli_iso_cached(&ctx->times, c->updated));
	cli_out_str(o, "\",\"fingerprint\":");
	cli_out_json_str(o, c->fingerprint);
	cli_out_mem(o, "}", 1);
	free(fixed);
}

static int
cli_list_one(const struct store_status_row *c, void *userdata)
{
	struct cli_list_ctx *ctx = userdata;

	if (ctx->sel->n > 0 && !cli_selected(ctx->sel, c->id, c->watch, c->name))
		return 0;
	ctx->shown++;
	if (ctx->json)
		cli_list_json(ctx, c);
	else
		cli_list_table(ctx, c);
	return ctx->out.failed ? -ENOMEM : 0;
}

struct cli_status_ctx {
	struct store *st;
	const struct cli_selection *sel;
	int shown;
};

static void
cli_case_detail(struct store *st, const struct store_case *c)
{
	char *name = cli_printable(c->name, true);
	char t[32], done[32], total[32];
	struct store_remote *r = NULL;
	struct store_output *out = NULL;
	struct store_event *ev = NULL;
	size_t nr = 0, no = 0, ne = 0;

	printf("case %" PRId64 ": '%s' (watch '%s')\n", c->id, name != NULL ? name : "?", c->watch);
	printf("  state:     %s%s\n", store_state_name(c->state), c->held ? " (held)" : "");
	if (c->path != NULL)
		printf("  path:      %s\n", c->path);
	cli_human_bytes(c->bytes_done, done, sizeof(done));
	cli_human_bytes(c->bytes_total, total, sizeof(total));
	printf("  progress:  %s / %s\n", done, total);
	printf("  attempts:  %d\n", c->attempts);
	if (c->state == STORE_RETRY_WAIT && c->next_attempt > 0) {
		cli_iso_time(c->next_attempt, t, sizeof(t));
		printf("  next try:  %s (then %s)\n", t, store_state_name(c->resume_state));
	}
	if (store_remote_list(st, c->id, &r, &nr) == 0) {
		for (size_t i = 0; i < nr; i++)
			printf("  %-10s %s%s%s%s\n", store_remote_kind_name(r[i].kind),
			       r[i].url != NULL ? r[i].url : "(being created)",
			       r[i].status != NULL ? " [" : "", r[i].status != NULL ? r[i].status : "",
			       r[i].status != NULL ? "]" : "");
		store_remote_list_free(r, nr);
	}
	if (store_output_list(st, c->id, &out, &no) == 0) {
		for (size_t i = 0; i < no; i++)
			printf("  output:    %s -> %s\n", out[i].socket,
			       out[i].path != NULL ? out[i].path
						   : out[i].value_json != NULL ? out[i].value_json : "(not written)");
		store_output_list_free(out, no);
	}
	if (c->results != NULL)
		printf("  results:   %s\n", c->results);
	if (c->error != NULL)
		printf("  error:     %s\n", c->error);
	if (store_event_list(st, c->id, &ev, &ne) == 0 && ne > 0) {
		printf("  history:\n");
		for (size_t i = 0; i < ne; i++) {
			cli_iso_time(ev[i].time, t, sizeof(t));
			printf("    %s  %-11s %s\n", t, ev[i].state != NULL ? ev[i].state : "",
			       ev[i].message != NULL ? ev[i].message : "");
		}
		store_event_list_free(ev, ne);
	}
	free(name);
}

/* The long form of one named case (`gcdrop status CASE...`). */
static int
cli_status_one(const struct store_case *c, void *userdata)
{
	struct cli_status_ctx *ctx = userdata;

	if (!cli_selected(ctx->sel, c->id, c->watch, c->name))
		return 0;
	ctx->shown++;
	cli_case_detail(ctx->st, c);
	return 0;
}

/*
 * Settling cases (the daemon's settling table, store_settling_foreach()): they
 * have no id yet, so the table shows "-" and JSON null; the other columns are
 * those of a case that has not started (no bytes, no attempts, no error), and
 * "created" / "updated" are the time it started settling.
 */
static int
cli_settling_one(const struct store_settling *row, void *userdata)
{
	struct cli_list_ctx *ctx = userdata;
	struct cli_out *o = &ctx->out;
	char *fixed = NULL;
	const char *name = row->name, *since;
	size_t n;

	if (ctx->sel->n > 0 && !cli_selected(ctx->sel, -1, row->watch, row->name))
		return 0;
	ctx->shown++;
	since = cli_iso_cached(&ctx->times, row->since);
	if (!cli_plain(row->name, row->name_len)) {
		fixed = cli_printable(row->name, !ctx->json);
		name = fixed != NULL ? fixed : "?";
	}
	if (ctx->json) {
		cli_out_str(o, ctx->shown > 1 ? ",{\"id\":null,\"watch\":" : "{\"id\":null,\"watch\":");
		cli_out_json_str(o, row->watch);
		cli_out_str(o, ",\"name\":");
		cli_out_json_str(o, name);
		cli_out_str(o, ",\"state\":\"settling\",\"held\":false,\"attempts\":0,"
			       "\"next_attempt\":null,\"bytes_done\":0,\"bytes_total\":0,"
			       "\"error\":null,\"remote\":{\"upload_session\":null,"
			       "\"archive_item\":null,\"display_set\":null,\"job\":null},"
			       "\"results\":null,\"created\":\"");
		cli_out_str(o, since);
		cli_out_str(o, "\",\"updated\":\"");
		cli_out_str(o, since);
		cli_out_str(o, "\",\"fingerprint\":null}");
	} else {
		cli_out_field(o, "-", 1, 6, true);
		cli_out_mem(o, "  ", 2);
		n = strlen(row->watch);
		cli_out_field(o, row->watch, n < 12 ? n : 12, 12, false);
		cli_out_mem(o, " ", 1);
		n = strlen(name);
		cli_out_field(o, name, n < 24 ? n : 24, 24, false);
		cli_out_mem(o, " ", 1);
		cli_out_field(o, "settling", 8, 11, false);
		cli_out_mem(o, "  ", 2);
		cli_out_field(o, "-", 1, 10, true);
		cli_out_mem(o, " / ", 3);
		cli_out_field(o, "-", 1, 10, false);
		cli_out_mem(o, " ", 1);
		cli_out_field(o, "0", 1, 3, true);
		cli_out_mem(o, "  since ", 8);
		cli_out_str(o, since);
		cli_out_mem(o, "\n", 1);
	}
	free(fixed);
	return o->failed ? -ENOMEM : 0;
}

/* `gcdrop status NAME` for a settling case: the short story it has so far. */
static int
cli_settling_detail(const struct store_settling *row, void *userdata)
{
	struct cli_status_ctx *ctx = userdata;
	char *name;
	char t[32];

	if (!cli_selected(ctx->sel, -1, row->watch, row->name))
		return 0;
	ctx->shown++;
	name = cli_printable(row->name, true);
	cli_iso_time(row->since, t, sizeof(t));
	printf("case -: '%s' (watch '%s')\n", name != NULL ? name : "?", row->watch);
	printf("  state:     settling since %s (not queued yet, so no id)\n", t);
	free(name);
	return 0;
}

int
cli_status(int argc, char **argv)
{
	bool read_failed = false;
	static const int allowed[] = { OPT_JSON, OPT_WATCH, 0 };
	const char *usage = "status [-c FILE] [--json] [--watch NAME] [CASE...]";
	struct cli_common o;
	struct config *cfg;
	struct store *st = NULL;
	struct cli_selection sel;
	struct cli_status_ctx ctx = { 0 };
	struct cli_list_ctx list = { 0 };
	struct progress_summary sum = PROGRESS_SUMMARY_INIT;
	const int64_t *counts = sum.counts;
	int64_t total = 0;
	int first, r = 0, rc = EX_OK;
	bool detail, hold_all = false;
	char line[PROGRESS_LINE_MAX];

	first = cli_parse(argc, argv, &o, allowed, usage);
	if (first < 0)
		return first == -1 ? EX_OK : EX_USAGE;
	cfg = cli_load_config(o.config_path, CONFIG_LOAD_NO_TOKEN);
	if (cfg == NULL)
		return EX_CONFIG;
	if (o.watch != NULL && config_find_watch(cfg, o.watch) == NULL) {
		fprintf(stderr, "gcdrop status: no watch named '%s' in '%s'\n", o.watch, cfg->path);
		config_free(cfg);
		return EX_USAGE;
	}
	if (cli_open_store(cfg, STORE_OPEN_READONLY, &st) < 0) {
		config_free(cfg);
		return 1;
	}
	sel.names = argv + first;
	sel.n = argc - first;
	sel.watch = o.watch;
	sel.seen = calloc((size_t)sel.n + 1, sizeof(bool));
	ctx.st = st;
	ctx.sel = &sel;
	list.sel = &sel;
	list.json = o.json;
	/* CASE operands without --json: the long form, case by case. */
	detail = sel.n > 0 && !o.json;
	/*
	 * One read transaction: the summary and the list come from one snapshot.
	 * The summary is the daemon's STATUS= line without the rate (progress.h):
	 * a count per state, the settling cases from the daemon's table, and the
	 * bytes left from one aggregate query, never a walk of the queue.
	 */
	if (st != NULL) {
		r = store_begin(st);
		if (r == 0)
			r = progress_collect(st, &sum);
		if (r == 0)
			r = store_settling_count(st, &sum.counts[STORE_SETTLING]);
		if (r == 0)
			r = store_hold_all_get(st, &hold_all);
	}
	for (int s = 0; s < _STORE_STATE_MAX; s++)
		total += counts[s];
	if (!o.json && !detail && r == 0) {
		if (total == 0)
			snprintf(line, sizeof(line), "queue empty");
		else
			progress_format(&sum, line, sizeof(line));
		cli_out_str(&list.out, line);
		cli_out_str(&list.out, hold_all ? "\nnew cases are held (gcdrop hold --all; "
						  "gcdrop release --all ends it)\n"
						: "\n");
		if (total > 0)
			cli_out_str(&list.out, "\n");
	}
	if (o.json) {
		cli_out_str(&list.out, "{\"summary\":{");
		for (int s = 0, k = 0; s < _STORE_STATE_MAX; s++) {
			if (counts[s] == 0)
				continue;
			cli_out_str(&list.out, k++ > 0 ? ",\"" : "\"");
			cli_out_str(&list.out, store_state_name((enum store_state)s));
			cli_out_str(&list.out, "\":");
			cli_out_i64(&list.out, counts[s]);
		}
		cli_out_str(&list.out, "},\"cases\":[");
	}
	if (st != NULL && r == 0) {
		if (detail)
			r = store_case_foreach(st, o.watch, cli_status_one, &ctx);
		else
			r = store_status_foreach(st, o.watch, o.json ? STORE_STATUS_FULL : 0,
						 cli_list_one, &list);
		/* Settling cases come after the queued ones: they are the newest. */
		if (r == 0 && counts[STORE_SETTLING] > 0)
			r = store_settling_foreach(st, o.watch,
						   detail ? cli_settling_detail : cli_settling_one,
						   detail ? (void *)&ctx : (void *)&list);
	}
	if (st != NULL) {
		if (r < 0 && !list.out.failed) {
			fprintf(stderr, "gcdrop status: reading the queue failed: %s\n", store_errmsg(st));
			rc = 1;
			read_failed = true;
		}
		(void)store_commit(st);
	}
	if (read_failed) {
		/* Nothing more on stdout: an unreadable queue is not an empty one. */
	} else if (o.json) {
		cli_out_str(&list.out, "]}\n");
	}
	if (!read_failed)
		cli_out_flush(&list.out);
	if (list.out.failed || fflush(stdout) != 0) {
		fprintf(stderr, "gcdrop status: writing the output failed: %s\n", strerror(errno));
		rc = 1;
	}
	free(list.out.buf);
	for (int i = 0; i < sel.n; i++) {
		if (!sel.seen[i]) {
			fprintf(stderr, "gcdrop status: no case '%s' in the queue\n", sel.names[i]);
			rc = 1;
		}
	}
	free(sel.seen);
	store_close(st);
	config_free(cfg);
	return rc;
}

/* Resolve the named cases and add one request per case. */
struct cli_request_ctx {
	struct store *st;
	const struct cli_selection *sel;
	enum store_request_kind kind;
	bool only_failed;
	int added;
	int err;
};

static int
cli_request_one(const struct store_case *c, void *userdata)
{
	struct cli_request_ctx *ctx = userdata;

	if (ctx->sel->n > 0 && !cli_selected(ctx->sel, c->id, c->watch, c->name))
		return 0;
	if (ctx->only_failed && c->state != STORE_FAILED && c->state != STORE_CANCELLED)
		return 0;
	if (ctx->kind == STORE_REQ_RETRY && !store_state_is_terminal(c->state) && ctx->sel->n > 0) {
		fprintf(stderr, "gcdrop retry: case %" PRId64 " is %s, not failed: left alone\n", c->id,
			store_state_name(c->state));
		return 0;
	}
	if (store_request_add(ctx->st, ctx->kind, c->id, NULL, NULL) < 0) {
		ctx->err = -EIO;
		return -1;
	}
	ctx->added++;
	return 0;
}

/* retry / hold / release share everything but the request kind. */
static int
cli_case_request(int argc, char **argv, enum store_request_kind kind)
{
	static const int allowed_retry[] = { OPT_FAILED, OPT_WATCH, 0 };
	static const int allowed_hold[] = { OPT_ALL, OPT_WATCH, 0 };
	const char *usage = kind == STORE_REQ_RETRY ? "retry [-c FILE] CASE... | --failed"
			    : kind == STORE_REQ_HOLD ? "hold [-c FILE] CASE... | --all"
						     : "release [-c FILE] CASE... | --all";
	struct cli_common o;
	struct config *cfg;
	struct store *st = NULL;
	struct cli_selection sel = { 0 };
	struct cli_request_ctx ctx = { 0 };
	int first, rc = EX_OK;

	first = cli_parse(argc, argv, &o, kind == STORE_REQ_RETRY ? allowed_retry : allowed_hold, usage);
	if (first < 0)
		return first == -1 ? EX_OK : EX_USAGE;
	if ((first == argc) == !(o.all || o.failed)) {
		fprintf(stderr, "gcdrop %s: name cases or use %s (not both)\nusage: gcdrop %s\n", argv[0],
			kind == STORE_REQ_RETRY ? "--failed" : "--all", usage);
		return EX_USAGE;
	}
	cfg = cli_load_config(o.config_path, CONFIG_LOAD_NO_TOKEN);
	if (cfg == NULL)
		return EX_CONFIG;
	if (cli_open_store(cfg, 0, &st) < 0) {
		config_free(cfg);
		return 1;
	}
	sel.names = argv + first;
	sel.n = argc - first;
	sel.watch = o.watch;
	sel.seen = calloc((size_t)sel.n + 1, sizeof(bool));
	ctx.st = st;
	ctx.sel = &sel;
	ctx.kind = kind;
	ctx.only_failed = o.failed;
	if (o.all && o.watch == NULL && kind != STORE_REQ_RETRY) {
		/*
		 * hold --all / release --all: the setting for future cases (kept in
		 * the queue, so it outlives the daemon) and one request for the
		 * cases queued now, in one transaction.
		 */
		if (store_begin(st) < 0) {
			ctx.err = -EIO;
		} else if (store_hold_all_set(st, kind == STORE_REQ_HOLD) < 0 ||
			   store_request_add(st, kind, 0, NULL, NULL) < 0) {
			(void)store_rollback(st);
			ctx.err = -EIO;
		} else if (store_commit(st) < 0) {
			ctx.err = -EIO;
		} else {
			ctx.added = 1;
		}
	} else if (store_case_foreach(st, o.watch, cli_request_one, &ctx) < 0 && ctx.err == 0) {
		ctx.err = -EIO;
	}
	if (ctx.err < 0) {
		fprintf(stderr, "gcdrop %s: writing the request failed: %s\n", argv[0], store_errmsg(st));
		rc = 1;
	}
	for (int i = 0; i < sel.n; i++) {
		if (!sel.seen[i]) {
			fprintf(stderr, "gcdrop %s: no case '%s' in the queue\n", argv[0], sel.names[i]);
			rc = 1;
		}
	}
	if (rc == EX_OK)
		printf("%d request%s queued; the daemon carries %s out within a second\n", ctx.added,
		       ctx.added == 1 ? "" : "s", ctx.added == 1 ? "it" : "them");
	free(sel.seen);
	store_close(st);
	config_free(cfg);
	return rc;
}

int
cli_retry(int argc, char **argv)
{
	return cli_case_request(argc, argv, STORE_REQ_RETRY);
}

int
cli_hold(int argc, char **argv)
{
	return cli_case_request(argc, argv, STORE_REQ_HOLD);
}

int
cli_release(int argc, char **argv)
{
	return cli_case_request(argc, argv, STORE_REQ_RELEASE);
}

int
cli_enqueue(int argc, char **argv)
{
	static const int allowed[] = { OPT_WATCH, 0 };
	const char *usage = "enqueue [-c FILE] --watch NAME PATH";
	const struct config_watch *w;
	struct cli_common o;
	struct config *cfg;
	struct store *st = NULL;
	char *abs = NULL;
	int first, rc = EX_OK;

	first = cli_parse(argc, argv, &o, allowed, usage);
	if (first < 0)
		return first == -1 ? EX_OK : EX_USAGE;
	if (o.watch == NULL || argc - first != 1) {
		fprintf(stderr, "gcdrop enqueue: needs --watch NAME and one PATH\nusage: gcdrop %s\n", usage);
		return EX_USAGE;
	}
	cfg = cli_load_config(o.config_path, CONFIG_LOAD_NO_TOKEN);
	if (cfg == NULL)
		return EX_CONFIG;
	w = config_find_watch(cfg, o.watch);
	if (w == NULL) {
		fprintf(stderr, "gcdrop enqueue: no watch named '%s' in '%s'\n", o.watch, cfg->path);
		config_free(cfg);
		return EX_USAGE;
	}
	abs = realpath(argv[first], NULL);
	if (abs == NULL) {
		fprintf(stderr, "gcdrop enqueue: '%s': %s\n", argv[first], strerror(errno));
		config_free(cfg);
		return 1;
	}
	if (cli_open_store(cfg, 0, &st) < 0) {
		rc = 1;
		goto out;
	}
	if (store_request_add(st, STORE_REQ_ENQUEUE, 0, w->name, abs) < 0) {
		fprintf(stderr, "gcdrop enqueue: writing the request failed: %s\n", store_errmsg(st));
		rc = 1;
		goto out;
	}
	printf("'%s' queued for watch '%s'; the daemon picks it up within a second\n", abs, w->name);
out:
	store_close(st);
	free(abs);
	config_free(cfg);
	return rc;
}

/* One line of `gcdrop check` output; counts the problems. */
static void
cli_check_line(int *problems, bool ok, const char *fmt, ...) GC_PRINTF(3, 4);

static void
cli_check_line(int *problems, bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s ", ok ? "ok:     " : "PROBLEM:");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!ok)
		(*problems)++;
}

/* Can the directory be used by us: exists, is a directory, and is writable/readable. */
static void
cli_check_dir(int *problems, const char *what, const char *path, int mode)
{
	struct stat st;

	if (path == NULL)
		return;
	if (stat(path, &st) < 0) {
		cli_check_line(problems, false, "%s '%s': %s", what, path, strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_check_line(problems, false, "%s '%s' is not a directory", what, path);
		return;
	}
	if (access(path, mode) < 0) {
		cli_check_line(problems, false, "%s '%s' is not %s for this user: %s", what, path,
			       mode & W_OK ? "writable" : "readable", strerror(errno));
		return;
	}
	cli_check_line(problems, true, "%s '%s'", what, path);
}

/* Check that a socket exists on the server; 'why' says where the config uses it. */
static void
cli_check_socket(int *problems, struct api *api, const char *slug, const char *why)
{
	struct api_socket sock = { 0 };
	struct api_error err;

	if (api_socket_get(api, slug, &sock, &err) < 0) {
		cli_check_line(problems, false, "%s: socket '%s': %s", why, slug, err.message);
		return;
	}
	cli_check_line(problems, true, "%s: socket '%s' (%s, %s)", why, slug,
		       sock.kind != NULL ? sock.kind : "?",
		       sock.super_kind == API_SUPER_IMAGE  ? "Image"
		       : sock.super_kind == API_SUPER_FILE ? "File"
							   : "Value");
	api_socket_clear(&sock);
}

/* Does the algorithm have 'slug' among the inputs of one of its interfaces? */
static bool
cli_algorithm_has_input(const struct api_algorithm *a, const char *slug)
{
	for (size_t i = 0; i < a->n_interfaces; i++)
		for (size_t k = 0; k < a->interfaces[i].n_inputs; k++)
			if (strcmp(a->interfaces[i].inputs[k].slug, slug) == 0)
				return true;
	return false;
}

/*
 * The online part of `gcdrop check`: the server answers, the token is valid,
 * and every watch's destination and sockets exist and are visible to it.
 */
static void
cli_check_server(int *problems, const struct config *cfg, bool token_ok)
{
	struct http_opts ho = { 0 };
	struct http *http = NULL;
	struct api *api = NULL;
	struct api_error err;
	char *token = NULL, *msg = NULL;

	if (!token_ok) {
		cli_check_line(problems, false, "server checks skipped: no usable token");
		return;
	}
	if (http_global_init() < 0) {
		cli_check_line(problems, false, "cannot initialise libcurl");
		return;
	}
	if (config_token(cfg, &token, &msg) < 0) {
		cli_check_line(problems, false, "token: %s", msg != NULL ? msg : "not found");
		free(msg);
		goto out;
	}
	log_add_secret(token);
	ho.api_url = cfg->api_url;
	ho.authorization = token;
	ho.ca_file = cfg->ca_file;
	ho.connect_timeout_s = 15;
	ho.low_speed_time_s = 30;
	http = http_new(&ho);
	api = http != NULL ? api_new(http, cfg->api_url) : NULL;
	if (api == NULL) {
		cli_check_line(problems, false, "api_url '%s' cannot be used", cfg->api_url);
		goto out;
	}
	if (api_ping(api, &err) < 0) {
		cli_check_line(problems, false, "server '%s': %s%s", cfg->api_url, err.message,
			       err.cls == API_AUTH ? " (the token is not valid)" : "");
		goto out;
	}
	cli_check_line(problems, true, "server '%s' answers and accepts the token", cfg->api_url);
	for (size_t i = 0; i < cfg->n_watches; i++) {
		const struct config_watch *w = &cfg->watches[i];
		char why[256];

		snprintf(why, sizeof(why), "watch '%s'", w->name);
		if (w->dest == CONFIG_DEST_ALGORITHM) {
			struct api_algorithm a = { 0 };

			if (api_algorithm_get(api, w->slug, &a, &err) < 0) {
				cli_check_line(problems, false, "%s: algorithm '%s': %s", why, w->slug,
					       err.message);
				continue;
			}
			cli_check_line(problems, true, "%s: algorithm '%s' (%zu interface%s)", why, w->slug,
				       a.n_interfaces, a.n_interfaces == 1 ? "" : "s");
			if (w->socket != NULL && !cli_algorithm_has_input(&a, w->socket))
				cli_check_line(problems, false, "%s: socket '%s' is not an input of '%s'", why,
					       w->socket, w->slug);
			for (size_t k = 0; k < w->n_values; k++)
				if (!cli_algorithm_has_input(&a, w->values[k].socket))
					cli_check_line(problems, false,
						       "%s: value socket '%s' is not an input of '%s'", why,
						       w->values[k].socket, w->slug);
			api_algorithm_clear(&a);
		} else {
			struct api_collection c = { 0 };
			bool archive = w->dest == CONFIG_DEST_ARCHIVE;
			int r = archive ? api_archive_get(api, w->slug, &c, &err)
					: api_reader_study_get(api, w->slug, &c, &err);

			if (r < 0) {
				cli_check_line(problems, false, "%s: %s '%s': %s", why,
					       archive ? "archive" : "reader study", w->slug, err.message);
				continue;
			}
			cli_check_line(problems, true, "%s: %s '%s'", why, archive ? "archive" : "reader study",
				       w->slug);
			api_collection_clear(&c);
			cli_check_socket(problems, api, w->socket != NULL ? w->socket : CASEMAP_DEFAULT_SOCKET,
					 why);
		}
		for (size_t k = 0; k < w->n_values; k++)
			cli_check_socket(problems, api, w->values[k].socket, why);
	}
out:
	api_free(api);
	http_free(http);
	config_token_free(token);
	http_global_cleanup();
}

int
cli_check(int argc, char **argv)
{
	static const int allowed[] = { OPT_OFFLINE, 0 };
	const char *usage = "check [-c FILE] [--offline]";
	struct cli_common o;
	struct config *cfg;
	char *token = NULL, *msg = NULL;
	int first, problems = 0;
	bool token_ok = false;

	first = cli_parse(argc, argv, &o, allowed, usage);
	if (first < 0)
		return first == -1 ? EX_OK : EX_USAGE;
	if (first != argc) {
		fprintf(stderr, "gcdrop check: unexpected argument '%s'\nusage: gcdrop %s\n", argv[first], usage);
		return EX_USAGE;
	}
	cfg = cli_load_config(o.config_path, CONFIG_LOAD_NO_TOKEN);
	if (cfg == NULL)
		return EX_CONFIG;
	cli_check_line(&problems, true, "configuration '%s' (%zu watch%s)", cfg->path, cfg->n_watches,
		       cfg->n_watches == 1 ? "" : "es");
	if (config_token(cfg, &token, &msg) < 0) {
		cli_check_line(&problems, false, "token: %s", msg != NULL ? msg : "not found");
		free(msg);
	} else {
		cli_check_line(&problems, true, "token found (not shown)");
		token_ok = true;
	}
	config_token_free(token);
	cli_check_dir(&problems, "state directory", cfg->state_dir, W_OK | X_OK);
	for (size_t i = 0; i < cfg->n_watches; i++) {
		const struct config_watch *w = &cfg->watches[i];

		cli_check_dir(&problems, "watch folder", w->path, R_OK | W_OK | X_OK);
		cli_check_dir(&problems, "results folder", w->results_dir, W_OK | X_OK);
		cli_check_dir(&problems, "done folder", w->done_dir, W_OK | X_OK);
		cli_check_dir(&problems, "failed folder", w->failed_dir, W_OK | X_OK);
	}
	if (!o.offline)
		cli_check_server(&problems, cfg, token_ok);
	config_free(cfg);
	if (problems > 0) {
		printf("%d problem%s found\n", problems, problems == 1 ? "" : "s");
		return 1;
	}
	printf("configuration OK\n");
	return EX_OK;
}
