/*
 * testutil.h: helpers shared by the Check suites (tu_ prefix).
 *
 * Temporary directories, running the real gcdrop binary with captured output,
 * waiting for a condition with a deadline (never a fixed sleep), and dropping
 * root privileges in a forked child (every test runs as root here, and root
 * ignores file modes).
 */
#ifndef GCDROP_TESTUTIL_H
#define GCDROP_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "attrs.h"

/* A new directory under $TMPDIR (or /tmp); malloc'd path. Aborts the test on failure. */
char *tu_mkdtemp(const char *tag);

/* Remove a tree (like rm -rf). Accepts NULL. */
void tu_rmtree(const char *path);

/* Write 'len' bytes (or strlen when len < 0) to a new file at path, with mode. */
void tu_write_file(const char *path, const char *data, ssize_t len, mode_t mode);

/* printf into a malloc'd string. */
char *tu_strdupf(const char *fmt, ...) GC_PRINTF(1, 2);

/* Read a whole file into a malloc'd NUL-terminated string; NULL when unreadable. */
char *tu_read_file(const char *path, size_t *ret_len);

/* How often 's' occurs in the file at 'path' (0 when unreadable). */
int tu_count_in_file(const char *path, const char *s);

/* The value of an environment variable the test harness sets, or 'fallback'. */
const char *tu_env(const char *name, const char *fallback);

/* Path of the gcdrop binary ($GCDROP_BIN). */
const char *tu_gcdrop_bin(void);

/*
 * Run argv (argv[0] is a path) with stdout and stderr captured into malloc'd
 * strings (either return pointer may be NULL). Extra environment entries
 * ("NAME=value", NULL-terminated, may be NULL) are added. Waits at most
 * timeout_ms, then kills. Returns the exit status, 128+signal, or -1.
 */
int tu_run(char *const argv[], char *const env[], int timeout_ms, char **ret_out, char **ret_err);

/* Start argv in the background with stdout/stderr appended to 'log_path'. */
pid_t tu_spawn(char *const argv[], char *const env[], const char *log_path);

/* Send sig and wait for the child with a deadline; returns its wait status or -1. */
int tu_stop(pid_t pid, int sig, int timeout_ms);

/* Poll 'cond' every few milliseconds until it returns true or timeout_ms passes. */
bool tu_wait_until(bool (*cond)(void *ud), void *ud, int timeout_ms);

/* Milliseconds on the monotonic clock. */
long long tu_now_ms(void);

/*
 * In a forked child, become uid/gid 65534 (nobody) and run fn(ud); the parent
 * returns fn's return value (the child's exit status), or -1 when the child
 * crashed. Use it to test permissions, which root bypasses.
 */
int tu_as_nobody(int (*fn)(void *ud), void *ud);

#endif
