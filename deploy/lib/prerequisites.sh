# Sourced by the demo and test scripts: installs what they need on a fresh
# Debian machine (as root), and nothing that is already there.

log() { printf '==> %s\n' "$*" >&2; }

# Debian packages the project needs at build and test time. The network
# pieces (iproute2, iptables) are used by the lab and isolation tests; the
# CNI tests chain the reference plugins (containernetworking-plugins: portmap,
# bandwidth) and run pods with the real runtime (podman with runc, in an
# image built from busybox-static). The Kubernetes lab runs Debian's
# containerd (and runc) under kubelets built from source
# (deploy/lab/build-kubernetes.sh, which needs Go), makes its certificates
# with openssl and its test image from busybox-static and netcat-openbsd
# (a UDP-capable nc). The romana-node image (deploy/kubernetes/image.sh) takes
# Debian's iptables and ipset, and strips the binaries with binutils. The TLS
# test captures the peers' traffic with tcpdump. The web view's browser test
# drives Debian's headless chromium with Playwright (playwright-core from npm,
# under Node.js).
DEBIAN_PACKAGES=(ca-certificates gcc libc6-dev pkg-config iproute2 iptables procps curl
  containernetworking-plugins podman runc busybox-static iputils-ping iperf3 python3 time
  containerd openssl netcat-openbsd util-linux jq ipset binutils tcpdump chromium nodejs)

# Playwright for the web view's browser test (romana-node/tests/ui.rs), from
# the lock file in romana-node/tests/ui, installed outside the tree and
# reinstalled only when the lock file changes.
UI_TEST_MODULES=/var/cache/romana/ui-test
install_ui_test_tools() {
  if ! command -v npm >/dev/null 2>&1; then
    log "installing Debian's npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  local lock=romana-node/tests/ui/package-lock.json
  if ! cmp -s "$lock" "$UI_TEST_MODULES/package-lock.json" ||
    [[ ! -d $UI_TEST_MODULES/node_modules/playwright-core ]]; then
    log "installing playwright-core into $UI_TEST_MODULES"
    mkdir -p "$UI_TEST_MODULES"
    cp romana-node/tests/ui/package.json "$lock" "$UI_TEST_MODULES/"
    npm ci --prefix "$UI_TEST_MODULES" --no-audit --no-fund --loglevel=error >/dev/null
  fi
  export ROMANA_UI_NODE_MODULES="$UI_TEST_MODULES/node_modules"
}

# Go for the Kubernetes build: the machine's own (/usr/local/go), else
# Debian's if it is new enough (Kubernetes 1.34 needs Go 1.24).
install_go() {
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  if ! command -v go >/dev/null 2>&1; then
    log "installing Debian's golang-go"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >/dev/null
  fi
  local version
  version=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  if [[ -z $version ]] || ! printf '1.24\n%s\n' "$version" | sort -V -C; then
    log "Go ${version:-(none)} is too old to build Kubernetes 1.34: install Go 1.24 or newer into /usr/local/go"
    exit 1
  fi
}

install_prerequisites() {
  local missing=()
  for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      log "missing packages ${missing[*]}: run as root, or install them first"
      exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1 || { apt-get install -y -qq rustup >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; }; then
      log "installing the stable Rust toolchain with rustup"
      rustup default stable
    else
      log "no Rust toolchain: install one with rustup (https://rustup.rs), stable 1.85 or newer"
      exit 1
    fi
  fi
}
