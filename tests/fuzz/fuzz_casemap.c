/*
 * fuzz_casemap.c: libFuzzer target for the case mapper (src/casemap.c).
 *
 * The input describes a case, a destination and a watch as lines of text, so
 * that seeds are easy to write and read (tests/fuzz/README.md has the grammar):
 *
 *   kind algorithm                      algorithm | archive | reader-study
 *   slug my-algorithm                   the destination's slug (messages only)
 *   socket <slug> <Image|File|Value> [relative_path]
 *   iface <slug> [<slug> ...]           an algorithm interface (its inputs)
 *   watch-socket <slug>                 the watch's `socket`
 *   value <slug> <json...>              a static value (the rest of the line)
 *   entry <relpath> [<content...>]      a file of the case; the content (the
 *                                       rest of the line) is what the reader
 *                                       returns: none gives -ENOENT, "!EIO"
 *                                       and "!EACCES" those errors
 *   no-reader                           pass a NULL reader
 *
 * Fields are separated by one space; in every field but the JSON and the
 * content, "\s", "\t", "\n", "\\" and "\xNN" stand for a space, a tab, a
 * newline, a backslash and any byte, so a relpath can hold any byte but NUL.
 * Unknown lines are ignored, so mutations keep most of a seed meaningful.
 *
 * The harness keeps only what the callers guarantee: the entries are turned
 * into something scan_case() can return (non-empty components, no ignored
 * names, no file that is also a directory, unique, sorted byte-wise); sockets
 * have unique non-empty slugs; interface inputs are sockets; static values are
 * valid JSON for distinct sockets (config_load() checks that).
 *
 * Invariants checked besides memory safety: casemap_map() either fails with a
 * negative errno and a message, or returns values sorted by unique socket
 * slug, each a known socket of the right super kind, file indices ascending,
 * in range and used at most once, JSON values that parse and are not null,
 * and no file dropped (each is uploaded or taken as a JSON value);
 * casemap_upload_names() gives valid, case-insensitively unique names that
 * keep their image extension and do not depend on anything but the entries;
 * casemap_candidate_slugs() is sorted, unique and slug-shaped; scan_quote()
 * output is printable, valid UTF-8.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "casemap.h"
#include "fuzz.h"
#include "scan.h"

#define MAX_SOCKETS 64
#define MAX_IFACES 16
#define MAX_IFACE_INPUTS 16
#define MAX_VALUES 16
#define MAX_ENTRIES 256

struct fentry {
	struct scan_entry e;
	char *content;		/* NULL: the reader fails with -ENOENT */
	size_t content_len;
};

struct input {
	enum config_dest kind;
	char *slug;
	struct casemap_socket sockets[MAX_SOCKETS];
	size_t n_sockets;
	struct casemap_interface ifaces[MAX_IFACES];
	size_t n_ifaces;
	char *watch_socket;
	struct config_value values[MAX_VALUES];
	size_t n_values;
	struct fentry entries[MAX_ENTRIES];
	size_t n_entries;
	bool no_reader;
};

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Unescape n bytes of s into a malloc'd string; NUL bytes end it. */
static char *
unescape(const char *s, size_t n, size_t *ret_len)
{
	char *out = malloc(n + 1);
	size_t o = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '\\' && i + 1 < n) {
			char d = s[++i];

			if (d == 's')
				c = ' ';
			else if (d == 't')
				c = '\t';
			else if (d == 'n')
				c = '\n';
			else if (d == 'x' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
				 hexval(s[i + 2]) >= 0) {
				c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
				i += 2;
			} else
				c = d;
		}
		if (c == '\0')
			break;
		out[o++] = c;
	}
	out[o] = '\0';
	if (ret_len)
		*ret_len = o;
	return out;
}

/* The next space-separated field of [*p, end), unescaped; NULL when none. */
static char *
field(const char **p, const char *end)
{
	const char *s = *p, *e;

	if (s >= end)
		return NULL;
	e = memchr(s, ' ', (size_t)(end - s));
	if (!e)
		e = end;
	*p = e < end ? e + 1 : end;
	if (e == s)
		return NULL;
	return unescape(s, (size_t)(e - s), NULL);
}

static bool
slug_known(const struct input *in, const char *slug)
{
	for (size_t i = 0; i < in->n_sockets; i++)
		if (strcmp(in->sockets[i].slug, slug) == 0)
			return true;
	return false;
}

/* What scan_case() could have returned: see the file comment. */
static bool
relpath_ok(const char *p)
{
	const char *c = p;

	if (!p[0])
		return false;
	for (;;) {
		const char *slash = strchr(c, '/');
		size_t len = slash ? (size_t)(slash - c) : strlen(c);
		char comp[4096];

		if (len == 0 || len >= sizeof(comp))
			return false;
		memcpy(comp, c, len);
		comp[len] = '\0';
		if (scan_name_ignored(comp) || strcmp(comp, "..") == 0)
			return false;
		if (!slash)
			return true;
		c = slash + 1;
	}
}

static void
parse_line(struct input *in, const char *s, const char *end)
{
	const char *p = s;
	char *kw = field(&p, end);

	if (!kw)
		return;
	if (strcmp(kw, "kind") == 0) {
		char *k = field(&p, end);

		if (k && strcmp(k, "algorithm") == 0)
			in->kind = CONFIG_DEST_ALGORITHM;
		else if (k && strcmp(k, "archive") == 0)
			in->kind = CONFIG_DEST_ARCHIVE;
		else if (k && strcmp(k, "reader-study") == 0)
			in->kind = CONFIG_DEST_READER_STUDY;
		free(k);
	} else if (strcmp(kw, "slug") == 0) {
		char *v = field(&p, end);

		if (v) {
			free(in->slug);
			in->slug = v;
		}
	} else if (strcmp(kw, "socket") == 0 && in->n_sockets < MAX_SOCKETS) {
		char *slug = field(&p, end), *kind = field(&p, end), *rp = field(&p, end);
		int sk = casemap_super_kind_from_name(kind);

		if (slug && sk >= 0 && !slug_known(in, slug)) {
			struct casemap_socket *so = &in->sockets[in->n_sockets++];

			so->slug = slug;
			so->kind = kind;
			so->super_kind = (enum casemap_super_kind)sk;
			so->relative_path = rp;
			return free(kw);
		}
		free(slug);
		free(kind);
		free(rp);
	} else if (strcmp(kw, "iface") == 0 && in->n_ifaces < MAX_IFACES) {
		struct casemap_interface *ifc = &in->ifaces[in->n_ifaces++];
		char *v;

		ifc->inputs = calloc(MAX_IFACE_INPUTS, sizeof(char *));
		ifc->n_inputs = 0;
		while (ifc->inputs && ifc->n_inputs < MAX_IFACE_INPUTS && (v = field(&p, end))) {
			bool dup = !slug_known(in, v);

			for (size_t i = 0; i < ifc->n_inputs && !dup; i++)
				dup = strcmp(ifc->inputs[i], v) == 0;
			if (dup)
				free(v);
			else
				ifc->inputs[ifc->n_inputs++] = v;
		}
	} else if (strcmp(kw, "watch-socket") == 0) {
		char *v = field(&p, end);

		if (v) {
			free(in->watch_socket);
			in->watch_socket = v;
		}
	} else if (strcmp(kw, "value") == 0 && in->n_values < MAX_VALUES) {
		char *slug = field(&p, end), *json = unescape(p, (size_t)(end - p), NULL);
		cJSON *j = json ? cJSON_Parse(json) : NULL;
		bool dup = false;

		for (size_t i = 0; slug && i < in->n_values && !dup; i++)
			dup = strcmp(in->values[i].socket, slug) == 0;
		if (slug && j && !dup) {
			in->values[in->n_values].socket = slug;
			in->values[in->n_values].json = json;
			in->n_values++;
			cJSON_Delete(j);
			return free(kw);
		}
		cJSON_Delete(j);
		free(slug);
		free(json);
	} else if (strcmp(kw, "entry") == 0 && in->n_entries < MAX_ENTRIES) {
		size_t len;
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		const char *rp_end = sp ? sp : end;
		char *rp = unescape(p, (size_t)(rp_end - p), &len);
		struct fentry *fe = &in->entries[in->n_entries];

		if (rp && relpath_ok(rp)) {
			memset(fe, 0, sizeof(*fe));
			fe->e.relpath = rp;
			fe->e.relpath_len = len;
			fe->e.mode = 0100644;
			if (sp) {
				fe->content_len = (size_t)(end - sp - 1);
				fe->content = malloc(fe->content_len + 1);
				if (fe->content) {
					memcpy(fe->content, sp + 1, fe->content_len);
					fe->content[fe->content_len] = '\0';
				}
				fe->e.size = (int64_t)fe->content_len;
			}
			in->n_entries++;
			return free(kw);
		}
		free(rp);
	} else if (strcmp(kw, "no-reader") == 0) {
		in->no_reader = true;
	}
	free(kw);
}

static int
fentry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fentry *)a)->e.relpath, ((const struct fentry *)b)->e.relpath);
}

static void
fentry_free(struct fentry *fe)
{
	free(fe->e.relpath);
	free(fe->content);
}

/* Sort, drop duplicates, and drop files that are also directories ("a" and "a/b"). */
static void
normalise_entries(struct input *in)
{
	bool drop[MAX_ENTRIES] = { false };
	size_t o = 0;

	qsort(in->entries, in->n_entries, sizeof(in->entries[0]), fentry_cmp);
	for (size_t i = 0; i < in->n_entries; i++) {
		const char *p = in->entries[i].e.relpath;
		size_t len = in->entries[i].e.relpath_len;

		drop[i] = i > 0 && strcmp(in->entries[i - 1].e.relpath, p) == 0;
		for (size_t j = 0; j < in->n_entries && !drop[i]; j++) {
			const char *q = in->entries[j].e.relpath;
			size_t ql = in->entries[j].e.relpath_len;

			/* p is a directory of q, or q a directory of p. */
			drop[i] = (ql > len && q[len] == '/' && memcmp(q, p, len) == 0) ||
				  (len > ql && p[ql] == '/' && memcmp(q, p, ql) == 0);
		}
	}
	for (size_t i = 0; i < in->n_entries; i++) {
		if (drop[i])
			fentry_free(&in->entries[i]);
		else
			in->entries[o++] = in->entries[i];
	}
	in->n_entries = o;
}

static void
input_free(struct input *in)
{
	free(in->slug);
	free(in->watch_socket);
	for (size_t i = 0; i < in->n_sockets; i++) {
		free(in->sockets[i].slug);
		free(in->sockets[i].kind);
		free(in->sockets[i].relative_path);
	}
	for (size_t i = 0; i < in->n_ifaces; i++) {
		for (size_t j = 0; j < in->ifaces[i].n_inputs; j++)
			free(in->ifaces[i].inputs[j]);
		free(in->ifaces[i].inputs);
	}
	for (size_t i = 0; i < in->n_values; i++) {
		free(in->values[i].socket);
		free(in->values[i].json);
	}
	for (size_t i = 0; i < in->n_entries; i++)
		fentry_free(&in->entries[i]);
}

/* What the reader needs to find an entry's content: entry - base is its index. */
struct reader_ctx {
	const struct scan_entry *base;
	const struct input *in;
};

static int
fuzz_read(void *userdata, const struct scan_entry *entry, size_t max_bytes, char **ret_data,
	  size_t *ret_len)
{
	const struct reader_ctx *ctx = userdata;
	const struct fentry *fe;
	char *copy;

	FUZZ_ASSERT(entry >= ctx->base && entry < ctx->base + ctx->in->n_entries);
	fe = &ctx->in->entries[entry - ctx->base];
	if (!fe->content)
		return -ENOENT;
	if (strcmp(fe->content, "!EIO") == 0)
		return -EIO;
	if (strcmp(fe->content, "!EACCES") == 0)
		return -EACCES;
	if (fe->content_len > max_bytes)
		return -EFBIG;
	copy = malloc(fe->content_len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, fe->content, fe->content_len + 1);
	*ret_data = copy;
	*ret_len = fe->content_len;
	return 0;
}

static bool
utf8_printable(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	for (size_t i = 0; i < n;) {
		size_t l = scan_utf8_seq(p + i, n - i);

		if (l == 0 || (l == 1 && (p[i] < 0x20 || p[i] == 0x7f)))
			return false;
		i += l;
	}
	return true;
}

static void
check_map(const struct input *in, const struct scan_entry *entries, const struct casemap_dest *d)
{
	struct reader_ctx ctx = { entries, in };
	struct casemap_reader reader = { fuzz_read, &ctx };
	struct casemap_result res = { 0 };
	char *msg = NULL;
	bool used[MAX_ENTRIES] = { false };
	int r;

	r = casemap_map(entries, in->n_entries, d, in->no_reader ? NULL : &reader, &res, &msg);
	if (r < 0) {
		FUZZ_ASSERT(msg != NULL);
		FUZZ_ASSERT(res.values == NULL && res.n == 0);
		FUZZ_ASSERT(r == -EINVAL || r == -ENOENT || r == -EIO || r == -EACCES ||
			    r == -ENOMEM);
		free(msg);
		return;
	}
	FUZZ_ASSERT(r == 0 && msg == NULL);
	FUZZ_ASSERT(res.n > 0 && res.values);
	for (size_t i = 0; i < res.n; i++) {
		const struct casemap_value *v = &res.values[i];
		const struct casemap_socket *so = NULL;

		FUZZ_ASSERT(v->socket && v->origin);
		if (i > 0)
			FUZZ_ASSERT(strcmp(res.values[i - 1].socket, v->socket) < 0);
		for (size_t j = 0; j < d->n_sockets; j++)
			if (strcmp(d->sockets[j].slug, v->socket) == 0)
				so = &d->sockets[j];
		FUZZ_ASSERT(so != NULL);
		FUZZ_ASSERT(so->super_kind == v->super_kind);
		if (v->source == CASEMAP_SRC_JSON) {
			cJSON *j = cJSON_Parse(v->json);

			FUZZ_ASSERT(v->super_kind == CASEMAP_VALUE);
			FUZZ_ASSERT(j != NULL && !cJSON_IsNull(j));
			cJSON_Delete(j);
			continue;
		}
		FUZZ_ASSERT(v->source == CASEMAP_SRC_FILES);
		FUZZ_ASSERT(v->n_files > 0 && v->files);
		if (v->super_kind != CASEMAP_IMAGE)
			FUZZ_ASSERT(v->n_files == 1);
		for (size_t k = 0; k < v->n_files; k++) {
			FUZZ_ASSERT(v->files[k] < in->n_entries);
			FUZZ_ASSERT(k == 0 || v->files[k - 1] < v->files[k]);
			FUZZ_ASSERT(!used[v->files[k]]);
			used[v->files[k]] = true;
		}
	}
	/*
	 * No file of the case is dropped: each one is uploaded (in exactly one
	 * value's files) or is the JSON of a value taken from the case (whose
	 * origin names the entry; a static value's origin is "static value").
	 */
	{
		size_t n_used = 0, n_case_json = 0;

		for (size_t i = 0; i < res.n; i++) {
			n_used += res.values[i].n_files;
			if (res.values[i].source == CASEMAP_SRC_JSON &&
			    strcmp(res.values[i].origin, "static value") != 0)
				n_case_json++;
		}
		FUZZ_ASSERT(n_used + n_case_json == in->n_entries);
	}
	/* Static values for Value sockets are there (from the case or the watch). */
	for (size_t i = 0; i < in->n_values; i++) {
		bool found = false, value_socket = false;

		for (size_t j = 0; j < d->n_sockets; j++)
			if (strcmp(d->sockets[j].slug, in->values[i].socket) == 0)
				value_socket = d->sockets[j].super_kind == CASEMAP_VALUE;
		for (size_t j = 0; j < res.n && !found; j++)
			found = strcmp(res.values[j].socket, in->values[i].socket) == 0;
		FUZZ_ASSERT(!value_socket || found);
	}
	casemap_result_clear(&res);
	FUZZ_ASSERT(res.values == NULL && res.n == 0);
}

static void
check_names(const struct scan_entry *entries, size_t n)
{
	char **names = NULL, **again = NULL;

	if (casemap_upload_names(entries, n, &names) < 0)
		return;
	FUZZ_ASSERT(names != NULL);
	for (size_t i = 0; i < n; i++) {
		const char *base = strrchr(entries[i].relpath, '/');
		const char *ext;

		base = base ? base + 1 : entries[i].relpath;
		ext = casemap_image_ext(base);
		if (!casemap_upload_name_valid(names[i]))
			fprintf(stderr, "invalid upload name for entry %zu\n", i);
		FUZZ_ASSERT(casemap_upload_name_valid(names[i]));
		if (ext) {
			size_t nl = strlen(names[i]), el = strlen(ext);

			FUZZ_ASSERT(nl > el && strcasecmp(names[i] + nl - el, ext) == 0);
		}
		for (size_t j = 0; j < i; j++)
			FUZZ_ASSERT(strcasecmp(names[i], names[j]) != 0);
	}
	/* Only the entries matter: the same entries give the same names. */
	if (casemap_upload_names(entries, n, &again) == 0) {
		for (size_t i = 0; i < n; i++)
			FUZZ_ASSERT(strcmp(names[i], again[i]) == 0);
		casemap_names_free(again, n);
	}
	casemap_names_free(names, n);
}

static void
check_candidates(const struct scan_entry *entries, size_t n)
{
	char **slugs = NULL;
	size_t ns = 0;
	int r;

	r = casemap_candidate_slugs(entries, n, &slugs, &ns);
	FUZZ_ASSERT(r == 0 || r == -E2BIG || r == -ENOMEM);
	if (r < 0)
		return;
	FUZZ_ASSERT(ns <= CASEMAP_MAX_CANDIDATES);
	for (size_t i = 0; i < ns; i++) {
		FUZZ_ASSERT(slugs[i][0] && strspn(slugs[i], "abcdefghijklmnopqrstuvwxyz0123456789-_") ==
						     strlen(slugs[i]));
		FUZZ_ASSERT(i == 0 || strcmp(slugs[i - 1], slugs[i]) < 0);
	}
	casemap_names_free(slugs, ns);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input *in;
	struct scan_entry entries[MAX_ENTRIES];
	struct casemap_dest d;
	const char *s = (const char *)data, *end = s + size;

	if (size > 65536)
		return 0;
	in = calloc(1, sizeof(*in));
	if (!in)
		return 0;
	in->kind = CONFIG_DEST_ALGORITHM;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *le = nl ? nl : end;

		parse_line(in, s, le);
		s = nl ? nl + 1 : end;
	}
	normalise_entries(in);

	memset(&d, 0, sizeof(d));
	d.kind = in->kind;
	d.slug = in->slug ? in->slug : "fuzz";
	d.sockets = in->sockets;
	d.n_sockets = in->n_sockets;
	d.interfaces = in->ifaces;
	d.n_interfaces = in->n_ifaces;
	d.socket = in->watch_socket;
	d.values = in->values;
	d.n_values = in->n_values;

	for (size_t i = 0; i < in->n_entries; i++) {
		char *q = scan_quote(in->entries[i].e.relpath, in->entries[i].e.relpath_len);

		if (q)
			FUZZ_ASSERT(utf8_printable(q));
		free(q);
		entries[i] = in->entries[i].e;
	}
	check_map(in, entries, &d);
	check_names(entries, in->n_entries);
	check_candidates(entries, in->n_entries);
	input_free(in);
	free(in);
	return 0;
}
