#!/usr/bin/env bash
# CNI benchmark: N sequential pod setups (ADD), then N teardowns (DEL), on
# pre-created network namespaces, each call timed on its own (wall clock,
# from spawning the plugin to reaping it). Three setups in the same run:
#
#   ptp+host-local   Debian's reference plugins (the baseline)
#   romana 1-node    the romana plugin against a single-node cluster
#   romana 3-node    the romana plugin against a FOLLOWER of a three-node
#                    loopback cluster: every allocation is forwarded to the
#                    leader and committed by a quorum (the worst case)
#
# Reports p50/p99 per setup and verb, the ratios to ptp+host-local, the
# README's targets (met / NOT met: a missed target is reported, it does not
# fail the run), the romana plugin's peak RSS and the binary sizes.
#
#   deploy/bench-cni.sh [--rounds N] [--keep-going]
#
#   --rounds N     pods per setup (default 100)
#   --keep-going   go on after a failed ADD or DEL (the run still exits 1)
#
# Run as root on a Debian machine. Installs what it needs (the project's
# prerequisites, and containernetworking-plugins, iproute2, python3, time)
# and builds the release binaries. Everything it creates (namespaces, veths,
# processes, its temporary directory with the host-local state) is removed on
# exit, also on failure or Ctrl-C; net.ipv4.ip_forward (which both plugins
# set) is put back. ptp runs with ipMasq false, so it adds no iptables rules.
#
# Address ranges: the bench clusters use 172.30.0.0/16 (host/tenant/segment/
# endpoint bits 4/2/2/8: the default's 8 endpoint bits, so the same /24
# blocks), not the default 10.0.0.0/8, so that their host routes cannot
# clash with a romana node or test running on the same machine; ptp uses
# 172.31.0.0/16. The script refuses to start if either range is routed here.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib/prerequisites.sh

rounds=100
keep_going=false
usage() { echo "usage: $0 [--rounds N] [--keep-going]" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --rounds) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || usage; rounds=$2; shift 2 ;;
    --keep-going) keep_going=true; shift ;;
    *) usage ;;
  esac
done
((rounds <= 250)) || { echo "--rounds is at most 250 (one /24 block of pod addresses)" >&2; exit 2; }

[[ $(id -u) -eq 0 ]] || { log "run as root (network namespaces, veths)"; exit 1; }
install_prerequisites
extra=()
for package in containernetworking-plugins iproute2 python3 time; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || extra+=("$package")
done
if ((${#extra[@]})); then
  log "installing ${extra[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${extra[@]}" >/dev/null
fi
log "building (release)"
cargo build --release --locked -p romana-cni -p romana-node
bin=$PWD/target/release
cni_dir=/usr/lib/cni

romana_cidr=172.30.0.0/16
ptp_cidr=172.31.0.0/16
for prefix in 172.30. 172.31.; do
  if ip -4 route show table all | grep -q "^\(local \|broadcast \)\?$prefix"; then
    log "a route in ${prefix}0.0/16 exists on this machine; the benchmark needs the range free"
    exit 1
  fi
done

# Unique names: every namespace and container id starts with $tag.
tag="rbench$$"
work=$(mktemp -d /tmp/romana-bench-cni.XXXXXX)
forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
pids=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  # Host ends of the veths the plugins reported (deleting a namespace takes
  # its veths with it, but asynchronously: delete them here, synchronously).
  if [[ -f $work/host-links ]]; then
    sort -u "$work/host-links" | while read -r link; do
      ip link del "$link" 2>/dev/null
    done
  fi
  ip netns list | awk '{print $1}' | grep "^$tag-" | while read -r ns; do
    ip netns del "$ns"
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  echo "$forward_before" >/proc/sys/net/ipv4/ip_forward
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The driver. Pass "time": each plugin call timed from spawn to reap, the
# plugin run directly. Pass "rss": the same calls again (on the same, now
# empty, namespaces), untimed, each under /usr/bin/time -f %M for its peak
# RSS. (The rusage of a child spawned from Python itself would start at
# Python's own RSS, which an exec does not reset; GNU time's floor is its own
# ~1 MiB, printed with the results.)
cat >"$work/driver.py" <<'PY'
import json, math, os, subprocess, sys, time

def call(argv, env, stdin, stderr):
    start = time.perf_counter_ns()
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=stderr, env=env)
    child.stdin.write(stdin)
    child.stdin.close()
    out = child.stdout.read()
    child.stdout.close()
    code = child.wait()
    elapsed = time.perf_counter_ns() - start
    return elapsed, code, out.decode(errors="replace").strip()

def run(mode, setup, plugin, config_file, count, results, links, stderr_file, keep_going):
    config = open(config_file, "rb").read()
    failures = []
    timings = {"ADD": [], "DEL": []}
    rss = {"ADD": 0, "DEL": 0}
    rss_file = results + ".maxrss"
    argv = [plugin] if mode == "time" else ["/usr/bin/time", "-f", "%M", "-o", rss_file, plugin]
    with open(stderr_file, "ab") as stderr, open(links, "a") as link_file:
        for verb in ("ADD", "DEL"):
            for i in range(count):
                name = f"{setup}-{i}"
                env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": verb,
                       "CNI_CONTAINERID": name, "CNI_NETNS": f"/run/netns/{name}",
                       "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
                elapsed, code, out = call(argv, env, config, stderr)
                ok = code == 0
                if ok and verb == "ADD":
                    try:
                        result = json.loads(out)
                        ok = bool(result.get("ips"))
                        for interface in result.get("interfaces", []):
                            if "sandbox" not in interface:
                                link_file.write(interface["name"] + "\n")
                        link_file.flush()
                    except (ValueError, KeyError, AttributeError):
                        ok = False
                if not ok:
                    failures.append(f"{verb} {name}: exit {code}: {out}")
                    print(f"FAILED {verb} {name}: exit {code}: {out}", file=sys.stderr)
                    if not keep_going:
                        sys.exit(1)
                    continue
                timings[verb].append(elapsed)
                if mode == "rss":
                    # the last line (a failed command adds one before it)
                    lines = open(rss_file).read().split()
                    rss[verb] = max(rss[verb], int(lines[-1]))
    if mode == "time":
        json.dump({"timings_ns": timings, "failures": failures}, open(results, "w"))
    else:
        json.dump({"maxrss_kib": rss, "failures": failures}, open(results, "w"))
    sys.exit(1 if failures else 0)

def percentile(values, p):
    # nearest rank: the smallest value with at least p% of the values <= it
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] / 1e6

def report(directory, floor_kib, sizes):
    rows = [("ptp", "ptp+host-local"), ("r1", "romana 1-node"), ("r3", "romana 3-node (follower)")]
    data = {key: json.load(open(os.path.join(directory, key + ".json"))) for key, _ in rows}
    rss = {key: json.load(open(os.path.join(directory, key + "-rss.json"))) for key, _ in rows}
    stat = {}
    for key, _ in rows:
        for verb in ("ADD", "DEL"):
            values = data[key]["timings_ns"][verb]
            stat[key, verb] = (percentile(values, 50), percentile(values, 99), len(values)) if values else None
    print()
    print(f"{'setup':<26} {'verb':<4} {'calls':>5} {'p50 ms':>8} {'p99 ms':>8} {'p50 ratio':>10} {'p99 ratio':>10}")
    for key, label in rows:
        for verb in ("ADD", "DEL"):
            s, base = stat[key, verb], stat["ptp", verb]
            if s is None:
                print(f"{label:<26} {verb:<4} {0:>5} {'-':>8} {'-':>8}")
                continue
            r50 = f"{s[0] / base[0]:.2f}x" if base else "-"
            r99 = f"{s[1] / base[1]:.2f}x" if base else "-"
            print(f"{label:<26} {verb:<4} {s[2]:>5} {s[0]:>8.2f} {s[1]:>8.2f} {r50:>10} {r99:>10}")
    print()
    print("targets (p50, romana / ptp+host-local):")
    for key, verb, limit, label in (("r1", "ADD", 0.5, "1-node ADD"), ("r1", "DEL", 1.0, "1-node DEL"),
                                     ("r3", "ADD", 1.0, "3-node ADD")):
        s, base = stat[key, verb], stat["ptp", verb]
        if s is None or base is None:
            print(f"  {label:<11} <= {limit:.1f}x: no data")
            continue
        ratio = s[0] / base[0]
        print(f"  {label:<11} <= {limit:.1f}x: {ratio:.2f}x  {'met' if ratio <= limit else 'NOT met'}")
    print()
    print(f"peak RSS (max over the calls, /usr/bin/time %M; its floor here: {floor_kib / 1024:.1f} MiB):")
    for key, label in rows:
        r = rss[key]["maxrss_kib"]
        note = "  (ptp's process only; host-local runs as its child)" if key == "ptp" else ""
        print(f"  {label:<26} ADD {r['ADD'] / 1024:6.1f} MiB   DEL {r['DEL'] / 1024:6.1f} MiB{note}")
    print()
    print("binary sizes:")
    for item in sizes:
        path, size = item.rsplit("=", 1)
        print(f"  {path:<40} {int(size):>10} bytes ({int(size) / 1048576:.1f} MiB)")
    failures = sum(len(d[key]["failures"]) for d in (data, rss) for key, _ in rows)
    if failures:
        print(f"\n{failures} failed calls (not timed): see above")

if __name__ == "__main__":
    if sys.argv[1] == "run":
        mode, setup, plugin, config_file, count, results, links, stderr_file, keep_going = sys.argv[2:]
        run(mode, setup, plugin, config_file, int(count), results, links, stderr_file, keep_going == "true")
    elif sys.argv[1] == "report":
        report(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    elif sys.argv[1] == "port":
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
    elif sys.argv[1] == "leader":  # status JSON on stdin
        print(json.load(sys.stdin).get("leader") or "")
    elif sys.argv[1] == "voters":
        print(sum(1 for m in json.load(sys.stdin)["members"] if m.get("role") == "voter"))
PY
py() { python3 "$work/driver.py" "$@"; }

wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "timed out waiting for $what"; exit 1
}
ctl() { local sock=$1; shift; "$bin/romanactl" --socket "$sock" "$@"; }
knows_host() { ctl "$1" -o json host list | grep -q "\"name\": *\"$2\""; }

# --firewall false: the machine's own FORWARD chain is not the benchmark's to
# change. --manage-routes false: on loopback every host shares one underlay address,
# so there is no route to install; and the reconciler would otherwise own
# every Romana-protocol route of this layout's host-prefix length in the
# machine's table, also those of other clusters running here.
start_node() { # start_node NAME [--join ADDR]: sets $node_addr
  local name=$1; shift
  node_addr=127.0.0.1:$(py port)
  RUST_LOG=warn "$bin/romana-node" run --name "$name" --data-dir "$work/$name" \
    --listen "$node_addr" --api-socket "$work/$name.sock" \
    --cluster-secret-file "$work/cluster-secret" \
    --cidr "$romana_cidr" --host-bits 4 --tenant-bits 2 --segment-bits 2 --endpoint-bits 8 \
    --manage-routes false --firewall false \
    "$@" >>"$work/$name.log" 2>&1 &
  pids+=($!)
}
stop_nodes() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

# One setup: pre-create the namespaces, then the driver times the ADDs and
# the DELs; the namespaces go afterwards.
bench() { # bench KEY PLUGIN CONFIG_FILE
  local key=$1 plugin=$2 config=$3 i status=0
  log "$key: creating $rounds network namespaces"
  for ((i = 0; i < rounds; i++)); do ip netns add "$tag-$key-$i"; done
  # One untimed ADD/DEL first, in its own namespace: loads the binaries into
  # the page cache and the node's first-allocation path.
  ip netns add "$tag-$key-warm"
  warm_up "$key" "$plugin" "$config"
  log "$key: $rounds ADDs, then $rounds DELs (timed)"
  py run time "$tag-$key" "$plugin" "$config" "$rounds" "$work/$key.json" "$work/host-links" \
    "$work/$key.stderr" "$keep_going" || status=$?
  if ((status == 0)) || $keep_going; then
    log "$key: the same again under /usr/bin/time (peak RSS, untimed)"
    py run rss "$tag-$key" "$plugin" "$config" "$rounds" "$work/$key-rss.json" "$work/host-links" \
      "$work/$key.stderr" "$keep_going" || status=$?
  fi
  for ((i = 0; i < rounds; i++)); do ip netns del "$tag-$key-$i"; done
  ip netns del "$tag-$key-warm"
  if ((status)); then
    log "$key: calls failed; the plugin's stderr (last lines):"
    tail -n 20 "$work/$key.stderr" >&2 || true
    $keep_going && failed=true || exit 1
  fi
}
warm_up() { # one untimed ADD and DEL in $tag-KEY-warm
  local key=$1 plugin=$2 config=$3 verb out
  for verb in ADD DEL; do
    if ! out=$(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=$verb CNI_CONTAINERID="$tag-$key-warm" \
      CNI_NETNS="/run/netns/$tag-$key-warm" CNI_IFNAME=eth0 CNI_PATH=$cni_dir \
      "$plugin" <"$config" 2>>"$work/$key.stderr"); then
      log "$key: warm-up $verb failed: $out"; exit 1
    fi
    if [[ $verb == ADD ]]; then
      printf '%s\n' "$out" | python3 -c 'import json,sys
for i in json.load(sys.stdin).get("interfaces", []):
    "sandbox" in i or print(i["name"])' >>"$work/host-links"
    fi
  done
}
failed=false

# --- ptp + host-local -------------------------------------------------------
mkdir -p "$work/host-local"
cat >"$work/ptp.conf" <<EOF
{"cniVersion":"1.0.0","name":"bench-ptp","type":"ptp","ipMasq":false,
 "ipam":{"type":"host-local","subnet":"$ptp_cidr","dataDir":"$work/host-local"}}
EOF
bench ptp "$cni_dir/ptp" "$work/ptp.conf"

# --- romana, single-node cluster --------------------------------------------
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/cluster-secret"
romana_config() { # romana_config SOCKET FILE
  cat >"$2" <<EOF
{"cniVersion":"1.0.0","name":"bench-romana","type":"romana","tenant":"bench",
 "node_socket":"$1","log_file":"$work/romana-cni.log"}
EOF
}
log "r1: starting a single-node cluster"
start_node "$tag-solo"
wait_for "the single node to register its host" knows_host "$work/$tag-solo.sock" "$tag-solo"
ctl "$work/$tag-solo.sock" tenant create bench >/dev/null
romana_config "$work/$tag-solo.sock" "$work/r1.conf"
bench r1 "$bin/romana" "$work/r1.conf"
stop_nodes

# --- romana, three-node cluster, plugin on a follower -----------------------
log "r3: starting a three-node cluster"
start_node "$tag-n1"
first=$node_addr
wait_for "$tag-n1" knows_host "$work/$tag-n1.sock" "$tag-n1"
start_node "$tag-n2" --join "$first"
start_node "$tag-n3" --join "$first"
three_voters() { [[ $(ctl "$work/$tag-n1.sock" -o json status | py voters) -eq 3 ]]; }
wait_for "three voters" three_voters
leader=$(ctl "$work/$tag-n1.sock" -o json status | py leader)
for n in n1 n2 n3; do [[ $tag-$n != "$leader" ]] && follower=$tag-$n && break; done
wait_for "$follower to register its host" knows_host "$work/$follower.sock" "$follower"
ctl "$work/$follower.sock" tenant create bench >/dev/null
log "r3: leader $leader; the plugin talks to $follower (a follower)"
romana_config "$work/$follower.sock" "$work/r3.conf"
bench r3 "$bin/romana" "$work/r3.conf"
leader_after=$(ctl "$work/$follower.sock" -o json status | py leader)
stop_nodes
[[ $leader_after == "$leader" ]] || log "r3: the leader changed during the run ($leader -> $leader_after)"

# --- report -------------------------------------------------------------------
sizes=()
for file in "$bin/romana" "$cni_dir/ptp" "$cni_dir/host-local"; do
  sizes+=("$file=$(stat -c %s "$file")")
done
echo "CNI benchmark: $rounds sequential ADDs then $rounds DELs per setup, one call at a time;"
echo "wall clock per call, from spawning the plugin to reaping it. romana 3-node: the plugin"
echo "talks to a follower, which forwards each allocation to the leader (worst case)."
py report "$work" "$(/usr/bin/time -f %M /bin/true 2>&1 >/dev/null | tail -n 1)" "${sizes[@]}"
if $failed; then exit 1; fi
