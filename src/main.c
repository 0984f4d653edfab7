/*
 * main.c: the gcdrop entry point.
 *
 * Only the command table lives here: the first argument names a command, which
 * gets the remaining arguments and returns the process exit status (sysexits:
 * 0 success, 1 runtime error, 64 usage error, 78 configuration error). The
 * commands themselves are in daemon.c (run) and cli.c (everything else).
 */

#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli.h"
#include "daemon.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "run", daemon_main, "run the daemon in the foreground" },
	{ "status", cli_status, "show the queue, or cases in detail" },
	{ "retry", cli_retry, "send failed cases back to the queue" },
	{ "enqueue", cli_enqueue, "queue a case by hand" },
	{ "hold", cli_hold, "pause cases without stopping the daemon" },
	{ "release", cli_release, "resume held cases" },
	{ "check", cli_check, "check the configuration, token, server and watches" },
};

static void
usage(FILE *out)
{
	fprintf(out, "usage: gcdrop [--help] [--version] COMMAND [-c FILE] [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'gcdrop COMMAND --help' describes a command. See gcdrop(8).\n");
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EX_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return EX_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
		return EX_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "gcdrop: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EX_USAGE;
}
