"""Heap allocations per request in steady state (issue: performance):
the gateway runs with test/alloc/tp_alloccount.c preloaded, which counts
every malloc, calloc, realloc and aligned allocation of each process into
a file the test reads while it runs. After a warm-up, thousands of
keep-alive requests through a keyless API, and through a keyed one whose
session is cached, must cost no allocation of their own: what the worker
allocates meanwhile (its timers, Redis probes, the few connections) stays
far below one per request."""
import http.client
import os
import struct
import time
from pathlib import Path

import pytest

from conftest import BIN, HOST, ROOT, api_def
from test_access import ORG, conf, keyed, new_token, put_session
from conftest import session_redis
from tykkeys import tyk_session

TOOLS = Path(os.environ.get("TURNPIKE_TOOLS") or str(ROOT / "build"))
SO = TOOLS / "libtp_alloccount.so"

pytestmark = pytest.mark.skipif(
    "-" in Path(BIN).name or not SO.exists(),
    reason="a sanitizer build has its own allocator / the counter is not built (make tools)")

REQUESTS = 4000
CONNS = 4


def allocs(d, pid):
    return struct.unpack("Q", (d / str(pid)).read_bytes()[:8])[0]


def drive(port, path, n, headers=None):
    """<n> GETs of <path> over CONNS keep-alive connections, in turn."""
    conns = [http.client.HTTPConnection(HOST, port, timeout=10) for _ in range(CONNS)]
    try:
        for i in range(n):
            c = conns[i % CONNS]
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            r.read()
            assert r.status == 200, (r.status, path)
    finally:
        for c in conns:
            c.close()


def per_request(g, d, path, headers=None):
    (w,) = g.worker_pids()
    drive(g.port, path, 500, headers)  # warm-up: buffers, pools, caches
    before = allocs(d, w)
    drive(g.port, path, REQUESTS, headers)
    return (allocs(d, w) - before) / REQUESTS


def test_no_heap_allocation_per_request(make_gateway, upstream, tmp_path):
    d = tmp_path / "allocs"
    d.mkdir()
    apis = [api_def("free", "/free/", upstream.url("/")),
            keyed("auth", "/auth/", upstream.url("/"))]
    g = make_gateway(conf=conf(), apis=apis, workers=1,
                     env={"LD_PRELOAD": str(SO), "TP_ALLOC_DIR": str(d)})
    # the counter works: the processes are counted, and a request that
    # allocates (a new connection each time) is seen
    (w,) = g.worker_pids()
    assert (d / str(g.pid)).exists() and (d / str(w)).exists()
    before = allocs(d, w)
    for _ in range(20):
        c = http.client.HTTPConnection(HOST, g.port, timeout=10)
        c.request("GET", "/free/get")
        c.getresponse().read()
        c.close()
    assert allocs(d, w) - before >= 20
    # keyless
    got = per_request(g, d, "/free/get")
    assert got < 0.02, "%.3f allocations per keyless request" % got
    # keyed, the session cached
    rc = session_redis().client()
    tok = new_token()
    put_session(rc, tok, tyk_session(["auth"], org_id=ORG))
    rc.close()
    got = per_request(g, d, "/auth/get", {"Authorization": tok})
    assert got < 0.02, "%.3f allocations per keyed request" % got
