#!/usr/bin/env bash
# Rotates the root of an issuer home when it is due: a new root, a cross-certificate
# (the new root signed by the old root), a new issuing CA and signer. Machines
# import the bundle printed at the end (root + cross) with
#   tka trust add ROOT --cross CROSS
# and, once every token they hold was re-issued, may drop the old root.
#
# Usage: rotate-root.sh [--force] [--dry-run] [--passphrase-file FILE] HOME
#
#   --force            rotate now, whatever `tka cert needs-renewal` says
#   --dry-run          only report whether a rotation is due and what would run
#   --passphrase-file  passphrase of the home's keys (else TKA_PASSPHRASE)
#
# A thin recipe over the tka CLI (`tka` from PATH, or $TKA), for cron:
# it logs what it did on standard error and ends by printing the current
# files on standard output, one `name: PATH` line each (root|cross|ca|signer|chain).
# Exit status: 0 done (rotated or not due); non-zero on any error (the tka
# error line says what), with the home left as it was.
set -euo pipefail

# shellcheck source=lib/rotate.sh
. "$(dirname "$0")/lib/rotate.sh"
rotate_main root rotate-root 'root|cross|ca|signer|chain' "$@"
