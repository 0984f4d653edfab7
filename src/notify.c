/*
 * notify.c: sd_notify() messages and the watchdog policy.
 *
 * DESIGN
 * The only file of gcdrop that speaks the notification protocol (house style
 * rule 8: every libsystemd notification behind one small module). It does not
 * reimplement the protocol: libsystemd finds NOTIFY_SOCKET, handles abstract
 * and path sockets and sends the datagram. What this file adds is what the
 * daemon must get right every time: the RELOADING=1 message carries its
 * MONOTONIC_USEC in the same datagram, STATUS= text cannot smuggle in another
 * assignment, and sd_notify()'s "> 0 sent, 0 nowhere to send" becomes the house
 * 0 / negative errno.
 *
 * The watchdog policy is a pure function of (state, now, progress_ok), so its
 * table of cases is tested without a clock. Systemd's advice is to ping at half
 * the interval; the twist is that the daemon's main loop alone staying alive is
 * not proof of health: the work happens in pool threads, and a thread stuck in a
 * transfer that never times out leaves the loop spinning happily. The caller
 * therefore says whether the workers progress, and a "no" withholds the ping.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "notify.h"

/* ---- sending ---- */

/* sd_notify() answers > 0 when sent and 0 when there is no socket; both are success here. */
static int
notify_result(int r)
{
	return r < 0 ? r : 0;
}

int
notify_ready(void)
{
	return notify_result(sd_notify(0, "READY=1"));
}

int
notify_reloading(void)
{
	return notify_result(sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
	    notify_now_usec()));
}

int
notify_stopping(void)
{
	return notify_result(sd_notify(0, "STOPPING=1"));
}

int
notify_status(const char *line)
{
	char msg[sizeof("STATUS=") + NOTIFY_STATUS_MAX];
	size_t off = strlen("STATUS="), n;

	memcpy(msg, "STATUS=", off);
	n = line != NULL ? strnlen(line, NOTIFY_STATUS_MAX + 1) : 0;
	if (n > NOTIFY_STATUS_MAX) {
		/* Cut before a UTF-8 continuation byte, never inside a character. */
		n = NOTIFY_STATUS_MAX;
		while (n > 0 && ((unsigned char)line[n] & 0xc0) == 0x80)
			n--;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)line[i];

		msg[off++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	msg[off] = '\0';
	return notify_result(sd_notify(0, msg));
}

int
notify_watchdog(void)
{
	return notify_result(sd_notify(0, "WATCHDOG=1"));
}

int
notify_watchdog_usec(uint64_t *ret_usec)
{
	uint64_t usec = 0;
	int r;

	r = sd_watchdog_enabled(0, &usec);
	if (r < 0)
		return r;
	*ret_usec = r > 0 ? usec : 0;
	return 0;
}

uint64_t
notify_now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- the watchdog policy ---- */

void
notify_watchdog_init(struct notify_watchdog *w, uint64_t interval_usec)
{
	w->interval_usec = interval_usec;
	w->last_ping_usec = 0;
	w->pinged = false;
}

uint64_t
notify_watchdog_next_usec(const struct notify_watchdog *w)
{
	if (w->interval_usec == 0)
		return UINT64_MAX;
	if (!w->pinged)
		return 0;
	if (w->last_ping_usec > UINT64_MAX - w->interval_usec / 2)
		return UINT64_MAX;
	return w->last_ping_usec + w->interval_usec / 2;
}

bool
notify_watchdog_due(struct notify_watchdog *w, uint64_t now_usec, bool progress_ok)
{
	if (w->interval_usec == 0 || !progress_ok)
		return false;
	if (w->pinged && now_usec < notify_watchdog_next_usec(w))
		return false;
	w->pinged = true;
	w->last_ping_usec = now_usec;
	return true;
}
