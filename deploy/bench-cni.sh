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
# Reports p50/p99 per setup and verb, the ratios to ptp+host-local, a mass
# teardown (all DELs at once), where the time of a call goes (the plugin logs
# its phases; process start is a VERSION call), the
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
host_ns="$tag-host"
work=$(mktemp -d /tmp/romana-bench-cni.XXXXXX)
forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
pids=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  # Host ends of the veths the plugins reported (deleting a namespace takes
  # its veths with it, but asynchronously: delete them here, synchronously).
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [[ -f $work/host-links ]]; then
    sort -u "$work/host-links" | while read -r link; do
      ip -n "$host_ns" link del "$link" 2>/dev/null
    done
  fi
  # The host namespace last: its iptables rules and ipsets go with it.
  ip netns list | awk '{print $1}' | grep "^$tag-" | grep -v "^$host_ns\$" | while read -r ns; do
    ip netns del "$ns"
  done
  ip netns del "$host_ns" 2>/dev/null
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
import json, math, os, re, statistics, subprocess, sys, time

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

def host_links():
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}

def mass(setup, plugin, config_file, count, results, links, stderr_file):
    # Mass teardown: N pods set up one after the other (untimed), then all
    # N DELs started at once. Timed: from the first spawn until every DEL
    # has returned, and until every host-side interface the ADDs reported
    # is gone from the host (polled every 2 ms).
    config = open(config_file, "rb").read()
    mine = set()
    with open(stderr_file, "ab") as stderr, open(links, "a") as link_file:
        for i in range(count):
            name = f"{setup}-{i}"
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "ADD",
                   "CNI_CONTAINERID": name, "CNI_NETNS": f"/run/netns/{name}",
                   "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
            _, code, out = call([plugin], env, config, stderr)
            if code != 0:
                sys.exit(f"mass: ADD {name} failed: exit {code}: {out}")
            for interface in json.loads(out).get("interfaces", []):
                if "sandbox" not in interface:
                    mine.add(interface["name"])
                    link_file.write(interface["name"] + "\n")
        children = []
        start = time.perf_counter_ns()
        for i in range(count):
            name = f"{setup}-{i}"
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "DEL",
                   "CNI_CONTAINERID": name, "CNI_NETNS": f"/run/netns/{name}",
                   "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
            child = subprocess.Popen([plugin], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=stderr, env=env)
            child.stdin.write(config)
            child.stdin.close()
            children.append(child)
        codes = [child.wait() for child in children]
        returned = time.perf_counter_ns() - start
        deadline = time.monotonic() + 30
        while mine & host_links():
            if time.monotonic() > deadline:
                sys.exit(f"mass: {len(mine & host_links())} host interfaces still there 30 s after the DELs")
            time.sleep(0.002)
        gone = time.perf_counter_ns() - start
    if any(codes):
        sys.exit(f"mass: {sum(1 for c in codes if c)} DELs failed")
    json.dump({"returned_ns": returned, "gone_ns": gone, "pods": count}, open(results, "w"))

def versions(plugin, config_file, count, results):
    # The cost of starting and ending the process: VERSION reads stdin and
    # answers, touching neither the node nor the kernel.
    config = open(config_file, "rb").read()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "VERSION"}
    timings = []
    with open(os.devnull, "wb") as null:
        for _ in range(count):
            elapsed, code, out = call([plugin], env, config, null)
            if code != 0:
                sys.exit(f"VERSION failed: exit {code}: {out}")
            timings.append(elapsed)
    json.dump({"timings_ns": timings}, open(results, "w"))

PHASE_LINE = re.compile(r" (ADD|DEL) container=.* ok in ([0-9.]+) ms \((.*)\)$", re.IGNORECASE)

def phase_medians(log):
    # The plugin's own breakdown, one line per successful call:
    # "ok in 2.10 ms (config 0.05, prepare 0.10, allocate 1.20 [node 0.90], ...)"
    per_verb = {}
    for line in open(log, errors="replace"):
        m = PHASE_LINE.search(line.rstrip("\n"))
        if not m:
            continue
        phases = per_verb.setdefault(m.group(1).upper(), {})
        phases.setdefault("in-process total", []).append(float(m.group(2)))
        for part in m.group(3).split(", "):
            node = re.match(r"(\S+) ([0-9.]+)(?: \[node ([0-9.]+)\])?$", part)
            if not node:
                continue
            phases.setdefault(node.group(1), []).append(float(node.group(2)))
            if node.group(3):
                phases.setdefault(node.group(1) + ": in the node", []).append(float(node.group(3)))
    return {verb: {name: statistics.median(v) for name, v in phases.items()}
            for verb, phases in per_verb.items()}

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
    print("mass teardown: all pods' DELs started at once (ms from the first spawn):")
    for key, label in rows:
        path = os.path.join(directory, key + "-mass.json")
        if not os.path.exists(path):
            continue
        m = json.load(open(path))
        base = json.load(open(os.path.join(directory, "ptp-mass.json")))
        print(f"  {label:<26} {m['pods']} DELs returned {m['returned_ns'] / 1e6:8.1f} "
              f"({m['returned_ns'] / base['returned_ns']:.2f}x); interfaces gone {m['gone_ns'] / 1e6:8.1f} "
              f"({m['gone_ns'] / base['gone_ns']:.2f}x)")
    print()
    print("where the time of a call goes (medians; the plugin's own log of its phases; process")
    print("start and exit measured as a VERSION call, which touches neither the node nor the kernel):")
    for key, label in rows:
        version = os.path.join(directory, key + "-version.json")
        if os.path.exists(version):
            values = json.load(open(version))["timings_ns"]
            print(f"  {label:<26} process start+exit (VERSION): {percentile(values, 50):.2f} ms")
    for key, label in rows[1:]:
        log = os.path.join(directory, key + "-phases.log")
        if not os.path.exists(log):
            continue
        for verb, phases in sorted(phase_medians(log).items()):
            parts = ", ".join(f"{name} {ms:.2f}" for name, ms in phases.items() if name != "in-process total")
            print(f"  {label:<26} {verb} in-process {phases['in-process total']:.2f} ms: {parts}")
    print()
    print("targets (p50, romana / ptp+host-local):")
    for key, verb, limit, label in (("r1", "ADD", 0.25, "1-node ADD"), ("r1", "DEL", 0.5, "1-node DEL"),
                                     ("r3", "ADD", 0.4, "3-node ADD"), ("r3", "DEL", 0.5, "3-node DEL")):
        s, base = stat[key, verb], stat["ptp", verb]
        if s is None or base is None:
            print(f"  {label:<11} <= {limit:.2f}x: no data")
            continue
        ratio = s[0] / base[0]
        print(f"  {label:<11} <= {limit:.2f}x: {ratio:.2f}x  {'met' if ratio <= limit else 'NOT met'}")
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
    elif sys.argv[1] == "mass":
        mass(*sys.argv[2:4], sys.argv[4], int(sys.argv[5]), *sys.argv[6:9])
    elif sys.argv[1] == "version":
        versions(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif sys.argv[1] == "report":
        report(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    elif sys.argv[1] == "port":
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
    elif sys.argv[1] == "leader":  # status JSON on stdin
        print(json.load(sys.stdin).get("leader") or "")
    elif sys.argv[1] == "ready":  # exits 0 once the node at SOCKET takes ADDs
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.connect(sys.argv[2])
        s.sendall(b"GET /v1/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        ready = json.loads(body or b"{}")
        sys.exit(0 if head.split()[1:2] == [b"200"] and ready.get("registered_host")
                 and ready.get("isolation_ready", True) else 1)
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
in_host() { ip netns exec "$host_ns" "$@"; }
knows_host() { ctl "$1" -o json host list | grep -q "\"name\": *\"$2\""; }

# Everything runs in the bench's own network namespace ($host_ns, its "host"),
# plugins and nodes alike: the node that serves the plugin runs in its default
# configuration, with its isolation rules (iptables, ipsets) in that namespace,
# not in the machine's. --manage-routes false: on loopback every host shares one
# underlay address, so there is no route to another host to install. Of the
# three-node cluster only the follower the plugin talks to has the firewall
# on (three nodes in one namespace would fight over the same chains).
start_node() { # start_node NAME FIREWALL [--join ADDR]: sets $node_addr
  local name=$1 firewall=$2; shift 2
  node_addr=127.0.0.1:$(py port)
  # Not through in_host (a function: $! would be its subshell, not the node).
  RUST_LOG=warn ip netns exec "$host_ns" "$bin/romana-node" run --name "$name" --data-dir "$work/$name" \
    --listen "$node_addr" --api-socket "$work/$name.sock" \
    --cluster-secret-file "$work/cluster-secret" \
    --cidr "$romana_cidr" --host-bits 4 --tenant-bits 2 --segment-bits 2 --endpoint-bits 8 \
    --manage-routes false --firewall "$firewall" \
    "$@" >>"$work/$name.log" 2>&1 &
  pids+=($!)
}
node_ready() { py ready "$1"; }
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
  in_host python3 "$work/driver.py" version "$plugin" "$config" "$rounds" "$work/$key-version.json"
  rm -f "$work/$key-cni.log"
  in_host python3 "$work/driver.py" run time "$tag-$key" "$plugin" "$config" "$rounds" "$work/$key.json" "$work/host-links" \
    "$work/$key.stderr" "$keep_going" || status=$?
  # The timed calls' own phase lines (romana's log; the RSS run's go elsewhere).
  [[ -f $work/$key-cni.log ]] && mv "$work/$key-cni.log" "$work/$key-phases.log"
  if ((status == 0)) || $keep_going; then
    log "$key: the same again under /usr/bin/time (peak RSS, untimed)"
    in_host python3 "$work/driver.py" run rss "$tag-$key" "$plugin" "$config" "$rounds" "$work/$key-rss.json" "$work/host-links" \
      "$work/$key.stderr" "$keep_going" || status=$?
  fi
  if ((status == 0)); then
    log "$key: mass teardown: $rounds ADDs, then $rounds DELs at once"
    in_host python3 "$work/driver.py" mass "$tag-$key" "$plugin" "$config" "$rounds" "$work/$key-mass.json" "$work/host-links" \
      "$work/$key.stderr" || status=$?
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
    if ! out=$(in_host env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=$verb CNI_CONTAINERID="$tag-$key-warm" \
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
ip netns add "$host_ns"
ip -n "$host_ns" link set lo up

# --- ptp + host-local -------------------------------------------------------
mkdir -p "$work/host-local"
cat >"$work/ptp.conf" <<EOF
{"cniVersion":"1.0.0","name":"bench-ptp","type":"ptp","ipMasq":false,
 "ipam":{"type":"host-local","subnet":"$ptp_cidr","dataDir":"$work/host-local"}}
EOF
bench ptp "$cni_dir/ptp" "$work/ptp.conf"

# --- romana, single-node cluster --------------------------------------------
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/cluster-secret"
romana_config() { # romana_config SOCKET FILE (the plugin logs to FILE's name with -cni.log)
  cat >"$2" <<EOF
{"cniVersion":"1.0.0","name":"bench-romana","type":"romana","tenant":"bench",
 "node_socket":"$1","log_file":"${2%.conf}-cni.log"}
EOF
}
log "r1: starting a single-node cluster"
start_node "$tag-solo" true
wait_for "the single node to register its host" knows_host "$work/$tag-solo.sock" "$tag-solo"
wait_for "the single node's isolation rules" node_ready "$work/$tag-solo.sock"
ctl "$work/$tag-solo.sock" tenant create bench >/dev/null
romana_config "$work/$tag-solo.sock" "$work/r1.conf"
bench r1 "$bin/romana" "$work/r1.conf"
stop_nodes

# --- romana, three-node cluster, plugin on a follower -----------------------
log "r3: starting a three-node cluster"
start_node "$tag-n1" false
first=$node_addr
wait_for "$tag-n1" knows_host "$work/$tag-n1.sock" "$tag-n1"
start_node "$tag-n2" true --join "$first"
start_node "$tag-n3" false --join "$first"
three_voters() { [[ $(ctl "$work/$tag-n1.sock" -o json status | py voters) -eq 3 ]]; }
wait_for "three voters" three_voters
leader=$(ctl "$work/$tag-n1.sock" -o json status | py leader)
# The plugin talks to n2, the node with the firewall: n1 created the cluster
# and leads unless an election moved the lead.
follower=$tag-n2
[[ $follower != "$leader" ]] || log "r3: $follower leads (an election moved the lead): the 3-node row is not through a follower"
wait_for "$follower to register its host" knows_host "$work/$follower.sock" "$follower"
wait_for "$follower's isolation rules" node_ready "$work/$follower.sock"
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
