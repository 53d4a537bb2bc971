#!/usr/bin/env bash
# Kubernetes NetworkPolicy benchmarks, side by side in one run (root).
#
# On the 3-host Kubernetes lab (real kubelets; Romana installed with
# `kubectl apply -f deploy/kubernetes/`), with the netpol model's pods x/a
# (host1), x/b (host2), y/b (host2) running deploy/lab/images/netpol-agent:
#
# 1. apply -> enforced: `kubectl apply` of a NetworkPolicy on x/a, until
#    every host's rules name it (`iptables-save`, polled: each poll is an
#    exec into the three hosts, ~50 ms); then deleted until no host names
#    it. R rounds; p50/p99 (nearest rank), and the `kubectl apply` command's
#    own time as the baseline. Target: p99 under 1 s (aim: 200 ms).
# 2. label -> enforced: with a policy letting pods labelled role=client into
#    x/a, `kubectl label pod y/b role=client` until host1 (x/a's host) has
#    y/b's address in one of its sets (`ipset save`, polled); then the label
#    removed until it is gone. R rounds each way; p50/p99.
# 3. data path: TCP throughput x/a -> x/b (host1 -> host2, one connection,
#    5 s; netpol-agent blast/sink), with none, then with 100 NetworkPolicies
#    selecting x/b (each opening another port, one opening the sink's), in
#    5 interleaved rounds; medians and the ratio. Target: >= 98%.
#
# Then, without the lab, `netpol-scale`: 1,000 pods under 1,000 policies
# against 100 policies (rules and set entries per host, compile + render,
# install into a scratch namespace, converged check, memory).
#
#   ./deploy/bench-netpol.sh [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib/prerequisites.sh
install_prerequisites
install_go
rounds=20
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds R]" >&2; exit 2 ;;
  esac
done
./deploy/lab/build-kubernetes.sh >/dev/null
./deploy/lab/build-images.sh >/dev/null
cargo build --release --locked -q -p simulation --bin romana-lab --bin netpol-scale
cargo build --release --locked -q -p romana-node -p romana-cni
lab=./target/release/romana-lab
name=npbench dir=/run/romana-lab-npbench
trap '"$lab" --name $name --dir $dir down' EXIT
"$lab" --name $name --dir $dir down 2>/dev/null || true
k() { "$lab" --name $name --dir $dir kubectl "$@"; }
on() { local host=$1; shift; "$lab" --name $name --dir $dir exec "$host" -- "$@"; }
now_ms() { date +%s%3N; }

log "3-host Kubernetes lab, Romana installed with kubectl apply"
"$lab" --name $name --dir $dir up --hosts 3 --kubernetes --cni none --subnet 218 >/dev/null
ROMANA_LAB_DIR=$dir ROMANA_BIN_DIR=target/release ROMANA_LAB=$lab ./deploy/kubernetes/image.sh --lab $name >/dev/null
k apply -f deploy/kubernetes/ >/dev/null
for _ in $(seq 1 120); do
  ready=$(k get nodes --no-headers 2>/dev/null | grep -c " Ready " || true)
  [[ $ready == 3 ]] && break
  sleep 1
done
[[ $ready == 3 ]] || { echo "only $ready of 3 nodes Ready" >&2; exit 1; }

pod() { # NAMESPACE NAME NODE COMMAND...
  local ns=$1 pod=$2 node=$3; shift 3
  local command; command=$(printf '"%s", ' "$@"); command="[${command%, }]"
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: "$pod", namespace: "$ns", labels: {pod: "$pod"}}
spec:
  nodeName: $node
  terminationGracePeriodSeconds: 1
  containers:
  - name: agent
    image: localhost/romana-test:latest
    imagePullPolicy: Never
    command: $command
    ports: [{name: serve-80-tcp, containerPort: 80}]
---
EOF
}
{
  for ns in x y; do printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: "%s", labels: {ns: "%s"}}\n---\n' $ns $ns; done
  pod x a host1 /bin/netpol-agent serve 80 81
  pod x b host2 /bin/sh -c "/bin/netpol-agent sink 5001 & exec /bin/netpol-agent serve 80 81"
  pod y b host2 /bin/netpol-agent serve 80 81
} | k apply -f - >/dev/null
for _ in $(seq 1 120); do
  running=$(k get pods -n x --no-headers 2>/dev/null | grep -c Running || true)
  running_y=$(k get pods -n y --no-headers 2>/dev/null | grep -c Running || true)
  [[ $running == 2 && $running_y == 1 ]] && break
  sleep 1
done
ip_of() { k -n "$1" get pod "$2" -o jsonpath='{.status.podIP}'; }
xb_ip=$(ip_of x b) yb_ip=$(ip_of y b)
results=$(mktemp)
trap 'rm -f "$results"; "$lab" --name $name --dir $dir down' EXIT

# Waits until CHECK (a command) succeeds; prints the milliseconds since START.
until_ms() { # START CHECK...
  local start=$1; shift
  for _ in $(seq 1 2000); do
    if "$@"; then echo $(( $(now_ms) - start )); return 0; fi
  done
  echo "never: $*" >&2; return 1
}
all_hosts_name() { for h in host1 host2 host3; do on $h iptables-save -t filter | grep -q "NetworkPolicy $1 " || return 1; done; }
no_host_names() { for h in host1 host2 host3; do ! on $h iptables-save -t filter | grep -q "NetworkPolicy $1 " || return 1; done; }
policy() { # NAME SPEC-LINES
  printf 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: "x"}\nspec:\n%s\n' "$1" "$2"
}

log "1. kubectl apply -> enforced on all 3 hosts ($rounds rounds)"
for r in $(seq 1 "$rounds"); do
  start=$(now_ms)
  policy "bench-$r" '  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]' | k apply -f - >/dev/null
  # kubectl itself (start, TLS, the apiserver storing it) is the baseline.
  echo "{\"kind\": \"kubectl\", \"ms\": $(( $(now_ms) - start ))}" >>"$results"
  echo "{\"kind\": \"apply\", \"ms\": $(until_ms "$start" all_hosts_name "x/bench-$r")}" >>"$results"
  start=$(now_ms)
  k -n x delete networkpolicy "bench-$r" >/dev/null
  echo "{\"kind\": \"delete\", \"ms\": $(until_ms "$start" no_host_names "x/bench-$r")}" >>"$results"
done

log "2. pod label -> enforced ($rounds rounds each way)"
policy from-clients '  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: client}}}]' | k apply -f - >/dev/null
until_ms "$(now_ms)" all_hosts_name x/from-clients >/dev/null
in_a_set() { on host1 ipset save | grep -q "^add romana-[0-9a-f]* $yb_ip\$"; }
not_in_a_set() { ! in_a_set; }
for r in $(seq 1 "$rounds"); do
  start=$(now_ms)
  k -n y label pod b role=client --overwrite >/dev/null
  echo "{\"kind\": \"label\", \"ms\": $(until_ms "$start" in_a_set)}" >>"$results"
  start=$(now_ms)
  k -n y label pod b role- >/dev/null
  echo "{\"kind\": \"unlabel\", \"ms\": $(until_ms "$start" not_in_a_set)}" >>"$results"
done
k -n x delete networkpolicy from-clients >/dev/null

log "3. data path x/a -> x/b: none vs 100 NetworkPolicies, 5 interleaved rounds"
hundred() {
  for i in $(seq 1 99); do
    policy "tput-$i" "  podSelector: {matchLabels: {pod: b}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]
    ports: [{port: $((20000 + i))}]"
    echo '---'
  done
  policy tput-100 '  podSelector: {matchLabels: {pod: b}}
  ingress:
  - ports: [{port: 5001}]'
}
for r in 1 2 3 4 5; do
  for mode in none policies; do
    if [[ $mode == policies ]]; then
      hundred | k apply -f - >/dev/null
      until_ms "$(now_ms)" all_hosts_name x/tput-100 >/dev/null
      until_ms "$(now_ms)" all_hosts_name x/tput-1 >/dev/null
    fi
    mbit=$(k -n x exec a -- /bin/netpol-agent blast "$xb_ip" 5001 5 | awk '{print $5}')
    echo "{\"kind\": \"tput-$mode\", \"mbit\": $mbit}" >>"$results"
    if [[ $mode == policies ]]; then
      # shellcheck disable=SC2046
      k -n x delete networkpolicy $(for i in $(seq 1 100); do echo "tput-$i"; done) >/dev/null
      until_ms "$(now_ms)" no_host_names x/tput-100 >/dev/null
    fi
  done
done
rules=$(on host2 iptables-save -t filter | grep -c '^-A ROMANA' || true)

python3 - "$results" "$rules" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def pick(kind, key="ms"):
    return sorted(r[key] for r in rows if r["kind"] == kind)
def rank(values, q):
    return values[max(0, min(len(values) - 1, int(round(q * len(values) + 0.5)) - 1))]
for kind in ["kubectl", "apply", "delete", "label", "unlabel"]:
    v = pick(kind)
    print(f"{kind:8} -> enforced: p50 {rank(v, 0.5)} ms, p99 {rank(v, 0.99)} ms, max {v[-1]} ms ({len(v)} rounds)")
none, policies = pick("tput-none", "mbit"), pick("tput-policies", "mbit")
print(f"throughput x/a -> x/b: none {statistics.median(none):.0f} Mbit/s {none}, "
      f"100 NetworkPolicies {statistics.median(policies):.0f} Mbit/s {policies}: "
      f"{100 * statistics.median(policies) / statistics.median(none):.1f}% of none")
PY
log "4. 1,000 pods under 1,000 policies vs 100 (netpol-scale)"
./target/release/netpol-scale --pods 1000 --policies 1000 --baseline 100
