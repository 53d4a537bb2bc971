#!/usr/bin/env bash
# Builds the Kubernetes components the lab runs, from the Go module
# k8s.io/kubernetes at one pinned version, into a cache outside the git tree:
#
#   $ROMANA_K8S_CACHE/<version>/bin/{kube-apiserver,kube-controller-manager,
#       kube-scheduler,kubelet,kube-proxy,kubectl,etcd,etcdctl}
#
# A second run with the same version finds the binaries and builds nothing.
# Prints the bin directory on stdout (everything else goes to stderr).
#
# Why 1.34: these machines run cgroup v1 (hybrid hierarchy) on kernel 6.18.
# From 1.35 on the kubelet refuses to start on cgroup v1 unless
# failCgroupV1 is set to false (KEP-5573) and cgroup v1 is unmaintained
# there; 1.34 is the newest minor that runs on cgroup v1 as a supported
# configuration, so the lab pins the newest 1.34 patch served by the proxy.
#
# Why a go.mod of our own: k8s.io/kubernetes names its staging modules
# (k8s.io/api, k8s.io/client-go, ...) as v0.0.0 with replaces to
# ./staging/src, which only work inside its own repository. Requiring it from
# another module means replacing each staging module by its published
# v0.<minor>.<patch> release, which is exactly the code in staging/ at that tag.
#
# etcd is built the same way from go.etcd.io/etcd (Debian's etcd-server is
# 3.4, older than the 3.5 the 1.34 apiserver is tested against).
set -euo pipefail

KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE=${ROMANA_K8S_CACHE:-/var/cache/romana-k8s}
out="$CACHE/$KUBERNETES_VERSION"
bin="$out/bin"
components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

log() { printf '==> %s\n' "$*" >&2; }

complete() {
  for name in "${components[@]}" etcd etcdctl; do
    [[ -x "$bin/$name" ]] || return 1
  done
}

if complete; then
  log "Kubernetes $KUBERNETES_VERSION already built in $bin"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null 2>&1 || export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || { log "no Go toolchain (go 1.24 or newer is needed)"; exit 1; }

# The module proxy is reachable here, the checksum database is not: modules
# are verified against the go.sum this script writes from the proxy's copies.
export GOSUMDB=off GOFLAGS=-mod=mod CGO_ENABLED=0
export GOTOOLCHAIN=local

work="$out/src"
mkdir -p "$work" "$bin"
minor=${KUBERNETES_VERSION#v1.}
staging_version="v0.$minor"

log "resolving k8s.io/kubernetes@$KUBERNETES_VERSION"
kube_mod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[[ -f "$kube_mod" ]] || { log "could not download k8s.io/kubernetes@$KUBERNETES_VERSION"; exit 1; }

{
  echo "module romana.local/kubernetes-build"
  echo
  echo "go $(sed -n 's/^go \(.*\)/\1/p' "$kube_mod")"
  echo
  echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
  echo
  echo "replace ("
  # Every staging module k8s.io/kubernetes replaces locally, by its release.
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$kube_mod" | while read -r module; do
    echo "	$module => $module $staging_version"
  done
  echo ")"
} > "$work/go.mod"

cat > "$work/tools.go" <<'GO'
//go:build tools

package tools
GO

version_flags() {
  local date
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local minor_number=${minor%%.*}
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean -X %s.buildDate=%s ' \
      "$package" "$KUBERNETES_VERSION" "$package" "$package" "$minor_number" "$package" "$package" "$date"
  done
}

log "building ${components[*]} $KUBERNETES_VERSION (cold: tens of minutes on 2 cores)"
start=$(date +%s)
(
  cd "$work"
  packages=()
  for name in "${components[@]}"; do packages+=("k8s.io/kubernetes/cmd/$name"); done
  go build -trimpath -ldflags "-s -w $(version_flags)" -o "$bin/" "${packages[@]}"
)

log "building etcd $ETCD_VERSION"
etcd_work="$CACHE/etcd-$ETCD_VERSION/src"
mkdir -p "$etcd_work"
(
  cd "$etcd_work"
  cat > go.mod <<GOMOD
module romana.local/etcd-build

go 1.24

require (
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
	go.etcd.io/etcd/etcdctl/v3 $ETCD_VERSION
)
GOMOD
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
  go build -trimpath -ldflags "-s -w" -o "$bin/etcdctl" go.etcd.io/etcd/etcdctl/v3
)
log "built in $(($(date +%s) - start)) s into $bin"
complete || { log "build finished but binaries are missing in $bin"; exit 1; }
echo "$bin"
