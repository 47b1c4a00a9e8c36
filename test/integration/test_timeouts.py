"""Hard timeouts (extended_paths.hard_timeouts, a version's
global_enforce_timeout; TYK-COMPAT 21.5): 504 with Tyk's message when the
upstream has not answered in time, per path and method; a websocket
session ends at its hard timeout too."""
import json
import time

from conftest import api_def
from test_websocket import WS_ON, Ws, wsecho  # noqa: F401 (fixture)

MSG = "Upstream service reached hard timeout."


def timed_api(api_id, target, timeouts, **version):
    d = api_def(api_id, "/%s/" % api_id, target)
    v = {"name": "Default", "extended_paths": {"hard_timeouts": timeouts}}
    v.update(version)
    d["version_data"] = {"not_versioned": True, "versions": {"Default": v}}
    return d


def timed_get(g, path, method="GET"):
    t0 = time.monotonic()
    r = g.request(method, path)
    return r, time.monotonic() - t0


def test_hard_timeout_per_path_and_method(make_gateway, upstream):
    api = timed_api("t", upstream.url("/"), [
        {"path": "/delay/{ms}", "method": "GET", "timeout": 1},
        {"path": "/slowpost/delay/{ms}", "method": "POST", "timeout": 5, "duration": "300ms"},
        {"path": "/delay/{ms}", "method": "DELETE", "timeout": 1, "disabled": True}])
    g = make_gateway(apis=[api])
    r, took = timed_get(g, "/t/delay/2500")
    assert r.status == 504
    assert json.loads(r.body)["error"] == MSG
    assert 0.9 < took < 2.0, took
    r, _ = timed_get(g, "/t/delay/100")
    assert r.status == 200 and r.body == b"slept"
    # "duration" wins over "timeout"
    r, took = timed_get(g, "/t/slowpost/delay/1500", "POST")
    assert r.status == 504 and took < 1.2, took
    # another method, a disabled entry: proxy_default_timeout (30 s) only
    r, took = timed_get(g, "/t/delay/1300", "PUT")
    assert r.status == 200 and took > 1.2
    r, took = timed_get(g, "/t/delay/1300", "DELETE")
    assert r.status == 200 and took > 1.2
    # the gateway goes on serving
    assert g.get("/t/x").status == 200


def test_global_enforce_timeout(make_gateway, upstream):
    api = timed_api("g", upstream.url("/"), [{"path": "/delay/{ms}", "method": "GET",
                                              "timeout": 3}],
                    global_enforce_timeout="500ms")
    g = make_gateway(apis=[api])
    # an entry that matches has its own timeout
    r, took = timed_get(g, "/g/delay/1200")
    assert r.status == 200, (r, took)
    # anything else: the version's
    r, took = timed_get(g, "/g/other/delay/1200", "POST")
    assert r.status == 504 and json.loads(r.body)["error"] == MSG and took < 1.1, took


def test_bad_durations_are_skipped_with_a_warning(make_gateway, upstream):
    api = timed_api("b", upstream.url("/"), [{"path": "/delay/{ms}", "method": "GET",
                                              "timeout": 0, "duration": "soon"}])
    g = make_gateway(apis=[api])
    g.wait_log(r'hard_timeouts ..?/delay/\{ms\}..?: duration ..?soon..? is not a Go duration')
    g.wait_log(r'hard_timeouts ..?/delay/\{ms\}..? skipped: no timeout above 0')
    assert timed_get(g, "/b/delay/300")[0].status == 200


def test_a_hard_timeout_ends_a_websocket_session(make_gateway, wsecho):  # noqa: F811
    api = timed_api("w", wsecho.url("/"), [{"path": "/ws", "method": "GET", "timeout": 1}])
    g = make_gateway(conf=WS_ON, apis=[api])
    w = Ws(g.port, "/w/ws")
    assert w.status == 101
    t0 = time.monotonic()
    for _ in range(3):
        w.send(b"tick")
        assert w.recv() == (1, b"tick")
        time.sleep(0.2)
    assert w.closed(timeout=5)
    assert 0.8 < time.monotonic() - t0 < 2.5
    g.wait_log(r"upgraded session reached its hard timeout")
