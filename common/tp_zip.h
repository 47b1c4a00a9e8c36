/*
 * common/tp_zip.h: reading ZIP archives, for Tyk's plugin bundles (Go's
 * archive/zip writes them: entries stored or deflated, RFC 1951): the
 * central directory, each entry's data inflated and checked against its
 * CRC-32. No ZIP64, no encryption; names that climb out of the archive
 * ("..", absolute) are refused.
 *
 * Used by: the master, when it loads an API with a bundle.
 */
#ifndef TP_ZIP_H
#define TP_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "tp_buf.h"

typedef struct tp_zip_entry_s {
    char *name;
    int dir; /* a directory entry (its name ends with '/') */
    tp_buf_t data;
} tp_zip_entry_t;

/* The entries of the <n>-byte archive at <zip>, at most <max> bytes of
 * data in all: 0 with *out (*count of them), or -1 with the reason. */
int tp_zip_read(const void *zip, size_t n, size_t max, tp_zip_entry_t **out, size_t *count,
                char *err, size_t errlen);
void tp_zip_free(tp_zip_entry_t *e, size_t count);

/* RFC 1951 inflate of <n> bytes at <in>, appended to <out> (at most <max>
 * bytes): 0, or -1 with the reason. */
int tp_inflate(const void *in, size_t n, tp_buf_t *out, size_t max, char *err, size_t errlen);

/* The CRC-32 (IEEE) of <n> bytes at <p>. */
uint32_t tp_crc32(const void *p, size_t n);

#endif
