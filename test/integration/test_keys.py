"""Token auth and keys (issue 5), as a Tyk user meets them: keys made
through /tyk/keys and used through the proxy, every error Tyk answers for
token auth (TYK-COMPAT 3.2-3.4, 4.6, 11), sessions Tyk wrote into Redis in
either serialisation and under every hash function (4.1-4.5), keys written
by Turnpike read back from Redis in Tyk's layout (4.4), and each /tyk/keys
endpoint with its exact statuses and bodies (1.4) and notifications (7.1).

Every gateway shares the session Redis, so each test uses keys, orgs and
API IDs of its own."""
import base64
import datetime
import hashlib
import json
import re
import shutil
import time
import uuid

import pytest

from conftest import DATA, HOST, api_def, free_port, redis_py, session_redis, wait_for
from tykkeys import generate_token, hash_hex, hash_key, tyk_session

if redis_py is None:  # make test installs it; a missing module must fail, not skip
    raise ImportError("python3-redis is required (apt-get install python3-redis)")

SECRET = "keys-test-secret"
NODE_SECRET = "keys-node-secret"
ADMIN = [("X-Tyk-Authorization", SECRET)]
SEED = DATA / "seed"
SEED_SECRET = "your-secret-key-change-me"


def uid():
    return uuid.uuid4().hex


def new_org():
    """A fresh 24-hex org ID, as Tyk's org IDs are."""
    return uuid.uuid4().hex[:24]


def tyk_error(msg):
    """templates/error.json as Tyk renders it (TYK-COMPAT 11.1)."""
    return ('{\n    "error": "%s"\n}' % msg).encode()


def assert_error(r, status, msg):
    assert r.status == status, r
    assert r.body == tyk_error(msg), r
    assert r.header("Content-Type") == "application/json", r
    assert r.header("X-Generator") == "tyk.io", r


def assert_status_msg(r, status, msg):
    """The REST API's {"status":"error","message":...} envelope (1.2)."""
    assert r.status == status, r
    assert r.json() == {"status": "error", "message": msg}, r
    assert r.header("Content-Type") == "application/json", r


def rc():
    return session_redis().client()


def token_api(api_id, listen_path, target, org, **extra):
    """A classic token-auth API, not versioned."""
    d = api_def(api_id, listen_path, target, keyless=False)
    d["org_id"] = org
    d["auth"] = {"auth_header_name": "Authorization"}
    d["version_data"] = {"not_versioned": True, "versions": {"Default": {"name": "Default"}}}
    d.update(extra)
    return d


def access(*apis, versions=("Default",), **fields):
    out = {}
    for a in apis:
        out[a] = {"api_id": a, "api_name": a, "versions": list(versions)}
        out[a].update(fields)
    return out


def admin(g, method, path, body=None, secret=SECRET):
    headers = [("X-Tyk-Authorization", secret)]
    if body is not None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        headers.append(("Content-Type", "application/json"))
    return g.request(method, path, headers, body)


def create_key(g, org, rights, path="/tyk/keys", secret=SECRET, **fields):
    """POST a session; returns the response JSON (key, key_hash, ...)."""
    body = {"org_id": org, "rate": 0, "per": 0, "quota_max": -1, "access_rights": rights}
    body.update(fields)
    r = admin(g, "POST", path, body, secret=secret)
    assert r.status == 200, r
    return r.json()


def use(g, path, key=None, headers=(), name="Authorization"):
    h = list(headers)
    if key is not None:
        h.append((name, key))
    return g.request("GET", path, h)


def put_session(token, session, hash_keys=True, ttl=None):
    r = rc()
    try:
        r.set("apikey-" + hash_key(token, hash_keys), json.dumps(session), ex=ttl)
    finally:
        r.close()


def redis_session(token, hash_keys=True):
    r = rc()
    try:
        name = "apikey-" + hash_key(token, hash_keys)
        raw = r.get(name)
        return (json.loads(raw) if raw is not None else None), r.ttl(name)
    finally:
        r.close()


# ---- 1. the seed's Example API with a key made through the REST API --------------------

def seed_keys_gateway(make_gateway, tmp_path, upstream):
    """The seed's tyk.conf unchanged and its Example API with only the
    target replaced; the Deployment's environment, but Redis is the test's
    (the seed's Redis host does not resolve here)."""
    apps = tmp_path / "seed-apps"
    apps.mkdir()
    d = json.loads((SEED / "api-definition.json").read_text())
    d["proxy"]["target_url"] = upstream.url("/")
    (apps / "api-definition.json").write_text(json.dumps(d))
    port = free_port()
    g = make_gateway(start=False, env={
        "TYK_GW_STORAGE_HOST": HOST, "TYK_GW_STORAGE_PORT": str(session_redis().port),
        "TYK_GW_STORAGE_DATABASE": "0", "TYK_GW_APPPATH": str(apps),
        "TYK_GW_LISTENADDRESS": HOST, "TYK_GW_LISTENPORT": str(port), "TYK_GW_TURNPIKE_WORKERS": "1"})
    shutil.copy(SEED / "tyk.conf", g.conf_path)
    g.conf = json.loads((SEED / "tyk.conf").read_text())
    g.conf["turnpike"] = {"workers": 1}
    g.port = port
    return g.start()


def test_seed_example_api_with_a_created_key(make_gateway, tmp_path, upstream):
    g = seed_keys_gateway(make_gateway, tmp_path, upstream)
    assert_error(use(g, "/example/echo"), 401, "Authorization field missing")

    r = admin(g, "POST", "/tyk/keys", {"rate": 0, "per": 0, "quota_max": -1,
                                        "access_rights": access("example-api-id")}, secret=SEED_SECRET)
    assert r.status == 200, r
    out = r.json()
    key = out["key"]
    # hash_keys true, hash_key_function "": org "" + 32 hex, murmur32
    assert len(key) == 32 and int(key, 16) >= 0
    assert out == {"key": key, "status": "ok", "action": "added", "key_hash": hash_key(key)}

    r = use(g, "/example/echo?a=1", key)
    assert r.status == 200, r
    assert (r.json()["path"], r.json()["query"]) == ("/echo", "a=1"), r
    # the key reaches the upstream as sent (strip_auth_data is off)
    assert ["Authorization", key] in r.json()["headers"]
    r = use(g, "/example/echo", "Bearer " + key)
    assert r.status == 200, r
    r = use(g, "/example/echo", "bearer " + key)
    assert r.status == 200, r
    assert_error(use(g, "/example/echo", key[:-1] + ("0" if key[-1] != "0" else "1")), 403,
                 "Access to this API has been disallowed")

    sess, ttl = redis_session(key)
    assert sess["access_rights"]["example-api-id"]["api_id"] == "example-api-id"
    # global_session_lifetime 100 without force_global_session_lifetime does nothing (4.4)
    assert ttl == -1


# ---- 2. errors of token auth ------------------------------------------------------------

@pytest.fixture
def authgw(make_gateway, upstream):
    org = new_org()
    apis = [
        token_api("k-main", "/main/", upstream.url("/"), org),
        token_api("k-other", "/other/", upstream.url("/"), org),
        dict(api_def("k-open", "/open/", upstream.url("/"), keyless=True), org_id=org),
    ]
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True}, apis=apis, workers=2)
    return g, org


def test_token_auth_errors(authgw):
    g, org = authgw
    key = create_key(g, org, access("k-main"))["key"]
    assert use(g, "/main/echo", key).status == 200

    assert_error(use(g, "/main/echo"), 401, "Authorization field missing")
    assert_error(use(g, "/main/echo", ""), 401, "Authorization field missing")
    # "Bearer " loses its trailing space as a header value: "Bearer" is then the key
    assert_error(use(g, "/main/echo", "Bearer "), 403, "Access to this API has been disallowed")
    assert_error(use(g, "/main/echo", org + uid()), 403, "Access to this API has been disallowed")
    # shorter than min_token_length (3)
    assert_error(use(g, "/main/echo", "ab"), 403, "Access to this API has been disallowed")
    # a valid key, but not for this API
    assert_error(use(g, "/other/echo", key), 403, "Access to this API has been disallowed")
    # a keyless API needs no key
    r = use(g, "/open/echo")
    assert r.status == 200 and r.json()["path"] == "/echo"


def test_min_token_length_from_config(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True, "min_token_length": 40},
                     apis=[token_api("k-min", "/min/", upstream.url("/"), org)], workers=1)
    short = org + uid()[:15]  # 39 characters
    put_session(short, tyk_session(["k-min"], org_id=org))
    assert_error(use(g, "/min/echo", short), 403, "Access to this API has been disallowed")
    ok = org + uid()[:16]  # 40
    put_session(ok, tyk_session(["k-min"], org_id=org))
    assert use(g, "/min/echo", ok).status == 200
    # custom key IDs on the REST API obey the same minimum
    r = admin(g, "POST", "/tyk/keys/" + uid()[:20], {"org_id": org, "access_rights": access("k-min")})
    assert r.status == 400 and r.json()["message"].startswith("custom key ID length"), r


def test_expired_and_inactive_keys(authgw):
    g, org = authgw
    expired = org + uid()
    put_session(expired, tyk_session(["k-main"], org_id=org, expires=int(time.time()) - 60))
    assert_error(use(g, "/main/echo", expired), 401, "Key has expired, please renew")

    future = org + uid()
    put_session(future, tyk_session(["k-main"], org_id=org, expires=int(time.time()) + 3600))
    assert use(g, "/main/echo", future).status == 200

    inactive = create_key(g, org, access("k-main"), is_inactive=True)["key"]
    assert_error(use(g, "/main/echo", inactive), 403, "Key is inactive, please renew")


def test_allowed_urls_and_methods(authgw):
    g, org = authgw
    rights = access("k-main", allowed_urls=[{"url": "/main/echo/allowed", "methods": ["GET"]}])
    key = create_key(g, org, rights)["key"]
    r = use(g, "/main/echo/allowed", key)
    assert r.status == 200, r
    assert_error(use(g, "/main/echo/other", key), 403, "Access to this resource has been disallowed")
    r = g.request("POST", "/main/echo/allowed", [("Authorization", key)], b"x")
    assert_error(r, 403, "Access to this resource has been disallowed")
    # methods are compared exactly
    rights = access("k-main", allowed_urls=[{"url": "/main/echo/allowed", "methods": ["get"]}])
    key2 = create_key(g, org, rights)["key"]
    assert_error(use(g, "/main/echo/allowed", key2), 403, "Access to this resource has been disallowed")


def versioned_api(api_id, listen_path, target, org, location, **vd):
    d = token_api(api_id, listen_path, target, org)
    d["definition"] = {"location": location, "key": "x-api-version" if location == "header" else "version"}
    d["version_data"] = dict({"not_versioned": False, "default_version": "", "versions": {
        "v1": {"name": "v1"},
        "v2": {"name": "v2", "expires": "2001-01-01 00:00"},
        "v3": {"name": "v3"},
    }}, **vd)
    return d


def test_version_errors(make_gateway, upstream):
    org = new_org()
    apis = [versioned_api("k-vh", "/vh/", upstream.url("/"), org, "header"),
            versioned_api("k-vp", "/vp/", upstream.url("/"), org, "url-param"),
            versioned_api("k-vu", "/vu/", upstream.url("/"), org, "url"),
            versioned_api("k-vd", "/vd/", upstream.url("/"), org, "header", default_version="v1")]
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True}, apis=apis, workers=1)
    rights = {}
    for a in ("k-vh", "k-vp", "k-vu", "k-vd"):
        rights.update(access(a, versions=("v1", "v2")))
    key = create_key(g, org, rights)["key"]
    auth = [("Authorization", key)]

    def hdr(v):
        return auth + [("x-api-version", v)]

    assert use(g, "/vh/echo", headers=hdr("v1")).status == 200
    assert_error(use(g, "/vh/echo", headers=auth), 403, "Version information not found")
    assert_error(use(g, "/vh/echo", headers=hdr("v9")), 403, "This API version does not seem to exist")
    assert_error(use(g, "/vh/echo", headers=hdr("v2")), 403,
                 "Api Version has expired, please check documentation or contact administrator")
    # v3 exists but the key's access_rights only list v1 and v2
    assert_error(use(g, "/vh/echo", headers=hdr("v3")), 403, "Access to this API has been disallowed")
    # the version is checked before the key: no key, unknown version
    assert_error(use(g, "/vh/echo", headers=[("x-api-version", "v9")]), 403,
                 "This API version does not seem to exist")

    assert use(g, "/vp/echo?version=v1", key).status == 200
    assert_error(use(g, "/vp/echo", key), 403, "Version information not found")
    assert_error(use(g, "/vp/echo?version=v9", key), 403, "This API version does not seem to exist")
    assert_error(use(g, "/vp/echo?version=v3", key), 403, "Access to this API has been disallowed")

    assert use(g, "/vu/v1/echo", key).status == 200
    assert_error(use(g, "/vu/v9/echo", key), 403, "This API version does not seem to exist")
    assert_error(use(g, "/vu/v2/echo", key), 403,
                 "Api Version has expired, please check documentation or contact administrator")
    assert_error(use(g, "/vu/v3/echo", key), 403, "Access to this API has been disallowed")

    # default_version stands in for a missing one, and is what access rights see
    assert use(g, "/vd/echo", headers=auth).status == 200
    v3only = create_key(g, org, access("k-vd", versions=("v3",)))["key"]
    assert_error(use(g, "/vd/echo", v3only), 403, "Access to this API has been disallowed")
    assert use(g, "/vd/echo", headers=[("Authorization", v3only), ("x-api-version", "v3")]).status == 200


def test_key_locations(make_gateway, upstream):
    org = new_org()
    u = upstream.url("/")
    apis = [
        token_api("k-param", "/param/", u, org, auth={"auth_header_name": "Authorization",
                                                      "use_param": True, "param_name": "api_key"}),
        token_api("k-pdef", "/pdef/", u, org, auth={"auth_header_name": "X-Key", "use_param": True}),
        token_api("k-cookie", "/cookie/", u, org, auth={"auth_header_name": "Authorization",
                                                        "use_cookie": True, "cookie_name": "session"}),
        token_api("k-nohdr", "/nohdr/", u, org, auth={"auth_header_name": "Authorization",
                                                      "disable_header": True, "use_param": True}),
        # auth_configs.authToken wins over auth
        token_api("k-cfg", "/cfg/", u, org, auth={"auth_header_name": "X-Old"},
                  auth_configs={"authToken": {"auth_header_name": "X-New"}}),
    ]
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True}, apis=apis, workers=1)
    key = create_key(g, org, access("k-param", "k-pdef", "k-cookie", "k-nohdr", "k-cfg"))["key"]

    assert use(g, "/param/echo?api_key=" + key).status == 200
    assert use(g, "/param/echo", key).status == 200
    # a non-empty parameter overrides the header
    assert_error(use(g, "/param/echo?api_key=nope" + uid(), key), 403,
                 "Access to this API has been disallowed")
    assert_error(use(g, "/param/echo?Authorization=" + key), 401, "Authorization field missing")
    # param_name defaults to the header name
    assert use(g, "/pdef/echo?X-Key=" + key).status == 200

    assert use(g, "/cookie/echo", headers=[("Cookie", "a=b; session=%s; c=d" % key)]).status == 200
    assert_error(use(g, "/cookie/echo", headers=[("Cookie", "other=" + key)]), 401,
                 "Authorization field missing")

    assert_error(use(g, "/nohdr/echo", key), 401, "Authorization field missing")
    assert use(g, "/nohdr/echo?Authorization=" + key).status == 200

    assert use(g, "/cfg/echo", key, name="X-New").status == 200
    assert_error(use(g, "/cfg/echo", key, name="X-Old"), 401, "Authorization field missing")


# ---- 3. templates and override_messages -------------------------------------------------

def test_error_templates_xml_and_status_files(make_gateway, upstream, tmp_path):
    org = new_org()
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "error.json").write_text('{"message": "{{.Message}}", "code": {{.StatusCode}}}\n')
    (tdir / "error_401.json").write_text('{"unauthorised": "{{.Message}}"}')
    g = make_gateway(conf={"secret": SECRET, "template_path": str(tdir)},
                     apis=[token_api("k-tpl", "/tpl/", upstream.url("/"), org)], workers=1)
    r = use(g, "/tpl/echo")
    assert r.status == 401
    assert r.body == b'{"unauthorised": "Authorization field missing"}'
    assert r.header("Content-Type") == "application/json"
    assert r.header("X-Generator") == "tyk.io"
    r = use(g, "/tpl/echo", "unknown" + uid())
    assert r.status == 403
    assert r.json() == {"message": "Access to this API has been disallowed", "code": 403}

    # no error.xml in the directory: Tyk's own XML template
    for ct in ("application/xml", "text/xml", "application/soap+xml"):
        r = g.request("GET", "/tpl/echo", [("Content-Type", ct)])
        assert r.status == 401, r
        assert r.header("Content-Type") == ct
        assert r.body.endswith(b"<error>Authorization field missing</error>"), r
        assert r.body.startswith(b"<?xml"), r


def test_default_xml_error(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET},
                     apis=[token_api("k-xml", "/xml/", upstream.url("/"), org)], workers=1)
    r = g.request("GET", "/xml/echo", [("Content-Type", "text/xml; charset=utf-8"),
                                        ("Authorization", "missing" + uid())])
    assert r.status == 403
    assert r.header("Content-Type") == "text/xml"
    assert r.body.endswith(b"<error>Access to this API has been disallowed</error>"), r


def test_override_messages(make_gateway, upstream):
    org = new_org()
    over = {"auth.auth_field_missing": {"code": 418, "message": "Bring a key"},
            "auth.key_not_found": {"code": 401, "message": "No such key"}}
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True, "override_messages": over},
                     apis=[token_api("k-ovr", "/ovr/", upstream.url("/"), org),
                           token_api("k-ovr2", "/ovr2/", upstream.url("/"), org)], workers=1)
    assert_error(use(g, "/ovr/echo"), 418, "Bring a key")
    assert_error(use(g, "/ovr/echo", "unknown" + uid()), 401, "No such key")
    assert_error(use(g, "/ovr/echo", "ab"), 401, "No such key")
    # the access-rights check is not auth.key_not_found
    key = create_key(g, org, access("k-ovr"))["key"]
    assert use(g, "/ovr/echo", key).status == 200
    assert_error(use(g, "/ovr2/echo", key), 403, "Access to this API has been disallowed")


# ---- 4. sessions Tyk wrote into Redis ----------------------------------------------------

HASH_FUNCTIONS = ["", "murmur32", "murmur64", "murmur128", "sha256"]


@pytest.mark.parametrize("hash_keys,function", [(False, "")] + [(True, f) for f in HASH_FUNCTIONS])
def test_sessions_written_by_tyk_are_accepted(make_gateway, upstream, hash_keys, function):
    org = new_org()
    api = "k-tyk-%s-%s" % (int(hash_keys), function or "legacy")
    g = make_gateway(conf={"secret": SECRET, "hash_keys": hash_keys, "hash_key_function": function},
                     apis=[token_api(api, "/t/", upstream.url("/"), org)], workers=2)
    cases = []
    for full in (True, False):
        # the format this gateway's own generateToken makes
        cases.append(generate_token(org, uid(), function))
        # legacy org+id keys (hashed murmur32 whatever the function)
        cases.append(generate_token(org, uid(), ""))
        # base64-JSON keys of every algorithm (hashed by their "h")
        for alg in ("murmur32", "murmur64", "murmur128", "sha256"):
            cases.append(generate_token(org, uid(), alg))
        for token in cases[-6:]:
            put_session(token, tyk_session([api], full=full, org_id=org), hash_keys)
        for token in cases[-6:]:
            r = use(g, "/t/echo", token)
            assert r.status == 200, (full, token, r)
    if hash_keys:
        # where those keys are in Redis is where Tyk puts them: an unhashed copy is not found
        raw = org + uid()
        put_session(raw, tyk_session([api], org_id=org), hash_keys=False)
        assert_error(use(g, "/t/echo", raw), 403, "Access to this API has been disallowed")


def test_tyk_session_expiry_fields_both_forms(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True, "hash_key_function": "murmur64"},
                     apis=[token_api("k-forms", "/f/", upstream.url("/"), org)], workers=1)
    for full in (True, False):
        t = generate_token(org, uid(), "murmur64")
        put_session(t, tyk_session(["k-forms"], full=full, org_id=org, is_inactive=True))
        assert_error(use(g, "/f/echo", t), 403, "Key is inactive, please renew")
        t = generate_token(org, uid(), "murmur64")
        put_session(t, tyk_session(["k-forms"], full=full, org_id=org, expires=int(time.time()) - 5))
        assert_error(use(g, "/f/echo", t), 401, "Key has expired, please renew")
        t = generate_token(org, uid(), "murmur64")
        put_session(t, tyk_session(["k-other-api"], full=full, org_id=org))
        assert_error(use(g, "/f/echo", t), 403, "Access to this API has been disallowed")


def test_custom_keys_and_hash_function_fallback(make_gateway, upstream):
    org = new_org()
    apis = [token_api("k-fb", "/fb/", upstream.url("/"), org)]
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True, "hash_key_function": "murmur64"},
                     apis=apis, workers=1, name="before")
    custom = "custom-" + uid()[:12]
    out = create_key(g, org, access("k-fb"), path="/tyk/keys/" + custom)
    token = generate_token(org, custom, "murmur64")
    assert out["key"] == token
    assert out["key_hash"] == hash_hex("murmur64", token)
    # clients present the short custom ID (4.5)
    assert use(g, "/fb/echo", custom).status == 200
    assert use(g, "/fb/echo", token).status == 200
    g.stop()

    # switched to sha256: the custom ID no longer finds its session...
    g2 = make_gateway(conf={"secret": SECRET, "hash_keys": True, "hash_key_function": "sha256"},
                      apis=apis, workers=1, name="switched")
    assert_error(use(g2, "/fb/echo", custom), 403, "Access to this API has been disallowed")
    # ...the full token still carries its own algorithm
    assert use(g2, "/fb/echo", token).status == 200
    g2.stop()

    # ...unless the old function is a fallback
    g3 = make_gateway(conf={"secret": SECRET, "hash_keys": True, "hash_key_function": "sha256",
                            "hash_key_function_fallback": ["murmur64"]},
                      apis=apis, workers=1, name="fallback")
    assert use(g3, "/fb/echo", custom).status == 200


# ---- 5. keys Turnpike writes, read back as Tyk's format ---------------------------------

def test_created_key_in_redis_has_tyks_layout(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True, "hash_key_function": "murmur128"},
                     apis=[token_api("k-lay", "/lay/", upstream.url("/"), org)], workers=1)
    before = int(time.time())
    expires = before + 7200
    body = {"org_id": org, "rate": 12.5, "per": 60, "quota_max": 1000, "quota_renewal_rate": 3600,
            "expires": expires, "alias": "mine", "tags": ["t1", "t2"], "meta_data": {"team": "a"},
            "access_rights": access("k-lay", allowed_urls=[{"url": "/x", "methods": ["GET"]}])}
    r = admin(g, "POST", "/tyk/keys", body)
    assert r.status == 200, r
    out = r.json()
    key = out["key"]
    raw = json.loads(base64.b64decode(key))
    assert list(raw) == ["org", "id", "h"] and raw["org"] == org and raw["h"] == "murmur128"
    assert len(raw["id"]) == 32
    assert key == base64.b64encode(('{"org":"%s","id":"%s","h":"murmur128"}' % (org, raw["id"])).encode()).decode()
    assert out["key_hash"] == hash_key(key) == hash_hex("murmur128", key)

    sess, ttl = redis_session(key)
    assert sess is not None, "no apikey-%s in Redis" % hash_key(key)
    assert ttl == -1
    assert sess["org_id"] == org
    assert sess["rate"] == 12.5 and sess["per"] == 60
    assert sess["quota_max"] == 1000 and sess["quota_renewal_rate"] == 3600
    assert before + 3600 <= sess["quota_renews"] <= int(time.time()) + 3600
    assert sess["expires"] == expires
    assert sess["alias"] == "mine" and sess["tags"] == ["t1", "t2"] and sess["meta_data"] == {"team": "a"}
    ar = sess["access_rights"]["k-lay"]
    assert ar["api_id"] == "k-lay" and ar["versions"] == ["Default"]
    assert ar["allowed_urls"] == [{"url": "/x", "methods": ["GET"]}]
    # date_created is RFC 3339, now
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", sess["date_created"])
    assert m, sess["date_created"]
    dc = datetime.datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    assert abs(dc.timestamp() - before) <= 5, sess["date_created"]
    # the raw key is not a field
    assert key not in json.dumps(sess)


def ttl_gateway(make_gateway, upstream, org, conf=None, name=None):
    apis = [token_api("k-nolife", "/nolife/", upstream.url("/"), org),
            token_api("k-life", "/life/", upstream.url("/"), org, session_lifetime=300),
            token_api("k-resp", "/resp/", upstream.url("/"), org, session_lifetime=300,
                      session_lifetime_respects_key_expiration=True)]
    c = {"secret": SECRET, "hash_keys": True, "global_session_lifetime": 1000}
    c.update(conf or {})
    return make_gateway(conf=c, apis=apis, workers=1, name=name)


def test_key_ttl_in_redis(make_gateway, upstream):
    org = new_org()
    g = ttl_gateway(make_gateway, upstream, org)

    def ttl_of(rights, **fields):
        key = create_key(g, org, rights, **fields)["key"]
        return redis_session(key)[1]

    # no lifetime anywhere; global_session_lifetime alone does nothing
    assert ttl_of(access("k-nolife")) == -1
    # the API's session_lifetime
    assert 295 <= ttl_of(access("k-life")) <= 300
    # the key's own session_lifetime wins over the API's
    assert 115 <= ttl_of(access("k-life"), session_lifetime=120) <= 120
    assert 115 <= ttl_of(access("k-nolife"), session_lifetime=120) <= 120
    # the maximum across the key's APIs
    assert 295 <= ttl_of(access("k-life", "k-nolife")) <= 300
    # respecting the key's expiry: expires further away than the lifetime
    now = int(time.time())
    assert 4990 <= ttl_of(access("k-resp"), expires=now + 5000) <= 5000
    assert 295 <= ttl_of(access("k-resp"), expires=now + 100) <= 300
    g.stop()

    g = ttl_gateway(make_gateway, upstream, org, {"force_global_session_lifetime": True}, name="forced")
    assert 995 <= ttl_of(access("k-nolife")) <= 1000
    assert 995 <= ttl_of(access("k-life"), session_lifetime=120) <= 1000


# ---- 6. the /tyk/keys endpoints ---------------------------------------------------------

@pytest.fixture
def keysgw(make_gateway, upstream, tmp_path):
    """Hashed keys, listing enabled, one file policy."""
    org = new_org()
    pdir = tmp_path / "policies"
    pdir.mkdir()
    (pdir / "gold.json").write_text(json.dumps({
        "id": "gold", "name": "Gold", "org_id": org, "rate": 77, "per": 7, "quota_max": -1,
        "access_rights": access("k-rest"), "active": True}))
    (pdir / "silver.json").write_text(json.dumps({
        "id": "silver", "name": "Silver", "org_id": org, "rate": 5, "per": 1, "quota_max": -1,
        "access_rights": access("k-rest2"), "active": True}))
    g = make_gateway(conf={"secret": SECRET, "node_secret": NODE_SECRET, "hash_keys": True,
                           "enable_hashed_keys_listing": True,
                           "policies": {"policy_source": "file", "policy_path": str(pdir)}},
                     apis=[token_api("k-rest", "/rest/", upstream.url("/"), org),
                           token_api("k-rest2", "/rest2/", upstream.url("/"), org)], workers=2)
    return g, org


def test_rest_needs_the_secret(keysgw):
    g, org = keysgw
    for method, path in (("GET", "/tyk/keys"), ("POST", "/tyk/keys"), ("GET", "/tyk/keys/abc"),
                         ("DELETE", "/tyk/keys/abc")):
        r = g.request(method, path, [("X-Tyk-Authorization", "wrong")], b"{}" if method == "POST" else None)
        assert_status_msg(r, 403, "Attempted administrative access with invalid or missing key!")


def test_rest_create_get_update_delete(keysgw):
    g, org = keysgw
    before = int(time.time())
    out = create_key(g, org, access("k-rest"), quota_max=10, quota_renewal_rate=60)
    key, h = out["key"], out["key_hash"]
    assert out == {"key": key, "status": "ok", "action": "added", "key_hash": hash_key(key)}
    assert key.startswith(org) and len(key) == 56

    r = admin(g, "GET", "/tyk/keys/" + key)
    assert r.status == 200, r
    got = r.json()
    assert got["org_id"] == org and got["quota_max"] == 10
    assert list(got["access_rights"]) == ["k-rest"]
    assert got["quota_remaining"] == 10
    r2 = admin(g, "GET", "/tyk/keys/%s?hashed=true" % h)
    assert r2.status == 200 and r2.json() == got
    assert_status_msg(admin(g, "GET", "/tyk/keys/" + org + uid()), 404, "Key not found")
    assert_status_msg(admin(g, "GET", "/tyk/keys/%s?hashed=1" % hash_key(org + uid())), 404, "Key not found")

    stored, _ = redis_session(key)
    created, renews = stored["date_created"], stored["quota_renews"]
    assert before + 60 <= renews <= int(time.time()) + 60
    last_updated = stored.get("last_updated")

    # PUT with suppress_reset keeps quota_renews and last_updated
    time.sleep(1.1)
    body = dict(got, rate=5, per=1)
    r = admin(g, "PUT", "/tyk/keys/%s?suppress_reset=1" % key, body)
    assert r.status == 200, r
    assert r.json()["action"] == "modified" and r.json()["key"] == key and r.json()["status"] == "ok"
    stored, _ = redis_session(key)
    assert stored["rate"] == 5 and stored["per"] == 1
    assert stored["quota_renews"] == renews
    assert stored.get("last_updated") == last_updated
    assert stored["date_created"] == created

    # PUT without it resets them
    r = admin(g, "PUT", "/tyk/keys/" + key, dict(got, rate=6, per=1))
    assert r.status == 200 and r.json()["action"] == "modified"
    stored, _ = redis_session(key)
    assert stored["rate"] == 6
    assert stored["quota_renews"] > renews
    assert stored.get("last_updated") != last_updated
    assert stored["date_created"] == created
    # a past expires is replaced by the stored one
    r = admin(g, "PUT", "/tyk/keys/" + key, dict(got, expires=1000))
    assert r.status == 200
    assert redis_session(key)[0]["expires"] == got["expires"]

    assert_status_msg(admin(g, "PUT", "/tyk/keys/" + org + uid(), got), 404, "Key is not found")
    assert use(g, "/rest/echo", key).status == 200

    r = admin(g, "DELETE", "/tyk/keys/" + key)
    assert r.status == 200, r
    assert r.json() == {"key": key, "status": "ok", "action": "deleted"}
    assert redis_session(key)[0] is None
    assert_error(use(g, "/rest/echo", key), 403, "Access to this API has been disallowed")
    assert_status_msg(admin(g, "DELETE", "/tyk/keys/" + key), 404, "There is no such key found")
    assert_status_msg(admin(g, "DELETE", "/tyk/keys/%s?api_id=-1" % key), 404, "There is no such key found")
    k2 = create_key(g, org, access("k-rest"))["key"]
    r = admin(g, "DELETE", "/tyk/keys/%s?api_id=-1" % k2)
    assert r.status == 200 and r.body.rstrip(b"\n") == b"null", r
    assert redis_session(k2)[0] is None

    # delete by hash
    out = create_key(g, org, access("k-rest"))
    r = admin(g, "DELETE", "/tyk/keys/%s?hashed=1" % out["key_hash"])
    assert r.status == 200 and r.json()["action"] == "deleted", r
    assert redis_session(out["key"])[0] is None


def test_rest_create_errors(keysgw):
    g, org = keysgw
    assert_status_msg(admin(g, "POST", "/tyk/keys", b"{not json"), 400, "Request malformed")
    assert_status_msg(admin(g, "POST", "/tyk/keys", {"org_id": org, "access_rights": {}}), 500,
                      "Failed to create key, ensure security settings are correct.")
    r = admin(g, "POST", "/tyk/keys/ab", {"org_id": org, "access_rights": access("k-rest")})
    assert r.status == 400, r
    assert r.json()["status"] == "error"
    assert r.json()["message"].startswith("custom key ID length"), r

    assert_status_msg(admin(g, "POST", "/tyk/keys/create", b"{not json"), 500, "Unmarshalling failed")
    assert_status_msg(admin(g, "POST", "/tyk/keys/create", {"org_id": org, "access_rights": {}}), 400,
                      "Failed to create key, keys must have at least one Access Rights record set.")
    out = create_key(g, org, access("k-rest"), path="/tyk/keys/create")
    assert out == {"key": out["key"], "status": "ok", "action": "added", "key_hash": hash_key(out["key"])}
    assert use(g, "/rest/echo", out["key"]).status == 200
    assert_status_msg(admin(g, "PATCH", "/tyk/keys/" + out["key"]), 405, "Method not supported")


def test_rest_custom_key(keysgw):
    g, org = keysgw
    custom = "my-key-" + uid()[:8]
    out = create_key(g, org, access("k-rest"), path="/tyk/keys/" + custom)
    assert out["key"] == org + custom
    assert out["key_hash"] == hash_key(org + custom)
    assert use(g, "/rest/echo", custom).status == 200
    assert use(g, "/rest/echo", org + custom).status == 200
    # the REST API finds a custom ID through the org_id parameter, as Tyk does
    assert admin(g, "GET", "/tyk/keys/%s?org_id=%s" % (custom, org)).json()["org_id"] == org
    assert_status_msg(admin(g, "GET", "/tyk/keys/" + custom), 404, "Key not found")
    assert admin(g, "GET", "/tyk/keys/" + org + custom).status == 200
    r = admin(g, "DELETE", "/tyk/keys/%s?org_id=%s" % (custom, org))
    assert r.status == 200, r
    assert redis_session(org + custom)[0] is None


def test_rest_master_keys(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True, "allow_master_keys": True},
                     apis=[token_api("k-m1", "/m1/", upstream.url("/"), org),
                           token_api("k-m2", "/m2/", upstream.url("/"), org)], workers=1)
    out = create_key(g, org, {})
    assert use(g, "/m1/echo", out["key"]).status == 200
    assert use(g, "/m2/echo", out["key"]).status == 200


def test_rest_list(keysgw):
    g, org = keysgw
    a = create_key(g, org, access("k-rest"))
    b = create_key(g, org, access("k-rest2"))
    r = admin(g, "GET", "/tyk/keys")
    assert r.status == 200, r
    keys = r.json()["keys"]
    assert a["key_hash"] in keys and b["key_hash"] in keys
    assert a["key"] not in keys
    assert not any(k.startswith(("apikey-", "quota-", "rate-limit-")) for k in keys)

    keys = admin(g, "GET", "/tyk/keys?api_id=k-rest").json()["keys"]
    assert a["key_hash"] in keys and b["key_hash"] not in keys
    keys = admin(g, "GET", "/tyk/keys?api_id=k-rest2").json()["keys"]
    assert b["key_hash"] in keys and a["key_hash"] not in keys


def test_rest_list_disabled_with_hashed_keys(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True},
                     apis=[token_api("k-nl", "/nl/", upstream.url("/"), org)], workers=1)
    assert_status_msg(admin(g, "GET", "/tyk/keys"), 404,
                      "Hashed key listing is disabled in config (enable_hashed_keys_listing)")


def test_rest_unhashed_list_filter_and_hashed_get(make_gateway, upstream):
    org, other = new_org(), new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": False, "hash_key_function": "murmur64"},
                     apis=[token_api("k-uh", "/uh/", upstream.url("/"), org),
                           token_api("k-uh2", "/uh2/", upstream.url("/"), org)], workers=1)
    a = create_key(g, org, access("k-uh"))
    assert "key_hash" not in a
    assert a["key"].startswith("eyJ")
    # unhashed: Redis holds the raw key
    assert redis_session(a["key"], hash_keys=False)[0]["org_id"] == org
    legacy = org + uid()
    put_session(legacy, tyk_session(["k-uh2"], org_id=org), hash_keys=False)
    elsewhere = create_key(g, other, access("k-uh"))

    keys = admin(g, "GET", "/tyk/keys?filter=" + org).json()["keys"]
    assert sorted(keys) == sorted([a["key"], legacy])
    keys = admin(g, "GET", "/tyk/keys?filter=%s&api_id=k-uh" % org).json()["keys"]
    assert keys == [a["key"]]
    keys = admin(g, "GET", "/tyk/keys").json()["keys"]
    assert a["key"] in keys and legacy in keys and elsewhere["key"] in keys
    assert_status_msg(admin(g, "GET", "/tyk/keys?api_id=k-uh"), 400,
                      "The 'filter' parameter (Org ID) is required when filtering by 'api_id' in legacy mode")
    assert_status_msg(admin(g, "GET", "/tyk/keys/%s?hashed=true" % a["key"]), 400,
                      "Key requested by hash but key hashing is not enabled")
    assert use(g, "/uh/echo", a["key"]).status == 200
    assert use(g, "/uh2/echo", legacy).status == 200


def test_rest_preview_and_policy(keysgw):
    g, org = keysgw
    r = rc()
    try:
        before = sorted(r.scan_iter("apikey-*"))
    finally:
        r.close()
    res = admin(g, "POST", "/tyk/keys/preview", {"org_id": org, "apply_policies": ["gold"],
                                                 "access_rights": {}})
    assert res.status == 200, res
    prev = res.json()
    assert prev["rate"] == 77 and prev["per"] == 7
    assert "k-rest" in prev["access_rights"]
    r = rc()
    try:
        assert sorted(r.scan_iter("apikey-*")) == before
    finally:
        r.close()

    out = create_key(g, org, access("k-rest"), rate=1, per=1)
    res = admin(g, "POST", "/tyk/keys/policy/" + out["key_hash"], {"policy": "", "apply_policies": ["gold"]})
    assert res.status == 200, res
    assert res.json() == {"key": out["key_hash"], "status": "ok", "action": "updated"}
    stored, _ = redis_session(out["key"])
    assert stored["apply_policies"] == ["gold"]
    got = admin(g, "GET", "/tyk/keys/" + out["key"]).json()
    assert got["rate"] == 77 and got["per"] == 7
    assert use(g, "/rest/echo", out["key"]).status == 200
    assert_status_msg(admin(g, "POST", "/tyk/keys/policy/" + hash_key(org + uid()),
                            {"policy": "", "apply_policies": ["gold"]}), 404, "Key not found")
    assert_status_msg(admin(g, "POST", "/tyk/keys/policy/" + out["key_hash"], b"{nope"), 400,
                      "Couldn't decode instruction")

    # "policy" is added after apply_policies (policyUpdateHandler); last_updated is now
    time.sleep(1.1)
    before = int(time.time())
    res = admin(g, "POST", "/tyk/keys/policy/" + out["key_hash"], {"policy": "gold"})
    assert res.status == 200, res
    stored, _ = redis_session(out["key"])
    assert stored["apply_policies"] == ["gold"]
    assert stored.get("apply_policy_id", "") == ""
    assert before <= int(stored["last_updated"]) <= int(time.time())
    res = admin(g, "POST", "/tyk/keys/policy/" + out["key_hash"],
                {"policy": "gold", "apply_policies": ["silver"]})
    assert res.status == 200, res
    assert redis_session(out["key"])[0]["apply_policies"] == ["silver", "gold"]
    assert use(g, "/rest/echo", out["key"]).status == 200
    assert use(g, "/rest2/echo", out["key"]).status == 200


def test_key_writes_publish_notifications_and_never_log_raw_keys(keysgw):
    g, org = keysgw
    r = rc()
    ps = r.pubsub()
    ps.subscribe("tyk.cluster.notifications")
    ps.get_message(timeout=2)  # the subscribe confirmation

    def next_note():
        deadline = time.time() + 5
        while time.time() < deadline:
            m = ps.get_message(timeout=0.5)
            if m and m["type"] == "message":
                n = json.loads(m["data"])
                if n["command"] == "KeySpaceUpdateNotification":
                    return n
        raise AssertionError("no KeySpaceUpdateNotification")

    try:
        custom = "logcheck" + uid()
        out = create_key(g, org, access("k-rest"), path="/tyk/keys/" + custom)
        key, h = out["key"], out["key_hash"]
        for step in ("create", "put", "policy", "delete"):
            if step == "put":
                body = admin(g, "GET", "/tyk/keys/" + key).json()
                assert admin(g, "PUT", "/tyk/keys/" + key, body).status == 200
            elif step == "policy":
                assert admin(g, "POST", "/tyk/keys/policy/" + h, {"apply_policies": ["gold"]}).status == 200
            elif step == "delete":
                assert use(g, "/rest/echo", key).status == 200
                assert use(g, "/rest/echo", custom).status == 200
                assert admin(g, "DELETE", "/tyk/keys/" + key).status == 200
            n = next_note()
            assert sorted(n) == ["algorithm", "command", "payload", "signature"], n
            assert n["payload"].split(",")[0].split(":")[0] == h, (step, n)
            assert n["algorithm"] == 5
            assert n["signature"] == hashlib.sha256(
                (n["command"] + n["payload"] + NODE_SECRET).encode()).hexdigest()
        other = generate_token(org, uid())
        assert_error(use(g, "/rest/echo", other), 403, "Access to this API has been disallowed")
    finally:
        ps.close()
        r.close()
    time.sleep(0.2)
    log = g.log()
    assert log, "the gateway logged nothing"
    for raw in (key, custom, other):
        assert raw not in log, raw


# ---- more of 4.5/4.6 and 7.3 ------------------------------------------------------------

def test_rest_list_by_api_id_sees_every_key(keysgw):
    """Listing by api_id loads each key: however many there are."""
    g, org = keysgw
    mine = [org + uid() for _ in range(150)]
    r = rc()
    try:
        p = r.pipeline()
        for t in mine:
            p.set("apikey-" + hash_key(t), json.dumps(tyk_session(["k-rest2"], org_id=org)))
        p.execute()
        keys = admin(g, "GET", "/tyk/keys?api_id=k-rest2").json()["keys"]
        assert sorted(hash_key(t) for t in mine) == sorted(k for k in keys if k in {hash_key(t) for t in mine})
        assert len(set(keys) & {hash_key(t) for t in mine}) == 150
    finally:
        r.delete(*["apikey-" + hash_key(t) for t in mine])
        r.close()


def test_policies_on_request(keysgw, tmp_path):
    g, org = keysgw
    # a key whose policy is unknown is an unknown key
    t = org + uid()
    put_session(t, tyk_session(["k-rest"], org_id=org, apply_policies=["nope"]))
    assert_error(use(g, "/rest/echo", t), 403, "Access to this API has been disallowed")
    # a policy grants the access rights
    t = org + uid()
    put_session(t, tyk_session([], org_id=org, access_rights={}, apply_policies=["gold"]))
    assert use(g, "/rest/echo", t).status == 200
    assert_error(use(g, "/rest2/echo", t), 403, "Access to this API has been disallowed")


def test_inactive_policy_and_trial_period(make_gateway, upstream, tmp_path):
    org = new_org()
    pdir = tmp_path / "policies"
    pdir.mkdir()
    (pdir / "off.json").write_text(json.dumps({
        "id": "off", "org_id": org, "rate": 0, "per": 0, "quota_max": -1, "is_inactive": True,
        "access_rights": access("k-pol")}))
    (pdir / "trial.json").write_text(json.dumps({
        "id": "trial", "org_id": org, "rate": 0, "per": 0, "quota_max": -1, "key_expires_in": 3600,
        "access_rights": access("k-pol")}))
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True,
                           "policies": {"policy_source": "file", "policy_path": str(pdir)}},
                     apis=[token_api("k-pol", "/pol/", upstream.url("/"), org)], workers=1)
    t = org + uid()
    put_session(t, tyk_session([], org_id=org, access_rights={}, apply_policies=["off"]))
    assert_error(use(g, "/pol/echo", t), 403, "Key is inactive, please renew")

    now = int(time.time())
    out = create_key(g, org, {}, apply_policies=["trial"])
    stored, _ = redis_session(out["key"])
    assert now + 3600 <= stored["expires"] <= int(time.time()) + 3600
    assert use(g, "/pol/echo", out["key"]).status == 200


def test_past_expiry_on_create_means_never_and_quota_remaining(keysgw):
    g, org = keysgw
    out = create_key(g, org, access("k-rest"), expires=1000, quota_max=20, quota_renewal_rate=3600)
    stored, _ = redis_session(out["key"])
    assert stored["expires"] == 0
    assert use(g, "/rest/echo", out["key"]).status == 200
    r = rc()
    try:
        r.set("quota-" + out["key_hash"], 7)
    finally:
        r.close()
    assert admin(g, "GET", "/tyk/keys/" + out["key"]).json()["quota_remaining"] == 13
    r = rc()
    try:
        r.set("quota-" + out["key_hash"], 50)
    finally:
        r.close()
    assert admin(g, "GET", "/tyk/keys/" + out["key"]).json()["quota_remaining"] == 0


def test_version_lists_in_access_rights(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True},
                     apis=[versioned_api("k-vl", "/vl/", upstream.url("/"), org, "header", default_version="v1"),
                           token_api("k-nv", "/nv/", upstream.url("/"), org)], workers=1)
    key = create_key(g, org, {"k-vl": {"api_id": "k-vl", "versions": []},
                              "k-nv": {"api_id": "k-nv", "versions": []}})["key"]
    # a versioned API needs the version listed; a non-versioned one does not look
    assert_error(use(g, "/vl/echo", key), 403, "Access to this API has been disallowed")
    assert use(g, "/nv/echo", key).status == 200


def test_allowed_urls_patterns(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True},
                     apis=[token_api("k-au", "/au/", upstream.url("/"), org)], workers=1)
    key = create_key(g, org, access("k-au", allowed_urls=[
        {"url": "/users/{id}", "methods": ["GET", "DELETE"]},
        {"url": "^/echo", "methods": ["GET"]}]))["key"]
    assert use(g, "/au/users/42", key).status == 200
    assert g.request("DELETE", "/au/users/42", [("Authorization", key)]).status == 200
    assert_error(g.request("PUT", "/au/users/42", [("Authorization", key)], b""), 403,
                 "Access to this resource has been disallowed")
    # without prefix matching the whole path is searched: ^/echo is not at its start
    assert_error(use(g, "/au/echo", key), 403, "Access to this resource has been disallowed")


def test_allowed_urls_with_prefix_matching(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True,
                           "http_server_options": {"enable_path_prefix_matching": True}},
                     apis=[token_api("k-ap", "/ap/", upstream.url("/"), org)], workers=1)
    key = create_key(g, org, access("k-ap", allowed_urls=[{"url": "/echo", "methods": ["GET"]}]))["key"]
    # the listen-path-stripped path counts with prefix matching on
    assert use(g, "/ap/echo/x", key).status == 200
    assert_error(use(g, "/ap/other/echo", key), 403, "Access to this resource has been disallowed")


def test_hide_generator_header(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hide_generator_header": True},
                     apis=[token_api("k-hg", "/hg/", upstream.url("/"), org)], workers=1)
    r = use(g, "/hg/echo")
    assert r.status == 401 and r.body == tyk_error("Authorization field missing")
    assert r.header("X-Generator") is None


def test_cached_session_dropped_on_notification(keysgw):
    """Another node (Tyk) changes a key and announces it: every worker drops
    the cached session at once."""
    g, org = keysgw
    out = create_key(g, org, access("k-rest"))
    key, h = out["key"], out["key_hash"]
    # the creation's own KeySpaceUpdateNotification comes back through Redis
    # and evicts the key once; let it pass before the cache is filled, or it
    # could land after the change below and make the cached use read Redis
    time.sleep(0.5)
    for _ in range(6):
        assert use(g, "/rest/echo", key).status == 200
    sess, _ = redis_session(key)
    sess["is_inactive"] = True
    put_session(key, sess)
    # cached for up to 10 s, as Tyk's local session cache
    assert use(g, "/rest/echo", key).status == 200
    payload = "%s:rest" % h
    sig = hashlib.sha256(("KeySpaceUpdateNotification" + payload + NODE_SECRET).encode()).hexdigest()
    r = rc()
    try:
        r.publish("tyk.cluster.notifications", json.dumps(
            {"command": "KeySpaceUpdateNotification", "payload": payload, "signature": sig, "algorithm": 5}))
    finally:
        r.close()
    wait_for(lambda: use(g, "/rest/echo", key).status == 403, 3, what="the session to be reloaded")
    for _ in range(6):
        assert_error(use(g, "/rest/echo", key), 403, "Key is inactive, please renew")


def test_rest_writes_reach_every_worker_at_once(keysgw):
    g, org = keysgw
    out = create_key(g, org, access("k-rest"))
    key = out["key"]
    for _ in range(8):
        assert use(g, "/rest/echo", key).status == 200
    body = admin(g, "GET", "/tyk/keys/" + key).json()
    assert admin(g, "PUT", "/tyk/keys/" + key, dict(body, is_inactive=True)).status == 200
    for _ in range(8):
        assert_error(use(g, "/rest/echo", key), 403, "Key is inactive, please renew")
    assert admin(g, "DELETE", "/tyk/keys/" + key).status == 200
    for _ in range(8):
        assert_error(use(g, "/rest/echo", key), 403, "Access to this API has been disallowed")


def test_unhashed_notifications_name_the_key(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "node_secret": NODE_SECRET, "hash_keys": False},
                     apis=[token_api("k-un", "/un/", upstream.url("/"), org)], workers=1)
    r = rc()
    ps = r.pubsub()
    ps.subscribe("tyk.cluster.notifications")
    ps.get_message(timeout=2)
    try:
        out = create_key(g, org, access("k-un"))
        deadline = time.time() + 5
        n = None
        while time.time() < deadline and n is None:
            m = ps.get_message(timeout=0.5)
            if m and m["type"] == "message" and json.loads(m["data"])["command"] == "KeySpaceUpdateNotification":
                n = json.loads(m["data"])
        assert n is not None
        # Tyk's clearCacheForKey: HashKey(key), which is the key itself without hashing
        assert n["payload"] == out["key"]
    finally:
        ps.close()
        r.close()


def test_strip_auth_data(make_gateway, upstream):
    """StripAuth (TYK-COMPAT 12.1/12.2): with strip_auth_data the key reaches
    the upstream neither as a header nor as a query parameter."""
    org = new_org()
    u = upstream.url("/")
    strip = token_api("k-strip", "/strip/", u, org, strip_auth_data=True,
                      auth={"auth_header_name": "X-Api-Key", "use_param": True, "param_name": "k"})
    keep = token_api("k-keep", "/keep/", u, org,
                     auth={"auth_header_name": "X-Api-Key", "use_param": True, "param_name": "k"})
    both = versioned_api("k-sv", "/sv/", u, org, "url-param", default_version="v1")
    both["definition"]["strip_versioning_data"] = True
    both["strip_auth_data"] = True
    both["auth"] = {"auth_header_name": "Authorization", "use_param": True, "param_name": "k"}
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True}, apis=[strip, keep, both], workers=1)
    rights = access("k-strip", "k-keep")
    rights.update(access("k-sv", versions=("v1",)))
    key = create_key(g, org, rights)["key"]

    def seen(path, headers):
        r = g.request("GET", path, headers)
        assert r.status == 200, r
        e = r.json()
        return e["query"], {k.lower(): v for k, v in e["headers"]}

    q, h = seen("/strip/echo?a=1&k=%s&b=2" % key, [("X-Api-Key", key), ("X-Other", "o")])
    assert q == "a=1&b=2" and "x-api-key" not in h and h["x-other"] == "o"
    q, h = seen("/strip/echo", [("X-Api-Key", key)])
    assert q == "" and "x-api-key" not in h
    q, h = seen("/keep/echo?k=%s" % key, [("X-Api-Key", key)])
    assert q == "k=" + key and h["x-api-key"] == key
    q, h = seen("/sv/echo?version=v1&k=%s&z=9" % key, [])
    assert q == "z=9"


def test_master_sessions_and_other_orgs(make_gateway, upstream):
    org, other = new_org(), new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True},
                     apis=[token_api("k-ms", "/ms/", upstream.url("/"), org)], workers=1)
    # no access rights at all: every API (AccessRightsCheck), whatever allow_master_keys says
    for rights in ({}, None):
        t = org + uid()
        put_session(t, tyk_session([], org_id=org, access_rights=rights))
        assert use(g, "/ms/echo", t).status == 200, rights
    # a key of another org, granted this API, is found through generateToken candidates
    t = other + uid()
    put_session(t, tyk_session(["k-ms"], org_id=other))
    assert use(g, "/ms/echo", t).status == 200
    # expires 1 is in the past: POST keeps it (only > 1 is replaced), the key is expired
    out = create_key(g, org, access("k-ms"), expires=1)
    assert redis_session(out["key"])[0]["expires"] == 1
    assert_error(use(g, "/ms/echo", out["key"]), 401, "Key has expired, please renew")


def test_override_message_is_escaped(make_gateway, upstream):
    org = new_org()
    over = {"auth.auth_field_missing": {"code": 401, "message": 'No "key" here'}}
    g = make_gateway(conf={"secret": SECRET, "override_messages": over},
                     apis=[token_api("k-esc", "/esc/", upstream.url("/"), org)], workers=1)
    r = use(g, "/esc/echo")
    assert r.status == 401
    assert r.body == b'{\n    "error": "No \\"key\\" here"\n}'
    assert r.json() == {"error": 'No "key" here'}


def test_legacy_key_managed_after_switching_hash_function(make_gateway, upstream):
    """A key Tyk created before hash_key_function was set (org+id, stored
    under murmur32) can still be read, updated and deleted."""
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True, "hash_key_function": "murmur64"},
                     apis=[token_api("k-leg", "/leg/", upstream.url("/"), org)], workers=1)
    legacy = org + uid()
    put_session(legacy, tyk_session(["k-leg"], org_id=org, rate=3, per=1))
    assert use(g, "/leg/echo", legacy).status == 200
    got = admin(g, "GET", "/tyk/keys/" + legacy)
    assert got.status == 200 and got.json()["rate"] == 3, got
    r = admin(g, "PUT", "/tyk/keys/" + legacy, dict(got.json(), rate=4))
    assert r.status == 200 and r.json()["action"] == "modified", r
    assert redis_session(legacy)[0]["rate"] == 4
    r = admin(g, "DELETE", "/tyk/keys/" + legacy)
    assert r.status == 200, r
    assert redis_session(legacy)[0] is None


def test_quota_counters_reset_on_update(keysgw):
    g, org = keysgw
    out = create_key(g, org, access("k-rest"), quota_max=100, quota_renewal_rate=3600)
    qkey = "quota-" + out["key_hash"]
    r = rc()
    try:
        r.set(qkey, 40)
        body = admin(g, "GET", "/tyk/keys/" + out["key"]).json()
        assert body["quota_remaining"] == 60
        assert admin(g, "PUT", "/tyk/keys/%s?suppress_reset=1" % out["key"], body).status == 200
        assert r.get(qkey) == "40"
        assert admin(g, "PUT", "/tyk/keys/" + out["key"], body).status == 200
        assert r.get(qkey) is None
        assert admin(g, "GET", "/tyk/keys/" + out["key"]).json()["quota_remaining"] == 100
        r.set(qkey, 5)
        assert admin(g, "DELETE", "/tyk/keys/" + out["key"]).status == 200
        assert r.get(qkey) is None
    finally:
        r.delete(qkey)
        r.close()


def test_delete_that_fails_in_redis(make_gateway, make_redis, upstream):
    """RemoveSession failing: 400 Failed to remove the key (TYK-COMPAT 1.4)."""
    srv = make_redis()
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True,
                           "storage": {"host": HOST, "port": srv.port}},
                     apis=[token_api("k-df", "/df/", upstream.url("/"), org)], workers=1)
    out = create_key(g, org, access("k-df"))
    c = srv.client()
    try:
        c.config_set("min-replicas-to-write", 1)  # every write now fails: NOREPLICAS
        assert_status_msg(admin(g, "DELETE", "/tyk/keys/" + out["key"]), 400, "Failed to remove the key")
        c.config_set("min-replicas-to-write", 0)
        assert c.exists("apikey-" + out["key_hash"]) == 1
        assert admin(g, "DELETE", "/tyk/keys/" + out["key"]).status == 200
        assert c.exists("apikey-" + out["key_hash"]) == 0
    finally:
        c.close()


def test_key_header_forms_and_trailing_slash(keysgw):
    g, org = keysgw
    out = create_key(g, org, access("k-rest"))
    key = out["key"]
    # header names are case-insensitive
    assert use(g, "/rest/echo", key, name="authorization").status == 200
    # /tyk/keys/ is /tyk/keys
    r = admin(g, "GET", "/tyk/keys/")
    assert r.status == 200 and out["key_hash"] in r.json()["keys"], r
    r = admin(g, "POST", "/tyk/keys/", {"org_id": org, "access_rights": access("k-rest")})
    assert r.status == 200 and r.json()["action"] == "added", r
    assert admin(g, "GET", "/tyk/keys/%s/" % key).status == 200


def test_bearer_in_a_parameter(make_gateway, upstream):
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True},
                     apis=[token_api("k-bp", "/bp/", upstream.url("/"), org,
                                     auth={"auth_header_name": "Authorization", "use_param": True,
                                           "param_name": "t"})], workers=1)
    key = create_key(g, org, access("k-bp"))["key"]
    assert use(g, "/bp/echo?t=Bearer%20" + key).status == 200
    assert use(g, "/bp/echo?t=bearer+" + key).status == 200


def test_without_the_local_session_cache(make_gateway, upstream):
    """local_session_cache.disable_cached_session_state: every request reads
    Redis, so a change made behind the gateway's back counts at once."""
    org = new_org()
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True,
                           "local_session_cache": {"disable_cached_session_state": True}},
                     apis=[token_api("k-nc", "/nc/", upstream.url("/"), org)], workers=2)
    t = org + uid()
    put_session(t, tyk_session(["k-nc"], org_id=org))
    for _ in range(4):
        assert use(g, "/nc/echo", t).status == 200
    put_session(t, tyk_session(["k-nc"], org_id=org, is_inactive=True))
    for _ in range(4):
        assert_error(use(g, "/nc/echo", t), 403, "Key is inactive, please renew")
    rc().delete("apikey-" + hash_key(t))
    for _ in range(4):
        assert_error(use(g, "/nc/echo", t), 403, "Access to this API has been disallowed")
