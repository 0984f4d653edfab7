/*
 * e2e_upload.c: big cases end to end with the real `gcdrop run` (issue 5).
 *
 * Property proved by the suite: a 300 MiB case dropped into an archive watch, and
 * one dropped into a reader-study watch, each end succeeded as exactly one archive
 * item (one display set), byte-identical on the platform (the sha256 of the
 * source equals the sha256 of what the emulator stored, for the upload and for
 * the imported image's file), sent in parts of the contract's size (32 MiB, the
 * last one the rest) with several parts in flight at once but never more than
 * `workers`, each part sent exactly once, within a stated request bound, and
 * with a daemon whose memory does not grow with the part size.
 *
 * The daemon runs with its default part size (GCDROP_PART_SIZE unset in effect)
 * against the emulator over HTTPS on 127.0.0.1, which keeps its default minimum
 * part size (5 MiB), so the completion is checked against S3's rule. The cases go
 * one after the other so that the time and the requests of each can be told
 * apart; both are printed ("e2e_upload: ..." lines) for the record:
 *   upload    first part byte to completion, from the emulator's storage clock
 *             (split: the parts, then the completion: the daemon hashes the file
 *             for the receipt before it completes, the emulator assembles);
 *   case      drop to succeeded (includes the import and its polls);
 *   requests  every request the emulator saw for the case (lookups included).
 *
 * The files are generated, never committed: 1 MiB of seeded pseudo-random bytes,
 * each MiB stamped with its index (so that a part sent in the wrong place changes
 * the digest), written with write(2) and hashed while being written.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "relutil.h"
#include "sha256.h"
#include "testutil.h"

#define MIB ((size_t)1 << 20)
#define PART (32 * MIB)		/* the contract's part size (section 3) */
#define WORKERS 4

static const char MHA_HEAD[] = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 1\n"
			       "ElementSpacing = 1 1 1\nElementType = MET_UCHAR\n"
			       "ElementDataFile = LOCAL\n";

static struct ru_env E;
static char *arch, *study;
static size_t big_size;		/* 300 MiB; $GCDROP_E2E_BIG_MIB for slow runs (valgrind) */

static void
setup(void)
{
	/* Default limits: non-final parts must be at least 5 MiB, as on S3. */
	struct fakegc_opts o = {.tick = 0.05};
	char *w, *g;

	big_size = (size_t)ru_env_long("GCDROP_E2E_BIG_MIB", 300) * MIB;
	ru_setup(&E, "e2e_upload", &o);
	arch = ru_mkdir(&E, "in-arch");
	study = ru_mkdir(&E, "in-study");
	w = tu_strdupf(" { name = \"arch\"; path = \"%s\"; archive = \"demo-archive\";\n"
		       "   settle_seconds = 0; },\n"
		       " { name = \"study\"; path = \"%s\"; reader_study = \"demo-reader-study\";\n"
		       "   settle_seconds = 0; }",
		       arch, study);
	g = tu_strdupf("workers = %d;\nmin_free_space = \"1M\";\nlog_level = \"info\";\n",
		       WORKERS);
	ru_write_config(&E, g, w);
	free(w);
	free(g);
}

static void
teardown(void)
{
	ru_teardown(&E);
	free(arch);
	free(study);
}

/*
 * A .mha file of exactly 'size' bytes at path (header, then payload), seeded;
 * its sha256 in ret_sha.
 */
static void
write_big(const char *path, size_t size, uint64_t seed, char ret_sha[SHA256_HEX_SIZE])
{
	size_t head = strlen(MHA_HEAD), done = 0;
	char *block = malloc(MIB);
	uint64_t s = seed * 2654435761u + 1;
	struct sha256 ctx;
	uint8_t digest[SHA256_DIGEST_SIZE];
	int fd;

	ck_assert_ptr_nonnull(block);
	for (size_t i = 0; i < MIB; i += sizeof(uint64_t)) {
		uint64_t x = ru_rand(&s);

		memcpy(block + i, &x, sizeof(x));
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	sha256_init(&ctx);
	for (size_t mib = 0; done < size; mib++) {
		size_t n = size - done < MIB ? size - done : MIB;
		char stamp[32];
		int len = snprintf(stamp, sizeof(stamp), "<%zu:%llu>", mib,
				   (unsigned long long)seed);

		memcpy(block, stamp, (size_t)len);
		if (mib == 0)
			memcpy(block, MHA_HEAD, head);
		ck_assert_int_eq(write(fd, block, n), (ssize_t)n);
		sha256_update(&ctx, block, n);
		done += n;
	}
	ck_assert_int_eq(close(fd), 0);
	sha256_final(&ctx, digest);
	sha256_to_hex(digest, ret_sha);
	free(block);
}

/* The daemon's peak resident memory so far, in KiB (VmHWM); -1 if unknown. */
static long
daemon_hwm_kib(void)
{
	char *p = tu_strdupf("/proc/%d/status", (int)E.pid);
	char *text = tu_read_file(p, NULL), *line;
	long kib = -1;

	line = text != NULL ? strstr(text, "VmHWM:") : NULL;
	if (line != NULL)
		kib = strtol(line + 6, NULL, 10);
	free(text);
	free(p);
	return kib;
}

/* The upload (from the emulator's state) whose filename is 'name'; NULL if none. */
static const cJSON *
upload_named(const cJSON *st, const char *name)
{
	const cJSON *u;

	cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(st, "uploads"))
	{
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(u, "filename");

		if (cJSON_IsString(f) && strcmp(f->valuestring, name) == 0)
			return u;
	}
	return NULL;
}

/* sha256 of the one file of the image in the first value of element 'pk' of 'key'. */
static void
stored_image_sha(const cJSON *st, const char *key, const char *pk, char ret[SHA256_HEX_SIZE])
{
	const cJSON *obj = ru_fg_find(st, key, pk), *v;

	ret[0] = '\0';
	cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(obj, "values"))
	{
		const cJSON *img = cJSON_GetObjectItemCaseSensitive(v, "image");
		char **shas;
		int n;

		if (!cJSON_IsString(img))
			continue;
		shas = ru_fg_image_shas(st, img->valuestring, &n);
		if (n == 1)
			snprintf(ret, SHA256_HEX_SIZE, "%s", shas[0]);
		ru_strv_free(shas, n);
	}
}

static double
num(const cJSON *o, const char *key)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsNumber(x) ? x->valuedouble : -1;
}

struct big_case {
	const char *watch;	/* "arch" or "study" */
	const char *watchdir;
	const char *name;	/* the file name, also the case name */
	const char *list;	/* the emulator's list: "archive_items" or "display_sets" */
	const char *remote;	/* the case's remote key: "archive_item" or "display_set" */
	uint64_t seed;
};

struct fill_big {
	uint64_t seed;
	char sha[SHA256_HEX_SIZE];
};

static void
fill_big(const char *path, void *ud)
{
	struct fill_big *f = ud;

	write_big(path, big_size, f->seed, f->sha);
}

/*
 * Drop one 300 MiB case, wait for it to succeed and check it (the suite's
 * property); print its numbers.
 */
static void
run_big_case(const struct big_case *bc)
{
	const int n_parts = (int)((big_size + PART - 1) / PART);
	const double mib = (double)big_size / MIB;
	struct fill_big fill = {.seed = bc->seed};
	char sha_item[SHA256_HEX_SIZE];
	long req0, req, hwm;
	long long t0, t_case;
	cJSON *st, *parts, *storage, *root;
	const cJSON *u, *pu, *c;
	const char *pk_upload;
	char *pk;
	double t_upload, t_parts;

	st = ru_fg_state(&E);
	req0 = ru_fg_requests(st);
	cJSON_Delete(st);
	ck_assert_int_eq(fakegc_storage_reset(E.fg), 0);

	ru_drop(&E, bc->watchdir, bc->name, false, fill_big, &fill);
	t0 = tu_now_ms();	/* the rename into the watch folder */
	if (!ru_wait_state(&E, bc->name, "succeeded", 240000)) {
		ru_log_tail(&E, 3000);
		ck_abort_msg("%s did not succeed in time", bc->name);
	}
	t_case = tu_now_ms() - t0;

	st = ru_fg_state(&E);
	parts = fakegc_parts(E.fg);
	storage = fakegc_storage(E.fg);
	root = ru_status(&E);
	ck_assert_ptr_nonnull(parts);
	ck_assert_ptr_nonnull(storage);
	req = ru_fg_requests(st) - req0;
	hwm = daemon_hwm_kib();

	/* Exactly one item (display set), made of the bytes that were dropped. */
	ck_assert_int_eq(ru_fg_count(st, bc->list), 1);
	c = ru_case(root, bc->watch, bc->name);
	ck_assert_ptr_nonnull(c);
	pk = ru_url_pk(ru_case_remote(c, bc->remote));
	ck_assert_ptr_nonnull(ru_fg_find(st, bc->list, pk));
	stored_image_sha(st, bc->list, pk, sha_item);
	ck_assert_str_eq(sha_item, fill.sha);
	u = upload_named(st, bc->name);
	ck_assert_ptr_nonnull(u);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(u, "sha256")),
			 fill.sha);
	ck_assert_int_eq((long long)num(u, "size"), (long long)big_size);

	/* Parts of 32 MiB (the last: the rest), each sent once, several at a time. */
	pk_upload = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(u, "pk"));
	pu = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(parts, "uploads"),
					      pk_upload);
	ck_assert_ptr_nonnull(pu);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(pu, "puts")),
			 n_parts);
	for (int n = 1; n <= n_parts; n++) {
		char key[16];
		size_t want = n < n_parts ? PART : big_size - (size_t)(n_parts - 1) * PART;

		snprintf(key, sizeof(key), "%d", n);
		ck_assert_int_eq((long)num(cJSON_GetObjectItemCaseSensitive(pu, "puts"), key), 1);
		ck_assert_int_eq((long)num(cJSON_GetObjectItemCaseSensitive(pu, "acks"), key), 1);
		ck_assert_int_eq((long long)num(cJSON_GetObjectItemCaseSensitive(pu, "sizes"), key),
				 (long long)want);
	}
	if (n_parts > 1)
		ck_assert_int_ge((long)num(parts, "in_flight_max"), 2);
	ck_assert_int_le((long)num(parts, "in_flight_max"), WORKERS);
	/*
	 * Memory: a part in flight costs a small buffer, not the part; whole parts
	 * in flight would be WORKERS x 32 MiB = 128 MiB. (Not under a sanitizer or
	 * valgrind, whose own memory is what VmHWM would show.)
	 */
#ifndef __SANITIZE_ADDRESS__
	if (hwm >= 0 && getenv("GCDROP_VALGRIND_DAEMON") == NULL)
		ck_assert_msg(hwm < 96 * 1024, "daemon peak RSS %ld KiB", hwm);
#endif

	/*
	 * Request bound, fault-free: the watches' lookups (at most 8 per watch,
	 * and only the first case pays them), POST uploads/, one presign per
	 * batch of 5 parts, the PUTs, the completion; then the session, its
	 * polls, the item or display set, its PATCH and polls: at most 12.
	 */
	{
		long bound = 2 * 8 + 1 + (n_parts + 4) / 5 + n_parts + 1 + 12;

		t_upload = num(storage, "last_complete") - num(storage, "first_byte");
		t_parts = num(storage, "last_ack") - num(storage, "first_byte");
		fprintf(stderr, "e2e_upload: %s case (%s, %.0f MiB, %d parts of 32 MiB): "
			"upload %.2f s (%.0f MiB/s; parts %.2f s, then completion %.2f s), "
			"case %.2f s, %ld requests (bound %ld), at most %d parts in flight, "
			"daemon peak RSS %ld KiB\n",
			bc->watch, bc->list, mib, n_parts, t_upload, mib / t_upload, t_parts,
			t_upload - t_parts,
			(double)t_case / 1000, req, bound, (int)num(parts, "in_flight_max"), hwm);
		ck_assert_msg(req <= bound, "%ld requests, bound %ld", req, bound);
	}
	free(pk);
	cJSON_Delete(root);
	cJSON_Delete(storage);
	cJSON_Delete(parts);
	cJSON_Delete(st);
}

START_TEST(test_300mib_archive_and_reader_study)
{
	static const struct big_case arch_case = {
		"arch", NULL, "big-arch.mha", "archive_items", "archive_item", 11};
	static const struct big_case study_case = {
		"study", NULL, "big-study.mha", "display_sets", "display_set", 12};
	/* ru_start sets 64 KiB parts for the reliability suites; 0 is the default. */
	char *env[] = {"GCDROP_PART_SIZE=0", NULL};
	struct big_case a = arch_case, s = study_case;
	long long t0 = tu_now_ms();
	cJSON *st;

	a.watchdir = arch;
	s.watchdir = study;
	ru_start_wait(&E, env, 30000);
	run_big_case(&a);
	run_big_case(&s);
	ck_assert_int_eq(ru_stop(&E, SIGTERM), 0);
	st = ru_fg_state(&E);
	ck_assert_int_eq(ru_fg_count(st, "archive_items"), 1);
	ck_assert_int_eq(ru_fg_count(st, "display_sets"), 1);
	ck_assert_int_eq(ru_fg_count(st, "leaks"), 0);
	cJSON_Delete(st);
	fprintf(stderr, "e2e_upload: the test took %.1f s\n",
		(double)(tu_now_ms() - t0) / 1000);
}
END_TEST

static Suite *
e2e_suite(void)
{
	Suite *s = suite_create("e2e_upload");
	TCase *tc = tcase_create("limits");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_300mib_archive_and_reader_study);
	tcase_set_timeout(tc, 600);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(e2e_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
