/*
 * testutil.c: helpers shared by the Check suites. See testutil.h.
 */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "testutil.h"

char *
tu_mkdtemp(const char *tag)
{
	const char *base = tu_env("TMPDIR", "/tmp");
	char *p = tu_strdupf("%s/gcdrop-%s-XXXXXX", base, tag);

	ck_assert_ptr_nonnull(mkdtemp(p));
	return p;
}

static int
tu_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP || flag == FTW_D)
		chmod(path, 0700);
	return remove(path) < 0 && errno != ENOENT ? 0 : 0;
}

void
tu_rmtree(const char *path)
{
	if (path == NULL)
		return;
	nftw(path, tu_rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

void
tu_write_file(const char *path, const char *data, ssize_t len, mode_t mode)
{
	size_t n = len < 0 ? strlen(data) : (size_t)len;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	ck_assert_msg(fd >= 0, "open '%s': %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
	fchmod(fd, mode);
	close(fd);
}

char *
tu_strdupf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	ck_assert_int_ge(vasprintf(&s, fmt, ap), 0);
	va_end(ap);
	return s;
}

int
tu_count_in_file(const char *path, const char *s)
{
	char *text = tu_read_file(path, NULL);
	int n = 0;

	for (const char *p = text; p != NULL && (p = strstr(p, s)) != NULL; p += strlen(s))
		n++;
	free(text);
	return n;
}

char *
tu_read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (f == NULL)
		return NULL;
	for (;;) {
		size_t n;

		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	buf[len] = '\0';
	if (ret_len != NULL)
		*ret_len = len;
	return buf;
}

const char *
tu_env(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : fallback;
}

const char *
tu_gcdrop_bin(void)
{
	return tu_env("GCDROP_BIN", "./src/gcdrop");
}

long long
tu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
tu_exec_child(char *const argv[], char *const env[])
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (char *const *e = env; e != NULL && *e != NULL; e++)
		putenv(*e);
	execv(argv[0], argv);
	_exit(127);
}

/* Read what is available on fd into *buf; returns 0 at EOF. */
static int
tu_drain(int fd, char **buf, size_t *len)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));

	if (n <= 0)
		return n < 0 && errno == EINTR ? 1 : 0;
	*buf = realloc(*buf, *len + (size_t)n + 1);
	memcpy(*buf + *len, tmp, (size_t)n);
	*len += (size_t)n;
	(*buf)[*len] = '\0';
	return 1;
}

int
tu_run(char *const argv[], char *const env[], int timeout_ms, char **ret_out, char **ret_err)
{
	int op[2], ep[2], status = 0;
	char *out = calloc(1, 1), *err = calloc(1, 1);
	size_t ol = 0, el = 0;
	long long deadline = tu_now_ms() + timeout_ms;
	bool oopen = true, eopen = true;
	pid_t pid;

	ck_assert_int_eq(pipe2(op, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(ep, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(op[1], 1);
		dup2(ep[1], 2);
		tu_exec_child(argv, env);
	}
	close(op[1]);
	close(ep[1]);
	while (oopen || eopen) {
		struct pollfd p[2] = { { op[0], POLLIN, 0 }, { ep[0], POLLIN, 0 } };
		long long left = deadline - tu_now_ms();

		if (left <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		if (!oopen)
			p[0].fd = -1;
		if (!eopen)
			p[1].fd = -1;
		if (poll(p, 2, (int)left) <= 0)
			continue;
		if (oopen && (p[0].revents & (POLLIN | POLLHUP)))
			oopen = tu_drain(op[0], &out, &ol);
		if (eopen && (p[1].revents & (POLLIN | POLLHUP)))
			eopen = tu_drain(ep[0], &err, &el);
	}
	close(op[0]);
	close(ep[0]);
	if (waitpid(pid, &status, 0) < 0)
		status = -1;
	if (ret_out != NULL)
		*ret_out = out;
	else
		free(out);
	if (ret_err != NULL)
		*ret_err = err;
	else
		free(err);
	if (status == -1)
		return -1;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

pid_t
tu_spawn(char *const argv[], char *const env[], const char *log_path)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(log_path != NULL ? log_path : "/dev/null",
			      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		tu_exec_child(argv, env);
	}
	return pid;
}

int
tu_stop(pid_t pid, int sig, int timeout_ms)
{
	long long deadline = tu_now_ms() + timeout_ms;
	int status;

	if (sig != 0)
		kill(pid, sig);
	while (tu_now_ms() < deadline) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0)
			return -1;
		usleep(5000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

bool
tu_wait_until(bool (*cond)(void *ud), void *ud, int timeout_ms)
{
	long long deadline = tu_now_ms() + timeout_ms;

	for (;;) {
		if (cond(ud))
			return true;
		if (tu_now_ms() >= deadline)
			return false;
		usleep(10000);
	}
}

int
tu_as_nobody(int (*fn)(void *ud), void *ud)
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(126);
		_exit(fn(ud));
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}
