"""Tyk's key names and hashes, written from TYK-COMPAT 4.2/4.3 and Tyk's
source (internal/crypto, storage.HashStr), independently of Turnpike's C
code, so that tests can put sessions into Redis exactly where Tyk would and
check where Turnpike put them.

One correction to TYK-COMPAT 4.3, checked against Tyk's Go code: Tyk's
"murmur32" is the running state of MurmurHash3 x86_32 after the whole
4-byte blocks (Tyk pins a fork of spaolacci/murmur3 whose Sum32 skips the
tail, the length and the finaliser)."""
import base64
import hashlib
import json
import struct
import uuid

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def _rotl64(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def _rotl32(x, r):
    return ((x << r) | (x >> (32 - r))) & M32


def _fmix64(k):
    k ^= k >> 33
    k = (k * 0xff51afd7ed558ccd) & M64
    k ^= k >> 33
    k = (k * 0xc4ceb9fe1a85ec53) & M64
    k ^= k >> 33
    return k


def murmur3_x64_128(data, seed=0):
    """(h1, h2) of MurmurHash3 x64_128, blocks read little-endian."""
    c1, c2 = 0x87c37b91114253d5, 0x4cf5ad432745937f
    h1 = h2 = seed
    n = len(data)
    nblocks = n // 16
    for i in range(nblocks):
        k1, k2 = struct.unpack_from("<QQ", data, i * 16)
        k1 = (k1 * c1) & M64
        k1 = _rotl64(k1, 31)
        k1 = (k1 * c2) & M64
        h1 ^= k1
        h1 = _rotl64(h1, 27)
        h1 = (h1 + h2) & M64
        h1 = (h1 * 5 + 0x52dce729) & M64
        k2 = (k2 * c2) & M64
        k2 = _rotl64(k2, 33)
        k2 = (k2 * c1) & M64
        h2 ^= k2
        h2 = _rotl64(h2, 31)
        h2 = (h2 + h1) & M64
        h2 = (h2 * 5 + 0x38495ab5) & M64
    tail = data[nblocks * 16:]
    k1 = k2 = 0
    for i in range(len(tail) - 1, 7, -1):
        k2 ^= tail[i] << ((i - 8) * 8)
    if len(tail) > 8:
        k2 = (k2 * c2) & M64
        k2 = _rotl64(k2, 33)
        k2 = (k2 * c1) & M64
        h2 ^= k2
    for i in range(min(len(tail), 8) - 1, -1, -1):
        k1 ^= tail[i] << (i * 8)
    if len(tail) > 0:
        k1 = (k1 * c1) & M64
        k1 = _rotl64(k1, 31)
        k1 = (k1 * c2) & M64
        h1 ^= k1
    h1 ^= n
    h2 ^= n
    h1 = (h1 + h2) & M64
    h2 = (h2 + h1) & M64
    h1 = _fmix64(h1)
    h2 = _fmix64(h2)
    h1 = (h1 + h2) & M64
    h2 = (h2 + h1) & M64
    return h1, h2


def tyk_murmur32(data):
    """Tyk's murmur32: the x86_32 state after the whole 4-byte blocks."""
    c1, c2 = 0xcc9e2d51, 0x1b873593
    h = 0
    for i in range(len(data) // 4):
        k, = struct.unpack_from("<I", data, i * 4)
        k = (k * c1) & M32
        k = _rotl32(k, 15)
        k = (k * c2) & M32
        h ^= k
        h = _rotl32(h, 13)
        h = (h * 5 + 0xe6546b64) & M32
    return h


def hash_hex(alg, s):
    data = s.encode()
    if alg == "sha256":
        return hashlib.sha256(data).hexdigest()
    if alg == "murmur64":
        return "%016x" % murmur3_x64_128(data)[0]
    if alg == "murmur128":
        h1, h2 = murmur3_x64_128(data)
        return "%016x%016x" % (h1, h2)
    return "%08x" % tyk_murmur32(data)


def token_alg(token):
    """The "h" of a base64-JSON key, or None."""
    if not token.startswith("ey"):
        return None
    try:
        return json.loads(base64.b64decode(token, validate=True)).get("h")
    except Exception:  # noqa: BLE001
        return None


def hash_key(token, hash_keys=True):
    """storage.HashKey: the suffix of apikey-<...>."""
    if not hash_keys:
        return token
    return hash_hex(token_alg(token) or "murmur32", token)


def generate_token(org, key_id="", alg=""):
    """generateToken: org + id, or base64 of {"org","id","h"} with an algorithm."""
    if org and key_id.startswith(org):
        key_id = key_id[len(org):]
    if not key_id:
        key_id = uuid.uuid4().hex
    if not alg:
        return org + key_id
    if alg not in ("murmur32", "murmur64", "murmur128", "sha256"):
        alg = "murmur64"
    raw = '{"org":"%s","id":"%s","h":"%s"}' % (org, key_id, alg)
    return base64.b64encode(raw.encode()).decode()


def tyk_session(access, full=True, **fields):
    """A SessionState as Tyk 5.8 writes it (full=True) or 5.13 (omit zeros)."""
    s = {
        "last_check": 0, "allowance": 0, "rate": 0, "per": 0, "throttle_interval": 0,
        "throttle_retry_limit": 0, "max_query_depth": 0, "date_created": "2026-01-02T03:04:05.123456789Z",
        "expires": 0, "quota_max": -1, "quota_renews": 0, "quota_remaining": 0, "quota_renewal_rate": 0,
        "access_rights": {a: {"api_name": a, "api_id": a, "versions": ["Default"], "allowed_urls": None,
                              "restricted_types": None, "allowed_types": None,
                              "limit": {"rate": 0, "per": 0, "throttle_interval": 0, "throttle_retry_limit": 0,
                                        "max_query_depth": 0, "quota_max": 0, "quota_renews": 0,
                                        "quota_remaining": 0, "quota_renewal_rate": 0},
                              "field_access_rights": None, "disable_introspection": False,
                              "allowance_scope": ""} for a in access},
        "org_id": "", "oauth_client_id": "", "oauth_keys": None, "certificate": "",
        "basic_auth_data": {"password": "", "hash_type": ""}, "jwt_data": {"secret": ""},
        "hmac_enabled": False, "enable_http_signature_validation": False, "hmac_string": "",
        "rsa_certificate_id": "", "is_inactive": False, "apply_policy_id": "", "apply_policies": None,
        "data_expires": 0, "monitor": {"trigger_limits": None}, "enable_detail_recording": False,
        "enable_detailed_recording": False, "meta_data": None, "tags": None, "alias": "",
        "last_updated": "1767323045", "id_extractor_deadline": 0, "session_lifetime": 0, "smoothing": None,
    }
    s.update(fields)
    if not full:
        s = _omit_zero(s)
    return s


def _omit_zero(v):
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            x = _omit_zero(x)
            if x in (0, "", False, None, {}, []) and not (k == "quota_max" and x == -1):
                if k == "versions":
                    out[k] = x
                continue
            out[k] = x
        return out
    return v
