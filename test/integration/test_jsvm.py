"""JavaScript middleware and virtual endpoints (TYK-COMPAT 23): Tyk's JSVM
with Duktape. custom_middleware pre / post_key_auth / post with driver
"otto" change the request (headers, body, URL, query, ReturnOverrides),
virtual endpoints answer from a function (blob or file, with the session),
TykMakeHttpRequest runs on the loop while other requests go on,
jsvm_timeout stops a runaway script, and broken scripts are refused at
load with their file and line."""
import base64
import json
import threading
import time

import pytest

from conftest import HOST, ScriptedUpstream, api_def, wait_for
from test_access import conf, get, key_with, keyed, not_versioned
from tykkeys import hash_key


def echo_up():
    """An upstream answering with what it got: request line, headers, body."""

    def respond(head, body):
        lines = head.decode("latin-1").split("\r\n")
        hdrs = [l.split(":", 1) for l in lines[1:] if ":" in l]
        payload = json.dumps({"line": lines[0], "headers": {k.strip(): v.strip() for k, v in hdrs},
                              "body": body.decode("latin-1")}).encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(payload)) + payload

    return ScriptedUpstream(respond)


@pytest.fixture
def up():
    u = echo_up()
    yield u
    u.stop()


def js_api(api_id, listen_path, target, pre=(), post=(), post_key_auth=(), keyless=True,
           virtual=None, response=(), **extra):
    d = api_def(api_id, listen_path, target) if keyless else keyed(api_id, listen_path, target)
    d["custom_middleware"] = {
        "driver": "otto",
        "pre": [{"name": n, "path": p, "require_session": False} for n, p in pre],
        "post": [dict({"name": n, "path": p}, **({"require_session": s} if s else {}))
                 for n, p, s in post],
        "post_key_auth": [{"name": n, "path": p, "require_session": True} for n, p in post_key_auth],
        "response": [{"name": n, "path": p} for n, p in response],
    }
    d.update(extra)
    if virtual is not None:
        return not_versioned(d, use_extended_paths=True, extended_paths={"virtual": virtual})
    return not_versioned(d)


def write_js(g, name, text):
    p = g.dir / name
    p.write_text(text)
    return str(p)


def gateway(make_gateway, scripts, apis, workers=1, **kw):
    """A gateway whose <scripts> ({file: text}) are written before it starts;
    <apis> is a function of {file: path}."""
    g = make_gateway(conf=conf(None, enable_jsvm=True, **kw), apis=[], workers=workers, start=False)
    paths = {n: write_js(g, n, t) for n, t in scripts.items()}
    for a in apis(paths):
        g.add_api(a)
    g.start()
    return g


PRE = """
var preMW = new TykJS.TykMiddleware.NewMiddleware({});
preMW.NewProcessRequest(function(request, session, config) {
    log("pre ran for " + request.URL);
    request.SetHeaders["X-Pre"] = "yes " + request.Method + " " + request.Headers["X-In"][0];
    request.SetHeaders["x-lower"] = "canonical";
    request.DeleteHeaders.push("X-Drop");
    request.AddParams["added"] = "a b";
    request.DeleteParams.push("gone");
    request.Body = request.Body + "+pre";
    request.SetHeaders["X-Config"] = config.config_data.greeting + "/" + config.APIID;
    return preMW.ReturnData(request, {});
});
"""


def test_pre_middleware_changes_headers_query_and_body(make_gateway, up):
    g = gateway(make_gateway, {"pre.js": PRE},
                lambda p: [js_api("j1", "/j1/", up.url("/"), pre=[("preMW", p["pre.js"])],
                                  config_data={"greeting": "hi"})])
    r = g.request("POST", "/j1/thing?keep=1&gone=2", [("X-In", "v1"), ("X-Drop", "d")], body=b"payload")
    assert r.status == 200, r
    got = r.json()
    assert got["line"] == "POST /thing?added=a+b&keep=1 HTTP/1.1"
    assert got["headers"]["X-Pre"] == "yes POST v1"
    assert got["headers"]["X-Lower"] == "canonical"
    assert got["headers"]["X-Config"] == "hi/j1"
    assert "X-Drop" not in got["headers"]
    assert got["body"] == "payload+pre"
    assert got["headers"]["Content-Length"] == str(len("payload+pre"))
    g.wait_log(r"jsvm: pre ran for /j1/thing\?keep=1&gone=2")


OVERRIDES = """
var deny = new TykJS.TykMiddleware.NewMiddleware({});
deny.NewProcessRequest(function(request, session) {
    var mode = request.Params["mode"] ? request.Params["mode"][0] : "";
    if (mode == "error") {
        request.ReturnOverrides.ResponseCode = 403;
        request.ReturnOverrides.ResponseError = "Denied by JS";
        request.ReturnOverrides.ResponseHeaders = {"x-why": "js"};
    } else if (mode == "raw") {
        request.ReturnOverrides.ResponseCode = 418;
        request.ReturnOverrides.ResponseBody = '{"teapot": true}';
        request.ReturnOverrides.OverrideError = true;
        request.ReturnOverrides.ResponseHeaders = {"Content-Type": "application/json"};
    } else if (mode == "ok") {
        request.ReturnOverrides.ResponseCode = 200;
        request.ReturnOverrides.ResponseBody = "from js";
    } else if (mode == "url") {
        request.URL = "/elsewhere/deep?z=1";
    } else if (mode == "throw") {
        throw new Error("broken on purpose");
    }
    return deny.ReturnData(request, {});
});
"""


def test_return_overrides_short_circuit(make_gateway, up):
    g = gateway(make_gateway, {"o.js": OVERRIDES},
                lambda p: [js_api("j2", "/j2/", up.url("/"), pre=[("deny", p["o.js"])])])
    r = get(g, "/j2/x?mode=error")
    assert r.status == 403 and r.json() == {"error": "Denied by JS"}
    assert r.header("X-Why") == "js"
    r = get(g, "/j2/x?mode=raw")
    assert r.status == 418 and r.json() == {"teapot": True}
    assert r.header("Server") == "tyk" and r.header("Content-Type") == "application/json"
    r = get(g, "/j2/x?mode=ok")
    assert r.status == 200 and r.body == b"from js"
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    # the URL: the upstream gets the new path (the listen path no longer matches: kept)
    r = get(g, "/j2/x?mode=url")
    assert r.status == 200 and r.json()["line"] == "GET /elsewhere/deep?z=1 HTTP/1.1"
    # nothing asked: the request goes through unchanged
    r = get(g, "/j2/plain?q=%20x")
    assert r.status == 200 and r.json()["line"] == "GET /plain?q=%20x HTTP/1.1"
    # a script error is Tyk's 500, logged with the file and line
    r = get(g, "/j2/x?mode=throw")
    assert r.status == 500 and r.json() == {"error": "Internal Server Error"}
    g.wait_log(r"JS middleware deny: .*o\.js:20: Error: broken on purpose")
    # and the worker still serves
    assert get(g, "/j2/x").status == 200


SESSION_MW = """
var withSession = new TykJS.TykMiddleware.NewMiddleware({});
withSession.NewProcessRequest(function(request, session) {
    request.SetHeaders["X-Tier"] = session.meta_data.tier;
    request.SetHeaders["X-Quota"] = "" + session.quota_max;
    request.SetHeaders["X-Visits"] = "" + (session.meta_data.visits || 0);
    session.meta_data.visits = (session.meta_data.visits || 0) + 1;
    return withSession.ReturnData(request, session.meta_data);
});
var auth = new TykJS.TykMiddleware.NewMiddleware({});
auth.NewProcessRequest(function(request, session) {
    request.SetHeaders["X-After-Key"] = session.meta_data.tier + "!";
    return auth.ReturnData(request, session.meta_data);
});
var setAuth = new TykJS.TykMiddleware.NewMiddleware({});
setAuth.NewProcessRequest(function(request, session) {
    if (request.Params["k"])
        request.SetHeaders["Authorization"] = request.Params["k"][0];
    request.DeleteParams.push("k");
    return setAuth.ReturnData(request, {});
});
"""


def test_session_hooks_on_a_keyed_api(make_gateway, make_redis, up):
    srv = make_redis()
    rc = srv.client()
    g = make_gateway(conf=conf(srv, enable_jsvm=True), apis=[], workers=1, start=False)
    path = write_js(g, "s.js", SESSION_MW)
    a = js_api("j3", "/j3/", up.url("/"), keyless=False, pre=[("setAuth", path)],
               post_key_auth=[("auth", path)], post=[("withSession", path, True)])
    g.add_api(a)
    g.start()
    tok = key_with(rc, ["j3"], meta_data={"tier": "gold"}, quota_max=77)
    r = get(g, "/j3/x", tok)
    assert r.status == 200, r
    h = r.json()["headers"]
    assert h["X-Tier"] == "gold" and h["X-Quota"] == "77" and h["X-After-Key"] == "gold!"
    # a pre hook's Authorization header is what the key check reads
    r = get(g, "/j3/x?k=" + tok)
    assert r.status == 200 and r.json()["line"] == "GET /x HTTP/1.1"
    assert get(g, "/j3/x").status == 401
    # the post hook's SessionMeta is saved with the session, as Tyk's session.Touch
    stored = json.loads(rc.get("apikey-" + hash_key(tok, True)))
    assert stored["meta_data"] == {"tier": "gold", "visits": 2}, stored
    r = get(g, "/j3/x", tok)
    assert r.json()["headers"]["X-Visits"] == "2"
    # each request's post hook saves it again
    assert json.loads(rc.get("apikey-" + hash_key(tok, True)))["meta_data"]["visits"] == 3


VIRTUAL_JS = """
function hello(request, session, config) {
    var who = request.Params["name"] ? request.Params["name"][0] : "nobody";
    return TykJsResponse({
        Body: JSON.stringify({hello: who, tier: session.meta_data ? session.meta_data.tier : null,
                              api: config.APIID, method_body: request.Body,
                              ua: request.Headers["User-Agent"] ? request.Headers["User-Agent"][0] : ""}),
        Code: 201,
        Headers: {"content-type": "application/json", "X-Virtual": "1"}
    }, session.meta_data);
}
"""

BLOB_JS = """
function fromBlob(request, session, config) {
    return TykJsResponse({Body: "blob says " + _.map([1, 2, 3], function(x) { return x * 2; }).join(","),
                          Code: 200, Headers: {}}, {});
}
function broken(request, session, config) { return undefined.nope; }
"""


def test_virtual_endpoints_from_file_and_blob(make_gateway, make_redis, up):
    srv = make_redis()
    rc = srv.client()
    g = make_gateway(conf=conf(srv, enable_jsvm=True), apis=[], workers=1, start=False)
    path = write_js(g, "v.js", VIRTUAL_JS)
    blob = base64.b64encode(BLOB_JS.encode()).decode()
    virt = [
        {"path": "/hello", "method": "GET", "response_function_name": "hello",
         "function_source_type": "file", "function_source_uri": path, "use_session": True},
        {"path": "/hello", "method": "POST", "response_function_name": "hello",
         "function_source_type": "file", "function_source_uri": path, "use_session": False},
        {"path": "/blob", "method": "GET", "response_function_name": "fromBlob",
         "function_source_type": "blob", "function_source_uri": blob},
        {"path": "/broken", "method": "GET", "response_function_name": "broken",
         "function_source_type": "blob", "function_source_uri": blob},
        {"path": "/fallback", "method": "GET", "response_function_name": "broken",
         "function_source_type": "blob", "function_source_uri": blob, "proxy_on_error": True},
    ]
    g.add_api(js_api("j4", "/j4/", up.url("/"), keyless=False, virtual=virt))
    g.start()
    tok = key_with(rc, ["j4"], meta_data={"tier": "silver"})
    r = get(g, "/j4/hello?name=ann", tok, headers=[("User-Agent", "ua/1")])
    assert r.status == 201, r
    assert r.json() == {"hello": "ann", "tier": "silver", "api": "j4", "method_body": "", "ua": "ua/1"}
    assert r.header("X-Virtual") == "1" and r.header("Content-Type") == "application/json"
    assert r.header("Server") == "tyk"
    # without use_session the function sees an empty session; the form body is in Params
    r = g.request("POST", "/j4/hello", [("Authorization", tok),
                                        ("Content-Type", "application/x-www-form-urlencoded")],
                  body=b"name=bob")
    assert r.status == 201 and r.json()["hello"] == "bob" and r.json()["tier"] is None
    assert r.json()["method_body"] == "name=bob"
    r = get(g, "/j4/blob", tok)
    assert r.status == 200 and r.body == b"blob says 2,4,6"
    r = get(g, "/j4/broken", tok)
    assert r.status == 500
    assert r.json() == {"error": "Error during virtual endpoint execution. Contact Administrator for more details."}
    r = get(g, "/j4/fallback", tok)
    assert r.status == 200 and r.json()["line"] == "GET /fallback HTTP/1.1"
    # still behind the key check
    assert get(g, "/j4/hello").status == 401
    # other paths reach the upstream
    assert get(g, "/j4/other", tok).json()["line"] == "GET /other HTTP/1.1"


def test_timeout_stops_a_runaway_script(make_gateway, up):
    loop = """
var spin = new TykJS.TykMiddleware.NewMiddleware({});
spin.NewProcessRequest(function(request, session) {
    if (request.Params["spin"]) {
        while (true) { try { while (true) {} } catch (e) {} }
    }
    return spin.ReturnData(request, {});
});
"""
    g = gateway(make_gateway, {"spin.js": loop},
                lambda p: [js_api("j5", "/j5/", up.url("/"), pre=[("spin", p["spin.js"])])],
                jsvm_timeout=1)
    results = {}

    def slow():
        t = time.time()
        results["r"] = get(g, "/j5/x?spin=1", timeout=10)
        results["t"] = time.time() - t

    th = threading.Thread(target=slow)
    th.start()
    th.join(10)
    assert not th.is_alive()
    assert results["r"].status == 500 and results["r"].json() == {"error": "Internal Server Error"}
    assert 0.8 < results["t"] < 4, results["t"]
    g.wait_log(r"JS middleware spin: timed out")
    # the one worker serves again at once
    assert get(g, "/j5/x").status == 200


def test_make_http_request_does_not_block_the_worker(make_gateway, up, upstream):
    js = """
var caller = new TykJS.TykMiddleware.NewMiddleware({});
caller.NewProcessRequest(function(request, session) {
    if (request.Params["call"]) {
        log("calling out");
        var r1 = JSON.parse(TykMakeHttpRequest(JSON.stringify({
            Method: "GET", Domain: "%s", Resource: "/delay/600", Headers: {}})));
        var r2 = JSON.parse(TykMakeHttpRequest(JSON.stringify({
            Method: "POST", Domain: "%s", Resource: "/echo?x=1", Body: "abc",
            Headers: {"x-from-js": "1"}})));
        request.SetHeaders["X-R1"] = r1.Code + ":" + r1.Body;
        request.SetHeaders["X-R2"] = r2.code + ":" + JSON.parse(r2.body).body_len;
        request.SetHeaders["X-R2-Type"] = r2.Headers["Content-Type"][0];
    }
    return caller.ReturnData(request, {});
});
""" % (upstream.url("").rstrip("/"), upstream.url("").rstrip("/"))
    g = gateway(make_gateway, {"call.js": js},
                lambda p: [js_api("j6", "/j6/", up.url("/"), pre=[("caller", p["call.js"])])])
    out = {}

    def call():
        out["r"] = get(g, "/j6/x?call=1", timeout=10)

    th = threading.Thread(target=call)
    th.start()
    time.sleep(0.15)
    # the one worker answers others while the script waits for its upstream
    t = time.time()
    for _ in range(5):
        assert get(g, "/j6/y").status == 200
    assert time.time() - t < 0.4
    assert th.is_alive()
    th.join(10)
    r = out["r"]
    assert r.status == 200, r
    h = r.json()["headers"]
    assert h["X-R1"] == "200:slept" and h["X-R2"] == "200:3"
    assert h["X-R2-Type"] == "application/json"
    # the script ran three times (twice stopped at a request); its log line is written once
    time.sleep(0.2)
    assert g.log().count("jsvm: calling out") == 1


def test_broken_scripts_are_refused_at_load(make_gateway, up):
    bad = "var x = );\nvar y = 2;\n"
    g = gateway(make_gateway, {"bad.js": "// a comment\n" + bad, "ok.js": PRE},
                lambda p: [js_api("bad1", "/bad1/", up.url("/"), pre=[("preMW", p["bad.js"])]),
                           js_api("bad2", "/bad2/", up.url("/"), pre=[("preMW", "/no/such/file.js")]),
                           js_api("bad3", "/bad3/", up.url("/"), virtual=[
                               {"path": "/v", "method": "GET", "response_function_name": "f",
                                "function_source_type": "url", "function_source_uri": "x"}]),
                           js_api("bad4", "/bad4/", up.url("/"), virtual=[
                               {"path": "/v", "method": "GET", "response_function_name": "f",
                                "function_source_type": "blob",
                                "function_source_uri": base64.b64encode(b"function f( {").decode()}]),
                           js_api("good", "/good/", up.url("/"), pre=[("preMW", p["ok.js"])],
                                  config_data={"greeting": "g"})])
    g.wait_log(r"bad1.json: \$\.custom_middleware\.pre\[0\]\.path: .*bad\.js:2: SyntaxError")
    g.wait_log(r"bad3.json: \$\.version_data\.versions\.Default\.extended_paths\.virtual\[0\]"
               r"\.function_source_type: Type must be either file or blob")
    g.wait_log(r"bad4.json: .*virtual\[0\]: virtual endpoint .*: SyntaxError")
    g.wait_log(r'bad2.json: \$\.custom_middleware\.pre\[0\]\.path: \\"/no/such/file\.js\\": No such file')
    assert get(g, "/bad1/x").status == 404
    assert get(g, "/bad2/x").status == 404
    assert get(g, "/bad3/v").status == 404 and get(g, "/bad4/v").status == 404
    r = g.request("POST", "/good/x?in=1", [("X-In", "i")], body=b"b")
    assert r.status == 200 and r.json()["body"] == "b+pre"


def test_without_enable_jsvm_hooks_answer_middleware_error(make_gateway, up):
    g = make_gateway(conf=conf(None), apis=[], workers=1, start=False)
    path = write_js(g, "pre.js", PRE)
    blob = base64.b64encode(BLOB_JS.encode()).decode()
    g.add_api(js_api("j7", "/j7/", up.url("/"), pre=[("preMW", path)]))
    g.add_api(js_api("j8", "/j8/", up.url("/"), virtual=[
        {"path": "/blob", "method": "GET", "response_function_name": "fromBlob",
         "function_source_type": "blob", "function_source_uri": blob}]))
    g.start()
    r = get(g, "/j7/x")
    assert r.status == 500 and r.json() == {"error": "Middleware error"}
    # virtual endpoints are off without the JSVM: the upstream answers
    assert get(g, "/j8/blob").json()["line"] == "GET /blob HTTP/1.1"


def test_key_data_and_batch_requests_from_a_script(make_gateway, make_redis, up, upstream):
    srv = make_redis()
    rc = srv.client()
    base = upstream.url("").rstrip("/")
    js = """
function keyinfo(request, session, config) {
    var k = request.Params["key"][0];
    var s = JSON.parse(TykGetKeyData(k, config.APIID));
    s.meta_data = {"touched": "by js"};
    TykSetKeyData(k, JSON.stringify(s), "1");
    var again = JSON.parse(TykGetKeyData(k, config.APIID));
    var b = JSON.parse(TykBatchRequest(JSON.stringify({requests: [
        {method: "GET", relative_url: "%s/echo?b=1", headers: {"X-B": "1"}},
        {method: "GET", relative_url: "%s/status/404", headers: {}}]})));
    var missing = JSON.parse(TykGetKeyData("no-such-key", config.APIID));
    return TykJsResponse({Body: JSON.stringify({quota: s.quota_max, touched: again.meta_data.touched,
                                                batch: [b[0].code, b[1].code],
                                                echoed: JSON.parse(b[0].body).query,
                                                missing: missing}),
                          Code: 200, Headers: {"Content-Type": "application/json"}}, {});
}
""" % (base, base)
    blob = base64.b64encode(js.encode()).decode()
    g = make_gateway(conf=conf(srv, enable_jsvm=True), workers=1, apis=[
        js_api("j9", "/j9/", up.url("/"), virtual=[
            {"path": "/keyinfo", "method": "GET", "response_function_name": "keyinfo",
             "function_source_type": "blob", "function_source_uri": blob}])])
    tok = key_with(rc, ["j9"], quota_max=42)
    r = get(g, "/j9/keyinfo?key=" + tok)
    assert r.status == 200, r
    got = r.json()
    assert got["quota"] == 42 and got["touched"] == "by js"
    assert got["batch"] == [200, 404] and got["echoed"] == "b=1"
    assert got["missing"] == {"status": "error", "message": "Key not found"}
    stored = json.loads(rc.get("apikey-" + hash_key(tok, True)))
    assert stored["meta_data"] == {"touched": "by js"} and stored["quota_max"] == 42


# ---- plugin bundles -------------------------------------------------------------------------

BUNDLE_JS = """
var bundlePre = new TykJS.TykMiddleware.NewMiddleware({});
bundlePre.NewProcessRequest(function(request, session) {
    request.SetHeaders["X-Bundle"] = "from the bundle";
    return bundlePre.ReturnData(request, {});
});
"""


class BundleServer:
    """A local HTTP server for bundles: /bundles/<name> from a dict."""

    def __init__(self):
        import http.server
        self.files = {}
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            protocol_version = "HTTP/1.1"

            def do_GET(self):
                data = outer.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "chunked" in self.path:  # in pieces, as a streaming server sends it
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(data), 100):
                        piece = data[i:i + 100]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.srv = http.server.ThreadingHTTPServer((HOST, 0), H)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def base(self):
        return "http://%s:%d/bundles" % (HOST, self.port)

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def bundles():
    b = BundleServer()
    yield b
    b.stop()


def make_bundle(files, driver="otto", checksum=None, sign_key=None, pre_name="bundlePre"):
    """A zip as `tyk bundle build` makes it: manifest.json with the file
    list, Tyk's md5 checksum of the files' bytes in order and (with
    <sign_key>) their RSA SHA-256 signature."""
    import hashlib
    import io
    import subprocess
    import zipfile
    data = b"".join(files[n] for n in files)
    manifest = {"file_list": list(files),
                "custom_middleware": {"driver": driver,
                                      "pre": [{"name": pre_name, "path": list(files)[0]}]},
                "checksum": checksum or hashlib.md5(data).hexdigest(), "signature": ""}
    if sign_key is not None:
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", sign_key], input=data,
                             capture_output=True, check=True).stdout
        manifest["signature"] = base64.b64encode(sig).decode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest))
        for n, d in files.items():
            z.writestr(n, d)
    return buf.getvalue()


def bundle_api(api_id, target, name):
    d = js_api(api_id, "/%s/" % api_id, target)
    d["custom_middleware"] = {}
    d["custom_middleware_bundle"] = name
    return d


def rsa_pair(tmp_path):
    import subprocess
    key, pub = str(tmp_path / "bundle.key"), str(tmp_path / "bundle.pub")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], capture_output=True, check=True)
    subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-out", pub], capture_output=True,
                   check=True)
    return key, pub


def test_bundles_download_verify_and_refuse(make_gateway, bundles, up, tmp_path):
    import hashlib
    good = {"mw.js": BUNDLE_JS.encode()}
    bundles.files["/bundles/good.zip"] = make_bundle(good)
    bundles.files["/bundles/chunked.zip"] = make_bundle(good)
    bundles.files["/bundles/badsum.zip"] = make_bundle(good, checksum="0" * 32)
    bundles.files["/bundles/python.zip"] = make_bundle(good, driver="python")
    mw = tmp_path / "middleware"
    g = make_gateway(conf=conf(None, enable_jsvm=True, enable_bundle_downloader=True,
                               bundle_base_url=bundles.base(), middleware_path=str(mw)),
                     workers=1, apis=[bundle_api("b1", up.url("/"), "good.zip"),
                                      bundle_api("b5", up.url("/"), "chunked.zip"),
                                      bundle_api("b2", up.url("/"), "badsum.zip"),
                                      bundle_api("b3", up.url("/"), "missing.zip"),
                                      bundle_api("b4", up.url("/"), "python.zip")])
    r = get(g, "/b1/x")
    assert r.status == 200 and r.json()["headers"]["X-Bundle"] == "from the bundle"
    r = get(g, "/b5/x")  # the one served chunked
    assert r.status == 200 and r.json()["headers"]["X-Bundle"] == "from the bundle"
    # unpacked under middleware_path/bundles/<md5 of the name>, as Tyk keeps it
    d = mw / "bundles" / hashlib.md5(b"good.zip").hexdigest()
    assert (d / "mw.js").read_bytes() == good["mw.js"] and (d / "manifest.json").exists()
    g.wait_log(r"b2\.json: \$\.custom_middleware_bundle: Couldn't load bundle: Invalid checksum")
    g.wait_log(r"b3\.json: \$\.custom_middleware_bundle: Couldn't fetch bundle "
               r"http://[0-9.:]+/bundles/missing\.zip: HTTP Error, got status code 404")
    g.wait_log(r'b4\.json: .*driver \\"python\\": only JavaScript bundles')
    for a in ("b2", "b3", "b4"):
        assert get(g, "/%s/x" % a).status == 404
    assert not (mw / "bundles" / hashlib.md5(b"badsum.zip").hexdigest()).exists()
    # a bundle on disk is used as it is, without the server (a reload with a
    # broken API file fails as a whole: they go first)
    bundles.files.clear()
    for a in ("b2", "b3", "b4"):
        (g.apps / ("%s.json" % a)).unlink()
    g.signal(__import__("signal").SIGHUP)
    g.wait_log(r"reload done: generation 2 serves 2 APIs")
    r = get(g, "/b1/x")
    assert r.status == 200 and r.json()["headers"]["X-Bundle"] == "from the bundle"


def test_bundle_signatures(make_gateway, bundles, up, tmp_path):
    key, pub = rsa_pair(tmp_path)
    other, _ = rsa_pair(tmp_path / "..")
    files = {"mw.js": BUNDLE_JS.encode()}
    bundles.files["/bundles/signed.zip"] = make_bundle(files, sign_key=key)
    bundles.files["/bundles/unsigned.zip"] = make_bundle(files)
    bundles.files["/bundles/forged.zip"] = make_bundle(files, sign_key=other)
    g = make_gateway(conf=conf(None, enable_jsvm=True, enable_bundle_downloader=True,
                               bundle_base_url=bundles.base(), public_key_path=pub,
                               middleware_path=str(tmp_path / "mw")),
                     workers=1, apis=[bundle_api("s1", up.url("/"), "signed.zip"),
                                      bundle_api("s2", up.url("/"), "unsigned.zip"),
                                      bundle_api("s3", up.url("/"), "forged.zip")])
    r = get(g, "/s1/x")
    assert r.status == 200 and r.json()["headers"]["X-Bundle"] == "from the bundle"
    g.wait_log(r"s2\.json: .*Couldn't load bundle: Bundle isn't signed")
    g.wait_log(r"s3\.json: .*Couldn't load bundle: crypto/rsa: verification error")
    assert get(g, "/s2/x").status == 404 and get(g, "/s3/x").status == 404


RESPONSE_JS = """
var resp = new TykJS.TykMiddleware.NewMiddleware({});
resp.NewProcessResponse(function(response, session, config) {
    var got = JSON.parse(response.Body);
    response.Body = JSON.stringify({was: got.line, code: response.StatusCode,
                                    type: response.Headers["Content-Type"][0], api: config.APIID});
    response.SetHeaders["X-Response-Hook"] = "1";
    response.DeleteHeaders.push("X-Secret");
    if (got.line.indexOf("teapot") >= 0)
        response.StatusCode = 418;
    return resp.ReturnResponseData(response, {});
});
var broken = new TykJS.TykMiddleware.NewMiddleware({});
broken.NewProcessResponse(function(response) { throw new Error("no"); });
"""


def test_response_hooks_change_status_headers_and_body(make_gateway, scripted):
    def respond(head, body):
        line = head.split(b"\r\n", 1)[0].decode()
        payload = json.dumps({"line": line}).encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Secret: s\r\n"
                b"Content-Length: %d\r\n\r\n" % len(payload)) + payload

    u = scripted(respond)
    g = gateway(make_gateway, {"r.js": RESPONSE_JS},
                lambda p: [js_api("jr", "/jr/", u.url("/"), response=[("resp", p["r.js"])]),
                           js_api("jb", "/jb/", u.url("/"), response=[("broken", p["r.js"])])])
    r = get(g, "/jr/thing")
    assert r.status == 200, r
    assert r.json() == {"was": "GET /thing HTTP/1.1", "code": 200, "type": "application/json",
                        "api": "jr"}
    assert r.header("X-Response-Hook") == "1" and r.header("X-Secret") is None
    assert r.header("Content-Length") == str(len(r.body))
    r = get(g, "/jr/teapot")
    assert r.status == 418 and r.json()["was"] == "GET /teapot HTTP/1.1"
    # a hook that fails leaves the upstream's response as it was
    r = get(g, "/jb/x")
    assert r.status == 200 and r.json() == {"line": "GET /x HTTP/1.1"} and r.header("X-Secret") == "s"
    g.wait_log(r"JS response middleware broken: .*Error: no")


def test_hostile_return_values_cannot_crash_the_worker(make_gateway, up):
    js = """
var tricky = new TykJS.TykMiddleware.NewMiddleware({});
tricky.NewProcessRequest(function(request, session) {
    var mode = request.Params["m"][0];
    if (mode == "getter")
        Object.defineProperty(request, "Body", {get: function() { throw new Error("got you"); }});
    if (mode == "proxy")
        request.SetHeaders = new Proxy({}, {ownKeys: function() { throw new Error("trap"); }});
    if (mode == "slow")
        Object.defineProperty(request, "URL", {get: function() { while (true) {} }});
    if (mode == "code")
        request.ReturnOverrides.ResponseCode = {valueOf: function() { throw new Error("v"); }};
    if (mode == "cycle")
        request.SetHeaders.self = request.SetHeaders;
    return tricky.ReturnData(request, {});
});
"""
    g = gateway(make_gateway, {"t.js": js},
                lambda p: [js_api("jh", "/jh/", up.url("/"), pre=[("tricky", p["t.js"])])],
                jsvm_timeout=1)
    pids = g.worker_pids()
    for m in ("getter", "proxy", "slow"):
        r = get(g, "/jh/x?m=" + m, timeout=10)
        assert r.status == 500 and r.json() == {"error": "Internal Server Error"}, (m, r)
    # a code that is not a number is no code; a cycle is cut, never followed forever
    assert get(g, "/jh/x?m=code").status == 200
    assert get(g, "/jh/x?m=cycle").status in (200, 500)
    assert get(g, "/jh/x?m=none").status == 200
    assert g.worker_pids() == pids


AUTH_JS = """
var ottoAuth = new TykJS.TykMiddleware.NewMiddleware({});
ottoAuth.NewProcessRequest(function(request, session) {
    var tok = request.Params["auth"] ? request.Params["auth"][0] : undefined;
    if (tok == undefined) {
        request.ReturnOverrides.ResponseCode = 401;
        request.ReturnOverrides.ResponseError = "Header missing (JS middleware)";
        return ottoAuth.ReturnData(request, {});
    }
    if (tok != "foobar") {
        request.ReturnOverrides.ResponseCode = 403;
        request.ReturnOverrides.ResponseError = "Not authorized (JS middleware)";
        return ottoAuth.ReturnData(request, {});
    }
    request.SetHeaders["X-Js-User"] = tok;
    var s = {rate: 2, per: 60, quota_max: -1, org_id: "default", meta_data: {who: "js"},
             access_rights: {ja: {api_id: "ja", api_name: "ja", versions: ["Default"]}}};
    var out = ottoAuth.ReturnAuthData(request, s);
    out.AuthValue = "js-user-" + tok;
    return out;
});
"""


def test_auth_check_is_the_apis_auth(make_gateway, make_redis, up):
    srv = make_redis()
    rc = srv.client()
    g = make_gateway(conf=conf(srv, enable_jsvm=True), apis=[], workers=1, start=False)
    path = write_js(g, "auth.js", AUTH_JS)
    a = js_api("ja", "/ja/", up.url("/"), keyless=False, custom_plugin_auth_enabled=True)
    a.pop("use_standard_auth", None)
    a["custom_middleware"]["auth_check"] = {"name": "ottoAuth", "path": path}
    g.add_api(a)
    g.start()
    r = get(g, "/ja/x")
    assert r.status == 401 and r.json() == {"error": "Header missing (JS middleware)"}
    r = get(g, "/ja/x?auth=nope")
    assert r.status == 403 and r.json() == {"error": "Not authorized (JS middleware)"}
    # no key needed: the script's session is the request's, with its limits
    r = get(g, "/ja/x?auth=foobar")
    assert r.status == 200, r
    assert r.json()["headers"]["X-Js-User"] == "foobar"
    # stored as Tyk's generateToken(org, AuthValue) keys are
    stored = json.loads(rc.get("apikey-" + hash_key("default" + "js-user-foobar", True)))
    assert stored["rate"] == 2 and stored["meta_data"] == {"who": "js"}
    assert get(g, "/ja/x?auth=foobar").status == 200
    r = get(g, "/ja/x?auth=foobar")
    assert r.status == 429, r
