#!/usr/bin/env bash
# The verifier for embedding: `--no-default-features` builds the core and the
# machine wing only. Checks that
#   1. its dependency tree holds none of the issuer's or the CLI's crates,
#   2. its tests pass (the library's unit tests, Wycheproof, the attack corpus (vectors), the differential
#      tests against OpenSSL, machine identity, the store and the layout rules): the rsa crate verifies
#      here, aws-lc-rs in the default build, with the same verdicts,
#   3. examples/check_activation (an application checking its activation)
#      builds with it, and says "activated" for a token the tka CLI issued
#      and activated (a full one and a compact one, activated with --chain),
#      and "not activated" (exit 1) under another vendor root.
# Prints the example's binary size (stripped), which the README quotes.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== dependencies of the verifier-only build"
forbidden='^(rusqlite|rayon|clap|cryptoki|aws-lc-rs|aws-lc-sys|indicatif|rpassword|tokio|axum|hyper|hyper-util|tracing|tracing-subscriber|hickory-resolver|hickory-proto|hickory-net|postgres|tokio-postgres|rustls|tokio-rustls) '
if cargo tree --locked -e normal --no-default-features --prefix none | grep -E "$forbidden"; then
  echo "FAIL: the verifier-only build pulls in the crates above" >&2
  exit 1
fi
echo "none of rusqlite, rayon, clap, cryptoki, aws-lc-rs, tokio, axum, hyper, tracing, hickory, postgres, rustls"

echo "== tests of the verifier-only build"
cargo test --locked --no-default-features --features test-hooks --lib --test wycheproof --test vectors --test differential --test machine --test store --test layout --quiet

echo "== examples/check_activation with the verifier-only build"
cargo build --locked --release --quiet --no-default-features --example check_activation
example="$PWD/target/release/examples/check_activation"
strip -o "$PWD/target/release/examples/check_activation.stripped" "$example"
echo "binary size: $(stat -c %s "$example") bytes, stripped $(stat -c %s "$example.stripped") bytes"

cargo build --locked --release --quiet --bin tka --bin tka-full
TKA="$PWD/target/release/tka"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077
printf 'verifier check %s\n' "$RANDOM$RANDOM" > "$work/passphrase"
export TKA_MACHINE_ID="verifier-check-$RANDOM$RANDOM"
"$TKA" issuer init --home "$work/issuer" --org "Verifier Check" --passphrase-file "$work/passphrase" > "$work/init.out"
root=$(sed -n 's/^root: //p' "$work/init.out")
"$TKA" request create --product check-app --text --out "$work/request.txt"
"$TKA" token issue --request "$work/request.txt" --home "$work/issuer" --passphrase-file "$work/passphrase" \
  --days 30 --out "$work/token.jws"
"$TKA" trust add "$root" --store "$work/store" > /dev/null
"$TKA" activate "$work/token.jws" --store "$work/store" > /dev/null
fp=$(openssl x509 -in "$root" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g')

out=$("$example" "$work/store" check-app "$fp")
echo "$out"
case "$out" in "activated: check-app "*) ;; *) echo "FAIL: expected activated" >&2; exit 1 ;; esac

# A compact token (no x5c): the store keeps the chain given once with --chain.
"$TKA" request create --product check-compact --text --out "$work/request-compact.txt"
"$TKA" token issue --request "$work/request-compact.txt" --home "$work/issuer" --passphrase-file "$work/passphrase" \
  --days 30 --compact --out "$work/compact.jws"
echo "compact token: $(tr -d '\n' < "$work/compact.jws" | wc -c) bytes, full token: $(tr -d '\n' < "$work/token.jws" | wc -c) bytes"
"$TKA" activate "$work/compact.jws" --chain "$work/issuer/chain.pem" --store "$work/store" > /dev/null
out=$("$example" "$work/store" check-compact "$fp")
echo "$out"
case "$out" in "activated: check-compact "*) ;; *) echo "FAIL: expected the compact token activated" >&2; exit 1 ;; esac

other=$(printf '%064d' 0)
set +e
out=$("$example" "$work/store" check-app "$other")
rc=$?
set -e
echo "$out"
if [ "$rc" != 1 ] || [[ "$out" != "not activated: "* ]]; then
  echo "FAIL: under another pinned root, expected exit 1 and 'not activated', got $rc" >&2
  exit 1
fi
echo "ok"
