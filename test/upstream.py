#!/usr/bin/python3
"""A small HTTP/1.1 upstream for Turnpike's tests and `make run`.

Behaviour is chosen by the path (any prefix before the last known word is
ignored, so /api/echo and /echo are the same):

  /echo[...]          JSON: method, path (raw, as received), query, headers
                      (list of [name, value] in order), body_len, body_sha256
  /bytes/N            N bytes of a repeating pattern, Content-Length
  /chunked/N          N bytes, Transfer-Encoding: chunked (8 KiB chunks)
  /eof/N              N bytes, no length, then the connection closes
  /delay/MS           sleeps MS milliseconds, then answers "slept"
  /status/CODE        empty body with that status
  /drop               closes the connection without answering
  /headers/N          a response with N extra headers
  /sse/N/MS           N server-sent events ("data: <i>"), MS milliseconds apart,
                      text/event-stream, chunked, each written at once
  anything else       "hello from upstream\\n"

Usage: upstream.py PORT [--host 127.0.0.1]
"""
import hashlib
import json
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATTERN = bytes(range(256)) * 256  # 64 KiB


def pattern_bytes(n):
    out = bytearray()
    while len(out) < n:
        out += PATTERN[: n - len(out)]
    return bytes(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: without TCP_NODELAY the second
    # waits for the client's delayed ACK (40 ms) on a kept-alive connection
    disable_nagle_algorithm = True
    server_version = "test-upstream"

    def log_message(self, fmt, *args):  # quiet
        pass

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            h = hashlib.sha256()
            total = 0
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, 65536))
                    h.update(chunk)
                    total += len(chunk)
                    remaining -= len(chunk)
                self.rfile.readline()
            return total, h.hexdigest()
        n = int(self.headers.get("Content-Length", "0") or 0)
        h = hashlib.sha256()
        remaining = n
        while remaining:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            h.update(chunk)
            remaining -= len(chunk)
        return n - remaining, h.hexdigest()

    def send_plain(self, code, body, extra=()):
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        path, _, query = self.path.partition("?")
        parts = [p for p in path.split("/") if p]
        body_len, body_sha = self.read_body()
        word = None
        arg = None
        for i, p in enumerate(parts):
            if p in ("echo", "bytes", "chunked", "eof", "delay", "status", "drop", "headers",
                     "sse"):
                word = p
                arg = parts[i + 1] if i + 1 < len(parts) else None
                arg2 = parts[i + 2] if i + 2 < len(parts) else None
        if word == "echo":
            out = json.dumps({
                "method": self.command,
                "path": path,
                "query": query,
                "version": self.request_version,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_len": body_len,
                "body_sha256": body_sha,
            }).encode()
            self.send_plain(200, out, [("Content-Type", "application/json")])
        elif word == "bytes":
            self.send_plain(200, pattern_bytes(int(arg)), [("Content-Type", "application/octet-stream")])
        elif word == "chunked":
            n = int(arg)
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            data = pattern_bytes(n)
            for i in range(0, n, 8192):
                c = data[i:i + 8192]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.write(b"0\r\n\r\n")
        elif word == "eof":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(pattern_bytes(int(arg)))
            self.close_connection = True
        elif word == "delay":
            time.sleep(int(arg) / 1000.0)
            self.send_plain(200, b"slept")
        elif word == "status":
            self.send_plain(int(arg), b"")
        elif word == "drop":
            self.close_connection = True
            self.connection.close()
        elif word == "sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for i in range(int(arg)):
                if i:
                    time.sleep(int(arg2) / 1000.0)
                ev = b"data: %d\n\n" % i
                self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif word == "headers":
            self.send_plain(200, b"ok", [("X-H%d" % i, "v%d" % i) for i in range(int(arg))])
        else:
            self.send_plain(200, b"hello from upstream\n", [("Content-Type", "text/plain")])

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    port = int(sys.argv[1])
    host = "127.0.0.1"
    if "--host" in sys.argv:
        host = sys.argv[sys.argv.index("--host") + 1]
    srv = Server((host, port), Handler)
    print("upstream listening on %s:%d" % (host, port), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
