#!/usr/bin/env bash
# Pod start latency on the Kubernetes lab: 3 hosts (real kubelets,
# containerd, a control plane built from source), N pods (default 30)
# created at once, create -> Running p50/p99 from one watch
# (deploy/lab/pod-start-latency.py), in the same run: first the stock CNI
# (ptp + host-local, the baseline), then Romana installed as an operator
# would (deploy/kubernetes/image.sh --lab, kubectl apply -f
# deploy/kubernetes/), rounds interleaved lab by lab; prints Romana's p50
# and p99 as ratios of the baseline's (target: <= 1).
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
cargo build --release --locked -q -p romana-node -p romana-cni
results=$(mktemp)
trap 'rm -f "$results"; "$lab" --name $name --dir $dir down' EXIT
measure() { # LABEL
  for round in $(seq 1 "$rounds"); do
    python3 deploy/lab/pod-start-latency.py --pods "$pods" --label "$1-r$round" -- \
      "$lab" --name $name --dir $dir kubectl | tee -a "$results"
  done
}
log "3-host Kubernetes lab, --cni ptp (the baseline)"
"$lab" --name $name --dir $dir up --hosts 3 --kubernetes --cni ptp --subnet 219 >/dev/null
measure ptp
"$lab" --name $name --dir $dir down
log "3-host Kubernetes lab, --cni none, Romana installed with kubectl apply"
"$lab" --name $name --dir $dir up --hosts 3 --kubernetes --cni none --subnet 219 >/dev/null
ROMANA_LAB_DIR=$dir ROMANA_BIN_DIR=target/release ROMANA_LAB=$lab ./deploy/kubernetes/image.sh --lab $name >/dev/null
"$lab" --name $name --dir $dir kubectl apply -f deploy/kubernetes/ >/dev/null
for _ in $(seq 1 120); do
  ready=$("$lab" --name $name --dir $dir kubectl get nodes --no-headers 2>/dev/null | grep -c " Ready " || true)
  [[ $ready == 3 ]] && break
  sleep 1
done
[[ $ready == 3 ]] || { echo "Romana: only $ready of 3 nodes Ready" >&2; exit 1; }
measure romana
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def median(kind, key):
    return statistics.median(r[key] for r in rows if r["label"].startswith(kind + "-"))
for key in ("p50_ms", "p99_ms"):
    ptp, romana = median("ptp", key), median("romana", key)
    print(f"{key[:3]}: ptp {ptp:.0f} ms, romana {romana:.0f} ms, romana/ptp = {romana / ptp:.2f}")
PY
