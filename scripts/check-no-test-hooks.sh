#!/usr/bin/env bash
# Checks that a shipped build of tka has no test hooks (cargo feature
# `test-hooks`, which `cargo test` turns on): TKA_SYSROOT must not change
# the machine identity the binary reads, and TKA_CRASH_AT_WRITE must not
# stop a write half-way. Fails if a hook leaks.
#
#   scripts/check-no-test-hooks.sh          builds `cargo build --release` and checks it
#   TKA=path/to/tka scripts/check-no-test-hooks.sh   checks that binary and the
#                                                    tka-full next to it
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TKA:-}" ]; then
  cargo build --release --locked --quiet
  TKA="$PWD/target/release/tka"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The hooks' names are not even in the binaries (the `tka` front and the
# full command it runs), nor is the PKCS#11 fault injection (making key
# removal fail).
full="$(dirname "$TKA")/tka-full"
[ -x "$full" ] || fail "no tka-full next to $TKA"
for bin in "$TKA" "$full"; do
  for hook in TKA_SYSROOT TKA_CRASH_AT_WRITE TKA_TEST_FAIL_KEY_REMOVAL; do
    if grep -q "$hook" "$bin"; then
      fail "$bin contains the test hook $hook (built with --features test-hooks?)"
    fi
  done
done

# A fake machine whose values no real machine has: a leaking hook would
# report its identity (or an identity where the real machine has none).
fake="$work/fake-root"
mkdir -p "$fake/etc" "$fake/sys/class/dmi/id"
echo 0123456789abcdef0123456789abcdef > "$fake/etc/machine-id"
echo 01234567-89AB-CDEF-0123-456789ABCDEF > "$fake/sys/class/dmi/id/product_uuid"
echo FAKE-SERIAL-0001 > "$fake/sys/class/dmi/id/product_serial"

probe() {
  set +e
  env -u TKA_MACHINE_ID "$@" "$TKA" machine id --product hook-check --json > "$work/out" 2> /dev/null
  echo "exit $?" >> "$work/out"
  set -e
  cat "$work/out"
}
real=$(probe env -u TKA_SYSROOT)
faked=$(probe env TKA_SYSROOT="$fake")
if [ "$real" != "$faked" ]; then
  printf 'without TKA_SYSROOT:\n%s\nwith TKA_SYSROOT=%s:\n%s\n' "$real" "$fake" "$faked" >&2
  fail "$TKA honours TKA_SYSROOT: a user can make it read a fake machine"
fi
# A crash hook that leaked would end `issuer init` at its first write.
if ! TKA_CRASH_AT_WRITE=1 TKA_PASSPHRASE=hook-check "$TKA" issuer init --home "$work/home" \
    --root-bits 2048 --ca-bits 2048 > /dev/null 2>&1; then
  fail "$TKA honours TKA_CRASH_AT_WRITE: its writes can be stopped from the environment"
fi
echo "ok: $TKA and $full ignore TKA_SYSROOT and TKA_CRASH_AT_WRITE (no test hooks)"
