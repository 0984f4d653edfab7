/*
 * daemon.c: `gcdrop run`.
 *
 * DESIGN
 * Start-up order: options, configuration (exit 78 when bad), logging, the
 * queue (exit 1 when it cannot be opened), then one loop over a signalfd until
 * SIGTERM or SIGINT. Signals are blocked before anything else so that every
 * thread started later inherits the mask and only the loop sees them.
 *
 * This is the frame the watcher, the upload pool and the job poller plug into.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "store.h"

static const char daemon_usage[] = "usage: gcdrop run [-c FILE]\n";

int
daemon_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = CONFIG_DEFAULT_PATH;
	struct config *cfg = NULL;
	struct store *st = NULL;
	char *msg = NULL;
	sigset_t mask;
	int c, r, sfd = -1, rc = EX_OK;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			fputs(daemon_usage, stdout);
			return EX_OK;
		default:
			fprintf(stderr, "gcdrop run: unknown option '%s'\n%s", argv[optind - 1], daemon_usage);
			return EX_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "gcdrop run: unexpected argument '%s'\n%s", argv[optind], daemon_usage);
		return EX_USAGE;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	log_init(LOG_MODE_AUTO, LOG_INFO);
	r = config_load(path, 0, &cfg, &msg);
	if (r < 0) {
		log_err("%s", msg != NULL ? msg : strerror(-r));
		free(msg);
		return EX_CONFIG;
	}
	log_set_level(cfg->log_level);
	r = store_open(cfg->state_dir, 0, &st, &msg);
	if (r < 0) {
		log_err("cannot open the queue: %s", msg != NULL ? msg : strerror(-r));
		free(msg);
		rc = 1;
		goto out;
	}
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		log_err("signalfd: %s", strerror(errno));
		rc = 1;
		goto out;
	}
	log_msg(LOG_NOTICE, "gcdrop %s started with '%s', %zu watch(es)", PACKAGE_VERSION, cfg->path,
		cfg->n_watches);
	for (;;) {
		struct signalfd_siginfo si;
		ssize_t n = read(sfd, &si, sizeof(si));

		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(si))
			break;
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			break;
	}
	log_msg(LOG_NOTICE, "gcdrop stopping");
out:
	if (sfd >= 0)
		close(sfd);
	store_close(st);
	config_free(cfg);
	return rc;
}
