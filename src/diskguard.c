/*
 * diskguard.c: free space against min_free_space, logged once per transition.
 *
 * DESIGN
 * The guard is edge-triggered in what it says and level-triggered in what it
 * answers: every check measures and returns the current verdict, but a message
 * is written only when a path's verdict changes (enough -> too little: one
 * WARNING; too little -> enough: one NOTICE). A disk that hovers around the
 * threshold therefore logs one line per crossing, not one per check, and a
 * reload that keeps a path keeps its state (diskguard_set() matches paths by
 * name), so it does not repeat a warning either.
 *
 * A failed measurement (a directory we may not stat, a vanished mount) is not
 * a verdict: the path keeps the verdict it had, and the failure is logged once
 * per distinct errno, so a tripped guard stays tripped and a healthy one does not
 * stop the daemon because of a probe it cannot make.
 *
 * Every path is measured on its own, even when several share a filesystem: the
 * operator reads one line per directory they configured, in the terms of the
 * configuration.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "diskguard.h"
#include "log.h"
#include "progress.h"

/* ---- measuring ---- */

static int
statvfs_free(const char *path, int64_t *ret_free)
{
	struct statvfs sv;
	uint64_t unit, avail;

	if (statvfs(path, &sv) < 0)
		return -errno;
	unit = sv.f_frsize != 0 ? sv.f_frsize : sv.f_bsize;
	avail = sv.f_bavail;
	if (unit != 0 && avail > (uint64_t)INT64_MAX / unit)
		*ret_free = INT64_MAX;
	else
		*ret_free = (int64_t)(avail * unit);
	return 0;
}

int
diskguard_statvfs(const char *path, int64_t *ret_free)
{
	char *dir, *slash;
	int r;

	r = statvfs_free(path, ret_free);
	if (r != -ENOENT)
		return r;
	/* Not there yet: measure the filesystem it would be created on. */
	dir = strdup(path);
	if (dir == NULL)
		return -ENOMEM;
	while (r == -ENOENT) {
		slash = strrchr(dir, '/');
		if (slash == NULL) {
			r = statvfs_free(".", ret_free);
			break;
		}
		if (slash == dir) {
			r = statvfs_free("/", ret_free);
			break;
		}
		*slash = '\0';
		r = statvfs_free(dir, ret_free);
	}
	free(dir);
	return r;
}

static int
probe_run(const struct diskguard_probe *probe, const char *path, int64_t *ret_free)
{
	if (probe != NULL && probe->fn != NULL)
		return probe->fn(path, ret_free, probe->userdata);
	return diskguard_statvfs(path, ret_free);
}

/* ---- one path ---- */

int
diskguard_check(const char *path, int64_t min_free, const struct diskguard_probe *probe,
    struct diskguard_state *state)
{
	struct log_ctx ctx = LOG_CTX_INIT;
	char have[32], need[32];	/* room for INT64_MAX in bytes */
	int64_t free_bytes = -1;
	bool below;
	int r;

	if (min_free <= 0) {
		/* Turned off by a reload while tripped: the pause ends, say so. */
		if (state->tripped)
			log_notice("free space on '%s' is no longer checked (min_free_space 0): "
			    "new work is started again", path);
		*state = (struct diskguard_state)DISKGUARD_STATE_INIT;
		return 0;
	}
	r = probe_run(probe, path, &free_bytes);
	if (r < 0) {
		if (state->error != -r)
			log_warning("cannot measure free space on '%s': %s, ignoring", path,
			    strerror(-r));
		state->error = -r;
		return r;
	}
	if (state->error != 0)
		log_debug("measuring free space on '%s' works again", path);
	state->error = 0;
	state->free = free_bytes;
	below = free_bytes < min_free;
	if (below != state->tripped) {
		progress_bytes(free_bytes, have, sizeof(have));
		progress_bytes(min_free, need, sizeof(need));
		/* "is 1 GiB, below 1 GiB" would read as a bug: then say it in bytes. */
		if (below && strcmp(have, need) == 0) {
			snprintf(have, sizeof(have), "%" PRId64 " B", free_bytes);
			snprintf(need, sizeof(need), "%" PRId64 " B", min_free);
		}
		ctx.bytes = free_bytes;
		ctx.message_id = LOG_MID_DISK;
		if (below)
			log_event(LOG_WARNING, &ctx,
			    "free space on '%s' is %s, below min_free_space %s: no new work is "
			    "started until space returns", path, have, need);
		else
			log_event(LOG_NOTICE, &ctx,
			    "free space on '%s' is %s again, at least min_free_space %s: new work "
			    "is started again", path, have, need);
		state->tripped = below;
	}
	return below ? -ENOSPC : 0;
}

/* ---- a set of paths ---- */

struct diskguard_entry {
	char *path;
	struct diskguard_state state;
};

struct diskguard {
	struct diskguard_probe probe;
	int64_t min_free;
	struct diskguard_entry *entries;
	size_t n;
};

struct diskguard *
diskguard_new(const struct diskguard_probe *probe)
{
	struct diskguard *g = calloc(1, sizeof(*g));

	if (g != NULL && probe != NULL)
		g->probe = *probe;
	return g;
}

static void
entries_free(struct diskguard_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].path);
	free(e);
}

struct diskguard *
diskguard_free(struct diskguard *g)
{
	if (g == NULL)
		return NULL;
	entries_free(g->entries, g->n);
	free(g);
	return NULL;
}

static const struct diskguard_entry *
entry_find(const struct diskguard_entry *e, size_t n, const char *path)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(e[i].path, path) == 0)
			return &e[i];
	return NULL;
}

int
diskguard_set(struct diskguard *g, int64_t min_free, const char *const *paths, size_t n_paths)
{
	struct diskguard_entry *e;
	const struct diskguard_entry *old;
	size_t n = 0;

	e = calloc(n_paths > 0 ? n_paths : 1, sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n_paths; i++) {
		if (paths[i] == NULL || entry_find(e, n, paths[i]) != NULL)
			continue;
		e[n].path = strdup(paths[i]);
		if (e[n].path == NULL)
			goto fail_entries;
		old = entry_find(g->entries, g->n, paths[i]);
		if (old != NULL)
			e[n].state = old->state;
		else
			e[n].state = (struct diskguard_state)DISKGUARD_STATE_INIT;
		n++;
	}
	entries_free(g->entries, g->n);
	g->entries = e;
	g->n = n;
	g->min_free = min_free;
	return 0;

fail_entries:
	entries_free(e, n);
	return -ENOMEM;
}

int
diskguard_set_config(struct diskguard *g, const struct config *cfg)
{
	const char **paths;
	size_t n = 0;
	int r;

	paths = calloc(cfg->n_watches + 1, sizeof(*paths));
	if (paths == NULL)
		return -ENOMEM;
	paths[n++] = cfg->state_dir;
	for (size_t i = 0; i < cfg->n_watches; i++)
		if (cfg->watches[i].results_dir != NULL)
			paths[n++] = cfg->watches[i].results_dir;
	r = diskguard_set(g, cfg->min_free_space, paths, n);
	free(paths);
	return r;
}

bool
diskguard_check_all(struct diskguard *g)
{
	for (size_t i = 0; i < g->n; i++)
		(void)diskguard_check(g->entries[i].path, g->min_free, &g->probe,
		    &g->entries[i].state);
	return diskguard_ok(g);
}

bool
diskguard_ok(const struct diskguard *g)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->entries[i].state.tripped)
			return false;
	return true;
}

size_t
diskguard_n_paths(const struct diskguard *g)
{
	return g->n;
}

const char *
diskguard_path(const struct diskguard *g, size_t i)
{
	return i < g->n ? g->entries[i].path : NULL;
}

const struct diskguard_state *
diskguard_path_state(const struct diskguard *g, size_t i)
{
	return i < g->n ? &g->entries[i].state : NULL;
}
