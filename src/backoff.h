/*
 * backoff.h: the retry policy (backoff_ prefix).
 *
 * Pure functions, no logging, no clock reads of their own: every function that
 * needs the time takes it as an argument ("now"), and randomness comes from a
 * caller-owned generator with a seed, so tests can replay any schedule.
 *
 * Times are in milliseconds. Monotonic times (gates) and wall-clock times
 * (HTTP-dates in Retry-After) are never mixed: a Retry-After value is turned
 * into a delay, and the delay is added to a monotonic "now".
 */
#ifndef GCDROP_BACKOFF_H
#define GCDROP_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "attrs.h"

/* Retry-After values above this (one day) are capped to it. */
#define BACKOFF_RETRY_AFTER_MAX_MS (86400 * (int64_t)1000)

/* A small xorshift64* generator. Use the API; the state is visible for embedding. */
struct backoff_rng {
	uint64_t state;
};

/* Seed the generator. Any seed is valid (0 is mapped to a fixed non-zero one). */
void backoff_rng_seed(struct backoff_rng *rng, uint64_t seed);

/* The next 64 random bits. */
uint64_t backoff_rng_next(struct backoff_rng *rng);

/* A uniformly distributed integer in [0, max]. */
int64_t backoff_rng_upto(struct backoff_rng *rng, int64_t max);

/*
 * An exponential policy: the ceiling after `attempt` failures (0-based) is
 * min(cap_ms, base_ms * 2^attempt); the delay is drawn uniformly from
 * [0, ceiling] ("full jitter", so that many clients refused at once spread out).
 * max_attempts counts attempts in all (the first try included); 0 means
 * unlimited (connectivity errors).
 */
struct backoff_policy {
	int64_t base_ms;	/* > 0 */
	int64_t cap_ms;		/* >= base_ms */
	unsigned max_attempts;	/* 0: unlimited */
};

/* The ceiling of the delay after `attempt` failures; never above cap_ms, never negative. */
int64_t backoff_ceiling_ms(const struct backoff_policy *p, unsigned attempt);

/* A full-jitter delay after `attempt` failures: uniform in [0, backoff_ceiling_ms()]. */
int64_t backoff_delay_ms(const struct backoff_policy *p, unsigned attempt, struct backoff_rng *rng);

/*
 * The delay before the next try: retry_after_ms when the server sent a usable
 * Retry-After (>= 0, already capped by backoff_parse_retry_after()), otherwise
 * backoff_delay_ms(). Like gcapi, a Retry-After replaces the computed delay and
 * the attempt count still advances.
 */
int64_t backoff_next_ms(const struct backoff_policy *p, unsigned attempt,
    struct backoff_rng *rng, int64_t retry_after_ms);

/* Whether another try is allowed after `attempts` tries have been made. */
bool backoff_may_retry(const struct backoff_policy *p, unsigned attempts);

/*
 * Parse a Retry-After header value into a delay in milliseconds, relative to
 * the wall-clock time `now`:
 *   - delta-seconds: "120"; like gcapi a decimal "1.5" is tolerated;
 *   - an HTTP-date: IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", and the obsolete
 *     RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6 08:49:37 1994".
 * Surrounding blanks are ignored. A date in the past and a negative number give
 * 0; values above BACKOFF_RETRY_AFTER_MAX_MS are capped to it. Returns 0 and
 * sets *ret_ms, or -EINVAL for anything else (the caller keeps its own delay),
 * including NULL and "".
 */
int backoff_parse_retry_after(const char *value, time_t now, int64_t *ret_ms) GC_WUR;

/*
 * Parse an HTTP-date (the three forms above) into seconds since the epoch.
 * Returns 0 and sets *ret_time, or -EINVAL.
 */
int backoff_parse_http_date(const char *value, time_t now, time_t *ret_time) GC_WUR;

/*
 * A gate for one kind of call ("uploads", "creations", "polls"): a
 * "not before" monotonic time shared by every case, so that one refusal (429
 * with Retry-After, a platform limit) slows the whole daemon down instead of
 * each case learning it on its own. Owned and used by the main thread only;
 * not thread-safe. Use the API; the members are visible for embedding.
 */
struct backoff_gate {
	const char *name;	/* static string, for messages */
	int64_t not_before_ms;	/* monotonic; 0: open */
};

void backoff_gate_init(struct backoff_gate *g, const char *name);

/*
 * Close the gate until now_ms + delay_ms. A gate is only ever pushed forward:
 * an earlier deadline than the current one is ignored. A negative delay counts
 * as 0.
 */
void backoff_gate_push(struct backoff_gate *g, int64_t now_ms, int64_t delay_ms);

/* Whether calls of this kind may go out at now_ms. */
bool backoff_gate_ready(const struct backoff_gate *g, int64_t now_ms);

/* Milliseconds left until the gate opens at now_ms; 0 when it is open. */
int64_t backoff_gate_wait(const struct backoff_gate *g, int64_t now_ms);

/* The monotonic clock in milliseconds (for callers; the functions above never read it). */
int64_t backoff_now_ms(void);

#endif
