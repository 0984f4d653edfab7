/*
 * daemon.h: `gcdrop run` (daemon_ prefix).
 *
 * daemon_main() is the command: it parses its options, loads the configuration,
 * opens the queue, takes the single-instance lock, sets the watches, rescans the
 * watch folders and runs the main loop until SIGTERM/SIGINT. It returns a process
 * exit status (0, 1 runtime error, 64 usage, 78 configuration).
 *
 * The rest is the plug-in surface for the parts of the daemon that live in other
 * modules (upload pool, jobs): they are called from the main thread only, with
 * the struct daemon the loop hands them (see daemon.c's header for the loop).
 */
#ifndef GCDROP_DAEMON_H
#define GCDROP_DAEMON_H

#include <stdint.h>

#include "attrs.h"

struct daemon;
struct config;
struct store;

int daemon_main(int argc, char **argv);

/*
 * Add 'fd' to the main loop's epoll set (EPOLLIN): fn(d, userdata) runs on the
 * main thread whenever it is readable. fn returns 0, or a negative errno, which
 * is logged and otherwise ignored. Returns 0, -ENOSPC when the handler table is
 * full, or a negative errno from epoll_ctl. The fd stays the caller's.
 */
int daemon_add_handler(struct daemon *d, int fd, int (*fn)(struct daemon *d, void *userdata),
		       void *userdata) GC_WUR;

/* Remove a handler added with daemon_add_handler(). */
void daemon_remove_handler(struct daemon *d, int fd);

/*
 * Ask for a loop turn no later than 'when_ms' (CLOCK_MONOTONIC milliseconds,
 * daemon_now_ms()). The pipeline hook runs every turn, so this is how a later
 * step wakes itself (backoff, poll intervals).
 */
void daemon_wake_at(struct daemon *d, int64_t when_ms);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t daemon_now_ms(void);

/* The current configuration (replaced on reload) and the queue. */
const struct config *daemon_config(const struct daemon *d);
struct store *daemon_store(const struct daemon *d);

#endif
