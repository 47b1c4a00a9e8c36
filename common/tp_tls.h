/*
 * common/tp_tls.h: TLS with mbedTLS over memory buffers, for every
 * connection that speaks it (clients on a TLS listener, HTTPS upstreams,
 * Redis): the bytes travel on our own libuv sockets (worker/tp_io.c,
 * common/tp_redis.c), mbedTLS only turns ciphertext into plaintext and back.
 *
 * Used by: the master, which builds the contexts from files it reads (the
 * listener's certificates; workers inherit them), workers (API-level
 * contexts built from PEM text the master froze into the generation) and
 * the Redis client. This is the only module that knows mbedTLS's SSL API.
 *
 * A tp_tls_ctx_t is one configuration (role, versions, suites, own
 * certificates, roots, verification), reference counted so connections
 * that outlive a generation keep theirs; a tp_tls_t is one connection.
 * Random numbers come from one generator per process: call
 * tp_tls_after_fork() in a child before its first handshake.
 * This build has TLS 1.0 to 1.2 (mbedTLS 2.28 has no TLS 1.3).
 * Single-threaded.
 */
#ifndef TP_TLS_H
#define TP_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "tp_buf.h"

typedef struct tp_tls_ctx_s tp_tls_ctx_t;
typedef struct tp_tls_s tp_tls_t;
typedef struct tp_tls_certset_s tp_tls_certset_t;

enum { TP_TLS_CLIENT = 0, TP_TLS_SERVER = 1 };
enum { TP_TLS_VERIFY_NONE = 0, TP_TLS_VERIFY_OPTIONAL = 1, TP_TLS_VERIFY_REQUIRED = 2 };

/* Go's numeric TLS versions (tls.VersionTLS12 and friends). */
#define TP_TLS_V10 769
#define TP_TLS_V11 770
#define TP_TLS_V12 771
#define TP_TLS_V13 772

/* The roots used when none are named: $SSL_CERT_FILE as Go reads it, else
 * Debian's bundle. */
const char *tp_tls_default_roots(void);

/* Reseeds the process's random generator (a forked child must not repeat
 * its parent's numbers). */
void tp_tls_after_fork(void);

/* A new context, one reference. Servers refuse renegotiation; clients
 * verify the peer against tp_tls_default_roots() until told otherwise
 * (roots load lazily at the first connection unless tp_tls_ctx_roots_file
 * or tp_tls_ctx_add_ca named others). */
tp_tls_ctx_t *tp_tls_ctx_new(int endpoint, char *err, size_t errlen);
void tp_tls_ctx_ref(tp_tls_ctx_t *ctx);
void tp_tls_ctx_unref(tp_tls_ctx_t *ctx);

/* Version bounds in Go's codes (0: the default, TLS 1.2). 772 as a maximum
 * means the highest this build has; as a minimum it is an error. */
int tp_tls_ctx_versions(tp_tls_ctx_t *ctx, int64_t min, int64_t max, char *err, size_t errlen);

/* Cipher suites by Go name (case-insensitive, Go's aliases included; TLS
 * 1.3 names are accepted and have no effect, as in Go). An unknown name
 * fails with its index in *bad. */
int tp_tls_ctx_ciphers(tp_tls_ctx_t *ctx, char *const *names, size_t n, size_t *bad, char *err,
                       size_t errlen);
/* Is <name> a suite name this build knows? */
int tp_tls_cipher_known(const char *name);

/* Adds a certificate chain and its key (PEM text; the key may be in the
 * same text). A server may hold several: SNI picks one by <domain> (when
 * given), the certificate's subject CN and DNS names, then a "*." wildcard
 * of the first label, else the first added. A client presents its one.
 * <what> names the source (a file) in errors. */
int tp_tls_ctx_add_cert(tp_tls_ctx_t *ctx, const char *crt_pem, size_t crt_len, const char *key_pem,
                        size_t key_len, const char *domain, const char *what, char *err,
                        size_t errlen);
size_t tp_tls_ctx_ncerts(const tp_tls_ctx_t *ctx);

/* Roots for verifying the peer: PEM text or a file (replacing the
 * default roots). */
int tp_tls_ctx_add_ca(tp_tls_ctx_t *ctx, const char *pem, size_t len, const char *what, char *err,
                      size_t errlen);
int tp_tls_ctx_roots_file(tp_tls_ctx_t *ctx, const char *path, char *err, size_t errlen);
void tp_tls_ctx_verify(tp_tls_ctx_t *ctx, int mode);
/* Client: also require the leaf's subject CN to equal the host name. */
void tp_tls_ctx_force_cn(tp_tls_ctx_t *ctx, int on);
/* Client: allow the server to renegotiate (Go's RenegotiateFreelyAsClient). */
void tp_tls_ctx_renegotiation(tp_tls_ctx_t *ctx, int allow);
/* ALPN protocol offered (client) or accepted (server); static string. */
void tp_tls_ctx_alpn(tp_tls_ctx_t *ctx, const char *proto);
/* Server: session tickets, so returning clients skip the full handshake. */
int tp_tls_ctx_tickets(tp_tls_ctx_t *ctx, char *err, size_t errlen);

/* ---- connections ---------------------------------------------------------- */

/* A session on <ctx>. A client names the <host> it connects to (SNI and the
 * certificate name check; an IP address is checked against the
 * certificate's IP addresses). NULL when out of memory. */
tp_tls_t *tp_tls_new(tp_tls_ctx_t *ctx, const char *host);
void tp_tls_free(tp_tls_t *t);

/* Server: ask this handshake's client for a certificate (verification is
 * left to the caller: tp_tls_certset_check). */
void tp_tls_request_client_cert(tp_tls_t *t);

/* Ciphertext received: kept until the session consumes it. */
void tp_tls_feed(tp_tls_t *t, const char *in, size_t n);
/* Ciphertext the session wants on the wire; the caller empties it. */
tp_buf_t *tp_tls_pending(tp_tls_t *t);

/* Drives the handshake with what was fed. Returns 1 when done, 0 when more
 * input is needed, -1 on failure with the reason (verification problems
 * spelled out) in <err>. */
int tp_tls_handshake(tp_tls_t *t, char *err, size_t errlen);
int tp_tls_handshake_done(const tp_tls_t *t);

/* Plaintext from what was fed, up to <cap> bytes into <dst>. Returns the
 * count, TP_TLS_WANT (0) when more input is needed, TP_TLS_CLOSED when the
 * peer closed the session, TP_TLS_ERROR with the reason in <err>. */
enum { TP_TLS_WANT = 0, TP_TLS_ERROR = -1, TP_TLS_CLOSED = -2 };
long tp_tls_read(tp_tls_t *t, char *dst, size_t cap, char *err, size_t errlen);
/* Reads everything available into <out>; returns 0, TP_TLS_CLOSED or
 * TP_TLS_ERROR. */
int tp_tls_read_all(tp_tls_t *t, tp_buf_t *out, char *err, size_t errlen);
/* Does the session hold input it has not returned yet? */
int tp_tls_has_input(const tp_tls_t *t);

/* Encrypts <n> plaintext bytes into the pending output. Returns 0 or -1. */
int tp_tls_write(tp_tls_t *t, const char *p, size_t n, char *err, size_t errlen);
/* Queues a close_notify alert. */
void tp_tls_close_notify(tp_tls_t *t);

/* After a handshake: the negotiated ALPN protocol (or NULL), the version
 * and suite names, whether the session was resumed. */
const char *tp_tls_alpn(const tp_tls_t *t);
const char *tp_tls_version(const tp_tls_t *t);
const char *tp_tls_suite(const tp_tls_t *t);
/* The subject of the peer's leaf certificate as seen during the handshake
 * ("" when none was sent). */
const char *tp_tls_peer_subject(const tp_tls_t *t);

/* ---- allowed client certificates (mutual TLS) ----------------------------- */

/* Certificates from PEM text (leaf certificates or CAs). */
tp_tls_certset_t *tp_tls_certset_new(void);
int tp_tls_certset_add(tp_tls_certset_t *s, const char *pem, size_t len, const char *what,
                       char *err, size_t errlen);
void tp_tls_certset_free(tp_tls_certset_t *s);

enum {
    TP_TLS_CERT_OK,
    TP_TLS_CERT_NONE,        /* the client sent no certificate */
    TP_TLS_CERT_NOT_ALLOWED, /* neither listed nor issued by a listed CA */
    TP_TLS_CERT_EXPIRED,     /* listed, but past its end date */
};
/* Checks the client certificate of <t> against <s> (Tyk's
 * CertificateCheckMW): allowed when its SHA-256 equals a listed
 * certificate's or a listed CA verifies it. <hex> gets the SHA-256 of the
 * presented certificate (65 bytes). */
int tp_tls_certset_check(const tp_tls_certset_t *s, const tp_tls_t *t, char hex[65]);

#endif
