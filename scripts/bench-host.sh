#!/usr/bin/env bash
# Activation host load test, loopback only; stops by itself and cleans up.
#
#   scripts/bench-host.sh
#
# Sets up an issuer home and a host directory with the CLI (product
# `bench`, threshold 1: every request is an activation and signs a token),
# makes MACHINES one-line requests (`tka request create --text`, one
# TKA_MACHINE_ID each), starts `tka host serve` on 127.0.0.1 (no rate
# limit), and runs examples/host_load.rs: CLIENTS concurrent keep-alive
# connections sending REQUESTS `POST /v1/activate` in all (each keeping
# DEPTH requests outstanding, HTTP/1.1 pipelining; 1: none). Then, in the
# same run, `openssl speed -seconds 3 -multi CORES rsa2048`. Prints
# activations/s, p50 and p99 latency, the CPU time per activation of the
# host (user + system time of all its threads, /proc/PID/stat, around the
# load run) and of the load generator (its own, the same way), openssl's
# signs/s, and ends with
#   ratio: X.XX       (activations/s / openssl signs/s; goal >= 0.7)
# The CPU figures are the steadier measure on a shared machine: other work
# on the cores moves the throughput and openssl's figure, not them.
# Environment: TKA (the binary; default: build release), CLIENTS (16),
# REQUESTS (6000), DEPTH (1), MACHINES (200), CORES (2); THREADS=1 also
# prints the host's CPU per activation by thread name.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-16}
REQUESTS=${REQUESTS:-6000}
DEPTH=${DEPTH:-1}
MACHINES=${MACHINES:-200}
CORES=${CORES:-2}

if [ -z "${TKA:-}" ]; then
    cargo build --release --quiet --bin tka --bin tka-full
    TKA="$PWD/target/release/tka"
fi
command -v openssl >/dev/null || { echo "bench-host: openssl is needed" >&2; exit 2; }

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

# The load generator uses only the standard library: rustc builds it in seconds.
rustc -O --edition 2021 examples/host_load.rs -o "$work/host_load"

unset TKA_PASSPHRASE TKA_HOME TKA_STORE
"$TKA" issuer init --home "$work/iss" --insecure-no-passphrase > /dev/null
"$TKA" host init --dir "$work/host" > /dev/null
"$TKA" host certify --home "$work/iss" --request "$work/host/host.csr" --products bench \
    --max-lifetime 180d --days 365 --out "$work/host.pem" > /dev/null
"$TKA" host install "$work/host.pem" --dir "$work/host" > /dev/null

for i in $(seq 1 "$MACHINES"); do
    TKA_MACHINE_ID="bench-machine-$i" "$TKA" request create --product bench --text --out "$work/r$i.txt" > /dev/null
    cat "$work/r$i.txt" >> "$work/requests.txt"
    echo >> "$work/requests.txt"
done

"$TKA" host serve --dir "$work/host" --listen 127.0.0.1:0 --threshold bench=1 --rate 0 \
    > "$work/serve.out" 2> "$work/serve.log" &
server=$!
addr=""
for _ in $(seq 1 100); do
    addr=$(sed -n 's/^listening: //p' "$work/serve.out")
    [ -n "$addr" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 2; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "bench-host: the host did not start" >&2; exit 2; }

# User and system CPU time of a process (all its threads, live and ended), clock ticks.
cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }
# Per thread name (THREADS=1): user + system ticks of the live threads.
thread_ticks() { cat /proc/"$1"/task/*/stat | sed 's/^[0-9]* (\([^)]*\)) /\1 /' | awk '{ t[$1] += $13 + $14 } END { for (n in t) print n, t[n] }' | sort; }

echo "== host: $addr, $CLIENTS clients, $REQUESTS activations over $MACHINES machines"
timeout 60 "$work/host_load" "$addr" "$work/requests.txt" 2 "$MACHINES" > /dev/null # warm-up
before=$(cpu_ticks "$server")
machine_before=$(head -1 /proc/stat)
[ -z "${THREADS:-}" ] || thread_ticks "$server" > "$work/threads.before"
timeout 300 "$work/host_load" "$addr" "$work/requests.txt" "$CLIENTS" "$REQUESTS" "$DEPTH" | tee "$work/load.out"
after=$(cpu_ticks "$server")
machine_after=$(head -1 /proc/stat)
activated=$(sed -n 's/^activated: //p' "$work/load.out")
hz=$(getconf CLK_TCK)
if [ -n "${THREADS:-}" ]; then
    thread_ticks "$server" | join -a 1 - "$work/threads.before" |
        awk -v hz="$hz" -v n="$activated" '{ printf "  thread %s: %.0f µs/activation\n", $1, ($2 - $3) * 1e6 / hz / n }'
fi
echo "$before $after" | awk -v hz="$hz" -v n="$activated" '{ u = ($3 - $1) * 1e6 / hz / n; s = ($4 - $2) * 1e6 / hz / n
    printf "host CPU µs/activation: %.0f (user %.0f, system %.0f)\n", u + s, u, s }'
# The whole machine during the load run (/proc/stat): busy and idle CPU time,
# and what other processes took (the host and the load generator left out).
echo "$machine_before $machine_after $before $after" | awk -v hz="$hz" -v n="$activated" -v cl="$(sed -n 's/^client CPU µs\/activation: //p' "$work/load.out")" '{
    for (i = 2; i <= 9; i++) { t0 += $i; t1 += $(i + 11) }
    idle = ($(16) + $(17)) - ($5 + $6); busy = (t1 - t0) - idle
    host = ($25 + $26) - ($23 + $24); client = cl * n * hz / 1e6
    printf "machine during the load: %.0f%% idle; other processes %.0f%% of the CPU time\n", 100 * idle / (t1 - t0), 100 * (busy - host - client) / (t1 - t0) }'
kill -TERM "$server"
wait "$server"
server=""
"$TKA" host status --dir "$work/host"

echo "== openssl speed -seconds 3 -multi $CORES rsa2048"
openssl speed -seconds 3 -multi "$CORES" rsa2048 2> /dev/null > "$work/openssl.out"
signs=$(awk '/sign\/s/ { for (i = 1; i <= NF; i++) if ($i == "sign/s") col = i - NF }
             /^rsa +2048 +bits/ && col { print $(NF + col) }' "$work/openssl.out" | tail -1)
echo "openssl signs/s: $signs"
rate=$(sed -n 's/^activations\/s: //p' "$work/load.out")
awk -v a="$rate" -v s="$signs" 'BEGIN { printf "ratio: %.2f\n", a / s }'
