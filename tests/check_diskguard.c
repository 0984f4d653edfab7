/*
 * check_diskguard.c: tests of the min_free_space guard (src/diskguard.c).
 *
 * The guard's verdicts and its log lines are checked with an injected probe (a
 * table of free-space values per path that each test changes between checks):
 * below, above and exactly at the threshold, a disk flapping around it (one
 * line per crossing, never one per check), several paths at once, reloads that
 * keep or drop paths, and probes that fail. The log goes to stderr, which the
 * fixture sends to a file that each step reads and empties.
 *
 * The real statvfs() probe is tested on a 1 MiB tmpfs mounted in a private
 * mount namespace (so nothing outlives the test process); where mounting is not
 * permitted that test says so and passes without checking anything.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attrs.h"
#include "config.h"
#include "diskguard.h"
#include "log.h"
#include "testutil.h"

#define KIB INT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

static char *g_dir;
static char *g_log;

static void
setup(void)
{
	int fd;

	g_dir = tu_mkdtemp("diskguard");
	g_log = tu_strdupf("%s/stderr", g_dir);
	fd = open(g_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
	close(fd);
	unsetenv("JOURNAL_STREAM");
	log_init(LOG_MODE_STDERR, LOG_INFO);
}

static void
teardown(void)
{
	tu_rmtree(g_dir);
	free(g_dir);
	free(g_log);
	g_dir = g_log = NULL;
}

/* What was logged since the last call (the file is emptied). Never NULL. */
static char *
take_log(void)
{
	char *s = tu_read_file(g_log, NULL);

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(ftruncate(STDERR_FILENO, 0), 0);
	return s;
}

static void
expect_no_log(void)
{
	char *s = take_log();

	ck_assert_msg(s[0] == '\0', "unexpected log: %s", s);
	free(s);
}

/*
 * Expect exactly one line in the log: priority, message, and (when bytes >= 0)
 * the GCDROP_BYTES and MESSAGE_ID fields of a disk event.
 */
static void
expect_one_line(int priority, const char *msg, int64_t bytes)
{
	char *s = take_log(), *want, *field;
	char *nl = strchr(s, '\n');

	ck_assert_msg(nl != NULL && nl[1] == '\0', "want one line, got: '%s'", s);
	want = tu_strdupf("<%d>%s", priority, msg);
	ck_assert_msg(strncmp(s, want, strlen(want)) == 0, "got '%s', want '%s'", s, want);
	if (bytes >= 0) {
		field = tu_strdupf("GCDROP_BYTES=%lld ", (long long)bytes);
		ck_assert_msg(strstr(s, field) != NULL, "no %s in '%s'", field, s);
		ck_assert_ptr_nonnull(strstr(s, "MESSAGE_ID=" LOG_MID_DISK "]"));
		free(field);
	}
	free(want);
	free(s);
}

static char *
below_msg(const char *path, const char *have, const char *need)
{
	return tu_strdupf("free space on '%s' is %s, below min_free_space %s: no new work is "
	    "started until space returns", path, have, need);
}

static char *
again_msg(const char *path, const char *have, const char *need)
{
	return tu_strdupf("free space on '%s' is %s again, at least min_free_space %s: new work "
	    "is started again", path, have, need);
}

/* ---- the injected probe ---- */

#define FAKE_PATHS 4

struct fake {
	struct {
		const char *path;
		int64_t free;
		int err;	/* > 0: fail with -err */
		int calls;
	} p[FAKE_PATHS];
};

static int
fake_probe(const char *path, int64_t *ret_free, void *userdata)
{
	struct fake *f = userdata;

	for (size_t i = 0; i < FAKE_PATHS; i++) {
		if (f->p[i].path == NULL || strcmp(f->p[i].path, path) != 0)
			continue;
		f->p[i].calls++;
		if (f->p[i].err > 0)
			return -f->p[i].err;
		*ret_free = f->p[i].free;
		return 0;
	}
	ck_abort_msg("probe of unexpected path '%s'", path);
	return -EINVAL;
}

/* ---- core: one check against the threshold ---- */

static const struct {
	const char *why;
	int64_t free, min;
	int r;
	const char *have, *need;	/* NULL: nothing logged */
} threshold_cases[] = {
	{ "well below", 512 * MIB, GIB, -ENOSPC, "512 MiB", "1 GiB" },
	{ "one byte below, in bytes", GIB - 1, GIB, -ENOSPC, "1073741823 B", "1073741824 B" },
	{ "exactly at the threshold is enough", GIB, GIB, 0, NULL, NULL },
	{ "above", 5 * GIB / 2, GIB, 0, NULL, NULL },
	{ "a full disk", 0, GIB, -ENOSPC, "0 B", "1 GiB" },
	{ "guard disabled", 0, 0, 0, NULL, NULL },
	{ "guard disabled, negative", 0, -1, 0, NULL, NULL },
};

START_TEST(test_threshold)
{
	struct fake f = { .p = { { "/var/lib/gcdrop", threshold_cases[_i].free, 0, 0 } } };
	struct diskguard_probe probe = { fake_probe, &f };
	struct diskguard_state st = DISKGUARD_STATE_INIT;
	char *msg;
	int r;

	/* Assumptions: threshold_cases[_i].why, starting from an untripped path. */
	r = diskguard_check("/var/lib/gcdrop", threshold_cases[_i].min, &probe, &st);
	ck_assert_msg(r == threshold_cases[_i].r, "%s: r %d", threshold_cases[_i].why, r);
	ck_assert(st.tripped == (threshold_cases[_i].r == -ENOSPC));
	if (threshold_cases[_i].min <= 0) {
		ck_assert_int_eq(f.p[0].calls, 0);	/* disabled: nothing measured */
		ck_assert_int_eq(st.free, -1);
	} else {
		ck_assert_int_eq(st.free, threshold_cases[_i].free);
	}
	if (threshold_cases[_i].have == NULL) {
		expect_no_log();
		return;
	}
	msg = below_msg("/var/lib/gcdrop", threshold_cases[_i].have, threshold_cases[_i].need);
	expect_one_line(LOG_WARNING, msg, threshold_cases[_i].free);
	free(msg);
	/* The same verdict again: no second line. */
	ck_assert_int_eq(diskguard_check("/var/lib/gcdrop", threshold_cases[_i].min, &probe, &st),
	    -ENOSPC);
	expect_no_log();
}
END_TEST

/* ---- core: a flapping disk logs once per transition ---- */

static const struct {
	int64_t free;
	int r;
	int log;	/* 0 nothing, 1 warning, 2 notice */
	const char *have;
} flap_steps[] = {
	{ 2 * GIB, 0, 0, NULL },
	{ 512 * MIB, -ENOSPC, 1, "512 MiB" },
	{ 500 * MIB, -ENOSPC, 0, NULL },
	{ 400 * MIB, -ENOSPC, 0, NULL },
	{ 1000 * MIB, -ENOSPC, 0, NULL },
	{ GIB, 0, 2, "1 GiB" },			/* exactly at: enough again */
	{ 2 * GIB, 0, 0, NULL },
	{ GIB, 0, 0, NULL },
	{ 1000 * MIB, -ENOSPC, 1, "1000 MiB" },
	{ GIB - 1, -ENOSPC, 0, NULL },
	{ 3 * GIB, 0, 2, "3 GiB" },
	{ 0, -ENOSPC, 1, "0 B" },
	{ 10 * GIB, 0, 2, "10 GiB" },
};

START_TEST(test_flapping)
{
	struct fake f = { .p = { { "/srv/results", 0, 0, 0 } } };
	struct diskguard_probe probe = { fake_probe, &f };
	struct diskguard_state st = DISKGUARD_STATE_INIT;
	int warnings = 0, notices = 0;

	/* Assumptions: one path, min 1 GiB, free space moving around the threshold. */
	for (size_t k = 0; k < GC_ARRAY_SIZE(flap_steps); k++) {
		char *msg;

		f.p[0].free = flap_steps[k].free;
		ck_assert_int_eq(diskguard_check("/srv/results", GIB, &probe, &st),
		    flap_steps[k].r);
		switch (flap_steps[k].log) {
		case 0:
			expect_no_log();
			break;
		case 1:
			msg = below_msg("/srv/results", flap_steps[k].have, "1 GiB");
			expect_one_line(LOG_WARNING, msg, flap_steps[k].free);
			free(msg);
			warnings++;
			break;
		case 2:
			msg = again_msg("/srv/results", flap_steps[k].have, "1 GiB");
			expect_one_line(LOG_NOTICE, msg, flap_steps[k].free);
			free(msg);
			notices++;
			break;
		}
	}
	ck_assert_int_eq(f.p[0].calls, (int)GC_ARRAY_SIZE(flap_steps));
	ck_assert_int_eq(warnings, 3);
	ck_assert_int_eq(notices, 3);
}
END_TEST

/* ---- core: several paths ---- */

START_TEST(test_several_paths)
{
	struct fake f = { .p = {
		{ "/var/lib/gcdrop", 5 * GIB, 0, 0 },
		{ "/srv/r1", 5 * GIB, 0, 0 },
		{ "/srv/r2", 5 * GIB, 0, 0 },
	} };
	struct diskguard_probe probe = { fake_probe, &f };
	const char *paths[] = { "/var/lib/gcdrop", "/srv/r1", NULL, "/srv/r1", "/srv/r2" };
	struct diskguard *g;
	char *msg;

	/* Assumptions: state_dir and two results dirs (one listed twice), min 1 GiB. */
	g = diskguard_new(&probe);
	ck_assert_ptr_nonnull(g);
	ck_assert(diskguard_ok(g));		/* nothing guarded yet */
	ck_assert(diskguard_check_all(g));
	ck_assert_int_eq(diskguard_set(g, GIB, paths, GC_ARRAY_SIZE(paths)), 0);
	ck_assert_uint_eq(diskguard_n_paths(g), 3);
	ck_assert_str_eq(diskguard_path(g, 0), "/var/lib/gcdrop");
	ck_assert_str_eq(diskguard_path(g, 1), "/srv/r1");
	ck_assert_str_eq(diskguard_path(g, 2), "/srv/r2");
	ck_assert_ptr_null(diskguard_path(g, 3));
	ck_assert_ptr_null(diskguard_path_state(g, 3));

	ck_assert(diskguard_check_all(g));
	expect_no_log();
	ck_assert_int_eq(f.p[1].calls, 1);	/* the duplicate is measured once */

	/* One results dir runs low: no new work, one line naming that path only. */
	f.p[1].free = 100 * MIB;
	ck_assert(!diskguard_check_all(g));
	ck_assert(!diskguard_ok(g));
	msg = below_msg("/srv/r1", "100 MiB", "1 GiB");
	expect_one_line(LOG_WARNING, msg, 100 * MIB);
	free(msg);
	ck_assert(!diskguard_path_state(g, 0)->tripped);
	ck_assert(diskguard_path_state(g, 1)->tripped);
	ck_assert(!diskguard_path_state(g, 2)->tripped);
	ck_assert_int_eq(diskguard_path_state(g, 1)->free, 100 * MIB);
	ck_assert(!diskguard_check_all(g));
	expect_no_log();

	/* It recovers while the state dir runs low: still no new work. */
	f.p[1].free = 2 * GIB;
	f.p[0].free = 10 * MIB;
	ck_assert(!diskguard_check_all(g));
	{
		char *s = take_log();
		char *w = below_msg("/var/lib/gcdrop", "10 MiB", "1 GiB");
		char *n = again_msg("/srv/r1", "2 GiB", "1 GiB");

		ck_assert_msg(strstr(s, w) != NULL && strstr(s, n) != NULL, "log: %s", s);
		ck_assert(strstr(s, w) < strstr(s, n));	/* in path order */
		free(s);
		free(w);
		free(n);
	}
	f.p[0].free = GIB;
	ck_assert(diskguard_check_all(g));
	ck_assert(diskguard_ok(g));
	msg = again_msg("/var/lib/gcdrop", "1 GiB", "1 GiB");
	expect_one_line(LOG_NOTICE, msg, GIB);
	free(msg);
	g = diskguard_free(g);
	ck_assert_ptr_null(g);
	ck_assert_ptr_null(diskguard_free(NULL));
}
END_TEST

/* ---- recovery: reloads ---- */

START_TEST(test_reload_keeps_state)
{
	struct fake f = { .p = {
		{ "/a", 100 * MIB, 0, 0 },
		{ "/b", 100 * MIB, 0, 0 },
		{ "/c", 5 * GIB, 0, 0 },
	} };
	struct diskguard_probe probe = { fake_probe, &f };
	const char *ab[] = { "/a", "/b" }, *ac[] = { "/a", "/c" };
	struct diskguard *g = diskguard_new(&probe);
	char *msg;

	/* Assumptions: /a and /b are low; a reload keeps /a, drops /b, adds a healthy /c. */
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(diskguard_set(g, GIB, ab, 2), 0);
	ck_assert(!diskguard_check_all(g));
	free(take_log());
	ck_assert_int_eq(diskguard_set(g, GIB, ac, 2), 0);
	ck_assert(!diskguard_ok(g));		/* /a's verdict survived the reload */
	ck_assert(diskguard_path_state(g, 0)->tripped);
	ck_assert(!diskguard_path_state(g, 1)->tripped);
	ck_assert(!diskguard_check_all(g));
	expect_no_log();			/* no repeated warning for /a, nothing for /c */
	ck_assert_int_eq(f.p[1].calls, 1);	/* /b is no longer measured */

	/* A reload that lowers min_free_space below what /a has: one notice. */
	ck_assert_int_eq(diskguard_set(g, 64 * MIB, ac, 2), 0);
	ck_assert(diskguard_check_all(g));
	msg = again_msg("/a", "100 MiB", "64 MiB");
	expect_one_line(LOG_NOTICE, msg, 100 * MIB);
	free(msg);

	/* Raised again, then the guard turned off while tripped: the pause ends, said once. */
	ck_assert_int_eq(diskguard_set(g, GIB, ac, 2), 0);
	ck_assert(!diskguard_check_all(g));
	free(take_log());
	ck_assert_int_eq(diskguard_set(g, 0, ac, 2), 0);
	ck_assert(diskguard_check_all(g));
	expect_one_line(LOG_NOTICE, "free space on '/a' is no longer checked (min_free_space 0): "
	    "new work is started again", -1);
	ck_assert(diskguard_check_all(g));
	expect_no_log();

	/* An empty reload guards nothing. */
	ck_assert_int_eq(diskguard_set(g, GIB, NULL, 0), 0);
	ck_assert_uint_eq(diskguard_n_paths(g), 0);
	ck_assert(diskguard_check_all(g));
	diskguard_free(g);
}
END_TEST

START_TEST(test_set_config)
{
	struct config_watch w[3] = {
		{ .name = "ct", .results_dir = "/srv/results/ct" },
		{ .name = "mr" },
		{ .name = "us", .results_dir = "/srv/results/us" },
	};
	struct config cfg = {
		.state_dir = "/var/lib/gcdrop", .min_free_space = GIB, .watches = w, .n_watches = 3,
	};
	struct fake f = { .p = {
		{ "/var/lib/gcdrop", 5 * GIB, 0, 0 },
		{ "/srv/results/ct", 5 * GIB, 0, 0 },
		{ "/srv/results/us", 10 * MIB, 0, 0 },
	} };
	struct diskguard_probe probe = { fake_probe, &f };
	struct diskguard *g = diskguard_new(&probe);
	char *msg;

	/* Assumptions: the state dir and the results_dir of each watch that has one. */
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(diskguard_set_config(g, &cfg), 0);
	ck_assert_uint_eq(diskguard_n_paths(g), 3);
	ck_assert_str_eq(diskguard_path(g, 0), "/var/lib/gcdrop");
	ck_assert_str_eq(diskguard_path(g, 1), "/srv/results/ct");
	ck_assert_str_eq(diskguard_path(g, 2), "/srv/results/us");
	ck_assert(!diskguard_check_all(g));
	msg = below_msg("/srv/results/us", "10 MiB", "1 GiB");
	expect_one_line(LOG_WARNING, msg, 10 * MIB);
	free(msg);
	diskguard_free(g);
}
END_TEST

/* ---- errors: probes that fail ---- */

START_TEST(test_probe_errors)
{
	struct fake f = { .p = { { "/mnt/gone", 5 * GIB, EACCES, 0 } } };
	struct diskguard_probe probe = { fake_probe, &f };
	struct diskguard_state st = DISKGUARD_STATE_INIT;
	char *msg;

	/* Assumptions: a probe that fails decides nothing and is reported once per errno. */
	ck_assert_int_eq(diskguard_check("/mnt/gone", GIB, &probe, &st), -EACCES);
	ck_assert(!st.tripped);
	expect_one_line(LOG_WARNING, "cannot measure free space on '/mnt/gone': Permission denied, "
	    "ignoring", -1);
	ck_assert_int_eq(diskguard_check("/mnt/gone", GIB, &probe, &st), -EACCES);
	expect_no_log();
	f.p[0].err = EIO;
	ck_assert_int_eq(diskguard_check("/mnt/gone", GIB, &probe, &st), -EIO);
	expect_one_line(LOG_WARNING,
	    "cannot measure free space on '/mnt/gone': Input/output error, ignoring", -1);

	/* It works again and is low: the warning about space, nothing about the probe. */
	f.p[0].err = 0;
	f.p[0].free = MIB;
	ck_assert_int_eq(diskguard_check("/mnt/gone", GIB, &probe, &st), -ENOSPC);
	msg = below_msg("/mnt/gone", "1 MiB", "1 GiB");
	expect_one_line(LOG_WARNING, msg, MIB);
	free(msg);

	/* Failing while tripped: still tripped (a guard does not open on ignorance). */
	f.p[0].err = EACCES;
	ck_assert_int_eq(diskguard_check("/mnt/gone", GIB, &probe, &st), -EACCES);
	ck_assert(st.tripped);
	ck_assert_int_eq(st.free, MIB);
	free(take_log());
	f.p[0].err = 0;
	f.p[0].free = 2 * GIB;
	ck_assert_int_eq(diskguard_check("/mnt/gone", GIB, &probe, &st), 0);
	ck_assert(!st.tripped);
	msg = again_msg("/mnt/gone", "2 GiB", "1 GiB");
	expect_one_line(LOG_NOTICE, msg, 2 * GIB);
	free(msg);
}
END_TEST

static int
statvfs_as_nobody(void *ud)
{
	int64_t free_bytes;

	return diskguard_statvfs(ud, &free_bytes) == -EACCES ? 0 : 1;
}

START_TEST(test_statvfs_paths)
{
	char *missing = tu_strdupf("%s/results/not/yet", g_dir);
	char *priv = tu_strdupf("%s/private", g_dir);
	char *inside = tu_strdupf("%s/private/x", g_dir);
	int64_t free_bytes = -1;

	/* Assumptions: a missing path is measured on its nearest existing ancestor. */
	ck_assert_int_eq(diskguard_statvfs(missing, &free_bytes), 0);
	ck_assert_int_ge(free_bytes, 0);
	free_bytes = -1;
	ck_assert_int_eq(diskguard_statvfs("relative/not/there", &free_bytes), 0);
	ck_assert_int_ge(free_bytes, 0);

	/* A directory nobody may search is an error (EACCES), not an ancestor's number. */
	ck_assert_int_eq(mkdir(priv, 0700), 0);
	ck_assert_int_eq(chmod(g_dir, 0755), 0);
	ck_assert_int_eq(tu_as_nobody(statvfs_as_nobody, inside), 0);
	free(missing);
	free(priv);
	free(inside);
}
END_TEST

/* ---- recovery: the real probe on a small tmpfs ---- */

START_TEST(test_tmpfs)
{
	char *mnt = tu_strdupf("%s/mnt", g_dir);
	char *file = tu_strdupf("%s/mnt/fill", g_dir);
	char *later = tu_strdupf("%s/mnt/results/case", g_dir);
	const char *paths[1];
	struct diskguard *g = NULL;
	char *block, *msg;
	int64_t free_bytes = -1;
	int fd;

	/*
	 * Assumptions: a 1 MiB tmpfs (empty: 1 MiB free, nothing reserved), min 768
	 * KiB; a 512 KiB file trips the guard, removing it releases it.
	 */
	ck_assert_int_eq(mkdir(mnt, 0755), 0);
	if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", mnt, "tmpfs", 0, "size=1m") < 0) {
		printf("check_diskguard: SKIPPED test_tmpfs: cannot mount a tmpfs here (%s)\n",
		    strerror(errno));
		goto done;
	}
	ck_assert_int_eq(diskguard_statvfs(mnt, &free_bytes), 0);
	ck_assert_int_eq(free_bytes, MIB);
	ck_assert_int_eq(diskguard_statvfs(later, &free_bytes), 0);	/* measured on mnt */
	ck_assert_int_eq(free_bytes, MIB);

	g = diskguard_new(NULL);
	ck_assert_ptr_nonnull(g);
	paths[0] = mnt;
	ck_assert_int_eq(diskguard_set(g, 768 * KIB, paths, 1), 0);
	ck_assert(diskguard_check_all(g));
	expect_no_log();

	block = calloc(1, 512 * KIB);
	ck_assert_ptr_nonnull(block);
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, block, 512 * KIB), 512 * KIB);
	ck_assert_int_eq(close(fd), 0);
	free(block);
	ck_assert(!diskguard_check_all(g));
	msg = below_msg(mnt, "512 KiB", "768 KiB");
	expect_one_line(LOG_WARNING, msg, 512 * KIB);
	free(msg);
	ck_assert(!diskguard_check_all(g));
	expect_no_log();

	ck_assert_int_eq(unlink(file), 0);
	ck_assert(diskguard_check_all(g));
	msg = again_msg(mnt, "1 MiB", "768 KiB");
	expect_one_line(LOG_NOTICE, msg, MIB);
	free(msg);
	g = diskguard_free(g);
	ck_assert_int_eq(umount2(mnt, MNT_DETACH), 0);
done:
	free(mnt);
	free(file);
	free(later);
}
END_TEST

static Suite *
diskguard_suite(void)
{
	Suite *s = suite_create("diskguard");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_threshold, 0, GC_ARRAY_SIZE(threshold_cases));
	tcase_add_test(tc, test_flapping);
	tcase_add_test(tc, test_several_paths);
	tcase_add_test(tc, test_set_config);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_probe_errors);
	tcase_add_test(tc, test_statvfs_paths);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_reload_keeps_state);
	tcase_add_test(tc, test_tmpfs);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(diskguard_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
