#!/usr/bin/env bash
# Builds the image localhost/romana-node:latest as an OCI archive, without a
# registry (the method of deploy/lab/build-images.sh), and with --lab imports
# it into every host's containerd of a `romana-lab --kubernetes` lab.
#
#   deploy/kubernetes/image.sh [--lab NAME]
#
# The image holds:
#
#   /usr/local/bin/romana-node, romanactl, romana   the release binaries
#   /usr/sbin/xtables-nft-multi and its iptables*, ip6tables* names
#                                  (the nf_tables backend, as on the host, so
#                                  the node's rules and kube-proxy's meet in
#                                  one ruleset), with the xtables extensions
#   /usr/sbin/ipset
#   /opt/romana/cni/romana, portmap, loopback
#                                  what the DaemonSet's install-cni copies to
#                                  the host's /opt/cni/bin (portmap and
#                                  loopback are Debian's
#                                  containernetworking-plugins)
#
# each with the shared libraries ldd names, in Debian's merged-/usr layout.
# Entrypoint: romana-node.
#
# The binaries come from ROMANA_BIN_DIR (default: target/release of this
# checkout). The archive goes to
# $ROMANA_K8S_CACHE/images/romana-node-<hash of the inputs>/romana-node.tar
# (ROMANA_K8S_CACHE defaults to /var/cache/romana-k8s); a second run with the
# same inputs builds nothing. Prints the archive's path on stdout.
#
# --lab NAME imports the archive into every host of lab NAME (its lab.json in
# ROMANA_LAB_DIR, default /run/romana-lab, romana-lab's --dir) through
# `romana-lab exec` (ROMANA_LAB, default target/release/romana-lab) and checks
# that each host lists the image.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
CACHE=${ROMANA_K8S_CACHE:-/var/cache/romana-k8s}
BIN_DIR=${ROMANA_BIN_DIR:-$repo/target/release}
LAB_BIN=${ROMANA_LAB:-$repo/target/release/romana-lab}
LAB_DIR=${ROMANA_LAB_DIR:-/run/romana-lab}
IMAGE=localhost/romana-node:latest
oci_archive=$repo/deploy/lab/images/oci-archive.py
log() { printf '==> %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
usage() { echo "usage: $0 [--lab NAME]" >&2; exit 2; }

lab=
while (($#)); do
  case "$1" in
    --lab) (($# >= 2)) || usage; lab=$2; shift 2 ;;
    -h | --help) usage ;;
    *) usage ;;
  esac
done

# --- Inputs -----------------------------------------------------------------

for tool in python3 ldd sha256sum strip; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
[[ -f $oci_archive ]] || die "$oci_archive is missing"
for binary in romana-node romanactl romana; do
  [[ -x $BIN_DIR/$binary ]] ||
    die "$BIN_DIR/$binary is missing: run \`cargo build --release\` (or set ROMANA_BIN_DIR)"
done
xtables_multi=/usr/sbin/xtables-nft-multi
xtables_extensions=/usr/lib/x86_64-linux-gnu/xtables
[[ -x $xtables_multi && -d $xtables_extensions ]] ||
  die "$xtables_multi or $xtables_extensions is missing (apt-get install iptables)"
[[ -x /usr/sbin/ipset ]] || die "/usr/sbin/ipset is missing (apt-get install ipset)"
for plugin in portmap loopback; do
  [[ -x /usr/lib/cni/$plugin ]] ||
    die "/usr/lib/cni/$plugin is missing (apt-get install containernetworking-plugins)"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A snapshot of the binaries, so that a `cargo build` finishing meanwhile
# cannot give the hash of one binary and the image of another.
mkdir -p "$work/bin"
# Debug information is dropped (a debug build's romana-node is ~300 MB);
# symbols stay, so backtraces still name functions.
for binary in romana-node romanactl romana; do
  cp "$BIN_DIR/$binary" "$work/bin/$binary"
  strip --strip-debug "$work/bin/$binary"
done

# Every executable and xtables extension the image carries (paths here).
programs=(
  "$work/bin/romana-node" "$work/bin/romanactl" "$work/bin/romana"
  "$xtables_multi" /usr/sbin/ipset /usr/lib/cni/portmap /usr/lib/cni/loopback
  "$xtables_extensions"/*.so
)

# The shared libraries (absolute paths) `ldd` names for the programs.
libraries_of() {
  local program listing
  for program in "$@"; do
    # ldd fails on a static binary ("not a dynamic executable"): no libraries.
    listing=$(ldd "$program" 2>/dev/null) || continue
    if grep -q 'not found' <<<"$listing"; then
      die "$program needs a library this machine lacks: $(grep 'not found' <<<"$listing" | head -1)"
    fi
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$listing"
  done | sort -u
}
# (A command substitution, not `< <(...)`, so that its die stops the script.)
library_list=$(libraries_of "${programs[@]}") || exit 1
[[ -n $library_list ]] || die "ldd found no libraries for the image's programs"
mapfile -t libraries <<<"$library_list"

key=$(
  {
    cat "${BASH_SOURCE[0]}" "$oci_archive"
    # By content, under a name that does not depend on the build's
    # temporary directory.
    for file in "${programs[@]}" /etc/protocols /etc/services "${libraries[@]}"; do
      printf '%s ' "${file#"$work"/}"
      sha256sum <"$file"
    done
  } | sha256sum | cut -c1-16
)
out="$CACHE/images/romana-node-$key"
archive="$out/romana-node.tar"

# --- The image --------------------------------------------------------------

if [[ -f $archive ]]; then
  log "$IMAGE already built: $archive"
else
  log "building $IMAGE from $BIN_DIR"
  root="$work/rootfs"
  mkdir -p "$root"/usr/{bin,sbin,lib64,local/bin} "$root"/usr/lib/x86_64-linux-gnu \
    "$root"/{etc,tmp,run,proc,sys,dev,root,var/lib} "$root/opt/romana/cni"
  chmod 1777 "$root/tmp"
  # Debian's merged /usr: ldd's /lib/... paths and /lib64's loader resolve.
  for top in bin sbin lib lib64; do
    ln -s "usr/$top" "$root/$top"
  done

  for binary in romana-node romanactl romana; do
    cp "$work/bin/$binary" "$root/usr/local/bin/$binary"
  done
  cp "$work/bin/romana" /usr/lib/cni/portmap /usr/lib/cni/loopback "$root/opt/romana/cni/"

  cp "$xtables_multi" "$root/usr/sbin/xtables-nft-multi"
  # The names Debian installs for the nf_tables backend (the plain names are
  # alternatives there; here they are fixed to nft).
  for family in iptables ip6tables; do
    for suffix in "" -save -restore; do
      ln -s xtables-nft-multi "$root/usr/sbin/$family$suffix"
      ln -s xtables-nft-multi "$root/usr/sbin/$family-nft$suffix"
    done
  done
  mkdir -p "$root$xtables_extensions"
  cp "$xtables_extensions"/*.so "$root$xtables_extensions/"
  cp /usr/sbin/ipset "$root/usr/sbin/ipset"

  for library in "${libraries[@]}"; do
    mkdir -p "$root$(dirname "$library")"
    cp -L "$library" "$root$library"
  done

  printf 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  # iptables resolves protocol and service names (`-p tcp`, `--dport http`)
  # through NSS; glibc's files backend is part of libc.
  printf 'passwd: files\ngroup: files\nhosts: files dns\nprotocols: files\nservices: files\n' \
    >"$root/etc/nsswitch.conf"
  cp /etc/protocols /etc/services "$root/etc/"

  mkdir -p "$out"
  python3 "$oci_archive" "$root" "$IMAGE" "$archive" --entrypoint '["/usr/local/bin/romana-node"]'
  log "$IMAGE built: $archive ($(du -h "$archive" | cut -f1))"
fi

# --- Import into a lab ------------------------------------------------------

if [[ -n $lab ]]; then
  [[ -x $LAB_BIN ]] || die "$LAB_BIN is missing: run \`cargo build --release\` (or set ROMANA_LAB)"
  case "$archive" in
    /run/* | /tmp/*) die "$archive is under /run or /tmp, which every lab host covers with its own" ;;
  esac
  state="$LAB_DIR/lab.json"
  [[ -f $state ]] || die "no lab in $LAB_DIR ($state is missing; set ROMANA_LAB_DIR to the lab's --dir)"
  host_list=$(python3 - "$state" "$lab" <<'EOF'
import json, sys
state = json.load(open(sys.argv[1]))
if state["config"]["name"] != sys.argv[2]:
    sys.exit(f"{sys.argv[1]} is lab {state['config']['name']!r}, not {sys.argv[2]!r}")
if not state.get("kubernetes"):
    sys.exit(f"lab {sys.argv[2]!r} was started without --kubernetes")
for host in state["kubernetes"]["hosts"]:
    print(host["name"])
EOF
  ) || die "cannot read the hosts of lab $lab from $state"
  mapfile -t hosts <<<"$host_list"
  [[ -n $host_list ]] || die "lab $lab has no hosts"
  ctr=(ctr --address /run/containerd/containerd.sock -n k8s.io)
  for host in "${hosts[@]}"; do
    log "importing $IMAGE into $host of lab $lab"
    "$LAB_BIN" --name "$lab" --dir "$LAB_DIR" exec "$host" -- "${ctr[@]}" images import "$archive" >&2
    listed=$("$LAB_BIN" --name "$lab" --dir "$LAB_DIR" exec "$host" -- "${ctr[@]}" images ls -q)
    grep -qx "$IMAGE" <<<"$listed" || die "$host of lab $lab does not list $IMAGE after the import"
  done
  log "$IMAGE is on ${hosts[*]}"
fi

echo "$archive"
