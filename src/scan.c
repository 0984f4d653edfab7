/*
 * scan.c: walks of cases and watch folders, and case fingerprints.
 *
 * DESIGN. A walk holds one open descriptor per directory level. Each directory
 * is read completely (names only) and its stream closed before any child is
 * looked at, so a deep tree costs one descriptor and one name list per level,
 * not one DIR buffer per level. Every child is examined with fstatat(...,
 * AT_SYMLINK_NOFOLLOW) relative to its parent's descriptor and every
 * subdirectory is opened with openat(O_DIRECTORY|O_NOFOLLOW): a rename or a
 * symlink swapped in during the walk can make an entry vanish (reported through
 * 'changed'), but cannot make the walk leave the case. Regular files are never
 * opened (faccessat checks that they can be read), so the walk neither blocks
 * on a fifo nor generates inotify open/close events in the watched tree.
 *
 * Symlinks are judged lexically and never followed (policy in scan.h): the
 * target is resolved against the symlink's own directory, "." and ".." are
 * applied to the path as written, and the result is compared with the case and
 * the watch folder (by its given path and by its realpath()).
 *
 * Entries are sorted byte-wise by relpath, and the fingerprint is SHA-256 over
 * a version tag, the case's shape and, for every entry in order, the relpath
 * length, the relpath bytes, the size and the mtime in nanoseconds (all integers
 * 64-bit little-endian), so it does not depend on readdir order and two
 * different lists can never encode to the same byte stream.
 */
#include "scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

#define SCAN_MAX_WARNINGS 100		/* further warnings are summarised in one line */
#define SCAN_MSG_CAP 8192		/* bytes in one message or warning */
#define SCAN_FP_TAG "gcdrop-scan-v1"

bool
scan_name_ignored(const char *name)
{
	static const char *const suffixes[] = { ".tmp", ".part", ".partial", "~" };
	size_t len;

	if (name == NULL || name[0] == '\0' || name[0] == '.')
		return true;
	len = strlen(name);
	for (size_t i = 0; i < GC_ARRAY_SIZE(suffixes); i++) {
		size_t sl = strlen(suffixes[i]);

		if (len >= sl && memcmp(name + len - sl, suffixes[i], sl) == 0)
			return true;
	}
	return false;
}

size_t
scan_utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c;

	if (n == 0)
		return 0;
	c = p[0];
	if (c < 0x80)
		return 1;
	/* The well-formed byte sequences of Unicode 15, table 3-7. */
#define CONT(i) (n > (i) && (p[i] & 0xc0) == 0x80)
	if (c >= 0xc2 && c <= 0xdf)
		return CONT(1) ? 2 : 0;
	if (c == 0xe0)
		return n > 1 && p[1] >= 0xa0 && p[1] <= 0xbf && CONT(2) ? 3 : 0;
	if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
		return CONT(1) && CONT(2) ? 3 : 0;
	if (c == 0xed)
		return n > 1 && p[1] >= 0x80 && p[1] <= 0x9f && CONT(2) ? 3 : 0;
	if (c == 0xf0)
		return n > 1 && p[1] >= 0x90 && p[1] <= 0xbf && CONT(2) && CONT(3) ? 4 : 0;
	if (c >= 0xf1 && c <= 0xf3)
		return CONT(1) && CONT(2) && CONT(3) ? 4 : 0;
	if (c == 0xf4)
		return n > 1 && p[1] >= 0x80 && p[1] <= 0x8f && CONT(2) && CONT(3) ? 4 : 0;
#undef CONT
	return 0;
}

char *
scan_quote(const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	char *out, *o;

	/* Every input byte becomes at most four output bytes ("\xNN"). */
	out = malloc(len * 4 + 1);
	if (!out)
		return NULL;
	o = out;
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t sl;

		if (c == '\\' || c == '\'') {
			*o++ = '\\';
			*o++ = (char)c;
			i++;
		} else if (c == '\n' || c == '\t' || c == '\r') {
			*o++ = '\\';
			*o++ = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
			i++;
		} else if (c >= 0x20 && c < 0x7f) {
			*o++ = (char)c;
			i++;
		} else if (c >= 0x80 && (sl = scan_utf8_seq(p + i, len - i)) > 0 &&
			   !(c == 0xc2 && p[i + 1] < 0xa0)) {
			/* Valid UTF-8 other than the C1 controls U+0080..U+009F. */
			memcpy(o, p + i, sl);
			o += sl;
			i += sl;
		} else {
			*o++ = '\\';
			*o++ = 'x';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 0xf];
			i++;
		}
	}
	*o = '\0';
	return out;
}

/* State of one scan_case() walk. */
struct walk {
	const char *watch_root;
	const char *case_name;
	const char *marker;		/* NULL: none */
	unsigned max_depth;
	size_t max_entries;

	struct scan_entry *entries;
	size_t n, alloc;
	char **warnings;
	size_t n_warnings, alloc_warnings;
	size_t n_dropped_warnings;	/* past SCAN_MAX_WARNINGS */
	bool summarising;		/* writing the "... and N more" line */
	size_t n_ignored;
	bool changed;
	bool marker_present;

	/* Relpath of the entry being looked at, relative to the case directory. */
	char *path;
	size_t path_len, path_alloc;

	char *err;			/* the failure message, once one happened */
	char *real_root;		/* realpath(watch_root), computed on first need */
	bool real_root_done;
};

/* "case/relpath" (or "case" for the case itself), quoted; NULL on ENOMEM. */
static char *
walk_quoted_path(const struct walk *w)
{
	struct buf b;
	char *q;
	int r;

	buf_init(&b, SIZE_MAX / 8);
	r = buf_appends(&b, w->case_name);
	if (r == 0 && w->path_len > 0)
		r = buf_printf(&b, "/%s", w->path);
	if (r < 0)
		return NULL;
	q = scan_quote(buf_str(&b), buf_len(&b));
	buf_clear(&b);
	return q;
}

/* vprintf into a malloc'd string of at most SCAN_MSG_CAP bytes; NULL on failure. */
static char *
vformat(const char *fmt, va_list ap)
{
	struct buf b;

	buf_init(&b, SCAN_MSG_CAP);
	if (buf_vprintf(&b, fmt, ap) < 0)
		return NULL;
	return buf_take(&b, NULL);
}

static char *
msgf(const char *fmt, ...) GC_PRINTF(1, 2);

static char *
msgf(const char *fmt, ...)
{
	va_list ap;
	char *m;

	va_start(ap, fmt);
	m = vformat(fmt, ap);
	va_end(ap);
	return m;
}

/* Record the failure message (the first one wins) and return 'r'. */
static int
walk_fail(struct walk *w, int r, const char *fmt, ...) GC_PRINTF(3, 4);

static int
walk_fail(struct walk *w, int r, const char *fmt, ...)
{
	va_list ap;

	if (w->err)
		return r;
	va_start(ap, fmt);
	w->err = vformat(fmt, ap);
	va_end(ap);
	return r;
}

/* Add a warning; past the cap only count it. Returns 0 or -ENOMEM. */
static int
walk_warn(struct walk *w, const char *fmt, ...) GC_PRINTF(2, 3);

static int
walk_warn(struct walk *w, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	/* Past the cap only count, except for the summary written at the end. */
	if (w->n_warnings >= SCAN_MAX_WARNINGS && !w->summarising) {
		w->n_dropped_warnings++;
		return 0;
	}
	if (w->n_warnings == w->alloc_warnings) {
		size_t alloc = w->alloc_warnings ? w->alloc_warnings * 2 : 8;
		char **p = realloc(w->warnings, alloc * sizeof(*p));

		if (!p)
			return -ENOMEM;
		w->warnings = p;
		w->alloc_warnings = alloc;
	}
	va_start(ap, fmt);
	msg = vformat(fmt, ap);
	va_end(ap);
	if (!msg)
		return -ENOMEM;
	w->warnings[w->n_warnings++] = msg;
	return 0;
}

/* Append "/name" (or "name" at the top) to the current path; returns the old length. */
static int
walk_push(struct walk *w, const char *name, size_t *ret_old_len)
{
	size_t nl = strlen(name);
	size_t need = w->path_len + 1 + nl + 1;

	if (need > w->path_alloc) {
		size_t alloc = w->path_alloc ? w->path_alloc : 256;
		char *p;

		while (alloc < need)
			alloc *= 2;
		p = realloc(w->path, alloc);
		if (!p)
			return -ENOMEM;
		w->path = p;
		w->path_alloc = alloc;
	}
	*ret_old_len = w->path_len;
	if (w->path_len > 0)
		w->path[w->path_len++] = '/';
	memcpy(w->path + w->path_len, name, nl + 1);
	w->path_len += nl;
	return 0;
}

static void
walk_pop(struct walk *w, size_t old_len)
{
	w->path_len = old_len;
	if (w->path)
		w->path[old_len] = '\0';
}

static int
walk_add_entry(struct walk *w, const struct stat *st)
{
	struct scan_entry *e;

	if (w->n >= w->max_entries) {
		char *q = scan_quote(w->case_name, strlen(w->case_name));

		walk_fail(w, -E2BIG, "case '%s' has more than %zu files", q ? q : "?",
			  w->max_entries);
		free(q);
		return -E2BIG;
	}
	if (w->n == w->alloc) {
		size_t alloc = w->alloc ? w->alloc * 2 : 64;
		struct scan_entry *p = realloc(w->entries, alloc * sizeof(*p));

		if (!p)
			return -ENOMEM;
		w->entries = p;
		w->alloc = alloc;
	}
	e = &w->entries[w->n];
	e->relpath = strndup(w->path, w->path_len);
	if (!e->relpath)
		return -ENOMEM;
	e->relpath_len = w->path_len;
	e->size = (int64_t)st->st_size;
	e->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	e->mode = st->st_mode;
	w->n++;
	return 0;
}

/*
 * Lexically normalise 's': empty and "." components go, ".." removes the
 * previous component. An absolute path stays absolute and ".." at its root stays
 * at the root; a relative path that climbs above its start sets *ret_escaped.
 * Returns a malloc'd path without trailing '/' ("" or "/" when nothing is left),
 * or NULL on ENOMEM.
 */
static char *
path_normalize(const char *s, bool *ret_escaped)
{
	size_t len = strlen(s);
	bool abs = s[0] == '/';
	bool escaped = false;
	char *out = malloc(len + 2);
	size_t o = 0;

	if (!out)
		return NULL;
	if (abs)
		out[o++] = '/';
	for (const char *p = s; *p;) {
		const char *end;
		size_t cl;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		end = strchr(p, '/');
		cl = end ? (size_t)(end - p) : strlen(p);
		if (cl == 1 && p[0] == '.') {
			/* nothing */
		} else if (cl == 2 && p[0] == '.' && p[1] == '.') {
			size_t base = abs ? 1 : 0;

			if (o > base) {
				while (o > base && out[o - 1] != '/')
					o--;
				if (o > base)
					o--;	/* the separator before the removed component */
			} else if (!abs) {
				escaped = true;
			}
		} else {
			if (o > (abs ? 1u : 0u))
				out[o++] = '/';
			memcpy(out + o, p, cl);
			o += cl;
		}
		p += cl;
	}
	out[o] = '\0';
	*ret_escaped = escaped;
	return out;
}

enum link_place {
	LINK_IN_CASE,
	LINK_IN_WATCH,		/* inside the watch folder, outside the case */
	LINK_OUTSIDE,
};

/* Where a normalised path relative to the watch folder lies. */
static enum link_place
place_in_watch(const char *rel, const char *case_name)
{
	size_t cl = strlen(case_name);

	if (strncmp(rel, case_name, cl) == 0 && (rel[cl] == '\0' || rel[cl] == '/'))
		return LINK_IN_CASE;
	return LINK_IN_WATCH;
}

/* If 'path' (normalised, absolute) is at or under 'root', the rest after it; else NULL. */
static const char *
under_root(const char *path, const char *root)
{
	size_t rl = strlen(root);

	if (rl == 1 && root[0] == '/')
		return path + 1;
	if (strncmp(path, root, rl) == 0 && (path[rl] == '/' || path[rl] == '\0'))
		return path[rl] == '/' ? path + rl + 1 : path + rl;
	return NULL;
}

static int
walk_classify_link(struct walk *w, const char *target, enum link_place *ret)
{
	char *joined = NULL, *norm = NULL, *root = NULL;
	bool escaped;
	int r = -ENOMEM;

	if (target[0] == '/') {
		const char *rest = NULL;

		norm = path_normalize(target, &escaped);
		if (!norm)
			goto out;
		if (w->watch_root[0] == '/') {
			root = path_normalize(w->watch_root, &escaped);
			if (!root)
				goto out;
			rest = under_root(norm, root);
		}
		if (!rest && !w->real_root_done) {
			w->real_root = realpath(w->watch_root, NULL);
			w->real_root_done = true;
		}
		if (!rest && w->real_root)
			rest = under_root(norm, w->real_root);
		*ret = rest ? place_in_watch(rest, w->case_name) : LINK_OUTSIDE;
	} else {
		/* The symlink's directory, relative to the watch folder, then the target. */
		const char *slash = strrchr(w->path, '/');
		size_t dl = slash ? (size_t)(slash - w->path) : 0;
		size_t cl = strlen(w->case_name);
		size_t tl = strlen(target);

		joined = malloc(cl + 1 + dl + 1 + tl + 1);
		if (!joined)
			goto out;
		memcpy(joined, w->case_name, cl);
		joined[cl] = '/';
		memcpy(joined + cl + 1, w->path, dl);
		joined[cl + 1 + dl] = '/';
		memcpy(joined + cl + 1 + dl + 1, target, tl + 1);
		norm = path_normalize(joined, &escaped);
		if (!norm)
			goto out;
		*ret = escaped ? LINK_OUTSIDE : place_in_watch(norm, w->case_name);
	}
	r = 0;
out:
	free(joined);
	free(norm);
	free(root);
	return r;
}

/* Warn that the current entry vanished or changed type, and mark the walk changed. */
static int
walk_vanished(struct walk *w)
{
	char *q = walk_quoted_path(w);
	int r;

	w->changed = true;
	if (!q)
		return -ENOMEM;
	r = walk_warn(w, "'%s' vanished or changed during the walk, skipped", q);
	free(q);
	return r;
}

/* The current entry is a symlink: refuse it or skip it (policy in scan.h). */
static int
walk_symlink(struct walk *w, int dirfd, const char *name, const struct stat *st)
{
	char *target = NULL, *qpath = NULL, *qtarget = NULL;
	size_t size = st->st_size > 0 && st->st_size < PATH_MAX ? (size_t)st->st_size + 1
								   : PATH_MAX;
	enum link_place place;
	ssize_t n;
	int r;

	/* The size from lstat can be stale or 0 (procfs-like filesystems): grow until it fits. */
	for (;;) {
		char *p = realloc(target, size);

		if (!p) {
			r = -ENOMEM;
			goto out;
		}
		target = p;
		n = readlinkat(dirfd, name, target, size);
		if (n < 0) {
			r = -errno;
			if (r == -ENOENT || r == -EINVAL) {
				/* Gone, or no longer a symlink: the case is still changing. */
				r = walk_vanished(w);
				goto out;
			}
			qpath = walk_quoted_path(w);
			walk_fail(w, r, "cannot read symlink '%s': %s", qpath ? qpath : "?",
				  strerror(-r));
			goto out;
		}
		if ((size_t)n < size)
			break;
		if (size > SIZE_MAX / 4) {
			r = -ENAMETOOLONG;
			goto out;
		}
		size *= 2;
	}
	target[n] = '\0';

	r = walk_classify_link(w, target, &place);
	if (r < 0)
		goto out;
	qpath = walk_quoted_path(w);
	qtarget = scan_quote(target, (size_t)n);
	if (!qpath || !qtarget) {
		r = -ENOMEM;
		goto out;
	}
	switch (place) {
	case LINK_IN_CASE:
		r = walk_warn(w, "symlink '%s' skipped: symlinks are not followed (it points to "
			      "'%s', inside the case)", qpath, qtarget);
		break;
	case LINK_IN_WATCH:
		r = walk_fail(w, -ELOOP, "symlink '%s' points outside the case (to '%s'); "
			      "symlinks are not followed", qpath, qtarget);
		break;
	case LINK_OUTSIDE:
		r = walk_fail(w, -ELOOP, "symlink '%s' points outside the watch folder (to '%s'); "
			      "symlinks are not followed", qpath, qtarget);
		break;
	}
out:
	free(target);
	free(qpath);
	free(qtarget);
	return r;
}

static const char *
file_type_name(mode_t mode)
{
	if (S_ISFIFO(mode))
		return "a fifo";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	return "not a regular file";
}

/* Fail with "what 'path': strerror" for the current entry. */
static int
walk_fail_errno(struct walk *w, int r, const char *what)
{
	char *q = walk_quoted_path(w);

	walk_fail(w, r, "%s '%s': %s", what, q ? q : "?", strerror(-r));
	free(q);
	return r;
}

/* Read every name of the directory 'fd' (not closed) into a malloc'd array. */
static int
read_names(int fd, char ***ret_names, size_t *ret_n)
{
	char **names = NULL;
	size_t n = 0, alloc = 0;
	struct dirent *de;
	DIR *d;
	int dfd, r = 0;

	dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0)
		return -errno;
	d = fdopendir(dfd);
	if (!d) {
		r = -errno;
		close(dfd);
		return r;
	}
	/* The duplicate shares the file offset: start from the beginning. */
	rewinddir(d);
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			r = -errno;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == alloc) {
			size_t na = alloc ? alloc * 2 : 32;
			char **p = realloc(names, na * sizeof(*p));

			if (!p) {
				r = -ENOMEM;
				break;
			}
			names = p;
			alloc = na;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			r = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (r < 0) {
		scan_names_free(names, n);
		return r;
	}
	*ret_names = names;
	*ret_n = n;
	return 0;
}

static int walk_dir(struct walk *w, int fd, unsigned depth);

/* Look at one child 'name' of the directory 'fd' at 'depth' (0: the case's top). */
static int
walk_child(struct walk *w, int fd, const char *name, unsigned depth)
{
	struct stat st;
	size_t old_len;
	int r, cfd;

	if (depth == 0 && w->marker && strcmp(name, w->marker) == 0) {
		w->marker_present = true;
		return 0;
	}
	if (scan_name_ignored(name)) {
		w->n_ignored++;
		return 0;
	}
	r = walk_push(w, name, &old_len);
	if (r < 0)
		return r;
	if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		if (r == -ENOENT)
			r = walk_vanished(w);
		else
			r = walk_fail_errno(w, r, "cannot read");
		goto out;
	}
	if (S_ISREG(st.st_mode)) {
		if (faccessat(fd, name, R_OK, AT_EACCESS) < 0) {
			r = -errno;
			if (r == -ENOENT)
				r = walk_vanished(w);
			else
				r = walk_fail_errno(w, r, "cannot read file");
			goto out;
		}
		r = walk_add_entry(w, &st);
	} else if (S_ISDIR(st.st_mode)) {
		if (depth + 1 > w->max_depth) {
			char *q = walk_quoted_path(w);

			r = walk_fail(w, -E2BIG, "directory '%s' is nested too deep (more than %u "
				      "levels below the case)", q ? q : "?", w->max_depth);
			free(q);
			goto out;
		}
		cfd = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cfd < 0) {
			r = -errno;
			if (r == -ENOENT || r == -ENOTDIR || r == -ELOOP)
				r = walk_vanished(w);
			else
				r = walk_fail_errno(w, r, "cannot read directory");
			goto out;
		}
		r = walk_dir(w, cfd, depth + 1);
		close(cfd);
	} else if (S_ISLNK(st.st_mode)) {
		r = walk_symlink(w, fd, name, &st);
	} else {
		char *q = walk_quoted_path(w);

		r = q ? walk_warn(w, "'%s' skipped: it is %s", q, file_type_name(st.st_mode))
		      : -ENOMEM;
		free(q);
	}
out:
	walk_pop(w, old_len);
	return r;
}

static int
walk_dir(struct walk *w, int fd, unsigned depth)
{
	char **names = NULL;
	size_t n = 0;
	int r;

	r = read_names(fd, &names, &n);
	if (r < 0) {
		if (r == -ENOENT)
			return walk_vanished(w);
		return walk_fail_errno(w, r, "cannot read directory");
	}
	for (size_t i = 0; i < n && r >= 0; i++)
		r = walk_child(w, fd, names[i], depth);
	scan_names_free(names, n);
	return r;
}

static int
entry_cmp(const void *a, const void *b)
{
	const struct scan_entry *x = a, *y = b;

	/* Names hold no NUL, so strcmp is the byte-wise (unsigned) order. */
	return strcmp(x->relpath, y->relpath);
}

static void
put_u64(struct sha256 *ctx, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	sha256_update(ctx, b, sizeof(b));
}

static void
fingerprint(const struct scan_entry *entries, size_t n, bool is_dir,
	    char ret_hex[SHA256_HEX_SIZE])
{
	struct sha256 ctx;
	uint8_t digest[SHA256_DIGEST_SIZE];

	sha256_init(&ctx);
	sha256_update(&ctx, SCAN_FP_TAG, sizeof(SCAN_FP_TAG));
	sha256_update(&ctx, is_dir ? "d" : "f", 1);
	for (size_t i = 0; i < n; i++) {
		put_u64(&ctx, entries[i].relpath_len);
		sha256_update(&ctx, entries[i].relpath, entries[i].relpath_len);
		put_u64(&ctx, (uint64_t)entries[i].size);
		put_u64(&ctx, (uint64_t)entries[i].mtime_ns);
	}
	sha256_final(&ctx, digest);
	sha256_to_hex(digest, ret_hex);
}

static void
walk_free(struct walk *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->entries[i].relpath);
	free(w->entries);
	for (size_t i = 0; i < w->n_warnings; i++)
		free(w->warnings[i]);
	free(w->warnings);
	free(w->path);
	free(w->err);
	free(w->real_root);
}

/* "case 'NAME' WHAT", for a failure of the case itself; NULL on ENOMEM. */
static char *
case_msg(const char *case_name, const char *what)
{
	char *q = scan_quote(case_name, strlen(case_name));
	char *m = q ? msgf("case '%s' %s", q, what) : NULL;

	free(q);
	return m;
}

int
scan_case(int watch_dirfd, const char *watch_root, const char *case_name,
	  const struct scan_opts *opts, struct scan_result *ret, char **reterr_msg)
{
	struct walk w = { 0 };
	struct stat st;
	int wfd = -1, cfd = -1, r;
	char *msg = NULL;

	w.watch_root = watch_root;
	w.case_name = case_name;
	w.max_depth = opts && opts->max_depth ? opts->max_depth : SCAN_DEFAULT_MAX_DEPTH;
	w.max_entries = opts && opts->max_entries ? opts->max_entries : SCAN_DEFAULT_MAX_ENTRIES;
	w.marker = opts && opts->ready_marker && opts->ready_marker[0] ? opts->ready_marker : NULL;

	if (!case_name || !case_name[0] || strchr(case_name, '/') || scan_name_ignored(case_name)) {
		r = -EINVAL;
		msg = case_msg(case_name ? case_name : "",
			       "is not a case name (a bare name that is not ignored)");
		goto out;
	}
	if (watch_dirfd == AT_FDCWD) {
		wfd = open(watch_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (wfd < 0) {
			char *q = scan_quote(watch_root, strlen(watch_root));

			r = -errno;
			msg = q ? msgf("cannot open watch folder '%s': %s", q, strerror(-r)) : NULL;
			free(q);
			goto out;
		}
		watch_dirfd = wfd;
	}
	if (fstatat(watch_dirfd, case_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		msg = case_msg(case_name, r == -ENOENT ? "does not exist (any more)"
					: "cannot be examined");
		goto out;
	}
	if (S_ISLNK(st.st_mode)) {
		r = -ELOOP;
		msg = case_msg(case_name, "is a symlink; symlinks are not followed");
		goto out;
	}
	if (S_ISREG(st.st_mode)) {
		if (faccessat(watch_dirfd, case_name, R_OK, AT_EACCESS) < 0) {
			r = -errno;
			msg = case_msg(case_name, r == -EACCES ? "cannot be read: Permission denied"
						: "cannot be read");
			goto out;
		}
		w.path = strdup(case_name);
		if (!w.path) {
			r = -ENOMEM;
			goto out;
		}
		w.path_len = strlen(case_name);
		r = walk_add_entry(&w, &st);
		if (r < 0)
			goto out;
	} else if (S_ISDIR(st.st_mode)) {
		cfd = openat(watch_dirfd, case_name,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cfd < 0) {
			r = -errno;
			if (r == -ENOENT || r == -ENOTDIR || r == -ELOOP)
				msg = case_msg(case_name,
					       "vanished or changed while it was opened");
			else if (r == -EACCES)
				msg = case_msg(case_name, "cannot be read: Permission denied");
			else
				msg = case_msg(case_name, "cannot be opened");
			goto out;
		}
		r = walk_dir(&w, cfd, 0);
		if (r < 0) {
			msg = w.err;
			w.err = NULL;
			goto out;
		}
	} else {
		r = -EINVAL;
		msg = case_msg(case_name, S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ||
				S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)
				? "is a special file, not a directory or a regular file"
				: "is not a directory or a regular file");
		goto out;
	}

	if (w.n_dropped_warnings > 0) {
		w.summarising = true;
		r = walk_warn(&w, "... and %zu more warnings", w.n_dropped_warnings);
		if (r < 0)
			goto out;
	}
	if (w.n > 1)
		qsort(w.entries, w.n, sizeof(*w.entries), entry_cmp);
	/*
	 * Give back the unused end of the array (it grows by doubling from 64):
	 * results are kept while cases settle, and with thousands of one-file
	 * cases settling at once the slack was most of the daemon's heap.
	 */
	if (w.n > 0 && w.n < w.alloc) {
		struct scan_entry *p = realloc(w.entries, w.n * sizeof(*p));

		if (p != NULL) {
			w.entries = p;
			w.alloc = w.n;
		}
	}
	memset(ret, 0, sizeof(*ret));
	ret->is_dir = S_ISDIR(st.st_mode);
	for (size_t i = 0; i < w.n; i++)
		ret->total_bytes += w.entries[i].size;
	fingerprint(w.entries, w.n, ret->is_dir, ret->fingerprint);
	ret->entries = w.entries;
	ret->n = w.n;
	ret->marker_present = w.marker_present;
	ret->changed = w.changed;
	ret->n_ignored = w.n_ignored;
	ret->warnings = w.warnings;
	ret->n_warnings = w.n_warnings;
	w.entries = NULL;
	w.n = 0;
	w.warnings = NULL;
	w.n_warnings = 0;
	r = 0;
out:
	if (cfd >= 0)
		close(cfd);
	if (wfd >= 0)
		close(wfd);
	walk_free(&w);
	if (r < 0 && reterr_msg)
		*reterr_msg = msg ? msg : strdup(strerror(-r));
	else
		free(msg);
	return r;
}

void
scan_result_clear(struct scan_result *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->n; i++)
		free(res->entries[i].relpath);
	free(res->entries);
	for (size_t i = 0; i < res->n_warnings; i++)
		free(res->warnings[i]);
	free(res->warnings);
	memset(res, 0, sizeof(*res));
}

bool
scan_same(const struct scan_result *a, const struct scan_result *b)
{
	if (a->n != b->n || a->is_dir != b->is_dir)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct scan_entry *x = &a->entries[i], *y = &b->entries[i];

		if (x->size != y->size || x->mtime_ns != y->mtime_ns ||
		    x->relpath_len != y->relpath_len ||
		    memcmp(x->relpath, y->relpath, x->relpath_len) != 0)
			return false;
	}
	return true;
}

const struct scan_entry *
scan_find(const struct scan_result *res, const char *relpath)
{
	size_t lo = 0, hi = res->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(res->entries[mid].relpath, relpath);

		if (c == 0)
			return &res->entries[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
scan_list_cases(int dirfd, const char *watch_root, char ***ret_names, size_t *ret_n)
{
	char **names = NULL;
	size_t n = 0, keep = 0;
	int fd, r;

	fd = openat(dirfd, watch_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = read_names(fd, &names, &n);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		bool candidate = false;

		if (!scan_name_ignored(names[i]) &&
		    fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0)
			candidate = S_ISDIR(st.st_mode) || S_ISREG(st.st_mode) ||
				    S_ISLNK(st.st_mode);
		if (candidate)
			names[keep++] = names[i];
		else
			free(names[i]);
	}
	if (keep > 1)
		qsort(names, keep, sizeof(*names), name_cmp);
	*ret_names = names;
	*ret_n = keep;
out:
	close(fd);
	return r;
}

void
scan_names_free(char **names, size_t n)
{
	if (!names)
		return;
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}
