/*
 * fuzz_backoff.c: libFuzzer target for Retry-After parsing (src/backoff.c).
 *
 * The input is a Retry-After header value (any bytes; it is cut at its first
 * NUL, as a header value handed over by the http layer would be). It is parsed
 * with backoff_parse_retry_after() and backoff_parse_http_date() against a few
 * fixed "now"s (the epoch, 1994, today, 2100, the end of year 9999), and the
 * result drives the rest of the policy code (backoff_next_ms(), a gate).
 *
 * Invariants checked besides memory safety and undefined behaviour:
 *   - a parsed delay is within [0, BACKOFF_RETRY_AFTER_MAX_MS];
 *   - an HTTP-date that parses, printed again as an IMF-fixdate, parses to the
 *     same time (a round trip through the canonical form), and as a
 *     Retry-After it gives the difference to "now", clamped to [0, one day];
 *   - the ceiling of a policy is within [base, cap], a delay within [0, ceiling],
 *     a gate pushed by a delay opens no later than that delay.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "fuzz.h"

static const time_t nows[] = {
	0, 784111777, 1700000000, 4102444800, 253402300799,
};

/* An IMF-fixdate for t, or "" when its year has no four-digit form. */
static void
imf_fixdate(time_t t, char *out, size_t cap)
{
	static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const mo[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	out[0] = '\0';
	if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
		return;
	snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday], tm.tm_mday,
		 mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* A few bits of the input, to vary the policy without a binary input format. */
static uint64_t
fnv1a(const uint8_t *data, size_t size)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 0x100000001b3ULL;
	return h;
}

static void
check_policy(uint64_t h, int64_t retry_after_ms)
{
	struct backoff_policy p;
	struct backoff_rng rng;
	struct backoff_gate g;
	unsigned attempt = (unsigned)(h & 0x7f);
	int64_t ceil, d, now_ms = (int64_t)((h >> 8) & 0xffffffffff);

	p.base_ms = (int64_t)((h >> 16) & 0xfffff) + 1;
	p.cap_ms = p.base_ms + (int64_t)((h >> 36) & 0xfffffff);
	p.max_attempts = (unsigned)((h >> 60) & 0xf);
	backoff_rng_seed(&rng, h);

	ceil = backoff_ceiling_ms(&p, attempt);
	FUZZ_ASSERT(ceil >= p.base_ms && ceil <= p.cap_ms);
	d = backoff_next_ms(&p, attempt, &rng, retry_after_ms);
	if (retry_after_ms >= 0)
		FUZZ_ASSERT(d == retry_after_ms);
	else
		FUZZ_ASSERT(d >= 0 && d <= ceil);
	(void)backoff_may_retry(&p, attempt);

	backoff_gate_init(&g, "fuzz");
	FUZZ_ASSERT(backoff_gate_ready(&g, now_ms));
	backoff_gate_push(&g, now_ms, d);
	FUZZ_ASSERT(backoff_gate_wait(&g, now_ms) == d);
	FUZZ_ASSERT(backoff_gate_ready(&g, now_ms + d));
	/* A shorter push never brings the gate forward. */
	backoff_gate_push(&g, now_ms, d / 2);
	FUZZ_ASSERT(backoff_gate_wait(&g, now_ms) == d);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *value;
	uint64_t h = fnv1a(data, size);

	if (size > 4096)
		return 0;
	value = fuzz_cstring(data, size);
	if (!value)
		return 0;
	for (size_t i = 0; i < sizeof(nows) / sizeof(nows[0]); i++) {
		time_t now = nows[i], t, t2;
		int64_t ms = -1;
		int r;

		r = backoff_parse_retry_after(value, now, &ms);
		FUZZ_ASSERT(r == 0 || r == -EINVAL);
		if (r == 0)
			FUZZ_ASSERT(ms >= 0 && ms <= BACKOFF_RETRY_AFTER_MAX_MS);
		else
			FUZZ_ASSERT(ms == -1);
		check_policy(h ^ (uint64_t)i, r == 0 ? ms : -1);

		r = backoff_parse_http_date(value, now, &t);
		FUZZ_ASSERT(r == 0 || r == -EINVAL);
		if (r == 0) {
			char canon[64];
			int64_t ms2 = -1, want;

			imf_fixdate(t, canon, sizeof(canon));
			if (canon[0]) {
				FUZZ_ASSERT(backoff_parse_http_date(canon, now, &t2) == 0);
				FUZZ_ASSERT(t2 == t);
				FUZZ_ASSERT(backoff_parse_retry_after(canon, now, &ms2) == 0);
				want = (int64_t)t - (int64_t)now;
				want = want < 0 ? 0 : want > 86400 ? 86400 : want;
				FUZZ_ASSERT(ms2 == want * 1000);
				/* The input itself is the same date. */
				FUZZ_ASSERT(backoff_parse_retry_after(value, now, &ms2) == 0);
				FUZZ_ASSERT(ms2 == want * 1000);
			}
		}
	}
	free(value);
	return 0;
}
