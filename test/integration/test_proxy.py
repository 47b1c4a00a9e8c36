"""Proxying through keyless APIs: methods, path and query rewriting,
headers, connection handling, large and streamed bodies, gateway-made
errors."""
import hashlib
import json
import re
import socket
import time

import pytest

from conftest import (HOST, TYK_API_401, Gateway, api_def, build_request, free_port, pattern_bytes,
                      pattern_sha256, rss_kb, run_turnpike)

MB = 1024 * 1024
BIG = 50 * MB

TYK_401 = TYK_API_401
TYK_500 = b'{\n    "error": "There was a problem proxying the request"\n}'
TYK_504 = b'{\n    "error": "Upstream service reached hard timeout."\n}'
TYK_DNS = b'{\n    "error": "Upstream host lookup failed"\n}'


def version():
    out = run_turnpike(["--version"]).stdout
    return out.splitlines()[0].split()[1]


@pytest.fixture(scope="module")
def dead_port():
    return free_port()  # reserved for this session, nothing listens on it


@pytest.fixture(scope="module")
def gw(upstream, dead_port, tmp_path_factory):
    u = upstream.url
    apis = [
        api_def("echo-api-id", "/echo-api/", u("/")),
        api_def("long", "/echo-api/long/", u("/echo/long")),
        api_def("join", "/j/", u("/echo/t/")),
        api_def("nopath", "/np/", "http://%s:%d" % (HOST, upstream.port)),
        api_def("query", "/q/", u("/echo/q?a=1")),
        api_def("nostrip-id", "/nostrip/", u("/echo/ns"), strip_listen_path=False),
        # api_id equal to the listen path's name (api_id "users" on /users/)
        api_def("same", "/same/", u("/echo/s"), strip_listen_path=False),
        api_def("dss", "/dss/", u("/echo/d/"), disable_strip_slash=True),
        api_def("ph", "/ph/", u("/"), preserve_host_header=True),
        api_def("keyed", "/keyed/", u("/"), keyless=False),
        api_def("down", "/down/", "http://%s:%d/" % (HOST, dead_port)),
        api_def("dns", "/dns/", "http://no-such-host.invalid:8080/"),
    ]
    g = Gateway(tmp_path_factory.mktemp("proxy-gw"), conf={"proxy_default_timeout": 1.5}, apis=apis)
    g.start()
    yield g
    g.stop()


def echo(resp):
    assert resp.status == 200, resp
    return json.loads(resp.body)


def hdrs(e, name):
    return [v for k, v in e["headers"] if k.lower() == name.lower()]


# ---- methods ------------------------------------------------------------------

@pytest.mark.parametrize("method,body", [
    ("GET", None), ("POST", b"post-body"), ("PUT", b"x" * 100000), ("DELETE", None),
    ("PATCH", b"{}"), ("OPTIONS", None),
])
def test_methods_reach_upstream(gw, method, body):
    e = echo(gw.request(method, "/echo-api/echo", body=body))
    assert e["method"] == method
    assert e["path"] == "/echo"
    assert e["body_len"] == (len(body) if body else 0)
    assert e["body_sha256"] == hashlib.sha256(body or b"").hexdigest()


def test_head_has_no_body_and_keeps_connection(gw):
    with gw.conn() as c:
        r = c.request("HEAD", "/echo-api/bytes/1000")
        assert r.status == 200
        assert r.header("Content-Length") == "1000"
        # had the gateway sent a body, it would be parsed as the next response
        r2 = c.request("GET", "/echo-api/echo/after-head")
        assert echo(r2)["path"] == "/echo/after-head"


# ---- path and query -------------------------------------------------------------

@pytest.mark.parametrize("req,path,query", [
    ("/echo-api/echo", "/echo", ""),
    ("/echo-api/echo/a/b/", "/echo/a/b/", ""),
    ("/echo-api/echo?b=2&c=3", "/echo", "b=2&c=3"),
    ("/echo-api/long/echo", "/echo/long/echo", ""),      # longest listen path wins
    ("/j/", "/echo/t", ""),                             # empty remainder: target path
    ("/j/a/b", "/echo/t/a/b", ""),
    ("/j/a/", "/echo/t/a/", ""),
    ("/np/echo/z", "/echo/z", ""),                      # target without a path
    ("/q/", "/echo/q", "a=1"),                          # target query kept
    ("/q/x?b=2", "/echo/q/x", "a=1&b=2"),               # target query & request query
    ("/nostrip/a", "/echo/ns/nostrip/a", ""),           # strip_listen_path false
    ("/same/a", "/echo/s/same/a", ""),                  # ... also when api_id == "same"
    ("/dss/", "/echo/d/", ""),                          # disable_strip_slash: target as is
    ("/dss/x", "/echo/d/x", ""),
    ("/echo-api/echo/a%2Fb%20c", "/echo/a%2Fb%20c", ""),  # escaped path passes as received
])
def test_upstream_path_and_query(gw, req, path, query):
    e = echo(gw.get(req))
    assert (e["path"], e["query"]) == (path, query)


def test_api_id_route(gw):
    """An API is also served at /<api_id>/."""
    e = echo(gw.get("/echo-api-id/echo/x"))
    assert e["path"].endswith("/echo/x")


def test_strict_routes(upstream, make_gateway):
    apis = [api_def("ns", "/noslash", upstream.url("/echo/ns2"))]
    loose = make_gateway(apis=apis, workers=1, name="loose")
    assert echo(loose.get("/noslash/x"))["path"] == "/echo/ns2/x"
    assert echo(loose.get("/noslashfoo"))["path"] == "/echo/ns2/foo"
    strict = make_gateway(conf={"http_server_options": {"enable_strict_routes": True}}, apis=apis,
                          workers=1, name="strict")
    assert echo(strict.get("/noslash/x"))["path"] == "/echo/ns2/x"
    assert echo(strict.get("/noslash"))["path"] == "/echo/ns2"
    r = strict.get("/noslashfoo")
    assert r.status == 404 and r.body == b"Not Found"


HEADER_LINE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \t]*[^\r\n]*$")


def redirect_head(port, path):
    """The raw head of the response to GET <path>, checked line by line."""
    s = socket.create_connection((HOST, port), timeout=2)
    try:
        s.sendall(build_request("GET", path, host="%s:%d" % (HOST, port)))
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                d = s.recv(4096)
            except socket.timeout:
                break
            if not d:
                break
            data += d
    finally:
        s.close()
    head = data.split(b"\r\n\r\n")[0]
    lines = head.split(b"\r\n")
    bad = [l for l in lines[1:] if not HEADER_LINE.match(l)]
    assert not bad, "malformed header lines %r in response head %r" % (bad, data)
    status = int(lines[0].split()[1])
    headers = dict(l.decode().split(":", 1) for l in lines[1:])
    return status, {k.lower(): v.strip() for k, v in headers.items()}


@pytest.mark.parametrize("req,location", [
    ("/echo-api//echo", "/echo-api/echo"),
    ("/echo-api/./echo", "/echo-api/echo"),
    ("/echo-api/x/../echo?k=v", "/echo-api/echo?k=v"),
])
def test_unclean_paths_redirect(gw, req, location):
    for _ in range(5):
        status, h = redirect_head(gw.port, req)
        assert status == 301
        assert h["location"] == location
        assert h["content-length"] == "0"


def test_clean_path_is_proxied(gw):
    assert echo(gw.get("/echo-api/echo/"))["path"] == "/echo/"


def test_redirect_after_longer_redirect(upstream, make_gateway):
    """A 301 whose Location is shorter than the previous one's (same worker)
    carries exactly the right headers."""
    g = make_gateway(apis=[api_def("e", "/e/", upstream.url("/"))], workers=1)
    for long, short in [("/e//echo/" + "a" * 60, "/e//echo"), ("/e/x/../" + "b" * 40, "/e/./c")]:
        status, h = redirect_head(g.port, long)
        assert status == 301
        status, h = redirect_head(g.port, short)
        assert status == 301
        assert h["location"] == short.replace("//", "/").replace("/./", "/")
        assert set(h) == {"date", "location", "content-length"}


def test_skip_url_cleaning_proxies_as_is(upstream, make_gateway):
    g = make_gateway(conf={"http_server_options": {"skip_url_cleaning": True}},
                     apis=[api_def("e", "/e/", upstream.url("/"))], workers=1)
    e = echo(g.get("/e/echo//x/./y"))
    assert e["path"] == "/echo//x/./y"


# ---- request headers -----------------------------------------------------------

def test_host_header_is_target(gw, upstream):
    e = echo(gw.get("/echo-api/echo", headers=[("X-Check", "1")]))
    assert hdrs(e, "Host") == ["%s:%d" % (HOST, upstream.port)]


def test_preserve_host_header(gw):
    r = gw.request("GET", "/ph/echo", host="example.test:1234")
    assert hdrs(echo(r), "Host") == ["example.test:1234"]


@pytest.mark.parametrize("sent,expected", [
    ([], "127.0.0.1"),
    ([("X-Forwarded-For", "1.2.3.4")], "1.2.3.4, 127.0.0.1"),
    ([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2, 3.3.3.3")],
     "1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"),
])
def test_x_forwarded_for(gw, sent, expected):
    e = echo(gw.get("/echo-api/echo", headers=sent))
    assert hdrs(e, "X-Forwarded-For") == [expected]


def test_hop_by_hop_request_headers_removed(gw):
    sent = [
        ("Connection", "keep-alive, X-Drop-Me"),
        ("X-Drop-Me", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("TE", "trailers, deflate"),
        ("Trailer", "X-Trailer"),
        ("Upgrade", "foo/1"),
        ("X-Keep-Me", "yes"),
        ("Authorization", "Bearer passes-through"),
    ]
    e = echo(gw.get("/echo-api/echo", headers=sent))
    names = [k.lower() for k, _ in e["headers"]]
    for gone in ("connection", "x-drop-me", "keep-alive", "proxy-connection", "proxy-authorization",
                 "trailer", "upgrade"):
        assert gone not in names, (gone, e["headers"])
    assert hdrs(e, "TE") == ["trailers"]
    assert hdrs(e, "X-Keep-Me") == ["yes"]
    assert hdrs(e, "Authorization") == ["Bearer passes-through"]


def test_user_agent(gw):
    e = echo(gw.get("/echo-api/echo"))
    assert hdrs(e, "User-Agent") == ["Turnpike/%s" % version()]
    e = echo(gw.get("/echo-api/echo", headers=[("User-Agent", "my-client/2")]))
    assert hdrs(e, "User-Agent") == ["my-client/2"]


def test_chunked_upload_reaches_upstream_chunked(gw):
    data = b"abc" * 1000
    with gw.conn() as c:
        c.send(build_request("POST", "/echo-api/echo", [("Transfer-Encoding", "chunked")], None,
                             "%s:%d" % (HOST, gw.port)) + b"5\r\nhello\r\n" +
               b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n")
        e = echo(c.read_response())
    assert hdrs(e, "Transfer-Encoding") == ["chunked"]
    assert e["body_len"] == 5 + len(data)
    assert e["body_sha256"] == hashlib.sha256(b"hello" + data).hexdigest()


# ---- response headers ------------------------------------------------------------

def test_hop_by_hop_response_headers_removed(make_gateway, scripted):
    up = scripted(lambda head, body: (
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
        b"Proxy-Authenticate: Basic\r\nX-Fine: yes\r\nContent-Length: 2\r\n\r\nok"))
    g = make_gateway(apis=[api_def("s", "/s/", up.url("/"))], workers=1)
    r = g.get("/s/x")
    assert r.status == 200 and r.body == b"ok"
    assert r.header("X-Fine") == "yes"
    for gone in ("X-Secret", "Keep-Alive", "Proxy-Authenticate"):
        assert r.header(gone) is None, (gone, r.headers)


@pytest.mark.parametrize("code", [201, 404, 418, 500, 503])
def test_upstream_status_passes_through(gw, code):
    r = gw.get("/echo-api/status/%d" % code)
    assert r.status == code
    assert r.header("X-Generator") is None  # not a gateway-made error


def test_204_then_keepalive(gw):
    with gw.conn() as c:
        r = c.request("GET", "/echo-api/status/204")
        assert r.status == 204
        assert echo(c.request("GET", "/echo-api/echo/next"))["path"] == "/echo/next"


# ---- connections -----------------------------------------------------------------

def test_keepalive_reuses_connection(gw):
    with gw.conn() as c:
        for i in range(5):
            r = c.request("GET", "/echo-api/echo/%d" % i)
            assert echo(r)["path"] == "/echo/%d" % i
            assert (r.header("Connection") or "").lower() != "close"
        assert not c.closed_by_peer(0.3)


def test_http10_keepalive(gw):
    with gw.conn() as c:
        for i in range(2):
            c.send(b"GET /echo-api/echo/k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.status == 200
            assert (r.header("Connection") or "").lower() == "keep-alive"


def test_pipelining_in_order(gw):
    host = "%s:%d" % (HOST, gw.port)
    with gw.conn() as c:
        c.send(build_request("GET", "/echo-api/echo/p1", host=host) +
               build_request("POST", "/echo-api/echo/p2", body=b"x" * 1000, host=host) +
               build_request("GET", "/echo-api/echo/p3", host=host))
        got = [echo(c.read_response()) for _ in range(3)]
    assert [e["path"] for e in got] == ["/echo/p1", "/echo/p2", "/echo/p3"]
    assert [e["method"] for e in got] == ["GET", "POST", "GET"]
    assert got[1]["body_len"] == 1000


def test_expect_100_continue(gw):
    with gw.conn() as c:
        c.send(build_request("POST", "/echo-api/echo", [("Expect", "100-continue"),
                                                        ("Content-Length", "5")],
                             host="%s:%d" % (HOST, gw.port)))
        interim = c.read_response(keep_interim=True)
        assert interim.status == 100
        c.send(b"hello")
        e = echo(c.read_response())
    assert e["body_len"] == 5


def test_close_connections_and_hide_generator(upstream, make_gateway):
    g = make_gateway(conf={"close_connections": True, "hide_generator_header": True},
                     apis=[api_def("e", "/e/", upstream.url("/")),
                           api_def("k", "/k/", upstream.url("/"), keyless=False)], workers=1)
    with g.conn() as c:
        r = c.request("GET", "/e/echo")
        assert r.status == 200
        assert r.header("Connection", "").lower() == "close"
        assert c.closed_by_peer(2)
    r = g.get("/k/x")
    assert r.status == 401 and r.body == TYK_401
    assert r.header("X-Generator") is None


# ---- bodies ----------------------------------------------------------------------

def test_chunked_download_passes_through(gw):
    with gw.conn() as c:
        r = c.request("GET", "/echo-api/chunked/100000")
    assert r.status == 200
    assert r.header("Transfer-Encoding", "").lower() == "chunked"
    assert r.body == pattern_bytes(100000)


def test_eof_delimited_download(gw):
    with gw.conn() as c:
        r = c.request("GET", "/echo-api/eof/100000")
        assert r.status == 200
        assert r.body == pattern_bytes(100000)


def test_http10_client_gets_dechunked_body(gw):
    with gw.conn() as c:
        c.send(b"GET /echo-api/chunked/100000 HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.header("Transfer-Encoding") is None, r.headers
        assert r.body == pattern_bytes(100000)
        assert c.closed_by_peer(2)


def test_upload_50mb_content_length(gw):
    data = pattern_bytes(BIG)
    with gw.conn(timeout=60) as c:
        c.send(build_request("PUT", "/echo-api/echo", body=b"", host="%s:%d" % (HOST, gw.port),
                             headers=[("Content-Length", str(BIG))]))
        c.send(data)
        e = echo(c.read_response())
    assert e["body_len"] == BIG
    assert e["body_sha256"] == pattern_sha256(BIG)


def test_upload_50mb_chunked(gw):
    data = pattern_bytes(BIG)
    with gw.conn(timeout=60) as c:
        c.send(build_request("POST", "/echo-api/echo", [("Transfer-Encoding", "chunked")],
                             host="%s:%d" % (HOST, gw.port)))
        step = 1000003  # odd sizes: chunk boundaries fall anywhere in reads
        for i in range(0, BIG, step):
            part = data[i:i + step]
            c.send(b"%x\r\n" % len(part) + part + b"\r\n")
        c.send(b"0\r\n\r\n")
        e = echo(c.read_response())
    assert e["body_len"] == BIG
    assert e["body_sha256"] == pattern_sha256(BIG)


@pytest.mark.parametrize("kind", ["bytes", "chunked"])
def test_download_50mb(gw, kind):
    with gw.conn(timeout=60) as c:
        c.send(build_request("GET", "/echo-api/%s/%d" % (kind, BIG), host="%s:%d" % (HOST, gw.port)))
        r = c.read_response(sink=lambda b: None)
    assert r.status == 200
    assert r.body_len == BIG
    assert r.sha256 == pattern_sha256(BIG)


def read_body_slowly(c, length, slow_secs, tick=None, pause=None):
    """Reads a Content-Length body of <length> bytes: first <slow_secs> of
    16 KiB reads every 5 ms (calling tick() after each), or one <pause>
    after the first read; then at full speed. Returns (bytes, sha256)."""
    h = hashlib.sha256()
    got = 0
    if c.buf:
        h.update(bytes(c.buf))
        got += len(c.buf)
        c.buf.clear()
    slow_until = time.time() + slow_secs
    while got < length:
        slow = time.time() < slow_until
        d = c.sock.recv(16384 if slow else 1 << 20)
        if not d:
            break
        h.update(d)
        got += len(d)
        if pause is not None:
            time.sleep(pause)
            pause = None
        if slow:
            time.sleep(0.005)
            if tick:
                tick()
    return got, h.hexdigest()


def test_slow_reader_memory_bounded(upstream, make_gateway):
    """A client that reads a 50 MB response slowly gets every byte, and the
    worker does not buffer the response meanwhile (RSS stays flat)."""
    g = make_gateway(apis=[api_def("e", "/e/", upstream.url("/"))], workers=1)
    (wpid,) = g.worker_pids()
    assert g.get("/e/bytes/1000").status == 200  # warm up
    base = rss_kb(wpid)
    peak = [base]

    def tick():
        peak[0] = max(peak[0], rss_kb(wpid))

    with g.conn(timeout=30, rcvbuf=65536) as c:
        c.send(build_request("GET", "/e/bytes/%d" % BIG, host="%s:%d" % (HOST, g.port)))
        _, status, _, headers, _ = c.read_head()
        assert status == 200
        got, sha = read_body_slowly(c, BIG, 2.5, tick=tick)
    assert got == BIG and sha == pattern_sha256(BIG)
    growth_mb = (peak[0] - base) / 1024.0
    assert growth_mb < 16, "worker RSS grew by %.1f MB while a client read slowly" % growth_mb


def test_client_pausing_longer_than_proxy_timeout_gets_whole_body(upstream, make_gateway):
    """proxy_default_timeout bounds waiting for the upstream (connect and
    response head), not a client that is slow to read the body."""
    g = make_gateway(conf={"proxy_default_timeout": 1},
                     apis=[api_def("e", "/e/", upstream.url("/"))], workers=1)
    n = BIG  # far more than the kernel's socket buffers can hold
    with g.conn(timeout=30, rcvbuf=65536) as c:
        c.send(build_request("GET", "/e/bytes/%d" % n, host="%s:%d" % (HOST, g.port)))
        _, status, _, headers, _ = c.read_head()
        assert status == 200
        got, sha = read_body_slowly(c, n, 0, pause=2.5)
    assert got == n, "response cut after %d of %d bytes" % (got, n)
    assert sha == pattern_sha256(n)


# ---- gateway-made responses ----------------------------------------------------------

def test_no_route_404(gw):
    r = gw.get("/no-such-api/x")
    assert r.status == 404
    assert r.body == b"Not Found"
    assert r.header("Content-Type") == "text/plain; charset=utf-8"


def test_keyed_api_401(gw):
    r = gw.get("/keyed/x")
    assert r.status == 401
    assert r.body == TYK_401
    assert r.header("Content-Type") == "application/json"
    assert r.header("X-Generator") == "tyk.io"


def test_hello(gw):
    r = gw.get("/hello")
    assert r.status == 200
    assert r.header("Content-Type", "").startswith("application/json")
    j = r.json()
    assert j["description"] == "Tyk GW"
    assert j["version"] == version()
    assert j["status"] in ("pass", "warn", "fail")
    assert "redis" in j["details"]


def test_hello_wrong_method(gw):
    r = gw.request("POST", "/hello", body=b"")
    assert r.status == 405
    assert r.body == b'{"status":"error","message":"Method Not Allowed"}\n'


def test_ready(gw):
    r = gw.get("/ready")
    assert r.status == 200
    assert r.json()["description"] == "Tyk GW Ready"


def test_upstream_refused_500(gw):
    r = gw.get("/down/x")
    assert r.status == 500
    assert r.body == TYK_500
    assert r.header("Content-Type") == "application/json"
    assert r.header("X-Generator") == "tyk.io"


def test_upstream_closes_without_answer_500(gw):
    r = gw.get("/echo-api/drop")
    assert r.status == 500
    assert r.body == TYK_500


def test_upstream_timeout_504(gw):
    t0 = time.time()
    r = gw.get("/echo-api/delay/4000")
    took = time.time() - t0
    assert r.status == 504
    assert r.body == TYK_504
    assert 1.2 < took < 3.5, "proxy_default_timeout is 1.5 s; the 504 came after %.2f s" % took


def test_upstream_within_timeout_200(gw):
    r = gw.get("/echo-api/delay/500")
    assert r.status == 200 and r.body == b"slept"


def test_unresolvable_upstream_500(gw):
    r = gw.get("/dns/x")
    assert r.status == 500
    assert r.body == TYK_DNS


def test_client_disconnects_mid_request(gw):
    before = gw.worker_pids()
    # gone while the upstream is still working on the answer
    c = gw.conn()
    c.send(build_request("GET", "/echo-api/delay/300", host="%s:%d" % (HOST, gw.port)))
    time.sleep(0.05)
    c.close()
    # gone in the middle of a request body
    c = gw.conn()
    c.send(build_request("POST", "/echo-api/echo", [("Content-Length", str(10 * MB))],
                         host="%s:%d" % (HOST, gw.port)) + b"x" * MB)
    time.sleep(0.05)
    c.close()
    # gone in the middle of a big response
    c = gw.conn()
    c.send(build_request("GET", "/echo-api/bytes/%d" % (20 * MB), host="%s:%d" % (HOST, gw.port)))
    c.sock.recv(1000)
    c.close()
    time.sleep(0.5)
    for i in range(4):
        assert echo(gw.get("/echo-api/echo/after"))["path"] == "/echo/after"
    assert gw.worker_pids() == before, "a worker died:\n" + gw.log_tail()
    assert "signal" not in gw.log()


# ---- connection settings ("turnpike" block, proxy_close_connections) ---------------------

def test_keepalive_requests_limit(upstream, make_gateway):
    g = make_gateway(conf={"turnpike": {"keepalive_requests": 3}},
                     apis=[api_def("e", "/e/", upstream.url("/"))], workers=1)
    with g.conn() as c:
        for i in range(3):
            r = c.request("GET", "/e/echo")
            assert r.status == 200
            closing = (r.header("Connection") or "").lower() == "close"
            assert closing == (i == 2), (i, r.headers)
        assert c.closed_by_peer(2)


def test_keepalive_timeout_closes_idle_connection(upstream, make_gateway):
    g = make_gateway(conf={"turnpike": {"keepalive_timeout": 1}},
                     apis=[api_def("e", "/e/", upstream.url("/"))], workers=1)
    with g.conn() as c:
        assert c.request("GET", "/e/echo").status == 200
        t0 = time.time()
        assert c.closed_by_peer(4)
        took = time.time() - t0
    assert 0.8 <= took <= 2.5, "keepalive_timeout is 1 s; idle connection closed after %.2f s" % took


def test_send_timeout_drops_client_that_reads_nothing(upstream, make_gateway):
    g = make_gateway(conf={"turnpike": {"send_timeout": 1}},
                     apis=[api_def("e", "/e/", upstream.url("/"))], workers=1)
    with g.conn(timeout=5, rcvbuf=65536) as c:
        c.send(build_request("GET", "/e/bytes/%d" % BIG, host="%s:%d" % (HOST, g.port)))
        time.sleep(3)
        got = 0
        ended = False
        while True:
            try:
                d = c.sock.recv(1 << 20)
            except ConnectionResetError:
                ended = True
                break
            except socket.timeout:
                break
            if not d:
                ended = True
                break
            got += len(d)
    assert ended, "the gateway kept a connection that read nothing for 3 s (send_timeout 1 s)"
    assert got < BIG
    assert g.get("/e/echo").status == 200


def test_proxy_close_connections(upstream, make_gateway):
    g = make_gateway(conf={"proxy_close_connections": True},
                     apis=[api_def("e", "/e/", upstream.url("/"))], workers=1)
    for _ in range(3):
        e = echo(g.get("/e/echo"))
        assert [v.lower() for v in hdrs(e, "Connection")] == ["close"]
