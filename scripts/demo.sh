#!/usr/bin/env bash
# The whole tka flow on this machine, in temporary directories:
# issuer PKI -> activation request -> token -> trust root -> activate -> status.
# Uses only the tka CLI (built here in release mode). Leaves nothing behind
# unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
TKA="$PWD/target/release/tka"
work=$(mktemp -d)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s\n' "$*"; }

# The demo's key passphrase lives in a 0600 file, never on the command line.
umask 077
printf 'demo passphrase %s\n' "$RANDOM$RANDOM" > "$work/passphrase"

step "Admin workstation: create an issuer home (root CA, issuing CA, token signer)"
"$TKA" issuer init --home "$work/issuer" --org "Demo Corp" --passphrase-file "$work/passphrase" | tee "$work/init.out"
root=$(sed -n 's/^root: //p' "$work/init.out")

step "Air-gapped machine: this machine's identity and an activation request"
"$TKA" machine id --product demo-app
"$TKA" request create --product demo-app --text --out "$work/request.txt"
echo "request (one line, $(wc -c < "$work/request.txt") bytes):"
cat "$work/request.txt"

step "Admin workstation: issue a token for the request"
"$TKA" token issue --request "$work/request.txt" --home "$work/issuer" \
  --passphrase-file "$work/passphrase" --days 90 --features reports,export --out "$work/token.jws"

step "Machine: trust the root (once), then activate"
store="$work/store"
"$TKA" trust add "$root" --store "$store"
"$TKA" activate "$work/token.jws" --store "$store"

step "Machine: status"
"$TKA" status --store "$store"

step "A forged copy is refused (exit 1)"
sed 's/\.[A-Za-z0-9_-]\{8\}/.AAAAAAAA/2' "$work/token.jws" > "$work/forged.jws"
if "$TKA" token verify "$work/forged.jws" --trust "$root"; then
  echo "forged token accepted: demo FAILED" >&2
  exit 1
fi
echo
echo "demo complete: issuer, request, token, activation and status all worked"
