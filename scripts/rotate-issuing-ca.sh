#!/usr/bin/env bash
# Rotates the issuing CA of an issuer home when it is due: a new issuing CA from
# the (offline) root key, and a new signer under it. Tokens issued before keep
# verifying on machines that were never touched: they carry their own chain.
#
# Usage: rotate-issuing-ca.sh [--force] [--dry-run] [--passphrase-file FILE] HOME
#
#   --force            rotate now, whatever `tka cert needs-renewal` says
#   --dry-run          only report whether a rotation is due and what would run
#   --passphrase-file  passphrase of the home's keys (else TKA_PASSPHRASE)
#
# A thin recipe over the tka CLI (`tka` from PATH, or $TKA), for cron:
# it logs what it did on standard error and ends by printing the current
# files on standard output, one `name: PATH` line each (ca|signer|chain).
# Exit status: 0 done (rotated or not due); non-zero on any error (the tka
# error line says what), with the home left as it was.
set -euo pipefail

TKA=${TKA:-tka}
prog=$(basename "$0")
log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$prog" "$*" >&2; }
usage() { sed -n '/^# Usage:/,/^set -euo/{/^set/d;p;}' "$0" | sed 's/^# \{0,1\}//'; }

force=0 dry=0 home=""
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --dry-run) dry=1 ;;
    --passphrase-file) [ $# -ge 2 ] || { usage >&2; exit 2; }; pass=(--passphrase-file "$2"); shift ;;
    -h|--help) usage; exit 0 ;;
    -*) log "unknown option $1"; usage >&2; exit 2 ;;
    *) [ -z "$home" ] || { usage >&2; exit 2; }; home=$1 ;;
  esac
  shift
done
[ -n "$home" ] || { usage >&2; exit 2; }

due=0
if [ "$force" = 1 ]; then
  log "--force: rotating without asking needs-renewal"
  due=1
else
  set +e
  verdict=$("$TKA" cert needs-renewal --home "$home" --role ca)
  rc=$?
  set -e
  case $rc in
    0) log "rotation due: $verdict"; due=1 ;;
    1) log "no rotation due: $verdict" ;;
    *) log "tka cert needs-renewal failed (exit $rc)"; exit 2 ;;
  esac
fi

if [ "$due" = 1 ]; then
  if [ "$dry" = 1 ]; then
    log "dry run: would run: $TKA issuer rotate-ca --home $home"
  else
    log "running: $TKA issuer rotate-ca --home $home"
    "$TKA" issuer rotate-ca --home "$home" ${pass[@]+"${pass[@]}"} | while IFS= read -r line; do log "$line"; done
    log "rotated; issuance now uses the new certificates"
  fi
fi

"$TKA" issuer show --home "$home" | grep -E '^(ca|signer|chain): '
