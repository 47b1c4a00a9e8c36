"""Circuit breakers (extended_paths.circuit_breakers; TYK-COMPAT 21.5): a
rate breaker over 10 s, shared by every worker of the node; open, it
answers 503 "Service temporarily unavailable." without asking the
upstream; a half-open trial after 500 ms closes it on success; it closes
by itself after return_to_service_after."""
import json
import time

from conftest import api_def
from test_control import admin

MSG = "Service temporarily unavailable."


def breaker_api(api_id, target, **entry):
    d = api_def(api_id, "/%s/" % api_id, target)
    e = {"path": "/status/{code}", "method": "GET", "threshold_percent": 0.5, "samples": 10,
         "return_to_service_after": 30}
    e.update(entry)
    d["version_data"] = {"not_versioned": True, "versions": {
        "Default": {"name": "Default", "extended_paths": {"circuit_breakers": [e]}}}}
    return d


def fresh(g, path, method="GET"):
    """One request on a connection of its own (the kernel spreads new
    connections over the workers)."""
    return g.request(method, path)


def refused(r):
    return r.status == 503 and json.loads(r.body)["error"] == MSG


def trip(g, api_id, n=10):
    for i in range(n):
        assert fresh(g, "/%s/status/500" % api_id).status == 500, i


def test_opens_at_the_threshold_across_workers_and_half_opens(make_gateway, upstream, tmp_path):
    sock = tmp_path / "admin.sock"
    g = make_gateway(apis=[breaker_api("cb", upstream.url("/"))], workers=2,
                     conf={"turnpike": {"admin_socket": str(sock)}})
    # successes alone never trip it; 9 results are below samples
    for _ in range(4):
        assert fresh(g, "/cb/status/200").status == 200
    for _ in range(5):
        assert fresh(g, "/cb/status/500").status == 500
    # another method is not this breaker's
    for _ in range(10):
        assert fresh(g, "/cb/status/500", "POST").status == 500
    assert fresh(g, "/cb/status/200").status == 200
    # the 11th result, 6 of 11 failed: it trips, for both workers
    assert fresh(g, "/cb/status/503").status == 503
    t_open = time.monotonic()
    for _ in range(8):
        r = fresh(g, "/cb/status/200")
        assert refused(r), r
    g.wait_log(r"BreakerTripped: circuit breaker cb GET /status/\{code\} opened: 6 of 11")
    assert g.log().count("BreakerTripped") == 1
    # other paths and methods are unaffected
    assert fresh(g, "/cb/other").status == 200
    assert fresh(g, "/cb/status/200", "PUT").status == 200
    out = admin(sock, "show breakers")
    assert "cb GET /status/{code}" in out and " open " in out, out
    # half-open after 500 ms: one trial goes through, succeeds, and closes it
    time.sleep(max(0, 0.6 - (time.monotonic() - t_open)))
    assert fresh(g, "/cb/status/200").status == 200
    g.wait_log(r"BreakerReset: circuit breaker cb GET /status/\{code\} closed")
    for _ in range(6):
        assert fresh(g, "/cb/status/200").status == 200
    assert " closed " in admin(sock, "show breakers")


def test_a_failed_trial_keeps_it_open_and_backs_off(make_gateway, upstream):
    g = make_gateway(apis=[breaker_api("ft", upstream.url("/"))], workers=2)
    trip(g, "ft")
    assert refused(fresh(g, "/ft/status/200"))
    time.sleep(0.6)
    # the trial fails ...
    assert fresh(g, "/ft/status/500").status == 500
    t0 = time.monotonic()
    # ... so it stays open, and the next trial waits 1 s
    while time.monotonic() - t0 < 0.8:
        assert refused(fresh(g, "/ft/status/200"))
        time.sleep(0.1)
    time.sleep(0.4)
    assert fresh(g, "/ft/status/200").status == 200
    assert fresh(g, "/ft/status/200").status == 200


def test_without_half_open_it_waits_return_to_service_after(make_gateway, upstream):
    g = make_gateway(apis=[breaker_api("nh", upstream.url("/"), return_to_service_after=2,
                                       disable_half_open_state=True)], workers=2)
    trip(g, "nh")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.7:
        assert refused(fresh(g, "/nh/status/200"))
        time.sleep(0.1)
    time.sleep(0.5)
    assert fresh(g, "/nh/status/200").status == 200
    g.wait_log(r"BreakerReset: circuit breaker nh GET /status/\{code\} closed")


def test_an_unreachable_upstream_trips_it(make_gateway):
    from conftest import free_port
    g = make_gateway(apis=[breaker_api("dead", "http://127.0.0.1:%d/" % free_port(),
                                       samples=3)], workers=1)
    for _ in range(3):
        assert fresh(g, "/dead/status/200").status >= 500
    assert refused(fresh(g, "/dead/status/200"))


def test_bad_breaker_settings_are_skipped_with_a_warning(make_gateway, upstream):
    g = make_gateway(apis=[breaker_api("bad", upstream.url("/"), threshold_percent=50)],
                     workers=1)
    g.wait_log(r"circuit_breakers ..?/status/\{code\}..? skipped: threshold_percent must be")
    for _ in range(12):
        assert fresh(g, "/bad/status/500").status == 500
