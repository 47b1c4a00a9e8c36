"""Analytics records (issue 13) as Tyk Pump reads them: with
`enable_analytics`, one msgpack AnalyticsRecord per proxied or refused API
request on the Redis list analytics-tyk-system-analytics, pushed in batches
by each worker off the request path.

The decoder below is shaped as tyk-pump's: msgpack maps keyed by the Go
field names of analytics.AnalyticsRecord (pump master / 1.17), time.Time
as [seconds, nanoseconds]; every field is checked for presence and type."""
import base64
import json
import signal
import time

import msgpack
import redis as redislib

from conftest import HOST, api_def, wait_for
from test_control import admin as admin_cmd
from test_keys import SECRET, access, create_key, new_org, token_api, uid
from tykkeys import hash_key

LIST = "analytics-tyk-system-analytics"

# tyk-pump analytics.AnalyticsRecord, in struct order, with the type each
# decodes into (TYK-COMPAT 15.2)
STR, INT, BOOL, TIME, MAP, LIST_ = str, int, bool, "time", dict, list
PUMP_FIELDS = [
    ("Method", STR), ("Host", STR), ("Path", STR), ("RawPath", STR), ("ContentLength", INT),
    ("UserAgent", STR), ("Day", INT), ("Month", INT), ("Year", INT), ("Hour", INT),
    ("ResponseCode", INT), ("APIKey", STR), ("TimeStamp", TIME), ("APIVersion", STR),
    ("APIName", STR), ("APIID", STR), ("OrgID", STR), ("OauthID", STR), ("RequestTime", INT),
    ("RawRequest", STR), ("RawResponse", STR), ("IPAddress", STR), ("Geo", MAP),
    ("Network", MAP), ("Latency", MAP), ("Tags", LIST_), ("Alias", STR), ("TrackPath", BOOL),
    ("ExpireAt", TIME), ("ApiSchema", STR), ("OriginalPath", STR), ("ListenPath", STR),
    ("GraphQLStats", MAP), ("MCPStats", MAP), ("CollectionName", STR),
]


def pump_decode(raw):
    """What tyk-pump's msgpack serializer does with one list element:
    a map by Go field name; time.Time must be a 2-array."""
    rec = msgpack.unpackb(raw, raw=False)
    assert isinstance(rec, dict)
    assert list(rec.keys()) == [f for f, _ in PUMP_FIELDS], list(rec.keys())
    for f, t in PUMP_FIELDS:
        v = rec[f]
        if t == TIME:
            assert isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v), (f, v)
            rec[f] = v[0] + v[1] / 1e9
        else:
            assert isinstance(v, t) and not (t is INT and isinstance(v, bool)), (f, v)
    assert set(rec["Latency"]) == {"Total", "Upstream", "Gateway"}
    assert rec["Geo"] == {"Country": {"ISOCode": ""}, "City": {"GeoNameID": 0, "Names": None},
                          "Location": {"Latitude": 0.0, "Longitude": 0.0, "TimeZone": ""}}
    assert rec["Network"] == {"OpenConnections": 0, "ClosedConnection": 0, "BytesIn": 0,
                              "BytesOut": 0}
    assert rec["GraphQLStats"]["RootFields"] is None and rec["GraphQLStats"]["IsGraphQL"] is False
    assert rec["MCPStats"]["IsMCP"] is False
    return rec


def records(red, n, key=LIST, timeout=5):
    """Waits for <n> records on <key> and returns them decoded (and removed)."""
    wait_for(lambda: red.llen(key) >= n, timeout, step=0.05, what="%d records on %s" % (n, key))
    time.sleep(0.3)  # nothing more than <n> arrives late
    raws = red.lrange(key, 0, -1)
    red.delete(key)
    assert len(raws) == n, [msgpack.unpackb(r)["Path"] for r in raws]
    return [pump_decode(r) for r in raws]


def rconn(r):
    return redislib.Redis(host=HOST, port=r.port)


def analytics_gw(make_gateway, red, apis, workers=2, **conf):
    c = {"secret": SECRET, "hash_keys": True, "enable_analytics": True,
         "storage": {"type": "redis", "host": HOST, "port": red.port}}
    c.update(conf)
    return make_gateway(conf=c, apis=apis, workers=workers)


def test_keyless_and_keyed_records_carry_every_field(make_gateway, upstream, make_redis):
    red = make_redis()
    org = new_org()
    keyless = api_def("free", "/free/", upstream.url("/"))
    keyless.update({"org_id": org, "name": "Free API", "tags": ["public", "edge"]})
    keyed = token_api("paid", "/paid/", upstream.url("/"), org, name="Paid API", tags=["billing"])
    g = analytics_gw(make_gateway, red, [keyless, keyed])
    r = g.request("POST", "/free/echo?x=1", [("User-Agent", "pump-test/1.0"),
                                             ("X-Real-IP", "203.0.113.7")], b"hello")
    assert r.status == 200
    key = create_key(g, org, access("paid"), alias="the-alias", tags=["gold"])["key"]
    assert g.request("GET", "/paid/status/201", [("Authorization", key)]).status == 201
    before = time.time()
    recs = sorted(records(rconn(red), 2), key=lambda x: x["APIID"])
    free, paid = recs

    assert free["Method"] == "POST"
    assert free["Host"] == "%s:%d" % (HOST, upstream.port)
    assert free["Path"] == "/echo" and free["RawPath"] == "/echo"  # strip_listen_path
    assert free["ContentLength"] == 5
    assert free["UserAgent"] == "pump-test/1.0"
    assert free["ResponseCode"] == 200
    assert free["APIKey"] == ""
    assert free["APIVersion"] == "Non Versioned"
    assert (free["APIName"], free["APIID"], free["OrgID"]) == ("Free API", "free", org)
    assert free["OauthID"] == "" and free["Alias"] == ""
    assert free["IPAddress"] == "203.0.113.7"
    assert free["Tags"] == ["public", "edge", "org-" + org, "api-free"]
    assert free["ListenPath"] == "/free/"
    assert free["RawRequest"] == "" and free["RawResponse"] == ""
    assert free["TrackPath"] is False and free["CollectionName"] == ""
    lt = time.localtime(free["TimeStamp"])
    assert (free["Year"], free["Month"], free["Day"], free["Hour"]) == \
        (lt.tm_year, lt.tm_mon, lt.tm_mday, lt.tm_hour)
    assert abs(free["TimeStamp"] - before) < 10
    # no expire_analytics_after: 100 years on
    assert abs(free["ExpireAt"] - free["TimeStamp"] - 36500 * 86400) < 1
    lat = free["Latency"]
    assert free["RequestTime"] == lat["Total"] and lat["Total"] >= lat["Upstream"] >= 0
    assert lat["Gateway"] == lat["Total"] - lat["Upstream"]

    h = hash_key(key, True)
    assert paid["ResponseCode"] == 201
    assert paid["APIKey"] == h
    assert paid["Alias"] == "the-alias"
    assert paid["Path"] == "/status/201"  # normalise_urls is off
    assert paid["Tags"] == ["gold", "billing", "key-" + h, "org-" + org, "api-paid"]
    assert paid["IPAddress"] == HOST and paid["ContentLength"] == 0
    assert paid["APIVersion"] == "Default"


def test_refused_requests_are_recorded_and_others_are_not(make_gateway, upstream, make_redis):
    """401, 403 (quota), 429 and a 5xx from the upstream each give a record;
    /hello, /tyk/..., unknown paths and mock replies give none."""
    red = make_redis()
    org = new_org()
    keyed = token_api("k", "/k/", upstream.url("/"), org)
    keyed["version_data"]["versions"]["Default"]["use_extended_paths"] = True
    keyed["version_data"]["versions"]["Default"]["extended_paths"] = {
        "ignored": [{"path": "/mock", "method_actions": {"GET": {
            "action": "reply", "code": 200, "data": "mocked", "headers": {}}}}]}
    g = analytics_gw(make_gateway, red, [keyed], workers=1)
    r = g.get("/k/mock")
    assert r.status == 200 and r.body == b"mocked"  # VersionCheck's reply: no record
    assert g.get("/hello").status == 200
    assert g.get("/nowhere").status == 404
    assert g.request("GET", "/tyk/apis", [("X-Tyk-Authorization", SECRET)]).status == 200
    assert g.get("/k/x").status == 401
    key = create_key(g, org, access("k"), quota_max=1, quota_renewal_rate=3600)["key"]
    assert g.request("GET", "/k/status/503", [("Authorization", key)]).status == 503
    assert g.request("GET", "/k/status/200", [("Authorization", key)]).status == 403
    recs = records(rconn(red), 3)
    assert [x["ResponseCode"] for x in recs] == [401, 503, 403]
    h = hash_key(key, True)
    assert [x["APIKey"] for x in recs] == ["", h, h]
    assert recs[1]["Latency"]["Upstream"] <= recs[1]["Latency"]["Total"]
    assert recs[2]["Latency"]["Upstream"] == 0  # refused before the upstream

    g.add_api(token_api("o", "/o/", upstream.url("/"), org))
    assert admin_reload(g)
    key2 = create_key(g, org, access("o"), rate=1, per=60)["key"]
    assert g.request("GET", "/o/status/502", [("Authorization", key2)]).status == 502
    assert g.request("GET", "/o/x", [("Authorization", key2)]).status == 429
    recs = records(rconn(red), 2)
    assert [x["ResponseCode"] for x in recs] == [502, 429]
    assert [x["APIID"] for x in recs] == ["o", "o"]


def admin_reload(g):
    r = g.request("GET", "/tyk/reload?block=true", [("X-Tyk-Authorization", SECRET)])
    return r.status == 200


def test_do_not_track_and_ignored_ips(make_gateway, upstream, make_redis):
    red = make_redis()
    quiet = api_def("quiet", "/quiet/", upstream.url("/"))
    quiet["do_not_track"] = True
    some = api_def("some", "/some/", upstream.url("/"))
    some["version_data"] = {"not_versioned": True, "versions": {"Default": {
        "name": "Default", "use_extended_paths": True,
        "extended_paths": {"do_not_track_endpoints": [{"path": "/health", "method": "GET"}]}}}}
    g = analytics_gw(make_gateway, red, [quiet, some],
                     analytics_config={"ignored_ips": ["198.51.100.9"]})
    assert g.get("/quiet/x").status == 200
    assert g.get("/some/health").status == 200
    assert g.request("POST", "/some/health").status == 200  # another method: recorded
    assert g.request("GET", "/some/y", [("X-Forwarded-For", "198.51.100.9, 10.0.0.1")]).status == 200
    assert g.request("GET", "/some/z", [("X-Forwarded-For", "198.51.100.8")]).status == 200
    recs = sorted(records(rconn(red), 2), key=lambda x: x["Path"])
    assert [(x["Method"], x["Path"], x["IPAddress"]) for x in recs] == [
        ("POST", "/health", HOST), ("GET", "/z", "198.51.100.8")]


def test_track_endpoints_name_the_path(make_gateway, upstream, make_redis):
    """extended_paths.track_endpoints: the record's Path is the entry's path
    and TrackPath is true (Tyk's TrackEndpointMiddleware); others are
    recorded with their own path and TrackPath false."""
    red = make_redis()
    d = api_def("tr", "/tr/", upstream.url("/"))
    d["version_data"] = {"not_versioned": True, "versions": {"Default": {
        "name": "Default", "use_extended_paths": True,
        "extended_paths": {"track_endpoints": [{"path": "/users/{id}", "method": "GET"}]}}}}
    g = analytics_gw(make_gateway, red, [d])
    assert g.get("/tr/users/42").status == 200
    assert g.get("/tr/other").status == 200
    recs = sorted(records(rconn(red), 2), key=lambda x: x["RawPath"])
    assert [(x["Path"], x["RawPath"], x["TrackPath"]) for x in recs] == [
        ("/other", "/other", False), ("/users/{id}", "/users/42", True)]


def test_seed_conf_normalises_paths(make_gateway, upstream, make_redis, tmp_path):
    """The seed's analytics_config (normalise_urls with uuids and numbers,
    detailed recording) as written there."""
    from test_config import SEED_CONF
    seed = json.loads(SEED_CONF.read_text())
    red = make_redis()
    c = {"enable_analytics": seed["enable_analytics"], "analytics_config": seed["analytics_config"]}
    g = analytics_gw(make_gateway, red, [api_def("n", "/n/", upstream.url("/"))], **c)
    for p in ("/n/users/42/orders/7", "/n/items/0f8fad5b-d9cb-469f-a165-70867728950e",
              "/n/v2/123abc"):
        assert g.get(p).status == 200
    recs = records(rconn(red), 3)
    assert sorted(x["Path"] for x in recs) == ["/items/{uuid}", "/users/{id}/orders/{id}",
                                              "/v2/{id}abc"]
    assert sorted(x["RawPath"] for x in recs) == [
        "/items/0f8fad5b-d9cb-469f-a165-70867728950e", "/users/42/orders/7", "/v2/123abc"]


def test_seed_conf_records_the_wire_bytes(make_gateway, upstream, make_redis):
    """The seed's enable_detailed_recording: RawRequest is the request as
    the upstream got it (listen path stripped, body), RawResponse the
    response as the client got it, both base64 (TYK-COMPAT 15.4)."""
    from test_config import SEED_CONF
    seed = json.loads(SEED_CONF.read_text())
    red = make_redis()
    g = analytics_gw(make_gateway, red, [api_def("w", "/w/", upstream.url("/"))],
                     enable_analytics=True, analytics_config=seed["analytics_config"])
    r = g.request("POST", "/w/echo?a=1", [("X-Test", "yes")], b"hello body")
    assert r.status == 200
    rec, = records(rconn(red), 1)
    req = base64.b64decode(rec["RawRequest"], validate=True)
    head, _, body = req.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /echo?a=1 HTTP/1.1\r\n"), head
    assert b"\r\nX-Test: yes" in head and body == b"hello body"
    resp = base64.b64decode(rec["RawResponse"], validate=True)
    rhead, _, rbody = resp.partition(b"\r\n\r\n")
    assert rhead.startswith(b"HTTP/1.1 200 OK\r\n") and rbody == r.body
    assert json.loads(rbody)["body_len"] == 10


def test_detail_is_bounded_and_per_api(make_gateway, upstream, make_redis):
    """A body beyond turnpike.analytics_detail_max is cut there; the API's
    own enable_detailed_recording turns detail on for it alone; a refused
    request records the client's request and the gateway's answer."""
    red = make_redis()
    org = new_org()
    big = api_def("big", "/big/", upstream.url("/"))
    big["enable_detailed_recording"] = True
    plain = api_def("plain", "/plain/", upstream.url("/"))
    keyed = token_api("kd", "/kd/", upstream.url("/"), org, enable_detailed_recording=True)
    g = analytics_gw(make_gateway, red, [big, plain, keyed], workers=1,
                     turnpike={"analytics_detail_max": 1000})
    assert g.request("POST", "/big/echo", [], b"x" * 5000).status == 200
    assert g.get("/big/bytes/4000").status == 200
    assert g.get("/plain/x").status == 200
    assert g.get("/kd/x").status == 401
    recs = {(x["APIID"], x["Method"], x["ResponseCode"]): x for x in records(rconn(red), 4)}
    post = recs[("big", "POST", 200)]
    raw = base64.b64decode(post["RawRequest"])
    assert len(raw) == 1000 and raw.startswith(b"POST /echo HTTP/1.1\r\n")
    assert raw.endswith(b"x" * 100)
    got = base64.b64decode(recs[("big", "GET", 200)]["RawResponse"])
    assert len(got) == 1000 and got.startswith(b"HTTP/1.1 200 OK\r\n")
    plain_rec = recs[("plain", "GET", 200)]
    assert plain_rec["RawRequest"] == "" and plain_rec["RawResponse"] == ""
    refused = recs[("kd", "GET", 401)]
    assert base64.b64decode(refused["RawRequest"]).startswith(b"GET /kd/x HTTP/1.1\r\n")
    resp = base64.b64decode(refused["RawResponse"])
    assert resp.startswith(b"HTTP/1.1 401 ") and b"Authorization field missing" in resp


def test_a_session_can_ask_for_detail(make_gateway, upstream, make_redis):
    red = make_redis()
    org = new_org()
    g = analytics_gw(make_gateway, red, [token_api("sd", "/sd/", upstream.url("/"), org)],
                     workers=1)
    on = create_key(g, org, access("sd"), enable_detailed_recording=True)["key"]
    off = create_key(g, org, access("sd"))["key"]
    assert g.request("GET", "/sd/x", [("Authorization", on)]).status == 200
    assert g.request("GET", "/sd/x", [("Authorization", off)]).status == 200
    recs = records(rconn(red), 2)
    detail = [x for x in recs if x["RawRequest"]]
    assert len(detail) == 1 and detail[0]["APIKey"] == hash_key(on, True)
    assert base64.b64decode(detail[0]["RawResponse"]).startswith(b"HTTP/1.1 200 OK")


def test_multiple_keys_and_list_ttl(make_gateway, upstream, make_redis):
    red = make_redis()
    g = analytics_gw(make_gateway, red, [api_def("m", "/m/", upstream.url("/"))], workers=1,
                     analytics_config={"enable_multiple_analytics_keys": True,
                                       "storage_expiration_time": 120})
    for _ in range(30):
        assert g.get("/m/x").status == 200
    rc = rconn(red)
    names = ["%s_%d" % (LIST, i) for i in range(10)]
    wait_for(lambda: sum(rc.llen(k) for k in names) == 30, 5, step=0.05, what="30 records")
    assert rc.llen(LIST) == 0
    used = [k for k in names if rc.llen(k) > 0]
    assert used and all(0 < rc.ttl(k) <= 120 for k in used), [(k, rc.ttl(k)) for k in used]


def test_redis_away_drops_are_counted_and_pushing_resumes(make_gateway, upstream, make_redis,
                                                         tmp_path):
    """Redis stopped: no request fails, the worker keeps records_buffer_size
    records and counts the rest as dropped; Redis back: they are pushed."""
    red = make_redis()
    sock = tmp_path / "admin.sock"
    apis = [api_def("d", "/d/", upstream.url("/"))]
    g = analytics_gw(make_gateway, red, apis, workers=1,
                     analytics_config={"records_buffer_size": 1000},
                     turnpike={"admin_socket": str(sock), "workers": 1})
    assert g.get("/d/x").status == 200
    records(rconn(red), 1)
    red.stop()
    with g.conn() as c:
        for i in range(1500):
            assert c.request("GET", "/d/x").status == 200
    stat = [l for l in admin_cmd(sock, "show stat").splitlines() if l.startswith("# analytics")]
    assert stat == ["# analytics: recorded 1501, pushed 1, dropped 500, buffered 1000"], stat
    red.start()
    got = records(rconn(red), 1000, timeout=15)
    assert all(x["APIID"] == "d" for x in got)
    wait_for(lambda: "pushed 1001, dropped 500, buffered 0" in admin_cmd(sock, "show stat"), 5,
             what="counters after the push")
    assert "records were dropped while Redis was away" in g.log()


def test_sigterm_pushes_what_is_buffered(make_gateway, upstream, make_redis):
    red = make_redis()
    g = analytics_gw(make_gateway, red, [api_def("t", "/t/", upstream.url("/"))], workers=1)
    with g.conn() as c:
        for _ in range(50):
            assert c.request("GET", "/t/x").status == 200
    g.signal(signal.SIGTERM)  # the workers drain, push what they hold, exit
    g.wait_exit(15)
    assert rconn(red).llen(LIST) == 50


def test_bad_analytics_settings_are_refused(make_gateway, upstream, make_redis):
    from conftest import run_turnpike
    g = make_gateway(conf={"enable_analytics": True,
                           "analytics_config": {"serializer_type": "protobuf"}}, start=False)
    r = run_turnpike(["-t", "--conf", str(g.conf_path)])
    assert r.returncode == 1
    assert "$.analytics_config.serializer_type" in r.stderr and "not supported" in r.stderr
