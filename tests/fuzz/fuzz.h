/*
 * fuzz.h: the libFuzzer entry points every fuzz target defines.
 *
 * Each tests/fuzz/fuzz_*.c is built twice: with clang and -fsanitize=fuzzer
 * (`make fuzz`), where libFuzzer provides main(), and with the project's
 * compiler and tests/fuzz/standalone.c (`make check`), which feeds every file
 * of the target's seed corpus to LLVMFuzzerTestOneInput() so the harnesses
 * cannot rot. The prototypes live here so that -Wmissing-prototypes stays
 * quiet in the gcc build.
 */
#ifndef GCDROP_FUZZ_H
#define GCDROP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Run one input. Returns 0 (libFuzzer reserves other values). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Optional one-time set-up, called before the first input. Targets that need
 * none do not define it (standalone.c declares it weak).
 */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/*
 * A broken invariant: print what and where, then abort() so that libFuzzer
 * (and the standalone driver's test harness) records a crash with this input.
 */
#define FUZZ_ASSERT(cond)                                                              \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, \
				__LINE__, #cond);                                      \
			abort();                                                       \
		}                                                                      \
	} while (0)

/*
 * The input as a C string (cut at its first NUL, as a header value or a file
 * read as text would be): a malloc'd copy, or NULL when out of memory.
 * strndup() is avoided on purpose: the input is not NUL-terminated, and with
 * ASAN_OPTIONS=strict_string_checks=1 ASan reads strndup's source up to a NUL.
 */
static inline char *
fuzz_cstring(const void *data, size_t size)
{
	const char *nul = memchr(data, '\0', size);
	size_t len = nul ? (size_t)(nul - (const char *)data) : size;
	char *s = malloc(len + 1);

	if (s) {
		memcpy(s, data, len);
		s[len] = '\0';
	}
	return s;
}

#endif
