/*
 * cli.h: the operator commands (cli_ prefix): status, retry, enqueue, hold,
 * release, check.
 *
 * Each function takes the command's own argv (argv[0] is the command name) and
 * returns a process exit status: 0, 1 (runtime error), 64 (usage), 78
 * (configuration). The commands read the queue through their own SQLite
 * connection and never touch the daemon's memory; the write commands leave a
 * request in the queue that the daemon picks up within a second.
 */
#ifndef GCDROP_CLI_H
#define GCDROP_CLI_H

int cli_status(int argc, char **argv);
int cli_retry(int argc, char **argv);
int cli_enqueue(int argc, char **argv);
int cli_hold(int argc, char **argv);
int cli_release(int argc, char **argv);
int cli_check(int argc, char **argv);

#endif
