"""The response cache (TYK-COMPAT 21.8): cache_options, extended_paths.cache
and advance_cache_config; entries in Redis under Tyk's key and in Tyk's
format (base64 of the wire response, "|", expiry), so Tyk nodes and this
gateway read each other's; the node's shared-memory front; upstream cache
control; If-None-Match; the REST purge and the DeleteAPICache signal."""
import base64
import hashlib
import json
import threading
import time

import pytest

from conftest import HOST, ScriptedUpstream, api_def, wait_for
from test_access import NODE_SECRET, SECRET, conf, get, key_with, keyed, not_versioned, wait_subscribers
from test_analytics import records
from test_control import sign


class Counting:
    """A scripted upstream whose body says how many requests it answered."""

    def __init__(self, status=200, headers=(), chunked=False):
        self.n = 0
        self.lock = threading.Lock()
        self.status = status
        self.headers = list(headers)
        self.chunked = chunked
        self.up = ScriptedUpstream(self.respond)

    def respond(self, head, body):
        with self.lock:
            self.n += 1
            n = self.n
        line = head.split(b"\r\n", 1)[0].decode()
        payload = json.dumps({"n": n, "line": line, "body": body.decode("latin-1")}).encode()
        h = "".join("%s: %s\r\n" % kv for kv in self.headers)
        if self.chunked:
            framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
            return (b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%sTransfer-Encoding: chunked\r\n\r\n"
                    % (self.status, h.encode())) + framed
        return (b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n"
                % (self.status, h.encode(), len(payload))) + payload

    def url(self, path="/"):
        return self.up.url(path)

    def stop(self):
        self.up.stop()


@pytest.fixture
def counting():
    made = []

    def make(**kw):
        c = Counting(**kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def cached_api(api_id, listen_path, target, extended=None, keyless=True, **cache):
    d = api_def(api_id, listen_path, target) if keyless else keyed(api_id, listen_path, target)
    opts = {"enable_cache": True, "cache_timeout": 60}
    opts.update(cache)
    d["cache_options"] = opts
    return not_versioned(d, use_extended_paths=extended is not None, extended_paths=extended or {})


def tyk_key(api_id, token, method, url, extra=""):
    """Tyk's key: cache-<api_id> + <api_id><token><md5(METHOD-url[-headers][-bodyhash])>."""
    s = "%s-%s" % (method, url) + extra
    return "cache-%s%s%s%s" % (api_id, api_id, token, hashlib.md5(s.encode()).hexdigest())


def decode_entry(raw):
    b64, ts = raw.split("|")
    return base64.b64decode(b64), int(ts)


def stored(rc, api_id, n):
    """Waits until <n> entries of <api_id> are in Redis (they are written
    once the response went out)."""
    wait_for(lambda: len(rc.keys("cache-%s*" % api_id)) >= n, 3, what="%d entries of %s" % (n, api_id))


def n_of(r):
    assert r.status in (200, 201, 500), r
    return r.json()["n"]


def gw_of(make_gateway, rc_srv, apis, workers=2, **kw):
    return make_gateway(conf=conf(rc_srv, node_secret=NODE_SECRET, **kw), apis=apis, workers=workers)


@pytest.fixture
def red(make_redis):
    srv = make_redis()
    c = srv.client()
    yield srv, c
    c.close()


# ---- hit, miss, expiry ---------------------------------------------------------------------------

def test_hit_miss_and_expiry_across_workers(make_gateway, red, counting):
    srv, rc = red
    up = counting(headers=[("X-Upstream", "yes")])
    g = gw_of(make_gateway, srv, [cached_api("c1", "/c1/", up.url("/"), cache_all_safe_requests=True,
                                             cache_timeout=2)])
    r = get(g, "/c1/item?x=1")
    assert r.status == 200 and r.header("X-Tyk-Cached-Response") is None and n_of(r) == 1
    # stored under Tyk's key, in Tyk's format, with the TTL
    key = tyk_key("c1", HOST, "GET", "/c1/item?x=1")
    wait_for(lambda: rc.exists(key), 3, what="the entry in Redis")
    wire, expiry = decode_entry(rc.get(key))
    assert wire.startswith(b"HTTP/1.1 200 X\r\n")
    assert b"\r\nX-Upstream: yes\r\n" in wire and b'"n": 1' in wire
    assert abs(expiry - (time.time() + 2)) <= 1.5
    assert 0 < rc.ttl(key) <= 2
    # new connections reach both workers: every one is a hit
    for _ in range(8):
        r = get(g, "/c1/item?x=1")
        assert r.status == 200 and n_of(r) == 1, r
        assert r.header("X-Tyk-Cached-Response") == "1"
        assert r.header("X-Upstream") == "yes"
        assert r.header("Content-Length") == str(len(r.body))
    assert up.n == 1
    # another query is another entry
    assert n_of(get(g, "/c1/item?x=2")) == 2
    # POST is not a safe method: never cached by cache_all_safe_requests
    assert n_of(g.request("POST", "/c1/item?x=1", body=b"{}")) == 3
    assert n_of(g.request("POST", "/c1/item?x=1", body=b"{}")) == 4
    # HEAD is, on its own key
    h = g.request("HEAD", "/c1/item?x=1")
    assert h.status == 200 and h.body == b""
    assert up.n == 5
    wait_for(lambda: rc.exists(tyk_key("c1", HOST, "HEAD", "/c1/item?x=1")), 3, what="the HEAD entry")
    h = g.request("HEAD", "/c1/item?x=1")
    assert h.status == 200 and h.body == b"" and h.header("X-Tyk-Cached-Response") == "1"
    assert up.n == 5
    # expired: the upstream again, and stored again
    time.sleep(2.3)
    r = get(g, "/c1/item?x=1")
    assert r.header("X-Tyk-Cached-Response") is None and n_of(r) == 6
    wait_for(lambda: rc.exists(key), 3, what="the new entry")
    r = get(g, "/c1/item?x=1")
    assert r.header("X-Tyk-Cached-Response") == "1" and n_of(r) == 6


def test_only_listed_paths_and_codes(make_gateway, red, counting):
    srv, rc = red
    ok, err = counting(), counting(status=500)
    ext = {"cache": ["/listed"]}
    g = gw_of(make_gateway, srv, [
        cached_api("c2", "/c2/", ok.url("/"), ext),
        cached_api("c3", "/c3/", err.url("/"), {"cache": ["/boom"]}, cache_response_codes=[200])])
    assert n_of(get(g, "/c2/listed")) == 1
    stored(rc, "c2", 1)
    assert n_of(get(g, "/c2/listed")) == 1  # cached
    assert n_of(get(g, "/c2/other")) == 2
    assert n_of(get(g, "/c2/other")) == 3  # not a cached path
    # a 500 is not among cache_response_codes: never stored
    assert get(g, "/c3/boom").status == 500
    assert get(g, "/c3/boom").status == 500
    assert err.n == 2
    assert rc.keys("cache-c3*") == []


def test_chunked_upstream_is_stored_with_a_length(make_gateway, red, counting):
    srv, rc = red
    up = counting(chunked=True)
    g = gw_of(make_gateway, srv, [cached_api("ch", "/ch/", up.url("/"), cache_all_safe_requests=True)])
    first = get(g, "/ch/x")
    assert n_of(first) == 1
    key = tyk_key("ch", HOST, "GET", "/ch/x")
    wait_for(lambda: rc.exists(key), 3, what="the entry")
    wire, _ = decode_entry(rc.get(key))
    head, body = wire.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding" not in head and (b"Content-Length: %d" % len(body)) in head
    r = get(g, "/ch/x")
    assert r.header("X-Tyk-Cached-Response") == "1" and r.body == first.body


# ---- what Tyk writes, this gateway reads ----------------------------------------------------------

def test_reads_entries_tyk_wrote_and_drops_bad_ones(make_gateway, red, counting):
    srv, rc = red
    up = counting()
    g = gw_of(make_gateway, srv, [cached_api("tk", "/tk/", up.url("/"), cache_all_safe_requests=True)])
    # as Go's Response.Write writes a body without a length: chunked, with hop-by-hop headers
    wire = (b"HTTP/1.1 203 Non-Authoritative Information\r\nConnection: keep-alive\r\n"
            b"Content-Type: text/plain\r\nEtag: \"v7\"\r\nKeep-Alive: timeout=5\r\n"
            b"Transfer-Encoding: chunked\r\nX-From: tyk\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    key = tyk_key("tk", HOST, "GET", "/tk/from-tyk")
    rc.set(key, base64.b64encode(wire) + b"|%d" % (time.time() + 60), ex=60)
    r = get(g, "/tk/from-tyk")
    assert r.status == 203 and r.body == b"hello world"
    assert r.header("X-Tyk-Cached-Response") == "1" and r.header("X-From") == "tyk"
    assert r.header("Keep-Alive") is None and r.header("Transfer-Encoding") is None
    assert r.header("Content-Length") == "11"
    # If-None-Match naming the stored Etag: 304 without a body
    r = get(g, "/tk/from-tyk", headers=[("If-None-Match", '"v7"')])
    assert r.status == 304 and r.body == b"" and r.header("X-Tyk-Cached-Response") == "1"
    r = get(g, "/tk/from-tyk", headers=[("If-None-Match", '"v8"')])
    assert r.status == 203 and r.body == b"hello world"
    assert up.n == 0
    # an expired timestamp, an undecodable value: deleted, and the upstream answers
    for i, bad in enumerate([base64.b64encode(wire) + b"|%d" % (time.time() - 5), b"not base64 at all|99999999999",
                             b"no timestamp", base64.b64encode(b"garbage") + b"|99999999999"]):
        k = tyk_key("tk", HOST, "GET", "/tk/bad%d" % i)
        rc.set(k, bad)
        r = get(g, "/tk/bad%d" % i)
        assert r.status == 200 and r.header("X-Tyk-Cached-Response") is None and n_of(r) == i + 1
        # ... and what it stored replaces the bad entry
        wait_for(lambda: rc.get(k).startswith("SFRUUC8xLjEgMjAw"), 3, what="a fresh entry")


# ---- keys: token, headers, bodies ----------------------------------------------------------------

def test_key_per_token_headers_and_body(make_gateway, red, counting):
    srv, rc = red
    up = counting()
    ext = {"advance_cache_config": [
        {"path": "/search", "method": "POST", "cache_key_regex": "\"q\":\"[a-z]+\"", "timeout": 7},
        {"path": "/body", "method": "POST"},
        {"path": "/short", "method": "GET", "timeout": 3, "cache_response_codes": [200]}]}
    api = cached_api("kb", "/kb/", up.url("/"), ext, keyless=False, cache_by_headers=["X-Tenant"])
    api["version_data"]["versions"]["Default"]["use_extended_paths"] = True
    g = gw_of(make_gateway, srv, [api])
    t1, t2 = key_with(rc, ["kb"]), key_with(rc, ["kb"])
    hdr = [("X-Tenant", "acme")]
    assert n_of(get(g, "/kb/short", t1, headers=hdr)) == 1
    stored(rc, "kb", 1)
    assert n_of(get(g, "/kb/short", t1, headers=hdr)) == 1
    assert n_of(get(g, "/kb/short", t2, headers=hdr)) == 2  # each key its own entry
    assert n_of(get(g, "/kb/short", t1, headers=[("X-Tenant", "other")])) == 3
    key = tyk_key("kb", t1, "GET", "/kb/short", "-X-Tenant-acme")
    assert rc.exists(key) and 0 < rc.ttl(key) <= 3  # the endpoint's timeout
    # POST: the body's hash is part of the key, or only what cache_key_regex finds
    post = lambda path, body: g.request("POST", path, [("Authorization", t1)] + hdr, body=body)
    assert n_of(post("/kb/body", b'{"a":1}')) == 4
    stored(rc, "kb", 4)
    assert n_of(post("/kb/body", b'{"a":1}')) == 4
    assert n_of(post("/kb/body", b'{"a":2}')) == 5
    assert n_of(post("/kb/search", b'{"q":"cats","page":1}')) == 6
    stored(rc, "kb", 6)
    assert n_of(post("/kb/search", b'{"page":2,"q":"cats"}')) == 6  # the same match
    assert n_of(post("/kb/search", b'{"q":"dogs"}')) == 7
    ttls = [rc.ttl(k) for k in rc.keys("cache-kb*")]
    assert 7 in ttls or 6 in ttls


def test_keyed_hit_carries_the_sessions_rate_limit_headers(make_gateway, red, counting):
    srv, rc = red
    up = counting(headers=[("X-RateLimit-Limit", "999")])
    g = gw_of(make_gateway, srv, [cached_api("rl", "/rl/", up.url("/"), keyless=False,
                                             cache_all_safe_requests=True)])
    tok = key_with(rc, ["rl"], quota_max=100, quota_remaining=100, quota_renewal_rate=3600)
    first = get(g, "/rl/q", tok)
    assert n_of(first) == 1
    stored(rc, "rl", 1)
    r = get(g, "/rl/q", tok)
    assert r.header("X-Tyk-Cached-Response") == "1" and n_of(r) == 1
    assert r.header("X-RateLimit-Limit") == "100"
    assert len(r.header_all("X-RateLimit-Limit")) == 1
    # no key, no answer: the cache comes after authentication
    assert get(g, "/rl/q").status == 401


# ---- upstream cache control -----------------------------------------------------------------------

def test_upstream_cache_control(make_gateway, red, counting):
    srv, rc = red
    forced = counting(status=500, headers=[("x-tyk-cache-action-set", "1"), ("x-ttl", "5")])
    g = gw_of(make_gateway, srv, [cached_api("uc", "/uc/", forced.url("/"), {"cache": ["/x"]},
                                             cache_response_codes=[200], enable_upstream_cache_control=True,
                                             cache_control_ttl_header="x-ttl", cache_timeout=100)])
    assert get(g, "/uc/x").status == 500
    stored(rc, "uc", 1)
    r = get(g, "/uc/x")
    assert r.status == 500 and r.header("X-Tyk-Cached-Response") == "1"
    assert forced.n == 1
    key = tyk_key("uc", HOST, "GET", "/uc/x")
    assert 0 < rc.ttl(key) <= 5


# ---- two nodes, purge ---------------------------------------------------------------------------

def test_two_nodes_share_entries_and_purge_reaches_both(make_gateway, red, counting):
    srv, rc = red
    up = counting()
    apis = [cached_api("tn", "/tn/", up.url("/"), cache_all_safe_requests=True)]
    ga = gw_of(make_gateway, srv, apis)
    gb = gw_of(make_gateway, srv, apis)
    wait_subscribers(srv, 2)
    assert n_of(get(ga, "/tn/a")) == 1
    wait_for(lambda: rc.keys("cache-tn*"), 3, what="the entry")
    for g in (ga, gb, ga, gb, gb):
        r = get(g, "/tn/a")
        assert r.header("X-Tyk-Cached-Response") == "1" and n_of(r) == 1
    assert up.n == 1
    # purge through one node's REST API: Redis and both nodes' fronts
    r = ga.request("DELETE", "/tyk/cache/tn", [("X-Tyk-Authorization", SECRET)])
    assert r.status == 200 and r.json() == {"status": "ok", "message": "cache invalidated"}
    assert rc.keys("cache-tn*") == []
    # every node's master purges again on the notification (as Tyk nodes do): wait for both
    for g in (ga, gb):
        wait_for(lambda: "DeleteAPICache for API tn: " in g.log(), 5, what="the nodes' purges")
    assert n_of(get(gb, "/tn/a")) == 2
    wait_for(lambda: rc.keys("cache-tn*"), 3, what="the new entry")  # stored once answered
    assert n_of(get(ga, "/tn/a")) == 2
    # any id is fine (Tyk does not check it); other methods are not
    r = ga.request("DELETE", "/tyk/cache/no-such-api", [("X-Tyk-Authorization", SECRET)])
    assert r.status == 200
    r = ga.request("GET", "/tyk/cache/tn", [("X-Tyk-Authorization", SECRET)])
    assert r.status == 405
    assert ga.request("DELETE", "/tyk/cache/tn").status == 403
    # the DeleteAPICache signal a dashboard sends does the same
    wait_for(lambda: n_of(get(gb, "/tn/a")) == 2 and rc.keys("cache-tn*"), 3, what="stored again")
    msg = {"command": "DeleteAPICache", "payload": "tn", "signature": sign("DeleteAPICache", "tn", NODE_SECRET),
           "algorithm": 5}
    before = ga.log().count("DeleteAPICache for API tn: ")
    rc.publish("tyk.cluster.notifications", json.dumps(msg))
    wait_for(lambda: ga.log().count("DeleteAPICache for API tn: ") > before, 5, what="the signal's purge")
    assert rc.keys("cache-tn*") == []
    assert n_of(get(ga, "/tn/a")) == 3


# ---- analytics, config errors ------------------------------------------------------------------

def test_hits_are_recorded_with_the_cached_response_tag(make_gateway, red, counting):
    srv, rc = red
    up = counting()
    g = gw_of(make_gateway, srv, [cached_api("an", "/an/", up.url("/"), cache_all_safe_requests=True)],
              enable_analytics=True, analytics_config={"storage_expiration_time": 60})
    get(g, "/an/a")
    wait_for(lambda: rc.keys("cache-an*"), 3, what="the entry")
    get(g, "/an/a")
    raw = srv.client(decode_responses=False)
    recs = records(raw, 2, key="analytics-tyk-system-analytics")
    raw.close()
    hit = [r for r in recs if "cached-response" in r["Tags"]]
    assert len(hit) == 1  # the proxied one has no such tag
    assert hit[0]["Tags"].index("cached-response") < hit[0]["Tags"].index("api-an")
    assert hit[0]["ResponseCode"] == 200 and hit[0]["Latency"]["Upstream"] == 0


@pytest.mark.parametrize("field,value,where", [
    ("cache_options", {"enable_cache": True, "cache_timeout": "60"}, "$.cache_options.cache_timeout"),
    ("cache_options", {"enable_cache": True, "cache_response_codes": ["200"]},
     "$.cache_options.cache_response_codes"),
    ("cache_options", {"enable_cache": True, "cache_by_headers": "X-A"}, "$.cache_options.cache_by_headers"),
    ("ext", {"advance_cache_config": [{"path": "/a", "method": "POST", "cache_key_regex": "(["}]},
     "extended_paths.advance_cache_config[0].cache_key_regex"),
    ("ext", {"cache": [{"path": "/a"}]}, "extended_paths.cache[0]"),
])
def test_bad_cache_settings_are_refused_with_their_path(tmp_path, field, value, where):
    from conftest import run_turnpike
    d = api_def("bad", "/bad/", "http://127.0.0.1:9/")
    if field == "ext":
        d = not_versioned(d, use_extended_paths=True, extended_paths=value)
        d["cache_options"] = {"enable_cache": True}
    else:
        d[field] = value
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "bad.json").write_text(json.dumps(d))
    c = tmp_path / "tyk.conf"
    c.write_text(json.dumps({"app_path": str(apps), "secret": "x"}))
    r = run_turnpike(["-t", "--conf", str(c)])
    assert r.returncode != 0
    assert "bad.json" in r.stderr and where in r.stderr, r.stderr


def test_hot_entries_are_served_from_the_nodes_front(make_gateway, red, counting):
    """Once a worker stored or read an entry, hits on the node cost no Redis GET."""
    srv, rc = red
    up = counting()
    g = gw_of(make_gateway, srv, [cached_api("fr", "/fr/", up.url("/"), cache_all_safe_requests=True)])
    assert n_of(get(g, "/fr/hot")) == 1
    wait_for(lambda: rc.keys("cache-fr*"), 3, what="the entry")
    time.sleep(0.2)

    def gets():
        return int(rc.info("commandstats").get("cmdstat_get", {}).get("calls", 0))

    before = gets()
    for _ in range(30):  # new connections: both workers
        r = get(g, "/fr/hot")
        assert r.header("X-Tyk-Cached-Response") == "1" and n_of(r) == 1
    assert gets() - before == 0
    # turnpike.response_cache_size 0: no front, every hit reads Redis
    g2 = gw_of(make_gateway, srv, [cached_api("fr", "/fr/", up.url("/"), cache_all_safe_requests=True)],
               turnpike={"response_cache_size": 0})
    before = gets()
    for _ in range(10):
        r = g2.get("/fr/hot")
        assert r.header("X-Tyk-Cached-Response") == "1" and n_of(r) == 1
    assert gets() - before >= 10
