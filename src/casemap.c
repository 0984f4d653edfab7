/*
 * casemap.c: case entries to socket values, and upload names.
 *
 * DESIGN. casemap_map() works on the case's top-level entries ("groups"): a
 * directory with every file under it, or one file. Because scan sorts entries
 * byte-wise and every file under "a/" shares that prefix, a group is a
 * contiguous run of entries, found in one pass. Each group is matched against
 * the known sockets once; everything after that (super-kind checks, default
 * socket, static values, interface check) works on the few groups and values,
 * so a case of 20,000 files costs one pass and a handful of string compares per
 * file. The checks run in a fixed order and the first failure is reported, so a
 * given case always gets the same message.
 *
 * Messages quote case entries with scan_quote() (names may hold newlines or
 * bytes that are not UTF-8) and name the socket. Nothing is logged.
 *
 * Upload names are computed from the entries alone (never from readdir order or
 * a counter), so a restarted daemon gives every file the same name again and
 * resumed uploads stay consistent.
 */
#include "casemap.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "sha256.h"

#define CASEMAP_MSG_CAP 8192
#define CASEMAP_MAX_EXT 16		/* bytes of a non-image extension kept in names */

/* Longest first, so that ".nii.gz" is found before anything shorter. */
static const char *const image_exts[] = {
	".nii.gz", ".tiff", ".jpeg", ".zraw", ".ndpi", ".mrxs", ".mha", ".mhd", ".raw",
	".dcm", ".nii", ".tif", ".png", ".jpg", ".svs", ".vms", ".vmu", ".scn", ".bif",
	".zip",
};

/* The last occurrence of byte c in the first len bytes of s, or NULL. */
static const char *
last_byte(const char *s, char c, size_t len)
{
	while (len > 0)
		if (s[--len] == c)
			return s + len;
	return NULL;
}

static bool
ends_with_ci(const char *s, size_t len, const char *suffix)
{
	size_t sl = strlen(suffix);

	if (len <= sl)
		return false;	/* the suffix alone is not an extension */
	for (size_t i = 0; i < sl; i++) {
		char c = s[len - sl + i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != suffix[i])
			return false;
	}
	return true;
}

static const char *
image_ext_n(const char *name, size_t len)
{
	for (size_t i = 0; i < GC_ARRAY_SIZE(image_exts); i++)
		if (ends_with_ci(name, len, image_exts[i]))
			return name + len - strlen(image_exts[i]);
	return NULL;
}

const char *
casemap_image_ext(const char *name)
{
	return name ? image_ext_n(name, strlen(name)) : NULL;
}

bool
casemap_is_image_name(const char *name)
{
	return casemap_image_ext(name) != NULL;
}

const char *
casemap_super_kind_name(enum casemap_super_kind kind)
{
	switch (kind) {
	case CASEMAP_IMAGE:
		return "Image";
	case CASEMAP_FILE:
		return "File";
	case CASEMAP_VALUE:
		return "Value";
	}
	return "?";
}

int
casemap_super_kind_from_name(const char *name)
{
	if (!name)
		return -1;
	if (strcmp(name, "Image") == 0)
		return CASEMAP_IMAGE;
	if (strcmp(name, "File") == 0)
		return CASEMAP_FILE;
	if (strcmp(name, "Value") == 0)
		return CASEMAP_VALUE;
	return -1;
}

static const char *
dest_kind_name(enum config_dest kind)
{
	switch (kind) {
	case CONFIG_DEST_ALGORITHM:
		return "algorithm";
	case CONFIG_DEST_ARCHIVE:
		return "archive";
	case CONFIG_DEST_READER_STUDY:
		return "reader study";
	}
	return "destination";
}

/* printf into a malloc'd message; NULL on failure. */
static char *
msgf(const char *fmt, ...) GC_PRINTF(1, 2);

static char *
msgf(const char *fmt, ...)
{
	struct buf b;
	va_list ap;
	int r;

	buf_init(&b, CASEMAP_MSG_CAP);
	va_start(ap, fmt);
	r = buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return r < 0 ? NULL : buf_take(&b, NULL);
}

/* How a top-level name matched a socket. */
enum how {
	HOW_EXACT,		/* the name is the slug */
	HOW_IMAGE_EXT,		/* slug + image extension */
	HOW_JSON_EXT,		/* slug + ".json" */
	HOW_OTHER_EXT,		/* slug + another extension */
};

/* One top-level entry of the case. */
struct group {
	char *name;		/* the top-level name, NUL-terminated copy */
	char *quoted;		/* for messages: the name quoted, with '/' for a directory */
	bool is_dir;
	size_t first, count;	/* run of entries */
	long sock;		/* index into dest->sockets, -1: none */
	enum how how;
};

/* The extension class of a file name (for names that matched by relative_path). */
static enum how
how_of_name(const char *name, size_t len)
{
	const char *dot;

	if (image_ext_n(name, len))
		return HOW_IMAGE_EXT;
	if (ends_with_ci(name, len, ".json"))
		return HOW_JSON_EXT;
	dot = last_byte(name, '.', len);
	return dot && dot != name ? HOW_OTHER_EXT : HOW_EXACT;
}

static bool
stem_is(const char *name, size_t stem_len, const char *slug)
{
	return strlen(slug) == stem_len && memcmp(name, slug, stem_len) == 0;
}

/* Match one top-level name against the sockets (rule 2); -1 when none. */
static long
match_socket(const struct casemap_dest *d, const char *name, bool is_dir, enum how *ret_how)
{
	size_t len = strlen(name);
	const char *ext = image_ext_n(name, len);
	const char *dot = strrchr(name, '.');

	for (size_t i = 0; i < d->n_sockets; i++) {
		const char *slug = d->sockets[i].slug;

		if (strcmp(name, slug) == 0) {
			*ret_how = HOW_EXACT;
			return (long)i;
		}
		if (is_dir)
			continue;
		if (ext && stem_is(name, (size_t)(ext - name), slug)) {
			*ret_how = HOW_IMAGE_EXT;
			return (long)i;
		}
		if (ends_with_ci(name, len, ".json") && stem_is(name, len - 5, slug)) {
			*ret_how = HOW_JSON_EXT;
			return (long)i;
		}
		if (dot && dot != name && stem_is(name, (size_t)(dot - name), slug)) {
			*ret_how = HOW_OTHER_EXT;
			return (long)i;
		}
	}
	if (is_dir)
		return -1;
	/* A file named like a File or Value socket's relative_path ("results.json"). */
	for (size_t i = 0; i < d->n_sockets; i++) {
		const char *rp = d->sockets[i].relative_path;
		const char *base;

		if (!rp || d->sockets[i].super_kind == CASEMAP_IMAGE)
			continue;
		base = strrchr(rp, '/');
		base = base ? base + 1 : rp;
		if (base[0] && strcmp(base, name) == 0) {
			*ret_how = how_of_name(name, len);
			return (long)i;
		}
	}
	return -1;
}

/* Split the entries into top-level groups. */
static int
make_groups(const struct scan_entry *entries, size_t n, struct group **ret, size_t *ret_n)
{
	struct group *g = NULL;
	size_t ng = 0, alloc = 0;

	for (size_t i = 0; i < n;) {
		const char *p = entries[i].relpath;
		const char *slash = strchr(p, '/');
		size_t nl = slash ? (size_t)(slash - p) : strlen(p);
		size_t j = i + 1;
		char *q;

		if (slash)
			while (j < n && strncmp(entries[j].relpath, p, nl + 1) == 0)
				j++;
		if (ng == alloc) {
			size_t na = alloc ? alloc * 2 : 16;
			struct group *x = realloc(g, na * sizeof(*x));

			if (!x)
				goto fail;
			g = x;
			alloc = na;
		}
		memset(&g[ng], 0, sizeof(g[ng]));
		g[ng].name = strndup(p, nl);
		q = scan_quote(p, nl);
		if (q)
			g[ng].quoted = msgf("%s%s", q, slash ? "/" : "");
		free(q);
		if (!g[ng].name || !g[ng].quoted) {
			ng++;
			goto fail;
		}
		g[ng].is_dir = slash != NULL;
		g[ng].first = i;
		g[ng].count = j - i;
		g[ng].sock = -1;
		ng++;
		i = j;
	}
	*ret = g;
	*ret_n = ng;
	return 0;
fail:
	for (size_t i = 0; i < ng; i++) {
		free(g[i].name);
		free(g[i].quoted);
	}
	free(g);
	return -ENOMEM;
}

static void
groups_free(struct group *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(g[i].name);
		free(g[i].quoted);
	}
	free(g);
}

/* The result being built. */
struct build {
	struct casemap_value *v;
	size_t n, alloc;
};

static bool
build_has(const struct build *b, const char *slug)
{
	for (size_t i = 0; i < b->n; i++)
		if (strcmp(b->v[i].socket, slug) == 0)
			return true;
	return false;
}

static struct casemap_value *
build_find(struct build *b, const char *slug)
{
	for (size_t i = 0; i < b->n; i++)
		if (strcmp(b->v[i].socket, slug) == 0)
			return &b->v[i];
	return NULL;
}

static void
value_free(struct casemap_value *v)
{
	free(v->socket);
	free(v->files);
	free(v->json);
	free(v->origin);
}

static struct casemap_value *
build_add(struct build *b, const struct casemap_socket *s, enum casemap_source source,
	  const char *origin)
{
	struct casemap_value *v;

	if (b->n == b->alloc) {
		size_t na = b->alloc ? b->alloc * 2 : 8;
		struct casemap_value *x = realloc(b->v, na * sizeof(*x));

		if (!x)
			return NULL;
		b->v = x;
		b->alloc = na;
	}
	v = &b->v[b->n];
	memset(v, 0, sizeof(*v));
	v->socket = strdup(s->slug);
	v->origin = strdup(origin);
	if (!v->socket || !v->origin) {
		value_free(v);
		return NULL;
	}
	v->super_kind = s->super_kind;
	v->source = source;
	b->n++;
	return v;
}

static int
value_add_files(struct casemap_value *v, size_t first, size_t count)
{
	size_t *x;

	if (count > SIZE_MAX / sizeof(*x) - v->n_files)
		return -ENOMEM;
	x = realloc(v->files, (v->n_files + count) * sizeof(*x));
	if (!x)
		return -ENOMEM;
	v->files = x;
	for (size_t i = 0; i < count; i++)
		v->files[v->n_files++] = first + i;
	return 0;
}

static int
size_t_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

static int
value_cmp(const void *a, const void *b)
{
	return strcmp(((const struct casemap_value *)a)->socket,
		      ((const struct casemap_value *)b)->socket);
}

static void
build_free(struct build *b)
{
	for (size_t i = 0; i < b->n; i++)
		value_free(&b->v[i]);
	free(b->v);
}

static const struct casemap_socket *
find_socket(const struct casemap_dest *d, const char *slug)
{
	for (size_t i = 0; i < d->n_sockets; i++)
		if (strcmp(d->sockets[i].slug, slug) == 0)
			return &d->sockets[i];
	return NULL;
}

/* Is 'text' (len bytes, NUL-terminated) valid UTF-8 without NUL bytes? */
static bool
utf8_valid(const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text;

	for (size_t i = 0; i < len;) {
		size_t sl;

		if (p[i] == 0)
			return false;
		sl = scan_utf8_seq(p + i, len - i);
		if (sl == 0)
			return false;
		i += sl;
	}
	return true;
}

/*
 * Check JSON text for a Value socket. 'what' names the source in messages
 * ("'lung-volume.json'" or "the static value"). On success stores a malloc'd
 * copy without a leading BOM in *ret_json.
 */
static int
check_json(const char *text, size_t len, const char *what, const char *slug, char **ret_json,
	   char **reterr_msg)
{
	const char *end = NULL;
	cJSON *root;
	char *copy;

	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
		text += 3;
		len -= 3;
	}
	if (!utf8_valid(text, len)) {
		*reterr_msg = msgf("%s for socket '%s' is not valid UTF-8 text", what, slug);
		return -EINVAL;
	}
	root = cJSON_ParseWithOpts(text, &end, 1);
	if (!root) {
		size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;

		*reterr_msg = msgf("%s for socket '%s' is not valid JSON (error at byte %zu)", what,
				   slug, at);
		return -EINVAL;
	}
	if (cJSON_IsNull(root)) {
		cJSON_Delete(root);
		*reterr_msg = msgf("%s for socket '%s' is null; a Value socket needs a value", what,
				   slug);
		return -EINVAL;
	}
	cJSON_Delete(root);
	copy = strndup(text, len);
	if (!copy)
		return -ENOMEM;
	*ret_json = copy;
	return 0;
}

/* Read entry 'e' and check it as JSON for socket 'slug'. */
static int
load_json(const struct scan_entry *e, const char *quoted, const char *slug,
	  const struct casemap_reader *reader, char **ret_json, char **reterr_msg)
{
	char *data = NULL, *what = NULL;
	size_t len = 0;
	int r;

	if (e->size > CASEMAP_MAX_JSON_BYTES) {
		*reterr_msg = msgf("'%s' for socket '%s' is too large for a value (%lld bytes, at "
				   "most %d)", quoted, slug, (long long)e->size,
				   CASEMAP_MAX_JSON_BYTES);
		return -EINVAL;
	}
	if (!reader || !reader->read) {
		*reterr_msg = msgf("cannot read '%s' for socket '%s': no reader", quoted, slug);
		return -EINVAL;
	}
	r = reader->read(reader->userdata, e, CASEMAP_MAX_JSON_BYTES, &data, &len);
	if (r == -EFBIG) {
		*reterr_msg = msgf("'%s' for socket '%s' is too large for a value (more than %d "
				   "bytes)", quoted, slug, CASEMAP_MAX_JSON_BYTES);
		return -EINVAL;
	}
	if (r < 0) {
		*reterr_msg = msgf("cannot read '%s' for socket '%s': %s", quoted, slug,
				   strerror(-r));
		return r;
	}
	what = msgf("'%s'", quoted);
	r = what ? check_json(data, len, what, slug, ret_json, reterr_msg) : -ENOMEM;
	free(what);
	free(data);
	return r;
}

/* Rule 3: check the kind of one named group and add it to its value. */
static int
map_named_group(const struct casemap_dest *d, const struct scan_entry *entries,
		const struct group *g, const struct casemap_reader *reader, struct build *b,
		char **reterr_msg)
{
	const struct casemap_socket *s = &d->sockets[g->sock];
	const char *sk = casemap_super_kind_name(s->super_kind);
	struct casemap_value *v;
	char *origin;
	int r;

	if (g->is_dir && s->super_kind != CASEMAP_IMAGE) {
		*reterr_msg = msgf("'%s' is a directory, but socket '%s' is a %s socket and takes "
				   "%s", g->quoted, s->slug, sk,
				   s->super_kind == CASEMAP_FILE ? "one file" : "one .json file");
		return -EINVAL;
	}
	if (!g->is_dir && s->super_kind == CASEMAP_IMAGE &&
	    (g->how == HOW_JSON_EXT || g->how == HOW_OTHER_EXT)) {
		*reterr_msg = msgf(g->how == HOW_JSON_EXT
				   ? "'%s' is a JSON file, but socket '%s' is an Image socket"
				   : "'%s' is not an image file (unknown extension), but socket "
				     "'%s' is an Image socket", g->quoted, s->slug);
		return -EINVAL;
	}
	if (!g->is_dir && s->super_kind == CASEMAP_VALUE &&
	    (g->how == HOW_IMAGE_EXT || g->how == HOW_OTHER_EXT)) {
		*reterr_msg = msgf("'%s' is not a .json file, but socket '%s' is a Value socket",
				   g->quoted, s->slug);
		return -EINVAL;
	}

	v = build_find(b, s->slug);
	if (v && s->super_kind != CASEMAP_IMAGE) {
		*reterr_msg = msgf("%s and '%s' both map to socket '%s', which takes one %s",
				   v->origin, g->quoted, s->slug,
				   s->super_kind == CASEMAP_FILE ? "file" : "value");
		return -EINVAL;
	}
	if (v) {
		/* Another entry for the same Image socket: one image from several entries. */
		origin = msgf("%s, '%s'", v->origin, g->quoted);
		if (!origin)
			return -ENOMEM;
		free(v->origin);
		v->origin = origin;
		return value_add_files(v, g->first, g->count);
	}
	origin = msgf("'%s'", g->quoted);
	if (!origin)
		return -ENOMEM;
	v = build_add(b, s, s->super_kind == CASEMAP_VALUE ? CASEMAP_SRC_JSON : CASEMAP_SRC_FILES,
		      origin);
	free(origin);
	if (!v)
		return -ENOMEM;
	if (s->super_kind == CASEMAP_VALUE)
		return load_json(&entries[g->first], g->quoted, s->slug, reader, &v->json,
				 reterr_msg);
	r = value_add_files(v, g->first, g->count);
	return r;
}

static bool
slug_in(const char *slug, char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], slug) == 0)
			return true;
	return false;
}

static bool
static_socket(const struct casemap_dest *d, const char *slug)
{
	for (size_t i = 0; i < d->n_values; i++)
		if (strcmp(d->values[i].socket, slug) == 0)
			return true;
	return false;
}

/* "('a', 'b'), ('c')" for the interfaces of an algorithm. */
static int
append_interfaces(struct buf *m, const struct casemap_dest *d)
{
	int r = 0;

	for (size_t i = 0; i < d->n_interfaces && r == 0; i++) {
		r = buf_appends(m, i ? ", (" : "(");
		for (size_t j = 0; j < d->interfaces[i].n_inputs && r == 0; j++)
			r = buf_printf(m, "%s'%s'", j ? ", " : "", d->interfaces[i].inputs[j]);
		if (r == 0)
			r = buf_appends(m, ")");
	}
	return r;
}

/* Rule 4 for algorithms: the one input that static values leave open. */
static int
algorithm_default(const struct casemap_dest *d, const char **ret_slug, char **reterr_msg)
{
	const char *found = NULL;
	bool ambiguous = false;
	struct buf m;

	for (size_t i = 0; i < d->n_interfaces; i++) {
		const struct casemap_interface *it = &d->interfaces[i];
		const char *open = NULL;
		size_t n_open = 0;
		bool covers = true;

		for (size_t j = 0; j < d->n_values; j++)
			if (!slug_in(d->values[j].socket, it->inputs, it->n_inputs))
				covers = false;
		if (!covers)
			continue;
		for (size_t j = 0; j < it->n_inputs; j++)
			if (!static_socket(d, it->inputs[j])) {
				open = it->inputs[j];
				n_open++;
			}
		if (n_open != 1)
			continue;
		if (found && strcmp(found, open) != 0)
			ambiguous = true;
		found = open;
	}
	if (found && !ambiguous) {
		*ret_slug = found;
		return 0;
	}
	buf_init(&m, CASEMAP_MSG_CAP);
	if (buf_printf(&m, "the case is not named after sockets and algorithm '%s' has no single "
		       "input to take it (interfaces: ", d->slug) < 0 ||
	    append_interfaces(&m, d) < 0 ||
	    buf_appends(&m, "); name the case's entries after its input sockets or set "
			"'socket' in the watch") < 0)
		return -ENOMEM;
	*reterr_msg = buf_take(&m, NULL);
	return -EINVAL;
}

/* Rule 4: every file of the case to the default socket. */
static int
map_default(const struct casemap_dest *d, const struct scan_entry *entries, size_t n,
	    const struct group *groups, size_t n_groups, const struct casemap_reader *reader,
	    struct build *b, char **reterr_msg)
{
	const struct casemap_socket *s;
	struct casemap_value *v;
	const char *slug;
	char *origin;
	int r;

	if (d->socket) {
		slug = d->socket;
	} else if (d->kind == CONFIG_DEST_ALGORITHM) {
		r = algorithm_default(d, &slug, reterr_msg);
		if (r < 0)
			return r;
	} else {
		slug = CASEMAP_DEFAULT_SOCKET;
	}
	s = find_socket(d, slug);
	if (!s) {
		*reterr_msg = msgf("socket '%s', which is to take the whole case, is not a known "
				   "socket of %s '%s'", slug, dest_kind_name(d->kind), d->slug);
		return -EINVAL;
	}
	if (n_groups == 1 && !groups[0].is_dir)
		origin = msgf("'%s'", groups[0].quoted);
	else
		origin = msgf("the whole case (%zu file%s)", n, n == 1 ? "" : "s");
	if (!origin)
		return -ENOMEM;
	if (s->super_kind != CASEMAP_IMAGE && (n != 1 || groups[0].is_dir)) {
		*reterr_msg = msgf("socket '%s' is a %s socket and takes one %s, but %s was given",
				   s->slug, casemap_super_kind_name(s->super_kind),
				   s->super_kind == CASEMAP_FILE ? "file" : ".json file", origin);
		free(origin);
		return -EINVAL;
	}
	if (s->super_kind == CASEMAP_VALUE &&
	    (how_of_name(groups[0].name, strlen(groups[0].name)) == HOW_IMAGE_EXT ||
	     how_of_name(groups[0].name, strlen(groups[0].name)) == HOW_OTHER_EXT)) {
		*reterr_msg = msgf("'%s' is not a .json file, but socket '%s' is a Value socket",
				   groups[0].quoted, s->slug);
		free(origin);
		return -EINVAL;
	}
	v = build_add(b, s, s->super_kind == CASEMAP_VALUE ? CASEMAP_SRC_JSON : CASEMAP_SRC_FILES,
		      origin);
	free(origin);
	if (!v)
		return -ENOMEM;
	if (s->super_kind == CASEMAP_VALUE)
		return load_json(&entries[0], groups[0].quoted, s->slug, reader, &v->json,
				 reterr_msg);
	return value_add_files(v, 0, n);
}

/* Rule 5: static values, for Value sockets the case did not provide. */
static int
map_static(const struct casemap_dest *d, struct build *b, char **reterr_msg)
{
	size_t n_case = b->n;

	for (size_t i = 0; i < d->n_values; i++) {
		const struct config_value *cv = &d->values[i];
		const struct casemap_socket *s = find_socket(d, cv->socket);
		struct casemap_value *v;
		int r;

		if (!s) {
			*reterr_msg = msgf("the static value for socket '%s' names no known socket "
					   "of %s '%s'", cv->socket, dest_kind_name(d->kind),
					   d->slug);
			return -EINVAL;
		}
		if (s->super_kind != CASEMAP_VALUE) {
			*reterr_msg = msgf("the static value for socket '%s' cannot be used: it is "
					   "%s %s socket, and static values need a Value socket",
					   s->slug, s->super_kind == CASEMAP_IMAGE ? "an" : "a",
					   casemap_super_kind_name(s->super_kind));
			return -EINVAL;
		}
		v = build_find(b, s->slug);
		if (v && (size_t)(v - b->v) < n_case)
			continue;	/* the case's own value wins */
		if (v) {
			*reterr_msg = msgf("two static values for socket '%s'", s->slug);
			return -EINVAL;
		}
		v = build_add(b, s, CASEMAP_SRC_JSON, "static value");
		if (!v)
			return -ENOMEM;
		r = check_json(cv->json, strlen(cv->json), "the static value", s->slug, &v->json,
			       reterr_msg);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Rule 6: the sockets provided must be exactly the inputs of one interface. */
static int
check_interfaces(const struct casemap_dest *d, const struct build *b, char **reterr_msg)
{
	size_t best = 0, best_diff = SIZE_MAX;
	const struct casemap_interface *it;
	struct buf m;
	bool first;
	int r;

	if (d->kind != CONFIG_DEST_ALGORITHM || d->n_interfaces == 0)
		return 0;
	for (size_t i = 0; i < d->n_interfaces; i++) {
		size_t diff = 0;

		it = &d->interfaces[i];
		for (size_t j = 0; j < it->n_inputs; j++)
			if (!build_has(b, it->inputs[j]))
				diff++;
		for (size_t j = 0; j < b->n; j++)
			if (!slug_in(b->v[j].socket, it->inputs, it->n_inputs))
				diff++;
		if (diff == 0)
			return 0;
		if (diff < best_diff) {
			best_diff = diff;
			best = i;
		}
	}

	it = &d->interfaces[best];
	buf_init(&m, CASEMAP_MSG_CAP);
	r = buf_printf(&m, "the case does not match an interface of algorithm '%s':", d->slug);
	first = true;
	for (size_t j = 0; j < it->n_inputs && r == 0; j++)
		if (!build_has(b, it->inputs[j])) {
			r = buf_printf(&m, "%s'%s'", first ? " missing input " : ", ",
				       it->inputs[j]);
			first = false;
		}
	if (r == 0 && !first)
		r = buf_appends(&m, ";");
	first = true;
	for (size_t j = 0; j < b->n && r == 0; j++)
		if (!slug_in(b->v[j].socket, it->inputs, it->n_inputs)) {
			r = buf_printf(&m, "%s'%s' (from %s)", first ? " not an input: " : ", ",
				       b->v[j].socket, b->v[j].origin);
			first = false;
		}
	if (r == 0 && !first)
		r = buf_appends(&m, ";");
	if (r == 0)
		r = buf_appends(&m, " the closest interface is (");
	for (size_t j = 0; j < it->n_inputs && r == 0; j++)
		r = buf_printf(&m, "%s'%s'", j ? ", " : "", it->inputs[j]);
	if (r == 0)
		r = buf_appends(&m, "); all interfaces: ");
	if (r == 0)
		r = append_interfaces(&m, d);
	if (r < 0)
		return -ENOMEM;
	*reterr_msg = buf_take(&m, NULL);
	return -EINVAL;
}

int
casemap_map(const struct scan_entry *entries, size_t n_entries,
	    const struct casemap_dest *dest, const struct casemap_reader *reader,
	    struct casemap_result *ret, char **reterr_msg)
{
	struct build b = { 0 };
	struct group *groups = NULL;
	size_t n_groups = 0;
	long named = -1, stray = -1;
	char *msg = NULL;
	int r;

	if (n_entries == 0) {
		r = -EINVAL;
		msg = msgf("the case has no files");
		goto out;
	}
	r = make_groups(entries, n_entries, &groups, &n_groups);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n_groups; i++) {
		groups[i].sock = match_socket(dest, groups[i].name, groups[i].is_dir,
					      &groups[i].how);
		if (groups[i].sock >= 0 && named < 0)
			named = (long)i;
		if (groups[i].sock < 0 && stray < 0)
			stray = (long)i;
	}

	if (named >= 0 && stray >= 0) {
		r = -EINVAL;
		msg = msgf("'%s' matches no socket of %s '%s', but other entries of the case are "
			   "named after sockets ('%s' for socket '%s'); rename or remove it",
			   groups[stray].quoted, dest_kind_name(dest->kind), dest->slug,
			   groups[named].quoted, dest->sockets[groups[named].sock].slug);
		goto out;
	}
	if (named >= 0) {
		for (size_t i = 0; i < n_groups; i++) {
			r = map_named_group(dest, entries, &groups[i], reader, &b, &msg);
			if (r < 0)
				goto out;
		}
	} else {
		r = map_default(dest, entries, n_entries, groups, n_groups, reader, &b, &msg);
		if (r < 0)
			goto out;
	}
	r = map_static(dest, &b, &msg);
	if (r < 0)
		goto out;
	r = check_interfaces(dest, &b, &msg);
	if (r < 0)
		goto out;

	for (size_t i = 0; i < b.n; i++)
		if (b.v[i].n_files > 1)
			qsort(b.v[i].files, b.v[i].n_files, sizeof(size_t), size_t_cmp);
	qsort(b.v, b.n, sizeof(*b.v), value_cmp);
	ret->values = b.v;
	ret->n = b.n;
	b.v = NULL;
	b.n = 0;
	r = 0;
out:
	groups_free(groups, n_groups);
	build_free(&b);
	if (r < 0 && reterr_msg)
		*reterr_msg = msg ? msg : strdup(strerror(-r));
	else
		free(msg);
	return r;
}

void
casemap_result_clear(struct casemap_result *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->n; i++)
		value_free(&res->values[i]);
	free(res->values);
	res->values = NULL;
	res->n = 0;
}

int
casemap_read_at(void *userdata, const struct scan_entry *entry, size_t max_bytes,
		char **ret_data, size_t *ret_len)
{
	int dirfd = *(const int *)userdata;
	const char *p = entry->relpath;
	char *data = NULL, *comp;
	size_t len = 0;
	struct stat st;
	int fd = -1, r;

	comp = malloc(strlen(entry->relpath) + 1);
	if (!comp)
		return -ENOMEM;
	/* Walk the directories one component at a time, never through a symlink. */
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t cl = slash ? (size_t)(slash - p) : strlen(p);
		int nfd;

		memcpy(comp, p, cl);
		comp[cl] = '\0';
		nfd = openat(fd >= 0 ? fd : dirfd, comp,
			     (slash ? O_DIRECTORY : O_NONBLOCK | O_NOCTTY) | O_RDONLY | O_NOFOLLOW |
			     O_CLOEXEC);
		r = nfd < 0 ? -errno : 0;
		if (fd >= 0)
			close(fd);
		fd = nfd;
		if (r < 0)
			goto out;
		if (!slash)
			break;
		p = slash + 1;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > max_bytes) {
		r = -EFBIG;
		goto out;
	}
	data = malloc((size_t)st.st_size + 2);
	if (!data) {
		r = -ENOMEM;
		goto out;
	}
	/* Read one byte more than expected, to notice a file that grew. */
	while (len < (size_t)st.st_size + 1) {
		ssize_t got = read(fd, data + len, (size_t)st.st_size + 1 - len);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = -errno;
			goto out;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	if (len > max_bytes) {
		r = -EFBIG;
		goto out;
	}
	data[len] = '\0';
	*ret_data = data;
	*ret_len = len;
	data = NULL;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	free(comp);
	free(data);
	return r;
}

/* Upload names. */

static bool
name_ascii_safe(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr(" ._-+()[],=@", c) != NULL;
}

/*
 * Sanitise 'len' bytes into 'out' (len bytes plus NUL): the byte length does
 * not change, because a kept UTF-8 sequence is copied whole and any other byte
 * becomes one '_'.
 */
static void
sanitise(const char *in, size_t len, char *out)
{
	const unsigned char *p = (const unsigned char *)in;

	for (size_t i = 0; i < len;) {
		size_t sl;

		if (p[i] < 0x80) {
			out[i] = p[i] != 0 && name_ascii_safe(p[i]) ? (char)p[i] : '_';
			i++;
		} else if ((sl = scan_utf8_seq(p + i, len - i)) > 0 &&
			   !(p[i] == 0xc2 && p[i + 1] < 0xa0)) {
			memcpy(out + i, p + i, sl);
			i += sl;
		} else {
			out[i++] = '_';
		}
	}
	out[len] = '\0';
	if (out[0] == '.')
		out[0] = '_';
}

/* Characters (code points) of valid UTF-8. */
static size_t
utf8_chars(const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			n++;
	return n;
}

/* Byte length of the first 'chars' characters of 's' (len bytes). */
static size_t
utf8_prefix(const char *s, size_t len, size_t chars)
{
	size_t i = 0, n = 0;

	while (i < len) {
		if (((unsigned char)s[i] & 0xc0) != 0x80) {
			if (n == chars)
				break;
			n++;
		}
		i++;
	}
	return i;
}

bool
casemap_upload_name_valid(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t len;

	if (!name || !name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	len = strlen(name);
	for (size_t i = 0; i < len;) {
		size_t sl = scan_utf8_seq(p + i, len - i);

		if (sl == 0 || p[i] < 0x20 || p[i] == 0x7f || p[i] == '/' ||
		    (p[i] == 0xc2 && p[i + 1] < 0xa0))
			return false;
		i += sl;
	}
	return utf8_chars(name, len) <= CASEMAP_MAX_NAME_CHARS;
}

/* Byte length of the extension kept at the end of the name of 'relpath'. */
static size_t
ext_len(const char *relpath, size_t len)
{
	const char *base = last_byte(relpath, '/', len);
	size_t bl;
	const char *ext, *dot;

	base = base ? base + 1 : relpath;
	bl = len - (size_t)(base - relpath);
	ext = image_ext_n(base, bl);
	if (ext)
		return bl - (size_t)(ext - base);
	dot = last_byte(base, '.', bl);
	if (dot && dot != base && bl - (size_t)(dot - base) <= CASEMAP_MAX_EXT)
		return bl - (size_t)(dot - base);
	return 0;
}

/* A set of names compared without regard to ASCII case (open addressing). */
struct nameset {
	const char **slots;
	size_t cap;		/* a power of two */
};

static uint64_t
name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * 1099511628211ULL;
	}
	return h;
}

static bool
name_eq(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;

		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return false;
		if (!x)
			return true;
	}
}

/* Insert 'name' unless an equal one is there; returns false when it was. */
static bool
nameset_add(struct nameset *set, const char *name)
{
	size_t i = (size_t)name_hash(name) & (set->cap - 1);

	while (set->slots[i]) {
		if (name_eq(set->slots[i], name))
			return false;
		i = (i + 1) & (set->cap - 1);
	}
	set->slots[i] = name;
	return true;
}

/*
 * Build stem + "-" + 8 hex digits of SHA-256(relpath [+ NUL + attempt]) + ext,
 * shortening the stem so that the whole fits CASEMAP_MAX_NAME_CHARS.
 */
static char *
suffixed_name(const char *flat, size_t flat_len, size_t elen, const struct scan_entry *e,
	      unsigned attempt)
{
	char hex[SHA256_HEX_SIZE];
	size_t stem_len = flat_len - elen;
	size_t budget = CASEMAP_MAX_NAME_CHARS - 9 - utf8_chars(flat + stem_len, elen);
	struct sha256 ctx;
	uint8_t digest[SHA256_DIGEST_SIZE];

	sha256_init(&ctx);
	sha256_update(&ctx, e->relpath, e->relpath_len);
	if (attempt > 0) {
		char num[16];
		int nl = snprintf(num, sizeof(num), "%u", attempt);

		sha256_update(&ctx, "", 1);
		sha256_update(&ctx, num, (size_t)nl);
	}
	sha256_final(&ctx, digest);
	sha256_to_hex(digest, hex);
	if (utf8_chars(flat, stem_len) > budget)
		stem_len = utf8_prefix(flat, stem_len, budget);
	return msgf("%.*s-%.8s%.*s", (int)stem_len, flat, hex, (int)elen, flat + flat_len - elen);
}

int
casemap_upload_names(const struct scan_entry *entries, size_t n, char ***ret_names)
{
	struct nameset set = { 0 };
	char **names = NULL, *flat = NULL;
	size_t max_len = 0;
	int r = -ENOMEM;

	names = calloc(n ? n : 1, sizeof(*names));
	set.cap = 16;
	while (set.cap < 2 * n + 16)
		set.cap *= 2;
	set.slots = calloc(set.cap, sizeof(*set.slots));
	for (size_t i = 0; i < n; i++)
		if (entries[i].relpath_len > max_len)
			max_len = entries[i].relpath_len;
	flat = malloc(max_len + 1);
	if (!names || !set.slots || !flat)
		goto out;

	/* Pass 1: names that need no change keep themselves (first come, first served). */
	for (size_t i = 0; i < n; i++) {
		const struct scan_entry *e = &entries[i];

		if (memchr(e->relpath, '/', e->relpath_len))
			continue;
		sanitise(e->relpath, e->relpath_len, flat);
		if (strcmp(flat, e->relpath) != 0 ||
		    utf8_chars(flat, e->relpath_len) > CASEMAP_MAX_NAME_CHARS)
			continue;
		names[i] = strdup(flat);
		if (!names[i])
			goto out;
		if (!nameset_add(&set, names[i])) {
			free(names[i]);
			names[i] = NULL;
		}
	}
	/* Pass 2: the others, flattened, shortened, and made unique. */
	for (size_t i = 0; i < n; i++) {
		const struct scan_entry *e = &entries[i];
		size_t elen;
		char *name;

		if (names[i])
			continue;
		sanitise(e->relpath, e->relpath_len, flat);
		elen = ext_len(e->relpath, e->relpath_len);
		if (utf8_chars(flat, e->relpath_len) > CASEMAP_MAX_NAME_CHARS)
			name = suffixed_name(flat, e->relpath_len, elen, e, 0);
		else
			name = strdup(flat);
		for (unsigned attempt = 0; name && !nameset_add(&set, name); attempt++) {
			free(name);
			name = suffixed_name(flat, e->relpath_len, elen, e, attempt);
		}
		if (!name)
			goto out;
		names[i] = name;
	}
	*ret_names = names;
	names = NULL;
	r = 0;
out:
	casemap_names_free(names, n);
	free(set.slots);
	free(flat);
	return r;
}

void
casemap_names_free(char **names, size_t n)
{
	if (!names)
		return;
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static bool
slug_shaped(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '_'))
			return false;
	return true;
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
casemap_candidate_slugs(const struct scan_entry *entries, size_t n, char ***ret_slugs,
			size_t *ret_n)
{
	char **out = NULL;
	size_t n_out = 0;
	int r = -ENOMEM;

	out = calloc(CASEMAP_MAX_CANDIDATES, sizeof(*out));
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *p = entries[i].relpath;
		const char *slash = strchr(p, '/');
		size_t nl = slash ? (size_t)(slash - p) : strlen(p);
		size_t stem = nl;
		bool seen = false;

		if (!slash) {
			const char *ext = image_ext_n(p, nl);
			const char *dot = last_byte(p, '.', nl);

			if (ext)
				stem = (size_t)(ext - p);
			else if (dot && dot != p)
				stem = (size_t)(dot - p);
		}
		if (!slug_shaped(p, stem))
			continue;
		for (size_t j = 0; j < n_out && !seen; j++)
			seen = strlen(out[j]) == stem && memcmp(out[j], p, stem) == 0;
		if (seen)
			continue;
		if (n_out == CASEMAP_MAX_CANDIDATES) {
			r = -E2BIG;
			goto out;
		}
		out[n_out] = strndup(p, stem);
		if (!out[n_out])
			goto out;
		n_out++;
	}
	qsort(out, n_out, sizeof(*out), str_cmp);
	*ret_slugs = out;
	*ret_n = n_out;
	return 0;
out:
	casemap_names_free(out, n_out);
	return r;
}
