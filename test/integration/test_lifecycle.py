"""The process model: workers respawn, graceful drain and its deadline,
fast stop, orphaned workers, and reloads on SIGHUP."""
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import HOST, api_def, http, pid_alive, port_refuses


def run_wrk(url, seconds, conns=16, threads=2, extra=()):
    """Starts wrk; returns the Popen (stdout captured)."""
    return subprocess.Popen(["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--timeout",
                             "3s"] + list(extra) + [url], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def parse_wrk(out):
    m = re.search(r"(\d+) requests in", out)
    assert m, out
    total = int(m.group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return total, errors


def start_requests(port, path, n):
    """n concurrent GETs on fresh connections; returns (threads, results)."""
    results = [None] * n

    def one(i):
        try:
            r = http(port, "GET", path, timeout=15)
            results[i] = (r.status, r.body)
        except Exception as e:  # noqa: BLE001
            results[i] = ("error", repr(e))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def wait_until(pred, timeout, step=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


# ---- workers ----------------------------------------------------------------------

def test_kill_worker_under_load(nginx, make_gateway):
    g = make_gateway(apis=[api_def("n", "/n/", nginx.url("/"))], workers=2)
    before = g.worker_pids()
    assert g.get("/n/").body == b"ok\n"
    wrk = run_wrk("http://%s:%d/n/" % (HOST, g.port), 5)
    try:
        time.sleep(2)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        out, _ = wrk.communicate(timeout=20)
    finally:
        if wrk.poll() is None:
            os.killpg(wrk.pid, signal.SIGKILL)
            wrk.wait()
    total, errors = parse_wrk(out)
    assert total > 1000, out
    g.wait_log(r"worker\.\d \(pid %d\) was killed by signal 9" % victim)
    assert errors <= 16, "%d of %d requests failed (16 connections):\n%s" % (errors, total, out)
    assert errors / total < 0.01, out
    assert wait_until(lambda: len(g.worker_pids()) == 2, 3), g.worker_pids()
    after = g.worker_pids()
    assert victim not in after
    assert before[1] in after
    g.wait_log(r"started worker\.\d \(pid (%s)" % "|".join(str(p) for p in after if p not in before))
    for _ in range(10):
        assert g.get("/n/").status == 200


# ---- graceful shutdown --------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT], ids=["SIGTERM", "SIGQUIT"])
def test_graceful_drain_finishes_in_flight(upstream, make_gateway, sig):
    g = make_gateway(conf={"graceful_shutdown_timeout_duration": 5},
                     apis=[api_def("e", "/e/", upstream.url("/"))])
    threads, results = start_requests(g.port, "/e/delay/1500", 20)
    time.sleep(0.3)
    t0 = time.time()
    g.signal(sig)
    time.sleep(0.3)
    assert port_refuses(g.port), "new connections are still accepted while draining"
    code = g.wait_exit(6)
    took = time.time() - t0
    for t in threads:
        t.join(10)
    assert [r for r in results if r != (200, b"slept")] == [], results
    assert code == 0, "exit code %r" % code
    assert took < 3.0, "drain took %.2f s for requests ending 1.2 s after the signal" % took


def test_shutdown_delay_fails_readiness_first(upstream, make_gateway):
    g = make_gateway(conf={"graceful_shutdown_delay_seconds": 1},
                     apis=[api_def("e", "/e/", upstream.url("/"))])
    assert g.get("/ready").status == 200
    t0 = time.time()
    g.signal(signal.SIGTERM)
    assert wait_until(lambda: g.get("/ready").status == 503, 0.5)
    r = g.get("/ready")
    assert r.body == b'{"status":"error","message":"Gateway is shutting down"}\n'
    assert g.get("/hello").status == 200
    assert g.get("/e/echo").status == 200  # traffic is still served during the delay
    code = g.wait_exit(5)
    took = time.time() - t0
    assert code == 0
    assert 0.9 <= took < 3.0, "graceful_shutdown_delay_seconds is 1; exited after %.2f s" % took


def test_drain_deadline_cuts_long_request(upstream, make_gateway):
    g = make_gateway(conf={"graceful_shutdown_timeout_duration": 1},
                     apis=[api_def("e", "/e/", upstream.url("/"))])
    threads, results = start_requests(g.port, "/e/delay/6000", 1)
    time.sleep(0.3)
    t0 = time.time()
    g.signal(signal.SIGTERM)
    code = g.wait_exit(6)
    took = time.time() - t0
    threads[0].join(10)
    assert code == 0, code
    assert 0.8 <= took <= 3.5, "graceful_shutdown_timeout_duration is 1 s; exited after %.2f s" % took
    assert results[0] != (200, b"slept")


def test_idle_keepalive_connection_closed_on_drain(upstream, make_gateway):
    g = make_gateway(apis=[api_def("e", "/e/", upstream.url("/"))])
    with g.conn() as c:
        assert c.request("GET", "/e/echo").status == 200
        t0 = time.time()
        g.signal(signal.SIGTERM)
        assert c.closed_by_peer(2), "idle keep-alive connection not closed by the drain"
        assert g.wait_exit(3) == 0
    assert time.time() - t0 < 2


def test_sigint_fast_stop(upstream, make_gateway):
    g = make_gateway(conf={"graceful_shutdown_timeout_duration": 10},
                     apis=[api_def("e", "/e/", upstream.url("/"))])
    threads, results = start_requests(g.port, "/e/delay/4000", 3)
    time.sleep(0.3)
    t0 = time.time()
    g.signal(signal.SIGINT)
    code = g.wait_exit(5)
    took = time.time() - t0
    for t in threads:
        t.join(10)
    assert code == 0
    assert took < 1.0, "SIGINT took %.2f s" % took
    assert all(r != (200, b"slept") for r in results)
    assert wait_until(lambda: not any(pid_alive(p) for p in g.known_pids if p != g.pid), 2)


def test_second_sigterm_stops_fast(upstream, make_gateway):
    g = make_gateway(conf={"graceful_shutdown_timeout_duration": 10},
                     apis=[api_def("e", "/e/", upstream.url("/"))])
    threads, results = start_requests(g.port, "/e/delay/5000", 1)
    time.sleep(0.3)
    g.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert g.proc.poll() is None  # still draining the slow request
    t0 = time.time()
    g.signal(signal.SIGTERM)
    code = g.wait_exit(5)
    assert code == 0
    assert time.time() - t0 < 1.0


def test_workers_exit_when_master_is_killed(upstream, make_gateway):
    g = make_gateway(apis=[api_def("e", "/e/", upstream.url("/"))], workers=2)
    workers = g.worker_pids()
    idle = g.conn()
    assert idle.request("GET", "/e/echo").status == 200
    os.kill(g.pid, signal.SIGKILL)
    g.proc.wait(5)
    assert wait_until(lambda: not any(pid_alive(p) for p in workers), 3), \
        "orphaned workers still running: %s" % [p for p in workers if pid_alive(p)]
    assert port_refuses(g.port)
    assert idle.closed_by_peer(1)
    idle.close()


# ---- reload ------------------------------------------------------------------------

def test_sighup_adds_api_without_failed_requests(nginx, upstream, make_gateway):
    """Reloads under load: every request gets its answer. The load uses a
    new connection per request (Connection: close), so no keep-alive race
    is involved: a failure is a request the gateway dropped."""
    g = make_gateway(apis=[api_def("n", "/n/", nginx.url("/"))], workers=2)
    old = g.worker_pids()
    assert g.get("/b/echo").status == 404
    probe_failures = []

    def new_route_served():
        try:
            return g.get("/b/echo").status == 200
        except OSError as e:
            probe_failures.append(repr(e))
            return False

    wrk = run_wrk("http://%s:%d/n/" % (HOST, g.port), 3, conns=8,
                  extra=["-H", "Connection: close"])
    try:
        time.sleep(0.3)
        g.add_api(api_def("b", "/b/", upstream.url("/")))
        g.signal(signal.SIGHUP)
        assert wait_until(new_route_served, 3), g.log_tail()
        g.wait_log(r"reload done: generation 2 serves 2 APIs")
        # more reloads under the same load
        for i in range(9):
            time.sleep(0.2)
            g.signal(signal.SIGHUP)
            g.wait_log(r"reload done: generation %d" % (i + 3))
        out, _ = wrk.communicate(timeout=20)
    finally:
        if wrk.poll() is None:
            os.killpg(wrk.pid, signal.SIGKILL)
            wrk.wait()
    total, errors = parse_wrk(out)
    assert total > 1000, out
    assert errors == 0 and probe_failures == [], \
        "requests failed during 10 reloads: wrk %d of %d, probe %s\n%s" % (
            errors, total, probe_failures, out)
    # API changes are published in shared memory: the same workers serve them
    assert sorted(g.worker_pids()) == sorted(old)
    assert g.get("/n/").status == 200
    assert g.get("/b/echo").status == 200
def test_sighup_with_broken_config_keeps_serving(upstream, make_gateway):
    g = make_gateway(apis=[api_def("a", "/a/", upstream.url("/"))], workers=2)
    before = g.worker_pids()
    good = g.conf_path.read_text()
    g.conf_path.write_text(good.replace('"listen_port"', '"listen_port" 1,', 1))  # invalid JSON
    mark = len(g.log())
    g.signal(signal.SIGHUP)
    m = g.wait_log(r"level=error.*reload failed.*", after=mark)
    assert str(g.conf_path) in m.group(0)
    assert "line" in m.group(0)
    time.sleep(0.3)
    assert g.worker_pids() == before
    for _ in range(5):
        assert g.get("/a/echo").status == 200
    # fixed again: the next reload works
    g.conf_path.write_text(good)
    g.add_api(api_def("b", "/b/", upstream.url("/")))
    g.signal(signal.SIGHUP)
    assert wait_until(lambda: g.get("/b/echo").status == 200, 3)


def test_sighup_with_wrong_type_keeps_serving(upstream, make_gateway):
    g = make_gateway(apis=[api_def("a", "/a/", upstream.url("/"))], workers=1)
    before = g.worker_pids()
    conf = json.loads(g.conf_path.read_text())
    conf["proxy_default_timeout"] = "soon"
    g.conf_path.write_text(json.dumps(conf))
    mark = len(g.log())
    g.signal(signal.SIGHUP)
    m = g.wait_log(r"reload failed.*", after=mark)
    assert "$.proxy_default_timeout" in m.group(0)
    time.sleep(0.2)
    assert g.worker_pids() == before
    assert g.get("/a/echo").status == 200


def test_sighup_with_invalid_api_file_keeps_old_generation(upstream, make_gateway):
    g = make_gateway(apis=[api_def("a", "/a/", upstream.url("/"))], workers=2)
    (g.apps / "broken.json").write_text('{"api_id": "broken", "proxy": ')
    bad = api_def("b", "/b/", upstream.url("/"))
    bad["proxy"]["target_url"] = 42
    (g.apps / "b.json").write_text(json.dumps(bad))
    g.add_api(api_def("c", "/c/", upstream.url("/")))
    mark = len(g.log())
    g.signal(signal.SIGHUP)
    # every error is reported, with its file and JSON path
    g.wait_log(r"reload failed.*broken\.json", after=mark)
    g.wait_log(r"reload failed.*b\.json.*\$\.proxy\.target_url", after=mark)
    # nothing of the new set is served; the old generation is whole
    for _ in range(6):
        assert g.get("/c/echo").status == 404
        assert g.get("/a/echo").status == 200
    # once the files are fixed, the next reload serves them all
    (g.apps / "broken.json").unlink()
    (g.apps / "b.json").unlink()
    mark = len(g.log())
    g.signal(signal.SIGHUP)
    assert wait_until(lambda: g.get("/c/echo").status == 200, 5), g.log()[mark:]
    assert g.get("/a/echo").status == 200
def test_sighup_changes_worker_count(upstream, make_gateway):
    g = make_gateway(apis=[api_def("a", "/a/", upstream.url("/"))], workers=2)
    old = g.worker_pids()
    conf = json.loads(g.conf_path.read_text())
    conf["turnpike"]["workers"] = 3
    g.conf_path.write_text(json.dumps(conf))
    g.signal(signal.SIGHUP)
    assert wait_until(lambda: len(g.worker_pids()) == 3 and not set(g.worker_pids()) & set(old), 5), \
        g.worker_pids()
    for _ in range(6):
        assert g.get("/a/echo").status == 200
