#!/usr/bin/python3
"""bench/holdconns.py: opens N idle keep-alive HTTP/1.1 connections and holds them.

    holdconns.py [--tls] PORT PATH COUNT [INFLIGHT]

Each connection (to 127.0.0.1:PORT) sends one `GET PATH HTTP/1.1` request,
reads the whole response (which must be a 200), and is then left open and
idle: a keep-alive connection the server has finished with, not a half-open
one. At most INFLIGHT (default 100) connections are being set up at once so
the listen backlog never overflows. Non-blocking sockets with selectors;
raises its own RLIMIT_NOFILE.

--tls: each connection does a TLS handshake first (no verification, TLS 1.2;
the first session is offered again by the next connections, as clients
resume), and the request and response go over TLS.

Protocol on stdin/stdout, for the calling script:
  prints  "READY held=N failed=F seconds=S"   once all are open and idle
  reads   "check"  -> prints "ALIVE n"        (connections the server has
                                               not closed)
  EOF on stdin -> closes everything and exits
"""
import errno
import os
import resource
import selectors
import socket
import ssl
import sys
import time


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
        except (ValueError, OSError):
            need = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need


class Conn:
    __slots__ = ("sock", "out", "inbuf", "need", "chunked", "start", "connected", "shaking")

    def __init__(self, sock, req):
        self.sock = sock
        self.out = req
        self.inbuf = b""
        self.need = None  # total bytes expected once the head is read
        self.chunked = False
        self.start = time.monotonic()
        self.connected = False
        self.shaking = False  # a TLS handshake is under way


def response_done(c):
    """True when c.inbuf holds one complete response; raises on a non-200."""
    if c.need is None and not c.chunked:
        end = c.inbuf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = c.inbuf[:end].decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or parts[1] != "200":
            raise RuntimeError("status line %r" % head[0])
        length = None
        for h in head[1:]:
            k, _, v = h.partition(":")
            k = k.strip().lower()
            if k == "content-length":
                length = int(v.strip())
            elif k == "transfer-encoding" and "chunked" in v.lower():
                c.chunked = True
        if not c.chunked:
            if length is None:
                raise RuntimeError("response without a length (server would close)")
            c.need = end + 4 + length
    if c.chunked:
        return c.inbuf.endswith(b"0\r\n\r\n")
    return len(c.inbuf) >= c.need


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def peer_closed(s, tls):
    """Has the server closed s? For TLS any byte on an idle connection is
    the server's alert or close_notify, so it counts as closed too."""
    raw = socket.socket(fileno=os.dup(s.fileno()))
    try:
        data = raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        return not data or tls
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        raw.close()


def main():
    args = sys.argv[1:]
    tls = args and args[0] == "--tls"
    if tls:
        args = args[1:]
    port = int(args[0])
    path = args[1]
    count = int(args[2])
    inflight = int(args[3]) if len(args) > 3 else 100
    ctx = tls_context() if tls else None
    session = None
    limit = raise_nofile(count + 256)
    if limit < count + 16:
        sys.exit("holdconns: RLIMIT_NOFILE is %d, too low for %d connections" % (limit, count))
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: turnpike-bench-holdconns\r\n\r\n"
           % (path, port)).encode()

    sel = selectors.DefaultSelector()
    held = []
    failed = 0
    errors = {}
    started = 0
    pending = 0
    t0 = time.monotonic()

    def fail(c, why):
        nonlocal failed, pending
        failed += 1
        errors[why] = errors.get(why, 0) + 1
        sel.unregister(c.sock)
        c.sock.close()
        pending -= 1

    while len(held) + failed < count:
        while started < count and pending < inflight:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex(("127.0.0.1", port))
            c = Conn(s, req)
            started += 1
            pending += 1
            if rc not in (0, errno.EINPROGRESS):
                sel.register(s, selectors.EVENT_WRITE, c)
                fail(c, "connect: " + errno.errorcode.get(rc, str(rc)))
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        for key, ev in sel.select(timeout=1.0):
            c = key.data
            try:
                if not c.connected:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        fail(c, "connect: " + errno.errorcode.get(err, str(err)))
                        continue
                    c.connected = True
                    if tls:
                        sel.unregister(c.sock)
                        c.sock = ctx.wrap_socket(c.sock, do_handshake_on_connect=False,
                                                 session=session)
                        sel.register(c.sock, selectors.EVENT_WRITE, c)
                        c.shaking = True
                if c.shaking:
                    try:
                        c.sock.do_handshake()
                    except ssl.SSLWantReadError:
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                        continue
                    except ssl.SSLWantWriteError:
                        sel.modify(c.sock, selectors.EVENT_WRITE, c)
                        continue
                    c.shaking = False
                    sel.modify(c.sock, selectors.EVENT_WRITE, c)
                    continue
                if c.out:
                    n = c.sock.send(c.out)
                    c.out = c.out[n:]
                    if not c.out:
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                data = c.sock.recv(65536)
                if not data:
                    fail(c, "closed before the response ended")
                    continue
                c.inbuf += data
                if response_done(c):
                    sel.unregister(c.sock)
                    c.inbuf = b""
                    held.append(c.sock)
                    pending -= 1
                    if tls and session is None:
                        session = c.sock.session
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):
                pass
            except (OSError, RuntimeError, ValueError) as e:
                fail(c, type(e).__name__ + ": " + str(e)[:60])
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            if now - key.data.start > 30:
                fail(key.data, "timeout (30 s)")

    took = time.monotonic() - t0
    print("READY held=%d failed=%d seconds=%.1f" % (len(held), failed, took), flush=True)
    for why, n in sorted(errors.items()):
        print("holdconns: %d failed: %s" % (n, why), file=sys.stderr)

    for line in sys.stdin:
        if line.strip() == "check":
            alive = 0
            for s in held:
                if not peer_closed(s, tls):
                    alive += 1
            print("ALIVE %d" % alive, flush=True)
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
