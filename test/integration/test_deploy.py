"""Deployment outside Kubernetes: the container image (Dockerfile) and the
systemd unit (conf/turnpike.service).

No container engine and no running systemd exist here, so what is tested is
what the image and the unit run:
  - the Dockerfile's contract (exec-form ENTRYPOINT, numeric non-root USER,
    STOPSIGNAL, paths of the seed) and its runtime packages, checked against
    the shared libraries the built binary really links (ldd + dpkg -S);
  - its build stage, replayed on exactly the files it COPYs;
  - the image's command line and tyk.conf, run as PID 1 of a fresh PID
    namespace (unshare --pid --fork) as uid 10001: serving, SIGHUP reload,
    /tyk/apis writes, reaping of killed workers and of orphans re-parented to
    it, SIGTERM drain with exit 0, SIGINT fast stop, exit codes through unshare;
  - the unit: `systemd-analyze verify`, its ExecStartPre/ExecReload commands
    run as systemd would run them, and its seccomp allow-list and address
    families against the system calls the gateway makes (strace).
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import (BIN, HOST, ROOT, api_def, children_of, clean_env, free_port, get, http,
                      pid_alive, session_redis, spawn, wait_for, wait_port)

DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "conf" / "turnpike.service"
IMAGE_CONF = ROOT / "conf" / "tyk.opt.conf"
SEED_DIR = "/opt/tyk-gateway"  # where the seed's Deployment mounts tyk.conf and apps
IMAGE_UID = 10001
# The image ships the plain build: its libraries and system calls are what the
# package and seccomp checks look at, also when the suite runs on a sanitizer
# build (build/turnpike-asan links libasan and cannot run under ptrace).
PLAIN_BIN = BIN if os.path.basename(BIN) == "turnpike" else str(ROOT / "build" / "turnpike")


def plain_bin():
    if not os.access(PLAIN_BIN, os.X_OK):
        pytest.skip("no plain build at %s (run `make`)" % PLAIN_BIN)
    return PLAIN_BIN


# ---------------------------------------------------------------------------
# Dockerfile parsing
# ---------------------------------------------------------------------------

def dockerfile_stages():
    """[(from_line, [(INSTRUCTION, args)])] with continuation lines joined."""
    text = DOCKERFILE.read_text()
    text = re.sub(r"\\\n", " ", text)
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        args = args.strip()
        if instr == "FROM":
            stages.append((args, []))
        else:
            assert stages, "instruction before FROM: %s" % line
            stages[-1][1].append((instr, args))
    return stages


def instr(stage, name):
    return [a for i, a in stage[1] if i == name]


def apt_installed(stage):
    """Package names given to `apt-get install` in a stage's RUN lines."""
    pkgs = []
    for run in instr(stage, "RUN"):
        for cmd in re.split(r"&&|;", run):
            words = cmd.split()
            if words[:2] == ["apt-get", "install"]:
                pkgs += [w for w in words[2:] if not w.startswith("-")]
    return pkgs


def test_dockerfile_contract():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage build expected"
    build, runtime = stages[0], stages[-1]
    assert build[0].split()[0] == "debian:12"
    assert runtime[0].split()[0] == "debian:12-slim"

    # exec form, so the gateway itself is PID 1 and gets the stop signal
    (entry,) = instr(runtime, "ENTRYPOINT")
    entry = json.loads(entry)
    assert entry == ["/usr/local/bin/turnpike"]
    (cmd,) = instr(runtime, "CMD")
    cmd = json.loads(cmd)
    assert cmd == ["--conf", SEED_DIR + "/tyk.conf"]

    (user,) = instr(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) == IMAGE_UID and gid == str(IMAGE_UID), user
    runs = " ".join(instr(runtime, "RUN"))
    assert "--uid %d" % IMAGE_UID in runs and "--gid %d" % IMAGE_UID in runs

    assert instr(runtime, "STOPSIGNAL") == ["SIGTERM"]  # SIGTERM = graceful drain (README)
    image_conf = json.loads(IMAGE_CONF.read_text())
    assert instr(runtime, "EXPOSE") == [str(image_conf["listen_port"])]

    # the image's tyk.conf is where the seed mounts it, and points where the seed does
    copies = instr(runtime, "COPY")
    assert "conf/tyk.opt.conf %s/tyk.conf" % SEED_DIR in copies
    assert "--from=build /out/usr/local/bin/turnpike /usr/local/bin/turnpike" in copies
    assert image_conf["app_path"] == SEED_DIR + "/apps"
    assert image_conf["policies"]["policy_record_name"] == SEED_DIR + "/policies/policies.json"
    # the directories /tyk/apis and /tyk/policies write belong to the image's user
    assert "chown -R %d:%d %s/apps %s/policies" % (IMAGE_UID, IMAGE_UID, SEED_DIR, SEED_DIR) in runs


def _owning_package(path):
    """The Debian package that ships <path> (usrmerge: /lib vs /usr/lib)."""
    real = os.path.realpath(path)
    cands = [path, real]
    for p in (path, real):
        if p.startswith("/usr/"):
            cands.append(p[4:])
        else:
            cands.append("/usr" + p)
    for c in cands:
        r = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    raise AssertionError("no Debian package ships %s" % path)


def test_dockerfile_runtime_packages_are_what_the_binary_links():
    out = subprocess.run(["ldd", plain_bin()], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"=>\s+(/\S+)", out)
    assert libs, out
    needed = {}
    for lib in libs:
        needed.setdefault(_owning_package(lib), []).append(lib)
    # what Essential packages (dpkg, coreutils, ...) depend on is in every
    # Debian image, slim included: libc6
    ess = subprocess.run(["dpkg-query", "-W", "-f=${Essential}|${Pre-Depends}, ${Depends}\n"],
                         capture_output=True, text=True, check=True).stdout
    base_deps = set()
    for line in ess.splitlines():
        flag, _, deps = line.partition("|")
        if flag == "yes":
            base_deps |= {d.split()[0].split(":")[0] for d in re.split(r"[,|]", deps) if d.strip()}
    base = set(needed) & base_deps
    assert "libc6" in base
    # and the packages of the files it reads at run time: underscore.js, the
    # JavaScript middleware's "_" (its path is in the binary)
    data = open(plain_bin(), "rb").read()
    for path in re.findall(rb"/usr/share/javascript/[\w./-]+\.js", data):
        needed.setdefault(_owning_package(path.decode()), []).append(path.decode())
    assert "libjs-underscore" in needed, needed
    listed = set(apt_installed(dockerfile_stages()[-1]))
    missing = set(needed) - base - listed
    assert not missing, "runtime stage lacks %s (for %s)" % (missing, {p: needed[p] for p in missing})
    extra = listed - set(needed)
    assert not extra, "runtime stage installs packages the binary does not link: %s" % extra
    # and they are Debian 12 package names apt knows
    for p in listed:
        r = subprocess.run(["apt-cache", "show", "--no-all-versions", p], capture_output=True, text=True)
        assert r.returncode == 0 and "Package: %s" % p in r.stdout, p


def test_dockerfile_build_stage_builds_from_its_context(tmp_path):
    """The build stage's packages are the Makefile's DEPS_BUILD; its COPY
    lines (minus .dockerignore) are enough to build and install the binary
    with its own commands."""
    build = dockerfile_stages()[0]
    mk = (ROOT / "Makefile").read_text()
    deps_build = re.search(r"^DEPS_BUILD\s*:=\s*(.*)$", mk, re.M).group(1).split()
    pkgs = apt_installed(build)
    assert set(deps_build) <= set(pkgs), set(deps_build) - set(pkgs)
    assert set(pkgs) - set(deps_build) <= {"libc6-dev"}  # gcc only recommends it

    ignored = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
               if l.strip() and not l.startswith("#")]
    ctx = tmp_path / "src"
    ctx.mkdir()
    for args in instr(build, "COPY"):
        src, dst = args.split()
        assert src.rstrip("/") not in ignored, "%s is COPYed but .dockerignore drops it" % src
        s = ROOT / src
        if s.is_dir():
            shutil.copytree(s, ctx / dst, ignore=shutil.ignore_patterns("*.o"))
        else:
            shutil.copy(s, ctx / dst)
    (run,) = [r for r in instr(build, "RUN") if "make install" in r]
    run = run.replace('-j"$(nproc)"', "-j2").replace("/out", "%s/out" % tmp_path)
    r = subprocess.run(["sh", "-ec", run], cwd=ctx, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert re.search(r"^turnpike \d+\.\d+\.\d+$", r.stdout, re.M), r.stdout
    assert os.access(tmp_path / "out/usr/local/bin/turnpike", os.X_OK)


# ---------------------------------------------------------------------------
# the image's command line and config, as PID 1 of its own PID namespace
# ---------------------------------------------------------------------------

def _exists(pid):
    return os.path.exists("/proc/%d" % pid)


class ImageLayout:
    """/opt/tyk-gateway as the Dockerfile lays it out, under a temp dir
    readable by uid 10001, and the image's CMD pointed at it."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="turnpike-image-"))
        os.chmod(self.root, 0o755)
        self.opt = self.root / "opt-tyk-gateway"
        (self.opt / "apps").mkdir(parents=True)
        (self.opt / "policies").mkdir()
        (self.opt / "policies" / "policies.json").write_text("{}\n")
        for p in (self.opt, self.opt / "apps", self.opt / "policies", self.opt / "policies" / "policies.json"):
            os.chown(p, IMAGE_UID, IMAGE_UID)
        os.chmod(self.opt, 0o755)
        self.conf = self.opt / "tyk.conf"
        self.conf.write_text(IMAGE_CONF.read_text().replace(SEED_DIR, str(self.opt)))
        self.log = self.root / "gateway.log"
        cmd = json.loads(instr(dockerfile_stages()[-1], "CMD")[0])
        self.argv = [BIN] + [str(self.conf) if a == SEED_DIR + "/tyk.conf" else a for a in cmd]
        self.port = free_port()
        r = session_redis()
        # what `docker run -e ...` (or the k8s Secret/env) would pass
        self.env = clean_env({"TYK_GW_LISTENPORT": str(self.port), "TYK_GW_LISTENADDRESS": HOST,
                              "TYK_GW_STORAGE_HOST": HOST, "TYK_GW_STORAGE_PORT": str(r.port),
                              "TYK_GW_TURNPIKE_WORKERS": "2", "TYK_GW_SECRET": "image-secret",
                              "TYK_GW_GRACEFULSHUTDOWNTIMEOUTDURATION": "5"})


class PidOne:
    """unshare --pid --fork --mount-proc [setpriv uid 10001] <the image's
    ENTRYPOINT + CMD>: Turnpike is PID 1 of the new namespace."""

    def __init__(self, layout, env=None):
        self.layout = layout
        env = dict(layout.env, **(env or {}))
        self.proc = spawn(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                           "setpriv", "--reuid=%d" % IMAGE_UID, "--regid=%d" % IMAGE_UID,
                           "--clear-groups", "--"] + layout.argv,
                          str(layout.log), env=env, cwd=str(layout.opt))
        self.master = None
        deadline = time.time() + 5
        while self.master is None and time.time() < deadline and self.proc.poll() is None:
            kids = children_of(self.proc.pid)
            if kids:
                self.master = kids[0]
            else:
                time.sleep(0.01)
        assert self.master or self.proc.poll() is not None, "unshare started no child"

    def log(self):
        return self.layout.log.read_text(errors="replace") if self.layout.log.exists() else ""

    def ns_pid(self, pid):
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]

    def workers(self):
        out = []
        for pid in children_of(self.master):
            try:
                if os.readlink("/proc/%d/exe" % pid) == os.path.realpath(BIN):
                    out.append(pid)
            except OSError:
                pass
        return out

    def wait_ready(self, n=2, timeout=10):
        def ok():
            if self.proc.poll() is not None:
                raise AssertionError("exited %s:\n%s" % (self.proc.returncode, self.log()[-3000:]))
            try:
                return get(self.layout.port, "/hello", timeout=2).status == 200 and len(self.workers()) == n
            except OSError:
                return False
        wait_for(ok, timeout, what="PID 1 gateway ready")

    def signal(self, sig):
        os.kill(self.master, sig)  # as `docker stop` signals the container's PID 1

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # unshare, and (--kill-child) the namespace
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)
        # unshare gone, the master is re-parented to us (subreaper): pid_alive reaps it
        wait_for(lambda: self.master is None or not pid_alive(self.master), 5, what="namespace gone")


@pytest.fixture
def image():
    made = []

    def make(env=None, start=True, apis=()):
        layout = ImageLayout()
        for a in apis:
            (layout.opt / "apps" / ("%s.json" % a["api_id"])).write_text(json.dumps(a))
        if not start:
            made.append((layout, None))
            return layout
        g = PidOne(layout, env)
        made.append((layout, g))
        g.wait_ready()
        return g

    yield make
    for layout, g in made:
        if g is not None:
            g.stop()
        shutil.rmtree(layout.root, ignore_errors=True)


def test_pid1_serves_reloads_and_reaps(image, upstream):
    g = image()
    port = g.layout.port
    assert g.ns_pid(g.master)[-1] == 1, "Turnpike is not PID 1 of its namespace"
    with open("/proc/%d/status" % g.master) as f:
        uids = [l for l in f if l.startswith("Uid:")][0].split()[1:]
    assert set(map(int, uids)) == {IMAGE_UID}
    # every worker has run its first Redis probe (until then /hello has no details)
    def redis_passes():
        r = get(port, "/hello")
        assert r.status == 200, r.body
        return r.json().get("details", {}).get("redis", {}).get("status") == "pass"
    wait_for(lambda: all(redis_passes() for _ in range(4)), 5, what="/hello with Redis passing")
    assert get(port, "/ready").status == 200

    # the REST API writes into the image's apps/ as uid 10001; SIGHUP serves it
    body = json.dumps(api_def("pid1-api", "/pid1/", upstream.url("/"))).encode()
    r = http(port, "POST", "/tyk/apis", [("x-tyk-authorization", "image-secret")], body)
    assert r.status == 200, r.body
    assert (g.layout.opt / "apps" / "pid1-api.json").exists()
    assert get(port, "/pid1/hello").status == 404
    g.signal(signal.SIGHUP)
    wait_for(lambda: get(port, "/pid1/x").status == 200, 10, what="API served after SIGHUP")

    # a killed worker is reaped (no zombie) and replaced
    before = g.workers()
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not _exists(victim), 5, what="killed worker reaped by PID 1")
    wait_for(lambda: len(g.workers()) == 2 and victim not in g.workers(), 10, what="worker replaced")
    assert get(port, "/pid1/x").status == 200

    # an orphan re-parented to PID 1 (its parent exited) is reaped when it dies
    marker = "1.%03d" % (os.getpid() % 1000)  # a recognisable `sleep` argument
    subprocess.run(["nsenter", "--target", str(g.master), "--pid", "--",
                    "sh", "-c", "sleep %s & exit 0" % marker], check=True, timeout=5)

    def orphan():
        for pid in children_of(g.master):
            try:
                if Path("/proc/%d/cmdline" % pid).read_bytes().split(b"\0")[:2] == [b"sleep", marker.encode()]:
                    return pid
            except OSError:
                pass
    opid = wait_for(orphan, 3, what="orphan re-parented to PID 1")
    wait_for(lambda: not _exists(opid), 5, what="orphan reaped by PID 1 (no <defunct>)")
    assert get(port, "/hello").status == 200


def test_pid1_sigterm_drains_and_exit_code_propagates(image, upstream):
    g = image(env={"TYK_GW_GRACEFULSHUTDOWNDELAYSECONDS": "1"},
              apis=[api_def("e", "/e/", upstream.url("/"))])
    port = g.layout.port
    result = []
    t = threading.Thread(target=lambda: result.append(get(port, "/e/delay/1500", timeout=10)))
    t.start()
    time.sleep(0.2)
    t0 = time.time()
    g.signal(signal.SIGTERM)
    # readiness fails first, while traffic is still served
    wait_for(lambda: get(port, "/ready").status == 503, 2, what="/ready 503 on SIGTERM")
    assert get(port, "/hello").status == 200
    rc = g.proc.wait(timeout=10)
    took = time.time() - t0
    assert rc == 0, g.log()[-2000:]
    assert took >= 0.9, "did not hold readiness for graceful_shutdown_delay_seconds"
    t.join(5)
    # the request in flight across the signal (ending after the delay) completed
    assert [(r.status, r.body) for r in result] == [(200, b"slept")]
    assert not _exists(g.master)


def test_pid1_sigint_stops_at_once(image):
    g = image(env={"TYK_GW_GRACEFULSHUTDOWNDELAYSECONDS": "5"})
    t0 = time.time()
    g.signal(signal.SIGINT)
    g.proc.wait(timeout=4)
    assert time.time() - t0 < 2.5, "SIGINT waited for the shutdown delay"
    assert not _exists(g.master)


def test_pid1_error_exit_code_propagates(image):
    layout = image(start=False)
    layout.conf.write_text('{"listen_port": ')  # what a broken ConfigMap looks like
    p = PidOne(layout)
    assert p.proc.wait(timeout=10) == 1, p.log()
    assert "tyk.conf" in p.log()


# ---------------------------------------------------------------------------
# the systemd unit
# ---------------------------------------------------------------------------

def unit_lines():
    """[(key, value)] of the [Service] section, in order."""
    out, section = [], None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        k, _, v = line.partition("=")
        out.append((section, k.strip(), v.strip()))
    return out


def unit(key, section="[Service]"):
    return [v for s, k, v in unit_lines() if k == key and s == section]


def local_unit(tmp_path, conf):
    """The unit with our binary and <conf> in place of the installed paths."""
    text = UNIT.read_text().replace("/usr/local/bin/turnpike", BIN)
    text = text.replace(SEED_DIR + "/tyk.conf", str(conf))
    p = tmp_path / "turnpike.service"
    p.write_text(text)
    return p


def test_unit_verifies(tmp_path):
    p = local_unit(tmp_path, IMAGE_CONF)
    r = subprocess.run(["systemd-analyze", "verify", str(p)], capture_output=True, text=True, timeout=30)
    msgs = [l for l in (r.stdout + r.stderr).splitlines() if "turnpike" in l]
    assert r.returncode == 0 and not msgs, r.stdout + r.stderr


def test_unit_settings():
    assert unit("Type") == ["notify"]
    assert unit("KillMode") == ["mixed"] and unit("KillSignal") == ["SIGTERM"]
    assert unit("Restart") == ["on-failure"] and unit("LimitNOFILE") == ["1048576"]
    assert unit("User") == ["turnpike"] and unit("CapabilityBoundingSet") == [""]
    for k in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
              "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "RestrictNamespaces",
              "LockPersonality", "MemoryDenyWriteExecute", "RestrictRealtime", "RestrictSUIDSGID"):
        assert unit(k) == ["yes"], k
    assert unit("ProtectSystem") == ["strict"]
    (start,) = unit("ExecStart")
    argv = shlex.split(start)
    conf = argv[argv.index("--conf") + 1]
    assert conf == SEED_DIR + "/tyk.conf"
    assert unit("ExecStartPre") == ["%s -t --conf %s" % (argv[0], conf)]
    assert unit("ExecReload") == ["%s -t --conf %s" % (argv[0], conf), "/bin/kill -HUP $MAINPID"]
    # the unit's config dir is where /tyk/apis writes: writable despite ProtectSystem=strict
    image_conf = json.loads(IMAGE_CONF.read_text())
    rw = unit("ReadWritePaths")[0].split()
    assert "-" + image_conf["app_path"] in rw
    assert "-" + os.path.dirname(image_conf["policies"]["policy_record_name"]) in rw
    # the admin socket lives in the RuntimeDirectory
    assert unit("RuntimeDirectory") == ["turnpike"]
    assert "TYK_GW_TURNPIKE_ADMINSOCKET=/run/turnpike/turnpike.sock" in unit("Environment")
    # systemd SIGKILLs after TimeoutStopSec: it must outlast the delay + the drain
    stop = int(unit("TimeoutStopSec")[0])
    drain = image_conf.get("graceful_shutdown_delay_seconds", 0) + image_conf["graceful_shutdown_timeout_duration"]
    assert stop > drain + 5, (stop, drain)


def _run_exec_line(line, mainpid=None):
    """Runs an Exec*= line as systemd would: its own argv, $MAINPID expanded."""
    argv = [a.replace("$MAINPID", str(mainpid)) for a in shlex.split(line)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, env=clean_env())


def test_unit_exec_start_pre_and_reload(tmp_path, make_gateway, upstream):
    gw = make_gateway(apis=[api_def("first", "/first/", upstream.url("/"))])
    p = local_unit(tmp_path, gw.conf_path)
    text = p.read_text()
    pre = re.search(r"^ExecStartPre=(.*)$", text, re.M).group(1)
    reload = re.findall(r"^ExecReload=(.*)$", text, re.M)

    r = _run_exec_line(pre)
    assert r.returncode == 0, r.stderr
    # `systemctl reload` runs the ExecReload lines in order and stops at the
    # first failure: with a broken API definition, the test fails, no SIGHUP
    gw.add_api({"api_id": "broken", "proxy": {"listen_path": 42}})
    r = _run_exec_line(reload[0], gw.pid)
    assert r.returncode == 1 and "broken" in r.stdout + r.stderr
    assert _run_exec_line(pre).returncode == 1  # and the service would not start
    assert get(gw.port, "/first/x").status == 200

    (gw.apps / "broken.json").unlink()
    gw.add_api(api_def("second", "/second/", upstream.url("/")))
    mark = len(gw.log())
    for line in reload:
        r = _run_exec_line(line, gw.pid)
        assert r.returncode == 0, (line, r.stderr)
    gw.wait_log(r"generation 2", after=mark)
    wait_for(lambda: get(gw.port, "/second/x").status == 200, 10, what="reloaded API")
    assert get(gw.port, "/first/x").status == 200


def _syscall_groups():
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                         check=True).stdout
    groups, cur = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            cur = groups.setdefault(line.strip(), [])
        elif cur is not None and line.strip() and not line.strip().startswith("#"):
            cur.append(line.strip())
    return groups


def _expand(name, groups, seen=None):
    seen = seen if seen is not None else set()
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out = set()
    for m in groups[name]:
        out |= _expand(m, groups, seen)
    return out


def test_unit_seccomp_and_address_families_allow_what_turnpike_calls(tmp_path, upstream):
    """Runs the gateway under strace through start, proxying, /tyk/apis, the
    admin socket, SIGHUP and a drain, and checks every system call it made
    passes the unit's SystemCallFilter= lines and every socket family its
    RestrictAddressFamilies=. A seccomp denial would be EPERM in production.
    Also: the only files it writes are in app_path and the admin socket."""
    groups = _syscall_groups()
    allowed = None
    for f in unit("SystemCallFilter"):
        if f.startswith("~"):
            for g in f[1:].split():
                allowed -= _expand(g, groups)
        else:
            s = set()
            for g in f.split():
                s |= _expand(g, groups)
            allowed = s if allowed is None else allowed | s
    families = set(unit("RestrictAddressFamilies")[0].split())

    port = free_port()
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "a.json").write_text(json.dumps(api_def("a", "/a/", upstream.url("/"))))
    env_sock = [e for e in unit("Environment") if e.startswith("TYK_GW_TURNPIKE_ADMINSOCKET=")][0]
    sock = str(tmp_path / "turnpike.sock")  # same setting, a path we may create here
    conf = tmp_path / "tyk.conf"
    conf.write_text(json.dumps({
        "listen_address": HOST, "listen_port": port, "app_path": str(apps), "secret": "s",
        "storage": {"type": "redis", "host": HOST, "port": session_redis().port},
        "policies": {"policy_source": "file", "policy_record_name": str(tmp_path / "policies.json")},
        "graceful_shutdown_timeout_duration": 5, "turnpike": {"workers": 2}}))
    (tmp_path / "policies.json").write_text("{}")
    trace = tmp_path / "strace.txt"
    env = {env_sock.split("=", 1)[0]: sock}
    p = spawn(["strace", "-f", "-qq", "-o", str(trace), plain_bin(), "--conf", str(conf)],
              str(tmp_path / "gw.log"), env=clean_env(env))
    try:
        wait_port(port, 15, p)
        wait_for(lambda: get(port, "/a/x").status == 200, 10, what="proxying under strace")
        body = json.dumps(api_def("b", "/b/", upstream.url("/"))).encode()
        assert http(port, "POST", "/tyk/apis", [("x-tyk-authorization", "s")], body).status == 200
        r = subprocess.run([BIN, "ctl", "--socket", sock, "reload"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stdout + r.stderr
        assert get(port, "/b/x").status == 200
        master = [c for c in children_of(p.pid)][0]
        os.kill(master, signal.SIGHUP)
        time.sleep(0.5)
        assert get(port, "/tyk/reload?block=true", [("x-tyk-authorization", "s")]).status == 200
        os.kill(master, signal.SIGTERM)
        assert p.wait(timeout=15) == 0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
    text = trace.read_text()
    calls = set(re.findall(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", text, re.M))
    assert len(calls) > 20, text[:2000]
    denied = calls - allowed
    assert not denied, "SystemCallFilter would deny %s" % sorted(denied)
    used = set(re.findall(r"socket\((AF_[A-Z0-9]+)", text))
    assert used and used <= families, "RestrictAddressFamilies lacks %s" % (used - families)
    # it writes nowhere but app_path (the REST API) and the admin socket: with
    # those writable, ProtectSystem=strict or a read-only root filesystem holds
    writes = re.findall(r'(?:openat\(AT_FDCWD, "([^"]+)", [^)]*O_(?:WRONLY|RDWR|CREAT)[^)]*\) = \d'
                        r'|(?:rename|unlink|mkdir|rmdir)\("([^"]+)".*= 0'
                        r'|bind\(\d+, \{sa_family=AF_UNIX, sun_path="([^"]+)"\}.*= 0)', text)
    paths = {next(x for x in w if x) for w in writes}
    assert any(w.startswith(str(apps / "b.json")) for w in paths) and sock in paths, paths
    stray = {w for w in paths if not (w.startswith(str(apps) + "/") or w == sock)}
    assert not stray, "writes outside app_path and the admin socket: %s" % stray


def test_make_install_systemd(tmp_path):
    """`make install-systemd` (README) lays out binary, unit and config; the
    unit points at the PREFIX it was installed with; an edited tyk.conf is
    kept by a second install."""
    dest = tmp_path / "root"

    def install():
        r = subprocess.run(["make", "-s", "install-systemd", "DESTDIR=%s" % dest, "PREFIX=/usr"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr

    install()
    assert os.access(dest / "usr/bin/turnpike", os.X_OK)
    text = (dest / "etc/systemd/system/turnpike.service").read_text()
    execs = re.findall(r"^Exec\w+=(\S+)", text, re.M)
    assert execs and set(execs) == {"/usr/bin/turnpike", "/bin/kill"}, execs
    conf = dest / SEED_DIR.lstrip("/") / "tyk.conf"
    assert conf.read_text() == IMAGE_CONF.read_text()
    assert json.loads((dest / SEED_DIR.lstrip("/") / "policies/policies.json").read_text()) == {}
    conf.write_text('{"listen_port": 9999}')
    install()
    assert conf.read_text() == '{"listen_port": 9999}'
