#!/usr/bin/env bash
# The whole tka flow on this machine, in temporary directories:
# issuer PKI -> activation request -> token -> trust root -> activate -> status.
# Uses only the tka CLI (built here in release mode). Leaves nothing behind
# unless KEEP=1.
#
#   scripts/demo.sh            keys in encrypted PKCS#8 files
#   scripts/demo.sh --pkcs11   keys generated on a throwaway SoftHSM2 token
#                              (needs `apt install softhsm2`)
#   scripts/demo.sh --host     the isolated-LAN flow: a delegated activation
#                              host on loopback, three machines, a threshold
#   scripts/demo.sh --online   online activation with a product key: an
#                              entitlement of 2 machines, `tka serve` on
#                              loopback, `tka activate --online`
set -euo pipefail
cd "$(dirname "$0")/.."
pkcs11=0
mode=token
case "${1:-}" in
  "") ;;
  --pkcs11) pkcs11=1 ;;
  --host) mode=host ;;
  --online) mode=online ;;
  *) echo "usage: $0 [--pkcs11 | --host | --online]" >&2; exit 2 ;;
esac

cargo build --release --quiet
TKA="$PWD/target/release/tka"
work=$(mktemp -d)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s\n' "$*"; }

# The demo's key passphrase lives in a 0600 file, never on the command line.
umask 077
printf 'demo passphrase %s\n' "$RANDOM$RANDOM" > "$work/passphrase"

if [ "$mode" = host ]; then
  step "Admin workstation: an issuer home"
  "$TKA" issuer init --home "$work/issuer" --org "Demo Corp" --passphrase-file "$work/passphrase" | tee "$work/init.out"
  root=$(sed -n 's/^root: //p' "$work/init.out")

  step "Activation host: its key and a host request (a PKCS#10 CSR)"
  "$TKA" host init --dir "$work/host" | tee "$work/host-init.out"
  hostreq=$(sed -n 's/^request: //p' "$work/host-init.out")

  step "Admin workstation: delegate demo-app to the host, tokens of at most 180 days"
  "$TKA" host certify --home "$work/issuer" --passphrase-file "$work/passphrase" --request "$hostreq" \
    --products demo-app --max-lifetime 180d --days 365 --out "$work/host.pem"
  "$TKA" host install "$work/host.pem" --dir "$work/host"

  step "Activation host: serve on loopback, threshold 3 machines"
  "$TKA" host serve --dir "$work/host" --listen 127.0.0.1:0 --threshold demo-app=3 \
    > "$work/serve.out" 2> "$work/serve.log" &
  server=$!
  trap 'kill "$server" 2>/dev/null || true; [ "${KEEP:-0}" = 1 ] || rm -rf "$work"' EXIT
  for _ in $(seq 100); do grep -q '^listening: ' "$work/serve.out" && break; sleep 0.1; done
  addr=$(sed -n 's/^listening: //p' "$work/serve.out" | head -1)
  echo "host listening on $addr"

  machine() { # N ARGS...: run tka as machine N with its own store and explicit identity
    local n=$1; shift
    TKA_MACHINE_ID="demo-lan-machine-$n" TKA_STORE="$work/machine$n" "$TKA" "$@"
  }
  for n in 1 2 3; do machine "$n" trust add "$root" >/dev/null; done

  step "Machines 1 and 2 ask: below the threshold (exit 1, count: N of 3)"
  for n in 1 2; do
    if machine "$n" agent once --product demo-app --host "$addr"; then
      echo "machine $n activated below the threshold: demo FAILED" >&2; exit 1
    fi
  done
  step "Machine 3 asks: the threshold is reached, it is activated"
  machine 3 agent once --product demo-app --host "$addr"
  step "Machine 1 retries (its agent would, 2 hours later): activated"
  machine 1 agent once --product demo-app --host "$addr"
  machine 1 status --product demo-app

  step "Activation host: status"
  "$TKA" host status --dir "$work/host"

  step "Machine 2 gives its activation back early"
  machine 2 agent return --product demo-app --host "$addr"
  "$TKA" host status --dir "$work/host"

  kill -TERM "$server"; wait "$server"
  echo
  echo "demo complete (activation host): delegation, threshold, activation, status and early return all worked"
  exit 0
fi

if [ "$mode" = online ]; then
  step "Vendor: an issuer home and an entitlement of 2 machines with a product key"
  "$TKA" issuer init --home "$work/issuer" --org "Demo Corp" --passphrase-file "$work/passphrase" | tee "$work/init.out"
  root=$(sed -n 's/^root: //p' "$work/init.out")
  "$TKA" entitlement add --home "$work/issuer" --product demo-app --machines 2 --name demo-2 --key > "$work/ent.out"
  sed 's/^key: .*/key: (printed once; kept in a 0600 file)/' "$work/ent.out"
  sed -n 's/^key: //p' "$work/ent.out" > "$work/key"

  step "Vendor: the online activation service on loopback"
  "$TKA" serve --home "$work/issuer" --passphrase-file "$work/passphrase" --listen 127.0.0.1:0 \
    > "$work/serve.out" 2> "$work/serve.log" &
  server=$!
  trap 'kill "$server" 2>/dev/null || true; [ "${KEEP:-0}" = 1 ] || rm -rf "$work"' EXIT
  for _ in $(seq 100); do grep -q '^listening: ' "$work/serve.out" && break; sleep 0.1; done
  url="http://$(sed -n 's/^listening: //p' "$work/serve.out" | head -1)"
  echo "service at $url"

  machine() { # N ARGS...: run tka as machine N with its own store and explicit identity
    local n=$1; shift
    TKA_MACHINE_ID="demo-online-machine-$n" TKA_STORE="$work/machine$n" "$TKA" "$@"
  }
  for n in 1 2 3; do machine "$n" trust add "$root" >/dev/null; done

  step "Machines 1 and 2: activate online with the key; the tokens verify"
  for n in 1 2; do
    machine "$n" activate --online "$url" --key-file "$work/key" --product demo-app
    machine "$n" status --product demo-app
  done

  step "Machine 3: refused, the entitlement is exhausted (exit 1)"
  if machine 3 activate --online "$url" --key-file "$work/key" --product demo-app; then
    echo "machine 3 should have been refused" >&2; exit 1
  fi

  step "Machine 1 re-activates (a re-imaged machine): free"
  machine 1 activate --online "$url" --key-file "$work/key" --product demo-app >/dev/null
  "$TKA" entitlement show demo-2 --home "$work/issuer"

  step "A typo in the key is caught on the machine, before any network call (exit 2)"
  key=$(cat "$work/key")
  last=${key: -1}; [ "$last" = A ] && typo="${key%?}B" || typo="${key%?}A"
  if TKA_ACTIVATION_KEY="$typo" machine 3 activate --online "$url" --product demo-app; then
    echo "the typo should have been caught" >&2; exit 1
  fi

  kill -TERM "$server"; wait "$server"
  echo
  echo "demo complete (online): product key, online activation, refusal at the count, free re-activation and an offline typo check all worked"
  exit 0
fi

if [ "$pkcs11" = 1 ]; then
  module=""
  for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so; do
    [ -e "$m" ] && module=$m && break
  done
  if [ -z "$module" ] || ! command -v softhsm2-util >/dev/null; then
    echo "SoftHSM2 is not installed (apt install softhsm2)" >&2
    exit 2
  fi
  step "Admin workstation: a throwaway SoftHSM2 token (a smart card or HSM in real life)"
  mkdir "$work/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" > "$work/softhsm2.conf"
  export SOFTHSM2_CONF="$work/softhsm2.conf"
  printf 'demo-pin-%s\n' "$RANDOM$RANDOM" > "$work/pin"
  softhsm2-util --init-token --free --label "Demo Issuer" --pin "$(cat "$work/pin")" --so-pin "so-$RANDOM$RANDOM" >/dev/null
  "$TKA" pkcs11 list --module "$module"
  uri="pkcs11:token=Demo%20Issuer?module-path=$module&pin-source=file:$work/pin"

  step "Admin workstation: an issuer home whose three keys are generated on the token"
  "$TKA" issuer init --home "$work/issuer" --org "Demo Corp" --pkcs11 "$uri" | tee "$work/init.out"
  "$TKA" pkcs11 list --module "$module" --login --pin-file "$work/pin"
else
  step "Admin workstation: create an issuer home (root CA, issuing CA, token signer)"
  "$TKA" issuer init --home "$work/issuer" --org "Demo Corp" --passphrase-file "$work/passphrase" | tee "$work/init.out"
fi
root=$(sed -n 's/^root: //p' "$work/init.out")

step "Air-gapped machine: this machine's identity and an activation request"
"$TKA" machine id --product demo-app
"$TKA" request create --product demo-app --text --out "$work/request.txt"
echo "request (one line, $(wc -c < "$work/request.txt") bytes):"
cat "$work/request.txt"

step "Admin workstation: issue a token for the request"
# A machine with no hardware anchor readable here (a container without DMI,
# disk serial or physical NIC) makes a weak request, which an issuer signs
# only when told to; the demo says so rather than fail.
weak=()
if "$TKA" machine id --product demo-app --json | grep -q '"binding": *"weak"'; then
  echo "note: this machine's identity is weak (no hardware anchor readable): issuing with --allow-weak-binding"
  weak=(--allow-weak-binding)
fi
"$TKA" token issue --request "$work/request.txt" --home "$work/issuer" "${weak[@]}" \
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
if [ "$pkcs11" = 1 ]; then
  echo "demo complete (keys on a PKCS#11 token): issuer, request, token, activation and status all worked"
else
  echo "demo complete: issuer, request, token, activation and status all worked"
fi
