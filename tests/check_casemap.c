/*
 * check_casemap.c: tests of the case-to-socket mapping (src/casemap.c).
 *
 * Table-driven: every row is a case (paths and contents, held in memory), a
 * destination and a watch configuration, and the exact outcome: either the
 * mapped values, encoded as "slug=Kind[entry indices]" / "slug=Value:json", or
 * the exact error message.
 * core: every super kind and naming form, the default socket per destination,
 * static values. errors: every documented failure with its message text.
 * names: upload names (flattening, unsafe bytes, length, collisions, a 300-file
 * DICOM-like case, 20,000 files), image extensions, candidate slugs, and the
 * file reader against a real directory.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "casemap.h"
#include "sha256.h"
#include "testutil.h"

/* The destination's sockets. generic-medical-image is last so a row can drop it. */
static struct casemap_socket sockets[] = {
	{ "ct-image", "Image", CASEMAP_IMAGE, "images/ct-image" },
	{ "mask", "Segmentation", CASEMAP_IMAGE, "images/mask" },
	{ "lung-volume", "Float", CASEMAP_VALUE, "lung-volume.json" },
	{ "age", "Integer", CASEMAP_VALUE, "age.json" },
	{ "volume-ml", "Float", CASEMAP_VALUE, "measurements/volume.json" },
	{ "report", "PDF file", CASEMAP_FILE, "report.pdf" },
	{ "results", "Anything", CASEMAP_FILE, "results.json" },
	{ "thumbnail", "Thumbnail png", CASEMAP_FILE, "thumbnail.png" },
	{ "generic-medical-image", "Image", CASEMAP_IMAGE, "images/generic-medical-image" },
};

static char *in_ct[] = { "ct-image" };
static char *in_ct_lung[] = { "ct-image", "lung-volume" };
static char *in_ct_mask[] = { "ct-image", "mask" };
static char *in_gmi[] = { "generic-medical-image" };

/* Interface sets, by number (0: none known). */
static const struct casemap_interface ifaces1[] = {
	{ in_ct, 1 }, { in_ct_lung, 2 }, { in_ct_mask, 2 },
};
static const struct casemap_interface ifaces2[] = { { in_ct_lung, 2 } };
static const struct casemap_interface ifaces3[] = { { in_ct, 1 } };
static const struct casemap_interface ifaces4[] = { { in_gmi, 1 } };
static const struct casemap_interface ifaces5[] = { { in_ct_mask, 2 } };

static const struct {
	const struct casemap_interface *list;
	size_t n;
} iface_sets[] = {
	{ NULL, 0 },
	{ ifaces1, GC_ARRAY_SIZE(ifaces1) },
	{ ifaces2, GC_ARRAY_SIZE(ifaces2) },
	{ ifaces3, GC_ARRAY_SIZE(ifaces3) },
	{ ifaces4, GC_ARRAY_SIZE(ifaces4) },
	{ ifaces5, GC_ARRAY_SIZE(ifaces5) },
};

#define ALGO CONFIG_DEST_ALGORITHM
#define ARCH CONFIG_DEST_ARCHIVE
#define RS CONFIG_DEST_READER_STUDY
#define BIG (CASEMAP_MAX_JSON_BYTES + 1LL)

struct tfile {
	const char *path;
	const char *content;	/* "@EACCES": the reader fails; "@BIG": BIG bytes */
};

struct row {
	const char *what;
	enum config_dest kind;
	int ifaces;
	const char *socket;
	struct config_value values[3];	/* up to the first NULL socket */
	bool no_gmi;			/* drop generic-medical-image from the sockets */
	struct tfile files[6];		/* sorted; up to the first NULL path */
	int want_r;
	const char *want;		/* encoded values, or the error message */
};

static const struct row rows[] = {
	/* core: named entries */
	{ "image directory", ALGO, 1, NULL, { { 0 } }, false,
	  { { "ct-image/a.dcm", "x" }, { "ct-image/sub/b.dcm", "x" } },
	  0, "ct-image=Image[0,1]" },
	{ "image file", ALGO, 1, NULL, { { 0 } }, false, { { "ct-image.mha", "x" } },
	  0, "ct-image=Image[0]" },
	{ "double extension", ALGO, 1, NULL, { { 0 } }, false, { { "ct-image.nii.gz", "x" } },
	  0, "ct-image=Image[0]" },
	{ "upper-case extension", ALGO, 1, NULL, { { 0 } }, false, { { "ct-image.MHA", "x" } },
	  0, "ct-image=Image[0]" },
	{ "file named exactly after an image socket", ARCH, 0, NULL, { { 0 } }, false,
	  { { "ct-image", "x" } }, 0, "ct-image=Image[0]" },
	{ "mhd and raw feed one image", ALGO, 1, NULL, { { 0 } }, false,
	  { { "ct-image.mhd", "x" }, { "ct-image.raw", "x" } }, 0, "ct-image=Image[0,1]" },
	{ "image and value", ALGO, 1, NULL, { { 0 } }, false,
	  { { "ct-image/x.dcm", "x" }, { "lung-volume.json", " 1.5\n" } },
	  0, "ct-image=Image[0]; lung-volume=Value: 1.5\n" },
	{ "two images", ALGO, 1, NULL, { { 0 } }, false,
	  { { "ct-image.mha", "x" }, { "mask.nii", "x" } }, 0, "ct-image=Image[0]; mask=Image[1]" },
	{ "file socket by extension", ARCH, 0, NULL, { { 0 } }, false,
	  { { "report.pdf", "%PDF" } }, 0, "report=File[0]" },
	{ "json file to a File socket", ARCH, 0, NULL, { { 0 } }, false,
	  { { "results.json", "{\"a\": 1}" } }, 0, "results=File[0]" },
	{ "image extension to a File socket", RS, 0, NULL, { { 0 } }, false,
	  { { "thumbnail.png", "x" } }, 0, "thumbnail=File[0]" },
	{ "named by relative_path", ARCH, 0, NULL, { { 0 } }, false,
	  { { "volume.json", "12" } }, 0, "volume-ml=Value:12" },
	{ "value without extension", ARCH, 0, NULL, { { 0 } }, false, { { "age", "42" } },
	  0, "age=Value:42" },
	{ "value with a BOM", ARCH, 0, NULL, { { 0 } }, false,
	  { { "age.json", "\xef\xbb\xbf" "42" } }, 0, "age=Value:42" },
	{ "value false is a value", ARCH, 0, NULL, { { 0 } }, false,
	  { { "age.json", "false" } }, 0, "age=Value:false" },

	/* core: the default socket */
	{ "archive default", ARCH, 0, NULL, { { 0 } }, false,
	  { { "1.dcm", "x" }, { "sub/2.dcm", "x" } }, 0, "generic-medical-image=Image[0,1]" },
	{ "reader study default", RS, 0, NULL, { { 0 } }, false,
	  { { "IM1", "x" }, { "IM2", "x" }, { "notes.json", "{" } },
	  0, "generic-medical-image=Image[0,1,2]" },
	{ "single file, not named", ARCH, 0, NULL, { { 0 } }, false, { { "scan 1.mha", "x" } },
	  0, "generic-medical-image=Image[0]" },
	{ "algorithm with one input", ALGO, 4, NULL, { { 0 } }, false,
	  { { "a/1.dcm", "x" }, { "b.dcm", "x" } }, 0, "generic-medical-image=Image[0,1]" },
	{ "algorithm: the single-input interface", ALGO, 1, NULL, { { 0 } }, false,
	  { { "1.dcm", "x" } }, 0, "ct-image=Image[0]" },
	{ "algorithm: the input static values leave open", ALGO, 1, NULL,
	  { { "lung-volume", "2.5" } }, false, { { "1.dcm", "x" } },
	  0, "ct-image=Image[0]; lung-volume=Value:2.5" },
	{ "watch socket", ARCH, 0, "mask", { { 0 } }, false, { { "seg.mha", "x" } },
	  0, "mask=Image[0]" },
	{ "watch socket beats the algorithm default", ALGO, 0, "mask", { { 0 } }, false,
	  { { "seg.mha", "x" } }, 0, "mask=Image[0]" },
	{ "watch socket: File", ARCH, 0, "report", { { 0 } }, false, { { "doc.pdf", "x" } },
	  0, "report=File[0]" },
	{ "watch socket: Value", ARCH, 0, "age", { { 0 } }, false, { { "x.json", "7" } },
	  0, "age=Value:7" },
	{ "named entries beat the watch socket", ARCH, 0, "mask", { { 0 } }, false,
	  { { "ct-image.mha", "x" } }, 0, "ct-image=Image[0]" },

	/* core: static values */
	{ "static value added", ALGO, 1, NULL, { { "lung-volume", "1.25" } }, false,
	  { { "ct-image.mha", "x" } }, 0, "ct-image=Image[0]; lung-volume=Value:1.25" },
	{ "the case's value wins", ALGO, 1, NULL, { { "lung-volume", "1" } }, false,
	  { { "ct-image.mha", "x" }, { "lung-volume.json", "2" } },
	  0, "ct-image=Image[0]; lung-volume=Value:2" },
	{ "static values on an archive", ARCH, 0, NULL,
	  { { "age", "3" }, { "lung-volume", "[1]" } }, false, { { "a.dcm", "x" } },
	  0, "age=Value:3; generic-medical-image=Image[0]; lung-volume=Value:[1]" },

	/* errors */
	{ "empty case", ARCH, 0, NULL, { { 0 } }, false, { { 0 } }, -EINVAL,
	  "the case has no files" },
	{ "stray entry", ALGO, 1, NULL, { { 0 } }, false,
	  { { "ct-image.mha", "x" }, { "notes.txt", "x" } }, -EINVAL,
	  "'notes.txt' matches no socket of algorithm 'corads-ai', but other entries of the "
	  "case are named after sockets ('ct-image.mha' for socket 'ct-image'); rename or "
	  "remove it" },
	{ "stray directory with a strange name", ARCH, 0, NULL, { { 0 } }, false,
	  { { "age.json", "1" }, { "new\nline 'q' \xff/x.dcm", "x" } }, -EINVAL,
	  "'new\\nline \\'q\\' \\xff/' matches no socket of archive 'lung-archive', but other "
	  "entries of the case are named after sockets ('age.json' for socket 'age'); rename "
	  "or remove it" },
	{ "directory for a Value socket", ARCH, 0, NULL, { { 0 } }, false,
	  { { "lung-volume/v.json", "1" } }, -EINVAL,
	  "'lung-volume/' is a directory, but socket 'lung-volume' is a Value socket and takes "
	  "one .json file" },
	{ "directory for a File socket", ARCH, 0, NULL, { { 0 } }, false,
	  { { "report/a.pdf", "1" } }, -EINVAL,
	  "'report/' is a directory, but socket 'report' is a File socket and takes one file" },
	{ "json for an Image socket", ALGO, 1, NULL, { { 0 } }, false,
	  { { "ct-image.json", "1" } }, -EINVAL,
	  "'ct-image.json' is a JSON file, but socket 'ct-image' is an Image socket" },
	{ "unknown extension for an Image socket", ALGO, 1, NULL, { { 0 } }, false,
	  { { "ct-image.txt", "1" } }, -EINVAL,
	  "'ct-image.txt' is not an image file (unknown extension), but socket 'ct-image' is "
	  "an Image socket" },
	{ "image for a Value socket", ARCH, 0, NULL, { { 0 } }, false,
	  { { "lung-volume.mha", "1" } }, -EINVAL,
	  "'lung-volume.mha' is not a .json file, but socket 'lung-volume' is a Value socket" },
	{ "two files for a File socket", ARCH, 0, NULL, { { 0 } }, false,
	  { { "report.pdf", "1" }, { "report.txt", "1" } }, -EINVAL,
	  "'report.pdf' and 'report.txt' both map to socket 'report', which takes one file" },
	{ "two values for a Value socket", ARCH, 0, NULL, { { 0 } }, false,
	  { { "age", "1" }, { "age.json", "1" } }, -EINVAL,
	  "'age' and 'age.json' both map to socket 'age', which takes one value" },
	{ "invalid JSON", ALGO, 1, NULL, { { 0 } }, false,
	  { { "ct-image.mha", "x" }, { "lung-volume.json", "{\"a\": 1,}" } }, -EINVAL,
	  "'lung-volume.json' for socket 'lung-volume' is not valid JSON (error at byte 9)" },
	{ "trailing garbage", ARCH, 0, NULL, { { 0 } }, false,
	  { { "age.json", "1 2" } }, -EINVAL,
	  "'age.json' for socket 'age' is not valid JSON (error at byte 2)" },
	{ "null JSON", ARCH, 0, NULL, { { 0 } }, false, { { "age.json", " null " } }, -EINVAL,
	  "'age.json' for socket 'age' is null; a Value socket needs a value" },
	{ "JSON not UTF-8", ARCH, 0, NULL, { { 0 } }, false, { { "age.json", "\"\xff\"" } },
	  -EINVAL, "'age.json' for socket 'age' is not valid UTF-8 text" },
	{ "JSON too large", ARCH, 0, NULL, { { 0 } }, false, { { "age.json", "@BIG" } },
	  -EINVAL, "'age.json' for socket 'age' is too large for a value (16777217 bytes, at "
	  "most 16777216)" },
	{ "JSON unreadable", ARCH, 0, NULL, { { 0 } }, false, { { "age.json", "@EACCES" } },
	  -EACCES, "cannot read 'age.json' for socket 'age': Permission denied" },
	{ "missing input", ALGO, 2, NULL, { { 0 } }, false, { { "ct-image.mha", "x" } }, -EINVAL,
	  "the case does not match an interface of algorithm 'corads-ai': missing input "
	  "'lung-volume'; the closest interface is ('ct-image', 'lung-volume'); all interfaces: "
	  "('ct-image', 'lung-volume')" },
	{ "extra input", ALGO, 3, NULL, { { 0 } }, false,
	  { { "ct-image.mha", "x" }, { "mask.mha", "x" } }, -EINVAL,
	  "the case does not match an interface of algorithm 'corads-ai': not an input: 'mask' "
	  "(from 'mask.mha'); the closest interface is ('ct-image'); all interfaces: "
	  "('ct-image')" },
	{ "missing and extra", ALGO, 5, NULL, { { "lung-volume", "1" } }, false,
	  { { "ct-image.mha", "x" } }, -EINVAL,
	  "the case does not match an interface of algorithm 'corads-ai': missing input 'mask'; "
	  "not an input: 'lung-volume' (from static value); the closest interface is "
	  "('ct-image', 'mask'); all interfaces: ('ct-image', 'mask')" },
	{ "no single input", ALGO, 5, NULL, { { 0 } }, false, { { "1.dcm", "x" } }, -EINVAL,
	  "the case is not named after sockets and algorithm 'corads-ai' has no single input to "
	  "take it (interfaces: ('ct-image', 'mask')); name the case's entries after its input "
	  "sockets or set 'socket' in the watch" },
	{ "default socket unknown", ARCH, 0, NULL, { { 0 } }, true, { { "1.dcm", "x" } }, -EINVAL,
	  "socket 'generic-medical-image', which is to take the whole case, is not a known "
	  "socket of archive 'lung-archive'" },
	{ "watch socket unknown", RS, 0, "nope", { { 0 } }, false, { { "1.dcm", "x" } }, -EINVAL,
	  "socket 'nope', which is to take the whole case, is not a known socket of reader "
	  "study 'lung-study'" },
	{ "default File socket, two files", ARCH, 0, "report", { { 0 } }, false,
	  { { "a.pdf", "x" }, { "b.pdf", "x" } }, -EINVAL,
	  "socket 'report' is a File socket and takes one file, but the whole case (2 files) "
	  "was given" },
	{ "default File socket, a directory", ARCH, 0, "report", { { 0 } }, false,
	  { { "d/a.pdf", "x" } }, -EINVAL,
	  "socket 'report' is a File socket and takes one file, but the whole case (1 file) "
	  "was given" },
	{ "default Value socket, not JSON", ARCH, 0, "age", { { 0 } }, false,
	  { { "x.mha", "x" } }, -EINVAL,
	  "'x.mha' is not a .json file, but socket 'age' is a Value socket" },
	{ "static value, unknown socket", ARCH, 0, NULL, { { "nope", "1" } }, false,
	  { { "a.dcm", "x" } }, -EINVAL,
	  "the static value for socket 'nope' names no known socket of archive 'lung-archive'" },
	{ "static value for an Image socket", ARCH, 0, NULL, { { "ct-image", "1" } }, false,
	  { { "a.dcm", "x" } }, -EINVAL,
	  "the static value for socket 'ct-image' cannot be used: it is an Image socket, and "
	  "static values need a Value socket" },
	{ "static value for a File socket", ARCH, 0, NULL, { { "report", "1" } }, false,
	  { { "a.dcm", "x" } }, -EINVAL,
	  "the static value for socket 'report' cannot be used: it is a File socket, and static "
	  "values need a Value socket" },
	{ "static value, invalid JSON", ARCH, 0, NULL, { { "age", "[1" } }, false,
	  { { "a.dcm", "x" } }, -EINVAL,
	  "the static value for socket 'age' is not valid JSON (error at byte 2)" },
	{ "static value null", ARCH, 0, NULL, { { "age", "null" } }, false,
	  { { "a.dcm", "x" } }, -EINVAL,
	  "the static value for socket 'age' is null; a Value socket needs a value" },
	{ "two static values, one socket", ARCH, 0, NULL, { { "age", "1" }, { "age", "2" } },
	  false, { { "a.dcm", "x" } }, -EINVAL, "two static values for socket 'age'" },
};

/* The reader: contents come from the row being tested. */
static const struct row *cur_row;

static int
row_read(void *userdata, const struct scan_entry *entry, size_t max_bytes, char **ret_data,
	 size_t *ret_len)
{
	const struct row *row = cur_row;

	for (size_t i = 0; i < GC_ARRAY_SIZE(row->files) && row->files[i].path; i++) {
		const struct tfile *f = &row->files[i];

		if (strcmp(f->path, entry->relpath) != 0)
			continue;
		if (strcmp(f->content, "@EACCES") == 0)
			return -EACCES;
		if (strlen(f->content) > max_bytes)
			return -EFBIG;
		*ret_data = strdup(f->content);
		*ret_len = strlen(f->content);
		return 0;
	}
	return -ENOENT;
}

/* Encode a result as "slug=Kind[i,j]; slug=Value:json". */
static char *
encode(const struct casemap_result *res)
{
	struct buf b;
	char *s;

	buf_init(&b, 1 << 20);
	for (size_t i = 0; i < res->n; i++) {
		const struct casemap_value *v = &res->values[i];

		ck_assert_int_eq(buf_printf(&b, "%s%s=%s", i ? "; " : "", v->socket,
					    casemap_super_kind_name(v->super_kind)), 0);
		ck_assert_ptr_nonnull(v->origin);
		if (v->source == CASEMAP_SRC_JSON) {
			ck_assert_uint_eq(v->n_files, 0);
			ck_assert_int_eq(buf_printf(&b, ":%s", v->json), 0);
			continue;
		}
		ck_assert_ptr_null(v->json);
		ck_assert_int_eq(buf_appends(&b, "["), 0);
		for (size_t j = 0; j < v->n_files; j++)
			ck_assert_int_eq(buf_printf(&b, "%s%zu", j ? "," : "", v->files[j]), 0);
		ck_assert_int_eq(buf_appends(&b, "]"), 0);
	}
	s = buf_take(&b, NULL);
	ck_assert_ptr_nonnull(s);
	return s;
}

START_TEST(test_map_rows)
{
	const struct row *row = &rows[_i];
	struct scan_entry entries[GC_ARRAY_SIZE(row->files)];
	struct casemap_dest dest = { 0 };
	struct casemap_reader reader = { row_read, NULL };
	struct casemap_result res = { 0 };
	char *err = NULL, *got;
	size_t n = 0, n_values = 0;
	int r;

	for (; n < GC_ARRAY_SIZE(row->files) && row->files[n].path; n++) {
		entries[n].relpath = strdup(row->files[n].path);
		entries[n].relpath_len = strlen(row->files[n].path);
		entries[n].size = strcmp(row->files[n].content, "@BIG") == 0
				  ? BIG : (int64_t)strlen(row->files[n].content);
		entries[n].mtime_ns = 0;
		entries[n].mode = S_IFREG | 0644;
		if (n > 0)
			ck_assert_msg(strcmp(entries[n - 1].relpath, entries[n].relpath) < 0,
				      "row '%s': files not sorted", row->what);
	}
	while (n_values < GC_ARRAY_SIZE(row->values) && row->values[n_values].socket)
		n_values++;
	dest.kind = row->kind;
	dest.slug = row->kind == ALGO ? "corads-ai" : row->kind == ARCH ? "lung-archive"
								   : "lung-study";
	dest.sockets = sockets;
	dest.n_sockets = GC_ARRAY_SIZE(sockets) - (row->no_gmi ? 1 : 0);
	dest.interfaces = iface_sets[row->ifaces].list;
	dest.n_interfaces = iface_sets[row->ifaces].n;
	dest.socket = row->socket;
	dest.values = row->values;
	dest.n_values = n_values;

	cur_row = row;
	r = casemap_map(entries, n, &dest, &reader, &res, &err);
	for (size_t i = 0; i < n; i++)
		free(entries[i].relpath);
	if (row->want_r == 0) {
		ck_assert_msg(r == 0, "row '%s': %d %s", row->what, r, err ? err : "");
		got = encode(&res);
		ck_assert_msg(strcmp(got, row->want) == 0, "row '%s': got '%s', want '%s'",
			      row->what, got, row->want);
		free(got);
		casemap_result_clear(&res);
		ck_assert_uint_eq(res.n, 0);
	} else {
		ck_assert_msg(r == row->want_r, "row '%s': got %d, want %d", row->what, r,
			      row->want_r);
		ck_assert_ptr_nonnull(err);
		ck_assert_msg(strcmp(err, row->want) == 0, "row '%s':\n got '%s'\nwant '%s'",
			      row->what, err, row->want);
		/* *ret untouched. */
		ck_assert_ptr_null(res.values);
		free(err);
	}
}
END_TEST

START_TEST(test_map_no_reader)
{
	struct scan_entry e = { "age.json", 8, 2, 0, S_IFREG | 0644 };
	struct casemap_dest dest = { .kind = ARCH, .slug = "a", .sockets = sockets,
				     .n_sockets = GC_ARRAY_SIZE(sockets) };
	struct casemap_result res = { 0 };
	char *err = NULL;

	/* A Value socket without a reader is refused, and NULL reterr_msg is allowed. */
	ck_assert_int_eq(casemap_map(&e, 1, &dest, NULL, &res, &err), -EINVAL);
	ck_assert_str_eq(err, "cannot read 'age.json' for socket 'age': no reader");
	free(err);
	ck_assert_int_eq(casemap_map(&e, 0, &dest, NULL, &res, NULL), -EINVAL);
	casemap_result_clear(NULL);
}
END_TEST

static const struct {
	const char *name;
	bool image;
	const char *ext;
} image_names[] = {
	{ "a.mha", true, ".mha" }, { "a.MHD", true, ".MHD" }, { "a.raw", true, ".raw" },
	{ "a.zraw", true, ".zraw" }, { "a.dcm", true, ".dcm" }, { "a.nii", true, ".nii" },
	{ "a.nii.gz", true, ".nii.gz" }, { "a.NII.GZ", true, ".NII.GZ" },
	{ "a.tif", true, ".tif" }, { "a.tiff", true, ".tiff" }, { "a.png", true, ".png" },
	{ "a.jpg", true, ".jpg" }, { "a.jpeg", true, ".jpeg" }, { "a.svs", true, ".svs" },
	{ "a.vms", true, ".vms" }, { "a.vmu", true, ".vmu" }, { "a.ndpi", true, ".ndpi" },
	{ "a.scn", true, ".scn" }, { "a.mrxs", true, ".mrxs" }, { "a.bif", true, ".bif" },
	{ "a.zip", true, ".zip" }, { "x.y.dcm", true, ".dcm" },
	{ ".mha", false, NULL }, { "mha", false, NULL }, { "a.gz", false, NULL },
	{ "a.json", false, NULL }, { "a.txt", false, NULL }, { "IM0001", false, NULL },
	{ "a.mha.bak", false, NULL }, { "", false, NULL },
};

START_TEST(test_image_names)
{
	const char *ext = casemap_image_ext(image_names[_i].name);

	ck_assert_msg(casemap_is_image_name(image_names[_i].name) == image_names[_i].image, "%s",
		      image_names[_i].name);
	if (image_names[_i].ext)
		ck_assert_str_eq(ext, image_names[_i].ext);
	else
		ck_assert_ptr_null(ext);
}
END_TEST

START_TEST(test_super_kind_names)
{
	ck_assert_str_eq(casemap_super_kind_name(CASEMAP_IMAGE), "Image");
	ck_assert_str_eq(casemap_super_kind_name(CASEMAP_FILE), "File");
	ck_assert_str_eq(casemap_super_kind_name(CASEMAP_VALUE), "Value");
	ck_assert_int_eq(casemap_super_kind_from_name("Image"), CASEMAP_IMAGE);
	ck_assert_int_eq(casemap_super_kind_from_name("File"), CASEMAP_FILE);
	ck_assert_int_eq(casemap_super_kind_from_name("Value"), CASEMAP_VALUE);
	ck_assert_int_eq(casemap_super_kind_from_name("image"), -1);
	ck_assert_int_eq(casemap_super_kind_from_name(NULL), -1);
}
END_TEST

/* Upload names ---------------------------------------------------------- */

/* Entries from a NULL-terminated list of sorted relpaths. */
static struct scan_entry *
mk_entries(const char *const *paths, size_t *ret_n)
{
	size_t n = 0;
	struct scan_entry *e;

	while (paths[n])
		n++;
	e = calloc(n ? n : 1, sizeof(*e));
	ck_assert_ptr_nonnull(e);
	for (size_t i = 0; i < n; i++) {
		e[i].relpath = strdup(paths[i]);
		e[i].relpath_len = strlen(paths[i]);
		e[i].mode = S_IFREG | 0644;
	}
	*ret_n = n;
	return e;
}

static void
free_entries(struct scan_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].relpath);
	free(e);
}

/* "-" and the first 8 hex digits of SHA-256(s). */
static char *
h8(const char *s)
{
	char hex[SHA256_HEX_SIZE];

	sha256_hex(s, strlen(s), hex);
	return tu_strdupf("-%.8s", hex);
}

static const struct {
	const char *what;
	const char *paths[4];
	const char *want[4];	/* "#" is replaced by h8(path) */
} name_rows[] = {
	{ "flattened", { "a/b/c.dcm" }, { "a_b_c.dcm" } },
	{ "top-level names are kept", { "IM 0001 (1).dcm", "scan.nii.gz" },
	  { "IM 0001 (1).dcm", "scan.nii.gz" } },
	{ "flattened name taken by a real one", { "a/b.dcm", "a_b.dcm" },
	  { "a_b#.dcm", "a_b.dcm" } },
	{ "two flatten to one", { "a:b/c.dcm", "a?b/c.dcm" }, { "a_b_c.dcm", "a_b_c#.dcm" } },
	{ "case-insensitive collision", { "A.dcm", "a.dcm" }, { "A.dcm", "a#.dcm" } },
	{ "double extension kept on collision", { "x/s.nii.gz", "x_s.nii.gz" },
	  { "x_s#.nii.gz", "x_s.nii.gz" } },
	{ "unsafe ASCII", { "a\"b'c*d|e<f>g.dcm" }, { "a_b_c_d_e_f_g.dcm" } },
	{ "newline and tab", { "new\nline\t.dcm" }, { "new_line_.dcm" } },
	{ "bytes that are not UTF-8", { "\xff\xfe.dcm" }, { "__.dcm" } },
	{ "C1 control", { "a\xc2\x85z.dcm" }, { "a__z.dcm" } },
	{ "UTF-8 kept", { "caf\xc3\xa9/\xe6\x97\xa5.dcm" }, { "caf\xc3\xa9_\xe6\x97\xa5.dcm" } },
	{ "leading dot", { ".x/y" }, { "_x_y" } },
	{ "no extension, collision", { "a/b", "a_b" }, { "a_b#", "a_b" } },
	{ "long extension is not an extension",
	  { "a/b.averyveryverylongext", "a_b.averyveryverylongext" },
	  { "a_b.averyveryverylongext#", "a_b.averyveryverylongext" } },
};

START_TEST(test_name_rows)
{
	struct scan_entry *e;
	char **names = NULL;
	size_t n;

	e = mk_entries(name_rows[_i].paths, &n);
	ck_assert_int_eq(casemap_upload_names(e, n, &names), 0);
	for (size_t i = 0; i < n; i++) {
		const char *want = name_rows[_i].want[i];
		const char *hash = strchr(want, '#');
		char *w;

		if (hash) {
			char *h = h8(name_rows[_i].paths[i]);

			w = tu_strdupf("%.*s%s%s", (int)(hash - want), want, h, hash + 1);
			free(h);
		} else {
			w = strdup(want);
		}
		ck_assert_msg(strcmp(names[i], w) == 0, "%s: [%zu] got '%s', want '%s'",
			      name_rows[_i].what, i, names[i], w);
		ck_assert(casemap_upload_name_valid(names[i]));
		free(w);
	}
	casemap_names_free(names, n);
	free_entries(e, n);
}
END_TEST

/* Every name valid, no two equal ignoring ASCII case. */
static void
assert_names_ok(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(casemap_upload_name_valid(names[i]), "invalid '%s'", names[i]);
		for (size_t j = i + 1; j < n; j++)
			ck_assert_msg(strcasecmp(names[i], names[j]) != 0, "'%s' twice", names[i]);
	}
}

START_TEST(test_names_long)
{
	char *a200 = malloc(300), *u150 = malloc(400), *want;
	const char *paths[4];
	struct scan_entry *e;
	char **names;
	size_t n;

	/* 200 'a' + .nii.gz: cut to 128 characters, hash and extension kept. */
	memset(a200, 'a', 200);
	strcpy(a200 + 200, ".nii.gz");
	/* 150 'é' (2 bytes each) + .dcm: counted in characters, cut on a boundary. */
	for (int i = 0; i < 150; i++)
		memcpy(u150 + 2 * i, "\xc3\xa9", 2);
	strcpy(u150 + 300, ".dcm");
	paths[0] = a200;
	paths[1] = u150;
	paths[2] = NULL;
	e = mk_entries(paths, &n);
	ck_assert_int_eq(casemap_upload_names(e, n, &names), 0);
	{
		char *h = h8(a200);

		want = tu_strdupf("%.112s%s.nii.gz", a200, h);
		free(h);
	}
	ck_assert_str_eq(names[0], want);
	ck_assert_uint_eq(strlen(names[0]), 128);
	free(want);
	ck_assert(casemap_upload_name_valid(names[1]));
	/* 115 'é' + "-" + 8 hex digits + ".dcm" = 128 characters, 243 bytes. */
	ck_assert_uint_eq(strlen(names[1]), 2 * 115 + 9 + 4);
	ck_assert_str_eq(names[1] + strlen(names[1]) - 4, ".dcm");
	casemap_names_free(names, n);
	free_entries(e, n);
	free(a200);
	free(u150);
}
END_TEST

START_TEST(test_names_dicom_300)
{
	char *paths[303];
	struct scan_entry *e;
	char **names, **again;
	size_t n, k = 0;

	/* Assumptions: a DICOM export, 10 series of 30 slices, plus two names that
	 * flatten onto existing ones. All 302 names valid, unique, stable, .dcm kept. */
	paths[k++] = strdup("PAT_STUDY_SER01_IM0001.dcm");
	for (int s = 1; s <= 10; s++)
		for (int i = 1; i <= 30; i++)
			paths[k++] = tu_strdupf("PAT/STUDY/SER%02d/IM%04d.dcm", s, i);
	paths[k++] = strdup("PAT_STUDY/SER01/IM0001.dcm");
	/* Sorted as scan sorts (insertion sort: the list is nearly sorted). */
	for (size_t i = 1; i < k; i++)
		for (size_t j = i; j > 0 && strcmp(paths[j - 1], paths[j]) > 0; j--) {
			char *t = paths[j];

			paths[j] = paths[j - 1];
			paths[j - 1] = t;
		}
	paths[k] = NULL;
	e = mk_entries((const char *const *)paths, &n);
	ck_assert_uint_eq(n, 302);
	ck_assert_int_eq(casemap_upload_names(e, n, &names), 0);
	ck_assert_int_eq(casemap_upload_names(e, n, &again), 0);
	assert_names_ok(names, n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_str_eq(names[i], again[i]);
		ck_assert_str_eq(names[i] + strlen(names[i]) - 4, ".dcm");
		ck_assert_ptr_null(strchr(names[i], '/'));
	}
	/* The real top-level file keeps its name. */
	for (size_t i = 0; i < n; i++)
		if (strcmp(e[i].relpath, "PAT_STUDY_SER01_IM0001.dcm") == 0)
			ck_assert_str_eq(names[i], "PAT_STUDY_SER01_IM0001.dcm");
	casemap_names_free(names, n);
	casemap_names_free(again, n);
	free_entries(e, n);
	for (size_t i = 0; i < k; i++)
		free(paths[i]);
}
END_TEST

START_TEST(test_names_20000)
{
	struct scan_entry *e = calloc(20000, sizeof(*e));
	char **names;
	size_t n = 0;

	/* 20,000 files whose flattened names collide in pairs ("d/x" and "d_x"). */
	for (int i = 0; i < 10000; i++) {
		char p[64];

		snprintf(p, sizeof(p), "d/%05d.dcm", i);
		e[n].relpath = strdup(p);
		e[n].relpath_len = strlen(p);
		n++;
	}
	for (int i = 0; i < 10000; i++) {
		char p[64];

		snprintf(p, sizeof(p), "d_%05d.dcm", i);
		e[n].relpath = strdup(p);
		e[n].relpath_len = strlen(p);
		n++;
	}
	ck_assert_int_eq(casemap_upload_names(e, n, &names), 0);
	/* Spot checks (an all-pairs check of 20,000 names is too slow to be useful). */
	ck_assert_str_eq(names[10000], "d_00000.dcm");
	ck_assert_str_ne(names[0], "d_00000.dcm");
	ck_assert_uint_eq(strlen(names[0]), strlen("d_00000-12345678.dcm"));
	for (size_t i = 0; i < n; i++)
		ck_assert(casemap_upload_name_valid(names[i]));
	casemap_names_free(names, n);
	free_entries(e, n);
}
END_TEST

static const struct {
	const char *name;
	bool valid;
} valid_names[] = {
	{ "a.dcm", true }, { "with space.dcm", true }, { "caf\xc3\xa9", true },
	{ "", false }, { ".", false }, { "..", false }, { "a/b", false }, { "a\nb", false },
	{ "\xff", false }, { "a\x7f", false }, { "\xc2\x85", false },
};

START_TEST(test_name_valid)
{
	char *long129 = malloc(130);

	ck_assert_msg(casemap_upload_name_valid(valid_names[_i].name) == valid_names[_i].valid,
		      "'%s'", valid_names[_i].name);
	memset(long129, 'x', 129);
	long129[129] = '\0';
	ck_assert(!casemap_upload_name_valid(long129));
	long129[128] = '\0';
	ck_assert(casemap_upload_name_valid(long129));
	ck_assert(!casemap_upload_name_valid(NULL));
	free(long129);
}
END_TEST

START_TEST(test_candidate_slugs)
{
	static const char *const paths[] = {
		"IM0001.dcm", "ct-image.mha", "ct-image/x.dcm", "lung-volume.json", "notes",
		"report.pdf", "1.2.840.dcm", NULL,
	};
	struct scan_entry *e, many[CASEMAP_MAX_CANDIDATES + 1];
	char **slugs;
	size_t n, ns;

	e = mk_entries(paths, &n);
	ck_assert_int_eq(casemap_candidate_slugs(e, n, &slugs, &ns), 0);
	ck_assert_uint_eq(ns, 4);
	ck_assert_str_eq(slugs[0], "ct-image");
	ck_assert_str_eq(slugs[1], "lung-volume");
	ck_assert_str_eq(slugs[2], "notes");
	ck_assert_str_eq(slugs[3], "report");
	casemap_names_free(slugs, ns);
	free_entries(e, n);

	/* More candidates than the cap: not a socket-named case. */
	for (int i = 0; i <= CASEMAP_MAX_CANDIDATES; i++) {
		many[i].relpath = tu_strdupf("s%03d.dcm", i);
		many[i].relpath_len = strlen(many[i].relpath);
	}
	ck_assert_int_eq(casemap_candidate_slugs(many, CASEMAP_MAX_CANDIDATES + 1, &slugs, &ns),
			 -E2BIG);
	ck_assert_int_eq(casemap_candidate_slugs(many, CASEMAP_MAX_CANDIDATES, &slugs, &ns), 0);
	casemap_names_free(slugs, ns);
	for (int i = 0; i <= CASEMAP_MAX_CANDIDATES; i++)
		free(many[i].relpath);
}
END_TEST

START_TEST(test_read_at)
{
	char *dir = tu_mkdtemp("casemap"), *p;
	struct scan_entry e = { 0 };
	char *data = NULL;
	size_t len = 0;
	int dfd;

	/* Reads through nested directories; refuses symlinks, non-files, too much. */
	p = tu_strdupf("%s/sub", dir);
	ck_assert_int_eq(mkdir(p, 0755), 0);
	free(p);
	p = tu_strdupf("%s/sub/v.json", dir);
	tu_write_file(p, "[1, 2]", -1, 0644);
	free(p);
	p = tu_strdupf("%s/link", dir);
	ck_assert_int_eq(symlink("sub", p), 0);
	free(p);
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dfd, 0);

	e.relpath = "sub/v.json";
	e.relpath_len = strlen(e.relpath);
	ck_assert_int_eq(casemap_read_at(&dfd, &e, 100, &data, &len), 0);
	ck_assert_uint_eq(len, 6);
	ck_assert_str_eq(data, "[1, 2]");
	free(data);
	ck_assert_int_eq(casemap_read_at(&dfd, &e, 5, &data, &len), -EFBIG);
	ck_assert_int_eq(casemap_read_at(&dfd, &e, 6, &data, &len), 0);
	free(data);
	e.relpath = "link/v.json";
	e.relpath_len = strlen(e.relpath);
	ck_assert_int_eq(casemap_read_at(&dfd, &e, 100, &data, &len), -ENOTDIR);
	e.relpath = "link";
	e.relpath_len = strlen(e.relpath);
	ck_assert_int_eq(casemap_read_at(&dfd, &e, 100, &data, &len), -ELOOP);
	e.relpath = "sub";
	e.relpath_len = strlen(e.relpath);
	ck_assert_int_eq(casemap_read_at(&dfd, &e, 100, &data, &len), -EINVAL);
	e.relpath = "missing.json";
	e.relpath_len = strlen(e.relpath);
	ck_assert_int_eq(casemap_read_at(&dfd, &e, 100, &data, &len), -ENOENT);
	close(dfd);
	tu_rmtree(dir);
	free(dir);
}
END_TEST

static Suite *
casemap_suite(void)
{
	Suite *s = suite_create("casemap");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_loop_test(tc, test_map_rows, 0, (int)GC_ARRAY_SIZE(rows));
	tcase_add_loop_test(tc, test_image_names, 0, (int)GC_ARRAY_SIZE(image_names));
	tcase_add_test(tc, test_super_kind_names);
	tcase_add_test(tc, test_candidate_slugs);
	tcase_add_test(tc, test_read_at);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, test_map_no_reader);
	tcase_add_loop_test(tc, test_name_valid, 0, (int)GC_ARRAY_SIZE(valid_names));
	suite_add_tcase(s, tc);

	tc = tcase_create("names");
	tcase_add_loop_test(tc, test_name_rows, 0, (int)GC_ARRAY_SIZE(name_rows));
	tcase_add_test(tc, test_names_long);
	tcase_add_test(tc, test_names_dicom_300);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_names_20000);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(casemap_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
