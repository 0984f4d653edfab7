/*
 * progress.c: counts, bytes left and a transfer rate, into one line of text.
 *
 * DESIGN
 * The line's rules are in progress.h; this file only implements them. The
 * formatting functions are pure and take everything as arguments, so the daemon
 * (STATUS=) and the CLI (`gcdrop status`) print the very same line for the same
 * queue, and the tests can check it from tables.
 *
 * The rate: samples of a cumulative byte counter in a small array, oldest first.
 * The daemon may sample much more often than the window needs (every loop
 * turn), so samples are thinned as they come: while the newest two are closer
 * together than PROGRESS_SPACING_MS, a new sample replaces the newest instead of
 * being appended. Every pair but the newest is then at least the spacing apart,
 * and the PROGRESS_SAMPLES slots always reach at least PROGRESS_WINDOW_MS back,
 * whatever the sampling cadence. The rate divides the bytes between a base
 * sample (the newest one at least a window old) and the newest sample by the
 * time from the base to "now", so it falls towards 0 when sampling stops instead
 * of freezing at its last value.
 *
 * Sizes are formatted with integer arithmetic only (quotient and remainder per
 * unit), so that no value near INT64_MAX overflows and no rounding depends on
 * floating point.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "progress.h"

/* Two slots of slack: the newest pair may be close, and the base may be dropped. */
#define PROGRESS_SPACING_MS (PROGRESS_WINDOW_MS / (PROGRESS_SAMPLES - 4))
/* A rate over less than this is noise; report it as unknown. */
#define PROGRESS_MIN_SPAN_MS 1000

/* ---- the rate ---- */

void
progress_init(struct progress *p)
{
	memset(p, 0, sizeof(*p));
}

void
progress_sample(struct progress *p, int64_t now_ms, int64_t total_bytes_done)
{
	size_t n = p->n;

	if (n > 0 && (now_ms < p->s[n - 1].t_ms || total_bytes_done < p->s[n - 1].bytes))
		n = 0;	/* a reset counter or a clock that went back: start over */
	if (n >= 2 && p->s[n - 1].t_ms - p->s[n - 2].t_ms < PROGRESS_SPACING_MS) {
		n--;	/* the newest sample was only an interim one: replace it */
	} else if (n == PROGRESS_SAMPLES) {
		memmove(&p->s[0], &p->s[1], (n - 1) * sizeof(p->s[0]));
		n--;
	}
	p->s[n].t_ms = now_ms;
	p->s[n].bytes = total_bytes_done;
	p->n = n + 1;
}

int64_t
progress_rate(const struct progress *p, int64_t now_ms)
{
	size_t base = 0, last = 0;
	bool any = false;
	int64_t span;

	for (size_t i = 0; i < p->n; i++) {
		if (p->s[i].t_ms > now_ms)
			break;	/* "now" before a sample: use what was known then */
		if (p->s[i].t_ms <= now_ms - PROGRESS_WINDOW_MS)
			base = i;
		last = i;
		any = true;
	}
	if (!any || last == base)
		return -1;
	span = now_ms - p->s[base].t_ms;
	if (span < PROGRESS_MIN_SPAN_MS)
		return -1;
	return (p->s[last].bytes - p->s[base].bytes) * 1000 / span;
}

/* ---- sizes ---- */

int
progress_bytes(int64_t bytes, char *buf, size_t size)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	uint64_t v = bytes < 0 ? 0 : (uint64_t)bytes;

	if (v < 1024)
		return snprintf(buf, size, "%" PRIu64 " B", v);
	for (size_t u = 0; u < GC_ARRAY_SIZE(units); u++) {
		uint64_t d = UINT64_C(1) << (10 * (u + 1));
		uint64_t q = v / d, r = v % d;
		/* r < d <= 2^60, so r * 10 fits in 64 bits. */
		uint64_t tenths = q * 10 + (r * 10 + d / 2) / d;
		uint64_t whole;

		if (tenths < 100) {
			if (tenths % 10 == 0)
				return snprintf(buf, size, "%" PRIu64 " %s", tenths / 10, units[u]);
			return snprintf(buf, size, "%" PRIu64 ".%" PRIu64 " %s", tenths / 10,
			    tenths % 10, units[u]);
		}
		whole = q + (r >= d - r ? 1 : 0);
		if (whole < 1024 || u + 1 == GC_ARRAY_SIZE(units))
			return snprintf(buf, size, "%" PRIu64 " %s", whole, units[u]);
	}
	return snprintf(buf, size, "?");	/* not reached: EiB takes every value */
}

/* ---- the line ---- */

/* The states the line shows, in lifecycle order (progress.h). */
static const enum store_state line_states[] = {
	STORE_SETTLING, STORE_QUEUED, STORE_UPLOADING, STORE_IMPORTING, STORE_SUBMITTED,
	STORE_RUNNING, STORE_RETRY_WAIT, STORE_FAILED,
};

/* snprintf at *len into buf; *len counts the whole text, as snprintf does. */
static void GC_PRINTF(4, 5)
line_add(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	if (*len < size)
		n = vsnprintf(buf + *len, size - *len, fmt, ap);
	else
		n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		*len += (size_t)n;
}

int
progress_format(const struct progress_summary *s, char *buf, size_t size)
{
	char left[PROGRESS_BYTES_MAX], rate[PROGRESS_BYTES_MAX];
	size_t len = 0;
	bool first = true;

	if (size > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < GC_ARRAY_SIZE(line_states); i++) {
		enum store_state st = line_states[i];

		if (s->counts[st] <= 0)
			continue;
		line_add(buf, size, &len, "%s%" PRId64 " %s", first ? "" : ", ", s->counts[st],
		    store_state_name(st));
		first = false;
		if (st != STORE_UPLOADING || (s->bytes_left < 0 && s->rate < 0))
			continue;
		progress_bytes(s->bytes_left, left, sizeof(left));
		progress_bytes(s->rate, rate, sizeof(rate));
		if (s->bytes_left >= 0 && s->rate >= 0)
			line_add(buf, size, &len, " (%s left, %s/s)", left, rate);
		else if (s->bytes_left >= 0)
			line_add(buf, size, &len, " (%s left)", left);
		else
			line_add(buf, size, &len, " (%s/s)", rate);
	}
	if (first)
		line_add(buf, size, &len, "idle");
	else if (s->held > 0)
		line_add(buf, size, &len, ", %" PRId64 " held", s->held);
	return len > INT32_MAX ? INT32_MAX : (int)len;
}

/* ---- from the queue ---- */

int
progress_collect(struct store *store, struct progress_summary *ret_summary)
{
	struct progress_summary s = PROGRESS_SUMMARY_INIT;
	int64_t left = 0, unknown = 0;
	int r;

	r = store_count_states(store, s.counts, &s.held);
	if (r < 0)
		return r;
	if (s.counts[STORE_UPLOADING] > 0) {
		/* One aggregate over the uploading rows, not a walk of the queue. */
		r = store_bytes_left(store, STORE_UPLOADING, &left, &unknown);
		if (r < 0)
			return r;
		/* A case without a total yet would make the sum too small: say nothing. */
		s.bytes_left = unknown > 0 ? -1 : left;
	}
	*ret_summary = s;
	return 0;
}
