"""Rate limits (the second part of issue 6), as a Tyk user meets them
(TYK-COMPAT 6.1-6.3, 6.5-6.7): a key's rate/per under each of Tyk's
switches in tyk.conf with Tyk's own Redis layouts (the sliding log
rate-limit-[scope-]<hash>[-<endpoint hash>], the sentinel's .BLOCKED key,
the fixed window's rate-limit-<hash>/<windowStartNs> counter, its windows
aligned as Go's time.Truncate aligns them), so that Tyk and Turnpike nodes
can share one limit; the API-wide limits (global_rate_limit and
extended_paths.rate_limit) with their 429 `API Rate Limit Exceeded`, in the
default per-node tier and in Turnpike's exact Redis tier; the X-RateLimit-*
headers of rate_limit_response_headers "rate_limits", with the values
Tyk's limiters report; Redis going away (500, or through with
turnpike.limits_fail_open); the admin socket's `show limits` and
`show stat`; throttling.

Limits here are small rates over long windows (60 s), so the tests count
exact numbers of requests; only throttling is about time (a wait of a
second or more, or none). Every gateway shares the session Redis unless a
test makes its own, so each test uses keys, orgs and API IDs of its own. A
test that needs the per-node ("local") tier with one node makes its own
Redis: the node count comes from the gateways announcing themselves in
Redis, and gateways of earlier tests linger there a few seconds."""
import re
import subprocess
import time

import pytest

from conftest import BIN, api_def, clean_env, wait_for
from test_keys import (SECRET, access, assert_error, create_key, new_org, rc, token_api,
                       uid, use)
from test_control import admin as admin_cmd
from tykkeys import hash_hex, hash_key

CONF = {"secret": SECRET, "hash_keys": True}
KEY_LIMIT = "Rate Limit Exceeded"
API_LIMIT = "API Rate Limit Exceeded"
LIMITER_DOWN = "there was a problem proxying the request"


def conf_with(extra=None, redis=None, timeout=None):
    c = dict(CONF)
    c.update(extra or {})
    if redis is not None:
        c["storage"] = {"type": "redis", "host": "127.0.0.1", "port": redis.port}
        if timeout is not None:
            c["storage"]["timeout"] = timeout
    return c


def keyless_api(api_id, org, target, **extra):
    d = api_def(api_id, "/%s/" % api_id, target, keyless=True)
    d["org_id"] = org
    d["version_data"] = {"not_versioned": True, "versions": {"Default": {"name": "Default"}}}
    d.update(extra)
    return d


def with_paths(d, **extended):
    """The API's Default version with use_extended_paths and <extended>."""
    d["version_data"]["versions"]["Default"].update(use_extended_paths=True,
                                                    extended_paths=extended)
    return d


def rate_key(token, scope=""):
    """Tyk's limiterKey for a key: rate-limit-[scope-]<key hash>."""
    return "rate-limit-%s%s" % (scope + "-" if scope else "", hash_key(token, True))


def api_rate_key(org, api_id, endpoint=None):
    """rate-limit-<HashKey("apilimiter-"+org+api[-HashStr("METHOD:path")])>
    (hash_keys true): the API-wide limit's key, or an endpoint's."""
    name = "apilimiter-" + org + api_id
    if endpoint is not None:
        name += "-" + hash_hex("murmur32", endpoint)
    return "rate-limit-" + hash_hex("murmur32", name)


def statuses(g, path, n, key=None):
    return [use(g, path, key).status for _ in range(n)]


def now_ns():
    return time.time_ns()


def ctl(g, *args):
    return subprocess.run([BIN, "ctl", "--conf", str(g.conf_path)] + list(args),
                          capture_output=True, text=True, timeout=20, env=clean_env())


# ---- 1. Tyk's sliding log (enable_redis_rolling_limiter) ---------------------------------

def test_rolling_limiter_keeps_tyks_sliding_log(make_gateway, upstream):
    org, api = new_org(), "rl-" + uid()[:8]
    g = make_gateway(conf=conf_with({"enable_redis_rolling_limiter": True}),
                     apis=[token_api(api, "/%s/" % api, upstream.url("/"), org)])
    key = create_key(g, org, access(api), rate=3, per=60)["key"]
    t0 = now_ns()
    assert statuses(g, "/%s/x" % api, 3, key) == [200, 200, 200]
    r = use(g, "/%s/x" % api, key)
    assert_error(r, 429, KEY_LIMIT)
    t1 = now_ns()
    c = rc()
    try:
        log = c.zrange(rate_key(key), 0, -1, withscores=True)
        # one member per request, blocked ones too: member = score = unix ns
        assert len(log) == 4, log
        for member, score in log:
            assert t0 - 10**9 <= int(member) <= t1 + 10**9, log
            assert score == float(member), log
        assert 0 < c.ttl(rate_key(key)) <= 60
        # hammering stays blocked: every refused request is logged as well
        assert_error(use(g, "/%s/x" % api, key), 429, KEY_LIMIT)
        assert c.zcard(rate_key(key)) == 5
    finally:
        c.close()


def test_rolling_limiter_honours_a_log_written_by_tyk(make_gateway, upstream):
    org, api = new_org(), "rl-" + uid()[:8]
    g = make_gateway(conf=conf_with({"enable_redis_rolling_limiter": True}),
                     apis=[token_api(api, "/%s/" % api, upstream.url("/"), org)])
    full = create_key(g, org, access(api), rate=3, per=60)["key"]
    aged = create_key(g, org, access(api), rate=3, per=60)["key"]
    c = rc()
    try:
        # what a Tyk node would have left: three requests within the window
        t = now_ns()
        c.zadd(rate_key(full), {str(t - i * 1_000_000): t - i * 1_000_000 for i in (3, 2, 1)})
        c.expire(rate_key(full), 60)
        r = use(g, "/%s/x" % api, full)
        assert_error(r, 429, KEY_LIMIT)  # the very first request through Turnpike
        # two recent requests, and four older than `per` that no longer count
        t = now_ns()
        old = {str(t - 61 * 10**9 - i): t - 61 * 10**9 - i for i in range(4)}
        recent = {str(t - i * 1_000_000): t - i * 1_000_000 for i in (2, 1)}
        c.zadd(rate_key(aged), dict(old, **recent))
        c.expire(rate_key(aged), 120)
        assert use(g, "/%s/x" % api, aged).status == 200
        assert_error(use(g, "/%s/x" % api, aged), 429, KEY_LIMIT)
        members = c.zrange(rate_key(aged), 0, -1)
        assert not set(old) & set(members), members  # trimmed, as Tyk's ZREMRANGEBYSCORE
        assert set(recent) <= set(members) and len(members) == 4, members
    finally:
        c.close()


def test_rolling_limiter_keys_of_a_per_api_and_a_per_endpoint_limit(make_gateway, upstream):
    """A per-API limit counts under rate-limit-<allowance scope>-<hash>; an
    access_rights endpoints entry replaces it for its requests, under that
    name plus -<HashStr("METHOD:path")> (TYK-COMPAT 6.1, 6.3)."""
    org, api = new_org(), "rl-" + uid()[:8]
    g = make_gateway(conf=conf_with({"enable_redis_rolling_limiter": True}),
                     apis=[token_api(api, "/%s/" % api, upstream.url("/"), org)])
    limit = {"rate": 3, "per": 60, "quota_max": -1}
    eps = [{"path": "/slow", "methods": [{"name": "GET", "limit": {"rate": 1, "per": 60}}]}]
    key = create_key(g, org, access(api, limit=limit, endpoints=eps), rate=100, per=60)["key"]
    assert use(g, "/%s/slow" % api, key).status == 200
    assert_error(use(g, "/%s/slow" % api, key), 429, KEY_LIMIT)
    assert statuses(g, "/%s/x" % api, 3, key) == [200, 200, 200]
    assert_error(use(g, "/%s/x" % api, key), 429, KEY_LIMIT)
    scoped = rate_key(key, api)
    c = rc()
    try:
        assert c.zcard(scoped) == 4
        assert c.zcard(scoped + "-" + hash_hex("murmur32", "GET:/slow")) == 2
        assert not c.exists(rate_key(key))  # the session-wide limit is not used
    finally:
        c.close()


# ---- 2. sentinel (enable_sentinel_rate_limiter) ------------------------------------------

def test_sentinel_blocks_while_the_blocked_key_lives(make_gateway, upstream):
    org, api = new_org(), "rs-" + uid()[:8]
    g = make_gateway(conf=conf_with({"enable_sentinel_rate_limiter": True}),
                     apis=[token_api(api, "/%s/" % api, upstream.url("/"), org)])
    key = create_key(g, org, access(api), rate=3, per=60)["key"]
    blocked = rate_key(key) + ".BLOCKED"
    c = rc()
    try:
        assert statuses(g, "/%s/x" % api, 3, key) == [200, 200, 200]
        # the third request found 2 > rate-2 in the log and set the sentinel,
        # after it was decided (Tyk's is a background write too)
        wait_for(lambda: c.get(blocked) == "1", 5, what="the .BLOCKED key")
        assert 0 < c.ttl(blocked) <= 60
        for _ in range(3):
            assert_error(use(g, "/%s/x" % api, key), 429, KEY_LIMIT)
        assert c.zcard(rate_key(key)) == 6  # every request runs the sliding log
        # the decision is the key's: gone (as a key reset deletes it), the
        # next request passes and, the log being full, sets it again. Each
        # refused request sent its own SET NX after deciding, as Tyk's
        # background write: let the last one land before taking the key away
        time.sleep(0.3)
        c.delete(blocked)
        assert use(g, "/%s/x" % api, key).status == 200
        wait_for(lambda: c.ttl(blocked) > 0, 5, what="the sentinel set again")
        assert_error(use(g, "/%s/x" % api, key), 429, KEY_LIMIT)
    finally:
        c.close()


# ---- 3. fixed window (enable_fixed_window_rate_limiter) ----------------------------------

# Go's time.Truncate, which Tyk's fixed window uses, counts multiples of the
# window since Go's zero time (0001-01-01 UTC), this many seconds before the
# Unix epoch: the windows are epoch-aligned only when `per` divides it
GO_ZERO_TO_UNIX_S = 62135596800


def window_start(t_ns, per_ns):
    return t_ns - (GO_ZERO_TO_UNIX_S * 10**9 + t_ns) % per_ns


@pytest.mark.parametrize("per", [60, 7 * 86400], ids=["minute", "week"])
def test_fixed_window_counter_per_window(make_gateway, upstream, per):
    """A week is the window where Go's alignment shows: Tyk's weekly
    windows start on Mondays (0001-01-01 was one), Unix-epoch-aligned ones
    would start on Thursdays; a minute starts at :00 either way."""
    org, api = new_org(), "rf-" + uid()[:8]
    g = make_gateway(conf=conf_with({"enable_fixed_window_rate_limiter": True}),
                     apis=[token_api(api, "/%s/" % api, upstream.url("/"), org)])
    key = create_key(g, org, access(api), rate=3, per=per)["key"]
    per_ns = per * 10**9
    t = now_ns()
    left = window_start(t, per_ns) + per_ns - t
    if left < 3 * 10**9:  # keep the requests in one window
        time.sleep(left / 1e9 + 0.05)
        t = now_ns()
    start = window_start(t, per_ns)
    assert statuses(g, "/%s/x" % api, 3, key) == [200, 200, 200]
    assert_error(use(g, "/%s/x" % api, key), 429, KEY_LIMIT)
    t_end = now_ns()
    assert window_start(t_end, per_ns) == start
    c = rc()
    try:
        counter = "%s/%d" % (rate_key(key), start)
        assert c.keys(rate_key(key) + "*") == [counter]
        assert c.get(counter) == "4"  # refused requests are counted, as Tyk's INCR
        left_ms = (start + per_ns - t_end) / 1e6
        assert 0 < c.pttl(counter) <= left_ms + 1000, (c.pttl(counter), left_ms)
    finally:
        c.close()


# ---- 4. API-wide limits -------------------------------------------------------------------

@pytest.mark.parametrize("tier", ["local", "exact"])
def test_api_limits_global_and_per_endpoint(make_gateway, upstream, make_redis, tier):
    red = make_redis()  # one node for the local tier, and a clean slate of keys
    org = new_org()
    ids = {k: "%s-%s" % (k, uid()[:6]) for k in ("kl", "tk", "off", "dis")}
    slow = [{"path": "/slow", "method": "GET", "rate": 2, "per": 60}]
    apis = [
        with_paths(keyless_api(ids["kl"], org, upstream.url("/"),
                               global_rate_limit={"rate": 3, "per": 60}), rate_limit=slow),
        with_paths(token_api(ids["tk"], "/%s/" % ids["tk"], upstream.url("/"), org,
                             global_rate_limit={"rate": 2, "per": 60}),
                   ignored=[{"path": "/open", "method_actions": {"GET": {
                       "action": "no_action", "code": 200, "data": "", "headers": {}}}}]),
        with_paths(keyless_api(ids["off"], org, upstream.url("/"), disable_rate_limit=True,
                               global_rate_limit={"rate": 3, "per": 60}), rate_limit=slow),
        keyless_api(ids["dis"], org, upstream.url("/"),
                    global_rate_limit={"rate": 3, "per": 60, "disabled": True}),
    ]
    g = make_gateway(conf=conf_with({"turnpike": {"rate_limiter": tier}}, redis=red), apis=apis)

    # the endpoint's own limit, not counted in the API's
    kl = "/%s/" % ids["kl"]
    assert statuses(g, kl + "slow", 2) == [200, 200]
    assert_error(use(g, kl + "slow"), 429, API_LIMIT)
    assert statuses(g, kl + "x", 3) == [200, 200, 200]
    assert_error(use(g, kl + "x"), 429, API_LIMIT)
    # the entry is for GET only: a POST to /slow is under the API's limit
    r = g.request("POST", kl + "slow", body=b"")
    assert_error(r, 429, API_LIMIT)

    # a token API's ignored path needs no key but is still API-limited,
    # on the same counter as keyed requests
    tk = "/%s/" % ids["tk"]
    key = create_key(g, org, access(ids["tk"]))["key"]
    assert use(g, tk + "open").status == 200
    assert use(g, tk + "x", key).status == 200
    assert_error(use(g, tk + "open"), 429, API_LIMIT)
    assert_error(use(g, tk + "x", key), 429, API_LIMIT)

    # disable_rate_limit turns off the global and the per-endpoint limits;
    # global_rate_limit.disabled the global one
    assert statuses(g, "/%s/slow" % ids["off"], 4) == [200] * 4
    assert statuses(g, "/%s/x" % ids["off"], 5) == [200] * 5
    assert statuses(g, "/%s/x" % ids["dis"], 5) == [200] * 5

    c = red.client()
    try:
        names = [api_rate_key(org, ids["kl"]), api_rate_key(org, ids["kl"], "GET:/slow"),
                 api_rate_key(org, ids["tk"])]
        if tier == "exact":  # Turnpike's GCRA state, beside Tyk's key names
            for n in names:
                assert c.exists(n + ".gcra") and c.pttl(n + ".gcra") > 0, n
                assert not c.exists(n), n
        else:  # decided in the node's shared memory
            for n in names:
                assert not c.exists(n) and not c.exists(n + ".gcra"), n
        for a in ("off", "dis"):
            assert not c.exists(api_rate_key(org, ids[a]))
            assert not c.exists(api_rate_key(org, ids[a], "GET:/slow"))
    finally:
        c.close()


def test_exact_tier_with_a_tyk_sliding_log_under_the_keys_name(make_gateway, upstream):
    """Tyk's default limiter (DRL) falls back to its sliding log
    rate-limit-<hash> for low rates on several Tyk nodes (TYK-COMPAT 6.2
    item 4), and Turnpike's default local tier hands low rates on several
    Turnpike nodes to the exact tier: in a mixed cluster on one Redis both
    use the name. One request in Tyk's log, rate 3: Tyk lets the next one
    through, whichever limiter it uses."""
    org, api = new_org(), "rx-" + uid()[:8]
    g = make_gateway(conf=conf_with({"turnpike": {"rate_limiter": "exact"}}),
                     apis=[token_api(api, "/%s/" % api, upstream.url("/"), org)])
    key = create_key(g, org, access(api), rate=3, per=60)["key"]
    c = rc()
    try:
        t = now_ns()
        c.zadd(rate_key(key), {str(t): t})
        c.expire(rate_key(key), 60)
    finally:
        c.close()
    r = use(g, "/%s/x" % api, key)
    assert r.status == 200, r
    c = rc()
    try:  # Tyk's log is left to Tyk; Turnpike's state is beside it
        assert c.type(rate_key(key)) == "zset" and c.zcard(rate_key(key)) == 1
        assert c.type(rate_key(key) + ".gcra") == "string"
    finally:
        c.close()


# ---- 5. a key's limit and the API's ------------------------------------------------------

def test_key_and_api_limits_have_their_own_messages(make_gateway, upstream):
    org, api = new_org(), "rk-" + uid()[:8]
    g = make_gateway(conf=conf_with(), apis=[token_api(api, "/%s/" % api, upstream.url("/"), org,
                                                       global_rate_limit={"rate": 3, "per": 60})])
    slow = create_key(g, org, access(api), rate=1, per=60)["key"]
    free = create_key(g, org, access(api))["key"]
    assert use(g, "/%s/x" % api, slow).status == 200
    # the key's own limit comes first; its refusal does not count for the API
    assert_error(use(g, "/%s/x" % api, slow), 429, KEY_LIMIT)
    assert statuses(g, "/%s/x" % api, 2, free) == [200, 200]
    assert_error(use(g, "/%s/x" % api, free), 429, API_LIMIT)


# ---- 6. rate_limit_response_headers "rate_limits" ----------------------------------------

RL_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def test_rate_limit_headers_count_down_and_replace_the_upstreams(make_gateway, scripted):
    up = scripted(lambda head, body: (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                      b"X-RateLimit-Limit: 999\r\nX-RateLimit-Remaining: 998\r\n"
                                      b"X-RateLimit-Reset: 1\r\nX-RateLimit-Used: 7\r\n\r\nok"))
    org, api, kl = new_org(), "rh-" + uid()[:8], "rhk-" + uid()[:8]
    g = make_gateway(conf=conf_with({"rate_limit_response_headers": "rate_limits"}),
                     apis=[token_api(api, "/%s/" % api, up.url("/"), org),
                           keyless_api(kl, org, up.url("/"), global_rate_limit={"rate": 2, "per": 60})])
    key = create_key(g, org, access(api), rate=3, per=60, quota_max=10,
                     quota_renewal_rate=60)["key"]
    t0 = int(time.time())
    seen = []
    for _ in range(3):
        r = use(g, "/%s/x" % api, key)
        assert r.status == 200 and r.body == b"ok", r
        for h in RL_HEADERS:
            assert len(r.header_all(h)) == 1, r  # the upstream's are gone
        assert r.header("X-RateLimit-Used") == "7", r  # not one of Tyk's three
        seen.append((r.header("X-RateLimit-Limit"), r.header("X-RateLimit-Remaining")))
        assert t0 <= int(r.header("X-RateLimit-Reset")) <= t0 + 61, r
    assert seen == [("3", "2"), ("3", "1"), ("3", "0")]  # the rate, not the quota
    r = use(g, "/%s/x" % api, key)
    assert_error(r, 429, KEY_LIMIT)
    assert (r.header("X-RateLimit-Limit"), r.header("X-RateLimit-Remaining")) == ("3", "0"), r
    assert t0 < int(r.header("X-RateLimit-Reset")) <= int(time.time()) + 61, r

    # an API's limit gives them when the key has no rate of its own
    seen = []
    for _ in range(2):
        r = use(g, "/%s/x" % kl)
        assert r.status == 200 and all(len(r.header_all(h)) == 1 for h in RL_HEADERS), r
        seen.append((r.header("X-RateLimit-Limit"), r.header("X-RateLimit-Remaining")))
    assert seen == [("2", "1"), ("2", "0")]
    r = use(g, "/%s/x" % kl)
    assert_error(r, 429, API_LIMIT)
    assert (r.header("X-RateLimit-Limit"), r.header("X-RateLimit-Remaining")) == ("2", "0"), r

    # no rate limit at all: none from the gateway, and the upstream's are
    # still removed (Tyk's rate-limit sender deletes them from every
    # proxied response in this mode)
    quota_only = create_key(g, org, access(api), quota_max=10, quota_renewal_rate=60)["key"]
    r = use(g, "/%s/x" % api, quota_only)
    assert r.status == 200 and r.body == b"ok", r
    assert [h for h in RL_HEADERS if r.header(h) is not None] == [], r
    assert r.header("X-RateLimit-Used") == "7", r


MODES = {"rolling": "enable_redis_rolling_limiter", "sentinel": "enable_sentinel_rate_limiter",
         "fixed": "enable_fixed_window_rate_limiter"}


@pytest.mark.parametrize("mode", list(MODES))
def test_rate_limit_headers_under_tyks_limiters(make_gateway, upstream, mode):
    """What Tyk's checkers report (session_manager.go, sliding_log.go):
    the sliding log its remaining count and no wait while requests remain,
    then until its oldest request leaves the window; the sentinel and the
    fixed window no remaining count (0) and no wait until they block, then
    the .BLOCKED key's TTL or the end of the window. X-RateLimit-Reset is
    time.Now().Add(wait).Unix(): whole seconds, rounded down."""
    org, api = new_org(), "rm-" + uid()[:8]
    g = make_gateway(conf=conf_with({MODES[mode]: True,
                                     "rate_limit_response_headers": "rate_limits"}),
                     apis=[token_api(api, "/%s/" % api, upstream.url("/"), org)])
    key = create_key(g, org, access(api), rate=3, per=60)["key"]
    per_ns = 60 * 10**9
    t = now_ns()
    if mode == "fixed" and window_start(t, per_ns) + per_ns - t < 3 * 10**9:
        time.sleep((window_start(t, per_ns) + per_ns - t) / 1e9 + 0.05)  # one window
    got = []  # (status, remaining, reset, unix seconds before and after the request)
    for i in range(4):
        if mode == "sentinel" and i == 3:  # set after the third was decided
            c = rc()
            try:
                wait_for(lambda: c.exists(rate_key(key) + ".BLOCKED"), 5, what="the .BLOCKED key")
            finally:
                c.close()
        before = time.time()
        r = use(g, "/%s/x" % api, key)
        after = time.time()
        assert r.header("X-RateLimit-Limit") == "3", r
        got.append((r.status, int(r.header("X-RateLimit-Remaining")),
                    int(r.header("X-RateLimit-Reset")), before, after))
    assert [x[0] for x in got] == [200, 200, 200, 429], got
    remaining = [x[1] for x in got]
    assert remaining == ([2, 1, 0, 0] if mode == "rolling" else [0, 0, 0, 0]), got

    def within(i, wait_lo, wait_hi):
        _, _, reset, before, after = got[i]
        return int(before + wait_lo) <= reset <= int(after + wait_hi)

    waitless = 2 if mode == "rolling" else 3
    for i in range(waitless):  # no wait: now, rounded down
        assert within(i, 0, 0), (i, got)
    if mode == "rolling":
        assert within(2, 60, 60), got  # the last one left: a whole window from now
        # refused: until the first request leaves the window
        assert got[0][3] + 60 - 1 <= got[3][2] <= got[0][4] + 60, got
    elif mode == "sentinel":
        assert within(3, 58, 60), got  # the .BLOCKED key's TTL, whole seconds
    else:
        start = window_start(int(got[0][3] * 1e9), per_ns)
        assert got[3][2] == (start + per_ns) // 10**9, got  # the window's end


# ---- 7. Redis going away --------------------------------------------------------------------

def test_redis_down_fails_closed_or_open_and_recovers(make_gateway, upstream, make_redis):
    red = make_redis()
    org = new_org()
    lim, opn, glb = "rd-" + uid()[:8], "ro-" + uid()[:8], "rg-" + uid()[:8]
    apis = [token_api(lim, "/%s/" % lim, upstream.url("/"), org),
            keyless_api(opn, org, upstream.url("/")),
            keyless_api(glb, org, upstream.url("/"), global_rate_limit={"rate": 50, "per": 60})]
    exact = {"turnpike": {"rate_limiter": "exact"}}
    closed = make_gateway(conf=conf_with(exact, redis=red, timeout=1), apis=apis, workers=1)
    opened = make_gateway(conf=conf_with({"turnpike": {"rate_limiter": "exact",
                                                       "limits_fail_open": True}},
                                         redis=red, timeout=1), apis=apis, workers=1)
    k1 = create_key(closed, org, access(lim), rate=3, per=60)["key"]
    k2 = create_key(opened, org, access(lim), rate=3, per=60)["key"]
    time.sleep(0.5)  # the creations' notifications evict; then the sessions get cached
    path = "/%s/x" % lim
    assert use(closed, path, k1).status == 200
    assert use(opened, path, k2).status == 200
    red.stop()
    assert_error(use(closed, path, k1), 500, LIMITER_DOWN)
    for _ in range(4):  # beyond the limit, but nobody can count
        assert use(opened, path, k2).status == 200
    for g in (closed, opened):  # no limits: no Redis needed
        assert statuses(g, "/%s/x" % opn, 3) == [200, 200, 200]
        # an API-wide limit held in Redis lets requests through, as Tyk's
        # RateLimitForAPI does: keyless APIs keep serving
        assert statuses(g, "/%s/x" % glb, 3) == [200, 200, 200]

    red.start()  # the same port, empty
    wait_for(lambda: use(closed, path, k1).status == 200, 10,
             what="the limit check working again after Redis came back")
    # that request was the first counted in the new Redis
    assert statuses(closed, path, 2, k1) == [200, 200]
    assert_error(use(closed, path, k1), 429, KEY_LIMIT)
    wait_for(lambda: use(opened, path, k2).status == 429, 10,
             what="the fail-open gateway counting again")
    assert_error(use(opened, path, k2), 429, KEY_LIMIT)


# ---- 8. the admin socket ------------------------------------------------------------------

def test_admin_show_limits_and_stat(make_gateway, upstream, make_redis, tmp_path):
    red = make_redis()  # one node: the local tier
    sock = tmp_path / "admin.sock"
    org, api = new_org(), "ra-" + uid()[:8]
    g = make_gateway(conf=conf_with({"turnpike": {"admin_socket": str(sock)}}, redis=red),
                     apis=[token_api(api, "/%s/" % api, upstream.url("/"), org,
                                     global_rate_limit={"rate": 4, "per": 60})])
    rated = create_key(g, org, access(api), rate=2, per=60, quota_max=10,
                       quota_renewal_rate=60)["key"]
    quota = create_key(g, org, access(api), quota_max=1, quota_renewal_rate=60)["key"]
    free = create_key(g, org, access(api))["key"]
    p = "/%s/x" % api
    assert statuses(g, p, 2, rated) == [200, 200]
    assert_error(use(g, p, rated), 429, KEY_LIMIT)
    assert use(g, p, quota).status == 200
    assert_error(use(g, p, quota), 403, "Quota exceeded")
    assert use(g, p, free).status == 200  # the API's fourth
    assert_error(use(g, p, free), 429, API_LIMIT)

    h = hash_key(rated, True)
    r = ctl(g, "show", "limits", h)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"# nodes 1, this node \S+", lines[0]), lines
    assert lines[1].startswith("#"), lines
    rows = {l.split()[0]: l for l in lines[2:]}
    assert set(rows) == {"rate-limit-" + h, "quota-" + h}, lines
    assert re.fullmatch(r"rate-limit-%s local limit=2 remaining=0 reset=[0-9.]+ idle=[0-9.]+" % h,
                        rows["rate-limit-" + h]), rows
    assert re.fullmatch(r"quota-%s quota limit=10 remaining=8 reset=[0-9.]+ count=2 "
                        r"idle=[0-9.]+" % h, rows["quota-" + h]), rows
    reset = float(re.search(r"reset=([0-9.]+)", rows["quota-" + h]).group(1))
    assert 50 < reset <= 60, rows
    # the API's limit, under its own hash
    ah = api_rate_key(org, api)[len("rate-limit-"):]
    out = admin_cmd(sock, "show limits " + ah).splitlines()
    assert len(out) == 3 and re.fullmatch(
        r"rate-limit-%s local limit=4 remaining=0 reset=[0-9.]+ idle=[0-9.]+" % ah, out[2]), out

    lines = admin_cmd(sock, "show stat").splitlines()
    assert lines[0] == ("# api_id,requests,1xx,2xx,3xx,4xx,5xx,upstream_errors,rate_limited,"
                        "quota_exceeded,websockets")
    row = {l.split(",")[0]: [int(x) for x in l.split(",")[1:]] for l in lines[1:] if not l.startswith("#")}[api]
    assert row == [7, 0, 4, 0, 3, 0, 0, 2, 1, 0], row


def test_admin_show_limits_finds_long_key_hashes(make_gateway, upstream, tmp_path):
    """sha256 key hashes (hash_key_function) with an allowance scope make
    counter names longer than the node's table keeps: `show limits <hash>`
    still finds them."""
    sock = tmp_path / "admin.sock"
    org, api = new_org(), "ra-" + uid()[:8]
    g = make_gateway(conf=conf_with({"hash_key_function": "sha256",
                                     "turnpike": {"admin_socket": str(sock),
                                                  "rate_limiter": "exact"}}),
                     apis=[token_api(api, "/%s/" % api, upstream.url("/"), org)])
    limit = {"rate": 3, "per": 60, "quota_max": 5, "quota_renewal_rate": 60}
    key = create_key(g, org, access(api, limit=limit))["key"]
    h = hash_key(key, True)
    assert len(h) == 64
    assert use(g, "/%s/x" % api, key).status == 200
    out = admin_cmd(sock, "show limits " + h).splitlines()
    rows = sorted(out[2:])
    assert len(rows) == 2, out
    for row, full, rest in zip(rows, ("quota-%s-%s" % (api, h), rate_key(key, api)),
                               (r"quota limit=5 remaining=4 reset=[0-9.]+ count=1",
                                r"exact limit=3 remaining=2 reset=[0-9.]+")):
        name, _, tail = row.partition(" ")
        assert len(name) >= 40 and full.startswith(name), (row, full)  # maybe cut
        assert re.fullmatch(rest + r" idle=[0-9.]+", tail), row
    # a hash that is not there still finds nothing
    other = "0" * 64
    assert admin_cmd(sock, "show limits " + other).splitlines()[2:] == [
        "# no counters for %s on this node" % other]


# ---- 9. throttling --------------------------------------------------------------------------

def test_throttled_request_waits_instead_of_429(make_gateway, upstream, make_redis):
    red = make_redis()  # one node: the local tier
    org, api = new_org(), "rt-" + uid()[:8]
    g = make_gateway(conf=conf_with(redis=red),
                     apis=[token_api(api, "/%s/" % api, upstream.url("/"), org)])
    patient = create_key(g, org, access(api), rate=1, per=2, throttle_interval=1,
                         throttle_retry_limit=3)["key"]
    hasty = create_key(g, org, access(api), rate=1, per=2, throttle_interval=1,
                       throttle_retry_limit=0)["key"]
    p = "/%s/x" % api
    assert use(g, p, patient).status == 200
    t = time.monotonic()
    r = use(g, p, patient)
    waited = time.monotonic() - t
    assert r.status == 200, r
    assert waited >= 0.9, waited
    assert use(g, p, hasty).status == 200
    t = time.monotonic()
    assert_error(use(g, p, hasty), 429, KEY_LIMIT)
    assert time.monotonic() - t < 0.9
