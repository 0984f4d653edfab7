/*
 * casemap.h: from a case's files to socket values (casemap_ prefix).
 *
 * casemap_map() is spec section 2 step 4 as a pure function: it takes the
 * entries of a case (from scan), what is known of the destination (its kind,
 * sockets, and for an algorithm its interfaces) and the watch's `socket` and
 * static `values`, and returns the socket values to create, or an error message
 * that names the case entry and the socket. It is where a case that cannot
 * succeed is stopped before a single byte is uploaded. casemap_upload_names()
 * then gives every file a name the platform accepts (contract 3.4 and 4.2).
 * Nothing here logs, touches the network or keeps state; the only I/O is the
 * caller's reader, for JSON files that become Value sockets.
 *
 * The mapping rules, in order:
 * 1. A case with no files fails.
 * 2. A top-level entry of the case is "named after" a socket when its name is
 *    the socket's slug (a directory or a file), or the slug plus an image
 *    extension (casemap_is_image_name()), plus ".json", or plus any other single
 *    extension (`report.pdf`), or when a file's name is the last component of a
 *    File or Value socket's relative_path. Slugs compare exactly, extensions
 *    without regard to ASCII case. A single-file case is its own only top-level
 *    entry.
 * 3. If any top-level entry is named after a socket, every one must be (else
 *    the case fails, naming the stray entry), and each goes to its socket:
 *    - a directory: to an Image socket only, with every file under it;
 *    - a file to an Image socket: an image extension or no extension (a .json
 *      or another extension fails); several entries may feed one Image socket
 *      (`ct-image.mhd` with `ct-image.raw`);
 *    - a file to a File socket: any file, uploaded as itself; one entry only;
 *    - a file to a Value socket: `.json` or no extension; its content must be
 *      valid UTF-8 JSON other than null (a leading UTF-8 BOM is dropped), at
 *      most CASEMAP_MAX_JSON_BYTES; one entry only.
 * 4. Otherwise every file of the case goes to one default socket: the watch's
 *    `socket` when set; for an algorithm, the only input left open by the
 *    static values (the one remaining input of every interface that contains
 *    all static-value sockets and has exactly one more input; it must be the
 *    same socket for all of them); for an archive or a reader study
 *    CASEMAP_DEFAULT_SOCKET. An Image socket takes all files; a File socket
 *    exactly one; a Value socket exactly one JSON file.
 * 5. Static values are added, as JSON, for Value sockets only. A value the case
 *    itself provides for the same socket wins over the static one: the case is
 *    the more specific source, and an operator can override a default per case.
 * 6. For an algorithm with known interfaces, the set of sockets provided must
 *    equal the input set of exactly one interface (contract 4.3 check 5); the
 *    error names the missing and the extra sockets against the closest one.
 *
 * The caller must list in dest->sockets every socket it wants recognised: for
 * an algorithm at least every input of every interface; for archives and reader
 * studies the watch's socket (or CASEMAP_DEFAULT_SOCKET), the static values'
 * sockets, and any socket a case may be named after (see
 * casemap_candidate_slugs() for the names worth looking up).
 */
#ifndef GCDROP_CASEMAP_H
#define GCDROP_CASEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrs.h"
#include "config.h"
#include "scan.h"

#define CASEMAP_DEFAULT_SOCKET "generic-medical-image"
#define CASEMAP_MAX_JSON_BYTES (16 * 1024 * 1024)	/* a JSON file for a Value socket */
#define CASEMAP_MAX_NAME_CHARS 128			/* contract 3.4: filename max_length */
#define CASEMAP_MAX_CANDIDATES 64			/* see casemap_candidate_slugs() */

enum casemap_super_kind {
	CASEMAP_IMAGE,
	CASEMAP_FILE,
	CASEMAP_VALUE,
};

/* A socket of the destination (contract 6.1). The strings belong to the caller. */
struct casemap_socket {
	char *slug;
	char *kind;			/* display label, e.g. "DICOM Image Set"; may be NULL */
	enum casemap_super_kind super_kind;
	char *relative_path;		/* may be NULL */
};

/* One interface of an algorithm: the set of its input socket slugs. */
struct casemap_interface {
	char **inputs;
	size_t n_inputs;
};

/* What casemap_map() knows of the destination and the watch. Nothing is copied. */
struct casemap_dest {
	enum config_dest kind;
	const char *slug;				/* for messages */
	const struct casemap_socket *sockets;
	size_t n_sockets;
	const struct casemap_interface *interfaces;	/* algorithms; none: no check 6 */
	size_t n_interfaces;
	const char *socket;				/* the watch's `socket`; NULL: default */
	const struct config_value *values;		/* the watch's static `values` */
	size_t n_values;
};

/*
 * Reads the content of a case file, for Value sockets. It stores a malloc'd
 * buffer (NUL-terminated for convenience) and its length, and returns 0; or
 * -EFBIG when the file holds more than max_bytes, or another negative errno.
 */
struct casemap_reader {
	int (*read)(void *userdata, const struct scan_entry *entry, size_t max_bytes,
		    char **ret_data, size_t *ret_len);
	void *userdata;
};

enum casemap_source {
	CASEMAP_SRC_FILES,		/* upload files[] (indices into the entries) */
	CASEMAP_SRC_JSON,		/* send json inline as the value */
};

struct casemap_value {
	char *socket;			/* slug */
	enum casemap_super_kind super_kind;
	enum casemap_source source;
	size_t *files;			/* CASEMAP_SRC_FILES: ascending entry indices */
	size_t n_files;
	char *json;			/* CASEMAP_SRC_JSON: the JSON text, validated */
	char *origin;			/* for messages: "'ct-image/'", "static value", ... */
};

struct casemap_result {
	struct casemap_value *values;	/* sorted by socket slug */
	size_t n;
};

/*
 * Map the case whose entries are 'entries' (sorted as scan returns them) to
 * socket values for 'dest', by the rules above. 'reader' is needed only when a
 * JSON file goes to a Value socket (NULL then fails with -EINVAL).
 *
 * On success returns 0 and fills *ret (free it with casemap_result_clear()).
 * On failure returns a negative errno, leaves *ret untouched and stores a
 * malloc'd message in *reterr_msg (when not NULL): -EINVAL when the case cannot
 * succeed as it is (fail it); the reader's errno (-ENOENT, -EACCES, -EIO ...)
 * when a JSON file could not be read (the case may be changing: settle again);
 * -ENOMEM.
 */
int casemap_map(const struct scan_entry *entries, size_t n_entries,
		const struct casemap_dest *dest, const struct casemap_reader *reader,
		struct casemap_result *ret, char **reterr_msg) GC_WUR;

/* Free what a result holds and zero it. Accepts a zeroed result and NULL. */
void casemap_result_clear(struct casemap_result *res);

/*
 * A struct casemap_reader read function: 'userdata' points to an int holding a
 * directory fd that entry relpaths are relative to (the case directory, or the
 * watch folder for a single-file case). Every component is opened with
 * O_NOFOLLOW, so a symlink swapped in after the scan gives -ELOOP; anything but
 * a regular file gives -EINVAL; more than max_bytes gives -EFBIG.
 */
int casemap_read_at(void *userdata, const struct scan_entry *entry, size_t max_bytes,
		    char **ret_data, size_t *ret_len) GC_WUR;

/*
 * Give every entry an upload filename, unique within the case and valid for
 * the platform (casemap_upload_name_valid()). The relpath is flattened ('/'
 * becomes '_'), bytes that are unsafe in a name (controls, bytes that are not
 * UTF-8, and ASCII other than letters, digits, space and ._-+()[],=@) become
 * '_', and a leading '.' becomes '_'. A name longer than
 * CASEMAP_MAX_NAME_CHARS characters is shortened, and a name that collides with
 * an earlier one (compared without regard to ASCII case) gets "-" and 8 hex
 * digits of the relpath's SHA-256 before its extension; the extension (double
 * ones such as .nii.gz included) is always kept, since the importer decides by
 * it. Names that need no change are given out first, so a file keeps its own
 * name whenever it can. The result depends only on the entries, so it is the
 * same after a restart.
 *
 * On success returns 0 and stores a malloc'd array of n malloc'd names
 * (names[i] for entries[i]) in *ret_names; free it with casemap_names_free().
 * Returns -ENOMEM on failure.
 */
int casemap_upload_names(const struct scan_entry *entries, size_t n, char ***ret_names) GC_WUR;

/* Free an array of names. Accepts NULL. */
void casemap_names_free(char **names, size_t n);

/*
 * True when 'name' is a filename the upload endpoint accepts: non-empty, no
 * '/', not "." or "..", at most CASEMAP_MAX_NAME_CHARS characters, valid UTF-8
 * without control characters.
 */
bool casemap_upload_name_valid(const char *name);

/*
 * True when 'name' ends (ASCII case ignored) in an extension the platform's
 * image import accepts (contract 4.2): .mha .mhd .raw .zraw .dcm .nii .nii.gz
 * .tif .tiff .png .jpg .jpeg .svs .vms .vmu .ndpi .scn .mrxs .bif .zip, and
 * the extension is not the whole name.
 */
bool casemap_is_image_name(const char *name);

/* The image extension of 'name' (a pointer into it, with its dot), or NULL. */
const char *casemap_image_ext(const char *name);

/*
 * The distinct slugs the top-level entries of a case could be named after (a
 * name without its extension, when it looks like a slug: [a-z0-9_-]+), so that
 * a caller who cannot list every socket of the destination (archives, reader
 * studies) knows which ones to look up. Sorted. On success returns 0 and a
 * malloc'd array (free with casemap_names_free()); -E2BIG when there are more
 * than CASEMAP_MAX_CANDIDATES (such a case is not named after sockets: map it
 * with the sockets already known); -ENOMEM.
 */
int casemap_candidate_slugs(const struct scan_entry *entries, size_t n, char ***ret_slugs,
			    size_t *ret_n) GC_WUR;

/* "Image", "File", "Value"; and the inverse (-1 when unknown). */
const char *casemap_super_kind_name(enum casemap_super_kind kind);
int casemap_super_kind_from_name(const char *name);

#endif
