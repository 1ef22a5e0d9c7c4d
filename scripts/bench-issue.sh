#!/bin/sh
# Bulk issuance speed against the machine's raw RSA-2048 signing speed.
#
#   scripts/bench-issue.sh                # 10,000 tokens, empty ledger
#   scripts/bench-issue.sh --big-ledger   # also against a ledger holding 1,000,000 tokens (a few minutes)
#
# Runs `openssl speed -seconds 5 -multi 2 rsa2048` (sign/s), then
# `tka token issue-bulk` of N generated requests (default 10000) with an
# RSA-2048 signer, ledger writes and token files included, and prints
#   openssl: X sign/s
#   tka: Y tokens/s
#   ratio with one file per token: ...
#   ratio: Y/X        (the --bundle run: ledger writes and one output file)
# Environment: TKA (the binary; default: build release), N (requests),
# CORES (openssl -multi, default 2). Calls the CLI only.
set -eu

big=0
for a in "$@"; do
    case "$a" in
        --big-ledger) big=1 ;;
        *) echo "usage: $0 [--big-ledger]" >&2; exit 2 ;;
    esac
done
N=${N:-10000}
CORES=${CORES:-2}
if [ -z "${TKA:-}" ]; then
    cargo build --release --quiet
    TKA="$(pwd)/target/release/tka"
fi
command -v openssl >/dev/null || { echo "openssl not found" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset TKA_HOME
"$TKA" issuer init --home "$work/home" --root-bits 2048 --ca-bits 2048 --insecure-no-passphrase >/dev/null
"$TKA" entitlement add --home "$work/home" --product bench --machines 5000000 --name bench >/dev/null
"$TKA" entitlement add --ledger "$work/bundle.sqlite" --product bench --machines 5000000 --name bench >/dev/null
"$TKA" request generate-test --product bench --count "$N" --out "$work/reqs.txt" >/dev/null

now() { date +%s.%N; }

# issue_run LEDGER OUTPUT-FLAG PATH: prints tokens/s of one issue-bulk run
issue_run() {
    t0=$(now)
    "$TKA" token issue-bulk --home "$work/home" --ledger "$1" --entitlement bench \
        --requests-file "$work/reqs.txt" "$2" "$3" --quiet >/dev/null
    t1=$(now)
    awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }'
}

x=$(openssl speed -seconds 5 -multi "$CORES" rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ { v = $6 } END { print v }')
echo "openssl: $x sign/s (openssl speed -seconds 5 -multi $CORES rsa2048)"
yf=$(issue_run "$work/home/ledger.sqlite" --out "$work/out")
echo "tka: $yf tokens/s (token issue-bulk --out DIR: $N requests, RSA-2048 PS256, ledger rows and one file per token)"
rm -rf "$work/out"
y=$(issue_run "$work/bundle.sqlite" --bundle "$work/bundle.jsonl")
echo "tka: $y tokens/s (token issue-bulk --bundle FILE: same batch, fresh ledger, ledger rows and one bundle file)"
awk -v x="$x" -v y="$yf" 'BEGIN { printf "ratio with one file per token: %.2f\n", y / x }'

if [ "$big" = 1 ]; then
    "$TKA" ledger bench-fill --ledger "$work/big.sqlite" --count 1000000 >/dev/null
    "$TKA" entitlement add --ledger "$work/big.sqlite" --product bench --machines 5000000 --name bench >/dev/null
    yb=$(issue_run "$work/big.sqlite" --bundle "$work/bundle-big.jsonl")
    echo "tka: $yb tokens/s (--bundle, same batch, ledger already holding 1000000 tokens)"
    awk -v a="$y" -v b="$yb" 'BEGIN { printf "big-ledger change: %+.1f%%\n", (b - a) * 100 / a }'
fi
awk -v x="$x" -v y="$y" 'BEGIN { printf "ratio: %.2f\n", y / x }'
