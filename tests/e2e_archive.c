/*
 * e2e_archive.c: archive and reader-study watches end to end, with the real `gcdrop run`.
 *
 * Property proved by the suite: a folder dropped into an archive watch ends as
 * exactly one archive item (a reader-study watch: one display set) with its
 * values, every file byte-identical on the platform, through the real protocol
 * over HTTPS, and that stays true when the platform fails (20 cases under 5xx,
 * 429 with Retry-After and cut connections; a failed import) and when the
 * daemon is killed with SIGKILL mid-upload (the parts storage acknowledged
 * before the kill are never sent again: the emulator counts the PUTs of every
 * part) or right after the item was created. The numbers (parts re-sent,
 * requests, seconds) are printed as "e2e_archive ..." lines.
 *
 * Each test starts the emulator (tests/fakegc, HTTPS with a throw-away CA,
 * ca_file in the configuration), writes a configuration with an archive watch
 * "arch" (move to done_dir, receipts in results_dir) and a reader-study watch
 * "study" (keep), runs the daemon, drops cases, and reads the queue through
 * `gcdrop status --json` and the platform through the emulator's state.
 * GCDROP_PART_SIZE makes parts small (64 KiB) so that a few MiB span many
 * parts. Waiting is always "until condition or deadline".
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "fakegc-client.h"
#include "sha256.h"
#include "testutil.h"

#define WAIT_MS 60000

static const char MHA_HEAD[] = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 1\n"
			       "ElementSpacing = 1 1 1\nElementType = MET_UCHAR\n"
			       "ElementDataFile = LOCAL\n";

static struct fakegc *fg;
static char *dir, *conf, *log_path, *arch, *study;
static pid_t pid = -1;

static char *
bin(void)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "%s", tu_gcdrop_bin());
	return buf;
}

static void
setup_faults(const char *faults)
{
	struct fakegc_opts o = {.tls = true, .tick = 0.05, .min_part_size = 1, .faults = faults};
	char *tok, *text;

	dir = tu_mkdtemp("e2e_archive");
	ck_assert_int_eq(fakegc_start(&o, &fg), 0);
	arch = tu_strdupf("%s/in-arch", dir);
	study = tu_strdupf("%s/in-study", dir);
	ck_assert_int_eq(mkdir(arch, 0755), 0);
	ck_assert_int_eq(mkdir(study, 0755), 0);
	tok = tu_strdupf("%s/state", dir);
	ck_assert_int_eq(mkdir(tok, 0700), 0);
	free(tok);
	tok = tu_strdupf("%s/token", dir);
	tu_write_file(tok, fakegc_token(fg), -1, 0600);
	conf = tu_strdupf("%s/gcdrop.conf", dir);
	log_path = tu_strdupf("%s/daemon.log", dir);
	text = tu_strdupf(
		"api_url = \"%s\";\ntoken_file = \"%s\";\nca_file = \"%s\";\n"
		"state_dir = \"%s/state\";\nworkers = 4;\nmax_attempts = 6;\n"
		"min_free_space = \"1M\";\nlog_level = \"info\";\n"
		"watches = (\n"
		" { name = \"arch\"; path = \"%s\"; archive = \"demo-archive\"; settle_seconds = 1;\n"
		"   results_dir = \"%s/results\"; on_success = \"move\"; done_dir = \"%s/done\"; },\n"
		" { name = \"study\"; path = \"%s\"; reader_study = \"demo-reader-study\";\n"
		"   settle_seconds = 1; }\n);\n",
		fakegc_api_url(fg), tok, fakegc_ca_file(fg), dir, arch, dir, dir, study);
	tu_write_file(conf, text, -1, 0644);
	free(text);
	free(tok);
}

static void
setup(void)
{
	setup_faults(NULL);
}

static void
start_daemon(void)
{
	char *argv[] = {bin(), "run", "-c", conf, NULL};
	char *env[] = {"GCDROP_PART_SIZE=65536", NULL};

	pid = tu_spawn(argv, env, log_path);
	ck_assert_int_gt(pid, 0);
}

static int
stop_daemon(int sig)
{
	int st = tu_stop(pid, sig, 15000);

	pid = -1;
	return st;
}

static void
teardown(void)
{
	if (pid > 0)
		stop_daemon(SIGKILL);
	fakegc_stop(fg);
	tu_rmtree(dir);
	free(dir);
	free(conf);
	free(log_path);
	free(arch);
	free(study);
}

static cJSON *
status(void)
{
	char *argv[] = {bin(), "status", "-c", conf, "--json", NULL};
	char *out = NULL;
	cJSON *j;
	int rc = tu_run(argv, NULL, 10000, &out, NULL);

	ck_assert_int_eq(rc, 0);
	j = cJSON_Parse(out);
	free(out);
	ck_assert_ptr_nonnull(j);
	return j;
}

static cJSON *
find_case(cJSON *root, const char *name)
{
	cJSON *c;

	cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
		const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(c, "name"));

		if (n != NULL && strcmp(n, name) == 0)
			return c;
	}
	return NULL;
}

struct want {
	const char *const *names;
	const char *state;
};

static bool
all_in_state(void *ud)
{
	const struct want *w = ud;
	cJSON *root = status();
	bool ok = true;

	for (const char *const *n = w->names; *n != NULL; n++) {
		cJSON *c = find_case(root, *n);
		const char *st = c ? cJSON_GetStringValue(cJSON_GetObjectItem(c, "state")) : NULL;

		ok = ok && st != NULL && strcmp(st, w->state) == 0;
	}
	cJSON_Delete(root);
	return ok;
}

static void
wait_state(const char *const *names, const char *state, int timeout_ms)
{
	struct want w = {names, state};
	char *log;

	if (tu_wait_until(all_in_state, &w, timeout_ms))
		return;
	log = tu_read_file(log_path, NULL);
	ck_abort_msg("cases not %s in time; daemon log:\n%s", state, log ? log : "");
}

static void
write_mha(const char *path, size_t size, unsigned seed)
{
	size_t head = strlen(MHA_HEAD);
	char *data = malloc(size + head + 1);

	memcpy(data, MHA_HEAD, head);
	for (size_t i = head; i < size + head; i++) {
		seed = seed * 1103515245 + 12345;
		data[i] = (char)(seed >> 16);
	}
	tu_write_file(path, data, (ssize_t)(size + head), 0644);
	free(data);
}

/*
 * Build a case in a staging folder and move it into the watch folder at once
 * (as scanners do). Returns the sha256 of its first file in ret_sha.
 */
static void
drop_dir_case(const char *watchdir, const char *name, int n_files, size_t size, const char *ext,
	      char ret_sha[SHA256_HEX_SIZE])
{
	char *stage = tu_strdupf("%s/stage-%s", dir, name);
	char *dst = tu_strdupf("%s/%s", watchdir, name);

	ck_assert_int_eq(mkdir(stage, 0755), 0);
	for (int i = 0; i < n_files; i++) {
		char *f = tu_strdupf("%s/f%03d%s", stage, i, ext);

		if (strcmp(ext, ".mha") == 0)
			write_mha(f, size, (unsigned)i + 1);
		else
			tu_write_file(f, "DICM-like", -1, 0644);
		if (i == 0 && ret_sha != NULL)
			ck_assert_int_eq(sha256_file(AT_FDCWD, f, ret_sha), 0);
		free(f);
	}
	ck_assert_int_eq(rename(stage, dst), 0);
	free(stage);
	free(dst);
}

static int
array_size(cJSON *st, const char *key)
{
	return cJSON_GetArraySize(cJSON_GetObjectItem(st, key));
}

static bool
upload_with_sha(cJSON *st, const char *sha)
{
	cJSON *u;

	cJSON_ArrayForEach(u, cJSON_GetObjectItem(st, "uploads")) {
		const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(u, "sha256"));

		if (s != NULL && strcmp(s, sha) == 0)
			return true;
	}
	return false;
}

static int
total_requests(cJSON *st)
{
	cJSON *x;
	int n = 0;

	cJSON_ArrayForEach(x, cJSON_GetObjectItem(st, "requests"))
		if (strstr(x->string, "__fakegc__") == NULL)
			n += x->valueint;
	return n;
}

static bool
log_has(const char *s)
{
	char *log = tu_read_file(log_path, NULL);
	bool ok = log != NULL && strstr(log, s) != NULL;

	free(log);
	return ok;
}

START_TEST(test_cases_become_items)
{
	/*
	 * Property: two archive cases (2 images of several parts; 300 DICOM-like files)
	 * and one reader-study case end succeeded, as exactly 2 items and 1 display set,
	 * byte-identical, the token never sent to storage, within a request bound.
	 */
	static const char *const names[] = {"p1", "dcm300", "one.mha", NULL};
	char sha1[SHA256_HEX_SIZE], sha3[SHA256_HEX_SIZE];
	cJSON *st, *root, *c, *remote;
	char *f;
	int req;

	start_daemon();
	{
		/* Entries named after sockets: an image of 6 parts and a Value socket's JSON. */
		char *stage = tu_strdupf("%s/stage-p1", dir), *dst = tu_strdupf("%s/p1", arch);
		char *img = tu_strdupf("%s/generic-medical-image.mha", stage);
		char *js = tu_strdupf("%s/lung-volume.json", stage);

		ck_assert_int_eq(mkdir(stage, 0755), 0);
		write_mha(img, 5 * 65536 + 100, 1);
		ck_assert_int_eq(sha256_file(AT_FDCWD, img, sha1), 0);
		tu_write_file(js, "1.5", -1, 0644);
		ck_assert_int_eq(rename(stage, dst), 0);
		free(stage);
		free(dst);
		free(img);
		free(js);
	}
	drop_dir_case(arch, "dcm300", 300, 0, ".dcm", NULL);
	f = tu_strdupf("%s/stage-one.mha", dir);
	write_mha(f, 3000, 42);
	ck_assert_int_eq(sha256_file(AT_FDCWD, f, sha3), 0);
	{
		char *dst = tu_strdupf("%s/one.mha", study);

		ck_assert_int_eq(rename(f, dst), 0);
		free(dst);
	}
	free(f);
	wait_state(names, "succeeded", 120000);

	st = fakegc_state(fg);
	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(array_size(st, "archive_items"), 2);
	ck_assert_int_eq(array_size(st, "display_sets"), 1);
	ck_assert_int_eq(array_size(st, "uploads"), 1 + 300 + 1);
	ck_assert(upload_with_sha(st, sha1));
	ck_assert(upload_with_sha(st, sha3));
	ck_assert_int_eq(array_size(st, "leaks"), 0);
	/*
	 * Request bound: per file create + presign + PUTs + complete; per case a
	 * session, item create, PATCH and a few polls; per watch the lookups.
	 * p1: 1 file x (1 + 1 + 6 + 1) = 9; dcm300: 300 x 4 = 1200; one.mha: 4;
	 * plus at most 12 per case and 8 per watch.
	 */
	req = total_requests(st);
	fprintf(stderr, "requests for 3 cases (302 files): %d\n", req);
	ck_assert_msg(req <= 9 + 1200 + 4 + 3 * 12 + 2 * 8, "%d requests", req);
	cJSON_Delete(st);

	root = status();
	c = find_case(root, "p1");
	remote = cJSON_GetObjectItem(c, "remote");
	ck_assert_ptr_nonnull(cJSON_GetStringValue(cJSON_GetObjectItem(remote, "archive_item")));
	c = find_case(root, "one.mha");
	remote = cJSON_GetObjectItem(c, "remote");
	ck_assert_ptr_nonnull(cJSON_GetStringValue(cJSON_GetObjectItem(remote, "display_set")));
	cJSON_Delete(root);

	/* on_success = move, receipt in results_dir; the study case is kept. */
	f = tu_strdupf("%s/done/p1/generic-medical-image.mha", dir);
	ck_assert_int_eq(access(f, F_OK), 0);
	free(f);
	f = tu_strdupf("%s/results/p1/gcdrop-receipt.json", dir);
	ck_assert_int_eq(access(f, F_OK), 0);
	free(f);
	f = tu_strdupf("%s/one.mha", study);
	ck_assert_int_eq(access(f, F_OK), 0);
	free(f);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

START_TEST(test_import_failure)
{
	/* Property: an import the platform fails ends failed with its message, in status and log. */
	static const char *const names[] = {"broken", NULL};
	cJSON *root, *c;
	const char *err;

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"imports\": [{\"count\": 3, \"filename\": "
					   "\"f000\", \"error\": \"The uploaded images were too "
					   "large to process\"}], \"limits\": {\"min_part_size\": 1}}"),
			 0);
	start_daemon();
	drop_dir_case(arch, "broken", 1, 1000, ".mha", NULL);
	wait_state(names, "failed", WAIT_MS);
	root = status();
	c = find_case(root, "broken");
	err = cJSON_GetStringValue(cJSON_GetObjectItem(c, "error"));
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, "The uploaded images were too large to process"));
	cJSON_Delete(root);
	ck_assert(log_has("The uploaded images were too large to process"));
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

/* A number member of a cJSON object, or 0. */
static long
num(const cJSON *o, const char *key)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsNumber(x) ? (long)x->valuedouble : 0;
}

/* Have at least *ud part PUTs been acknowledged by storage? */
static bool
acks_seen(void *ud)
{
	cJSON *p = fakegc_parts(fg);
	bool ok = p != NULL && num(p, "acks") >= *(long *)ud;

	cJSON_Delete(p);
	return ok;
}

#define KILL_WORKERS 4		/* workers in the configuration of setup_faults() */
#define KILL_PARTS 200		/* parts of 64 KiB of the file */

START_TEST(test_kill_mid_upload)
{
	/*
	 * Property: SIGKILL mid-upload, restart: the upload resumes. Every part
	 * storage had acknowledged before the kill is never sent again (the
	 * restarted daemon asks the platform with list-parts); only the parts in
	 * flight at the kill (at most `workers`) may be sent twice. One upload, one
	 * item, identical bytes.
	 *
	 * Storage answers each part PUT 0.25 s late, so 4 workers send about 16
	 * parts a second: the kill comes when at least 12 of the 200 parts are
	 * acknowledged, about 12 s before the last could be (a margin for a loaded
	 * machine). After the kill the delay is lifted so that the rest goes fast.
	 */
	static const char *const names[] = {"big", NULL};
	char sha[SHA256_HEX_SIZE];
	long want = 12, acked_at_kill, resent = 0, req_before, req_after;
	long long t0 = tu_now_ms();
	cJSON *st, *before, *after, *ub, *ua, *x;
	char *upk;

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"route\": \"s3-put\", "
					   "\"action\": \"latency\", \"latency\": 0.25}],"
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	start_daemon();
	drop_dir_case(arch, "big", 1, KILL_PARTS * 65536 - strlen(MHA_HEAD), ".mha", sha);
	ck_assert(tu_wait_until(acks_seen, &want, WAIT_MS));
	stop_daemon(SIGKILL);

	/* What storage holds once the daemon is gone: the kill came mid-upload. */
	before = fakegc_parts(fg);
	ck_assert_ptr_nonnull(before);
	st = fakegc_state(fg);
	ck_assert_int_eq(array_size(st, "uploads"), 1);
	upk = strdup(cJSON_GetStringValue(
	    cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(st, "uploads"), 0), "pk")));
	ub = cJSON_GetObjectItem(cJSON_GetObjectItem(before, "uploads"), upk);
	acked_at_kill = cJSON_GetArraySize(cJSON_GetObjectItem(ub, "acks"));
	ck_assert_int_ge(acked_at_kill, want);
	ck_assert_msg(acked_at_kill < KILL_PARTS, "the upload ended before the kill");
	req_before = total_requests(st);
	cJSON_Delete(st);

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"limits\": {\"min_part_size\": 1}}"), 0);
	start_daemon();
	wait_state(names, "succeeded", WAIT_MS);
	st = fakegc_state(fg);
	ck_assert_int_eq(array_size(st, "uploads"), 1);
	ck_assert(upload_with_sha(st, sha));
	ck_assert_int_eq(array_size(st, "archive_items"), 1);
	req_after = total_requests(st) - req_before;
	after = fakegc_parts(fg);
	ck_assert_ptr_nonnull(after);
	ua = cJSON_GetObjectItem(cJSON_GetObjectItem(after, "uploads"), upk);
	ck_assert_ptr_nonnull(ua);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(ua, "acks")), KILL_PARTS);
	/* Acknowledged before the kill: sent once, ever. */
	cJSON_ArrayForEach(x, cJSON_GetObjectItem(ub, "acks"))
		ck_assert_msg(num(cJSON_GetObjectItem(ua, "puts"), x->string) == 1,
			      "part %s, acknowledged before the kill, was sent %ld times",
			      x->string, num(cJSON_GetObjectItem(ua, "puts"), x->string));
	/* Sent again: only what was in flight at the kill. */
	cJSON_ArrayForEach(x, cJSON_GetObjectItem(ua, "puts"))
		resent += (long)x->valuedouble - 1;
	fprintf(stderr, "e2e_archive kill mid-upload: %d parts, %ld acknowledged before the "
		"kill, %ld re-sent after the restart (bound %d = workers), %ld requests after "
		"the restart, %.1f s\n", KILL_PARTS, acked_at_kill, resent, KILL_WORKERS, req_after,
		(double)(tu_now_ms() - t0) / 1000);
	ck_assert_int_le(resent, KILL_WORKERS);
	cJSON_Delete(before);
	cJSON_Delete(after);
	cJSON_Delete(st);
	free(upk);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

static bool
item_posted(void *ud)
{
	cJSON *st = fakegc_state(fg);
	cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "requests"),
				       "POST /api/v1/archives/items/");
	bool ok = n != NULL && n->valueint >= 1;

	(void)ud;
	cJSON_Delete(st);
	return ok;
}

static bool
item_exists(void *ud)
{
	cJSON *st = fakegc_state(fg);
	bool ok = array_size(st, "archive_items") >= 1;

	(void)ud;
	cJSON_Delete(st);
	return ok;
}

START_TEST(test_kill_after_item_post)
{
	/*
	 * Property: killed after the item POST left (its answer never read), the
	 * restarted daemon finds the item by title: still exactly one, complete.
	 */
	static const char *const names[] = {"k2", NULL};
	cJSON *st, *item;

	ck_assert_int_eq(fakegc_set_faults(fg, "{\"rules\": [{\"route\": "
					   "\"POST /api/v1/archives/items/\", \"action\": \"latency\", "
					   "\"latency\": 1.5, \"count\": 1}],"
					   "\"limits\": {\"min_part_size\": 1}}"), 0);
	start_daemon();
	drop_dir_case(arch, "k2", 1, 2000, ".mha", NULL);
	ck_assert(tu_wait_until(item_posted, NULL, WAIT_MS));
	stop_daemon(SIGKILL);
	/* The platform finishes the request the dead client sent. */
	ck_assert(tu_wait_until(item_exists, NULL, 10000));
	start_daemon();
	wait_state(names, "succeeded", WAIT_MS);
	st = fakegc_state(fg);
	ck_assert_int_eq(array_size(st, "archive_items"), 1);
	item = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "archive_items"), 0);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(item, "values")), 1);
	ck_assert(log_has("succeeded"));
	cJSON_Delete(st);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);
}
END_TEST

/* The last path component of an API URL (".../items/<pk>/" -> pk), malloc'd; NULL for NULL. */
static char *
url_pk(const char *url)
{
	size_t len;
	const char *p;

	if (url == NULL)
		return NULL;
	len = strlen(url);
	while (len > 0 && url[len - 1] == '/')
		len--;
	p = url + len;
	while (p > url && p[-1] != '/')
		p--;
	return strndup(p, (size_t)(url + len - p));
}

/* The element of array 'key' of the emulator's state whose "pk" is pk, or NULL. */
static cJSON *
state_find(cJSON *st, const char *key, const char *pk)
{
	cJSON *x;

	cJSON_ArrayForEach(x, cJSON_GetObjectItem(st, key)) {
		const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(x, "pk"));

		if (pk != NULL && p != NULL && strcmp(p, pk) == 0)
			return x;
	}
	return NULL;
}

/*
 * The sha256 of the one file of the one image among the values of 'obj' (an
 * archive item or a display set of the state); "" when that is not what it holds.
 */
static void
stored_sha(cJSON *st, cJSON *obj, char ret[SHA256_HEX_SIZE])
{
	cJSON *v, *img, *files, *file;
	int n_images = 0;

	ret[0] = '\0';
	cJSON_ArrayForEach(v, cJSON_GetObjectItem(obj, "values")) {
		const char *pk = cJSON_GetStringValue(cJSON_GetObjectItem(v, "image"));

		if (pk == NULL)
			continue;
		n_images++;
		img = state_find(st, "images", pk);
		files = cJSON_GetObjectItem(img, "files");
		file = cJSON_GetArrayItem(files, 0);
		if (cJSON_GetArraySize(files) == 1)
			snprintf(ret, SHA256_HEX_SIZE, "%s",
				 cJSON_GetStringValue(cJSON_GetObjectItem(file, "sha256")));
	}
	if (n_images != 1)
		ret[0] = '\0';
}

#define MIX_CASES 20
#define MIX_STUDY 6		/* the last 6 go to the reader study */

START_TEST(test_faults)
{
	/*
	 * Property: 20 cases (14 into the archive, 6 into the reader study, every
	 * third one of 5 parts) under 10 % 503 on the API, 10 % 500 on part PUTs,
	 * 429 with Retry-After (3 presigns, and 3 % of the API calls), connections
	 * cut without an answer (3 % of the API calls and of the part PUTs) and
	 * answers cut mid-body (2 % of the API calls): every case succeeds, as
	 * exactly one archive item or display set of its own holding its bytes, and
	 * the requests stay under the fault-free bound plus two per injected fault
	 * (the retry and a check, such as GET uploads/<pk>/ after a lost completion):
	 * no retry storm, no upload started over.
	 */
	const char *names[MIX_CASES + 1];
	char shas[MIX_CASES][SHA256_HEX_SIZE];
	char *owned[MIX_CASES], *pks[MIX_CASES];
	long long t0 = tu_now_ms();
	long clean = 2 * 8, req, limit;
	cJSON *st, *root, *x;
	int faults = 0;

	ck_assert_int_eq(fakegc_set_faults(fg,
		"{\"seed\": 5, \"rules\": ["
		" {\"route\": \"/api/v1/\", \"status\": 503, \"fraction\": 0.1},"
		" {\"route\": \"s3-put\", \"status\": 500, \"fraction\": 0.1},"
		" {\"route\": \"uploads-presign\", \"status\": 429, \"retry_after\": 1,"
		"  \"count\": 3},"
		" {\"route\": \"/api/v1/\", \"status\": 429, \"retry_after\": 1,"
		"  \"fraction\": 0.03},"
		" {\"route\": \"/api/v1/\", \"action\": \"close\", \"fraction\": 0.03},"
		" {\"route\": \"s3-put\", \"action\": \"close\", \"fraction\": 0.03},"
		" {\"route\": \"/api/v1/\", \"action\": \"truncate\", \"fraction\": 0.02}],"
		" \"limits\": {\"min_part_size\": 1}}"), 0);
	start_daemon();
	for (int i = 0; i < MIX_CASES; i++) {
		bool in_study = i >= MIX_CASES - MIX_STUDY;
		size_t size = i % 3 == 0 ? 4 * 65536 + 77 : 1000 + (size_t)i * 13;

		owned[i] = tu_strdupf("%s%02d", in_study ? "s" : "a", i);
		names[i] = owned[i];
		drop_dir_case(in_study ? study : arch, names[i], 1, size, ".mha", shas[i]);
		/* POST uploads/, presign, the PUTs, complete; session, item, PATCH, polls. */
		clean += 3 + (i % 3 == 0 ? 5 : 1) + 12;
	}
	names[MIX_CASES] = NULL;
	wait_state(names, "succeeded", 180000);
	ck_assert_int_eq(stop_daemon(SIGTERM), 0);

	st = fakegc_state(fg);
	root = status();
	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(array_size(st, "archive_items"), MIX_CASES - MIX_STUDY);
	ck_assert_int_eq(array_size(st, "display_sets"), MIX_STUDY);
	for (int i = 0; i < MIX_CASES; i++) {
		bool in_study = i >= MIX_CASES - MIX_STUDY;
		cJSON *remote = cJSON_GetObjectItem(find_case(root, names[i]), "remote");
		cJSON *obj;
		char sha[SHA256_HEX_SIZE];

		pks[i] = url_pk(cJSON_GetStringValue(
		    cJSON_GetObjectItem(remote, in_study ? "display_set" : "archive_item")));
		obj = state_find(st, in_study ? "display_sets" : "archive_items", pks[i]);
		ck_assert_msg(obj != NULL, "%s: no item %s", names[i], pks[i]);
		for (int j = 0; j < i; j++)
			ck_assert_msg(strcmp(pks[i], pks[j]) != 0, "%s and %s share %s", names[i],
				      names[j], pks[i]);
		stored_sha(st, obj, sha);
		ck_assert_msg(strcmp(sha, shas[i]) == 0, "%s: stored %s, dropped %s", names[i], sha,
			      shas[i]);
	}
	ck_assert_int_eq(array_size(st, "leaks"), 0);
	cJSON_ArrayForEach(x, cJSON_GetObjectItem(cJSON_GetObjectItem(st, "faults"), "hits"))
		faults += x->valueint;
	req = total_requests(st);
	limit = clean + 2L * faults;
	fprintf(stderr, "e2e_archive faults: %d cases, %d faults injected, %ld requests "
		"(%.1f per case; fault-free bound %ld, limit %ld), %.1f s\n", MIX_CASES, faults,
		req, (double)req / MIX_CASES, clean, limit, (double)(tu_now_ms() - t0) / 1000);
	ck_assert_msg(req <= limit, "%ld requests for %d cases, more than %ld", req, MIX_CASES,
		      limit);
	for (int i = 0; i < MIX_CASES; i++) {
		free(pks[i]);
		free(owned[i]);
	}
	cJSON_Delete(root);
	cJSON_Delete(st);
}
END_TEST

static Suite *
e2e_suite(void)
{
	Suite *s = suite_create("e2e_archive");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_cases_become_items);
	tcase_add_test(tc, test_import_failure);
	tcase_set_timeout(tc, 240);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_kill_mid_upload);
	tcase_add_test(tc, test_kill_after_item_post);
	tcase_add_test(tc, test_faults);
	tcase_set_timeout(tc, 240);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(e2e_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
