#!/usr/bin/env bash
# Builds the lab's container images as OCI archives, without a registry:
#
#   localhost/pause:3.10          the sandbox image (images/pause.c, static)
#   localhost/romana-test:latest  Debian's static busybox (sh, ping, nc,
#                                 httpd, ... on PATH and at /bin/busybox),
#                                 netcat-openbsd as `nc` (UDP: `nc -u`) with
#                                 its libraries, udp-echo (images/udp-echo.c)
#                                 dns-server (images/dns-server.c: every
#                                 A query answered with the address given)
#                                 and netpol-agent (images/netpol-agent.c:
#                                 the NetworkPolicy tests' server and prober)
#
# into $ROMANA_K8S_CACHE/images/<hash of the inputs>/, so a second run builds
# nothing. Prints that directory (pause.tar, romana-test.tar) on stdout.
# Import with: ctr -n k8s.io images import FILE.tar
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${ROMANA_K8S_CACHE:-/var/cache/romana-k8s}
log() { printf '==> %s\n' "$*" >&2; }

for tool in gcc python3 busybox; do
  command -v "$tool" >/dev/null || { log "$tool is missing (gcc, python3, busybox-static, netcat-openbsd)"; exit 1; }
done
[[ -x /bin/nc.openbsd ]] || { log "/bin/nc.openbsd is missing (apt-get install netcat-openbsd)"; exit 1; }

busybox=$(command -v busybox)
key=$( { cat "$here/images/pause.c" "$here/images/udp-echo.c" "$here/images/dns-server.c" "$here/images/netpol-agent.c" "$here/images/oci-archive.py" "$0"; sha256sum "$busybox" /bin/nc.openbsd; } | sha256sum | cut -c1-16)
out="$CACHE/images/$key"
# `current` names the newest build: the lab's default images dir.
point_current() { ln -sfn "$key" "$CACHE/images/current"; }
if [[ -f "$out/pause.tar" && -f "$out/romana-test.tar" ]]; then
  point_current
  log "images already built in $out"
  echo "$out"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

log "building localhost/pause:3.10"
mkdir -p "$work/pause"
gcc -static -O2 -o "$work/pause/pause" "$here/images/pause.c"
python3 "$here/images/oci-archive.py" "$work/pause" localhost/pause:3.10 "$out/pause.tar" --entrypoint '["/pause"]'

log "building localhost/romana-test:latest"
root="$work/test"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,var/www,proc,sys,dev,root}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [[ $applet == busybox ]] && continue
  ln -sf busybox "$root/bin/$applet"
done
rm -f "$root/bin/nc"
cp /bin/nc.openbsd "$root/bin/nc"
ldd /bin/nc.openbsd | awk '/=>/ { print $3 } /^\s*\/lib64/ { print $1 }' | while read -r library; do
  mkdir -p "$root$(dirname "$library")"
  cp -L "$library" "$root$library"
done
gcc -static -O2 -o "$root/bin/udp-echo" "$here/images/udp-echo.c"
gcc -static -O2 -o "$root/bin/dns-server" "$here/images/dns-server.c"
gcc -static -O2 -o "$root/bin/netpol-agent" "$here/images/netpol-agent.c"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
echo "romana test image" > "$root/var/www/index.html"
# The default command waits for ever and stops at once on SIGTERM.
python3 "$here/images/oci-archive.py" "$root" localhost/romana-test:latest "$out/romana-test.tar" \
  --cmd '["/bin/sh", "-c", "trap \"exit 0\" TERM; sleep 2147483647 & wait"]'
point_current
log "images in $out"
echo "$out"
