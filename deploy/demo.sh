#!/usr/bin/env bash
# The demo: three Romana hosts on this machine (network namespaces on a
# bridged underlay, a romana-node in each), tenants t1 and t2, a t1 pod on
# every host and a t2 pod, all wired by the real CNI plugin. It shows the
# pod table, pings every t1 pod from a t1 pod on another host across the
# plain L3 routes, shows t2 -> t1 blocked by tenant isolation, prints the
# isolation rules, the cluster status and a host's routes, then tears
# everything down.
#
#   deploy/demo.sh          run and tear down
#   deploy/demo.sh --keep   leave the lab up (remove it with the printed command)
#
# Run as root on Debian; installs what it needs.
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
cargo build --release --locked -p romana-node -p romana-cni -p simulation
bin=$PWD/target/release
lab_name=demo
lab_dir=/run/romana-lab-demo
lab() { "$bin/romana-lab" --name "$lab_name" --dir "$lab_dir" "$@"; }
ctl() { local host=$1; shift; "$bin/romanactl" --socket "$lab_dir/$host/romana.sock" "$@"; }

# A lab left by an earlier interrupted run goes first.
lab down >/dev/null 2>&1 || true
if ! $keep; then trap 'lab down' EXIT; fi

log "bringing up three hosts (host1 creates the cluster, host2 and host3 join)"
lab up --hosts 3
log "creating tenants t1 and t2"
ctl host1 tenant create t1
ctl host1 tenant create t2
log "starting a t1 pod on every host and a t2 pod on host3"
for host in 1 2 3; do lab pod add "host$host" t1 "t1-pod-$host" >/dev/null; done
lab pod add host3 t2 t2-pod-3 >/dev/null
echo
lab pod list
echo

ip_of() { lab pod list | awk -v pod="$1" '$1 == pod { print $4 }'; }
log "pinging every t1 pod from a t1 pod on another host"
failures=0
for from in 1 2 3; do
  for to in 1 2 3; do
    [[ $from == "$to" ]] && continue
    target=$(ip_of "t1-pod-$to")
    if lab exec "t1-pod-$from" -- ping -c 1 -W 2 "$target" >/dev/null 2>&1; then
      printf '  t1-pod-%s (host%s) -> t1-pod-%s %-12s ok\n' "$from" "$from" "$to" "$target"
    else
      printf '  t1-pod-%s (host%s) -> t1-pod-%s %-12s FAILED\n' "$from" "$from" "$to" "$target"
      failures=$((failures + 1))
    fi
  done
done

log "t2-pod-3 -> t1-pod-1"
target=$(ip_of t1-pod-1)
if lab exec t2-pod-3 -- ping -c 1 -W 2 "$target" >/dev/null 2>&1; then
  echo "  t2 -> t1 reached $target: tenant isolation FAILED"
  failures=$((failures + 1))
else
  echo "  t2 -> t1 blocked: tenants are isolated (one mask rule per tenant, none per pod)"
fi
echo
log "isolation rules of host1"
lab exec host1 -- iptables -S ROMANA-FORWARD
echo
log "romanactl status (on host1)"
ctl host1 status
echo
log "routes of host1: one per other host's prefix, one per local pod (proto 77 = Romana)"
lab exec host1 -- ip route
if $keep; then
  echo
  echo "lab kept; inspect with: $bin/romana-lab --name $lab_name --dir $lab_dir pod list"
  echo "remove it with:         $bin/romana-lab --name $lab_name --dir $lab_dir down"
fi
if ((failures > 0)); then
  log "$failures pings failed"
  exit 1
fi
