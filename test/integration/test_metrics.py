"""Prometheus metrics (issue 13): GET /metrics on turnpike.metrics_port,
the families of Tyk Pump's prometheus pump (TYK-COMPAT 16.4) and
turnpike_*, counted by the workers in shared memory and summed by the
master; never on the gateway port."""
import json
import re
import socket
import time

import redis as redislib

from conftest import HOST, RawConn, api_def, free_port, port_refuses, run_turnpike, wait_for
from test_control import admin as admin_cmd
from test_keys import SECRET, access, new_org, token_api, uid
from tykkeys import hash_key, tyk_session

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def http_get(port, path, method="GET"):
    with RawConn(port) as c:
        c.send(("%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, path)).encode())
        out = c.read_all(timeout=10)
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode(), body.decode()


def parse(text):
    """The exposition format, checked as Prometheus reads it: every sample
    after its family's TYPE, a family's samples together. Returns
    {(name, frozenset(labels)): value} and {family: type}."""
    samples, types, seen, current = {}, {}, set(), None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert name not in types, "family %s twice" % name
            types[name] = typ
            current = name
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, line
        name = m.group(1)
        fam = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert fam == current, "sample %s outside its family (%s)" % (line, current)
        seen.add(fam)
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        key = (name, labels)
        assert key not in samples, "duplicate series " + line
        samples[key] = float(m.group(4))
    return samples, types


def scrape(port):
    code, head, body = http_get(port, "/metrics")
    assert code == 200, (code, body)
    assert "Content-Type: text/plain; version=0.0.4" in head
    return parse(body)


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0)


def family(samples, name):
    return {dict(k[1]).__repr__(): v for k, v in samples.items() if k[0] == name}


def metrics_gw(make_gateway, red, apis, tmp_path, workers=2, **conf):
    port = free_port()
    sock = tmp_path / "admin.sock"
    c = {"secret": SECRET, "hash_keys": True,
         "storage": {"type": "redis", "host": HOST, "port": red.port},
         "turnpike": {"metrics_port": port, "admin_socket": str(sock)}}
    for k, v in conf.items():
        if isinstance(v, dict) and isinstance(c.get(k), dict):
            c[k].update(v)
        else:
            c[k] = v
    g = make_gateway(conf=c, apis=apis, workers=workers)
    return g, port, sock


def test_counts_match_requests_across_workers_and_reloads(make_gateway, upstream, make_redis,
                                                          tmp_path):
    red = make_redis()
    org = new_org()
    free = api_def("free", "/free/", upstream.url("/"))
    keyed = token_api("paid", "/paid/", upstream.url("/"), org)
    g, port, sock = metrics_gw(make_gateway, red, [free, keyed], tmp_path,
                               analytics_config={"normalise_urls": {
                                   "enabled": True, "normalise_numbers": True}})
    token = org + uid()
    redislib.Redis(host=HOST, port=red.port).set(
        "apikey-" + hash_key(token), json.dumps(tyk_session(["paid"], org_id=org)))
    for i in range(40):  # a new connection each: both workers take some
        assert g.get("/free/users/%d" % i).status == 200
    for _ in range(10):
        assert g.get("/free/status/404").status == 404
    for _ in range(6):
        assert g.request("GET", "/paid/x", [("Authorization", token)]).status == 200
    for _ in range(3):
        assert g.get("/paid/x").status == 401
    for path in ("/hello", "/tyk/apis", "/nowhere"):  # not API requests
        g.get(path)
    workers = [l.split() for l in admin_cmd(sock, "show workers").splitlines()
               if l.startswith("worker.")]
    assert len(workers) == 2 and all(int(w[5]) > 0 for w in workers), workers

    # counted once each response is written (the log stage): a scrape right
    # after the client read the last one may come first
    wait_for(lambda: value(scrape(port)[0], "tyk_http_status", code="401", api="paid") == 3, 5,
             what="the last request counted")
    s, types = scrape(port)
    assert types["tyk_http_status"] == "counter" and types["tyk_latency"] == "histogram"
    assert types["tyk_http_status_per_path"] == "counter"
    assert types["tyk_http_status_per_key"] == "counter"
    assert value(s, "tyk_http_status", code="200", api="free") == 40
    assert value(s, "tyk_http_status", code="404", api="free") == 10
    assert value(s, "tyk_http_status", code="200", api="paid") == 6
    assert value(s, "tyk_http_status", code="401", api="paid") == 3
    # the normalised path, as the analytics record's Path
    assert value(s, "tyk_http_status_per_path", code="200", api="free", path="/users/{id}",
                 method="GET") == 40
    assert value(s, "tyk_http_status_per_path", code="404", api="free", path="/status/{id}",
                 method="GET") == 10
    assert value(s, "tyk_http_status_per_key", code="200", key=hash_key(token)) == 6
    assert sum(v for k, v in s.items() if k[0] == "tyk_http_status_per_key") == 6
    # Pump's buckets, cumulative, and a count per request
    assert value(s, "tyk_latency_count", type="total", api="free") == 50
    assert value(s, "tyk_latency_bucket", type="total", api="free", le="+Inf") == 50
    assert value(s, "tyk_latency_count", type="upstream", api="free") == 50
    assert value(s, "tyk_latency_count", type="gateway", api="free") == 50
    assert value(s, "tyk_latency_count", type="total", api="paid") == 9  # 401s too
    assert value(s, "tyk_latency_count", type="upstream", api="paid") == 6  # not the 401s
    les = [dict(k[1])["le"] for k in s if k[0] == "tyk_latency_bucket"
           and dict(k[1]) .get("api") == "free" and dict(k[1])["type"] == "total"]
    assert les == ["1", "2", "5", "7", "10", "15", "20", "25", "30", "40", "50", "60", "70", "80",
                   "90", "100", "200", "300", "400", "500", "1000", "2000", "5000", "10000",
                   "30000", "60000", "+Inf"]
    assert value(s, "turnpike_workers") == 2
    assert value(s, "turnpike_apis") == 2
    assert value(s, "turnpike_redis_up") == 1
    assert value(s, "turnpike_session_cache_misses_total") >= 1

    # an API reload: a new generation, the same counters
    assert "Success=1" in admin_cmd(sock, "reload")
    s2, _ = scrape(port)
    assert value(s2, "turnpike_reloads_total", result="ok") == 1
    assert value(s2, "turnpike_generation") == 2
    assert value(s2, "tyk_http_status", code="200", api="free") == 40
    # a tyk.conf change: new workers; the old ones' counts still count
    g.conf["turnpike"]["keepalive_requests"] = 500
    g.write_conf()
    assert "Success=1" in admin_cmd(sock, "reload")
    wait_for(lambda: not any(l.startswith("old ") for l in
                            admin_cmd(sock, "show workers").splitlines()), 15,
             what="old workers gone")
    assert g.get("/free/users/1").status == 200
    # counted once the response is written (the log stage): a scrape right
    # after the client read it may come first
    wait_for(lambda: value(scrape(port)[0], "tyk_http_status", code="200", api="free") == 41, 5,
             what="the 41st request counted")
    s3, _ = scrape(port)
    assert value(s3, "tyk_http_status", code="200", api="free") == 41
    assert value(s3, "turnpike_workers") == 2


def test_the_key_family_is_capped_with_10000_keys(make_gateway, upstream, make_redis, tmp_path):
    """10,000 distinct keys: at most metrics_max_series series, the rest in
    one overflow series, and every request counted."""
    red = make_redis()
    org = new_org()
    g, port, _ = metrics_gw(make_gateway, red, [token_api("k", "/k/", upstream.url("/"), org)],
                            tmp_path, workers=1, turnpike={"metrics_max_series": 500})
    tokens = [org + uid() for _ in range(10000)]
    rc = redislib.Redis(host=HOST, port=red.port)
    p = rc.pipeline(transaction=False)
    sess = json.dumps(tyk_session(["k"], org_id=org))
    for t in tokens:
        p.set("apikey-" + hash_key(t), sess)
    p.execute()
    with g.conn() as c:
        for t in tokens:
            assert c.request("GET", "/k/x", [("Authorization", t)]).status == 200
    wait_for(lambda: sum(v for k, v in scrape(port)[0].items()
                         if k[0] == "tyk_http_status_per_key") == 10000, 5,
             what="the last request counted")
    s, _ = scrape(port)
    per_key = {dict(k[1])["key"]: v for k, v in s.items() if k[0] == "tyk_http_status_per_key"}
    assert len(per_key) == 501, len(per_key)
    assert per_key["other"] == 9500
    assert sum(per_key.values()) == 10000
    assert value(s, "turnpike_metrics_series", family="tyk_http_status_per_key") == 500
    assert value(s, "turnpike_metrics_series_lost_total") == 0
    assert value(s, "tyk_http_status", code="200", api="k") == 10000


def test_turnpike_counters(make_gateway, upstream, make_redis, tmp_path):
    red = make_redis()
    dead = free_port()
    apis = [api_def("dead", "/dead/", "http://%s:%d/" % (HOST, dead)),
            api_def("lim", "/lim/", upstream.url("/"))]
    apis[1]["global_rate_limit"] = {"rate": 2, "per": 60}
    g, port, _ = metrics_gw(make_gateway, red, apis, tmp_path, workers=1,
                            enable_analytics=True)
    assert g.get("/dead/x").status == 500
    codes = [g.get("/lim/x").status for _ in range(4)]
    assert codes.count(429) == 2, codes
    wait_for(lambda: redislib.Redis(host=HOST, port=red.port).llen(
        "analytics-tyk-system-analytics") == 5, 5, what="5 records")
    s, _ = scrape(port)
    assert value(s, "turnpike_upstream_errors_total", kind="connect") == 1
    assert value(s, "turnpike_upstream_errors_total", kind="timeout") == 0
    assert value(s, "turnpike_rate_limited_total", api="lim") == 2
    assert value(s, "tyk_http_status", code="500", api="dead") == 1
    assert value(s, "tyk_http_status", code="429", api="lim") == 2
    assert value(s, "turnpike_analytics_records_total", result="recorded") == 5
    assert value(s, "turnpike_analytics_records_total", result="pushed") == 5
    assert value(s, "turnpike_analytics_buffered") == 0
    assert value(s, "turnpike_redis_commands_total") > 0
    assert value(s, "turnpike_connections") >= 0


def test_endpoint_only_on_its_port(make_gateway, upstream, make_redis, tmp_path):
    red = make_redis()
    g, port, _ = metrics_gw(make_gateway, red, [api_def("a", "/a/", upstream.url("/"))],
                            tmp_path, workers=1)
    assert g.get("/a/x").status == 200
    assert http_get(port, "/other")[0] == 404
    assert http_get(port, "/metrics", "POST")[0] == 405
    code, _, body = http_get(port, "/metrics", "HEAD")
    assert code == 200 and body == ""
    r = g.get("/metrics")
    assert r.status == 404 and b"tyk_http_status" not in r.body
    # a client that sends half a request and stops is dropped, the next one served
    s = socket.create_connection((HOST, port))
    s.sendall(b"GET /metr")
    assert http_get(port, "/metrics")[0] == 200
    s.close()


def test_off_by_default_and_from_the_environment(make_gateway, upstream, make_redis):
    red = make_redis()
    g = make_gateway(conf={"storage": {"type": "redis", "host": HOST, "port": red.port}},
                     apis=[api_def("a", "/a/", upstream.url("/"))], workers=1)
    assert g.get("/a/x").status == 200
    assert "Prometheus metrics on" not in g.log()
    port = free_port()
    g2 = make_gateway(conf={"storage": {"type": "redis", "host": HOST, "port": red.port}},
                      apis=[api_def("a", "/a/", upstream.url("/"))], workers=1,
                      env={"TYK_GW_TURNPIKE_METRICSPORT": str(port)})
    assert g2.get("/a/x").status == 200
    wait_for(lambda: value(scrape(port)[0], "tyk_http_status", code="200", api="a") == 1, 5,
             what="the request counted")
    s, _ = scrape(port)
    assert value(s, "tyk_http_status", code="200", api="a") == 1
    g2.stop()
    assert port_refuses(port)


def test_bad_metrics_settings_are_refused(make_gateway):
    for tp, want in (({"metrics_port": 70000}, "$.turnpike.metrics_port: expected 0"),
                     ({"metrics_port": "x"}, "$.turnpike.metrics_port"),
                     ({"metrics_max_series": 5000000}, "$.turnpike.metrics_max_series")):
        g = make_gateway(conf={"turnpike": tp}, start=False)
        r = run_turnpike(["-t", "--conf", str(g.conf_path)])
        assert r.returncode == 1, (tp, r.stderr)
        assert want in r.stderr, (tp, r.stderr)
    g = make_gateway(conf={}, start=False)
    g.conf["turnpike"] = {"metrics_port": g.conf["listen_port"]}
    g.write_conf()
    r = run_turnpike(["-t", "--conf", str(g.conf_path)])
    assert r.returncode == 1 and "must differ from listen_port" in r.stderr, r.stderr


def test_a_taken_metrics_port_fails_the_start(make_gateway, upstream, tmp_path):
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen(1)
    g = make_gateway(conf={"turnpike": {"metrics_port": busy.getsockname()[1]}},
                     apis=[api_def("a", "/a/", upstream.url("/"))], workers=1, start=False)
    g.conf["listen_address"] = HOST
    g.write_conf()
    from conftest import BIN
    import subprocess
    p = subprocess.run([BIN, "--conf", str(g.conf_path)], capture_output=True, text=True,
                       timeout=10)
    busy.close()
    assert p.returncode != 0
    assert "turnpike.metrics_port" in p.stderr, p.stderr


def test_tyk_health_answers_from_the_shared_counters(make_gateway, upstream, make_redis,
                                                     tmp_path):
    """GET /tyk/health?api_id= with health_check.enable_health_checks: Tyk's
    per-second rates over health_check_value_timeouts (TYK-COMPAT 9.3)."""
    from test_keys import ADMIN
    red = make_redis()
    org = new_org()
    keyed = token_api("h", "/h/", upstream.url("/"), org)
    keyed["global_rate_limit"] = {"rate": 20, "per": 60}
    g = make_gateway(conf={"secret": SECRET, "hash_keys": True,
                           "storage": {"type": "redis", "host": HOST, "port": red.port},
                           "health_check": {"enable_health_checks": True,
                                            "health_check_value_timeouts": 10}},
                     apis=[keyed, api_def("other", "/other/", upstream.url("/"))], workers=2)
    token = org + uid()
    redislib.Redis(host=HOST, port=red.port).set(
        "apikey-" + hash_key(token), json.dumps(tyk_session(["h"], org_id=org)))
    codes = [g.request("GET", "/h/x", [("Authorization", token)]).status for _ in range(25)]
    assert codes.count(200) == 20 and codes.count(429) == 5, codes
    for _ in range(10):
        assert g.get("/h/x").status == 401
    time.sleep(2.5)  # two samples later
    r = g.request("GET", "/tyk/health?api_id=h", ADMIN)
    assert r.status == 200, r
    body = r.json()
    assert list(body) == ["throttle_reqests_per_second", "quota_violations_per_second",
                          "key_failures_per_second", "average_upstream_latency",
                          "average_requests_per_second"]
    # over the seconds sampled so far (at most the 10 s window)
    secs = round(35 / body["average_requests_per_second"])
    assert 1 <= secs <= 10, body
    assert abs(body["throttle_reqests_per_second"] * secs - 5) < 1e-9, body
    assert abs(body["key_failures_per_second"] * secs - 10) < 1e-9, body
    assert body["quota_violations_per_second"] == 0
    assert 0 <= body["average_upstream_latency"] < 1000
    assert g.request("GET", "/tyk/health?api_id=other", ADMIN).json()[
        "average_requests_per_second"] == 0
    # Tyk's errors
    r = g.request("GET", "/tyk/health", ADMIN)
    assert (r.status, r.json()["message"]) == (400, "missing api_id parameter")
    r = g.request("GET", "/tyk/health?api_id=nope", ADMIN)
    assert (r.status, r.json()["message"]) == (404, "API ID not found")
    assert g.request("GET", "/tyk/health?api_id=h").status == 403  # the secret


def test_tyk_health_off_by_default(make_gateway, upstream):
    from test_keys import ADMIN
    g = make_gateway(conf={"secret": SECRET}, apis=[api_def("a", "/a/", upstream.url("/"))],
                     workers=1)
    r = g.request("GET", "/tyk/health?api_id=a", ADMIN)
    assert (r.status, r.json()["message"]) == (400, "Health checks are not enabled for this node")


def test_the_seed_monitoring_snippet_turns_metrics_on(make_gateway, upstream, make_redis):
    """The seed's "Monitoring" advice, `"analytics_config": {"type": "prometheus"}`,
    serves /metrics on 9090 (Pump's usual port) unless turnpike.metrics_port says otherwise."""
    red = make_redis()
    port = free_port()
    g = make_gateway(conf={"storage": {"type": "redis", "host": HOST, "port": red.port},
                           "enable_analytics": True, "analytics_config": {"type": "prometheus"},
                           "turnpike": {"metrics_port": port}},
                     apis=[api_def("a", "/a/", upstream.url("/"))], workers=1)
    assert g.get("/a/x").status == 200
    wait_for(lambda: value(scrape(port)[0], "tyk_http_status", code="200", api="a") == 1, 5,
             what="the request counted")
    r = run_turnpike(["--dump-config", "--conf", str(g.conf_path)])
    assert '"metrics_port":\t%d' % port in r.stdout
    del g.conf["turnpike"]["metrics_port"]
    g.write_conf()
    r = run_turnpike(["--dump-config", "--conf", str(g.conf_path)])
    assert '"metrics_port":\t9090' in r.stdout, r.stdout
    assert "analytics_config.type" not in r.stderr  # no "not implemented" warning
