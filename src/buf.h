/*
 * buf.h: a bounded, growable byte buffer (buf_ prefix).
 *
 * Every buffer fed from the network or the disk has a named cap. A struct buf
 * is a small value that callers keep on the stack or inside their own structs;
 * its members are visible only so that it can be embedded: use the API, never
 * the members. The idea is curl's dynbuf: the cap is fixed at buf_init(), and a
 * failed append (past the cap, or out of memory) frees the contents, so a
 * caller never has a half-filled buffer to clean up.
 *
 * The contents are always NUL-terminated once anything was appended, so text
 * can be read with buf_str() without copying.
 */
#ifndef GCDROP_BUF_H
#define GCDROP_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "attrs.h"

struct buf {
	char *data;	/* NULL until the first append */
	size_t len;	/* bytes held, without the terminating NUL */
	size_t alloc;	/* bytes allocated for data, including the NUL */
	size_t cap;	/* largest len allowed */
};

/* An empty buffer that can hold at most cap bytes. Allocates nothing. */
void buf_init(struct buf *b, size_t cap);

/*
 * Append len bytes from mem. Returns 0, -E2BIG when the result would hold more
 * than the cap, or -ENOMEM. On any failure the buffer is cleared (as by
 * buf_clear()) and keeps its cap, so the caller may reuse it. Appending zero
 * bytes succeeds and changes nothing.
 */
int buf_append(struct buf *b, const void *mem, size_t len) GC_WUR;

/* buf_append() of a NUL-terminated string (without its NUL). */
int buf_appends(struct buf *b, const char *s) GC_WUR;

/* Append printf-formatted text. Same results and failure rule as buf_append(). */
int buf_printf(struct buf *b, const char *fmt, ...) GC_PRINTF(2, 3) GC_WUR;
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) GC_PRINTF(2, 0) GC_WUR;

/*
 * Hand the contents to the caller: returns a malloc'ed, NUL-terminated copy of
 * the bytes (the buffer's own memory, no copy is made when possible) and stores
 * their length (without the NUL) in *ret_len when ret_len is not NULL. An empty
 * buffer yields an allocated "". The buffer is left empty with its cap. Returns
 * NULL only when out of memory (then the buffer is cleared too).
 */
char *buf_take(struct buf *b, size_t *ret_len) GC_WUR;

/* Free the contents; the buffer is empty and keeps its cap. */
void buf_clear(struct buf *b);

/* The contents as a NUL-terminated string ("" when empty); owned by the buffer. */
const char *buf_str(const struct buf *b);

/* Number of bytes held. */
size_t buf_len(const struct buf *b);

#endif
