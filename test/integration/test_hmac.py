"""HMAC request signing (enable_signature_checking; TYK-COMPAT 18.3, 18.4):
the Signature header, the signing string ((request-target), date or
X-Aux-Date, other headers), HMAC-SHA1/256/384/512 with the key's
hmac_string, URL-escaped base64 compared (lower-case escapes too), the
Date checked against hmac_allowed_clock_skew; every failure Tyk's 400."""
import base64
import hashlib
import hmac
import time
import urllib.parse
import uuid
from email.utils import formatdate

import pytest

from conftest import api_def, session_redis
from test_access import ORG, conf, put_session, tyk_error
from tykkeys import generate_token, tyk_session

BAD = "Authorization field missing, malformed or invalid"
DIGESTS = {"hmac-sha256": hashlib.sha256, "hmac-sha384": hashlib.sha384,
           "hmac-sha512": hashlib.sha512}


def hmac_api(api_id, target, **kw):
    d = api_def(api_id, "/%s/" % api_id, target, keyless=False)
    d["enable_signature_checking"] = True
    d["hmac_allowed_clock_skew"] = 5000
    d.update(kw)
    return d


def http_date(offset=0.0):
    return formatdate(time.time() + offset, usegmt=True)


def signature(secret, method, path, headers, names, alg):
    lines = []
    for n in names:
        if n == "(request-target)":
            lines.append("(request-target): %s %s" % (method.lower(), path))
        else:
            h = dict((k.lower(), v) for k, v in headers)
            if n == "date" and "x-aux-date" in h:  # Tyk signs X-Aux-Date in its place
                n = "x-aux-date"
            lines.append("%s: %s" % (n, h[n].strip()))
    mac = hmac.new(secret.encode(), "\n".join(lines).encode(),
                   DIGESTS.get(alg, hashlib.sha1)).digest()
    return urllib.parse.quote_plus(base64.b64encode(mac).decode(), safe="")


def signed(g, path, key, secret, alg="hmac-sha256", names=("(request-target)", "date"),
           date=None, extra=(), sig=None, header_names=True, method="GET"):
    headers = [("Date", date if date is not None else http_date())] + list(extra)
    s = sig if sig is not None else signature(secret, method, path, headers, names, alg)
    value = 'Signature keyId="%s",algorithm="%s",' % (key, alg)
    if header_names:
        value += 'headers="%s",' % " ".join(names)
    value += 'signature="%s"' % s
    return g.request(method, path, headers + [("Authorization", value)])


def bad(r):
    assert (r.status, r.body) == (400, tyk_error(BAD)), r


@pytest.fixture
def gw(make_gateway, upstream):
    apis = [hmac_api("h", upstream.url("/")),
            hmac_api("only", upstream.url("/"), hmac_allowed_algorithms=["hmac-sha512"]),
            hmac_api("noskew", upstream.url("/"), hmac_allowed_clock_skew=0)]
    g = make_gateway(conf=conf(), apis=apis)
    rc = session_redis().client()
    key = generate_token(ORG, uuid.uuid4().hex)
    put_session(rc, key, tyk_session(["h", "only", "noskew"], org_id=ORG, hmac_enabled=True,
                                     hmac_string="the-hmac-secret"))
    off = generate_token(ORG, uuid.uuid4().hex)
    put_session(rc, off, tyk_session(["h"], org_id=ORG, hmac_enabled=False,
                                     hmac_string="the-hmac-secret"))
    rc.close()
    return g, key, off


def test_valid_signatures(gw):
    g, key, _ = gw
    for alg in ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha1", "something-else"):
        r = signed(g, "/h/get", key, "the-hmac-secret", alg=alg)
        assert r.status == 200, (alg, r)
    # no headers field: date alone is signed
    assert signed(g, "/h/get", key, "the-hmac-secret", names=("date",),
                  header_names=False).status == 200
    # other headers, trimmed; X-Aux-Date is signed in place of Date
    extra = [("X-Custom", "  padded value  "), ("X-Aux-Date", http_date())]
    r = signed(g, "/h/get", key, "the-hmac-secret", names=("date", "x-custom"), extra=extra)
    assert r.status == 200, r


def test_lower_case_escapes(gw):
    """A signature whose %2B / %2F / %3D escapes are lower-case verifies."""
    g, key, _ = gw
    for _ in range(50):  # find a date whose signature has an escape with a letter
        date = http_date()
        sig = signature("the-hmac-secret", "GET", "/h/get", [("Date", date)],
                        ("(request-target)", "date"), "hmac-sha256")
        if any(e in sig for e in ("%2B", "%2F", "%3D")):
            break
        time.sleep(0.02)
    else:
        pytest.fail("no signature with an escape in 50 tries")
    low = sig.replace("%2B", "%2b").replace("%2F", "%2f").replace("%3D", "%3d")
    assert signed(g, "/h/get", key, "the-hmac-secret", date=date, sig=low).status == 200


def test_bad_signatures_keys_and_dates(gw):
    g, key, off = gw
    bad(signed(g, "/h/get", key, "not-the-secret"))
    bad(signed(g, "/h/get", "no-such-key-" + uuid.uuid4().hex, "the-hmac-secret"))
    bad(signed(g, "/h/get", off, "the-hmac-secret"))  # hmac_enabled false
    bad(g.request("GET", "/h/get"))
    bad(g.request("GET", "/h/get", [("Authorization", 'Signature keyId="k",nonsense="1"')]))
    bad(g.request("GET", "/h/get", [("Authorization", 'Signature keyId="unterminated')]))
    # the signed path is the request's: a signature for another path fails
    headers = [("Date", http_date())]
    s = signature("the-hmac-secret", "GET", "/h/other", headers, ("(request-target)", "date"),
                  "hmac-sha256")
    bad(signed(g, "/h/get", key, "the-hmac-secret", sig=s))
    # dates: stale, in the future, unparsable, missing; skew 0 checks only the format
    bad(signed(g, "/h/get", key, "the-hmac-secret", date=http_date(-60)))
    bad(signed(g, "/h/get", key, "the-hmac-secret", date=http_date(+60)))
    bad(signed(g, "/h/get", key, "the-hmac-secret", date="yesterday"))
    assert signed(g, "/h/get", key, "the-hmac-secret", date=http_date(-2)).status == 200
    assert signed(g, "/noskew/get", key, "the-hmac-secret", date=http_date(-86400)).status == 200
    bad(signed(g, "/noskew/get", key, "the-hmac-secret", date="2026-12-01T10:00:00Z"))
    # numeric zone form
    d = time.strftime("%a, %d %b %Y %H:%M:%S +00", time.gmtime())
    assert signed(g, "/h/get", key, "the-hmac-secret", date=d).status == 200
    # algorithms the API does not allow
    bad(signed(g, "/only/get", key, "the-hmac-secret", alg="hmac-sha256"))
    assert signed(g, "/only/get", key, "the-hmac-secret", alg="hmac-sha512").status == 200
    # rsa-* needs Tyk's certificate store
    r = signed(g, "/h/get", key, "the-hmac-secret", alg="rsa-sha256", sig="AAAA")
    assert (r.status, r.body) == (500, tyk_error("Certificate not found")), r
