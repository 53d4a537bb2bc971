# Sourced by the demo and test scripts: installs what they need on a fresh
# Debian machine (as root), and nothing that is already there.

log() { printf '==> %s\n' "$*" >&2; }

# Debian packages the project needs at build and test time. The network
# pieces (iproute2, iptables) are used by the lab and isolation tests; the
# CNI tests chain the reference plugins (containernetworking-plugins: portmap,
# bandwidth) and run pods with the real runtime (podman with runc, in an
# image built from busybox-static).
DEBIAN_PACKAGES=(ca-certificates gcc libc6-dev pkg-config iproute2 iptables procps curl
  containernetworking-plugins podman runc busybox-static iputils-ping iperf3 python3 time)

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
