/*
 * backoff.c: exponential backoff with full jitter, Retry-After, gates.
 *
 * Everything here is a pure function of its arguments, so that the retry
 * schedule of the whole daemon can be tested with fixed seeds and fixed clocks.
 *
 * Full jitter (delay uniform in [0, min(cap, base * 2^attempt)]) rather than
 * "exponential plus a little jitter": after an outage every worker and every
 * case retries, and spreading them over the whole window is what keeps them from
 * arriving together again. The random generator is xorshift64*, seeded through
 * splitmix64 so that neighbouring seeds give unrelated sequences; it is not meant
 * for anything but spreading retries.
 *
 * Retry-After follows RFC 9110 section 10.2.3 (delta-seconds or an HTTP-date)
 * with gcapi's tolerance for decimal seconds. The HTTP-date parser is written out
 * by hand (no strptime, whose result depends on the locale) and converts the
 * civil date to days since the epoch with the usual era arithmetic, so it needs
 * neither timegm() nor the TZ variable.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backoff.h"

/* ---- random numbers ---- */

static uint64_t
splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

void
backoff_rng_seed(struct backoff_rng *rng, uint64_t seed)
{
	rng->state = splitmix64(seed);
	if (rng->state == 0)	/* xorshift never leaves 0 */
		rng->state = 0x853c49e6748fea9bULL;
}

uint64_t
backoff_rng_next(struct backoff_rng *rng)
{
	uint64_t x = rng->state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng->state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

int64_t
backoff_rng_upto(struct backoff_rng *rng, int64_t max)
{
	uint64_t range, threshold, r;

	if (max <= 0)
		return 0;
	range = (uint64_t)max + 1;
	/* Reject the lowest (2^64 mod range) values so that every result is equally likely. */
	threshold = -range % range;
	do
		r = backoff_rng_next(rng);
	while (r < threshold);
	return (int64_t)(r % range);
}

/* ---- delays ---- */

int64_t
backoff_ceiling_ms(const struct backoff_policy *p, unsigned attempt)
{
	int64_t base = p->base_ms > 0 ? p->base_ms : 1;
	int64_t cap = p->cap_ms > base ? p->cap_ms : base;

	/* base * 2^attempt > cap exactly when base > floor(cap / 2^attempt). */
	if (attempt >= 62 || base > (cap >> attempt))
		return cap;
	return base << attempt;
}

int64_t
backoff_delay_ms(const struct backoff_policy *p, unsigned attempt, struct backoff_rng *rng)
{
	return backoff_rng_upto(rng, backoff_ceiling_ms(p, attempt));
}

int64_t
backoff_next_ms(const struct backoff_policy *p, unsigned attempt, struct backoff_rng *rng,
    int64_t retry_after_ms)
{
	if (retry_after_ms >= 0)
		return retry_after_ms > BACKOFF_RETRY_AFTER_MAX_MS ? BACKOFF_RETRY_AFTER_MAX_MS
		    : retry_after_ms;
	return backoff_delay_ms(p, attempt, rng);
}

bool
backoff_may_retry(const struct backoff_policy *p, unsigned attempts)
{
	return p->max_attempts == 0 || attempts < p->max_attempts;
}

/* ---- HTTP-date ---- */

static const char *const wkday_short[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
static const char *const wkday_long[] = {
	"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"
};
static const char *const month_names[] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1-12). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	if (m <= 2)
		y--;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool
is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned
days_in_month(int64_t y, unsigned m)
{
	static const unsigned mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : mdays[m - 1];
}

/* Match one of names (case-insensitively, whole word) at *s; returns its index or -1. */
static int
match_word(const char **s, const char *const *names, size_t n)
{
	size_t i, len;

	for (i = 0; i < n; i++) {
		len = strlen(names[i]);
		if (strncasecmp(*s, names[i], len) == 0 &&
		    !((*s)[len] >= 'a' && (*s)[len] <= 'z') &&
		    !((*s)[len] >= 'A' && (*s)[len] <= 'Z')) {
			*s += len;
			return (int)i;
		}
	}
	return -1;
}

/* Exactly `width` decimal digits at *s. */
static bool
match_digits(const char **s, unsigned width, unsigned *ret)
{
	unsigned v = 0, i;

	for (i = 0; i < width; i++) {
		if ((*s)[i] < '0' || (*s)[i] > '9')
			return false;
		v = v * 10 + (unsigned)((*s)[i] - '0');
	}
	*s += width;
	*ret = v;
	return true;
}

static bool
match_char(const char **s, char c)
{
	if (**s != c)
		return false;
	(*s)++;
	return true;
}

/* "HH:MM:SS" */
static bool
match_time(const char **s, unsigned *h, unsigned *mi, unsigned *sec)
{
	return match_digits(s, 2, h) && match_char(s, ':') && match_digits(s, 2, mi) &&
	    match_char(s, ':') && match_digits(s, 2, sec) && *h < 24 && *mi < 60 && *sec <= 60;
}

static bool
match_gmt(const char **s)
{
	if (strncmp(*s, "GMT", 3) != 0)
		return false;
	*s += 3;
	return true;
}

static const char *
skip_blanks(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

int
backoff_parse_http_date(const char *value, time_t now, time_t *ret_time)
{
	const char *s;
	unsigned day, year, h, mi, sec, yy;
	int mon;
	int64_t y, t;
	struct tm tm_now;

	if (!value)
		return -EINVAL;
	s = skip_blanks(value);
	if (match_word(&s, wkday_short, GC_ARRAY_SIZE(wkday_short)) >= 0) {
		if (match_char(&s, ',')) {
			/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
			if (!match_char(&s, ' ') || !match_digits(&s, 2, &day) ||
			    !match_char(&s, ' '))
				return -EINVAL;
			mon = match_word(&s, month_names, GC_ARRAY_SIZE(month_names));
			if (mon < 0 || !match_char(&s, ' ') || !match_digits(&s, 4, &year) ||
			    !match_char(&s, ' ') || !match_time(&s, &h, &mi, &sec) ||
			    !match_char(&s, ' ') || !match_gmt(&s))
				return -EINVAL;
			y = year;
		} else {
			/* asctime: "Sun Nov  6 08:49:37 1994" */
			if (!match_char(&s, ' '))
				return -EINVAL;
			mon = match_word(&s, month_names, GC_ARRAY_SIZE(month_names));
			if (mon < 0 || !match_char(&s, ' '))
				return -EINVAL;
			/* The day is "SP 1DIGIT" or "2DIGIT"; a lone "6" is tolerated. */
			if (*s == ' ')
				s++;
			if (!match_digits(&s, 2, &day) && !match_digits(&s, 1, &day))
				return -EINVAL;
			if (!match_char(&s, ' ') || !match_time(&s, &h, &mi, &sec) ||
			    !match_char(&s, ' ') || !match_digits(&s, 4, &year))
				return -EINVAL;
			y = year;
		}
	} else if (match_word(&s, wkday_long, GC_ARRAY_SIZE(wkday_long)) >= 0) {
		/* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
		if (!match_char(&s, ',') || !match_char(&s, ' ') || !match_digits(&s, 2, &day) ||
		    !match_char(&s, '-'))
			return -EINVAL;
		mon = match_word(&s, month_names, GC_ARRAY_SIZE(month_names));
		if (mon < 0 || !match_char(&s, '-') || !match_digits(&s, 2, &yy) ||
		    !match_char(&s, ' ') || !match_time(&s, &h, &mi, &sec) ||
		    !match_char(&s, ' ') || !match_gmt(&s))
			return -EINVAL;
		/*
		 * RFC 9110 5.6.7: a two-digit year that looks more than 50 years in
		 * the future is the most recent past year with those digits.
		 */
		if (!gmtime_r(&now, &tm_now))
			return -EINVAL;
		y = (int64_t)(tm_now.tm_year + 1900) / 100 * 100 + yy;
		if (y > tm_now.tm_year + 1900 + 50)
			y -= 100;
	} else {
		return -EINVAL;
	}
	if (*skip_blanks(s) != '\0')
		return -EINVAL;
	if (day < 1 || day > days_in_month(y, (unsigned)mon + 1))
		return -EINVAL;
	t = days_from_civil(y, (unsigned)mon + 1, day) * 86400 + h * 3600 + mi * 60 + sec;
	*ret_time = (time_t)t;
	return 0;
}

/* ---- Retry-After ---- */

/*
 * Decimal seconds: [+-]digits[.digits] (".5" and "5." too), converted to
 * milliseconds, truncating below a millisecond and saturating above the cap.
 */
static int
parse_seconds(const char *s, int64_t *ret_ms)
{
	bool neg = false, any = false;
	int64_t ms = 0, frac_unit = 100;

	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	for (; *s >= '0' && *s <= '9'; s++) {
		any = true;
		if (ms <= BACKOFF_RETRY_AFTER_MAX_MS)
			ms = ms * 10 + (*s - '0') * 1000;
	}
	if (*s == '.') {
		for (s++; *s >= '0' && *s <= '9'; s++) {
			any = true;
			ms += (*s - '0') * frac_unit;
			frac_unit /= 10;
		}
	}
	if (!any || *skip_blanks(s) != '\0')
		return -EINVAL;
	if (neg)
		ms = 0;
	*ret_ms = ms > BACKOFF_RETRY_AFTER_MAX_MS ? BACKOFF_RETRY_AFTER_MAX_MS : ms;
	return 0;
}

int
backoff_parse_retry_after(const char *value, time_t now, int64_t *ret_ms)
{
	const char *s;
	time_t t;
	int64_t delta;
	int r;

	if (!value)
		return -EINVAL;
	s = skip_blanks(value);
	if (*s == '\0')
		return -EINVAL;
	if ((*s >= '0' && *s <= '9') || *s == '-' || *s == '+' || *s == '.')
		return parse_seconds(s, ret_ms);
	r = backoff_parse_http_date(s, now, &t);
	if (r < 0)
		return r;
	delta = (int64_t)t - (int64_t)now;
	if (delta < 0)
		delta = 0;
	if (delta > BACKOFF_RETRY_AFTER_MAX_MS / 1000)
		delta = BACKOFF_RETRY_AFTER_MAX_MS / 1000;
	*ret_ms = delta * 1000;
	return 0;
}

/* ---- gates ---- */

void
backoff_gate_init(struct backoff_gate *g, const char *name)
{
	g->name = name;
	g->not_before_ms = 0;
}

void
backoff_gate_push(struct backoff_gate *g, int64_t now_ms, int64_t delay_ms)
{
	int64_t until;

	if (delay_ms < 0)
		delay_ms = 0;
	until = now_ms + delay_ms;
	if (until > g->not_before_ms)
		g->not_before_ms = until;
}

bool
backoff_gate_ready(const struct backoff_gate *g, int64_t now_ms)
{
	return now_ms >= g->not_before_ms;
}

int64_t
backoff_gate_wait(const struct backoff_gate *g, int64_t now_ms)
{
	return now_ms >= g->not_before_ms ? 0 : g->not_before_ms - now_ms;
}

int64_t
backoff_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
