/*
 * scan.h: filesystem walks of a watch folder and of its cases (scan_ prefix).
 *
 * scan_case() walks one case (a direct child of a watch folder: a directory and
 * everything under it, or a single regular file) into a sorted list of entries
 * and a fingerprint; scan_list_cases() lists the candidate cases of a watch
 * folder for startup and overflow rescans. scan never follows a symlink, never
 * opens a file for reading, and never logs above debug: it returns an error
 * with a message, and the things it survived as warnings for the caller to log.
 *
 * Policy (spec sections 2 and 6), decided here once for the whole daemon:
 * - Ignored names (scan_name_ignored()): a leading '.', or a trailing ".tmp",
 *   ".part", ".partial" or '~'. They apply to the case's own name and to every
 *   name inside a case: scanners, editors and copy tools write hidden and
 *   temporary files next to the real ones, and an operator expects neither to be
 *   uploaded. An ignored directory is skipped with everything under it. Ignored
 *   entries are counted (n_ignored), not warned about.
 * - The ready marker (opts->ready_marker) is looked for only at the top level of
 *   a directory case, is never an entry, and does not change the fingerprint. Its
 *   name is compared before the ignore rule, so ".ready" works as a marker.
 * - Symlinks are never followed. A symlink whose target, resolved lexically from
 *   the symlink's own directory, leaves the case fails the case ("points outside
 *   the case" / "points outside the watch folder"). One that stays inside the
 *   case (including a dangling one and a loop) is skipped with a warning: its
 *   target, when it exists, is a file of the case and is walked as itself. A
 *   case that is itself a symlink fails.
 * - Fifos, sockets and device files are skipped with a warning.
 * - A file or directory that cannot be read (no permission) fails the case and
 *   the message names it. Readability is checked with faccessat(2), so the walk
 *   does not open files and causes no inotify open/close events.
 * - Something that vanishes or changes type between readdir and stat is skipped
 *   with a warning, and 'changed' is set: the caller should settle again.
 *
 * The walk is relative to directory file descriptors (openat, fstatat, all with
 * O_NOFOLLOW / AT_SYMLINK_NOFOLLOW): renaming a directory during the walk cannot
 * redirect it outside the case. It keeps one open descriptor per directory level,
 * so the depth cap (SCAN_DEFAULT_MAX_DEPTH) also bounds the descriptors used.
 */
#ifndef GCDROP_SCAN_H
#define GCDROP_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "attrs.h"
#include "sha256.h"

#define SCAN_DEFAULT_MAX_DEPTH 256	/* directory levels below the case */
#define SCAN_DEFAULT_MAX_ENTRIES 200000	/* files in one case */

/* One regular file of a case. Plain data: read the members directly. */
struct scan_entry {
	/*
	 * Path relative to the case directory, '/'-separated, exact bytes (any byte
	 * but NUL and '/' may occur in a name, including newlines and bytes that are
	 * not UTF-8); NUL-terminated, with its length in relpath_len. For a
	 * single-file case it is the case's name.
	 */
	char *relpath;
	size_t relpath_len;
	int64_t size;
	int64_t mtime_ns;		/* st_mtim in nanoseconds since the epoch */
	mode_t mode;			/* st_mode */
};

struct scan_opts {
	const char *ready_marker;	/* NULL or "": none */
	unsigned max_depth;		/* 0: SCAN_DEFAULT_MAX_DEPTH */
	size_t max_entries;		/* 0: SCAN_DEFAULT_MAX_ENTRIES */
};

struct scan_result {
	struct scan_entry *entries;	/* sorted byte-wise by relpath */
	size_t n;
	bool is_dir;			/* the case is a directory (else a single file) */
	int64_t total_bytes;		/* sum of the entries' sizes */
	char fingerprint[SHA256_HEX_SIZE];
	bool marker_present;		/* the ready marker exists (directory cases only) */
	bool changed;			/* something changed during the walk: settle again */
	size_t n_ignored;		/* hidden / temporary names skipped */
	char **warnings;		/* things skipped, one sentence each, paths quoted */
	size_t n_warnings;
};

/*
 * True when 'name' (one path component) is ignored by the rules above: it
 * starts with '.', or ends in ".tmp", ".part", ".partial" or '~'. The suffixes
 * are compared case-sensitively. NULL and "" are ignored.
 */
bool scan_name_ignored(const char *name);

/*
 * Walk the case 'case_name' (a bare name: no '/', not "." or "..") of a watch
 * folder. 'watch_dirfd' is an open directory fd of the watch folder, or AT_FDCWD
 * to open 'watch_root' for this call. 'watch_root' is the watch folder's path; it
 * is used in messages and to judge absolute symlink targets. 'opts' may be NULL.
 *
 * On success returns 0 and fills *ret (which the caller later frees with
 * scan_result_clear()). On failure returns a negative errno, leaves *ret
 * untouched and stores a malloc'd message (paths quoted, relative to the watch
 * folder) in *reterr_msg when reterr_msg is not NULL:
 *   -ENOENT  the case does not exist (any more);
 *   -EINVAL  the name is not a bare name or is ignored, or the case is neither a
 *            directory nor a regular file;
 *   -EACCES  a directory or file of the case cannot be read;
 *   -ELOOP   the case is a symlink, or holds one that leaves the case;
 *   -E2BIG   deeper than max_depth, or more than max_entries files;
 *   -ENOMEM, -EMFILE, -EIO, ...: from the system.
 */
int scan_case(int watch_dirfd, const char *watch_root, const char *case_name,
	      const struct scan_opts *opts, struct scan_result *ret, char **reterr_msg) GC_WUR;

/* Free what a scan_result holds and zero it. Accepts a zeroed result and NULL. */
void scan_result_clear(struct scan_result *res);

/*
 * True when both walks saw the same case: same shape (directory or file), same
 * entries with the same relpaths, sizes and mtimes (modes are not compared; the
 * fingerprint does not include them either). Used to confirm that a case has
 * settled. Marker presence, warnings and 'changed' are not compared.
 */
bool scan_same(const struct scan_result *a, const struct scan_result *b);

/* The entry with exactly this relpath, or NULL (binary search). */
const struct scan_entry *scan_find(const struct scan_result *res, const char *relpath);

/*
 * List the candidate cases of the watch folder 'watch_root' (opened relative to
 * 'dirfd', or AT_FDCWD): its direct children that are directories, regular files
 * or symlinks (so that scan_case() can refuse a symlink with a message), whose
 * names are not ignored. Fifos, sockets and devices are left out. The names are
 * sorted byte-wise. On success returns 0, stores a malloc'd array of malloc'd
 * names in *ret_names and their count in *ret_n; free it with scan_names_free().
 * On failure returns a negative errno and writes nothing.
 */
int scan_list_cases(int dirfd, const char *watch_root, char ***ret_names, size_t *ret_n) GC_WUR;

/* Free an array from scan_list_cases(). Accepts NULL. */
void scan_names_free(char **names, size_t n);

/*
 * Length of the valid UTF-8 sequence (1 to 4 bytes) at 'p', which has 'n' bytes
 * left, or 0 when the bytes there are not valid UTF-8 (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). Shared with casemap.
 */
size_t scan_utf8_seq(const unsigned char *p, size_t n);

/*
 * Quote 'len' bytes of 's' for a message or a log line: printable ASCII and valid
 * UTF-8 sequences are kept, '\\' and '\'' are backslash-escaped, newline, tab and
 * carriage return become \n \t \r, and every other byte (controls, DEL, bytes
 * that are not valid UTF-8) becomes \xNN. The result has no surrounding quotes.
 * Returns a malloc'd string, or NULL when out of memory.
 */
char *scan_quote(const char *s, size_t len);

#endif
