"""Quotas (the first part of issue 6), as a Tyk user meets them: a key's
quota_max requests per quota_renewal_rate window, counted in Redis under
Tyk's key quota-[scope-]<hash> (TYK-COMPAT 6.1, 6.4), 403 `Quota exceeded`
beyond it, the X-RateLimit-* headers of the default
rate_limit_response_headers "quotas" (6.7), counting shared by every worker
and node on one Redis, renewal, concurrent first requests on a new window,
the repair of a counter left without an expiry, per-API limits with an
allowance scope, disable_quota, and Redis going away (500, fail closed).

Every gateway shares the session Redis unless a test makes its own, so each
test uses keys, orgs and API IDs of its own."""
import threading
import time

from conftest import http
from test_keys import (SECRET, access, admin, assert_error, create_key, new_org, rc, token_api,
                       uid, use)
from tykkeys import hash_key

CONF = {"secret": SECRET, "hash_keys": True}


def gateway(make_gateway, upstream, org, api_id, workers=2, conf=None, redis=None, **api_extra):
    c = dict(CONF)
    c.update(conf or {})
    if redis is not None:
        c["storage"] = {"type": "redis", "host": "127.0.0.1", "port": redis.port}
    api = token_api(api_id, "/%s/" % api_id, upstream.url("/"), org, **api_extra)
    return make_gateway(conf=c, apis=[api], workers=workers)


def quota_key(token, scope=""):
    return "quota-%s%s" % (scope + "-" if scope else "", hash_key(token, True))


def test_quota_counts_down_then_403_with_headers(make_gateway, upstream):
    org, api = new_org(), "q-" + uid()[:8]
    g = gateway(make_gateway, upstream, org, api)
    key = create_key(g, org, access(api), quota_max=3, quota_renewal_rate=60)["key"]
    t0 = int(time.time())
    seen = []
    for _ in range(3):
        r = use(g, "/%s/echo" % api, key)
        assert r.status == 200, r
        seen.append((r.header("X-RateLimit-Limit"), r.header("X-RateLimit-Remaining")))
        reset = int(r.header("X-RateLimit-Reset"))
        assert t0 + 58 <= reset <= t0 + 62, r
    assert seen == [("3", "2"), ("3", "1"), ("3", "0")]
    r = use(g, "/%s/echo" % api, key)
    assert_error(r, 403, "Quota exceeded")
    assert r.header("X-RateLimit-Limit") is None  # not on blocked responses (6.4)
    # Tyk's counter key, with the window's expiry
    c = rc()
    try:
        assert int(c.get(quota_key(key))) == 4  # blocked requests are counted too, as Tyk's INCR
        assert 55_000 < c.pttl(quota_key(key)) <= 60_000
    finally:
        c.close()
    # the Gateway API shows the live remaining quota
    got = admin(g, "GET", "/tyk/keys/" + key).json()
    assert got["quota_max"] == 3 and got["quota_remaining"] == 0


def test_unlimited_and_disabled_quotas_are_not_counted(make_gateway, upstream):
    org, api = new_org(), "q-" + uid()[:8]
    g = gateway(make_gateway, upstream, org, api)
    unlimited = create_key(g, org, access(api), quota_max=-1, quota_remaining=7)["key"]
    for _ in range(5):
        r = use(g, "/%s/x" % api, unlimited)
        assert r.status == 200, r
    # the stored values, as Tyk copies them (6.7); creation set quota_renews
    stored = admin(g, "GET", "/tyk/keys/" + unlimited).json()
    assert (r.header("X-RateLimit-Limit"), r.header("X-RateLimit-Remaining"),
            r.header("X-RateLimit-Reset")) == ("-1", "7", str(stored["quota_renews"]))

    api2 = "q-" + uid()[:8]
    g2 = gateway(make_gateway, upstream, org, api2, disable_quota=True)
    limited = create_key(g2, org, access(api2), quota_max=2, quota_renewal_rate=60)["key"]
    for _ in range(5):
        assert use(g2, "/%s/x" % api2, limited).status == 200
    c = rc()
    try:
        assert c.get(quota_key(unlimited)) is None and c.get(quota_key(limited)) is None
    finally:
        c.close()


def test_quota_is_shared_by_workers_and_nodes(make_gateway, upstream, make_redis):
    red = make_redis()
    org, api = new_org(), "q-" + uid()[:8]
    a = gateway(make_gateway, upstream, org, api, redis=red)
    b = gateway(make_gateway, upstream, org, api, redis=red)
    key = create_key(a, org, access(api), quota_max=10, quota_renewal_rate=60)["key"]
    ok = 0
    for i in range(16):
        g = (a, b)[i % 2]
        # a new connection each time, so both workers of each node count
        r = http(g.port, "GET", "/%s/x" % api, [("Authorization", key), ("Connection", "close")])
        if r.status == 200:
            ok += 1
        else:
            assert_error(r, 403, "Quota exceeded")
    assert ok == 10


def test_concurrent_first_requests_on_a_new_window(make_gateway, upstream):
    org, api = new_org(), "q-" + uid()[:8]
    g = gateway(make_gateway, upstream, org, api)
    key = create_key(g, org, access(api), quota_max=20, quota_renewal_rate=60)["key"]
    statuses = []
    lock = threading.Lock()
    start = threading.Barrier(40)

    def one():
        start.wait()
        r = http(g.port, "GET", "/%s/x" % api, [("Authorization", key)])
        with lock:
            statuses.append(r.status)

    ts = [threading.Thread(target=one) for _ in range(40)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert sorted(statuses) == [200] * 20 + [403] * 20
    c = rc()
    try:
        assert int(c.get(quota_key(key))) == 40
        assert c.pttl(quota_key(key)) > 0  # the window has its expiry
    finally:
        c.close()


def test_quota_renews_after_the_window(make_gateway, upstream):
    org, api = new_org(), "q-" + uid()[:8]
    g = gateway(make_gateway, upstream, org, api)
    key = create_key(g, org, access(api), quota_max=2, quota_renewal_rate=1)["key"]
    assert [use(g, "/%s/x" % api, key).status for _ in range(3)] == [200, 200, 403]
    time.sleep(1.2)
    assert [use(g, "/%s/x" % api, key).status for _ in range(3)] == [200, 200, 403]


def test_counter_without_expiry_is_repaired(make_gateway, upstream):
    """The race Tyk's own code comments on leaves a counter with no TTL,
    which would block the key forever: the next request starts a window."""
    org, api = new_org(), "q-" + uid()[:8]
    g = gateway(make_gateway, upstream, org, api)
    key = create_key(g, org, access(api), quota_max=5, quota_renewal_rate=60)["key"]
    c = rc()
    try:
        c.set(quota_key(key), 999)  # no expiry
        r = use(g, "/%s/x" % api, key)
        assert r.status == 200, r
        assert r.header("X-RateLimit-Remaining") == "4"
        assert int(c.get(quota_key(key))) == 1
        assert 55_000 < c.pttl(quota_key(key)) <= 60_000
    finally:
        c.close()


def test_per_api_limit_with_allowance_scope(make_gateway, upstream):
    org, api = new_org(), "q-" + uid()[:8]
    g = gateway(make_gateway, upstream, org, api)
    # a key written through the API with a per-API limit gets the API's ID
    # as its allowance scope, as Tyk's does
    rights = access(api, limit={"rate": 0, "per": 0, "quota_max": 2, "quota_renewal_rate": 60})
    key = create_key(g, org, rights, quota_max=100, quota_renewal_rate=60)["key"]
    r = use(g, "/%s/x" % api, key)
    assert r.status == 200 and r.header("X-RateLimit-Limit") == "2", r
    assert use(g, "/%s/x" % api, key).status == 200
    assert_error(use(g, "/%s/x" % api, key), 403, "Quota exceeded")
    c = rc()
    try:
        assert int(c.get(quota_key(key, api))) == 3
        assert c.get(quota_key(key)) is None  # the key-wide counter is not touched
    finally:
        c.close()


def test_redis_down_fails_closed_for_quotas(make_gateway, upstream, make_redis):
    red = make_redis()
    org, api = new_org(), "q-" + uid()[:8]
    g = gateway(make_gateway, upstream, org, api, workers=1, redis=red,
                conf={"storage": {"type": "redis", "host": "127.0.0.1", "port": red.port,
                                  "timeout": 1}})
    limited = create_key(g, org, access(api), quota_max=100, quota_renewal_rate=60)["key"]
    free = create_key(g, org, access(api), quota_max=-1)["key"]
    time.sleep(0.5)  # the creations' notifications evict; then the sessions get cached
    assert use(g, "/%s/x" % api, limited).status == 200
    assert use(g, "/%s/x" % api, free).status == 200  # both sessions now cached
    red.stop()
    assert_error(use(g, "/%s/x" % api, limited), 500, "there was a problem proxying the request")
    assert use(g, "/%s/x" % api, free).status == 200  # no quota: no Redis needed
    red.start()
    deadline = time.time() + 10
    while time.time() < deadline:
        if use(g, "/%s/x" % api, limited).status == 200:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the quota check did not recover after Redis came back")


def test_redis_down_fails_open_when_asked(make_gateway, upstream, make_redis):
    """turnpike.limits_fail_open: availability over exact quotas while
    Redis is away; counting resumes when it is back."""
    red = make_redis()
    org, api = new_org(), "q-" + uid()[:8]
    g = gateway(make_gateway, upstream, org, api, workers=1, redis=red,
                conf={"storage": {"type": "redis", "host": "127.0.0.1", "port": red.port,
                                  "timeout": 1},
                      "turnpike": {"limits_fail_open": True}})
    key = create_key(g, org, access(api), quota_max=2, quota_renewal_rate=60)["key"]
    time.sleep(0.5)  # the creation's notification evicts; then the session gets cached
    assert use(g, "/%s/x" % api, key).status == 200
    red.stop()
    for _ in range(4):  # beyond the quota, but nobody can count
        assert use(g, "/%s/x" % api, key).status == 200
    red.start()
    deadline = time.time() + 10
    while time.time() < deadline:
        r = use(g, "/%s/x" % api, key)
        if r.status == 403:
            break  # the second counted request used the quota up; this one is over it
        time.sleep(0.2)
    assert_error(r, 403, "Quota exceeded")
