/*
 * outputs.c: an algorithm job's outputs written to results_dir/<case>/.
 *
 * DESIGN
 * The job's "outputs" array is untrusted input: outputs_plan() turns it into
 * plain items and refuses anything that could write outside the case folder
 * (absolute paths, "..", hidden or empty components) or make two outputs
 * write the same place, before a byte is written. Writing then never builds a
 * path string to hand to open(2): it walks from the case folder one component
 * at a time with openat(O_NOFOLLOW | O_DIRECTORY), creating what is missing
 * and replacing anything that is not a real directory (the case folder is
 * gcdrop's), so a symlink placed there cannot redirect a write.
 *
 * Atomicity (style rule 14): every file is written as ".<name>.gcdrop-part"
 * in its final directory, fsynced, renamed over <name>, and the directory is
 * fsynced. The temporary name is fixed, so a crash leaves at most one stale
 * temporary per output file; it is deleted before the file is written again
 * and by the sweep in outputs_finish(). Re-running an output therefore
 * replaces the one copy instead of adding another. job.json is written last,
 * after the sweep, so automation may treat its appearance as "complete".
 *
 * Downloads stream straight into the temporary file (api_download() follows
 * the media URL's redirect to storage without the token) with a size cap;
 * there is no Range resume: a restarted download starts over, which is
 * simple and cannot splice bytes of two different attempts.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "outputs.h"

#define RECEIPT_NAME "gcdrop-receipt.json"
/* Cap of a pretty-printed JSON text (indentation of deep values included). */
#define PRETTY_MAX ((size_t)64 << 20)
/* Image files written for one image. */
#define IMAGE_FILES_MAX 64

/* ---- errors ---- */

static void GC_PRINTF(4, 5)
    set_err(struct api_error *e, enum api_class cls, long status, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return;
	e->cls = cls;
	e->status = status;
	e->retry_after_ms = -1;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

static void
err_ok(struct api_error *e)
{
	if (e)
		set_err(e, API_OK, 0, "%s", "");
}

static char *GC_PRINTF(1, 2) strdupf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

/* ---- the plan ---- */

const char *
outputs_super_kind_name(enum api_super_kind k)
{
	switch (k) {
	case API_SUPER_IMAGE:
		return "Image";
	case API_SUPER_FILE:
		return "File";
	case API_SUPER_VALUE:
		return "Value";
	}
	return "?";
}

/* NULL when the path is acceptable, else why not (a static string). */
static const char *
check_relative_path(const char *p)
{
	const char *c, *end;
	size_t n = strlen(p), len;

	if (n == 0)
		return "is empty";
	if (n > OUTPUTS_PATH_MAX)
		return "is too long";
	if (p[0] == '/')
		return "is absolute";
	if (p[n - 1] == '/')
		return "has an empty component";
	for (c = p; *c; c = end + (*end == '/')) {
		end = strchr(c, '/');
		if (!end)
			end = c + strlen(c);
		len = (size_t)(end - c);
		if (len == 0)
			return "has an empty component";
		if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
			return "leaves the results folder";
		if (c[0] == '.')
			return "has a hidden component";
		if (len > OUTPUTS_NAME_MAX)
			return "has a component that is too long";
		if (*end == '\0')
			break;
	}
	if (strchr(p, '/') == NULL &&
	    (strcmp(p, OUTPUTS_JOB_JSON) == 0 || strcmp(p, RECEIPT_NAME) == 0))
		return "is a name gcdrop writes itself";
	for (c = p; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return "has a control character";
	return NULL;
}

/* Whether a is b, or a directory holding b. */
static bool
path_covers(const char *a, const char *b)
{
	size_t n = strlen(a);

	return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

static void
item_clear(struct outputs_item *it)
{
	free(it->socket);
	free(it->kind);
	free(it->relative_path);
	free(it->value_json);
	free(it->url);
	memset(it, 0, sizeof(*it));
}

struct outputs_item *
outputs_items_free(struct outputs_item *items, size_t n)
{
	size_t i;

	for (i = 0; items && i < n; i++)
		item_clear(&items[i]);
	free(items);
	return NULL;
}

/* A string member, or NULL when it is absent or not a string. */
static const char *
str_member(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* One element into *it; on failure *ret_msg says why (malloc'd). */
static int
plan_one(const cJSON *el, size_t idx, struct outputs_item *it, char **ret_msg)
{
	const cJSON *itf, *pk, *val;
	const char *slug, *sk, *rp, *kind, *why, *url;
	char *text;

	if (!cJSON_IsObject(el)) {
		*ret_msg = strdupf("output %zu: not an object", idx);
		return -EINVAL;
	}
	itf = cJSON_GetObjectItemCaseSensitive(el, "interface");
	if (!cJSON_IsObject(itf)) {
		*ret_msg = strdupf("output %zu: \"interface\" is missing or not an object", idx);
		return -EINVAL;
	}
	slug = str_member(itf, "slug");
	if (!slug || !slug[0]) {
		*ret_msg = strdupf("output %zu: the socket has no slug", idx);
		return -EINVAL;
	}
	sk = str_member(itf, "super_kind");
	if (!sk) {
		*ret_msg = strdupf("output '%s': the socket has no super_kind", slug);
		return -EINVAL;
	}
	if (strcmp(sk, "Image") == 0) {
		it->super_kind = API_SUPER_IMAGE;
	} else if (strcmp(sk, "File") == 0) {
		it->super_kind = API_SUPER_FILE;
	} else if (strcmp(sk, "Value") == 0) {
		it->super_kind = API_SUPER_VALUE;
	} else {
		*ret_msg = strdupf("output '%s': unknown super_kind '%.40s'", slug, sk);
		return -EINVAL;
	}
	rp = str_member(itf, "relative_path");
	if (!rp) {
		*ret_msg = strdupf("output '%s': the socket has no relative_path", slug);
		return -EINVAL;
	}
	why = check_relative_path(rp);
	if (why) {
		*ret_msg = strdupf("output '%s': relative_path '%.200s' %s", slug, rp, why);
		return -EINVAL;
	}
	kind = str_member(itf, "kind");
	pk = cJSON_GetObjectItemCaseSensitive(el, "pk");
	it->pk = cJSON_IsNumber(pk) ? (int64_t)pk->valuedouble : -1;

	if (it->super_kind == API_SUPER_VALUE) {
		val = cJSON_GetObjectItemCaseSensitive(el, "value");
		if (!val) {
			*ret_msg = strdupf("output '%s': a Value without \"value\"", slug);
			return -EINVAL;
		}
		text = cJSON_PrintUnformatted(val);
		if (!text)
			return -ENOMEM;
		if (strlen(text) > OUTPUTS_VALUE_MAX) {
			free(text);
			*ret_msg = strdupf("output '%s': the value is larger than %zu bytes", slug,
			                   OUTPUTS_VALUE_MAX);
			return -EINVAL;
		}
		it->value_json = text;
	} else {
		const char *field = it->super_kind == API_SUPER_IMAGE ? "image" : "file";

		url = str_member(el, field);
		if (!url || !url[0]) {
			*ret_msg =
			    strdupf("output '%s': %s socket without \"%s\" URL", slug, sk, field);
			return -EINVAL;
		}
		if (http_check_url(url) < 0) {
			*ret_msg = strdupf("output '%s': \"%s\" is not a usable URL", slug, field);
			return -EINVAL;
		}
		it->url = strdup(url);
		if (!it->url)
			return -ENOMEM;
	}
	it->socket = strdup(slug);
	it->kind = strdup(kind ? kind : "");
	it->relative_path = strdup(rp);
	if (!it->socket || !it->kind || !it->relative_path)
		return -ENOMEM;
	return 0;
}

int
outputs_plan(const cJSON *job_outputs, struct outputs_item **ret_items, size_t *ret_n,
             char **reterr_msg)
{
	struct outputs_item *items = NULL;
	const cJSON *el;
	char *msg = NULL;
	size_t n = 0, cap, i, j;
	int r = 0;

	if (!job_outputs || cJSON_IsNull(job_outputs))
		goto plan_done;
	if (!cJSON_IsArray(job_outputs)) {
		msg = strdup("outputs: not an array");
		r = -EINVAL;
		goto plan_done;
	}
	cap = (size_t)cJSON_GetArraySize(job_outputs);
	if (cap == 0)
		goto plan_done;
	items = calloc(cap, sizeof(*items));
	if (!items) {
		r = -ENOMEM;
		goto plan_done;
	}
	cJSON_ArrayForEach(el, job_outputs)
	{
		r = plan_one(el, n, &items[n], &msg);
		n++;
		if (r < 0)
			goto plan_done;
	}
	for (i = 0; i < n; i++) {
		for (j = 0; j < n; j++) {
			if (i == j)
				continue;
			if (j > i && strcmp(items[i].socket, items[j].socket) == 0) {
				msg = strdupf("output '%s': the socket appears twice",
				              items[i].socket);
				r = -EINVAL;
				goto plan_done;
			}
			if (path_covers(items[i].relative_path, items[j].relative_path)) {
				msg =
				    strdupf("output '%s': relative_path '%s' overlaps output '%s' "
				            "('%s')",
				            items[j].socket, items[j].relative_path,
				            items[i].socket, items[i].relative_path);
				r = -EINVAL;
				goto plan_done;
			}
		}
	}

plan_done:
	if (r < 0) {
		outputs_items_free(items, n);
		if (reterr_msg) {
			*reterr_msg = msg ? msg : strdup(strerror(-r));
			msg = NULL;
		}
		free(msg);
		return r;
	}
	if (n == 0)
		items = outputs_items_free(items, 0);
	*ret_items = items;
	*ret_n = n;
	return 0;
}

/* ---- JSON text, indented by two spaces like Python's json.dump(indent=2) ---- */

static int
json_string(struct buf *b, const char *s)
{
	const unsigned char *p;
	int r = buf_appends(b, "\"");

	for (p = (const unsigned char *)s; r == 0 && *p; p++) {
		switch (*p) {
		case '"':
			r = buf_appends(b, "\\\"");
			break;
		case '\\':
			r = buf_appends(b, "\\\\");
			break;
		case '\n':
			r = buf_appends(b, "\\n");
			break;
		case '\r':
			r = buf_appends(b, "\\r");
			break;
		case '\t':
			r = buf_appends(b, "\\t");
			break;
		case '\b':
			r = buf_appends(b, "\\b");
			break;
		case '\f':
			r = buf_appends(b, "\\f");
			break;
		default:
			if (*p < 0x20)
				r = buf_printf(b, "\\u%04x", *p);
			else
				r = buf_append(b, p, 1);
		}
	}
	return r ? r : buf_appends(b, "\"");
}

static int
json_indent(struct buf *b, int depth)
{
	int r = buf_appends(b, "\n");

	while (r == 0 && depth-- > 0)
		r = buf_appends(b, "  ");
	return r;
}

static int
json_pretty(struct buf *b, const cJSON *v, int depth)
{
	const cJSON *c;
	char *leaf;
	bool obj = cJSON_IsObject(v);
	int r;

	if (obj || cJSON_IsArray(v)) {
		if (!v->child)
			return buf_appends(b, obj ? "{}" : "[]");
		r = buf_appends(b, obj ? "{" : "[");
		for (c = v->child; r == 0 && c; c = c->next) {
			r = json_indent(b, depth + 1);
			if (r == 0 && obj) {
				r = json_string(b, c->string ? c->string : "");
				if (r == 0)
					r = buf_appends(b, ": ");
			}
			if (r == 0)
				r = json_pretty(b, c, depth + 1);
			if (r == 0 && c->next)
				r = buf_appends(b, ",");
		}
		if (r == 0)
			r = json_indent(b, depth);
		return r ? r : buf_appends(b, obj ? "}" : "]");
	}
	if (cJSON_IsString(v))
		return json_string(b, v->valuestring ? v->valuestring : "");
	/* Numbers, booleans, null: cJSON's own formatting (round-trips doubles). */
	leaf = cJSON_PrintUnformatted(v);
	if (!leaf)
		return -ENOMEM;
	r = buf_appends(b, leaf);
	free(leaf);
	return r;
}

/* ---- directories and atomic files below the case folder ---- */

/* mkdir -p of an absolute path (the configured results_dir/<case>). */
static int
mkdir_parents(const char *path)
{
	char *p = strdup(path), *s;
	int r = 0;

	if (!p)
		return -ENOMEM;
	for (s = p + 1; r == 0; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char save = *s;

		*s = '\0';
		if (p[0] && mkdir(p, 0755) < 0 && errno != EEXIST)
			r = -errno;
		*s = save;
		if (save == '\0')
			break;
	}
	free(p);
	return r;
}

/* Remove name in dirfd, whatever it is, without following symlinks. */
static int
remove_at(int dirfd, const char *name)
{
	struct dirent *de;
	DIR *d;
	int fd, r = 0;

	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		close(fd);
		return r;
	}
	while (r == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		r = remove_at(fd, de->d_name);
	}
	closedir(d);
	if (r == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		r = -errno;
	return r;
}

/* Open (creating when missing) the real directory name inside dirfd. */
static int
open_subdir(int dirfd, const char *name)
{
	int fd, tries;

	for (tries = 0; tries < 3; tries++) {
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno == ENOENT) {
			if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
				return -errno;
			continue;
		}
		if (errno != ENOTDIR && errno != ELOOP)
			return -errno;
		/* A file or a symlink where gcdrop wants its directory: the folder is ours. */
		fd = remove_at(dirfd, name);
		if (fd < 0)
			return fd;
	}
	return -ELOOP;
}

/*
 * Open the directory that holds the last component of rel (or, with
 * whole, rel itself) below case_dir, creating what is missing. On success
 * *ret_name points into rel at that last component.
 */
static int
open_parent(const char *case_dir, const char *rel, bool whole, int *ret_fd, const char **ret_name)
{
	const char *c = rel, *slash;
	char comp[OUTPUTS_NAME_MAX + 1];
	int fd, sub, r;

	r = mkdir_parents(case_dir);
	if (r < 0)
		return r;
	fd = open(case_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		slash = strchr(c, '/');
		if (!slash && !whole)
			break;
		size_t len = slash ? (size_t)(slash - c) : strlen(c);

		if (len == 0 || len > OUTPUTS_NAME_MAX) {
			close(fd);
			return -EINVAL;
		}
		memcpy(comp, c, len);
		comp[len] = '\0';
		sub = open_subdir(fd, comp);
		close(fd);
		if (sub < 0)
			return sub;
		fd = sub;
		if (!slash)
			break;
		c = slash + 1;
	}
	*ret_fd = fd;
	*ret_name = c;
	return 0;
}

struct afile {
	int dirfd; /* borrowed */
	char name[OUTPUTS_NAME_MAX + 1];
	char tmp[OUTPUTS_NAME_MAX + sizeof(OUTPUTS_TEMP_SUFFIX) + 2];
	int fd;
};

/* Start writing dirfd/name: a fresh temporary, any stale one from a crash deleted first. */
static int
afile_open(struct afile *a, int dirfd, const char *name)
{
	if (strlen(name) > OUTPUTS_NAME_MAX || strchr(name, '/'))
		return -EINVAL;
	a->dirfd = dirfd;
	snprintf(a->name, sizeof(a->name), "%s", name);
	snprintf(a->tmp, sizeof(a->tmp), ".%s%s", name, OUTPUTS_TEMP_SUFFIX);
	a->fd = remove_at(dirfd, a->tmp);
	if (a->fd < 0) {
		int r = a->fd;

		a->fd = -1;
		return r;
	}
	a->fd = openat(dirfd, a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	return a->fd < 0 ? -errno : 0;
}

static void
afile_abort(struct afile *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	unlinkat(a->dirfd, a->tmp, 0);
}

/* fsync, rename over the final name (replacing whatever is there), fsync the directory. */
static int
afile_commit(struct afile *a)
{
	int r = 0;

	if (fsync(a->fd) < 0)
		r = -errno;
	if (close(a->fd) < 0 && r == 0)
		r = -errno;
	a->fd = -1;
	if (r == 0 && renameat(a->dirfd, a->tmp, a->dirfd, a->name) < 0) {
		r = -errno;
		/* A directory in the way (an old output of another shape): ours to replace. */
		if (r == -EISDIR || r == -ENOTEMPTY || r == -EEXIST) {
			r = remove_at(a->dirfd, a->name);
			if (r == 0 && renameat(a->dirfd, a->tmp, a->dirfd, a->name) < 0)
				r = -errno;
		}
	}
	if (r == 0 && fsync(a->dirfd) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(a->dirfd, a->tmp, 0);
	return r;
}

static int
write_all(int fd, const char *p, size_t len)
{
	ssize_t w;

	while (len > 0) {
		w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int
write_text_at(int dirfd, const char *name, const char *text, size_t len)
{
	struct afile a = {.fd = -1};
	int r;

	r = afile_open(&a, dirfd, name);
	if (r < 0)
		return r;
	r = write_all(a.fd, text, len);
	if (r < 0) {
		afile_abort(&a);
		return r;
	}
	return afile_commit(&a);
}

/* A local failure: retried later (disk full, permissions an operator can fix). */
static void
local_err(struct api_error *e, const char *socket, const char *case_dir, const char *rel,
          const char *what, int r)
{
	set_err(e, API_RETRY, 0, "output '%s': cannot %s '%s/%s': %s", socket, what, case_dir, rel,
	        strerror(-r));
}

/* ---- writing one item ---- */

static int
write_value(const char *case_dir, const struct outputs_item *it, int64_t *ret_bytes,
            struct api_error *e)
{
	struct buf b;
	const char *name;
	cJSON *v;
	int dirfd = -1, r;

	buf_init(&b, PRETTY_MAX);
	v = it->value_json ? cJSON_Parse(it->value_json) : NULL;
	if (!v) {
		set_err(e, API_FAIL, 0, "output '%s': the value is not JSON", it->socket);
		return -EINVAL;
	}
	r = json_pretty(&b, v, 0);
	cJSON_Delete(v);
	if (r < 0) {
		set_err(e, r == -E2BIG ? API_FAIL : API_RETRY, 0, "output '%s': %s", it->socket,
		        strerror(-r));
		goto value_done;
	}
	r = open_parent(case_dir, it->relative_path, false, &dirfd, &name);
	if (r < 0) {
		local_err(e, it->socket, case_dir, it->relative_path, "create the folder of", r);
		goto value_done;
	}
	r = write_text_at(dirfd, name, buf_str(&b), buf_len(&b));
	if (r < 0) {
		local_err(e, it->socket, case_dir, it->relative_path, "write", r);
		goto value_done;
	}
	if (ret_bytes)
		*ret_bytes = (int64_t)buf_len(&b);

value_done:
	if (dirfd >= 0)
		close(dirfd);
	buf_clear(&b);
	return r;
}

/* Download url into dirfd/name atomically. rel names the target in messages. */
static int
download_at(struct api *api, const char *url, int dirfd, const char *name,
            const struct outputs_opts *o, const char *socket, const char *case_dir, const char *rel,
            int64_t *ret_bytes, struct api_error *e)
{
	struct http_xfer x = {0};
	struct afile a = {.fd = -1};
	struct api_error de;
	int64_t bytes = 0;
	char *red;
	int r;

	r = afile_open(&a, dirfd, name);
	if (r < 0) {
		local_err(e, socket, case_dir, rel, "create a temporary file for", r);
		return r;
	}
	x.cancel = o->cancel;
	x.progress = o->progress;
	x.progress_ud = o->progress_ud;
	x.max_bytes = o->max_bytes > 0 ? o->max_bytes : OUTPUTS_DOWNLOAD_MAX;
	r = api_download(api, url, a.fd, &x, &bytes, &de);
	if (r < 0) {
		afile_abort(&a);
		red = http_redact_url(url);
		if (de.status == 0 && (r == -ENOSPC || r == -EDQUOT || r == -EROFS))
			de.cls = API_RETRY;
		if (r == -E2BIG)
			de.cls = API_FAIL;
		set_err(e, de.cls, de.status, "output '%s': download of %s to '%s/%s' failed: %s",
		        socket, red ? red : "?", case_dir, rel, de.message);
		if (e)
			e->retry_after_ms = de.retry_after_ms;
		free(red);
		return r;
	}
	r = afile_commit(&a);
	if (r < 0) {
		local_err(e, socket, case_dir, rel, "write", r);
		return r;
	}
	*ret_bytes = bytes;
	return 0;
}

static int
write_file(struct api *api, const char *case_dir, const struct outputs_item *it,
           const struct outputs_opts *o, int64_t *ret_bytes, struct api_error *e)
{
	const char *name;
	int dirfd, r;

	r = open_parent(case_dir, it->relative_path, false, &dirfd, &name);
	if (r < 0) {
		local_err(e, it->socket, case_dir, it->relative_path, "create the folder of", r);
		return r;
	}
	r = download_at(api, it->url, dirfd, name, o, it->socket, case_dir, it->relative_path,
	                ret_bytes, e);
	close(dirfd);
	return r;
}

/*
 * The extension of a URL's last path segment, with its dot, as Python's
 * PurePath.suffix finds it (".mha", ".zraw"; "" when there is none). Only
 * letters, digits, '_' and '-' are accepted after the dot.
 */
static void
url_suffix(const char *url, char out[16])
{
	const char *p = strstr(url, "://"), *end, *seg, *dot, *c;

	out[0] = '\0';
	p = p ? strchr(p + 3, '/') : url;
	if (!p)
		return;
	end = p + strcspn(p, "?#");
	for (seg = end; seg > p && seg[-1] != '/'; seg--)
		;
	for (dot = end; dot > seg && dot[-1] != '.'; dot--)
		;
	if (dot <= seg + 1 || dot == end || (size_t)(end - dot) + 1 >= 16)
		return;
	for (c = dot; c < end; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
			return;
	out[0] = '.';
	memcpy(out + 1, dot, (size_t)(end - dot));
	out[end - dot + 1] = '\0';
}

static bool
safe_name(const char *s)
{
	return s[0] && s[0] != '.' && strlen(s) <= OUTPUTS_NAME_MAX && !strchr(s, '/') &&
	       strcspn(s,
	               "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11"
	               "\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f") == strlen(s);
}

static int
write_image(struct api *api, const char *case_dir, const struct outputs_item *it,
            const struct outputs_opts *o, int64_t *ret_bytes, struct api_error *e)
{
	struct api_image im = {0};
	struct api_error ie;
	char names[IMAGE_FILES_MAX][OUTPUTS_NAME_MAX + 1];
	char suffix[16], *rel = NULL, *red;
	const char *last;
	bool mhd = false, want;
	size_t i, j, n = 0;
	int64_t total = 0, bytes;
	int dirfd = -1, r;

	r = api_image_get(api, it->url, &im, &ie);
	if (r < 0) {
		red = http_redact_url(it->url);
		set_err(e, ie.cls, ie.status, "output '%s': image %s: %s", it->socket,
		        red ? red : "?", ie.message);
		if (e)
			e->retry_after_ms = ie.retry_after_ms;
		free(red);
		return r;
	}
	for (i = 0; i < im.n_files; i++)
		if (im.files[i].image_type && strcmp(im.files[i].image_type, "MHD") == 0)
			mhd = true;
	/* Name every file first: a bad pk or a clash fails before anything is written. */
	for (i = 0; i < im.n_files; i++) {
		want =
		    !mhd || (im.files[i].image_type && strcmp(im.files[i].image_type, "MHD") == 0);
		if (!want)
			continue;
		if (n == IMAGE_FILES_MAX) {
			set_err(e, API_FAIL, 0, "output '%s': image '%s' has more than %d files",
			        it->socket, im.pk, IMAGE_FILES_MAX);
			r = -E2BIG;
			goto image_done;
		}
		url_suffix(im.files[i].url, suffix);
		snprintf(names[n], sizeof(names[n]), "%s%s", im.pk, suffix);
		if (!safe_name(names[n]) || strlen(im.pk) + strlen(suffix) > OUTPUTS_NAME_MAX) {
			set_err(e, API_FAIL, 0,
			        "output '%s': image pk '%.64s' is not a usable file name",
			        it->socket, im.pk);
			r = -EINVAL;
			goto image_done;
		}
		for (j = 0; j < n; j++)
			if (strcmp(names[j], names[n]) == 0) {
				set_err(e, API_FAIL, 0,
				        "output '%s': image '%s' has two files named '%s'",
				        it->socket, im.pk, names[n]);
				r = -EEXIST;
				goto image_done;
			}
		n++;
	}
	if (n == 0) {
		set_err(e, API_FAIL, 0, "output '%s': image '%s' has no files to download%s",
		        it->socket, im.pk,
		        im.n_files ? "" : " (a DICOM image set is not supported)");
		r = -ENOENT;
		goto image_done;
	}
	r = open_parent(case_dir, it->relative_path, true, &dirfd, &last);
	if (r < 0) {
		local_err(e, it->socket, case_dir, it->relative_path, "create the folder", r);
		goto image_done;
	}
	for (i = 0, j = 0; i < im.n_files; i++) {
		want =
		    !mhd || (im.files[i].image_type && strcmp(im.files[i].image_type, "MHD") == 0);
		if (!want)
			continue;
		free(rel);
		rel = strdupf("%s/%s", it->relative_path, names[j]);
		if (!rel) {
			r = -ENOMEM;
			set_err(e, API_RETRY, 0, "output '%s': out of memory", it->socket);
			goto image_done;
		}
		r = download_at(api, im.files[i].url, dirfd, names[j], o, it->socket, case_dir, rel,
		                &bytes, e);
		if (r < 0)
			goto image_done;
		total += bytes;
		j++;
	}
	*ret_bytes = total;

image_done:
	free(rel);
	if (dirfd >= 0)
		close(dirfd);
	api_image_clear(&im);
	return r;
}

int
outputs_write(struct api *api, const char *case_dir, const struct outputs_item *item,
              const struct outputs_opts *opts, int64_t *ret_bytes, struct api_error *reterr)
{
	struct outputs_opts dflt = {0};
	int64_t bytes = 0;
	int r;

	if (!case_dir || case_dir[0] != '/' || !item || !item->socket || !item->relative_path ||
	    check_relative_path(item->relative_path) ||
	    (item->super_kind != API_SUPER_VALUE && (!api || !item->url))) {
		set_err(reterr, API_FAIL, 0, "output '%s': invalid arguments",
		        item && item->socket ? item->socket : "?");
		return -EINVAL;
	}
	if (!opts)
		opts = &dflt;
	switch (item->super_kind) {
	case API_SUPER_VALUE:
		r = write_value(case_dir, item, &bytes, reterr);
		break;
	case API_SUPER_FILE:
		r = write_file(api, case_dir, item, opts, &bytes, reterr);
		break;
	case API_SUPER_IMAGE:
		r = write_image(api, case_dir, item, opts, &bytes, reterr);
		break;
	default:
		set_err(reterr, API_FAIL, 0, "output '%s': unknown super_kind", item->socket);
		return -EINVAL;
	}
	if (r < 0)
		return r;
	log_debug("outputs: '%s' written to '%s/%s' (%lld bytes)", item->socket, case_dir,
	          item->relative_path, (long long)bytes);
	err_ok(reterr);
	if (ret_bytes)
		*ret_bytes = bytes;
	return 0;
}

/* ---- finishing: the sweep and job.json ---- */

/* Delete ".*.gcdrop-part" files below dirfd (not following symlinks). */
static int
sweep_at(int dirfd, int depth)
{
	struct dirent *de;
	size_t n, sl = strlen(OUTPUTS_TEMP_SUFFIX);
	DIR *d;
	int fd, r = 0;

	if (depth > 64)
		return 0;
	fd = dup(dirfd);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while (r == 0 && (de = readdir(d)) != NULL) {
		n = strlen(de->d_name);
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_name[0] == '.' && n > sl &&
		    strcmp(de->d_name + n - sl, OUTPUTS_TEMP_SUFFIX) == 0) {
			r = remove_at(dirfd, de->d_name);
			continue;
		}
		if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) {
			int sub = openat(dirfd, de->d_name,
			                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub < 0)
				continue;
			r = sweep_at(sub, depth + 1);
			close(sub);
		}
	}
	closedir(d);
	return r;
}

static void
iso_time(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static cJSON *
add_str_or_null(cJSON *o, const char *k, const char *v)
{
	return v ? cJSON_AddStringToObject(o, k, v) : cJSON_AddNullToObject(o, k);
}

static cJSON *
add_time(cJSON *o, const char *k, int64_t t)
{
	char s[32];

	if (t <= 0)
		return cJSON_AddNullToObject(o, k);
	iso_time(t, s);
	return cJSON_AddStringToObject(o, k, s);
}

static bool
is_url(const char *s)
{
	return strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0;
}

/* A copy of v with URLs (top level, or strings of a top-level array) without query. */
static cJSON *
redacted_copy(const cJSON *v)
{
	cJSON *c = cJSON_Duplicate(v, true), *e;
	char *red;

	if (!c)
		return NULL;
	if (cJSON_IsString(c) && is_url(c->valuestring)) {
		red = http_redact_url(c->valuestring);
		cJSON_Delete(c);
		c = red ? cJSON_CreateString(red) : NULL;
		free(red);
		return c;
	}
	if (cJSON_IsArray(c))
		cJSON_ArrayForEach(e, c)
		{
			if (cJSON_IsString(e) && is_url(e->valuestring)) {
				red = http_redact_url(e->valuestring);
				if (!red || !cJSON_SetValuestring(e, red)) {
					free(red);
					cJSON_Delete(c);
					return NULL;
				}
				free(red);
			}
		}
	return c;
}

/* The inputs object: slug -> what was sent, from either shape of the inputs array. */
static cJSON *
inputs_object(const cJSON *inputs)
{
	cJSON *out = cJSON_CreateObject(), *entry, *copy;
	const cJSON *el, *itf, *m;
	const char *slug, *sk, *field;

	if (!out || !cJSON_IsArray(inputs))
		return out;
	cJSON_ArrayForEach(el, inputs)
	{
		itf = cJSON_GetObjectItemCaseSensitive(el, "interface");
		slug = cJSON_IsString(itf) ? itf->valuestring : str_member(itf, "slug");
		if (!slug || cJSON_GetObjectItemCaseSensitive(out, slug))
			continue;
		entry = cJSON_AddObjectToObject(out, slug);
		if (!entry)
			goto inputs_oom;
		sk = cJSON_IsObject(itf) ? str_member(itf, "super_kind") : NULL;
		if (sk) {
			/* A hyperlinked socket value: the one field its super_kind uses. */
			field = strcmp(sk, "Image") == 0  ? "image"
			        : strcmp(sk, "File") == 0 ? "file"
			                                  : "value";
			m = cJSON_GetObjectItemCaseSensitive(el, field);
			copy = m ? (strcmp(field, "value") == 0 ? cJSON_Duplicate(m, true)
			                                        : redacted_copy(m))
			         : cJSON_CreateNull();
			if (!copy)
				goto inputs_oom;
			cJSON_AddItemToObject(entry, field, copy);
			continue;
		}
		/* The request shape: every member but "interface". */
		cJSON_ArrayForEach(m, el)
		{
			if (!m->string || strcmp(m->string, "interface") == 0)
				continue;
			copy = strcmp(m->string, "value") == 0 ? cJSON_Duplicate(m, true)
			                                       : redacted_copy(m);
			if (!copy)
				goto inputs_oom;
			cJSON_AddItemToObject(entry, m->string, copy);
		}
	}
	return out;

inputs_oom:
	cJSON_Delete(out);
	return NULL;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The image files present in case_dir/rel/, as "rel/<name>", sorted. */
static cJSON *
image_files(const char *case_dir, const char *rel)
{
	cJSON *arr = cJSON_CreateArray(), *s;
	char *names[IMAGE_FILES_MAX];
	const char *last;
	struct dirent *de;
	struct stat st;
	size_t n = 0, i;
	DIR *d;
	int fd, dfd;

	if (!arr)
		return NULL;
	if (open_parent(case_dir, rel, true, &fd, &last) < 0)
		return arr;
	dfd = dup(fd);
	d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d && dfd >= 0)
		close(dfd);
	while (d && n < IMAGE_FILES_MAX && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		names[n] = strdupf("%s/%s", rel, de->d_name);
		if (names[n])
			n++;
	}
	if (d)
		closedir(d);
	close(fd);
	qsort(names, n, sizeof(names[0]), cmp_str);
	for (i = 0; i < n; i++) {
		s = cJSON_CreateString(names[i]);
		if (s)
			cJSON_AddItemToArray(arr, s);
		free(names[i]);
	}
	return arr;
}

static cJSON *
job_tree(const char *case_dir, const struct outputs_job *job, const struct outputs_item *items,
         size_t n)
{
	cJSON *root = cJSON_CreateObject(), *c, *outs, *o, *v;
	char *red;
	size_t i;

	if (!root)
		return NULL;
	add_str_or_null(root, "pk", job->pk);
	add_str_or_null(root, "api_url", job->api_url);
	if (job->url)
		cJSON_AddStringToObject(root, "url", job->url);
	add_str_or_null(root, "status", job->status);
	add_str_or_null(root, "error", job->error);
	add_time(root, "created", job->created);
	add_time(root, "started", job->started);
	add_time(root, "finished", job->finished);
	add_str_or_null(root, "exec_duration", job->exec_duration);
	add_str_or_null(root, "invoke_duration", job->invoke_duration);
	c = cJSON_AddObjectToObject(root, "case");
	if (!c)
		goto tree_oom;
	add_str_or_null(c, "watch", job->watch);
	add_str_or_null(c, "name", job->case_name);
	add_str_or_null(c, "fingerprint", job->fingerprint);
	v = inputs_object(job->inputs);
	if (!v)
		goto tree_oom;
	cJSON_AddItemToObject(root, "inputs", v);
	outs = cJSON_AddObjectToObject(root, "outputs");
	if (!outs)
		goto tree_oom;
	for (i = 0; i < n; i++) {
		const struct outputs_item *it = &items[i];

		o = cJSON_AddObjectToObject(outs, it->socket);
		if (!o)
			goto tree_oom;
		cJSON_AddStringToObject(o, "super_kind", outputs_super_kind_name(it->super_kind));
		cJSON_AddStringToObject(o, "kind", it->kind ? it->kind : "");
		cJSON_AddStringToObject(o, "path", it->relative_path);
		if (it->super_kind == API_SUPER_VALUE) {
			v = it->value_json ? cJSON_Parse(it->value_json) : cJSON_CreateNull();
			if (!v)
				goto tree_oom;
			cJSON_AddItemToObject(o, "value", v);
			continue;
		}
		red = http_redact_url(it->url);
		if (!red)
			goto tree_oom;
		cJSON_AddStringToObject(o, "url", red);
		free(red);
		if (it->super_kind == API_SUPER_IMAGE) {
			v = image_files(case_dir, it->relative_path);
			if (!v)
				goto tree_oom;
			cJSON_AddItemToObject(o, "files", v);
		}
	}
	return root;

tree_oom:
	cJSON_Delete(root);
	return NULL;
}

int
outputs_finish(const char *case_dir, const struct outputs_job *job,
               const struct outputs_item *items, size_t n, struct api_error *reterr)
{
	struct buf b;
	cJSON *root = NULL;
	int fd = -1, r;

	if (!case_dir || case_dir[0] != '/' || !job || (n > 0 && !items)) {
		set_err(reterr, API_FAIL, 0, "%s: invalid arguments", OUTPUTS_JOB_JSON);
		return -EINVAL;
	}
	buf_init(&b, PRETTY_MAX);
	r = mkdir_parents(case_dir);
	if (r < 0) {
		set_err(reterr, API_RETRY, 0, "cannot create '%s': %s", case_dir, strerror(-r));
		goto finish_done;
	}
	fd = open(case_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		set_err(reterr, API_RETRY, 0, "cannot open '%s': %s", case_dir, strerror(-r));
		goto finish_done;
	}
	r = sweep_at(fd, 0);
	if (r < 0) {
		set_err(reterr, API_RETRY, 0, "cannot remove temporary files in '%s': %s", case_dir,
		        strerror(-r));
		goto finish_done;
	}
	root = job_tree(case_dir, job, items, n);
	if (!root) {
		r = -ENOMEM;
		set_err(reterr, API_RETRY, 0, "%s: out of memory", OUTPUTS_JOB_JSON);
		goto finish_done;
	}
	r = json_pretty(&b, root, 0);
	if (r == 0)
		r = buf_appends(&b, "\n");
	if (r < 0) {
		set_err(reterr, API_FAIL, 0, "%s: %s", OUTPUTS_JOB_JSON, strerror(-r));
		goto finish_done;
	}
	r = write_text_at(fd, OUTPUTS_JOB_JSON, buf_str(&b), buf_len(&b));
	if (r < 0) {
		set_err(reterr, API_RETRY, 0, "cannot write '%s/%s': %s", case_dir,
		        OUTPUTS_JOB_JSON, strerror(-r));
		goto finish_done;
	}
	err_ok(reterr);

finish_done:
	if (fd >= 0)
		close(fd);
	cJSON_Delete(root);
	buf_clear(&b);
	return r;
}
