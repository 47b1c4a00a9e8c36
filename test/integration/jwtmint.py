"""JSON Web Tokens made by the tests, independently of the gateway: HMAC
with python's hmac, RSA (PKCS#1 v1.5 and PSS) and ECDSA with the openssl
command line, keys made with openssl genpkey."""
import base64
import hashlib
import hmac
import json
import subprocess

DIGEST = {"256": "sha256", "384": "sha384", "512": "sha512"}
CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
EC_SIZE = {"ES256": 32, "ES384": 48, "ES512": 66}


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Keypair:
    """An RSA or EC key pair in files under <d>."""

    def __init__(self, d, name, kind="rsa", bits=2048, curve="P-256"):
        self.priv = d / ("%s.key" % name)
        self.pub = d / ("%s.pub" % name)
        if kind == "rsa":
            args = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % bits]
        else:
            args = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:%s" % curve]
        subprocess.run(["openssl", "genpkey"] + args + ["-out", str(self.priv)], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", str(self.priv), "-pubout", "-out", str(self.pub)],
                       check=True, capture_output=True)

    def pem(self):
        return self.pub.read_bytes()

    def cert(self, d):
        """A self-signed certificate of this key (PEM)."""
        out = d / (self.priv.stem + ".crt")
        subprocess.run(["openssl", "req", "-x509", "-new", "-key", str(self.priv), "-subj",
                        "/CN=jwt-test", "-days", "2", "-out", str(out)], check=True,
                       capture_output=True)
        return out.read_bytes()


def _der_to_raw(der, size):
    """An ECDSA DER signature (SEQUENCE of two INTEGERs) as r || s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7f)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\0")
        out += v.rjust(size, b"\0")
        i += 2 + n
    return out


def sign(alg, claims, key=None, header=None, secret=None):
    """A compact JWT of <claims> signed with <alg>: <secret> (bytes) for
    HS*, a Keypair for RS*/PS*/ES*, nothing for "none"."""
    h = {"alg": alg, "typ": "JWT"}
    h.update(header or {})
    signing = (b64url(json.dumps(h).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    if alg == "none":
        return signing.decode() + "."
    dg = DIGEST[alg[2:]]
    if alg.startswith("HS"):
        sig = hmac.new(secret, signing, getattr(hashlib, dg)).digest()
    else:
        cmd = ["openssl", "dgst", "-" + dg, "-sign", str(key.priv)]
        if alg.startswith("PS"):
            cmd += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"]
        sig = subprocess.run(cmd, input=signing, check=True, capture_output=True).stdout
        if alg.startswith("ES"):
            sig = _der_to_raw(sig, EC_SIZE[alg])
    return signing.decode() + "." + b64url(sig)


def source(data):
    """jwt_source: standard base64 of a secret or PEM key."""
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def _openssl(*args, data=None):
    return subprocess.run(["openssl"] + list(args), input=data, check=True,
                          capture_output=True).stdout


def jwk(kp, kid, kind="rsa", x5c_dir=None):
    """The public JWK of Keypair <kp> (numbers read with openssl), or with
    <x5c_dir> only its certificate in x5c."""
    if x5c_dir is not None:
        der = _openssl("x509", "-outform", "DER", data=kp.cert(x5c_dir))
        return {"kty": "RSA" if kind == "rsa" else "EC", "kid": kid,
                "x5c": [base64.b64encode(der).decode()]}
    if kind == "rsa":
        mod = _openssl("rsa", "-pubin", "-in", str(kp.pub), "-noout", "-modulus").decode()
        n = bytes.fromhex(mod.strip().split("=", 1)[1])
        return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64url(n),
                "e": b64url((65537).to_bytes(3, "big"))}
    text = _openssl("ec", "-pubin", "-in", str(kp.pub), "-noout", "-text").decode()
    hexs = "".join(l.strip() for l in text.split("pub:")[1].split("ASN1 OID")[0].splitlines())
    pt = bytes.fromhex(hexs.replace(":", ""))
    size = (len(pt) - 1) // 2
    crv = {32: "P-256", 48: "P-384", 66: "P-521"}[size]
    return {"kty": "EC", "kid": kid, "crv": crv, "x": b64url(pt[1:1 + size]),
            "y": b64url(pt[1 + size:])}
