"""A target_list host that refuses connections: idempotent requests without
a body go on to the next host (Turnpike's addition, issue 15); others get
the failure. Load balancing stays round-robin."""
import json

from conftest import api_def, free_port


def lb_api(upstream, dead_port):
    d = api_def("lb", "/lb/", upstream.url("/"))
    d["proxy"]["enable_load_balancing"] = True
    d["proxy"]["target_list"] = ["http://127.0.0.1:%d/" % dead_port, upstream.url("/")]
    return d


def test_connect_failure_goes_to_the_next_host_for_idempotent_requests(make_gateway, upstream):
    dead = free_port()
    g = make_gateway(apis=[lb_api(upstream, dead)], workers=1)
    for _ in range(10):
        r = g.get("/lb/echo")
        assert r.status == 200, r
        assert json.loads(r.body)["method"] == "GET"
    assert g.request("HEAD", "/lb/echo").status == 200
    g.wait_log(r"upstream http://127.0.0.1:%d/: connection refused; trying %s" %
               (dead, upstream.url("/")))
    # a POST is not replayed: every other one reaches the dead host and fails
    codes = [g.request("POST", "/lb/echo", body=b"x").status for _ in range(6)]
    assert sorted(codes) == [200, 200, 200, 500, 500, 500], codes
    # nor a GET with a body
    codes = [g.request("GET", "/lb/echo", body=b"x").status for _ in range(4)]
    assert sorted(codes) == [200, 200, 500, 500], codes


def test_all_hosts_refusing(make_gateway):
    d = api_def("lb", "/lb/", "http://127.0.0.1:1/")
    d["proxy"]["enable_load_balancing"] = True
    d["proxy"]["target_list"] = ["http://127.0.0.1:%d/" % free_port() for _ in range(3)]
    g = make_gateway(apis=[d], workers=1)
    r = g.get("/lb/x")
    assert r.status == 500 and json.loads(r.body)["error"] == \
        "There was a problem proxying the request", r
    # each host was tried once, then the failure
    g.wait_log(r"; trying ")
    assert g.log().count("; trying ") == 2, g.log()
    assert g.proc.poll() is None
