/*
 * jobs.c: an algorithm job per case: inputs, creation, reconciliation, polling, outputs.
 *
 * DESIGN
 * Everything here runs on the main thread except jobs_op_run(), which a pool
 * worker calls with its own api handle, and which only fills the op's
 * outputs. The run is a small state machine (see jobs.h) whose facts live in
 * the store as remotes of the case, so a restarted daemon re-enters it from
 * there:
 *   session <socket>  recorded as soon as it is created (a session created but
 *                     not recorded stays Queued on the platform, consumed by
 *                     nothing: harmless);
 *   job ""            the intent (intent_only) is written before the POST, in
 *                     the transaction the pipeline commits before submitting
 *                     it; the answer (pk, api_url, status, JSON) after; every
 *                     change of status; the JSON of the finished job, from
 *                     which the outputs are planned again after a restart.
 *                     That JSON (job_json()) also keeps what only gcdrop
 *                     knows, under "gcdrop": when the job was submitted,
 *                     first seen running, first seen finished (the job API
 *                     has no timestamps, contract 5.4), and whether its
 *                     timeout was reported;
 *   outputs           one row per output socket (store_output_put), its path
 *                     once the file is in place (store_output_set_path).
 * An output whose recorded path exists is not downloaded again; the others
 * are rewritten (outputs.c replaces whatever a crash left), and job.json is
 * written last, so its presence means the folder is complete.
 *
 * A job not finished job_timeout after it was submitted is reported once
 * (JOBS_TIMEOUT) and then polled at the longest interval: the operator
 * decides (the platform ends every job within its own time limit, at most
 * 24 h, so this is a platform that lost track of it, not a job to start
 * again). The timer counts on the wall clock from the submission time kept
 * in the queue, so a restarted daemon neither starts it again nor reports
 * the same job twice; in memory it is a deadline on the monotonic clock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backoff.h"
#include "jobs.h"
#include "log.h"

#define MSG_NO_OBJECT "Invalid hyperlink - Object does not exist."
#define FIND_MISSES_MAX 5	/* a consumed session whose job cannot be found */
#define LIST_PAGES_MAX 100	/* jobs of an algorithm walked when reconciling */

static char *
xstrdup(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
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

static char *
msgf(const char *fmt, ...) GC_PRINTF(1, 2);

static char *
msgf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

char *
jobs_url_pk(const char *url)
{
	size_t len;
	const char *start;

	if (url == NULL)
		return NULL;
	len = strlen(url);
	while (len > 0 && url[len - 1] == '/')
		len--;
	start = url + len;
	while (start > url && start[-1] != '/')
		start--;
	if (start == url + len)
		return NULL;
	return strndup(start, (size_t)(url + len - start));
}

/* ---- mapping ---- */

static bool
has_static(const struct config_watch *w, const char *slug)
{
	for (size_t i = 0; i < w->n_values; i++)
		if (strcmp(w->values[i].socket, slug) == 0)
			return true;
	return false;
}

static bool
image_url_ok(const char *s)
{
	return (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0) &&
	       strstr(s, "/cases/images/") != NULL;
}

int
jobs_map(const struct scan_entry *entries, size_t n, const struct dest *d,
	 const struct config_watch *w, const struct casemap_reader *reader,
	 struct casemap_result *ret, char **reterr_msg)
{
	struct casemap_socket *socks;
	struct casemap_dest cd = {0};
	struct casemap_result res = {0};
	int r;

	if (!d->have_alg)
		return -EAGAIN;
	/*
	 * An Image socket with a static value takes an existing image: casemap
	 * only knows static values for Value sockets, so it is shown one.
	 */
	socks = calloc(d->n_sockets + 1, sizeof(*socks));
	if (socks == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < d->n_sockets; i++) {
		socks[i] = d->sockets[i];
		if (socks[i].super_kind == CASEMAP_IMAGE && has_static(w, socks[i].slug))
			socks[i].super_kind = CASEMAP_VALUE;
	}
	cd.kind = CONFIG_DEST_ALGORITHM;
	cd.slug = w->slug;
	cd.sockets = socks;
	cd.n_sockets = d->n_sockets;
	cd.interfaces = d->ifaces;
	cd.n_interfaces = d->n_ifaces;
	cd.socket = w->socket;
	cd.values = w->values;
	cd.n_values = w->n_values;
	r = casemap_map(entries, n, &cd, reader, &res, reterr_msg);
	if (r < 0)
		goto out;
	for (size_t v = 0; v < res.n; v++) {
		struct casemap_value *cv = &res.values[v];
		const struct casemap_socket *real = dest_socket(d, cv->socket);
		cJSON *j;

		if (real == NULL || real->super_kind != CASEMAP_IMAGE ||
		    cv->source != CASEMAP_SRC_JSON)
			continue;
		j = cJSON_Parse(cv->json);
		if (!cJSON_IsString(j) || !image_url_ok(j->valuestring)) {
			if (reterr_msg != NULL)
				*reterr_msg = msgf(
					"the static value for Image socket '%s' must be the api_url "
					"of an existing image (a JSON string such as "
					"\"https://.../api/v1/cases/images/<pk>/\"), not %s",
					cv->socket, cv->json);
			cJSON_Delete(j);
			casemap_result_clear(&res);
			r = -EINVAL;
			goto out;
		}
		cJSON_Delete(j);
		cv->super_kind = CASEMAP_IMAGE;
	}
	*ret = res;
	r = 0;
out:
	free(socks);
	return r;
}

/* ---- inputs ---- */

void
jobs_inputs_free(struct jobs_input *in, size_t n)
{
	if (in == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(in[i].socket);
		casemap_names_free(in[i].upload_urls, in[i].n_uploads);
		casemap_names_free(in[i].upload_names, in[i].n_uploads);
		free(in[i].json);
		free(in[i].session_url);
		free(in[i].session_status);
	}
	free(in);
}

int
jobs_inputs_build(const struct casemap_result *map, char *const *upload_urls,
		  char *const *upload_names, size_t n_uploads, struct jobs_input **ret)
{
	struct jobs_input *in = calloc(map->n + 1, sizeof(*in));
	size_t fi = 0;
	int r = -ENOMEM;

	if (in == NULL)
		return -ENOMEM;
	for (size_t v = 0; v < map->n; v++) {
		const struct casemap_value *cv = &map->values[v];
		struct jobs_input *ji = &in[v];

		if ((ji->socket = strdup(cv->socket)) == NULL)
			goto fail;
		if (cv->source == CASEMAP_SRC_JSON) {
			if (cv->super_kind == CASEMAP_IMAGE) {
				cJSON *j = cJSON_Parse(cv->json);

				if (!cJSON_IsString(j)) {
					cJSON_Delete(j);
					r = -EINVAL;
					goto fail;
				}
				ji->src = JOBS_SRC_IMAGE;
				ji->json = strdup(j->valuestring);
				cJSON_Delete(j);
			} else {
				ji->src = JOBS_SRC_VALUE;
				ji->json = strdup(cv->json);
			}
			if (ji->json == NULL)
				goto fail;
			continue;
		}
		if (fi + cv->n_files > n_uploads) {
			r = -EINVAL;
			goto fail;
		}
		if (cv->super_kind == CASEMAP_FILE)
			ji->src = JOBS_SRC_USER_UPLOAD;
		else if (cv->n_files <= JOBS_SESSION_MAX)
			ji->src = JOBS_SRC_SESSION;
		else
			ji->src = JOBS_SRC_USER_UPLOADS;
		ji->upload_urls = calloc(cv->n_files + 1, sizeof(char *));
		ji->upload_names = calloc(cv->n_files + 1, sizeof(char *));
		if (ji->upload_urls == NULL || ji->upload_names == NULL)
			goto fail;
		for (size_t k = 0; k < cv->n_files; k++, fi++) {
			const char *nm = upload_names != NULL ? upload_names[fi] : NULL;

			ji->upload_urls[k] = strdup(upload_urls[fi] != NULL ? upload_urls[fi] : "");
			ji->upload_names[k] = strdup(nm != NULL ? nm : "");
			ji->n_uploads++;
			if (ji->upload_urls[k] == NULL || ji->upload_names[k] == NULL)
				goto fail;
		}
	}
	*ret = in;
	return 0;
fail:
	jobs_inputs_free(in, map->n);
	return r;
}

cJSON *
jobs_inputs_json(const struct jobs_input *in, size_t n)
{
	static const enum api_value_src src_of[] = {
		[JOBS_SRC_SESSION] = API_VALUE_SESSION,
		[JOBS_SRC_USER_UPLOAD] = API_VALUE_USER_UPLOAD,
		[JOBS_SRC_USER_UPLOADS] = API_VALUE_USER_UPLOADS,
		[JOBS_SRC_VALUE] = API_VALUE_JSON,
		[JOBS_SRC_IMAGE] = API_VALUE_IMAGE,
	};
	cJSON *arr = cJSON_CreateArray();

	if (arr == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const struct jobs_input *ji = &in[i];
		const char *text = ji->src == JOBS_SRC_SESSION ? ji->session_url : ji->json;

		if (api_socket_value_add(arr, ji->socket, src_of[ji->src],
					 (const char *const *)ji->upload_urls, ji->n_uploads, text) < 0) {
			cJSON_Delete(arr);
			return NULL;
		}
	}
	return arr;
}

enum jobs_refusal
jobs_classify_create(const struct api_error *e)
{
	const char *m = e->message;

	switch (e->cls) {
	case API_OK:
	case API_RETRY:
		return JOBS_REFUSED_RETRY;
	case API_LIMIT:
		return JOBS_REFUSED_LIMIT;
	case API_AUTH:
		return JOBS_REFUSED_AUTH;
	case API_GONE:
	case API_FAIL:
		break;
	}
	if (strstr(m, JOBS_MSG_DUPLICATE) != NULL)
		return JOBS_REFUSED_DUPLICATE;
	if (strstr(m, MSG_NO_OBJECT) != NULL && strncmp(m, "algorithm:", 10) != 0)
		return JOBS_REFUSED_EXPIRED;
	if (strstr(m, "does not match any of the algorithm's interfaces") != NULL ||
	    strncmp(m, "inputs", 6) == 0)
		return JOBS_REFUSED_INPUTS;
	return JOBS_REFUSED_FAIL;
}

/* ---- the run ---- */

/* A time kept under "gcdrop" in the job's record: unix seconds, 0 when none. */
static int64_t
json_time(const cJSON *g, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(g, key);

	if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1e12)
		return 0;
	return (int64_t)v->valuedouble;
}

/*
 * The deadline of job_timeout on the monotonic clock (now_ms is
 * backoff_now_ms()), from the submission time on the wall clock.
 */
static int64_t
deadline_of(const struct jobs_run *run, int64_t now_ms)
{
	int64_t wall = (int64_t)time(NULL);
	int64_t since = run->submitted_s > 0 && run->submitted_s <= wall ?
			wall - run->submitted_s : 0;

	return now_ms + (run->o.timeout_s - since) * 1000;
}

static int
load_job(struct jobs_run *run, const struct store_remote *r)
{
	cJSON *j, *g;

	if (set_str(&run->job_pk, r->pk) < 0 || set_str(&run->job_url, r->url) < 0 ||
	    set_str(&run->job_status, r->status) < 0)
		return -ENOMEM;
	if (r->json == NULL)
		return 0;
	j = cJSON_Parse(r->json);
	if (j == NULL)
		return 0;
	cJSON_Delete(run->job_inputs);
	cJSON_Delete(run->job_outputs);
	run->job_inputs = cJSON_DetachItemFromObjectCaseSensitive(j, "inputs");
	run->job_outputs = cJSON_DetachItemFromObjectCaseSensitive(j, "outputs");
	if (set_str(&run->exec_duration, cJSON_GetStringValue(
			    cJSON_GetObjectItemCaseSensitive(j, "exec_duration"))) < 0 ||
	    set_str(&run->invoke_duration, cJSON_GetStringValue(
			    cJSON_GetObjectItemCaseSensitive(j, "invoke_duration"))) < 0) {
		cJSON_Delete(j);
		return -ENOMEM;
	}
	g = cJSON_GetObjectItemCaseSensitive(j, "gcdrop");
	run->submitted_s = json_time(g, "submitted");
	run->started_s = json_time(g, "started");
	run->finished_s = json_time(g, "finished");
	run->timed_out = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "timeout_reported"));
	cJSON_Delete(j);
	return 0;
}

static int
copy_opts(struct jobs_run *run, const struct jobs_opts *src)
{
	run->o = *src;
	run->o.case_dir = run->o.watch = run->o.case_name = run->o.fingerprint = NULL;
	run->case_dir = xstrdup(src->case_dir);
	run->watch = xstrdup(src->watch);
	run->case_name = xstrdup(src->case_name);
	run->fingerprint = xstrdup(src->fingerprint);
	if ((src->case_dir != NULL && run->case_dir == NULL) ||
	    (src->watch != NULL && run->watch == NULL) ||
	    (src->case_name != NULL && run->case_name == NULL) ||
	    (src->fingerprint != NULL && run->fingerprint == NULL))
		return -ENOMEM;
	return 0;
}

static void start_outputs(struct jobs_run *run, struct store *store);
static bool all_written(const struct jobs_run *run);
static int finish_outputs(struct jobs_run *run, struct api_error *reterr);

int
jobs_run_init(struct jobs_run *run, struct store *store, int64_t case_id, struct dest *dest,
	      const char *title, struct jobs_input **inputs, size_t n, const struct jobs_opts *o)
{
	struct store_remote r = {0};
	int rc;

	memset(run, 0, sizeof(*run));
	run->case_id = case_id;
	run->dest = dest;
	if (inputs != NULL) {
		run->inputs = *inputs;
		run->n_inputs = n;
		*inputs = NULL;
	}
	run->end_state = STORE_FAILED;
	rc = copy_opts(run, o);
	if (rc < 0)
		return rc;
	run->poll_delay_ms = run->o.poll_base_ms;
	run->title = xstrdup(title);
	if (title != NULL && run->title == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < run->n_inputs; i++) {
		struct jobs_input *ji = &run->inputs[i];

		if (ji->src != JOBS_SRC_SESSION)
			continue;
		rc = store_remote_get(store, case_id, STORE_REMOTE_SESSION, ji->socket, &r);
		if (rc == 0 && !r.intent_only && r.url != NULL &&
		    (set_str(&ji->session_url, r.url) < 0 ||
		     set_str(&ji->session_status, r.status) < 0)) {
			store_remote_clear(&r);
			return -ENOMEM;
		}
		store_remote_clear(&r);
	}
	run->phase = JOBS_SESSIONS;
	rc = store_remote_get(store, case_id, STORE_REMOTE_JOB, "", &r);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	if (r.intent_only || r.url == NULL) {
		/* The intent's time is when the lost POST was sent. */
		run->intent_only = true;
		run->submitted_s = r.updated;
		store_remote_clear(&r);
		return 0;
	}
	rc = load_job(run, &r);
	if (rc == 0 && run->submitted_s <= 0)
		run->submitted_s = r.updated;	/* a record from before the times were kept */
	store_remote_clear(&r);
	if (rc < 0)
		return rc;
	run->phase = JOBS_POLL;
	run->next_poll_ms = backoff_now_ms();
	run->deadline_ms = deadline_of(run, run->next_poll_ms);
	if (run->timed_out)
		run->poll_delay_ms = run->o.poll_cap_ms;
	if (run->job_status != NULL && strcmp(run->job_status, "Succeeded") == 0 &&
	    run->job_outputs != NULL)
		start_outputs(run, store);
	return 0;
}

void
jobs_run_done(struct jobs_run *run)
{
	jobs_inputs_free(run->inputs, run->n_inputs);
	free(run->title);
	free(run->case_dir);
	free(run->watch);
	free(run->case_name);
	free(run->fingerprint);
	free(run->find_image);
	free(run->job_pk);
	free(run->job_url);
	free(run->job_status);
	free(run->exec_duration);
	free(run->invoke_duration);
	cJSON_Delete(run->job_inputs);
	cJSON_Delete(run->job_outputs);
	store_remote_list_free(run->sessions, run->n_sessions);
	free(run->explain);
	outputs_items_free(run->items, run->n_items);
	free(run->written);
	free(run->writing);
	free(run->error);
	memset(run, 0, sizeof(*run));
}

static enum jobs_event
failure(struct jobs_run *run, enum store_state end, const char *fmt, ...) GC_PRINTF(3, 4);

static enum jobs_event
failure(struct jobs_run *run, enum store_state end, const char *fmt, ...)
{
	va_list ap;

	free(run->error);
	va_start(ap, fmt);
	if (vasprintf(&run->error, fmt, ap) < 0)
		run->error = NULL;
	va_end(ap);
	run->end_state = end;
	run->phase = JOBS_FAILED;
	return JOBS_FAILURE;
}

int64_t
jobs_run_wake(const struct jobs_run *run)
{
	if ((run->phase == JOBS_POLL || run->phase == JOBS_RECONCILE ||
	     run->phase == JOBS_FIND) && run->busy == 0)
		return run->next_poll_ms;
	return INT64_MAX;
}

static void
poll_later(struct jobs_run *run, bool changed)
{
	int64_t now = backoff_now_ms();

	if (changed)
		run->poll_delay_ms = run->o.poll_base_ms;
	run->next_poll_ms = now + run->poll_delay_ms;
	run->poll_delay_ms *= 2;
	if (run->poll_delay_ms > run->o.poll_cap_ms)
		run->poll_delay_ms = run->o.poll_cap_ms;
}

/* The first session input that has a session, or NULL. */
static struct jobs_input *
session_input(struct jobs_run *run)
{
	for (size_t i = 0; i < run->n_inputs; i++)
		if (run->inputs[i].src == JOBS_SRC_SESSION && run->inputs[i].session_url != NULL)
			return &run->inputs[i];
	return NULL;
}

static bool
only_values_and_images(const struct jobs_run *run)
{
	for (size_t i = 0; i < run->n_inputs; i++)
		if (run->inputs[i].src != JOBS_SRC_VALUE && run->inputs[i].src != JOBS_SRC_IMAGE)
			return false;
	return true;
}

static struct outputs_item *
item_copy(const struct outputs_item *it)
{
	struct outputs_item *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	*c = *it;
	c->socket = xstrdup(it->socket);
	c->kind = xstrdup(it->kind);
	c->relative_path = xstrdup(it->relative_path);
	c->value_json = xstrdup(it->value_json);
	c->url = xstrdup(it->url);
	if (c->socket == NULL || c->kind == NULL || c->relative_path == NULL ||
	    (it->value_json != NULL && c->value_json == NULL) ||
	    (it->url != NULL && c->url == NULL))
		return outputs_items_free(c, 1);
	return c;
}

/* Find the job: by the session's image, or among all jobs of the algorithm. */
static int
make_find(struct jobs_run *run, struct pipeline_op **ret)
{
	struct pipeline_op *op;

	if (run->dest == NULL || !run->dest->have_alg)
		return -EAGAIN;
	op = pipeline_op_new(run->find_image != NULL ? PIPELINE_OP_JOB_FIND :
			     PIPELINE_OP_JOB_LIST);
	if (op == NULL)
		return -ENOMEM;
	op->sub = run;
	if ((op->parent = strdup(run->dest->alg.pk)) == NULL ||
	    (run->find_image != NULL && (op->slug = strdup(run->find_image)) == NULL)) {
		pipeline_op_free(op);
		return -ENOMEM;
	}
	*ret = op;
	return 0;
}

int
jobs_run_next(struct jobs_run *run, struct store *store, int64_t now_ms,
	      struct pipeline_op **ret_op)
{
	struct pipeline_op *op = NULL;
	int r = -ENOMEM;

	*ret_op = NULL;
	if (run->phase == JOBS_OUTPUTS) {
		for (size_t i = 0; i < run->n_items; i++) {
			if (run->written[i] || run->writing[i])
				continue;
			op = pipeline_op_new(PIPELINE_OP_OUTPUT_WRITE);
			if (op == NULL)
				return -ENOMEM;
			op->sub = run;
			op->number = (int)i;
			op->oitem = item_copy(&run->items[i]);
			op->path = strdup(run->case_dir);
			if (op->oitem == NULL || op->path == NULL)
				goto fail;
			run->writing[i] = true;
			goto out;
		}
		if (run->busy == 0 && all_written(run)) {
			/* Everything is on disk (a restart after the downloads): job.json. */
			struct api_error e = {0};

			r = finish_outputs(run, &e);
			if (r < 0) {
				free(run->error);
				run->error = strdup(e.message);
				return r;
			}
			run->phase = JOBS_DONE;
		}
		return 0;
	}
	if (run->busy > 0)
		return 0;
	if (run->phase == JOBS_SESSIONS) {
		for (size_t i = 0; i < run->n_inputs; i++) {
			struct jobs_input *ji = &run->inputs[i];

			if (ji->src != JOBS_SRC_SESSION || ji->session_url != NULL)
				continue;
			op = pipeline_op_new(PIPELINE_OP_SESSION_CREATE);
			if (op == NULL)
				return -ENOMEM;
			op->sub = run;
			op->number = (int)i;
			op->strs = calloc(ji->n_uploads + 1, sizeof(char *));
			if (op->strs == NULL)
				goto fail;
			op->n_strs = ji->n_uploads;
			for (size_t k = 0; k < ji->n_uploads; k++)
				if ((op->strs[k] = strdup(ji->upload_urls[k])) == NULL)
					goto fail;
			goto out;
		}
		run->phase = run->intent_only ? JOBS_RECONCILE : JOBS_CREATE;
		run->next_poll_ms = now_ms;
	}
	if (run->phase == JOBS_RECONCILE) {
		struct jobs_input *si = session_input(run);

		if (now_ms < run->next_poll_ms)
			return 0;
		if (si == NULL) {
			/*
			 * No session: with file inputs look among the algorithm's jobs
			 * first; with values and images only, the duplicate refusal of a
			 * second POST is the hint.
			 */
			if (only_values_and_images(run)) {
				run->phase = JOBS_CREATE;
			} else {
				run->phase = JOBS_FIND;
				run->find_all = true;
				r = make_find(run, &op);
				if (r < 0)
					return r == -EAGAIN ? 0 : r;
				goto out;
			}
		} else {
			op = pipeline_op_new(PIPELINE_OP_SESSION_GET);
			if (op == NULL)
				return -ENOMEM;
			op->sub = run;
			op->number = (int)(si - run->inputs);
			if ((op->url = strdup(si->session_url)) == NULL)
				goto fail;
			goto out;
		}
	}
	if (run->phase == JOBS_FIND) {
		if (now_ms < run->next_poll_ms)
			return 0;
		r = make_find(run, &op);
		if (r < 0)
			return r == -EAGAIN ? 0 : r;
		goto out;
	}
	if (run->phase == JOBS_CREATE) {
		if (run->dest == NULL || !run->dest->have_alg)
			return 0;
		op = pipeline_op_new(PIPELINE_OP_JOB_CREATE);
		if (op == NULL)
			return -ENOMEM;
		op->sub = run;
		op->json = jobs_inputs_json(run->inputs, run->n_inputs);
		if (op->json == NULL || (op->url = strdup(run->dest->alg.api_url)) == NULL)
			goto fail;
		r = store_remote_intent(store, run->case_id, STORE_REMOTE_JOB, "", run->title);
		if (r < 0)
			goto fail;
		/*
		 * The job's timer starts here; a POST that may repeat a lost one
		 * (reconciliation, a transient refusal) keeps the earlier time.
		 */
		if (!run->intent_only || run->submitted_s <= 0)
			run->submitted_s = (int64_t)time(NULL);
		/* From now on the POST may have happened: reconcile before another. */
		run->intent_only = true;
		goto out;
	}
	if (run->phase == JOBS_POLL) {
		if (now_ms < run->next_poll_ms)
			return 0;
		op = pipeline_op_new(PIPELINE_OP_JOB_GET);
		if (op == NULL)
			return -ENOMEM;
		op->sub = run;
		if ((op->url = strdup(run->job_url)) == NULL)
			goto fail;
		goto out;
	}
	if (run->phase == JOBS_EXPLAIN) {
		while (run->explain_next < run->n_sessions &&
		       run->sessions[run->explain_next].url == NULL)
			run->explain_next++;
		if (run->explain_next >= run->n_sessions)
			return 0;
		op = pipeline_op_new(PIPELINE_OP_SESSION_GET);
		if (op == NULL)
			return -ENOMEM;
		op->sub = run;
		op->number = -1 - (int)run->explain_next;
		if ((op->url = strdup(run->sessions[run->explain_next].url)) == NULL)
			goto fail;
		goto out;
	}
	return 0;
out:
	run->busy++;
	*ret_op = op;
	return 0;
fail:
	pipeline_op_free(op);
	return r;
}

static bool
add_time_or_null(cJSON *o, const char *key, int64_t t)
{
	return (t > 0 ? cJSON_AddNumberToObject(o, key, (double)t) :
		cJSON_AddNullToObject(o, key)) != NULL;
}

static bool
add_str_or_null(cJSON *o, const char *key, const char *v)
{
	return (v != NULL ? cJSON_AddStringToObject(o, key, v) :
		cJSON_AddNullToObject(o, key)) != NULL;
}

/*
 * The job's JSON as recorded: what outputs and job.json are made from. The
 * platform's fields come from j when it is not NULL (inputs and outputs only
 * when it has them), else from the run; "gcdrop" holds the run's own facts.
 */
static char *
job_json(const struct jobs_run *run, const struct api_job *j)
{
	const cJSON *in = j != NULL && j->inputs != NULL ? j->inputs : run->job_inputs;
	const cJSON *out = j != NULL && j->outputs != NULL ? j->outputs : run->job_outputs;
	const char *st = j != NULL ? j->status : run->job_status;
	cJSON *o = cJSON_CreateObject(), *g = NULL;
	char *s = NULL;

	if (o == NULL)
		return NULL;
	if (cJSON_AddStringToObject(o, "pk", j != NULL ? j->pk : run->job_pk) != NULL &&
	    cJSON_AddStringToObject(o, "api_url", j != NULL ? j->api_url : run->job_url) != NULL &&
	    cJSON_AddStringToObject(o, "status", st != NULL ? st : "") != NULL &&
	    cJSON_AddItemToObject(o, "inputs", in != NULL ? cJSON_Duplicate(in, true) :
				  cJSON_CreateArray()) &&
	    cJSON_AddItemToObject(o, "outputs", out != NULL ? cJSON_Duplicate(out, true) :
				  cJSON_CreateArray()) &&
	    add_str_or_null(o, "exec_duration", j != NULL ? j->exec_duration :
			    run->exec_duration) &&
	    add_str_or_null(o, "invoke_duration", j != NULL ? j->invoke_duration :
			    run->invoke_duration) &&
	    (g = cJSON_AddObjectToObject(o, "gcdrop")) != NULL &&
	    add_time_or_null(g, "submitted", run->submitted_s) &&
	    add_time_or_null(g, "started", run->started_s) &&
	    add_time_or_null(g, "finished", run->finished_s) &&
	    cJSON_AddBoolToObject(g, "timeout_reported", run->timed_out) != NULL)
		s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

/* Rewrite the job's record from the run (its "gcdrop" facts changed). */
static int
save_job(struct jobs_run *run, struct store *store)
{
	char *js = job_json(run, NULL);
	int r;

	if (js == NULL)
		return -ENOMEM;
	r = store_remote_set(store, run->case_id, STORE_REMOTE_JOB, "", NULL, NULL, NULL, js);
	free(js);
	return r;
}

/* Record the job as the platform shows it now; the run takes its JSON. */
static int
record_job(struct jobs_run *run, struct store *store, struct api_job *j)
{
	int64_t now = (int64_t)time(NULL);
	int64_t started = run->started_s, finished = run->finished_s;
	char *js;
	int r;

	/* What gcdrop saw, and when (the platform does not say). */
	if (run->submitted_s <= 0)
		run->submitted_s = now;
	if (j->status != NULL && strcmp(j->status, "Validating inputs") != 0 &&
	    run->started_s <= 0)
		run->started_s = now;
	if (api_job_status_is_terminal(j->status) && run->finished_s <= 0)
		run->finished_s = now;
	js = job_json(run, j);
	if (js == NULL) {
		r = -ENOMEM;
		goto undo;
	}
	r = store_remote_set(store, run->case_id, STORE_REMOTE_JOB, "", j->pk, j->api_url,
			     j->status, js);
	free(js);
	if (r < 0)
		goto undo;
	if (set_str(&run->job_pk, j->pk) < 0 || set_str(&run->job_url, j->api_url) < 0 ||
	    set_str(&run->job_status, j->status) < 0 ||
	    set_str(&run->exec_duration, j->exec_duration) < 0 ||
	    set_str(&run->invoke_duration, j->invoke_duration) < 0)
		return -ENOMEM;
	if (j->inputs != NULL) {
		cJSON_Delete(run->job_inputs);
		run->job_inputs = j->inputs;
		j->inputs = NULL;
	}
	if (j->outputs != NULL) {
		cJSON_Delete(run->job_outputs);
		run->job_outputs = j->outputs;
		j->outputs = NULL;
	}
	run->intent_only = false;
	return 0;
undo:
	/* Not recorded: seen again at the next poll. */
	run->started_s = started;
	run->finished_s = finished;
	return r;
}

static char *
output_path(const struct jobs_run *run, const struct outputs_item *it)
{
	return msgf("%s/%s", run->case_dir, it->relative_path);
}

/* Succeeded: plan the outputs, record them, and see which are on disk already. */
static void
start_outputs(struct jobs_run *run, struct store *store)
{
	struct store_output *rows = NULL;
	size_t nr = 0;
	char *msg = NULL;
	int r;

	run->phase = JOBS_OUTPUTS;
	r = outputs_plan(run->job_outputs, &run->items, &run->n_items, &msg);
	if (r < 0) {
		(void)failure(run, STORE_FAILED, "the job succeeded but its outputs cannot be "
			      "used: %s", msg != NULL ? msg : strerror(-r));
		free(msg);
		return;
	}
	run->written = calloc(run->n_items + 1, sizeof(bool));
	run->writing = calloc(run->n_items + 1, sizeof(bool));
	if (run->written == NULL || run->writing == NULL) {
		(void)failure(run, STORE_FAILED, "out of memory");
		return;
	}
	if (store_output_list(store, run->case_id, &rows, &nr) < 0) {
		rows = NULL;
		nr = 0;
	}
	for (size_t i = 0; i < run->n_items; i++) {
		const struct outputs_item *it = &run->items[i];
		struct store_output o = {0};
		char sk[16];
		struct stat st;

		for (size_t k = 0; k < nr; k++)
			if (strcmp(rows[k].socket, it->socket) == 0 && rows[k].path != NULL &&
			    run->case_dir != NULL && lstat(rows[k].path, &st) == 0)
				run->written[i] = true;
		if (run->case_dir == NULL)
			run->written[i] = true;
		o.case_id = run->case_id;
		o.socket = it->socket;
		snprintf(sk, sizeof(sk), "%s", outputs_super_kind_name(it->super_kind));
		o.super_kind = sk;
		o.value_json = it->value_json;
		o.url = it->url;
		if (store_output_put(store, &o) < 0)
			log_debug("cannot record output '%s': %s", it->socket, store_errmsg(store));
	}
	store_output_list_free(rows, nr);
}

static bool
all_written(const struct jobs_run *run)
{
	for (size_t i = 0; i < run->n_items; i++)
		if (!run->written[i])
			return false;
	return true;
}

static int
finish_outputs(struct jobs_run *run, struct api_error *reterr)
{
	struct outputs_job oj = {0};

	if (run->case_dir == NULL)
		return 0;
	oj.pk = run->job_pk;
	oj.api_url = run->job_url;
	oj.status = run->job_status;
	oj.error = run->error;
	oj.created = run->submitted_s;
	oj.started = run->started_s;
	oj.finished = run->finished_s;
	oj.exec_duration = run->exec_duration;
	oj.invoke_duration = run->invoke_duration;
	oj.watch = run->watch;
	oj.case_name = run->case_name;
	oj.fingerprint = run->fingerprint;
	oj.inputs = run->job_inputs;
	return outputs_finish(run->case_dir, &oj, run->items, run->n_items, reterr);
}

int
jobs_write_failed_json(const struct jobs_run *run, struct api_error *reterr)
{
	struct jobs_run tmp;

	if (run->case_dir == NULL || run->job_pk == NULL)
		return 0;
	tmp = *run;
	tmp.items = NULL;
	tmp.n_items = 0;
	return finish_outputs(&tmp, reterr);
}

/* Does hyperlinked job input 'v' hold input ji? */
static bool
input_matches(const struct jobs_input *ji, const cJSON *v)
{
	const cJSON *itf = cJSON_GetObjectItemCaseSensitive(v, "interface");
	const cJSON *slug = cJSON_IsObject(itf) ? cJSON_GetObjectItemCaseSensitive(itf, "slug") :
						  itf;
	const cJSON *x;
	bool ok = false;

	if (!cJSON_IsString(slug) || strcmp(slug->valuestring, ji->socket) != 0)
		return false;
	switch (ji->src) {
	case JOBS_SRC_VALUE: {
		cJSON *mine = cJSON_Parse(ji->json);

		x = cJSON_GetObjectItemCaseSensitive(v, "value");
		ok = mine != NULL && x != NULL && cJSON_Compare(mine, x, true);
		cJSON_Delete(mine);
		return ok;
	}
	case JOBS_SRC_IMAGE: {
		char *a, *b;

		x = cJSON_GetObjectItemCaseSensitive(v, "image");
		if (!cJSON_IsString(x))
			return false;
		a = jobs_url_pk(x->valuestring);
		b = jobs_url_pk(ji->json);
		ok = a != NULL && b != NULL && strcmp(a, b) == 0;
		free(a);
		free(b);
		return ok;
	}
	case JOBS_SRC_USER_UPLOAD: {
		const char *base;

		x = cJSON_GetObjectItemCaseSensitive(v, "file");
		if (!cJSON_IsString(x) || ji->n_uploads != 1)
			return false;
		base = strrchr(x->valuestring, '/');
		base = base != NULL ? base + 1 : x->valuestring;
		return strcmp(base, ji->upload_names[0]) == 0;
	}
	default:
		/* Images from uploads: the find by image already chose the job. */
		return true;
	}
}

static bool
job_matches(const struct jobs_run *run, const struct api_job *j)
{
	if (cJSON_GetArraySize(j->inputs) != (int)run->n_inputs)
		return false;
	for (size_t i = 0; i < run->n_inputs; i++) {
		const cJSON *v;
		bool found = false;

		cJSON_ArrayForEach(v, j->inputs)
			found = found || input_matches(&run->inputs[i], v);
		if (!found)
			return false;
	}
	return true;
}

static enum jobs_event
on_job_known(struct jobs_run *run, struct store *store, struct api_job *j, int64_t now)
{
	if (record_job(run, store, j) < 0)
		return JOBS_ERROR;
	run->phase = JOBS_POLL;
	run->deadline_ms = deadline_of(run, now);
	run->poll_delay_ms = run->o.poll_base_ms;
	poll_later(run, true);
	return JOBS_SUBMITTED;
}

static enum jobs_event
on_create(struct jobs_run *run, struct store *store, struct pipeline_op *op, int64_t now)
{
	if (op->err.cls == API_OK)
		return on_job_known(run, store, &op->job, now);
	switch (jobs_classify_create(&op->err)) {
	case JOBS_REFUSED_RETRY:
	case JOBS_REFUSED_AUTH:
		/* The job may exist: look before the next POST. */
		run->phase = JOBS_SESSIONS;
		return JOBS_ERROR;
	case JOBS_REFUSED_LIMIT:
		/* A refusal creates nothing. */
		if (store_remote_delete(store, run->case_id, STORE_REMOTE_JOB, "") < 0)
			return JOBS_ERROR;
		run->intent_only = false;
		run->phase = JOBS_SESSIONS;
		return JOBS_LIMIT;
	case JOBS_REFUSED_DUPLICATE: {
		const struct jobs_input *img = NULL;

		for (size_t i = 0; i < run->n_inputs; i++)
			if (run->inputs[i].src == JOBS_SRC_IMAGE)
				img = &run->inputs[i];
		free(run->find_image);
		run->find_image = img != NULL ? jobs_url_pk(img->json) : NULL;
		run->find_all = run->find_image == NULL;
		run->find_misses = 0;
		run->phase = JOBS_FIND;
		run->next_poll_ms = now;
		log_debug("job of '%s': the platform has it already, finding it", run->title);
		return JOBS_PROGRESS;
	}
	case JOBS_REFUSED_EXPIRED:
		(void)store_remote_delete(store, run->case_id, STORE_REMOTE_JOB, "");
		run->intent_only = false;
		return JOBS_EXPIRED;
	case JOBS_REFUSED_INPUTS:
		(void)store_remote_delete(store, run->case_id, STORE_REMOTE_JOB, "");
		run->intent_only = false;
		return JOBS_REFUSED;
	case JOBS_REFUSED_FAIL:
		break;
	}
	(void)store_remote_delete(store, run->case_id, STORE_REMOTE_JOB, "");
	run->intent_only = false;
	return failure(run, STORE_FAILED, "the platform refused the job: %s", op->err.message);
}

/* Reconciliation: what the session says about a job created before a crash. */
static enum jobs_event
on_reconcile_session(struct jobs_run *run, struct store *store, struct pipeline_op *op,
		     int64_t now)
{
	struct jobs_input *ji = &run->inputs[op->number];
	const char *st = op->session.status != NULL ? op->session.status : "";

	if (op->err.cls == API_GONE) {
		/* The session is gone: no job can have it; start over with new ones. */
		(void)store_remote_delete(store, run->case_id, STORE_REMOTE_JOB, "");
		run->intent_only = false;
		return JOBS_EXPIRED;
	}
	if (op->err.cls != API_OK)
		return JOBS_ERROR;
	if (strcmp(st, "Queued") == 0) {
		log_debug("job of '%s': its session is still Queued, no job was created",
			  run->title);
		run->phase = JOBS_CREATE;
		return JOBS_PROGRESS;
	}
	if (strcmp(st, "Failed") == 0 || strcmp(st, "Cancelled") == 0) {
		const char *em = op->session.error_message;

		return failure(run, STORE_CANCELLED, "the job was cancelled: the image import for "
			       "socket '%s' failed: %s", ji->socket,
			       em != NULL && em[0] ? em : "the platform gave no reason");
	}
	if (strcmp(st, "Succeeded") == 0 && op->session.n_images > 0) {
		free(run->find_image);
		run->find_image = jobs_url_pk(op->session.image_set[0]);
		if (run->find_image == NULL)
			return JOBS_ERROR;
		run->find_all = false;
		run->find_misses = 0;
		run->phase = JOBS_FIND;
		run->next_poll_ms = now;
		return JOBS_PROGRESS;
	}
	/* Re-Queued / Started: a job consumed it; its image is being built. */
	poll_later(run, false);
	return JOBS_PROGRESS;
}

static enum jobs_event
on_find(struct jobs_run *run, struct store *store, struct pipeline_op *op, int64_t now)
{
	struct api_job *hit = NULL;

	if (op->err.cls != API_OK && op->err.cls != API_GONE)
		return JOBS_ERROR;
	for (size_t i = 0; i < op->n_jobs && hit == NULL; i++)
		if (op->kind == PIPELINE_OP_JOB_FIND || job_matches(run, &op->jobs[i]))
			hit = &op->jobs[i];
	if (hit != NULL) {
		log_debug("job of '%s': found %s, created before", run->title, hit->api_url);
		if (hit->api_url == NULL)
			return JOBS_ERROR;
		return on_job_known(run, store, hit, now);
	}
	if (run->find_all && !only_values_and_images(run)) {
		/*
		 * File inputs, no job with them: none was created, unless a job
		 * is still validating its inputs. The platform attaches a file
		 * input only once its import is done, so until then the lost job
		 * lists fewer inputs than the case has and matches nothing, and a
		 * second POST would not be refused (the duplicate check needs
		 * every input to exist): look again once it has validated.
		 */
		for (size_t i = 0; i < op->n_jobs; i++)
			if (op->jobs[i].status != NULL &&
			    strcmp(op->jobs[i].status, "Validating inputs") == 0) {
				log_debug("job of '%s': a job of the algorithm is still validating "
					  "its inputs, looking again before creating one",
					  run->title);
				poll_later(run, false);
				return JOBS_PROGRESS;
			}
		run->phase = JOBS_CREATE;
		return JOBS_PROGRESS;
	}
	if (++run->find_misses >= FIND_MISSES_MAX)
		return failure(run, STORE_FAILED, "the platform says a job for these inputs "
			       "exists, but it cannot be found among the algorithm's jobs; check "
			       "the platform, then `gcdrop retry` the case");
	poll_later(run, false);
	return JOBS_PROGRESS;
}

static enum jobs_event
on_poll(struct jobs_run *run, struct store *store, struct pipeline_op *op, int64_t now)
{
	bool changed;
	const char *st;

	if (op->err.cls != API_OK)
		return JOBS_ERROR;
	st = op->job.status != NULL ? op->job.status : "";
	changed = run->job_status == NULL || strcmp(run->job_status, st) != 0;
	if (changed || api_job_status_is_terminal(st)) {
		if (record_job(run, store, &op->job) < 0)
			return JOBS_ERROR;
	}
	if (strcmp(st, "Succeeded") == 0) {
		start_outputs(run, store);
		return run->phase == JOBS_FAILED ? JOBS_FAILURE : JOBS_RUNNING;
	}
	if (strcmp(st, "Failed") == 0 || strcmp(st, "Cancelled") == 0) {
		run->end_state = strcmp(st, "Failed") == 0 ? STORE_FAILED : STORE_CANCELLED;
		store_remote_list_free(run->sessions, run->n_sessions);
		run->sessions = NULL;
		run->n_sessions = 0;
		if (store_remote_list(store, run->case_id, &run->sessions, &run->n_sessions) < 0) {
			run->sessions = NULL;
			run->n_sessions = 0;
		}
		for (size_t i = 0; i < run->n_sessions; i++)
			if (run->sessions[i].kind != STORE_REMOTE_SESSION) {
				free(run->sessions[i].url);
				run->sessions[i].url = NULL;
			}
		run->explain_next = 0;
		run->phase = JOBS_EXPLAIN;
		return JOBS_RUNNING;
	}
	poll_later(run, changed);
	if (!run->timed_out && now >= run->deadline_ms) {
		run->timed_out = true;
		run->next_poll_ms = now + run->o.poll_cap_ms;
		run->poll_delay_ms = run->o.poll_cap_ms;
		/* Reported once per job, also across restarts. */
		if (save_job(run, store) < 0)
			log_debug("job of '%s': cannot record that its timeout was reported: %s",
				  run->title, store_errmsg(store));
		return JOBS_TIMEOUT;
	}
	if (strcmp(st, "Validating inputs") != 0)
		return JOBS_RUNNING;
	return JOBS_PROGRESS;
}

/* EXPLAIN is over: the case's error says what is known. */
static enum jobs_event
explain_end(struct jobs_run *run)
{
	const char *how = run->end_state == STORE_CANCELLED ? "was cancelled" : "failed";

	if (run->explain != NULL)
		return failure(run, run->end_state, "the job %s (%s): %s", how,
			       run->job_status, run->explain);
	return failure(run, run->end_state, "the job %s (status %s; the platform gives no error "
		       "text for jobs%s)", how, run->job_status,
		       run->end_state == STORE_CANCELLED ? ": an input was probably refused" : "");
}

enum jobs_event
jobs_run_on_done(struct jobs_run *run, struct store *store, struct pipeline_op *op)
{
	int64_t now = backoff_now_ms();

	if (run->busy > 0)
		run->busy--;
	if (op->kind == PIPELINE_OP_OUTPUT_WRITE) {
		size_t i = (size_t)op->number;
		char *path;

		run->writing[i] = false;
		if (op->cancelled)
			return JOBS_PROGRESS;
		if (op->err.cls != API_OK)
			return JOBS_ERROR;
		path = output_path(run, &run->items[i]);
		if (path == NULL || store_output_set_path(store, run->case_id, run->items[i].socket,
							  path) < 0) {
			free(path);
			op->err.cls = API_RETRY;
			snprintf(op->err.message, sizeof(op->err.message),
				 "cannot record an output in the queue");
			return JOBS_ERROR;
		}
		free(path);
		run->written[i] = true;
		if (!all_written(run))
			return JOBS_PROGRESS;
		for (size_t k = 0; k < run->n_items; k++)
			if (run->writing[k])
				return JOBS_PROGRESS;
		if (finish_outputs(run, &op->err) < 0)
			return JOBS_ERROR;
		run->phase = JOBS_DONE;
		return JOBS_FINISHED;
	}
	if (op->cancelled)
		return JOBS_PROGRESS;
	switch (op->kind) {
	case PIPELINE_OP_SESSION_CREATE: {
		struct jobs_input *ji = &run->inputs[op->number];

		if (op->err.cls == API_FAIL && strstr(op->err.message, MSG_NO_OBJECT) != NULL)
			return JOBS_EXPIRED;
		if (op->err.cls != API_OK)
			return JOBS_ERROR;
		if (store_remote_set(store, run->case_id, STORE_REMOTE_SESSION, ji->socket,
				     op->session.pk, op->session.api_url, op->session.status,
				     NULL) < 0)
			return JOBS_ERROR;
		if (set_str(&ji->session_url, op->session.api_url) < 0 ||
		    set_str(&ji->session_status, op->session.status) < 0)
			return JOBS_ERROR;
		return JOBS_PROGRESS;
	}
	case PIPELINE_OP_SESSION_GET:
		if (op->number >= 0)
			return on_reconcile_session(run, store, op, now);
		if (op->err.cls != API_OK && op->err.cls != API_GONE)
			return JOBS_ERROR;
		if (op->err.cls == API_OK && op->session.status != NULL &&
		    (strcmp(op->session.status, "Failed") == 0 ||
		     strcmp(op->session.status, "Cancelled") == 0)) {
			const struct store_remote *sr = &run->sessions[run->explain_next];
			const char *em = op->session.error_message;
			char *m = msgf("%s%sthe image import for socket '%s' failed: %s",
				       run->explain != NULL ? run->explain : "",
				       run->explain != NULL ? "; " : "", sr->key,
				       em != NULL && em[0] ? em : "no reason given");

			if (m != NULL) {
				free(run->explain);
				run->explain = m;
			}
		}
		run->explain_next++;
		while (run->explain_next < run->n_sessions &&
		       run->sessions[run->explain_next].url == NULL)
			run->explain_next++;
		if (run->explain_next >= run->n_sessions)
			return explain_end(run);
		return JOBS_PROGRESS;
	case PIPELINE_OP_JOB_CREATE:
		return on_create(run, store, op, now);
	case PIPELINE_OP_JOB_FIND:
	case PIPELINE_OP_JOB_LIST:
		return on_find(run, store, op, now);
	case PIPELINE_OP_JOB_GET:
		return on_poll(run, store, op, now);
	default:
		return JOBS_ERROR;
	}
}

/* ---- worker side ---- */

/* Every job of an algorithm (all pages), for reconciling jobs without a session. */
static int
list_jobs(struct api *api, const char *alg_pk, struct api_job **ret, size_t *ret_n,
	  struct api_error *reterr)
{
	struct api_job *jobs = NULL;
	size_t n = 0;
	char *url = NULL;
	int r = 0;

	if (asprintf(&url, "%salgorithms/jobs/?algorithm_image__algorithm=%s&offset=0&limit=100",
		     api_root(api), alg_pk) < 0)
		return -ENOMEM;
	for (int page = 0; url != NULL && page < LIST_PAGES_MAX; page++) {
		struct http_req req = {.method = HTTP_GET, .url = url};
		struct http_resp resp = {0};
		struct http_error herr = {0};
		cJSON *root, *res, *o, *next;

		r = http_request(api_http(api), &req, &resp, &herr);
		api_classify(r, &herr, r == 0 ? &resp : NULL, reterr);
		if (reterr->cls != API_OK) {
			http_resp_done(&resp);
			r = r < 0 ? r : -EIO;
			goto out;
		}
		root = cJSON_Parse(resp.body);
		http_resp_done(&resp);
		res = cJSON_GetObjectItemCaseSensitive(root, "results");
		cJSON_ArrayForEach(o, res) {
			const cJSON *pk = cJSON_GetObjectItemCaseSensitive(o, "pk");
			const cJSON *au = cJSON_GetObjectItemCaseSensitive(o, "api_url");
			const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "status");
			struct api_job *g = realloc(jobs, (n + 1) * sizeof(*g));

			if (g == NULL) {
				cJSON_Delete(root);
				r = -ENOMEM;
				goto out;
			}
			jobs = g;
			memset(&jobs[n], 0, sizeof(jobs[n]));
			jobs[n].pk = xstrdup(cJSON_GetStringValue(pk));
			jobs[n].api_url = xstrdup(cJSON_GetStringValue(au));
			jobs[n].status = xstrdup(cJSON_GetStringValue(st));
			jobs[n].inputs = cJSON_DetachItemFromObjectCaseSensitive(o, "inputs");
			jobs[n].outputs = cJSON_DetachItemFromObjectCaseSensitive(o, "outputs");
			n++;
		}
		next = cJSON_GetObjectItemCaseSensitive(root, "next");
		free(url);
		url = cJSON_IsString(next) ? strdup(next->valuestring) : NULL;
		cJSON_Delete(root);
	}
	r = 0;
	*ret = jobs;
	*ret_n = n;
	jobs = NULL;
	n = 0;
out:
	free(url);
	api_jobs_free(jobs, n);
	return r;
}

void
jobs_op_run(struct api *api, struct pipeline_op *op)
{
	switch (op->kind) {
	case PIPELINE_OP_JOB_CREATE:
		op->rc = api_job_create(api, op->url, op->json, &op->job, &op->err);
		break;
	case PIPELINE_OP_JOB_GET:
		op->rc = api_job_get(api, op->url, &op->job, &op->err);
		break;
	case PIPELINE_OP_JOB_FIND:
		op->rc = api_jobs_find_by_input_image(api, op->parent, op->slug, &op->jobs,
						      &op->n_jobs, &op->err);
		if (op->rc == -ENOENT) {
			op->rc = 0;
			op->err.cls = API_OK;
		}
		break;
	case PIPELINE_OP_JOB_LIST:
		op->err.cls = API_OK;
		op->rc = list_jobs(api, op->parent, &op->jobs, &op->n_jobs, &op->err);
		break;
	case PIPELINE_OP_OUTPUT_WRITE:
		op->rc = outputs_write(api, op->path, op->oitem, NULL, &op->bytes, &op->err);
		break;
	default:
		break;
	}
}
