/*
 * fakegc-client.h: run the grand-challenge emulator (tests/fakegc) from a Check suite.
 *
 * fakegc_start() makes a private temporary directory, optionally a throw-away CA and
 * server certificate in it (python3 -m fakegc.tls), then starts
 * "$PYTHON3 -m fakegc --port 0 ..." as a child process with its working directory
 * $FAKEGC_DIR (the directory that holds the fakegc package, i.e. tests/), and waits,
 * with a deadline, for the base URL the emulator prints on its first stdout line.
 * The emulator's stderr goes to a log file in the temporary directory.
 *
 * fakegc_state(), fakegc_parts(), fakegc_storage() and fakegc_set_faults() talk to
 * the emulator's /__fakegc__/ control routes with libcurl (trusting only the
 * emulator's CA when TLS is on).
 * fakegc_stop() sends SIGTERM, waits with a deadline, then SIGKILLs, and removes the
 * temporary directory.  One struct fakegc is meant for one thread.
 */
#ifndef GCDROP_FAKEGC_CLIENT_H
#define GCDROP_FAKEGC_CLIENT_H

#include <stdbool.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "attrs.h"

/* The token fakegc_start() configures when opts->token is NULL (64 hex characters). */
#define FAKEGC_DEFAULT_TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct fakegc_opts {
	bool tls;			/* serve HTTPS with a fresh test CA */
	const char *token;		/* accepted token; NULL: FAKEGC_DEFAULT_TOKEN */
	const char *fixtures;		/* fixture JSON file; NULL: the built-in set */
	const char *faults;		/* initial fault configuration (JSON); may be NULL */
	double tick;			/* seconds per asynchronous step; <= 0: 0.2 */
	long long min_part_size;	/* minimum non-final part size; <= 0: 5 MiB */
	const char *const *extra_args;	/* more CLI arguments, NULL-terminated; may be NULL */
	int start_timeout_ms;		/* how long to wait for the URL; <= 0: 15000 */
	/*
	 * With tls: a directory that keeps the CA and server certificate between
	 * starts (made there on first use, ~1 s; reused afterwards). NULL: fresh
	 * material in the emulator's own temporary directory every time.
	 */
	const char *tls_dir;
};

struct fakegc;

/*
 * Start an emulator. opts may be NULL (plain HTTP, defaults). On success writes a new
 * handle to *ret and returns 0; on failure returns a negative errno (-ENOENT: python3
 * or the package not found, -ETIMEDOUT: no URL before the deadline, -EIO: the child
 * exited or the TLS material could not be made) and *ret is untouched.
 */
int fakegc_start(const struct fakegc_opts *opts, struct fakegc **ret) GC_WUR;

/* "https://127.0.0.1:PORT/" (or http://); valid until fakegc_stop(). */
const char *fakegc_base_url(const struct fakegc *fg);

/* The API root: base URL + "api/v1/". */
const char *fakegc_api_url(const struct fakegc *fg);

/* Path of the CA certificate (PEM) to trust, or NULL when the emulator runs plain HTTP. */
const char *fakegc_ca_file(const struct fakegc *fg);

/* The accepted token (64 lowercase hex characters). */
const char *fakegc_token(const struct fakegc *fg);

/* Process id of the emulator. */
pid_t fakegc_pid(const struct fakegc *fg);

/* Path of the file that collects the emulator's stderr. */
const char *fakegc_log_file(const struct fakegc *fg);

/*
 * GET /__fakegc__/state and parse it. Returns a cJSON tree the caller frees with
 * cJSON_Delete(), or NULL when the request or the parsing failed.
 */
cJSON *fakegc_state(struct fakegc *fg);

/*
 * GET /__fakegc__/parts: the part PUTs the emulator received and acknowledged, per
 * upload and part number: {"uploads": {"<upload pk>": {"puts": {"<n>": count},
 * "acks": {"<n>": count}, "sizes": {"<n>": bytes}}}, "puts": total, "acks": total,
 * "in_flight_max": most part bodies arriving at once}. A PUT is counted as received
 * even when a fault or a refusal answered it or its body never arrived.
 * Returns a cJSON tree the caller frees with cJSON_Delete(), or NULL on failure.
 */
cJSON *fakegc_parts(struct fakegc *fg);

/*
 * GET /__fakegc__/storage: parts and bytes storage acknowledged, uploads completed,
 * and the wall-clock times (seconds) of the first part body byte, the last
 * acknowledgement and the last completion (null before the first). A cJSON tree the
 * caller frees, or NULL on failure.
 */
cJSON *fakegc_storage(struct fakegc *fg);

/* POST /__fakegc__/storage: reset those counters. Returns 0 or -EIO. */
int fakegc_storage_reset(struct fakegc *fg) GC_WUR;

/*
 * Replace the fault configuration with 'json' (the format of tests/fakegc/README.md).
 * Returns 0, -EINVAL when the emulator refused the configuration, or -EIO when the
 * request failed.
 */
int fakegc_set_faults(struct fakegc *fg, const char *json) GC_WUR;

/*
 * Advance the emulator's virtual clock by 'seconds' (asynchronous steps that fall due
 * run at once). Returns 0 or -EIO.
 */
int fakegc_advance(struct fakegc *fg, double seconds) GC_WUR;

/*
 * Stop the emulator (SIGTERM, at most 10 s, then SIGKILL), reap it, remove the
 * temporary directory and free the handle. Accepts NULL. Returns the child's wait
 * status, or -1 when it had to be killed or could not be reaped.
 */
int fakegc_stop(struct fakegc *fg);

#endif
