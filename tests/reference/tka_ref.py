#!/usr/bin/env python3
"""An independent reference verifier for tka activation tokens.

Written from the documentation only (docs/verification.md, the table "the
checks run row by row"; docs/machine-identity.md, hashing, CMID, matching
and "What a request may bind"; docs/design.md, the token format), never from
the Rust code, so that a wrong claim name, hash, kid or CMID derivation
shared by tka's generator and verifier shows up as a disagreement.
Dependencies: the Python standard library and `cryptography`.

It answers with a verdict and the rule that decided it, named as the
`VerifyError` variant of the docs' table (`ok`, or e.g. `BadSignature`), plus
for `Malformed` the part it is about (`token`, `token header`, `token
payload`, `token signature`).

Usage:
  tka_ref.py vector FILE...           verify tests/vectors/*.txt files, one JSON line each
  tka_ref.py verify TOKEN [options]   verify one token file (see --help)
  tka_ref.py machine PRODUCT K=V...   component hashes and CMID of raw values
  tka_ref.py golden                   the golden machine vector (tests/machine.rs)

Where the docs are silent, the choice made is marked "DOCS:" below and listed
in tests/reference/README.md.
"""

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import sys

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAX_TOKEN = 64 * 1024
MAX_NESTING = 128  # levels of arrays/objects refused from this depth on
MAX_CHAIN = 5
IAT_SKEW = 300
TYP = "tka-token+jwt"
ALGS = ("PS256", "RS256")
TKA_EKU = "2.25.111504080495062926421002432311158376797"
DELEGATION_OID = "2.25.236812418305419463823512950212404736315"
# Extensions a tka verifier processes (DOCS: the docs do not list them; these
# are the ones docs/verification.md and docs/design.md name).
KNOWN_EXTENSIONS = {
    "2.5.29.19",  # basicConstraints
    "2.5.29.15",  # keyUsage
    "2.5.29.37",  # extendedKeyUsage
    "2.5.29.14",  # subjectKeyIdentifier
    "2.5.29.35",  # authorityKeyIdentifier
    DELEGATION_OID,
}
I64_MAX = 2**63 - 1
I64_MIN = -(2**63)


class Refused(Exception):
    """A verdict other than ok: `rule` is the docs' VerifyError name."""

    def __init__(self, rule, detail="", what=None):
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail
        self.what = what


# ---------------------------------------------------------------------------
# Machine identity (docs/machine-identity.md)

# code, CMID tier, evidence (hardware anchor?), match tier — "The kinds table".
KINDS = ["xid", "mid", "dmi", "psn", "bsn", "csn", "mac", "rfs", "dsk", "cpu"]
HARDWARE = {"dmi", "psn", "bsn", "csn", "mac", "dsk"}
CMID_FIRST_OF = ["bsn", "psn", "csn", "rfs", "dsk"]
MAX_MACS = 16
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PLACEHOLDERS = {
    "to be filled by o.e.m.",
    "default string",
    "none",
    "not specified",
    "not settable",
    "n/a",
    "unknown",
    "system serial number",
    "chassis serial number",
    "0123456789",
    "1234567890",
    "03000200-0400-0500-0006-000700080009",
}


def normalize(kind, value):
    """A raw value as the docs' "Normalization" section says; None = absent."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    if kind == "xid":
        v = value.strip()
        return v or None
    v = " ".join(value.split()).lower()
    if kind == "mac":
        hexdigits = re.sub(r"[:\-.]", "", v)
        if not re.fullmatch(r"[0-9a-f]{12}", hexdigits):
            return None
        octets = [hexdigits[i : i + 2] for i in range(0, 12, 2)]
        first = int(octets[0], 16)
        if first & 0x01 or first & 0x02 or hexdigits in ("0" * 12, "f" * 12):
            return None
        v = ":".join(octets)
    if not v or v in PLACEHOLDERS:
        return None
    if len(set(re.sub(r"[\s:\-.]", "", v))) <= 1:
        return None
    return v


def product_salt(product):
    return hashlib.sha256(b"tka-machine-salt-v1\x00" + product.encode()).digest()


def be32(n):
    return n.to_bytes(4, "big")


def hash_component(product, kind, value):
    k, v = kind.encode(), value.encode()
    digest = hashlib.sha256(product_salt(product) + be32(len(k)) + k + be32(len(v)) + v).digest()
    return base64.urlsafe_b64encode(digest[:12]).decode().rstrip("=")


def sort_components(components):
    return sorted(components, key=lambda c: (KINDS.index(c[0]), c[1]))


def cmid_basis(components):
    """The components the CMID is derived from, in priority order (docs: CMID)."""
    kinds = {k for k, _ in components}
    if "xid" in kinds:
        chosen = {"xid"}
    elif kinds & {"mid", "dmi"}:
        chosen = kinds & {"mid", "dmi"}
    else:
        first = next((k for k in CMID_FIRST_OF if k in kinds), None)
        chosen = {first} if first else kinds
    return [c for c in sort_components(components) if c[0] in chosen]


def luhn_mod32(symbols):
    """Luhn mod N (N = 32) check symbol over Crockford symbols."""
    factor, total = 2, 0
    for ch in reversed(symbols):
        addend = factor * CROCKFORD.index(ch)
        factor = 1 if factor == 2 else 2
        total += addend // 32 + addend % 32
    return CROCKFORD[(32 - total % 32) % 32]


def cmid_from_components(components):
    data = b"tka-cmid-v1\x00"
    for k, h in cmid_basis(components):
        data += be32(len(k)) + k.encode() + be32(len(h)) + h.encode()
    bits = int.from_bytes(hashlib.sha256(data).digest()[:10], "big")
    symbols = "".join(CROCKFORD[(bits >> (5 * (15 - i))) & 31] for i in range(16))
    groups = [symbols[i : i + 4] for i in range(0, 16, 4)]
    return "-".join(groups + [luhn_mod32(symbols)])


def identify(product, raw):
    """(sorted components [(kind, hash)], cmid) of raw (kind, value) pairs."""
    seen = set()
    for kind, value in raw:
        v = normalize(kind, value)
        if v is not None:
            seen.add((kind, hash_component(product, kind, v)))
    if any(k == "xid" for k, _ in seen):
        seen = {c for c in seen if c[0] == "xid"}
    comps = sort_components(seen)
    return comps, cmid_from_components(comps) if comps else None


def check_binding(components, sub, weak_binding):
    """docs/machine-identity.md, "What a request may bind"; ImpossibleBinding."""
    if not components:
        raise Refused("ImpossibleBinding", "no components")
    seen, per_kind = set(), {}
    for k, h in components:
        if k not in KINDS:
            raise Refused("ImpossibleBinding", f"unknown kind {k}")
        per_kind[k] = per_kind.get(k, 0) + 1
        if per_kind[k] > 1 and k != "mac":
            raise Refused("ImpossibleBinding", f"kind {k} twice")
        if per_kind[k] > MAX_MACS:
            raise Refused("ImpossibleBinding", "too many MACs")
        if (k, h) in seen:
            raise Refused("ImpossibleBinding", "a component twice")
        seen.add((k, h))
    if "xid" in per_kind and len(per_kind) > 1:
        raise Refused("ImpossibleBinding", "explicit identity mixed")
    for _, h in components:
        if not re.fullmatch(r"[A-Za-z0-9_-]{16}", h) or b64url_decode(h) is None:
            raise Refused("ImpossibleBinding", "malformed hash")
    if not re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}-[0-9A-HJKMNP-TV-Z]", sub):
        raise Refused("ImpossibleBinding", "malformed CMID")
    if sub != cmid_from_components(components):
        raise Refused("ImpossibleBinding", "sub is not the components' CMID")
    strong = bool(set(per_kind) & (HARDWARE | {"xid"}))
    # DOCS: a token that says weak_binding but binds a hardware anchor: accepted here.
    if not strong and weak_binding is not True:
        raise Refused("ImpossibleBinding", "weak binding not declared")


def evaluate_match(rule, bound, present):
    """True when the bound components satisfy `rule` on a machine with `present`."""
    have = set(present)
    votes = {}
    for k, h in bound:
        votes.setdefault(k, []).append(h)
    matched = {k: sum((k, h) in have for h in hs) * 2 > len(hs) for k, hs in votes.items()}
    total, yes = len(matched), sum(matched.values())
    if rule == "all":
        return yes == total
    if rule == "most":
        if yes < total // 2 + 1:
            return False
        hw = [k for k in matched if k in HARDWARE]
        # DOCS: with no hardware vote bound (xid, weak) the anchor is read as vacuous.
        if hw and sum(matched[k] for k in hw) * 2 <= len(hw):
            return False
        return matched.get("dmi", True)
    return yes >= min(rule, total)


# ---------------------------------------------------------------------------
# Strict base64url and JSON (step 1)


def b64url_decode(s):
    """Strict, canonical base64url without padding; None when it is not."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", s) or len(s) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != s:
        return None  # unused low bits set: not the canonical spelling
    return raw


class _Dup(Exception):
    pass


def parse_json(data):
    """(value, duplicate name or None); raises ValueError when not JSON."""
    text = data.decode("utf-8")  # strict: overlong forms and surrogates refused
    depth = max_depth = 0
    in_str = esc = False
    for ch in text:  # nesting bound, measured before parsing
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            max_depth = max(max_depth, depth)
        elif ch in "]}":
            depth -= 1
    if max_depth >= MAX_NESTING:
        raise ValueError("nesting too deep")
    dups = []

    def pairs(items):
        names = [k for k, _ in items]
        if len(set(names)) != len(names):
            dups.append(next(n for n in names if names.count(n) > 1))
        return dict(items)

    def bad_constant(c):
        raise ValueError(f"not JSON: {c}")

    def parse_float(s):
        f = float(s)
        if f in (float("inf"), float("-inf")):
            raise ValueError("number out of range")
        return f

    value = json.loads(text, object_pairs_hook=pairs, parse_constant=bad_constant, parse_float=parse_float)
    # A \u escape of a lone surrogate is no character: the text is not UTF-8 JSON.
    json.dumps(value, ensure_ascii=False).encode("utf-8")
    return value, (dups[0] if dups else None)


# ---------------------------------------------------------------------------
# Minimal DER reading (inner signature algorithm, the delegation extension)


def der_read(buf, pos):
    """(tag, content start, content end) of the TLV at pos."""
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4:
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > len(buf):
        raise ValueError("DER runs past its end")
    return tag, pos, pos + length


def der_children(buf, start, end):
    out = []
    while start < end:
        tag, s, e = der_read(buf, start)
        out.append((tag, start, s, e))
        start = e
    return out


def inner_signature_algorithm(tbs):
    _, s, e = der_read(tbs, 0)
    kids = der_children(tbs, s, e)
    i = 1 if kids[0][0] == 0xA0 else 0  # [0] version
    _, whole, _, end = kids[i + 1]
    return tbs[whole:end]


def outer_signature_algorithm(der):
    _, s, e = der_read(der, 0)
    kids = der_children(der, s, e)
    return der[kids[1][1] : kids[1][3]]


def parse_delegation(value):
    """TkaDelegation ::= SEQUENCE { products SEQUENCE SIZE(1..MAX) OF UTF8String,
    maxLifetime INTEGER, seats INTEGER OPTIONAL } -> (products, max_lifetime)."""
    tag, s, e = der_read(value, 0)
    if tag != 0x30 or e != len(value):
        raise ValueError("not a SEQUENCE")
    kids = der_children(value, s, e)
    if len(kids) not in (2, 3) or kids[0][0] != 0x30 or kids[1][0] != 0x02:
        raise ValueError("bad TkaDelegation")
    if len(kids) == 3 and kids[2][0] != 0x02:
        raise ValueError("bad seats")
    products = []
    for tag, _, ps, pe in der_children(value, kids[0][2], kids[0][3]):
        if tag != 0x0C:
            raise ValueError("product not a UTF8String")
        products.append(value[ps:pe].decode("utf-8"))
    if not products:
        raise ValueError("no products")
    lifetime = int.from_bytes(value[kids[1][2] : kids[1][3]], "big", signed=True)
    return products, lifetime


# ---------------------------------------------------------------------------
# Certificates (step 3)


class Cert:
    def __init__(self, der):
        self.der = der
        try:
            c = x509.load_der_x509_certificate(der)  # refuses trailing bytes
            if c.version != x509.Version.v3:
                raise ValueError("not v3")
            exts = list(c.extensions)  # refuses duplicate extensions
            if inner_signature_algorithm(c.tbs_certificate_bytes) != outer_signature_algorithm(der):
                raise ValueError("inner and outer signature algorithms differ")
            self.delegation = None
            for ext in exts:
                if ext.oid.dotted_string == DELEGATION_OID:
                    self.delegation = parse_delegation(ext.value.value)
            self.not_before = int(c.not_valid_before_utc.timestamp())
            self.not_after = int(c.not_valid_after_utc.timestamp())
            self.key = c.public_key()
        except Exception as e:  # noqa: BLE001 - any parse failure is the same verdict
            raise Refused("BadCertificate", f"certificate does not parse: {e}") from None
        self.c = c
        self.exts = {e.oid.dotted_string: e for e in exts}
        self.fingerprint = hashlib.sha256(der).hexdigest()
        self.subject = c.subject.public_bytes()
        self.issuer = c.issuer.public_bytes()

    def ext(self, oid):
        e = self.exts.get(oid)
        return e.value if e else None

    def is_ca(self):
        bc = self.ext("2.5.29.19")
        return bool(bc and bc.ca)

    def signed_by(self, issuer):
        key = issuer.key
        if not isinstance(key, rsa.RSAPublicKey):
            return False  # DOCS: a non-RSA issuer key "cannot verify anything"
        try:
            key.verify(self.c.signature, self.c.tbs_certificate_bytes, padding.PKCS1v15(), self.c.signature_hash_algorithm)
            return True
        except Exception:  # noqa: BLE001
            return False

    def ski(self):
        v = self.ext("2.5.29.14")
        return v.digest if v else None

    def aki(self):
        v = self.ext("2.5.29.35")
        return v.key_identifier if v else None


def issued_by_root(cert, roots):
    for r in roots:
        if cert.issuer == r.subject and cert.signed_by(r):
            return r
    return None


def is_root(cert, roots):
    return any(cert.der == r.der for r in roots)


def same_subject_and_key(a, b):
    spki = lambda c: c.c.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # noqa: E731
    return a.subject == b.subject and spki(a) == spki(b)


def build_path(certs, roots):
    """Chaining row: the path signer..root, each certificate certified by the next,
    until one is issued by a trusted root (or is one). What follows in x5c must
    certify the same CA: the root itself, or the cross-certificate a root rollover
    adds after the new issuing CA (docs/rotation.md, "Root rollover")."""
    for i, c in enumerate(certs):
        if is_root(c, roots):
            path, root, rest = certs[: i + 1], c, certs[i + 1 :]
            break
        root = issued_by_root(c, roots)
        if root is not None:
            path, rest = certs[: i + 1] + [root], certs[i + 1 :]
            break
        if i + 1 == len(certs):
            raise Refused("UntrustedRoot", "the chain does not end at a trusted root")
        if c.issuer != certs[i + 1].subject:
            raise Refused("BadCertificate", f"x5c[{i}]'s issuer is not x5c[{i + 1}]'s subject")
        if not c.signed_by(certs[i + 1]):
            raise Refused("BadCertSignature", f"x5c[{i}] is not signed by x5c[{i + 1}]")
    for extra in rest:
        if not same_subject_and_key(extra, root):
            raise Refused("BadCertificate", "x5c continues past the trusted root")
    return list(path)


def compact_chain(kid, known, roots, now):
    """docs/verification.md step 3, first row, and "Compact tokens"."""
    signer = next((c for c in known if c.fingerprint == kid), None)
    if signer is None:
        raise Refused("UnknownSigner", "no known certificate has this kid")
    chain = [signer]
    while len(chain) < MAX_CHAIN and issued_by_root(chain[-1], roots) is None and not is_root(chain[-1], roots):
        cur = chain[-1]
        cands = [c for c in known if c.subject == cur.issuer and (cur.aki() is None or c.ski() == cur.aki())]
        good = [c for c in cands if cur.signed_by(c) and c.not_before <= now <= c.not_after]
        nxt = (good or cands or [None])[0]
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    return chain


def check_path(path, now, crls):
    """The step-3 rows after chaining, each over the whole path in order."""
    for c in path:
        if now > c.not_after:
            raise Refused("CertExpired", c.c.subject.rfc4514_string())
        if now < c.not_before:
            raise Refused("CertNotYetValid", c.c.subject.rfc4514_string())
    for c in path:
        if not isinstance(c.key, rsa.RSAPublicKey) or c.key.key_size < 2048:
            raise Refused("WeakKey", c.c.subject.rfc4514_string())
    for c in path:
        for oid, e in c.exts.items():
            if e.critical and oid not in KNOWN_EXTENSIONS:
                raise Refused("UnknownCriticalExtension", oid)
    signer = path[0]
    if signer.is_ca():
        raise Refused("SignerIsCa", "the token signer is a CA")
    ku = signer.ext("2.5.29.15")
    if ku is None or not ku.digital_signature:  # DOCS: keyUsage required on the signer
        raise Refused("MissingDigitalSignature", "")
    eku = signer.ext("2.5.29.37")
    if eku is None or not any(o.dotted_string == TKA_EKU for o in eku):
        raise Refused("MissingSignerEku", "")
    for c in path[1:]:
        if not c.is_ca():
            raise Refused("NotCa", c.c.subject.rfc4514_string())
        ku = c.ext("2.5.29.15")
        if ku is not None and not ku.key_cert_sign:
            raise Refused("MissingKeyCertSign", c.c.subject.rfc4514_string())
    for j in range(1, len(path)):
        bc = path[j].ext("2.5.29.19")
        below = sum(1 for c in path[1:j] if c.subject != c.issuer)
        if bc.path_length is not None and below > bc.path_length:
            raise Refused("PathLenExceeded", path[j].c.subject.rfc4514_string())
    for i in range(len(path) - 1):
        for crl in crls:
            # DOCS: a CRL's own thisUpdate/nextUpdate are not checked here.
            if crl.issuer.public_bytes() != path[i + 1].subject:
                continue
            if not isinstance(path[i + 1].key, rsa.RSAPublicKey) or not crl.is_signature_valid(path[i + 1].key):
                continue
            if crl.get_revoked_certificate_by_serial_number(path[i].c.serial_number) is not None:
                raise Refused("CertRevoked", path[i].c.subject.rfc4514_string())


# ---------------------------------------------------------------------------
# Claims (step 5)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and I64_MIN <= v <= I64_MAX


def parse_match(m):
    """"all", "most" or N >= 1: a JSON number or string; a string is trimmed and
    read case-insensitively (DOCS: Q5 in tests/reference/README.md). None if bad."""
    if is_int(m):
        m = str(m)
    if not isinstance(m, str):
        return None
    m = m.strip().lower()
    if m in ("all", "most"):
        return m
    if re.fullmatch(r"\+?[0-9]+", m) and 1 <= int(m) <= 2**32 - 1:
        return int(m)
    return None


def parse_claims(p):
    """The claims row: (claims dict, tka dict) or BadClaims. DOCS: types are not documented."""

    def bad(what):
        raise Refused("BadClaims", what)

    if not isinstance(p, dict):
        bad("payload is not an object")
    for name in ("jti", "sub", "aud"):
        if not isinstance(p.get(name), str):
            bad(f"{name} missing or not a string")
    for name in ("iat", "nbf"):
        if not is_int(p.get(name)):
            bad(f"{name} missing or not an integer")
    if p.get("exp") is not None and not is_int(p["exp"]):
        bad("exp not an integer")
    t = p.get("tka")
    if not isinstance(t, dict) or not is_int(t.get("v")) or t["v"] != 1:
        bad("tka object missing or not version 1")
    comps = t.get("components", [])  # absent: nothing bound (ImpossibleBinding below)
    if not isinstance(comps, list):
        bad("components")
    for c in comps:
        if not isinstance(c, dict) or not isinstance(c.get("k"), str) or not isinstance(c.get("h"), str):
            bad("component shape")
    t["match"] = parse_match(t.get("match"))
    if t["match"] is None:
        bad("match rule")
    f = t.get("features", [])
    if not isinstance(f, list) or not all(isinstance(x, str) for x in f):
        bad("features")
    for name in ("edition", "entitlement"):
        if t.get(name) is not None and not isinstance(t[name], str):
            bad(name)
    if t.get("renew_after") is not None and not is_int(t["renew_after"]):
        bad("renew_after")
    g = t.get("grace", 0)
    if not is_int(g) or g < 0:
        bad("grace")
    if "weak_binding" in t and not isinstance(t["weak_binding"], bool):
        bad("weak_binding")
    return p, t


# ---------------------------------------------------------------------------
# The verifier


def verify(token, roots, now, product=None, machine=("skip", None), crls=(), revoked=(), clock=None, known=(), pins=()):
    """Returns a dict on success; raises Refused with the first failing row."""
    # Step 1.
    if len(token.encode("utf-8", "surrogateescape")) > MAX_TOKEN:
        raise Refused("TooLarge", "over 64 KiB")
    # Trailing line breaks (CR, LF) are not part of the token (docs/verification.md, step 1).
    token = token.rstrip("\r\n")
    parts = token.split(".")
    if len(parts) != 3:
        raise Refused("Malformed", "not three dot-separated parts", "token")
    raw = []
    for part, what in zip(parts, ("token header", "token payload", "token signature")):
        b = b64url_decode(part)
        if b is None:
            raise Refused("Malformed", "not strict base64url", what)
        raw.append(b)
    parsed = []
    for b, what in zip(raw[:2], ("token header", "token payload")):
        try:
            parsed.append(parse_json(b))
        except (ValueError, RecursionError, UnicodeError) as e:
            raise Refused("Malformed", f"not JSON: {e}", what) from None
    if not isinstance(parsed[0][0], dict):
        raise Refused("Malformed", "header is not an object", "token header")
    for (_, dup), what in zip(parsed, ("header", "payload")):
        if dup is not None:
            raise Refused("DuplicateKey", f"{dup!r} twice in the {what}")
    header, payload = parsed[0][0], parsed[1][0]

    # Step 2.
    alg = header.get("alg")
    if alg not in ALGS or not isinstance(alg, str):
        raise Refused("AlgorithmNotAllowed", repr(alg))
    typ = header.get("typ")
    # A media type: compared case-insensitively (RFC 7515 §4.1.9, RFC 2045).
    if not isinstance(typ, str) or typ.lower() not in (TYP, "application/" + TYP):
        raise Refused("WrongType", repr(typ))
    for name in ("jwk", "jku", "x5u"):
        if name in header:
            raise Refused("ForbiddenHeader", name)
    if "crit" in header:
        raise Refused("UnknownCritical", "crit")
    x5c = header.get("x5c")
    kid = header.get("kid")
    ders = None
    if "x5c" in header:
        if not isinstance(x5c, list) or not x5c:
            raise Refused("Malformed", "x5c is not a non-empty array", "token header")
        ders = []
        for s in x5c:
            try:
                if not isinstance(s, str):
                    raise ValueError
                ders.append(base64.b64decode(s, validate=True))
            except (ValueError, binascii.Error):
                raise Refused("Malformed", "x5c entry is not standard base64", "token header") from None
        if len(ders) > MAX_CHAIN:
            raise Refused("BadCertificate", "more than five certificates")
    elif "kid" not in header:
        raise Refused("MissingChain", "neither x5c nor kid")
    if "kid" in header and not isinstance(kid, str):
        raise Refused("Malformed", "kid is not a string", "token header")

    # Step 3.
    if ders is None:
        certs = compact_chain(kid, list(known), roots, now)
    else:
        certs = [Cert(d) for d in ders]
    path = build_path(certs, roots)
    check_path(path, now, crls)
    if pins and path[-1].fingerprint not in pins:
        raise Refused("WrongRoot", path[-1].fingerprint)
    signer = path[0]
    if kid is not None and kid != signer.fingerprint:
        raise Refused("Malformed", "kid is not the signer's fingerprint", "token header")

    # Step 4.
    n = (signer.key.key_size + 7) // 8
    sig, signed = raw[2], (parts[0] + "." + parts[1]).encode()
    pad = (
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32) if alg == "PS256" else padding.PKCS1v15()
    )
    try:
        if len(sig) != n:
            raise InvalidSignature
        signer.key.verify(sig, signed, pad, hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise Refused("BadSignature", "") from None

    # Step 5.
    claims, t = parse_claims(payload)
    exp, nbf, iat = claims.get("exp"), claims["nbf"], claims["iat"]
    for c in path:
        if c.delegation:
            products, lifetime = c.delegation
            if claims["aud"] not in products or exp is None or exp - nbf > lifetime:
                raise Refused("OutsideDelegation", c.c.subject.rfc4514_string())
    if product is not None and claims["aud"] != product:
        raise Refused("WrongProduct", claims["aud"])
    bound = [(c["k"], c["h"]) for c in t.get("components", [])]
    check_binding(bound, claims["sub"], t.get("weak_binding"))
    kind, value = machine
    if kind == "identity" and not evaluate_match(t["match"], bound, value):
        raise Refused("WrongMachine", "")
    if kind == "cmid" and claims["sub"] != value:
        raise Refused("WrongMachine", "")
    grace = t.get("grace", 0)
    if now < nbf:
        raise Refused("TokenNotYetValid", "")
    if exp is not None and now >= exp + grace:
        raise Refused("TokenExpired", "")
    if exp is not None and exp > signer.not_after:
        raise Refused("TokenOutlivesSigner", "")
    if iat < signer.not_before:
        raise Refused("BadClaims", "issued before the signer existed")
    if claims["jti"] in revoked:
        raise Refused("TokenRevoked", claims["jti"])

    # Step 6.
    if clock is not None and now < clock[0] - clock[1]:
        raise Refused("ClockRollback", "")
    if now < iat - IAT_SKEW:
        raise Refused("IssuedInFuture", "")
    return {"serial": claims["jti"], "in_grace": exp is not None and now >= exp}


# ---------------------------------------------------------------------------
# Inputs: PEM files, vectors


def pem_blocks(path, label):
    text = open(path, encoding="ascii").read()
    pat = rf"-----BEGIN {label}-----(.*?)-----END {label}-----"
    return [base64.b64decode("".join(b.split())) for b in re.findall(pat, text, re.S)]


def load_certs(paths):
    return [Cert(d) for p in paths for d in pem_blocks(p, "CERTIFICATE")]


def load_crls(paths):
    return [x509.load_der_x509_crl(d) for p in paths for d in pem_blocks(p, "X509 CRL")]


# The machines the vectors name (tests/vectors.rs FIXTURE, tests/common other_machine):
# data, not logic.
FIXTURE = [
    ("mid", "4f1d2c3b4a5968778695a4b3c2d1e0f1"),
    ("dmi", "4c4c4544-0042-3510-8052-b4c04f4e4e32"),
    ("bsn", "L1HF12345"),
    ("mac", "00:11:22:33:44:55"),
    ("rfs", "6f0a1f0e-1c2b-4f7e-9a55-0d3c1f2e3a4b"),
]
OTHER = [
    ("mid", "99999999999999999999999999999999"),
    ("dmi", "00000000-1111-2222-3333-444444444444"),
    ("bsn", "ZZZ999"),
    ("mac", "00:aa:bb:cc:dd:ee"),
    ("rfs", "11111111-2222-3333-4444-555555555555"),
]


def machine_spec(spec, product):
    if spec == "skip":
        return ("skip", None)
    if spec.startswith("cmid:"):
        return ("cmid", spec[5:])
    if spec == "fixture":
        raw = FIXTURE
    elif spec == "other":
        raw = OTHER
    elif spec.startswith("fixture-changed="):
        kinds = spec.split("=", 1)[1].split(",")
        raw = [(k, v + "-replaced" if k in kinds else v) for k, v in FIXTURE]
    elif spec.startswith("fixture-without="):
        kinds = spec.split("=", 1)[1].split(",")
        raw = [(k, v) for k, v in FIXTURE if k not in kinds]
    elif spec.startswith("raw:"):
        raw = [tuple(kv.split("=", 1)) for kv in spec[4:].split(";") if kv]
    else:
        raise SystemExit(f"unknown machine spec {spec!r}")
    return ("identity", identify(product, raw)[0])


def outcome(fn):
    try:
        fn()
        return {"verdict": "ok", "rule": "ok"}
    except Refused as r:
        out = {"verdict": "refused", "rule": r.rule, "detail": r.detail}
        if r.what:
            out["what"] = r.what
        return out


def run_vector(path):
    text = open(path, "rb").read().decode("utf-8", "surrogateescape")
    head, body = text.split("\n\n", 1)
    h = {}
    for line in head.splitlines():
        k, _, v = line.partition(":")
        h[k] = v.strip()
    token = body[:-1] if body.endswith("\n") else body
    pki = os.path.join(os.path.dirname(path), "pki")
    roots = load_certs([os.path.join(pki, r + ".pem") for r in h.get("roots", "").split(",") if r])
    crls = load_crls([os.path.join(pki, c + ".crl.pem") for c in h.get("crls", "").split(",") if c])
    product = None if h.get("product", "*") == "*" else h["product"]
    # The fixture machines are identified for the vectors' product (tests/common PRODUCT).
    machine = machine_spec(h.get("machine", "fixture"), "example-pro")
    clock = tuple(int(x) for x in h["clock"].split()) if "clock" in h else None
    revoked = {s for s in h.get("revoked", "").split(",") if s}
    now = int(h["now"])
    out = outcome(lambda: verify(token, roots, now, product, machine, crls, revoked, clock))
    out["name"] = os.path.basename(path)[: -len(".txt")]
    out["expect"] = h["expect"]
    if "what" in h:
        out["expect_what"] = h["what"]
    return out


GOLDEN = (
    "example-product",
    [
        ("mid", "0123456789abcdef0123456789abcdef"),
        ("dmi", "4C4C4544-004D-3510-804B-B4C04F4E3332"),
        ("mac", "3C:52:82:11:22:33"),
        ("cpu", "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"),
    ],
)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vector")
    v.add_argument("files", nargs="+")
    t = sub.add_parser("verify")
    t.add_argument("token")
    t.add_argument("--trust", action="append", default=[], help="PEM file of trusted roots")
    t.add_argument("--chain", action="append", default=[], help="PEM file of known certificates")
    t.add_argument("--crl", action="append", default=[])
    t.add_argument("--product")
    t.add_argument("--machine", default="skip", help="skip | cmid:CMID | raw:k=v;k=v | fixture...")
    t.add_argument("--now", type=int, required=True)
    t.add_argument("--pin", action="append", default=[])
    m = sub.add_parser("machine")
    m.add_argument("product")
    m.add_argument("pairs", nargs="+", help="kind=value")
    sub.add_parser("golden")
    a = ap.parse_args(argv)
    if a.cmd == "vector":
        for f in a.files:
            print(json.dumps(run_vector(f)))
    elif a.cmd == "verify":
        # A token file, read as the CLI does: surrounding whitespace is not part of it.
        token = open(a.token, "rb").read().decode("utf-8", "surrogateescape").strip()
        roots, known, crls = load_certs(a.trust), load_certs(a.chain), load_crls(a.crl)
        product = a.product
        machine = machine_spec(a.machine, product or "")
        out = outcome(lambda: verify(token, roots, a.now, product, machine, crls, (), None, known, set(a.pin)))
        print(json.dumps(out))
    elif a.cmd in ("machine", "golden"):
        product, raw = (a.product, [tuple(p.split("=", 1)) for p in a.pairs]) if a.cmd == "machine" else GOLDEN
        comps, cmid = identify(product, raw)
        for k, h in comps:
            print(f"{k} {h}")
        print(f"cmid {cmid}")
        print("cmid_kinds " + " ".join(k for k, _ in cmid_basis(comps)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
