/*
 * pool.c: a fixed pool of worker threads fed by a bounded queue.
 *
 * DESIGN
 *
 * The model is libuv's threadpool.c and the first Redis bio.c: one mutex, one
 * condition variable, one FIFO of work items. A worker waits on the condition
 * variable, takes the oldest item, runs it without holding the lock, then puts
 * it on the completion FIFO and wakes the main thread through an eventfd. The
 * main thread's epoll loop sees the eventfd readable and calls pool_drain(),
 * which runs the done callbacks there: results only ever reach shared state on
 * the main thread, so nothing but this file needs a lock.
 *
 * Ordering: items start in submission order; done callbacks run in completion
 * order. Each item completes exactly once: after running, or (pool_stop with
 * cancel_queued) straight from the queue with its cancelled flag set.
 *
 * Wake-ups are coalesced: a worker writes the eventfd only when it puts an item
 * on an empty completion list. pool_drain() reads (resets) the eventfd *before*
 * it takes the list under the lock, so a completion that lands after the take
 * always writes the eventfd again and nothing is left unnoticed.
 *
 * One lock protects the queue, the completion list and the start/stop flags.
 * Nothing else is shared: `inflight` is touched only by the main thread
 * (submit, drain), and each worker's "last progress" time is an atomic that
 * the watchdog reads without the lock. No code runs a callback while holding
 * the lock, so callbacks may call back into the pool without deadlock.
 *
 * Shutdown: pool_shutdown() refuses new items, optionally moves the queued ones
 * to the completion list as cancelled, and sets the exit flag under the lock
 * and broadcasts. The flag is the stop sentinel: a worker leaves its loop when
 * it sees the flag and an empty queue, so queued items run first unless they
 * were cancelled. pool_stop() then joins every worker and runs the remaining
 * done callbacks on the main thread.
 *
 * Signals: the workers are created with every signal blocked (the mask is set
 * around pthread_create, so there is no window), so only the main thread's
 * signalfd sees SIGTERM/SIGHUP, and SIGPIPE can never kill a transfer.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

#define POOL_MAX_WORKERS 256

struct pool_worker {
	struct pool *pool;
	pthread_t tid;
	bool created;			/* pthread_create succeeded */
	void *ctx;			/* worker-owned, from ctx_new */
	_Atomic int64_t progress_ms;	/* 0: idle; else start of item or last pool_touch */
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t work_cond;	/* queue non-empty, or exiting */
	pthread_cond_t start_cond;	/* a worker finished ctx_new */

	/* Under lock. */
	struct pool_item *q_head, *q_tail;
	size_t q_len;
	struct pool_item *c_head, *c_tail;
	bool stopping;			/* pool_submit refuses */
	bool exiting;			/* the sentinel: leave once the queue is empty */
	unsigned n_ready, n_failed;

	/* Main thread only. */
	size_t inflight;
	bool stopped;

	/* Immutable after pool_new. */
	size_t q_cap;
	unsigned n_workers;
	void *(*ctx_new)(void *ud);
	void (*ctx_free)(void *ctx);
	void *ud;
	int efd;
	struct pool_worker *workers;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Append to a FIFO given by head and tail pointers. */
static void
fifo_push(struct pool_item **head, struct pool_item **tail, struct pool_item *it)
{
	it->next = NULL;
	if (*tail)
		(*tail)->next = it;
	else
		*head = it;
	*tail = it;
}

static void
wake_main(struct pool *p)
{
	uint64_t one = 1;

	/* Only fails if the counter would overflow 2^64-2, which cannot happen here. */
	if (write(p->efd, &one, sizeof(one)) < 0)
		return;
}

static void *
worker_main(void *arg)
{
	struct pool_worker *w = arg;
	struct pool *p = w->pool;
	struct pool_item *it;
	void *ctx = NULL;
	bool failed, was_empty;

	pthread_setname_np(pthread_self(), "gcdrop-worker");
	if (p->ctx_new)
		ctx = p->ctx_new(p->ud);
	failed = p->ctx_new && !ctx;

	pthread_mutex_lock(&p->lock);
	w->ctx = ctx;
	if (failed)
		p->n_failed++;
	else
		p->n_ready++;
	pthread_cond_signal(&p->start_cond);
	if (failed) {
		pthread_mutex_unlock(&p->lock);
		return NULL;
	}
	for (;;) {
		while (!p->q_head && !p->exiting)
			pthread_cond_wait(&p->work_cond, &p->lock);
		if (!p->q_head)
			break;	/* exiting, and nothing left to run */
		it = p->q_head;
		p->q_head = it->next;
		if (!p->q_head)
			p->q_tail = NULL;
		p->q_len--;
		it->worker = w;
		atomic_store(&w->progress_ms, now_ms());
		pthread_mutex_unlock(&p->lock);

		it->work(ctx, it);

		pthread_mutex_lock(&p->lock);
		atomic_store(&w->progress_ms, 0);
		it->worker = NULL;
		was_empty = !p->c_head;
		fifo_push(&p->c_head, &p->c_tail, it);
		if (was_empty) {
			/* The write may block on nothing: the eventfd is non-blocking. */
			pthread_mutex_unlock(&p->lock);
			wake_main(p);
			pthread_mutex_lock(&p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	if (p->ctx_free && ctx)
		p->ctx_free(ctx);
	return NULL;
}

/* Post the sentinel: each worker leaves its loop once it sees it and an empty queue. */
static void
post_sentinel(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->exiting = true;
	pthread_cond_broadcast(&p->work_cond);
	pthread_mutex_unlock(&p->lock);
}

static void
join_workers(struct pool *p)
{
	unsigned i;

	for (i = 0; i < p->n_workers; i++) {
		if (p->workers[i].created) {
			pthread_join(p->workers[i].tid, NULL);
			p->workers[i].created = false;
		}
	}
}

struct pool *
pool_new(unsigned n_workers, unsigned queue_cap, void *(*ctx_new)(void *ud),
    void (*ctx_free)(void *ctx), void *ud)
{
	struct pool *p;
	sigset_t all, old;
	unsigned i, created = 0;
	int r = 0;

	if (n_workers < 1 || n_workers > POOL_MAX_WORKERS || queue_cap < 1) {
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->workers = calloc(n_workers, sizeof(*p->workers));
	if (!p->workers) {
		free(p);
		return NULL;
	}
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0) {
		r = -errno;
		free(p->workers);
		free(p);
		errno = -r;
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work_cond, NULL);
	pthread_cond_init(&p->start_cond, NULL);
	p->q_cap = queue_cap;
	p->n_workers = n_workers;
	p->ctx_new = ctx_new;
	p->ctx_free = ctx_free;
	p->ud = ud;

	/* Workers inherit this mask: every signal blocked, from their first instruction. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < n_workers; i++) {
		p->workers[i].pool = p;
		r = -pthread_create(&p->workers[i].tid, NULL, worker_main, &p->workers[i]);
		if (r < 0)
			break;
		p->workers[i].created = true;
		created++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	/* Wait until every started worker has its context (or failed to make one). */
	pthread_mutex_lock(&p->lock);
	while (p->n_ready + p->n_failed < created)
		pthread_cond_wait(&p->start_cond, &p->lock);
	if (r == 0 && p->n_failed > 0)
		r = -ENOMEM;
	pthread_mutex_unlock(&p->lock);
	if (r < 0)
		goto fail;
	return p;

fail:
	p->stopped = true;
	post_sentinel(p);
	join_workers(p);
	pool_free(p);
	errno = -r;
	return NULL;
}

int
pool_submit(struct pool *p, struct pool_item *item)
{
	if (!item->work || !item->done)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		pthread_mutex_unlock(&p->lock);
		return -ESHUTDOWN;
	}
	if (p->q_len >= p->q_cap) {
		pthread_mutex_unlock(&p->lock);
		return -EAGAIN;
	}
	item->cancelled = false;
	item->worker = NULL;
	fifo_push(&p->q_head, &p->q_tail, item);
	p->q_len++;
	pthread_cond_signal(&p->work_cond);
	pthread_mutex_unlock(&p->lock);
	p->inflight++;
	return 0;
}

int
pool_eventfd(const struct pool *p)
{
	return p->efd;
}

size_t
pool_drain(struct pool *p)
{
	struct pool_item *it, *next;
	uint64_t v;
	size_t n = 0;

	/* Reset the eventfd first: see the DESIGN note on coalesced wake-ups. */
	if (read(p->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing was signalled, but a completion may still be listed. */
	}
	pthread_mutex_lock(&p->lock);
	it = p->c_head;
	p->c_head = p->c_tail = NULL;
	pthread_mutex_unlock(&p->lock);

	for (; it; it = next) {
		next = it->next;	/* done() may free the item */
		it->next = NULL;
		p->inflight--;
		n++;
		it->done(it, it->cancelled);
	}
	return n;
}

size_t
pool_inflight(struct pool *p)
{
	return p->inflight;
}

int
pool_oldest_busy_since(struct pool *p, int64_t *ret_ms)
{
	int64_t oldest = 0, t;
	unsigned i;

	for (i = 0; i < p->n_workers; i++) {
		t = atomic_load(&p->workers[i].progress_ms);
		if (t > 0 && (oldest == 0 || t < oldest))
			oldest = t;
	}
	if (oldest == 0)
		return -ENOENT;
	*ret_ms = oldest;
	return 0;
}

void
pool_touch(struct pool_item *it)
{
	if (it->worker)
		atomic_store(&it->worker->progress_ms, now_ms());
}

void
pool_shutdown(struct pool *p, bool cancel_queued)
{
	struct pool_item *it;
	bool was_empty;

	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	was_empty = !p->c_head;
	if (cancel_queued && p->q_head) {
		while ((it = p->q_head)) {
			p->q_head = it->next;
			it->cancelled = true;
			fifo_push(&p->c_head, &p->c_tail, it);
		}
		p->q_tail = NULL;
		p->q_len = 0;
	}
	p->exiting = true;
	pthread_cond_broadcast(&p->work_cond);
	pthread_mutex_unlock(&p->lock);
	if (was_empty && cancel_queued)
		wake_main(p);
}

void
pool_stop(struct pool *p, bool cancel_queued)
{
	if (p->stopped)
		return;
	pool_shutdown(p, cancel_queued);
	join_workers(p);
	p->stopped = true;
	/* The workers are gone: this drain sees every remaining completion. */
	pool_drain(p);
}

struct pool *
pool_free(struct pool *p)
{
	if (!p)
		return NULL;
	if (!p->stopped)
		pool_stop(p, true);
	close(p->efd);
	pthread_cond_destroy(&p->start_cond);
	pthread_cond_destroy(&p->work_cond);
	pthread_mutex_destroy(&p->lock);
	free(p->workers);
	free(p);
	return NULL;
}
