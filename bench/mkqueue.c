/*
 * mkqueue.c: fill a gcdrop queue with many cases, for the `gcdrop status` benchmark.
 *
 *   bench/mkqueue STATE_DIR N [WATCH]
 *
 * DESIGN
 * The benchmark needs a queue of 100,000 cases quickly and a queue that looks
 * like a long-lived one: most cases finished, with the remote objects a finished
 * case has, a few failed ones with a message, a few still queued or in flight.
 * Going through the daemon would take minutes (every case is a folder, a walk
 * and a settle), so this helper writes rows through the store's own API
 * (src/libgcdrop.a), the same functions the daemon uses, in transactions of
 * 1,000 cases. What `gcdrop status` then reads is exactly what the daemon would
 * have written: cases with files, events for every transition, remotes.
 *
 * The mix per 100 cases: 80 succeeded (session and job, with url and status),
 * 10 failed (with an error), 5 queued, 3 uploading (bytes done), 2 retry-wait.
 * Every case has two files. Names are "case-000001" and so on; the queue must
 * not exist yet or must not hold these names (duplicates are refused).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"

#define MKQUEUE_BATCH 1000

static int
mkqueue_one(struct store *st, const char *watch, long i)
{
	struct store_file files[2] = { 0 };
	struct store_case_new c = { 0 };
	char name[64], path[128], fp[65], pk[64], url[160];
	int64_t id, now = (int64_t)time(NULL);
	int kind = (int)(i % 100);
	int r;

	snprintf(name, sizeof(name), "case-%06ld", i);
	snprintf(path, sizeof(path), "/srv/gcdrop/%s/%s", watch, name);
	snprintf(fp, sizeof(fp), "%064lx", (unsigned long)i * 2654435761UL);
	files[0].relpath = (char *)"image.mha";
	files[0].size = 64 << 20;
	files[0].mtime_ns = now * 1000000000LL;
	files[1].relpath = (char *)"meta.json";
	files[1].size = 512;
	files[1].mtime_ns = now * 1000000000LL;
	c.watch = watch;
	c.name = name;
	c.path = path;
	c.fingerprint = fp;
	c.state = STORE_QUEUED;
	c.files = files;
	c.n_files = 2;
	r = store_case_insert(st, &c, &id);
	if (r < 0)
		return r;
	if (kind < 5)
		return 0;
	r = store_case_transition(st, id, STORE_QUEUED, STORE_UPLOADING, NULL);
	if (r == 0) {
		int64_t done = kind < 8 ? (int64_t)(kind - 4) << 22 : files[0].size;

		r = store_case_set_progress(st, id, done, files[0].size + files[1].size);
	}
	if (r < 0 || kind < 8)
		return r;
	if (kind < 10)
		return store_case_retry_wait(st, id, STORE_UPLOADING, now + 600,
					     "storage answered 503 Service Unavailable");
	if (kind < 20)
		return store_case_transition(st, id, STORE_UPLOADING, STORE_FAILED,
					     "socket 'generic-medical-image': 1 file could not be "
					     "imported");
	snprintf(pk, sizeof(pk), "%08lx-0000-4000-8000-%012lx", (unsigned long)i, (unsigned long)i);
	snprintf(url, sizeof(url), "http://127.0.0.1/api/v1/cases/upload-sessions/%s/", pk);
	r = store_remote_set(st, id, STORE_REMOTE_SESSION, "", pk, url, "Succeeded", NULL);
	if (r == 0)
		r = store_case_transition(st, id, STORE_UPLOADING, STORE_IMPORTING, NULL);
	if (r < 0)
		return r;
	snprintf(url, sizeof(url), "http://127.0.0.1/api/v1/algorithms/jobs/%s/", pk);
	r = store_remote_intent(st, id, STORE_REMOTE_JOB, "", name);
	if (r == 0)
		r = store_remote_set(st, id, STORE_REMOTE_JOB, "", pk, url, "Succeeded", NULL);
	if (r == 0)
		r = store_case_transition(st, id, STORE_IMPORTING, STORE_SUBMITTED, NULL);
	if (r == 0)
		r = store_case_transition(st, id, STORE_SUBMITTED, STORE_RUNNING, NULL);
	if (r == 0)
		r = store_case_transition(st, id, STORE_RUNNING, STORE_SUCCEEDED, NULL);
	return r;
}

int
main(int argc, char **argv)
{
	struct store *st = NULL;
	char *msg = NULL;
	const char *watch;
	long n;
	int r;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: mkqueue STATE_DIR N [WATCH]\n");
		return 64;
	}
	n = strtol(argv[2], NULL, 10);
	watch = argc == 4 ? argv[3] : "bench";
	r = store_open(argv[1], 0, &st, &msg);
	if (r < 0) {
		fprintf(stderr, "mkqueue: %s\n", msg != NULL ? msg : strerror(-r));
		free(msg);
		return 1;
	}
	for (long i = 1; i <= n && r == 0; i++) {
		if ((i - 1) % MKQUEUE_BATCH == 0)
			r = store_begin(st);
		if (r == 0)
			r = mkqueue_one(st, watch, i);
		if (r == 0 && (i % MKQUEUE_BATCH == 0 || i == n))
			r = store_commit(st);
	}
	if (r < 0) {
		fprintf(stderr, "mkqueue: %s (%s)\n", strerror(-r), store_errmsg(st));
		(void)store_rollback(st);
		store_close(st);
		return 1;
	}
	store_close(st);
	return 0;
}
