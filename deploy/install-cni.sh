#!/usr/bin/env bash
# Installs the Romana CNI plugin on this host: builds the `romana` binary
# (release) and installs it into the CNI plugin dir, and the example network
# configs of deploy/cni into the CNI config dir. Idempotent: what is already
# in place is left alone, and every step says what it did. Run as root.
#
#   deploy/install-cni.sh [--bin-dir DIR] [--conf-dir DIR] [--binary FILE] [--force]
#
#   --bin-dir DIR   where plugin binaries go (default /opt/cni/bin)
#   --conf-dir DIR  where network configs go (default /etc/cni/net.d)
#   --binary FILE   install this `romana` binary instead of building one
#   --force         overwrite conflists that differ from deploy/cni (by
#                   default an edited conflist is kept, and the script says so)
#
# The conflists chain the reference `portmap` and `bandwidth` plugins after
# `romana`; if they are not in the bin dir but Debian's
# containernetworking-plugins has them in /usr/lib/cni, they are linked in.
# The conflists expect romana-node's API socket at /run/romana/romana.sock
# and tenants t1 and t2 (`romanactl tenant create t1`).
set -euo pipefail

bin_dir=/opt/cni/bin
conf_dir=/etc/cni/net.d
binary=
force=false
usage() { echo "usage: $0 [--bin-dir DIR] [--conf-dir DIR] [--binary FILE] [--force]" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --bin-dir) (($# >= 2)) || usage; bin_dir=$2; shift 2 ;;
    --conf-dir) (($# >= 2)) || usage; conf_dir=$2; shift 2 ;;
    --binary) (($# >= 2)) || usage; binary=$2; shift 2 ;;
    --force) force=true; shift ;;
    *) usage ;;
  esac
done

say() { printf '==> %s\n' "$*"; }

# Paths given relative to the caller's directory, before moving to the checkout.
bin_dir=$(realpath -m -- "$bin_dir")
conf_dir=$(realpath -m -- "$conf_dir")
[[ -z $binary ]] || binary=$(realpath -m -- "$binary")
cd "$(dirname "$0")/.."

if [[ -z $binary ]]; then
  if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || { echo "no cargo: install Rust (deploy/lib/prerequisites.sh) or pass --binary" >&2; exit 1; }
  say "building romana (release)"
  cargo build --release --locked -p romana-cni --bin romana
  binary=${CARGO_TARGET_DIR:-target}/release/romana
fi
[[ -x $binary ]] || { echo "$binary is not an executable file" >&2; exit 1; }

mkdir -p "$bin_dir" "$conf_dir"

# The binary: replaced atomically (a runtime may be executing the old one).
if cmp -s "$binary" "$bin_dir/romana"; then
  say "$bin_dir/romana is up to date"
else
  install -m 0755 "$binary" "$bin_dir/.romana.new"
  mv -f "$bin_dir/.romana.new" "$bin_dir/romana"
  say "installed $bin_dir/romana"
fi

for plugin in portmap bandwidth; do
  if [[ -e $bin_dir/$plugin ]]; then
    say "$bin_dir/$plugin is present"
  elif [[ -x /usr/lib/cni/$plugin ]]; then
    ln -s "/usr/lib/cni/$plugin" "$bin_dir/$plugin"
    say "linked $bin_dir/$plugin -> /usr/lib/cni/$plugin"
  else
    say "WARNING: no $plugin plugin: the conflists chain it; install containernetworking-plugins"
  fi
done

for conflist in deploy/cni/*.conflist; do
  target=$conf_dir/$(basename "$conflist")
  if cmp -s "$conflist" "$target"; then
    say "$target is up to date"
  elif [[ -e $target ]] && ! $force; then
    say "$target differs from $conflist: kept (--force replaces it)"
  else
    install -m 0644 "$conflist" "$target"
    say "installed $target"
  fi
done
