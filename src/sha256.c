/*
 * sha256.c: SHA-256 as described in FIPS 180-4, sections 4.1.2, 4.2.2, 5.1.1,
 * 5.3.3 and 6.2.
 *
 * Written from the standard, for two users: scan's case fingerprint (a digest
 * of paths, sizes and mtimes) and receipts that need a file's content digest.
 * It is not meant to be fast beyond "reads a file at disk speed": one block at
 * a time, no assembly. The context buffers at most one 64-byte block; files
 * are read in 64 KiB chunks on the stack, so memory use does not grow with the
 * file.
 */
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* FIPS 180-4 section 4.2.2: the first 32 bits of the fractional parts of the
 * cube roots of the first 64 primes. */
static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

/* Section 5.3.3: the initial hash value H(0). */
static const uint32_t H0[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static inline uint32_t
rotr(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

/* Section 4.1.2: the six logical functions. */
#define CH(x, y, z) (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define BSIG0(x) (rotr((x), 2) ^ rotr((x), 13) ^ rotr((x), 22))
#define BSIG1(x) (rotr((x), 6) ^ rotr((x), 11) ^ rotr((x), 25))
#define SSIG0(x) (rotr((x), 7) ^ rotr((x), 18) ^ ((x) >> 3))
#define SSIG1(x) (rotr((x), 17) ^ rotr((x), 19) ^ ((x) >> 10))

/* Section 6.2.2: process one 512-bit block. */
static void
sha256_block(uint32_t h[8], const uint8_t *p)
{
	uint32_t w[64];
	uint32_t a, b, c, d, e, f, g, hh;

	for (int t = 0; t < 16; t++)
		w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
		       (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
	for (int t = 16; t < 64; t++)
		w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];

	a = h[0]; b = h[1]; c = h[2]; d = h[3];
	e = h[4]; f = h[5]; g = h[6]; hh = h[7];
	for (int t = 0; t < 64; t++) {
		uint32_t t1 = hh + BSIG1(e) + CH(e, f, g) + K[t] + w[t];
		uint32_t t2 = BSIG0(a) + MAJ(a, b, c);

		hh = g; g = f; f = e; e = d + t1;
		d = c; c = b; b = a; a = t1 + t2;
	}
	h[0] += a; h[1] += b; h[2] += c; h[3] += d;
	h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

void
sha256_init(struct sha256 *ctx)
{
	memcpy(ctx->h, H0, sizeof(H0));
	ctx->n_bytes = 0;
	ctx->n_block = 0;
}

void
sha256_update(struct sha256 *ctx, const void *data, size_t len)
{
	const uint8_t *p = data;

	ctx->n_bytes += len;
	if (ctx->n_block > 0) {
		size_t take = 64 - ctx->n_block;

		if (take > len)
			take = len;
		memcpy(ctx->block + ctx->n_block, p, take);
		ctx->n_block += take;
		p += take;
		len -= take;
		if (ctx->n_block < 64)
			return;
		sha256_block(ctx->h, ctx->block);
		ctx->n_block = 0;
	}
	for (; len >= 64; p += 64, len -= 64)
		sha256_block(ctx->h, p);
	if (len > 0) {
		memcpy(ctx->block, p, len);
		ctx->n_block = len;
	}
}

void
sha256_final(struct sha256 *ctx, uint8_t ret_digest[SHA256_DIGEST_SIZE])
{
	/* Section 5.1.1: a 1 bit, zeros up to 448 mod 512, then the length in bits. */
	uint64_t bits = ctx->n_bytes * 8;

	ctx->block[ctx->n_block++] = 0x80;
	if (ctx->n_block > 56) {
		memset(ctx->block + ctx->n_block, 0, 64 - ctx->n_block);
		sha256_block(ctx->h, ctx->block);
		ctx->n_block = 0;
	}
	memset(ctx->block + ctx->n_block, 0, 56 - ctx->n_block);
	for (int i = 0; i < 8; i++)
		ctx->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
	sha256_block(ctx->h, ctx->block);

	for (int i = 0; i < 8; i++) {
		ret_digest[4 * i] = (uint8_t)(ctx->h[i] >> 24);
		ret_digest[4 * i + 1] = (uint8_t)(ctx->h[i] >> 16);
		ret_digest[4 * i + 2] = (uint8_t)(ctx->h[i] >> 8);
		ret_digest[4 * i + 3] = (uint8_t)ctx->h[i];
	}
}

void
sha256_to_hex(const uint8_t digest[SHA256_DIGEST_SIZE], char ret_hex[SHA256_HEX_SIZE])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
		ret_hex[2 * i] = hex[digest[i] >> 4];
		ret_hex[2 * i + 1] = hex[digest[i] & 0xf];
	}
	ret_hex[64] = '\0';
}

void
sha256_hex(const void *data, size_t len, char ret_hex[SHA256_HEX_SIZE])
{
	struct sha256 ctx;
	uint8_t digest[SHA256_DIGEST_SIZE];

	sha256_init(&ctx);
	sha256_update(&ctx, data, len);
	sha256_final(&ctx, digest);
	sha256_to_hex(digest, ret_hex);
}

int
sha256_fd(int fd, char ret_hex[SHA256_HEX_SIZE], int64_t *ret_size)
{
	struct sha256 ctx;
	uint8_t digest[SHA256_DIGEST_SIZE];
	uint8_t buf[64 * 1024];
	int64_t total = 0;

	sha256_init(&ctx);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		sha256_update(&ctx, buf, (size_t)n);
		total += n;
	}
	sha256_final(&ctx, digest);
	sha256_to_hex(digest, ret_hex);
	if (ret_size)
		*ret_size = total;
	return 0;
}

int
sha256_file(int dirfd, const char *path, char ret_hex[SHA256_HEX_SIZE])
{
	struct stat st;
	int fd, r;

	fd = openat(dirfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		goto out_close;
	}
	r = sha256_fd(fd, ret_hex, NULL);
out_close:
	close(fd);
	return r;
}
