#!/usr/bin/env bash
# Regenerates the TEST-ONLY keys in certs/test/ (see certs/test/README.md).
set -euo pipefail
cd "$(dirname "$0")/../certs/test"
for k in root intermediate signer signer2 other; do
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$k.key"
done
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out weak1024.key
chmod 600 ./*.key
