/*
 * results.c: receipts, and keep / move / delete of finished cases.
 *
 * DESIGN
 * The pipeline first makes a plan (results_plan_make: where the case goes,
 * where the receipt goes), records it in the queue, then carries it out
 * (results_execute), so that a crash between the move and the final state
 * change finds the case already moved and only writes the receipt again. Every
 * file an operator sees appears atomically: the receipt through a temporary
 * file and rename, a copied case (across file systems) under a temporary name
 * that is renamed into place only once every byte is on disk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "results.h"

#define COPY_BUF (256 * 1024)

/* ---- the receipt ---- */

static void
iso_time(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A file's mtime as ISO 8601 UTC with its nanoseconds ("...T12:00:00.000000001Z"). */
static void
iso_time_ns(int64_t ns, char out[48])
{
	int64_t sec = ns / 1000000000, frac = ns % 1000000000;
	time_t tt;
	struct tm tm;
	size_t n;

	if (frac < 0) {
		frac += 1000000000;
		sec--;
	}
	tt = (time_t)sec;
	gmtime_r(&tt, &tm);
	n = strftime(out, 48, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 48 - n, ".%09" PRId64 "Z", frac);
}

static cJSON *
add_str(cJSON *o, const char *k, const char *v)
{
	return v != NULL ? cJSON_AddStringToObject(o, k, v) : cJSON_AddNullToObject(o, k);
}

int
results_receipt_build(struct store *store, int64_t case_id, const struct results_dest *dest,
		      int64_t finished, char **ret_json)
{
	struct store_case c = {0};
	struct store_file *files = NULL;
	struct store_remote *rem = NULL;
	size_t nf = 0, nr = 0;
	cJSON *root = NULL, *o, *arr;
	char t[48];
	char *text;
	int r;

	r = store_case_get(store, case_id, &c);
	if (r < 0)
		return r;
	r = store_file_list(store, case_id, &files, &nf);
	if (r < 0)
		goto out;
	r = store_remote_list(store, case_id, &rem, &nr);
	if (r < 0)
		goto out;
	r = -ENOMEM;
	root = cJSON_CreateObject();
	if (root == NULL)
		goto out;
	cJSON_AddNumberToObject(root, "receipt_version", 1);
	add_str(root, "watch", c.watch);
	add_str(root, "case", c.name);
	add_str(root, "path", c.path);
	add_str(root, "fingerprint", c.fingerprint);
	add_str(root, "state", store_state_name(c.state));
	add_str(root, "error", c.error);
	iso_time(c.created, t);
	add_str(root, "queued", t);
	iso_time(finished, t);
	add_str(root, "finished", t);
	o = cJSON_AddObjectToObject(root, "destination");
	if (o == NULL)
		goto out;
	add_str(o, "kind", dest->kind);
	add_str(o, "slug", dest->slug);
	add_str(o, "url", dest->url);
	arr = cJSON_AddArrayToObject(root, "remote");
	if (arr == NULL)
		goto out;
	for (size_t i = 0; i < nr; i++) {
		cJSON *x = cJSON_CreateObject();

		if (x == NULL || !cJSON_AddItemToArray(arr, x))
			goto out;
		add_str(x, "kind", store_remote_kind_name(rem[i].kind));
		if (rem[i].key != NULL && rem[i].key[0] != '\0')
			add_str(x, "socket", rem[i].key);
		add_str(x, "title", rem[i].title);
		add_str(x, "pk", rem[i].pk);
		add_str(x, "url", rem[i].url);
		add_str(x, "status", rem[i].status);
	}
	arr = cJSON_AddArrayToObject(root, "files");
	if (arr == NULL)
		goto out;
	for (size_t i = 0; i < nf; i++) {
		cJSON *x = cJSON_CreateObject();

		if (x == NULL || !cJSON_AddItemToArray(arr, x))
			goto out;
		add_str(x, "path", files[i].relpath);
		cJSON_AddNumberToObject(x, "size", (double)files[i].size);
		/* What the upload was checked against: size and mtime, not a digest. */
		iso_time_ns(files[i].mtime_ns, t);
		add_str(x, "mtime", t);
		add_str(x, "socket", files[i].socket);
		add_str(x, "upload_name", files[i].upload_name);
		add_str(x, "upload", files[i].upload_url);
	}
	text = cJSON_Print(root);
	if (text == NULL)
		goto out;
	*ret_json = text;
	r = 0;
out:
	cJSON_Delete(root);
	store_remote_list_free(rem, nr);
	store_file_list_free(files, nf);
	store_case_clear(&c);
	return r;
}

/* ---- atomic files ---- */

static int
mkdir_p(const char *path)
{
	char *p = strdup(path);
	int r = 0;

	if (p == NULL)
		return -ENOMEM;
	for (char *s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;

		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			r = -errno;
			break;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return r;
}

static int
fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0 && errno != EINVAL)
		r = -errno;
	close(fd);
	return r;
}

static int
write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int
results_write_atomic(const char *dir, const char *name, const char *data, size_t len)
{
	char *tmp = NULL, *dst = NULL;
	int fd = -1;
	int r;

	r = mkdir_p(dir);
	if (r < 0)
		return r;
	if (asprintf(&tmp, "%s/.%s.XXXXXX", dir, name) < 0)
		return -ENOMEM;
	if (asprintf(&dst, "%s/%s", dir, name) < 0) {
		free(tmp);
		return -ENOMEM;
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	r = write_all(fd, data, len);
	if (r == 0 && fchmod(fd, 0644) < 0)
		r = -errno;
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	fd = -1;
	if (r == 0 && rename(tmp, dst) < 0)
		r = -errno;
	if (r == 0)
		r = fsync_dir(dir);
	if (r < 0)
		(void)unlink(tmp);
out:
	free(tmp);
	free(dst);
	return r;
}

/* ---- targets, move, delete ---- */

int
results_free_target(const char *dir, const char *name, char **ret_path)
{
	const char *ext = strchr(name + (name[0] != '\0'), '.');
	size_t stem = ext != NULL ? (size_t)(ext - name) : strlen(name);
	struct stat st;

	if (ext == NULL)
		ext = "";
	for (int i = 0; i < 10000; i++) {
		char *p;
		int n;

		if (i == 0)
			n = asprintf(&p, "%s/%s", dir, name);
		else
			n = asprintf(&p, "%s/%.*s-%d%s", dir, (int)stem, name, i, ext);
		if (n < 0)
			return -ENOMEM;
		if (lstat(p, &st) < 0 && errno == ENOENT) {
			*ret_path = p;
			return 0;
		}
		free(p);
	}
	return -EEXIST;
}

static int
delete_at(int dfd, const char *name)
{
	struct stat st;
	int r = 0;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode)) {
		int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *d;
		struct dirent *de;

		if (fd < 0)
			return -errno;
		d = fdopendir(fd);
		if (d == NULL) {
			close(fd);
			return -errno;
		}
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			r = delete_at(dirfd(d), de->d_name);
			if (r < 0 && r != -ENOENT)
				break;
			r = 0;
		}
		closedir(d);
		if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
			r = -errno;
		return r;
	}
	if (unlinkat(dfd, name, 0) < 0)
		return -errno;
	return 0;
}

int
results_delete(const char *path)
{
	char *a = strdup(path), *b = strdup(path);
	int r = -ENOMEM;
	int fd;

	if (a == NULL || b == NULL)
		goto out;
	fd = open(dirname(a), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	r = delete_at(fd, basename(b));
	if (r == 0)
		(void)fsync(fd);
	close(fd);
out:
	free(a);
	free(b);
	return r;
}

static int
copy_file(int sdir, const char *name, int ddir, const char *dname, mode_t mode)
{
	int in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int out = -1;
	char *buf = NULL;
	int r = 0;

	if (in < 0)
		return -errno;
	out = openat(ddir, dname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777);
	buf = malloc(COPY_BUF);
	if (out < 0 || buf == NULL) {
		r = out < 0 ? -errno : -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = read(in, buf, COPY_BUF);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		r = write_all(out, buf, (size_t)n);
		if (r < 0)
			break;
	}
	if (r == 0 && fsync(out) < 0)
		r = -errno;
out:
	free(buf);
	if (out >= 0 && close(out) < 0 && r == 0)
		r = -errno;
	close(in);
	return r;
}

static int
copy_tree(int sdir, const char *name, int ddir, const char *dname)
{
	struct stat st;
	int r = 0;

	if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISREG(st.st_mode))
		return copy_file(sdir, name, ddir, dname, st.st_mode);
	if (S_ISLNK(st.st_mode)) {
		char target[4096];
		ssize_t n = readlinkat(sdir, name, target, sizeof(target) - 1);

		if (n < 0)
			return -errno;
		target[n] = '\0';
		return symlinkat(target, ddir, dname) < 0 ? -errno : 0;
	}
	if (S_ISDIR(st.st_mode)) {
		int sfd, dfd;
		DIR *d;
		struct dirent *de;

		if (mkdirat(ddir, dname, st.st_mode & 07777) < 0)
			return -errno;
		sfd = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		dfd = openat(ddir, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sfd < 0 || dfd < 0) {
			r = -errno;
			if (sfd >= 0)
				close(sfd);
			if (dfd >= 0)
				close(dfd);
			return r;
		}
		d = fdopendir(sfd);
		if (d == NULL) {
			r = -errno;
			close(sfd);
			close(dfd);
			return r;
		}
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			r = copy_tree(dirfd(d), de->d_name, dfd, de->d_name);
			if (r < 0)
				break;
		}
		closedir(d);
		if (r == 0 && fsync(dfd) < 0)
			r = -errno;
		close(dfd);
		return r;
	}
	return 0;	/* fifos, devices: not part of a case */
}

int
results_move(const char *src, const char *dst, bool force_copy, char **reterr_msg)
{
	char *sa = strdup(src), *sb = strdup(src), *da = strdup(dst), *db = strdup(dst);
	char *tmpname = NULL;
	const char *sdir, *sname, *ddir, *dname;
	int sfd = -1, dfd = -1;
	struct stat st;
	int r = -ENOMEM;

	if (sa == NULL || sb == NULL || da == NULL || db == NULL)
		goto out;
	sdir = dirname(sa);
	sname = basename(sb);
	ddir = dirname(da);
	dname = basename(db);
	r = mkdir_p(ddir);
	if (r < 0) {
		if (reterr_msg != NULL && asprintf(reterr_msg, "cannot create '%s': %s", ddir,
						   strerror(-r)) < 0)
			*reterr_msg = NULL;
		goto out;
	}
	if (lstat(dst, &st) == 0) {
		r = -EEXIST;
		goto out;
	}
	if (!force_copy) {
		if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) == 0) {
			(void)fsync_dir(ddir);
			(void)fsync_dir(sdir);
			r = 0;
			goto out;
		}
		r = -errno;
		if (r != -EXDEV && r != -EINVAL && r != -ENOSYS) {
			if (reterr_msg != NULL && asprintf(reterr_msg, "cannot move '%s' to '%s': %s",
							   src, dst, strerror(-r)) < 0)
				*reterr_msg = NULL;
			goto out;
		}
	}
	/* Across file systems: copy under a temporary name, then rename into place. */
	sfd = open(sdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dfd = open(ddir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0 || dfd < 0 || asprintf(&tmpname, ".%s.gcdrop-copy", dname) < 0) {
		r = sfd < 0 || dfd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	(void)delete_at(dfd, tmpname);
	r = copy_tree(sfd, sname, dfd, tmpname);
	if (r == 0 && renameat2(dfd, tmpname, dfd, dname, RENAME_NOREPLACE) < 0)
		r = -errno;
	if (r < 0) {
		(void)delete_at(dfd, tmpname);
		if (reterr_msg != NULL && asprintf(reterr_msg, "cannot copy '%s' to '%s': %s", src,
						   dst, strerror(-r)) < 0)
			*reterr_msg = NULL;
		goto out;
	}
	(void)fsync(dfd);
	r = delete_at(sfd, sname);
	if (r < 0 && reterr_msg != NULL &&
	    asprintf(reterr_msg, "copied '%s' to '%s' but cannot remove the original: %s", src,
		     dst, strerror(-r)) < 0)
		*reterr_msg = NULL;
	(void)fsync(sfd);
out:
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	free(tmpname);
	free(sa);
	free(sb);
	free(da);
	free(db);
	return r;
}

/* ---- plans ---- */

void
results_plan_clear(struct results_plan *p)
{
	free(p->target);
	free(p->receipt_dir);
	free(p->receipt_name);
	free(p->results);
	memset(p, 0, sizeof(*p));
}

int
results_plan_make(const struct config_watch *w, const struct store_case *c, bool ok,
		  const char *recorded, struct results_plan *ret)
{
	struct results_plan p = {0};
	const char *dir = ok ? w->done_dir : w->failed_dir;
	struct stat st;
	bool is_dir;
	int r = -ENOMEM;

	p.action = ok ? w->on_success : w->on_failure;
	if (p.action == CONFIG_ACTION_MOVE && dir == NULL)
		p.action = CONFIG_ACTION_KEEP;
	if (p.action == CONFIG_ACTION_MOVE) {
		if (recorded != NULL && lstat(c->path, &st) < 0)
			p.target = strdup(recorded);
		else
			r = results_free_target(dir, c->name, &p.target);
		if (p.target == NULL)
			goto fail;
	}
	if (lstat(c->path, &st) == 0)
		is_dir = S_ISDIR(st.st_mode);
	else
		is_dir = p.target != NULL && lstat(p.target, &st) == 0 && S_ISDIR(st.st_mode);
	r = -ENOMEM;
	if (w->results_dir != NULL) {
		if (asprintf(&p.receipt_dir, "%s/%s", w->results_dir, c->name) < 0) {
			p.receipt_dir = NULL;
			goto fail;
		}
		p.receipt_name = strdup(RESULTS_RECEIPT_NAME);
		p.results = strdup(p.receipt_dir);
		if (p.receipt_name == NULL || p.results == NULL)
			goto fail;
	} else if (p.action == CONFIG_ACTION_MOVE) {
		char *t = strdup(p.target);

		if (t == NULL)
			goto fail;
		if (is_dir) {
			p.receipt_dir = strdup(p.target);
			p.receipt_name = strdup(RESULTS_RECEIPT_NAME);
		} else {
			p.receipt_dir = strdup(dirname(t));
			free(t);
			t = strdup(p.target);
			if (t != NULL && asprintf(&p.receipt_name, "%s.%s", basename(t),
						  RESULTS_RECEIPT_NAME) < 0)
				p.receipt_name = NULL;
		}
		free(t);
		p.results = strdup(p.target);
		if (p.receipt_dir == NULL || p.receipt_name == NULL || p.results == NULL)
			goto fail;
	}
	*ret = p;
	return 0;
fail:
	results_plan_clear(&p);
	return r;
}

int
results_execute(const struct results_plan *p, const char *case_path, const char *receipt,
		char **reterr_msg)
{
	struct stat st;
	int r = 0;

	switch (p->action) {
	case CONFIG_ACTION_KEEP:
		break;
	case CONFIG_ACTION_MOVE:
		if (lstat(case_path, &st) < 0)
			break;		/* moved by an earlier attempt */
		r = results_move(case_path, p->target, false, reterr_msg);
		if (r < 0)
			return r;
		break;
	case CONFIG_ACTION_DELETE:
		r = results_delete(case_path);
		if (r < 0 && r != -ENOENT) {
			if (reterr_msg != NULL && asprintf(reterr_msg, "cannot delete '%s': %s",
							   case_path, strerror(-r)) < 0)
				*reterr_msg = NULL;
			return r;
		}
		r = 0;
		break;
	}
	if (receipt != NULL && p->receipt_dir != NULL) {
		r = results_write_atomic(p->receipt_dir, p->receipt_name, receipt, strlen(receipt));
		if (r < 0 && reterr_msg != NULL &&
		    asprintf(reterr_msg, "cannot write the receipt in '%s': %s", p->receipt_dir,
			     strerror(-r)) < 0)
			*reterr_msg = NULL;
	}
	return r;
}
