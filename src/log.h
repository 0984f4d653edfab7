/*
 * log.h: gcdrop's logging (log_ prefix).
 *
 * One call logs one event with a syslog priority, a message and the structured
 * GCDROP_* fields of spec section 6. Under systemd (stderr connected to the
 * journal, as JOURNAL_STREAM tells) events go to the journal through
 * sd_journal_send(); otherwise each event is one line on stderr, prefixed with
 * its "<N>" priority and followed by its fields, so that it stays readable and
 * greppable. All functions are thread-safe and preserve errno.
 *
 * Secrets: the token is registered with log_add_secret() as soon as it is read;
 * any message or field that would contain it is written with "[redacted]" in its
 * place. Callers still never pass a token or a presigned query string on purpose.
 */
#ifndef GCDROP_LOG_H
#define GCDROP_LOG_H

#include <stdint.h>
#include <syslog.h>

#include "attrs.h"

enum log_mode {
	LOG_MODE_AUTO,		/* journal when JOURNAL_STREAM matches stderr, else stderr */
	LOG_MODE_STDERR,
	LOG_MODE_JOURNAL,
};

/*
 * Structured context of an event. Every member may be NULL / negative, in which
 * case its field is left out. message_id is a 32-hex-digit MESSAGE_ID (one per
 * kind of event, see log.c).
 */
struct log_ctx {
	const char *watch;
	const char *case_name;
	const char *state;
	const char *session;	/* upload session URL */
	const char *job;	/* job URL */
	int attempt;		/* < 0: absent */
	int64_t bytes;		/* < 0: absent */
	const char *message_id;
};

#define LOG_CTX_INIT { .attempt = -1, .bytes = -1 }

/*
 * MESSAGE_IDs, one per kind of event, so that `journalctl MESSAGE_ID=…` finds
 * every event of that kind. Generated once (random 128-bit), never to change.
 */
#define LOG_MID_STARTED "6f1c0b5e3a2d4c8e9b7a1f2e3d4c5b6a"
#define LOG_MID_STOPPING "8d2e4f6a1b3c5d7e9f0a2b4c6d8e0f1a"
#define LOG_MID_RELOADED "a3b5c7d9e1f20a4b6c8d0e2f4a6b8c0d"
#define LOG_MID_CASE_STATE "c41e2f0a9b8d4e6f8a1b3c5d7e9f1a2b"
#define LOG_MID_CASE_FAILED "e7d9b1f3a5c74e2b8d0f6a4c2e8b0d1f"
#define LOG_MID_CASE_RETRY "1b3d5f7a9c2e4a6c8e0b2d4f6a8c0e2d"
#define LOG_MID_CASE_DUPLICATE "2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c0b"
#define LOG_MID_AUTH "5e7a9c1b3d5f7e9a1c3b5d7f9e1a3c5b"
#define LOG_MID_DISK "9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b"
#define LOG_MID_WATCH "b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2"

/* Choose the output and the most verbose priority written (LOG_ERR … LOG_DEBUG). */
void log_init(enum log_mode mode, int max_priority);
void log_set_level(int max_priority);
int log_get_level(void);

/* Which output log_init() chose. */
enum log_mode log_mode(void);

/*
 * Register a string that must never be written (the token). The string is
 * copied; up to a few secrets are kept. Strings shorter than 8 bytes are ignored
 * (they would redact ordinary words).
 */
void log_add_secret(const char *secret);
void log_clear_secrets(void);

/* Log a plain event. */
void log_msg(int priority, const char *fmt, ...) GC_PRINTF(2, 3);

/* Log an event with structured fields. ctx may be NULL. */
void log_event(int priority, const struct log_ctx *ctx, const char *fmt, ...) GC_PRINTF(3, 4);

/* Parse "err", "warning", "notice", "info", "debug"; -1 when unknown. */
int log_level_from_name(const char *name);
const char *log_level_name(int priority);

/* Convenience wrappers. */
#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
