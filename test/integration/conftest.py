"""Shared helpers for Turnpike's integration tests.

Everything here starts real processes on loopback ports chosen at run time:
the turnpike binary (master + workers), test/upstream.py, nginx, and small
in-process scripted upstreams. Every process a test starts is killed at the
end of the test (or module), whether it passed or not.

Every gateway's `storage` points at a session-wide redis-server (started
lazily on a free port), so /hello reports Redis "pass" and /ready is 200
unless a test points the gateway elsewhere. The Redis helpers (servers,
TLS files, a cluster, a sentinel set) are below the gateway.

Run with:  make integration   (sets TURNPIKE_BIN and TURNPIKE_TOOLS)
"""
import ctypes
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

try:
    import redis as redis_py  # python3-redis: assertions against Redis itself
except ImportError:  # pragma: no cover - only the Redis tests need it
    redis_py = None

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = HERE / "data"
PYTHON = "/usr/bin/python3"
UPSTREAM_PY = ROOT / "test" / "upstream.py"
BIN = os.environ.get("TURNPIKE_BIN") or str(ROOT / "build" / "turnpike")
HOST = "127.0.0.1"

# Tyk's templates/error.json bodies (no trailing newline)
TYK_API_401 = b'{\n    "error": "Authorization field missing"\n}'

# ---------------------------------------------------------------------------
# process bookkeeping
# ---------------------------------------------------------------------------

_ALL_PROCS = []  # every Popen we started, killed at session end at the latest


def _become_subreaper():
    """Orphaned gateway workers (master SIGKILLed) are re-parented to us, so
    tests can see them exit and reap them instead of leaving zombies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


_become_subreaper()


def pid_alive(pid):
    """True if <pid> exists and is not a zombie. Reaps it if it is an orphan
    re-parented to us (never a process a Popen object owns)."""
    if not any(p.pid == pid for p in _ALL_PROCS):
        try:
            wpid, _ = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                return False
        except OSError:
            pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def children_of(pid):
    """Live (non-zombie) direct children of <pid>, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        state, ppid = rest[0], int(rest[1])
        if ppid == pid and state not in ("Z", "X"):
            out.append(int(d))
    return sorted(out)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _kill_group(proc, sig=signal.SIGKILL):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def kill_wait(proc, timeout=5):
    """Kills <proc> and its process group if it still runs, and reaps it."""
    if proc.poll() is not None:
        return
    _kill_group(proc)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


def _reap(pids, timeout=3.0):
    deadline = time.time() + timeout
    pending = set(pids)
    while pending and time.time() < deadline:
        for pid in list(pending):
            if not pid_alive(pid):
                pending.discard(pid)
        if pending:
            time.sleep(0.02)
    for pid in pending:  # still there: last resort, by pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_alive(pid)


def spawn(args, log_path=None, env=None, cwd=None):
    """Starts a process in its own process group (so that it and its
    children can be killed together), stdout+stderr to <log_path>."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, cwd=cwd, start_new_session=True)
    finally:
        if log_path:
            out.close()
    _ALL_PROCS.append(p)
    return p


_TMP_DIRS = []  # directories made outside tmp_path_factory, removed at session end


def pytest_sessionfinish(session, exitstatus):
    for p in _ALL_PROCS:
        kill_wait(p)
    for d in _TMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# ports
# ---------------------------------------------------------------------------

_USED_PORTS = set()


def free_port():
    """A loopback TCP port nobody listens on right now (never the same one
    twice in a session)."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((HOST, 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _USED_PORTS:
            _USED_PORTS.add(port)
            return port
    raise RuntimeError("no free port")


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %d" % (proc.returncode, port))
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("nothing listens on %d after %.1fs" % (port, timeout))


def port_refuses(port):
    """True if a connection to <port> is refused (nothing listens)."""
    try:
        s = socket.create_connection((HOST, port), timeout=1)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


# ---------------------------------------------------------------------------
# the test upstream's body pattern
# ---------------------------------------------------------------------------

_PATTERN = bytes(range(256)) * 256  # 64 KiB, as test/upstream.py


def pattern_bytes(n):
    reps, rest = divmod(n, len(_PATTERN))
    return _PATTERN * reps + _PATTERN[:rest]


def pattern_sha256(n):
    h = hashlib.sha256()
    full, rest = divmod(n, len(_PATTERN))
    for _ in range(full):
        h.update(_PATTERN)
    h.update(_PATTERN[:rest])
    return h.hexdigest()


# ---------------------------------------------------------------------------
# a raw HTTP/1.1 client: exact bytes out, full responses in
# ---------------------------------------------------------------------------

class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] in order
        self.body = body        # bytes, or None when streamed to a sink
        self.raw_head = raw_head
        self.body_len = 0
        self.sha256 = None

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        body = self.body if self.body is None or len(self.body) < 300 else self.body[:300] + b"..."
        return "<Response %s %s %r body=%r>" % (self.status, self.reason, self.headers, body)


class RawConn:
    """One client connection. send() writes exact bytes; read_response()
    parses one response (Content-Length, chunked, or until EOF)."""

    def __init__(self, port, timeout=10.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.port = port
        self.buf = bytearray()
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n=65536):
        if self.eof:
            raise EOFError("connection closed by peer")
        data = self.sock.recv(n)
        if not data:
            self.eof = True
            raise EOFError("connection closed by peer")
        self.buf += data

    def _readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > 1 << 20:
                raise ValueError("line too long")
            self._fill()

    def _read_exact(self, n, sink):
        while n > 0:
            if not self.buf:
                self._fill()
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take

    def read_head(self):
        """Reads a response head (skipping 1xx unless asked); returns
        (version, status, reason, headers, raw_head)."""
        raw = b""
        line = self._readline()
        raw += line
        parts = line.rstrip(b"\r\n").split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ValueError("bad status line %r" % line)
        version = parts[0].decode()
        status = int(parts[1])
        reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        headers = []
        while True:
            line = self._readline()
            raw += line
            if line in (b"\r\n", b"\n"):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers.append((k, v.strip()))
        return version, status, reason, headers, raw

    def read_response(self, method="GET", sink=None, keep_interim=False):
        """Reads one whole response. With <sink> (a callable), body bytes go
        there instead of Response.body; body_len and sha256 are always set."""
        while True:
            version, status, reason, headers, raw = self.read_head()
            if 100 <= status < 200 and not keep_interim:
                continue
            break
        resp = Response(version, status, reason, headers, None, raw)
        h = hashlib.sha256()
        parts = []

        def put(b):
            h.update(b)
            resp.body_len += len(b)
            if sink is not None:
                sink(b)
            else:
                parts.append(b)

        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass
        elif "chunked" in te:
            while True:
                line = self._readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._readline() not in (b"\r\n", b"\n"):
                        pass
                    break
                self._read_exact(size, put)
                crlf = self._readline()
                if crlf not in (b"\r\n", b"\n"):
                    raise ValueError("bad chunk end %r" % crlf)
        elif cl is not None:
            self._read_exact(int(cl), put)
        else:
            while True:
                try:
                    if self.buf:
                        b = bytes(self.buf)
                        self.buf.clear()
                        put(b)
                    self._fill()
                except EOFError:
                    break
        resp.sha256 = h.hexdigest()
        if sink is None:
            resp.body = b"".join(parts)
        return resp

    def request(self, method, path, headers=(), body=None, host=None, version="HTTP/1.1"):
        self.send(build_request(method, path, headers, body, host or "%s:%d" % (HOST, self.port),
                                version))
        return self.read_response(method)

    def read_all(self, timeout=5.0):
        """Everything until the peer closes (or <timeout>)."""
        self.sock.settimeout(timeout)
        out = bytes(self.buf)
        self.buf.clear()
        while True:
            try:
                d = self.sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not d:
                self.eof = True
                break
            out += d
        return out

    def closed_by_peer(self, timeout=3.0):
        """True if the server closes the connection (EOF or reset) within
        <timeout> and sends nothing more before that."""
        if self.buf:
            return False
        if self.eof:
            return True
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        if d:
            self.buf += d
            return False
        self.eof = True
        return True


def build_request(method, path, headers=(), body=None, host=None, version="HTTP/1.1"):
    lines = ["%s %s %s" % (method, path, version)]
    names = {k.lower() for k, _ in headers}
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    lines += ["%s: %s" % (k, v) for k, v in headers]
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        data += body
    return data


def http(port, method, path, headers=(), body=None, host=None, timeout=10.0, version="HTTP/1.1"):
    """One request on a fresh connection; returns the Response."""
    with RawConn(port, timeout=timeout) as c:
        return c.request(method, path, headers, body, host, version)


def get(port, path, headers=(), timeout=10.0):
    return http(port, "GET", path, headers, timeout=timeout)


def send_raw(port, data, timeout=5.0, method="GET"):
    """Sends exact bytes on a fresh connection, reads one response, and
    reports whether the server then closed the connection.
    Returns (Response or None, closed: bool, leftover bytes)."""
    c = RawConn(port, timeout=timeout)
    try:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            resp = c.read_response(method)
        except (EOFError, ConnectionResetError, socket.timeout, ValueError):
            return None, True, bytes(c.buf)
        closed = c.closed_by_peer(timeout)
        return resp, closed, bytes(c.buf)
    finally:
        c.close()


def chunked_body(data, chunk=65536):
    out = bytearray()
    for i in range(0, len(data), chunk):
        c = data[i:i + chunk]
        out += b"%x\r\n" % len(c) + c + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


# ---------------------------------------------------------------------------
# upstreams
# ---------------------------------------------------------------------------

class Upstream:
    """test/upstream.py on a free port."""

    def __init__(self, workdir):
        self.port = free_port()
        self.log = Path(workdir) / ("upstream-%d.log" % self.port)
        self.proc = spawn([PYTHON, str(UPSTREAM_PY), str(self.port)], self.log)
        wait_port(self.port, 10, self.proc)

    def url(self, path="/"):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            _kill_group(self.proc)
            self.proc.wait(timeout=5)


class Nginx:
    """nginx answering 200 "ok\\n" to everything: a fast upstream for load."""

    def __init__(self, workdir):
        self.port = free_port()
        self.dir = Path(workdir) / ("nginx-%d" % self.port)
        self.dir.mkdir(parents=True)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / sub).mkdir()
        d = self.dir
        conf = d / "nginx.conf"
        conf.write_text("""
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {{
        listen {host}:{port} reuseport backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
""".format(d=d, host=HOST, port=self.port))
        self.proc = spawn(["nginx", "-e", str(d / "error.log"), "-c", str(conf), "-p", str(d)],
                          d / "stdout.log")
        wait_port(self.port, 10, self.proc)

    def url(self, path="/"):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def stop(self):
        if self.proc.poll() is None:
            _kill_group(self.proc)
            self.proc.wait(timeout=5)


class ScriptedUpstream:
    """An in-process upstream that records every connection and request and
    answers with canned bytes: respond(head_bytes, body_bytes) -> bytes.

    It reads a request head, then the body by Content-Length or chunked
    framing, and only answers once the request is complete. Each
    connection's record: {"data": bytes received, "complete": bool}."""

    def __init__(self, respond=None):
        self.port = free_port()
        self.respond = respond or (lambda head, body: b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ncomplete")
        self.conns = []
        self.lock = threading.Lock()
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((HOST, self.port))
        self.srv.listen(128)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, path="/"):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            rec = {"data": b"", "complete": False, "requests": 0}
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self._serve, args=(s, rec), daemon=True).start()

    @staticmethod
    def _body_done(head, rest):
        """(body, bytes used) once the request body is complete, else None."""
        hl = head.lower()
        te = re.search(rb"\r\ntransfer-encoding:([^\r]*)", hl)
        if te and b"chunked" in te.group(1):
            pos = 0
            while True:
                eol = rest.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(rest[pos:eol].split(b";")[0].strip(), 16)
                if size == 0:
                    end = rest.find(b"\r\n\r\n", eol)
                    if end < 0:
                        return None
                    return rest[:end + 4], end + 4
                if len(rest) < eol + 2 + size + 2:
                    return None
                pos = eol + 2 + size + 2
        m = re.search(rb"\r\ncontent-length:\s*(\d+)", hl)
        n = int(m.group(1)) if m else 0
        if len(rest) < n:
            return None
        return rest[:n], n

    def _serve(self, s, rec):
        s.settimeout(30)
        buf = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    return
                rec["data"] += d
                buf += d
                while True:
                    i = buf.find(b"\r\n\r\n")
                    if i < 0:
                        break
                    head, rest = buf[:i + 4], buf[i + 4:]
                    done = self._body_done(head, rest)
                    if done is None:
                        break
                    body, used = done
                    buf = rest[used:]
                    rec["complete"] = True
                    rec["requests"] += 1
                    out = self.respond(head, body)
                    if out is None:
                        s.close()
                        return
                    s.sendall(out)
        except (OSError, ValueError):
            return
        finally:
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        """Wakes the accept thread (shutdown) and waits for it before the
        socket is closed: a thread still blocked in accept() on a closed
        descriptor would take the connections of whatever listener the
        process opens next under the same number (another test's upstream)."""
        self.stopping = True
        try:
            self.srv.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(timeout=5)
        try:
            self.srv.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# the gateway
# ---------------------------------------------------------------------------

def deep_merge(a, b):
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def api_def(api_id, listen_path, target_url, keyless=True, **proxy):
    p = {"listen_path": listen_path, "target_url": target_url, "strip_listen_path": True}
    p.update(proxy)
    return {"api_id": api_id, "name": api_id, "org_id": "default", "use_keyless": keyless,
            "active": True, "proxy": p}


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYK_")}
    if extra:
        env.update(extra)
    return env


class Gateway:
    """A turnpike master (+ workers) with its own tyk.conf and app_path in
    <workdir>. Logs (stderr) go to <workdir>/gateway.log."""

    def __init__(self, workdir, conf=None, apis=(), env=None, workers=2, args=()):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.apps = self.dir / "apps"
        self.apps.mkdir(exist_ok=True)
        self.conf_path = self.dir / "tyk.conf"
        self.log_path = self.dir / "gateway.log"
        self.port = free_port()
        base = {
            "listen_address": HOST,
            "listen_port": self.port,
            "app_path": str(self.apps),
            "proxy_default_timeout": 5,
            "graceful_shutdown_timeout_duration": 5,
            "log_level": "info",
            "storage": {"type": "redis", "host": HOST, "port": session_redis().port},
            "turnpike": {"workers": workers},
        }
        self.conf = deep_merge(base, conf or {})
        self.port = self.conf["listen_port"]
        self.env = clean_env(env)
        self.args = list(args)
        self.proc = None
        self.known_pids = set()
        self.write_conf()
        for a in apis:
            self.add_api(a)

    # -- files --
    def write_conf(self, conf=None):
        if conf is not None:
            self.conf = conf
        self.conf_path.write_text(json.dumps(self.conf, indent=2))

    def add_api(self, definition, filename=None):
        name = filename or ("%s.json" % definition["api_id"])
        (self.apps / name).write_text(json.dumps(definition, indent=2))

    # -- process --
    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait=True, timeout=10.0):
        self.proc = spawn([BIN, "--conf", str(self.conf_path)] + self.args, self.log_path,
                          env=self.env, cwd=str(self.dir))
        self.known_pids.add(self.proc.pid)
        if wait:
            self.wait_ready(timeout)
        return self

    def nworkers_expected(self):
        w = self.conf.get("turnpike", {}).get("workers", 0)
        return w if w > 0 else len(os.sched_getaffinity(0))

    def wait_ready(self, timeout=10.0, nworkers=None):
        """Waits until /hello answers 200 and all workers run."""
        n = nworkers if nworkers is not None else self.nworkers_expected()
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gateway exited with %s during start-up:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            try:
                r = http(self.port, "GET", "/" + self.conf.get("health_check_endpoint_name", "hello"),
                         timeout=2)
                if r.status == 200 and len(self.worker_pids()) == n:
                    return
                last = r.status
            except OSError as e:
                last = e
            time.sleep(0.03)
        raise RuntimeError("gateway not ready after %.1fs (last: %r):\n%s" % (timeout, last, self.log_tail()))

    def worker_pids(self):
        pids = children_of(self.proc.pid)
        self.known_pids.update(pids)
        return pids

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """Kills everything (master, workers, old generations) at once."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.worker_pids()
            except Exception:
                pass
            _kill_group(self.proc)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        else:
            # the master is gone; its process group may still hold workers
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _reap([p for p in self.known_pids if p != self.proc.pid])
        # a sanitizer build reports to stderr and aborts the worker, which
        # the master would quietly replace: any report fails the test
        log = self.log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in log:
                at = log.index(marker)
                raise AssertionError("sanitizer report in %s:\n%s" % (self.log_path, log[at - 200:at + 3000]))

    # -- logs --
    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, pattern, timeout=5.0, after=0):
        """Waits for a log line matching regex <pattern> (searching from
        character offset <after>); returns the match."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while True:
            m = rx.search(self.log(), after)
            if m:
                return m
            if time.time() > deadline:
                raise AssertionError("no log line matching %r within %.1fs; log tail:\n%s"
                                     % (pattern, timeout, self.log_tail()))
            time.sleep(0.03)

    # -- requests --
    def get(self, path, headers=(), timeout=10.0):
        return http(self.port, "GET", path, headers, timeout=timeout)

    def request(self, method, path, headers=(), body=None, timeout=10.0, host=None):
        return http(self.port, method, path, headers, body, host=host, timeout=timeout)

    def conn(self, timeout=10.0, **kw):
        return RawConn(self.port, timeout=timeout, **kw)


def run_turnpike(args, env=None, cwd=None, timeout=10):
    """Runs the binary to completion (-t, --dump-config, --version)."""
    return subprocess.run([BIN] + list(args), env=clean_env(env), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


# ---------------------------------------------------------------------------
# Redis: servers, TLS files, a cluster, a sentinel set
# ---------------------------------------------------------------------------

_PORT_RNG = random.Random(os.urandom(16))


def redis_port():
    """A free loopback port below the kernel's ephemeral range, for servers
    that get restarted on the same port: an ephemeral port could meanwhile
    be taken by some other process's outgoing connection (another session
    may be running benchmarks), and the restart would fail to bind."""
    lo = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    if lo <= 12000:
        return free_port()
    for _ in range(500):
        port = _PORT_RNG.randint(10000, lo - 1)
        if port in _USED_PORTS:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, port))
        except OSError:
            continue
        finally:
            s.close()
        _USED_PORTS.add(port)
        return port
    return free_port()


def _redis_errors():
    return (redis_py.exceptions.RedisError, OSError) if redis_py else (OSError,)


class RedisServer:
    """redis-server on 127.0.0.1:<port> (a port chosen at run time) with a
    directory of its own (<workdir>/<name>). stop/kill/restart keep the
    port. With <tls> (a TlsFiles), it speaks only TLS on that port; with
    <sentinel_conf> (lines after port/bind/dir) it runs as a Sentinel."""

    def __init__(self, workdir, args=(), port=None, password=None, tls=None,
                 tls_auth_clients=False, sentinel_conf=None, name=None, start=True):
        self.port = port or redis_port()
        self.name = name or "redis-%d" % self.port
        self.dir = Path(workdir) / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "redis.log"
        self.args = [str(a) for a in args]
        self.password = password
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.sentinel_conf = sentinel_conf
        self.proc = None
        if start:
            self.start()

    @property
    def addr(self):
        return "%s:%d" % (HOST, self.port)

    def argv(self):
        if self.sentinel_conf is not None:
            conf = self.dir / "sentinel.conf"
            if not conf.exists():  # Sentinel rewrites it: a restart keeps what it learnt
                conf.write_text("port %d\nbind %s\ndir %s\n%s\n"
                                % (self.port, HOST, self.dir, self.sentinel_conf))
            return ["redis-server", str(conf), "--sentinel"]
        a = ["redis-server", "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--enable-debug-command", "yes"]
        if self.tls is not None:
            t = self.tls
            a += ["--port", "0", "--tls-port", str(self.port),
                  "--tls-cert-file", str(t.server_cert), "--tls-key-file", str(t.server_key),
                  "--tls-ca-cert-file", str(t.ca_cert),
                  "--tls-auth-clients", "yes" if self.tls_auth_clients else "no"]
        else:
            a += ["--port", str(self.port)]
        if self.password:
            a += ["--requirepass", self.password]
        return a + self.args

    def client(self, **kw):
        """A redis-py client (decoded replies) for assertions."""
        opts = dict(host=HOST, port=self.port, password=self.password, socket_timeout=5,
                    socket_connect_timeout=2, decode_responses=True)
        if self.tls is not None:
            opts.update(ssl=True, ssl_ca_certs=str(self.tls.ca_cert),
                        ssl_certfile=str(self.tls.client_cert), ssl_keyfile=str(self.tls.client_key))
        opts.update(kw)
        return redis_py.Redis(**opts)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10.0):
        """Starts the server and waits until it answers PING."""
        if self.alive():
            return self
        self.proc = spawn(self.argv(), self.log_path)
        deadline = time.time() + timeout
        c = self.client(socket_timeout=1)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("redis-server on %d exited with %s:\n%s"
                                       % (self.port, self.proc.returncode, self.log_tail()))
                try:
                    if c.ping():
                        return self
                except _redis_errors():
                    if time.time() > deadline:
                        raise RuntimeError("redis-server on %d does not answer after %.1fs:\n%s"
                                           % (self.port, timeout, self.log_tail()))
                    time.sleep(0.02)
        finally:
            c.close()

    def kill(self, sig=signal.SIGKILL):
        """Kills the server (SIGKILL by default) and waits for it to go."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
                self.proc.wait(timeout=5)

    stop = kill

    def restart(self, timeout=10.0):
        self.kill()
        return self.start(timeout)

    def info(self, section=None):
        c = self.client()
        try:
            return c.info(section) if section else c.info()
        finally:
            c.close()

    def log_tail(self, n=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


_SESSION_REDIS = None


def session_redis():
    """The session's healthy Redis (no password), started on first use; every
    Gateway's default storage points at it."""
    global _SESSION_REDIS
    if _SESSION_REDIS is None:
        d = tempfile.mkdtemp(prefix="turnpike-session-redis-")
        _TMP_DIRS.append(d)
        _SESSION_REDIS = RedisServer(d, name="session")
    elif not _SESSION_REDIS.alive():
        _SESSION_REDIS.start()
    return _SESSION_REDIS


def _openssl(*args):
    r = subprocess.run(["openssl"] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s%s" % (args[0], r.stdout, r.stderr))


_OPENSSL_CNF = """[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


class TlsFiles:
    """A test PKI made with the openssl CLI in <dir>: a CA, a server
    certificate for DNS:localhost and IP:127.0.0.1, a client certificate
    (both signed by the CA), and a second, unrelated CA (other_ca_cert)."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        cnf = self.dir / "openssl.cnf"
        cnf.write_text(_OPENSSL_CNF)
        self.ca_cert, self.ca_key = self._ca("ca", "Turnpike test CA", cnf)
        self.other_ca_cert, self.other_ca_key = self._ca("other-ca", "Unrelated test CA", cnf)
        self.server_cert, self.server_key = self._issue(
            "server", "localhost", cnf,
            "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n")
        self.client_cert, self.client_key = self._issue(
            "client", "turnpike-test-client", cnf,
            "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage = clientAuth\n")

    def _ca(self, name, cn, cnf):
        crt, key = self.dir / (name + ".crt"), self.dir / (name + ".key")
        _openssl("req", "-x509", "-config", cnf, "-extensions", "v3_ca", "-newkey", "rsa:2048",
                 "-nodes", "-keyout", key, "-out", crt, "-days", "3", "-subj", "/CN=" + cn)
        return crt, key

    def _issue(self, name, cn, cnf, ext):
        crt, key, csr = (self.dir / (name + s) for s in (".crt", ".key", ".csr"))
        extfile = self.dir / (name + ".ext")
        extfile.write_text(ext)
        _openssl("req", "-new", "-config", cnf, "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                 "-out", csr, "-subj", "/CN=" + cn)
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                 "-set_serial", str(_PORT_RNG.randint(1, 1 << 60)), "-days", "3", "-out", crt,
                 "-extfile", extfile)
        return crt, key


def _info_text(text):
    out = {}
    for line in text.splitlines():
        k, sep, v = line.strip().partition(":")
        if sep:
            out[k] = v
    return out


def wait_for(pred, timeout, step=0.05, what="condition"):
    """Polls <pred> until it returns a true value (returned); raises
    AssertionError naming <what> after <timeout> seconds. Exceptions from
    <pred> count as false (the last one is reported)."""
    deadline = time.time() + timeout
    last = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001
            last = e
        if time.time() > deadline:
            raise AssertionError("%s not reached within %.1fs (last error: %r)" % (what, timeout, last))
        time.sleep(step)


class RedisCluster:
    """A Redis Cluster of <masters> masters with <replicas> replicas each,
    made by `redis-cli --cluster create`; bus ports chosen at run time."""

    def __init__(self, workdir, masters=3, replicas=1, timeout=60.0):
        self.dir = Path(workdir)
        self.nodes = []
        try:
            for i in range(masters * (1 + replicas)):
                name = "node%d" % i
                args = ["--cluster-enabled", "yes",
                        "--cluster-config-file", str(self.dir / name / "nodes.conf"),
                        "--cluster-node-timeout", "2000", "--cluster-port", str(redis_port())]
                self.nodes.append(RedisServer(self.dir, args=args, name=name))
            r = subprocess.run(["redis-cli", "--cluster", "create"] + self.addrs() +
                               ["--cluster-replicas", str(replicas), "--cluster-yes"],
                               capture_output=True, text=True, timeout=timeout)
            if r.returncode != 0:
                raise RuntimeError("redis-cli --cluster create failed:\n%s%s" % (r.stdout, r.stderr))
            self.wait_ok(timeout)
        except Exception:
            self.stop()
            raise

    def addrs(self):
        return [n.addr for n in self.nodes]

    def node(self, addr):
        for n in self.nodes:
            if n.addr == addr:
                return n
        raise KeyError(addr)

    def cluster_info(self, node):
        c = node.client()
        try:
            return _info_text(c.execute_command("CLUSTER", "INFO"))
        finally:
            c.close()

    def cluster_nodes(self, node=None):
        """CLUSTER NODES as seen by <node> (default: the first that answers):
        [{id, addr, flags (set), master (id or None), slots [str]}]."""
        for n in ([node] if node else self.nodes):
            c = n.client()
            try:
                text = c.execute_command("CLUSTER", "NODES")
            except _redis_errors():
                continue
            finally:
                c.close()
            out = []
            for line in text.strip().splitlines():
                f = line.split()
                out.append({"id": f[0], "addr": f[1].split("@")[0], "flags": set(f[2].split(",")),
                            "master": None if f[3] == "-" else f[3], "slots": f[8:]})
            return out
        raise RuntimeError("no cluster node answers")

    def masters(self, node=None):
        return [n for n in self.cluster_nodes(node) if "master" in n["flags"] and n["slots"]]

    def replicas_of(self, master_id, node=None):
        return [n for n in self.cluster_nodes(node) if n["master"] == master_id]

    def healthy(self):
        """Every node: cluster_state ok, every slot served, every node known;
        every replica in sync with its master."""
        for n in self.nodes:
            i = self.cluster_info(n)
            if (i.get("cluster_state") != "ok" or i.get("cluster_slots_ok") != "16384"
                    or i.get("cluster_known_nodes") != str(len(self.nodes))):
                return False
            if n.info("replication").get("role") == "slave" and \
                    n.info("replication").get("master_link_status") != "up":
                return False
        return True

    def wait_ok(self, timeout=30.0):
        wait_for(self.healthy, timeout, 0.1, "cluster_state:ok on every node")

    def stop(self):
        for n in self.nodes:
            n.kill()


class RedisSentinels:
    """A master, one replica and <n> Sentinels monitoring them as
    "mymaster" (quorum 2, down-after 1 s, failover-timeout 5 s)."""

    MASTER_NAME = "mymaster"

    def __init__(self, workdir, n=3, timeout=30.0):
        self.dir = Path(workdir)
        self.sentinels = []
        self.data = []
        try:
            master = RedisServer(self.dir, name="master")
            self.data.append(master)
            replica = RedisServer(self.dir, name="replica",
                                  args=["--replicaof", HOST, str(master.port)])
            self.data.append(replica)
            wait_for(lambda: replica.info("replication").get("master_link_status") == "up",
                     timeout, 0.05, "replica in sync")
            conf = ("sentinel monitor %s %s %d 2\n"
                    "sentinel down-after-milliseconds %s 1000\n"
                    "sentinel failover-timeout %s 5000\n"
                    % (self.MASTER_NAME, HOST, master.port, self.MASTER_NAME, self.MASTER_NAME))
            for i in range(n):
                self.sentinels.append(RedisServer(self.dir, name="sentinel%d" % i, sentinel_conf=conf))
            self.wait_settled(timeout)
        except Exception:
            self.stop()
            raise

    def addrs(self):
        return [s.addr for s in self.sentinels]

    @staticmethod
    def _pairs(flat):
        return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}

    def sentinel_cmd(self, sentinel, *args):
        c = sentinel.client()
        try:
            return c.execute_command("SENTINEL", *args)
        finally:
            c.close()

    def master_addr(self, sentinel=None):
        """"host:port" of the master according to <sentinel> (default: the first)."""
        host, port = self.sentinel_cmd(sentinel or self.sentinels[0], "get-master-addr-by-name",
                                       self.MASTER_NAME)
        return "%s:%s" % (host, port)

    def server(self, addr):
        for s in self.data:
            if s.addr == addr:
                return s
        raise KeyError(addr)

    def settled(self):
        """Every sentinel agrees on the master (which says it is a master),
        sees one healthy replica and knows the other sentinels."""
        addrs = set()
        for s in self.sentinels:
            addrs.add(self.master_addr(s))
            reps = [self._pairs(r) for r in self.sentinel_cmd(s, "replicas", self.MASTER_NAME)]
            if len(reps) != 1 or reps[0].get("flags") != "slave" or \
                    reps[0].get("master-link-status") != "ok":
                return False
            if len(self.sentinel_cmd(s, "sentinels", self.MASTER_NAME)) != len(self.sentinels) - 1:
                return False
        if len(addrs) != 1:
            return False
        master = self.server(addrs.pop())
        return master.info("replication").get("role") == "master"

    def wait_settled(self, timeout=30.0):
        wait_for(self.settled, timeout, 0.1, "sentinels agreeing on master and replica")

    def stop(self):
        for s in self.sentinels + self.data:
            s.kill()


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.when == "call" and rep.failed:
        # module-scoped gateways: show what they logged
        for name, val in getattr(item, "funcargs", {}).items():
            if isinstance(val, Gateway):
                rep.sections.append(("gateway %r log tail" % name, val.log_tail(40)))


def _failed(node):
    return any(getattr(node, "rep_" + w, None) is not None and getattr(node, "rep_" + w).failed
               for w in ("setup", "call"))


@pytest.fixture(scope="session", autouse=True)
def _check_binary():
    if not os.access(BIN, os.X_OK):
        pytest.exit("turnpike binary not found at %s (run `make` or set TURNPIKE_BIN)" % BIN, 2)


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    """test/upstream.py, shared by the whole session."""
    u = Upstream(tmp_path_factory.mktemp("upstream"))
    yield u
    u.stop()


@pytest.fixture
def nginx(tmp_path):
    n = Nginx(tmp_path)
    yield n
    n.stop()


@pytest.fixture
def scripted():
    """Factory of ScriptedUpstream servers, stopped after the test."""
    made = []

    def make(respond=None):
        s = ScriptedUpstream(respond)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def make_gateway(tmp_path, request):
    """Factory: make_gateway(conf={...}, apis=[...], env={...}, workers=2,
    start=True). Every gateway is killed after the test; on failure the
    tail of its log is printed."""
    made = []

    def make(conf=None, apis=(), env=None, workers=2, start=True, args=(), name=None):
        gw = Gateway(tmp_path / (name or "gw%d" % len(made)), conf, apis, env, workers, args)
        made.append(gw)
        if start:
            gw.start()
        return gw

    yield make
    for gw in made:
        gw.stop()
    if _failed(request.node):
        for gw in made:
            print("---- %s (port %d) log tail ----\n%s" % (gw.dir.name, gw.port, gw.log_tail(80)))



@pytest.fixture
def make_redis(tmp_path):
    """Factory: make_redis(args=(), password=None, tls=None, tls_auth_clients=False,
    start=True) -> RedisServer in the test's directory, killed after the test."""
    made = []

    def make(**kw):
        kw.setdefault("name", "redis%d" % len(made))
        srv = RedisServer(tmp_path, **kw)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.kill()


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory):
    """TlsFiles for TLS-only Redis servers (CA, server and client certificates)."""
    return TlsFiles(tmp_path_factory.mktemp("redis-tls"))


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    """A 3-master, 3-replica Redis Cluster shared by a module."""
    c = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def redis_sentinels(tmp_path_factory):
    """A master, a replica and 3 Sentinels ("mymaster"), shared by a module."""
    s = RedisSentinels(tmp_path_factory.mktemp("redis-sentinel"))
    yield s
    s.stop()
