/*
 * fuzz_url.c: libFuzzer target for the URL rules of the http layer (src/http.c):
 * http_redact_url(), http_check_url() and http_same_origin().
 *
 * The input is two URLs separated by the first newline (without a newline,
 * the second is the first). These functions decide what reaches a log line
 * (a presigned URL's signature must not) and where the token may be sent, so
 * the target checks their contracts, not only memory safety:
 *   - a redacted URL has no '?' or '#' at all, and, when the input is a URL
 *     curl parses, no query, fragment, user, password or options when curl
 *     parses it again (for input curl refuses, http_redact_url() documents
 *     only the cut at '?' and '#': such input can keep a "user:password@",
 *     which was reported as a finding against src/http.c; when the fallback
 *     also drops userinfo, set STRICT_FALLBACK below to 1);
 *   - http_check_url() returns one of its documented errnos, and accepts
 *     only https://, and http:// to a loopback host;
 *   - http_same_origin() is symmetric; a URL that http_check_url() accepts has
 *     the same origin as itself and as its redacted form (redaction must not
 *     change where the URL points).
 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "fuzz.h"
#include "http.h"

/* Check userinfo removal for input curl refuses too (see the comment above). */
#define STRICT_FALLBACK 1

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (http_global_init() < 0)
		abort();
	return 0;
}

static bool
curl_parses(const char *url)
{
	CURLU *u = curl_url();
	bool ok = u && curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK;

	curl_url_cleanup(u);
	return ok;
}

static void
check_redacted(const char *url, const char *red)
{
	CURLU *u;
	char *part = NULL;

	FUZZ_ASSERT(!strchr(red, '?') && !strchr(red, '#'));
	if (!STRICT_FALLBACK && !curl_parses(url))
		return;
	u = curl_url();
	if (!u)
		return;
	if (curl_url_set(u, CURLUPART_URL, red, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
		static const CURLUPart secret[] = {
			CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS,
			CURLUPART_QUERY, CURLUPART_FRAGMENT,
		};

		for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++) {
			CURLUcode rc = curl_url_get(u, secret[i], &part, 0);

			if (rc == CURLUE_OK)
				fprintf(stderr, "'%s' redacted to '%s' keeps part %d '%s'\n", url,
					red, (int)secret[i], part);
			FUZZ_ASSERT(rc != CURLUE_OK);
			curl_free(part);
			part = NULL;
		}
	}
	curl_url_cleanup(u);
}

static void
check_one(const char *url)
{
	char *red = http_redact_url(url);
	int r = http_check_url(url);

	FUZZ_ASSERT(r == 0 || r == -EACCES || r == -EPROTONOSUPPORT || r == -EINVAL ||
		    r == -ENOMEM);
	if (r == 0) {
		FUZZ_ASSERT(strncasecmp(url, "https:", 6) == 0 || strncasecmp(url, "http:", 5) == 0);
		FUZZ_ASSERT(http_same_origin(url, url));
	}
	if (!red)
		return;
	check_redacted(url, red);
	if (r == 0) {
		if (!http_same_origin(url, red))
			fprintf(stderr, "'%s' redacted to '%s' changes its origin\n", url, red);
		FUZZ_ASSERT(http_same_origin(url, red));
		FUZZ_ASSERT(http_check_url(red) == 0);
	}
	free(red);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *a, *b, *nl;
	bool ab, ba;

	if (size > 8192)
		return 0;
	a = fuzz_cstring(data, size);
	if (!a)
		return 0;
	nl = strchr(a, '\n');
	if (nl) {
		*nl = '\0';
		b = nl + 1;
	} else {
		b = a;
	}
	check_one(a);
	if (b != a)
		check_one(b);
	ab = http_same_origin(a, b);
	ba = http_same_origin(b, a);
	FUZZ_ASSERT(ab == ba);
	free(a);
	return 0;
}
