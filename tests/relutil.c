/*
 * relutil.c: helpers of the reliability suites. See relutil.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "relutil.h"
#include "store.h"
#include "testutil.h"

static const char MHA_HEAD[] = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 1\n"
			       "ElementSpacing = 1 1 1\nElementType = MET_UCHAR\n"
			       "ElementDataFile = LOCAL\n";

uint64_t
ru_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

long long
ru_rand_range(uint64_t *s, long long lo, long long hi)
{
	return lo + (long long)(ru_rand(s) % (uint64_t)(hi - lo + 1));
}

uint64_t
ru_seed(const char *what)
{
	const char *v = getenv("GCDROP_SEED");
	uint64_t seed;

	if (v != NULL && v[0] != '\0') {
		seed = strtoull(v, NULL, 0);
	} else {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^
		       ((uint64_t)getpid() << 20);
		seed %= 1000000007u;
	}
	if (seed == 0)
		seed = 1;
	fprintf(stderr, "%s: seed %llu (replay with GCDROP_SEED=%llu)\n", what,
		(unsigned long long)seed, (unsigned long long)seed);
	return seed;
}

long
ru_env_long(const char *name, long fallback)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? strtol(v, NULL, 0) : fallback;
}

void
ru_setup(struct ru_env *e, const char *tag, const struct fakegc_opts *opts)
{
	memset(e, 0, sizeof(*e));
	e->pid = -1;
	e->dir = tu_mkdtemp(tag);
	chmod(e->dir, 0755);
	e->conf = tu_strdupf("%s/gcdrop.conf", e->dir);
	e->token_path = tu_strdupf("%s/token", e->dir);
	e->state = tu_strdupf("%s/state", e->dir);
	e->log = tu_strdupf("%s/daemon.log", e->dir);
	ck_assert_int_eq(mkdir(e->state, 0700), 0);
	if (opts != NULL) {
		struct fakegc_opts o = *opts;
		int r;

		o.tls = true;
		r = fakegc_start(&o, &e->fg);
		ck_assert_msg(r == 0, "the emulator did not start: %s", strerror(-r));
		tu_write_file(e->token_path, fakegc_token(e->fg), -1, 0600);
	}
}

void
ru_teardown(struct ru_env *e)
{
	if (e->pid > 0)
		ru_stop(e, SIGKILL);
	fakegc_stop(e->fg);
	if (getenv("GCDROP_TEST_KEEP") != NULL)
		fprintf(stderr, "kept %s (GCDROP_TEST_KEEP)\n", e->dir);
	else
		tu_rmtree(e->dir);
	free(e->dir);
	free(e->conf);
	free(e->token_path);
	free(e->state);
	free(e->log);
	memset(e, 0, sizeof(*e));
	e->pid = -1;
}

char *
ru_mkdir(const struct ru_env *e, const char *name)
{
	char *p = tu_strdupf("%s/%s", e->dir, name);

	ck_assert_msg(mkdir(p, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", p, strerror(errno));
	return p;
}

void
ru_write_config(const struct ru_env *e, const char *globals, const char *watches)
{
	char *text = tu_strdupf("api_url = \"%s\";\ntoken_file = \"%s\";\nca_file = \"%s\";\n"
				"state_dir = \"%s\";\n%s\nwatches = (\n%s\n);\n",
				fakegc_api_url(e->fg), e->token_path, fakegc_ca_file(e->fg),
				e->state, globals, watches);

	tu_write_file(e->conf, text, -1, 0644);
	free(text);
}

static char *
bin(void)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "%s", tu_gcdrop_bin());
	return buf;
}

void
ru_start(struct ru_env *e, char *const env[])
{
	char *argv[] = {bin(), "run", "-c", e->conf, NULL};
	char *all[16];
	size_t n = 0;

	all[n++] = "GCDROP_PART_SIZE=65536";
	for (char *const *p = env; p != NULL && *p != NULL && n < 15; p++)
		all[n++] = *p;
	all[n] = NULL;
	ck_assert_int_le(e->pid, 0);
	e->pid = tu_spawn(argv, all, e->log);
	ck_assert_int_gt(e->pid, 0);
	e->starts++;
}

void
ru_start_wait(struct ru_env *e, char *const env[], int timeout_ms)
{
	size_t before = ru_log_count(e, "started with");
	long long deadline = tu_now_ms() + timeout_ms;

	ru_start(e, env);
	while (ru_log_count(e, "started with") <= before) {
		int st;

		if (ru_exited(e, &st)) {
			ru_log_tail(e, 2000);
			ck_abort_msg("gcdrop run exited at start-up (status %d)", st);
		}
		if (tu_now_ms() > deadline) {
			ru_log_tail(e, 2000);
			ck_abort_msg("gcdrop run did not start in %d ms", timeout_ms);
		}
		usleep(10000);
	}
}

int
ru_stop(struct ru_env *e, int sig)
{
	int st;

	if (e->pid <= 0)
		return -1;
	st = tu_stop(e->pid, sig, 15000);
	e->pid = -1;
	return st;
}

bool
ru_exited(struct ru_env *e, int *ret_status)
{
	int st;

	if (e->pid <= 0)
		return true;
	if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
		e->pid = -1;
		if (ret_status != NULL)
			*ret_status = st;
		return true;
	}
	return false;
}

cJSON *
ru_status(const struct ru_env *e)
{
	char *argv[] = {bin(), "status", "-c", e->conf, "--json", NULL};
	char *out = NULL, *err = NULL;
	cJSON *root;
	int rc = tu_run(argv, NULL, 30000, &out, &err);

	ck_assert_msg(rc == 0, "gcdrop status failed (%d): %s", rc, err);
	root = cJSON_Parse(out);
	ck_assert_msg(root != NULL, "gcdrop status --json is not JSON: %.200s", out);
	free(out);
	free(err);
	return root;
}

const char *
ru_case_str(const cJSON *c, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, key));
}

const char *
ru_case_remote(const cJSON *c, const char *key)
{
	return cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "remote"), key));
}

static bool
eq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

int
ru_count(const cJSON *root, const char *watch, const char *name, const char *state)
{
	const cJSON *c;
	int n = 0;

	cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases"))
	{
		if ((watch == NULL || eq(ru_case_str(c, "watch"), watch)) &&
		    (name == NULL || eq(ru_case_str(c, "name"), name)) &&
		    (state == NULL ? !eq(ru_case_str(c, "state"), "settling")
				   : eq(ru_case_str(c, "state"), state)))
			n++;
	}
	return n;
}

const cJSON *
ru_case(const cJSON *root, const char *watch, const char *name)
{
	const cJSON *c;

	cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases"))
	{
		if ((watch == NULL || eq(ru_case_str(c, "watch"), watch)) &&
		    eq(ru_case_str(c, "name"), name))
			return c;
	}
	return NULL;
}

static bool
terminal(const char *st)
{
	return eq(st, "succeeded") || eq(st, "failed") || eq(st, "cancelled");
}

struct term_want {
	const struct ru_env *e;
	const char *watch;
	const char *const *names;
};

static bool
all_terminal(void *ud)
{
	const struct term_want *w = ud;
	cJSON *root = ru_status(w->e);
	bool ok = true;

	for (const char *const *n = w->names; ok && *n != NULL; n++) {
		const cJSON *c = ru_case(root, w->watch, *n);

		ok = c != NULL && terminal(ru_case_str(c, "state"));
	}
	cJSON_Delete(root);
	return ok;
}

void
ru_wait_terminal(const struct ru_env *e, const char *watch, const char *const *names, int timeout_ms)
{
	struct term_want w = {e, watch, names};
	cJSON *root;

	if (tu_wait_until(all_terminal, &w, timeout_ms))
		return;
	root = ru_status(e);
	for (const char *const *n = names; *n != NULL; n++) {
		const cJSON *c = ru_case(root, watch, *n);

		fprintf(stderr, "  case %s: %s (%s)\n", *n, c ? ru_case_str(c, "state") : "absent",
			c && ru_case_str(c, "error") ? ru_case_str(c, "error") : "");
	}
	cJSON_Delete(root);
	ru_log_tail(e, 6000);
	ck_abort_msg("cases not finished within %d ms", timeout_ms);
}

struct state_want {
	const struct ru_env *e;
	const char *name;
	const char *state;
};

static bool
case_in_state(void *ud)
{
	const struct state_want *w = ud;
	cJSON *root = ru_status(w->e);
	bool ok = ru_count(root, NULL, w->name, w->state) > 0;

	cJSON_Delete(root);
	return ok;
}

bool
ru_wait_state(const struct ru_env *e, const char *name, const char *state, int timeout_ms)
{
	struct state_want w = {e, name, state};

	return tu_wait_until(case_in_state, &w, timeout_ms);
}

bool
ru_log_has(const struct ru_env *e, const char *s)
{
	return ru_log_count(e, s) > 0;
}

size_t
ru_log_count(const struct ru_env *e, const char *s)
{
	char *text = tu_read_file(e->log, NULL);
	size_t n = 0;

	for (const char *p = text; p != NULL && (p = strstr(p, s)) != NULL; p++)
		n++;
	free(text);
	return n;
}

struct log_want {
	const struct ru_env *e;
	const char *s;
};

static bool
log_cb(void *ud)
{
	const struct log_want *w = ud;

	return ru_log_has(w->e, w->s);
}

bool
ru_wait_log(const struct ru_env *e, const char *s, int timeout_ms)
{
	struct log_want w = {e, s};

	return tu_wait_until(log_cb, &w, timeout_ms);
}

void
ru_log_tail(const struct ru_env *e, size_t bytes)
{
	size_t len = 0;
	char *text = tu_read_file(e->log, &len);

	if (text == NULL)
		return;
	fprintf(stderr, "---- daemon log (last %zu bytes) ----\n%s\n----\n", bytes,
		len > bytes ? text + len - bytes : text);
	free(text);
}

void
ru_write_mha(const char *path, size_t size, uint64_t seed)
{
	size_t head = strlen(MHA_HEAD);
	char *data = malloc(size + head);
	uint64_t s = seed * 2654435761u + 1;

	ck_assert_ptr_nonnull(data);
	memcpy(data, MHA_HEAD, head);
	for (size_t i = head; i < size + head; i++)
		data[i] = (char)(ru_rand(&s) >> 56);
	tu_write_file(path, data, (ssize_t)(size + head), 0644);
	free(data);
}

void
ru_drop(const struct ru_env *e, const char *watchdir, const char *name, bool is_dir,
	void (*fill)(const char *path, void *ud), void *ud)
{
	char *stage = tu_strdupf("%s/stage-%s", e->dir, name);
	char *dst = tu_strdupf("%s/%s", watchdir, name);

	if (is_dir)
		ck_assert_int_eq(mkdir(stage, 0755), 0);
	fill(stage, ud);
	ck_assert_msg(rename(stage, dst) == 0, "rename %s: %s", dst, strerror(errno));
	free(stage);
	free(dst);
}

void
ru_sha256(const char *path, char ret_hex[SHA256_HEX_SIZE])
{
	ck_assert_msg(sha256_file(AT_FDCWD, path, ret_hex) == 0, "sha256 of %s", path);
}

cJSON *
ru_fg_state(const struct ru_env *e)
{
	cJSON *st = fakegc_state(e->fg);

	ck_assert_msg(st != NULL, "cannot read the emulator's state");
	return st;
}

int
ru_fg_count(const cJSON *st, const char *key)
{
	return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(st, key));
}

long
ru_fg_requests_matching(const cJSON *st, const char *part)
{
	const cJSON *x;
	long n = 0;

	cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(st, "requests"))
	{
		if (strstr(x->string, "__fakegc__") == NULL &&
		    (part == NULL || strstr(x->string, part) != NULL))
			n += (long)x->valuedouble;
	}
	return n;
}

long
ru_fg_requests(const cJSON *st)
{
	const cJSON *hits = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(st, "faults"), "hits");
	const cJSON *down = cJSON_GetObjectItemCaseSensitive(hits, "down");

	return ru_fg_requests_matching(st, NULL) + (down != NULL ? (long)down->valuedouble : 0);
}

const cJSON *
ru_fg_find(const cJSON *st, const char *key, const char *pk)
{
	const cJSON *x;

	cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(st, key))
	{
		if (eq(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "pk")), pk))
			return x;
	}
	return NULL;
}

char **
ru_fg_image_shas(const cJSON *st, const char *pk, int *ret_n)
{
	const cJSON *img = ru_fg_find(st, "images", pk), *f;
	char **v = NULL;
	int n = 0;

	cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(img, "files"))
	{
		const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "sha256"));

		v = realloc(v, sizeof(*v) * (size_t)(n + 1));
		v[n++] = strdup(s != NULL ? s : "");
	}
	*ret_n = n;
	return v;
}

void
ru_strv_free(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

char *
ru_url_pk(const char *url)
{
	size_t len;
	const char *end, *start;

	if (url == NULL)
		return NULL;
	len = strlen(url);
	end = url + len;
	while (end > url && end[-1] == '/')
		end--;
	start = end;
	while (start > url && start[-1] != '/')
		start--;
	return strndup(start, (size_t)(end - start));
}

/*
 * Where the outputs of the emulator's algorithms go in a result folder: the
 * relative_path of each output socket (tests/fakegc/fixtures.py).
 */
static const char *const output_paths[][2] = {
	{"lung-volume", "lung-volume.json"},
	{"report-pdf", "report.pdf"},
	{"results-json-file", "results.json"},
};

bool
ru_results_complete(const cJSON *job, const char *dir, char *why, size_t whylen)
{
	const cJSON *o;
	char *path = tu_strdupf("%s/job.json", dir), *text = tu_read_file(path, NULL);
	cJSON *j = text != NULL ? cJSON_Parse(text) : NULL;
	bool ok = j != NULL;
	DIR *d;

	if (!ok)
		snprintf(why, whylen, "%s is %s", path, text == NULL ? "missing" : "not JSON");
	cJSON_Delete(j);
	free(text);
	free(path);
	cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(job, "outputs"))
	{
		const char *itf =
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "interface"));
		const cJSON *file = cJSON_GetObjectItemCaseSensitive(o, "file");
		const char *rel = NULL;

		if (!ok)
			break;
		for (size_t i = 0; i < GC_ARRAY_SIZE(output_paths) && itf != NULL; i++)
			if (strcmp(output_paths[i][0], itf) == 0)
				rel = output_paths[i][1];
		if (rel == NULL) {
			snprintf(why, whylen, "output '%s' is not known to the test",
				 itf ? itf : "?");
			return false;
		}
		path = tu_strdupf("%s/%s", dir, rel);
		if (file != NULL) {
			const char *want = cJSON_GetStringValue(
			    cJSON_GetObjectItemCaseSensitive(file, "sha256"));
			char sha[SHA256_HEX_SIZE] = "";

			if (access(path, F_OK) == 0)
				ru_sha256(path, sha);
			ok = want != NULL && strcmp(sha, want) == 0;
			if (!ok)
				snprintf(why, whylen,
					 "%s: sha256 '%.12s' is not the output's %.12s", path, sha,
					 want ? want : "?");
		} else {
			text = tu_read_file(path, NULL);
			j = text != NULL ? cJSON_Parse(text) : NULL;
			ok = j != NULL &&
			     cJSON_Compare(j, cJSON_GetObjectItemCaseSensitive(o, "value"), true);
			if (!ok)
				snprintf(why, whylen, "%s: %s is not the output's value", path,
					 text != NULL ? text : "(missing)");
			cJSON_Delete(j);
			free(text);
		}
		free(path);
	}
	d = opendir(dir);
	if (ok && d == NULL) {
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		ok = false;
	}
	for (struct dirent *de; ok && (de = readdir(d)) != NULL;) {
		size_t n = strlen(de->d_name);

		if (n >= 12 && strcmp(de->d_name + n - 12, ".gcdrop-part") == 0) {
			snprintf(why, whylen, "%s/%s: a temporary file is left", dir, de->d_name);
			ok = false;
		}
	}
	if (d != NULL)
		closedir(d);
	return ok;
}

bool
ru_job_input_is(const cJSON *st, const cJSON *job, const char *sha, char *why, size_t whylen)
{
	const cJSON *in;
	int images = 0;

	cJSON_ArrayForEach(in, cJSON_GetObjectItemCaseSensitive(job, "inputs"))
	{
		const char *img =
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(in, "image"));
		char **shas;
		int n;

		if (img == NULL)
			continue;
		images++;
		shas = ru_fg_image_shas(st, img, &n);
		if (n != 1 || strcmp(shas[0], sha) != 0) {
			snprintf(why, whylen,
				 "input image %s has %d file(s), sha256 %.12s, not %.12s", img, n,
				 n > 0 ? shas[0] : "-", sha);
			ru_strv_free(shas, n);
			return false;
		}
		ru_strv_free(shas, n);
	}
	if (images != 1) {
		snprintf(why, whylen, "%d image inputs", images);
		return false;
	}
	return true;
}

static const char *grep_needle;
static int grep_hits;

static bool
file_has(const char *path, const char *needle)
{
	size_t nl = strlen(needle), len;
	char *text = tu_read_file(path, &len);
	bool found = false;

	if (text == NULL)
		return false;
	for (size_t i = 0; !found && len >= nl && i <= len - nl; i++)
		found = memcmp(text + i, needle, nl) == 0;
	free(text);
	return found;
}

static int
grep_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_F && S_ISREG(sb->st_mode) && sb->st_size < (64 << 20) &&
	    file_has(path, grep_needle)) {
		fprintf(stderr, "the token appears in %s\n", path);
		grep_hits++;
	}
	return 0;
}

int
ru_grep_tree(const char *path, const char *needle)
{
	grep_needle = needle;
	grep_hits = 0;
	nftw(path, grep_one, 16, FTW_PHYS);
	return grep_hits;
}

bool
ru_has(const char *hay, const char *needle)
{
	return hay != NULL && needle != NULL && strstr(hay, needle) != NULL;
}

int
ru_integrity(const struct ru_env *e, char **reterr_msg)
{
	struct store *s = NULL;
	char *msg = NULL;
	int r = store_open(e->state, STORE_OPEN_READONLY, &s, &msg);

	if (r < 0) {
		*reterr_msg = msg;
		return r;
	}
	r = store_integrity_check(s, &msg);
	store_close(s);
	if (r < 0)
		*reterr_msg = msg;
	return r;
}
