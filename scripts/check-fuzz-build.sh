#!/usr/bin/env bash
# CI check of the fuzz targets (fuzz/): they build, on the stable toolchain
# and without cargo-fuzz, as plain binaries (libFuzzer linked, no
# sanitizer, no coverage instrumentation), and each one replays its seed
# corpus (fuzz/seed-corpus.sh): libFuzzer given files instead of a
# directory runs each input once and exits non-zero on the first crash.
# Real fuzzing runs are fuzz/run-all.sh (cargo-fuzz, AddressSanitizer).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
# The release binary (scripts/check-no-test-hooks.sh built it before, in CI)
# makes the request seeds, so no debug build is added for them.
cargo build --locked --release --quiet --bin tka --bin tka-full
TKA_BIN="$PWD/target/release/tka" fuzz/seed-corpus.sh
cargo build --locked --release --quiet --manifest-path fuzz/Cargo.toml --bins
for t in token request cert_chain revocation; do
  shopt -s nullglob
  seeds=(fuzz/corpus/"$t"/*)
  shopt -u nullglob
  if [ "${#seeds[@]}" -eq 0 ]; then
    echo "FAIL: no seeds for $t in fuzz/corpus/$t" >&2
    exit 1
  fi
  if ! fuzz/target/release/"$t" "${seeds[@]}" > "fuzz/replay-$t.log" 2>&1; then
    tail -n 30 "fuzz/replay-$t.log" >&2
    echo "FAIL: fuzz target $t crashed on a seed (fuzz/replay-$t.log)" >&2
    exit 1
  fi
  ran=$(grep -c '^Executed ' "fuzz/replay-$t.log" || true)
  if [ "$ran" -ne "${#seeds[@]}" ]; then
    echo "FAIL: $t ran $ran of ${#seeds[@]} seeds (fuzz/replay-$t.log)" >&2
    exit 1
  fi
  echo "$t: ${#seeds[@]} seeds replayed"
done
echo "fuzz targets built and replayed in $((SECONDS - start)) s"
