/*
 * config.h: the gcdrop configuration (spec section 4) as a plain, immutable struct.
 *
 * config_load() reads a libconfig file into a freshly allocated struct config:
 * defaults first, then the file's values, then cross-checks. Every string in the
 * struct is owned by it (copied out of libconfig) and released by config_free().
 * A struct config is never modified after config_load() returns; a reload builds
 * a new one and swaps it in.
 */
#ifndef GCDROP_CONFIG_H
#define GCDROP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "attrs.h"

#define CONFIG_DEFAULT_PATH "/etc/gcdrop/gcdrop.conf"

enum config_dest {
	CONFIG_DEST_ALGORITHM,
	CONFIG_DEST_ARCHIVE,
	CONFIG_DEST_READER_STUDY,
};

enum config_action {
	CONFIG_ACTION_KEEP,
	CONFIG_ACTION_MOVE,
	CONFIG_ACTION_DELETE,
};

/* One static socket value from a watch's `values` list. */
struct config_value {
	char *socket;	/* socket slug */
	char *json;	/* the value, as JSON text (already checked to parse) */
};

struct config_watch {
	char *name;
	char *path;			/* absolute, no trailing slash */
	enum config_dest dest;
	char *slug;			/* algorithm / archive / reader-study slug */
	char *socket;			/* NULL: the default of spec section 2 step 4 */
	struct config_value *values;
	size_t n_values;
	int settle_seconds;		/* default 30 */
	int max_settle_seconds;		/* default 86400 */
	int scan_interval;		/* default 60 */
	char *ready_marker;		/* NULL when not set */
	int job_timeout;		/* default 86400 */
	char *results_dir;		/* NULL when not set */
	enum config_action on_success;	/* default keep */
	enum config_action on_failure;	/* default keep */
	char *done_dir;			/* NULL when not set */
	char *failed_dir;		/* NULL when not set */
	int line;			/* line of the watch in the file, for messages */
};

struct config {
	char *path;			/* the file this was read from */
	char *api_url;			/* ends in '/' */
	char *token_file;		/* NULL when not set */
	char *ca_file;			/* NULL when not set */
	char *state_dir;
	int workers;			/* default 4 */
	int64_t max_send_speed;		/* bytes per second, 0 = unlimited */
	int max_attempts;		/* default 10 */
	int64_t min_free_space;		/* bytes, default 1 GiB */
	int log_level;			/* syslog priority, default LOG_INFO */
	struct config_watch *watches;
	size_t n_watches;
};

/* Flags for config_load(). */
enum {
	/* Do not require the token (gcdrop status, hold, ...). */
	CONFIG_LOAD_NO_TOKEN = 1 << 0,
};

/*
 * Read and validate the configuration at 'path'.
 * On success returns 0 and stores a new struct config in *ret_config.
 * On failure returns a negative errno (-EINVAL for a bad file, -ENOENT when the
 * file is missing, ...) and stores in *reterr_msg a malloc'd message of the form
 * "FILE:LINE: KEY: reason" (without the line when it is unknown); the caller frees
 * it. *ret_config is not touched on failure.
 */
int config_load(const char *path, int flags, struct config **ret_config, char **reterr_msg) GC_WUR;

/*
 * Find the token as spec section 4 orders the sources (token_file, then
 * $CREDENTIALS_DIRECTORY/gcdrop-token, then $GRAND_CHALLENGE_AUTHORIZATION), and
 * normalise it to the "Bearer <token>" header value the platform expects.
 * On success stores a malloc'd string in *ret_header (the caller wipes and frees
 * it with config_token_free). On failure returns a negative errno and a malloc'd
 * message naming the source; the token itself is never part of a message.
 */
int config_token(const struct config *config, char **ret_header, char **reterr_msg) GC_WUR;

/* Wipe and free a token returned by config_token(). Accepts NULL. */
void config_token_free(char *header);

/*
 * Normalise a raw token string as the platform's client does: runs of spaces
 * collapse, surrounding whitespace goes, one or two words are accepted and the
 * last word is the token. Returns a malloc'd "Bearer <token>" or NULL when the
 * format is invalid (or on out-of-memory).
 */
char *config_token_normalise(const char *raw);

/* Look up a watch by name; NULL when there is none. */
const struct config_watch *config_find_watch(const struct config *config, const char *name);

/* Names of enum values, for messages and status. */
const char *config_dest_name(enum config_dest dest);
const char *config_action_name(enum config_action action);

/* Free a configuration. Accepts NULL; returns NULL. */
struct config *config_free(struct config *config);

#endif
