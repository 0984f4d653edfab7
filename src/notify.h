/*
 * notify.h: the service manager's notification protocol (notify_ prefix).
 *
 * Every libsystemd notification of the daemon goes through here: READY=1,
 * RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1 and the watchdog interval. The
 * messages are sent with libsystemd's sd_notify()/sd_notifyf(); without
 * NOTIFY_SOCKET in the environment (not started by systemd, or by a unit that is
 * not Type=notify) every call does nothing and returns 0. The environment is
 * never unset, so a reload or a restart of the main loop can notify again.
 *
 * The send functions return 0 (sent, or nothing to send to) or a negative errno
 * from sd_notify() (for example -ENOENT or -ECONNREFUSED when NOTIFY_SOCKET names
 * a socket nobody listens on). Callers may ignore it: a lost notification costs
 * at worst a watchdog restart, which is what the watchdog is for. None of them
 * logs.
 *
 * The watchdog policy (struct notify_watchdog) decides when to ping. It pings at
 * half the interval systemd asked for, but only while the caller vouches that
 * both the main loop and the workers make progress: a hung worker must stop the
 * pings, so that systemd restarts the service.
 */
#ifndef GCDROP_NOTIFY_H
#define GCDROP_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "attrs.h"

/* STATUS= text longer than this is cut (at a UTF-8 character boundary). */
#define NOTIFY_STATUS_MAX 1024

/* "READY=1": start-up finished, and after a reload, the reload finished. */
int notify_ready(void);

/*
 * "RELOADING=1" with "MONOTONIC_USEC=" the current CLOCK_MONOTONIC time in one
 * message, as systemd >= 253 requires for Type=notify-reload (older versions
 * ignore the extra field). Send notify_ready() when the reload is done.
 */
int notify_reloading(void);

/* "STOPPING=1": shutdown has begun. */
int notify_stopping(void);

/*
 * "STATUS=<line>": the one-line summary for `systemctl status`. Control
 * characters in line (a newline would start another assignment, such as a
 * forged READY=1) become spaces; a line longer than NOTIFY_STATUS_MAX bytes is
 * cut. line may be NULL (sent as an empty status).
 */
int notify_status(const char *line);

/* "WATCHDOG=1": one keep-alive ping. Use notify_watchdog_due() to decide when. */
int notify_watchdog(void);

/*
 * The watchdog interval systemd expects pings within (WATCHDOG_USEC, when
 * WATCHDOG_PID is absent or names this process), via sd_watchdog_enabled().
 * Returns 0 and sets *ret_usec to the interval, or to 0 when the watchdog is not
 * enabled for this process; returns a negative errno (*ret_usec untouched) when
 * the variables are malformed, which the caller treats as "no watchdog".
 */
int notify_watchdog_usec(uint64_t *ret_usec) GC_WUR;

/* CLOCK_MONOTONIC in microseconds (the clock of MONOTONIC_USEC and of the policy below). */
uint64_t notify_now_usec(void);

/*
 * The watchdog policy. Owned by the main thread; not thread-safe. Use the API;
 * the members are visible so that it can live inside another struct.
 */
struct notify_watchdog {
	uint64_t interval_usec;		/* 0: no watchdog, never due */
	uint64_t last_ping_usec;	/* monotonic time of the last ping */
	bool pinged;			/* false until the first ping */
};

/* Start the policy for an interval (from notify_watchdog_usec(); 0 disables it). */
void notify_watchdog_init(struct notify_watchdog *w, uint64_t interval_usec);

/*
 * Whether to ping now. Returns true, and records now_usec as the time of the
 * ping (the caller then calls notify_watchdog()), when the watchdog is enabled,
 * progress_ok is true and no ping happened yet or the last one is at least half
 * an interval old. Returns false when progress_ok is false, whatever the time:
 * the pings stop, and systemd restarts the service an interval after the last
 * one unless progress resumes first (then the next call pings at once when a
 * ping is overdue).
 *
 * progress_ok is the caller's judgement that the loop and the workers move; the
 * daemon passes "no worker is busy, or pool_oldest_busy_since() is less than its
 * stall limit ago".
 */
bool notify_watchdog_due(struct notify_watchdog *w, uint64_t now_usec, bool progress_ok);

/*
 * When the next ping falls due (monotonic microseconds), for arming a timer;
 * UINT64_MAX when the watchdog is disabled. Before the first ping: 0 (now).
 */
uint64_t notify_watchdog_next_usec(const struct notify_watchdog *w);

#endif
