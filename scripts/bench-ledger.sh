#!/bin/sh
# A big ledger: generation, issuance into it, look-ups and renewal.
#
#   scripts/bench-ledger.sh        # COUNT=1000000 synthetic tokens, N=100000 real ones
#
# 1. Fills a ledger with COUNT synthetic tokens by SQL (hidden helper
#    `tka ledger bench-fill`, ~2.2 KB per token on disk) and prints the
#    time and the disk size.
# 2. Issues N generated requests (`tka token issue-bulk --bundle`, RSA-2048
#    PS256, --days 20) into an empty ledger and into the big one, back to
#    back, timed whole: tokens/s and the change.
# 3. Times, as whole processes (median, min and max of RUNS runs, one python3
#    process spawning them), on the big ledger (COUNT + N + 10 tokens):
#    `ledger show SERIAL` (a synthetic and a real token), `ledger list
#    --machine CMID`, `entitlement show E` for an entitlement of 10 machines
#    and for the one of N machines (which prints N seats).
# 4. Renews the N tokens (`tka token renew-bulk --expiring-within 30d
#    --bundle`; the synthetic ones expire in about 170 days) and compares its
#    rate with the issuance into the big ledger.
# 5. Prints the query plans (EXPLAIN QUERY PLAN, with sqlite3 when installed)
#    of those look-ups.
# Environment: TKA (the binary; default: build release), COUNT, N, RUNS,
# WORK (a directory to keep; default a temporary one, removed at the end).
set -eu

COUNT=${COUNT:-1000000}
N=${N:-100000}
RUNS=${RUNS:-11}
if [ -z "${TKA:-}" ]; then
    cargo build --release --quiet --bin tka
    TKA="$(pwd)/target/release/tka"
fi
command -v python3 >/dev/null || { echo "python3 not found (the timer)" >&2; exit 2; }
if [ -n "${WORK:-}" ]; then
    work=$WORK
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
unset TKA_HOME
big="$work/big.sqlite"
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

"$TKA" issuer init --home "$work/home" --root-bits 2048 --ca-bits 2048 --insecure-no-passphrase >/dev/null
rm -f "$big" "$big-wal" "$big-shm"
t0=$(now)
"$TKA" ledger bench-fill --ledger "$big" --count "$COUNT" >/dev/null
t1=$(now)
echo "bench-fill $COUNT tokens: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f s", b - a }'), ledger $(du -m "$big" | cut -f1) MiB ($(awk -v s="$(stat -c %s "$big")" -v n="$COUNT" 'BEGIN { printf "%.0f", s / n }') bytes per token)"

"$TKA" request generate-test --product bench --count "$N" --out "$work/reqs.txt" >/dev/null
"$TKA" request generate-test --product small --count 10 --out "$work/small.txt" >/dev/null
for l in "$big" "$work/empty.sqlite"; do
    "$TKA" entitlement add --ledger "$l" --product bench --machines 5000000 --name bench >/dev/null
done
"$TKA" entitlement add --ledger "$big" --product small --machines 10 --name small >/dev/null
issue() { # LEDGER BUNDLE: tokens/s
    sync
    a=$(now)
    "$TKA" token issue-bulk --home "$work/home" --ledger "$1" --entitlement bench --days 20 \
        --requests-file "$work/reqs.txt" --bundle "$2" --quiet >/dev/null
    b=$(now)
    rate "$N" "$a" "$b"
}
e=$(issue "$work/empty.sqlite" "$work/empty.jsonl")
rm -f "$work/empty.sqlite" "$work/empty.sqlite-wal" "$work/empty.sqlite-shm" "$work/empty.jsonl"
b=$(issue "$big" "$work/big.jsonl")
echo "issue-bulk of $N (--bundle): empty ledger $e tokens/s, $COUNT-token ledger $b tokens/s ($(awk -v a="$e" -v b="$b" 'BEGIN { printf "%+.1f%%", (b - a) * 100 / a }'))"
"$TKA" token issue-bulk --home "$work/home" --ledger "$big" --entitlement small --days 200 \
    --requests-file "$work/small.txt" --bundle "$work/small.jsonl" --quiet >/dev/null

# A real token of the big batch, and a synthetic one.
serial=$(head -n 1 "$work/big.jsonl" | python3 -c 'import json, sys; print(json.load(sys.stdin)["serial"])')
cmid=$(head -n 1 "$work/big.jsonl" | python3 -c 'import json, sys; print(json.load(sys.stdin)["cmid"])')
fill_serial=$serial
if command -v sqlite3 >/dev/null; then
    fill_serial=$(sqlite3 "$big" "SELECT serial FROM tokens WHERE product = 'bench-fill' LIMIT 1 OFFSET $((COUNT / 2))")
fi
echo "look-ups on the ledger of $((COUNT + N + 10)) tokens, whole processes, $RUNS runs, ms (load $(cut -d' ' -f1 /proc/loadavg)):"
python3 - "$RUNS" "$TKA" "$big" "$serial" "$fill_serial" "$cmid" <<'EOF'
import os, statistics, sys, time
runs, tka, big, serial, fill_serial, cmid = int(sys.argv[1]), *sys.argv[2:]
null = os.open(os.devnull, os.O_WRONLY)
cases = [
    (f"ledger show SERIAL (a real token)", ["ledger", "show", serial, "--ledger", big]),
    (f"ledger show SERIAL (a synthetic token)", ["ledger", "show", fill_serial, "--ledger", big]),
    (f"ledger list --machine CMID", ["ledger", "list", "--machine", cmid, "--ledger", big]),
    (f"entitlement show small (10 seats)", ["entitlement", "show", "small", "--ledger", big]),
    (f"entitlement show bench (every seat of the batch printed)", ["entitlement", "show", "bench", "--ledger", big]),
]
for name, args in cases:
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(tka, [tka, *args], os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null, 1)])
        _, status, _ = os.wait4(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"tka {' '.join(args)} failed")
        times.append((time.perf_counter_ns() - t0) / 1e6)
    times = times[1:]  # the first run warms the page cache
    print(f"  {name}: median {statistics.median(times):.1f} (min {min(times):.1f}, max {max(times):.1f})")
EOF

sync
a=$(now)
"$TKA" token renew-bulk --home "$work/home" --ledger "$big" --expiring-within 30d --bundle "$work/renew.jsonl" --quiet >/dev/null
z=$(now)
renewed=$(wc -l <"$work/renew.jsonl")
r=$(rate "$renewed" "$a" "$z")
echo "renew-bulk --expiring-within 30d: $renewed tokens, $r tokens/s, $(awk -v r="$r" -v b="$b" 'BEGIN { printf "%.2f", r / b }') of issue-bulk into the same ledger"

if command -v sqlite3 >/dev/null; then
    echo "query plans (EXPLAIN QUERY PLAN):"
    sel="SELECT t.serial FROM tokens t JOIN jws_headers h ON h.id = t.header_id LEFT JOIN revocations r ON r.serial = t.serial"
    for q in "$sel WHERE t.serial = 'S'" \
        "$sel WHERE 1 AND t.cmid = 'C' ORDER BY t.issued_at, t.serial" \
        "SELECT cmid, counted_at FROM seats WHERE entitlement_id = 1 ORDER BY counted_at, cmid" \
        "$sel WHERE t.released_at IS NULL AND r.serial IS NULL AND t.expires IS NOT NULL AND t.expires <= 1 AND (NULL IS NULL OR t.entitlement_id = NULL) AND (NULL IS NULL OR t.product = NULL) AND NOT EXISTS (SELECT 1 FROM tokens n LEFT JOIN revocations nr ON nr.serial = n.serial WHERE n.cmid = t.cmid AND n.product = t.product AND +n.entitlement_id IS t.entitlement_id AND n.released_at IS NULL AND nr.serial IS NULL AND n.serial != t.serial AND (n.expires IS NULL OR n.expires > t.expires OR (n.expires = t.expires AND n.serial > t.serial))) ORDER BY t.expires, t.serial"; do
        echo "  $q" | cut -c1-150
        sqlite3 "$big" "EXPLAIN QUERY PLAN $q" | sed 's/^/    /'
    done
fi
