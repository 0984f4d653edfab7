/*
 * check_buf.c: tests of the bounded buffer (src/buf.c).
 *
 * core: append, printf, take, clear keep the contents and the NUL terminator right.
 * limits: the cap is exact (cap bytes fit, cap + 1 do not), a failed append
 * resets the buffer, a zero cap holds nothing, large growth keeps the bytes.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

START_TEST(test_append_and_str)
{
	struct buf b;

	/* A fresh buffer is empty and reads as "". */
	buf_init(&b, 100);
	ck_assert_uint_eq(buf_len(&b), 0);
	ck_assert_str_eq(buf_str(&b), "");

	ck_assert_int_eq(buf_append(&b, "abc", 3), 0);
	ck_assert_int_eq(buf_appends(&b, "def"), 0);
	ck_assert_int_eq(buf_append(&b, "", 0), 0);
	ck_assert_uint_eq(buf_len(&b), 6);
	ck_assert_str_eq(buf_str(&b), "abcdef");

	/* Binary data with NULs is kept byte for byte. */
	ck_assert_int_eq(buf_append(&b, "\0x", 2), 0);
	ck_assert_uint_eq(buf_len(&b), 8);
	ck_assert_int_eq(memcmp(buf_str(&b), "abcdef\0x", 9), 0);
	buf_clear(&b);
	ck_assert_uint_eq(buf_len(&b), 0);
	ck_assert_str_eq(buf_str(&b), "");
}
END_TEST

START_TEST(test_printf)
{
	struct buf b;

	buf_init(&b, 1000);
	ck_assert_int_eq(buf_printf(&b, "%s=%d", "n", 42), 0);
	ck_assert_int_eq(buf_printf(&b, "%s", ""), 0);
	ck_assert_int_eq(buf_printf(&b, ", %05.1f", 2.5), 0);
	ck_assert_str_eq(buf_str(&b), "n=42, 002.5");
	ck_assert_uint_eq(buf_len(&b), strlen("n=42, 002.5"));
	buf_clear(&b);
}
END_TEST

START_TEST(test_take)
{
	struct buf b;
	size_t len = 99;
	char *s;

	/* Taking an empty buffer gives an allocated "". */
	buf_init(&b, 10);
	s = buf_take(&b, &len);
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s, "");
	ck_assert_uint_eq(len, 0);
	free(s);

	/* Taking hands over the bytes and leaves the buffer empty but usable. */
	ck_assert_int_eq(buf_appends(&b, "hello"), 0);
	s = buf_take(&b, &len);
	ck_assert_str_eq(s, "hello");
	ck_assert_uint_eq(len, 5);
	ck_assert_uint_eq(buf_len(&b), 0);
	ck_assert_str_eq(buf_str(&b), "");
	free(s);
	ck_assert_int_eq(buf_appends(&b, "again"), 0);
	s = buf_take(&b, NULL);
	ck_assert_str_eq(s, "again");
	free(s);

	/* The cap survives a take: still 10 bytes at most. */
	ck_assert_int_eq(buf_appends(&b, "0123456789x"), -E2BIG);
	buf_clear(&b);
}
END_TEST

START_TEST(test_cap_exact)
{
	struct buf b;

	/* Exactly cap bytes fit; one more fails. */
	buf_init(&b, 8);
	ck_assert_int_eq(buf_appends(&b, "1234"), 0);
	ck_assert_int_eq(buf_appends(&b, "5678"), 0);
	ck_assert_str_eq(buf_str(&b), "12345678");
	ck_assert_int_eq(buf_append(&b, "9", 1), -E2BIG);
	/* The failure reset the buffer. */
	ck_assert_uint_eq(buf_len(&b), 0);
	ck_assert_str_eq(buf_str(&b), "");
	/* And it is usable again with the same cap. */
	ck_assert_int_eq(buf_appends(&b, "abcdefgh"), 0);
	ck_assert_int_eq(buf_printf(&b, "%d", 1), -E2BIG);
	ck_assert_uint_eq(buf_len(&b), 0);
	buf_clear(&b);
}
END_TEST

START_TEST(test_cap_zero)
{
	struct buf b;
	char *s;

	buf_init(&b, 0);
	ck_assert_int_eq(buf_append(&b, "", 0), 0);
	ck_assert_int_eq(buf_appends(&b, "x"), -E2BIG);
	ck_assert_int_eq(buf_printf(&b, "x"), -E2BIG);
	s = buf_take(&b, NULL);
	ck_assert_str_eq(s, "");
	free(s);
}
END_TEST

START_TEST(test_huge_length)
{
	struct buf b;

	/* A length that would overflow len + n is refused, not wrapped. */
	buf_init(&b, 16);
	ck_assert_int_eq(buf_appends(&b, "ab"), 0);
	ck_assert_int_eq(buf_append(&b, "x", SIZE_MAX), -E2BIG);
	ck_assert_uint_eq(buf_len(&b), 0);
	buf_clear(&b);
}
END_TEST

START_TEST(test_growth)
{
	struct buf b;
	char chunk[1000];
	size_t i, j;
	const char *p;

	/* 1 MiB in 1000-byte appends keeps every byte in order. */
	buf_init(&b, 1 << 20);
	for (i = 0; i < (1 << 20) / sizeof(chunk); i++) {
		memset(chunk, (int)('a' + i % 26), sizeof(chunk));
		ck_assert_int_eq(buf_append(&b, chunk, sizeof(chunk)), 0);
	}
	ck_assert_uint_eq(buf_len(&b), i * sizeof(chunk));
	p = buf_str(&b);
	for (j = 0; j < i; j++)
		ck_assert_int_eq(p[j * sizeof(chunk) + 999], (int)('a' + j % 26));
	ck_assert_int_eq(p[buf_len(&b)], '\0');
	/* The remainder up to the cap fits, and nothing beyond. */
	ck_assert_int_eq(buf_append(&b, chunk, (1 << 20) - buf_len(&b)), 0);
	ck_assert_uint_eq(buf_len(&b), 1 << 20);
	ck_assert_int_eq(buf_append(&b, "x", 1), -E2BIG);
	buf_clear(&b);
}
END_TEST

static Suite *
buf_suite(void)
{
	Suite *s = suite_create("buf");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_test(tc, test_append_and_str);
	tcase_add_test(tc, test_printf);
	tcase_add_test(tc, test_take);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_cap_exact);
	tcase_add_test(tc, test_cap_zero);
	tcase_add_test(tc, test_huge_length);
	tcase_add_test(tc, test_growth);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(buf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
