#!/bin/sh
# Bulk issuance speed against the machine's raw RSA-2048 signing speed.
#
#   scripts/bench-issue.sh                # 10,000 tokens, empty ledgers
#   scripts/bench-issue.sh --big-ledger   # also into a ledger holding 1,000,000 tokens (a few minutes)
#   scripts/bench-issue.sh --postgres     # --bundle into a PostgreSQL ledger instead of SQLite files
#
# Each round runs, one after the other, `openssl speed -seconds 5 -multi 2
# rsa2048` (sign/s) and `tka token issue-bulk` of N generated requests
# (default 10000) with an RSA-2048 signer into a fresh ledger: once with
# --out DIR (one file per token), once with --bundle FILE (one output file).
# Every tka run is timed whole: process start, reading the requests, ledger
# writes (synchronous=FULL) and output files included. With --big-ledger the
# round also issues the same batch (--bundle) into a copy of a ledger
# already holding 1,000,000 tokens, against an empty one in the same round.
# With --postgres the round issues the batch (--bundle) into a fresh
# database of a throwaway PostgreSQL cluster the script starts (initdb in
# its temporary directory, loopback port, as the `postgres` user when run as
# root) and stops at exit; the ratio is that run's against openssl's.
#
# The machine is shared and noisy, so each ratio is taken within its round
# and the result is the median over ROUNDS rounds (default 3). Prints every
# round, then the medians, and ends with
#   ratio: Y/X        (median of the per-round --bundle ratios)
# Environment: TKA (the binary; default: build release), N (requests),
# CORES (openssl -multi, default 2), ROUNDS. Calls the CLI only.
set -eu

big=0
postgres=0
for a in "$@"; do
    case "$a" in
        --big-ledger) big=1 ;;
        --postgres) postgres=1 ;;
        *) echo "usage: $0 [--big-ledger | --postgres]" >&2; exit 2 ;;
    esac
done
[ "$big" = 1 ] && [ "$postgres" = 1 ] && { echo "usage: $0 [--big-ledger | --postgres]" >&2; exit 2; }
N=${N:-10000}
CORES=${CORES:-2}
ROUNDS=${ROUNDS:-3}
if [ -z "${TKA:-}" ]; then
    cargo build --release --quiet
    TKA="$(pwd)/target/release/tka"
fi
command -v openssl >/dev/null || { echo "openssl not found" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset TKA_HOME TKA_LEDGER_URL
if [ "$postgres" = 1 ]; then
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$pgbin" ] && [ -x "$pgbin/initdb" ] || { echo "PostgreSQL not found (apt-get install postgresql)" >&2; exit 2; }
    pg() { "$pgbin/$@"; }
    if [ "$(id -u)" = 0 ]; then
        pg() { runuser -u postgres -- "$pgbin/$@"; }
        chmod 755 "$work"
    fi
    mkdir "$work/pgdata"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$work/pgdata"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pg initdb -D "$work/pgdata" -A trust -U postgres >/dev/null
    pg pg_ctl -D "$work/pgdata" -w -l "$work/pgdata/log" \
        -o "-p $port -k $work/pgdata -c listen_addresses=127.0.0.1" start >/dev/null
    trap 'pg pg_ctl -D "$work/pgdata" -m fast -w stop >/dev/null 2>&1; rm -rf "$work"' EXIT
fi
"$TKA" issuer init --home "$work/home" --root-bits 2048 --ca-bits 2048 --insecure-no-passphrase >/dev/null
"$TKA" request generate-test --product bench --count "$N" --out "$work/reqs.txt" >/dev/null
if [ "$big" = 1 ]; then
    "$TKA" ledger bench-fill --ledger "$work/big0.sqlite" --count 1000000 >/dev/null
    "$TKA" entitlement add --ledger "$work/big0.sqlite" --product bench --machines 5000000 --name bench >/dev/null
fi

now() { date +%s.%N; }

# fresh_ledger PATH: an empty ledger with the entitlement
fresh_ledger() {
    rm -f "$1" "$1-wal" "$1-shm"
    "$TKA" entitlement add --ledger "$1" --product bench --machines 5000000 --name bench >/dev/null
}

# fresh_pg NAME: an empty PostgreSQL database with the entitlement; prints its URL
fresh_pg() {
    pg createdb -h 127.0.0.1 -p "$port" -U postgres "$1"
    "$TKA" entitlement add --ledger "postgres://postgres@127.0.0.1:$port/$1" --product bench --machines 5000000 \
        --name bench >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/$1"
}

# issue_run LEDGER OUTPUT-FLAG PATH: prints tokens/s of one issue-bulk run.
# `sync` first (untimed): the previous run's files still being written back
# by the kernel are not this run's work.
issue_run() {
    sync
    t0=$(now)
    "$TKA" token issue-bulk --home "$work/home" --ledger "$1" --entitlement bench \
        --requests-file "$work/reqs.txt" "$2" "$3" --quiet >/dev/null
    t1=$(now)
    awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

if [ "$postgres" = 1 ]; then
    echo "$ROUNDS rounds of: openssl speed -seconds 5 -multi $CORES rsa2048; tka token issue-bulk of $N requests" \
        "(RSA-2048 PS256, ledger rows included) with --bundle FILE into a PostgreSQL ledger (loopback)"
    : >"$work/r_pg"
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        x=$(openssl speed -seconds 5 -multi "$CORES" rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ { v = $6 } END { print v }')
        url=$(fresh_pg "bench$r")
        y=$(issue_run "$url" --bundle "$work/bundle.jsonl")
        awk -v x="$x" -v y="$y" 'BEGIN { printf "%.4f\n", y / x }' >>"$work/r_pg"
        echo "round $r (load $load): openssl $x sign/s, tka --bundle into PostgreSQL $y tokens/s," \
            "ratio $(tail -n 1 "$work/r_pg" | awk '{ printf "%.2f", $1 }')"
        r=$((r + 1))
    done
    median <"$work/r_pg" | awk '{ printf "ratio: %.2f\n", $1 }'
    exit 0
fi
echo "$ROUNDS rounds of: openssl speed -seconds 5 -multi $CORES rsa2048; tka token issue-bulk of $N requests" \
    "(RSA-2048 PS256, ledger rows included) with --out DIR, then --bundle FILE$([ "$big" = 1 ] && echo ', then --bundle into a 1,000,000-token ledger')"
: >"$work/r_files"
: >"$work/r_bundle"
: >"$work/r_big"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    x=$(openssl speed -seconds 5 -multi "$CORES" rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ { v = $6 } END { print v }')
    fresh_ledger "$work/files.sqlite"
    rm -rf "$work/out"
    yf=$(issue_run "$work/files.sqlite" --out "$work/out")
    fresh_ledger "$work/bundle.sqlite"
    y=$(issue_run "$work/bundle.sqlite" --bundle "$work/bundle.jsonl")
    line="round $r (load $load): openssl $x sign/s, tka --out $yf tokens/s, tka --bundle $y tokens/s"
    awk -v x="$x" -v y="$yf" 'BEGIN { printf "%.4f\n", y / x }' >>"$work/r_files"
    awk -v x="$x" -v y="$y" 'BEGIN { printf "%.4f\n", y / x }' >>"$work/r_bundle"
    line="$line, ratios $(tail -n 1 "$work/r_files" | awk '{ printf "%.2f", $1 }') / $(tail -n 1 "$work/r_bundle" | awk '{ printf "%.2f", $1 }')"
    if [ "$big" = 1 ]; then
        cp "$work/big0.sqlite" "$work/big.sqlite"
        rm -f "$work/big.sqlite-wal" "$work/big.sqlite-shm"
        sync
        fresh_ledger "$work/bundle.sqlite"
        ye=$(issue_run "$work/bundle.sqlite" --bundle "$work/bundle.jsonl")
        yb=$(issue_run "$work/big.sqlite" --bundle "$work/bundle-big.jsonl")
        awk -v a="$ye" -v b="$yb" 'BEGIN { printf "%.4f\n", (b - a) * 100 / a }' >>"$work/r_big"
        line="$line; empty ledger $ye tokens/s, 1,000,000-token ledger $yb tokens/s ($(tail -n 1 "$work/r_big" | awk '{ printf "%+.1f%%", $1 }'))"
    fi
    echo "$line"
    r=$((r + 1))
done
echo "median ratio with one file per token: $(median <"$work/r_files" | awk '{ printf "%.2f", $1 }')"
if [ "$big" = 1 ]; then
    echo "median big-ledger change: $(median <"$work/r_big" | awk '{ printf "%+.1f%%", $1 }')"
fi
median <"$work/r_bundle" | awk '{ printf "ratio: %.2f\n", $1 }'
