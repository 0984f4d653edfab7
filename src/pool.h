/*
 * pool.h: a fixed pool of worker threads (pool_ prefix).
 *
 * The main thread submits work items into a bounded queue; N workers run them,
 * each with its own per-worker context (its struct http), and hand every item
 * back through a completion queue. The main thread learns about completions by
 * polling pool_eventfd() and then calls pool_drain(), which runs each item's
 * done callback on the main thread. So the main thread stays the only owner of
 * the store and of case state, and workers only ever touch their own item.
 *
 * Items are intrusive: the caller embeds a struct pool_item in its own request
 * struct (or points `data` at it), keeps it alive from pool_submit() until its
 * done callback runs, and may free it inside that callback. Every submitted
 * item completes exactly once, also when the pool is stopped (then possibly
 * with cancelled = true, and without its work having run).
 *
 * Threading: pool_new, pool_submit, pool_drain, pool_shutdown, pool_stop and
 * pool_free are for
 * the main thread (one thread); pool_eventfd, pool_inflight and
 * pool_oldest_busy_since may be called from it at any time. pool_touch is for
 * a worker, inside work(). Workers run with every signal blocked.
 */
#ifndef GCDROP_POOL_H
#define GCDROP_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrs.h"

struct pool;
struct pool_worker;

struct pool_item {
	/*
	 * Runs on a worker with that worker's context (NULL when the pool has no
	 * ctx_new). Must not touch main-thread state; it writes its results into
	 * its own item. Required.
	 */
	void (*work)(void *ctx, struct pool_item *it);
	/*
	 * Runs on the main thread inside pool_drain() (or pool_stop()), once.
	 * cancelled is true when the item was taken off the queue by
	 * pool_stop(pool, true) without running. May free the item and may call
	 * pool_submit(). Required.
	 */
	void (*done)(struct pool_item *it, bool cancelled);
	void *data;	/* for the caller */

	/* Private to the pool. */
	struct pool_item *next;
	struct pool_worker *worker;
	bool cancelled;
};

/*
 * Start n_workers threads (1..256) and a queue of at most queue_cap waiting
 * items (>= 1). Each worker calls ctx_new(ud) once when it starts, on its own
 * thread, and ctx_free(ctx) once when it stops; either may be NULL. If any
 * ctx_new returns NULL, the pool is torn down again and NULL is returned, as on
 * out of memory or a failing thread or eventfd creation (errno is then set).
 * curl_global_init() must have been called before, when the contexts use curl.
 */
struct pool *pool_new(unsigned n_workers, unsigned queue_cap, void *(*ctx_new)(void *ud),
    void (*ctx_free)(void *ctx), void *ud) GC_WUR;

/*
 * Queue an item. Returns 0; -EAGAIN when queue_cap items are already waiting
 * (the item is not queued: submit it again after a drain); -ESHUTDOWN once
 * pool_stop() has begun; -EINVAL when work or done is NULL.
 */
int pool_submit(struct pool *p, struct pool_item *item) GC_WUR;

/*
 * The eventfd that becomes readable when completions are waiting (EPOLLIN).
 * Owned by the pool; do not read or close it, call pool_drain() instead.
 */
int pool_eventfd(const struct pool *p);

/*
 * Run the done callback of every completed item, in completion order, on the
 * calling (main) thread. Never blocks. Returns the number of callbacks run.
 */
size_t pool_drain(struct pool *p);

/* Items submitted whose done callback has not run yet (queued, running or completed). */
size_t pool_inflight(struct pool *p);

/*
 * For the watchdog: the oldest "last progress" time (CLOCK_MONOTONIC, in ms,
 * as backoff_now_ms()) among the workers that are running an item, where
 * progress is the start of the item or its latest pool_touch(). Returns 0 and
 * sets *ret_ms, or -ENOENT when no worker is busy.
 */
int pool_oldest_busy_since(struct pool *p, int64_t *ret_ms);

/* From inside work(): record progress on it (a long transfer that still moves). */
void pool_touch(struct pool_item *it);

/*
 * Begin stopping without blocking: refuse new submissions (-ESHUTDOWN); with
 * cancel_queued, the items still waiting in the queue complete at once (their
 * done callbacks run at the next pool_drain()) with cancelled = true, without
 * running; and post the stop sentinel, so that each worker exits once the
 * queue is empty. Running items go on; the main loop keeps draining their
 * completions until pool_inflight() is 0 or its deadline passes, then calls
 * pool_stop(). Calling it again may still cancel what is queued.
 */
void pool_shutdown(struct pool *p, bool cancel_queued);

/*
 * Stop the pool, blocking until every worker has exited: refuse new
 * submissions; with cancel_queued, items still waiting in the queue complete
 * with cancelled = true without running, otherwise they run first; items that
 * are running are waited for (abort them beforehand through their own cancel
 * flag if waiting is not wanted). Each worker frees its context. Then every
 * remaining done callback runs, on the calling thread, so that pool_inflight()
 * is 0 afterwards. It does pool_shutdown() first. Calling it twice is harmless.
 */
void pool_stop(struct pool *p, bool cancel_queued);

/* pool_stop(p, true) if not stopped yet, then free everything. Accepts NULL; returns NULL. */
struct pool *pool_free(struct pool *p);

#endif
