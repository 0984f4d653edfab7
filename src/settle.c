/*
 * settle.c: when a case is completely written. See settle.h for the rules.
 *
 * DESIGN
 * The set keeps two indexes over the same cases: a chained hash table on
 * (watch id, name) for the daemon's lookups when an event names a case, and a
 * binary min-heap on each case's 'due' time, so that the earliest deadline (the
 * one the daemon arms its timerfd to) is found in O(1) and updated in O(log n)
 * when an event moves it. Every function that can move a case's due time ends in
 * settle_reschedule(), which recomputes 'due' and restores the heap order.
 *
 * Nothing here reads a clock or the filesystem: time is always a parameter.
 */

#include <stdlib.h>
#include <string.h>

#include "settle.h"

struct settle {
	struct settle_case **buckets;
	size_t n_buckets;
	struct settle_case **heap;
	size_t n;
	size_t cap;
};

static uint64_t
settle_hash(unsigned watch, const char *name)
{
	/* FNV-1a over the watch id and the name bytes. */
	uint64_t h = 1469598103934665603ULL;

	for (unsigned i = 0; i < sizeof(watch); i++) {
		h ^= (watch >> (8 * i)) & 0xff;
		h *= 1099511628211ULL;
	}
	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	return h;
}

struct settle *
settle_new(void)
{
	struct settle *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->n_buckets = 64;
	s->buckets = calloc(s->n_buckets, sizeof(*s->buckets));
	if (s->buckets == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

static void
settle_case_free(struct settle_case *c)
{
	if (c == NULL)
		return;
	free(c->name);
	free(c);
}

struct settle *
settle_free(struct settle *s)
{
	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < s->n; i++)
		settle_case_free(s->heap[i]);
	free(s->heap);
	free(s->buckets);
	free(s);
	return NULL;
}

/* ---- heap ---- */

static void
heap_swap(struct settle *s, size_t a, size_t b)
{
	struct settle_case *t = s->heap[a];

	s->heap[a] = s->heap[b];
	s->heap[b] = t;
	s->heap[a]->heap_idx = a;
	s->heap[b]->heap_idx = b;
}

static void
heap_fix(struct settle *s, size_t i)
{
	while (i > 0 && s->heap[(i - 1) / 2]->due > s->heap[i]->due) {
		heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < s->n && s->heap[l]->due < s->heap[m]->due)
			m = l;
		if (r < s->n && s->heap[r]->due < s->heap[m]->due)
			m = r;
		if (m == i)
			break;
		heap_swap(s, i, m);
		i = m;
	}
}

static int64_t
deadline_of(const struct settle_case *c)
{
	if (c->p.max_settle_ms > SETTLE_NEVER - c->started)
		return SETTLE_NEVER;
	return c->started + c->p.max_settle_ms;
}

static void
settle_reschedule(struct settle *s, struct settle_case *c)
{
	int64_t max = deadline_of(c);

	c->due = c->walk_due < max ? c->walk_due : max;
	heap_fix(s, c->heap_idx);
}

/* ---- hash ---- */

static int
hash_grow(struct settle *s)
{
	size_t nb = s->n_buckets * 2;
	struct settle_case **b = calloc(nb, sizeof(*b));

	if (b == NULL)
		return -1;
	for (size_t i = 0; i < s->n_buckets; i++) {
		struct settle_case *c = s->buckets[i], *next;

		for (; c != NULL; c = next) {
			size_t k = settle_hash(c->watch, c->name) & (nb - 1);

			next = c->hnext;
			c->hnext = b[k];
			b[k] = c;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->n_buckets = nb;
	return 0;
}

struct settle_case *
settle_find(const struct settle *s, unsigned watch, const char *name)
{
	size_t k = settle_hash(watch, name) & (s->n_buckets - 1);

	for (struct settle_case *c = s->buckets[k]; c != NULL; c = c->hnext)
		if (c->watch == watch && strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

struct settle_case *
settle_add(struct settle *s, unsigned watch, const char *name, const struct settle_params *p,
	   int64_t now, void *userdata)
{
	struct settle_case *c;
	size_t k;

	if (settle_find(s, watch, name) != NULL)
		return NULL;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct settle_case **h = realloc(s->heap, cap * sizeof(*h));

		if (h == NULL)
			return NULL;
		s->heap = h;
		s->cap = cap;
	}
	if (s->n + 1 > s->n_buckets && hash_grow(s) < 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->name = strdup(name);
	if (c->name == NULL) {
		free(c);
		return NULL;
	}
	c->watch = watch;
	c->userdata = userdata;
	c->p = *p;
	c->started = now;
	c->last_change = now;
	c->last_walk = now;
	c->walk_due = now;
	k = settle_hash(watch, name) & (s->n_buckets - 1);
	c->hnext = s->buckets[k];
	s->buckets[k] = c;
	c->heap_idx = s->n;
	s->heap[s->n++] = c;
	settle_reschedule(s, c);
	return c;
}

void
settle_remove(struct settle *s, struct settle_case *c)
{
	size_t k, i;

	if (c == NULL)
		return;
	k = settle_hash(c->watch, c->name) & (s->n_buckets - 1);
	for (struct settle_case **pp = &s->buckets[k]; *pp != NULL; pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	}
	i = c->heap_idx;
	s->n--;
	if (i != s->n) {
		s->heap[i] = s->heap[s->n];
		s->heap[i]->heap_idx = i;
		heap_fix(s, i);
	}
	settle_case_free(c);
}

size_t
settle_count(const struct settle *s)
{
	return s->n;
}

void
settle_foreach(struct settle *s, unsigned watch, void (*cb)(struct settle_case *c, void *ud),
               void *ud)
{
	/*
	 * Walk the heap array from the end: removing the case at index i moves the
	 * last case into slot i, and every case behind i has been visited already,
	 * except when i was the last one.
	 */
	for (size_t i = s->n; i > 0; i--) {
		struct settle_case *c;

		if (i - 1 >= s->n)
			continue;
		c = s->heap[i - 1];
		if (watch == SETTLE_ALL_WATCHES || c->watch == watch)
			cb(c, ud);
	}
}

int64_t
settle_next_due(const struct settle *s)
{
	return s->n > 0 ? s->heap[0]->due : SETTLE_NEVER;
}

struct settle_case *
settle_pop_due(const struct settle *s, int64_t now)
{
	return s->n > 0 && s->heap[0]->due <= now ? s->heap[0] : NULL;
}

void
settle_retry(struct settle *s, struct settle_case *c, int64_t when)
{
	c->walk_due = when;
	settle_reschedule(s, c);
}

void
settle_set_params(struct settle *s, struct settle_case *c, const struct settle_params *p)
{
	c->p = *p;
	settle_reschedule(s, c);
}

/* ---- the state machine ---- */

static int64_t
add_ms(int64_t t, int64_t ms)
{
	return ms > SETTLE_NEVER - t ? SETTLE_NEVER : t + ms;
}

static int64_t
max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

static int64_t
confirm_ms(const struct settle_case *c)
{
	int64_t ms = c->p.settle_ms < SETTLE_CONFIRM_MS ? c->p.settle_ms : SETTLE_CONFIRM_MS;

	return ms < SETTLE_MIN_RECHECK_MS ? SETTLE_MIN_RECHECK_MS : ms;
}

void
settle_activity(struct settle *s, struct settle_case *c, int64_t now)
{
	c->last_change = max64(c->last_change, now);
	if (c->p.marker) {
		/* Only a failed walk waits for quiet in marker mode. */
		if (c->error_pending)
			c->walk_due = add_ms(c->last_change, c->p.settle_ms);
	} else if (c->have_walk || c->error_pending || c->walk_due > now) {
		/*
		 * The first walk (the baseline the final walk is compared with) stays
		 * due at once; every later walk waits for a quiet period.
		 */
		c->walk_due = add_ms(c->last_change, c->p.settle_ms);
	}
	settle_reschedule(s, c);
}

void
settle_marker(struct settle *s, struct settle_case *c, int64_t now)
{
	if (!c->p.marker) {
		settle_activity(s, c, now);
		return;
	}
	c->walk_due = now;
	settle_reschedule(s, c);
}

static enum settle_reason
timeout_reason(const struct settle_case *c)
{
	if (c->error_pending)
		return SETTLE_REASON_WALK_ERROR;
	if (c->empty)
		return SETTLE_REASON_EMPTY;
	if (c->p.marker)
		return SETTLE_REASON_NO_MARKER;
	return SETTLE_REASON_CHANGING;
}

enum settle_verdict
settle_check(struct settle *s, struct settle_case *c, int64_t now)
{
	(void)s;
	if (c->walk_due <= now)
		return SETTLE_WALK;
	if (now >= deadline_of(c)) {
		c->reason = timeout_reason(c);
		return SETTLE_FAIL;
	}
	return SETTLE_WAIT;
}

/* While waiting for files or a marker, only polled cases plan a walk. */
static int64_t
idle_walk_due(const struct settle_case *c, int64_t now)
{
	return c->p.poll_ms > 0 ? add_ms(now, c->p.poll_ms) : SETTLE_NEVER;
}

enum settle_verdict
settle_walked(struct settle *s, struct settle_case *c, int64_t now, const struct settle_walk *w)
{
	bool events_since_walk = c->last_change > c->last_walk;

	if (w->error != 0) {
		c->error_pending = true;
		c->have_walk = false;
		c->empty = false;
		if (now - c->last_change >= c->p.settle_ms) {
			c->reason = SETTLE_REASON_WALK_ERROR;
			return SETTLE_FAIL;
		}
		c->walk_due = add_ms(c->last_change, c->p.settle_ms);
		goto wait;
	}
	c->error_pending = false;
	c->empty = w->n_files == 0;
	if (c->p.marker) {
		c->have_walk = true;
		c->last_walk = now;
		if (w->marker && w->changed) {
			c->walk_due = add_ms(now, confirm_ms(c));
			goto wait;
		}
		if (w->marker && w->n_files == 0) {
			c->reason = SETTLE_REASON_MARKER_EMPTY;
			return SETTLE_FAIL;
		}
		if (w->marker)
			return SETTLE_READY;
		c->walk_due = idle_walk_due(c, now);
		goto wait;
	}
	if (w->n_files == 0) {
		/* An empty folder is not a case yet: wait for its files. */
		c->have_walk = true;
		c->last_walk = now;
		c->walk_due = idle_walk_due(c, now);
		goto wait;
	}
	if (w->changed || (!w->same && c->have_walk && !events_since_walk)) {
		/* A change no event announced: the quiet period starts again. */
		c->last_change = now;
		c->walk_due = add_ms(now, max64(c->p.settle_ms, SETTLE_MIN_RECHECK_MS));
	} else if (!w->same) {
		/* The events explain the difference: confirm with one more walk. */
		c->walk_due =
		    max64(add_ms(c->last_change, c->p.settle_ms), add_ms(now, confirm_ms(c)));
	} else if (now - c->last_change >= c->p.settle_ms) {
		c->have_walk = true;
		c->last_walk = now;
		return SETTLE_READY;
	} else {
		c->walk_due = add_ms(c->last_change, c->p.settle_ms);
	}
	c->have_walk = true;
	c->last_walk = now;
wait:
	if (now >= deadline_of(c)) {
		c->reason = timeout_reason(c);
		return SETTLE_FAIL;
	}
	settle_reschedule(s, c);
	return SETTLE_WAIT;
}

const char *
settle_reason_text(enum settle_reason reason)
{
	switch (reason) {
	case SETTLE_REASON_NONE:
		return "settling";
	case SETTLE_REASON_CHANGING:
		return "still changing";
	case SETTLE_REASON_EMPTY:
		return "still empty";
	case SETTLE_REASON_NO_MARKER:
		return "no ready marker";
	case SETTLE_REASON_WALK_ERROR:
		return "cannot be read";
	case SETTLE_REASON_MARKER_EMPTY:
		return "ready marker present but no files";
	}
	return "?";
}
