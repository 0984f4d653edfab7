/*
 * sha256.h: SHA-256 (FIPS 180-4) for case fingerprints and file digests (sha256_ prefix).
 *
 * A struct sha256 is a small value the caller keeps on the stack: sha256_init(),
 * any number of sha256_update() calls, then sha256_final(). Its members are
 * private; use the functions. Nothing here allocates, logs or keeps global state,
 * so every function is thread-safe on distinct contexts.
 */
#ifndef GCDROP_SHA256_H
#define GCDROP_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "attrs.h"

#define SHA256_DIGEST_SIZE 32
#define SHA256_HEX_SIZE 65		/* 64 hex digits and the terminating NUL */

struct sha256 {
	uint32_t h[8];
	uint64_t n_bytes;		/* message length so far */
	uint8_t block[64];
	size_t n_block;			/* bytes waiting in block[] */
};

/* Start a new digest. */
void sha256_init(struct sha256 *ctx);

/* Feed 'len' bytes of 'data' (may be NULL when len is 0). */
void sha256_update(struct sha256 *ctx, const void *data, size_t len);

/*
 * Finish the digest and store its 32 bytes in 'ret_digest'. The context is left
 * in an unspecified state; sha256_init() it again to reuse it.
 */
void sha256_final(struct sha256 *ctx, uint8_t ret_digest[SHA256_DIGEST_SIZE]);

/* Write 'digest' as 64 lower-case hex digits plus NUL into 'ret_hex'. */
void sha256_to_hex(const uint8_t digest[SHA256_DIGEST_SIZE], char ret_hex[SHA256_HEX_SIZE]);

/* One-shot digest of a buffer, as lower-case hex. */
void sha256_hex(const void *data, size_t len, char ret_hex[SHA256_HEX_SIZE]);

/*
 * Digest everything readable from 'fd' from its current offset to end of file,
 * as lower-case hex, and store the number of bytes read in *ret_size (may be
 * NULL). The fd is neither closed nor rewound. Returns 0, or a negative errno from
 * read(2) (EINTR is retried); nothing is written on failure.
 */
int sha256_fd(int fd, char ret_hex[SHA256_HEX_SIZE], int64_t *ret_size) GC_WUR;

/*
 * Digest the regular file 'path', relative to directory fd 'dirfd' (or
 * AT_FDCWD). The file is opened O_RDONLY|O_NOFOLLOW|O_NONBLOCK, so a symlink gives
 * -ELOOP and a fifo cannot block; anything but a regular file gives -EINVAL.
 * Returns 0 or a negative errno; 'ret_hex' is written only on success.
 */
int sha256_file(int dirfd, const char *path, char ret_hex[SHA256_HEX_SIZE]) GC_WUR;

#endif
