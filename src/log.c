/*
 * log.c: gcdrop's logging.
 *
 * DESIGN
 * One event is one unit: it is formatted completely in a local buffer and then
 * written with a single write(2) (stderr mode) or one sd_journal_send() call
 * (journal mode), so events from several threads never interleave. The only
 * shared state is the mode, the level and the list of secrets; the level is an
 * atomic, the secrets are guarded by a mutex and change only at start-up and
 * on reload.
 *
 * Stderr mode writes "<N>message [GCDROP_WATCH=… GCDROP_CASE=…]": the "<N>"
 * prefix is the sd-daemon convention, so that even a service whose stderr goes
 * to the journal as plain text keeps its priorities. Field values are escaped
 * (spaces, quotes, control characters and bytes >= 0x80 as \xNN) so that a line
 * is always one line, whatever the case name holds.
 *
 * Journal mode is chosen when JOURNAL_STREAM names the device and inode of our
 * stderr, which is how systemd tells a service that its stderr is the journal.
 */

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "log.h"

#define LOG_LINE_MAX 8192
#define LOG_MAX_SECRETS 4
#define LOG_REDACTED "[redacted]"

static atomic_int log_level_cur = LOG_INFO;
static enum log_mode log_mode_cur = LOG_MODE_STDERR;
static pthread_mutex_t log_secret_lock = PTHREAD_MUTEX_INITIALIZER;
static char *log_secrets[LOG_MAX_SECRETS];

static const char *const log_level_names[] = {
	[LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
	[LOG_ERR] = "err", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

int
log_level_from_name(const char *name)
{
	if (name == NULL)
		return -1;
	for (size_t i = 0; i < GC_ARRAY_SIZE(log_level_names); i++)
		if (strcmp(name, log_level_names[i]) == 0)
			return (int)i;
	if (strcmp(name, "error") == 0)
		return LOG_ERR;
	if (strcmp(name, "warn") == 0)
		return LOG_WARNING;
	return -1;
}

const char *
log_level_name(int priority)
{
	if (priority < 0 || (size_t)priority >= GC_ARRAY_SIZE(log_level_names))
		return "unknown";
	return log_level_names[priority];
}

/* True when JOURNAL_STREAM says our stderr is connected to the journal. */
static int
log_stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (e == NULL || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_init(enum log_mode mode, int max_priority)
{
	if (mode == LOG_MODE_AUTO)
		mode = log_stderr_is_journal() ? LOG_MODE_JOURNAL : LOG_MODE_STDERR;
	log_mode_cur = mode;
	log_set_level(max_priority);
}

void
log_set_level(int max_priority)
{
	if (max_priority < LOG_EMERG)
		max_priority = LOG_EMERG;
	if (max_priority > LOG_DEBUG)
		max_priority = LOG_DEBUG;
	atomic_store(&log_level_cur, max_priority);
}

int
log_get_level(void)
{
	return atomic_load(&log_level_cur);
}

enum log_mode
log_mode(void)
{
	return log_mode_cur;
}

void
log_add_secret(const char *secret)
{
	if (secret == NULL || strlen(secret) < 8)
		return;
	pthread_mutex_lock(&log_secret_lock);
	for (size_t i = 0; i < LOG_MAX_SECRETS; i++) {
		if (log_secrets[i] != NULL && strcmp(log_secrets[i], secret) == 0)
			break;
		if (log_secrets[i] == NULL) {
			log_secrets[i] = strdup(secret);
			break;
		}
	}
	pthread_mutex_unlock(&log_secret_lock);
}

void
log_clear_secrets(void)
{
	pthread_mutex_lock(&log_secret_lock);
	for (size_t i = 0; i < LOG_MAX_SECRETS; i++) {
		if (log_secrets[i] != NULL) {
			explicit_bzero(log_secrets[i], strlen(log_secrets[i]));
			free(log_secrets[i]);
			log_secrets[i] = NULL;
		}
	}
	pthread_mutex_unlock(&log_secret_lock);
}

/*
 * Replace every occurrence of a registered secret in 's' (NUL-terminated, in a
 * buffer of 'cap' bytes) by LOG_REDACTED. The redaction is never longer than a
 * secret (secrets are >= 8 bytes, LOG_REDACTED is 10), so to stay simple a
 * secret shorter than the marker is replaced by as much of it as fits.
 */
static void
log_redact(char *s, size_t cap)
{
	pthread_mutex_lock(&log_secret_lock);
	for (size_t i = 0; i < LOG_MAX_SECRETS; i++) {
		const char *sec = log_secrets[i];
		size_t sl, ml = strlen(LOG_REDACTED);
		char *p;

		if (sec == NULL)
			continue;
		sl = strlen(sec);
		while ((p = strstr(s, sec)) != NULL) {
			size_t rl = ml <= sl ? ml : sl;
			size_t tail = strlen(p + sl);

			memcpy(p, LOG_REDACTED, rl);
			memmove(p + rl, p + sl, tail + 1);
		}
	}
	pthread_mutex_unlock(&log_secret_lock);
	(void)cap;
}

/* Append 'v' to the line, escaped so that it stays one printable token. */
static size_t
log_append_escaped(char *out, size_t off, size_t cap, const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
		if (off + 5 >= cap)
			break;
		if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\' || *p == ']')
			off += (size_t)snprintf(out + off, cap - off, "\\x%02x", *p);
		else
			out[off++] = (char)*p;
	}
	out[off] = '\0';
	return off;
}

static size_t
log_append_field(char *out, size_t off, size_t cap, int *first, const char *name, const char *v)
{
	int n;

	if (v == NULL || off + 2 >= cap)
		return off;
	n = snprintf(out + off, cap - off, "%s%s=", *first ? " [" : " ", name);
	if (n < 0 || (size_t)n >= cap - off)
		return off;
	off += (size_t)n;
	*first = 0;
	return log_append_escaped(out, off, cap, v);
}

static void
log_write_stderr(int priority, const struct log_ctx *ctx, const char *msg)
{
	char line[LOG_LINE_MAX];
	char num[32];
	size_t off;
	int first = 1;
	int n;

	n = snprintf(line, sizeof(line) - 2, "<%d>%s", priority, msg);
	off = n < 0 ? 0 : (size_t)n;
	if (off > sizeof(line) - 64)
		off = sizeof(line) - 64;
	/* Control characters in the message itself become spaces: one event, one line. */
	for (size_t i = 0; i < off; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[off] = '\0';
	if (ctx != NULL) {
		off = log_append_field(line, off, sizeof(line) - 2, &first, "GCDROP_WATCH", ctx->watch);
		off = log_append_field(line, off, sizeof(line) - 2, &first, "GCDROP_CASE", ctx->case_name);
		off = log_append_field(line, off, sizeof(line) - 2, &first, "GCDROP_STATE", ctx->state);
		off = log_append_field(line, off, sizeof(line) - 2, &first, "GCDROP_SESSION", ctx->session);
		off = log_append_field(line, off, sizeof(line) - 2, &first, "GCDROP_JOB", ctx->job);
		if (ctx->attempt >= 0) {
			snprintf(num, sizeof(num), "%d", ctx->attempt);
			off = log_append_field(line, off, sizeof(line) - 2, &first, "GCDROP_ATTEMPT", num);
		}
		if (ctx->bytes >= 0) {
			snprintf(num, sizeof(num), "%lld", (long long)ctx->bytes);
			off = log_append_field(line, off, sizeof(line) - 2, &first, "GCDROP_BYTES", num);
		}
		off = log_append_field(line, off, sizeof(line) - 2, &first, "MESSAGE_ID", ctx->message_id);
		if (!first)
			line[off++] = ']';
	}
	line[off] = '\0';
	log_redact(line, sizeof(line));
	off = strlen(line);
	line[off++] = '\n';
	/* One write per event; a short write to a pipe of < PIPE_BUF is atomic. */
	for (size_t done = 0; done < off;) {
		ssize_t w = write(STDERR_FILENO, line + done, off - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		done += (size_t)w;
	}
}

/*
 * Append one "NAME=value" iovec to the journal entry, with secrets redacted.
 * 'store' is the caller's buffer for the formatted field.
 */
static void
log_journal_field(struct iovec *iov, int *n, char *store, size_t cap, const char *name,
		  const char *value)
{
	if (value == NULL)
		return;
	/* A value longer than the field's buffer is cut; the entry still goes out. */
	if (snprintf(store, cap, "%s=%s", name, value) >= (int)cap)
		store[cap - 1] = '\0';
	log_redact(store, cap);
	iov[*n].iov_base = store;
	iov[*n].iov_len = strlen(store);
	(*n)++;
}

static void
log_write_journal(int priority, const struct log_ctx *ctx, const char *msg)
{
	char m[LOG_LINE_MAX], pr[32], w[512], c[1024], st[64], se[512], jb[512];
	char at[48], by[48], id[64];
	char num[32];
	struct iovec iov[12];
	int n = 0;

	log_journal_field(iov, &n, m, sizeof(m), "MESSAGE", msg);
	snprintf(num, sizeof(num), "%d", priority);
	log_journal_field(iov, &n, pr, sizeof(pr), "PRIORITY", num);
	iov[n].iov_base = (char *)"SYSLOG_IDENTIFIER=gcdrop";
	iov[n].iov_len = strlen("SYSLOG_IDENTIFIER=gcdrop");
	n++;
	if (ctx != NULL) {
		log_journal_field(iov, &n, w, sizeof(w), "GCDROP_WATCH", ctx->watch);
		log_journal_field(iov, &n, c, sizeof(c), "GCDROP_CASE", ctx->case_name);
		log_journal_field(iov, &n, st, sizeof(st), "GCDROP_STATE", ctx->state);
		log_journal_field(iov, &n, se, sizeof(se), "GCDROP_SESSION", ctx->session);
		log_journal_field(iov, &n, jb, sizeof(jb), "GCDROP_JOB", ctx->job);
		if (ctx->attempt >= 0) {
			snprintf(num, sizeof(num), "%d", ctx->attempt);
			log_journal_field(iov, &n, at, sizeof(at), "GCDROP_ATTEMPT", num);
		}
		if (ctx->bytes >= 0) {
			snprintf(num, sizeof(num), "%lld", (long long)ctx->bytes);
			log_journal_field(iov, &n, by, sizeof(by), "GCDROP_BYTES", num);
		}
		log_journal_field(iov, &n, id, sizeof(id), "MESSAGE_ID", ctx->message_id);
	}
	/* Nothing sensible can be done when the journal refuses an entry. */
	(void)sd_journal_sendv(iov, n);
}

static void
log_vevent(int priority, const struct log_ctx *ctx, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX];
	int saved = errno;

	if (priority > atomic_load(&log_level_cur)) {
		errno = saved;
		return;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_mode_cur == LOG_MODE_JOURNAL)
		log_write_journal(priority, ctx, msg);
	else
		log_write_stderr(priority, ctx, msg);
	errno = saved;
}

void
log_msg(int priority, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vevent(priority, NULL, fmt, ap);
	va_end(ap);
}

void
log_event(int priority, const struct log_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vevent(priority, ctx, fmt, ap);
	va_end(ap);
}
