#!/bin/sh
# Whole-process token verification against `openssl verify` of the same chain.
#
#   scripts/bench-verify.sh                  # build release, 41 pairs, then the criterion bench
#   scripts/bench-verify.sh --no-criterion   # skip the in-process figures
#
# Makes a PKI with the CLI (RSA-2048 root, issuing CA and signer), a request
# for this machine and a token, then runs, alternately and each as a whole
# process, after WARMUP untimed pairs:
#   tka token verify TOKEN --trust ROOT --product bench --machine MACHINE
#   openssl verify -CAfile ROOT -untrusted ISSUING-CA SIGNER
# PAIRS times (default 41, at least 40). MACHINE (default `current`) is
# `current` (this machine's identity is computed, from TKA_MACHINE_ID, set
# to a fixed value unless given) or `none` (no --machine).
# Both must succeed every time. Each process is started with posix_spawn
# and reaped with wait4 by one python3 process (the timer), so both carry
# the same start-up cost of the timer; wall time is from spawn to reap, CPU
# time is the child's user + system time.
#
# Prints the medians and spread (min, quartiles, max) of both, the load
# average before and after, the peak RSS of five runs of each
# (`/usr/bin/time -f %M`), then (unless --no-criterion) the in-process
# figures of `cargo bench --bench tokens` with aws-lc-rs (default features)
# and with the rsa crate (`--no-default-features --features issuer`), and
# ends with
#   ratio: X.XX      (median of the per-pair wall-time ratios tka/openssl)
# Environment: TKA (the binary; default: build release), PAIRS, WARMUP,
# MACHINE. Calls the CLI only.
set -eu

criterion=1
for a in "$@"; do
    case "$a" in
        --no-criterion) criterion=0 ;;
        *) echo "usage: $0 [--no-criterion]" >&2; exit 2 ;;
    esac
done
PAIRS=${PAIRS:-41}
WARMUP=${WARMUP:-5}
MACHINE=${MACHINE:-current}
[ "$PAIRS" -ge 40 ] || { echo "PAIRS must be at least 40" >&2; exit 2; }
case "$MACHINE" in current | none) ;; *) echo "MACHINE is current or none" >&2; exit 2 ;; esac
command -v openssl >/dev/null || { echo "openssl not found" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 not found (the timer)" >&2; exit 2; }
if [ -z "${TKA:-}" ]; then
    cargo build --release --quiet --bin tka --bin tka-full
    TKA="$(pwd)/target/release/tka"
fi

# An explicit machine identity: the request and the verification see the
# same machine here whatever the host (a container warns without one).
export TKA_MACHINE_ID="${TKA_MACHINE_ID:-bench-verify-machine}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset TKA_HOME
"$TKA" issuer init --home "$work/home" --root-bits 2048 --ca-bits 2048 --insecure-no-passphrase >"$work/init.out"
root=$(sed -n 's/^root: //p' "$work/init.out")
"$TKA" request create --product bench --text --out "$work/request.txt" >/dev/null
"$TKA" token issue --request "$work/request.txt" --home "$work/home" --days 30 --out "$work/token.jws" >/dev/null
# chain.pem: the signer certificate, then the issuing CA.
awk -v dir="$work" '/BEGIN CERTIFICATE/ { n++ } { print > (dir "/chain-" n ".pem") }' "$work/home/chain.pem"
signer="$work/chain-1.pem"
ca="$work/chain-2.pem"
openssl verify -CAfile "$root" -untrusted "$ca" "$signer" >/dev/null

if [ "$MACHINE" = none ]; then machine_args=""; else machine_args="--machine $MACHINE"; fi
# shellcheck disable=SC2086 # machine_args is two words or none
set -- "$TKA" token verify "$work/token.jws" --trust "$root" --product bench $machine_args
echo "tka:     $*" | sed "s|$work|\$WORK|g"
echo "openssl: openssl verify -CAfile ROOT -untrusted ISSUING-CA SIGNER ($(openssl version | cut -d' ' -f1-2))"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
RATIO_FILE="$work/ratio" python3 - "$PAIRS" "$WARMUP" "$root" "$ca" "$signer" "$@" <<'EOF'
import os, shutil, statistics, sys, time

pairs, warmup = int(sys.argv[1]), int(sys.argv[2])
root, ca, signer = sys.argv[3:6]
tka = sys.argv[6:]
ossl = [shutil.which("openssl"), "verify", "-CAfile", root, "-untrusted", ca, signer]
null = os.open(os.devnull, os.O_WRONLY)

def run(argv):
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null, 1)])
    _, status, ru = os.wait4(pid, 0)
    wall = (time.perf_counter_ns() - t0) / 1e6
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv[0]} failed (exit {os.waitstatus_to_exitcode(status)})")
    return wall, (ru.ru_utime + ru.ru_stime) * 1e3

for _ in range(warmup):
    run(tka); run(ossl)
t_wall, t_cpu, o_wall, o_cpu, ratios = [], [], [], [], []
for _ in range(pairs):
    tw, tc = run(tka)
    ow, oc = run(ossl)
    t_wall.append(tw); t_cpu.append(tc); o_wall.append(ow); o_cpu.append(oc)
    ratios.append(tw / ow)

def spread(v):
    q = statistics.quantiles(v, n=4)
    return f"median {statistics.median(v):6.2f}  (min {min(v):.2f}, quartiles {q[0]:.2f}-{q[2]:.2f}, max {max(v):.2f})"

print(f"{pairs} pairs after {warmup} warm-up pairs, milliseconds:")
print(f"  tka wall      {spread(t_wall)}")
print(f"  openssl wall  {spread(o_wall)}")
print(f"  tka CPU       {spread(t_cpu)}")
print(f"  openssl CPU   {spread(o_cpu)}")
q = statistics.quantiles(ratios, n=4)
print(f"  per-pair ratio tka/openssl (wall): quartiles {q[0]:.2f}-{q[2]:.2f}, min {min(ratios):.2f}, max {max(ratios):.2f}")
with open(os.environ["RATIO_FILE"], "w") as f:
    f.write(f"{statistics.median(ratios):.2f}\n")
EOF
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
# Peak RSS as `/usr/bin/time -f %M` reports it (a forked child: the timer's
# posix_spawn would charge python's own pages to the child's ru_maxrss).
if [ -x /usr/bin/time ]; then
    peak() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; }
    echo "peak RSS, KB (5 runs each): tka $(for _ in 1 2 3 4 5; do peak "$@"; done | sort -n | tr '\n' ' ')," \
        "openssl $(for _ in 1 2 3 4 5; do peak openssl verify -CAfile "$root" -untrusted "$ca" "$signer"; done | sort -n | tr '\n' ' ')"
fi
if [ "$criterion" = 1 ]; then
    echo "in process (cargo bench --bench tokens, criterion: low / estimate / high), both verifiers:"
    for features in "" "--no-default-features --features issuer"; do
        # shellcheck disable=SC2086 # features is several words or none
        cargo bench --quiet --bench tokens $features -- --noplot 2>/dev/null |
            awk '/^[a-z_]+ \(/ { name = $0 } /time:/ { sub(/^ +/, ""); print "  " name ": " $0 }'
    done
fi
# The ratio last: the median of the per-pair ratios.
echo "ratio: $(cat "$work/ratio")"
