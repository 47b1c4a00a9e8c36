/* test/unit/test_zip.c: inflate (fixed, dynamic and stored blocks made by
 * zlib) and ZIP archives made by Python's zipfile, as Tyk bundles are. */
#include <stdlib.h>
#include <string.h>

#include "tp_buf.h"
#include "tp_test.h"
#include "tp_zip.h"

static tp_buf_t file(const char *path)
{
    tp_buf_t b = {0};
    if (tp_buf_read_file(&b, path) < 0)
        tp_test_fail(__FILE__, __LINE__, "cannot read %s", path);
    return b;
}

TP_TEST(inflate_blocks_zlib_writes)
{
    char err[200];
    tp_buf_t in = file("data/zip/fixed.bin"), out = {0};
    CHECK_INT(tp_inflate(in.data, in.len, &out, 1 << 20, err, sizeof(err)), 0);
    CHECK(out.len == 23 && memcmp(out.data, "hello hello hello world", 23) == 0);
    tp_buf_free(&in);
    out.len = 0;
    in = file("data/zip/stored.bin");
    CHECK_INT(tp_inflate(in.data, in.len, &out, 1 << 20, err, sizeof(err)), 0);
    CHECK(out.len == 30 && memcmp(out.data, "abcabc", 6) == 0);
    tp_buf_free(&in);
    out.len = 0;
    in = file("data/zip/dynamic.bin");
    tp_buf_t want = file("data/zip/mw.js.expected");
    CHECK_INT(tp_inflate(in.data, in.len, &out, 1 << 20, err, sizeof(err)), 0);
    CHECK(out.len == want.len && memcmp(out.data, want.data, want.len) == 0);
    /* a cap below the size, and a cut stream, are errors */
    out.len = 0;
    CHECK_INT(tp_inflate(in.data, in.len, &out, 100, err, sizeof(err)), -1);
    CHECK(strstr(err, "larger than allowed") != NULL);
    out.len = 0;
    CHECK_INT(tp_inflate(in.data, in.len / 2, &out, 1 << 20, err, sizeof(err)), -1);
    tp_buf_free(&in);
    tp_buf_free(&want);
    tp_buf_free(&out);
}

TP_TEST(zip_entries_stored_deflated_and_dirs)
{
    char err[200];
    tp_buf_t z = file("data/zip/bundle.zip"), want = file("data/zip/mw.js.expected");
    tp_zip_entry_t *e;
    size_t n;
    CHECK_INT(tp_zip_read(z.data, z.len, 1 << 20, &e, &n, err, sizeof(err)), 0);
    CHECK_INT(n, 4);
    CHECK_STR(e[0].name, "js/");
    CHECK_INT(e[0].dir, 1);
    CHECK_STR(e[1].name, "manifest.json");
    CHECK(strstr(tp_buf_cstr(&e[1].data), "\"file_list\"") != NULL);
    CHECK_STR(e[2].name, "js/mw.js");
    CHECK(e[2].data.len == want.len && memcmp(e[2].data.data, want.data, want.len) == 0);
    CHECK_STR(e[3].name, "plain.txt");
    CHECK_STR(tp_buf_cstr(&e[3].data), "stored as is\n");
    tp_zip_free(e, n);
    /* more than allowed in all */
    CHECK_INT(tp_zip_read(z.data, z.len, 1000, &e, &n, err, sizeof(err)), -1);
    CHECK(strstr(err, "more than 1000 bytes") != NULL);
    tp_buf_free(&z);
    tp_buf_free(&want);
}

TP_TEST(zip_refuses_bad_archives)
{
    char err[200];
    tp_zip_entry_t *e;
    size_t n;
    tp_buf_t z = file("data/zip/evil.zip");
    CHECK_INT(tp_zip_read(z.data, z.len, 1 << 20, &e, &n, err, sizeof(err)), -1);
    CHECK(strstr(err, "a name outside the archive") != NULL);
    tp_buf_free(&z);
    z = file("data/zip/corrupt.zip");
    CHECK_INT(tp_zip_read(z.data, z.len, 1 << 20, &e, &n, err, sizeof(err)), -1);
    CHECK(strstr(err, "js/mw.js") != NULL);
    tp_buf_free(&z);
    CHECK_INT(
        tp_zip_read("not a zip at all, just some text", 32, 1 << 20, &e, &n, err, sizeof(err)), -1);
    CHECK(strstr(err, "not a zip archive") != NULL);
    /* every truncation of a good archive fails cleanly */
    z = file("data/zip/bundle.zip");
    for (size_t cut = 0; cut < z.len; cut += 7) {
        if (tp_zip_read(z.data, cut, 1 << 20, &e, &n, err, sizeof(err)) == 0)
            tp_zip_free(e, n);
    }
    tp_buf_free(&z);
    CHECK_INT(tp_crc32("123456789", 9) == 0xcbf43926u, 1);
}

void test_zip_suite(void)
{
    TP_RUN(inflate_blocks_zlib_writes);
    TP_RUN(zip_entries_stored_deflated_and_dirs);
    TP_RUN(zip_refuses_bad_archives);
}
