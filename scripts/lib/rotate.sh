# Shared body of scripts/rotate-*.sh: parse the common options, refuse a
# home path with a control character, run `tka issuer COMMAND --if-due`
# (tka decides under the home's lock whether ROLE is due; without --if-due
# with --force; with --dry-run only `tka cert needs-renewal` is asked), then
# print the home's current files, one `name: PATH` line each, for the
# names in SHOWN.
#
# Usage (from a wrapper script, which keeps its own usage text in its header):
#   rotate_main ROLE COMMAND SHOWN "$@"
# Calls the tka CLI only (`tka` from PATH, or $TKA).

rotate_main() {
  role=$1 command=$2 shown=$3
  shift 3

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
  # A line break (or any control character) in the path could forge the
  # `name: PATH` lines this script prints: refuse such a path outright.
  case $home in
    *[[:cntrl:]]*)
      printf '%s\n' "error: the home path contains a control character (a line break?): refusing it" >&2
      exit 2 ;;
  esac

  if [ "$dry" = 1 ]; then
    due=0
    if [ "$force" = 1 ]; then
      due=1
    else
      set +e
      verdict=$("$TKA" cert needs-renewal --home "$home" --role "$role")
      rc=$?
      set -e
      case $rc in
        0) log "rotation due: $verdict"; due=1 ;;
        1) log "no rotation due: $verdict" ;;
        *) log "tka cert needs-renewal failed (exit $rc)"; exit 2 ;;
      esac
    fi
    [ "$due" = 0 ] || log "dry run: would run: $TKA issuer $command --home $home"
  else
    # Whether it is due is decided by tka under the home's lock (--if-due), so
    # two runs at once rotate once; --force rotates whatever the dates say.
    args=(issuer "$command" --home "$home")
    if [ "$force" = 1 ]; then
      log "--force: rotating without asking whether it is due"
    else
      args+=(--if-due)
    fi
    log "running: $TKA ${args[*]}"
    out=$("$TKA" "${args[@]}" ${pass[@]+"${pass[@]}"})
    while IFS= read -r line; do log "$line"; done <<<"$out"
    case $out in
      "no rotation due"*) ;;
      *) log "rotated; issuance now uses the new certificates" ;;
    esac
  fi

  "$TKA" issuer show --home "$home" | grep -E "^($shown): "
}
