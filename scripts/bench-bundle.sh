#!/bin/sh
# `tka activate --bundle` on a large bundle: wall time and peak memory.
#
#   scripts/bench-bundle.sh             # 1,000,000 lines, 5 rounds
#   N=100000 ROUNDS=3 scripts/bench-bundle.sh
#
# Issues two real tokens (RSA-2048 issuer made here): one for this machine
# (identity TKA_MACHINE_ID=bench-machine-0001, the same on every host) and
# one for a generated foreign machine. The bundle is the foreign line N-1
# times, then this machine's line last: every line is read and its labels
# parsed, N-1 are skipped as another machine's, the last is verified and
# installed (the worst place for it). Each round activates into a fresh
# store under /usr/bin/time -v and prints the wall time and the peak
# resident set; the end prints the median, minimum and maximum. The bundle
# is read from the page cache (written just before, and re-read each round).
# Environment: TKA (the binary; default: build release), N, ROUNDS.
set -eu

N=${N:-1000000}
ROUNDS=${ROUNDS:-5}
if [ -z "${TKA:-}" ]; then
    cargo build --release --quiet --bin tka --bin tka-full
    TKA="$(pwd)/target/release/tka"
fi
[ -x /usr/bin/time ] || { echo "/usr/bin/time (GNU time) not found" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset TKA_HOME TKA_STORE
export TKA_MACHINE_ID=bench-machine-0001
"$TKA" issuer init --home "$work/home" --root-bits 2048 --ca-bits 2048 --insecure-no-passphrase >/dev/null
"$TKA" request create --product bench --text --out "$work/this.txt" >/dev/null
"$TKA" request generate-test --product bench --count 1 --out "$work/other.txt" >/dev/null
cat "$work/other.txt" "$work/this.txt" >"$work/reqs.txt"
"$TKA" entitlement add --ledger "$work/l.sqlite" --product bench --machines 10 --name bench >/dev/null
"$TKA" token issue-bulk --home "$work/home" --ledger "$work/l.sqlite" --entitlement bench \
    --requests-file "$work/reqs.txt" --bundle "$work/two.jsonl" --quiet >/dev/null
# Line 1 is the foreign machine's, line 2 this machine's (input order).
awk -v n="$N" 'NR == 1 { for (i = 1; i < n; i++) print } NR == 2 { print }' "$work/two.jsonl" >"$work/big.jsonl"
echo "bundle: $(wc -l <"$work/big.jsonl") lines, $(wc -c <"$work/big.jsonl") bytes; $ROUNDS rounds (load $(cut -d' ' -f1 /proc/loadavg))"

: >"$work/secs"
: >"$work/kb"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    rm -rf "$work/store"
    "$TKA" trust add "$work/home/root.pem" --store "$work/store" >/dev/null
    /usr/bin/time -v -o "$work/time.txt" "$TKA" activate --bundle "$work/big.jsonl" --store "$work/store" >"$work/out.txt"
    grep -q '^activated: bench$' "$work/out.txt" || { echo "round $r did not activate" >&2; cat "$work/out.txt" >&2; exit 1; }
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$work/time.txt")
    kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time.txt")
    echo "$secs" >>"$work/secs"
    echo "$kb" >>"$work/kb"
    echo "round $r: ${secs} s, peak RSS ${kb} KiB; $(sed -n 's/^bundle: //p' "$work/out.txt")"
    r=$((r + 1))
done

stats() { sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "median %s, min %s, max %s\n", m, v[1], v[NR] }'; }
echo "wall time (s): $(stats <"$work/secs")"
echo "peak RSS (KiB): $(stats <"$work/kb")"
