/*
 * progress.h: the one-line summary of the queue (progress_ prefix).
 *
 * The same line is the daemon's sd_notify STATUS= (what `systemctl status gcdrop`
 * shows) and the first line of `gcdrop status`, for example
 *
 *	2 uploading (1.3 GiB left, 88 MiB/s), 3 running, 1 failed
 *
 * Rules of the line (progress_format()):
 *   - one "N state" item per state with a non-zero count, in lifecycle order:
 *     settling, queued, uploading, importing, submitted, running, retry-wait,
 *     failed; items are separated by ", " and state names are the ones of
 *     `gcdrop status` and the journal (store_state_name());
 *   - succeeded and cancelled are never shown: they are history, not work, and
 *     their counts only grow; failed is shown because it wants the operator;
 *   - the uploading item carries "(X left, R/s)" when the bytes left and the
 *     rate are known (either part alone when only one is known, nothing when
 *     neither is); bytes left are shown even when the rate is 0 B/s, which is
 *     how a stalled upload looks;
 *   - held cases are counted in their state too; when there are any, the line
 *     ends with ", N held" (of the cases above);
 *   - when no item is shown the line is "idle".
 *
 * Sizes are binary (progress_bytes()): "1023 B", "1.5 KiB", "88 MiB", "1.3 GiB":
 * one decimal below 10 units, whole numbers from 10, a ".0" dropped ("1 GiB"),
 * rounded to nearest, and a value that rounds to 1024 of a unit moves to the
 * next unit ("1 MiB", never "1024 KiB").
 *
 * The transfer rate is a moving average over the last PROGRESS_WINDOW_MS of
 * samples of a cumulative byte counter, fed by the daemon (progress_sample()).
 * Everything here is pure (no clock reads, no logging), except progress_collect(),
 * which reads the counts and the bytes left from the queue.
 */
#ifndef GCDROP_PROGRESS_H
#define GCDROP_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "attrs.h"
#include "store.h"

/* The span the transfer rate averages over. */
#define PROGRESS_WINDOW_MS 10000
/* Samples kept; they are thinned so that they always span the window. */
#define PROGRESS_SAMPLES 34
/* A buffer of this size always holds a progress_bytes() result. */
#define PROGRESS_BYTES_MAX 16
/* A buffer of this size always holds a whole progress_format() line. */
#define PROGRESS_LINE_MAX 512

/*
 * Samples of a cumulative "bytes sent" counter, for the rate. Owned by one
 * thread (the daemon's main thread); not thread-safe. Use the API; the members
 * are visible so that it can live on the stack or inside another struct.
 */
struct progress {
	struct {
		int64_t t_ms;
		int64_t bytes;
	} s[PROGRESS_SAMPLES];	/* oldest first */
	size_t n;
};

/* Forget every sample. */
void progress_init(struct progress *p);

/*
 * Record that 'total_bytes_done' bytes have been sent in all, as of the monotonic
 * time now_ms (milliseconds, as daemon_now_ms()). Feed it regularly (every
 * second or on every loop turn: samples closer together than the window needs
 * are merged), including while nothing is sent, so that the rate falls to 0.
 * The counter only grows; a smaller value than the last one (a counter that was
 * reset), or a time that goes backwards, restarts the average.
 */
void progress_sample(struct progress *p, int64_t now_ms, int64_t total_bytes_done);

/*
 * The transfer rate in bytes per second at now_ms, averaged over about the last
 * PROGRESS_WINDOW_MS (from the newest sample at least that old, or the oldest
 * sample, up to now_ms: when samples stop arriving the rate decays). Returns -1
 * when it is not known: fewer than two samples up to now_ms, less than a second
 * covered, or no sample within the last window (sampling stopped).
 */
int64_t progress_rate(const struct progress *p, int64_t now_ms);

/*
 * Format 'bytes' as described above into buf (size bytes, NUL-terminated;
 * PROGRESS_BYTES_MAX is always enough). A negative value is formatted as 0.
 * Returns what snprintf() returns: the length of the whole text.
 */
int progress_bytes(int64_t bytes, char *buf, size_t size);

/* What the line is made of. */
struct progress_summary {
	int64_t counts[_STORE_STATE_MAX];	/* per state, as store_count_states() */
	int64_t held;				/* held cases, counted in counts[] too */
	int64_t bytes_left;			/* of the uploading cases; < 0: unknown */
	int64_t rate;				/* bytes/s (progress_rate()); < 0: unknown */
};

#define PROGRESS_SUMMARY_INIT { .held = 0, .bytes_left = -1, .rate = -1 }

/*
 * Format the line of 's' into buf (size bytes, NUL-terminated, truncated when
 * short; PROGRESS_LINE_MAX is always enough). Returns what snprintf() returns:
 * the length of the whole line. Negative counts are treated as 0.
 */
int progress_format(const struct progress_summary *s, char *buf, size_t size);

/*
 * Fill *ret_summary from the queue: the counts per state and the held count
 * (store_count_states()), and the bytes left, summed over the uploading cases as
 * bytes_total - bytes_done (store_bytes_left(): one aggregate query over the
 * uploading rows, never a walk of the queue). The settling count is the
 * caller's (the daemon knows its own; the CLI reads store_settling_count()).
 * The rate is left
 * unknown (-1): only the daemon has one. Returns 0, or the store's negative
 * errno (*ret_summary untouched).
 */
int progress_collect(struct store *store, struct progress_summary *ret_summary) GC_WUR;

#endif
