#!/usr/bin/env bash
# Sets up and runs every check and test of the project: formatting, clippy,
# module cycles, unit tests, openraft's storage suite, and the multi-process cluster tests.
# Run as root on Debian; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib/prerequisites.sh
install_prerequisites
install_go
install_ui_test_tools

# The Kubernetes lab's components and images, cached outside the tree
# (a warm run builds nothing).
log "Kubernetes binaries (deploy/lab/build-kubernetes.sh)"
./deploy/lab/build-kubernetes.sh >/dev/null
log "lab images (deploy/lab/build-images.sh)"
./deploy/lab/build-images.sh >/dev/null

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "module cycles"
# No crate's modules may import each other in a cycle.
python3 deploy/check-module-cycles.py
# A Kubernetes lab whose test run was killed (kill -9, a machine restart)
# keeps its namespaces, mounts and state under /var/lib/romana-lab: sweep
# them, by the labs' names, before the tests make their own.
shopt -s nullglob
stale=(/var/lib/romana-lab/kt*)
if ((${#stale[@]})); then
  log "removing ${#stale[@]} Kubernetes lab(s) a killed run left"
  cargo build --locked -q -p simulation --bin romana-lab
  for dir in "${stale[@]}"; do
    ./target/debug/romana-lab --name "$(basename "$dir")" --dir "$dir" down
  done
fi
shopt -u nullglob
log "cargo test"
# Two test threads: the cluster tests start real node processes and the
# machine has two cores.
output=$(mktemp)
trap 'rm -f "$output"' EXIT
cargo test --workspace --locked -- --test-threads 2 2>&1 | tee "$output"
# The simulation's checks must catch a deliberately broken allocator (a
# test-only feature, so it is its own build).
cargo test --locked -p simulation --features broken-allocator --test broken_allocator 2>&1 | tee -a "$output"
# One closing line for the whole run (cargo prints one per test binary, the
# last of which is often an empty doc-test run).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$output"
