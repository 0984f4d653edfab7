/*
 * buf.c: a bounded, growable byte buffer.
 *
 * Workload: HTTP response bodies (JSON documents of a few KiB, capped at a few
 * MiB), error texts and request bodies built with buf_printf(). The buffer grows
 * by doubling, starting at BUF_MIN_ALLOC, and never allocates more than the cap
 * plus the terminating NUL. Any failed append frees the contents: the buffer is
 * then empty and valid, and the caller only has to report the error. This is
 * what makes it safe to feed from a network callback that cannot clean up.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define BUF_MIN_ALLOC 64

void
buf_init(struct buf *b, size_t cap)
{
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->cap = cap;
}

void
buf_clear(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
}

/* Make room for len more bytes plus the NUL, or fail (clearing the buffer). */
static int
buf_reserve(struct buf *b, size_t len)
{
	size_t need, alloc;
	char *p;

	if (len > b->cap || b->len > b->cap - len) {
		buf_clear(b);
		return -E2BIG;
	}
	need = b->len + len + 1;
	if (need <= b->alloc)
		return 0;
	alloc = b->alloc ? b->alloc : BUF_MIN_ALLOC;
	while (alloc < need)
		alloc = alloc > SIZE_MAX / 2 ? need : alloc * 2;
	/* The cap plus the NUL is the most that will ever be needed. */
	if (alloc > b->cap + 1)
		alloc = b->cap + 1;
	p = realloc(b->data, alloc);
	if (!p) {
		buf_clear(b);
		return -ENOMEM;
	}
	b->data = p;
	b->alloc = alloc;
	return 0;
}

int
buf_append(struct buf *b, const void *mem, size_t len)
{
	int r;

	if (len == 0)
		return 0;
	r = buf_reserve(b, len);
	if (r < 0)
		return r;
	memcpy(b->data + b->len, mem, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_appends(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	int n, r;

	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0) {
		buf_clear(b);
		return -EINVAL;
	}
	if (n == 0)
		return 0;
	r = buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

char *
buf_take(struct buf *b, size_t *ret_len)
{
	char *p;
	size_t len;

	if (b->data) {
		p = b->data;
		len = b->len;
	} else {
		p = strdup("");
		if (!p)
			return NULL;
		len = 0;
	}
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	if (ret_len)
		*ret_len = len;
	return p;
}

const char *
buf_str(const struct buf *b)
{
	return b->data ? b->data : "";
}

size_t
buf_len(const struct buf *b)
{
	return b->len;
}
