/* common/tp_notice.c: see tp_notice.h. */
#include <stdio.h>
#include <string.h>

#include <mbedtls/sha256.h>

#include "tp_buf.h"
#include "tp_notice.h"

void tp_notice_signature(const char *command, const char *payload, const char *node_secret,
                         char hex[65])
{
    const char *parts[3] = {command, payload, node_secret ? node_secret : ""};
    mbedtls_sha256_context ctx;
    unsigned char sum[32];
    mbedtls_sha256_init(&ctx);
    mbedtls_sha256_starts_ret(&ctx, 0);
    for (int i = 0; i < 3; i++)
        mbedtls_sha256_update_ret(&ctx, (const unsigned char *)parts[i], strlen(parts[i]));
    mbedtls_sha256_finish_ret(&ctx, sum);
    mbedtls_sha256_free(&ctx);
    tp_hex(hex, sum, 32);
}

char *tp_notice_format(const char *command, const char *payload, const char *node_secret)
{
    char sig[65];
    tp_notice_signature(command, payload, node_secret, sig);
    tp_buf_t b = {0};
    tp_buf_puts(&b, "{\"command\":\"");
    tp_buf_json_escape(&b, command, strlen(command));
    tp_buf_puts(&b, "\",\"payload\":\"");
    tp_buf_json_escape(&b, payload, strlen(payload));
    tp_buf_printf(&b, "\",\"signature\":\"%s\",\"algorithm\":5}", sig);
    tp_buf_cstr(&b);
    return b.data;
}
