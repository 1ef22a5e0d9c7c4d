#!/usr/bin/env bash
# Cross-checks tka against the independent reference verifier
# (tests/reference/tka_ref.py, written from the docs, not from the Rust code):
#
#  1. every committed vector in tests/vectors/: the reference verifier's
#     verdict and rule must be the vector's label (`expect`, and `what` for
#     Malformed), which tests/vectors.rs holds tka to;
#  2. tokens the CLI makes here (full, compact, RS256, perpetual, grace,
#     match rules, delegated to an activation host, after rotating the
#     signer, the issuing CA and the root, revoked by a CRL), each verified
#     by `tka token verify --json` and by the reference verifier under the
#     same inputs: verdict and rule (`kind`) must agree; and edge cases,
#     tokens edited where the docs could be read two ways and signed again
#     (tests/reference/mutate.py);
#  3. the golden machine vector of tests/machine.rs, derived by the
#     reference verifier from its raw values.
#
# Ends with `agree: N of M` (CROSSCHECK_VERBOSE=1 prints every comparison); exits 1 on any disagreement, 2 on a setup error.
# Needs python3 with `cryptography` (PYTHON=... to choose the interpreter)
# and the tka binary (TKA=..., default target/debug/tka, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
REF=tests/reference/tka_ref.py
if ! "$PY" -c 'import cryptography' 2>/dev/null; then
  echo "error: $PY has no 'cryptography' module (pip install cryptography)" >&2
  exit 2
fi
if [ -z "${TKA:-}" ]; then
  [ -x target/debug/tka ] && [ -x target/debug/tka-full ] || cargo build --quiet --bin tka --bin tka-full
  TKA=$PWD/target/debug/tka
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

agree=0
total=0
disagreements=()
result() { # NAME EXPECTED GOT
  total=$((total + 1))
  [ "${CROSSCHECK_VERBOSE:-0}" = 0 ] || printf '%-45s %-28s %s\n' "$1" "$2" "$3"
  if [ "$2" = "$3" ]; then
    agree=$((agree + 1))
  else
    disagreements+=("$1: tka/label says $2, reference says $3")
  fi
}

# --- 1. committed vectors -------------------------------------------------
"$PY" "$REF" vector tests/vectors/*.txt > "$work/vectors.jsonl"
while IFS=$'\t' read -r name want got; do
  result "vector $name" "$want" "$got"
done < <("$PY" - "$work/vectors.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    want = o["expect"] + ("/" + o["expect_what"] if "expect_what" in o else "")
    got = o["rule"] + ("/" + o["what"] if "expect_what" in o and "what" in o else "")
    print(f"{o['name']}\t{want}\t{got}")
EOF
)

# --- 3. the golden machine vector -------------------------------------------
# Every hash and CMID the reference derives must be the one tests/machine.rs pins.
golden=$(sed -n '/^fn golden_vector/,/^}/p' tests/machine.rs)
[ -n "$golden" ] || { echo "error: no golden_vector in tests/machine.rs" >&2; exit 2; }
while read -r kind value; do
  [ "$kind" = cmid_kinds ] && continue
  if grep -qF "\"$value\"" <<< "$golden"; then got=pinned; else got="not pinned ($kind $value)"; fi
  result "golden $kind" pinned "$got"
done < <("$PY" "$REF" golden; "$PY" "$REF" machine example-product 'xid=fleet-node-0042')

# --- 2. tokens the CLI makes ------------------------------------------------
T() { "$TKA" "$@"; }
umask 077
echo "ref passphrase" > "$work/pp"
pp=(--passphrase-file "$work/pp")
now=$(date -u +%s)
sha256() { "$PY" -c 'import base64,hashlib,re,sys; t=open(sys.argv[1]).read(); print(hashlib.sha256(base64.b64decode("".join(re.search("-----BEGIN CERTIFICATE-----(.*?)-----END", t, re.S).group(1).split()))).hexdigest())' "$1"; }
serial() { "$PY" -c 'import sys; from cryptography import x509; print("%X" % x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read()).serial_number)' "$1"; }
rfc() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
quiet() { "$@" > "$work/last.out" 2>&1 || { cat "$work/last.out" >&2; echo "error: setup step failed: $*" >&2; exit 2; }; }

# check NAME TOKEN AT [--trust F] [--chain F] [--crl F] [--product P]
#       [--machine current:XID | --machine cmid:CMID] [--pin ROOT-SHA256]
check() {
  local name=$1 token=$2 at=$3
  shift 3
  local targs=() rargs=() xid=
  while [ $# -gt 0 ]; do
    case $1 in
      --machine)
        case $2 in
          current:*) xid=${2#current:}; targs+=(--machine current); rargs+=(--machine "raw:xid=$xid") ;;
          cmid:*) targs+=(--machine "${2#cmid:}"); rargs+=(--machine "$2") ;;
        esac ;;
      --pin) targs+=(--root-fingerprint "$2"); rargs+=(--pin "$2") ;;
      *) targs+=("$1" "$2"); rargs+=("$1" "$2") ;;
    esac
    shift 2
  done
  local rc=0
  TKA_MACHINE_ID=$xid "$TKA" token verify "$token" --json --at "$(rfc "$at")" "${targs[@]}" \
    > "$work/tka.json" 2> "$work/tka.err" || rc=$?
  local want
  want=$("$PY" -c '
import json, sys
rc = int(sys.argv[2])
try:
    o = json.load(open(sys.argv[1]))
except ValueError:
    print(f"exit {rc} without JSON"); sys.exit()
print("ok" if o.get("valid") and rc == 0 else o.get("kind", "?") if rc == 1 else f"exit {rc}")
' "$work/tka.json" "$rc")
  [ "$rc" -le 1 ] || want="$want: $(head -1 "$work/tka.err")"
  local got
  "$PY" "$REF" verify "$token" --now "$at" "${rargs[@]}" > "$work/ref.json" ||
    { echo "error: the reference verifier failed on $name" >&2; exit 2; }
  got=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["rule"])' "$work/ref.json")
  result "cli $name" "$want" "$got"
}

A=ref-machine-a
B=ref-machine-b
P=ref-app
quiet T issuer init --home "$work/iss" --org "Crosscheck Corp" "${pp[@]}"
root=$work/iss/root.pem
cp "$root" "$work/root-1.pem"
quiet T issuer init --home "$work/other" --org "Crosscheck Corp" --insecure-no-passphrase
TKA_MACHINE_ID=$A quiet T request create --product "$P" --text --out "$work/req-a.txt"
cmid_a=$(sed -n 's/^cmid //p' < <("$PY" "$REF" machine "$P" "xid=$A"))
issue() { # OUT ARGS...: a token for machine A from the issuer home
  local out=$1
  shift
  quiet T token issue --request "$work/req-a.txt" --home "$work/iss" "${pp[@]}" --out "$out" "$@"
  after_issue
}
# An instant just after the newest token's nbf (tokens are issued at the real clock).
after_issue() { soon=$(($(date -u +%s) + 2)); }
issue "$work/full.jws" --days 90 --features reports,export --edition pro
issue "$work/rs256.jws" --days 90 --alg RS256 --match all
issue "$work/compact.jws" --days 90 --compact --match 1
issue "$work/perpetual.jws" --perpetual
issue "$work/grace.jws" --valid-for 2h --grace 12h
day=86400

check full "$work/full.jws" "$soon" --trust "$root" --product "$P" --machine "current:$A"
check full-cmid "$work/full.jws" "$soon" --trust "$root" --machine "cmid:$cmid_a"
check full-no-machine "$work/full.jws" "$soon" --trust "$root"
check full-other-machine "$work/full.jws" "$soon" --trust "$root" --product "$P" --machine "current:$B"
check full-other-product "$work/full.jws" "$soon" --trust "$root" --product other-app
check full-other-root "$work/full.jws" "$soon" --trust "$work/other/root.pem"
check full-expired "$work/full.jws" $((now + 91 * day)) --trust "$root"
check full-before-signer "$work/full.jws" $((now - 3600)) --trust "$root"
check rs256-all "$work/rs256.jws" "$soon" --trust "$root" --product "$P" --machine "current:$A"
check rs256-all-other "$work/rs256.jws" "$soon" --trust "$root" --product "$P" --machine "current:$B"
check compact-with-chain "$work/compact.jws" "$soon" --trust "$root" --chain "$work/iss/chain.pem" --product "$P" --machine "current:$A"
check compact-without-chain "$work/compact.jws" "$soon" --trust "$root"
check compact-chain-other-root "$work/compact.jws" "$soon" --trust "$work/other/root.pem" --chain "$work/iss/chain.pem"
check perpetual "$work/perpetual.jws" $((now + 300 * day)) --trust "$root" --machine "cmid:$cmid_a"
check perpetual-past-signer "$work/perpetual.jws" $((now + 800 * day)) --trust "$root"
check grace-inside "$work/grace.jws" $((now + 3 * 3600)) --trust "$root"
check grace-over "$work/grace.jws" $((now + 15 * 3600)) --trust "$root"
# A forged signature (one character of the signature changed).
sed 's/\.\([A-Za-z0-9_-]\{10\}\)[A-Za-z0-9_-]/.\1A/2' "$work/full.jws" > "$work/forged.jws"
cmp -s "$work/full.jws" "$work/forged.jws" && sed -i 's/\.\([A-Za-z0-9_-]\{10\}\)A/.\1B/2' "$work/forged.jws"
check forged "$work/forged.jws" "$soon" --trust "$root"

# Edge cases: a token of the other home edited and signed again with its signer's
# key (tests/reference/mutate.py), one reading of the docs each.
quiet T token issue --request "$work/req-a.txt" --home "$work/other" --out "$work/base.jws" \
  --days 90 --features reports,export --edition pro --grace 1h
after_issue
"$PY" tests/reference/mutate.py "$work/base.jws" "$work/other/signer.key" "$work/other/root.pem" "$work/mut"
for m in "$work"/mut/*.jws; do
  check "edit $(basename "$m" .jws)" "$m" "$soon" --trust "$work/other/root.pem" --product "$P" --machine "current:$A"
done

# Delegated: an activation host's certificate (the tka delegation extension).
quiet T host init --dir "$work/host"
quiet T host certify --home "$work/iss" "${pp[@]}" --request "$work/host/host.csr" --products "$P" \
  --max-lifetime 30d --days 200 --out "$work/host.pem"
quiet T token issue --request "$work/req-a.txt" --signer-cert "$work/host.pem" --signer-key "$work/host/host.key" \
  --days 20 --out "$work/delegated.jws"
after_issue
check delegated "$work/delegated.jws" "$soon" --trust "$root" --product "$P" --machine "current:$A"
check delegated-other-product "$work/delegated.jws" "$soon" --trust "$root" --product other-app
check delegated-other-machine "$work/delegated.jws" "$soon" --trust "$root" --product "$P" --machine "current:$B"

check pinned-root "$work/full.jws" "$soon" --trust "$root" --pin "$(sha256 "$root")"
check pinned-other-root "$work/full.jws" "$soon" --trust "$root" --pin "$(sha256 "$work/other/root.pem")"

# Rotations: a new signer, a new issuing CA, a new root (cross-signed).
cp "$work/iss/signer.pem" "$work/signer-1.pem"
quiet T issuer rotate-signer --home "$work/iss" "${pp[@]}"
# The issuing CA revokes the first signer: its tokens fail on the CRL.
quiet T crl create --ca-cert "$work/iss/ca.pem" --ca-key "$work/iss/ca.key" "${pp[@]}" \
  --revoke "$(serial "$work/signer-1.pem")" --out "$work/signer-1.crl.pem"
check revoked-signer "$work/full.jws" "$soon" --trust "$root" --crl "$work/signer-1.crl.pem"
issue "$work/after-signer.jws" --days 30
check crl-spares-new-signer "$work/after-signer.jws" "$soon" --trust "$root" --crl "$work/signer-1.crl.pem"
check after-rotate-signer "$work/after-signer.jws" "$soon" --trust "$root" --machine "current:$A" --product "$P"
check old-token-after-rotate-signer "$work/full.jws" "$soon" --trust "$root"
quiet T issuer rotate-ca --home "$work/iss" "${pp[@]}"
issue "$work/after-ca.jws" --days 30 --compact
check after-rotate-ca-compact "$work/after-ca.jws" "$soon" --trust "$root" --chain "$work/iss/chain.pem"
check after-rotate-ca-compact-old-chain "$work/after-ca.jws" "$soon" --trust "$root" --chain "$work/host.pem"
quiet T issuer rotate-root --home "$work/iss" "${pp[@]}"
issue "$work/after-root.jws" --days 30
root2=$(T issuer show --home "$work/iss" | sed -n 's/^root: //p')
check after-rotate-root-new-root "$work/after-root.jws" "$soon" --trust "$root2"
check after-rotate-root-old-root "$work/after-root.jws" "$soon" --trust "$work/root-1.pem"
check old-token-new-root "$work/full.jws" "$soon" --trust "$root2"

# -----------------------------------------------------------------------------
if [ "${#disagreements[@]}" -gt 0 ]; then
  printf 'DISAGREE %s\n' "${disagreements[@]}"
fi
echo "agree: $agree of $total"
[ "$agree" -eq "$total" ]
