"""Streamed responses: server-sent events and long chunked bodies reach the
client as the upstream produces them (no buffering until a size), for
HTTP/1.1 clients (chunks passed through) and HTTP/1.0 ones (de-chunked)."""
import re
import socket
import time

from conftest import HOST, api_def


def timed_events(port, path, version="HTTP/1.1"):
    """Sends one GET; returns [(seconds since the request, event number)]."""
    s = socket.create_connection((HOST, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.monotonic()
    s.sendall(("GET %s %s\r\nHost: x\r\n\r\n" % (path, version)).encode())
    seen, data = [], b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
        for m in re.finditer(rb"data: (\d+)\n\n", data):
            n = int(m.group(1))
            if n not in [e for _, e in seen]:
                seen.append((time.monotonic() - t0, n))
        if b"0\r\n\r\n" in data or (version == "HTTP/1.0" and len(seen) == 5):
            break
    s.close()
    head = data.split(b"\r\n\r\n")[0]
    return head, seen


def test_server_sent_events_arrive_one_by_one(make_gateway, upstream):
    g = make_gateway(apis=[api_def("s", "/s/", upstream.url("/"))])
    for version in ("HTTP/1.1", "HTTP/1.0"):
        head, seen = timed_events(g.port, "/s/sse/5/400", version)
        assert b" 200 " in head.split(b"\r\n")[0]
        assert b"text/event-stream" in head
        assert [n for _, n in seen] == [0, 1, 2, 3, 4], (version, seen)
        # the first event is not held back until the stream ends (1.6 s)
        assert seen[0][0] < 0.8, (version, seen)
        # and the spacing the upstream made is kept
        gaps = [b[0] - a[0] for a, b in zip(seen, seen[1:])]
        assert all(gap > 0.2 for gap in gaps), (version, gaps)
