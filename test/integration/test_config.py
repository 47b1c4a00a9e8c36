"""tyk.conf, TYK_GW_* overrides and API definitions, as an operator meets
them: -t, --dump-config, --version, and a running gateway."""
import json
import re
import shutil
import socket

import pytest

from conftest import (BIN, DATA, HOST, TYK_API_401, api_def, free_port, port_refuses, run_turnpike,
                      spawn)

SEED = DATA / "seed"
SEED_CONF = SEED / "tyk.conf"
# the environment of the seed's Deployment
SEED_ENV = {
    "TYK_GW_STORAGE_HOST": "redis.tyk.svc.cluster.local",
    "TYK_GW_STORAGE_PORT": "6379",
    "TYK_GW_STORAGE_DATABASE": "0",
}


def log_lines(text, level=None):
    out = [l for l in text.splitlines() if l.startswith("time=")]
    if level:
        out = [l for l in out if " level=%s " % level in l]
    return out


# ---- the seed deployment ------------------------------------------------------------

def test_seed_config_is_valid_and_every_setting_it_turns_on_is_implemented():
    r = run_turnpike(["-t", "--conf", str(SEED_CONF)],
                     env=dict(SEED_ENV, TYK_GW_APPPATH=str(SEED / "apps")))
    assert r.returncode == 0, r.stderr
    assert log_lines(r.stderr, "error") == []
    warnings = "\n".join(log_lines(r.stderr, "warning"))
    # keys and sessions, error templates, analytics, uptime tests and (the
    # last one) enable_jsvm are implemented: no setting is named as not
    notimpl = [l for l in log_lines(r.stderr, "warning") if "not implemented" in l]
    assert notimpl == [], notimpl
    # the seed turns them on: each is read, not ignored as unknown
    for name in ("enable_jsvm", "hash_keys", "template_path", "enable_analytics", "uptime_tests",
                 "middleware_path", "analytics_config"):
        assert name not in warnings, (name, warnings)
    # policies from a file are implemented; the seed mounts no policy file
    assert "/opt/tyk-gateway/policies/policies.json does not exist" in warnings
    # a legacy key Tyk ignores, named once
    assert "optimisations_use_async_session_write" in warnings
    assert re.search(r"1 API definitions? loaded", r.stderr), r.stderr


def test_seed_config_without_its_app_directory_fails():
    r = run_turnpike(["-t", "--conf", str(SEED_CONF)], env=SEED_ENV)
    assert r.returncode == 1
    assert "/opt/tyk-gateway/apps" in r.stderr


def seed_gateway(make_gateway, tmp_path, definitions):
    """The seed's tyk.conf, unchanged, with the Deployment's environment;
    only the address, port, app path and worker count come from TYK_GW_*."""
    apps = tmp_path / "seed-apps"
    apps.mkdir()
    for d in definitions:
        shutil.copy(d, apps / d.name)
    port = free_port()
    g = make_gateway(start=False, env=dict(SEED_ENV, TYK_GW_APPPATH=str(apps),
                                          TYK_GW_LISTENADDRESS=HOST, TYK_GW_LISTENPORT=str(port),
                                          TYK_GW_TURNPIKE_WORKERS="1"))
    shutil.copy(SEED_CONF, g.conf_path)
    g.conf = json.loads(SEED_CONF.read_text())
    g.conf["turnpike"] = {"workers": 1}
    g.port = port
    return g.start()


def test_seed_keyless_api_served(make_gateway, tmp_path):
    g = seed_gateway(make_gateway, tmp_path, [SEED / "apps" / "example-api.json"])
    assert g.get("/hello").status == 200
    # the seed's backend (backend.default.svc.cluster.local) does not resolve here
    r = g.get("/api/test")
    assert r.status == 500
    assert r.body == b'{\n    "error": "Upstream host lookup failed"\n}'
    assert g.get("/example/x").status == 404


def test_seed_example_api_definition(make_gateway, tmp_path):
    """The "Example API" definition of the seed (token auth) loads and,
    without a key, answers Tyk's 401."""
    r = run_turnpike(["-t", "--conf", str(SEED_CONF)],
                     env=dict(SEED_ENV, TYK_GW_APPPATH=str(SEED)))  # holds api-definition.json
    assert r.returncode == 0, r.stderr
    g = seed_gateway(make_gateway, tmp_path, [SEED / "api-definition.json"])
    for path in ("/example/anything", "/example-api-id/x"):
        r = g.get(path)
        assert r.status == 401
        assert r.body == TYK_API_401
        assert r.header("X-Generator") == "tyk.io"


def test_seed_definitions_together_duplicate_api_id(tmp_path):
    """Both seed definitions use api_id "example-api-id": the second file is
    skipped with a message naming both files."""
    apps = tmp_path / "apps"
    apps.mkdir()
    shutil.copy(SEED / "apps" / "example-api.json", apps / "example-api.json")
    shutil.copy(SEED / "api-definition.json", apps / "api-definition.json")
    r = run_turnpike(["-t", "--conf", str(SEED_CONF)], env=dict(SEED_ENV, TYK_GW_APPPATH=str(apps)))
    assert r.returncode == 1
    err = "\n".join(log_lines(r.stderr, "error"))
    assert "example-api-id" in err
    assert "example-api.json" in err and "api-definition.json" in err


# ---- malformed files and wrong types ------------------------------------------------

def write_conf(tmp_path, text, apps=True):
    d = tmp_path / "apps"
    d.mkdir(exist_ok=True)
    p = tmp_path / "tyk.conf"
    if isinstance(text, dict):
        text = json.dumps(dict({"app_path": str(d), "listen_address": HOST}, **text), indent=2)
    p.write_text(text)
    return p


def test_malformed_json_names_file_line_column_and_path(tmp_path):
    p = write_conf(tmp_path, '{\n  "listen_port": 8080,\n  "storage": {\n    "host": "x",\n  }\n}\n')
    r = run_turnpike(["-t", "--conf", str(p)])
    assert r.returncode == 1
    err = "\n".join(log_lines(r.stderr, "error"))
    assert str(p) in err
    assert "line 5, column 3" in err, err
    assert "$.storage" in err


@pytest.mark.parametrize("fragment,path,expected", [
    ({"listen_port": "8080"}, "$.listen_port", "expected integer, got string"),
    ({"storage": {"port": True}}, "$.storage.port", "expected integer, got bool"),
    ({"storage": {"addrs": "redis:6379"}}, "$.storage.addrs", "expected array"),
    ({"turnpike": {"workers": "2"}}, "$.turnpike.workers", "expected integer, got string"),
    ({"close_connections": "yes"}, "$.close_connections", "expected bool"),
    ({"proxy_default_timeout": "30"}, "$.proxy_default_timeout", "expected number, got string"),
    ({"http_server_options": {"max_request_body_size": 1.5}},
     "$.http_server_options.max_request_body_size", "expected integer"),
    ({"enable_analytics": "true"}, "$.enable_analytics", "expected bool"),  # Tyk's, unimplemented
])
def test_wrong_type_names_path_and_expected_type(tmp_path, fragment, path, expected):
    p = write_conf(tmp_path, fragment)
    r = run_turnpike(["-t", "--conf", str(p)])
    assert r.returncode == 1
    line = [l for l in log_lines(r.stderr, "error") if path + ":" in l]
    assert line, r.stderr
    assert str(p) in line[0] and expected in line[0], line[0]


def test_several_errors_reported_together(tmp_path):
    p = write_conf(tmp_path, {"listen_port": "x", "storage": {"port": "y"}})
    r = run_turnpike(["-t", "--conf", str(p)])
    assert r.returncode == 1
    assert "$.listen_port" in r.stderr and "$.storage.port" in r.stderr


@pytest.mark.parametrize("definition,message", [
    ('{"api_id": "bad", "proxy": {"listen_path": "/bad/",\n "target_url": }}', "line 2"),
    (json.dumps({"api_id": "bad", "use_keyless": True,
                 "proxy": {"listen_path": 5, "target_url": "http://127.0.0.1:1/"}}),
     "$.proxy.listen_path: expected string, got number"),
    (json.dumps({"api_id": "bad", "use_keyless": True, "proxy": {"listen_path": "/bad/"}}),
     "$.proxy.target_url"),
    (json.dumps({"api_id": "bad", "use_keyless": "yes",
                 "proxy": {"listen_path": "/bad/", "target_url": "http://127.0.0.1:1/"}}),
     "$.use_keyless"),
], ids=["malformed-json", "wrong-type", "no-target", "string-for-bool"])
def test_invalid_api_definition_skipped(tmp_path, upstream, make_gateway, definition, message):
    g = make_gateway(apis=[api_def("good", "/good/", upstream.url("/"))], workers=1, start=False)
    (g.apps / "zz-bad.json").write_text(definition)
    r = run_turnpike(["-t", "--conf", str(g.conf_path)])
    assert r.returncode == 1
    err = [l for l in log_lines(r.stderr, "error") if "zz-bad.json" in l]
    assert err and message in err[0], r.stderr
    # a running gateway serves the others
    g.start()
    assert g.get("/good/echo").status == 200
    assert g.get("/bad/x").status == 404
    assert "zz-bad.json" in g.log()


# ---- environment ----------------------------------------------------------------------

def test_env_overrides_visible_in_dump_config(tmp_path):
    p = write_conf(tmp_path, {"listen_port": 8080,
                              "storage": {"host": "file-host", "port": 6379, "password": "hunter2",
                                          "optimisation_max_idle": 10},
                              "turnpike": {"workers": 1}})
    port = free_port()
    r = run_turnpike(["--dump-config", "--conf", str(p)], env={
        "TYK_GW_STORAGE_HOST": "redis.example.internal",
        "TYK_GW_STORAGE_PORT": "6390",
        "TYK_GW_STORAGE_DATABASE": "4",
        "TYK_GW_STORAGE_MAXIDLE": "77",
        "TYK_GW_TURNPIKE_WORKERS": "3",
        "TYK_GW_LISTENPORT": str(port),
        "TYK_GW_PROXYDEFAULTTIMEOUT": "2.5",
    })
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["storage"]["host"] == "redis.example.internal"
    assert d["storage"]["port"] == 6390
    assert d["storage"]["database"] == 4
    assert d["storage"]["optimisation_max_idle"] == 77
    assert d["turnpike"]["workers"] == 3
    assert d["effective_workers"] == 3
    assert d["listen_port"] == port
    assert d["proxy_default_timeout"] == 2.5
    assert "hunter2" not in r.stdout and "hunter2" not in r.stderr


@pytest.mark.parametrize("var,value", [
    ("TYK_GW_LISTENPORT", "eighty"),
    ("TYK_GW_STORAGE_MAXIDLE", "lots"),
    ("TYK_GW_TURNPIKE_WORKERS", "two"),
    ("TYK_GW_CLOSECONNECTIONS", "maybe"),
    ("TYK_GW_PROXYDEFAULTTIMEOUT", "soon"),
])
def test_bad_env_value_fails(tmp_path, var, value):
    p = write_conf(tmp_path, {"listen_port": 8080})
    r = run_turnpike(["-t", "--conf", str(p)], env={var: value})
    assert r.returncode == 1
    err = "\n".join(log_lines(r.stderr, "error"))
    assert var in err and value in err, r.stderr


def test_env_listen_port_and_port_flag(upstream, make_gateway):
    env_port, flag_port = free_port(), free_port()
    g = make_gateway(apis=[api_def("e", "/e/", upstream.url("/"))], workers=1, start=False,
                     env={"TYK_GW_LISTENPORT": str(env_port)})
    conf_port = g.port
    g.port = env_port
    g.start()
    assert g.get("/e/echo").status == 200
    assert port_refuses(conf_port)
    g.stop()
    # --port wins over the environment, as in Tyk
    g.args = ["--port", str(flag_port)]
    g.port = flag_port
    g.start()
    assert g.get("/e/echo").status == 200
    assert port_refuses(env_port)


# ---- command line ----------------------------------------------------------------------

def test_version_lists_libraries():
    r = run_turnpike(["--version"])
    assert r.returncode == 0
    assert re.match(r"turnpike \d+\.\d+\.\d+", r.stdout)
    for lib in ("libuv", "llhttp", "hiredis", "cJSON", "mbedTLS"):
        assert re.search(r"^\s*%s \d+\.\d+\.\d+\s*$" % lib, r.stdout, re.M), (lib, r.stdout)


def test_unknown_argument_is_usage_error():
    r = run_turnpike(["--no-such-flag"])
    assert r.returncode == 2
    assert "--no-such-flag" in r.stderr and "usage" in r.stderr


def test_check_mode_binds_nothing(tmp_path):
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen(1)
    try:
        p = write_conf(tmp_path, {"listen_port": busy.getsockname()[1]})
        r = run_turnpike(["-t", "--conf", str(p)])
        assert r.returncode == 0, r.stderr
    finally:
        busy.close()


def test_port_in_use_fails_clearly(tmp_path):
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        p = write_conf(tmp_path, {"listen_port": port})
        proc = spawn([BIN, "--conf", str(p)], tmp_path / "out.log")
        try:
            code = proc.wait(timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code != 0
        out = (tmp_path / "out.log").read_text()
        assert str(port) in out and "level=error" in out, out
    finally:
        busy.close()


# ---- settings that change what clients see -----------------------------------------------

def test_json_log_format(upstream, make_gateway):
    g = make_gateway(conf={"log_format": "json"}, apis=[api_def("e", "/e/", upstream.url("/"))],
                     workers=2)
    assert g.get("/e/echo").status == 200
    g.stop()
    lines = [l for l in g.log().splitlines() if l.strip()]
    assert lines
    roles = set()
    for l in lines:
        rec = json.loads(l)
        assert {"time", "level", "pid", "role", "msg"} <= set(rec), rec
        roles.add(rec["role"])
    assert "master" in roles


def test_custom_health_endpoint_names(make_gateway):
    g = make_gateway(conf={"health_check_endpoint_name": "healthz",
                           "readiness_check_endpoint_name": "readyz"}, workers=1)
    assert g.get("/healthz").json()["description"] == "Tyk GW"
    assert g.get("/readyz").json()["description"] == "Tyk GW Ready"
    assert g.get("/hello").status == 404
    assert g.get("/ready").status == 404


def test_worker_count(make_gateway):
    g = make_gateway(workers=3)
    assert len(g.worker_pids()) == 3
