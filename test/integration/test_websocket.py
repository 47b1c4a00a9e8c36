"""Websockets (http_server_options.enable_websockets, TYK-COMPAT 22): the
upgrade request passes auth and limits like any request, then bytes are
relayed both ways until either side closes; disabled, the upgrade headers
are stripped as Tyk does. The upstream is test/wsecho.py."""
import base64
import os
import socket
import ssl
import struct
import time

import pytest

from conftest import (HOST, PYTHON, TlsFiles, api_def, free_port, get, spawn, wait_for,
                      wait_port)
from test_control import admin as admin_cmd
from test_keys import access, create_key, new_org, uid
from test_quota import gateway

WSECHO = os.path.join(os.path.dirname(__file__), "..", "wsecho.py")
WS_ON = {"http_server_options": {"enable_websockets": True}}


class WsEcho:
    def __init__(self, workdir):
        self.port = free_port()
        self.proc = spawn([PYTHON, WSECHO, str(self.port)], os.path.join(workdir, "wsecho.log"))
        wait_port(self.port, 10, self.proc)

    def url(self, path="/"):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def wsecho(tmp_path):
    u = WsEcho(str(tmp_path))
    yield u
    u.stop()


class Ws:
    """A minimal RFC 6455 client on a raw socket."""

    def __init__(self, port, path, headers=(), connection="Upgrade", timeout=10.0, tls=None):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        key = base64.b64encode(os.urandom(16)).decode()
        h = "".join("%s: %s\r\n" % kv for kv in headers)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: %s\r\nUpgrade: WebSocket\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
                           % (path, connection, key, h)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            c = self.sock.recv(65536)
            if not c:
                break
            self.buf += c
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()

    def send(self, payload, opcode=1):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        m = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        body = (int.from_bytes(payload, "big") ^ m).to_bytes(n, "big") if n else b""
        self.sock.sendall(head + mask + body)

    def _need(self, n):
        while len(self.buf) < n:
            c = self.sock.recv(262144)
            if not c:
                raise EOFError("closed")
            self.buf += c

    def recv(self):
        self._need(2)
        n = self.buf[1] & 0x7F
        at = 2
        if n == 126:
            self._need(4)
            n, at = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(at + n)
        op, data = self.buf[0] & 0x0F, self.buf[at:at + n]
        self.buf = self.buf[at + n:]
        return op, data

    def closed(self, timeout=5.0):
        """True once the gateway has closed the connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                c = self.sock.recv(65536)
                if not c:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def keyed(make_gateway, wsecho, conf=None, **api_extra):
    org, api = new_org(), "ws-" + uid()[:8]
    c = dict(WS_ON)
    c.update(conf or {})
    sock = "/tmp/tp-ws-%s.sock" % uid()[:8]
    c["turnpike"] = dict({"admin_socket": sock}, **c.get("turnpike", {}))
    g = gateway(make_gateway, wsecho, org, api, workers=2, conf=c, **api_extra)
    return g, org, api, sock


def test_echo_through_auth_and_rate_limit(make_gateway, wsecho):
    mport = free_port()
    g, org, api, sock = keyed(make_gateway, wsecho, conf={"turnpike": {"metrics_port": mport}})
    key = create_key(g, org, access(api), rate=3, per=60)["key"]

    def metrics():
        return get(mport, "/metrics").body.decode()
    # no key: refused before any upgrade, as any request
    w = Ws(g.port, "/%s/chat" % api)
    assert w.status == 401
    w.close()
    w = Ws(g.port, "/%s/chat" % api, headers=[("Authorization", key)])
    assert w.status == 101, w.headers
    assert w.headers["upgrade"].lower() == "websocket"
    assert w.headers["connection"].lower() == "upgrade"
    assert "sec-websocket-accept" in w.headers
    # the upstream was asked to switch, in Tyk's spelling, and got the key
    assert w.headers["x-seen-connection"] == "Upgrade"
    assert w.headers["x-seen-upgrade"] == "websocket"
    assert w.headers["x-seen-authorization"] == key
    for i in range(20):
        msg = ("message %d" % i).encode()
        w.send(msg)
        assert w.recv() == (1, msg)
    w.send(b"\x00\x01binary", opcode=2)
    assert w.recv() == (2, b"\x00\x01binary")
    # large frames, both ways, with back-pressure on a 16 KB relay buffer
    big = os.urandom(3 * 1024 * 1024)
    w.send(big, opcode=2)
    assert w.recv() == (2, big)
    # counted in show stat while open
    wait_for(lambda: "# websockets: open 1" in admin_cmd(sock, "show stat"), 5)
    assert "\nturnpike_websockets_open 1\n" in metrics()
    # client closes: the close is echoed, the gateway closes its side
    w.send(struct.pack("!H", 1000), opcode=8)
    assert w.recv()[0] == 8
    assert w.closed()
    wait_for(lambda: "# websockets: open 0" in admin_cmd(sock, "show stat"), 5)
    # the rate limit (3 per minute) counts upgrades as requests: 1 so far
    for _ in range(2):
        w = Ws(g.port, "/%s/chat" % api, headers=[("Authorization", key)])
        assert w.status == 101
        w.close()
    w = Ws(g.port, "/%s/chat" % api, headers=[("Authorization", key)])
    assert w.status == 429
    w.close()

    def row():
        return [l for l in admin_cmd(sock, "show stat").splitlines()
                if l.startswith(api + ",")][0].split(",")
    assert row()[-1] == "3"  # websockets started
    # an upgrade answered 101 is logged once its session ends (1xx column)
    wait_for(lambda: row()[2] == "3", 5)
    assert '\nturnpike_websockets_total{api="%s"} 3\n' % api in metrics()
    assert "\nturnpike_websockets_open 0\n" in metrics()


def test_server_close_and_garbage(make_gateway, wsecho):
    g = make_gateway(conf=WS_ON, apis=[api_def("w", "/w/", wsecho.url("/"))])
    w = Ws(g.port, "/w/x")
    assert w.status == 101
    w.send(b"server-close")
    op, data = w.recv()
    assert op == 8 and data == struct.pack("!H", 1000)
    assert w.closed()
    # bytes that are no websocket frames are relayed as they are: the
    # upstream decides (here it waits for a frame that never completes)
    w = Ws(g.port, "/w/x")
    assert w.status == 101
    w.sock.sendall(b"\xff" * 7)
    w.close()
    # the gateway keeps serving
    w = Ws(g.port, "/w/x")
    w.send(b"still here")
    assert w.recv() == (1, b"still here")
    w.close()
    assert g.proc.poll() is None


def test_disabled_or_not_an_upgrade_strips_the_headers(make_gateway, wsecho):
    g = make_gateway(apis=[api_def("w", "/w/", wsecho.url("/"))])
    w = Ws(g.port, "/w/x")
    assert w.status == 400
    assert w.headers["x-seen-upgrade"] == ""
    assert w.headers["x-seen-connection"] == ""
    w.close()
    # enabled, but Connection is a list: not an upgrade for Tyk either
    g2 = make_gateway(conf=WS_ON, apis=[api_def("w", "/w/", wsecho.url("/"))])
    w = Ws(g2.port, "/w/x", connection="keep-alive, Upgrade")
    assert w.status == 400
    assert w.headers["x-seen-upgrade"] == ""
    w.close()


def test_idle_timeout_and_a_peer_that_never_reads(make_gateway, wsecho):
    g = make_gateway(conf=dict(WS_ON, turnpike={"websocket_idle_timeout": 1, "workers": 1}),
                     apis=[api_def("w", "/w/", wsecho.url("/"))], workers=1)
    w = Ws(g.port, "/w/x")
    assert w.status == 101
    w.send(b"ping")
    assert w.recv() == (1, b"ping")
    t0 = time.monotonic()
    assert w.closed(timeout=5)
    assert 0.8 < time.monotonic() - t0 < 4
    g.wait_log(r"upgraded session idle for 1 s, closing")
    # a client that sends but never reads: its session stalls, others go on
    hog = Ws(g.port, "/w/x")
    hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.sock.settimeout(0.5)
    chunk = os.urandom(256 * 1024)
    sent = 0
    try:
        for _ in range(200):
            hog.send(chunk, opcode=2)
            sent += len(chunk)
    except (socket.timeout, BlockingIOError):
        pass
    assert sent < 200 * len(chunk), "back-pressure reached the client"
    other = Ws(g.port, "/w/x")
    other.send(b"fine")
    assert other.recv() == (1, b"fine")
    other.close()
    hog.close()


def test_many_concurrent_websockets(make_gateway, wsecho):
    g = make_gateway(conf=WS_ON, apis=[api_def("w", "/w/", wsecho.url("/"))])
    conns = [Ws(g.port, "/w/%d" % i) for i in range(1000)]
    assert all(w.status == 101 for w in conns)
    for i, w in enumerate(conns):
        w.send(b"n%d" % i)
    for i, w in enumerate(conns):
        assert w.recv() == (1, b"n%d" % i)
    for w in conns:
        w.close()
    assert g.proc.poll() is None


def test_websocket_over_tls_both_ways(make_gateway, wsecho, tmp_path):
    pki = TlsFiles(tmp_path / "pki")
    conf = {"http_server_options": {
        "enable_websockets": True, "use_ssl": True,
        "certificates": [{"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}]}}
    g = make_gateway(conf=conf, apis=[api_def("w", "/w/", wsecho.url("/"))], start=False)
    g.start(wait=False)
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))

    def up():
        try:
            Ws(g.port, "/w/x", tls=ctx).close()
            return True
        except OSError:
            return False
    wait_for(up, 10, what="the TLS listener")
    w = Ws(g.port, "/w/x", tls=ctx)
    assert w.status == 101
    big = os.urandom(1024 * 1024)
    w.send(big, opcode=2)
    assert w.recv() == (2, big)
    w.send(b"over tls")
    assert w.recv() == (1, b"over tls")
    w.close()
