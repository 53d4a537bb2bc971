#!/usr/bin/env bash
# Pod start latency on the Kubernetes lab: 3 hosts (real kubelets,
# containerd, a control plane built from source), N pods (default 30)
# created at once, create -> Running p50/p99 from one watch
# (deploy/lab/pod-start-latency.py). This round measures the stock CNI
# (ptp + host-local): the baseline Romana's install is compared against.
#
#   ./deploy/bench-kubernetes.sh [--pods N] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib/prerequisites.sh
install_prerequisites
install_go
pods=30 rounds=1
while (($#)); do
  case $1 in
    --pods) pods=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: $0 [--pods N] [--rounds R]" >&2; exit 2 ;;
  esac
done
./deploy/lab/build-kubernetes.sh >/dev/null
./deploy/lab/build-images.sh >/dev/null
cargo build --release --locked -q -p simulation --bin romana-lab
lab=./target/release/romana-lab
name=kbench dir=/run/romana-lab-kbench
trap '"$lab" --name $name --dir $dir down' EXIT
"$lab" --name $name --dir $dir down 2>/dev/null || true
log "3-host Kubernetes lab, --cni ptp"
"$lab" --name $name --dir $dir up --hosts 3 --kubernetes --cni ptp --subnet 219 >/dev/null
for round in $(seq 1 "$rounds"); do
  python3 deploy/lab/pod-start-latency.py --pods "$pods" --label "ptp-r$round" -- \
    "$lab" --name $name --dir $dir kubectl
done
