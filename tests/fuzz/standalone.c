/*
 * standalone.c: a main() for a fuzz target without libFuzzer (`make check`).
 *
 * It feeds every regular file of the given directories (or files) to
 * LLVMFuzzerTestOneInput(), one at a time, in name order, so a run is the same
 * every time. Without arguments it runs over the target's seed corpus,
 * $top_srcdir/tests/fuzz/corpus/FUZZ_NAME (FUZZ_NAME is set when the program is
 * built), which also holds the regression inputs of past findings: a harness
 * that no longer compiles, or an input that crashes again, fails `make check`.
 *
 * A crash ends the process (that is the failure the harness reports); before
 * each input its path is printed, so the log names the culprit. The last line
 * is "N passed, N failed" like the other test programs; a corpus with no
 * inputs at all counts as a failure, so a wrong path cannot pass silently.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#ifndef FUZZ_NAME
#error "build with -DFUZZ_NAME='\"target\"'"
#endif

/* Targets without set-up do not define it. */
#pragma weak LLVMFuzzerInitialize

/* Inputs larger than this are not fed (libFuzzer's own default -max_len is far below). */
#define STANDALONE_MAX_INPUT ((size_t)16 << 20)

static int
run_file(const char *path, unsigned *n_passed, unsigned *n_failed)
{
	FILE *f;
	uint8_t *data = NULL;
	size_t len = 0, cap = 0;

	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		(*n_failed)++;
		return -errno;
	}
	for (;;) {
		size_t got;

		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 4096;
			uint8_t *n = ncap > STANDALONE_MAX_INPUT ? NULL : realloc(data, ncap);

			if (!n) {
				fprintf(stderr, "%s: too large or out of memory\n", path);
				free(data);
				fclose(f);
				(*n_failed)++;
				return -ENOMEM;
			}
			data = n;
			cap = ncap;
		}
		got = fread(data + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	fclose(f);
	printf("running %s (%zu bytes)\n", path, len);
	fflush(stdout);
	/* An exact-size copy, so that ASan or valgrind catch a read past the input. */
	{
		uint8_t *exact = malloc(len ? len : 1);

		if (!exact) {
			free(data);
			(*n_failed)++;
			return -ENOMEM;
		}
		memcpy(exact, data, len);
		free(data);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
	}
	(*n_passed)++;
	return 0;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every regular file of a directory, or the file itself. */
static void
run_path(const char *path, unsigned *n_passed, unsigned *n_failed)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		(*n_failed)++;
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		run_file(path, n_passed, n_failed);
		return;
	}
	d = opendir(path);
	if (!d) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		(*n_failed)++;
		return;
	}
	while ((de = readdir(d))) {
		char *full;

		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			char **x = realloc(names, ncap * sizeof(*x));

			if (!x)
				break;
			names = x;
			cap = ncap;
		}
		if (asprintf(&full, "%s/%s", path, de->d_name) < 0)
			break;
		names[n++] = full;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
			run_file(names[i], n_passed, n_failed);
		free(names[i]);
	}
	free(names);
}

int
main(int argc, char **argv)
{
	unsigned n_passed = 0, n_failed = 0;
	char *def = NULL;

	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			run_path(argv[i], &n_passed, &n_failed);
	} else {
		const char *top = getenv("top_srcdir");

		if (asprintf(&def, "%s/tests/fuzz/corpus/%s", top && top[0] ? top : ".",
			     FUZZ_NAME) < 0)
			return 99;
		run_path(def, &n_passed, &n_failed);
		free(def);
	}
	if (n_passed + n_failed == 0) {
		fprintf(stderr, "no inputs found\n");
		n_failed = 1;
	}
	printf("%u passed, %u failed\n", n_passed, n_failed);
	return n_failed ? 1 : 0;
}
