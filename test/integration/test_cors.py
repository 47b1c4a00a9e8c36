"""CORS (the API's CORS object; TYK-COMPAT 21.1, rs/cors): pre-flights
answered by the gateway, 204, before auth and without the upstream, with
the Access-Control-Allow-* headers only for an allowed origin, method and
headers; actual requests (and the gateway's own errors) with Vary: Origin
and the allow/expose/credentials headers for allowed origins;
options_passthrough sends OPTIONS to the upstream unchecked."""
import json

import pytest

from conftest import api_def, free_port
from test_access import conf

ORIGIN = "https://app.example.com"


def cors_api(api_id, target, keyless=False, **cors):
    d = api_def(api_id, "/%s/" % api_id, target, keyless=keyless)
    if not keyless:
        d["use_standard_auth"] = True
        d["auth"] = {"auth_header_name": "Authorization"}
    c = {"enable": True, "allowed_origins": [ORIGIN, "https://*.partner.org"],
         "allowed_methods": ["GET", "PUT", "POST"], "allowed_headers": ["X-Custom", "Content-Type"],
         "exposed_headers": ["x-request-id", "X-Trace"], "allow_credentials": True, "max_age": 600,
         "options_passthrough": False, "debug": False}
    c.update(cors)
    d["CORS"] = c
    return d


@pytest.fixture
def gw(make_gateway, upstream):
    dead = "http://127.0.0.1:%d/" % free_port()  # nothing listens: the upstream is never asked
    apis = [
        cors_api("keyed", dead),
        cors_api("open", upstream.url("/"), keyless=True),
        cors_api("any", upstream.url("/"), keyless=True, allowed_origins=[], allowed_headers=["*"],
                 allow_credentials=False, max_age=0, exposed_headers=[]),
        cors_api("pass", upstream.url("/"), options_passthrough=True),
        api_def("plain", "/plain/", upstream.url("/")),
    ]
    return make_gateway(conf=conf(), apis=apis)


def preflight(g, path, origin=ORIGIN, method="PUT", headers="X-Custom, Content-Type"):
    h = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if headers:
        h.append(("Access-Control-Request-Headers", headers))
    return g.request("OPTIONS", path, h)


def test_preflight_is_answered_before_auth_and_the_upstream(gw):
    r = preflight(gw, "/keyed/things")
    assert r.status == 204, r
    assert r.body == b""
    assert r.header("Content-Length") is None
    assert r.header("Access-Control-Allow-Origin") == ORIGIN
    assert r.header("Access-Control-Allow-Methods") == "PUT"
    assert r.header("Access-Control-Allow-Headers") == "X-Custom, Content-Type"
    assert r.header("Access-Control-Allow-Credentials") == "true"
    assert r.header("Access-Control-Max-Age") == "600"
    assert r.header("Vary") == \
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    # a wildcard origin entry, upper case in the request
    r = preflight(gw, "/keyed/x", origin="https://EU.partner.org")
    assert r.header("Access-Control-Allow-Origin") == "https://EU.partner.org"


def test_refused_preflights_get_no_allow_headers(gw):
    for r in (preflight(gw, "/keyed/x", origin="https://evil.example.net"),
              preflight(gw, "/keyed/x", origin="https://partner.org.evil.net"),
              preflight(gw, "/keyed/x", method="DELETE"),
              preflight(gw, "/keyed/x", headers="X-Custom, X-Secret"),
              preflight(gw, "/keyed/x", origin="")):
        assert r.status == 204, r
        assert r.header("Access-Control-Allow-Origin") is None, r
        assert r.header("Access-Control-Allow-Methods") is None, r
    # Origin is always an allowed request header
    assert preflight(gw, "/keyed/x", headers="origin").header("Access-Control-Allow-Origin") == ORIGIN


def test_actual_requests_and_errors_carry_the_headers(gw):
    r = gw.request("GET", "/open/echo", [("Origin", ORIGIN)])
    assert r.status == 200, r
    assert r.header("Access-Control-Allow-Origin") == ORIGIN
    assert r.header("Access-Control-Expose-Headers") == "X-Request-Id, X-Trace"
    assert r.header("Access-Control-Allow-Credentials") == "true"
    assert r.header("Vary") == "Origin"
    assert r.header("Access-Control-Allow-Methods") is None
    assert json.loads(r.body)["method"] == "GET"
    # a refused origin: only Vary
    r = gw.request("GET", "/open/echo", [("Origin", "https://evil.example.net")])
    assert r.status == 200 and r.header("Vary") == "Origin"
    assert r.header("Access-Control-Allow-Origin") is None
    # a method not allowed: no allow headers
    r = gw.request("DELETE", "/open/echo", [("Origin", ORIGIN)])
    assert r.header("Access-Control-Allow-Origin") is None
    # the gateway's own error (no key) carries them: the browser can read it
    r = gw.request("GET", "/keyed/x", [("Origin", ORIGIN)])
    assert r.status == 401, r
    assert r.header("Access-Control-Allow-Origin") == ORIGIN
    # an API without CORS adds nothing
    r = gw.request("GET", "/plain/echo", [("Origin", ORIGIN)])
    assert r.header("Vary") is None and r.header("Access-Control-Allow-Origin") is None


def test_any_origin_and_plain_options(gw):
    r = preflight(gw, "/any/x", origin="https://whoever.test", headers="X-Anything")
    assert r.status == 204
    assert r.header("Access-Control-Allow-Origin") == "*"
    assert r.header("Access-Control-Allow-Headers") == "X-Anything"
    assert r.header("Access-Control-Allow-Credentials") is None
    assert r.header("Access-Control-Max-Age") is None
    r = gw.request("GET", "/any/echo", [("Origin", "https://whoever.test")])
    assert r.header("Access-Control-Allow-Origin") == "*"
    assert r.header("Access-Control-Expose-Headers") is None
    # OPTIONS without Access-Control-Request-Method: answered 200, not proxied
    r = gw.request("OPTIONS", "/keyed/x", [("Origin", ORIGIN)])
    assert r.status == 200, r
    assert r.header("Access-Control-Allow-Origin") == ORIGIN


def test_options_passthrough_reaches_the_upstream_without_auth(gw):
    r = preflight(gw, "/pass/echo")
    assert r.status == 200, r
    assert json.loads(r.body)["method"] == "OPTIONS"
    assert r.header("Access-Control-Allow-Methods") is None
    # other methods still need the key
    assert gw.request("GET", "/pass/echo", [("Origin", ORIGIN)]).status == 401


def test_the_origin_is_read_from_the_request_that_is_answered(make_gateway, upstream):
    """The allow-origin of a slow response comes from its own request, not
    from whatever the worker read meanwhile: the response stages read the
    request after the upstream answers, so its head is kept for them."""
    import http.client
    import threading
    g = make_gateway(conf=conf(), apis=[cors_api("open", upstream.url("/"), keyless=True)],
                     workers=1)
    other = "https://evl.example.com"  # as long as ORIGIN: the same bytes at the same offsets
    assert len(other) == len(ORIGIN)
    got = {}

    def slow():
        c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
        c.request("GET", "/open/delay/400", headers={"Origin": ORIGIN})
        r = c.getresponse()
        r.read()
        got["acao"] = r.getheader("Access-Control-Allow-Origin")
        c.close()

    t = threading.Thread(target=slow)
    t.start()
    import time
    time.sleep(0.1)  # the slow request is at the upstream
    for _ in range(5):
        c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
        c.request("GET", "/open/delay/001", headers={"Origin": other})
        c.getresponse().read()
        c.close()
    t.join()
    assert got["acao"] == ORIGIN
