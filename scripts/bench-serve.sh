#!/usr/bin/env bash
# Online activation service load test, loopback only; stops by itself and
# cleans up.
#
#   scripts/bench-serve.sh
#
# Sets up an issuer home and an entitlement with a product key (product
# `bench`, MACHINES seats) with the CLI, makes MACHINES one-line requests
# (one TKA_MACHINE_ID each), starts `tka serve` on 127.0.0.1 (no rate
# limits; the home's SQLite ledger, or LEDGER=postgres://...), and runs
# examples/host_load.rs with the key: CLIENTS concurrent keep-alive
# connections sending REQUESTS `POST /v1/activate` in all (the first round
# takes the seats, the rest are free re-activations; every one signs and
# records a token). Prints activations/s and p50/p99 latency.
# Environment: TKA (the binary; default: build release), CLIENTS (50),
# REQUESTS (2000), MACHINES (200), LEDGER (default: the home's file).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-50}
REQUESTS=${REQUESTS:-2000}
MACHINES=${MACHINES:-200}

if [ -z "${TKA:-}" ]; then
    cargo build --release --quiet --bin tka --bin tka-full
    TKA="$PWD/target/release/tka"
fi

work=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

rustc -O --edition 2021 examples/host_load.rs -o "$work/host_load"

unset TKA_PASSPHRASE TKA_HOME TKA_STORE TKA_ACTIVATION_KEY
ledger=()
[ -n "${LEDGER:-}" ] && ledger=(--ledger "$LEDGER")
"$TKA" issuer init --home "$work/iss" --insecure-no-passphrase > /dev/null
key=$("$TKA" entitlement add --home "$work/iss" "${ledger[@]}" --product bench --machines "$MACHINES" --key \
    | sed -n 's/^key: //p')

for i in $(seq 1 "$MACHINES"); do
    TKA_MACHINE_ID="bench-online-$i" "$TKA" request create --product bench --text --out "$work/r$i.txt" > /dev/null
    cat "$work/r$i.txt" >> "$work/requests.txt"
    echo >> "$work/requests.txt"
done

"$TKA" serve --home "$work/iss" "${ledger[@]}" --listen 127.0.0.1:0 --rate-per-address 0 --rate-per-key 0 \
    > "$work/serve.out" 2> "$work/serve.log" &
server=$!
addr=""
for _ in $(seq 1 100); do
    addr=$(sed -n 's/^listening: //p' "$work/serve.out")
    [ -n "$addr" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 2; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "bench-serve: the service did not start" >&2; exit 2; }

echo "== tka serve: $addr, $CLIENTS clients, $REQUESTS activations over $MACHINES machines"
HOST_LOAD_KEY="$key" timeout 300 "$work/host_load" "$addr" "$work/requests.txt" "$CLIENTS" "$REQUESTS"
kill -TERM "$server"
wait "$server"
server=""
"$TKA" entitlement show 1 --home "$work/iss" "${ledger[@]}"
