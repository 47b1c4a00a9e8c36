"""The Redis client as operators meet it: `turnpike --check-redis`, the
load driver (build/tp_redis_driver) through failures of every kind, and
the gateway's /hello, /ready, logs and pub/sub.

Topologies: standalone (password, ACL user, database), TLS (server-only,
mutual, wrong CA), Redis Cluster (resharding and failover under load) and
Sentinel (failover under load). One cluster and one sentinel set serve the
whole module; tests only restart what they kill.

The driver prints one JSON line: ok, failed, wrong (a GET that did not
return what the same caller had just SET), hung (commands that never got a
callback), max_ms, per_sec_ok[], per_sec_err[], errors {message: count}
(digits replaced by '#').
"""
import json
import os
import re
import secrets
import subprocess
import threading
import time

import pytest

from conftest import (HOST, ROOT, api_def, deep_merge, redis_py, run_turnpike, spawn,
                      wait_for)

if redis_py is None:  # make test installs it; a missing module must fail, not skip
    raise ImportError("python3-redis is required (apt-get install python3-redis)")

TOOLS = os.environ.get("TURNPIKE_TOOLS") or str(ROOT / "build")
DRIVER = os.path.join(TOOLS, "tp_redis_driver")

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")

# The client's reconnection backoff doubles up to 5 s (common/tp_redis.c,
# BACKOFF_MAX_MS): a server back after an outage is used again within that.
BACKOFF_MAX_S = 5.0


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def write_conf(path, storage, **extra):
    """A tyk.conf with <storage> (plus a fast liveness probe and one worker)."""
    conf = {"storage": storage,
            "liveness_check": {"check_duration": 500000000},
            "turnpike": {"workers": 1, "redis_ready_grace": 1}}
    conf = deep_merge(conf, extra)
    path.write_text(json.dumps(conf, indent=2))
    return path


def storage_for(server, **kw):
    """`storage` for one standalone server (its password, if any)."""
    st = {"type": "redis", "host": HOST, "port": server.port, "timeout": 2}
    if server.password:
        st["password"] = server.password
    st.update(kw)
    return st


_CHECKS = [0]


def check_redis(tmp_path, storage):
    """Runs `turnpike --check-redis`; returns the CompletedProcess with .out
    (stdout and stderr together, as an operator's terminal shows them)."""
    _CHECKS[0] += 1
    conf = write_conf(tmp_path / ("check-%d.json" % _CHECKS[0]), storage)
    r = run_turnpike(["--check-redis", "--conf", str(conf)], timeout=60)
    r.out = r.stdout + r.stderr
    return r


def assert_check_passed(r):
    assert r.returncode == 0, r.out
    for cmd in ("PING", "SET", "GET", "DEL"):
        assert re.search(r"^\s+%s\s+ok \(\d+ ms\)$" % cmd, r.stdout, re.M), (cmd, r.out)
    assert "Redis check passed" in r.stdout, r.out


class Driver:
    """build/tp_redis_driver in the background; .result() waits for its
    JSON summary. Its stderr (client warnings) goes to the same log."""

    def __init__(self, conf_path, seconds, concurrency=16, keys=100):
        assert os.access(DRIVER, os.X_OK), "%s is missing: run `make tools`" % DRIVER
        self.seconds = seconds
        self.log = conf_path.parent / ("driver-%s.log" % conf_path.stem)
        if self.log.exists():
            self.log.unlink()
        self.t0 = time.time()
        self.proc = spawn([DRIVER, "--conf", str(conf_path), "--seconds", str(seconds),
                           "--concurrency", str(concurrency), "--keys", str(keys)], self.log)

    def at(self, t):
        """Sleeps until <t> seconds after the driver started."""
        d = self.t0 + t - time.time()
        if d > 0:
            time.sleep(d)

    def result(self, slack=30):
        try:
            self.proc.wait(timeout=self.seconds + slack)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("the driver did not finish:\n%s" % self.log.read_text(errors="replace"))
        text = self.log.read_text(errors="replace")
        lines = [l for l in text.splitlines() if l.startswith('{"ok"')]
        assert self.proc.returncode == 0 and lines, "driver exited %s:\n%s" % (self.proc.returncode, text)
        res = json.loads(lines[-1])
        print("driver %s: %s" % (self.log.name, lines[-1]))  # shown on failure, or with -s
        res["log"] = text
        return res


def summary(res):
    """The driver's result without its log, for assertion messages."""
    return {k: v for k, v in res.items() if k != "log"}


def assert_sane(res):
    """Nothing hung, nothing returned the wrong data."""
    assert res["hung"] == 0, summary(res)
    assert res["wrong"] == 0, summary(res)


def numsub(server, channel="tyk.cluster.notifications"):
    c = server.client()
    try:
        return dict(c.pubsub_numsub(channel)).get(channel, 0)
    finally:
        c.close()


def hello(gw):
    r = gw.get("/hello", timeout=5)
    assert r.status == 200, r
    return r.json()


def redis_detail(j):
    return j.get("details", {}).get("redis") or {}


def hello_when(gw, pred, timeout, what):
    """Polls /hello until pred(body) holds; returns (body, details.redis)."""
    def probe():
        j = hello(gw)
        return (j, redis_detail(j)) if pred(j) else None
    return wait_for(probe, timeout, what=what)


# ---------------------------------------------------------------------------
# 1-2. standalone: password, ACL user, database
# ---------------------------------------------------------------------------

def test_check_redis_password(make_redis, make_gateway, tmp_path):
    pw = "pw-" + secrets.token_hex(8)
    srv = make_redis(password=pw)
    r = check_redis(tmp_path, storage_for(srv))
    assert_check_passed(r)
    assert "standalone server %s" % srv.addr in r.stdout, r.out
    assert pw not in r.out

    bad = "bad-" + secrets.token_hex(8)
    r = check_redis(tmp_path, storage_for(srv, password=bad))
    assert r.returncode == 1, r.out
    assert "Redis check FAILED" in r.stdout, r.out
    assert re.search(r"PING\s+FAILED: %s: WRONGPASS" % re.escape(srv.addr), r.stdout), r.out
    assert bad not in r.out and pw not in r.out

    # a gateway with the wrong password says why, without the password
    g = make_gateway(conf={"storage": storage_for(srv, password=bad)}, workers=1, name="wrongpw")
    g.wait_log(re.escape(srv.addr) + r": WRONGPASS", timeout=5)
    j, d = hello_when(g, lambda j: redis_detail(j).get("output"), 5, "/hello with an output")
    assert j["status"] == "fail"
    assert d["output"].startswith(srv.addr + ": WRONGPASS"), j
    assert bad not in json.dumps(j)
    g.stop()
    assert bad not in g.log() and pw not in g.log()

    # and with the right one, it passes, and still does not log it
    g = make_gateway(conf={"storage": storage_for(srv)}, workers=1, name="rightpw")
    j, d = hello_when(g, lambda j: "details" in j, 5, "a probe")
    assert j["status"] == "pass" and d["status"] == "pass", j
    g.stop()
    assert pw not in g.log()


def test_acl_user_and_database(make_redis, tmp_path):
    srv = make_redis(password="admin-" + secrets.token_hex(4))
    admin = srv.client()
    admin.execute_command("ACL", "SETUSER", "u", "on", ">pw-of-u", "~*", "+@all")

    r = check_redis(tmp_path, storage_for(srv, username="u", password="pw-of-u"))
    assert_check_passed(r)
    # the username is really sent: the default user's password is not u's
    r = check_redis(tmp_path, storage_for(srv, username="u"))
    assert r.returncode == 1 and "WRONGPASS" in r.out, r.out

    conf = write_conf(tmp_path / "db3.json",
                      storage_for(srv, username="u", password="pw-of-u", database=3))
    assert_check_passed(check_redis(tmp_path, storage_for(srv, username="u", password="pw-of-u",
                                                          database=3)))
    d = Driver(conf, seconds=2, concurrency=4, keys=5)
    # while it runs, its connections are u's, in database 3
    mine = wait_for(lambda: [x for x in admin.client_list() if x.get("user") == "u"], 2,
                    what="the driver connected")
    assert all(x["db"] == "3" for x in mine), mine
    res = d.result()
    assert_sane(res)
    assert res["ok"] > 0 and res["failed"] == 0, summary(res)
    db3 = set(srv.client(username="u", password="pw-of-u", db=3).keys("drv:*"))
    assert {"drv:%d:%d" % (i, j) for i in range(4) for j in range(5)} <= db3, sorted(db3)
    assert {"drv:ctr:%d" % i for i in range(4)} <= db3, sorted(db3)
    assert admin.keys("drv:*") == []  # nothing in database 0
    admin.close()


# ---------------------------------------------------------------------------
# 3. TLS
# ---------------------------------------------------------------------------

def tls_storage(srv, tls, host=HOST, **kw):
    st = {"type": "redis", "host": host, "port": srv.port, "timeout": 2, "use_ssl": True,
          "ca_file": str(tls.ca_cert)}
    st.update(kw)
    return st


def test_tls_server_only(make_redis, redis_tls, tmp_path):
    srv = make_redis(tls=redis_tls)
    for host in (HOST, "localhost"):
        r = check_redis(tmp_path, tls_storage(srv, redis_tls, host))
        assert_check_passed(r)
        assert "over TLS" in r.stdout, r.out
    # pipelined load over TLS
    res = Driver(write_conf(tmp_path / "tls.json", tls_storage(srv, redis_tls)), seconds=1).result()
    assert_sane(res)
    assert res["ok"] > 1000 and res["failed"] == 0, summary(res)


def test_tls_mutual(make_redis, redis_tls, tmp_path):
    srv = make_redis(tls=redis_tls, tls_auth_clients=True)
    r = check_redis(tmp_path, tls_storage(srv, redis_tls, cert_file=str(redis_tls.client_cert),
                                          key_file=str(redis_tls.client_key)))
    assert_check_passed(r)
    r = check_redis(tmp_path, tls_storage(srv, redis_tls))
    assert r.returncode == 1, r.out
    assert "Redis check FAILED" in r.stdout, r.out
    assert re.search(r"PING\s+FAILED: %s: TLS" % re.escape(srv.addr), r.stdout), r.out


def test_tls_wrong_ca(make_redis, redis_tls, tmp_path):
    srv = make_redis(tls=redis_tls)
    r = check_redis(tmp_path, tls_storage(srv, redis_tls, ca_file=str(redis_tls.other_ca_cert)))
    assert r.returncode == 1, r.out
    assert "certificate verification failed" in r.stdout, r.out
    assert srv.addr in r.stdout, r.out
    # ...which ssl_insecure_skip_verify accepts
    r = check_redis(tmp_path, tls_storage(srv, redis_tls, ca_file=str(redis_tls.other_ca_cert),
                                          ssl_insecure_skip_verify=True))
    assert_check_passed(r)


# ---------------------------------------------------------------------------
# 4. Redis Cluster
# ---------------------------------------------------------------------------

def test_cluster_check(redis_cluster, tmp_path):
    # one seed is enough: the rest comes from CLUSTER SLOTS
    r = check_redis(tmp_path, {"enable_cluster": True, "addrs": [redis_cluster.nodes[0].addr],
                               "timeout": 2})
    assert_check_passed(r)
    # the three masters own the slots (replicas are not needed for routing)
    assert re.search(r"topology: cluster: \d+ known nodes, 3 own slots$", r.stdout, re.M), r.out


# Failed commands allowed around the cluster failover instant: none are
# expected (a manual CLUSTER FAILOVER pauses the old master, and what it held
# back is answered with MOVED, which the client follows). See the report.
CLUSTER_FAILED_MAX = 0


def test_cluster_reshard_and_failover_under_load(redis_cluster, tmp_path):
    cl = redis_cluster
    conf = write_conf(tmp_path / "cluster.json",
                      {"enable_cluster": True, "addrs": cl.addrs(), "timeout": 2})
    masters = sorted(cl.masters(), key=lambda m: m["slots"][0].split("-")[0].zfill(5))
    src, dst = masters[0], masters[1]  # src owns slot 0
    assert src["slots"][0].startswith("0-"), masters
    d = Driver(conf, seconds=12, concurrency=32, keys=200)
    d.at(1)
    t = time.time()
    r = subprocess.run(["redis-cli", "--cluster", "reshard", cl.nodes[0].addr,
                        "--cluster-from", src["id"], "--cluster-to", dst["id"],
                        "--cluster-slots", "1000", "--cluster-yes"],
                       capture_output=True, text=True, timeout=60)
    reshard_s = time.time() - t
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    # then a manual failover of the master that received the slots
    replica = cl.node(cl.replicas_of(dst["id"])[0]["addr"])
    d.at(max(time.time() - d.t0 + 0.5, 6))
    replica.client().execute_command("CLUSTER", "FAILOVER")
    t_fo = time.time()
    wait_for(lambda: replica.info("replication").get("role") == "master", 10, 0.05,
             "the replica taking over")
    print("reshard took %.1fs; failover at %.1fs took %.1fs"
          % (reshard_s, t_fo - d.t0, time.time() - t_fo))
    res = d.result()
    assert_sane(res)
    assert res["failed"] <= CLUSTER_FAILED_MAX, (summary(res), "reshard took %.1fs" % reshard_s)
    assert all(n > 0 for n in res["per_sec_ok"][:12]), summary(res)

    # the slots really moved, and the replica now serves them
    cl.wait_ok(20)
    nodes = {n["id"]: n for n in cl.cluster_nodes()}
    new_master = [n for n in nodes.values() if n["addr"] == replica.addr][0]
    assert "master" in new_master["flags"], nodes
    assert "0-999" in new_master["slots"], nodes
    assert nodes[src["id"]]["slots"] == ["1000-5460"], nodes
    assert "slave" in nodes[dst["id"]]["flags"], nodes
    # the driver's keys were in the moved slots (so they moved under load)
    c = replica.client()
    p = c.pipeline(transaction=False)
    for slot in range(1000):
        p.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
    moved_keys = sum(p.execute())
    c.close()
    assert moved_keys > 0


# ---------------------------------------------------------------------------
# 5. Sentinel
# ---------------------------------------------------------------------------

def sentinel_storage(s, **kw):
    st = {"type": "redis", "master_name": s.MASTER_NAME, "addrs": s.addrs(), "timeout": 2}
    st.update(kw)
    return st


def test_sentinel_check(redis_sentinels, tmp_path):
    r = check_redis(tmp_path, sentinel_storage(redis_sentinels))
    assert_check_passed(r)
    master = redis_sentinels.master_addr()
    assert 'topology: sentinel master "mymaster" at %s' % master in r.stdout, r.out


# Failed commands allowed during a Sentinel failover. When the client
# hears +switch-master it drops its connections to the old master, failing
# what was in flight there: each of the driver's callers has at most one
# command outstanding, so at most one failure per caller. Anything beyond
# that means commands went to the demoted master or nowhere. (Observed:
# exactly 16 = one per caller, "no longer the master", in every run.)
SENTINEL_CONCURRENCY = 16
SENTINEL_FAILED_MAX = SENTINEL_CONCURRENCY


def test_sentinel_failover_under_load(redis_sentinels, tmp_path):
    s = redis_sentinels
    old = s.master_addr()
    conf = write_conf(tmp_path / "sentinel.json", sentinel_storage(s))
    d = Driver(conf, seconds=10, concurrency=SENTINEL_CONCURRENCY)
    d.at(2)
    # ordered by the last sentinel: the client asked the first one, which
    # hears of the new master from the others (hello messages)
    s.sentinel_cmd(s.sentinels[-1], "failover", s.MASTER_NAME)
    t = time.time()
    wait_for(lambda: s.master_addr(s.sentinels[0]) != old, 10, 0.05,
             "the client's sentinel naming a new master")
    new = s.master_addr(s.sentinels[0])
    print("sentinel failover seen by the first sentinel after %.1fs" % (time.time() - t))
    res = d.result()
    assert_sane(res)
    assert res["failed"] <= SENTINEL_FAILED_MAX, summary(res)
    assert res["per_sec_ok"][8] > 0 and res["per_sec_ok"][9] > 0, summary(res)
    assert new != old and new in [x.addr for x in s.data]
    assert s.server(new).info("replication")["role"] == "master"
    # the driver wrote to the new master at the end
    assert s.server(new).client().exists("drv:ctr:0") == 1


# ---------------------------------------------------------------------------
# 6-7. outages: killed, stalled
# ---------------------------------------------------------------------------

def test_killed_and_restarted(make_redis, tmp_path):
    srv = make_redis()
    conf = write_conf(tmp_path / "kill.json", storage_for(srv, timeout=1))
    d = Driver(conf, seconds=9, concurrency=16)
    d.at(2)
    srv.kill()
    d.at(4)
    srv.start()
    res = d.result()
    assert_sane(res)
    assert sum(res["per_sec_err"][2:4]) > 0, summary(res)       # the outage shows
    assert sum(res["per_sec_ok"][7:9]) > 0, summary(res)        # and is over
    assert any("connection refused" in m for m in res["errors"]), summary(res)
    # The reconnection backoff doubles from 100 ms while the server is down
    # (retries 0.1, 0.3, 0.7, 1.5, 3.1 s after the kill): after this 2 s
    # outage the next try comes ~1.1 s after the restart. Allow 3 s.
    resumed = [i for i in range(4, 9) if res["per_sec_ok"][i] > 0]
    assert resumed and resumed[0] <= 6, summary(res)


def test_stall_times_out(make_redis, tmp_path):
    srv = make_redis()
    conf = write_conf(tmp_path / "stall.json", storage_for(srv, timeout=1))
    d = Driver(conf, seconds=6, concurrency=16)
    d.at(1.5)
    done = []

    def sleep_server():
        c = srv.client(socket_timeout=10)
        done.append(c.execute_command("DEBUG", "SLEEP", "2"))
        c.close()

    t = threading.Thread(target=sleep_server, daemon=True)
    t.start()
    res = d.result()
    t.join(5)
    assert done, "DEBUG SLEEP did not return"
    assert_sane(res)
    # storage.timeout is 1 s: nobody waits for the 2 s stall (tick 50 ms)
    assert res["max_ms"] <= 1300 + 100, summary(res)
    assert res["failed"] > 0, summary(res)
    assert all("timed out" in m for m in res["errors"]), summary(res)
    assert sum(res["per_sec_ok"][4:6]) > 0, summary(res)  # recovered after the stall


# ---------------------------------------------------------------------------
# 8. the gateway: /hello, /ready, logs
# ---------------------------------------------------------------------------

def test_gateway_health_follows_redis(make_redis, make_gateway, upstream):
    pw = "pw-" + secrets.token_hex(8)
    srv = make_redis(password=pw, start=False)
    g = make_gateway(conf={"storage": storage_for(srv, timeout=1),
                           "liveness_check": {"check_duration": 500000000},
                           "turnpike": {"redis_ready_grace": 1}},
                     apis=[api_def("keyless", "/keyless/", upstream.url("/"))], workers=1)
    t_start = time.time()
    # the API works without Redis
    r = g.get("/keyless/x")
    assert r.status == 200 and r.body == b"hello from upstream\n", r

    refused = srv.addr + ": connection refused"
    j, d = hello_when(g, lambda j: redis_detail(j).get("output") == refused, 5,
                      "/hello reporting the refused connection")
    assert j["status"] == "fail", j
    assert set(d) == {"status", "output", "componentType", "time"}, j
    assert d["status"] == "fail" and d["componentType"] == "datastore", j
    assert RFC3339.match(d["time"]), j
    time.sleep(max(0, t_start + 1.2 - time.time()))
    wait_for(lambda: g.get("/ready").status == 503, 2, what="/ready 503 after the grace")
    r = g.get("/ready")
    assert r.status == 503, r
    assert r.json() == {"status": "error", "message": "Redis connection not available"}
    assert g.get("/keyless/x").status == 200

    srv.start()
    t_up = time.time()
    j, d = hello_when(g, lambda j: j["status"] == "pass", BACKOFF_MAX_S + 2,
                      "/hello pass after Redis starts")
    assert set(d) == {"status", "componentType", "time"} and d["status"] == "pass", j
    assert d["componentType"] == "datastore" and RFC3339.match(d["time"]), j
    r = g.get("/ready")
    assert r.status == 200 and r.json()["status"] == "pass", r
    up_s = time.time() - t_up

    srv.kill()
    t_down = time.time()
    j, d = hello_when(g, lambda j: j["status"] == "fail", 3, "/hello fail after Redis dies")
    assert d["status"] == "fail" and d["output"].startswith(srv.addr + ": "), j
    wait_for(lambda: g.get("/ready").status == 503, 3, what="/ready 503 again")
    assert time.time() - t_down >= 1.0 - 0.05  # not before the grace
    assert g.get("/keyless/x").status == 200

    log = g.log()
    assert srv.addr in log
    assert pw not in log, "the password is in the gateway log"
    print("redis back in service after %.1fs" % up_s)


# ---------------------------------------------------------------------------
# 9. pub/sub: tyk.cluster.notifications
# ---------------------------------------------------------------------------

def test_notifications_subscription(make_redis, make_gateway):
    srv = make_redis()
    g = make_gateway(conf={"storage": storage_for(srv, timeout=1)}, workers=1, name="sub")
    wait_for(lambda: numsub(srv) == 1, 5, what="the master subscribed")
    srv.restart()
    assert numsub(srv) == 0
    wait_for(lambda: numsub(srv) == 1, 5, what="re-subscribed after a restart")
    off = len(g.log())
    msg = json.dumps({"command": "GroupReload", "payload": "", "signature": "x", "algorithm": 5})
    assert srv.client().publish("tyk.cluster.notifications", msg) == 1
    g.wait_log(r"tyk\.cluster\.notifications: ignoring GroupReload: its signature does not match",
               timeout=5, after=off)
    g.stop()
    wait_for(lambda: numsub(srv) == 0, 5, what="the subscription gone with the gateway")

    g = make_gateway(conf={"storage": storage_for(srv, timeout=1), "suppress_redis_signal_reload": True},
                     workers=1, name="nosub")
    hello_when(g, lambda j: "details" in j, 5, "a probe")
    time.sleep(1.5)
    assert numsub(srv) == 0


# ---------------------------------------------------------------------------
# 10. the pool: optimisation_max_active
# ---------------------------------------------------------------------------

def test_pool_max_active(make_redis, tmp_path):
    srv = make_redis()
    c = srv.client()
    me = c.client_id()
    before = {x["id"] for x in c.client_list()}
    conf = write_conf(tmp_path / "pool.json", storage_for(srv, optimisation_max_active=2))
    d = Driver(conf, seconds=3, concurrency=200)
    most = 0
    seen = set()
    while d.proc.poll() is None and time.time() < d.t0 + 3:
        new = [x for x in c.client_list() if x["id"] not in before and int(x["id"]) != me]
        seen.update(x["id"] for x in new)
        most = max(most, len(new))
        time.sleep(0.1)
    res = d.result()
    assert_sane(res)
    assert res["ok"] > 0 and res["failed"] == 0, summary(res)
    print("driver connections: at most %d at once, %d in all" % (most, len(seen)))
    assert 1 <= most <= 2, (most, seen)
    assert len(seen) <= 2, seen  # no churn either
