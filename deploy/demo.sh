#!/usr/bin/env bash
# The demo: builds everything, starts a three-node Romana control plane on
# this machine's loopback, writes through a follower, kills the leader with
# kill -9, shows a new leader taking over with nothing lost, restarts the
# dead node from its data dir and shows it catch up, then tears down.
#
#   deploy/demo.sh          run and tear down
#   deploy/demo.sh --keep   leave the cluster running (the script prints how
#                           to stop it)
#
# What it does not show yet: pod networking across hosts (network
# namespaces, the CNI plugin, routes, tenant isolation). Those land with the
# CNI, routing and isolation issues; this demo will grow into that.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib/prerequisites.sh

keep=false
for argument in "$@"; do
  case "$argument" in
    --keep) keep=true ;;
    *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
  esac
done

install_prerequisites
log "building (release)"
cargo build --release --locked -p romana-node
bin=$PWD/target/release

work=$(mktemp -d /tmp/romana-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
if ! $keep; then trap cleanup EXIT; fi

# Three nodes on distinct loopback ports (the ports are only used here).
port=(0 19601 19602 19603)
start_node() { # start_node N [--join ADDR]
  local n=$1; shift
  "$bin/romana-node" run --name "host$n" --data-dir "$work/host$n" \
    --listen "127.0.0.1:${port[$n]}" --api-socket "$work/host$n.sock" \
    --cluster-secret-file "$work/cluster-secret" "$@" >>"$work/host$n.log" 2>&1 &
  pids[$n]=$!
}
ctl() { local n=$1; shift; "$bin/romanactl" --socket "$work/host$n.sock" "$@"; }
wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "timed out waiting for $what"; exit 1
}
voters() { ctl "$1" status -o json | grep -c '"role": "voter"'; }
has_three_voters() { [[ $(voters "$1") -eq 3 ]]; }

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/cluster-secret"
log "starting host1: it initialises a new cluster"
start_node 1
wait_for "host1" ctl 1 status
log "starting host2 and host3: they join through host1"
start_node 2 --join "127.0.0.1:${port[1]}"
start_node 3 --join "127.0.0.1:${port[1]}"
wait_for "three voters" has_three_voters 1
ctl 1 status
echo
ctl 1 node list

leader=$(ctl 1 status -o json | sed -n 's/.*"leader": "host\([0-9]\)".*/\1/p')
follower=$(( leader % 3 + 1 ))
log "writing 20 notes through host$follower (a follower: it forwards to host$leader)"
for i in $(seq 1 20); do ctl "$follower" note "demo note $i" --request-id "demo-$i" >/dev/null; done
ctl "$follower" note "the last note before the leader dies" --request-id demo-last

log "kill -9 the leader, host$leader"
kill -9 "${pids[$leader]}"
survivor=$(( leader % 3 + 1 ))
killed_at=$(date +%s%N)
new_leader_elected() { ctl "$survivor" status -o json | grep '"leader": "host' | grep -vq "host$leader"; }
wait_for "a new leader" new_leader_elected
echo "new leader after $(( ($(date +%s%N) - killed_at) / 1000000 )) ms:"
ctl "$survivor" status | head -5
log "writing through the survivors"
ctl "$survivor" note "written after the failover" --request-id demo-after

log "restarting host$leader from its data dir"
start_node "$leader" --join "127.0.0.1:${port[$survivor]}"
caught_up() {
  local a b c
  a=$(ctl 1 status -o json | grep -E '"(applied_index|state_hash)"' | tr -d ' \n')
  b=$(ctl 2 status -o json | grep -E '"(applied_index|state_hash)"' | tr -d ' \n')
  c=$(ctl 3 status -o json | grep -E '"(applied_index|state_hash)"' | tr -d ' \n')
  [[ -n $a && $a == "$b" && $b == "$c" ]]
}
wait_for "host$leader to catch up" caught_up
for n in 1 2 3; do
  printf 'host%s: ' "$n"; ctl "$n" status -o json | grep -E '"(applied_index|state_hash)"' | tr -d ' \n'; echo
done
echo "every replica holds the same state: the same applied index and state hash."

if $keep; then
  echo "cluster kept in $work; stop it with: kill ${pids[*]}; rm -rf $work"
fi
