#!/usr/bin/env python3
"""Third-party check of a tka activation token with Python jwcrypto.

Usage: jwcrypto_verify.py SIGNER_CERT.pem TOKEN_FILE [ALG]

Loads the signer certificate's public key, deserializes the compact JWS,
verifies its signature (restricted to ALG if given, else PS256/RS256) and
prints `alg: ...` and `aud: ...` from the header and payload.

Exit codes: 0 verified, 1 rejected by jwcrypto (stderr: `rejected:
<exception class>: <message>`, jwcrypto's own words), 2 usage / missing
module (jwcrypto not installed), 3 the helper itself failed (stderr:
`helper failed: ...`), so a crash is never taken for a rejection.
"""

import json
import sys

try:
    from jwcrypto import jwk, jws
except ImportError as e:  # pragma: no cover - depends on the environment
    print(f"jwcrypto is not installed: {e}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    cert_path, token_path = argv[1], argv[2]
    allowed = [argv[3]] if len(argv) == 4 else ["PS256", "RS256"]
    with open(cert_path, "rb") as f:
        key = jwk.JWK.from_pem(f.read())
    with open(token_path, "r", encoding="utf-8") as f:
        token = f.read().strip()
    try:
        obj = jws.JWS()
        obj.allowed_algs = allowed
        obj.deserialize(token)
        obj.verify(key)
    except Exception as e:  # jwcrypto raises several exception types
        print(f"rejected: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    header = obj.jose_header
    payload = json.loads(obj.payload)
    print(f"alg: {header['alg']}")
    print(f"aud: {payload['aud']}")
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv)
    except Exception as e:  # anything outside the jwcrypto calls
        print(f"helper failed: {type(e).__name__}: {e}", file=sys.stderr)
        code = 3
    sys.exit(code)
