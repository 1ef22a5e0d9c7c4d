#!/usr/bin/env bash
# Builds the Debian package with `cargo deb` ([package.metadata.deb] in
# Cargo.toml): the release binary, the man page, the shell completions and
# the systemd units. With --install (CI): installs it with dpkg, checks that
# `tka --version`, the man page and the completions are in place, and
# removes it again.
#
#   scripts/build-deb.sh [--install]
#
# cargo-deb is installed once (`cargo install cargo-deb --locked`, kept in
# ~/.cargo/bin) when it is missing; the seconds it took are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
install=false
[ "${1:-}" = "--install" ] && install=true

if ! command -v cargo-deb >/dev/null 2>&1; then
  start=$(date +%s)
  cargo install cargo-deb --locked --version 3.8.0 --quiet
  echo "cargo-deb installed in $(( $(date +%s) - start ))s"
fi

cargo build --release --locked --quiet
assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets"
target/release/tka man | gzip -9n > "$assets/tka.1.gz"
target/release/tka completions bash > "$assets/tka.bash"
target/release/tka completions zsh > "$assets/_tka"
target/release/tka completions fish > "$assets/tka.fish"
for unit in tka-host tka-agent; do
  # The units name the binary where `cargo install` puts it; the package puts it in /usr/bin.
  sed 's#/usr/local/bin/tka#/usr/bin/tka#g' \
    "packaging/$unit.service" > "$assets/$unit.service"
done
deb=$(cargo deb --no-build --locked --quiet)
echo "package: $deb"

if $install; then
  dpkg -i "$deb"
  trap 'dpkg -r tka >/dev/null' EXIT
  test -x /usr/libexec/tka/tka-full
  /usr/bin/tka --version  # the front runs the full command from /usr/libexec/tka/
  test -f /usr/share/man/man1/tka.1.gz
  test -f /usr/share/bash-completion/completions/tka
  test -f /lib/systemd/system/tka-host.service
  grep -q '^ExecStart=/usr/bin/tka ' /lib/systemd/system/tka-agent.service
  echo "installed and ran: $(/usr/bin/tka --version)"
fi
