"""The control plane: Tyk's Gateway REST API (TYK-COMPAT 1.1-1.6), reloads
from every trigger (SIGHUP, /tyk/reload, /tyk/reload/group, the admin socket,
signed Redis notifications), API generations in shared memory, the admin
socket and the systemd notify protocol."""
import hashlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

from conftest import BIN, HOST, api_def, clean_env, free_port, http, wait_for
from test_lifecycle import parse_wrk, run_wrk, wait_until

SECRET = "s3cret-for-tests"
AUTH = [("X-Tyk-Authorization", SECRET)]
DENIED = {"status": "error", "message": "Attempted administrative access with invalid or missing key!"}


def tyk(g, method, path, body=None, headers=None, port=None):
    """A Gateway REST API call with the secret."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    hdrs = list(AUTH if headers is None else headers)
    if body is not None:
        hdrs.append(("Content-Type", "application/json"))
    return http(port or g.port, method, path, hdrs, body)


def apps_snapshot(g):
    return {p.name: p.read_bytes() for p in sorted(g.apps.iterdir())}


def assert_error(r, status, message):
    assert r.status == status, (r.status, r.body)
    assert r.header("Content-Type") == "application/json"
    assert r.body == (json.dumps({"status": "error", "message": message},
                                 separators=(",", ":")) + "\n").encode(), r.body


def admin(path, line, timeout=10.0):
    """Sends one command line to the admin socket; returns the whole answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    s.sendall(line.encode() + b"\n")
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out.decode()


def sign(command, payload, node_secret):
    """Tyk's rule (TYK-COMPAT 7.2): hex(sha256(command + payload + node_secret))."""
    return hashlib.sha256((command + payload + node_secret).encode()).hexdigest()


def served_by_all(g, path, n=12):
    """True when n requests on new connections (spread over the workers by
    SO_REUSEPORT) all get 200."""
    return all(g.get(path).status == 200 for _ in range(n))


@pytest.fixture
def gw(upstream, make_gateway):
    return make_gateway(conf={"secret": SECRET}, apis=[api_def("a", "/a/", upstream.url("/"))],
                        workers=2)


# ---------------------------------------------------------------------------
# 1.1 authentication and routing
# ---------------------------------------------------------------------------

def test_rest_requires_the_secret_before_routing(gw):
    for path in ("/tyk/apis", "/tyk/reload", "/tyk/no/such/thing", "/tyk/"):
        for hdrs in ([], [("X-Tyk-Authorization", "wrong")], [("X-Tyk-Authorization", SECRET + "x")],
                     [("X-Tyk-Authorization", SECRET[:-1])], [("Authorization", SECRET)]):
            r = http(gw.port, "GET", path, hdrs)
            assert r.status == 403, (path, hdrs, r.status)
            assert r.json() == DENIED
            assert r.body.endswith(b"\n")
            assert r.header("Content-Type") == "application/json"
    # the header name is case-insensitive
    r = http(gw.port, "GET", "/tyk/apis", [("x-tyk-authorization", SECRET)])
    assert r.status == 200


def test_rest_without_a_secret_refuses_everything(upstream, make_gateway):
    g = make_gateway(apis=[api_def("a", "/a/", upstream.url("/"))], workers=1)
    for hdrs in ([], [("X-Tyk-Authorization", "")], [("X-Tyk-Authorization", "anything")]):
        r = http(g.port, "GET", "/tyk/apis", hdrs)
        assert r.status == 403 and r.json() == DENIED
    g.wait_log(r'no \\"secret\\" is set')


def test_rest_unknown_path_and_wrong_method(gw):
    r = tyk(gw, "GET", "/tyk/nothing-here")
    assert r.status == 404
    assert r.body == b"404 page not found\n"
    for method, path in (("DELETE", "/tyk/reload"), ("POST", "/tyk/reload/group"),
                         ("PATCH", "/tyk/apis"), ("DELETE", "/tyk/apis"),
                         ("PATCH", "/tyk/apis/a"), ("PUT", "/tyk/policies"),
                         ("POST", "/tyk/policies/x")):
        r = tyk(gw, method, path, body=b"{}" if method in ("POST", "PUT", "PATCH") else None)
        assert_error(r, 405, "Method not supported")


def test_no_api_can_shadow_the_control_routes(upstream, make_gateway):
    g = make_gateway(conf={"secret": SECRET},
                     apis=[api_def("root", "/", upstream.url("/")),
                           api_def("tyk", "/tyk/", upstream.url("/")),
                           api_def("hello", "/hello", upstream.url("/"))], workers=1)
    # the gateway's own /hello, not the API's: it passes once the first Redis probe is done
    wait_for(lambda: g.get("/hello").json()["status"] == "pass", 5,
             what="/hello passing (first Redis probe done)")
    r = g.get("/hello")
    assert r.status == 200 and r.json()["status"] == "pass"
    r = g.get("/ready")
    assert r.status == 200
    r = g.get("/tyk/apis")
    assert r.json() == DENIED
    r = tyk(g, "GET", "/tyk/apis")
    assert sorted(a["api_id"] for a in r.json()) == ["hello", "root", "tyk"]
    # everything else still reaches the catch-all API
    assert g.get("/tykx/echo").status == 200
    assert g.get("/hello/there").status == 200


def test_control_api_port(upstream, make_gateway):
    cport = free_port()
    g = make_gateway(conf={"secret": SECRET, "control_api_port": cport},
                     apis=[api_def("a", "/a/", upstream.url("/"))], workers=2, start=False)
    g.start(wait=False)
    wait_for(lambda: port_answers(cport), 10, what="the control port")
    # the control API and health checks on the control port ...
    wait_for(lambda: http(cport, "GET", "/hello").json()["status"] == "pass", 5,
             what="/hello on the control port passing (first Redis probe done)")
    r = tyk(g, "GET", "/tyk/apis", port=cport)
    assert r.status == 200 and [a["api_id"] for a in r.json()] == ["a"]
    # ... and nothing else there
    r = http(cport, "GET", "/a/echo")
    assert r.status == 404 and r.body == b"404 page not found\n"
    # the data port proxies and has no control API
    assert g.get("/a/echo").status == 200
    r = tyk(g, "GET", "/tyk/apis")
    assert r.status == 404 and b"Attempted administrative access" not in r.body
    assert g.get("/hello").status == 404
    # reloads work through the control port
    g.add_api(api_def("b", "/b/", upstream.url("/")))
    assert tyk(g, "GET", "/tyk/reload?block=true", port=cport).status == 200
    assert served_by_all(g, "/b/echo")


def port_answers(port):
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# 1.3 / 1.5 API definitions
# ---------------------------------------------------------------------------

def test_apis_list_and_get(gw, upstream):
    r = tyk(gw, "GET", "/tyk/apis")
    assert r.status == 200 and r.header("Content-Type") == "application/json"
    assert r.body.endswith(b"]\n")
    apis = r.json()
    assert [a["api_id"] for a in apis] == ["a"]
    assert apis[0]["proxy"]["listen_path"] == "/a/"
    assert apis[0]["proxy"]["target_url"] == upstream.url("/")
    r = tyk(gw, "GET", "/tyk/apis/a")
    assert r.status == 200 and r.json()["name"] == "a"
    assert tyk(gw, "GET", "/tyk/apis/a/").json()["api_id"] == "a"  # trailing slash trimmed
    assert_error(tyk(gw, "GET", "/tyk/apis/nope"), 404, "API not found")


def test_api_create_takes_effect_on_reload(gw, upstream):
    d = api_def("new1", "/new1/", upstream.url("/"))
    r = tyk(gw, "POST", "/tyk/apis", d)
    assert r.status == 200, r.body
    assert r.body == b'{"key":"new1","status":"ok","action":"added"}\n'
    f = gw.apps / "new1.json"
    written = json.loads(f.read_text())
    assert written["api_id"] == "new1" and written["proxy"]["listen_path"] == "/new1/"
    assert "\n  " in f.read_text()  # pretty-printed, as Tyk writes it
    # not served before a reload, as in Tyk
    assert gw.get("/new1/echo").status == 404
    assert_error(tyk(gw, "GET", "/tyk/apis/new1"), 404, "API not found")
    r = tyk(gw, "GET", "/tyk/reload?block=true")
    assert r.status == 200 and r.body == b'{"status":"ok","message":""}\n'
    # block=true answers once every worker serves the new generation
    assert served_by_all(gw, "/new1/echo")
    assert tyk(gw, "GET", "/tyk/apis/new1").json()["api_id"] == "new1"


def test_api_create_generates_an_id(gw, upstream):
    d = api_def("", "/gen/", upstream.url("/"))
    r = tyk(gw, "POST", "/tyk/apis", d)
    assert r.status == 200, r.body
    key = r.json()["key"]
    assert re.fullmatch(r"[0-9a-f]{32}", key), key
    assert r.json()["action"] == "added"
    assert json.loads((gw.apps / (key + ".json")).read_text())["api_id"] == key
    del d["api_id"]
    key2 = tyk(gw, "POST", "/tyk/apis", d).json()["key"]
    assert key2 != key and (gw.apps / (key2 + ".json")).exists()


@pytest.mark.parametrize("body,status,message", [
    (b"", 400, "Request malformed"),
    (b"{not json", 400, "Request malformed"),
    (b"[1,2]", 400, "Request malformed"),
    (b'{"api_id": "x", "proxy": {"listen_path": "/x/", "target_url": ', 400, "Request malformed"),
    (json.dumps({"api_id": "../../etc/evil", "proxy": {"listen_path": "/e/", "target_url": "http://127.0.0.1:1/"}}),
     400, "Invalid API ID"),
    (json.dumps({"api_id": "a b", "proxy": {"listen_path": "/e/", "target_url": "http://127.0.0.1:1/"}}),
     400, "Invalid API ID"),
])
def test_api_create_rejects_bad_input(gw, body, status, message):
    before = apps_snapshot(gw)
    r = tyk(gw, "POST", "/tyk/apis", body)
    assert_error(r, status, message)
    assert apps_snapshot(gw) == before
    assert not os.path.exists("/etc/evil.json")


def test_api_create_rejects_an_invalid_definition(gw):
    before = apps_snapshot(gw)
    d = {"api_id": "bad", "proxy": {"listen_path": "/bad/", "target_url": 42}}
    r = tyk(gw, "POST", "/tyk/apis", d)
    assert r.status == 400
    msg = r.json()["message"]
    assert msg.startswith("Validation of API Definition failed. Reason: ") and msg.endswith("."), msg
    assert "$.proxy.target_url" in msg, msg
    d = {"api_id": "bad", "proxy": {"listen_path": "/bad/", "target_url": "ftp://x/"}}
    r = tyk(gw, "POST", "/tyk/apis", d)
    assert r.status == 400 and "target_url" in r.json()["message"]
    assert apps_snapshot(gw) == before


def test_api_update(gw, upstream):
    gw.add_api(api_def("upd", "/one/", upstream.url("/")))
    assert tyk(gw, "GET", "/tyk/reload?block=true").status == 200
    before = apps_snapshot(gw)
    d = api_def("upd", "/two/", upstream.url("/"))
    assert_error(tyk(gw, "PUT", "/tyk/apis/other", d), 400,
                 "Request APIID does not match that in Definition! For Update operations these must match.")
    assert_error(tyk(gw, "PUT", "/tyk/apis/zzz", api_def("zzz", "/z/", upstream.url("/"))), 404,
                 "API not found")
    assert_error(tyk(gw, "PUT", "/tyk/apis/upd", b"{oops"), 400, "Request malformed")
    bad = dict(d, proxy=dict(d["proxy"], target_url=[]))
    assert tyk(gw, "PUT", "/tyk/apis/upd", bad).status == 400
    assert apps_snapshot(gw) == before
    r = tyk(gw, "PUT", "/tyk/apis/upd", d)
    assert r.body == b'{"key":"upd","status":"ok","action":"modified"}\n'
    assert json.loads((gw.apps / "upd.json").read_text())["proxy"]["listen_path"] == "/two/"
    assert gw.get("/one/echo").status == 200  # until the reload
    assert tyk(gw, "GET", "/tyk/reload?block=true").status == 200
    assert gw.get("/one/echo").status == 404
    assert served_by_all(gw, "/two/echo")
    assert tyk(gw, "GET", "/tyk/apis/upd").json()["proxy"]["listen_path"] == "/two/"


def test_api_update_keeps_the_file_it_was_loaded_from(upstream, make_gateway):
    g = make_gateway(conf={"secret": SECRET}, workers=1)
    g.add_api(api_def("x", "/x/", upstream.url("/")), filename="my-api.json")
    assert tyk(g, "GET", "/tyk/reload?block=true").status == 200
    r = tyk(g, "PUT", "/tyk/apis/x", api_def("x", "/x2/", upstream.url("/")))
    assert r.status == 200
    assert sorted(p.name for p in g.apps.iterdir()) == ["my-api.json"]
    assert json.loads((g.apps / "my-api.json").read_text())["proxy"]["listen_path"] == "/x2/"


def test_api_delete(gw, upstream):
    r = tyk(gw, "DELETE", "/tyk/apis/a")
    assert r.body == b'{"key":"a","status":"ok","action":"deleted"}\n'
    assert not (gw.apps / "a.json").exists()
    assert gw.get("/a/echo").status == 200  # until the reload
    assert_error(tyk(gw, "DELETE", "/tyk/apis/a"), 500, "Delete failed")
    assert_error(tyk(gw, "DELETE", "/tyk/apis/never"), 500, "Delete failed")
    assert_error(tyk(gw, "DELETE", "/tyk/apis/a%20b"), 500, "Delete failed")
    # a path that climbs out is cleaned first (301, as gorilla/mux does), never used
    r = tyk(gw, "DELETE", "/tyk/apis/..%2F..%2F..%2Fetc%2Fpasswd")
    assert r.status == 301 and os.path.exists("/etc/passwd")
    assert tyk(gw, "GET", "/tyk/reload?block=true").status == 200
    assert gw.get("/a/echo").status == 404
    assert tyk(gw, "GET", "/tyk/apis").json() == []


def test_api_writes_refused_with_db_app_configs(upstream, make_gateway):
    g = make_gateway(conf={"secret": SECRET, "use_db_app_configs": True},
                     apis=[api_def("a", "/a/", upstream.url("/"))], workers=1)
    before = apps_snapshot(g)
    msg = "Due to enabled use_db_app_configs, please use the Dashboard API"
    assert_error(tyk(g, "POST", "/tyk/apis", api_def("b", "/b/", upstream.url("/"))), 500, msg)
    assert_error(tyk(g, "PUT", "/tyk/apis/a", api_def("a", "/b/", upstream.url("/"))), 500, msg)
    assert apps_snapshot(g) == before


def test_api_body_sent_chunked_and_slowly(gw, upstream):
    body = json.dumps(api_def("chunky", "/chunky/", upstream.url("/"))).encode()
    with gw.conn() as c:
        c.send(b"POST /tyk/apis HTTP/1.1\r\nHost: x\r\nX-Tyk-Authorization: " + SECRET.encode() +
               b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(body), 7):
            part = body[i:i + 7]
            c.send(b"%x\r\n%s\r\n" % (len(part), part))
            time.sleep(0.002)
        c.send(b"0\r\n\r\n")
        r = c.read_response("POST")
        assert r.status == 200, r.body
        # the connection stays usable
        assert c.request("GET", "/tyk/apis/a", headers=AUTH).status == 200
    assert (gw.apps / "chunky.json").exists()


# ---------------------------------------------------------------------------
# 1.6 policies
# ---------------------------------------------------------------------------

POLICY = {"id": "gold", "name": "Gold", "org_id": "default", "rate": 100, "per": 1,
          "quota_max": -1, "access_rights": {"a": {"api_id": "a", "api_name": "a", "versions": ["Default"]}},
          "active": True}


@pytest.fixture
def polgw(upstream, make_gateway, tmp_path):
    pdir = tmp_path / "policies"
    pdir.mkdir()
    (pdir / "silver.json").write_text(json.dumps(dict(POLICY, id="silver", name="Silver")))
    return make_gateway(conf={"secret": SECRET, "policies": {"policy_source": "file", "policy_path": str(pdir)}},
                        apis=[api_def("a", "/a/", upstream.url("/"))], workers=2), pdir


def test_policies_list_get_and_crud(polgw):
    g, pdir = polgw
    r = tyk(g, "GET", "/tyk/policies")
    assert r.status == 200 and [p["id"] for p in r.json()] == ["silver"]
    assert tyk(g, "GET", "/tyk/policies/silver").json()["name"] == "Silver"
    assert_error(tyk(g, "GET", "/tyk/policies/gold"), 404, "Policy not found")

    r = tyk(g, "POST", "/tyk/policies", POLICY)
    assert r.body == b'{"key":"gold","status":"ok","action":"added"}\n'
    assert json.loads((pdir / "gold.json").read_text())["name"] == "Gold"
    assert_error(tyk(g, "GET", "/tyk/policies/gold"), 404, "Policy not found")  # until the reload
    assert tyk(g, "GET", "/tyk/reload?block=true").status == 200
    assert tyk(g, "GET", "/tyk/policies/gold").json()["rate"] == 100
    assert sorted(p["id"] for p in tyk(g, "GET", "/tyk/policies").json()) == ["gold", "silver"]

    r = tyk(g, "PUT", "/tyk/policies/gold", dict(POLICY, rate=5))
    assert r.body == b'{"key":"gold","status":"ok","action":"modified"}\n'
    r = tyk(g, "DELETE", "/tyk/policies/silver")
    assert r.body == b'{"key":"silver","status":"ok","action":"deleted"}\n'
    assert_error(tyk(g, "DELETE", "/tyk/policies/silver"), 500, "Delete failed")
    assert tyk(g, "GET", "/tyk/reload?block=true").status == 200
    pols = tyk(g, "GET", "/tyk/policies").json()
    assert [(p["id"], p["rate"]) for p in pols] == [("gold", 5)]


def test_policy_writes_reject_bad_input(polgw):
    g, pdir = polgw
    before = sorted(p.name for p in pdir.iterdir())
    assert_error(tyk(g, "POST", "/tyk/policies", b"{nope"), 400, "Request malformed")
    assert_error(tyk(g, "POST", "/tyk/policies", b"[]"), 400, "Request malformed")
    assert_error(tyk(g, "POST", "/tyk/policies", dict(POLICY, id="../x")), 400,
                 "Invalid Policy ID: Allowed characters: a-z, A-Z, 0-9, ., _, -, ~")
    assert_error(tyk(g, "POST", "/tyk/policies", dict(POLICY, id="")), 400,
                 "Unable to create policy without id.")
    p = dict(POLICY)
    del p["id"]
    assert_error(tyk(g, "POST", "/tyk/policies", p), 400, "Unable to create policy without id.")
    assert_error(tyk(g, "PUT", "/tyk/policies/silver", POLICY), 400,
                 "Request ID does not match that in policy! For Update operations these must match.")
    r = tyk(g, "POST", "/tyk/policies", dict(POLICY, rate="fast"))
    assert r.status == 400 and "rate" in r.json()["message"]
    assert sorted(p.name for p in pdir.iterdir()) == before


def test_policy_writes_refused_with_service_source(upstream, make_gateway):
    g = make_gateway(conf={"secret": SECRET, "policies": {"policy_source": "service"}}, workers=1)
    msg = "Due to enabled service policy source, please use the Dashboard API"
    assert_error(tyk(g, "POST", "/tyk/policies", POLICY), 500, msg)
    assert_error(tyk(g, "PUT", "/tyk/policies/gold", POLICY), 500, msg)
    assert_error(tyk(g, "DELETE", "/tyk/policies/gold"), 500, msg)


def test_policies_from_a_record_file(upstream, make_gateway, tmp_path):
    rec = tmp_path / "policies.json"
    rec.write_text(json.dumps({"p1": dict(POLICY, id=""), "": dict(POLICY, id="p2")}))
    g = make_gateway(conf={"secret": SECRET, "policies": {"policy_source": "file",
                                                          "policy_record_name": str(rec)}}, workers=1)
    assert sorted(p["id"] for p in tyk(g, "GET", "/tyk/policies").json()) == ["p1", "p2"]
    # a broken policy file fails the reload and keeps the policies
    rec.write_text(json.dumps({"p3": dict(POLICY, quota_max="lots")}))
    r = tyk(g, "GET", "/tyk/reload?block=true")
    assert r.status == 500 and "$.p3.quota_max" in r.json()["message"]
    assert sorted(p["id"] for p in tyk(g, "GET", "/tyk/policies").json()) == ["p1", "p2"]


# ---------------------------------------------------------------------------
# reloads: generations, failures, triggers
# ---------------------------------------------------------------------------

def test_reload_keeps_workers_and_reports_every_error(gw, upstream):
    pids = sorted(gw.worker_pids())
    (gw.apps / "broken.json").write_text('{"api_id": "broken", "proxy": {')
    bad = api_def("b2", "/b2/", upstream.url("/"))
    bad["proxy"]["listen_path"] = 7
    (gw.apps / "b2.json").write_text(json.dumps(bad))
    gw.add_api(api_def("c", "/c/", upstream.url("/")))
    r = tyk(gw, "GET", "/tyk/reload?block=true")
    assert r.status == 500
    msg = r.json()["message"]
    assert "broken.json" in msg and "b2.json" in msg and "$.proxy.listen_path" in msg, msg
    assert gw.get("/c/echo").status == 404 and gw.get("/a/echo").status == 200
    (gw.apps / "broken.json").unlink()
    (gw.apps / "b2.json").unlink()
    assert tyk(gw, "GET", "/tyk/reload?block=true").status == 200
    assert served_by_all(gw, "/c/echo")
    assert sorted(gw.worker_pids()) == pids  # API changes never restart workers


def test_in_flight_request_finishes_on_its_generation(make_gateway, scripted):
    """A request that started before a reload is answered by the definition
    it started with, even though the API is gone from the new generation."""
    release = threading.Event()

    def slow(head, body):
        release.wait(10)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow"

    up = scripted(slow)
    g = make_gateway(conf={"secret": SECRET}, apis=[api_def("s", "/s/", up.url("/"))], workers=1)
    result = {}

    def call():
        result["r"] = g.get("/s/x", timeout=15)

    t = threading.Thread(target=call)
    t.start()
    wait_for(lambda: up.conns and b"\r\n\r\n" in up.conns[0]["data"], 5,
             what="the upstream got the request")
    (g.apps / "s.json").unlink()
    assert tyk(g, "GET", "/tyk/reload?block=true").status == 200
    assert g.get("/s/x").status == 404  # new requests see the new generation
    release.set()
    t.join(10)
    assert result["r"].status == 200 and result["r"].body == b"slow"


def test_generation_switch_while_a_request_head_arrives(make_gateway, upstream):
    """A request whose first bytes came before a reload is routed on its own
    generation, with that generation's upstream tables, even when the new
    one has fewer APIs."""
    apis = [api_def("g%d" % i, "/g%d/" % i, upstream.url("/")) for i in range(50)]
    g = make_gateway(conf={"secret": SECRET}, apis=apis, workers=1)
    with g.conn() as c:
        c.send(b"GET /g49/echo HTTP/1.1\r\nHost: a\r\n")
        time.sleep(0.1)
        for i in range(1, 50):
            (g.apps / ("g%d.json" % i)).unlink()
        assert tyk(g, "GET", "/tyk/reload?block=true").status == 200
        c.send(b"\r\n")
        r = c.read_response()
        assert r.status == 200, r.body
        assert json.loads(r.body)["path"] == "/echo"
    assert g.get("/g49/echo").status == 404
    assert g.get("/g0/echo").status == 200


def test_long_request_does_not_block_reloads(make_gateway, scripted, upstream):
    release = threading.Event()

    def hang(head, body):
        release.wait(30)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate"

    up = scripted(hang)
    g = make_gateway(conf={"secret": SECRET}, apis=[api_def("slow", "/slow/", up.url("/"))],
                     workers=1)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=g.get("/slow/x", timeout=40)))
    t.start()
    try:
        wait_for(lambda: up.conns and b"\r\n\r\n" in up.conns[0]["data"], 5,
                 what="the upstream got the request")
        mark = len(g.log())
        t0 = time.time()
        for i in range(3 * 8):  # three times the shared-memory slots
            g.add_api(api_def("r%d" % i, "/r%d/" % i, upstream.url("/")))
            r = tyk(g, "GET", "/tyk/reload?block=true")
            assert r.status == 200, (i, r.body)
        assert time.time() - t0 < 10
        assert g.get("/r23/echo").status == 200
        assert "reload waits" not in g.log()[mark:]
    finally:
        release.set()
        t.join(10)
    assert result["r"].status == 200 and result["r"].body == b"late"


def test_trigger_during_a_reload_is_not_lost(make_gateway, upstream):
    apis = [api_def("t%d" % i, "/t%d/" % i, upstream.url("/")) for i in range(3000)]
    g = make_gateway(conf={"secret": SECRET}, apis=apis, workers=2)
    for attempt in range(5):
        name = "late%d" % attempt
        g.signal(signal.SIGHUP)
        g.add_api(api_def(name, "/%s/" % name, upstream.url("/")))
        tyk(g, "GET", "/tyk/reload")  # arrives while the SIGHUP reload runs, or after it
        assert wait_until(lambda: served_by_all(g, "/%s/echo" % name, 4), 10), g.log_tail()


def test_secret_change_applies_on_reload(gw):
    conf = json.loads(gw.conf_path.read_text())
    conf["secret"] = "a-new-secret"
    conf["node_secret"] = "a-new-node-secret"
    gw.conf_path.write_text(json.dumps(conf))
    assert tyk(gw, "GET", "/tyk/reload?block=true").status == 200
    new = [("X-Tyk-Authorization", "a-new-secret")]
    assert wait_until(lambda: all(http(gw.port, "GET", "/tyk/apis", new).status == 200
                                  for _ in range(8)), 10)
    for _ in range(8):
        assert http(gw.port, "GET", "/tyk/apis", AUTH).json() == DENIED


def test_rest_writes_never_break_the_next_reload(polgw, upstream):
    g, pdir = polgw
    before = apps_snapshot(g)
    d = api_def("inf", "/inf/", upstream.url("/"))
    assert_error(tyk(g, "POST", "/tyk/apis", json.dumps(d)[:-1] + ', "big": 1e999}'), 400,
                 "Request malformed")
    assert apps_snapshot(g) == before
    # a policy file named after one id, holding another
    (pdir / "gold.json").write_text(json.dumps(dict(POLICY, id="platinum")))
    assert tyk(g, "GET", "/tyk/reload?block=true").status == 200
    r = tyk(g, "POST", "/tyk/policies", dict(POLICY, id="gold"))
    assert r.status == 400 and "holds another policy" in r.json()["message"]
    assert json.loads((pdir / "gold.json").read_text())["id"] == "platinum"
    r = tyk(g, "PUT", "/tyk/policies/platinum", dict(POLICY, id="platinum", rate=7))
    assert r.status == 200
    assert json.loads((pdir / "gold.json").read_text())["rate"] == 7  # its own file
    assert tyk(g, "GET", "/tyk/reload?block=true").status == 200


def test_api_file_named_after_another_id(gw, upstream):
    gw.add_api(api_def("bar", "/bar/", upstream.url("/")), filename="foo.json")
    assert tyk(gw, "GET", "/tyk/reload?block=true").status == 200
    before = apps_snapshot(gw)
    assert_error(tyk(gw, "PUT", "/tyk/apis/foo", api_def("foo", "/foo/", upstream.url("/"))), 404,
                 "API not found")
    assert_error(tyk(gw, "DELETE", "/tyk/apis/foo"), 500, "Delete failed")
    r = tyk(gw, "POST", "/tyk/apis", api_def("foo", "/foo/", upstream.url("/")))
    assert r.status == 400 and "holds another API" in r.json()["message"]
    assert apps_snapshot(gw) == before
    # bar itself is written where it lives
    assert tyk(gw, "PUT", "/tyk/apis/bar", api_def("bar", "/bar2/", upstream.url("/"))).status == 200
    assert json.loads((gw.apps / "foo.json").read_text())["proxy"]["listen_path"] == "/bar2/"


def test_rest_body_with_expect_continue(gw, upstream):
    body = json.dumps(api_def("cont", "/cont/", upstream.url("/"))).encode()
    with gw.conn() as c:
        c.send(b"POST /tyk/apis HTTP/1.1\r\nHost: x\r\nX-Tyk-Authorization: " + SECRET.encode() +
               b"\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
        c.settimeout(0.5)
        _, status, _, _, raw = c.read_head()
        assert status == 100, raw
        c.settimeout(5)
        c.send(body)
        r = c.read_response("POST")
        assert r.status == 200, r.body
    assert (gw.apps / "cont.json").exists()


def test_reloads_close_together_are_coalesced(make_gateway, upstream, tmp_path):
    """Triggers that arrive while a reload runs ride on one more reload,
    however many there are; every waiter gets its answer."""
    sock = tmp_path / "admin.sock"
    apis = [api_def("c%d" % i, "/c%d/" % i, upstream.url("/")) for i in range(3000)]
    g = make_gateway(conf={"secret": SECRET, "turnpike": {"admin_socket": str(sock)}},
                     apis=apis, workers=2)
    g.add_api(api_def("co", "/co/", upstream.url("/")))
    mark = len(g.log())
    answers = []
    waiters = [threading.Thread(target=lambda: answers.append(admin(sock, "reload")))
               for _ in range(10)]
    for t in waiters:
        t.start()
    for _ in range(20):
        g.signal(signal.SIGHUP)
    for t in waiters:
        t.join(30)
    assert len(answers) == 10 and all(a.startswith("Success=1") for a in answers), answers
    assert served_by_all(g, "/co/echo")
    time.sleep(0.5)
    done = re.findall(r"reload done: generation", g.log()[mark:])
    requested = re.findall(r"reload requested", g.log()[mark:])
    assert len(requested) >= 11  # pending SIGHUPs merge in the kernel
    assert 1 <= len(done) <= 4, g.log()[mark:]


def test_reload_block_waits_and_nonblocking_returns_at_once(gw, upstream):
    gw.add_api(api_def("nb", "/nb/", upstream.url("/")))
    r = tyk(gw, "GET", "/tyk/reload")
    assert r.status == 200 and r.body == b'{"status":"ok","message":""}\n'
    assert wait_until(lambda: served_by_all(gw, "/nb/echo", 4), 5)


def test_worker_killed_during_reload(make_gateway, upstream, tmp_path):
    apis = [api_def("k%d" % i, "/k%d/" % i, upstream.url("/")) for i in range(2000)]
    g = make_gateway(conf={"secret": SECRET, "turnpike": {"admin_socket": str(tmp_path / "admin.sock")}},
                     apis=apis, workers=2)
    g.add_api(api_def("late", "/late/", upstream.url("/")))
    victim = g.worker_pids()[0]
    answer = {}
    t = threading.Thread(target=lambda: answer.update(r=admin(tmp_path / "admin.sock", "reload")))
    t.start()
    os.kill(victim, signal.SIGKILL)
    t.join(15)
    assert answer["r"].startswith("Success=1"), answer
    wait_for(lambda: len(g.worker_pids()) == 2 and victim not in g.worker_pids(), 10,
             what="the killed worker replaced")
    assert served_by_all(g, "/late/echo", 16)
    assert served_by_all(g, "/k1999/echo", 4)


def test_reload_storm_under_load(make_gateway, upstream, nginx, tmp_path):
    """A reload every 100 ms for 20 s, alternating between two API sets,
    under wrk: the API present in both sets never fails, nothing is dropped."""
    sets = [[api_def("s%d-%d" % (k, i), "/s%d-%d/" % (k, i), upstream.url("/")) for i in range(50)]
            for k in (0, 1)]
    sock = tmp_path / "admin.sock"
    g = make_gateway(conf={"secret": SECRET, "turnpike": {"admin_socket": str(sock)}},
                     apis=[api_def("both", "/both/", nginx.url("/"))] + sets[0], workers=2)
    pids = sorted(g.worker_pids())
    wrk = run_wrk("http://%s:%d/both/" % (HOST, g.port), 21, conns=16)
    triggers = 0
    try:
        t0 = time.time()
        k = 0
        while time.time() - t0 < 20:
            k ^= 1
            for d in sets[k ^ 1]:
                try:
                    (g.apps / ("%s.json" % d["api_id"])).unlink()
                except FileNotFoundError:
                    pass
            for d in sets[k]:
                tmp = g.apps / (".%s.tmp" % d["api_id"])
                tmp.write_text(json.dumps(d))
                tmp.rename(g.apps / ("%s.json" % d["api_id"]))
            how = triggers % 3
            if how == 0:
                g.signal(signal.SIGHUP)
            elif how == 1:
                tyk(g, "GET", "/tyk/reload")
            else:
                threading.Thread(target=admin, args=(sock, "reload"), daemon=True).start()
            triggers += 1
            time.sleep(0.1)
        out, _ = wrk.communicate(timeout=30)
    finally:
        if wrk.poll() is None:
            os.killpg(wrk.pid, signal.SIGKILL)
            wrk.wait()
    total, errors = parse_wrk(out)
    assert total > 10000, out
    assert errors == 0, out
    # the last set is served, the other is not
    r = admin(sock, "reload")
    assert r.startswith("Success=1"), r
    assert served_by_all(g, "/s%d-7/echo" % k, 4)
    assert g.get("/s%d-7/echo" % (k ^ 1)).status == 404
    assert sorted(g.worker_pids()) == pids
    info = admin(sock, "show info")
    gen = int(re.search(r"generation: (\d+)", info).group(1))
    assert gen >= 20, info  # reloads coalesce, but they happen throughout
    print("storm: %d triggers, generation %d, %d requests" % (triggers, gen, total))


# ---------------------------------------------------------------------------
# cluster: /tyk/reload/group and signed notifications
# ---------------------------------------------------------------------------

def test_reload_group_reaches_another_node(make_redis, make_gateway, upstream):
    srv = make_redis()
    storage = {"storage": {"type": "redis", "host": HOST, "port": srv.port}}
    conf = dict(storage, secret=SECRET, node_secret="cluster-secret")
    n1 = make_gateway(conf=conf, workers=1, name="node1")
    n2 = make_gateway(conf=conf, workers=2, name="node2")
    wait_for(lambda: srv.client().pubsub_numsub("tyk.cluster.notifications")[0][1] == 2, 5,
             what="both nodes subscribed")
    n2.add_api(api_def("fresh", "/fresh/", upstream.url("/")))
    assert n2.get("/fresh/echo").status == 404
    r = tyk(n1, "GET", "/tyk/reload/group")
    assert r.status == 200 and r.body == b'{"status":"ok","message":""}\n'
    assert wait_until(lambda: served_by_all(n2, "/fresh/echo", 4), 5), n2.log_tail()
    n2.wait_log(r"reload requested \(cluster notification GroupReload\)")


def publish(srv, msg):
    return srv.client().publish("tyk.cluster.notifications", json.dumps(msg))


def test_signed_notifications_accepted_forged_ignored(make_redis, make_gateway, upstream):
    srv = make_redis()
    node_secret = "n0de-s3cret"
    g = make_gateway(conf={"storage": {"type": "redis", "host": HOST, "port": srv.port},
                           "node_secret": node_secret}, workers=1)
    wait_for(lambda: srv.client().pubsub_numsub("tyk.cluster.notifications")[0][1] == 1, 5,
             what="subscribed")
    g.add_api(api_def("sig", "/sig/", upstream.url("/")))
    forged = [
        {"command": "GroupReload", "payload": "", "signature": "", "algorithm": 5},
        {"command": "GroupReload", "payload": ""},
        {"command": "GroupReload", "payload": "", "signature": sign("GroupReload", "", "wrong"), "algorithm": 5},
        {"command": "GroupReload", "payload": "", "signature": sign("GroupReload", "", node_secret).upper(),
         "algorithm": 5},
        {"command": "ApiUpdated", "payload": "x", "signature": sign("ApiUpdated", "", node_secret), "algorithm": 5},
        {"command": "GroupReload", "payload": "", "signature": sign("GroupReload", "", node_secret), "algorithm": 4},
    ]
    mark = len(g.log())
    for msg in forged:
        assert publish(srv, msg) == 1
    srv.client().publish("tyk.cluster.notifications", "not json at all")
    for _ in forged:
        g.wait_log(r"tyk\.cluster\.notifications: ignoring (GroupReload|ApiUpdated)", after=mark)
        mark = g.wait_log(r"tyk\.cluster\.notifications: ignoring (GroupReload|ApiUpdated)", after=mark).end()
    g.wait_log(r"ignoring a message that is not a Tyk notification")
    time.sleep(1.2)
    assert g.get("/sig/echo").status == 404
    assert "reload requested" not in g.log()
    # signed as a Tyk node signs it
    for cmd, payload in (("ApiUpdated", "sig"), ("GroupReload", "")):
        g.add_api(api_def(cmd, "/%s/" % cmd, upstream.url("/")))
        assert publish(srv, {"command": cmd, "payload": payload,
                             "signature": sign(cmd, payload, node_secret), "algorithm": 5}) == 1
        assert wait_until(lambda: g.get("/%s/echo" % cmd).status == 200, 5), g.log_tail()
    assert g.get("/sig/echo").status == 200


def test_insecure_configs_accepts_unsigned(make_redis, make_gateway, upstream):
    srv = make_redis()
    g = make_gateway(conf={"storage": {"type": "redis", "host": HOST, "port": srv.port},
                           "allow_insecure_configs": True}, workers=1)
    wait_for(lambda: srv.client().pubsub_numsub("tyk.cluster.notifications")[0][1] == 1, 5,
             what="subscribed")
    g.add_api(api_def("u", "/u/", upstream.url("/")))
    publish(srv, {"command": "PolicyChanged", "payload": ""})
    assert wait_until(lambda: g.get("/u/echo").status == 200, 5), g.log_tail()


# ---------------------------------------------------------------------------
# tyk.conf changes through a reload
# ---------------------------------------------------------------------------

def test_conf_change_replaces_workers_keeping_listeners(gw, upstream):
    old = sorted(gw.worker_pids())
    conf = json.loads(gw.conf_path.read_text())
    conf["turnpike"]["workers"] = 3
    gw.conf_path.write_text(json.dumps(conf))
    gw.add_api(api_def("w3", "/w3/", upstream.url("/")))
    r = tyk(gw, "GET", "/tyk/reload?block=true")
    assert r.status == 200, r.body
    pids = gw.worker_pids()
    assert len(pids) >= 3
    wait_for(lambda: len(gw.worker_pids()) == 3 and not set(gw.worker_pids()) & set(old), 10,
             what="old workers drained")
    assert served_by_all(gw, "/w3/echo")


# ---------------------------------------------------------------------------
# the admin socket and `turnpike ctl`
# ---------------------------------------------------------------------------

@pytest.fixture
def admgw(upstream, make_gateway, tmp_path):
    sock = tmp_path / "run" / "turnpike.sock"
    sock.parent.mkdir()
    g = make_gateway(conf={"secret": SECRET, "turnpike": {"admin_socket": str(sock)}},
                     apis=[api_def("a", "/a/", upstream.url("/")), api_def("b", "/b/", upstream.url("/"))],
                     workers=2)
    return g, sock


def ctl(g, *args):
    return subprocess.run([BIN, "ctl", "--conf", str(g.conf_path)] + list(args), capture_output=True,
                          text=True, timeout=20, env=clean_env())


def test_admin_socket_permissions(admgw):
    g, sock = admgw
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()


def test_admin_help_and_unknown(admgw):
    g, sock = admgw
    h = admin(sock, "help")
    for cmd in ("show info", "show workers", "show apis", "show stat", "reload", "drain",
                "set loglevel", "quit"):
        assert cmd in h, h
    assert admin(sock, "frobnicate").startswith("Unknown command: 'frobnicate'")
    r = ctl(g, "frobnicate")
    assert r.returncode == 1 and "Unknown command" in r.stdout
    assert admin(sock, "quit") == ""


def test_admin_show_info_workers_apis(admgw):
    g, sock = admgw
    for _ in range(5):
        g.get("/a/echo")
    info = admin(sock, "show info")
    fields = dict(l.split(": ", 1) for l in info.strip().splitlines())
    assert fields["pid"] == str(g.pid)
    assert fields["version"]
    assert fields["workers"].startswith("2 (2 running")
    assert int(fields["generation"]) >= 1
    assert fields["apis"] == "2"
    assert fields["redis"].startswith("up (2 workers pass"), fields
    wait_for(lambda: "redis_notifications: subscribed" in admin(sock, "show info"), 5,
             what="the master subscribed")
    assert int(fields["requests"]) >= 5
    assert int(fields["uptime_seconds"]) >= 0
    workers = [l.split() for l in admin(sock, "show workers").splitlines() if not l.startswith("#")]
    assert sorted(int(w[1]) for w in workers) == sorted(g.worker_pids())
    apis = admin(sock, "show apis")
    assert re.search(r"^a /a/ yes http://\S+ \S+a\.json$", apis, re.M), apis
    assert re.search(r"^b /b/ yes ", apis, re.M), apis


def test_admin_show_stat_counts_requests(admgw, upstream):
    g, sock = admgw
    for _ in range(7):
        assert g.get("/a/echo").status == 200
    for _ in range(3):
        assert g.get("/a/status/404").status == 404
    for _ in range(2):
        assert g.get("/b/status/503").status == 503
    lines = admin(sock, "show stat").splitlines()
    assert lines[0] == ("# api_id,requests,1xx,2xx,3xx,4xx,5xx,upstream_errors,"
                        "rate_limited,quota_exceeded,websockets")
    rows = {l.split(",")[0]: [int(x) for x in l.split(",")[1:]] for l in lines[1:] if not l.startswith("#")}
    assert rows["a"] == [10, 0, 7, 0, 3, 0, 0, 0, 0, 0], rows
    assert rows["b"] == [2, 0, 0, 0, 0, 2, 0, 0, 0, 0], rows
    # counters survive reloads
    assert admin(sock, "reload").startswith("Success=1")
    rows = {l.split(",")[0]: [int(x) for x in l.split(",")[1:]]
            for l in admin(sock, "show stat").splitlines()[1:] if not l.startswith("#")}
    assert rows["a"][0] == 10


def test_admin_reload_success_and_failure(admgw, upstream):
    g, sock = admgw
    g.add_api(api_def("c", "/c/", upstream.url("/")))
    r = ctl(g, "reload")
    assert r.returncode == 0 and r.stdout.startswith("Success=1"), r
    assert served_by_all(g, "/c/echo")
    (g.apps / "bad.json").write_text('{"api_id": 5}')
    r = ctl(g, "reload")
    assert r.returncode == 1 and r.stdout.startswith("Success=0"), r
    assert "bad.json" in r.stdout and "$.api_id" in r.stdout, r.stdout
    assert served_by_all(g, "/c/echo")
    info = admin(sock, "show info")
    assert "reloads_failed: 1" in info and "bad.json" in info


def test_admin_drain_and_loglevel(admgw):
    g, sock = admgw
    assert g.get("/ready").status == 200
    assert admin(sock, "drain").startswith("OK")
    for _ in range(6):
        assert g.get("/ready").status == 503
        assert g.get("/a/echo").status == 200
        assert g.get("/hello").status == 200
    # a worker that replaces a dead one keeps the drain
    victim = g.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(g.worker_pids()) == 2 and victim not in g.worker_pids(), 10,
             what="the worker replaced")
    time.sleep(0.5)  # past its first Redis probe: only the drain can fail /ready
    for _ in range(8):
        assert g.get("/ready").status == 503
    assert admin(sock, "undrain").startswith("OK")
    assert wait_until(lambda: all(g.get("/ready").status == 200 for _ in range(6)), 3)

    assert admin(sock, "set loglevel verbose").startswith("Error")
    mark = len(g.log())
    assert admin(sock, "set loglevel debug") == "OK: log level debug\n"
    g.signal(signal.SIGHUP)
    g.wait_log(r"level=debug pid=\d+ role=worker.*serving generation 2", after=mark)
    assert admin(sock, "set loglevel error").startswith("OK")
    mark = len(g.log())
    g.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert "level=info" not in g.log()[mark:]


def test_admin_socket_refuses_a_second_gateway(admgw, make_gateway):
    g, sock = admgw
    other = make_gateway(conf={"turnpike": {"admin_socket": str(sock)}}, workers=1, start=False)
    other.start(wait=False)
    assert other.wait_exit(10) == 2
    assert "another gateway answers on it" in other.log()
    assert admin(sock, "show info").startswith("version")


def test_admin_socket_removed_on_exit(admgw):
    g, sock = admgw
    g.signal(signal.SIGTERM)
    assert g.wait_exit(10) == 0
    assert not sock.exists()


# ---------------------------------------------------------------------------
# systemd notify protocol
# ---------------------------------------------------------------------------

def test_sd_notify(upstream, make_gateway, tmp_path):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(10)
    msgs = []

    def expect(pred, what):
        while True:
            m = s.recv(4096).decode()
            msgs.append(m)
            if pred(m):
                return m

    try:
        g = make_gateway(conf={"secret": SECRET}, apis=[api_def("a", "/a/", upstream.url("/"))],
                         env={"NOTIFY_SOCKET": path}, workers=2, start=False)
        g.start(wait=False)
        expect(lambda m: "READY=1" in m, "READY")
        # READY=1 comes once workers serve
        assert g.get("/a/echo").status == 200
        g.add_api(api_def("b", "/b/", upstream.url("/")))
        g.signal(signal.SIGHUP)
        m = expect(lambda m: "RELOADING=1" in m, "RELOADING")
        assert re.search(r"MONOTONIC_USEC=\d+", m), m
        expect(lambda m: "READY=1" in m, "READY after reload")
        assert served_by_all(g, "/b/echo", 4)
        g.signal(signal.SIGTERM)
        expect(lambda m: "STOPPING=1" in m, "STOPPING")
        assert g.wait_exit(10) == 0
    finally:
        s.close()
    assert msgs[0].startswith("READY=1") or "READY=1" in msgs[0], msgs
