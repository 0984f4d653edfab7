/*
 * fuzz_config.c: libFuzzer target for the configuration loader (src/config.c).
 *
 * The input is the text of a configuration file. It is written to a file in a
 * private temporary directory (config_load() reads a path, and re-reads the
 * file for its integer-literal check) and loaded twice: with
 * CONFIG_LOAD_NO_TOKEN (the syntax, every key, every cross-check), and, when
 * that succeeds, without it, so that the token checks run too (the token
 * comes from $GRAND_CHALLENGE_AUTHORIZATION, set here). The input is also
 * given to config_token_normalise() as a raw token.
 *
 * Invariants checked besides memory safety: a failure is a negative errno
 * with a message that starts with the file's name; a success gives a struct
 * whose documented properties hold (absolute paths without trailing slashes,
 * an api_url ending in '/', at least one watch, each found by its name, static
 * values that are valid JSON); a normalised token is "Bearer " plus one word.
 *
 * Inputs containing "@include" are skipped: libconfig would read any file the
 * input names (/dev/zero never ends), and includes are libconfig's code, not ours.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "fuzz.h"

static char conf_dir[64];
static char conf_path[256];

static void
remove_conf(void)
{
	unlink(conf_path);
	rmdir(conf_dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	snprintf(conf_dir, sizeof(conf_dir), "%s/gcdrop-fuzz-config-XXXXXX",
		 tmp && tmp[0] && strlen(tmp) < 32 ? tmp : "/tmp");
	if (!mkdtemp(conf_dir))
		abort();
	snprintf(conf_path, sizeof(conf_path), "%s/gcdrop.conf", conf_dir);
	atexit(remove_conf);
	setenv("GRAND_CHALLENGE_AUTHORIZATION", "Bearer 0123456789abcdef", 1);
	unsetenv("CREDENTIALS_DIRECTORY");
	return 0;
}

static bool
path_ok(const char *p)
{
	size_t len;

	if (!p)
		return true;
	len = strlen(p);
	return p[0] == '/' && (len == 1 || p[len - 1] != '/') && !strstr(p, "//");
}

static void
check_config(const struct config *c)
{
	FUZZ_ASSERT(c->path && strcmp(c->path, conf_path) == 0);
	FUZZ_ASSERT(c->api_url && c->api_url[0] && c->api_url[strlen(c->api_url) - 1] == '/');
	FUZZ_ASSERT(path_ok(c->state_dir) && c->state_dir);
	FUZZ_ASSERT(path_ok(c->token_file));
	FUZZ_ASSERT(c->workers > 0);
	FUZZ_ASSERT(c->max_send_speed >= 0 && c->min_free_space >= 0);
	FUZZ_ASSERT(c->n_watches > 0 && c->watches);
	for (size_t i = 0; i < c->n_watches; i++) {
		const struct config_watch *w = &c->watches[i];

		FUZZ_ASSERT(w->name && w->name[0]);
		FUZZ_ASSERT(config_find_watch(c, w->name) == w);
		FUZZ_ASSERT(w->path && path_ok(w->path));
		FUZZ_ASSERT(path_ok(w->results_dir) && path_ok(w->done_dir) &&
			    path_ok(w->failed_dir));
		FUZZ_ASSERT(w->slug && w->slug[0]);
		FUZZ_ASSERT(strcmp(config_dest_name(w->dest), "unknown") != 0);
		FUZZ_ASSERT(strcmp(config_action_name(w->on_success), "unknown") != 0);
		FUZZ_ASSERT(strcmp(config_action_name(w->on_failure), "unknown") != 0);
		FUZZ_ASSERT(w->on_success != CONFIG_ACTION_MOVE || w->done_dir);
		FUZZ_ASSERT(w->on_failure != CONFIG_ACTION_MOVE || w->failed_dir);
		FUZZ_ASSERT(w->settle_seconds >= 0 && w->max_settle_seconds >= 0);
		for (size_t j = 0; j < w->n_values; j++) {
			cJSON *v = cJSON_Parse(w->values[j].json);

			FUZZ_ASSERT(w->values[j].socket && w->values[j].socket[0]);
			FUZZ_ASSERT(v != NULL);
			cJSON_Delete(v);
		}
	}
}

static void
load(int flags, bool *ret_ok)
{
	struct config *c = NULL;
	char *msg = NULL;
	int r;

	r = config_load(conf_path, flags, &c, &msg);
	if (r == 0) {
		FUZZ_ASSERT(c != NULL);
		check_config(c);
		config_free(c);
		free(msg);
		*ret_ok = true;
		return;
	}
	FUZZ_ASSERT(r < 0 && c == NULL);
	FUZZ_ASSERT(msg != NULL);
	FUZZ_ASSERT(strncmp(msg, conf_path, strlen(conf_path)) == 0);
	free(msg);
	*ret_ok = false;
}

static void
check_token(const uint8_t *data, size_t size)
{
	char *raw, *header;

	if (size > 4096)
		return;
	raw = fuzz_cstring(data, size);
	if (!raw)
		return;
	header = config_token_normalise(raw);
	if (header) {
		FUZZ_ASSERT(strncmp(header, "Bearer ", 7) == 0);
		FUZZ_ASSERT(header[7] != '\0');
		for (const char *q = header + 7; *q; q++)
			FUZZ_ASSERT((unsigned char)*q > 0x20 && *q != 0x7f);
	}
	config_token_free(header);
	free(raw);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool ok = false;
	int fd;

	check_token(data, size);
	if (memmem(data, size, "@include", 8))
		return 0;
	fd = open(conf_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	for (size_t off = 0; off < size;) {
		ssize_t n = write(fd, data + off, size - off);

		if (n <= 0)
			abort();
		off += (size_t)n;
	}
	close(fd);

	load(CONFIG_LOAD_NO_TOKEN, &ok);
	if (ok)
		load(0, &ok);
	return 0;
}
