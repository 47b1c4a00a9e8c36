"""Keys in use: policies merged on each request (TYK-COMPAT 5.3), access
control (4.6), versions and path lists (3.3, 3.4, 3.6), path tricks against
black lists and allowed_urls, eviction across nodes (7), the node's shared
session cache and what happens when Redis goes away (4.5).

Sessions are mostly written straight into Redis, as Tyk (or a Dashboard)
writes them, so each test controls every field the gateway reads.
"""
import hashlib
import json
import os
import signal
import time
import uuid

import pytest

from conftest import HOST, api_def, http, redis_py, send_raw
from tykkeys import generate_token, hash_key, tyk_session

if redis_py is None:  # make test installs it; a missing module must fail, not skip
    raise ImportError("python3-redis is required (apt-get install python3-redis)")

SECRET = "s3cret-for-tests"
AUTH = [("X-Tyk-Authorization", SECRET)]
ORG = "default"


def tyk(g, method, path, body=None):
    """A Gateway REST API call with the secret."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    hdrs = list(AUTH)
    if body is not None:
        hdrs.append(("Content-Type", "application/json"))
    return http(g.port, method, path, hdrs, body)


def tyk_error(message):
    """Tyk's templates/error.json (TYK-COMPAT 11.1)."""
    return ('{\n    "error": "%s"\n}' % message).encode()


def assert_denied(r, status, message):
    assert (r.status, r.body) == (status, tyk_error(message)), r


def new_token():
    return generate_token(ORG, uuid.uuid4().hex)


def put_session(rc, token, session, hashed=True, ttl=None):
    """Writes a session where Tyk keeps it (TYK-COMPAT 4.4)."""
    rc.set("apikey-" + hash_key(token, hashed), json.dumps(session), ex=ttl)


def keyed(api_id, listen_path, target, **kw):
    d = api_def(api_id, listen_path, target, keyless=False)
    d["use_standard_auth"] = True
    d["auth"] = {"auth_header_name": "Authorization"}
    for k, v in kw.items():
        d[k] = v
    return d


def versioned(d, versions, location="header", key="x-api-version", **vd):
    """Makes <d> versioned: versions is {name: VersionInfo fields}."""
    d["definition"] = {"location": location, "key": key}
    d["version_data"] = dict({"not_versioned": False,
                              "versions": {n: dict({"name": n}, **v) for n, v in versions.items()}},
                             **vd)
    return d


def not_versioned(d, **default):
    """A single "Default" version with <default>'s VersionInfo fields."""
    d["version_data"] = {"not_versioned": True,
                         "versions": {"Default": dict({"name": "Default"}, **default)}}
    return d


def get(g, path, token=None, method="GET", headers=(), timeout=10.0):
    h = list(headers)
    if token is not None:
        h.append(("Authorization", token))
    return g.request(method, path, h, timeout=timeout)


def conf(redis_srv=None, **kw):
    c = {"secret": SECRET, "hash_keys": True}
    if redis_srv is not None:
        c["storage"] = {"type": "redis", "host": HOST, "port": redis_srv.port}
    c.update(kw)
    return c


def policy(pid, apis, **kw):
    p = {"id": pid, "name": pid, "org_id": ORG, "rate": 0, "per": 0, "quota_max": -1,
         "quota_renewal_rate": 0, "active": True, "is_inactive": False,
         "access_rights": {a: dict({"api_id": a, "api_name": a, "versions": ["Default"]}, **extra)
                           for a, extra in apis.items()}}
    p.update(kw)
    return p


def write_policies(path, pols):
    path.write_text(json.dumps({p["id"]: p for p in pols}))


def reload_ok(g):
    r = tyk(g, "GET", "/tyk/reload?block=true")
    assert r.status == 200, r
    return r


def echo(r):
    assert r.status == 200, r
    return r.json()


def upstream_header(r, name):
    for k, v in echo(r)["headers"]:
        if k.lower() == name.lower():
            return v
    return None


# ---------------------------------------------------------------------------
# 1. policies applied on each request (TYK-COMPAT 5.3)
# ---------------------------------------------------------------------------

@pytest.fixture
def polset(upstream, make_gateway, tmp_path):
    """A gateway with APIs a, b, c (token auth) and policies from a record file."""
    rec = tmp_path / "policies.json"
    write_policies(rec, [
        policy("pa", {"a": {}}, tags=["from-pa"], meta_data={"tier": "gold", "shared": "pa"},
               quota_max=100, quota_renewal_rate=60, rate=10, per=1),
        policy("pb", {"b": {}}, tags=["from-pb"], meta_data={"shared": "pb"},
               quota_max=500, quota_renewal_rate=3600, rate=100, per=1),
        policy("acl-c", {"c": {}}, partitions={"acl": True, "quota": False, "rate_limit": False,
                                               "complexity": False, "per_api": False}),
        policy("off", {"a": {}}, is_inactive=True),
        policy("other-org", {"a": {}}, org_id="someone-else"),
    ])
    apis = [keyed(x, "/%s/" % x, upstream.url("/")) for x in "abc"]
    g = make_gateway(conf=conf(policies={"policy_source": "file", "policy_record_name": str(rec)}),
                     apis=apis)
    from conftest import session_redis
    rc = session_redis().client()
    yield g, rc, rec
    rc.close()


def key_with(rc, session_access=(), **fields):
    tok = new_token()
    put_session(rc, tok, tyk_session(list(session_access), org_id=ORG, **fields))
    return tok


def test_policy_grants_its_apis_only(polset):
    g, rc, _ = polset
    # the session itself lists b; with a policy, only the policy's ACL counts
    tok = key_with(rc, ["b"], apply_policies=["pa"])
    assert get(g, "/a/echo", tok).status == 200
    assert_denied(get(g, "/b/echo", tok), 403, "Access to this API has been disallowed")
    assert_denied(get(g, "/c/echo", tok), 403, "Access to this API has been disallowed")
    # the legacy single field works too
    tok2 = key_with(rc, [], apply_policy_id="pb")
    assert get(g, "/b/echo", tok2).status == 200
    assert_denied(get(g, "/a/echo", tok2), 403, "Access to this API has been disallowed")


def test_several_policies_merge_acls_and_get_detail_shows_the_merge(polset):
    g, rc, _ = polset
    tok = key_with(rc, [], apply_policies=["pa", "pb"], tags=["own"], meta_data={"shared": "key", "k": "v"})
    for api in "ab":
        assert get(g, "/%s/echo" % api, tok).status == 200
    assert_denied(get(g, "/c/echo", tok), 403, "Access to this API has been disallowed")
    r = tyk(g, "GET", "/tyk/keys/" + tok)
    assert r.status == 200, r
    s = r.json()
    assert sorted(s["access_rights"]) == ["a", "b"]
    # two policies set ACLs: each API counts under the policy that granted it
    assert s["access_rights"]["a"]["allowance_scope"] == "pa"
    assert s["access_rights"]["b"]["allowance_scope"] == "pb"
    # the larger quota and renewal rate, the faster rate win at the root
    assert s["quota_max"] == 500 and s["quota_renewal_rate"] == 3600
    assert (s["rate"], s["per"]) == (100, 1)
    assert sorted(s["tags"]) == ["from-pa", "from-pb", "own"]
    # policy keys over the key's, later policies over earlier ones
    assert s["meta_data"] == {"shared": "pb", "k": "v", "tier": "gold"}


def test_single_policy_copies_its_limits_to_the_root(polset):
    g, rc, _ = polset
    tok = key_with(rc, [], apply_policies=["pa"], quota_max=7, rate=1, per=60)
    s = tyk(g, "GET", "/tyk/keys/" + tok).json()
    assert (s["quota_max"], s["quota_renewal_rate"], s["rate"], s["per"]) == (100, 60, 10, 1)
    assert s["access_rights"]["a"]["limit"]["quota_max"] == 100


def test_acl_only_partition_keeps_the_keys_own_limits(polset):
    g, rc, _ = polset
    tok = key_with(rc, [], apply_policies=["acl-c"], quota_max=42, quota_renewal_rate=30, rate=3, per=7)
    assert get(g, "/c/echo", tok).status == 200
    assert_denied(get(g, "/a/echo", tok), 403, "Access to this API has been disallowed")
    s = tyk(g, "GET", "/tyk/keys/" + tok).json()
    assert list(s["access_rights"]) == ["c"]
    assert (s["quota_max"], s["rate"], s["per"]) == (42, 3, 7)


def test_inactive_policy_makes_the_key_inactive(polset):
    g, rc, _ = polset
    tok = key_with(rc, [], apply_policies=["pa", "off"])
    assert_denied(get(g, "/a/echo", tok), 403, "Key is inactive, please renew")
    # with policies, the key's own flag does not count (5.3 step 9)
    tok2 = key_with(rc, [], apply_policies=["pa"], is_inactive=True)
    assert get(g, "/a/echo", tok2).status == 200


def test_unknown_and_foreign_policies(polset):
    g, rc, _ = polset
    # the sole policy missing: the apply fails, the key is treated as unknown
    tok = key_with(rc, ["a"], apply_policies=["nope"])
    assert_denied(get(g, "/a/echo", tok), 403, "Access to this API has been disallowed")
    # a missing policy next to a good one is skipped
    tok = key_with(rc, [], apply_policies=["nope", "pa"])
    assert get(g, "/a/echo", tok).status == 200
    # a policy of another organisation is refused
    tok = key_with(rc, ["a"], apply_policies=["other-org"])
    assert_denied(get(g, "/a/echo", tok), 403, "Access to this API has been disallowed")


def test_per_api_policy_limits(upstream, make_gateway, tmp_path):
    rec = tmp_path / "p.json"
    write_policies(rec, [policy("pp", {"a": {"limit": {"rate": 5, "per": 1, "quota_max": 50,
                                                        "quota_renewal_rate": 10}},
                                       "b": {}},
                                rate=77, per=1, quota_max=999, quota_renewal_rate=20,
                                partitions={"per_api": True, "quota": False, "rate_limit": False,
                                            "acl": False, "complexity": False})])
    g = make_gateway(conf=conf(policies={"policy_source": "file", "policy_record_name": str(rec)}),
                     apis=[keyed(x, "/%s/" % x, upstream.url("/")) for x in "ab"], workers=1)
    from conftest import session_redis
    rc = session_redis().client()
    tok = key_with(rc, [], apply_policies=["pp"])
    assert get(g, "/a/echo", tok).status == 200 and get(g, "/b/echo", tok).status == 200
    s = tyk(g, "GET", "/tyk/keys/" + tok).json()
    la, lb = s["access_rights"]["a"]["limit"], s["access_rights"]["b"]["limit"]
    assert (la["rate"], la["quota_max"]) == (5, 50) and s["access_rights"]["a"]["allowance_scope"] == "a"
    assert (lb["rate"], lb["quota_max"]) == (77, 999) and s["access_rights"]["b"]["allowance_scope"] == "pp"
    rc.close()


def test_policies_from_a_directory_and_changes_on_reload(upstream, make_gateway, tmp_path):
    pdir = tmp_path / "pols"
    pdir.mkdir()
    (pdir / "one.json").write_text(json.dumps(policy("one", {"a": {}})))
    g = make_gateway(conf=conf(policies={"policy_source": "file", "policy_path": str(pdir)}),
                     apis=[keyed(x, "/%s/" % x, upstream.url("/")) for x in "ab"])
    from conftest import session_redis
    rc = session_redis().client()
    tok = key_with(rc, [], apply_policies=["one"])
    for _ in range(4):  # cached on both workers
        assert get(g, "/a/echo", tok).status == 200
        assert_denied(get(g, "/b/echo", tok), 403, "Access to this API has been disallowed")
    # the policy now grants b instead of a: the same key follows at once
    (pdir / "one.json").write_text(json.dumps(policy("one", {"b": {}})))
    reload_ok(g)
    for _ in range(4):
        assert get(g, "/b/echo", tok).status == 200
        assert_denied(get(g, "/a/echo", tok), 403, "Access to this API has been disallowed")
    # a broken policy file: the reload fails, APIs and policies stay as they were
    (pdir / "one.json").write_text('{"id": "one", "access_rights": {')
    g.add_api(keyed("c", "/c/", upstream.url("/")))
    r = tyk(g, "GET", "/tyk/reload?block=true")
    assert r.status == 500 and "one.json" in r.json()["message"], r
    for _ in range(4):
        assert get(g, "/b/echo", tok).status == 200
        assert_denied(get(g, "/a/echo", tok), 403, "Access to this API has been disallowed")
        assert get(g, "/c/echo", tok).status == 404
    assert [p["id"] for p in tyk(g, "GET", "/tyk/policies").json()] == ["one"]
    rc.close()


def test_broken_policy_record_keeps_keys_working(polset, upstream):
    g, rc, rec = polset
    tok = key_with(rc, [], apply_policies=["pa"])
    assert get(g, "/a/echo", tok).status == 200
    rec.write_text("{not json")
    r = tyk(g, "GET", "/tyk/reload?block=true")
    assert r.status == 500 and "policy_record_name" in r.json()["message"], r
    for _ in range(4):
        assert get(g, "/a/echo", tok).status == 200
        assert_denied(get(g, "/b/echo", tok), 403, "Access to this API has been disallowed")
    # keys created by the REST API get the policy's rights too
    r = tyk(g, "POST", "/tyk/keys", tyk_session([], org_id=ORG, apply_policies=["pb"]))
    assert r.status == 200, r
    k = r.json()["key"]
    assert get(g, "/b/echo", k).status == 200
    assert_denied(get(g, "/a/echo", k), 403, "Access to this API has been disallowed")


# ---------------------------------------------------------------------------
# 2. access control: access rights, versions, path lists, headers
# ---------------------------------------------------------------------------

@pytest.fixture
def rc():
    from conftest import session_redis
    c = session_redis().client()
    yield c
    c.close()


def test_master_keys(upstream, make_gateway, rc):
    """Empty access_rights is a master key: let through on every API at request
    time (4.6); allow_master_keys only governs creating one by REST (1.4)."""
    apis = [keyed(x, "/%s/" % x, upstream.url("/")) for x in "ab"]
    g = make_gateway(conf=conf(), apis=apis, workers=1)
    tok = key_with(rc, [])
    assert get(g, "/a/echo", tok).status == 200 and get(g, "/b/echo", tok).status == 200
    r = tyk(g, "POST", "/tyk/keys", tyk_session([], org_id=ORG))
    assert r.status == 500, r
    assert r.json() == {"status": "error", "message": "Failed to create key, ensure security settings are correct."}
    r = tyk(g, "POST", "/tyk/keys/create", tyk_session([], org_id=ORG))
    assert r.status == 400, r
    g2 = make_gateway(conf=conf(allow_master_keys=True), apis=apis, workers=1)
    r = tyk(g2, "POST", "/tyk/keys", tyk_session([], org_id=ORG))
    assert r.status == 200, r
    assert get(g2, "/a/echo", r.json()["key"]).status == 200


def test_access_rights_per_api_and_version(upstream, make_gateway, rc):
    vs = {"v1": {}, "v2": {}, "old": {"expires": "2020-01-01 00:00"}, "later": {"expires": "2099-01-02 15:04"}}
    a = versioned(keyed("a", "/a/", upstream.url("/")), vs)
    b = keyed("b", "/b/", upstream.url("/"))
    g = make_gateway(conf=conf(), apis=[a, b], workers=1)
    tok = new_token()
    s = tyk_session(["a"], org_id=ORG)
    s["access_rights"]["a"]["versions"] = ["v1", "old", "later"]
    put_session(rc, tok, s)
    V = "x-api-version"
    assert get(g, "/a/echo", tok, headers=[(V, "v1")]).status == 200
    assert_denied(get(g, "/a/echo", tok, headers=[(V, "v2")]), 403, "Access to this API has been disallowed")
    assert_denied(get(g, "/b/echo", tok), 403, "Access to this API has been disallowed")
    # the version check runs before authentication (12.1)
    assert_denied(get(g, "/a/echo", headers=[(V, "v9")]), 403, "This API version does not seem to exist")
    assert_denied(get(g, "/a/echo", tok), 403, "Version information not found")
    assert_denied(get(g, "/a/echo", tok, headers=[(V, "old")]), 403,
                  "Api Version has expired, please check documentation or contact administrator")
    r = get(g, "/a/echo", tok, headers=[(V, "later")])
    assert r.status == 200
    assert r.header("x-tyk-api-expires") == "Fri, 02 Jan 2099 15:04:00 UTC"
    # set in VersionCheck: later errors carry it too, earlier ones do not
    r = get(g, "/a/echo", headers=[(V, "later")])
    assert r.status == 401 and r.header("x-tyk-api-expires") == "Fri, 02 Jan 2099 15:04:00 UTC"
    assert get(g, "/a/echo", tok, headers=[(V, "v1")]).header("x-tyk-api-expires") is None


def test_version_locations_defaults_and_stripping(upstream, make_gateway, rc):
    vs = {"v1": {"global_headers": {"X-Ver": "one"}}, "v2": {"global_headers": {"X-Ver": "two"}}}
    hdr = versioned(keyed("h", "/h/", upstream.url("/")), vs, default_version="v2")
    hdr["definition"]["strip_versioning_data"] = True
    par = versioned(keyed("p", "/p/", upstream.url("/")), vs, location="url-param", key="ver")
    par["definition"]["strip_versioning_data"] = True
    url = versioned(keyed("u", "/u/", upstream.url("/")), vs, location="url", key="")
    url["definition"]["strip_versioning_data"] = True
    url_keep = versioned(keyed("uk", "/uk/", upstream.url("/")), vs, location="url", key="")
    g = make_gateway(conf=conf(), apis=[hdr, par, url, url_keep], workers=1)
    tok = new_token()
    s = tyk_session(["h", "p", "u", "uk"], org_id=ORG)
    for ad in s["access_rights"].values():
        ad["versions"] = ["v1", "v2"]
    put_session(rc, tok, s)
    # header: default_version when absent; the header is not forwarded
    e = echo(get(g, "/h/echo", tok))
    assert ("X-Ver", "two") in [tuple(x) for x in e["headers"]]
    e = echo(get(g, "/h/echo", tok, headers=[("x-api-version", "v1")]))
    hs = {k.lower(): v for k, v in e["headers"]}
    assert hs["x-ver"] == "one" and "x-api-version" not in hs
    # url-param: the parameter is removed from the query, the rest kept
    e = echo(get(g, "/p/echo?a=1&ver=v1&b=2", tok))
    assert e["query"] == "a=1&b=2" and e["path"] == "/echo"
    assert ("X-Ver", "one") in [tuple(x) for x in e["headers"]]
    assert_denied(get(g, "/p/echo?a=1", tok), 403, "Version information not found")
    # url: the first segment after the listen path
    e = echo(get(g, "/u/v2/echo/x?q=1", tok))
    assert (e["path"], e["query"]) == ("/echo/x", "q=1")
    assert ("X-Ver", "two") in [tuple(x) for x in e["headers"]]
    assert echo(get(g, "/uk/v1/echo", tok))["path"] == "/v1/echo"
    assert_denied(get(g, "/u/v7/echo", tok), 403, "This API version does not seem to exist")


def test_not_versioned_resolution_and_api_expiry(upstream, make_gateway, rc):
    one = keyed("one", "/one/", upstream.url("/"))
    one["version_data"] = {"not_versioned": True, "versions": {"anything": {"name": "anything"}}}
    none = keyed("none", "/none/", upstream.url("/"))
    none["version_data"] = {"not_versioned": True, "versions": {"x": {"name": "x"}, "y": {"name": "y"}}}
    amb = keyed("amb", "/amb/", upstream.url("/"))
    amb["version_data"] = {"not_versioned": True,
                           "versions": {"Default": {"name": "Default"}, "default": {"name": "default"}}}
    exp = not_versioned(keyed("exp", "/exp/", upstream.url("/")))
    exp["expiration"] = "2020-01-01 00:00"
    g = make_gateway(conf=conf(), apis=[one, none, amb, exp], workers=1)
    tok = key_with(rc, ["one", "none", "amb", "exp"])
    # a non-versioned API ignores the key's version list
    assert get(g, "/one/echo", tok).status == 200
    assert_denied(get(g, "/none/echo", tok), 403, "No default API version for this non-versioned API found")
    assert_denied(get(g, "/amb/echo", tok), 403, "Ambiguous default API version for this non-versioned API")
    assert_denied(get(g, "/exp/echo", tok), 403,
                  "API has expired, please check documentation or contact administrator")


def test_allowed_urls(upstream, make_gateway, rc):
    g = make_gateway(conf=conf(), apis=[keyed("a", "/a/", upstream.url("/"))], workers=1)
    tok = new_token()
    s = tyk_session(["a"], org_id=ORG)
    s["access_rights"]["a"]["allowed_urls"] = [
        {"url": "/echo/items/[0-9]+$", "methods": ["GET", "DELETE"]},
        {"url": "/echo/open", "methods": ["POST"]},
        {"url": "/echo/items/[0-9]+$", "methods": ["PUT"]},  # merged by URL
    ]
    put_session(rc, tok, s)
    for m in ("GET", "DELETE", "PUT"):
        assert get(g, "/a/echo/items/42", tok, method=m).status == 200, m
    no = "Access to this resource has been disallowed"
    assert_denied(get(g, "/a/echo/items/42", tok, method="POST"), 403, no)
    assert_denied(get(g, "/a/echo/items/x", tok), 403, no)
    assert_denied(get(g, "/a/echo/items/42/more", tok), 403, no)
    assert get(g, "/a/echo/open/sub", tok, method="POST").status == 200  # unanchored
    assert_denied(get(g, "/a/echo/open", tok, method="GET"), 403, no)


def ext_api(upstream, extended, listen="/x/", keyless=False, **info):
    d = keyed("x", listen, upstream.url("/")) if not keyless else api_def("x", listen, upstream.url("/"))
    return not_versioned(d, use_extended_paths=True, extended_paths=extended, **info)


def test_ignored_white_and_black_lists(upstream, make_gateway, rc):
    ext = {
        "ignored": [{"path": "/echo/public", "method_actions": {"GET": {"action": "no_action", "code": 200,
                                                                         "data": "", "headers": {}}}}],
        "black_list": [{"path": "/echo/public/secret", "method": "GET"},
                       {"path": "/echo/admin", "method_actions": {"GET": {"action": "no_action"},
                                                                  "DELETE": {"action": "no_action"}}}],
        "white_list": [{"path": "/echo/", "method": ""},
                       {"path": "/echo/mocked", "method_actions": {
                           "GET": {"action": "reply", "code": 418, "data": "teapot",
                                   "headers": {"X-Mock": "yes", "Content-Type": "text/x-tea"}}}}],
    }
    g = make_gateway(conf=conf(), apis=[ext_api(upstream, ext)], workers=1)
    tok = key_with(rc, ["x"])
    # ignored: no key needed, but only for the listed method
    assert get(g, "/x/echo/public").status == 200
    assert_denied(get(g, "/x/echo/public", method="POST"), 401, "Authorization field missing")
    # ignored comes before black_list: the first match decides
    assert get(g, "/x/echo/public/secret").status == 200
    forbidden = "Requested endpoint is forbidden"
    assert_denied(get(g, "/x/echo/admin", tok), 403, forbidden)
    assert_denied(get(g, "/x/echo/admin/x", tok, method="DELETE"), 403, forbidden)
    assert get(g, "/x/echo/admin", tok, method="POST").status == 200  # white-listed "/echo/"
    # the black list answers before authentication
    assert_denied(get(g, "/x/echo/admin"), 403, forbidden)
    # white list: anything that matches no entry is forbidden
    assert get(g, "/x/echo/ok", tok).status == 200
    assert_denied(get(g, "/x/other", tok), 403, forbidden)
    # reply: black list? no: "/echo/" in the white list comes first and is no mock
    r = get(g, "/x/echo/mocked", tok)
    assert r.status == 200 and r.json()["path"] == "/echo/mocked"


def test_reply_mock_and_first_match(upstream, make_gateway, rc):
    ext = {
        "white_list": [
            {"path": "/mocked", "method_actions": {
                "GET": {"action": "reply", "code": 418, "data": "teapot",
                        "headers": {"X-Mock": "yes", "Content-Type": "text/x-tea"}}}},
            {"path": "/echo", "method": "GET"},
        ],
        "mock_response": [{"path": "/m2", "method": "GET", "code": 201, "body": "made",
                           "headers": {"X-M2": "1"}}],
    }
    g = make_gateway(conf=conf(), apis=[ext_api(upstream, ext)], workers=1)
    r = get(g, "/x/mocked")  # the mock answers before authentication
    assert (r.status, r.body, r.header("X-Mock"), r.header("Content-Type")) == (418, b"teapot", "yes", "text/x-tea")
    r = get(g, "/x/m2")
    assert (r.status, r.body, r.header("X-M2")) == (201, b"made", "1")
    tok = key_with(rc, ["x"])
    assert_denied(get(g, "/x/mocked", tok, method="POST"), 403, "Requested endpoint is forbidden")
    assert get(g, "/x/echo", tok).status == 200


def test_ignore_case_and_anchoring(upstream, make_gateway, rc):
    ext = {"black_list": [{"path": "/admin", "method": "", "ignore_case": True},
                          {"path": "/Exact", "method": ""}]}
    g = make_gateway(conf=conf(), apis=[ext_api(upstream, ext, keyless=True)], workers=1)
    forbidden = "Requested endpoint is forbidden"
    for p in ("/x/admin", "/x/ADMIN", "/x/AdMiN/echo", "/x/echo/admin", "/x/echo/adminx"):
        assert_denied(get(g, p), 403, forbidden)
    assert_denied(get(g, "/x/Exact"), 403, forbidden)
    assert get(g, "/x/exact/echo").status == 200  # case matters without ignore_case
    # prefix and suffix matching anchor the pattern (3.6)
    g2 = make_gateway(conf=conf(http_server_options={"enable_path_prefix_matching": True,
                                                     "enable_path_suffix_matching": True}),
                      apis=[ext_api(upstream, ext, keyless=True)], workers=1)
    assert_denied(get(g2, "/x/ADMIN"), 403, forbidden)
    assert get(g2, "/x/echo/admin").status == 200
    assert get(g2, "/x/admin/echo").status == 200


def test_global_and_endpoint_headers(upstream, make_gateway, rc):
    ext = {"transform_headers": [{"path": "/echo/t", "method": "GET", "delete_headers": ["X-Drop-Me", "X-Gone"],
                                  "add_headers": {"X-Added": "yes", "X-Global": "endpoint"}}]}
    d = ext_api(upstream, ext, global_headers={"X-Global": "global", "X-Gone": "global"},
                global_headers_remove=["X-Secret"])
    g = make_gateway(conf=conf(), apis=[d], workers=1)
    tok = key_with(rc, ["x"])
    hdrs = [("X-Secret", "s"), ("X-Drop-Me", "d"), ("X-Global", "client")]
    e = echo(get(g, "/x/echo/t", tok, headers=hdrs))
    hs = [(k.lower(), v) for k, v in e["headers"]]
    names = [k for k, _ in hs]
    assert "x-secret" not in names and "x-drop-me" not in names
    assert [v for k, v in hs if k == "x-global"] == ["endpoint"]
    assert ("x-added", "yes") in hs and "x-gone" not in names
    e = echo(get(g, "/x/echo/other", tok, headers=hdrs))
    hs = [(k.lower(), v) for k, v in e["headers"]]
    assert [v for k, v in hs if k == "x-global"] == ["global"] and ("x-gone", "global") in hs
    assert ("x-drop-me", "d") in hs and "x-secret" not in [k for k, _ in hs] and "x-added" not in [k for k, _ in hs]


# ---------------------------------------------------------------------------
# 3. path tricks against black lists and allowed_urls
# ---------------------------------------------------------------------------

def echo_line(head, body):
    line = head.split(b"\r\n", 1)[0]
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(line), line)


def upstream_saw(up):
    with up.lock:
        return b"".join(c["data"] for c in up.conns)


def blocked(g, path, token=None, message="Requested endpoint is forbidden", hops=3):
    """Sends <path> raw and follows the gateway's clean-path redirects (as a
    client would); the end must be Tyk's 403."""
    seen = []
    for _ in range(hops):
        r = get(g, path, token)
        seen.append((path, r.status))
        if r.status != 301:
            break
        path = r.header("Location")
        assert path and path.startswith("/"), r
    assert (r.status, r.body) == (403, tyk_error(message)), seen
    return seen


TRICKS = ["/api/admin", "/api/./admin", "/api//admin", "/api/%2e/admin", "/api/%2E%2e/api/admin",
          "/api/%61dmin", "/api/x/../admin", "/api/x/%2e%2e/admin", "/api/admin/", "/api/admin%2Fsecret",
          "/api%2Fadmin", "/api/x/..%2Fadmin", "/api/./x/../admin/./y", "/api/ADMIN", "/api/%41dMiN"]


def test_black_list_path_tricks(make_gateway, scripted):
    up = scripted(echo_line)
    d = api_def("api", "/api/", up.url("/"))
    not_versioned(d, use_extended_paths=True,
                  extended_paths={"black_list": [{"path": "/admin", "method": "", "ignore_case": True}]})
    g = make_gateway(conf=conf(), apis=[d], workers=1)
    r = get(g, "/api/public")
    assert (r.status, r.body) == (200, b"GET /public HTTP/1.1")
    for p in TRICKS:
        blocked(g, p)
    assert b"admin" not in upstream_saw(up).lower()
    # the redirect is gorilla/mux's, to the cleaned path
    r = get(g, "/api/x/../admin?q=1")
    assert (r.status, r.header("Location")) == (301, "/api/admin?q=1")


def test_allowed_urls_path_tricks(make_gateway, scripted, rc):
    up = scripted(echo_line)
    g = make_gateway(conf=conf(), apis=[keyed("api", "/api/", up.url("/"))], workers=1)
    tok = new_token()
    s = tyk_session(["api"], org_id=ORG)
    s["access_rights"]["api"]["allowed_urls"] = [{"url": "^/api/public(/|$)", "methods": ["GET"]}]
    put_session(rc, tok, s)
    assert get(g, "/api/public/x", tok).body == b"GET /public/x HTTP/1.1"
    no = "Access to this resource has been disallowed"
    for p in ("/api/public/../admin", "/api/public/%2e%2e/admin", "/api/public/..%2Fadmin",
              "/api/public//../admin", "/api/public%2F..%2Fadmin", "/api/admin",
              "/api/%70ublic/../admin"):
        blocked(g, p, tok, no)
    assert b"admin" not in upstream_saw(up).lower()


def test_skip_url_cleaning(make_gateway, scripted):
    """With skip_url_cleaning there is no redirect (as Tyk), but the rules
    still judge the cleaned path, even anchored, so no dot segment gets the
    upstream's /admin."""
    up = scripted(echo_line)
    d = api_def("api", "/api/", up.url("/"))
    not_versioned(d, use_extended_paths=True,
                  extended_paths={"black_list": [{"path": "/admin", "method": ""}]})
    g = make_gateway(conf=conf(http_server_options={"skip_url_cleaning": True,
                                                    "enable_path_prefix_matching": True}),
                     apis=[d], workers=1)
    for p in ("/api/./admin", "/api//admin", "/api/x/../admin", "/api/%2e/admin", "/api/x/%2E%2E/admin"):
        r = get(g, p)
        assert (r.status, r.body) == (403, tyk_error("Requested endpoint is forbidden")), (p, r)
    assert b"admin" not in upstream_saw(up).lower()
    r = get(g, "/api/a//b/./c")
    assert r.status == 200 and r.body.startswith(b"GET /a//b/./c "), r


# ---------------------------------------------------------------------------
# 4. two nodes on one Redis: key writes and notifications evict at once
# ---------------------------------------------------------------------------

NODE_SECRET = "node-secret-for-tests"
CHANNEL = "tyk.cluster.notifications"


def wait_subscribers(srv, n, timeout=5.0):
    c = srv.client()
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if dict(c.pubsub_numsub(CHANNEL)).get(CHANNEL, 0) >= n:
                return
            time.sleep(0.02)
    finally:
        c.close()
    raise AssertionError("fewer than %d subscribers on %s" % (n, CHANNEL))


def until_status(g, path, token, status, limit=1.0):
    """Polls until <path> answers <status>; returns the time it took."""
    t0 = time.time()
    while True:
        r = get(g, path, token)
        if r.status == status:
            return time.time() - t0, r
        if time.time() - t0 > limit + 1.0:
            raise AssertionError("still %d after %.1fs: %r" % (r.status, time.time() - t0, r))
        time.sleep(0.01)


@pytest.fixture(params=["", "murmur64"], ids=["legacy-keys", "murmur64-keys"])
def two_nodes(request, make_gateway, make_redis, upstream):
    srv = make_redis()
    c = conf(srv, node_secret=NODE_SECRET, hash_key_function=request.param)
    apis = [keyed("a", "/a/", upstream.url("/")), keyed("b", "/b/", upstream.url("/"))]
    ga = make_gateway(conf=c, apis=apis, name="node-a")
    gb = make_gateway(conf=c, apis=apis, name="node-b")
    wait_subscribers(srv, 2)
    client = srv.client()
    yield ga, gb, srv, client
    client.close()


def warm(gws, token, n=6):
    for g in gws:
        for _ in range(n):  # new connections: both workers of each node
            assert get(g, "/a/echo", token).status == 200


def test_delete_on_one_node_evicts_on_the_other(two_nodes):
    ga, gb, srv, rcl = two_nodes
    r = tyk(ga, "POST", "/tyk/keys", tyk_session(["a"], org_id=ORG))
    assert r.status == 200, r
    tok = r.json()["key"]
    assert tok.startswith("eyJ") == (ga.conf["hash_key_function"] == "murmur64")
    warm([ga, gb], tok)
    r = tyk(ga, "DELETE", "/tyk/keys/" + tok)
    assert r.status == 200, r
    took, r = until_status(gb, "/a/echo", tok, 403)
    assert r.body == tyk_error("Access to this API has been disallowed")
    assert took < 1.0, took
    for _ in range(6):
        assert get(gb, "/a/echo", tok).status == 403 and get(ga, "/a/echo", tok).status == 403


def test_update_to_inactive_on_one_node_evicts_on_the_other(two_nodes):
    ga, gb, srv, rcl = two_nodes
    r = tyk(ga, "POST", "/tyk/keys", tyk_session(["a"], org_id=ORG))
    tok = r.json()["key"]
    warm([ga, gb], tok)
    r = tyk(ga, "PUT", "/tyk/keys/" + tok, tyk_session(["a"], org_id=ORG, is_inactive=True))
    assert r.status == 200 and r.json()["action"] == "modified", r
    took, r = until_status(gb, "/a/echo", tok, 403)
    assert r.body == tyk_error("Key is inactive, please renew") and took < 1.0, (took, r)
    for _ in range(6):
        assert get(gb, "/a/echo", tok).status == 403
    # and back, through the other node
    r = tyk(gb, "PUT", "/tyk/keys/" + tok, tyk_session(["a"], org_id=ORG))
    took, _ = until_status(ga, "/a/echo", tok, 200)
    assert took < 1.0


def test_notification_published_as_tyk_does(two_nodes):
    ga, gb, srv, rcl = two_nodes
    tok = new_token()
    put_session(rcl, tok, tyk_session(["a"], org_id=ORG))
    warm([ga, gb], tok)
    # changed behind the gateways' backs: both keep the cached copy
    put_session(rcl, tok, tyk_session(["b"], org_id=ORG))
    h = hash_key(tok)

    def publish(payload, sig=None, alg=5):
        cmd = "KeySpaceUpdateNotification"
        if sig is None:
            sig = hashlib.sha256((cmd + payload + NODE_SECRET).encode()).hexdigest()
        rcl.publish(CHANNEL, json.dumps({"command": cmd, "payload": payload, "signature": sig,
                                         "algorithm": alg}))

    # unsigned or wrongly signed: ignored
    publish(h, sig="")
    publish(h, sig=hashlib.sha256(b"KeySpaceUpdateNotification" + h.encode() + b"wrong").hexdigest())
    time.sleep(0.3)
    for g in (ga, gb):
        assert get(g, "/a/echo", tok).status == 200
    # signed with node_secret, among other names and with a ":suffix"
    publish("ffffffff," + h + ":extra")
    for g in (ga, gb):
        took, r = until_status(g, "/a/echo", tok, 403)
        assert took < 1.0 and r.body == tyk_error("Access to this API has been disallowed")
        assert get(g, "/b/echo", tok).status == 200


# ---------------------------------------------------------------------------
# 5. the node's shared session cache
# ---------------------------------------------------------------------------

def gets(srv):
    return srv.info("commandstats").get("cmdstat_get", {}).get("calls", 0)


@pytest.fixture
def own(make_gateway, make_redis, upstream):
    """make(**conf) -> (gateway with 2 workers on its own Redis, server, client)."""
    made = []

    def make(**kw):
        srv = make_redis()
        g = make_gateway(conf=conf(srv, **kw), apis=[keyed("a", "/a/", upstream.url("/"))], workers=2)
        cl = srv.client()
        made.append(cl)
        return g, srv, cl

    yield make
    for cl in made:
        cl.close()


def test_cached_key_costs_no_redis_reads(own):
    g, srv, cl = own()
    tok = new_token()
    put_session(cl, tok, tyk_session(["a"], org_id=ORG))
    before = gets(srv)
    for _ in range(40):  # a new connection each: both workers
        assert get(g, "/a/echo", tok).status == 200
    first = gets(srv) - before
    assert 1 <= first <= 2, first
    before = gets(srv)
    for _ in range(60):
        assert get(g, "/a/echo", tok).status == 200
    assert gets(srv) - before == 0
    # an unknown key is not cached as good, and stays refused
    for _ in range(3):
        assert_denied(get(g, "/a/echo", new_token()), 403, "Access to this API has been disallowed")


def test_disabled_cache_reads_redis_every_time(own):
    g, srv, cl = own(local_session_cache={"disable_cached_session_state": True})
    tok = new_token()
    put_session(cl, tok, tyk_session(["a"], org_id=ORG))
    before = gets(srv)
    for _ in range(20):
        assert get(g, "/a/echo", tok).status == 200
    assert gets(srv) - before >= 20
    # and a change is seen on the next request
    put_session(cl, tok, tyk_session(["a"], org_id=ORG, is_inactive=True))
    assert_denied(get(g, "/a/echo", tok), 403, "Key is inactive, please renew")


def test_entries_expire_after_cached_session_timeout(own):
    g, srv, cl = own(local_session_cache={"cached_session_timeout": 1})
    tok = new_token()
    put_session(cl, tok, tyk_session(["a"], org_id=ORG))
    for _ in range(4):
        assert get(g, "/a/echo", tok).status == 200
    # changed in Redis without a notification: the cached copy serves on ...
    put_session(cl, tok, tyk_session(["a"], org_id=ORG, is_inactive=True))
    assert get(g, "/a/echo", tok).status == 200
    # ... until the entry's second is up, on every worker
    took, r = until_status(g, "/a/echo", tok, 403, limit=1.5)
    assert r.body == tyk_error("Key is inactive, please renew") and took < 1.5
    for _ in range(6):
        assert get(g, "/a/echo", tok).status == 403


def test_worker_killed_while_the_cache_is_busy(own):
    import threading
    g, srv, cl = own()
    toks = [new_token() for _ in range(20)]
    for t in toks:
        put_session(cl, t, tyk_session(["a"], org_id=ORG))
    stop = threading.Event()

    done = []

    def load(i):
        n = i
        while not stop.is_set():
            try:
                if get(g, "/a/echo", toks[n % len(toks)], timeout=3).status == 200:
                    done.append(1)
            except (OSError, EOFError, ValueError):
                pass  # the killed worker's connections
            n += 1

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    assert len(done) > 20  # the cache is busy
    victim = g.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(5)
    g.wait_ready(timeout=10)
    assert victim not in g.worker_pids()
    for _ in range(3):
        for t in toks:
            assert get(g, "/a/echo", t).status == 200
    before = gets(srv)
    for _ in range(2):
        for t in toks:
            assert get(g, "/a/echo", t).status == 200
    assert gets(srv) - before == 0  # still served from the cache
    # and the cache still takes changes
    r = tyk(g, "DELETE", "/tyk/keys/" + toks[0])
    assert r.status == 200, r
    for _ in range(4):
        assert get(g, "/a/echo", toks[0]).status == 403


# ---------------------------------------------------------------------------
# 6. Redis down
# ---------------------------------------------------------------------------

def test_redis_down_cached_keys_work_others_get_503(own):
    g, srv, cl = own(local_session_cache={"cached_session_timeout": 2})
    cached, cold = new_token(), new_token()
    for t in (cached, cold):
        put_session(cl, t, tyk_session(["a"], org_id=ORG))
    t0 = time.time()
    for _ in range(6):
        assert get(g, "/a/echo", cached).status == 200
    srv.stop()
    unavailable = "Key storage unavailable, please try again later"
    for _ in range(4):
        assert get(g, "/a/echo", cached).status == 200
        r = get(g, "/a/echo", cold)
        assert (r.status, r.body) == (503, tyk_error(unavailable)), r
    assert time.time() - t0 < 2.0, "too slow to show the cached key working"
    # the entry expires: now it is unknown too, and not refused as a bad key
    took, r = until_status(g, "/a/echo", cached, 503, limit=2.5)
    assert r.body == tyk_error(unavailable)
    srv.start()
    cl2 = srv.client()
    for t in (cached, cold):  # no persistence: the restarted server is empty
        put_session(cl2, t, tyk_session(["a"], org_id=ORG))
    cl2.close()
    deadline = time.time() + 8
    while time.time() < deadline:
        if all(get(g, "/a/echo", t).status == 200 for t in (cached, cold)):
            break
        time.sleep(0.1)
    for _ in range(4):
        for t in (cached, cold):
            assert get(g, "/a/echo", t).status == 200
    # the keys above can be answered from the node's cache: each worker's own
    # Redis connection comes back on its own backoff, so an unknown key may
    # still see 503 on one worker for a moment; then it is refused as Tyk does
    deadline = time.time() + 8
    while time.time() < deadline and get(g, "/a/echo", new_token()).status == 503:
        time.sleep(0.1)
    for _ in range(6):
        assert_denied(get(g, "/a/echo", new_token()), 403, "Access to this API has been disallowed")


# ---------------------------------------------------------------------------
# more of 5.3 and 4.6
# ---------------------------------------------------------------------------

@pytest.fixture
def merge_gw(upstream, make_gateway, tmp_path):
    rec = tmp_path / "policies.json"
    vs = {"v1": {}, "v2": {}, "v3": {}}
    apis = [versioned(keyed("va", "/va/", upstream.url("/")), vs), keyed("b", "/b/", upstream.url("/"))]
    write_policies(rec, [
        policy("u1", {"va": {"versions": ["v1"], "allowed_urls": [{"url": "/echo/x", "methods": ["GET"]}]}},
               rate=10, per=1, quota_max=100, quota_renewal_rate=60),
        policy("u2", {"va": {"versions": ["v2"], "allowed_urls": [{"url": "/echo/x", "methods": ["POST"]},
                                                                  {"url": "/echo/y", "methods": ["GET"]}]}},
               rate=100, per=60, quota_max=-1, quota_renewal_rate=30),
        policy("master", {}, rate=7, per=2, quota_max=70, quota_renewal_rate=3),
        policy("pp", {"b": {}}, partitions={"per_api": True}),
        policy("pq", {"b": {}}, partitions={"quota": True}),
        policy("on-b", {"b": {}}),
        policy("acl-b", {"b": {}}, partitions={"acl": True}),
    ])
    g = make_gateway(conf=conf(policies={"policy_source": "file", "policy_record_name": str(rec)}),
                     apis=apis, workers=1)
    return g


def test_policies_merge_versions_urls_quota_and_rate(merge_gw, rc):
    g = merge_gw
    tok = key_with(rc, [], apply_policies=["u1", "u2"])
    V = "x-api-version"
    for v in ("v1", "v2"):
        assert get(g, "/va/echo/x", tok, headers=[(V, v)]).status == 200
        assert get(g, "/va/echo/x", tok, method="POST", headers=[(V, v)]).status == 200
        assert get(g, "/va/echo/y", tok, headers=[(V, v)]).status == 200
    assert_denied(get(g, "/va/echo/y", tok, method="POST", headers=[(V, "v1")]), 403,
                  "Access to this resource has been disallowed")
    assert_denied(get(g, "/va/echo/x", tok, headers=[(V, "v3")]), 403, "Access to this API has been disallowed")
    s = tyk(g, "GET", "/tyk/keys/" + tok).json()
    ad = s["access_rights"]["va"]
    assert sorted(ad["versions"]) == ["v1", "v2"]
    urls = {u["url"]: sorted(u["methods"]) for u in ad["allowed_urls"]}
    assert urls == {"/echo/x": ["GET", "POST"], "/echo/y": ["GET"]}
    # -1 beats any quota; the larger renewal rate; 10 per second beats 100 per minute
    assert (ad["limit"]["quota_max"], ad["limit"]["quota_renewal_rate"]) == (-1, 60)
    assert (ad["limit"]["rate"], ad["limit"]["per"]) == (10, 1)


def test_master_policy_sets_the_root_limits(merge_gw, rc):
    g = merge_gw
    tok = key_with(rc, ["b"], apply_policies=["master", "acl-b"])
    assert get(g, "/b/echo", tok).status == 200
    s = tyk(g, "GET", "/tyk/keys/" + tok).json()
    assert (s["rate"], s["per"], s["quota_max"], s["quota_renewal_rate"]) == (7, 2, 70, 3)
    # b got no limits from a policy: it takes the root's
    lim = s["access_rights"]["b"]["limit"]
    assert (lim["rate"], lim["per"], lim["quota_max"]) == (7, 2, 70)
    # a policy that limits b itself: with one API limited, the root copies that API (step 7)
    s = tyk(g, "GET", "/tyk/keys/" + key_with(rc, ["b"], apply_policies=["master", "on-b"])).json()
    assert (s["rate"], s["per"], s["quota_max"]) == (0, 0, -1)


def test_per_api_mixed_with_partitions_is_refused(merge_gw, rc):
    g = merge_gw
    tok = key_with(rc, ["b"], apply_policies=["pp", "pq"])
    assert_denied(get(g, "/b/echo", tok), 403, "Access to this API has been disallowed")
    assert get(g, "/b/echo", key_with(rc, ["b"], apply_policies=["pp"])).status == 200
    # a policy that grants no ACL (quota partition only): no valid policies
    assert_denied(get(g, "/b/echo", key_with(rc, ["b"], apply_policies=["pq"])), 403,
                  "Access to this API has been disallowed")


def test_expired_key_and_custom_key_ids(upstream, make_gateway, rc):
    g = make_gateway(conf=conf(), apis=[keyed("a", "/a/", upstream.url("/"))], workers=1)
    tok = key_with(rc, ["a"], expires=int(time.time()) - 5)
    assert_denied(get(g, "/a/echo", tok), 401, "Key has expired, please renew")
    assert get(g, "/a/echo", key_with(rc, ["a"], expires=int(time.time()) + 3600)).status == 200
    # a custom ID: stored under generateToken(org, id), presented as is
    r = tyk(g, "POST", "/tyk/keys/my-custom-key", tyk_session(["a"], org_id=ORG))
    assert r.status == 200, r
    assert rc.exists("apikey-" + hash_key(generate_token(ORG, "my-custom-key")))
    assert get(g, "/a/echo", "my-custom-key").status == 200
    assert get(g, "/a/echo", "Bearer my-custom-key").status == 200
    # REST calls find it only with the org (Tyk's SessionDetail: TokenOrg is "")
    assert tyk(g, "GET", "/tyk/keys/my-custom-key").status == 404
    assert tyk(g, "GET", "/tyk/keys/my-custom-key?org_id=" + ORG).status == 200
    assert tyk(g, "DELETE", "/tyk/keys/my-custom-key?org_id=" + ORG).status == 200
    assert_denied(get(g, "/a/echo", "my-custom-key"), 403, "Access to this API has been disallowed")


def test_rules_see_the_listen_path_and_prefix_matched_allowed_urls(upstream, make_gateway, rc):
    ext = {"black_list": [{"path": "^/x/echo/full$", "method": ""}]}
    c = conf(http_server_options={"enable_path_prefix_matching": True})
    g = make_gateway(conf=c, apis=[ext_api(upstream, ext)], workers=1)
    tok = new_token()
    s = tyk_session(["x"], org_id=ORG)
    s["access_rights"]["x"]["allowed_urls"] = [{"url": "/echo/ok", "methods": ["GET"]}]
    put_session(rc, tok, s)
    # the full path is the third string patterns are tried on
    assert_denied(get(g, "/x/echo/full", tok), 403, "Requested endpoint is forbidden")
    # with prefix matching, allowed_urls also match the stripped path
    assert get(g, "/x/echo/ok/1", tok).status == 200
    assert_denied(get(g, "/x/zz/echo/ok", tok), 403, "Access to this resource has been disallowed")


def test_unhashed_keys_and_their_notification(make_gateway, make_redis, upstream):
    srv = make_redis()
    c = conf(srv, hash_keys=False, node_secret=NODE_SECRET)
    g = make_gateway(conf=c, apis=[keyed("a", "/a/", upstream.url("/"))])
    wait_subscribers(srv, 1)
    cl = srv.client()
    tok = new_token()
    put_session(cl, tok, tyk_session(["a"], org_id=ORG), hashed=False)
    assert cl.exists("apikey-" + tok)
    for _ in range(4):
        assert get(g, "/a/echo", tok).status == 200
    put_session(cl, tok, tyk_session(["a"], org_id=ORG, is_inactive=True), hashed=False)
    assert get(g, "/a/echo", tok).status == 200  # cached
    cmd = "KeySpaceUpdateNotification"
    cl.publish(CHANNEL, json.dumps({"command": cmd, "payload": tok, "algorithm": 5,
                                    "signature": hashlib.sha256((cmd + tok + NODE_SECRET).encode()).hexdigest()}))
    took, r = until_status(g, "/a/echo", tok, 403)
    assert took < 1.0 and r.body == tyk_error("Key is inactive, please renew")
    cl.close()


def test_fallback_to_default_and_url_versioning_pattern(upstream, make_gateway, rc):
    vs = {"v1": {}, "v2": {"use_extended_paths": True,
                           "extended_paths": {"black_list": [{"path": "^/admin", "method": ""}]}}}
    fb = versioned(keyed("fb", "/fb/", upstream.url("/")), vs, default_version="v1")
    fb["definition"]["fallback_to_default"] = True
    pat = versioned(keyed("pat", "/pat/", upstream.url("/")), vs, location="url", key="",
                    default_version="v1")
    pat["definition"].update(url_versioning_pattern="^v\\d+$", strip_versioning_data=True)
    g = make_gateway(conf=conf(http_server_options={"enable_path_prefix_matching": True}),
                     apis=[fb, pat], workers=1)
    tok = new_token()
    s = tyk_session(["fb", "pat"], org_id=ORG)
    for ad in s["access_rights"].values():
        ad["versions"] = ["v1", "v2"]
    put_session(rc, tok, s)
    # an unknown version falls back to the default
    assert get(g, "/fb/echo", tok, headers=[("x-api-version", "nope")]).status == 200
    # a first segment that is no version is part of the path, under default_version
    assert echo(get(g, "/pat/echo/1", tok))["path"] == "/echo/1"
    assert echo(get(g, "/pat/v2/echo/1", tok))["path"] == "/echo/1"
    # rules see the path without the listen path and the version segment
    assert_denied(get(g, "/pat/v2/admin", tok), 403, "Requested endpoint is forbidden")
    assert get(g, "/pat/v1/admin/echo", tok).status == 200
    assert_denied(get(g, "/pat/v3/echo", tok), 403, "This API version does not seem to exist")


def test_get_key_detail_recomputes_quota_remaining(upstream, make_gateway, rc):
    g = make_gateway(conf=conf(), apis=[keyed("a", "/a/", upstream.url("/")),
                                        keyed("b", "/b/", upstream.url("/"))], workers=1)
    tok = new_token()
    s = tyk_session(["a", "b"], org_id=ORG, quota_max=10, quota_remaining=10)
    s["access_rights"]["a"]["limit"].update(quota_max=50, quota_remaining=50, rate=5, per=1)
    put_session(rc, tok, s)
    h = hash_key(tok)
    rc.set("quota-" + h, 3)
    rc.set("quota-a-" + h, 45)  # a key without policies counts a's own limit under "a"
    d = tyk(g, "GET", "/tyk/keys/" + tok).json()
    assert d["quota_remaining"] == 7
    assert d["access_rights"]["a"]["allowance_scope"] == "a"
    assert d["access_rights"]["a"]["limit"]["quota_remaining"] == 5
    rc.set("quota-" + h, 99)
    assert tyk(g, "GET", "/tyk/keys/" + tok).json()["quota_remaining"] == 0  # floored
    r = tyk(g, "GET", "/tyk/keys/" + new_token())
    assert r.status == 404 and r.json() == {"status": "error", "message": "Key not found"}, r
    r = tyk(g, "DELETE", "/tyk/keys/" + new_token())
    assert r.status == 404 and r.json() == {"status": "error", "message": "There is no such key found"}, r
    # by hash
    assert tyk(g, "GET", "/tyk/keys/%s?hashed=1" % h).json()["quota_max"] == 10


def test_ignored_skips_auth_and_disabled_entries_do_nothing(upstream, make_gateway, rc):
    ext = {"ignored": [{"path": "/echo/open", "method": "GET"}],
           "black_list": [{"path": "/echo/closed", "method": "", "disabled": True},
                          {"path": "/echo/CASE", "method": ""}]}
    g = make_gateway(conf=conf(ignore_endpoint_case=True), apis=[ext_api(upstream, ext)], workers=1)
    # a bad key, an inactive key, no key: ignored paths do not look
    assert get(g, "/x/echo/open", "no-such-key").status == 200
    assert get(g, "/x/echo/open", key_with(rc, ["x"], is_inactive=True)).status == 200
    tok = key_with(rc, ["x"])
    assert get(g, "/x/echo/closed", tok).status == 200
    # the global ignore_endpoint_case
    assert_denied(get(g, "/x/echo/case", tok), 403, "Requested endpoint is forbidden")
    assert_denied(get(g, "/x/echo/closed", "no-such-key"), 403, "Access to this API has been disallowed")


def test_policy_merge_endpoints_throttle_and_kept_renewal(upstream, make_gateway, tmp_path, rc):
    rec = tmp_path / "p.json"
    ep1 = [{"path": "/e", "methods": [{"name": "GET", "limit": {"rate": 5, "per": 1}}]}]
    ep2 = [{"path": "/e", "methods": [{"name": "GET", "limit": {"rate": 50, "per": 1}},
                                      {"name": "POST", "limit": {"rate": 2, "per": 1}}]}]
    write_policies(rec, [
        policy("t1", {"a": {"endpoints": ep1}}, rate=5, per=1, throttle_interval=2, throttle_retry_limit=1,
               last_updated="100", quota_max=10, quota_renewal_rate=60),
        policy("t2", {"a": {"endpoints": ep2}}, rate=1, per=1, throttle_interval=1, throttle_retry_limit=4,
               last_updated="200", quota_max=20, quota_renewal_rate=60),
    ])
    g = make_gateway(conf=conf(policies={"policy_source": "file", "policy_record_name": str(rec)}),
                     apis=[keyed("a", "/a/", upstream.url("/"))], workers=1)
    tok = new_token()
    s = tyk_session(["a"], org_id=ORG, apply_policies=["t1", "t2"], last_updated="150")
    s["access_rights"]["a"]["limit"]["quota_renews"] = 1234567890
    put_session(rc, tok, s)
    assert get(g, "/a/echo", tok).status == 200
    d = tyk(g, "GET", "/tyk/keys/" + tok).json()
    lim = d["access_rights"]["a"]["limit"]
    assert (lim["rate"], lim["per"], lim["quota_max"]) == (5, 1, 20)
    assert (lim["throttle_interval"], lim["throttle_retry_limit"]) == (2, 4)
    assert lim["quota_renews"] == 1234567890
    eps = {e["path"]: {m["name"]: m["limit"]["rate"] for m in e["methods"]}
           for e in d["access_rights"]["a"]["endpoints"]}
    assert eps == {"/e": {"GET": 50, "POST": 2}}
    assert d["last_updated"] == "200"
