/*
 * dest.c: destination lookups and the import of a case into one item.
 *
 * DESIGN
 * Everything here runs on the main thread except dest_op_run(), which a pool
 * worker calls with its own api handle. The import is a small state machine
 * with at most one operation out at a time (sessions, then the item, then the
 * PATCH, then polls): a case has few of them, and sequencing keeps the crash
 * analysis simple. What was done is recorded as remotes of the case in the
 * store (kind session with the socket slug as key; kind archive-item or
 * display-set with key ""), so after a restart the import picks up where it
 * was:
 *   - a session recorded: used again (sessions have no title to find them by;
 *     a session created but not recorded stays Queued on the platform, which
 *     neither imports nor links anything, so creating another is harmless);
 *   - an item intent without an answer: find by title before creating;
 *   - item status "patching": the PATCH may have gone out; a repeat that is
 *     refused because the sessions are consumed is checked by polling them;
 *   - "patched": poll.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "dest.h"
#include "log.h"

#define MSG_NO_OBJECT "Invalid hyperlink - Object does not exist."

static char *
xstrdup(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

/* ---- the destination cache ---- */

struct dest *
dest_new(const struct config_watch *w)
{
	struct dest *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->watch = strdup(w->name);
	d->slug = strdup(w->slug);
	d->kind = w->dest;
	if (d->watch == NULL || d->slug == NULL)
		return dest_free(d);
	return d;
}

static void
socket_clear(struct casemap_socket *s)
{
	free(s->slug);
	free(s->kind);
	free(s->relative_path);
}

static void
ifaces_free(struct dest *d)
{
	for (size_t i = 0; i < d->n_ifaces; i++)
		casemap_names_free(d->ifaces[i].inputs, d->ifaces[i].n_inputs);
	free(d->ifaces);
	d->ifaces = NULL;
	d->n_ifaces = 0;
}

void
dest_forget(struct dest *d)
{
	for (size_t i = 0; i < d->n_sockets; i++)
		socket_clear(&d->sockets[i]);
	free(d->sockets);
	d->sockets = NULL;
	d->n_sockets = 0;
	casemap_names_free(d->absent, d->n_absent);
	d->absent = NULL;
	d->n_absent = 0;
	free(d->fatal);
	d->fatal = NULL;
	d->failures = 0;
	d->not_before_ms = 0;
	if (d->have_alg) {
		api_algorithm_clear(&d->alg);
		d->have_alg = false;
	}
	ifaces_free(d);
}

struct dest *
dest_free(struct dest *d)
{
	if (d == NULL)
		return NULL;
	dest_forget(d);
	api_collection_clear(&d->coll);
	free(d->watch);
	free(d->slug);
	free(d);
	return NULL;
}

const struct casemap_socket *
dest_socket(const struct dest *d, const char *slug)
{
	for (size_t i = 0; i < d->n_sockets; i++)
		if (strcmp(d->sockets[i].slug, slug) == 0)
			return &d->sockets[i];
	return NULL;
}

static bool
known(const struct dest *d, const char *slug)
{
	if (dest_socket(d, slug) != NULL)
		return true;
	for (size_t i = 0; i < d->n_absent; i++)
		if (strcmp(d->absent[i], slug) == 0)
			return true;
	return false;
}

/* Add slug to the list (without duplicates) when it is not known yet. */
static int
want(const struct dest *d, char ***list, size_t *n, const char *slug)
{
	char **nl;

	if (slug == NULL || known(d, slug))
		return 0;
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*list)[i], slug) == 0)
			return 0;
	nl = realloc(*list, (*n + 1) * sizeof(char *));
	if (nl == NULL)
		return -ENOMEM;
	*list = nl;
	nl[*n] = strdup(slug);
	if (nl[*n] == NULL)
		return -ENOMEM;
	(*n)++;
	return 0;
}

static int
missing(const struct dest *d, const struct config_watch *w, char *const *cand, size_t n_cand,
	char ***ret, size_t *ret_n)
{
	char **list = NULL;
	size_t n = 0;
	int r;

	r = want(d, &list, &n, w->socket != NULL ? w->socket : CASEMAP_DEFAULT_SOCKET);
	for (size_t i = 0; r == 0 && i < w->n_values; i++)
		r = want(d, &list, &n, w->values[i].socket);
	for (size_t i = 0; r == 0 && i < n_cand; i++)
		r = want(d, &list, &n, cand[i]);
	if (r < 0) {
		casemap_names_free(list, n);
		return r;
	}
	*ret = list;
	*ret_n = n;
	return 0;
}

bool
dest_ready(const struct dest *d, const struct config_watch *w, char *const *candidates,
	   size_t n_candidates)
{
	char **list = NULL;
	size_t n = 0;
	bool ok;

	if (d->kind == CONFIG_DEST_ALGORITHM)
		return d->have_alg;
	if (!d->have_coll)
		return false;
	if (missing(d, w, candidates, n_candidates, &list, &n) < 0)
		return false;
	ok = n == 0;
	casemap_names_free(list, n);
	return ok;
}

int
dest_resolve_op(struct dest *d, const struct config_watch *w, char *const *candidates,
		size_t n_candidates, struct pipeline_op **ret_op)
{
	struct pipeline_op *op;
	char **list = NULL;
	size_t n = 0;
	int r;

	if (d->resolving || d->fatal != NULL) {
		*ret_op = NULL;
		return 0;
	}
	if (d->kind == CONFIG_DEST_ALGORITHM) {
		if (d->have_alg) {
			*ret_op = NULL;
			return 0;
		}
		op = pipeline_op_new(PIPELINE_OP_DEST_RESOLVE);
		if (op == NULL || (op->slug = strdup(d->slug)) == NULL) {
			pipeline_op_free(op);
			return -ENOMEM;
		}
		op->algorithm = true;
		d->resolving = true;
		*ret_op = op;
		return 0;
	}
	r = missing(d, w, candidates, n_candidates, &list, &n);
	if (r < 0)
		return r;
	if (n == 0 && d->have_coll) {
		*ret_op = NULL;
		return 0;
	}
	op = pipeline_op_new(PIPELINE_OP_DEST_RESOLVE);
	if (op == NULL) {
		casemap_names_free(list, n);
		return -ENOMEM;
	}
	op->strs = list;
	op->n_strs = n;
	op->display_set = d->kind == CONFIG_DEST_READER_STUDY;
	if (!d->have_coll && (op->slug = strdup(d->slug)) == NULL) {
		pipeline_op_free(op);
		return -ENOMEM;
	}
	d->resolving = true;
	*ret_op = op;
	return 0;
}

static int
add_socket(struct dest *d, const struct api_socket *s)
{
	struct casemap_socket *ns;
	struct casemap_socket c = {0};

	ns = realloc(d->sockets, (d->n_sockets + 1) * sizeof(*ns));
	if (ns == NULL)
		return -ENOMEM;
	d->sockets = ns;
	c.slug = xstrdup(s->slug);
	c.kind = xstrdup(s->kind);
	c.relative_path = xstrdup(s->relative_path);
	c.super_kind = s->super_kind == API_SUPER_IMAGE ? CASEMAP_IMAGE :
		       s->super_kind == API_SUPER_FILE ? CASEMAP_FILE : CASEMAP_VALUE;
	if (c.slug == NULL) {
		socket_clear(&c);
		return -ENOMEM;
	}
	d->sockets[d->n_sockets++] = c;
	return 0;
}

static int
add_absent(struct dest *d, const char *slug)
{
	char **na = realloc(d->absent, (d->n_absent + 1) * sizeof(char *));

	if (na == NULL)
		return -ENOMEM;
	d->absent = na;
	na[d->n_absent] = strdup(slug);
	if (na[d->n_absent] == NULL)
		return -ENOMEM;
	d->n_absent++;
	return 0;
}

/* The algorithm's input sockets (each once) and its interfaces, into the cache. */
static int
take_algorithm(struct dest *d, struct api_algorithm *alg)
{
	int r;

	d->ifaces = calloc(alg->n_interfaces + 1, sizeof(*d->ifaces));
	if (d->ifaces == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < alg->n_interfaces; i++) {
		const struct api_interface *it = &alg->interfaces[i];
		struct casemap_interface *ci = &d->ifaces[d->n_ifaces++];

		ci->inputs = calloc(it->n_inputs + 1, sizeof(char *));
		if (ci->inputs == NULL)
			return -ENOMEM;
		for (size_t k = 0; k < it->n_inputs; k++) {
			const struct api_socket *s = &it->inputs[k];

			if ((ci->inputs[ci->n_inputs] = strdup(s->slug)) == NULL)
				return -ENOMEM;
			ci->n_inputs++;
			if (dest_socket(d, s->slug) == NULL) {
				r = add_socket(d, s);
				if (r < 0)
					return r;
			}
		}
	}
	d->alg = *alg;
	memset(alg, 0, sizeof(*alg));
	d->have_alg = true;
	return 0;
}

enum api_class
dest_on_resolved(struct dest *d, struct pipeline_op *op)
{
	d->resolving = false;
	if (op->cancelled)
		return API_RETRY;
	if (op->algorithm) {
		if (op->alg_ok && !d->have_alg && take_algorithm(d, &op->alg) < 0) {
			dest_forget(d);
			op->err.cls = API_RETRY;
			snprintf(op->err.message, sizeof(op->err.message), "out of memory");
			return API_RETRY;
		}
		if (op->err.cls == API_GONE && !d->have_alg) {
			free(d->fatal);
			if (asprintf(&d->fatal, "%s", op->err.message) < 0)
				d->fatal = NULL;
		}
		return op->err.cls;
	}
	if (op->coll_ok && !d->have_coll) {
		d->coll = op->coll;
		memset(&op->coll, 0, sizeof(op->coll));
		d->have_coll = true;
	}
	/* Sockets looked up before a failure are kept. */
	for (size_t i = 0; i < op->n_strs && op->socket_found != NULL; i++) {
		if (known(d, op->strs[i]))
			continue;
		if (op->socket_found[i])
			(void)add_socket(d, &op->sockets[i]);
		else if (i < op->n_numbers)
			(void)add_absent(d, op->strs[i]);
	}
	if (op->err.cls == API_GONE && !d->have_coll) {
		free(d->fatal);
		if (asprintf(&d->fatal, "%s", op->err.message) < 0)
			d->fatal = NULL;
	}
	return op->err.cls;
}

/* ---- the import ---- */

void
dest_values_free(struct dest_value *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].socket);
		casemap_names_free(v[i].upload_urls, v[i].n_uploads);
		free(v[i].json);
		free(v[i].session_url);
		free(v[i].session_status);
	}
	free(v);
}

static enum store_remote_kind
item_kind(const struct dest_import *imp)
{
	return imp->dest->kind == CONFIG_DEST_READER_STUDY ? STORE_REMOTE_DISPLAY_SET :
							     STORE_REMOTE_ARCHIVE_ITEM;
}

static int
set_str(char **dst, const char *src)
{
	char *s = xstrdup(src);

	if (src != NULL && s == NULL)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

int
dest_import_init(struct dest_import *imp, struct store *store, int64_t case_id, struct dest *dest,
		 const char *title, struct dest_value **values, size_t n, int64_t poll_base_ms,
		 int64_t poll_cap_ms, int64_t timeout_s)
{
	struct store_remote r = {0};
	int rc;

	memset(imp, 0, sizeof(*imp));
	imp->case_id = case_id;
	imp->dest = dest;
	imp->values = *values;
	imp->n_values = n;
	*values = NULL;
	imp->poll_base_ms = poll_base_ms;
	imp->poll_cap_ms = poll_cap_ms;
	imp->poll_delay_ms = poll_base_ms;
	imp->timeout_s = timeout_s;
	imp->title = strdup(title);
	if (imp->title == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct dest_value *v = &imp->values[i];

		if (v->src != DEST_SRC_SESSION)
			continue;
		rc = store_remote_get(store, case_id, STORE_REMOTE_SESSION, v->socket, &r);
		if (rc == 0 && !r.intent_only && r.url != NULL) {
			if (set_str(&v->session_url, r.url) < 0 ||
			    set_str(&v->session_status, r.status) < 0) {
				store_remote_clear(&r);
				return -ENOMEM;
			}
		}
		store_remote_clear(&r);
	}
	imp->phase = DEST_SESSIONS;
	rc = store_remote_get(store, case_id, item_kind(imp), "", &r);
	if (rc == 0) {
		if (r.intent_only || r.url == NULL) {
			imp->intent_only = true;
		} else {
			if (set_str(&imp->item_pk, r.pk) < 0 || set_str(&imp->item_url, r.url) < 0 ||
			    set_str(&imp->item_status, r.status) < 0) {
				store_remote_clear(&r);
				return -ENOMEM;
			}
			if (r.status != NULL && strcmp(r.status, "patching") == 0)
				imp->patch_resumed = true;
		}
	} else if (rc != -ENOENT) {
		return rc;
	}
	store_remote_clear(&r);
	return 0;
}

void
dest_import_done(struct dest_import *imp)
{
	dest_values_free(imp->values, imp->n_values);
	free(imp->title);
	free(imp->item_pk);
	free(imp->item_url);
	free(imp->item_status);
	free(imp->error);
	memset(imp, 0, sizeof(*imp));
}

static bool
session_terminal(const char *st)
{
	return st != NULL && (strcmp(st, "Succeeded") == 0 || strcmp(st, "Failed") == 0 ||
			      strcmp(st, "Cancelled") == 0);
}

static cJSON *
build_values(const struct dest_import *imp)
{
	static const enum api_value_src src_of[] = {
		[DEST_SRC_SESSION] = API_VALUE_SESSION,
		[DEST_SRC_USER_UPLOAD] = API_VALUE_USER_UPLOAD,
		[DEST_SRC_USER_UPLOADS] = API_VALUE_USER_UPLOADS,
		[DEST_SRC_VALUE] = API_VALUE_JSON,
	};
	cJSON *arr = cJSON_CreateArray();

	if (arr == NULL)
		return NULL;
	for (size_t i = 0; i < imp->n_values; i++) {
		const struct dest_value *v = &imp->values[i];
		const char *text = v->src == DEST_SRC_SESSION ? v->session_url : v->json;

		if (api_socket_value_add(arr, v->socket, src_of[v->src],
					 (const char *const *)v->upload_urls, v->n_uploads, text) < 0) {
			cJSON_Delete(arr);
			return NULL;
		}
	}
	return arr;
}

int64_t
dest_import_wake(const struct dest_import *imp)
{
	if (imp->phase == DEST_POLL && !imp->busy)
		return imp->next_poll_ms;
	return INT64_MAX;
}

int
dest_import_next(struct dest_import *imp, struct store *store, int64_t now_ms,
		 struct pipeline_op **ret_op)
{
	struct pipeline_op *op = NULL;
	int r = -ENOMEM;

	*ret_op = NULL;
	if (imp->busy)
		return 0;
	if (imp->phase == DEST_SESSIONS) {
		for (size_t i = 0; i < imp->n_values; i++) {
			struct dest_value *v = &imp->values[i];

			if (v->src != DEST_SRC_SESSION || v->session_url != NULL)
				continue;
			op = pipeline_op_new(PIPELINE_OP_SESSION_CREATE);
			if (op == NULL)
				return -ENOMEM;
			op->sub = imp;
			op->number = (int)i;
			op->strs = calloc(v->n_uploads, sizeof(char *));
			if (op->strs == NULL)
				goto fail;
			op->n_strs = v->n_uploads;
			for (size_t k = 0; k < v->n_uploads; k++)
				if ((op->strs[k] = strdup(v->upload_urls[k])) == NULL)
					goto fail;
			goto out;
		}
		imp->phase = DEST_ITEM;
	}
	if (imp->phase == DEST_ITEM) {
		if (imp->item_url != NULL) {
			imp->phase = imp->item_status != NULL && (strcmp(imp->item_status, "patched") == 0 ||
								  strcmp(imp->item_status, "done") == 0) ?
					     DEST_POLL : DEST_PATCH;
			imp->next_poll_ms = now_ms;
			imp->deadline_ms = now_ms + imp->timeout_s * 1000;
		} else if (imp->intent_only) {
			op = pipeline_op_new(PIPELINE_OP_ITEM_FIND);
			if (op == NULL)
				return -ENOMEM;
			op->display_set = imp->dest->kind == CONFIG_DEST_READER_STUDY;
			if ((op->parent = strdup(imp->dest->coll.pk)) == NULL ||
			    (op->title = strdup(imp->title)) == NULL)
				goto fail;
			op->sub = imp;
			goto out;
		} else {
			r = store_remote_intent(store, imp->case_id, item_kind(imp), "", imp->title);
			if (r < 0)
				return r;
			r = -ENOMEM;
			op = pipeline_op_new(PIPELINE_OP_ITEM_CREATE);
			if (op == NULL)
				return -ENOMEM;
			op->display_set = imp->dest->kind == CONFIG_DEST_READER_STUDY;
			op->parent = strdup(op->display_set ? imp->dest->slug : imp->dest->coll.api_url);
			op->title = strdup(imp->title);
			if (op->parent == NULL || op->title == NULL)
				goto fail;
			op->sub = imp;
			/* From now on the POST may have happened: find before creating again. */
			imp->intent_only = true;
			goto out;
		}
	}
	if (imp->phase == DEST_PATCH) {
		op = pipeline_op_new(PIPELINE_OP_ITEM_PATCH);
		if (op == NULL)
			return -ENOMEM;
		op->sub = imp;
		op->json = build_values(imp);
		if (op->json == NULL || (op->url = strdup(imp->item_url)) == NULL)
			goto fail;
		r = store_remote_set(store, imp->case_id, item_kind(imp), "", imp->item_pk,
				     imp->item_url, "patching", NULL);
		if (r < 0)
			goto fail;
		r = -ENOMEM;
		goto out;
	}
	if (imp->phase == DEST_POLL) {
		if (now_ms < imp->next_poll_ms)
			return 0;
		for (size_t i = 0; i < imp->n_values; i++) {
			struct dest_value *v = &imp->values[i];

			if (v->src != DEST_SRC_SESSION || v->session_url == NULL ||
			    session_terminal(v->session_status))
				continue;
			op = pipeline_op_new(PIPELINE_OP_SESSION_GET);
			if (op == NULL)
				return -ENOMEM;
			op->sub = imp;
			op->number = (int)i;
			if ((op->url = strdup(v->session_url)) == NULL)
				goto fail;
			goto out;
		}
		op = pipeline_op_new(PIPELINE_OP_ITEM_GET);
		if (op == NULL)
			return -ENOMEM;
		op->sub = imp;
		op->display_set = imp->dest->kind == CONFIG_DEST_READER_STUDY;
		if ((op->url = strdup(imp->item_url)) == NULL)
			goto fail;
		goto out;
	}
	return 0;
out:
	imp->busy = true;
	*ret_op = op;
	return 0;
fail:
	pipeline_op_free(op);
	return r;
}

static void
poll_later(struct dest_import *imp, bool changed)
{
	int64_t now = backoff_now_ms();

	if (changed)
		imp->poll_delay_ms = imp->poll_base_ms;
	imp->next_poll_ms = now + imp->poll_delay_ms;
	imp->poll_delay_ms *= 2;
	if (imp->poll_delay_ms > imp->poll_cap_ms)
		imp->poll_delay_ms = imp->poll_cap_ms;
}

static enum dest_event
failure(struct dest_import *imp, const char *fmt, ...) GC_PRINTF(2, 3);

static enum dest_event
failure(struct dest_import *imp, const char *fmt, ...)
{
	va_list ap;

	free(imp->error);
	va_start(ap, fmt);
	if (vasprintf(&imp->error, fmt, ap) < 0)
		imp->error = NULL;
	va_end(ap);
	imp->phase = DEST_FAILED;
	return DEST_FAILURE;
}

static bool
item_has(const cJSON *values, const char *slug)
{
	const cJSON *v;

	cJSON_ArrayForEach(v, values) {
		const cJSON *itf = cJSON_GetObjectItemCaseSensitive(v, "interface");
		const cJSON *s = cJSON_IsObject(itf) ? cJSON_GetObjectItemCaseSensitive(itf, "slug") :
						       itf;

		if (cJSON_IsString(s) && strcmp(s->valuestring, slug) == 0)
			return true;
	}
	return false;
}

static enum dest_event
on_item(struct dest_import *imp, struct store *store, struct pipeline_op *op, const char *status)
{
	int r;

	r = store_remote_set(store, imp->case_id, item_kind(imp), "", op->item_out.pk,
			     op->item_out.api_url, status, NULL);
	if (r < 0)
		return DEST_ERROR;
	if (set_str(&imp->item_pk, op->item_out.pk) < 0 ||
	    set_str(&imp->item_url, op->item_out.api_url) < 0 ||
	    set_str(&imp->item_status, status) < 0)
		return DEST_ERROR;
	imp->intent_only = false;
	imp->phase = DEST_PATCH;
	return DEST_PROGRESS;
}

enum dest_event
dest_import_on_done(struct dest_import *imp, struct store *store, struct pipeline_op *op)
{
	int64_t now = backoff_now_ms();

	imp->busy = false;
	if (op->cancelled)
		return DEST_PROGRESS;
	switch (op->kind) {
	case PIPELINE_OP_SESSION_CREATE: {
		struct dest_value *v = &imp->values[op->number];

		if (op->err.cls == API_FAIL && strstr(op->err.message, MSG_NO_OBJECT) != NULL)
			return DEST_EXPIRED;
		if (op->err.cls != API_OK)
			return DEST_ERROR;
		if (store_remote_set(store, imp->case_id, STORE_REMOTE_SESSION, v->socket,
				     op->session.pk, op->session.api_url, op->session.status,
				     NULL) < 0)
			return DEST_ERROR;
		if (set_str(&v->session_url, op->session.api_url) < 0 ||
		    set_str(&v->session_status, op->session.status) < 0)
			return DEST_ERROR;
		return DEST_PROGRESS;
	}
	case PIPELINE_OP_ITEM_FIND:
		if (op->err.cls == API_GONE) {
			imp->intent_only = false;
			return DEST_PROGRESS;
		}
		if (op->err.cls != API_OK)
			return DEST_ERROR;
		log_debug("found the item titled '%s' of a previous attempt", imp->title);
		return on_item(imp, store, op, "created");
	case PIPELINE_OP_ITEM_CREATE:
		if (op->err.cls == API_FAIL && (strstr(op->err.message, "unique") != NULL))
			return DEST_PROGRESS;	/* it exists: find it (intent_only stays) */
		if (op->err.cls != API_OK)
			return DEST_ERROR;
		return on_item(imp, store, op, "created");
	case PIPELINE_OP_ITEM_PATCH:
		if (op->err.cls == API_FAIL && strstr(op->err.message, MSG_NO_OBJECT) != NULL) {
			bool sessions = false;

			for (size_t i = 0; i < imp->n_values; i++)
				sessions |= imp->values[i].src == DEST_SRC_SESSION;
			if (!imp->patch_resumed || !sessions)
				return DEST_EXPIRED;
			/* Our earlier PATCH may have consumed the sessions: poll them. */
			imp->phase = DEST_POLL;
			imp->next_poll_ms = now;
			imp->deadline_ms = now + imp->timeout_s * 1000;
			return DEST_PROGRESS;
		}
		if (op->err.cls != API_OK)
			return DEST_ERROR;
		if (store_remote_set(store, imp->case_id, item_kind(imp), "", imp->item_pk,
				     imp->item_url, "patched", NULL) < 0)
			return DEST_ERROR;
		(void)set_str(&imp->item_status, "patched");
		imp->patch_resumed = false;
		imp->phase = DEST_POLL;
		imp->poll_delay_ms = imp->poll_base_ms;
		poll_later(imp, true);
		imp->deadline_ms = now + imp->timeout_s * 1000;
		return DEST_PROGRESS;
	case PIPELINE_OP_SESSION_GET: {
		struct dest_value *v = &imp->values[op->number];
		const char *st = op->session.status;
		bool changed;

		if (op->err.cls != API_OK)
			return DEST_ERROR;
		changed = v->session_status == NULL || st == NULL ||
			  strcmp(v->session_status, st) != 0;
		if (imp->patch_resumed && st != NULL && strcmp(st, "Queued") == 0)
			return DEST_EXPIRED;	/* the PATCH did not go through: uploads are gone */
		if (changed) {
			if (store_remote_set(store, imp->case_id, STORE_REMOTE_SESSION, v->socket,
					     op->session.pk, op->session.api_url, st, NULL) < 0)
				return DEST_ERROR;
			(void)set_str(&v->session_status, st);
		}
		if (st != NULL && (strcmp(st, "Failed") == 0 || strcmp(st, "Cancelled") == 0)) {
			const char *em = op->session.error_message;

			return failure(imp, "the image import for socket '%s' failed: %s", v->socket,
				       em != NULL && em[0] ? em : "the platform gave no reason");
		}
		poll_later(imp, changed);
		if (changed && session_terminal(st))
			imp->next_poll_ms = now;
		return DEST_PROGRESS;
	}
	case PIPELINE_OP_ITEM_GET: {
		bool changed = false;
		bool all = true;
		const char *absent = NULL;

		if (op->err.cls != API_OK)
			return DEST_ERROR;
		imp->patch_resumed = false;
		for (size_t i = 0; i < imp->n_values; i++) {
			struct dest_value *v = &imp->values[i];

			if (!v->present && item_has(op->item_out.values, v->socket)) {
				v->present = true;
				changed = true;
			}
			if (!v->present) {
				all = false;
				if (absent == NULL)
					absent = v->socket;
			}
		}
		if (all) {
			if (store_remote_set(store, imp->case_id, item_kind(imp), "", imp->item_pk,
					     imp->item_url, "done", NULL) < 0)
				return DEST_ERROR;
			imp->phase = DEST_DONE;
			return DEST_FINISHED;
		}
		if (now >= imp->deadline_ms) {
			return failure(imp, "the value of socket '%s' did not appear on the %s within "
				       "%" PRId64 " s (the platform gives no error text for this "
				       "kind of import)", absent,
				       imp->dest->kind == CONFIG_DEST_READER_STUDY ? "display set" :
										     "archive item",
				       imp->timeout_s);
		}
		poll_later(imp, changed);
		return DEST_PROGRESS;
	}
	default:
		return DEST_ERROR;
	}
}

/* ---- worker side ---- */

static void
run_resolve(struct api *api, struct pipeline_op *op)
{
	if (op->algorithm) {
		op->rc = api_algorithm_get(api, op->slug, &op->alg, &op->err);
		op->alg_ok = op->rc == 0;
		if (op->alg_ok)
			op->err.cls = API_OK;
		return;
	}
	if (op->slug != NULL) {
		if (op->display_set)
			op->rc = api_reader_study_get(api, op->slug, &op->coll, &op->err);
		else
			op->rc = api_archive_get(api, op->slug, &op->coll, &op->err);
		if (op->rc < 0)
			return;
		op->coll_ok = true;
	}
	op->sockets = calloc(op->n_strs + 1, sizeof(*op->sockets));
	op->socket_found = calloc(op->n_strs + 1, sizeof(bool));
	if (op->sockets == NULL || op->socket_found == NULL) {
		op->rc = -ENOMEM;
		op->err.cls = API_RETRY;
		snprintf(op->err.message, sizeof(op->err.message), "out of memory");
		return;
	}
	for (size_t i = 0; i < op->n_strs; i++) {
		struct api_error e;
		int r = api_socket_get(api, op->strs[i], &op->sockets[i], &e);

		if (r == 0) {
			op->socket_found[i] = true;
		} else if (e.cls != API_GONE) {
			op->rc = r;
			op->err = e;
			return;
		}
		/* n_numbers counts the slugs answered (found or not). */
		op->n_numbers = i + 1;
	}
	op->err.cls = API_OK;
}

void
dest_op_run(struct api *api, struct pipeline_op *op)
{
	switch (op->kind) {
	case PIPELINE_OP_DEST_RESOLVE:
		run_resolve(api, op);
		break;
	case PIPELINE_OP_SESSION_CREATE:
		op->rc = api_session_create(api, (const char *const *)op->strs, op->n_strs,
					    &op->session, &op->err);
		break;
	case PIPELINE_OP_SESSION_GET:
		op->rc = api_session_get(api, op->url, &op->session, &op->err);
		break;
	case PIPELINE_OP_ITEM_CREATE:
		if (op->display_set)
			op->rc = api_display_set_create(api, op->parent, op->title, &op->item_out,
							&op->err);
		else
			op->rc = api_archive_item_create(api, op->parent, op->title, &op->item_out,
							 &op->err);
		break;
	case PIPELINE_OP_ITEM_FIND:
		if (op->display_set)
			op->rc = api_display_set_find(api, op->parent, op->title, &op->item_out,
						      &op->err);
		else
			op->rc = api_archive_item_find(api, op->parent, op->title, &op->item_out,
						       &op->err);
		break;
	case PIPELINE_OP_ITEM_PATCH:
		op->rc = api_item_set_values(api, op->url, op->json, &op->item_out, &op->err);
		break;
	case PIPELINE_OP_ITEM_GET:
		op->rc = api_item_get(api, op->url, &op->item_out, &op->err);
		break;
	case PIPELINE_OP_PING:
		op->rc = api_ping(api, &op->err);
		break;
	default:
		break;
	}
}
