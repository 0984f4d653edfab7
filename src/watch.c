/*
 * watch.c: inotify for the watch folders and the settling cases. See watch.h.
 *
 * DESIGN
 * One inotify instance; every watch descriptor (wd) it hands out is a node in a
 * chained hash table keyed by wd. A node is either a root (a watch folder) or one
 * directory of a registered case; case nodes are also linked into their case's
 * list, so that releasing a case removes exactly its watches.
 *
 * inotify gives the same wd when a directory that is already watched is added
 * again. That is how moves are followed: a directory moved within or between
 * cases produces IN_MOVED_TO in its new parent, we add it again, get its old wd
 * back, and re-home the node (new owner, new path), then list it so that its
 * subdirectories are re-homed the same way.
 *
 * Listing a new directory is the only filesystem walk here and it looks only for
 * subdirectories to watch (d_type, or fstatat without following symlinks when
 * the filesystem does not fill d_type); walks of a case's files, sizes and
 * fingerprints belong to scan. The listing reads all names and closes the
 * directory before it descends, so it holds one descriptor whatever the depth,
 * and it stops at SCAN_DEFAULT_MAX_DEPTH levels, where scan stops too.
 *
 * The kernel drops a watch whose directory is deleted and says so with
 * IN_IGNORED; the node is freed right then, since the wd may be handed out
 * again. A root whose folder is deleted or moved away is reported once
 * (WATCH_EV_ROOT_GONE); a moved root is unwatched at once, or it would follow
 * the folder to its new place.
 *
 * Callbacks run in the middle of decoding and may add or remove cases and
 * roots: decoding re-looks up the node of every record and touches nothing of
 * a record after its callback.
 *
 * Test seam: every inotify_add_watch() goes through add_watch() and every
 * statfs() through watch_fs_kind(), where the two environment variables of
 * watch.h (GCDROP_TEST_WATCH_LIMIT, GCDROP_TEST_NETFS) can fake an exhausted
 * watch budget and a network filesystem. They are read from the environment
 * (not set through a function) so that the end-to-end tests reach the real
 * daemon with them, as GCDROP_PART_SIZE does for the pipeline.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "log.h"
#include "scan.h"
#include "watch.h"

#define WATCH_ROOT_MASK                                                                        \
	(IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE |        \
	 IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
#define WATCH_CASE_MASK                                                                        \
	(IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE |        \
	 IN_MOVED_FROM | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

/* statfs f_type of the network filesystems that inotify cannot serve. */
#define WATCH_NFS_MAGIC 0x6969
#define WATCH_SMB_MAGIC 0x517B
#define WATCH_CIFS_MAGIC 0xFF534D42u
#define WATCH_SMB2_MAGIC 0xFE534D42u

#define WATCH_READ_BUF (64 * 1024)

struct wnode {
	int wd;
	unsigned root;
	struct watch_case *owner;	/* NULL for a root */
	bool top;			/* the case's own directory */
	char *path;			/* the directory's path when it was (re-)added */
	struct wnode *hnext;
	struct wnode *cprev, *cnext;	/* in owner's list */
};

struct wroot {
	unsigned id;
	char *path;
	char *marker;
	struct wnode *node;		/* NULL when not watched */
};

struct watch_case {
	unsigned root;
	char *name;
	void *userdata;
	struct wnode *nodes;
	size_t n_nodes;
	bool limit_hit;
	struct watch_case *prev, *next;	/* in the watcher's list */
};

struct watch {
	int fd;
	long test_limit;		/* GCDROP_TEST_WATCH_LIMIT, or -1 */
	struct wnode **buckets;
	size_t n_buckets;
	size_t n_nodes;
	struct wroot *roots;
	size_t n_roots;
	struct watch_case *cases;
	char *buf;
};

/* ---- the wd table ---- */

static size_t
wd_slot(const struct watch *w, int wd)
{
	return ((unsigned)wd * 2654435761u) & (w->n_buckets - 1);
}

static struct wnode *
node_find(const struct watch *w, int wd)
{
	for (struct wnode *n = w->buckets[wd_slot(w, wd)]; n != NULL; n = n->hnext)
		if (n->wd == wd)
			return n;
	return NULL;
}

static int
table_grow(struct watch *w)
{
	size_t nb = w->n_buckets * 2;
	struct wnode **b = calloc(nb, sizeof(*b));
	size_t old = w->n_buckets;
	struct wnode **ob = w->buckets;

	if (b == NULL)
		return -ENOMEM;
	w->buckets = b;
	w->n_buckets = nb;
	for (size_t i = 0; i < old; i++) {
		struct wnode *n = ob[i], *next;

		for (; n != NULL; n = next) {
			size_t k = wd_slot(w, n->wd);

			next = n->hnext;
			n->hnext = b[k];
			b[k] = n;
		}
	}
	free(ob);
	return 0;
}

static void
node_unlink_owner(struct wnode *n)
{
	struct watch_case *c = n->owner;

	if (c == NULL)
		return;
	if (n->cprev != NULL)
		n->cprev->cnext = n->cnext;
	else
		c->nodes = n->cnext;
	if (n->cnext != NULL)
		n->cnext->cprev = n->cprev;
	n->cprev = n->cnext = NULL;
	n->owner = NULL;
	c->n_nodes--;
}

static void
node_link_owner(struct wnode *n, struct watch_case *c)
{
	n->owner = c;
	n->cprev = NULL;
	n->cnext = c->nodes;
	if (c->nodes != NULL)
		c->nodes->cprev = n;
	c->nodes = n;
	c->n_nodes++;
}

/* Forget a node (the kernel's watch is already gone or is removed by the caller). */
static void
node_drop(struct watch *w, struct wnode *n)
{
	for (struct wnode **pp = &w->buckets[wd_slot(w, n->wd)]; *pp != NULL; pp = &(*pp)->hnext) {
		if (*pp == n) {
			*pp = n->hnext;
			break;
		}
	}
	node_unlink_owner(n);
	for (size_t i = 0; i < w->n_roots; i++)
		if (w->roots[i].node == n)
			w->roots[i].node = NULL;
	w->n_nodes--;
	free(n->path);
	free(n);
}

static struct wnode *
node_new(struct watch *w, int wd, const char *path)
{
	struct wnode *n;
	size_t k;

	if (w->n_nodes + 1 > w->n_buckets && table_grow(w) < 0)
		return NULL;
	n = calloc(1, sizeof(*n));
	if (n == NULL)
		return NULL;
	n->path = strdup(path);
	if (n->path == NULL) {
		free(n);
		return NULL;
	}
	n->wd = wd;
	k = wd_slot(w, wd);
	n->hnext = w->buckets[k];
	w->buckets[k] = n;
	w->n_nodes++;
	return n;
}

/* ---- the test seam ---- */

/* GCDROP_TEST_WATCH_LIMIT as a number >= 0, or -1 when unset or malformed. */
static long
test_limit_from_env(void)
{
	const char *v = getenv(WATCH_TEST_LIMIT_ENV);
	char *end;
	long n;

	if (v == NULL || v[0] == '\0')
		return -1;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < 0)
		return -1;
	return n;
}

/* Whether GCDROP_TEST_NETFS names 'path' or a folder above it. */
static bool
test_netfs(const char *path)
{
	const char *v = getenv(WATCH_TEST_NETFS_ENV);
	size_t n;

	if (v == NULL || v[0] == '\0')
		return false;
	n = strlen(v);
	while (n > 1 && v[n - 1] == '/')
		n--;
	return strncmp(path, v, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* inotify_add_watch(), or ENOSPC past the test limit (as past max_user_watches). */
static int
add_watch(struct watch *w, const char *path, uint32_t mask)
{
	if (w->test_limit >= 0 && w->n_nodes >= (size_t)w->test_limit) {
		errno = ENOSPC;
		return -1;
	}
	return inotify_add_watch(w->fd, path, mask);
}

/* ---- the instance ---- */

int
watch_new(struct watch **ret)
{
	struct watch *w = calloc(1, sizeof(*w));
	int r;

	if (w == NULL)
		return -ENOMEM;
	w->fd = -1;
	w->test_limit = test_limit_from_env();
	w->n_buckets = 256;
	w->buckets = calloc(w->n_buckets, sizeof(*w->buckets));
	w->buf = malloc(WATCH_READ_BUF);
	if (w->buckets == NULL || w->buf == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0) {
		r = -errno;
		goto fail;
	}
	*ret = w;
	return 0;
fail:
	watch_free(w);
	return r;
}

struct watch *
watch_free(struct watch *w)
{
	if (w == NULL)
		return NULL;
	while (w->cases != NULL)
		watch_case_remove(w, w->cases);
	for (size_t i = 0; i < w->n_buckets && w->buckets != NULL; i++) {
		while (w->buckets[i] != NULL)
			node_drop(w, w->buckets[i]);
	}
	for (size_t i = 0; i < w->n_roots; i++) {
		free(w->roots[i].path);
		free(w->roots[i].marker);
	}
	free(w->roots);
	free(w->buckets);
	free(w->buf);
	if (w->fd >= 0)
		close(w->fd);
	free(w);
	return NULL;
}

int
watch_fd(const struct watch *w)
{
	return w->fd;
}

size_t
watch_n_watches(const struct watch *w)
{
	return w->n_nodes;
}

int
watch_fs_kind(const char *path, enum watch_fs *ret)
{
	struct statfs sfs;
	unsigned long type;

	if (statfs(path, &sfs) < 0)
		return -errno;
	type = (unsigned long)(unsigned int)sfs.f_type;
	if (test_netfs(path))
		type = WATCH_NFS_MAGIC;
	if (type == WATCH_NFS_MAGIC || type == WATCH_SMB_MAGIC || type == WATCH_CIFS_MAGIC ||
	    type == WATCH_SMB2_MAGIC)
		*ret = WATCH_FS_NETWORK;
	else
		*ret = WATCH_FS_LOCAL;
	return 0;
}

/* ---- roots ---- */

static struct wroot *
root_find(const struct watch *w, unsigned id)
{
	for (size_t i = 0; i < w->n_roots; i++)
		if (w->roots[i].id == id)
			return &w->roots[i];
	return NULL;
}

int
watch_root_add(struct watch *w, unsigned id, const char *path, const char *marker)
{
	struct wroot *rt = root_find(w, id), *roots;
	struct wnode *n;
	int wd, r;

	if (rt != NULL && rt->node != NULL)
		return -EEXIST;
	if (rt == NULL) {
		roots = realloc(w->roots, (w->n_roots + 1) * sizeof(*roots));
		if (roots == NULL)
			return -ENOMEM;
		w->roots = roots;
		rt = &w->roots[w->n_roots];
		memset(rt, 0, sizeof(*rt));
		rt->id = id;
		rt->path = strdup(path);
		rt->marker = marker != NULL && marker[0] != '\0' ? strdup(marker) : NULL;
		if (rt->path == NULL ||
		    (marker != NULL && marker[0] != '\0' && rt->marker == NULL)) {
			free(rt->path);
			free(rt->marker);
			return -ENOMEM;
		}
		w->n_roots++;
	}
	wd = add_watch(w, path, WATCH_ROOT_MASK);
	if (wd < 0) {
		r = -errno;
		goto fail;
	}
	n = node_find(w, wd);
	if (n != NULL) {
		/* The folder is already watched as something else (a case, another id). */
		r = -EEXIST;
		goto fail;
	}
	n = node_new(w, wd, path);
	if (n == NULL) {
		inotify_rm_watch(w->fd, wd);
		r = -ENOMEM;
		goto fail;
	}
	n->root = id;
	rt->node = n;
	log_debug("watch: root %u '%s' is wd %d", id, path, wd);
	return 0;
fail:
	/* Keep no half-registered root: the caller retries with watch_root_add. */
	watch_root_remove(w, id);
	return r;
}

void
watch_root_remove(struct watch *w, unsigned id)
{
	struct wroot *rt = root_find(w, id);
	size_t i;

	if (rt == NULL)
		return;
	if (rt->node != NULL) {
		inotify_rm_watch(w->fd, rt->node->wd);
		node_drop(w, rt->node);
	}
	free(rt->path);
	free(rt->marker);
	i = (size_t)(rt - w->roots);
	memmove(&w->roots[i], &w->roots[i + 1], (w->n_roots - i - 1) * sizeof(*w->roots));
	w->n_roots--;
}

bool
watch_root_watched(const struct watch *w, unsigned id)
{
	const struct wroot *rt = root_find(w, id);

	return rt != NULL && rt->node != NULL;
}

/* ---- cases ---- */

static char *
path_join(const char *dir, const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

/* The names of the subdirectories of 'path' that are not ignored. */
static int
list_subdirs(const char *path, char ***ret_names, size_t *ret_n)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (d == NULL) {
		r = -errno;
		close(fd);
		return r;
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		bool dir = de->d_type == DT_DIR;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (scan_name_ignored(de->d_name))
			continue;
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;

			dir = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			      S_ISDIR(st.st_mode);
		}
		if (!dir)
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			char **nn = realloc(names, nc * sizeof(*nn));

			if (nn == NULL) {
				r = -ENOMEM;
				break;
			}
			names = nn;
			cap = nc;
		}
		names[n] = strdup(de->d_name);
		if (names[n] == NULL) {
			r = -ENOMEM;
			break;
		}
		n++;
	}
	if (r == 0 && errno != 0)
		r = -errno;
	closedir(d);
	if (r < 0) {
		scan_names_free(names, n);
		return r;
	}
	*ret_names = names;
	*ret_n = n;
	return 0;
}

/*
 * Watch directory 'path' for case 'c', then list it and watch its
 * subdirectories. Returns 0, -ENOSPC when the watch limit was hit (watches set
 * so far stay), or another negative errno for 'path' itself. Subdirectories that
 * vanish or cannot be listed are skipped: the case's walk reports them.
 */
static int
add_dir(struct watch *w, struct watch_case *c, const char *path, bool top, unsigned depth)
{
	char **names = NULL;
	size_t n_names = 0;
	struct wnode *n;
	int wd, r;

	wd = add_watch(w, path, WATCH_CASE_MASK);
	if (wd < 0) {
		r = -errno;
		if (r == -ENOSPC)
			c->limit_hit = true;
		return r;
	}
	n = node_find(w, wd);
	if (n != NULL && n->owner == NULL) {
		/* A root folder inside a case: watch folders must not overlap. */
		return 0;
	}
	if (n == NULL) {
		n = node_new(w, wd, path);
		if (n == NULL) {
			inotify_rm_watch(w->fd, wd);
			return -ENOMEM;
		}
	} else {
		char *p = strdup(path);

		if (p == NULL)
			return -ENOMEM;
		free(n->path);
		n->path = p;
		node_unlink_owner(n);
	}
	n->root = c->root;
	n->top = top;
	node_link_owner(n, c);
	if (depth >= SCAN_DEFAULT_MAX_DEPTH)
		return 0;
	r = list_subdirs(path, &names, &n_names);
	if (r < 0)
		return r == -ENOMEM ? r : 0;
	for (size_t i = 0; i < n_names; i++) {
		char *sub = path_join(path, names[i]);

		if (sub == NULL) {
			r = -ENOMEM;
			break;
		}
		r = add_dir(w, c, sub, false, depth + 1);
		free(sub);
		if (r == -ENOSPC || r == -ENOMEM)
			break;
		r = 0;
	}
	scan_names_free(names, n_names);
	return r;
}

int
watch_case_add(struct watch *w, unsigned root, const char *root_path, const char *name,
	       void *userdata, struct watch_case **ret)
{
	struct watch_case *c;
	struct stat st;
	char *path;
	int r;

	path = path_join(root_path, name);
	if (path == NULL)
		return -ENOMEM;
	if (lstat(path, &st) < 0) {
		r = -errno;
		free(path);
		return r;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->name = strdup(name)) == NULL) {
		free(c);
		free(path);
		return -ENOMEM;
	}
	c->root = root;
	c->userdata = userdata;
	r = 0;
	if (S_ISDIR(st.st_mode))
		r = add_dir(w, c, path, true, 0);
	free(path);
	if (r < 0 && r != -ENOSPC) {
		/* -ENOENT / -ENOTDIR: it vanished or was replaced; nothing to watch. */
		while (c->nodes != NULL) {
			struct wnode *n = c->nodes;

			inotify_rm_watch(w->fd, n->wd);
			node_drop(w, n);
		}
		free(c->name);
		free(c);
		return r;
	}
	c->next = w->cases;
	if (w->cases != NULL)
		w->cases->prev = c;
	w->cases = c;
	*ret = c;
	return r;
}

size_t
watch_case_n_watches(const struct watch_case *c)
{
	return c != NULL ? c->n_nodes : 0;
}

struct watch_case *
watch_case_remove(struct watch *w, struct watch_case *c)
{
	if (c == NULL)
		return NULL;
	while (c->nodes != NULL) {
		struct wnode *n = c->nodes;

		inotify_rm_watch(w->fd, n->wd);
		node_drop(w, n);
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->cases = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c->name);
	free(c);
	return NULL;
}

/* ---- decoding ---- */

static bool
is_marker(const struct watch *w, unsigned root, const char *name)
{
	const struct wroot *rt = root_find(w, root);

	return rt != NULL && rt->marker != NULL && name != NULL && strcmp(rt->marker, name) == 0;
}

static void
decode_root(struct watch *w, struct wnode *n, uint32_t mask, const char *name, watch_cb cb,
	    void *ud)
{
	struct watch_event ev = { .root = n->root, .mask = mask };

	if (mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
		/*
		 * Gone: drop the node now so that IN_IGNORED (and, for a move, every
		 * later event from the folder's new place) finds nothing.
		 */
		inotify_rm_watch(w->fd, n->wd);
		node_drop(w, n);
		ev.kind = WATCH_EV_ROOT_GONE;
		cb(&ev, ud);
		return;
	}
	if (name[0] == '\0' || scan_name_ignored(name))
		return;
	ev.case_name = name;
	ev.is_dir = (mask & IN_ISDIR) != 0;
	ev.kind = (mask & (IN_DELETE | IN_MOVED_FROM)) ? WATCH_EV_CHILD_GONE : WATCH_EV_CHILD;
	cb(&ev, ud);
}

static void
decode_case(struct watch *w, struct wnode *n, uint32_t mask, const char *name, watch_cb cb,
	    void *ud)
{
	struct watch_case *c = n->owner;
	struct watch_event ev = {
		.kind = WATCH_EV_ACTIVITY,
		.root = n->root,
		.case_name = c->name,
		.case_userdata = c->userdata,
		.mask = mask,
	};
	bool marker = n->top && is_marker(w, n->root, name);
	bool limit_before = c->limit_hit;

	if (name[0] == '\0')
		return;	/* events about the directory itself: its parent reports them */
	ev.marker = marker && !(mask & (IN_DELETE | IN_MOVED_FROM));
	/*
	 * A hidden or temporary name inside a case is not part of it, but a write
	 * to it (a copy tool's "file.part", rsync's ".file.XXXXXX") means the case
	 * is still being written: it is activity all the same. Such directories
	 * are not watched.
	 */
	if ((mask & (IN_CREATE | IN_MOVED_TO)) && (mask & IN_ISDIR) && !marker &&
	    !scan_name_ignored(name)) {
		char *sub = path_join(n->path, name);
		int r = sub != NULL ? add_dir(w, c, sub, false, 1) : -ENOMEM;

		free(sub);
		if (r < 0 && r != -ENOENT && r != -ENOTDIR)
			log_debug("watch: cannot watch a new directory of case '%s': %s", c->name,
				  strerror(-r));
	}
	/* The activity first: callbacks for WATCH_EV_ACTIVITY keep the case registered. */
	cb(&ev, ud);
	if (c->limit_hit && !limit_before) {
		ev.kind = WATCH_EV_LIMIT;
		ev.marker = false;
		cb(&ev, ud);
	}
}

int
watch_feed(struct watch *w, const void *buf, size_t len, watch_cb cb, void *userdata)
{
	const char *p = buf, *end = p + len;

	while (p < end) {
		struct inotify_event ie;
		char name[NAME_MAX + 1];
		struct wnode *n;
		size_t nl;

		if ((size_t)(end - p) < sizeof(ie))
			return -EBADMSG;
		memcpy(&ie, p, sizeof(ie));
		if ((size_t)(end - p) - sizeof(ie) < ie.len)
			return -EBADMSG;
		/* The name is NUL-padded within its record; copy it out bounded. */
		nl = strnlen(p + sizeof(ie), ie.len);
		if (nl > NAME_MAX)
			nl = NAME_MAX;
		memcpy(name, p + sizeof(ie), nl);
		name[nl] = '\0';
		p += sizeof(ie) + ie.len;

		if (ie.mask & IN_Q_OVERFLOW) {
			struct watch_event ev = { .kind = WATCH_EV_OVERFLOW, .mask = ie.mask };

			cb(&ev, userdata);
			continue;
		}
		n = node_find(w, ie.wd);
		if (n == NULL)
			continue;
		if (ie.mask & IN_IGNORED) {
			bool root = n->owner == NULL;
			struct watch_event ev = { .kind = WATCH_EV_ROOT_GONE, .root = n->root,
						  .mask = ie.mask };

			node_drop(w, n);
			if (root)
				cb(&ev, userdata);
			continue;
		}
		if (n->owner == NULL)
			decode_root(w, n, ie.mask, name, cb, userdata);
		else
			decode_case(w, n, ie.mask, name, cb, userdata);
	}
	return 0;
}

int
watch_read(struct watch *w, size_t max_bytes, watch_cb cb, void *userdata)
{
	size_t total = 0;

	for (;;) {
		ssize_t n = read(w->fd, w->buf, WATCH_READ_BUF);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -errno;
		}
		if (n == 0)
			return 0;
		(void)watch_feed(w, w->buf, (size_t)n, cb, userdata);
		total += (size_t)n;
		if (max_bytes > 0 && total >= max_bytes)
			return 0;
	}
}
