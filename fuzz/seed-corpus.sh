#!/bin/sh
# Seeds fuzz/corpus/<target>/ from real artifacts: the adversarial vectors
# and fixture PKI in tests/vectors/, and requests made by the tka binary.
# The corpus directories are git-ignored; rerun this after a fresh checkout.
set -eu
cd "$(dirname "$0")/.."
# TKA_BIN: a tka binary already built (CI passes the release one), else a debug build.
if [ -z "${TKA_BIN:-}" ]; then
  cargo build --quiet --bin tka --bin tka-full
  TKA_BIN=target/debug/tka
fi
export TKA_BIN
python3 - <<'PY'
import base64, glob, os, re, subprocess, tempfile

def pem_blocks(path, label):
    text = open(path).read()
    return [base64.b64decode("".join(b.split()))
            for b in re.findall(r"-----BEGIN %s-----(.*?)-----END %s-----" % (label, label), text, re.S)]

def put(target, name, data):
    d = os.path.join("fuzz/corpus", target)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data)

# token: every vector body (limit to the ones under 64 KiB + a bit).
for path in sorted(glob.glob("tests/vectors/*.txt")):
    body = open(path, "rb").read().split(b"\n\n", 1)[1][:-1]
    name = os.path.basename(path)[:-4]
    put("token", name, body)
    # revocation: selector byte 1 = JWS decoder.
    put("revocation", "jws-" + name, b"\x01" + body)

# revocation: selector byte 0 = X.509 CRL.
for path in sorted(glob.glob("tests/vectors/pki/*.crl.pem")):
    for i, der in enumerate(pem_blocks(path, "X509 CRL")):
        put("revocation", "crl-%s-%d" % (os.path.basename(path), i), b"\x00" + der)

# cert_chain: length-prefixed DER certificates.
certs = {os.path.basename(p)[:-4]: pem_blocks(p, "CERTIFICATE")[0] for p in glob.glob("tests/vectors/pki/*.pem")
         if not p.endswith(".crl.pem")}
def chain(*names):
    return b"".join(len(certs[n]).to_bytes(2, "big") + certs[n] for n in names)
seeds = [("signer", "int"), ("signer", "int", "root"), ("signer",), ("int",), ("root",)]
seeds += [(n, n.split(".")[0]) for n in certs if n.endswith(".signer")]
seeds += [(n, "int") for n in certs if n.startswith("signer-")]
for s in seeds:
    if all(n in certs for n in s):
        put("cert_chain", "-".join(s), chain(*s))

# request: JSON and text forms from the real binary.
with tempfile.TemporaryDirectory() as tmp:
    idf = os.path.join(tmp, "id")
    open(idf, "w").write("seed-machine-0123456789\n")
    for i, extra in enumerate([[], ["--hostname", "build-07"]]):
        for form in ([], ["--text"]):
            out = subprocess.run([os.environ["TKA_BIN"], "request", "create", "--product", "example-pro",
                                  "--machine-id-file", idf] + form + extra, capture_output=True, check=True).stdout
            put("request", "req-%d%s" % (i, "-text" if form else "-json"), out)
PY
for t in token request cert_chain revocation; do
    echo "$t: $(ls fuzz/corpus/$t | wc -l) seeds"
done
