/*
 * relutil.h: helpers of the reliability suites (e2e_crashloop, e2e_faults, e2e_hostile;
 * ru_ prefix).
 *
 * One struct ru_env per test: a temporary directory holding the configuration, the
 * token file, the state directory, the results folders, the watch folders and the
 * daemon's log (stdout and stderr of every `gcdrop run` of the test, appended), and
 * the emulator (tests/fakegc over HTTPS with a throw-away CA). The helpers start and
 * kill the real daemon, read the queue through `gcdrop status --json` and the
 * platform through the emulator's state, make cases (staged, then renamed into the
 * watch folder as scanners do), and do the checks every suite repeats: byte
 * identity, request counts, the token in any output, the queue's integrity.
 * Waiting is always "until condition or deadline".
 */
#ifndef GCDROP_RELUTIL_H
#define GCDROP_RELUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "attrs.h"
#include "fakegc-client.h"
#include "sha256.h"

struct ru_env {
	char *dir;		/* the test's temporary directory */
	struct fakegc *fg;	/* NULL when the test runs without the emulator */
	char *conf;		/* dir/gcdrop.conf */
	char *token_path;	/* dir/token (0600) */
	char *state;		/* dir/state */
	char *log;		/* dir/daemon.log */
	pid_t pid;		/* the running daemon, -1 when none */
	int starts;		/* daemons started so far */
};

/* A small, seeded generator (xorshift64*), so that a run can be replayed. */
uint64_t ru_rand(uint64_t *state);
/* Uniform in [lo, hi]. */
long long ru_rand_range(uint64_t *state, long long lo, long long hi);
/*
 * The seed of a run: $GCDROP_SEED when set, else from the clock and the pid.
 * Printed to stderr with 'what' so that a failure can be replayed.
 */
uint64_t ru_seed(const char *what);

/* An integer from the environment, or 'fallback'. */
long ru_env_long(const char *name, long fallback);

/*
 * Make the temporary directory and its state folder and, with opts non-NULL,
 * start the emulator (opts->tls is forced on) and write its token to token_path.
 */
void ru_setup(struct ru_env *e, const char *tag, const struct fakegc_opts *opts);
/*
 * Kill the daemon if it runs, stop the emulator, remove the directory (kept, and its
 * path printed, when $GCDROP_TEST_KEEP is set: for a failure's post-mortem).
 */
void ru_teardown(struct ru_env *e);

/* dir/<name>, created (mode 0755). Returns a malloc'd path. */
char *ru_mkdir(const struct ru_env *e, const char *name);

/*
 * Write the configuration: the emulator's api_url, token_file, ca_file, state_dir,
 * then 'globals' (more top-level settings, may be ""), then "watches = ( <watches> );".
 */
void ru_write_config(const struct ru_env *e, const char *globals, const char *watches);

/*
 * Start `gcdrop run -c conf` in the background (stdout and stderr appended to the
 * log) with GCDROP_PART_SIZE=65536 and the extra environment 'env' (may be NULL).
 */
void ru_start(struct ru_env *e, char *const env[]);
/* Start and wait until the log says it started (at most timeout_ms). */
void ru_start_wait(struct ru_env *e, char *const env[], int timeout_ms);
/* Send sig, wait (15 s, then SIGKILL); returns the wait status, or -1. */
int ru_stop(struct ru_env *e, int sig);
/* Has the daemon exited on its own? Reaps it (pid becomes -1); *ret_status gets its status. */
bool ru_exited(struct ru_env *e, int *ret_status);

/* `gcdrop status --json` parsed; aborts the test when it fails. */
cJSON *ru_status(const struct ru_env *e);
/*
 * Number of cases named 'name' (NULL: any) of watch 'watch' (NULL: any) in 'state'
 * (NULL: any state of the queue; cases still settling, listed without an id,
 * count only when 'state' is "settling").
 */
int ru_count(const cJSON *status, const char *watch, const char *name, const char *state);
/* The first case named 'name' of 'watch' (NULL: any), or NULL. */
const cJSON *ru_case(const cJSON *status, const char *watch, const char *name);
/* A string member of a case ("state", "error", ...), or NULL. */
const char *ru_case_str(const cJSON *c, const char *key);
/* A member of the case's "remote" object, or NULL. */
const char *ru_case_remote(const cJSON *c, const char *key);

/*
 * Wait until every case in names (NULL-terminated) of 'watch' (NULL: any) is in a
 * terminal state (succeeded, failed, cancelled). On timeout aborts the test with the
 * statuses and the tail of the daemon log.
 */
void ru_wait_terminal(const struct ru_env *e, const char *watch, const char *const *names,
		      int timeout_ms);
/* Wait until case 'name' is in 'state'; false on timeout. */
bool ru_wait_state(const struct ru_env *e, const char *name, const char *state, int timeout_ms);

/* Does the daemon log contain s? How often? */
bool ru_log_has(const struct ru_env *e, const char *s);
size_t ru_log_count(const struct ru_env *e, const char *s);
/* Wait until the log contains s; false on timeout. */
bool ru_wait_log(const struct ru_env *e, const char *s, int timeout_ms);
/* Print the last 'bytes' of the log to stderr (for failure reports). */
void ru_log_tail(const struct ru_env *e, size_t bytes);

/* An .mha image of size bytes of payload (after a tiny header), content seeded. */
void ru_write_mha(const char *path, size_t size, uint64_t seed);
/*
 * A case made in dir/stage-<name> by fill(stage_path, ud) and renamed into
 * watchdir/<name> at once. fill gets the staging path: a directory it fills for a
 * folder case (is_dir) or the file path it writes for a one-file case.
 */
void ru_drop(const struct ru_env *e, const char *watchdir, const char *name, bool is_dir,
	     void (*fill)(const char *path, void *ud), void *ud);
/* sha256 of a file, hex. */
void ru_sha256(const char *path, char ret_hex[SHA256_HEX_SIZE]);

/* The emulator's state; aborts the test when it cannot be read. */
cJSON *ru_fg_state(const struct ru_env *e);
/* Number of elements of an array member of the state ("archive_items", "jobs", ...). */
int ru_fg_count(const cJSON *st, const char *key);
/* Requests the emulator answered or refused (control routes excluded; "down" included). */
long ru_fg_requests(const cJSON *st);
/* Requests whose "METHOD /route/" key contains 'part'. */
long ru_fg_requests_matching(const cJSON *st, const char *part);
/* The element of array 'key' whose "pk" is pk, or NULL. */
const cJSON *ru_fg_find(const cJSON *st, const char *key, const char *pk);
/* The set of file sha256 (hex) of image 'pk' in the state: malloc'd array, count in *ret_n. */
char **ru_fg_image_shas(const cJSON *st, const char *pk, int *ret_n);
void ru_strv_free(char **v, int n);
/* The last path component of an API URL (".../items/<pk>/" -> pk), malloc'd. */
char *ru_url_pk(const char *url);

/*
 * Files under 'path' (recursively, symlinks not followed) that contain 'needle';
 * each is reported to stderr. Returns how many.
 */
int ru_grep_tree(const char *path, const char *needle);
/* Does the string contain the needle? (for status output, messages) */
bool ru_has(const char *hay, const char *needle);

/*
 * Is the result folder 'dir' of an algorithm case complete for 'job' (an element
 * of the emulator state's "jobs")? job.json is there and is JSON, every output of
 * the job is there (a file output byte-identical: its sha256; a value output as
 * the same JSON) at its socket's relative path, and no temporary file
 * (*.gcdrop-part) is left. When not, says why in 'why'.
 */
bool ru_results_complete(const cJSON *job, const char *dir, char *why, size_t whylen);
/*
 * Is the job's only image input the file with sha256 'sha'? (the job of an
 * algorithm case of one image file). When not, says why in 'why'.
 */
bool ru_job_input_is(const cJSON *st, const cJSON *job, const char *sha, char *why,
		     size_t whylen);

/* PRAGMA integrity_check of the queue through the store's API; 0 when ok (msg otherwise). */
int ru_integrity(const struct ru_env *e, char **reterr_msg);

#endif
