"""Uptime tests (TYK-COMPAT 10, 20): the master probes each check_list URL
every time_wait seconds; after failure_trigger_sample_size failures the
host is down (HostDown, Tyk's PollerCheckerInstance key, shared memory),
and load balancing with check_host_against_uptime_tests skips it until it
is up again; every host down: 503 "all hosts are down"."""
import time

import msgpack
import redis as redislib

from conftest import HOST, PYTHON, UPSTREAM_PY, api_def, free_port, spawn, wait_port, _kill_group
from test_control import admin
from test_analytics import wait_for

UPTIME = {"uptime_tests": {"config": {"failure_trigger_sample_size": 2, "time_wait": 1,
                                      "enable_uptime_analytics": True}}}


def lb_api(api_id, hosts, checks=True):
    d = api_def(api_id, "/%s/" % api_id, hosts[0], enable_load_balancing=True,
                target_list=list(hosts), check_host_against_uptime_tests=checks)
    d["uptime_tests"] = {"check_list": [{"url": h + "health", "timeout": 300000000}
                                        for h in hosts],
                         "config": {"expire_utime_after": 60}}
    return d


class PortUpstream:
    """test/upstream.py on a port chosen before it runs."""

    def __init__(self, port, workdir):
        self.port = port
        self.proc = spawn([PYTHON, str(UPSTREAM_PY), str(port)], workdir / ("up-%d.log" % port))
        wait_port(port, 10, self.proc)

    def stop(self):
        _kill_group(self.proc)
        self.proc.wait(timeout=5)


def gateway(make_gateway, make_redis, apis, tmp_path, extra=None):
    red = make_redis()  # its own: the poller election key is per Redis
    conf = {"storage": {"port": red.port}, "turnpike": {"admin_socket": str(tmp_path / "a.sock")}}
    conf.update(UPTIME)
    conf.update(extra or {})
    g = make_gateway(conf=conf, apis=apis, workers=2)
    return g, redislib.Redis(host=HOST, port=red.port), tmp_path / "a.sock"


def test_a_down_host_leaves_the_rotation_and_rejoins(make_gateway, make_redis, upstream,
                                                     tmp_path):
    dead_port = free_port()
    live, dead = upstream.url("/"), "http://%s:%d/" % (HOST, dead_port)
    g, r, sock = gateway(make_gateway, make_redis, [lb_api("lb", [live, dead])], tmp_path)
    g.wait_log(r"HostDown: uptime test failed: http://127\.0\.0\.1:%d/health" % dead_port,
               timeout=10)
    assert r.get("host-checker:PollerCheckerInstance:127.0.0.1:%d" % dead_port) == b"1"
    assert r.ttl("host-checker:PollerCheckerInstance:127.0.0.1:%d" % dead_port) <= 2
    # POSTs are never retried on another host: only the checker keeps them off the dead one
    for i in range(100):
        resp = g.request("POST", "/lb/post/%d" % i, body=b"x")
        assert resp.status == 200, (i, resp)
    out = admin(sock, "show hosts")
    assert "127.0.0.1:%d down" % dead_port in out and "127.0.0.1:%d up" % upstream.port in out, out
    # the host comes back: after as many successes as failures were counted, it rejoins
    back = PortUpstream(dead_port, tmp_path)
    try:
        g.wait_log(r"HostUp: uptime test succeeded: http://127\.0\.0\.1:%d/health" % dead_port,
                   timeout=20)
        assert r.get("host-checker:PollerCheckerInstance:127.0.0.1:%d" % dead_port) is None
        wait_for(lambda: "127.0.0.1:%d up" % dead_port in admin(sock, "show hosts"), 5)
        for i in range(10):
            assert g.request("POST", "/lb/post", body=b"x").status == 200
    finally:
        back.stop()
    # it was back in the rotation: stopped again, it gets requests before the checker notices
    codes = [g.request("POST", "/lb/post", body=b"x").status for _ in range(4)]
    assert any(c >= 500 for c in codes), codes
    # uptime analytics: one record per probe, in Tyk's layout
    raws = r.lrange("host-checker:tyk-uptime-analytics", 0, -1)
    assert len(raws) >= 4
    recs = [msgpack.unpackb(x, raw=False) for x in raws]
    assert list(recs[0].keys()) == ["URL", "RequestTime", "ResponseCode", "TCPError",
                                    "ServerError", "Day", "Month", "Year", "Hour", "Minute",
                                    "TimeStamp", "ExpireAt", "APIID", "OrgID"]
    bad = [x for x in recs if x["URL"] == dead + "health" and x["TCPError"]]
    good = [x for x in recs if x["URL"] == live + "health"]
    assert bad and all(x["ResponseCode"] == 521 and x["ServerError"] is False for x in bad)
    assert good and all(x["ResponseCode"] == 200 and not x["TCPError"] for x in good)
    assert all(x["APIID"] == "lb" for x in recs)
    ts, exp = good[0]["TimeStamp"], good[0]["ExpireAt"]
    assert isinstance(ts, list) and 55 <= exp[0] - ts[0] <= 65


def test_every_host_down_is_503(make_gateway, make_redis, tmp_path):
    hosts = ["http://%s:%d/" % (HOST, free_port()) for _ in range(2)]
    g, _, _ = gateway(make_gateway, make_redis, [lb_api("all", hosts)], tmp_path)
    wait_for(lambda: g.log().count("HostDown") >= 2, 10)
    resp = g.get("/all/x")
    assert resp.status == 503
    assert resp.body == b"all hosts are down\n"
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"


def test_without_check_host_against_uptime_tests_nothing_is_skipped(make_gateway, make_redis,
                                                                    upstream, tmp_path):
    dead = "http://%s:%d/" % (HOST, free_port())
    g, _, _ = gateway(make_gateway, make_redis,
                      [lb_api("plain", [upstream.url("/"), dead], checks=False)], tmp_path)
    g.wait_log("HostDown", timeout=10)
    codes = [g.request("POST", "/plain/post", body=b"x").status for _ in range(10)]
    assert 200 in codes and any(c >= 500 for c in codes), codes


def test_checks_off_by_node_setting_and_bad_entries(make_gateway, make_redis, upstream, tmp_path):
    api = lb_api("off", [upstream.url("/"), "http://%s:%d/" % (HOST, free_port())])
    api["uptime_tests"]["check_list"].append({"url": "http://%s:1/x" % HOST, "body": "%%%"})
    g, _, sock = gateway(make_gateway, make_redis, [api], tmp_path)
    g.wait_log(r"check_list\[2\] \(http://127\.0\.0\.1:1/x\) skipped: body is not valid base64")
    (tmp_path / "b").mkdir()
    g2, _, sock2 = gateway(make_gateway, make_redis, [api], tmp_path / "b",
                           {"uptime_tests": {"disable": True}})
    assert "disabled" in admin(sock2, "show hosts")
    time.sleep(2.5)
    assert "HostDown" not in g2.log()
    assert "HostDown" in g.log()


def test_reloads_keep_the_state_of_checks_that_stay(make_gateway, make_redis, upstream,
                                                    tmp_path):
    dead_port = free_port()
    dead = "http://%s:%d/" % (HOST, dead_port)
    api = lb_api("rl", [upstream.url("/"), dead])
    g, _, sock = gateway(make_gateway, make_redis, [api], tmp_path)
    g.wait_log("HostDown", timeout=10)
    # another API arrives: the dead host stays down, no second HostDown, no 5xx
    g.add_api(api_def("other", "/other/", upstream.url("/")))
    assert "Success=1" in admin(sock, "reload")
    assert "127.0.0.1:%d down" % dead_port in admin(sock, "show hosts")
    for _ in range(20):
        assert g.request("POST", "/rl/post", body=b"x").status == 200
    assert g.log().count("HostDown") == 1
    # the dead host's check goes: it is no longer kept out of the rotation
    api["uptime_tests"]["check_list"] = api["uptime_tests"]["check_list"][:1]
    g.add_api(api)
    assert "Success=1" in admin(sock, "reload")
    out = admin(sock, "show hosts")
    assert "127.0.0.1:%d" % dead_port not in out and "1 checks" in out, out
    codes = [g.request("POST", "/rl/post", body=b"x").status for _ in range(6)]
    assert any(c >= 500 for c in codes), codes
