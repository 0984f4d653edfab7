/*
 * e2e_crashloop.c: the daemon killed with SIGKILL again and again, issue 8.
 *
 * Property proved: whatever moment the daemon dies at (start-up recovery, the
 * rescan, settling, the middle of a part, between a create request and the
 * record of its answer, inside an SQLite transaction), a restart continues
 * every case from its last recorded step, so that in the end every case has
 * succeeded exactly once: the platform holds exactly one archive item per
 * archive case, every file of it byte-identical (sha256) to the source, every
 * receipt is there; the platform holds exactly one algorithm job per
 * algorithm case, whose input image is the case's file byte for byte, and the
 * case's result folder is complete (job.json, every output as the platform
 * holds it, no temporary file); the queue passes PRAGMA integrity_check, and
 * the token never appeared in any output of the whole run nor reached storage.
 *
 * The run (all of it drawn from one seeded generator; the seed is printed
 * first, GCDROP_SEED replays it):
 *   - the emulator injects faults all along (5 % 503 on the API, 5 % 500 on
 *     part PUTs, 2 % connections cut, 2 % 429 with Retry-After on presign,
 *     50 ms more on 30 % of the part PUTs so that kills land mid-upload);
 *   - CASES cases (GCDROP_CRASH_CASES, default 30) are dropped in batches,
 *     some while the daemon is down (found by the start-up rescan), some
 *     while it runs (inotify); one in three goes to the algorithm watch
 *     (demo-algorithm: one image in, a value and a PDF out), the others to
 *     the archive watch; one in three spans six parts;
 *   - the daemon is started and SIGKILLed KILLS times (GCDROP_CRASH_KILLS,
 *     default 32): every fourth kill 1-50 ms after the start (start-up
 *     recovery), the others 50-1500 ms after it, while cases move (many
 *     store transactions per second);
 *   - then it runs without kills until every case is finished, and the
 *     checks above are made. The numbers (kills survived, requests per case,
 *     time) are printed for docs/reliability.md.
 * `make soak` runs it with 100 cases and 120 kills.
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

#include "relutil.h"
#include "testutil.h"

#define MAX_FILES 4

struct rcase {
	char name[32];
	bool is_dir;
	int kind;		/* archive: 0: 6-part image + value, 1: three .dcm, 2: one small
				 * .mha; algorithm: 3: a folder with a 6-part scan.mha, 4: one
				 * small .mha */
	bool alg;		/* in the algorithm watch */
	int n_files;
	char sha[MAX_FILES][SHA256_HEX_SIZE];
	uint64_t seed;
	bool dropped;
};

static struct ru_env E;
static char *arch, *results, *alg, *alg_results;

static void
setup(void)
{
	struct fakegc_opts o = {.tick = 0.05, .min_part_size = 1};

	ru_setup(&E, "e2e_crashloop", &o);
	arch = ru_mkdir(&E, "in-arch");
	results = ru_mkdir(&E, "results");
	alg = ru_mkdir(&E, "in-alg");
	alg_results = ru_mkdir(&E, "results-alg");
}

static void
teardown(void)
{
	ru_teardown(&E);
	free(arch);
	free(results);
	free(alg);
	free(alg_results);
}

static void
fill_case(const char *path, void *ud)
{
	struct rcase *c = ud;

	switch (c->kind) {
	case 0: {
		char *img = tu_strdupf("%s/generic-medical-image.mha", path);
		char *js = tu_strdupf("%s/lung-volume.json", path);

		ru_write_mha(img, 5 * 65536 + 100 + (size_t)(c->seed % 1000), c->seed);
		ru_sha256(img, c->sha[0]);
		tu_write_file(js, "1.5", -1, 0644);
		c->n_files = 1;
		free(img);
		free(js);
		break;
	}
	case 1:
		for (int i = 0; i < 3; i++) {
			char *f = tu_strdupf("%s/slice%02d.dcm", path, i);
			char *data = tu_strdupf("DICM case %s slice %d seed %llu", c->name, i,
						(unsigned long long)c->seed);

			tu_write_file(f, data, -1, 0644);
			ru_sha256(f, c->sha[i]);
			free(data);
			free(f);
		}
		c->n_files = 3;
		break;
	case 3: {
		char *img = tu_strdupf("%s/scan.mha", path);

		ru_write_mha(img, 5 * 65536 + 100 + (size_t)(c->seed % 1000), c->seed);
		ru_sha256(img, c->sha[0]);
		c->n_files = 1;
		free(img);
		break;
	}
	default:
		ru_write_mha(path, 1500 + (size_t)(c->seed % 5000), c->seed);
		ru_sha256(path, c->sha[0]);
		c->n_files = 1;
		break;
	}
}

static void
drop(struct rcase *c)
{
	if (c->dropped)
		return;
	ru_drop(&E, c->alg ? alg : arch, c->name, c->is_dir, fill_case, c);
	c->dropped = true;
}

/* Did an upload with this sha256 complete and become part of an import? */
static bool
upload_consumed(const cJSON *st, const char *sha)
{
	const cJSON *u;

	cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(st, "uploads"))
	{
		const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(u, "sha256"));
		const char *d = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(u, "deleted"));

		if (s != NULL && strcmp(s, sha) == 0 && d != NULL && strcmp(d, "consumed") == 0)
			return true;
	}
	return false;
}

/* Is every sha of the case among the files of the item's image? */
static bool
item_matches(const cJSON *st, const cJSON *item, const struct rcase *c, char *why, size_t whylen)
{
	const cJSON *v;
	int images = 0, values = 0;

	cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(item, "values"))
	{
		const char *img = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "image"));
		char **shas;
		int n;

		if (img == NULL) {
			values++;
			continue;
		}
		images++;
		if (c->kind == 1) {
			/*
			 * The importer turns a DICOM series into one new .mha: the
			 * bytes sent are checked on the consumed uploads instead.
			 */
			for (int i = 0; i < c->n_files; i++) {
				if (!upload_consumed(st, c->sha[i])) {
					snprintf(why, whylen, "file %d (sha256 %.12s...) is not a "
						 "consumed upload", i, c->sha[i]);
					return false;
				}
			}
			continue;
		}
		shas = ru_fg_image_shas(st, img, &n);
		for (int i = 0; i < c->n_files; i++) {
			bool found = false;

			for (int j = 0; j < n; j++)
				found = found || strcmp(shas[j], c->sha[i]) == 0;
			if (!found) {
				snprintf(why, whylen, "file %d (sha256 %.12s...) not in image %s", i,
					 c->sha[i], img);
				ru_strv_free(shas, n);
				return false;
			}
		}
		if (n != c->n_files) {
			snprintf(why, whylen, "image %s has %d files, the case %d", img, n,
				 c->n_files);
			ru_strv_free(shas, n);
			return false;
		}
		ru_strv_free(shas, n);
	}
	if (images != 1 || values != (c->kind == 0 ? 1 : 0)) {
		snprintf(why, whylen, "%d image value(s) and %d other value(s)", images, values);
		return false;
	}
	return true;
}

START_TEST(test_crash_loop)
{
	long n_cases = ru_env_long("GCDROP_CRASH_CASES", 30);
	long n_kills = ru_env_long("GCDROP_CRASH_KILLS", 32);
	uint64_t seed = ru_seed("e2e_crashloop"), rng = seed;
	struct rcase *cases = calloc((size_t)n_cases, sizeof(*cases));
	const char **names = calloc((size_t)n_cases + 1, sizeof(*names));
	long long t0 = tu_now_ms(), t_loop;
	int survived = 0, early = 0, busy = 0, dropped = 0, uploads_orphan = 0, n_alg = 0;
	long requests, puts;
	char *faults, *watches;
	cJSON *root, *st;

	ck_assert_ptr_nonnull(cases);
	faults = tu_strdupf("{\"seed\": %llu, \"rules\": ["
			    " {\"route\": \"/api/v1/\", \"status\": 503, \"fraction\": 0.05},"
			    " {\"route\": \"s3-put\", \"status\": 500, \"fraction\": 0.05},"
			    " {\"route\": \".\", \"action\": \"close\", \"fraction\": 0.02},"
			    " {\"route\": \"uploads-presign\", \"status\": 429, \"retry_after\": 1,"
			    "  \"fraction\": 0.02},"
			    " {\"route\": \"s3-put\", \"action\": \"latency\", \"latency\": 0.05,"
			    "  \"fraction\": 0.3}],"
			    " \"limits\": {\"min_part_size\": 1}}",
			    (unsigned long long)(seed % 1000000));
	ck_assert_int_eq(fakegc_set_faults(E.fg, faults), 0);
	free(faults);
	watches = tu_strdupf(" { name = \"arch\"; path = \"%s\"; archive = \"demo-archive\";\n"
			     "   settle_seconds = 0; results_dir = \"%s\"; },\n"
			     " { name = \"alg\"; path = \"%s\"; algorithm = \"demo-algorithm\";\n"
			     "   settle_seconds = 0; results_dir = \"%s\"; }",
			     arch, results, alg, alg_results);
	ru_write_config(&E, "workers = 4;\nmax_attempts = 1000;\nmin_free_space = \"1M\";\n"
			    "log_level = \"info\";\n", watches);
	free(watches);

	for (long i = 0; i < n_cases; i++) {
		struct rcase *c = &cases[i];

		c->alg = i % 3 == 2;
		if (c->alg)
			c->kind = i % 6 == 5 ? 3 : 4;
		else
			c->kind = i % 3 == 0 ? 0 : i % 5 == 1 ? 1 : 2;
		c->is_dir = c->kind <= 1 || c->kind == 3;
		n_alg += c->alg;
		snprintf(c->name, sizeof(c->name), c->is_dir ? "c%03ld" : "c%03ld.mha", i);
		c->seed = ru_rand(&rng);
		names[i] = c->name;
	}

	/*
	 * The kill loop. Cases are dropped over the first nine tenths of the kills:
	 * before a start (the daemon is down) or in the middle of a run.
	 */
	for (long k = 0; k < n_kills; k++) {
		long span = 9 * n_kills / 10 > 0 ? 9 * n_kills / 10 : 1;
		long quota = n_cases * (k + 1) / span;
		bool startup = k % 4 == 0;
		long long delay = startup ? ru_rand_range(&rng, 1, 50) : ru_rand_range(&rng, 50, 1500);
		bool drop_live = !startup && (ru_rand(&rng) & 1);
		long before = 0, after;
		int status;
		cJSON *fst;

		if (quota > n_cases)
			quota = n_cases;
		if (!drop_live)
			while (dropped < quota)
				drop(&cases[dropped++]);
		fst = ru_fg_state(&E);
		before = ru_fg_requests(fst);
		cJSON_Delete(fst);
		ru_start(&E, NULL);
		if (drop_live) {
			usleep((useconds_t)(delay / 2) * 1000);
			while (dropped < quota)
				drop(&cases[dropped++]);
			usleep((useconds_t)(delay - delay / 2) * 1000);
		} else {
			usleep((useconds_t)delay * 1000);
		}
		if (ru_exited(&E, &status)) {
			ru_log_tail(&E, 4000);
			ck_abort_msg("kill %ld (seed %llu): the daemon had exited by itself (status "
				     "%d) %lld ms after its start", k, (unsigned long long)seed,
				     status, delay);
		}
		survived++;
		if (startup)
			early++;
		ru_stop(&E, SIGKILL);
		fst = ru_fg_state(&E);
		after = ru_fg_requests(fst);
		cJSON_Delete(fst);
		if (after > before)
			busy++;
	}
	while (dropped < n_cases)
		drop(&cases[dropped++]);
	t_loop = tu_now_ms();

	/* The last run: no kills, until every case is finished. */
	ru_start_wait(&E, NULL, 30000);
	{
		char *cmdline = tu_strdupf("/proc/%d/cmdline", (int)E.pid);
		char *text = tu_read_file(cmdline, NULL);

		ck_assert_ptr_nonnull(text);
		ck_assert_msg(!ru_has(text, fakegc_token(E.fg)), "the token is in argv");
		free(text);
		free(cmdline);
	}
	ru_wait_terminal(&E, NULL, names, 240000 + (int)n_cases * 3000);
	ck_assert_int_eq(ru_stop(&E, SIGTERM), 0);

	/* 1. Every case exactly once in the queue, succeeded. */
	root = ru_status(&E);
	ck_assert_int_eq(ru_count(root, NULL, NULL, NULL), n_cases);
	for (long i = 0; i < n_cases; i++) {
		const char *w = cases[i].alg ? "alg" : "arch";
		const cJSON *c = ru_case(root, w, cases[i].name);

		ck_assert_msg(ru_count(root, w, cases[i].name, NULL) == 1,
			      "case %s is in the queue %d times (seed %llu)", cases[i].name,
			      ru_count(root, w, cases[i].name, NULL), (unsigned long long)seed);
		ck_assert_msg(strcmp(ru_case_str(c, "state"), "succeeded") == 0,
			      "case %s ended %s: %s (seed %llu)", cases[i].name,
			      ru_case_str(c, "state"), ru_case_str(c, "error"),
			      (unsigned long long)seed);
	}

	/*
	 * 2. Exactly one archive item per archive case, byte-identical files;
	 * exactly one job per algorithm case, its input the case's file, its
	 * result folder complete.
	 */
	st = ru_fg_state(&E);
	ck_assert_msg(ru_fg_count(st, "archive_items") == n_cases - n_alg,
		      "%d archive items for %ld archive cases (seed %llu)",
		      ru_fg_count(st, "archive_items"), n_cases - n_alg, (unsigned long long)seed);
	ck_assert_msg(ru_fg_count(st, "jobs") == n_alg,
		      "%d jobs for %d algorithm cases (seed %llu)", ru_fg_count(st, "jobs"), n_alg,
		      (unsigned long long)seed);
	for (long i = 0; i < n_cases; i++) {
		const cJSON *c = ru_case(root, cases[i].alg ? "alg" : "arch", cases[i].name);
		char *pk, *dir;
		const cJSON *item, *job;
		char why[256] = "";

		if (cases[i].alg) {
			pk = ru_url_pk(ru_case_remote(c, "job"));
			job = ru_fg_find(st, "jobs", pk);
			ck_assert_msg(job != NULL, "case %s: its job %s is not on the platform",
				      cases[i].name, pk);
			ck_assert_msg(strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
						 job, "status")), "Succeeded") == 0,
				      "case %s: job %s is not Succeeded", cases[i].name, pk);
			for (long j = 0; j < i; j++) {
				char *other;

				if (!cases[j].alg)
					continue;
				other = ru_url_pk(
				    ru_case_remote(ru_case(root, "alg", cases[j].name), "job"));
				ck_assert_msg(strcmp(other, pk) != 0,
					      "cases %s and %s share job %s", cases[i].name,
					      cases[j].name, pk);
				free(other);
			}
			ck_assert_msg(ru_job_input_is(st, job, cases[i].sha[0], why, sizeof(why)),
				      "case %s: %s (seed %llu)", cases[i].name, why,
				      (unsigned long long)seed);
			dir = tu_strdupf("%s/%s", alg_results, cases[i].name);
			ck_assert_msg(ru_results_complete(job, dir, why, sizeof(why)),
				      "case %s: %s (seed %llu)", cases[i].name, why,
				      (unsigned long long)seed);
			free(dir);
			free(pk);
			continue;
		}
		pk = ru_url_pk(ru_case_remote(c, "archive_item"));
		item = ru_fg_find(st, "archive_items", pk);
		ck_assert_msg(item != NULL, "case %s: its archive item %s is not on the platform",
			      cases[i].name, pk);
		for (long j = 0; j < i; j++) {
			char *other;

			if (cases[j].alg)
				continue;
			other = ru_url_pk(
			    ru_case_remote(ru_case(root, "arch", cases[j].name), "archive_item"));

			ck_assert_msg(strcmp(other, pk) != 0, "cases %s and %s share item %s",
				      cases[i].name, cases[j].name, pk);
			free(other);
		}
		ck_assert_msg(item_matches(st, item, &cases[i], why, sizeof(why)),
			      "case %s: %s (seed %llu)", cases[i].name, why,
			      (unsigned long long)seed);
		free(pk);
	}
	ck_assert_int_eq(ru_fg_count(st, "leaks"), 0);
	{
		const cJSON *u;

		cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(st, "uploads"))
		{
			const char *del = cJSON_GetStringValue(
			    cJSON_GetObjectItemCaseSensitive(u, "deleted"));

			if (del == NULL || strcmp(del, "consumed") != 0)
				uploads_orphan++;
		}
	}
	requests = ru_fg_requests(st);
	puts = ru_fg_requests_matching(st, "PUT /s3/");
	cJSON_Delete(st);

	/* 3. Every receipt. */
	for (long i = 0; i < n_cases; i++) {
		char *rc = tu_strdupf("%s/%s/gcdrop-receipt.json",
				      cases[i].alg ? alg_results : results, cases[i].name);
		char *text = tu_read_file(rc, NULL);
		cJSON *j = text != NULL ? cJSON_Parse(text) : NULL;

		ck_assert_msg(j != NULL, "no valid receipt %s", rc);
		cJSON_Delete(j);
		free(text);
		free(rc);
	}
	cJSON_Delete(root);

	/* 4. The queue is intact. */
	{
		char *msg = NULL;

		ck_assert_msg(ru_integrity(&E, &msg) == 0, "integrity_check: %s", msg);
	}

	/* 5. The token is in no output: log, queue, receipts, the cases. */
	ck_assert_int_eq(ru_grep_tree(E.log, fakegc_token(E.fg)), 0);
	ck_assert_int_eq(ru_grep_tree(E.state, fakegc_token(E.fg)), 0);
	ck_assert_int_eq(ru_grep_tree(results, fakegc_token(E.fg)), 0);
	ck_assert_int_eq(ru_grep_tree(arch, fakegc_token(E.fg)), 0);
	ck_assert_int_eq(ru_grep_tree(alg_results, fakegc_token(E.fg)), 0);
	ck_assert_int_eq(ru_grep_tree(alg, fakegc_token(E.fg)), 0);
	{
		char bin[4096];
		char *argv[] = {bin, "status", "-c", E.conf, NULL};
		char *out = NULL, *err = NULL;

		snprintf(bin, sizeof(bin), "%s", tu_gcdrop_bin());
		ck_assert_int_eq(tu_run(argv, NULL, 30000, &out, &err), 0);
		ck_assert(!ru_has(out, fakegc_token(E.fg)) && !ru_has(err, fakegc_token(E.fg)));
		free(out);
		free(err);
	}

	fprintf(stderr,
		"e2e_crashloop: seed %llu: %ld cases (%d algorithm), %d kills survived "
		"(%d within 50 ms of the start, %d while requests were made), %d starts; "
		"%ld requests (%.1f per case, %ld part PUTs), %d uploads not consumed "
		"(orphans of kills); kill loop %.1f s, drain %.1f s\n",
		(unsigned long long)seed, n_cases, n_alg, survived, early, busy, E.starts, requests,
		(double)requests / (double)n_cases, puts, uploads_orphan,
		(double)(t_loop - t0) / 1000.0, (double)(tu_now_ms() - t_loop) / 1000.0);
	ck_assert_int_ge(survived, 30 > n_kills ? (int)n_kills : 30);
	free(cases);
	free(names);
}
END_TEST

static Suite *
crashloop_suite(void)
{
	Suite *s = suite_create("e2e_crashloop");
	TCase *tc = tcase_create("recovery");
	long n_cases = ru_env_long("GCDROP_CRASH_CASES", 30);
	long n_kills = ru_env_long("GCDROP_CRASH_KILLS", 32);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_crash_loop);
	tcase_set_timeout(tc, (double)(120 + 2 * n_kills + 12 * n_cases));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(crashloop_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
