/*
 * check_watch.c: inotify decoding and watch management (src/watch.*).
 *
 * core:     raw inotify_event records fed to watch_feed() (the injectable event
 *           source), then real inotify on temporary folders: a new case folder,
 *           a case moved in, ignored names, a subdirectory tree created faster
 *           than its watches, releasing a case's watches.
 * limits:   a real IN_Q_OVERFLOW (more events than max_queued_events) becomes one
 *           rescan request; a deep tree is watched at every level; the watch
 *           budget exhausted (GCDROP_TEST_WATCH_LIMIT, the seam of watch.h) gives
 *           -ENOSPC for a root, -ENOSPC with a handle for a case, and one LIMIT
 *           event for a case that outgrows it; a network folder
 *           (GCDROP_TEST_NETFS) is reported as such.
 * errors:   truncated buffers, unknown watch descriptors, a missing folder.
 * recovery: a watch folder deleted (or moved away) and re-created.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "testutil.h"
#include "watch.h"

/* ---- collecting events ---- */

struct got {
	enum watch_event_kind kind;
	unsigned root;
	char name[NAME_MAX + 1];
	void *ud;
	bool is_dir;
	bool marker;
};

struct events {
	struct got *ev;
	size_t n, cap;
};

static void
collect(const struct watch_event *ev, void *ud)
{
	struct events *e = ud;
	struct got *g;

	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 64;
		e->ev = realloc(e->ev, e->cap * sizeof(*e->ev));
		ck_assert_ptr_nonnull(e->ev);
	}
	g = &e->ev[e->n++];
	memset(g, 0, sizeof(*g));
	g->kind = ev->kind;
	g->root = ev->root;
	g->ud = ev->case_userdata;
	g->is_dir = ev->is_dir;
	g->marker = ev->marker;
	if (ev->case_name != NULL)
		snprintf(g->name, sizeof(g->name), "%s", ev->case_name);
}

static size_t
count(const struct events *e, enum watch_event_kind kind, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < e->n; i++)
		if (e->ev[i].kind == kind && (name == NULL || strcmp(e->ev[i].name, name) == 0))
			n++;
	return n;
}

static void
events_reset(struct events *e)
{
	e->n = 0;
}

/* ---- raw records ---- */

struct rawbuf {
	char data[65536];
	size_t len;
};

/* Append one record; the name is NUL-padded to 'pad' bytes (0: strlen + 1). */
static void
raw_add(struct rawbuf *b, int wd, uint32_t mask, const char *name, size_t pad)
{
	struct inotify_event ie = { .wd = wd, .mask = mask };
	size_t nl = name != NULL ? strlen(name) + 1 : 0;

	if (pad < nl)
		pad = nl;
	ie.len = (uint32_t)pad;
	ck_assert_uint_le(b->len + sizeof(ie) + pad, sizeof(b->data));
	memcpy(b->data + b->len, &ie, sizeof(ie));
	memset(b->data + b->len + sizeof(ie), 0, pad);
	if (name != NULL)
		memcpy(b->data + b->len + sizeof(ie), name, nl);
	b->len += sizeof(ie) + pad;
}

/* The wd inotify gives 'path' in w's instance (an existing watch keeps its mask). */
static int
wd_of(struct watch *w, const char *path)
{
	int wd = inotify_add_watch(watch_fd(w), path, IN_MASK_ADD | IN_CREATE);

	ck_assert_int_ge(wd, 0);
	return wd;
}

/* ---- fixture: one temporary folder per test ---- */

static char *tmp;
static char *root;
static struct watch *w;
static struct events evs;

static void
setup(void)
{
	tmp = tu_mkdtemp("watch");
	root = tu_strdupf("%s/drop", tmp);
	ck_assert_int_eq(mkdir(root, 0755), 0);
	ck_assert_int_eq(watch_new(&w), 0);
	memset(&evs, 0, sizeof(evs));
}

static void
teardown(void)
{
	w = watch_free(w);
	tu_rmtree(tmp);
	free(root);
	free(tmp);
	free(evs.ev);
}

static void
drain(void)
{
	ck_assert_int_eq(watch_read(w, 0, collect, &evs), 0);
}

static void
mkdirf(const char *fmt, const char *a)
{
	char *p = tu_strdupf(fmt, a);

	ck_assert_msg(mkdir(p, 0755) == 0, "mkdir '%s': %s", p, strerror(errno));
	free(p);
}

static void
writef(const char *fmt, const char *a, const char *data)
{
	char *p = tu_strdupf(fmt, a);

	tu_write_file(p, data, -1, 0644);
	free(p);
}

/* ---- core: decoding injected records ---- */

/*
 * Assumptions: records on a root's wd become CHILD / CHILD_GONE with the name
 * and the directory flag; names padded with NULs are read up to the first NUL.
 */
START_TEST(test_feed_root_children)
{
	struct rawbuf b = { .len = 0 };
	int wd;

	ck_assert_int_eq(watch_root_add(w, 3, root, NULL), 0);
	wd = wd_of(w, root);
	raw_add(&b, wd, IN_CREATE | IN_ISDIR, "case-1", 32);
	raw_add(&b, wd, IN_MOVED_TO, "scan 2.dcm", 0);
	raw_add(&b, wd, IN_CLOSE_WRITE, "scan 2.dcm", 16);
	raw_add(&b, wd, IN_DELETE | IN_ISDIR, "case-1", 0);
	raw_add(&b, wd, IN_MOVED_FROM, "old", 0);
	ck_assert_int_eq(watch_feed(w, b.data, b.len, collect, &evs), 0);
	ck_assert_uint_eq(evs.n, 5);
	ck_assert_int_eq(evs.ev[0].kind, WATCH_EV_CHILD);
	ck_assert_uint_eq(evs.ev[0].root, 3);
	ck_assert_str_eq(evs.ev[0].name, "case-1");
	ck_assert(evs.ev[0].is_dir);
	ck_assert_int_eq(evs.ev[1].kind, WATCH_EV_CHILD);
	ck_assert_str_eq(evs.ev[1].name, "scan 2.dcm");
	ck_assert(!evs.ev[1].is_dir);
	ck_assert_int_eq(evs.ev[2].kind, WATCH_EV_CHILD);
	ck_assert_int_eq(evs.ev[3].kind, WATCH_EV_CHILD_GONE);
	ck_assert(evs.ev[3].is_dir);
	ck_assert_int_eq(evs.ev[4].kind, WATCH_EV_CHILD_GONE);
	ck_assert_str_eq(evs.ev[4].name, "old");
}
END_TEST

/* Assumptions: hidden and temporary names produce no event at all. */
START_TEST(test_feed_ignored_names)
{
	static const char *const ignored[] = {".hidden",   "x.tmp",   "y.part",
	                                      "z.partial", "backup~", "."};
	struct rawbuf b = { .len = 0 };
	int wd;

	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	wd = wd_of(w, root);
	for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
		raw_add(&b, wd, IN_CREATE, ignored[i], 0);
	raw_add(&b, wd, IN_CREATE, "kept.part.dcm", 0);
	raw_add(&b, wd, IN_CREATE, NULL, 0);	/* no name: about the folder itself */
	ck_assert_int_eq(watch_feed(w, b.data, b.len, collect, &evs), 0);
	ck_assert_uint_eq(evs.n, 1);
	ck_assert_str_eq(evs.ev[0].name, "kept.part.dcm");
}
END_TEST

/* Assumptions: IN_Q_OVERFLOW (wd -1) is one OVERFLOW event; unknown wds are dropped. */
START_TEST(test_feed_overflow_unknown_wd)
{
	struct rawbuf b = { .len = 0 };

	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	raw_add(&b, 9999, IN_CREATE, "stray", 0);
	raw_add(&b, -1, IN_Q_OVERFLOW, NULL, 0);
	raw_add(&b, 9998, IN_IGNORED, NULL, 0);
	ck_assert_int_eq(watch_feed(w, b.data, b.len, collect, &evs), 0);
	ck_assert_uint_eq(evs.n, 1);
	ck_assert_int_eq(evs.ev[0].kind, WATCH_EV_OVERFLOW);
}
END_TEST

/*
 * Assumptions: records on a case's directories are ACTIVITY with the case's
 * name and userdata; the root's ready marker (even a '.'-name) is flagged at the
 * top of the case only; ignored names inside a case are activity (the case is
 * still being written) but never the marker.
 */
START_TEST(test_feed_case_activity_marker)
{
	struct rawbuf b = { .len = 0 };
	struct watch_case *c = NULL;
	char *sub;
	int ud = 42, wd_top, wd_sub;

	mkdirf("%s/c1", root);
	mkdirf("%s/c1/sub", root);
	ck_assert_int_eq(watch_root_add(w, 1, root, ".ready"), 0);
	ck_assert_int_eq(watch_case_add(w, 1, root, "c1", &ud, &c), 0);
	ck_assert_uint_eq(watch_case_n_watches(c), 2);
	sub = tu_strdupf("%s/c1/sub", root);
	wd_sub = wd_of(w, sub);
	free(sub);
	sub = tu_strdupf("%s/c1", root);
	wd_top = wd_of(w, sub);
	free(sub);
	raw_add(&b, wd_top, IN_CLOSE_WRITE, "image.mha", 0);
	raw_add(&b, wd_top, IN_CREATE, ".ready", 0);
	raw_add(&b, wd_sub, IN_CREATE, ".ready", 0);	/* not at the top: ignored name */
	raw_add(&b, wd_sub, IN_MODIFY, "slice 1.dcm", 0);
	raw_add(&b, wd_top, IN_CREATE, "x.tmp", 0);
	ck_assert_int_eq(watch_feed(w, b.data, b.len, collect, &evs), 0);
	ck_assert_uint_eq(evs.n, 5);
	ck_assert_uint_eq(count(&evs, WATCH_EV_ACTIVITY, "c1"), 5);
	ck_assert_ptr_eq(evs.ev[0].ud, &ud);
	ck_assert(!evs.ev[0].marker);
	ck_assert(evs.ev[1].marker);
	ck_assert(!evs.ev[2].marker);
	ck_assert(!evs.ev[3].marker);
	ck_assert(!evs.ev[4].marker);
	c = watch_case_remove(w, c);
	ck_assert_uint_eq(watch_n_watches(w), 1);
}
END_TEST

/* ---- core: real inotify ---- */

/* Assumptions: a new case folder and a file case are reported as children. */
START_TEST(test_real_new_dir_and_file)
{
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	mkdirf("%s/case A", root);
	writef("%s/single.mha", root, "data");
	drain();
	ck_assert_uint_ge(count(&evs, WATCH_EV_CHILD, "case A"), 1);
	ck_assert_uint_ge(count(&evs, WATCH_EV_CHILD, "single.mha"), 2);	/* create, close */
	ck_assert(evs.ev[0].is_dir);
}
END_TEST

/* Assumptions: a folder moved in at once is one CHILD (IN_MOVED_TO), moved out is GONE. */
START_TEST(test_real_moved_in_and_out)
{
	char *src = tu_strdupf("%s/elsewhere", tmp), *dst = tu_strdupf("%s/moved", root);

	ck_assert_int_eq(mkdir(src, 0755), 0);
	writef("%s/f1", src, "1");
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	ck_assert_int_eq(rename(src, dst), 0);
	drain();
	ck_assert_uint_eq(evs.n, 1);
	ck_assert_int_eq(evs.ev[0].kind, WATCH_EV_CHILD);
	ck_assert_str_eq(evs.ev[0].name, "moved");
	ck_assert(evs.ev[0].is_dir);
	events_reset(&evs);
	ck_assert_int_eq(rename(dst, src), 0);
	drain();
	ck_assert_uint_eq(count(&evs, WATCH_EV_CHILD_GONE, "moved"), 1);
	free(src);
	free(dst);
}
END_TEST

/* Assumptions: temporary and hidden names in the root give no event. */
START_TEST(test_real_ignored_names)
{
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	writef("%s/.hidden", root, "x");
	writef("%s/copy.part", root, "x");
	mkdirf("%s/.staging", root);
	writef("%s/.staging/f", root, "x");
	drain();
	ck_assert_uint_eq(evs.n, 0);
}
END_TEST

/*
 * Assumptions: a subdirectory tree created (with files) before the watcher read
 * the event for its top is found by the listing after the watch is added: every
 * level gets a watch, and a later write at the bottom is reported.
 */
START_TEST(test_real_subdir_race)
{
	struct watch_case *c = NULL;
	int ud = 1;

	mkdirf("%s/c", root);
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	ck_assert_int_eq(watch_case_add(w, 0, root, "c", &ud, &c), 0);
	ck_assert_uint_eq(watch_case_n_watches(c), 1);
	/* All of this happens before the first event is read. */
	mkdirf("%s/c/a", root);
	mkdirf("%s/c/a/b", root);
	mkdirf("%s/c/a/b/deep", root);
	writef("%s/c/a/b/deep/early.dcm", root, "early");
	drain();
	ck_assert_uint_ge(count(&evs, WATCH_EV_ACTIVITY, "c"), 1);
	ck_assert_uint_eq(watch_case_n_watches(c), 4);
	events_reset(&evs);
	writef("%s/c/a/b/deep/late.dcm", root, "late");
	drain();
	ck_assert_uint_ge(count(&evs, WATCH_EV_ACTIVITY, "c"), 1);
	ck_assert_ptr_eq(evs.ev[0].ud, &ud);
	/* Releasing the case frees exactly its watches. */
	c = watch_case_remove(w, c);
	ck_assert_uint_eq(watch_n_watches(w), 1);
	events_reset(&evs);
	writef("%s/c/a/b/deep/after.dcm", root, "after");
	drain();
	ck_assert_uint_eq(count(&evs, WATCH_EV_ACTIVITY, NULL), 0);
}
END_TEST

/*
 * Assumptions: a temporary file written inside a case is activity (the case is
 * still being copied); a hidden directory inside a case is not watched.
 */
START_TEST(test_real_temp_names_inside_case)
{
	struct watch_case *c = NULL;

	mkdirf("%s/c", root);
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	ck_assert_int_eq(watch_case_add(w, 0, root, "c", NULL, &c), 0);
	writef("%s/c/big.dcm.part", root, "partial");
	mkdirf("%s/c/.rsync-tmp", root);
	drain();
	ck_assert_uint_ge(count(&evs, WATCH_EV_ACTIVITY, "c"), 2);
	ck_assert_uint_eq(watch_case_n_watches(c), 1);
	watch_case_remove(w, c);
}
END_TEST

/* Assumptions: the ready marker written into a case is flagged as such. */
START_TEST(test_real_marker)
{
	struct watch_case *c = NULL;

	mkdirf("%s/c", root);
	writef("%s/c/img.mha", root, "x");
	ck_assert_int_eq(watch_root_add(w, 0, root, "READY"), 0);
	ck_assert_int_eq(watch_case_add(w, 0, root, "c", NULL, &c), 0);
	writef("%s/c/READY", root, "");
	drain();
	ck_assert_uint_ge(evs.n, 1);
	ck_assert(evs.ev[0].marker);
	watch_case_remove(w, c);
}
END_TEST

/* Assumptions: a directory moved from one case into another now reports for the second. */
START_TEST(test_real_dir_moved_between_cases)
{
	struct watch_case *c1 = NULL, *c2 = NULL;
	char *from, *to;
	int u1 = 1, u2 = 2;

	mkdirf("%s/c1", root);
	mkdirf("%s/c1/series", root);
	mkdirf("%s/c2", root);
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	ck_assert_int_eq(watch_case_add(w, 0, root, "c1", &u1, &c1), 0);
	ck_assert_int_eq(watch_case_add(w, 0, root, "c2", &u2, &c2), 0);
	ck_assert_uint_eq(watch_case_n_watches(c1), 2);
	from = tu_strdupf("%s/c1/series", root);
	to = tu_strdupf("%s/c2/series", root);
	ck_assert_int_eq(rename(from, to), 0);
	drain();
	ck_assert_uint_eq(watch_case_n_watches(c1), 1);
	ck_assert_uint_eq(watch_case_n_watches(c2), 2);
	events_reset(&evs);
	writef("%s/c2/series/x", root, "x");
	drain();
	ck_assert_uint_ge(evs.n, 1);
	ck_assert_ptr_eq(evs.ev[0].ud, &u2);
	free(from);
	free(to);
	watch_case_remove(w, c1);
	watch_case_remove(w, c2);
	ck_assert_uint_eq(watch_n_watches(w), 1);
}
END_TEST

/* Assumptions: local folders are local; a missing one is -ENOENT. */
START_TEST(test_fs_kind)
{
	enum watch_fs fs = WATCH_FS_NETWORK;
	char *missing = tu_strdupf("%s/nope", tmp);

	ck_assert_int_eq(watch_fs_kind(root, &fs), 0);
	ck_assert_int_eq(fs, WATCH_FS_LOCAL);
	ck_assert_int_eq(watch_fs_kind(missing, &fs), -ENOENT);
	free(missing);
}
END_TEST

/* ---- limits ---- */

/*
 * Assumptions: more events than fs.inotify.max_queued_events (16384 by default)
 * without reading overflows the kernel queue; the watcher reports OVERFLOW (the
 * daemon's rescan request) and keeps working afterwards.
 */
START_TEST(test_real_overflow)
{
	char *q = tu_strdupf("%s", "/proc/sys/fs/inotify/max_queued_events");
	char *s = tu_read_file(q, NULL);
	long max = s != NULL ? strtol(s, NULL, 10) : 16384;
	char name[64];

	free(q);
	free(s);
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	for (long i = 0; i <= max / 2 + 10; i++) {
		int fd;

		snprintf(name, sizeof(name), "%s/f%ld", root, i);
		fd = open(name, O_WRONLY | O_CREAT | O_CLOEXEC,
		          0644); /* IN_CREATE + IN_CLOSE_WRITE */
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	drain();
	ck_assert_uint_eq(count(&evs, WATCH_EV_OVERFLOW, NULL), 1);
	events_reset(&evs);
	mkdirf("%s/after", root);
	drain();
	ck_assert_uint_eq(count(&evs, WATCH_EV_CHILD, "after"), 1);
}
END_TEST

/* Assumptions: a 12-level tree is watched at every level, and listed once. */
START_TEST(test_real_deep_tree)
{
	struct watch_case *c = NULL;
	char *p = tu_strdupf("%s/deep", root);

	ck_assert_int_eq(mkdir(p, 0755), 0);
	for (int i = 0; i < 12; i++) {
		char *n = tu_strdupf("%s/l%d", p, i);

		ck_assert_int_eq(mkdir(n, 0755), 0);
		free(p);
		p = n;
	}
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	ck_assert_int_eq(watch_case_add(w, 0, root, "deep", NULL, &c), 0);
	ck_assert_uint_eq(watch_case_n_watches(c), 13);
	writef("%s/leaf.dcm", p, "x");
	drain();
	ck_assert_uint_ge(count(&evs, WATCH_EV_ACTIVITY, "deep"), 1);
	free(p);
	watch_case_remove(w, c);
}
END_TEST

/* A new watcher made under GCDROP_TEST_WATCH_LIMIT=limit (replaces the fixture's). */
static void
limited_watcher(const char *limit)
{
	w = watch_free(w);
	ck_assert_int_eq(setenv(WATCH_TEST_LIMIT_ENV, limit, 1), 0);
	ck_assert_int_eq(watch_new(&w), 0);
	ck_assert_int_eq(unsetenv(WATCH_TEST_LIMIT_ENV), 0);
}

/*
 * Assumptions: with no watch budget left (max_user_watches exhausted) a root
 * is refused with -ENOSPC and left unregistered, so the daemon can poll it and
 * retry; a budget that is not a number is no budget at all.
 */
START_TEST(test_limit_root)
{
	limited_watcher("0");
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), -ENOSPC);
	ck_assert(!watch_root_watched(w, 0));
	ck_assert_uint_eq(watch_n_watches(w), 0);
	limited_watcher("1");
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	ck_assert_int_eq(watch_root_add(w, 1, tmp, NULL), -ENOSPC);
	ck_assert_uint_eq(watch_n_watches(w), 1);
	limited_watcher("many");
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	ck_assert_int_eq(watch_root_add(w, 1, tmp, NULL), 0);
}
END_TEST

/*
 * Assumptions: a case that does not fit the budget is still registered (the
 * handle comes back with -ENOSPC and the watches that fit), so the daemon polls
 * it; a case that outgrows the budget later reports its activity, then one
 * LIMIT event, once; releasing it frees its watches for the next case.
 */
START_TEST(test_limit_case)
{
	struct watch_case *c = NULL, *d = NULL;
	int ud = 7;

	mkdirf("%s/big", root);
	mkdirf("%s/big/s1", root);
	mkdirf("%s/big/s2", root);
	mkdirf("%s/small", root);
	limited_watcher("3");
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	/* Root + big + one of its subdirectories: the third directory does not fit. */
	ck_assert_int_eq(watch_case_add(w, 0, root, "big", &ud, &c), -ENOSPC);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(watch_case_n_watches(c), 2);
	ck_assert_int_eq(watch_case_add(w, 0, root, "small", NULL, &d), -ENOSPC);
	ck_assert_ptr_nonnull(d);
	ck_assert_uint_eq(watch_case_n_watches(d), 0);
	d = watch_case_remove(w, d);
	c = watch_case_remove(w, c);
	ck_assert_uint_eq(watch_n_watches(w), 1);
	/* 'small' fits now; a directory created in it later does not. */
	ck_assert_int_eq(watch_case_add(w, 0, root, "small", &ud, &d), 0);
	ck_assert_int_eq(watch_case_add(w, 0, root, "big", NULL, &c), -ENOSPC);
	ck_assert_uint_eq(watch_case_n_watches(c), 1);
	drain();
	events_reset(&evs);
	mkdirf("%s/small/new1", root);
	mkdirf("%s/small/new2", root);
	drain();
	ck_assert_uint_ge(count(&evs, WATCH_EV_ACTIVITY, "small"), 2);
	ck_assert_uint_eq(count(&evs, WATCH_EV_LIMIT, "small"), 1);
	for (size_t i = 0; i < evs.n; i++)
		if (evs.ev[i].kind == WATCH_EV_LIMIT)
			ck_assert_ptr_eq(evs.ev[i].ud, &ud);
	watch_case_remove(w, c);
	watch_case_remove(w, d);
}
END_TEST

/*
 * Assumptions: GCDROP_TEST_NETFS makes its folder and everything below it a
 * network filesystem for watch_fs_kind() (as an NFS mount); a sibling whose
 * name merely starts the same stays local; a missing path is still -ENOENT.
 */
START_TEST(test_fs_kind_network)
{
	char *sib = tu_strdupf("%s2", root), *sub = tu_strdupf("%s/case", root);
	char *env = tu_strdupf("%s/", root), *missing = tu_strdupf("%s/nope", root);
	enum watch_fs fs = WATCH_FS_LOCAL;

	ck_assert_int_eq(mkdir(sib, 0755), 0);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	ck_assert_int_eq(setenv(WATCH_TEST_NETFS_ENV, env, 1), 0);
	ck_assert_int_eq(watch_fs_kind(root, &fs), 0);
	ck_assert_int_eq(fs, WATCH_FS_NETWORK);
	fs = WATCH_FS_LOCAL;
	ck_assert_int_eq(watch_fs_kind(sub, &fs), 0);
	ck_assert_int_eq(fs, WATCH_FS_NETWORK);
	ck_assert_int_eq(watch_fs_kind(sib, &fs), 0);
	ck_assert_int_eq(fs, WATCH_FS_LOCAL);
	ck_assert_int_eq(watch_fs_kind(tmp, &fs), 0);
	ck_assert_int_eq(fs, WATCH_FS_LOCAL);
	ck_assert_int_eq(watch_fs_kind(missing, &fs), -ENOENT);
	ck_assert_int_eq(unsetenv(WATCH_TEST_NETFS_ENV), 0);
	ck_assert_int_eq(watch_fs_kind(root, &fs), 0);
	ck_assert_int_eq(fs, WATCH_FS_LOCAL);
	free(sib);
	free(sub);
	free(env);
	free(missing);
}
END_TEST

/* ---- errors ---- */

/* Assumptions: a buffer that ends inside a record delivers the records before it. */
START_TEST(test_feed_truncated)
{
	struct rawbuf b = { .len = 0 };
	int wd;

	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	wd = wd_of(w, root);
	raw_add(&b, wd, IN_CREATE, "first", 0);
	raw_add(&b, wd, IN_CREATE, "second", 0);
	ck_assert_int_eq(watch_feed(w, b.data, b.len - 3, collect, &evs), -EBADMSG);
	ck_assert_uint_eq(evs.n, 1);
	ck_assert_str_eq(evs.ev[0].name, "first");
	events_reset(&evs);
	ck_assert_int_eq(watch_feed(w, b.data, 5, collect, &evs), -EBADMSG);
	ck_assert_uint_eq(evs.n, 0);
}
END_TEST

/* Assumptions: a missing folder is -ENOENT and leaves nothing registered; a case that vanished too.
 */
START_TEST(test_missing_folder)
{
	struct watch_case *c = NULL;
	char *missing = tu_strdupf("%s/nope", tmp);

	ck_assert_int_eq(watch_root_add(w, 0, missing, NULL), -ENOENT);
	ck_assert(!watch_root_watched(w, 0));
	ck_assert_uint_eq(watch_n_watches(w), 0);
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), 0);
	ck_assert_int_eq(watch_root_add(w, 0, root, NULL), -EEXIST);
	ck_assert_int_eq(watch_case_add(w, 0, root, "gone", NULL, &c), -ENOENT);
	ck_assert_ptr_null(c);
	free(missing);
}
END_TEST

/* ---- recovery ---- */

/*
 * Assumptions: deleting the watch folder reports ROOT_GONE once and unwatches it;
 * re-created, it can be watched again and reports new children.
 */
START_TEST(test_real_root_deleted_recreated)
{
	ck_assert_int_eq(watch_root_add(w, 5, root, NULL), 0);
	ck_assert_int_eq(rmdir(root), 0);
	drain();
	ck_assert_uint_eq(count(&evs, WATCH_EV_ROOT_GONE, NULL), 1);
	ck_assert_uint_eq(evs.ev[0].root, 5);
	ck_assert(!watch_root_watched(w, 5));
	ck_assert_uint_eq(watch_n_watches(w), 0);
	events_reset(&evs);
	ck_assert_int_eq(mkdir(root, 0755), 0);
	ck_assert_int_eq(watch_root_add(w, 5, root, NULL), 0);
	mkdirf("%s/new", root);
	drain();
	ck_assert_uint_eq(count(&evs, WATCH_EV_CHILD, "new"), 1);
}
END_TEST

/* Assumptions: a watch folder moved away is unwatched at once (not followed). */
START_TEST(test_real_root_moved_away)
{
	char *away = tu_strdupf("%s/away", tmp);

	ck_assert_int_eq(watch_root_add(w, 2, root, NULL), 0);
	ck_assert_int_eq(rename(root, away), 0);
	drain();
	ck_assert_uint_eq(count(&evs, WATCH_EV_ROOT_GONE, NULL), 1);
	ck_assert(!watch_root_watched(w, 2));
	events_reset(&evs);
	mkdirf("%s/in-the-old-folder", away);
	drain();
	ck_assert_uint_eq(evs.n, 0);
	free(away);
}
END_TEST

static Suite *
watch_suite(void)
{
	Suite *s = suite_create("watch");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_feed_root_children);
	tcase_add_test(tc, test_feed_ignored_names);
	tcase_add_test(tc, test_feed_overflow_unknown_wd);
	tcase_add_test(tc, test_feed_case_activity_marker);
	tcase_add_test(tc, test_real_new_dir_and_file);
	tcase_add_test(tc, test_real_moved_in_and_out);
	tcase_add_test(tc, test_real_ignored_names);
	tcase_add_test(tc, test_real_subdir_race);
	tcase_add_test(tc, test_real_marker);
	tcase_add_test(tc, test_real_temp_names_inside_case);
	tcase_add_test(tc, test_real_dir_moved_between_cases);
	tcase_add_test(tc, test_fs_kind);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_real_overflow);
	tcase_add_test(tc, test_real_deep_tree);
	tcase_add_test(tc, test_limit_root);
	tcase_add_test(tc, test_limit_case);
	tcase_add_test(tc, test_fs_kind_network);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_feed_truncated);
	tcase_add_test(tc, test_missing_folder);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_real_root_deleted_recreated);
	tcase_add_test(tc, test_real_root_moved_away);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(watch_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
