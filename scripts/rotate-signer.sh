#!/usr/bin/env bash
# Rotates the token signer of an issuer home when it is due: a new signer key and
# certificate under the current issuing CA (the old one moves to HOME/retired/;
# tokens it signed keep verifying). Due = `tka cert needs-renewal --home HOME`
# (66% of its life used, or it can no longer cover a standard token).
#
# Usage: rotate-signer.sh [--force] [--dry-run] [--passphrase-file FILE] HOME
#
#   --force            rotate now, whatever `tka cert needs-renewal` says
#   --dry-run          only report whether a rotation is due and what would run
#   --passphrase-file  passphrase of the home's keys (else TKA_PASSPHRASE)
#
# A thin recipe over the tka CLI (`tka` from PATH, or $TKA), for cron:
# it logs what it did on standard error and ends by printing the current
# files on standard output, one `name: PATH` line each (signer|chain).
# Exit status: 0 done (rotated or not due); non-zero on any error (the tka
# error line says what), with the home left as it was.
set -euo pipefail

# shellcheck source=lib/rotate.sh
. "$(dirname "$0")/lib/rotate.sh"
rotate_main signer rotate-signer 'signer|chain' "$@"
