#!/bin/sh
# Runs every fuzz target for SECONDS (default 600) each, one after another,
# with one job, after seeding the corpora (fuzz/seed-corpus.sh).
# The machine has only a stable toolchain; RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz pass its nightly flags (-Zsanitizer=address).
#   fuzz/run-all.sh            # 10 minutes per target
#   SECONDS_PER_TARGET=60 fuzz/run-all.sh
set -eu
cd "$(dirname "$0")"
per=${SECONDS_PER_TARGET:-600}
[ -d corpus/token ] || ./seed-corpus.sh
for t in token request cert_chain revocation; do
    case $t in
        token|revocation) max=70000 ;;
        request) max=17000 ;;
        cert_chain) max=10000 ;;
    esac
    echo "== $t: $per s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" -- -max_total_time="$per" -max_len="$max" -print_final_stats=1 \
        > "fuzz-$t.log" 2>&1 || { echo "$t: CRASH, see fuzz/fuzz-$t.log and fuzz/artifacts/$t/"; }
    tail -n 15 "fuzz-$t.log" | grep -E "stat::number_of_executed_units|stat::new_units_added|Done|SUMMARY|panicked" || true
done
