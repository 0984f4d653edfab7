/*
 * check_scan.c: tests of case walks and fingerprints (src/scan.c) and of SHA-256
 * (src/sha256.c).
 *
 * core: FIPS 180-4 test vectors; the ignore rules; directory and single-file
 * cases give exact, sorted entries (names with spaces, quotes, newlines and
 * bytes that are not UTF-8 kept byte for byte); the fingerprint is stable and
 * changes with a touch, a size change or a rename but not with the ready marker;
 * the marker and ignored names are not entries; listing the cases of a watch.
 * limits: an empty case, 10 levels, the depth cap (256 levels pass, 257 do
 * not), the entry cap, 20,000 files, the warning cap.
 * errors: unreadable directories and files (as nobody), symlinks out of the
 * case or the watch folder refused with the path named, symlinks inside and
 * symlink loops skipped, fifos and sockets skipped with a warning, bad names.
 * recovery: files vanishing during the walk are skipped and flagged as changed.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "scan.h"
#include "sha256.h"
#include "testutil.h"

static char *root;	/* the watch folder of the current test */

static void
setup(void)
{
	root = tu_mkdtemp("scan");
	/* nobody must be able to enter it for the permission tests. */
	ck_assert_int_eq(chmod(root, 0755), 0);
}

static void
teardown(void)
{
	tu_rmtree(root);
	free(root);
	root = NULL;
}

/* mkdir -p for every directory of 'rel' under the watch folder, then the file. */
static void
mk(const char *rel, const char *content)
{
	char *path = tu_strdupf("%s/%s", root, rel);

	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		ck_assert(mkdir(path, 0755) == 0 || errno == EEXIST);
		*p = '/';
	}
	if (content)
		tu_write_file(path, content, -1, 0644);
	else
		ck_assert(mkdir(path, 0755) == 0 || errno == EEXIST);
	free(path);
}

static char *
at(const char *rel)
{
	return tu_strdupf("%s/%s", root, rel);
}

/* Walk a case that must succeed. */
static void
scan_ok(const char *case_name, const struct scan_opts *opts, struct scan_result *res)
{
	char *err = NULL;
	int r = scan_case(AT_FDCWD, root, case_name, opts, res, &err);

	ck_assert_msg(r == 0, "scan_case('%s') = %d: %s", case_name, r, err ? err : "");
	ck_assert_ptr_null(err);
}

/* Walk a case that must fail with 'want' and this exact message. */
static void
scan_fails(const char *case_name, int want, const char *want_msg)
{
	struct scan_result res;
	char *err = NULL;
	int r;

	memset(&res, 0xaa, sizeof(res));
	r = scan_case(AT_FDCWD, root, case_name, NULL, &res, &err);
	ck_assert_int_eq(r, want);
	ck_assert_ptr_nonnull(err);
	ck_assert_str_eq(err, want_msg);
	/* ret is untouched on failure. */
	ck_assert_uint_eq(((unsigned char *)&res)[0], 0xaa);
	free(err);
}

/* FIPS 180-2 appendix B / NIST examples. */
static const struct {
	const char *msg;
	size_t repeat;		/* the message repeated this many times */
	const char *digest;
} vectors[] = {
	{ "abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ "", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
	  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	{ "a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
	/* Around the padding boundary: 55, 56 and 64 bytes. */
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1,
	  "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1,
	  "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1,
	  "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
};

START_TEST(test_sha256_vectors)
{
	struct sha256 ctx;
	uint8_t digest[SHA256_DIGEST_SIZE];
	char hex[SHA256_HEX_SIZE];
	size_t len = strlen(vectors[_i].msg);

	/* In one call when short; in uneven pieces (1, 7, 64, 13 ... bytes) when long. */
	sha256_init(&ctx);
	if (vectors[_i].repeat == 1) {
		sha256_update(&ctx, vectors[_i].msg, len);
	} else {
		static const size_t pieces[] = { 1, 7, 64, 13, 200, 3 };
		size_t total = len * vectors[_i].repeat, done = 0, k = 0;
		char *big = malloc(total);

		ck_assert_ptr_nonnull(big);
		for (size_t i = 0; i < vectors[_i].repeat; i++)
			memcpy(big + i * len, vectors[_i].msg, len);
		while (done < total) {
			size_t n = pieces[k++ % GC_ARRAY_SIZE(pieces)];

			if (n > total - done)
				n = total - done;
			sha256_update(&ctx, big + done, n);
			done += n;
		}
		free(big);
	}
	sha256_final(&ctx, digest);
	sha256_to_hex(digest, hex);
	ck_assert_str_eq(hex, vectors[_i].digest);

	if (vectors[_i].repeat == 1) {
		sha256_hex(vectors[_i].msg, len, hex);
		ck_assert_str_eq(hex, vectors[_i].digest);
	}
}
END_TEST

START_TEST(test_sha256_file)
{
	char hex[SHA256_HEX_SIZE] = "untouched";
	char *fifo = at("fifo");
	int dfd;

	/* A file digests to its content's digest; symlinks and fifos are refused. */
	mk("abc.txt", "abc");
	dfd = open(root, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dfd, 0);
	ck_assert_int_eq(sha256_file(dfd, "abc.txt", hex), 0);
	ck_assert_str_eq(hex, vectors[0].digest);
	ck_assert_int_eq(symlinkat("abc.txt", dfd, "link"), 0);
	ck_assert_int_eq(sha256_file(dfd, "link", hex), -ELOOP);
	ck_assert_int_eq(mkfifo(fifo, 0644), 0);
	ck_assert_int_eq(sha256_file(dfd, "fifo", hex), -EINVAL);
	ck_assert_int_eq(sha256_file(dfd, "missing", hex), -ENOENT);
	ck_assert_str_eq(hex, vectors[0].digest);
	close(dfd);
	free(fifo);
}
END_TEST

static const struct {
	const char *name;
	bool ignored;
} ignore_cases[] = {
	{ ".hidden", true }, { ".", true }, { "..", true }, { "", true },
	{ "scan.tmp", true }, { "scan.part", true }, { "scan.partial", true }, { "scan~", true },
	{ "scan.mha", false }, { "tmp", false }, { "scan.tmp.mha", false }, { "a.TMP", false },
	{ "part", false }, { "x.parts", false }, { "~x", false }, { "a b.dcm", false },
};

START_TEST(test_name_ignored)
{
	ck_assert_msg(scan_name_ignored(ignore_cases[_i].name) == ignore_cases[_i].ignored,
		      "'%s'", ignore_cases[_i].name);
	ck_assert(scan_name_ignored(NULL));
}
END_TEST

START_TEST(test_dir_case)
{
	struct scan_result res;
	struct stat st;
	char *p;

	/* Assumptions: files at three levels; entries sorted byte-wise, stats exact. */
	mk("case/b.dcm", "bb");
	mk("case/a/z.dcm", "zzz");
	mk("case/a/y/x.dcm", "");
	mk("case/a.dcm", "a");
	mk("case/empty/", NULL);
	scan_ok("case", NULL, &res);
	ck_assert(res.is_dir);
	ck_assert_uint_eq(res.n, 4);
	ck_assert_str_eq(res.entries[0].relpath, "a.dcm");
	ck_assert_str_eq(res.entries[1].relpath, "a/y/x.dcm");
	ck_assert_str_eq(res.entries[2].relpath, "a/z.dcm");
	ck_assert_str_eq(res.entries[3].relpath, "b.dcm");
	ck_assert_uint_eq(res.entries[1].relpath_len, strlen("a/y/x.dcm"));
	ck_assert_int_eq(res.entries[0].size, 1);
	ck_assert_int_eq(res.entries[1].size, 0);
	ck_assert_int_eq(res.entries[2].size, 3);
	ck_assert_int_eq(res.total_bytes, 6);
	p = at("case/a/z.dcm");
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(res.entries[2].mtime_ns,
			 (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
	ck_assert(S_ISREG(res.entries[2].mode));
	free(p);
	ck_assert_uint_eq(strlen(res.fingerprint), 64);
	ck_assert(!res.changed);
	ck_assert(!res.marker_present);
	ck_assert_uint_eq(res.n_warnings, 0);
	ck_assert_ptr_nonnull(scan_find(&res, "a/z.dcm"));
	ck_assert_ptr_eq(scan_find(&res, "b.dcm"), &res.entries[3]);
	ck_assert_ptr_null(scan_find(&res, "a"));
	scan_result_clear(&res);
	ck_assert_uint_eq(res.n, 0);
	ck_assert_ptr_null(res.entries);
	scan_result_clear(&res);
	scan_result_clear(NULL);
}
END_TEST

START_TEST(test_single_file_case)
{
	struct scan_result res, dir;

	/* A single file is its own only entry; a directory holding a file of the same
	 * name has another fingerprint. */
	mk("scan.mha", "12345");
	scan_ok("scan.mha", NULL, &res);
	ck_assert(!res.is_dir);
	ck_assert_uint_eq(res.n, 1);
	ck_assert_str_eq(res.entries[0].relpath, "scan.mha");
	ck_assert_int_eq(res.total_bytes, 5);
	mk("x/scan.mha", "12345");
	scan_ok("x", NULL, &dir);
	ck_assert_str_ne(dir.fingerprint, res.fingerprint);
	ck_assert(!scan_same(&res, &dir));
	scan_result_clear(&res);
	scan_result_clear(&dir);
}
END_TEST

START_TEST(test_special_names)
{
	static const char *const names[] = {
		"with space.dcm", "quote'single.dcm", "quote\"double.dcm", "new\nline.dcm",
		"bad\xff\xfe byte.dcm", "caf\xc3\xa9.dcm", "tab\there", "back\\slash",
		"\xc3\xa9t\xc3\xa9.dcm",
	};
	struct scan_result res;
	char *dir = at("case");

	/* Every name comes back byte for byte; sorted as unsigned bytes. */
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	for (size_t i = 0; i < GC_ARRAY_SIZE(names); i++) {
		char *p = tu_strdupf("%s/%s", dir, names[i]);

		tu_write_file(p, names[i], -1, 0644);
		free(p);
	}
	scan_ok("case", NULL, &res);
	ck_assert_uint_eq(res.n, GC_ARRAY_SIZE(names));
	for (size_t i = 0; i < GC_ARRAY_SIZE(names); i++) {
		const struct scan_entry *e = scan_find(&res, names[i]);

		ck_assert_msg(e != NULL, "missing '%s'", names[i]);
		ck_assert_uint_eq(e->relpath_len, strlen(names[i]));
		ck_assert_int_eq(e->size, (int64_t)strlen(names[i]));
	}
	for (size_t i = 1; i < res.n; i++)
		ck_assert_int_lt(strcmp(res.entries[i - 1].relpath, res.entries[i].relpath), 0);
	/* A leading 0xc3 (é) sorts after every ASCII name. */
	ck_assert_str_eq(res.entries[res.n - 1].relpath, "\xc3\xa9t\xc3\xa9.dcm");
	scan_result_clear(&res);
	free(dir);
}
END_TEST

START_TEST(test_quote)
{
	static const struct {
		const char *in;
		const char *out;
	} q[] = {
		{ "plain name.dcm", "plain name.dcm" },
		{ "it's", "it\\'s" },
		{ "a\\b", "a\\\\b" },
		{ "new\nline\ttab\rcr", "new\\nline\\ttab\\rcr" },
		{ "\x01\x7f", "\\x01\\x7f" },
		{ "caf\xc3\xa9", "caf\xc3\xa9" },
		{ "bad\xff\xc3", "bad\\xff\\xc3" },
		{ "\xc2\x85", "\\xc2\\x85" },		/* C1 control NEL */
		{ "\xed\xa0\x80", "\\xed\\xa0\\x80" },	/* a surrogate */
		{ "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80" },
	};

	for (size_t i = 0; i < GC_ARRAY_SIZE(q); i++) {
		char *s = scan_quote(q[i].in, strlen(q[i].in));

		ck_assert_str_eq(s, q[i].out);
		free(s);
	}
}
END_TEST

/* Set a file's mtime to a given second. */
static void
set_mtime(const char *rel, time_t sec, long nsec)
{
	struct timespec ts[2] = { { sec, nsec }, { sec, nsec } };
	char *p = at(rel);

	ck_assert_int_eq(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
	free(p);
}

START_TEST(test_fingerprint)
{
	struct scan_result a, b, c;
	struct scan_opts opts = { .ready_marker = "READY" };
	char *from, *to;

	/* Assumptions: fixed mtimes, so nothing depends on the clock. */
	mk("case/s1/1.dcm", "one");
	mk("case/s1/2.dcm", "two");
	mk("case/s2/1.dcm", "three");
	set_mtime("case/s1/1.dcm", 1700000000, 1);
	set_mtime("case/s1/2.dcm", 1700000000, 2);
	set_mtime("case/s2/1.dcm", 1700000000, 3);

	/* Two walks agree. */
	scan_ok("case", &opts, &a);
	scan_ok("case", &opts, &b);
	ck_assert_str_eq(a.fingerprint, b.fingerprint);
	ck_assert(scan_same(&a, &b));
	scan_result_clear(&b);

	/* The marker neither is an entry nor changes the fingerprint. */
	mk("case/READY", "");
	scan_ok("case", &opts, &b);
	ck_assert(b.marker_present);
	ck_assert(!a.marker_present);
	ck_assert_str_eq(a.fingerprint, b.fingerprint);
	ck_assert(scan_same(&a, &b));
	scan_result_clear(&b);

	/* A touch (1 ns later) changes it. */
	set_mtime("case/s1/2.dcm", 1700000000, 3);
	scan_ok("case", &opts, &b);
	ck_assert_str_ne(a.fingerprint, b.fingerprint);
	ck_assert(!scan_same(&a, &b));
	scan_result_clear(&b);

	/* A size change with the same mtime changes it. */
	set_mtime("case/s1/2.dcm", 1700000000, 2);
	scan_ok("case", &opts, &b);
	ck_assert_str_eq(a.fingerprint, b.fingerprint);
	scan_result_clear(&b);
	mk("case/s1/2.dcm", "TWO!");
	set_mtime("case/s1/2.dcm", 1700000000, 2);
	scan_ok("case", &opts, &b);
	ck_assert_str_ne(a.fingerprint, b.fingerprint);
	ck_assert(!scan_same(&a, &b));

	/* A rename changes it. */
	from = at("case/s2/1.dcm");
	to = at("case/s2/9.dcm");
	ck_assert_int_eq(rename(from, to), 0);
	scan_ok("case", &opts, &c);
	ck_assert_str_ne(b.fingerprint, c.fingerprint);
	ck_assert(!scan_same(&b, &c));
	scan_result_clear(&a);
	scan_result_clear(&b);
	scan_result_clear(&c);
	free(from);
	free(to);
}
END_TEST

START_TEST(test_marker_and_ignored)
{
	struct scan_opts opts = { .ready_marker = ".ready" };
	struct scan_result res;

	/* A hidden marker works; it counts only at the top; hidden and temporary
	 * names (and a hidden directory with its contents) are skipped and counted. */
	mk("case/.ready", "");
	mk("case/img.dcm", "x");
	mk("case/sub/.ready", "");
	mk("case/sub/ok.dcm", "x");
	mk("case/sub/IM1.dcm.part", "x");
	mk("case/x.tmp", "x");
	mk("case/y.partial", "x");
	mk("case/z~", "x");
	mk("case/.git/config", "x");
	mk("case/.DS_Store", "x");
	scan_ok("case", &opts, &res);
	ck_assert(res.marker_present);
	ck_assert_uint_eq(res.n, 2);
	ck_assert_str_eq(res.entries[0].relpath, "img.dcm");
	ck_assert_str_eq(res.entries[1].relpath, "sub/ok.dcm");
	ck_assert_uint_eq(res.n_ignored, 7);
	ck_assert_uint_eq(res.n_warnings, 0);
	scan_result_clear(&res);

	/* Without a marker option the same name is simply ignored. */
	scan_ok("case", NULL, &res);
	ck_assert(!res.marker_present);
	ck_assert_uint_eq(res.n_ignored, 8);
	scan_result_clear(&res);

	/* A non-hidden marker name: not an entry either, and only at the top. */
	opts.ready_marker = "READY";
	mk("case/READY", "");
	mk("case/sub/READY", "");
	scan_ok("case", &opts, &res);
	ck_assert(res.marker_present);
	ck_assert_uint_eq(res.n, 3);
	ck_assert_str_eq(res.entries[1].relpath, "sub/READY");
	scan_result_clear(&res);

	/* A single-file case never has a marker. */
	mk("one.mha", "x");
	scan_ok("one.mha", &opts, &res);
	ck_assert(!res.marker_present);
	scan_result_clear(&res);
}
END_TEST

START_TEST(test_list_cases)
{
	char **names = NULL;
	size_t n = 99;
	char *p;

	/* Directories, files and symlinks are candidates; ignored names and special
	 * files are not; the list is sorted. */
	mk("b-case/x.dcm", "x");
	mk("a.mha", "x");
	mk(".hidden/x", "x");
	mk("upload.part", "x");
	mk("c~", "x");
	p = at("fifo");
	ck_assert_int_eq(mkfifo(p, 0644), 0);
	free(p);
	p = at("link");
	ck_assert_int_eq(symlink("/etc", p), 0);
	free(p);
	ck_assert_int_eq(scan_list_cases(AT_FDCWD, root, &names, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(names[0], "a.mha");
	ck_assert_str_eq(names[1], "b-case");
	ck_assert_str_eq(names[2], "link");
	scan_names_free(names, n);
	scan_names_free(NULL, 0);

	p = at("missing");
	ck_assert_int_eq(scan_list_cases(AT_FDCWD, p, &names, &n), -ENOENT);
	free(p);
}
END_TEST

START_TEST(test_empty_case)
{
	struct scan_result a, b;

	/* An empty folder walks fine: no entries, a fingerprint nonetheless. */
	mk("empty/", NULL);
	scan_ok("empty", NULL, &a);
	ck_assert(a.is_dir);
	ck_assert_uint_eq(a.n, 0);
	ck_assert_int_eq(a.total_bytes, 0);
	ck_assert_uint_eq(strlen(a.fingerprint), 64);
	mk("empty/.hidden", "x");
	scan_ok("empty", NULL, &b);
	ck_assert_uint_eq(b.n, 0);
	ck_assert_str_eq(a.fingerprint, b.fingerprint);
	scan_result_clear(&a);
	scan_result_clear(&b);
}
END_TEST

/* Create 'levels' nested directories "d/d/d..." under case_name, with a file at the bottom. */
static void
mk_nested(const char *case_name, unsigned levels)
{
	int fd, nfd;
	char *p = at(case_name);

	ck_assert_int_eq(mkdir(p, 0755), 0);
	fd = open(p, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	for (unsigned i = 0; i < levels; i++) {
		ck_assert_int_eq(mkdirat(fd, "d", 0755), 0);
		nfd = openat(fd, "d", O_RDONLY | O_DIRECTORY);
		ck_assert_int_ge(nfd, 0);
		close(fd);
		fd = nfd;
	}
	nfd = openat(fd, "bottom.dcm", O_WRONLY | O_CREAT, 0644);
	ck_assert_int_ge(nfd, 0);
	close(nfd);
	close(fd);
	free(p);
}

START_TEST(test_nested_10)
{
	struct scan_result res;

	mk_nested("case", 10);
	scan_ok("case", NULL, &res);
	ck_assert_uint_eq(res.n, 1);
	ck_assert_str_eq(res.entries[0].relpath, "d/d/d/d/d/d/d/d/d/d/bottom.dcm");
	scan_result_clear(&res);
}
END_TEST

START_TEST(test_depth_cap)
{
	struct scan_result res;
	struct scan_opts opts = { .max_depth = 3 };
	char *err = NULL;

	/* 256 levels pass with the default cap; 257 fail clearly. */
	mk_nested("deep256", SCAN_DEFAULT_MAX_DEPTH);
	scan_ok("deep256", NULL, &res);
	ck_assert_uint_eq(res.n, 1);
	ck_assert_uint_eq(res.entries[0].relpath_len, 2 * SCAN_DEFAULT_MAX_DEPTH + 10);
	scan_result_clear(&res);

	mk_nested("deep257", SCAN_DEFAULT_MAX_DEPTH + 1);
	ck_assert_int_eq(scan_case(AT_FDCWD, root, "deep257", NULL, &res, &err), -E2BIG);
	ck_assert_ptr_nonnull(strstr(err, "is nested too deep (more than 256 levels below the "
				      "case)"));
	ck_assert_ptr_nonnull(strstr(err, "directory 'deep257/d/d/d/"));
	free(err);

	/* A smaller cap from the options. */
	mk_nested("four", 4);
	ck_assert_int_eq(scan_case(AT_FDCWD, root, "four", &opts, &res, &err), -E2BIG);
	ck_assert_str_eq(err, "directory 'four/d/d/d/d' is nested too deep (more than 3 levels "
			 "below the case)");
	free(err);
}
END_TEST

START_TEST(test_entry_cap)
{
	struct scan_opts opts = { .max_entries = 5 };
	struct scan_result res;
	char *err = NULL;

	for (int i = 0; i < 6; i++) {
		char *rel = tu_strdupf("case/%d.dcm", i);

		mk(rel, "x");
		free(rel);
	}
	ck_assert_int_eq(scan_case(AT_FDCWD, root, "case", &opts, &res, &err), -E2BIG);
	ck_assert_str_eq(err, "case 'case' has more than 5 files");
	free(err);
	opts.max_entries = 6;
	scan_ok("case", &opts, &res);
	ck_assert_uint_eq(res.n, 6);
	scan_result_clear(&res);
}
END_TEST

START_TEST(test_20000_files)
{
	struct scan_result res;
	int dfd, sub = -1;
	long long t0;

	/* 20 series of 1,000 files: all found, sorted, reasonably quick. */
	mk("big/", NULL);
	dfd = open(root, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dfd, 0);
	for (int i = 0; i < 20000; i++) {
		char name[64];
		int fd;

		if (i % 1000 == 0) {
			snprintf(name, sizeof(name), "big/series%02d", i / 1000);
			ck_assert_int_eq(mkdirat(dfd, name, 0755), 0);
			if (sub >= 0)
				close(sub);
			sub = openat(dfd, name, O_RDONLY | O_DIRECTORY);
			ck_assert_int_ge(sub, 0);
		}
		snprintf(name, sizeof(name), "IM%05d.dcm", i);
		fd = openat(sub, name, O_WRONLY | O_CREAT, 0644);
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	close(sub);
	close(dfd);
	t0 = tu_now_ms();
	scan_ok("big", NULL, &res);
	ck_assert_uint_eq(res.n, 20000);
	ck_assert_str_eq(res.entries[0].relpath, "series00/IM00000.dcm");
	ck_assert_str_eq(res.entries[19999].relpath, "series19/IM19999.dcm");
	for (size_t i = 1; i < res.n; i++)
		ck_assert(strcmp(res.entries[i - 1].relpath, res.entries[i].relpath) < 0);
	/* Not a timed assertion: printed for the curious (CK_VERBOSITY=verbose). */
	fprintf(stderr, "scan of 20,000 files: %lld ms\n", tu_now_ms() - t0);
	scan_result_clear(&res);
}
END_TEST

/* Bind a unix socket at root/rel (relative bind: paths may exceed sun_path). */
static void
mk_socket(const char *dir_rel, const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *dir = at(dir_rel);
	int cwd = open(".", O_RDONLY | O_DIRECTORY);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);

	ck_assert_int_ge(cwd, 0);
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(chdir(dir), 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", name);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(fchdir(cwd), 0);
	close(s);
	close(cwd);
	free(dir);
}

START_TEST(test_special_files)
{
	struct scan_result res;
	char *p;

	/* A fifo and a socket are skipped with a warning each, and nothing blocks. */
	mk("case/img.dcm", "x");
	p = at("case/pipe");
	ck_assert_int_eq(mkfifo(p, 0644), 0);
	free(p);
	mk_socket("case", "sock");
	scan_ok("case", NULL, &res);
	ck_assert_uint_eq(res.n, 1);
	ck_assert_uint_eq(res.n_warnings, 2);
	ck_assert(!res.changed);
	/* readdir order is not sorted: find each warning. */
	ck_assert(strcmp(res.warnings[0], "'case/pipe' skipped: it is a fifo") == 0 ||
		  strcmp(res.warnings[1], "'case/pipe' skipped: it is a fifo") == 0);
	ck_assert(strcmp(res.warnings[0], "'case/sock' skipped: it is a socket") == 0 ||
		  strcmp(res.warnings[1], "'case/sock' skipped: it is a socket") == 0);
	scan_result_clear(&res);

	/* A case that is itself a fifo is not a case. */
	p = at("toppipe");
	ck_assert_int_eq(mkfifo(p, 0644), 0);
	free(p);
	scan_fails("toppipe", -EINVAL,
		   "case 'toppipe' is a special file, not a directory or a regular file");
}
END_TEST

START_TEST(test_warning_cap)
{
	struct scan_result res;

	/* 105 fifos: 100 warnings and one summary. */
	mk("case/", NULL);
	for (int i = 0; i < 105; i++) {
		char *p = tu_strdupf("%s/case/f%03d", root, i);

		ck_assert_int_eq(mkfifo(p, 0644), 0);
		free(p);
	}
	scan_ok("case", NULL, &res);
	ck_assert_uint_eq(res.n, 0);
	ck_assert_uint_eq(res.n_warnings, 101);
	ck_assert_str_eq(res.warnings[100], "... and 5 more warnings");
	scan_result_clear(&res);
}
END_TEST

/* Permission tests run as nobody in a forked child; exit codes say what went wrong. */
struct perm_case {
	const char *case_name;
	int want;
	const char *want_msg;
};

static int
perm_child(void *ud)
{
	const struct perm_case *pc = ud;
	struct scan_result res;
	char *err = NULL;
	int r;

	r = scan_case(AT_FDCWD, root, pc->case_name, NULL, &res, &err);
	if (r != pc->want) {
		fprintf(stderr, "scan_case = %d, want %d (%s)\n", r, pc->want, err ? err : "");
		return 1;
	}
	if (!err || strcmp(err, pc->want_msg) != 0) {
		fprintf(stderr, "message '%s', want '%s'\n", err ? err : "(null)", pc->want_msg);
		return 2;
	}
	free(err);
	return 0;
}

static void
chmod_at(const char *rel, mode_t mode)
{
	char *p = at(rel);

	ck_assert_int_eq(chmod(p, mode), 0);
	free(p);
}

START_TEST(test_unreadable)
{
	struct perm_case pc;

	/* Assumptions: everything 0755/0644 and world-readable except the one thing. */
	mk("dir/sub/x.dcm", "x");
	mk("dir/ok.dcm", "x");
	chmod_at("dir/sub", 0000);
	pc = (struct perm_case){ "dir", -EACCES,
		"cannot read directory 'dir/sub': Permission denied" };
	ck_assert_int_eq(tu_as_nobody(perm_child, &pc), 0);
	chmod_at("dir/sub", 0755);

	/* A directory that can be listed but not entered (r without x). */
	chmod_at("dir/sub", 0444);
	pc = (struct perm_case){ "dir", -EACCES, "cannot read 'dir/sub/x.dcm': Permission denied" };
	ck_assert_int_eq(tu_as_nobody(perm_child, &pc), 0);
	chmod_at("dir/sub", 0755);

	/* An unreadable file. */
	mk("file/a.dcm", "x");
	mk("file/b.dcm", "x");
	chmod_at("file/b.dcm", 0200);
	pc = (struct perm_case){ "file", -EACCES,
		"cannot read file 'file/b.dcm': Permission denied" };
	ck_assert_int_eq(tu_as_nobody(perm_child, &pc), 0);

	/* The case directory itself, and a single-file case. */
	mk("top/a.dcm", "x");
	chmod_at("top", 0000);
	pc = (struct perm_case){ "top", -EACCES, "case 'top' cannot be read: Permission denied" };
	ck_assert_int_eq(tu_as_nobody(perm_child, &pc), 0);
	chmod_at("top", 0755);
	mk("one.mha", "x");
	chmod_at("one.mha", 0000);
	pc = (struct perm_case){ "one.mha", -EACCES,
		"case 'one.mha' cannot be read: Permission denied" };
	ck_assert_int_eq(tu_as_nobody(perm_child, &pc), 0);
}
END_TEST

START_TEST(test_symlink_outside)
{
	char *p, *msg;

	/* Absolute and relative symlinks leaving the watch folder are refused. */
	mk("abs/a.dcm", "x");
	p = at("abs/link");
	ck_assert_int_eq(symlink("/etc/passwd", p), 0);
	free(p);
	scan_fails("abs", -ELOOP, "symlink 'abs/link' points outside the watch folder (to "
		   "'/etc/passwd'); symlinks are not followed");

	mk("rel/sub/a.dcm", "x");
	p = at("rel/sub/up");
	ck_assert_int_eq(symlink("../../../elsewhere", p), 0);
	free(p);
	scan_fails("rel", -ELOOP, "symlink 'rel/sub/up' points outside the watch folder (to "
		   "'../../../elsewhere'); symlinks are not followed");

	/* Leaving the case for another case of the same watch folder. */
	mk("other/secret.dcm", "x");
	mk("sib/a.dcm", "x");
	p = at("sib/l");
	ck_assert_int_eq(symlink("../other/secret.dcm", p), 0);
	free(p);
	scan_fails("sib", -ELOOP, "symlink 'sib/l' points outside the case (to "
		   "'../other/secret.dcm'); symlinks are not followed");

	/* An absolute path into the watch folder but not the case. */
	mk("absin/a.dcm", "x");
	p = at("absin/l");
	msg = at("other/secret.dcm");
	ck_assert_int_eq(symlink(msg, p), 0);
	free(p);
	p = tu_strdupf("symlink 'absin/l' points outside the case (to '%s'); symlinks are not "
		       "followed", msg);
	scan_fails("absin", -ELOOP, p);
	free(p);
	free(msg);

	/* Lexically: "sub/../../x" climbs out even though "sub" exists. */
	mk("lex/sub/a.dcm", "x");
	p = at("lex/l");
	ck_assert_int_eq(symlink("sub/../../x", p), 0);
	free(p);
	scan_fails("lex", -ELOOP, "symlink 'lex/l' points outside the case (to 'sub/../../x'); "
		   "symlinks are not followed");

	/* A case that is a symlink. */
	p = at("caselink");
	ck_assert_int_eq(symlink("other", p), 0);
	free(p);
	scan_fails("caselink", -ELOOP, "case 'caselink' is a symlink; symlinks are not followed");
}
END_TEST

START_TEST(test_symlink_inside)
{
	struct scan_result res;
	char *p, *target, *alias;

	/* Symlinks inside the case are skipped with a warning (their targets are
	 * entries anyway); loops and dangling links are harmless. */
	mk("case/sub/a.dcm", "x");
	p = at("case/sub/l1");
	ck_assert_int_eq(symlink("a.dcm", p), 0);
	free(p);
	p = at("case/loop1");
	ck_assert_int_eq(symlink("loop2", p), 0);
	free(p);
	p = at("case/loop2");
	ck_assert_int_eq(symlink("loop1", p), 0);
	free(p);
	p = at("case/self");
	ck_assert_int_eq(symlink("self", p), 0);
	free(p);
	p = at("case/dirlink");
	ck_assert_int_eq(symlink("./sub/../sub", p), 0);
	free(p);
	/* Absolute, into the case. */
	p = at("case/abs");
	target = at("case/sub/a.dcm");
	ck_assert_int_eq(symlink(target, p), 0);
	free(p);
	scan_ok("case", NULL, &res);
	ck_assert_uint_eq(res.n, 1);
	ck_assert_str_eq(res.entries[0].relpath, "sub/a.dcm");
	ck_assert_uint_eq(res.n_warnings, 6);
	for (size_t i = 0; i < res.n_warnings; i++)
		ck_assert_msg(strncmp(res.warnings[i], "symlink 'case/", 14) == 0 &&
			      strstr(res.warnings[i], "' skipped: symlinks are not followed (it "
				     "points to '") &&
			      strstr(res.warnings[i], "', inside the case)"),
			      "%s", res.warnings[i]);
	scan_result_clear(&res);

	/* Same case seen through a symlinked watch path: the absolute link target
	 * (the real path) is recognised through realpath(). */
	alias = tu_strdupf("%s-alias", root);
	ck_assert_int_eq(symlink(root, alias), 0);
	{
		char *err = NULL;
		int r = scan_case(AT_FDCWD, alias, "case", NULL, &res, &err);

		ck_assert_msg(r == 0, "%s", err ? err : "");
	}
	ck_assert_uint_eq(res.n, 1);
	scan_result_clear(&res);
	unlink(alias);
	free(alias);
	free(target);
}
END_TEST

START_TEST(test_bad_names)
{
	struct scan_result res;
	char *err = NULL;

	scan_fails("", -EINVAL, "case '' is not a case name (a bare name that is not ignored)");
	scan_fails("a/b", -EINVAL, "case 'a/b' is not a case name (a bare name that is not "
		   "ignored)");
	scan_fails(".hidden", -EINVAL, "case '.hidden' is not a case name (a bare name that is "
		   "not ignored)");
	scan_fails("x.part", -EINVAL, "case 'x.part' is not a case name (a bare name that is "
		   "not ignored)");
	scan_fails("missing", -ENOENT, "case 'missing' does not exist (any more)");
	/* NULL reterr_msg is allowed. */
	ck_assert_int_eq(scan_case(AT_FDCWD, root, "missing", NULL, &res, NULL), -ENOENT);
	ck_assert_int_eq(scan_case(AT_FDCWD, "/nonexistent-watch", "x", NULL, &res, &err),
			 -ENOENT);
	ck_assert_str_eq(err, "cannot open watch folder '/nonexistent-watch': No such file or "
			 "directory");
	free(err);
}
END_TEST

START_TEST(test_watch_dirfd)
{
	struct scan_result res;
	int dfd;

	/* An open watch folder descriptor is used as given. */
	mk("case/a.dcm", "x");
	dfd = open(root, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dfd, 0);
	ck_assert_int_eq(scan_case(dfd, root, "case", NULL, &res, NULL), 0);
	ck_assert_uint_eq(res.n, 1);
	scan_result_clear(&res);
	/* The descriptor stays open and usable. */
	ck_assert_int_ge(fcntl(dfd, F_GETFD), 0);
	close(dfd);
}
END_TEST

/* recovery: a churning thread creates and removes files while the walk runs. */
struct churn {
	int dfd;
	atomic_bool stop;
};

static void *
churn_main(void *ud)
{
	struct churn *c = ud;
	unsigned i = 0;

	while (!atomic_load(&c->stop)) {
		char name[32];
		int fd;

		snprintf(name, sizeof(name), "c%03u.dcm", i % 400);
		fd = openat(c->dfd, name, O_WRONLY | O_CREAT, 0644);
		if (fd >= 0)
			close(fd);
		snprintf(name, sizeof(name), "c%03u.dcm", (i + 200) % 400);
		unlinkat(c->dfd, name, 0);
		snprintf(name, sizeof(name), "d%03u", i % 50);
		if (i % 2)
			mkdirat(c->dfd, name, 0755);
		else
			unlinkat(c->dfd, name, AT_REMOVEDIR);
		i++;
	}
	return NULL;
}

START_TEST(test_vanishing)
{
	struct churn c;
	pthread_t th;
	long long deadline;
	unsigned scans = 0, changed = 0;
	char *p;

	/* Assumptions: stable.dcm never changes; everything else comes and goes.
	 * Every walk succeeds and sees stable.dcm; within the deadline at least one
	 * walk catches a vanished name and reports 'changed' with a warning. */
	mk("case/stable.dcm", "x");
	p = at("case");
	c.dfd = open(p, O_RDONLY | O_DIRECTORY);
	free(p);
	ck_assert_int_ge(c.dfd, 0);
	atomic_init(&c.stop, false);
	ck_assert_int_eq(pthread_create(&th, NULL, churn_main, &c), 0);
	deadline = tu_now_ms() + 20000;
	while (changed < 3 && tu_now_ms() < deadline) {
		struct scan_result res;
		char *err = NULL;
		int r = scan_case(AT_FDCWD, root, "case", NULL, &res, &err);

		ck_assert_msg(r == 0, "walk %u: %d %s", scans, r, err ? err : "");
		ck_assert_ptr_nonnull(scan_find(&res, "stable.dcm"));
		if (res.changed) {
			changed++;
			ck_assert_uint_ge(res.n_warnings, 1);
			ck_assert_ptr_nonnull(strstr(res.warnings[0], "vanished or changed during "
						     "the walk, skipped"));
		}
		scans++;
		scan_result_clear(&res);
	}
	atomic_store(&c.stop, true);
	pthread_join(th, NULL);
	close(c.dfd);
	ck_assert_msg(changed >= 3, "only %u of %u walks saw a change", changed, scans);
}
END_TEST

static Suite *
scan_suite(void)
{
	Suite *s = suite_create("scan");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_sha256_vectors, 0, (int)GC_ARRAY_SIZE(vectors));
	tcase_add_test(tc, test_sha256_file);
	tcase_add_loop_test(tc, test_name_ignored, 0, (int)GC_ARRAY_SIZE(ignore_cases));
	tcase_add_test(tc, test_dir_case);
	tcase_add_test(tc, test_single_file_case);
	tcase_add_test(tc, test_special_names);
	tcase_add_test(tc, test_quote);
	tcase_add_test(tc, test_fingerprint);
	tcase_add_test(tc, test_marker_and_ignored);
	tcase_add_test(tc, test_list_cases);
	tcase_add_test(tc, test_watch_dirfd);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_empty_case);
	tcase_add_test(tc, test_nested_10);
	tcase_add_test(tc, test_depth_cap);
	tcase_add_test(tc, test_entry_cap);
	tcase_add_test(tc, test_20000_files);
	tcase_add_test(tc, test_warning_cap);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_unreadable);
	tcase_add_test(tc, test_symlink_outside);
	tcase_add_test(tc, test_symlink_inside);
	tcase_add_test(tc, test_special_files);
	tcase_add_test(tc, test_bad_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_vanishing);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(scan_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
