"""The Kubernetes manifests in k8s/, without a cluster.

1. Every document of `kubectl apply -k k8s/` and of the redis-cluster overlay
   validates against the Kubernetes API schemas (npm's kubernetes-models,
   installed once into build/npm by k8s/npm-install.sh), and a broken
   document is rejected.
2. Checks an operator relies on: probe paths and ports, grace period against
   preStop + drain, selectors, env var names Turnpike really reads, HPA target,
   volumes where tyk.conf says files are.
3. The manifests run on loopback: the ConfigMaps, Secret and env vars are
   extracted from k8s/, a redis-server runs with the StatefulSet's redis.conf
   and command, three Turnpike instances run with exactly the gateway's config
   and environment, probed as the kubelet does; traffic goes through all three;
   a changed API-definitions ConfigMap is applied (the kubelet's atomic
   symlink swap) and reloaded; one instance is drained with SIGTERM under load.

Only what a pod gets from its node differs, each time through the environment
(TYK_GW_*) as the kubelet would pass it: listen address/port, the paths of
the mounted ConfigMaps (temp dirs), the admin socket dir (an emptyDir), and
the Redis address (the manifests name the k8s Service).
"""
import base64
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import (BIN, HOST, ROOT, api_def, clean_env, free_port, get, http,
                      redis_port, redis_py, kill_wait, run_turnpike, spawn, wait_for, wait_port)

K8S = ROOT / "k8s"
OVERLAY = K8S / "redis-cluster"
HERE = Path(__file__).resolve().parent
VALIDATE_JS = HERE / "k8s" / "validate.js"
NPM_INSTALL = HERE / "k8s" / "npm-install.sh"
TYK_KEYS_C = ROOT / "conf" / "tp_conf_tyk_keys.c"


# ---------------------------------------------------------------------------
# kustomize, the subset k8s/ uses (resources, strategic-merge patches from a
# file or inline, $patch: delete); checked against `kubectl kustomize` below
# ---------------------------------------------------------------------------

def _load_all(text):
    return [d for d in yaml.safe_load_all(text) if d]


def _smp(base, patch):
    """Strategic merge: maps merge, lists of named maps merge by name
    (containers, env, volumes, ports), other values are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _smp(base[k], v) if k in base else v
        return out
    if (isinstance(base, list) and isinstance(patch, list) and patch
            and all(isinstance(x, dict) and "name" in x for x in base + patch)):
        names = [x["name"] for x in base]
        out = [_smp(base[names.index(p["name"])], p) if p["name"] in names else p for p in patch]
        done = {p["name"] for p in patch}
        return out + [x for x in base if x["name"] not in done]
    return patch


def _ident(d):
    return (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))


def kustomize(d):
    d = Path(d)
    k = yaml.safe_load((d / "kustomization.yaml").read_text())
    docs = []
    for r in k.get("resources", []):
        p = d / r
        docs += kustomize(p) if p.is_dir() else _load_all(p.read_text())
    for pt in k.get("patches", []):
        pdocs = _load_all((d / pt["path"]).read_text()) if "path" in pt else _load_all(pt["patch"])
        for pd in pdocs:
            hits = [i for i, x in enumerate(docs) if _ident(x) == _ident(pd)]
            assert len(hits) == 1, "patch target %r not found once" % (_ident(pd),)
            if pd.get("$patch") == "delete":
                del docs[hits[0]]
            else:
                docs[hits[0]] = _smp(docs[hits[0]], pd)
    return docs


def _norm(x):
    if isinstance(x, dict):
        return {k: _norm(v) for k, v in x.items()}
    if isinstance(x, list) and x and all(isinstance(i, dict) and "name" in i for i in x):
        return {i["name"]: _norm(i) for i in x}
    if isinstance(x, list):
        return [_norm(i) for i in x]
    return x


BASE_DOCS = kustomize(K8S)
OVERLAY_DOCS = kustomize(OVERLAY)


def find(docs, kind, name=None):
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, "%s %s: %d documents" % (kind, name, len(hits))
    return hits[0]


def gateway_container(docs):
    dep = find(docs, "Deployment")
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "turnpike"]
    return c


def secret_values(docs):
    s = find(docs, "Secret", "turnpike-secrets")
    out = dict(s.get("stringData", {}))
    for k, v in s.get("data", {}).items():
        out[k] = base64.b64decode(v).decode()
    return out


def resolve_env(container, docs, extra_secrets=None):
    """The container's environment as the kubelet builds it (value or
    secretKeyRef into a Secret of the rendered manifests, or of
    <extra_secrets> for Secrets made outside k8s/)."""
    secrets = dict(extra_secrets or {})
    for s in [d for d in docs if d["kind"] == "Secret"]:
        vals = dict(s.get("stringData", {}))
        vals.update({k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()})
        secrets[s["metadata"]["name"]] = vals
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def tyk_conf(docs=BASE_DOCS):
    return json.loads(find(docs, "ConfigMap", "turnpike-config")["data"]["tyk.conf"])


# ---------------------------------------------------------------------------
# 1. schemas
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node_modules():
    """npm's kubernetes-models and yaml in build/npm (installed on first use;
    npm missing or the registry unreachable is a failure, not a skip)."""
    r = subprocess.run(["bash", str(NPM_INSTALL)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "npm install failed:\n%s" % r.stderr
    return r.stdout.strip()


def validate(node_modules, docs_or_text):
    text = docs_or_text if isinstance(docs_or_text, str) else yaml.safe_dump_all(docs_or_text)
    r = subprocess.run(["node", str(VALIDATE_JS)], input=text, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, NODE_PATH=node_modules))
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, [json.loads(l) for l in r.stdout.splitlines()]


BASE_KINDS = sorted(["Namespace", "ConfigMap", "ConfigMap", "ConfigMap", "ConfigMap", "Secret",
                     "StatefulSet", "Service", "Service", "Deployment", "PodDisruptionBudget",
                     "HorizontalPodAutoscaler"])


@pytest.mark.parametrize("which", ["base", "redis-cluster"])
def test_every_document_validates(node_modules, which):
    docs = BASE_DOCS if which == "base" else OVERLAY_DOCS
    rc, res = validate(node_modules, docs)
    assert rc == 0 and all(r["ok"] for r in res), [r for r in res if not r["ok"]]
    assert sorted(r["kind"] for r in res) == sorted(d["kind"] for d in docs)
    if which == "base":
        assert sorted(r["kind"] for r in res) == BASE_KINDS
    else:
        # the overlay drops the single Redis and keeps everything else
        assert not [d for d in docs if d["metadata"]["name"] in ("redis", "redis-config")]
        assert len(res) == len(BASE_KINDS) - 3


def test_each_file_validates_as_written(node_modules):
    """The files themselves (what `kubectl apply -f k8s/base/x.yaml` sends)."""
    for f in sorted((K8S / "base").glob("*.yaml")):  # (the overlay's patch is partial by design)
        if f.name == "kustomization.yaml":
            continue
        rc, res = validate(node_modules, f.read_text())
        assert rc == 0 and res and all(r["ok"] for r in res), (f, res)


def test_broken_documents_are_rejected(node_modules):
    docs = copy.deepcopy(BASE_DOCS)
    dep = find(docs, "Deployment")
    dep["spec"]["replicas"] = "three"
    find(docs, "PodDisruptionBudget")["spec"]["minAvailable"] = [2]
    c = gateway_container(docs)
    c["readinessProbe"]["httpGet"]["port"] = {"name": "http"}
    svc = find(docs, "Service", "turnpike")
    del svc["spec"]["ports"][0]["port"]  # required
    docs.append({"apiVersion": "apps/v1", "kind": "NoSuchKind", "metadata": {"name": "x"}})
    rc, res = validate(node_modules, docs)
    assert rc == 1
    failed = sorted((r.get("kind"), r.get("name")) for r in res if not r["ok"])
    assert failed == sorted([("Deployment", "turnpike"), ("PodDisruptionBudget", "turnpike"),
                             ("Service", "turnpike"), ("NoSuchKind", "x")]), res
    dep_err = [r["error"] for r in res if r.get("kind") == "Deployment"][0]
    assert "replicas" in dep_err and "readinessProbe" in dep_err, dep_err
    # not YAML at all
    rc, res = validate(node_modules, "kind: [unclosed\n")
    assert rc == 1 and not res[0]["ok"]


def test_renderer_matches_kubectl_kustomize():
    """The Python renderer above is what the other tests read; it must give
    what `kubectl kustomize` gives."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed: the Python kustomize renderer is not cross-checked")
    for d, docs in ((K8S, BASE_DOCS), (OVERLAY, OVERLAY_DOCS)):
        r = subprocess.run([kubectl, "kustomize", str(d)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        theirs = {_ident(x): _norm(x) for x in _load_all(r.stdout)}
        ours = {_ident(x): _norm(x) for x in docs}
        assert ours == theirs


# ---------------------------------------------------------------------------
# 2. operator checks
# ---------------------------------------------------------------------------

def test_selectors_labels_and_hpa_target():
    for docs in (BASE_DOCS, OVERLAY_DOCS):
        dep = find(docs, "Deployment", "turnpike")
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        sel = dep["spec"]["selector"]["matchLabels"]
        assert sel.items() <= pod_labels.items()
        for kind in ("Service", "PodDisruptionBudget"):
            s = find(docs, kind, "turnpike")["spec"]["selector"]
            s = s.get("matchLabels", s)
            assert s and s.items() <= pod_labels.items(), (kind, s, pod_labels)
        spec = dep["spec"]["template"]["spec"]
        for t in spec["topologySpreadConstraints"]:
            assert t["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        assert any(t["topologyKey"] == "kubernetes.io/hostname" for t in spec["topologySpreadConstraints"])
        for t in spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]:
            assert t["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        hpa = find(docs, "HorizontalPodAutoscaler")
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", "turnpike")
        assert hpa["spec"]["minReplicas"] >= 3 == dep["spec"]["replicas"]
        pdb = find(docs, "PodDisruptionBudget")
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a node drain can proceed
        # the Service's target port is the container's port
        svc = find(docs, "Service", "turnpike")
        ports = {p["name"]: p["containerPort"] for p in gateway_container(docs)["ports"]}
        assert svc["spec"]["ports"][0]["targetPort"] in ports
    redis_sts = find(BASE_DOCS, "StatefulSet", "redis")
    redis_svc = find(BASE_DOCS, "Service", "redis")
    assert redis_svc["spec"]["clusterIP"] == "None"
    assert redis_sts["spec"]["serviceName"] == "redis"
    assert redis_svc["spec"]["selector"].items() <= redis_sts["spec"]["template"]["metadata"]["labels"].items()
    # the gateway's Redis address is that headless Service
    env = resolve_env(gateway_container(BASE_DOCS), BASE_DOCS)
    assert env["TYK_GW_STORAGE_HOST"] == "redis.tyk.svc.cluster.local"
    assert env["TYK_GW_STORAGE_PORT"] == str(redis_sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"])


def test_grace_period_exceeds_prestop_and_drain():
    dep = find(BASE_DOCS, "Deployment")
    spec = dep["spec"]["template"]["spec"]
    c = gateway_container(BASE_DOCS)
    pre = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    conf = tyk_conf()
    delay = conf["graceful_shutdown_delay_seconds"]
    drain = conf["graceful_shutdown_timeout_duration"]
    assert pre > 0 and delay > 0 and drain > 0
    assert spec["terminationGracePeriodSeconds"] > pre + delay + drain
    # the readiness probe notices the 503 within the delay
    rp = c["readinessProbe"]
    assert rp["periodSeconds"] * rp["failureThreshold"] <= delay


def test_hardening_and_mounts():
    spec = find(BASE_DOCS, "Deployment")["spec"]["template"]["spec"]
    c = gateway_container(BASE_DOCS)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    for k in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][k])
    for p in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert p in c
    conf = tyk_conf()
    # one worker per CPU of the limit (the cores of the node are not the pod's)
    assert conf["turnpike"]["workers"] == int(c["resources"]["limits"]["cpu"].rstrip("m")) // 1000
    vols = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    # --conf is the mounted tyk.conf
    conf_path = c["args"][c["args"].index("--conf") + 1]
    m = mounts[conf_path]
    assert vols[m["name"]]["configMap"]["name"] == "turnpike-config" and m["subPath"] == "tyk.conf"
    # app_path and the policy file are the other ConfigMaps
    m = mounts[conf["app_path"]]
    assert vols[m["name"]]["configMap"]["name"] == "api-definitions"
    pol = Path(conf["policies"]["policy_record_name"])
    m = mounts[str(pol.parent)]
    assert pol.name in find(BASE_DOCS, "ConfigMap", vols[m["name"]]["configMap"]["name"])["data"]
    # the only place Turnpike writes (the admin socket) is a writable emptyDir
    m = mounts[str(Path(conf["turnpike"]["admin_socket"]).parent)]
    assert "emptyDir" in vols[m["name"]] and not m.get("readOnly")
    for m in c["volumeMounts"]:
        if "configMap" in vols[m["name"]]:
            assert find(BASE_DOCS, "ConfigMap", vols[m["name"]]["configMap"]["name"])
    # every secretKeyRef names a key of a Secret in the manifests
    resolve_env(gateway_container(BASE_DOCS), BASE_DOCS)
    sts = find(BASE_DOCS, "StatefulSet", "redis")
    resolve_env(sts["spec"]["template"]["spec"]["containers"][0], BASE_DOCS)


def test_redis_conf_persistence_and_noeviction():
    rc = find(BASE_DOCS, "ConfigMap", "redis-config")["data"]["redis.conf"]
    settings = dict(l.split(None, 1) for l in rc.splitlines() if l.strip() and not l.startswith("#"))
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "everysec"
    assert settings["maxmemory-policy"] == "noeviction"
    assert "allkeys-lru" in rc  # the comment says why not the seed's policy
    sts = find(BASE_DOCS, "StatefulSet", "redis")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] in [m["name"] for m in c["volumeMounts"]]
    assert [m for m in c["volumeMounts"] if m["mountPath"] == settings.get("dir", "/data")]
    for p in ("readinessProbe", "livenessProbe"):
        assert "redis-cli ping" in " ".join(c[p]["exec"]["command"])


def _tyk_keys():
    """Turnpike's own map of tyk.conf keys and TYK_GW_* names."""
    out = {}
    for key, typ, env in re.findall(r'\{"([^"]+)",\s*TP_CK_(\w+),\s*"(TYK_GW_\w+)"\}', TYK_KEYS_C.read_text()):
        out[env] = (key, typ)
    return out


def _dump(conf_path, apps, env):
    r = run_turnpike(["--dump-config", "--conf", str(conf_path)],
                     env=dict(env, TYK_GW_APPPATH=str(apps),
                              TYK_GW_POLICIES_POLICYRECORDNAME="/nonexistent/policies.json"))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _at(d, dotted):
    for part in dotted.split("."):
        d = d[part]
    return d


def test_every_env_var_is_read_by_turnpike(tmp_path):
    """Each TYK_GW_* name of the Deployment (base and overlay) changes the
    effective config (--dump-config) when set alone."""
    keys = _tyk_keys()
    conf_path = tmp_path / "tyk.conf"
    conf_path.write_text(find(BASE_DOCS, "ConfigMap", "turnpike-config")["data"]["tyk.conf"])
    apps = tmp_path / "apps"
    apps.mkdir()
    base = _dump(conf_path, apps, {})
    names = set()
    for docs in (BASE_DOCS, OVERLAY_DOCS):
        names |= {e["name"] for e in gateway_container(docs)["env"]}
    assert len(names) >= 8
    synthetic = {"STRING": "k8s-test-value", "INT": "3", "STRLIST": "10.9.8.7:1234,10.9.8.6:1234"}
    for name in sorted(names):
        assert name.startswith("TYK_GW_"), name
        assert name in keys, "%s is not a name Turnpike maps to a tyk.conf key" % name
        key, typ = keys[name]
        if typ == "BOOL":
            val = "false" if _at(base, key) else "true"
        else:
            val = synthetic[typ]
        got = _at(_dump(conf_path, apps, {name: val}), key)
        want = {"INT": lambda: int(val), "BOOL": lambda: val == "true",
                "STRLIST": lambda: val.split(",")}.get(typ, lambda: val)()
        if got == "********":  # secrets are masked in the dump; the loopback test uses them
            want = got
        assert got != _at(base, key) and got == want, (name, key, got)


def test_probe_paths_and_ports_exist_in_the_gateway(tmp_path):
    """The probes' paths answer on the gateway with the manifests' tyk.conf,
    on the port the probes name."""
    c = gateway_container(BASE_DOCS)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    conf = tyk_conf()
    for p in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = c[p]["httpGet"]["port"]
        assert ports.get(port, port) == conf["listen_port"], p
    pod = Pods(tmp_path, n=1)
    try:
        for p in ("startupProbe", "livenessProbe", "readinessProbe"):
            r = get(pod.ports[0], c[p]["httpGet"]["path"])
            assert r.status == 200, (p, r)
            assert r.json()["status"] == "pass", (p, r.body)
        assert get(pod.ports[0], "/no-such-probe").status == 404
    finally:
        pod.stop()


# ---------------------------------------------------------------------------
# 3. the manifests on loopback
# ---------------------------------------------------------------------------

def write_configmap_volume(dirpath, data, gen=[0]):
    """Writes ConfigMap <data> into <dirpath> the way the kubelet's
    AtomicWriter does (also on an update): the files live in a timestamped
    directory, `..data` is a symlink to it, each key is a symlink
    `key -> ..data/key`; an update swaps `..data` atomically."""
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    gen[0] += 1
    ts = "..%s_%d.%d" % (time.strftime("%Y_%m_%d_%H_%M_%S"), os.getpid(), gen[0])
    (d / ts).mkdir()
    for k, v in data.items():
        (d / ts / k).write_text(v)
    old = os.readlink(d / "..data") if (d / "..data").is_symlink() else None
    os.symlink(ts, d / "..data_tmp")
    os.rename(d / "..data_tmp", d / "..data")
    for k in data:
        if not (d / k).is_symlink():
            os.symlink("..data/" + k, d / k)
    for f in d.iterdir():
        if f.is_symlink() and f.name not in data and not f.name.startswith(".."):
            f.unlink()
    if old:
        shutil.rmtree(d / old)


class Pods:
    """redis (the StatefulSet) and <n> gateway pods (the Deployment), from
    the rendered base manifests."""

    def __init__(self, tmp_path, n=3, apis=None):
        self.tmp = Path(tmp_path)
        self.procs = []
        self.secrets = secret_values(BASE_DOCS)
        # --- Redis: the StatefulSet's command with its redis.conf ---
        sts = find(BASE_DOCS, "StatefulSet", "redis")
        rc_ = sts["spec"]["template"]["spec"]["containers"][0]
        self.redis_env = resolve_env(rc_, BASE_DOCS)
        conf_dir = self.tmp / "redis-config"
        write_configmap_volume(conf_dir, find(BASE_DOCS, "ConfigMap", "redis-config")["data"])
        cmd = [re.sub(r"\$\((\w+)\)", lambda m: self.redis_env[m.group(1)], a) for a in rc_["command"]]
        assert cmd[1] == "/etc/redis/redis.conf"
        cmd[1] = str(conf_dir / "redis.conf")
        self.redis_port = redis_port()
        data = self.tmp / "redis-data"
        data.mkdir()
        # only bind, port and dir differ from the pod
        cmd += ["--bind", HOST, "--port", str(self.redis_port), "--dir", str(data)]
        self.redis = spawn(cmd, self.tmp / "redis.log")
        self.procs.append(self.redis)
        self.redis_cli_probe = rc_["readinessProbe"]["exec"]["command"]
        wait_for(lambda: self.redis_probe() == 0, 10, what="redis readiness probe")
        # --- gateways ---
        c = gateway_container(BASE_DOCS)
        self.conf_text = find(BASE_DOCS, "ConfigMap", "turnpike-config")["data"]["tyk.conf"]
        self.conf = json.loads(self.conf_text)
        self.apps = self.tmp / "apps"          # the api-definitions volume
        self.policies = self.tmp / "policies"  # the policies volume
        self.apps_data = dict(apis if apis is not None else
                              find(BASE_DOCS, "ConfigMap", "api-definitions")["data"])
        write_configmap_volume(self.apps, self.apps_data)
        write_configmap_volume(self.policies, find(BASE_DOCS, "ConfigMap", "policies")["data"])
        self.conf_path = self.tmp / "tyk.conf"  # the subPath mount: a plain file
        self.conf_path.write_text(self.conf_text)
        args = list(c["args"])
        args[args.index("--conf") + 1] = str(self.conf_path)
        pod_env = resolve_env(c, BASE_DOCS)
        self.ports, self.gw, self.envs = [], [], []
        for i in range(n):
            port = free_port()
            run = self.tmp / ("run-%d" % i)  # the emptyDir
            run.mkdir()
            env = dict(pod_env)
            env.update({
                "TYK_GW_LISTENADDRESS": HOST,
                "TYK_GW_LISTENPORT": str(port),
                "TYK_GW_APPPATH": str(self.apps),
                "TYK_GW_POLICIES_POLICYRECORDNAME": str(
                    self.policies / Path(self.conf["policies"]["policy_record_name"]).name),
                "TYK_GW_TURNPIKE_ADMINSOCKET": str(run / Path(self.conf["turnpike"]["admin_socket"]).name),
                "TYK_GW_STORAGE_HOST": HOST,
                "TYK_GW_STORAGE_PORT": str(self.redis_port),
            })
            env = clean_env(env)
            p = spawn([BIN] + args, self.tmp / ("gateway-%d.log" % i), env=env, cwd=str(run))
            self.procs.append(p)
            self.ports.append(port)
            self.gw.append(p)
            self.envs.append(env)
        self.startup(c)

    def redis_probe(self, auth=None):
        """The StatefulSet's exec probe; redis-cli gets the test port (the pod
        uses the default 6379)."""
        cmd = [a.replace("redis-cli", "redis-cli -p %d" % self.redis_port) for a in self.redis_cli_probe]
        env = dict(os.environ, REDISCLI_AUTH=auth if auth is not None else self.redis_env["REDISCLI_AUTH"])
        return subprocess.run(cmd, env=env, capture_output=True, timeout=10).returncode

    def startup(self, c):
        """The kubelet's startup probe (within periodSeconds *
        failureThreshold), then liveness and readiness."""
        sp = c["startupProbe"]
        budget = sp["periodSeconds"] * sp["failureThreshold"]
        for i, port in enumerate(self.ports):
            def started():
                assert self.gw[i].poll() is None, self.log(i)
                try:
                    return http(port, "GET", sp["httpGet"]["path"], timeout=sp.get("timeoutSeconds", 1)).status == 200
                except OSError:
                    return False
            wait_for(started, budget, what="startup probe of pod %d" % i)
            r = get(port, c["livenessProbe"]["httpGet"]["path"])
            assert r.status == 200
            wait_for(lambda: get(port, c["readinessProbe"]["httpGet"]["path"]).status == 200, 10,
                     what="readiness of pod %d" % i)

    def log(self, i):
        return (self.tmp / ("gateway-%d.log" % i)).read_text(errors="replace")[-4000:]

    def stop(self):
        for p in self.procs:
            kill_wait(p)


def test_manifests_on_loopback(tmp_path, upstream):
    apis = find(BASE_DOCS, "ConfigMap", "api-definitions")["data"]
    # the example API's target is a k8s Service name (backend.default.svc...);
    # here it is the test upstream. Nothing else in the definition changes.
    example = json.loads(apis["example-api.json"])
    assert example["proxy"]["target_url"].startswith("http://backend.default.svc.cluster.local")
    example["proxy"]["target_url"] = upstream.url("/")
    apis = dict(apis, **{"example-api.json": json.dumps(example)})
    c = gateway_container(BASE_DOCS)
    pods = Pods(tmp_path, n=3, apis=apis)
    try:
        _run_pods(pods, c, upstream, example)
    except BaseException:
        for i in range(len(pods.ports)):
            print("---- pod %d log ----\n%s" % (i, pods.log(i)))
        raise
    finally:
        pods.stop()


def _run_pods(pods, c, upstream, example):
    secrets = pods.secrets
    # Redis runs with the StatefulSet's settings, password from the Secret
    assert redis_py is not None
    rcli = redis_py.Redis(host=HOST, port=pods.redis_port, password=secrets["redis-password"],
                          decode_responses=True, socket_timeout=5)
    assert rcli.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert rcli.config_get("appendonly") == {"appendonly": "yes"}
    assert rcli.config_get("appendfsync") == {"appendfsync": "everysec"}
    with pytest.raises(redis_py.exceptions.AuthenticationError):
        redis_py.Redis(host=HOST, port=pods.redis_port, socket_timeout=5).ping()
    assert pods.redis_probe(auth="wrong-password") != 0  # the probe can fail
    # the gateways reach it with the Secret's password: /hello says redis pass
    for port in pods.ports:
        h = get(port, c["livenessProbe"]["httpGet"]["path"]).json()
        assert h["status"] == "pass", h
        if "details" in h:
            assert h["details"]["redis"]["status"] == "pass", h

    listen = example["proxy"]["listen_path"]  # /api/
    # traffic through all three
    for port in pods.ports:
        for _ in range(5):
            r = get(port, listen + "echo/x")
            assert r.status == 200, r
            assert r.json()["path"] == "/echo/x"
    # the Gateway REST API with the Secret's secret (TYK_GW_SECRET)
    for port in pods.ports:
        assert get(port, "/tyk/apis").status == 403
        r = get(port, "/tyk/apis", headers=[("X-Tyk-Authorization", secrets["secret"])])
        assert r.status == 200 and [a["api_id"] for a in r.json()] == [example["api_id"]]
    # the policies ConfigMap's one policy was loaded
    npol = len(json.loads(find(BASE_DOCS, "ConfigMap", "policies")["data"]["policies.json"]))
    for i, port in enumerate(pods.ports):
        assert re.search(r"1 APIs from %s, %d policies" % (re.escape(str(pods.apps)), npol), pods.log(i)), pods.log(i)

    # --- a changed API-definitions ConfigMap (a second API), then a reload ---
    second = {"name": "Second API", "api_id": "second-api-id", "org_id": "default",
              "use_keyless": True, "active": True,
              "proxy": {"listen_path": "/v2/", "target_url": upstream.url("/"), "strip_listen_path": True}}
    new_data = dict(pods.apps_data, **{"second-api.json": json.dumps(second, indent=2)})
    write_configmap_volume(pods.apps, new_data)
    for port in pods.ports:
        assert get(port, "/v2/echo").status == 404  # not before the reload
    # two pods: `kubectl exec POD -- kill -HUP 1`; the third: `turnpike ctl reload`
    os.kill(pods.gw[0].pid, signal.SIGHUP)
    os.kill(pods.gw[1].pid, signal.SIGHUP)
    r = subprocess.run([BIN, "ctl", "--conf", str(pods.conf_path), "reload"], env=pods.envs[2],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "Success=1" in r.stdout, (r.stdout, r.stderr)
    for port in pods.ports:
        wait_for(lambda: get(port, "/v2/echo").status == 200, 10, what="second API on %d" % port)
        assert get(port, "/v2/echo").json()["path"] == "/echo"
        assert get(port, listen + "echo").status == 200

    # a third API, reloaded on every pod by one GET /tyk/reload/group: the
    # message is signed and checked with the Secret's node-secret
    third = dict(second, name="Third API", api_id="third-api-id",
                 proxy=dict(second["proxy"], listen_path="/v3/"))
    write_configmap_volume(pods.apps, dict(new_data, **{"third-api.json": json.dumps(third)}))
    # Redis pub/sub keeps no messages: every pod must be listening first
    # (its master subscribes once it runs, which can be after /hello passes)
    for i in range(len(pods.ports)):
        log = pods.tmp / ("gateway-%d.log" % i)
        wait_for(lambda: "subscribed to tyk.cluster.notifications" in log.read_text(), 10,
                 what="pod %d subscribed to the notifications" % i)
    r = get(pods.ports[0], "/tyk/reload/group", headers=[("X-Tyk-Authorization", secrets["secret"])])
    assert r.status == 200, r
    for port in pods.ports:
        wait_for(lambda: get(port, "/v3/echo").status == 200, 10, what="third API on %d" % port)

    # --- SIGTERM one pod under load ---
    # A router in front of the pods (the Service's endpoints) stops sending
    # new requests to a pod once its readiness probe fails, as Kubernetes does.
    c_ready = c["readinessProbe"]["httpGet"]["path"]
    victim = 0
    in_endpoints = [True, True, True]
    results = {"ok": 0, "fail": []}
    lock = threading.Lock()
    stop = threading.Event()
    seen_503 = threading.Event()

    def load(i):
        port = pods.ports[i]
        while not stop.is_set():
            if not in_endpoints[i]:
                return
            try:
                r = http(port, "GET", listen + "delay/50", timeout=10)
                ok = r.status == 200 and r.body == b"slept"
                err = r.status
            except OSError as e:
                ok, err = False, repr(e)
            with lock:
                if ok:
                    results["ok"] += 1
                else:
                    results["fail"].append((i, err))

    long_result = {}

    def long_request():
        # in flight across the whole readiness delay and into the drain
        try:
            r = http(pods.ports[victim], "GET", listen + "delay/3500", timeout=20)
            long_result["status"], long_result["body"] = r.status, r.body
        except OSError as e:
            long_result["error"] = repr(e)

    def readiness_prober():
        while not stop.is_set() and pods.gw[victim].poll() is None:
            try:
                st = http(pods.ports[victim], "GET", c_ready, timeout=2).status
            except OSError:
                st = None
            if st == 503:
                seen_503.set()
            if st != 200:
                in_endpoints[victim] = False
            time.sleep(0.1)

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(3)]
    threads.append(threading.Thread(target=long_request, daemon=True))
    for t in threads:
        t.start()
    time.sleep(0.5)
    prober = threading.Thread(target=readiness_prober, daemon=True)
    prober.start()
    t0 = time.time()
    os.kill(pods.gw[victim].pid, signal.SIGTERM)
    grace = find(BASE_DOCS, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    try:
        rc = pods.gw[victim].wait(timeout=grace - pre)
    except subprocess.TimeoutExpired:
        rc = None
    took = time.time() - t0
    time.sleep(0.5)  # the other pods keep serving
    stop.set()
    for t in threads:
        t.join(15)
    prober.join(5)
    assert rc == 0, (rc, took)
    assert seen_503.is_set(), "readiness never answered 503 during the shutdown delay"
    assert took >= pods.conf["graceful_shutdown_delay_seconds"]
    assert long_result.get("status") == 200 and long_result.get("body") == b"slept", long_result
    assert results["fail"] == [], results["fail"][:10]
    assert results["ok"] > 30, results
    for port in pods.ports[1:]:
        assert get(port, listen + "echo").status == 200
        assert get(port, c_ready).status == 200


def test_tyk_apis_write_on_the_read_only_configmap_mount(tmp_path):
    """app_path is a ConfigMap volume, which the kubelet mounts read-only:
    the seed's POST /tyk/apis answers Tyk's 500 and changes nothing (the
    README says so); GET works. Read-only bind mount in a mount namespace."""
    trial = ["unshare", "-m", "true"] if os.geteuid() == 0 else ["unshare", "-rm", "true"]
    if subprocess.run(trial, capture_output=True).returncode != 0:
        pytest.skip("cannot create a mount namespace here (unshare -m)")
    apps = tmp_path / "apps"
    write_configmap_volume(apps, find(BASE_DOCS, "ConfigMap", "api-definitions")["data"])
    conf_path = tmp_path / "tyk.conf"
    conf_path.write_text(find(BASE_DOCS, "ConfigMap", "turnpike-config")["data"]["tyk.conf"])
    port = free_port()
    env = clean_env(dict(resolve_env(gateway_container(BASE_DOCS), BASE_DOCS),
                         TYK_GW_LISTENADDRESS=HOST, TYK_GW_LISTENPORT=str(port),
                         TYK_GW_APPPATH=str(apps), TYK_GW_TURNPIKE_ADMINSOCKET="",
                         TYK_GW_POLICIES_POLICYRECORDNAME=str(tmp_path / "none.json"),
                         TYK_GW_STORAGE_HOST=HOST, TYK_GW_STORAGE_PORT=str(free_port())))
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"'
    p = spawn(trial[:-1] + ["sh", "-c", script, "sh", str(apps), BIN, "--conf", str(conf_path)],
              tmp_path / "gateway.log", env=env)
    try:
        wait_port(port, 10, p)
        secret = secret_values(BASE_DOCS)["secret"]
        body = json.dumps(api_def("my-api-id", "/my/", "http://127.0.0.1:1/")).encode()
        r = http(port, "POST", "/tyk/apis", [("X-Tyk-Authorization", secret)], body)
        assert r.status == 500, r
        assert r.json() == {"status": "error", "message": "File object creation failed, write error"}
        assert sorted(f.name for f in apps.iterdir() if not f.name.startswith("..")) == ["example-api.json"]
        assert "Read-only file system" in (tmp_path / "gateway.log").read_text()
        r = get(port, "/tyk/apis", headers=[("X-Tyk-Authorization", secret)])
        assert r.status == 200 and [a["api_id"] for a in r.json()] == ["example-api-id"]
    finally:
        kill_wait(p)


def test_redis_cluster_overlay_on_loopback(tmp_path, redis_cluster):
    """The overlay's gateway environment against a real Redis Cluster (3
    masters, 3 replicas): the cluster's addresses replace the k8s names, and
    the chart's Secret (made by Helm, not in k8s/) is empty because the test
    cluster has no password."""
    c = gateway_container(OVERLAY_DOCS)
    env = resolve_env(c, OVERLAY_DOCS, {"redis-cluster": {"redis-password": ""}})
    assert env["TYK_GW_STORAGE_ENABLECLUSTER"] == "true"
    assert len(env["TYK_GW_STORAGE_ADDRS"].split(",")) == 3
    apps = tmp_path / "apps"
    write_configmap_volume(apps, find(OVERLAY_DOCS, "ConfigMap", "api-definitions")["data"])
    pols = tmp_path / "policies"
    write_configmap_volume(pols, find(OVERLAY_DOCS, "ConfigMap", "policies")["data"])
    conf_path = tmp_path / "tyk.conf"
    conf_path.write_text(find(OVERLAY_DOCS, "ConfigMap", "turnpike-config")["data"]["tyk.conf"])
    port = free_port()
    env.update(TYK_GW_LISTENADDRESS=HOST, TYK_GW_LISTENPORT=str(port), TYK_GW_APPPATH=str(apps),
               TYK_GW_POLICIES_POLICYRECORDNAME=str(pols / "policies.json"),
               TYK_GW_TURNPIKE_ADMINSOCKET=str(tmp_path / "admin.sock"),
               TYK_GW_STORAGE_ADDRS=",".join(redis_cluster.addrs()[:3]))
    env = clean_env(env)
    r = subprocess.run([BIN, "--check-redis", "--conf", str(conf_path)], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"topology: cluster: \d+ known nodes, 3 own slots$", r.stdout, re.M), r.stdout
    p = spawn([BIN, "--conf", str(conf_path)], tmp_path / "gateway.log", env=env)
    try:
        wait_port(port, 10, p)
        wait_for(lambda: get(port, "/ready").status == 200, 10, what="readiness")
        secret = secret_values(OVERLAY_DOCS)["secret"]
        r = http(port, "POST", "/tyk/keys/create", [("X-Tyk-Authorization", secret)],
                 json.dumps({"org_id": "default", "apply_policies": ["default"]}).encode())
        assert r.status == 200, r
        key_hash = r.json()["key_hash"]
        found = []
        for m in redis_cluster.masters():
            cl = redis_cluster.node(m["addr"]).client()
            try:
                found += cl.keys("apikey-" + key_hash)
            finally:
                cl.close()
        assert found, "the key is in none of the cluster's masters"
    finally:
        kill_wait(p)
