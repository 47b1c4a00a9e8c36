"""Rate limits (issue 6) in Turnpike's own tiers, as a Tyk user meets them:
a key's `rate` per `per` seconds, hammered by many connections through every
worker of one node and through several nodes sharing one Redis.

- "exact" (turnpike.rate_limiter): GCRA in Redis, one script per decision,
  so a limit of R per window admits exactly R however the load is spread;
- "local" (the default, Tyk's DRL role): GCRA in the node's shared memory,
  shared exactly by the node's workers; with N live nodes (announced through
  Redis) each node admits its share R/N, and a limit too small to share
  (rate/per <= N * drl_threshold, Tyk's rule) goes to the exact limiter, so
  a low rate on three nodes still admits its limit (Tyk #1287);
- refused requests cost nothing, so a client that slows down recovers;
- per-endpoint key limits (access_rights[api].endpoints) and allowance
  scopes name Tyk's counter keys; the quota is decided in the same script as
  the rate in the exact tier, and a request refused by the rate does not use
  quota.

Node counting uses each test's own Redis: the session Redis sees every
gateway of the run announce itself."""
import json
import threading
import time

from conftest import run_turnpike, wait_for
from test_keys import access, assert_error, create_key, new_org, token_api, uid, use
from test_control import admin as admin_cmd
from test_quota import CONF
from tykkeys import hash_hex, hash_key, tyk_session
import redis as redislib


class Cluster:
    """N Turnpike nodes on one Redis serving API <api> for org <org>."""

    def __init__(self, make_gateway, upstream, tmp_path, red, nodes, tier="local", workers=2,
                 conf=None, tp=None, **api_extra):
        self.org, self.api = new_org(), "rl-" + uid()[:8]
        self.red = red
        self.nodes, self.socks = [], []
        for i in range(nodes):
            c = dict(CONF)
            sock = tmp_path / ("n%d-%s.sock" % (i, uid()[:4]))
            c.update({"storage": {"type": "redis", "host": "127.0.0.1", "port": red.port},
                      "drl_notification_frequency": 1,
                      "turnpike": dict({"rate_limiter": tier, "admin_socket": str(sock)},
                                       **(tp or {}))})
            c.update(conf or {})
            api = token_api(self.api, "/%s/" % self.api, upstream.url("/"), self.org, **api_extra)
            self.nodes.append(make_gateway(conf=c, apis=[api], workers=workers))
            self.socks.append(sock)

    def key(self, **fields):
        return create_key(self.nodes[0], self.org, access(self.api), **fields)["key"]

    def wait_nodes(self, n, timeout=10):
        """Every node's workers count <n> live nodes."""
        def seen():
            return all(("# nodes %d," % n) in admin_cmd(s, "show limits all") for s in self.socks)
        wait_for(seen, timeout, step=0.1, what="%d nodes counted" % n)
        time.sleep(1.2)  # one more announcement: every worker has read it

    def redis(self):
        return redislib.Redis(host="127.0.0.1", port=self.red.port, decode_responses=True)


def hammer(nodes, path, key, total, threads=16):
    """<total> requests over fresh connections from <threads> threads, spread
    round-robin over <nodes>; returns the status codes."""
    codes, lock = [], threading.Lock()
    per = total // threads

    def run(t):
        got = []
        for i in range(per):
            g = nodes[(t + i) % len(nodes)]
            got.append(use(g, path, key).status)
        with lock:
            codes.extend(got)

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return codes


def test_exact_tier_admits_exactly_the_limit_across_workers(make_gateway, upstream, tmp_path,
                                                            make_redis):
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 1, tier="exact")
    key = c.key(rate=20, per=60)
    codes = hammer(c.nodes, "/%s/x" % c.api, key, 160)
    assert codes.count(200) == 20 and codes.count(429) == 140, codes
    r = use(c.nodes[0], "/%s/x" % c.api, key)
    assert_error(r, 429, "Rate Limit Exceeded")
    # one O(1) counter in Redis beside Tyk's limiter key name, with an expiry
    rk = "rate-limit-%s.gcra" % hash_key(key, True)
    red = c.redis()
    assert red.type(rk) == "string" and 0 < red.pttl(rk) <= 61_000


def test_local_tier_one_node_is_exact_across_workers(make_gateway, upstream, tmp_path,
                                                     make_redis):
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 1, tier="local", workers=3)
    key = c.key(rate=20, per=60)
    red = c.redis()
    before = red.info("commandstats")
    codes = hammer(c.nodes, "/%s/x" % c.api, key, 160)
    assert codes.count(200) == 20 and codes.count(429) == 140, codes
    after = red.info("commandstats")
    # the rate limit itself costs Redis nothing (only announcements run)
    evals = sum(after.get(k, {}).get("calls", 0) - before.get(k, {}).get("calls", 0)
                for k in ("cmdstat_evalsha", "cmdstat_eval"))
    assert evals < 20, (before, after)
    assert red.get("rate-limit-%s.gcra" % hash_key(key, True)) is None
    out = admin_cmd(c.socks[0], "show limits " + hash_key(key, True))
    assert "rate-limit-%s local limit=20 remaining=0" % hash_key(key, True) in out, out


def test_exact_tier_two_nodes_admit_the_limit_once(make_gateway, upstream, tmp_path, make_redis):
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 2, tier="exact")
    key = c.key(rate=15, per=60)
    codes = hammer(c.nodes, "/%s/x" % c.api, key, 128)
    assert codes.count(200) == 15, codes


def test_local_tier_three_nodes_share_the_limit(make_gateway, upstream, tmp_path, make_redis):
    # drl_threshold tiny: 30 per 60 s is shared (each node 10), not sent to Redis
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 3, tier="local",
                conf={"drl_threshold": 0.01})
    c.wait_nodes(3)
    key = c.key(rate=30, per=60)
    codes = hammer(c.nodes, "/%s/x" % c.api, key, 144)
    assert codes.count(200) == 30, codes
    assert c.redis().get("rate-limit-%s.gcra" % hash_key(key, True)) is None  # counted locally
    # one node alone admits only its share (the bound of the local tier)
    key2 = c.key(rate=30, per=60)
    codes = hammer(c.nodes[:1], "/%s/x" % c.api, key2, 48)
    assert codes.count(200) == 10, codes


def test_low_rate_on_three_nodes_still_admits_its_limit(make_gateway, upstream, tmp_path,
                                                        make_redis):
    # Tyk #1287: 3 per minute on three nodes. rate/per <= nodes * drl_threshold
    # (default 5): the exact limiter decides, so the limit is neither 3 per node
    # nor zero.
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 3, tier="local")
    c.wait_nodes(3)
    key = c.key(rate=3, per=60)
    codes = hammer(c.nodes, "/%s/x" % c.api, key, 96)
    assert codes.count(200) == 3, codes
    assert c.redis().type("rate-limit-%s.gcra" % hash_key(key, True)) == "string"


def test_a_node_that_goes_away_stops_counting(make_gateway, upstream, tmp_path, make_redis):
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 2, tier="local",
                conf={"drl_threshold": 0.01})
    c.wait_nodes(2)
    c.nodes[1].stop()
    t0 = time.time()
    del c.socks[1], c.nodes[1]
    c.wait_nodes(1, timeout=8)
    assert time.time() - t0 < 6.5
    key = c.key(rate=10, per=60)
    codes = hammer(c.nodes, "/%s/x" % c.api, key, 32)
    assert codes.count(200) == 10, codes  # the survivor has the whole limit again


def test_refused_requests_cost_nothing_so_a_client_recovers(make_gateway, upstream, tmp_path,
                                                           make_redis):
    for tier in ("exact", "local"):
        c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 1, tier=tier)
        key = c.key(rate=2, per=2)  # a burst of 2, then one per second
        path = "/%s/x" % c.api
        assert [use(c.nodes[0], path, key).status for _ in range(2)] == [200, 200]
        t0 = time.time()
        spam = []
        while time.time() - t0 < 0.6:
            spam.append(use(c.nodes[0], path, key).status)
        assert set(spam) == {429}, (tier, spam)
        time.sleep(max(0, t0 + 1.15 - time.time()))
        assert use(c.nodes[0], path, key).status == 200, tier


def test_per_endpoint_key_limits_and_scopes(make_gateway, upstream, tmp_path, make_redis):
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 1, tier="exact")
    eps = [{"path": "/slow", "methods": [{"name": "GET", "limit": {"rate": 2, "per": 60}}]}]
    rights = access(c.api, endpoints=eps)
    key = create_key(c.nodes[0], c.org, rights, rate=100, per=60)["key"]
    g, p = c.nodes[0], "/%s/" % c.api
    assert [use(g, p + "slow", key).status for _ in range(3)] == [200, 200, 429]
    assert [use(g, p + "fast", key).status for _ in range(3)] == [200, 200, 200]
    h = hash_key(key, True)
    red = c.redis()
    assert red.type("rate-limit-%s-%s.gcra" % (h, hash_hex("murmur32", "GET:/slow"))) == "string"
    assert red.type("rate-limit-%s.gcra" % h) == "string"
    # a per-API limit counts under rate-limit-<scope>-<hash>; without policies
    # Tyk's ApplyPolicies makes the scope the API's ID
    rights = access(c.api, limit={"rate": 2, "per": 60, "quota_max": -1})
    key2 = create_key(g, c.org, rights)["key"]
    assert [use(g, p + "x", key2).status for _ in range(3)] == [200, 200, 429]
    assert red.type("rate-limit-%s-%s.gcra" % (c.api, hash_key(key2, True))) == "string"
    assert red.type("rate-limit-%s.gcra" % hash_key(key2, True)) == "none"


def test_quota_in_the_same_script_and_not_spent_by_refused_requests(make_gateway, upstream,
                                                                     tmp_path, make_redis):
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 2, tier="exact")
    key = c.key(rate=2, per=60, quota_max=10, quota_renewal_rate=60)
    qk = "quota-" + hash_key(key, True)
    red = c.redis()
    before = red.info("commandstats")
    got = [use(c.nodes[i % 2], "/%s/x" % c.api, key) for i in range(5)]
    after = red.info("commandstats")
    assert [r.status for r in got] == [200, 200, 429, 429, 429]
    assert int(red.get(qk)) == 2  # only the admitted requests used quota
    assert (got[1].header("X-RateLimit-Limit"), got[1].header("X-RateLimit-Remaining")) == \
        ("10", "8")
    def calls(name):
        return after.get(name, {}).get("calls", 0) - before.get(name, {}).get("calls", 0)
    # one script per request (sent whole once, when Redis does not know it yet)
    assert calls("cmdstat_evalsha") == 5 and calls("cmdstat_eval") <= 1, (before, after)
    # the quota counts down across nodes and refuses with Tyk's 403
    key2 = c.key(rate=1000, per=1, quota_max=4, quota_renewal_rate=60)
    codes = [use(c.nodes[i % 2], "/%s/x" % c.api, key2).status for i in range(6)]
    assert codes == [200, 200, 200, 200, 403, 403]
    assert_error(use(c.nodes[1], "/%s/x" % c.api, key2), 403, "Quota exceeded")


def test_concurrent_first_requests_exact_tier_quota(make_gateway, upstream, tmp_path,
                                                    make_redis):
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 2, tier="exact")
    key = c.key(rate=1000, per=1, quota_max=25, quota_renewal_rate=60)
    codes = hammer(c.nodes, "/%s/x" % c.api, key, 64)
    assert codes.count(200) == 25 and codes.count(403) == 39, codes
    qk = "quota-" + hash_key(key, True)
    assert int(c.redis().get(qk)) == 64 and 0 < c.redis().pttl(qk) <= 60_000


def test_quota_remaining_is_written_back_into_the_session(make_gateway, upstream, tmp_path,
                                                          make_redis):
    # as Tyk's updateSessionQuota: the root for the session's quota, the
    # per-API limit for a scoped one; both nodes write the counter's truth
    # no session cache: every request reads the session as written back
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 2, tier="local",
                conf={"local_session_cache": {"disable_cached_session_state": True}},
                tp={"quota_writeback": 1})
    key = c.key(quota_max=10, quota_renewal_rate=600)
    for i in range(4):
        assert use(c.nodes[i % 2], "/%s/x" % c.api, key).status == 200
    red = c.redis()
    sk = "apikey-" + hash_key(key, True)
    ttl = red.ttl(sk)
    t0 = int(time.time())

    def written():
        s = json.loads(red.get(sk))
        return s["quota_remaining"] == 6 and t0 + 590 <= s["quota_renews"] <= t0 + 601
    wait_for(written, 5, step=0.2, what="quota_remaining written back")
    assert red.ttl(sk) in (ttl, ttl - 1, ttl - 2, ttl - 3, ttl - 4, ttl - 5)  # TTL kept
    # the API's empty per-API limit stays empty (Tyk skips empty limits), so
    # the session's own quota still applies to the session as written back
    limit = json.loads(red.get(sk))["access_rights"][c.api]["limit"]
    assert limit in (None, {}) or not any(v for k, v in limit.items() if k != "smoothing"), limit
    codes = [use(c.nodes[i % 2], "/%s/x" % c.api, key).status for i in range(7)]
    assert codes == [200] * 6 + [403], codes
    rights = access(c.api, limit={"rate": 0, "per": 0, "quota_max": 3,
                                  "quota_renewal_rate": 600})
    key2 = create_key(c.nodes[0], c.org, rights)["key"]
    codes = [use(c.nodes[i % 2], "/%s/x" % c.api, key2).status for i in range(4)]
    assert codes == [200, 200, 200, 403]
    sk2 = "apikey-" + hash_key(key2, True)
    wait_for(lambda: json.loads(red.get(sk2))["access_rights"][c.api]["limit"]
             ["quota_remaining"] == 0, 5, step=0.2, what="scoped quota written back")


def test_local_tier_leases_large_quotas_and_never_exceeds_them(make_gateway, upstream, tmp_path,
                                                              make_redis):
    # a quota of 4000 is leased 4 at a time (a thousandth) by each node:
    # most requests ask Redis nothing, and the counter moves in leases
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 2, tier="local")
    key = c.key(quota_max=4000, quota_renewal_rate=600)
    red = c.redis()
    qk = "quota-" + hash_key(key, True)
    before = red.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    codes = [use(c.nodes[i % 2], "/%s/x" % c.api, key).status for i in range(40)]
    after = red.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert codes == [200] * 40
    count = int(red.get(qk))
    assert count % 4 == 0 and 40 <= count <= 40 + 2 * 4, count
    assert after - before <= 40 // 4 + 2 + 4, (before, after)  # + announcements
    out = admin_cmd(c.socks[0], "show limits " + hash_key(key, True))
    assert "%s quota-lease limit=4000" % qk in out, out
    # the last slices are cut to what the quota has left: 2000 - 1997 = 3 pass
    key2 = c.key(quota_max=2000, quota_renewal_rate=600)
    qk2 = "quota-" + hash_key(key2, True)
    red.set(qk2, 1997, px=600_000)
    codes = [use(c.nodes[i % 2], "/%s/x" % c.api, key2).status for i in range(8)]
    assert codes.count(200) == 3 and codes.count(403) == 5, codes
    r = use(c.nodes[0], "/%s/x" % c.api, key2)
    assert_error(r, 403, "Quota exceeded")


def test_bad_limit_settings_are_refused_with_their_path(tmp_path, upstream):
    for conf, path, text in (
            ({"turnpike": {"rate_limiter": "fast"}}, "$.turnpike.rate_limiter",
             'expected "local" or "exact", got "fast"'),
            ({"rate_limit_response_headers": "both"}, "$.rate_limit_response_headers",
             'expected "quotas" or "rate_limits", got "both"'),
            ({"drl_threshold": "5"}, "$.drl_threshold", "expected number, got string")):
        p = tmp_path / "tyk.conf"
        p.write_text(json.dumps(dict({"listen_port": 8080, "app_path": str(tmp_path)}, **conf)))
        r = run_turnpike(["-t", "--conf", str(p)])
        # log lines quote the message: its quotes are escaped
        assert r.returncode == 1 and path in r.stderr, r.stderr
        assert text.replace('"', '\\"') in r.stderr, r.stderr
    # an API-wide endpoint limit whose pattern cannot work rejects the definition
    apps = tmp_path / "apps"
    apps.mkdir()
    d = token_api("bad", "/bad/", upstream.url("/"), "o")
    d["version_data"]["versions"]["Default"].update(
        {"use_extended_paths": True,
         "extended_paths": {"rate_limit": [{"path": "/a(", "method": "GET", "rate": 1,
                                            "per": 1}]}})
    (apps / "bad.json").write_text(json.dumps(d))
    p.write_text(json.dumps({"listen_port": 8080, "app_path": str(apps)}))
    r = run_turnpike(["-t", "--conf", str(p)])
    assert r.returncode == 1, r.stderr
    assert "$.version_data.versions.Default.extended_paths.rate_limit[0]" in r.stderr, r.stderr


def test_odd_limit_fields_in_a_session_do_not_break_the_key(make_gateway, upstream, tmp_path,
                                                           make_redis):
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 1, tier="exact")
    eps = [{"path": "/a(", "methods": [{"name": "GET", "limit": {"rate": 1, "per": 60}}]},
           {"path": "/ok", "methods": [{"name": "GET", "limit": {"rate": 1, "per": 60}}]},
           {"path": 7}, "x"]
    # a session as something else may have written it straight into Redis
    key = "odd-" + uid()
    sess = tyk_session([c.api], org_id=c.org, rate="many", per=-1, quota_max="lots")
    sess["access_rights"][c.api]["endpoints"] = eps
    c.redis().set("apikey-" + hash_key(key, True), json.dumps(sess))
    g, p = c.nodes[0], "/%s/" % c.api
    assert [use(g, p + "x", key).status for _ in range(3)] == [200, 200, 200]
    assert [use(g, p + "ok", key).status for _ in range(2)] == [200, 429]
    assert "entry skipped" in g.log_path.read_text()


def test_a_body_waits_while_its_limit_asks_redis(make_gateway, upstream, tmp_path, make_redis):
    """A POST whose rate limit is decided in Redis (exact tier) keeps its
    body: the upstream gets every byte, small or beyond one 64 KiB block,
    and the connection serves the next request."""
    import hashlib
    c = Cluster(make_gateway, upstream, tmp_path, make_redis(), 1, tier="exact", workers=1)
    key = c.key(rate=100, per=60, quota_max=50, quota_renewal_rate=3600)
    g, p = c.nodes[0], "/%s/echo" % c.api
    with g.conn() as conn:
        for size in (10, 200000, 0, 70000):
            body = bytes((i * 7) % 251 for i in range(size))
            r = conn.request("POST", p, [("Authorization", key)], body)
            assert r.status == 200, r
            seen = r.json()
            assert seen["body_len"] == size, seen
            assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    red = c.redis()
    assert red.get("quota-" + hash_key(key, True)) == "4"
