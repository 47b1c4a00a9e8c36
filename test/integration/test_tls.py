"""TLS: the HTTPS listener (SNI, versions, suites, reloads, hostile peers),
mutual TLS, HTTPS upstreams (verification, skip flags, keep-alive, client
certificates). Certificates are made with openssl at test time."""
import hashlib
import http.server
import json
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import HOST, TlsFiles, _openssl, api_def, run_turnpike, wait_for


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    p = TlsFiles(d)
    cnf = p.dir / "openssl.cnf"
    # two more server certificates: one per name, one wildcard
    p.a_cert, p.a_key = p._issue("a", "a.example", cnf,
                                 "subjectAltName = DNS:a.example\n")
    p.w_cert, p.w_key = p._issue("w", "wild", cnf, "subjectAltName = DNS:*.wild.example\n")
    # a client certificate from the unrelated CA
    p.bad_client_cert, p.bad_client_key = (d / "badc.crt", d / "badc.key")
    _openssl("req", "-x509", "-config", cnf, "-newkey", "rsa:2048", "-nodes", "-keyout",
             p.bad_client_key, "-out", p.bad_client_cert, "-days", "3", "-subj", "/CN=stranger")
    return p


def der_of(pem_path):
    pem = open(pem_path).read()
    return ssl.PEM_cert_to_DER_cert(pem[pem.index("-----BEGIN CERTIFICATE-----"):])


def unverified_ctx():
    """A client context that takes any server certificate (the tests compare it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_client(port, sni=None, cert=None, key=None, ctx=None, session=None, timeout=5.0):
    if ctx is None:
        ctx = unverified_ctx()
        if cert:
            ctx.load_cert_chain(str(cert), str(key))
    raw = socket.create_connection((HOST, port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=sni, session=session)


def https_get(port, path, sni=None, cert=None, key=None, host="x", conn=None):
    s = conn or tls_client(port, sni=sni, cert=cert, key=key)
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    if conn is None:
        s.close()
    return int(head.split(b" ")[1]), body


def start_tls_gateway(gw, timeout=10.0):
    gw.start(wait=False)

    def ready():
        try:
            return https_get(gw.port, "/hello")[0] == 200
        except OSError:
            return False
    wait_for(ready, timeout, what="the gateway answering over TLS")


def server_opts(pki, **extra):
    o = {"use_ssl": True,
         "certificates": [
             {"domain_name": "localhost", "cert_file": str(pki.server_cert),
              "key_file": str(pki.server_key)},
             {"cert_file": str(pki.a_cert), "key_file": str(pki.a_key)},
             {"cert_file": str(pki.w_cert), "key_file": str(pki.w_key)}]}
    o.update(extra)
    return {"http_server_options": o}


class TlsUpstream:
    """An HTTPS upstream: counts its TLS connections and the SNI names seen."""

    def __init__(self, cert, key, client_ca=None):
        self.conns = 0
        self.sni = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                b = b"secure hello\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)

            def log_message(self, *a):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(str(client_ca))

        def on_sni(sock, name, c):
            outer.sni.append(name)
        ctx.sni_callback = on_sni

        class S(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                s, a = self.socket.accept()
                outer.conns += 1
                return ctx.wrap_socket(s, server_side=True), a

        self.srv = S((HOST, 0), H)
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


# ---- the listener ------------------------------------------------------------

def test_sni_picks_the_certificate_and_a_default_without_sni(make_gateway, pki, upstream):
    gw = make_gateway(conf=server_opts(pki), apis=[api_def("a", "/a/", upstream.url())],
                      start=False)
    start_tls_gateway(gw)
    for sni, cert in [("localhost", pki.server_cert), ("a.example", pki.a_cert),
                      ("x.wild.example", pki.w_cert), (None, pki.server_cert),
                      ("unknown.example", pki.server_cert)]:
        s = tls_client(gw.port, sni=sni)
        assert s.getpeercert(binary_form=True) == der_of(cert), sni
        assert s.version() == "TLSv1.2"
        s.close()
    # ALPN: http/1.1 is chosen from what the client offers
    ctx = unverified_ctx()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    s = tls_client(gw.port, ctx=ctx)
    assert s.selected_alpn_protocol() == "http/1.1"
    s.close()
    # a proxied request over TLS, and a verified connection by name
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    s = tls_client(gw.port, sni="localhost", ctx=ctx)
    status, body = https_get(gw.port, "/a/get", conn=s)
    assert status == 200
    s.close()


def test_session_resumption_and_versions(make_gateway, pki, upstream):
    gw = make_gateway(conf=server_opts(pki), apis=[api_def("a", "/a/", upstream.url())],
                      start=False, workers=1)
    start_tls_gateway(gw)
    ctx = unverified_ctx()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    s = tls_client(gw.port, ctx=ctx)
    https_get(gw.port, "/hello", conn=s)
    # without ssl_ciphers, Go's preference: AES-GCM first on a CPU with AES
    # instructions (mbedTLS alone would pick ChaCha20)
    flags = open("/proc/cpuinfo").read().split()
    want = ("ECDHE-RSA-AES128-GCM-SHA256" if "aes" in flags and "pclmulqdq" in flags
            else "ECDHE-RSA-CHACHA20-POLY1305")
    assert s.cipher()[0] == want
    sess = s.session
    s.close()
    s2 = tls_client(gw.port, ctx=ctx, session=sess)
    assert s2.session_reused
    s2.close()
    # TLS 1.1 only: refused by the default minimum (1.2)
    old = unverified_ctx()
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_client(gw.port, ctx=old)


def test_ssl_ciphers_restrict_and_unknown_is_a_config_error(make_gateway, pki, upstream, tmp_path):
    gw = make_gateway(conf=server_opts(pki, ssl_ciphers=["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]),
                      apis=[api_def("a", "/a/", upstream.url())], start=False)
    start_tls_gateway(gw)
    s = tls_client(gw.port)
    assert s.cipher()[0] == "ECDHE-RSA-AES256-GCM-SHA384"
    s.close()
    ctx = unverified_ctx()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_client(gw.port, ctx=ctx)

    conf = dict(gw.conf)
    conf["http_server_options"] = dict(conf["http_server_options"],
                                       ssl_ciphers=["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                                                    "TLS_MADE_UP"])
    path = tmp_path / "bad.conf"
    path.write_text(json.dumps(conf))
    r = run_turnpike(["--conf", str(path), "--test"])
    assert r.returncode != 0
    assert "http_server_options.ssl_ciphers[1]" in (r.stdout + r.stderr) and "TLS_MADE_UP" in (r.stdout + r.stderr), (r.stdout + r.stderr)


def test_bad_certificate_file_at_start_and_at_reload(make_gateway, pki, upstream, tmp_path):
    conf = server_opts(pki)
    conf["http_server_options"]["certificates"][0]["cert_file"] = str(tmp_path / "missing.crt")
    path = tmp_path / "bad.conf"
    base = make_gateway(conf=conf, apis=[], start=False)
    path.write_text(json.dumps(base.conf))
    r = run_turnpike(["--conf", str(path), "--test"])
    assert r.returncode != 0
    assert "missing.crt" in (r.stdout + r.stderr) and "No such file" in (r.stdout + r.stderr), (r.stdout + r.stderr)

    # running with a good certificate, then the key file goes bad: the reload fails and
    # the running certificate stays
    crt, key = tmp_path / "live.crt", tmp_path / "live.key"
    crt.write_bytes(pki.server_cert.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())
    gw = make_gateway(conf={"http_server_options": {"use_ssl": True, "certificates": [
        {"cert_file": str(crt), "key_file": str(key)}]}},
        apis=[api_def("a", "/a/", upstream.url())], start=False, workers=1)
    start_tls_gateway(gw)
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    mark = len(gw.log())
    gw.signal(1)  # SIGHUP
    gw.wait_log(r"reload failed.*live\.(crt|key)", timeout=10, after=mark)
    s = tls_client(gw.port)
    assert s.getpeercert(binary_form=True) == der_of(pki.server_cert)
    s.close()

    # a good new certificate at the same paths: new connections get it, a request in
    # flight on a connection opened before finishes
    old = tls_client(gw.port)
    old.sendall(b"GET /a/delay/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    crt.write_bytes(pki.a_cert.read_bytes())
    key.write_bytes(pki.a_key.read_bytes())
    mark = len(gw.log())
    gw.signal(1)
    gw.wait_log(r"worker generation \d+ started", timeout=10, after=mark)

    def new_cert():
        s = tls_client(gw.port)
        try:
            return s.getpeercert(binary_form=True) == der_of(pki.a_cert)
        finally:
            s.close()
    wait_for(new_cert, 10, what="the new certificate")
    data = b""
    while b"slept" not in data:
        c = old.recv(4096)
        if not c:
            break
        data += c
    assert data.startswith(b"HTTP/1.1 200") and b"slept" in data, data
    old.close()


def test_hostile_peers(make_gateway, pki, upstream):
    gw = make_gateway(conf=dict(server_opts(pki), turnpike={"header_timeout": 1, "workers": 1}),
                      apis=[api_def("a", "/a/", upstream.url())], start=False, workers=1)
    start_tls_gateway(gw)
    # plain HTTP on the TLS port: Go's answer, then close
    s = socket.create_connection((HOST, gw.port), timeout=5)
    s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        c = s.recv(4096)
        if not c:
            break
        data += c
    assert data == (b"HTTP/1.0 400 Bad Request\r\n\r\n"
                    b"Client sent an HTTP request to an HTTPS server.\n")
    # garbage: closed
    s = socket.create_connection((HOST, gw.port), timeout=5)
    s.sendall(b"\x16\x03\x01\x00\x05hello-not-tls" * 10)
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    # a handshake that never finishes: closed after header_timeout
    s = socket.create_connection((HOST, gw.port), timeout=5)
    s.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello
    t0 = time.monotonic()
    try:
        assert s.recv(4096) in (b"",) or True
    except (ConnectionResetError, socket.timeout):
        pass
    assert time.monotonic() - t0 < 4.5
    s.close()
    # the gateway still serves
    assert https_get(gw.port, "/a/get")[0] == 200
    assert gw.proc.poll() is None


def test_renegotiation_is_refused_and_x25519_is_the_default_group(make_gateway, pki, upstream):
    gw = make_gateway(conf=server_opts(pki), apis=[api_def("a", "/a/", upstream.url())],
                      start=False, workers=1)
    start_tls_gateway(gw)
    # openssl s_client: one request, then "R" asks for a renegotiation
    p = subprocess.Popen(["openssl", "s_client", "-connect", "%s:%d" % (HOST, gw.port),
                          "-tls1_2", "-servername", "localhost"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        p.stdin.write(b"GET /a/get HTTP/1.1\r\nHost: x\r\n\r\n")
        p.stdin.flush()
        time.sleep(1.0)
        p.stdin.write(b"R\n")
        p.stdin.flush()
        time.sleep(1.0)
        # the connection is over: s_client exits on the server's refusal
        out, _ = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = out.decode("latin-1")
    assert "Server Temp Key: X25519" in text
    assert "HTTP/1.1 200 OK" in text
    assert "RENEGOTIATING" in text
    assert "no renegotiation" in text, text[-2000:]
    # other connections are not affected
    assert https_get(gw.port, "/a/get")[0] == 200
    assert gw.proc.poll() is None


# ---- mutual TLS ----------------------------------------------------------------

def test_mutual_tls(make_gateway, pki, upstream):
    mtls = api_def("m", "/m/", upstream.url())
    mtls["use_mutual_tls_auth"] = True
    mtls["client_certificates"] = [str(pki.ca_cert)]
    gw = make_gateway(conf=server_opts(pki), apis=[mtls, api_def("a", "/a/", upstream.url())],
                      start=False)
    start_tls_gateway(gw)
    status, body = https_get(gw.port, "/m/get")
    assert status == 403 and json.loads(body)["error"] == "Client TLS certificate is required"
    status, body = https_get(gw.port, "/m/get", cert=pki.client_cert, key=pki.client_key)
    assert status == 200
    status, body = https_get(gw.port, "/m/get", cert=pki.bad_client_cert,
                             key=pki.bad_client_key)
    fp = hashlib.sha256(der_of(pki.bad_client_cert)).hexdigest()
    assert status == 403
    assert json.loads(body)["error"] == "Certificate with SHA256 %s not allowed" % fp
    # the API without mutual TLS on the same port needs no certificate
    assert https_get(gw.port, "/a/get")[0] == 200


def test_mutual_tls_on_a_plain_listener(make_gateway, pki, upstream):
    mtls = api_def("m", "/m/", upstream.url())
    mtls["use_mutual_tls_auth"] = True
    mtls["client_certificates"] = [str(pki.client_cert)]
    gw = make_gateway(apis=[mtls])
    r = gw.get("/m/get")
    assert r.status == 403 and r.json()["error"] == "TLS not enabled"


# ---- HTTPS upstreams -------------------------------------------------------------

@pytest.fixture
def tls_upstream(pki):
    made = []

    def make(**kw):
        u = TlsUpstream(kw.pop("cert", pki.server_cert), kw.pop("key", pki.server_key), **kw)
        made.append(u)
        return u
    yield make
    for u in made:
        u.stop()


def test_https_upstream_verified_reused_and_refused(make_gateway, pki, tls_upstream):
    up = tls_upstream()
    apis = [api_def("ok", "/ok/", "https://localhost:%d" % up.port),
            api_def("ip", "/ip/", "https://127.0.0.1:%d" % up.port),
            api_def("name", "/name/", "https://a.example:%d" % up.port)]
    gw = make_gateway(apis=apis, env={"SSL_CERT_FILE": str(pki.ca_cert)}, workers=1)
    for _ in range(5):
        r = gw.get("/ok/x")
        assert r.status == 200 and r.body == b"secure hello\n"
    assert up.conns == 1, "TLS connections to the upstream are kept alive and reused"
    assert up.sni == ["localhost"]
    assert gw.get("/ip/x").status == 200  # IP SAN
    # wrong name: a.example resolves nowhere useful, so point it at a cert for localhost
    r = gw.get("/name/x")
    assert r.status == 500


def test_https_upstream_wrong_ca_and_skip_flags(make_gateway, pki, tls_upstream):
    up = tls_upstream()
    skip = api_def("skip", "/skip/", "https://localhost:%d" % up.port)
    skip["proxy"]["transport"] = {"ssl_insecure_skip_verify": True}
    ciph = api_def("ciph", "/ciph/", "https://localhost:%d" % up.port)
    ciph["proxy"]["transport"] = {"ssl_ciphers": ["TLS_RSA_WITH_AES_128_CBC_SHA"]}
    apis = [api_def("v", "/v/", "https://localhost:%d" % up.port), skip, ciph]
    gw = make_gateway(apis=apis, env={"SSL_CERT_FILE": str(pki.other_ca_cert)})
    r = gw.get("/v/x")
    assert r.status == 500
    assert r.json()["error"] == "There was a problem proxying the request"
    gw.wait_log(r"upstream localhost:%d: TLS handshake failed: certificate verification "
                r"failed.*CN=localhost" % up.port)
    assert gw.get("/skip/x").status == 200
    assert gw.get("/ciph/x").status == 500

    gw2 = make_gateway(conf={"proxy_ssl_insecure_skip_verify": True}, apis=apis[:1],
                       env={"SSL_CERT_FILE": str(pki.other_ca_cert)})
    assert gw2.get("/v/x").status == 200


def test_https_upstream_expired_certificate(make_gateway, pki, tls_upstream):
    d = pki.dir
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "old.key",
             "-out", d / "old.csr", "-subj", "/CN=localhost", "-config", d / "openssl.cnf")
    (d / "old.ext").write_text("subjectAltName = DNS:localhost,IP:127.0.0.1\n")
    # valid until yesterday
    _openssl("x509", "-req", "-in", d / "old.csr", "-CA", pki.ca_cert, "-CAkey", pki.ca_key,
             "-set_serial", "77", "-days", "-1", "-out", d / "old.crt", "-extfile",
             d / "old.ext")
    up = tls_upstream(cert=d / "old.crt", key=d / "old.key")
    good = tls_upstream()
    skip = api_def("skip", "/skip/", "https://localhost:%d" % up.port)
    skip["proxy"]["transport"] = {"ssl_insecure_skip_verify": True}
    apis = [api_def("old", "/old/", "https://localhost:%d" % up.port), skip,
            api_def("good", "/good/", "https://localhost:%d" % good.port)]
    gw = make_gateway(apis=apis, env={"SSL_CERT_FILE": str(pki.ca_cert)}, workers=1)
    r = gw.get("/old/x")
    assert r.status == 500
    assert r.json()["error"] == "There was a problem proxying the request"
    gw.wait_log(r"upstream localhost:%d: TLS handshake failed: certificate verification "
                r"failed: The certificate validity has expired.*CN=localhost" % up.port)
    assert gw.get("/skip/x").status == 200
    assert gw.get("/good/x").status == 200


def test_https_upstream_client_certificate(make_gateway, pki, tls_upstream, tmp_path):
    up = tls_upstream(client_ca=pki.ca_cert)
    both = tmp_path / "client.pem"
    both.write_bytes(pki.client_cert.read_bytes() + pki.client_key.read_bytes())
    with_cert = api_def("c", "/c/", "https://localhost:%d" % up.port)
    with_cert["upstream_certificates"] = {"localhost:%d" % up.port: str(both)}
    without = api_def("n", "/n/", "https://localhost:%d" % up.port)
    gw = make_gateway(apis=[with_cert, without], env={"SSL_CERT_FILE": str(pki.ca_cert)})
    assert gw.get("/c/x").status == 200
    assert gw.get("/n/x").status == 500


def test_url_rewrite_to_an_https_host(make_gateway, pki, tls_upstream, upstream):
    """url_rewrites to https://: verified against the roots as the API's own
    https targets are, with the API's proxy.transport settings."""
    up = tls_upstream()

    def rw_api(api_id, target, **proxy):
        d = api_def(api_id, "/%s/" % api_id, target)
        d["proxy"].update(proxy)
        d["version_data"] = {"not_versioned": True, "versions": {"Default": {
            "name": "Default", "use_extended_paths": True, "extended_paths": {"url_rewrites": [
                {"path": "/go", "method": "GET", "match_pattern": "go",
                 "rewrite_to": "https://localhost:%d/elsewhere" % up.port}]}}}}
        return d

    apis = [rw_api("rw", upstream.url("/")),
            rw_api("rwskip", "https://localhost:%d/" % up.port,
                   transport={"ssl_insecure_skip_verify": True})]
    gw = make_gateway(apis=apis, env={"SSL_CERT_FILE": str(pki.ca_cert)}, workers=1)
    for _ in range(3):
        r = gw.get("/rw/go")
        assert r.status == 200 and r.body == b"secure hello\n", r
    assert "localhost" in up.sni
    # the API's own target is still plain http for other paths
    assert gw.get("/rw/other").status == 200
    # verification fails against another CA, unless the API's transport skips it
    gw2 = make_gateway(apis=apis, env={"SSL_CERT_FILE": str(pki.other_ca_cert)}, workers=1)
    assert gw2.get("/rw/go").status == 500
    assert gw2.get("/rwskip/go").status == 200
