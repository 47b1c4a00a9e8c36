"""The extended_paths middleware of classic definitions (TYK-COMPAT 12.1,
21.2, 21.4, 21.6): header transforms with Tyk's variables on the request
and the response, size limits, method transforms, URL rewrites with
triggers, internal endpoints; and the entries this gateway cannot run yet
refused at load with their JSON path, never ignored."""
import json

import pytest

from conftest import api_def, chunked_body, run_turnpike, session_redis
from test_access import (ORG, assert_denied, tyk_error, conf, echo, get, key_with, keyed, not_versioned,
                         upstream_header)


def ext(d, extended=None, **info):
    return not_versioned(d, use_extended_paths=True, extended_paths=extended or {}, **info)


@pytest.fixture
def rc():
    c = session_redis().client()
    yield c
    c.close()


def headers_of(r):
    return {k.lower(): v for k, v in echo(r)["headers"]}


# ---- header transforms and variables --------------------------------------------------------

def test_header_transforms_with_context_and_meta_variables(upstream, make_gateway, rc):
    globals_ = {"X-Path": "$tyk_context.path", "X-Ip": "$tyk_context.remote_addr",
                "X-Client": "$tyk_context.headers_X_Client_Id", "X-Q": "$tyk_context.request_data_q",
                "X-Tier": "$tyk_meta.tier", "X-Cookie": "$tyk_context.cookies_sid",
                "X-Parts": "$tyk_context.path_parts", "X-Token": "$tyk_context.token",
                "X-Conf": "db=$secret_conf.db", "X-Env": "$secret_env.upstream_pass",
                "X-Missing": "[$tyk_context.nothing_here][$tyk_meta.nope]",
                "X-Num": "$tyk_meta.limit", "X-Replaced": "global", "X-Host": "$tyk_context.headers_Host"}
    ctx = ext(keyed("ctx", "/ctx/", upstream.url("/"), enable_context_vars=True),
              {"transform_headers": [
                  {"path": "/echo/special", "method": "GET", "delete_headers": ["X-Drop-Me", "X-Replaced"],
                   "add_headers": {"X-Special": "yes $tyk_context.request_data_q",
                                   "X-Replaced": "endpoint"}}]},
              global_headers=globals_, global_headers_remove=["X-Secret-Client"])
    off = ext(keyed("off", "/off/", upstream.url("/")),
              global_headers={"X-Path": "[$tyk_context.path]", "X-Tier": "$tyk_meta.tier"})
    g = make_gateway(conf=conf(secrets={"db": "postgres-1"}), apis=[ctx, off],
                     env={"TYK_SECRET_UPSTREAM_PASS": "hunter2"})
    tok = key_with(rc, ["ctx", "off"], meta_data={"tier": "gold", "limit": 2.5})
    r = get(g, "/ctx/echo/a/b?q=hello%20world&z=1", tok,
            headers=[("X-Client-Id", "c-42"), ("Cookie", "a=1; sid=abc-9"),
                     ("X-Secret-Client", "leak"), ("X-Drop-Me", "x")])
    h = headers_of(r)
    assert h["x-path"] == "/ctx/echo/a/b"
    assert h["x-ip"] == "127.0.0.1"
    assert h["x-client"] == "c-42"
    assert h["x-q"] == "hello world"  # header values are not escaped
    assert h["x-tier"] == "gold"
    assert h["x-cookie"] == "abc-9"
    assert h["x-parts"] == "ctx,echo,a,b"
    assert h["x-token"] == tok
    assert h["x-conf"] == "db=postgres-1"
    assert h["x-env"] == "hunter2"
    assert h["x-missing"] == "[][]"
    assert h["x-num"] == "2.5"
    assert h["x-host"].startswith("127.0.0.1:")
    assert "x-secret-client" not in h  # global_headers_remove
    assert "x-special" not in h and h["x-drop-me"] == "x" and h["x-replaced"] == "global"
    # the endpoint's entry: its deletes and adds after the globals
    h = headers_of(get(g, "/ctx/echo/special?q=1", tok, headers=[("X-Drop-Me", "x")]))
    assert h["x-special"] == "yes 1"
    assert h["x-replaced"] == "endpoint"
    assert "x-drop-me" not in h
    # a client's value for a header the gateway sets never reaches the upstream
    r = get(g, "/ctx/echo", tok, headers=[("X-Tier", "platinum")])
    assert [v for k, v in echo(r)["headers"] if k.lower() == "x-tier"] == ["gold"]
    # without enable_context_vars the context is empty; meta still resolves
    h = headers_of(get(g, "/off/echo/x", tok))
    assert h["x-path"] == "[]" and h["x-tier"] == "gold"


def test_response_header_transforms(upstream, make_gateway, rc):
    d = ext(keyed("rh", "/rh/", upstream.url("/")),
            {"transform_response_headers": [
                {"path": "/headers/{n}", "method": "GET", "delete_headers": ["X-H1"],
                 "add_headers": {"X-Added": "tier-$tyk_meta.tier", "X-H0": "replaced"}}]},
            global_response_headers={"X-Global": "g"}, global_response_headers_remove=["X-H2"])
    g = make_gateway(conf=conf(), apis=[d])
    tok = key_with(rc, ["rh"], meta_data={"tier": "gold"})
    r = get(g, "/rh/headers/4", tok)
    assert r.status == 200 and r.body == b"ok"
    assert r.header("X-H0") == "replaced" and r.header_all("X-H0") == ["replaced"]
    assert r.header("X-H1") is None and r.header("X-H2") is None
    assert r.header("X-H3") == "v3"
    assert r.header("X-Added") == "tier-gold" and r.header("X-Global") == "g"
    # a gateway-made error is not an upstream response: untouched
    r = get(g, "/rh/headers/4", "no-such-key")
    assert r.status == 403 and r.header("X-Global") is None


# ---- size limits and method transforms -----------------------------------------------------

def test_size_limits(upstream, make_gateway):
    d = ext(api_def("sz", "/sz/", upstream.url("/")),
            {"size_limits": [{"path": "/echo/small", "method": "POST", "size_limit": 3}]},
            global_size_limit=10)
    g = make_gateway(conf=conf(), apis=[d])
    ok = g.request("POST", "/sz/echo/x", [("Content-Type", "text/plain")], b"0123456789")
    assert echo(ok)["body_len"] == 10
    assert_denied(g.request("POST", "/sz/echo/x", [], b"0123456789a"), 400, "Request is too large")
    assert_denied(g.request("POST", "/sz/echo/small", [], b"abcd"), 400, "Request is too large")
    assert echo(g.request("POST", "/sz/echo/small", [], b"abc"))["body_len"] == 3
    # a chunked body states no length: Tyk wants one
    r = g.request("POST", "/sz/echo/x", [("Transfer-Encoding", "chunked")], b"3\r\nabc\r\n0\r\n\r\n")
    assert_denied(r, 411, "Content length is required for this request")
    # methods without a body are not limited (Tyk 5.8)
    assert g.get("/sz/echo/x").status == 200
    assert g.request("DELETE", "/sz/echo/x").status == 200


def test_method_transforms(upstream, make_gateway):
    d = ext(api_def("mt", "/mt/", upstream.url("/")),
            {"method_transforms": [{"path": "/echo/post", "method": "GET", "to_method": "post"},
                                   {"path": "/echo/bad", "method": "GET", "to_method": "CONNECT"}]})
    g = make_gateway(conf=conf(), apis=[d])
    assert echo(g.get("/mt/echo/post"))["method"] == "POST"
    assert echo(g.request("PUT", "/mt/echo/post", [], b"x"))["method"] == "PUT"  # method must match
    assert_denied(g.get("/mt/echo/bad"), 405, "Method not allowed")


# ---- URL rewrites -------------------------------------------------------------------------------

def rewrite_api(upstream, rules, **kw):
    return ext(keyed("rw", "/rw/", upstream.url("/base/"), **kw), {"url_rewrites": rules})


def test_url_rewrite_groups_listen_path_and_query(upstream, make_gateway, rc):
    rules = [
        {"path": "/old/{id}", "method": "GET", "match_pattern": "/rw/old/(\\d+)(\\?.*)?",
         "rewrite_to": "/rw/echo/new/$1$2"},
        {"path": "/flat/{id}", "method": "GET", "match_pattern": "flat/([a-z]+)",
         "rewrite_to": "/echo/flat?item=$1&who=$tyk_meta.name"},
        {"path": "/nomatch", "method": "GET", "match_pattern": "^/will-not-match",
         "rewrite_to": "/echo/never"},
        {"path": "/post-only", "method": "POST", "match_pattern": "post-only",
         "rewrite_to": "/echo/posted"},
    ]
    g = make_gateway(conf=conf(), apis=[rewrite_api(upstream, rules)])
    tok = key_with(rc, ["rw"], meta_data={"name": "Ann & Bob"})
    # the listen path in the new path is stripped as the original's would be
    e = echo(get(g, "/rw/old/42?x=1", tok))
    assert (e["path"], e["query"]) == ("/base/echo/new/42", "x=1")
    # a new path without the listen path, a new query, variables query-escaped
    e = echo(get(g, "/rw/flat/abc?dropped=1", tok))
    assert (e["path"], e["query"]) == ("/base/echo/flat", "item=abc&who=Ann+%26+Bob")
    # match_pattern not matching: no rewrite; another method: no rewrite
    assert echo(get(g, "/rw/echo/nomatch", tok))["path"] == "/base/echo/nomatch"
    assert get(g, "/rw/post-only", tok).status == 200  # GET: not rewritten, plain upstream answer
    assert echo(get(g, "/rw/post-only", tok, method="POST"))["path"] == "/base/echo/posted"


def test_url_rewrite_to_another_host(upstream, make_gateway, rc):
    """An absolute rewrite_to names another host: the request goes there,
    path and query as written, Host that host's (Tyk's RetainHost)."""
    port = int(upstream.url("/").split(":")[2].split("/")[0])
    rules = [{"path": "/away/{x}", "method": "GET", "match_pattern": "/rw/away/(\\w+)",
              "rewrite_to": "http://localhost:%d/echo/elsewhere?via=$1&t=$tyk_meta.t" % port}]
    g = make_gateway(conf=conf(), apis=[rewrite_api(upstream, rules)])
    tok = key_with(rc, ["rw"], meta_data={"t": "a b"})
    for _ in range(2):  # the second on a kept connection of that host's pool
        e = echo(get(g, "/rw/away/abc", tok))
        assert (e["path"], e["query"]) == ("/echo/elsewhere", "via=abc&t=a+b")
        assert dict((k.lower(), v) for k, v in e["headers"])["host"] == "localhost:%d" % port
    assert echo(get(g, "/rw/echo/stay", tok))["path"] == "/base/echo/stay"


def test_url_rewrite_triggers(upstream, make_gateway, rc):
    rules = [{
        "path": "/route", "method": "GET", "match_pattern": "/route",
        "rewrite_to": "/echo/default",
        "triggers": [
            {"on": "any", "options": {"header_matches": {"x-beta": {"match_rx": "^yes-(\\w+)$"}}},
             "rewrite_to": "/echo/beta/$tyk_context.trigger-0-X-Beta-0-0"},
            {"on": "all", "options": {"query_val_matches": {"plan": {"match_rx": "^pro$"}},
                                      "session_meta_matches": {"tier": {"match_rx": "gold"}}},
             "rewrite_to": "/echo/pro-gold"},
            {"on": "any", "options": {"path_part_matches": {"pp": {"match_rx": "^route$"}},
                                      "query_val_matches": {"never": {"match_rx": "x"}}},
             "rewrite_to": "/echo/by-part"},
        ]}, {
        "path": "/rev", "method": "GET", "match_pattern": "/rev", "rewrite_to": "/echo/rev-default",
        "triggers": [{"on": "any", "options": {"header_matches": {"X-Keep": {"match_rx": "^keep$",
                                                                               "reverse": True}}},
                      "rewrite_to": "/echo/not-keep"}]}]
    g = make_gateway(conf=conf(), apis=[rewrite_api(upstream, rules)])
    gold = key_with(rc, ["rw"], meta_data={"tier": "gold"})
    silver = key_with(rc, ["rw"], meta_data={"tier": "silver"})
    # the first "any" trigger that fires wins; its capture is a context variable
    r = get(g, "/rw/route", gold, headers=[("X-Beta", "yes-canary")])
    assert echo(r)["path"] == "/base/echo/beta/canary"
    # "all": the query and the session meta must both match; then a later
    # "any" trigger (a path part) still replaces it
    assert echo(get(g, "/rw/route?plan=pro", gold))["path"] == "/base/echo/by-part"
    # reverse: fires for a value that does not match; an absent header is
    # not looked at (Tyk checks only the values a request has)
    assert echo(get(g, "/rw/rev", gold, headers=[("X-Keep", "drop")]))["path"] == \
        "/base/echo/not-keep"
    assert echo(get(g, "/rw/rev", gold, headers=[("X-Keep", "keep")]))["path"] == \
        "/base/echo/rev-default"
    assert echo(get(g, "/rw/rev", gold))["path"] == "/base/echo/rev-default"
    assert echo(get(g, "/rw/route?plan=pro", silver))["path"] == "/base/echo/by-part"


def test_url_rewrite_all_trigger_alone(upstream, make_gateway, rc):
    rules = [{"path": "/r", "method": "GET", "match_pattern": "^/rw/r(\\?|$)", "rewrite_to": "/echo/default",
              "triggers": [{"on": "all",
                            "options": {"query_val_matches": {"plan": {"match_rx": "^pro$"}},
                                        "session_meta_matches": {"tier": {"match_rx": "gold"}}},
                            "rewrite_to": "/echo/pro-gold"}]}]
    g = make_gateway(conf=conf(), apis=[rewrite_api(upstream, rules)])
    gold = key_with(rc, ["rw"], meta_data={"tier": "gold"})
    silver = key_with(rc, ["rw"], meta_data={"tier": "silver"})
    assert echo(get(g, "/rw/r?plan=pro", gold))["path"] == "/base/echo/pro-gold"
    assert echo(get(g, "/rw/r?plan=pro", silver))["path"] == "/base/echo/default"
    assert echo(get(g, "/rw/r?plan=free", gold))["path"] == "/base/echo/default"


def test_url_rewrite_payload_trigger(upstream, make_gateway, rc):
    """payload_matches (checkPayload): the request body, read whole after auth;
    every match is context data, the first also as trigger-<n>-payload."""
    rules = [{"path": "/orders", "method": "POST", "match_pattern": "/orders", "rewrite_to": "/echo/orders",
              "triggers": [
                  {"on": "any", "options": {"payload_matches": {"match_rx": "\"sku\":\"([A-Z]+)-(\\d+)\""}},
                   "rewrite_to": "/echo/sku/$tyk_context.trigger-0-payload-0-0/$tyk_context.trigger-0-payload-1-1"},
                  {"on": "all", "options": {"payload_matches": {"match_rx": "urgent", "reverse": True},
                                            "header_matches": {"X-Shop": {"match_rx": "^eu$"}}},
                   "rewrite_to": "/echo/eu-normal"}]}]
    g = make_gateway(conf=conf(), apis=[rewrite_api(upstream, rules)])
    tok = key_with(rc, ["rw"])

    def post(body, headers=()):
        r = g.request("POST", "/rw/orders", [("Authorization", tok), ("Content-Type", "application/json")]
                      + list(headers), body=body)
        return echo(r)

    e = post(b'{"items":[{"sku":"AB-1"},{"sku":"CD-22"}]}')
    assert e["path"] == "/base/echo/sku/AB/22"
    assert e["body_len"] == len(b'{"items":[{"sku":"AB-1"},{"sku":"CD-22"}]}')  # still whole
    # reverse on the body and a header, both needed ("all")
    assert post(b'{"note":"none"}', [("X-Shop", "eu")])["path"] == "/base/echo/eu-normal"
    assert post(b'{"note":"urgent"}', [("X-Shop", "eu")])["path"] == "/base/echo/orders"
    assert post(b'{"note":"none"}', [("X-Shop", "us")])["path"] == "/base/echo/orders"
    # chunked bodies are read whole too
    r = g.request("POST", "/rw/orders", [("Authorization", tok), ("Transfer-Encoding", "chunked")],
                  body=chunked_body(b'{"sku":"ZZ-9"}', chunk=5))
    assert echo(r)["path"] == "/base/echo/sku/ZZ/"


def test_internal_loops(upstream, make_gateway, rc):
    """tyk:// rewrites (DummyProxyHandler): into another API's whole chain by
    api_id or looping name, or this API's ("self"); the client's query goes
    along, ?method= changes the method, loop_limit bounds the depth; an
    internal API has no public route."""
    rules = [
        {"path": "/to-b", "method": "GET", "match_pattern": "/to-b", "rewrite_to": "tyk://api-b/echo/from-a"},
        {"path": "/by-name", "method": "GET", "match_pattern": "by-name",
         "rewrite_to": "tyk://backend-service/echo/named?method=POST"},
        {"path": "/self", "method": "GET", "match_pattern": "^/la/self", "rewrite_to": "tyk://self/echo/looped"},
        {"path": "/deep", "method": "GET", "match_pattern": "deep", "rewrite_to": "tyk://self/deep?loop_limit=2"},
        {"path": "/nowhere", "method": "GET", "match_pattern": "nowhere", "rewrite_to": "tyk://no-such-api/x"}]
    a = ext(api_def("api-a", "/la/", upstream.url("/a/")), {"url_rewrites": rules})
    b = ext(api_def("api-b", "/lb/", upstream.url("/b/")),
            {"internal": [{"path": "/echo/from-a", "method": "GET"}]}, global_headers={"X-Via": "b"})
    b["name"] = "Backend  Service #internal"
    b["internal"] = True
    g = make_gateway(conf=conf(), apis=[a, b])
    e = echo(g.get("/la/to-b?x=1"))
    assert (e["path"], e["query"], e["method"]) == ("/b/echo/from-a", "x=1", "GET")
    assert [v for k, v in e["headers"] if k.lower() == "x-via"] == ["b"]  # b's own middleware ran
    e = echo(g.get("/la/by-name"))
    assert (e["path"], e["method"]) == ("/b/echo/named", "POST")
    assert echo(g.get("/la/self"))["path"] == "/a/echo/looped"
    r = g.get("/la/deep")
    assert r.status == 500
    assert r.json() == {"error": "Loop level too deep. Found more than 2 loops in single request"}
    r = g.get("/la/nowhere")
    # Tyk's error template JS-escapes the message: "Can\'t", not JSON
    assert r.status == 500 and b'"error": "Can\\\'t detect loop target"' in r.body, r.body
    # the internal API answers no client directly (and its internal endpoint
    # above only loops)
    assert g.get("/lb/echo").status == 404
    assert g.get("/api-b/echo").status == 404


def test_internal_loops_count_limits_once_unless_asked(upstream, make_gateway, rc):
    rules = [{"path": "/once", "method": "GET", "match_pattern": "once", "rewrite_to": "tyk://kb/echo/x"},
             {"path": "/twice", "method": "GET", "match_pattern": "twice",
              "rewrite_to": "tyk://kb/echo/y?check_limits=true"}]
    ka = ext(keyed("ka", "/ka/", upstream.url("/")), {"url_rewrites": rules})
    kb = keyed("kb", "/kb/", upstream.url("/")) | {"internal": True}
    g = make_gateway(conf=conf(), apis=[ka, kb])
    tok = key_with(rc, ["ka", "kb"], quota_max=10, quota_remaining=10, quota_renewal_rate=3600)
    r = get(g, "/ka/once", tok)
    assert echo(r)["path"] == "/echo/x" and r.header("X-RateLimit-Remaining") == "9"
    r = get(g, "/ka/twice", tok)
    assert echo(r)["path"] == "/echo/y" and r.header("X-RateLimit-Remaining") == "7"
    # the target's auth runs too: a key without access to it is refused there
    only_a = key_with(rc, ["ka"])
    assert get(g, "/ka/once", only_a).status == 403


def test_batch_requests(upstream, make_gateway, rc):
    """enable_batch_request_support: POST <listen path>/tyk/batch/ runs each
    request through the gateway (auth included) and answers their replies
    as Tyk's BatchReplyUnit list."""
    d = keyed("bt", "/bt/", upstream.url("/")) | {"enable_batch_request_support": True}
    g = make_gateway(conf=conf(), apis=[d])
    tok = key_with(rc, ["bt"])
    batch = {"requests": [
        {"method": "GET", "relative_url": "echo/one?x=1", "headers": {"authorization": tok, "x-b": "1"}},
        {"method": "POST", "relative_url": "echo/two", "body": "hello",
         "headers": {"Authorization": tok}},
        {"method": "GET", "relative_url": "echo/three"}],  # no key: refused by the API
        "suppress_parallel_execution": True}
    r = g.request("POST", "/bt/tyk/batch/", [("Content-Type", "application/json")],
                  body=json.dumps(batch).encode())
    assert r.status == 200 and r.header("Content-Type") == "application/json"
    got = r.json()
    assert [u["relative_url"] for u in got] == ["echo/one?x=1", "echo/two", "echo/three"]
    assert [u["code"] for u in got] == [200, 200, 401]
    one = json.loads(got[0]["body"])
    assert (one["path"], one["query"], one["method"]) == ("/echo/one", "x=1", "GET")
    assert ["X-B", "1"] in one["headers"]
    assert json.loads(got[1]["body"])["body_len"] == 5
    assert got[0]["headers"]["Content-Type"] == ["application/json"]
    assert "Transfer-Encoding" not in got[0]["headers"]
    # in parallel: every reply, in the order they finished
    batch["suppress_parallel_execution"] = False
    got = g.request("POST", "/bt/tyk/batch/", body=json.dumps(batch).encode()).json()
    assert sorted(u["code"] for u in got) == [200, 200, 401]
    # not POST: an empty 200; not the structure: 400
    r = g.request("GET", "/bt/tyk/batch/")
    assert r.status == 200 and r.body == b""
    r = g.request("POST", "/bt/tyk/batch/", body=b'{"requests": {}}')
    assert r.status == 400 and r.json() == {"status": "error", "message": "Batch request malformed"}
    r = g.request("POST", "/bt/tyk/batch/", body=b'{"requests": [{"method": "G T"}]}')
    assert r.status == 400
    # an API without the setting has no such endpoint: it is an ordinary path
    d2 = keyed("nb", "/nb/", upstream.url("/"))
    g2 = make_gateway(conf=conf(), apis=[d2])
    assert g2.request("POST", "/nb/tyk/batch/", body=b"{}").status == 401


def test_rules_see_the_path_the_client_sent(upstream, make_gateway, rc):
    """Path lists and auth run on the original path; the rewrite, the
    method change and the header transforms only reach the upstream."""
    d = ext(keyed("rw", "/rw/", upstream.url("/")), {
        "black_list": [{"path": "/echo/secret", "method": "GET"}],
        "url_rewrites": [{"path": "/public", "method": "GET", "match_pattern": "public",
                          "rewrite_to": "/echo/secret"}],
        "method_transforms": [{"path": "/public", "method": "GET", "to_method": "DELETE"}],
        "internal": [{"path": "/echo/internal", "method": "GET"}]})
    g = make_gateway(conf=conf(), apis=[d])
    tok = key_with(rc, ["rw"])
    e = echo(get(g, "/rw/public", tok))
    assert (e["path"], e["method"]) == ("/echo/secret", "DELETE")
    assert_denied(get(g, "/rw/echo/secret", tok), 403, "Requested endpoint is forbidden")
    # internal endpoints: only an internal loop may call them, never a client
    assert_denied(get(g, "/rw/echo/internal", tok), 403, "Requested endpoint is forbidden")
    assert get(g, "/rw/echo/internal", tok, method="POST").status == 200
    # auth still comes first
    assert get(g, "/rw/public", "nope").status == 403


# ---- validate_json ------------------------------------------------------------------------

SCHEMA = {"type": "object", "required": ["name", "age"],
          "properties": {"name": {"type": "string", "minLength": 2},
                         "age": {"type": "integer", "minimum": 18}}}


def test_validate_json(upstream, make_gateway, rc):
    import base64
    import hashlib
    d = ext(keyed("vj", "/vj/", upstream.url("/")), {"validate_json": [
        {"path": "/echo/people", "method": "POST", "schema": SCHEMA},
        {"path": "/echo/strict", "method": "PUT", "error_response_code": 400,
         "schema_b64": base64.b64encode(json.dumps(SCHEMA).encode()).decode()},
        {"path": "/echo/none", "method": "POST"}]})
    g = make_gateway(conf=conf(), apis=[d])
    tok = key_with(rc, ["vj"])
    auth = [("Authorization", tok), ("Content-Type", "application/json")]
    good = json.dumps({"name": "Ann", "age": 30}).encode()
    e = echo(g.request("POST", "/vj/echo/people", auth, good))
    assert (e["body_len"], e["body_sha256"]) == (len(good), hashlib.sha256(good).hexdigest())
    assert_denied(g.request("POST", "/vj/echo/people", auth, b'{"name": "A", "age": 12}'), 422,
                  "name: String length must be greater than or equal to 2; "
                  "age: Must be greater than or equal to 18")
    assert_denied(g.request("POST", "/vj/echo/people", auth, b'{"age": 40}'), 422,
                  "(root): name is required")
    assert_denied(g.request("PUT", "/vj/echo/strict", auth, b'[1]'), 400,
                  "(root): Invalid type. Expected: object, given: array")
    r = g.request("POST", "/vj/echo/people", auth, b"xyz")
    # Tyk's error template escapes quotes as html/template does in a JS string
    assert (r.status, r.body) == (400, tyk_error(
        "JSON parsing error: invalid character \\'x\\' looking for beginning of value")), r
    assert_denied(g.request("POST", "/vj/echo/none", auth, b"{}"), 500,
                  "no schemas to validate against")
    # a chunked body is read whole, validated, and sent on with its length
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(good), good)
    r = g.request("POST", "/vj/echo/people", auth + [("Transfer-Encoding", "chunked")], chunked)
    e = echo(r)
    assert e["body_len"] == len(good)
    assert dict((k.lower(), v) for k, v in e["headers"])["content-length"] == str(len(good))
    # other paths and methods stream as before; the key is checked first
    assert echo(g.request("PUT", "/vj/echo/people", auth, b"anything"))["body_len"] == 8
    assert g.request("POST", "/vj/echo/people", [("Authorization", "nope")], good).status == 403


# ---- body transforms ------------------------------------------------------------------------

def blob(text):
    import base64
    return base64.b64encode(text.encode()).decode()


def transform(path, method, template, **td):
    d = {"input_type": "json", "template_mode": "blob", "template_source": blob(template)}
    d.update(td)
    if d["template_mode"] == "file":
        d["template_source"] = template  # the template's path
    return {"path": path, "method": method, "template_data": d}


def test_request_body_transforms(upstream, make_gateway, rc, tmp_path):
    import hashlib
    tfile = tmp_path / "people.tmpl"
    tfile.write_text('{"count": {{len .array}}, "names": [{{range $i, $p := .array}}'
                     '{{if $i}}, {{end}}"{{$p.name | upper}}"{{end}}]}')
    d = ext(keyed("tf", "/tf/", upstream.url("/"), enable_context_vars=True), {"transform": [
        transform("/echo/obj", "POST",
                  '{"user": "{{.user.first}} {{.user.last}}", "tier": "{{._tyk_meta.tier}}", '
                  '"path": "{{._tyk_context.path}}", "n": {{.n}}, "q": "$tyk_meta.note"}',
                  enable_session=True),
        transform("/echo/list", "POST", str(tfile), template_mode="file"),
        transform("/echo/xml", "POST",
                  '{{range .order.item}}{{index . "-sku"}}={{index . "#text"}};{{end}}',
                  input_type="xml"),
        transform("/echo/empty", "GET", 'made from {{len .}} fields'),
        transform("/echo/toxml", "POST", '{{xmlMarshal .order}}')]})
    g = make_gateway(conf=conf(), apis=[d])
    tok = key_with(rc, ["tf"], meta_data={"tier": "gold", "note": "a&b"})
    auth = [("Authorization", tok), ("Content-Type", "application/json")]

    def sent(r):
        e = echo(r)
        return e["body_len"], e["body_sha256"]

    def want(text):
        return len(text.encode()), hashlib.sha256(text.encode()).hexdigest()

    body = json.dumps({"user": {"first": "Ann", "last": "Lee"}, "n": 1.5}).encode()
    assert sent(g.request("POST", "/tf/echo/obj", auth, body)) == want(
        '{"user": "Ann Lee", "tier": "gold", "path": "/tf/echo/obj", "n": 1.5, "q": "a%26b"}')
    body = json.dumps([{"name": "ann"}, {"name": "bo"}]).encode()
    assert sent(g.request("POST", "/tf/echo/list", auth, body)) == \
        want('{"count": 2, "names": ["ANN", "BO"]}')
    xml = b'<order><item sku="A1">2</item><item sku="B7">5</item></order>'
    assert sent(g.request("POST", "/tf/echo/xml", auth, xml)) == want("A1=2;B7=5;")
    # JSON to XML with Tyk's xmlMarshal (mxj's layout: several keys go under <doc>)
    body = json.dumps({"order": {"-id": "7", "item": ["a", "b&c"], "qty": 2}}).encode()
    assert sent(g.request("POST", "/tf/echo/toxml", auth, body)) == want(
        '<doc id="7"><item>a</item><item>b&amp;c</item><qty>2</qty></doc>')
    # no body at all: the template sees {} (plus the context)
    assert sent(g.request("GET", "/tf/echo/empty", [("Authorization", tok)])) == \
        want("made from 1 fields")
    # a body that is not JSON goes on unchanged (Tyk logs the failure)
    assert sent(g.request("POST", "/tf/echo/obj", auth, b"not json")) == want("not json")
    g.wait_log("body transform .*the body is not JSON")


def test_response_body_transforms(upstream, make_gateway, rc):
    """transform_response: the upstream's body (Content-Length or chunked,
    decoded) through the template, sent with its new length; the request's
    method and path choose the entry; other responses stream as before."""
    d = ext(keyed("rt", "/rt/", upstream.url("/")), {"transform_response": [
        transform("/echo/short", "GET", '{"m": "{{.method}}", "tier": "{{._tyk_meta.tier}}"}',
                  enable_session=True),
        transform("/chunked/{n}", "GET", "n={{len .}}"),
        transform("/headers/{n}", "GET", "{{.x}}")]})
    g = make_gateway(conf=conf(), apis=[d])
    tok = key_with(rc, ["rt"], meta_data={"tier": "gold"})
    r = get(g, "/rt/echo/short", tok)
    assert (r.status, r.body) == (200, b'{"m": "GET", "tier": "gold"}'), r
    assert r.header("Content-Length") == str(len(r.body))
    assert r.header("Content-Type") == "application/json"
    # a chunked body that is not JSON goes out unchanged, with a length
    r = get(g, "/rt/chunked/20000", tok)
    assert r.status == 200 and len(r.body) == 20000 and r.header("Transfer-Encoding") is None
    assert r.header("Content-Length") == "20000"
    g.wait_log("response body transform: the body is not JSON")
    # "ok" is not JSON either; another method does not match
    assert get(g, "/rt/headers/1", tok).body == b"ok"
    assert len(get(g, "/rt/echo/short", tok, method="POST").body) > 40  # the echo itself


# ---- refused at load ------------------------------------------------------------------------

@pytest.mark.parametrize("extended,info,where,what", [
    ({"transform_jq": [{"path": "/x", "method": "POST", "filter": "."}]}, {},
     "$.version_data.versions.Default.extended_paths.transform_jq[0]", "jq transforms"),
    ({"validate_json": [{"path": "/x", "method": "POST",
                         "schema": {"$ref": "http://example.com/schema.json"}}]}, {},
     "extended_paths.validate_json[0].schema", "$ref"),
    ({"transform_response": [{"path": "/x", "method": "GET", "template_data": {
        "input_type": "json", "template_mode": "blob", "template_source": "e3tjYWxsIC54fX0="}}]},
     {}, "extended_paths.transform_response[0].template_data.template_source", "call"),
    ({"transform": [{"path": "/x", "method": "POST", "template_data": {
        "input_type": "json", "template_mode": "blob",
        "template_source": "e3tkZWZpbmUgIngifX17e2VuZH19"}}]}, {},  # {{define "x"}}{{end}}
     "extended_paths.transform[0].template_data.template_source", "define"),
    ({"url_rewrites": [{"path": "/x", "method": "GET", "match_pattern": "x",
                        "rewrite_to": "ftp://other.example/x"}]}, {},
     "extended_paths.url_rewrites[0].rewrite_to", "http:// and https:// only"),
    ({"url_rewrites": [{"path": "/x", "method": "GET", "match_pattern": "(unclosed",
                        "rewrite_to": "/y"}]}, {},
     "extended_paths.url_rewrites[0].match_pattern", "(unclosed"),
    ({"url_rewrites": [{"path": "/x", "method": "GET", "match_pattern": "x", "rewrite_to": "/y",
                        "triggers": [{"on": "any", "options": {"payload_matches": {"match_rx": "(a"}},
                                      "rewrite_to": "/z"}]}]}, {},
     "url_rewrites[0].triggers[0].options.payload_matches.match_rx", "(a"),
    ({"size_limits": [{"path": "/x", "method": "POST", "size_limit": "big"}]}, {},
     "extended_paths.size_limits[0].size_limit", "number"),
])
def test_unsupported_entries_are_refused_at_load(make_gateway, upstream, extended, info, where,
                                                 what):
    d = ext(api_def("bad", "/bad/", upstream.url("/")), extended)
    top = {k: v for k, v in info.items()}
    d.update(top)
    g = make_gateway(conf=conf(), apis=[d], start=False)
    r = run_turnpike(["-t", "--conf", str(g.conf_path)])
    assert r.returncode == 1, r.stderr
    assert where in r.stderr and what in r.stderr, r.stderr


def test_disabled_and_empty_unsupported_entries_load(make_gateway, upstream):
    d = ext(api_def("ok", "/ok/", upstream.url("/")),
            {"transform": [{"path": "/x", "method": "POST", "disabled": True}], "cache": [],
             "validate_json": []})
    d["cache_options"] = {"enable_cache": False, "cache_timeout": 60}
    g = make_gateway(conf=conf(), apis=[d])
    assert g.get("/ok/echo").status == 200


def test_loader_parity_missing_api_id_and_env_target(make_gateway, upstream):
    """Tyk loads a definition without an api_id (served under an id made
    from its file name, logged) and resolves an env:// target from
    TYK_SECRET_<NAME>."""
    d = api_def("x", "/noid/", "env://orders_upstream")
    del d["api_id"]
    g = make_gateway(conf=conf(), env={"TYK_SECRET_ORDERS_UPSTREAM": upstream.url("/")},
                     start=False)
    g.add_api(d, filename="orders.json")
    g.start()
    assert echo(g.get("/noid/echo/1"))["path"] == "/echo/1"
    m = g.wait_log(r'no api_id: the API is served as api_id \\"([0-9a-f]{32})')
    assert g.get("/%s/echo/2" % m.group(1)).status == 200  # reachable by its id too
