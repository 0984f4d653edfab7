/*
 * fakegc-client.c: start, query and stop the grand-challenge emulator for tests.
 *
 * Design: the emulator is a Python program; this helper only manages it as a child
 * process. The child gets a pipe for stdout (we read exactly one line, the base URL,
 * with poll() and a deadline; the rest of stdout is never written) and a log file for
 * stderr, so it can never block on a full pipe. Control requests use a fresh libcurl
 * easy handle each time, bound to the emulator's CA when TLS is on and with proxies
 * disabled, because the emulator must be reached on 127.0.0.1 directly.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fakegc-client.h"
#include "testutil.h"

struct fakegc {
	pid_t pid;
	char *dir;		/* private temporary directory */
	char *base;		/* base URL */
	char *api;		/* base + "api/v1/" */
	char *ca;		/* CA file or NULL */
	char *token;
	char *log;		/* stderr of the emulator */
};

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *
python3(void)
{
	const char *p = getenv("PYTHON3");

	return p && *p ? p : "python3";
}

/* The directory holding the fakegc package: $FAKEGC_DIR, else $top_srcdir/tests. */
static char *
package_dir(void)
{
	const char *d = getenv("FAKEGC_DIR");
	const char *top = getenv("top_srcdir");
	char *out = NULL;

	if (d && *d)
		return strdup(d);
	if (asprintf(&out, "%s/tests", top && *top ? top : ".") < 0)
		return NULL;
	return out;
}

/* Wait for pid until deadline_ms (monotonic); returns its status or -1 on timeout. */
static int
wait_deadline(pid_t pid, long long deadline_ms, int *ret_status)
{
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid) {
			*ret_status = status;
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -errno;
		if (now_ms() >= deadline_ms)
			return -ETIMEDOUT;
		poll(NULL, 0, 10);
	}
}

/* Run "$PYTHON3 -m fakegc.tls DIR" in the package directory. */
static int
make_certs(const char *pkgdir, const char *dir, const char *log)
{
	pid_t pid;
	int status;
	int r;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		if (chdir(pkgdir) < 0)
			_exit(127);
		setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
		execlp(python3(), python3(), "-m", "fakegc.tls", dir, (char *)NULL);
		_exit(127);
	}
	r = wait_deadline(pid, now_ms() + 60000, &status);
	if (r < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -EIO;
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static void
free_handle(struct fakegc *fg)
{
	if (!fg)
		return;
	if (fg->dir)
		tu_rmtree(fg->dir);
	free(fg->dir);
	free(fg->base);
	free(fg->api);
	free(fg->ca);
	free(fg->token);
	free(fg->log);
	free(fg);
}

/* Read one line from fd until deadline; malloc'd, without the newline, or NULL. */
static char *
read_line(int fd, long long deadline_ms, int *reterr)
{
	char buf[512];
	size_t len = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long long left = deadline_ms - now_ms();
		ssize_t n;
		char *nl;

		if (left <= 0) {
			*reterr = -ETIMEDOUT;
			return NULL;
		}
		if (poll(&p, 1, (int)left) < 0) {
			if (errno == EINTR)
				continue;
			*reterr = -errno;
			return NULL;
		}
		if (!(p.revents & (POLLIN | POLLHUP)))
			continue;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*reterr = -EIO;
			return NULL;
		}
		len += (size_t)n;
		buf[len] = '\0';
		nl = strchr(buf, '\n');
		if (nl) {
			*nl = '\0';
			return strdup(buf);
		}
		if (len == sizeof(buf) - 1) {
			*reterr = -EIO;
			return NULL;
		}
	}
}

int
fakegc_start(const struct fakegc_opts *opts, struct fakegc **ret)
{
	static const struct fakegc_opts defaults;
	char tmpl[4096];
	const char *tmpdir = getenv("TMPDIR");
	char *pkgdir = NULL;
	char *cert = NULL, *key = NULL, *line = NULL;
	char tick[32], minpart[32];
	char *argv[64] = { NULL };
	size_t argc = 0;
	struct fakegc *fg;
	int pipefd[2] = { -1, -1 };
	int r = -ENOMEM;

	if (!opts)
		opts = &defaults;
	fg = calloc(1, sizeof(*fg));
	if (!fg)
		return -ENOMEM;
	fg->pid = -1;
	snprintf(tmpl, sizeof(tmpl), "%s/fakegc-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	if (!mkdtemp(tmpl)) {
		r = -errno;
		goto out;
	}
	fg->dir = strdup(tmpl);
	fg->token = strdup(opts->token ? opts->token : FAKEGC_DEFAULT_TOKEN);
	pkgdir = package_dir();
	if (!fg->dir || !fg->token || !pkgdir || asprintf(&fg->log, "%s/stderr.log", tmpl) < 0)
		goto out;
	if (opts->tls) {
		const char *tdir = opts->tls_dir != NULL ? opts->tls_dir : tmpl;

		if (asprintf(&fg->ca, "%s/ca.pem", tdir) < 0 ||
		    asprintf(&cert, "%s/server.pem", tdir) < 0 ||
		    asprintf(&key, "%s/server.key", tdir) < 0) {
			r = -ENOMEM;
			goto out;
		}
		/* Reuse material a previous start left in tls_dir. */
		if (opts->tls_dir == NULL || access(fg->ca, R_OK) < 0 || access(cert, R_OK) < 0 ||
		    access(key, R_OK) < 0) {
			r = make_certs(pkgdir, tdir, fg->log);
			if (r < 0)
				goto out;
		}
	}
	snprintf(tick, sizeof(tick), "%g", opts->tick > 0 ? opts->tick : 0.2);
	snprintf(minpart, sizeof(minpart), "%lld",
		 opts->min_part_size > 0 ? opts->min_part_size : 5LL << 20);
	{
		const char *args[64] = {
			python3(), "-m", "fakegc", "--port", "0", "--token", fg->token,
			"--tick", tick, "--min-part-size", minpart,
		};
		size_t n = 11;

		if (opts->tls) {
			args[n++] = "--tls-cert";
			args[n++] = cert;
			args[n++] = "--tls-key";
			args[n++] = key;
		}
		if (opts->fixtures) {
			args[n++] = "--fixtures";
			args[n++] = opts->fixtures;
		}
		if (opts->faults) {
			args[n++] = "--faults";
			args[n++] = opts->faults;
		}
		for (size_t i = 0; opts->extra_args && opts->extra_args[i]; i++) {
			if (n >= GC_ARRAY_SIZE(args) - 1) {
				r = -E2BIG;
				goto out;
			}
			args[n++] = opts->extra_args[i];
		}
		/* execvp wants char *const []: give it private copies */
		for (argc = 0; argc < n; argc++) {
			argv[argc] = strdup(args[argc]);
			if (!argv[argc]) {
				r = -ENOMEM;
				goto out;
			}
		}
		argv[argc] = NULL;
	}

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	fg->pid = fork();
	if (fg->pid < 0) {
		r = -errno;
		goto out;
	}
	if (fg->pid == 0) {
		int fd = open(fg->log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		/*
		 * The emulator must not outlive the test that started it, also when
		 * Check kills a failed test: stop it when its parent dies.
		 */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() == 1)
			_exit(127);
		dup2(pipefd[1], STDOUT_FILENO);
		if (fd >= 0)
			dup2(fd, STDERR_FILENO);
		if (chdir(pkgdir) < 0)
			_exit(127);
		setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pipefd[1]);
	pipefd[1] = -1;
	r = 0;
	line = read_line(pipefd[0], now_ms() + (opts->start_timeout_ms > 0 ?
						 opts->start_timeout_ms : 15000), &r);
	if (!line)
		goto out;
	if (strncmp(line, opts->tls ? "https://127.0.0.1:" : "http://127.0.0.1:",
		    opts->tls ? 18 : 17) != 0 || line[strlen(line) - 1] != '/') {
		r = -EIO;
		goto out;
	}
	fg->base = line;
	line = NULL;
	if (asprintf(&fg->api, "%sapi/v1/", fg->base) < 0) {
		r = -ENOMEM;
		goto out;
	}
	*ret = fg;
	fg = NULL;
	r = 0;
out:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	if (fg && fg->pid > 0) {
		int status;

		kill(fg->pid, SIGKILL);
		waitpid(fg->pid, &status, 0);
		if (r == -EIO || r == -ETIMEDOUT) {
			/* exit 127 from the child: python3 or the package directory is missing */
			if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
				r = -ENOENT;
		}
	}
	free_handle(fg);
	free(line);
	free(pkgdir);
	free(cert);
	free(key);
	for (size_t i = 0; i < argc; i++)
		free(argv[i]);
	return r;
}

const char *
fakegc_base_url(const struct fakegc *fg)
{
	return fg->base;
}

const char *
fakegc_api_url(const struct fakegc *fg)
{
	return fg->api;
}

const char *
fakegc_ca_file(const struct fakegc *fg)
{
	return fg->ca;
}

const char *
fakegc_token(const struct fakegc *fg)
{
	return fg->token;
}

pid_t
fakegc_pid(const struct fakegc *fg)
{
	return fg->pid;
}

const char *
fakegc_log_file(const struct fakegc *fg)
{
	return fg->log;
}

struct body {
	char *data;
	size_t len;
};

static size_t
collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct body *b = ud;
	size_t n = size * nmemb;
	char *grown;

	if (b->len + n > (64u << 20))
		return 0;
	grown = realloc(b->data, b->len + n + 1);
	if (!grown)
		return 0;
	b->data = grown;
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* One control request; the body (malloc'd) and the HTTP status on success. */
static int
control(struct fakegc *fg, const char *route, const char *post, long *ret_status,
	char **ret_body)
{
	struct body b = { 0 };
	struct curl_slist *hdrs = NULL;
	char *url = NULL;
	CURL *c;
	long status = 0;
	int r = -EIO;

	c = curl_easy_init();
	if (!c)
		return -ENOMEM;
	if (asprintf(&url, "%s__fakegc__/%s", fg->base, route) < 0) {
		url = NULL;
		r = -ENOMEM;
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (fg->ca)
		curl_easy_setopt(c, CURLOPT_CAINFO, fg->ca);
	if (post) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
	}
	if (curl_easy_perform(c) != CURLE_OK)
		goto out;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	*ret_status = status;
	*ret_body = b.data ? b.data : strdup("");
	b.data = NULL;
	r = *ret_body ? 0 : -ENOMEM;
out:
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	free(url);
	free(b.data);
	return r;
}

/* GET a control route and parse its JSON answer; NULL on any failure. */
static cJSON *
control_json(struct fakegc *fg, const char *route)
{
	char *body = NULL;
	long status;
	cJSON *json;

	if (control(fg, route, NULL, &status, &body) < 0)
		return NULL;
	json = status == 200 ? cJSON_Parse(body) : NULL;
	free(body);
	return json;
}

cJSON *
fakegc_state(struct fakegc *fg)
{
	return control_json(fg, "state");
}

cJSON *
fakegc_parts(struct fakegc *fg)
{
	return control_json(fg, "parts");
}

cJSON *
fakegc_storage(struct fakegc *fg)
{
	return control_json(fg, "storage");
}

int
fakegc_storage_reset(struct fakegc *fg)
{
	char *body = NULL;
	long status;

	if (control(fg, "storage", "{}", &status, &body) < 0)
		return -EIO;
	free(body);
	return status == 200 ? 0 : -EIO;
}

int
fakegc_set_faults(struct fakegc *fg, const char *json)
{
	char *body = NULL;
	long status;

	if (control(fg, "faults", json, &status, &body) < 0)
		return -EIO;
	free(body);
	if (status == 200)
		return 0;
	return status == 400 ? -EINVAL : -EIO;
}

int
fakegc_advance(struct fakegc *fg, double seconds)
{
	char req[64];
	char *body = NULL;
	long status;

	snprintf(req, sizeof(req), "{\"advance\": %.6f}", seconds);
	if (control(fg, "clock", req, &status, &body) < 0)
		return -EIO;
	free(body);
	return status == 200 ? 0 : -EIO;
}

int
fakegc_stop(struct fakegc *fg)
{
	int status = 0;
	int r = -1;

	if (!fg)
		return 0;
	if (fg->pid > 0) {
		kill(fg->pid, SIGTERM);
		if (wait_deadline(fg->pid, now_ms() + 10000, &status) == 0) {
			r = status;
		} else {
			kill(fg->pid, SIGKILL);
			waitpid(fg->pid, NULL, 0);
		}
	}
	free_handle(fg);
	return r;
}
