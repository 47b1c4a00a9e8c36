#!/usr/bin/python3
"""test/wsecho.py PORT: a websocket echo upstream for the tests (RFC 6455).

An upgrade request (Upgrade: websocket, Sec-WebSocket-Key) gets 101 with
the Sec-WebSocket-Accept, and the headers the server saw come back as
X-Seen-Connection, X-Seen-Upgrade, X-Seen-Authorization. Then every text
or binary message is echoed (unmasked, same opcode), a ping gets a pong,
a close is answered with a close and the connection ends. The text
message "server-close" makes the server close first (close frame, then
the socket). Any other request: 400 "not a websocket request", with the
same X-Seen-* headers. One thread, selectors, any number of connections;
a connection whose echoes pile up (1 MB) is not read until they are out.
"""
import base64
import hashlib
import selectors
import socket
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def parse(buf):
    """One frame from buf: (opcode, payload, used) or None if incomplete."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    at = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack("!H", buf[2:4])[0]
        at = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack("!Q", buf[2:10])[0]
        at = 10
    mask = b""
    if b1 & 0x80:
        if len(buf) < at + 4:
            return None
        mask = buf[at:at + 4]
        at += 4
    if len(buf) < at + n:
        return None
    data = bytes(buf[at:at + n])
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if n < 4096 else unmask(data, mask)
    return b0 & 0x0F, data, at + n


def unmask(data, mask):
    m = int.from_bytes((mask * (len(data) // 4 + 1))[:len(data)], "big")
    return (int.from_bytes(data, "big") ^ m).to_bytes(len(data), "big")


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.inbuf = bytearray()
        self.out = bytearray()
        self.ws = False
        self.closing = False


def header(head, name):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return b""


def main():
    port = int(sys.argv[1])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, None)

    def want(c):
        # stops reading while 1 MB of echo waits: back-pressure, as a real server
        ev = (selectors.EVENT_READ if len(c.out) < (1 << 20) else 0) | \
            (selectors.EVENT_WRITE if c.out else 0)
        sel.modify(c.sock, ev, c)

    def drop(c):
        sel.unregister(c.sock)
        c.sock.close()

    while True:
        for key, ev in sel.select():
            if key.data is None:
                try:
                    s, _ = ls.accept()
                except BlockingIOError:
                    continue
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, Conn(s))
                continue
            c = key.data
            if ev & selectors.EVENT_WRITE and c.out:
                try:
                    n = c.sock.send(c.out)
                    del c.out[:n]
                except BlockingIOError:
                    pass
                except OSError:
                    drop(c)
                    continue
                if not c.out and c.closing:
                    drop(c)
                    continue
            if ev & selectors.EVENT_READ and len(c.out) < (1 << 20):
                try:
                    data = c.sock.recv(262144)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    drop(c)
                    continue
                if data:
                    c.inbuf += data
                handle(c)
            want(c)


def handle(c):
    if not c.ws:
        end = c.inbuf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(c.inbuf[:end])
        del c.inbuf[:end + 4]
        seen = b"".join(b"X-Seen-%s: %s\r\n" % (n.capitalize(), header(head, n.lower()))
                        for n in (b"Connection", b"Upgrade", b"Authorization"))
        key = header(head, b"sec-websocket-key")
        if header(head, b"upgrade").lower() != b"websocket" or not key:
            body = b"not a websocket request\n"
            c.out += (b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n%s\r\n%s"
                      % (len(body), seen, body))
            return
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        c.out += (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n" % (accept, seen))
        c.ws = True
    while not c.closing:
        f = parse(c.inbuf)
        if f is None:
            return
        op, payload, used = f
        del c.inbuf[:used]
        if op in (1, 2):
            if op == 1 and payload == b"server-close":
                c.out += frame(8, struct.pack("!H", 1000))
                c.closing = True
            else:
                c.out += frame(op, payload)
        elif op == 9:
            c.out += frame(10, payload)
        elif op == 8:
            c.out += frame(8, payload[:2])
            c.closing = True


if __name__ == "__main__":
    main()
