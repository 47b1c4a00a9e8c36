"""Basic authentication (use_basic_auth; TYK-COMPAT 18.1, 18.2): users are
sessions made with POST /tyk/keys/<user> (the password hashed with bcrypt,
or basic_auth_hash_key_function), stored under generateToken(org, user);
Tyk's statuses and messages, WWW-Authenticate with the API's name as the
realm; plain, sha256 and bcrypt passwords; bcrypt results remembered, and
failures too, so guesses cannot make every request cost a bcrypt."""
import base64
import hashlib
import json
import time
import uuid

from conftest import api_def, session_redis
from test_access import ORG, conf, put_session, tyk, tyk_error
from tykkeys import generate_token, hash_key, tyk_session


def basic_api(api_id, target, **kw):
    d = api_def(api_id, "/%s/" % api_id, target, keyless=False)
    d["name"] = "Basic API " + api_id
    d["use_basic_auth"] = True
    d.update(kw)
    return d


def creds(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def call(g, path, value=None):
    h = [] if value is None else [("Authorization", value)]
    return g.request("GET", path, h)


def unauthorised(r, api_id, message="User not authorised"):
    assert (r.status, r.body) == (401, tyk_error(message)), r
    assert r.header("WWW-Authenticate") == 'Basic realm="Basic API %s"' % api_id, r


def make_user(g, api_id, user, pw):
    body = {"org_id": ORG, "access_rights": {api_id: {"api_id": api_id, "api_name": api_id,
                                                      "versions": ["Default"]}},
            "basic_auth_data": {"password": pw}}
    r = tyk(g, "POST", "/tyk/keys/" + user, body)
    assert r.status == 200, r
    return r.json()


def stored(user):
    rc = session_redis().client()
    raw = rc.get("apikey-" + hash_key(generate_token(ORG, user)))
    rc.close()
    return json.loads(raw) if raw else None


def test_users_made_through_the_api_log_in(make_gateway, upstream):
    g = make_gateway(conf=conf(), apis=[basic_api("b", upstream.url("/"))])
    user = "alice-" + uuid.uuid4().hex[:6]
    make_user(g, "b", user, "s3cret:not")  # a colon in the password: it can never log in
    user2 = "bob-" + uuid.uuid4().hex[:6]
    out = make_user(g, "b", user2, "correct horse")
    assert out["action"] == "added"
    s = stored(user2)
    assert s["basic_auth_data"]["hash_type"] == "bcrypt"
    assert s["basic_auth_data"]["password"].startswith("$2a$10$")
    # the password is never shown
    r = tyk(g, "GET", "/tyk/keys/%s?username=true&org_id=" % user2 + ORG)
    assert r.status == 200 and r.json()["basic_auth_data"]["password"] == "", r
    assert call(g, "/b/get", creds(user2, "correct horse")).status == 200
    assert call(g, "/b/get", creds(user2, "correct horse")).status == 200  # remembered
    unauthorised(call(g, "/b/get", creds(user2, "wrong")), "b")
    unauthorised(call(g, "/b/get", creds("nobody-" + user2, "x")), "b")
    unauthorised(call(g, "/b/get"), "b", "Authorization field missing")
    # Tyk's malformed-header answers carry no WWW-Authenticate
    for value, msg in (("Basic", "header not in basic auth format"),
                       ("Basic a b", "header not in basic auth format"),
                       ("Basic !!!!", "auth data not encoded correctly"),
                       ("Basic " + base64.b64encode(b"nocolon").decode(),
                        "values not in basic auth format"),
                       (creds(user, "s3cret:not"), "values not in basic auth format")):
        r = call(g, "/b/get", value)
        assert (r.status, r.body) == (
            400, tyk_error("Attempted access with malformed header, " + msg)), (value, r)
        assert r.header("WWW-Authenticate") is None
    # a PUT without basic_auth_data keeps the password; with a new one, hashes it
    body = {"org_id": ORG, "access_rights": {"b": {"api_id": "b", "api_name": "b",
                                                   "versions": ["Default"]}}}
    assert tyk(g, "PUT", "/tyk/keys/%s?username=true&org_id=" % user2 + ORG, body).status == 200
    assert stored(user2)["basic_auth_data"] == s["basic_auth_data"]
    time.sleep(0.3)  # past the failure throttle of the wrong guess above
    assert call(g, "/b/get", creds(user2, "correct horse")).status == 200
    body["basic_auth_data"] = {"password": "new one"}
    assert tyk(g, "PUT", "/tyk/keys/%s?username=true&org_id=" % user2 + ORG, body).status == 200
    assert stored(user2)["basic_auth_data"]["password"].startswith("$2a$10$")
    assert stored(user2)["basic_auth_data"]["password"] != s["basic_auth_data"]["password"]


def test_plain_and_sha256_passwords(make_gateway, upstream):
    g = make_gateway(conf=conf(basic_auth_hash_key_function="sha256"),
                     apis=[basic_api("b", upstream.url("/"))])
    user = "carol-" + uuid.uuid4().hex[:6]
    make_user(g, "b", user, "pw-sha")
    s = stored(user)
    assert s["basic_auth_data"] == {"password": hashlib.sha256(b"pw-sha").hexdigest(),
                                    "hash_type": "sha256"}
    assert call(g, "/b/get", creds(user, "pw-sha")).status == 200
    unauthorised(call(g, "/b/get", creds(user, "pw-sha ")), "b")
    # a session written as Tyk writes a plain one
    rc = session_redis().client()
    plain = "dave-" + uuid.uuid4().hex[:6]
    put_session(rc, generate_token(ORG, plain),
                tyk_session(["b"], org_id=ORG, basic_auth_data={"password": "open sesame",
                                                                "hash_type": ""}))
    rc.close()
    assert call(g, "/b/get", creds(plain, "open sesame")).status == 200
    unauthorised(call(g, "/b/get", creds(plain, "open sesame!")), "b")


def test_failed_bcrypt_checks_are_remembered(make_gateway, upstream):
    g = make_gateway(conf=conf(), apis=[basic_api("b", upstream.url("/"))], workers=1)
    user = "erin-" + uuid.uuid4().hex[:6]
    make_user(g, "b", user, "good")
    # a wrong guess, then at once the right password (not yet known good):
    # refused without a bcrypt for 250 ms
    unauthorised(call(g, "/b/get", creds(user, "guess-1")), "b")
    unauthorised(call(g, "/b/get", creds(user, "good")), "b")
    time.sleep(0.3)
    assert call(g, "/b/get", creds(user, "good")).status == 200
    # now known good: a guess in between does not lock the user out
    unauthorised(call(g, "/b/get", creds(user, "guess-2")), "b")
    assert call(g, "/b/get", creds(user, "good")).status == 200
    # caching off: the throttle after a failure still holds, a good check always runs bcrypt
    g2 = make_gateway(conf=conf(), workers=1, name="nocache", apis=[
        basic_api("nc", upstream.url("/"), basic_auth={"disable_caching": True})])
    user = "frank-" + uuid.uuid4().hex[:6]
    make_user(g2, "nc", user, "good")
    assert call(g2, "/nc/get", creds(user, "good")).status == 200
    unauthorised(call(g2, "/nc/get", creds(user, "bad")), "nc")
    unauthorised(call(g2, "/nc/get", creds(user, "good")), "nc")
    time.sleep(0.3)
    assert call(g2, "/nc/get", creds(user, "good")).status == 200


def test_many_bcrypt_checks_do_not_stall_the_worker(make_gateway, upstream):
    """Eight users log in at once on one worker (each a ~55 ms bcrypt):
    all succeed, and a keyless request sent meanwhile is answered before
    the last of them (the bcrypts run on the thread pool, not the loop)."""
    import threading
    g = make_gateway(conf=conf(), workers=1, apis=[basic_api("b", upstream.url("/")),
                                                   api_def("open", "/open/", upstream.url("/"))])
    users = ["gina-%d-%s" % (i, uuid.uuid4().hex[:4]) for i in range(8)]
    for u in users:
        make_user(g, "b", u, "pw-" + u)
    done = []

    def login(u):
        done.append((call(g, "/b/get", creds(u, "pw-" + u)).status, time.monotonic()))

    ts = [threading.Thread(target=login, args=(u,)) for u in users]
    for t in ts:
        t.start()
    time.sleep(0.01)
    r = call(g, "/open/get")
    t_open = time.monotonic()
    for t in ts:
        t.join()
    assert r.status == 200
    assert [s for s, _ in done] == [200] * 8
    assert t_open < max(t for _, t in done)


def test_credentials_from_the_body(make_gateway, upstream):
    """basic_auth.extract_from_body: when the header is missing or malformed,
    group 1 of body_user_regexp / body_password_regexp (TYK-COMPAT 18.2 step
    3); Tyk's 400s when the body has no such match; the body still reaches
    the upstream whole."""
    d = basic_api("bb", upstream.url("/"), basic_auth={
        "extract_from_body": True, "body_user_regexp": "<User>(\\w+)</User>",
        "body_password_regexp": "<Password>([^<]+)</Password>"})
    g = make_gateway(conf=conf(), apis=[d])
    user = "carol" + uuid.uuid4().hex[:6]
    make_user(g, "bb", user, "pw-body")
    body = ("<Login><User>%s</User><Password>pw-body</Password></Login>" % user).encode()
    r = g.request("POST", "/bb/echo", [("Content-Type", "application/xml")], body)
    assert r.status == 200, r
    assert r.json()["body_len"] == len(body)
    # the header still works and wins when well formed
    assert call(g, "/bb/echo", creds(user, "pw-body")).status == 200
    # a malformed header falls back to the body too
    r = g.request("POST", "/bb/echo", [("Authorization", "Basic !!!")], body)
    assert r.status == 200, r
    # (a wrong password from here on: the user's failed-check throttle applies)
    bad = ("<Login><User>%s</User><Password>wrong</Password></Login>" % user).encode()
    unauthorised(g.request("POST", "/bb/echo", [], bad), "bb")
    r = g.request("POST", "/bb/echo", [], b"<Login><Password>x</Password></Login>")
    assert (r.status, r.body) == (400, tyk_error("Body do not contain username")), r
    r = g.request("POST", "/bb/echo", [], ("<User>%s</User>" % user).encode())
    assert (r.status, r.body) == (400, tyk_error("Body do not contain password")), r
