/*
 * check_pool.c: tests of the worker pool (src/pool.c).
 *
 * core: every item completes exactly once under load (100,000 items, 4 workers,
 * checksum), contexts are made once per worker and used only on their thread,
 * the eventfd wakes an epoll loop, done callbacks may resubmit.
 * limits: the bounded queue refuses when full, argument checks.
 * errors: a failing ctx_new fails pool_new and frees the other contexts.
 * recovery: clean shutdown with items queued, cancelled or run; signals are
 * blocked in workers; the watchdog's "oldest busy" time and pool_touch.
 *
 * Every test uses a checked fixture implicitly (threads are only started in
 * the test bodies, which run in Check's forked child).
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "attrs.h"
#include "pool.h"

/* ---- helpers ---- */

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Poll cond(arg) every millisecond until it holds or timeout_ms passes. */
static bool
wait_until(bool (*cond)(void *), void *arg, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	struct timespec ms = { 0, 1000000 };

	while (!cond(arg)) {
		if (mono_ms() > deadline)
			return false;
		nanosleep(&ms, NULL);
	}
	return true;
}

/* Wait on the pool's eventfd with epoll, then drain; returns callbacks run. */
static size_t
wait_and_drain(struct pool *p, int ep, int timeout_ms)
{
	struct epoll_event ev;
	int n;

	n = epoll_wait(ep, &ev, 1, timeout_ms);
	ck_assert_int_ge(n, 0);
	return pool_drain(p);
}

static int
epoll_for(struct pool *p)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	ck_assert_int_ge(ep, 0);
	ev.data.fd = pool_eventfd(p);
	ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, pool_eventfd(p), &ev), 0);
	return ep;
}

/* ---- per-worker contexts ---- */

struct ctx {
	pthread_t owner;
	unsigned index;
	uint64_t items;
};

static atomic_uint ctx_made, ctx_freed, ctx_fail_at;

static void *
ctx_new(void *ud)
{
	struct ctx *c;
	unsigned n = atomic_fetch_add(&ctx_made, 1) + 1;

	ck_assert_ptr_eq(ud, &ctx_made);
	if (n == atomic_load(&ctx_fail_at))
		return NULL;
	c = calloc(1, sizeof(*c));
	c->owner = pthread_self();
	c->index = n;
	return c;
}

static void
ctx_free(void *p)
{
	struct ctx *c = p;

	/* Freed on the thread that made it. */
	ck_assert(pthread_equal(c->owner, pthread_self()));
	atomic_fetch_add(&ctx_freed, 1);
	free(c);
}

static void
reset_ctx_counters(void)
{
	atomic_store(&ctx_made, 0);
	atomic_store(&ctx_freed, 0);
	atomic_store(&ctx_fail_at, 0);
}

/* ---- core: load ---- */

#define LOAD_N 100000

struct load_item {
	struct pool_item it;
	uint32_t id;
	uint64_t result;
	bool ctx_ok;
};

static uint8_t load_seen[LOAD_N];
static uint64_t load_sum;
static size_t load_done;

static uint64_t
mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static void
load_work(void *ctx, struct pool_item *it)
{
	struct load_item *li = (struct load_item *)it;
	struct ctx *c = ctx;

	li->result = mix(li->id);
	li->ctx_ok = pthread_equal(c->owner, pthread_self());
	c->items++;
}

static void
load_done_cb(struct pool_item *it, bool cancelled)
{
	struct load_item *li = (struct load_item *)it;

	ck_assert(!cancelled);
	ck_assert(li->ctx_ok);
	load_seen[li->id]++;
	load_sum += li->result;
	load_done++;
}

START_TEST(test_load_exactly_once)
{
	struct load_item *items = calloc(LOAD_N, sizeof(*items));
	struct pool *p;
	uint64_t want = 0;
	size_t next = 0, i, refused = 0;
	int ep, r;

	/* 100,000 items over 4 workers and a queue of 64: each completes once. */
	reset_ctx_counters();
	memset(load_seen, 0, sizeof(load_seen));
	load_sum = 0;
	load_done = 0;
	p = pool_new(4, 64, ctx_new, ctx_free, &ctx_made);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(atomic_load(&ctx_made), 4);
	ep = epoll_for(p);
	while (load_done < LOAD_N) {
		while (next < LOAD_N) {
			items[next].id = (uint32_t)next;
			items[next].it.work = load_work;
			items[next].it.done = load_done_cb;
			r = pool_submit(p, &items[next].it);
			if (r == -EAGAIN) {
				refused++;
				break;
			}
			ck_assert_int_eq(r, 0);
			next++;
		}
		ck_assert_uint_le(pool_inflight(p), LOAD_N);
		wait_and_drain(p, ep, 5000);
	}
	ck_assert_uint_eq(load_done, LOAD_N);
	ck_assert_uint_eq(pool_inflight(p), 0);
	for (i = 0; i < LOAD_N; i++) {
		ck_assert_uint_eq(load_seen[i], 1);
		want += mix(i);
	}
	ck_assert(load_sum == want);
	/* The queue of 64 did fill up: back-pressure was exercised. */
	ck_assert_uint_gt(refused, 0);
	close(ep);
	p = pool_free(p);
	ck_assert_ptr_null(p);
	ck_assert_uint_eq(atomic_load(&ctx_freed), 4);
	free(items);
}
END_TEST

/* ---- core: contexts ---- */

static atomic_uint ctx_seen_mask;

static void
ctx_work(void *ctx, struct pool_item *it)
{
	struct ctx *c = ctx;

	ck_assert(pthread_equal(c->owner, pthread_self()));
	atomic_fetch_or(&ctx_seen_mask, 1u << c->index);
	(void)it;
}

static size_t ctx_dones;

static void
count_done(struct pool_item *it, bool cancelled)
{
	(void)it;
	(void)cancelled;
	ctx_dones++;
}

START_TEST(test_ctx_once_per_worker)
{
	struct pool_item items[200];
	struct pool *p;
	unsigned i;
	int ep;

	/* Three workers make three contexts, whatever the number of items. */
	reset_ctx_counters();
	atomic_store(&ctx_seen_mask, 0);
	ctx_dones = 0;
	p = pool_new(3, 256, ctx_new, ctx_free, &ctx_made);
	ck_assert_ptr_nonnull(p);
	ep = epoll_for(p);
	for (i = 0; i < GC_ARRAY_SIZE(items); i++) {
		memset(&items[i], 0, sizeof(items[i]));
		items[i].work = ctx_work;
		items[i].done = count_done;
		ck_assert_int_eq(pool_submit(p, &items[i]), 0);
	}
	while (ctx_dones < 200)
		wait_and_drain(p, ep, 5000);
	ck_assert_uint_eq(atomic_load(&ctx_made), 3);
	ck_assert_uint_eq(atomic_load(&ctx_freed), 0);
	/* Only contexts 1..3 were ever used. */
	ck_assert_uint_eq(atomic_load(&ctx_seen_mask) & ~0xeu, 0);
	close(ep);
	pool_free(p);
	ck_assert_uint_eq(atomic_load(&ctx_freed), 3);

	/* A pool without contexts passes NULL. */
	p = pool_new(1, 1, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(p);
	pool_free(p);
}
END_TEST

/* ---- core: eventfd ---- */

static void
nop_work(void *ctx, struct pool_item *it)
{
	(void)ctx;
	(void)it;
}

START_TEST(test_eventfd_wakes_epoll)
{
	struct epoll_event ev;
	struct pool_item it = { .work = nop_work, .done = count_done };
	struct pool *p;
	int ep;

	/* Idle: the eventfd is not readable. */
	ctx_dones = 0;
	p = pool_new(2, 4, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(p);
	ep = epoll_for(p);
	ck_assert_int_eq(epoll_wait(ep, &ev, 1, 0), 0);
	ck_assert_uint_eq(pool_drain(p), 0);

	/* One completion makes it readable, a drain runs it and clears it. */
	ck_assert_int_eq(pool_submit(p, &it), 0);
	ck_assert_int_eq(epoll_wait(ep, &ev, 1, 5000), 1);
	ck_assert(ev.events & EPOLLIN);
	ck_assert_int_eq(ev.data.fd, pool_eventfd(p));
	ck_assert_uint_eq(pool_drain(p), 1);
	ck_assert_uint_eq(ctx_dones, 1);
	ck_assert_uint_eq(pool_inflight(p), 0);
	ck_assert_int_eq(epoll_wait(ep, &ev, 1, 0), 0);
	close(ep);
	pool_free(p);
}
END_TEST

/* ---- core: done may resubmit ---- */

static struct pool *chain_pool;
static unsigned chain_runs;

static void
chain_done(struct pool_item *it, bool cancelled)
{
	ck_assert(!cancelled);
	if (++chain_runs < 1000)
		ck_assert_int_eq(pool_submit(chain_pool, it), 0);
}

START_TEST(test_done_resubmits)
{
	struct pool_item it = { .work = nop_work, .done = chain_done };
	int ep;

	/* One item, resubmitted from its own done callback 999 times. */
	chain_runs = 0;
	chain_pool = pool_new(2, 1, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(chain_pool);
	ep = epoll_for(chain_pool);
	ck_assert_int_eq(pool_submit(chain_pool, &it), 0);
	while (chain_runs < 1000)
		wait_and_drain(chain_pool, ep, 5000);
	ck_assert_uint_eq(pool_inflight(chain_pool), 0);
	close(ep);
	chain_pool = pool_free(chain_pool);
}
END_TEST

/* ---- blocking items, for the limits and shutdown tests ---- */

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
};

static struct gate gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false };
static atomic_uint started, ran;

static void
gate_set(bool open)
{
	pthread_mutex_lock(&gate.lock);
	gate.open = open;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
}

static void
blocking_work(void *ctx, struct pool_item *it)
{
	(void)ctx;
	(void)it;
	atomic_fetch_add(&started, 1);
	pthread_mutex_lock(&gate.lock);
	while (!gate.open)
		pthread_cond_wait(&gate.cond, &gate.lock);
	pthread_mutex_unlock(&gate.lock);
	atomic_fetch_add(&ran, 1);
}

struct rec_item {
	struct pool_item it;
	int done_count;
	bool cancelled;
};

static void
rec_done(struct pool_item *it, bool cancelled)
{
	struct rec_item *r = (struct rec_item *)it;

	r->done_count++;
	r->cancelled = cancelled;
}

static bool
started_at_least_one(void *arg)
{
	(void)arg;
	return atomic_load(&started) >= 1;
}

static void
rec_init(struct rec_item *r, size_t n)
{
	size_t i;

	memset(r, 0, n * sizeof(*r));
	for (i = 0; i < n; i++) {
		r[i].it.work = blocking_work;
		r[i].it.done = rec_done;
	}
	atomic_store(&started, 0);
	atomic_store(&ran, 0);
	gate_set(false);
}

START_TEST(test_queue_full)
{
	struct rec_item r[6];
	struct pool *p;
	int ep;
	size_t i, done = 0;

	/* One worker blocked on item 0; a queue of 3 takes items 1-3 and refuses 4. */
	rec_init(r, 6);
	p = pool_new(1, 3, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(pool_submit(p, &r[0].it), 0);
	ck_assert(wait_until(started_at_least_one, NULL, 5000));
	for (i = 1; i <= 3; i++)
		ck_assert_int_eq(pool_submit(p, &r[i].it), 0);
	ck_assert_int_eq(pool_submit(p, &r[4].it), -EAGAIN);
	ck_assert_int_eq(pool_submit(p, &r[4].it), -EAGAIN);
	ck_assert_uint_eq(pool_inflight(p), 4);
	/* A refused item was not queued: it never completes unless resubmitted. */
	gate_set(true);
	ep = epoll_for(p);
	while (done < 4)
		done += wait_and_drain(p, ep, 5000);
	ck_assert_int_eq(r[4].done_count, 0);
	/* Once there is room, it is accepted again. */
	ck_assert_int_eq(pool_submit(p, &r[4].it), 0);
	while (done < 5)
		done += wait_and_drain(p, ep, 5000);
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(r[i].done_count, 1);
		ck_assert(!r[i].cancelled);
	}
	ck_assert_uint_eq(atomic_load(&ran), 5);
	close(ep);
	pool_free(p);
}
END_TEST

START_TEST(test_bad_arguments)
{
	struct pool_item no_work = { .done = count_done };
	struct pool_item no_done = { .work = nop_work };
	struct pool *p;

	errno = 0;
	ck_assert_ptr_null(pool_new(0, 1, NULL, NULL, NULL));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(pool_new(1, 0, NULL, NULL, NULL));
	ck_assert_ptr_null(pool_new(100000, 1, NULL, NULL, NULL));
	p = pool_new(1, 1, NULL, NULL, NULL);
	ck_assert_int_eq(pool_submit(p, &no_work), -EINVAL);
	ck_assert_int_eq(pool_submit(p, &no_done), -EINVAL);
	ck_assert_uint_eq(pool_inflight(p), 0);
	ck_assert_ptr_null(pool_free(p));
	ck_assert_ptr_null(pool_free(NULL));
}
END_TEST

/* ---- errors ---- */

START_TEST(test_ctx_new_fails)
{
	struct pool *p;

	/* The third of four contexts fails: no pool, and the two made are freed. */
	reset_ctx_counters();
	atomic_store(&ctx_fail_at, 3);
	p = pool_new(4, 8, ctx_new, ctx_free, &ctx_made);
	ck_assert_ptr_null(p);
	ck_assert_uint_eq(atomic_load(&ctx_made), 4);
	ck_assert_uint_eq(atomic_load(&ctx_freed), 3);
}
END_TEST

/* ---- recovery: shutdown ---- */

START_TEST(test_shutdown_cancel_queued)
{
	struct rec_item r[4], late;
	struct pool *p;
	int ep;
	size_t i;

	/* Item 0 runs (blocked), items 1-3 wait. Stopping with cancel completes them cancelled. */
	rec_init(r, 4);
	p = pool_new(1, 8, NULL, NULL, NULL);
	ck_assert_int_eq(pool_submit(p, &r[0].it), 0);
	ck_assert(wait_until(started_at_least_one, NULL, 5000));
	for (i = 1; i < 4; i++)
		ck_assert_int_eq(pool_submit(p, &r[i].it), 0);
	ep = epoll_for(p);

	pool_shutdown(p, true);
	memset(&late, 0, sizeof(late));
	late.it.work = blocking_work;
	late.it.done = rec_done;
	ck_assert_int_eq(pool_submit(p, &late.it), -ESHUTDOWN);

	/* The cancelled ones arrive through the eventfd while item 0 still runs. */
	ck_assert_uint_eq(wait_and_drain(p, ep, 5000), 3);
	for (i = 1; i < 4; i++) {
		ck_assert_int_eq(r[i].done_count, 1);
		ck_assert(r[i].cancelled);
	}
	ck_assert_int_eq(r[0].done_count, 0);
	ck_assert_uint_eq(pool_inflight(p), 1);

	/* Item 0 finishes normally; pool_stop joins and runs its done callback. */
	gate_set(true);
	pool_stop(p, true);
	ck_assert_int_eq(r[0].done_count, 1);
	ck_assert(!r[0].cancelled);
	ck_assert_uint_eq(pool_inflight(p), 0);
	ck_assert_uint_eq(atomic_load(&ran), 1);
	ck_assert_int_eq(late.done_count, 0);
	pool_stop(p, true);	/* twice is harmless */
	close(ep);
	pool_free(p);
}
END_TEST

START_TEST(test_shutdown_run_queued)
{
	struct rec_item r[5];
	struct pool *p;
	size_t i;

	/* Stopping without cancel runs every queued item before the workers exit. */
	rec_init(r, 5);
	p = pool_new(2, 8, NULL, NULL, NULL);
	for (i = 0; i < 5; i++)
		ck_assert_int_eq(pool_submit(p, &r[i].it), 0);
	ck_assert(wait_until(started_at_least_one, NULL, 5000));
	pool_shutdown(p, false);
	ck_assert_int_eq(pool_submit(p, &r[0].it), -ESHUTDOWN);
	gate_set(true);
	pool_stop(p, false);
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(r[i].done_count, 1);
		ck_assert(!r[i].cancelled);
	}
	ck_assert_uint_eq(atomic_load(&ran), 5);
	ck_assert_uint_eq(pool_inflight(p), 0);
	pool_free(p);
}
END_TEST

START_TEST(test_free_cancels)
{
	struct rec_item r[3];
	struct pool *p;

	/* pool_free on a running pool cancels what waits and still completes everything. */
	rec_init(r, 3);
	p = pool_new(1, 8, NULL, NULL, NULL);
	ck_assert_int_eq(pool_submit(p, &r[0].it), 0);
	ck_assert(wait_until(started_at_least_one, NULL, 5000));
	ck_assert_int_eq(pool_submit(p, &r[1].it), 0);
	ck_assert_int_eq(pool_submit(p, &r[2].it), 0);
	gate_set(true);
	p = pool_free(p);
	ck_assert_int_eq(r[0].done_count, 1);
	ck_assert_int_eq(r[1].done_count, 1);
	ck_assert_int_eq(r[2].done_count, 1);
	/* Item 0 ran; 1 and 2 were cancelled unless a worker took them first. */
	ck_assert(!r[0].cancelled);
	ck_assert_uint_eq(atomic_load(&ran), 1 + !r[1].cancelled + !r[2].cancelled);
}
END_TEST

/* ---- recovery: signals blocked in workers ---- */

static atomic_int worker_mask_ok;

static void
mask_work(void *ctx, struct pool_item *it)
{
	sigset_t set;

	(void)ctx;
	(void)it;
	pthread_sigmask(SIG_BLOCK, NULL, &set);
	atomic_store(&worker_mask_ok, sigismember(&set, SIGTERM) && sigismember(&set, SIGINT) &&
	    sigismember(&set, SIGHUP) && sigismember(&set, SIGPIPE) &&
	    sigismember(&set, SIGUSR1));
}

START_TEST(test_workers_block_signals)
{
	struct pool_item it = { .work = mask_work, .done = count_done };
	struct pool *p;
	sigset_t set;

	atomic_store(&worker_mask_ok, -1);
	p = pool_new(1, 1, NULL, NULL, NULL);
	ck_assert_int_eq(pool_submit(p, &it), 0);
	pool_stop(p, false);
	ck_assert_int_eq(atomic_load(&worker_mask_ok), 1);
	/* The main thread's own mask is left as it was. */
	pthread_sigmask(SIG_BLOCK, NULL, &set);
	ck_assert(!sigismember(&set, SIGTERM));
	ck_assert(!sigismember(&set, SIGUSR1));
	pool_free(p);
}
END_TEST

/* ---- recovery: watchdog ---- */

static atomic_int touch_now, touched;

static void
touching_work(void *ctx, struct pool_item *it)
{
	struct timespec ms = { 0, 1000000 };

	(void)ctx;
	atomic_fetch_add(&started, 1);
	while (!atomic_load(&touch_now))
		nanosleep(&ms, NULL);
	pool_touch(it);
	atomic_store(&touched, 1);
	blocking_work(ctx, it);
	atomic_fetch_sub(&started, 1);	/* blocking_work counted it again */
}

static bool
touched_is_set(void *arg)
{
	(void)arg;
	return atomic_load(&touched) != 0;
}

static bool
clock_passed(void *arg)
{
	return mono_ms() > *(int64_t *)arg;
}

START_TEST(test_oldest_busy_since)
{
	struct rec_item r[1];
	struct pool *p;
	int64_t before, after, t1 = -1, t2 = -1;

	rec_init(r, 1);
	r[0].it.work = touching_work;
	atomic_store(&touch_now, 0);
	atomic_store(&touched, 0);
	p = pool_new(2, 4, NULL, NULL, NULL);

	/* Idle workers: nothing to report, and the out-parameter is untouched. */
	ck_assert_int_eq(pool_oldest_busy_since(p, &t1), -ENOENT);
	ck_assert_int_eq(t1, -1);

	/* A running item reports its start time. */
	before = mono_ms();
	ck_assert_int_eq(pool_submit(p, &r[0].it), 0);
	ck_assert(wait_until(started_at_least_one, NULL, 5000));
	after = mono_ms();
	ck_assert_int_eq(pool_oldest_busy_since(p, &t1), 0);
	ck_assert_int_ge(t1, before);
	ck_assert_int_le(t1, after);

	/* pool_touch moves it forward. */
	ck_assert(wait_until(clock_passed, &t1, 5000));
	atomic_store(&touch_now, 1);
	ck_assert(wait_until(touched_is_set, NULL, 5000));
	ck_assert_int_eq(pool_oldest_busy_since(p, &t2), 0);
	ck_assert_int_gt(t2, t1);

	/* Done: idle again. */
	gate_set(true);
	pool_stop(p, false);
	ck_assert_int_eq(r[0].done_count, 1);
	ck_assert_int_eq(pool_oldest_busy_since(p, &t1), -ENOENT);
	pool_free(p);
}
END_TEST

static Suite *
pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_test(tc, test_load_exactly_once);
	tcase_add_test(tc, test_ctx_once_per_worker);
	tcase_add_test(tc, test_eventfd_wakes_epoll);
	tcase_add_test(tc, test_done_resubmits);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_queue_full);
	tcase_add_test(tc, test_bad_arguments);
	tcase_set_timeout(tc, 20);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, test_ctx_new_fails);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_test(tc, test_shutdown_cancel_queued);
	tcase_add_test(tc, test_shutdown_run_queued);
	tcase_add_test(tc, test_free_cancels);
	tcase_add_test(tc, test_workers_block_signals);
	tcase_add_test(tc, test_oldest_busy_since);
	tcase_set_timeout(tc, 20);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(pool_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
