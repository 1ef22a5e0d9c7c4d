#!/usr/bin/env python3
"""Edge-case tokens for scripts/crosscheck-vectors.sh: takes a token tka issued,
edits its header or payload where the docs leave room for two readings, and
signs it again with the signer's key, so that the edit is the token's only
defect. tka and the reference verifier must then agree on each.

Usage: mutate.py TOKEN SIGNER_KEY_PEM ROOT_PEM OUTDIR
"""

import base64
import json
import os
import re
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def b64u(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main(token_path, key_path, root_path, outdir):
    token = open(token_path).read().strip()
    h64, p64, _ = token.split(".")
    header, payload = json.loads(unb64u(h64)), json.loads(unb64u(p64))
    key = serialization.load_pem_private_key(open(key_path, "rb").read(), password=None)
    root_pem = open(root_path).read()
    root_b64 = "".join(re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END", root_pem, re.S).group(1).split())

    def sign(h_text, p_text, alg=None):
        alg = alg or json.loads(h_text)["alg"]
        signing_input = (b64u(h_text.encode()) + "." + b64u(p_text.encode())).encode()
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32) if alg == "PS256" else padding.PKCS1v15()
        return signing_input.decode() + "." + b64u(key.sign(signing_input, pad, hashes.SHA256()))

    out = {}

    def edit(name, h_edit=None, p_edit=None, raw_header=None, raw_payload=None, suffix=""):
        h, p = json.loads(json.dumps(header)), json.loads(json.dumps(payload))
        if h_edit:
            h_edit(h)
        if p_edit:
            p_edit(p)
        h_text = raw_header if raw_header is not None else json.dumps(h, separators=(",", ":"))
        p_text = raw_payload if raw_payload is not None else json.dumps(p, separators=(",", ":"))
        out[name] = sign(h_text, p_text, h.get("alg")) + suffix

    def setter(path, value):
        def f(obj):
            *parents, last = path
            for k in parents:
                obj = obj[k]
            if value is DELETE:
                obj.pop(last, None)
            else:
                obj[last] = value

        return f

    DELETE = object()
    # Step 1: line ends, nesting depth.
    edit("end-lf", suffix="\n")
    edit("end-crlf-twice", suffix="\r\n\r\n")
    edit("end-cr", suffix="\r")
    ptext = json.dumps(payload, separators=(",", ":"))
    for depth in (126, 127, 128, 129):
        nested = "[" * depth + "]" * depth
        edit(f"payload-nesting-{depth}", raw_payload=ptext[:-1] + ',"x":' + nested + "}")
    edit("payload-bom", raw_payload="\ufeff" + ptext)
    edit("payload-lone-surrogate-escape", raw_payload=ptext[:-1] + ',"x":"\\ud800"}')
    # Step 2: typ spelling, kid spelling, x5c spelling.
    edit("typ-upper-case", setter(["typ"], "TKA-TOKEN+JWT"))
    edit("typ-media-type-upper-case", setter(["typ"], "Application/tka-token+jwt"))
    edit("typ-media-type-twice", setter(["typ"], "application/application/tka-token+jwt"))
    edit("kid-upper-case", setter(["kid"], header["kid"].upper()))
    edit("kid-with-colons", setter(["kid"], ":".join(re.findall("..", header["kid"]))))
    edit("kid-absent", setter(["kid"], DELETE))
    edit("x5c-unpadded", setter(["x5c"], [s.rstrip("=") for s in header["x5c"]]))
    edit("x5c-with-line-breaks", setter(["x5c"], [s[:64] + "\n" + s[64:] for s in header["x5c"]]))
    edit("x5c-with-root", setter(["x5c"], header["x5c"] + [root_b64]))
    edit("x5c-root-twice", setter(["x5c"], header["x5c"] + [root_b64, root_b64]))
    edit("x5c-signer-twice", setter(["x5c"], header["x5c"][:1] + header["x5c"]))
    edit("header-b64-false-without-crit", setter(["b64"], False))
    edit("header-unknown-member", setter(["zip"], "DEF"))
    edit("alg-rs256", setter(["alg"], "RS256"))
    # Step 5: claim shapes the docs do not spell out.
    edit("exp-absent-grace", p_edit=lambda p: (p.pop("exp"), p["tka"].__setitem__("grace", 3600)))
    edit("exp-before-nbf", p_edit=setter(["exp"], payload["nbf"] - 1))
    edit("exp-equals-nbf", p_edit=setter(["exp"], payload["nbf"]))
    edit("jti-not-hex", p_edit=setter(["jti"], "not-a-serial"))
    edit("jti-empty", p_edit=setter(["jti"], ""))
    edit("aud-empty", p_edit=setter(["aud"], ""))
    edit("sub-lower-case", p_edit=setter(["sub"], payload["sub"].lower()))
    edit("sub-without-hyphens", p_edit=setter(["sub"], payload["sub"].replace("-", "")))
    edit("iat-float-integral", p_edit=setter(["iat"], float(payload["iat"])))
    edit("nbf-float-integral", p_edit=setter(["nbf"], float(payload["nbf"])))
    edit("iat-after-nbf", p_edit=setter(["iat"], payload["nbf"] + 60))
    edit("tka-v-true", p_edit=setter(["tka", "v"], True))
    edit("tka-v-float", p_edit=setter(["tka", "v"], 1.0))
    edit("tka-v-string", p_edit=setter(["tka", "v"], "1"))
    for field in ("features", "edition", "entitlement", "renew_after", "grace", "components", "weak_binding"):
        edit(f"tka-{field}-absent", p_edit=setter(["tka", field], DELETE))
        edit(f"tka-{field}-null", p_edit=setter(["tka", field], None))
    edit("tka-features-empty", p_edit=setter(["tka", "features"], []))
    edit("tka-features-duplicate", p_edit=setter(["tka", "features"], ["a", "a"]))
    edit("tka-edition-empty", p_edit=setter(["tka", "edition"], ""))
    edit("tka-weak-binding-true-strong", p_edit=setter(["tka", "weak_binding"], True))
    edit("tka-weak-binding-false", p_edit=setter(["tka", "weak_binding"], False))
    edit("tka-weak-binding-string", p_edit=setter(["tka", "weak_binding"], "true"))
    edit("tka-match-zero", p_edit=setter(["tka", "match"], 0))
    edit("tka-match-one", p_edit=setter(["tka", "match"], 1))
    edit("tka-match-string-number", p_edit=setter(["tka", "match"], "1"))
    edit("tka-match-upper-case", p_edit=setter(["tka", "match"], "MOST"))
    edit("tka-match-padded", p_edit=setter(["tka", "match"], " most "))
    edit("tka-match-plus-one", p_edit=setter(["tka", "match"], "+1"))
    edit("tka-match-over-u32", p_edit=setter(["tka", "match"], 2**32))
    edit("tka-match-string-zero", p_edit=setter(["tka", "match"], "0"))
    edit("tka-match-float", p_edit=setter(["tka", "match"], 1.0))
    edit("tka-match-negative", p_edit=setter(["tka", "match"], -1))
    edit("tka-grace-float", p_edit=setter(["tka", "grace"], 1.5))
    edit("tka-renew-after-before-iat", p_edit=setter(["tka", "renew_after"], payload["iat"] - 10))
    edit("tka-unknown-member", p_edit=setter(["tka", "extra"], {"a": 1}))
    edit("tka-component-extra-member", p_edit=setter(["tka", "components"], [dict(c, x=1) for c in payload["tka"]["components"]]))
    edit("tka-component-kind-upper", p_edit=setter(["tka", "components"], [dict(c, k=c["k"].upper()) for c in payload["tka"]["components"]]))
    edit("tka-components-twice", p_edit=setter(["tka", "components"], payload["tka"]["components"] * 2))
    os.makedirs(outdir, exist_ok=True)
    for name, text in out.items():
        with open(os.path.join(outdir, name + ".jws"), "w", newline="") as f:
            f.write(text)


if __name__ == "__main__":
    main(*sys.argv[1:])
