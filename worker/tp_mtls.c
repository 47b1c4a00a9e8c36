/*
 * worker/tp_mtls.c: the mutual-TLS stage (Tyk's CertificateCheckMW): an
 * API with use_mutual_tls_auth serves only clients whose TLS certificate
 * is one of its client_certificates or issued by one of them.
 *
 * The listener asks every client for a certificate while any API of the
 * worker's generation uses mutual TLS (tp_conn.c); the check is here,
 * per API, so APIs without it on the same port are unaffected.
 */
#include <stdio.h>

#include "tp_worker.h"

static int mtls_wanted(const tp_chain_api_t *a)
{
    return a->mtls;
}

static tp_stage_rc_t mtls_run(tp_req_t *req)
{
    const tp_compiled_t *api = tp_compiled(req->conn->w, req);
    const tp_tls_t *tls = req->conn->io.tls;
    if (tls == NULL) {
        tp_respond_error(req, 403, "TLS not enabled");
        return TP_STAGE_DONE;
    }
    char hex[65], msg[128];
    switch (tp_tls_certset_check(api->mtls, tls, hex)) {
    case TP_TLS_CERT_OK:
        return TP_STAGE_NEXT;
    case TP_TLS_CERT_NONE:
        tp_respond_error(req, 403, "Client TLS certificate is required");
        return TP_STAGE_DONE;
    case TP_TLS_CERT_EXPIRED:
        tp_respond_error(req, 403, "Certificate has expired");
        return TP_STAGE_DONE;
    default:
        snprintf(msg, sizeof(msg), "Certificate with SHA256 %s not allowed", hex);
        tp_respond_error(req, 403, msg);
        return TP_STAGE_DONE;
    }
}

const tp_stage_t tp_stage_mtls = {.name = "mtls", .wanted = mtls_wanted, .run = mtls_run};
