"""JWT authentication (enable_jwt; TYK-COMPAT 17): every algorithm Tyk
accepts, the family check (alg "none", HS256 signed with the RSA public
key), the time claims and their skews, identities, policies from the
claims, defaults and scope mapping, the virtual session stored in Redis
under Tyk's key (so a quota counts per identity across nodes), and the
one-to-one mode whose secret is a key's jwt_data.

Tokens are made by the tests (jwtmint.py: python's hmac, the openssl
command line), never by the gateway."""
import hashlib
import json
import time
import uuid

import pytest

from conftest import api_def, session_redis
from jwtmint import Keypair, sign, source
from test_access import ORG, conf, policy, put_session, tyk_error, write_policies
from tykkeys import generate_token, hash_key, tyk_session

SECRET = b"a-shared-hmac-secret-of-32-bytes"
NOT_AUTH = "Key not authorized"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwtkeys")
    return {
        "rsa": Keypair(d, "rsa", "rsa", 2048),
        "rsa2": Keypair(d, "rsa2", "rsa", 2048),
        "p256": Keypair(d, "p256", "ec", curve="P-256"),
        "p384": Keypair(d, "p384", "ec", curve="P-384"),
        "p521": Keypair(d, "p521", "ec", curve="P-521"),
        "dir": d,
    }


def jwt_api(api_id, target, method, src, **kw):
    d = api_def(api_id, "/%s/" % api_id, target, keyless=False)
    d["enable_jwt"] = True
    d["jwt_signing_method"] = method
    d["jwt_source"] = src
    d["jwt_identity_base_field"] = "sub"
    d["jwt_policy_field_name"] = "pol"
    d.update(kw)
    return d


def claims(sub=None, **kw):
    c = {"sub": "user-" + uuid.uuid4().hex[:8] if sub is None else sub, "pol": "base",
         "iat": int(time.time()), "exp": int(time.time()) + 600}
    c.update(kw)
    return c


def call(g, path, token=None, headers=()):
    h = list(headers)
    if token is not None:
        h.append(("Authorization", "Bearer " + token))
    return g.request("GET", path, h)


def denied(r, status, message):
    assert (r.status, r.body) == (status, tyk_error(message)), r


def sid_of(identity):
    """Tyk's virtual session key: generateToken(org, md5hex(identity))."""
    return generate_token(ORG, hashlib.md5(identity.encode()).hexdigest())


@pytest.fixture
def polfile(tmp_path):
    rec = tmp_path / "policies.json"
    write_policies(rec, [
        policy("base", {a: {} for a in ("hs", "rs", "ps", "es", "es384", "es512", "hs512",
                                        "rs512", "cert", "dflt", "scoped", "q", "skew")}),
        policy("gold", {"hs": {}, "scoped": {}}, tags=["gold"]),
        policy("silver", {"scoped": {}}, tags=["silver"]),
        policy("quota5", {"q": {}, "q2": {}}, quota_max=5, quota_renewal_rate=3600),
        policy("elsewhere", {"hs": {}}, org_id="another-org"),
    ])
    return rec


@pytest.fixture
def gw(make_gateway, upstream, keys, polfile):
    k = keys
    apis = [
        jwt_api("hs", upstream.url("/"), "hmac", source(SECRET)),
        jwt_api("hs512", upstream.url("/"), "hmac", source(SECRET)),
        jwt_api("rs", upstream.url("/"), "rsa", source(k["rsa"].pem())),
        jwt_api("rs512", upstream.url("/"), "rsa", source(k["rsa"].pem())),
        jwt_api("ps", upstream.url("/"), "rsa", source(k["rsa"].pem())),
        jwt_api("cert", upstream.url("/"), "rsa", source(k["rsa"].cert(k["dir"]))),
        jwt_api("es", upstream.url("/"), "ecdsa", source(k["p256"].pem())),
        jwt_api("es384", upstream.url("/"), "ecdsa", source(k["p384"].pem())),
        jwt_api("es512", upstream.url("/"), "ecdsa", source(k["p521"].pem())),
        jwt_api("dflt", upstream.url("/"), "hmac", source(SECRET), jwt_policy_field_name="",
                jwt_default_policies=["base"]),
        jwt_api("scoped", upstream.url("/"), "hmac", source(SECRET), jwt_policy_field_name="",
                jwt_default_policies=["base"],
                jwt_scope_to_policy_mapping={"read:gold": "gold", "read:silver": "silver"},
                jwt_scope_claim_name="permissions.scope"),
        jwt_api("skew", upstream.url("/"), "hmac", source(SECRET),
                jwt_expires_at_validation_skew=30, jwt_not_before_validation_skew=30,
                jwt_issued_at_validation_skew=30),
    ]
    c = conf(policies={"policy_source": "file", "policy_record_name": str(polfile)})
    return make_gateway(conf=c, apis=apis)


def test_every_algorithm_verifies(gw, keys):
    cases = [("hs", "HS256", None), ("hs", "HS384", None), ("hs512", "HS512", None),
             ("rs", "RS256", "rsa"), ("rs", "RS384", "rsa"), ("rs512", "RS512", "rsa"),
             ("ps", "PS256", "rsa"), ("ps", "PS384", "rsa"), ("ps", "PS512", "rsa"),
             ("cert", "RS256", "rsa"), ("es", "ES256", "p256"), ("es384", "ES384", "p384"),
             ("es512", "ES512", "p521")]
    for api, alg, key in cases:
        tok = sign(alg, claims(), key=keys.get(key), secret=SECRET)
        r = call(gw, "/%s/get" % api, tok)
        assert r.status == 200, (api, alg, r)
        # the same token again (remembered by the worker): same answer
        assert call(gw, "/%s/get" % api, tok).status == 200, (api, alg)


def test_wrong_keys_and_switched_algorithms_fail(gw, keys):
    c = claims()
    denied(call(gw, "/hs/get", sign("HS256", c, secret=b"not-the-secret")), 403, NOT_AUTH)
    denied(call(gw, "/rs/get", sign("RS256", c, key=keys["rsa2"])), 403, NOT_AUTH)
    denied(call(gw, "/es/get", sign("ES256", c, key=keys["p384"])), 403, NOT_AUTH)
    denied(call(gw, "/es/get", sign("ES256", c, key=keys["p256"])[:-4] + "AAAA"), 403, NOT_AUTH)
    # alg "none" never verifies, whatever the family
    for api in ("hs", "rs", "es"):
        denied(call(gw, "/%s/get" % api, sign("none", c)), 403,
               NOT_AUTH + ": Unexpected signing method")
    # HS256 with the RSA public key as the HMAC secret: the family check refuses it
    forged = sign("HS256", c, secret=keys["rsa"].pem())
    denied(call(gw, "/rs/get", forged), 403, NOT_AUTH + ": Unexpected signing method")
    # an EC token on an RSA API, an RSA token on an EC API
    denied(call(gw, "/rs/get", sign("ES256", c, key=keys["p256"])), 403,
           NOT_AUTH + ": Unexpected signing method")
    denied(call(gw, "/es/get", sign("RS256", c, key=keys["rsa"])), 403,
           NOT_AUTH + ": Unexpected signing method")
    # an algorithm golang-jwt does not know, garbage, a missing token
    denied(call(gw, "/hs/get", sign("HS256", c, secret=SECRET, header={"alg": "XX999"})), 403,
           NOT_AUTH)
    denied(call(gw, "/hs/get", "not.a.jwt"), 403, NOT_AUTH)
    denied(call(gw, "/hs/get", "onlyone"), 403, NOT_AUTH)
    denied(call(gw, "/hs/get"), 400, "Authorization field missing")
    # a good token whose signature was altered after it was accepted once
    tok = sign("HS256", claims(), secret=SECRET)
    assert call(gw, "/hs/get", tok).status == 200
    bad = tok[:-2] + ("AA" if tok[-2:] != "AA" else "BB")
    denied(call(gw, "/hs/get", bad), 403, NOT_AUTH)


def test_time_claims_and_skews(gw):
    now = int(time.time())
    exp = "Key not authorized: token has expired"
    nbf = "Key not authorized: token is not valid yet"
    iat = "Key not authorized: token used before issued"
    denied(call(gw, "/hs/get", sign("HS256", claims(exp=now - 5), secret=SECRET)), 401, exp)
    denied(call(gw, "/hs/get", sign("HS256", claims(nbf=now + 60), secret=SECRET)), 401, nbf)
    denied(call(gw, "/hs/get", sign("HS256", claims(iat=now + 60), secret=SECRET)), 401, iat)
    denied(call(gw, "/hs/get", sign("HS256", claims(exp="tomorrow"), secret=SECRET)), 401, exp)
    # several fail: the last one checked (nbf) names it
    denied(call(gw, "/hs/get", sign("HS256", claims(exp=now - 5, nbf=now + 60), secret=SECRET)),
           401, nbf)
    # absent or zero time claims are not checked
    c = claims()
    del c["exp"], c["iat"]
    assert call(gw, "/hs/get", sign("HS256", c, secret=SECRET)).status == 200
    assert call(gw, "/hs/get", sign("HS256", claims(nbf=0), secret=SECRET)).status == 200
    # 30 s of skew each way
    ok = claims(nbf=now + 10, iat=now + 10)
    assert call(gw, "/skew/get", sign("HS256", ok, secret=SECRET)).status == 200
    denied(call(gw, "/skew/get", sign("HS256", claims(nbf=now + 60), secret=SECRET)), 401, nbf)
    denied(call(gw, "/skew/get", sign("HS256", claims(exp=now - 60), secret=SECRET)), 401, exp)
    # within the expiry skew the token passes, but Tyk gives the virtual
    # session the token's exp, so the key expiry check refuses it
    denied(call(gw, "/skew/get", sign("HS256", claims(exp=now - 10), secret=SECRET)), 401,
           "Key has expired, please renew")
    # a remembered token expires too
    tok = sign("HS256", claims(exp=now + 2), secret=SECRET)
    assert call(gw, "/hs/get", tok).status == 200
    time.sleep(2.2)
    denied(call(gw, "/hs/get", tok), 401, exp)


def test_identity_claims(gw):
    c = claims()
    del c["sub"]
    denied(call(gw, "/hs/get", sign("HS256", c, secret=SECRET)), 403,
           "no suitable claims for user ID were found")
    denied(call(gw, "/hs/get", sign("HS256", claims(sub=42), secret=SECRET)), 403,
           "no suitable claims for user ID were found")
    denied(call(gw, "/hs/get", sign("HS256", claims(sub=""), secret=SECRET)), 403,
           "found an empty user ID in predefined base field claim sub")


def test_virtual_session_is_stored_as_tyk_stores_it(gw):
    rc = session_redis().client()
    user = "alice-" + uuid.uuid4().hex[:6]
    exp = int(time.time()) + 900
    assert call(gw, "/hs/get", sign("HS256", claims(sub=user, exp=exp), secret=SECRET)).status == 200
    raw = rc.get("apikey-" + hash_key(sid_of(user)))
    assert raw is not None
    s = json.loads(raw)
    assert s["apply_policies"] == ["base"]
    assert s["alias"] == user
    assert s["meta_data"]["TykJWTSessionID"] == sid_of(user)
    assert s["expires"] == exp
    assert "hs" in s["access_rights"]
    assert "oauth_client_id" not in s
    # the IdP's client id claim (Okta's cid) becomes the session's oauth_client_id
    user2 = "carl-" + uuid.uuid4().hex[:6]
    assert call(gw, "/hs/get", sign("HS256", claims(sub=user2, cid="okta-app"),
                                    secret=SECRET)).status == 200
    assert json.loads(rc.get("apikey-" + hash_key(sid_of(user2))))["oauth_client_id"] == "okta-app"
    # the policy claim changes: the session's policies follow
    tok = sign("HS256", claims(sub=user, exp=exp + 60, pol="gold"), secret=SECRET)
    assert call(gw, "/hs/get", tok).status == 200
    s = json.loads(rc.get("apikey-" + hash_key(sid_of(user))))
    assert s["apply_policies"] == ["gold"]
    assert s["expires"] == exp + 60
    assert "gold" in s["tags"]
    rc.close()


def test_policies_from_claims_defaults_and_scopes(gw):
    # an unknown policy, one of another org
    denied(call(gw, "/hs/get", sign("HS256", claims(pol="nope"), secret=SECRET)), 403,
           "key not authorized: no matching policy")
    denied(call(gw, "/hs/get", sign("HS256", claims(pol="elsewhere"), secret=SECRET)), 403,
           "key not authorized: no matching policy")
    # no policy claim on an API without defaults
    c = claims()
    del c["pol"]
    denied(call(gw, "/hs/get", sign("HS256", c, secret=SECRET)), 403,
           "key not authorized: no matching policy found")
    # defaults
    rc = session_redis().client()
    user = "dflt-" + uuid.uuid4().hex[:6]
    assert call(gw, "/dflt/get", sign("HS256", claims(sub=user), secret=SECRET)).status == 200
    assert json.loads(rc.get("apikey-" + hash_key(sid_of(user))))["apply_policies"] == ["base"]
    # scopes (nested claim, string and list forms) replace the defaults
    user = "scoped-" + uuid.uuid4().hex[:6]
    tok = sign("HS256", claims(sub=user, permissions={"scope": "read:gold read:silver other"}),
               secret=SECRET)
    assert call(gw, "/scoped/get", tok).status == 200
    got = json.loads(rc.get("apikey-" + hash_key(sid_of(user))))
    assert sorted(got["apply_policies"]) == ["gold", "silver"]
    user = "scoped-" + uuid.uuid4().hex[:6]
    tok = sign("HS256", claims(sub=user, permissions={"scope": ["read:silver"]}), secret=SECRET)
    assert call(gw, "/scoped/get", tok).status == 200
    assert json.loads(rc.get("apikey-" + hash_key(sid_of(user))))["apply_policies"] == ["silver"]
    # no scope claim: the defaults stay; scopes that map to nothing: refused
    user = "scoped-" + uuid.uuid4().hex[:6]
    assert call(gw, "/scoped/get", sign("HS256", claims(sub=user), secret=SECRET)).status == 200
    assert json.loads(rc.get("apikey-" + hash_key(sid_of(user))))["apply_policies"] == ["base"]
    denied(call(gw, "/scoped/get", sign("HS256", claims(permissions={"scope": "write:x"}),
                                        secret=SECRET)),
           403, "key not authorized: no matching policy found in scope claim")
    rc.close()
    # the policy's access rights decide: silver does not grant "hs"
    tok = sign("HS256", claims(pol="silver"), secret=SECRET)
    denied(call(gw, "/hs/get", tok), 403, "Access to this API has been disallowed")


def test_quota_counts_per_identity_across_two_nodes(make_gateway, upstream, polfile):
    c = conf(policies={"policy_source": "file", "policy_record_name": str(polfile)})
    apis = [jwt_api("q", upstream.url("/"), "hmac", source(SECRET))]
    a = make_gateway(conf=c, apis=apis, name="node-a")
    b = make_gateway(conf=c, apis=apis, name="node-b")
    user = "quota-" + uuid.uuid4().hex[:6]
    codes = []
    for i in range(8):
        # a new token each time: the identity, not the token, holds the quota
        tok = sign("HS256", claims(sub=user, pol="quota5", jti=str(i)), secret=SECRET)
        codes.append(call(a if i % 2 else b, "/q/get", tok).status)
    assert codes == [200] * 5 + [403] * 3, codes
    # another identity has its own
    tok = sign("HS256", claims(sub=user + "-2", pol="quota5"), secret=SECRET)
    assert call(a, "/q/get", tok).status == 200


def test_token_from_param_and_cookie(make_gateway, upstream, polfile):
    c = conf(policies={"policy_source": "file", "policy_record_name": str(polfile)})
    api = jwt_api("hs", upstream.url("/"), "hmac", source(SECRET),
                  auth_configs={"jwt": {"auth_header_name": "X-Jwt", "use_param": True,
                                        "param_name": "jwt", "use_cookie": True,
                                        "cookie_name": "session"}})
    g = make_gateway(conf=c, apis=[api])
    tok = sign("HS256", claims(), secret=SECRET)
    assert g.request("GET", "/hs/get", [("X-Jwt", tok)]).status == 200
    assert g.request("GET", "/hs/get?jwt=" + tok).status == 200
    assert g.request("GET", "/hs/get", [("Cookie", "a=b; session=" + tok)]).status == 200
    # Authorization is not where this API looks
    denied(g.request("GET", "/hs/get", [("Authorization", tok)]), 400,
           "Authorization field missing")


def test_claims_are_context_variables(make_gateway, upstream, polfile):
    """enable_context_vars: each claim and header field as
    $tyk_context.jwt_claims_<name> (Tyk's valToStr: strings as they are,
    numbers as float32, lists joined), for header transforms and rewrites;
    $tyk_context.token is the virtual session's key."""
    c = conf(policies={"policy_source": "file", "policy_record_name": str(polfile)})
    api = jwt_api("hs", upstream.url("/"), "hmac", source(SECRET), enable_context_vars=True)
    api["version_data"] = {"not_versioned": True, "versions": {"Default": {
        "name": "Default", "global_headers": {
            "X-Sub": "$tyk_context.jwt_claims_sub", "X-Roles": "$tyk_context.jwt_claims_roles",
            "X-Level": "$tyk_context.jwt_claims_level", "X-Typ": "$tyk_context.jwt_claims_typ"}}}}
    g = make_gateway(conf=c, apis=[api])
    tok = sign("HS256", claims(sub="ann", roles=["admin", "a b"], level=3), secret=SECRET)
    r = call(g, "/hs/echo", tok)
    assert r.status == 200, r
    h = {k.lower(): v for k, v in r.json()["headers"]}
    assert (h["x-sub"], h["x-roles"], h["x-level"], h["x-typ"]) == ("ann", "admin,a+b", "3", "JWT")
    # a second request with the same token (its verdict remembered) has them too
    h = {k.lower(): v for k, v in call(g, "/hs/echo", tok).json()["headers"]}
    assert h["x-sub"] == "ann"


def test_one_to_one_mode_uses_the_keys_secret(make_gateway, upstream, keys):
    rc = session_redis().client()
    api = jwt_api("own", upstream.url("/"), "hmac", "")
    api_rsa = jwt_api("ownrsa", upstream.url("/"), "rsa", "")
    g = make_gateway(conf=conf(), apis=[api, api_rsa])
    key = generate_token(ORG, uuid.uuid4().hex)
    put_session(rc, key, tyk_session(["own"], org_id=ORG, jwt_data={"secret": "per-key-secret"}))
    tok = sign("HS256", claims(), secret=b"per-key-secret", header={"kid": key})
    assert call(g, "/own/get", tok).status == 200
    assert call(g, "/own/get", tok).status == 200
    denied(call(g, "/own/get", sign("HS256", claims(), secret=b"other", header={"kid": key})),
           403, NOT_AUTH)
    # kid names no key
    denied(call(g, "/own/get", sign("HS256", claims(), secret=b"per-key-secret",
                                    header={"kid": "nobody"})), 403, NOT_AUTH)
    # the identity from sub when there is no kid
    put_session(rc, "subject-" + key, tyk_session(["own"], org_id=ORG,
                                                  jwt_data={"secret": "sub-secret"}))
    tok = sign("HS256", claims(sub="subject-" + key), secret=b"sub-secret")
    assert call(g, "/own/get", tok).status == 200
    # RSA: the key's secret is a PEM public key
    rkey = generate_token(ORG, uuid.uuid4().hex)
    put_session(rc, rkey, tyk_session(["ownrsa"], org_id=ORG,
                                      jwt_data={"secret": keys["rsa"].pem().decode()}))
    tok = sign("RS256", claims(), key=keys["rsa"], header={"kid": rkey})
    assert call(g, "/ownrsa/get", tok).status == 200
    denied(call(g, "/ownrsa/get", sign("RS256", claims(), key=keys["rsa2"],
                                       header={"kid": rkey})), 403, NOT_AUTH)
    rc.close()


def test_base_policy_from_the_client_key(make_gateway, upstream, polfile):
    """jwt_client_base_field (Tyk's getBasePolicyID): without a policy
    claim field, the claim names a Tyk key whose first policy is the
    token's base policy; a client key that is unknown or has no policy
    leaves the defaults; a client key whose policies change moves the
    identities it vouches for with it."""
    from test_access import SECRET as ADMIN_SECRET
    from test_keys import admin
    c = conf(policies={"policy_source": "file", "policy_record_name": str(polfile)})
    apis = [jwt_api("hs", upstream.url("/"), "hmac", source(SECRET), jwt_policy_field_name="",
                    jwt_client_base_field="azp", jwt_default_policies=["base"]),
            jwt_api("scoped", upstream.url("/"), "hmac", source(SECRET),
                    jwt_policy_field_name="", jwt_client_base_field="azp")]
    g = make_gateway(conf=c, apis=apis)
    rc = session_redis().client()
    client = generate_token(ORG, "client-" + uuid.uuid4().hex[:8])
    put_session(rc, client, tyk_session(["hs"], org_id=ORG, apply_policies=["gold", "silver"]))
    bare = generate_token(ORG, "bare-" + uuid.uuid4().hex[:8])
    put_session(rc, bare, tyk_session(["hs"], org_id=ORG))

    def pols_of(user, want=None):
        """The virtual session's policies; with <want>, waited for (the
        session is written beside the answer, a refusal can be first)."""
        deadline = time.time() + 3
        while True:
            got = json.loads(rc.get("apikey-" + hash_key(sid_of(user))))["apply_policies"]
            if want is None or got == want or time.time() > deadline:
                return got
            time.sleep(0.02)

    user = "app-user-" + uuid.uuid4().hex[:6]
    tok = sign("HS256", claims(sub=user, azp=client), secret=SECRET)
    assert call(g, "/hs/get", tok).status == 200
    assert pols_of(user) == ["gold"]
    # again, remembered: the same
    assert call(g, "/hs/get", tok).status == 200
    # the client key is unknown, has no policies, or the claim is absent: the defaults
    for i, azp in enumerate((generate_token(ORG, "nobody-" + uuid.uuid4().hex[:6]), bare, None)):
        u = "%s-%d" % (user, i)
        cl = claims(sub=u) if azp is None else claims(sub=u, azp=azp)
        assert call(g, "/hs/get", sign("HS256", cl, secret=SECRET)).status == 200, azp
        assert pols_of(u) == ["base"], azp
    # without defaults such a token has no policy at all
    denied(call(g, "/scoped/get", sign("HS256", claims(azp=bare), secret=SECRET)), 403,
           "key not authorized: no matching policy found")
    # the client's policies change (through this gateway's API): the next request follows
    s = json.loads(rc.get("apikey-" + hash_key(client)))
    s["apply_policies"] = ["silver"]
    r = admin(g, "PUT", "/tyk/keys/" + client, s, secret=ADMIN_SECRET)
    assert r.status == 200, r
    denied(call(g, "/hs/get", tok), 403, "Access to this API has been disallowed")
    assert pols_of(user, ["silver"]) == ["silver"]
    s["apply_policies"] = ["base"]
    assert admin(g, "PUT", "/tyk/keys/" + client, s, secret=ADMIN_SECRET).status == 200
    assert call(g, "/hs/get", tok).status == 200
    assert pols_of(user) == ["base"]
    rc.close()


def test_bad_source_is_refused_with_a_warning(make_gateway, upstream):
    api = jwt_api("broken", upstream.url("/"), "rsa", source(b"this is no PEM key"))
    g = make_gateway(conf=conf(), apis=[api])
    g.wait_log(r"API broken .*\$\.jwt_source: not a PEM or DER public key or certificate")
    denied(call(g, "/broken/get", sign("HS256", claims(), secret=SECRET)), 403,
           NOT_AUTH + ": Unexpected signing method")


def test_two_methods_and_base_identity(make_gateway, upstream, polfile):
    """Basic auth and JWT on one API, each reading its own header: both
    must pass; base_identity_provided_by picks whose session (and so whose
    quota) the request counts against."""
    import base64 as b64
    c = conf(policies={"policy_source": "file", "policy_record_name": str(polfile)})
    apis = []
    for api_id, base in (("q", "basic_auth_user"), ("q2", "jwt_claim")):
        a = jwt_api(api_id, upstream.url("/"), "hmac", source(SECRET),
                    use_basic_auth=True, base_identity_provided_by=base,
                    auth_configs={"jwt": {"auth_header_name": "X-Jwt"},
                                  "basic": {"auth_header_name": "Authorization"}})
        apis.append(a)
    g = make_gateway(conf=c, apis=apis)
    rc = session_redis().client()
    user = "both-" + uuid.uuid4().hex[:6]
    # the basic user's own quota: 2; the JWT policy quota5 gives 5
    put_session(rc, generate_token(ORG, user), tyk_session(
        ["q", "q2"], org_id=ORG, quota_max=2, quota_remaining=2, quota_renewal_rate=3600,
        basic_auth_data={"password": "pw", "hash_type": ""}))
    rc.close()
    basic = "Basic " + b64.b64encode(("%s:pw" % user).encode()).decode()
    for api_id, allowed in (("q", 2), ("q2", 5)):
        tok = sign("HS256", claims(sub=user + api_id, pol="quota5"), secret=SECRET)
        both = [("Authorization", basic), ("X-Jwt", tok)]
        codes = [g.request("GET", "/%s/get" % api_id, both).status for _ in range(6)]
        assert codes == [200] * allowed + [403] * (6 - allowed), (api_id, codes)
        # either credential missing: that method's answer
        denied(g.request("GET", "/%s/get" % api_id, [("X-Jwt", tok)]), 401,
               "Authorization field missing")
        denied(g.request("GET", "/%s/get" % api_id, [("Authorization", basic)]), 400,
               "Authorization field missing")


class JwksServer:
    """Serves a JWKS (mutable: .keys) over HTTP, or HTTPS with a self-signed
    certificate; counts the fetches."""

    def __init__(self, tmp, tls=False):
        import http.server
        import ssl
        import threading
        from conftest import free_port
        self.keys = []
        self.fetches = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        if tls:
            import subprocess
            crt, key = tmp / "jwks.crt", tmp / "jwks.key"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                            "/CN=127.0.0.1", "-days", "2", "-keyout", str(key), "-out", str(crt)],
                           check=True, capture_output=True)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(crt), str(key))
            # the handshake runs in each connection's thread, not in accept():
            # one stalled client cannot hold up the others
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True,
                                              do_handshake_on_connect=False)
        self.url = "%s://127.0.0.1:%d/.well-known/jwks.json" % ("https" if tls else "http",
                                                               self.port)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def jwks_server(tmp_path):
    made = []

    def make(tls=False):
        s = JwksServer(tmp_path, tls)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def test_jwks_keys_rotation_and_formats(make_gateway, upstream, keys, polfile, jwks_server,
                                        tmp_path):
    from jwtmint import jwk
    srv = jwks_server()
    srv.keys = [jwk(keys["rsa"], "k1"), jwk(keys["p256"], "e1", "ec"),
                jwk(keys["rsa2"], "c1", x5c_dir=tmp_path)]
    c = conf(policies={"policy_source": "file", "policy_record_name": str(polfile)},
             jwks={"cache": {"timeout": 1}})
    apis = [jwt_api("rs", upstream.url("/"), "rsa", srv.url),
            jwt_api("es", upstream.url("/"), "ecdsa", source(srv.url))]  # base64 of the URL
    g = make_gateway(conf=c, apis=apis, workers=1)
    tok = sign("RS256", claims(), key=keys["rsa"], header={"kid": "k1"})
    assert call(g, "/rs/get", tok).status == 200
    assert call(g, "/rs/get", tok).status == 200
    assert srv.fetches == 1  # one fetch serves the worker
    assert call(g, "/rs/get", sign("RS256", claims(), key=keys["rsa2"],
                                   header={"kid": "c1"})).status == 200  # x5c
    assert call(g, "/es/get", sign("ES256", claims(), key=keys["p256"],
                                   header={"kid": "e1"})).status == 200
    # a token signed by another key under a known kid, no kid, an unknown kid
    denied(call(g, "/rs/get", sign("RS256", claims(), key=keys["rsa2"], header={"kid": "k1"})),
           403, NOT_AUTH)
    denied(call(g, "/rs/get", sign("RS256", claims(), key=keys["rsa"])), 403, NOT_AUTH)
    denied(call(g, "/rs/get", sign("RS256", claims(), key=keys["rsa"], header={"kid": "zz"})),
           403, NOT_AUTH)
    # rotation: k1 retired, k2 added; after the cache timeout the new kid is
    # found, and the remembered token of the retired key is refused
    srv.keys = [jwk(keys["rsa2"], "k2")]
    time.sleep(1.2)
    tok2 = sign("RS256", claims(), key=keys["rsa2"], header={"kid": "k2"})
    assert call(g, "/rs/get", tok2).status == 200
    denied(call(g, "/rs/get", tok), 403, NOT_AUTH)


def test_jwks_over_https_and_when_unreachable(make_gateway, upstream, keys, polfile,
                                              jwks_server):
    from jwtmint import jwk
    srv = jwks_server(tls=True)
    srv.keys = [jwk(keys["rsa"], "k1")]
    pol = {"policy_source": "file", "policy_record_name": str(polfile)}
    tok = sign("RS256", claims(), key=keys["rsa"], header={"kid": "k1"})
    # a self-signed server: refused unless jwt_ssl_insecure_skip_verify
    g = make_gateway(conf=conf(policies=pol), workers=1, name="verify",
                     apis=[jwt_api("rs", upstream.url("/"), "rsa", srv.url)])
    denied(call(g, "/rs/get", tok), 403, NOT_AUTH)
    g.wait_log(r"JWKS https://127\.0\.0\.1:\d+/\.well-known/jwks\.json: .*(certificate|verif)")
    g2 = make_gateway(conf=conf(policies=pol, jwt_ssl_insecure_skip_verify=True), workers=1,
                      name="insecure", apis=[jwt_api("rs", upstream.url("/"), "rsa", srv.url)])
    assert call(g2, "/rs/get", tok).status == 200
    # nothing listens: 403 at once, a warning, no stall
    from conftest import free_port
    dead = "http://127.0.0.1:%d/jwks" % free_port()
    g3 = make_gateway(conf=conf(policies=pol), workers=1, name="dead",
                      apis=[jwt_api("rs", upstream.url("/"), "rsa", dead)])
    denied(call(g3, "/rs/get", tok), 403, NOT_AUTH)
    g3.wait_log(r"JWKS http://127\.0\.0\.1:\d+/jwks: .*(refused|ECONNREFUSED)")
    denied(call(g3, "/rs/get", tok), 403, NOT_AUTH)
