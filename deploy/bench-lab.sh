#!/usr/bin/env bash
# Lab benchmarks: a two-host romana-lab (network namespaces on a bridged
# underlay, a romana-node in each, pods wired by the real CNI plugin).
#
# 1. Convergence. A long-lived probe pod on host2; N times, a pod is added on
#    host1 (`romana-lab pod add`, which includes the lab's namespace set-up
#    and the CNI plugin) and the probe pod sends ICMP echoes (raw socket, one
#    per millisecond) to the new pod's address until it answers. Two methods,
#    N pods each:
#      A  probing starts when the ADD has returned, at the address it
#         returned: the convergence figure (target: p99 under 100 ms);
#      B  probing starts with the ADD, at the address the pod is predicted to
#         get (the previous one + 1), so a pod that answers before the ADD
#         returns is seen then. This also shows what traffic that arrives
#         while the pod is being wired meets.
#    Reported per method, p50/p99 (nearest rank) and max:
#      pod add             ADD start -> `romana-lab pod add` returned
#      returned->reachable ADD returned -> first echo reply (0 if it answered
#                          during the ADD already)
#      start->reachable    ADD start -> first echo reply
#    In Romana a new pod needs no route change on other hosts (host2 routes
#    host1's whole prefix to host1), so the pod is reachable as soon as host1
#    has its host route: the plugin's own work, not a cluster-wide update.
#
# 2. Data path. iperf3 TCP throughput between the same two hosts, three paths
#    side by side, interleaved over a few rounds (median reported):
#      host-to-host   the host namespaces' underlay addresses
#      romana         a pod on host1 -> a pod on host2 (plain L3 routing)
#      vxlan          an overlay built here the way flannel's vxlan backend
#                     builds it: per host a vxlan device (VNI 42, dstport 4789,
#                     local = underlay address, nolearning, MTU 1450) with the
#                     vtep address 172.30.N.0/32; a route to the other host's
#                     172.30.M.0/24 via its vtep address (onlink), a permanent
#                     ARP entry for that address and a static FDB entry to the
#                     peer's underlay address; an "overlay pod" namespace per
#                     host on a veth (172.30.N.2/24, gateway 172.30.N.1 on the
#                     host side, MTU 1450).
#    Targets: romana >= 90% of host-to-host, and >= 1.1x the vxlan figure.
#
# Missed targets are reported, they do not fail the run; the exit status is
# non-zero only on a real error (a step that failed, a pod never reachable).
#
#   deploy/bench-lab.sh [--pods N] [--seconds S] [--rounds R] [--subnet X]
#
#   --pods N      pods per convergence method (default 50, at most 120)
#   --seconds S   length of each iperf3 run (default 5)
#   --rounds R    interleaved rounds of the three iperf3 paths (default 3)
#   --subnet X    third octet of the lab's underlay 192.168.X.0/24 (default 222)
#
# Run as root on Debian; installs what it needs and builds the release
# binaries. The lab has a name of its own (bl + this script's pid), its own
# directory under /run and its own subnet, so it can run next to other labs.
# Everything it creates (the lab, the overlay namespaces, the vxlan devices
# inside the host namespaces, iperf3 processes, temporary files) is removed on
# exit, also on failure or Ctrl-C. Traffic flows only between namespaces the
# script made.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib/prerequisites.sh

pods=50
seconds=5
rounds=3
subnet=222
usage() { echo "usage: $0 [--pods N] [--seconds S] [--rounds R] [--subnet X]" >&2; exit 2; }
number() { [[ ${1:-} =~ ^[1-9][0-9]*$ ]] || usage; }
while (($#)); do
  case "$1" in
    --pods) number "${2:-}"; pods=$2; shift 2 ;;
    --seconds) number "${2:-}"; seconds=$2; shift 2 ;;
    --rounds) number "${2:-}"; rounds=$2; shift 2 ;;
    --subnet) number "${2:-}"; subnet=$2; shift 2 ;;
    *) usage ;;
  esac
done
# Both methods' pods (and warm-ups, and perf1) share host1's 253 t1 addresses.
((pods <= 120)) || { echo "--pods is at most 120" >&2; exit 2; }
((seconds <= 120)) || { echo "--seconds is at most 120" >&2; exit 2; }
((rounds <= 20)) || { echo "--rounds is at most 20" >&2; exit 2; }
((subnet <= 254)) || { echo "--subnet is at most 254" >&2; exit 2; }

[[ $(id -u) -eq 0 ]] || { log "run as root (network namespaces)"; exit 1; }
install_prerequisites
log "building (release)"
cargo build --release --locked -p romana-node -p romana-cni -p simulation
bin=$PWD/target/release

name="bl$$"
name=${name:0:8}
lab_dir=/run/romana-bench-lab-$$
work=$(mktemp -d /tmp/romana-bench-lab.XXXXXX)
underlay1=192.168.$subnet.11
underlay2=192.168.$subnet.12
h1=$name-h1
h2=$name-h2
ov1=$name-ov1
ov2=$name-ov2
vxlan=vxlan42
pids=()

lab() { "$bin/romana-lab" --name "$name" --dir "$lab_dir" "$@"; }
ctl() { local host=$1; shift; "$bin/romanactl" --socket "$lab_dir/$host/romana.sock" "$@"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  log "removing the lab and everything else this run made"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  # The overlay pods (their veths go with them; the vxlan devices live in the
  # host namespaces, which the lab's down removes with the pods and nodes).
  for ns in "$ov1" "$ov2"; do
    ip netns list | awk '{print $1}' | grep -qx "$ns" && ip netns del "$ns"
  done
  lab down >/dev/null 2>"$work/down.err" || true
  if [[ -s $work/down.err ]]; then
    log "lab down reported:"
    cat "$work/down.err" >&2
  fi
  local left
  left=$(ip netns list | awk '{print $1}' | grep "^$name-" || true)
  [[ -z $left ]] || log "left behind: namespaces $left"
  left=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$name-" || true)
  [[ -z $left ]] || log "left behind: links $left"
  rm -rf "$work" "$lab_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -e $lab_dir ]] || ip link show "$name-br" >/dev/null 2>&1; then
  log "$lab_dir or the bridge $name-br exists already: another run with this pid's name?"
  exit 1
fi

cat >"$work/driver.py" <<'PY'
import ctypes, ipaddress, json, math, os, select, socket, struct, subprocess, sys, time

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, "setns: " + os.strerror(error))


def icmp_socket_in(netns):
    """A raw ICMP socket created inside netns (a socket stays in the
    namespace it was made in); this process itself goes back to its own."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        setns(target)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        finally:
            setns(own)
    finally:
        os.close(own)
        os.close(target)
    sock.setblocking(False)
    return sock


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


class Prober:
    """ICMP echo from the probe pod, one request per interval to one target."""

    def __init__(self, netns, interval=0.001):
        self.sock = icmp_socket_in(netns)
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self.interval = interval
        self.sent = 0

    def send(self, address):
        self.seq = (self.seq + 1) & 0xFFFF
        payload = struct.pack("!d", time.perf_counter())
        header = struct.pack("!BBHHH", 8, 0, 0, self.ident, self.seq)
        packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), self.ident, self.seq) + payload
        try:
            self.sock.sendto(packet, (address, 0))
            self.sent += 1
        except OSError:
            pass  # e.g. no route yet: just try again

    def replied(self, address):
        """Drains the socket; true if an echo reply of ours came from address."""
        found = False
        while True:
            try:
                packet, (source, _) = self.sock.recvfrom(2048)
            except BlockingIOError:
                return found
            ihl = (packet[0] & 0x0F) * 4
            if len(packet) < ihl + 8:
                continue
            kind, _, _, ident, _ = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
            if kind == 0 and ident == self.ident and source == address:
                found = True

    def wait(self, address, deadline, process=None, pidfd=None):
        """Probes address until it answers (returns the time), the deadline
        passes (None) or, when a process is given, until that process exits
        ("exited")."""
        next_send = time.perf_counter()
        watch = [self.sock] + ([pidfd] if pidfd is not None else [])
        while True:
            now = time.perf_counter()
            if address is not None and now >= next_send:
                self.send(address)
                next_send = now + self.interval
            timeout = max(0.0, min(next_send, deadline) - time.perf_counter())
            ready, _, _ = select.select(watch, [], [], timeout)
            now = time.perf_counter()
            if self.sock in ready and address is not None and self.replied(address):
                return now
            if self.sock in ready and address is None:
                self.replied("")  # drain
            if pidfd is not None and pidfd in ready and process.poll() is not None:
                return "exited"
            if now >= deadline:
                return None


def converge(lab, probe_netns, count, out, prefix, early_probe):
    prober = Prober(probe_netns)
    # Warm-up (untimed): a first pod, reached once (page cache, ARP between
    # the hosts, the node's allocation path).
    records, failures = [], []
    previous = None
    for i in range(count + 1):
        name = f"{prefix}warm" if i == 0 else f"{prefix}{i}"
        predicted = str(ipaddress.IPv4Address(previous) + 1) if previous and early_probe else None
        start = time.perf_counter()
        process = subprocess.Popen(lab + ["pod", "add", "host1", "t1", name],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        pidfd = os.pidfd_open(process.pid)
        early = None
        while True:
            got = prober.wait(predicted, start + 60, process, pidfd)
            if got == "exited":
                break
            if got is None:
                process.kill()
                process.wait()
                break
            # An answer from the predicted address: keep it, wait for the ADD.
            early = early or got
            predicted = None
        os.close(pidfd)
        output, errors = process.communicate()
        returned = time.perf_counter()
        if process.returncode != 0:
            sys.stderr.write(f"pod add {name} failed: {errors.decode(errors='replace').strip()}\n")
            sys.exit(1)
        fields = output.decode().split()
        address = fields[3] if len(fields) >= 4 else ""
        ipaddress.IPv4Address(address)  # a real address, or an error
        guessed = previous is not None and address == str(ipaddress.IPv4Address(previous) + 1)
        if not guessed:
            early = None  # a wrong prediction: any reply came from another address
        previous = address
        reached = early
        if reached is None:
            got = prober.wait(address, returned + 5)
            reached = got if isinstance(got, float) else None
        if i == 0:
            if reached is None:
                sys.stderr.write(f"warm-up pod {address} never answered the probe pod\n")
                sys.exit(1)
            continue
        if reached is None:
            failures.append(f"{name} {address}: no echo reply within 5 s of the ADD returning")
            continue
        records.append({
            "name": name, "ip": address,
            "add_ms": (returned - start) * 1e3,
            "after_return_ms": max(0.0, reached - returned) * 1e3,
            "start_to_reach_ms": (reached - start) * 1e3,
            "during_add": early is not None,
            "predicted": guessed,
        })
    json.dump({"records": records, "failures": failures, "probes": prober.sent}, open(out, "w"))


def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def report_convergence(directory, count, retrans_ms):
    methods = (("after", "A. probing once the ADD has returned (the convergence figure)"),
               ("during", "B. probing also during the ADD, at the predicted next address"))
    print(f"Convergence: {count} pods per method added on host1 with `romana-lab pod add`, each probed")
    print("with ICMP echo (one per ms, raw socket) from a probe pod on host2 until it answers;")
    rank = math.ceil(0.99 * count)
    print(f"p99 is nearest rank (of {count} values: the {rank}th from the bottom"
          f"{', i.e. the max' if rank == count else ''})")
    unreachable = 0
    for key, title in methods:
        data = json.load(open(os.path.join(directory, f"converge-{key}.json")))
        records = data["records"]
        print()
        print(f"  {title}")
        print(f"    {'interval':<46} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        rows = (("add_ms", "pod add (lab set-up + CNI plugin, wall clock)"),
                ("after_return_ms", "ADD returned -> reachable"),
                ("start_to_reach_ms", "ADD start -> reachable"))
        for field, label in rows:
            values = [r[field] for r in records]
            if not values:
                print(f"    {label:<46} {'-':>8} {'-':>8} {'-':>8}")
                continue
            print(f"    {label:<46} {percentile(values, 50):>8.2f} {percentile(values, 99):>8.2f} "
                  f"{max(values):>8.2f}")
        if records:
            p99 = percentile([r["start_to_reach_ms"] for r in records], 99)
            verdict = "met" if p99 < 100 else "NOT met"
            if key == "after":
                print(f"    target: p99 ADD start -> reachable < 100 ms: {p99:.2f} ms  {verdict}")
            else:
                during = sum(1 for r in records if r["during_add"])
                guessed = sum(1 for r in records if r["predicted"])
                stalled = sum(1 for r in records if r["start_to_reach_ms"] >= 500)
                print(f"    (p99 {p99:.2f} ms: < 100 ms {verdict}; predicted address right {guessed}/{len(records)},")
                print(f"    answered before the ADD returned {during}/{len(records)}, answered only after >= 500 ms "
                      f"{stalled}/{len(records)};")
                print(f"    host1's ARP retransmit time is {retrans_ms} ms)")
        for failure in data["failures"]:
            print(f"    UNREACHABLE {failure}")
        unreachable += len(data["failures"])
    return unreachable


def report_throughput(directory, rounds, seconds):
    paths = (("host", "host-to-host (underlay)"), ("romana", "romana pod-to-pod"),
             ("vxlan", "vxlan overlay pod-to-pod"))
    median = {}
    print(f"Data path: iperf3 TCP, one stream, {seconds} s per run, {rounds} round(s) interleaved;")
    print("receiver-side throughput, median (min-max) over the rounds")
    print()
    print(f"  {'path':<26} {'from -> to':<34} {'Gbit/s':>8} {'min-max':>15} {'retr':>6}")
    for key, label in paths:
        runs = [json.load(open(os.path.join(directory, f"{key}-{r}.json"))) for r in range(1, rounds + 1)]
        rates = [run["end"]["sum_received"]["bits_per_second"] / 1e9 for run in runs]
        retransmits = sum(run["end"]["sum_sent"].get("retransmits", 0) for run in runs)
        start = runs[0]["start"]["connected"][0]
        endpoints = f"{start['local_host']} -> {start['remote_host']}"
        ordered = sorted(rates)
        median[key] = ordered[len(ordered) // 2] if len(ordered) % 2 else \
            (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
        spread = f"{min(rates):.2f}-{max(rates):.2f}"
        print(f"  {label:<26} {endpoints:<34} {median[key]:>8.2f} {spread:>15} {retransmits:>6}")
    print()
    to_host = median["romana"] / median["host"]
    to_vxlan = median["romana"] / median["vxlan"]
    print(f"  romana / host-to-host: {to_host * 100:6.1f}%   target >= 90%:   {'met' if to_host >= 0.9 else 'NOT met'}")
    print(f"  romana / vxlan:        {to_vxlan:6.2f}x   target >= 1.1x:  {'met' if to_vxlan >= 1.1 else 'NOT met'}")


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "converge":
        bin_lab, lab_name, lab_dir, probe_netns, count, out, prefix, early = sys.argv[2:]
        converge([bin_lab, "--name", lab_name, "--dir", lab_dir], probe_netns, int(count), out,
                 prefix, early == "early")
    elif command == "report":
        directory, count, rounds, seconds, retrans_ms = sys.argv[2:]
        failed = report_convergence(directory, int(count), retrans_ms)
        print()
        report_throughput(directory, int(rounds), int(seconds))
        sys.exit(1 if failed else 0)
    elif command == "rate":  # one iperf3 JSON: Gbit/s
        print(f"{json.load(open(sys.argv[2]))['end']['sum_received']['bits_per_second'] / 1e9:.2f}")
PY
py() { python3 "$work/driver.py" "$@"; }

# --- the lab ----------------------------------------------------------------
log "lab $name: two hosts on 192.168.$subnet.0/24 (state in $lab_dir)"
lab up --hosts 2 --subnet "$subnet" >/dev/null
ctl host1 tenant create t1 >/dev/null
lab pod add host2 t1 probe >/dev/null
lab pod add host1 t1 perf1 >/dev/null
lab pod add host2 t1 perf2 >/dev/null
ip_of() { lab pod list | awk -v pod="$1" '$1 == pod { print $4 }'; }
perf1_ip=$(ip_of perf1)
perf2_ip=$(ip_of perf2)

# --- 1. convergence -----------------------------------------------------------
# Method A (pods a1..aN) probes once the ADD has returned; method B (b1..bN)
# probes the predicted address during the ADD too. Each starts with one
# untimed warm-up pod.
log "convergence A: $pods pods on host1, probed from host2 once each ADD has returned"
py converge "$bin/romana-lab" "$name" "$lab_dir" "$name-p-probe" "$pods" "$work/converge-after.json" a after
log "convergence B: $pods pods on host1, probed from host2 during each ADD too"
py converge "$bin/romana-lab" "$name" "$lab_dir" "$name-p-probe" "$pods" "$work/converge-during.json" b early
retrans_ms=$(in_ns "$h1" sysctl -n net.ipv4.neigh.eth0.retrans_time_ms)

# --- 2. the flannel-style vxlan overlay ---------------------------------------
log "building the vxlan overlay (VNI 42, dstport 4789, MTU 1450) between $h1 and $h2"
vtep_mac() { printf '02:42:ac:1e:%02x:00' "$1"; }
overlay_host() { # overlay_host N NETNS UNDERLAY POD_NETNS PEER_N PEER_UNDERLAY
  local n=$1 ns=$2 local_ip=$3 pod_ns=$4 peer=$5 peer_ip=$6
  in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
  in_ns "$ns" ip link add "$vxlan" type vxlan id 42 local "$local_ip" dev eth0 dstport 4789 nolearning
  in_ns "$ns" ip link set "$vxlan" mtu 1450 address "$(vtep_mac "$n")"
  in_ns "$ns" ip addr add "172.30.$n.0/32" dev "$vxlan"
  in_ns "$ns" ip link set "$vxlan" up
  # flannel: route to the peer's subnet via the peer's vtep address (onlink),
  # a permanent ARP entry for that address, an FDB entry to the peer host.
  in_ns "$ns" ip route add "172.30.$peer.0/24" via "172.30.$peer.0" dev "$vxlan" onlink
  in_ns "$ns" ip neigh replace "172.30.$peer.0" lladdr "$(vtep_mac "$peer")" dev "$vxlan" nud permanent
  in_ns "$ns" bridge fdb append "$(vtep_mac "$peer")" dev "$vxlan" dst "$peer_ip" self permanent
  # The overlay pod: a namespace on a veth, the host side as its gateway.
  ip netns add "$pod_ns"
  in_ns "$ns" ip link add ovl0 mtu 1450 type veth peer name eth0 mtu 1450 netns "$pod_ns"
  in_ns "$ns" ip addr add "172.30.$n.1/24" dev ovl0
  in_ns "$ns" ip link set ovl0 up
  in_ns "$pod_ns" ip link set lo up
  in_ns "$pod_ns" ip addr add "172.30.$n.2/24" dev eth0
  in_ns "$pod_ns" ip link set eth0 up
  in_ns "$pod_ns" ip route add default via "172.30.$n.1"
}
overlay_host 1 "$h1" "$underlay1" "$ov1" 2 "$underlay2"
overlay_host 2 "$h2" "$underlay2" "$ov2" 1 "$underlay1"
reachable() { # reachable FROM_NETNS ADDRESS
  for _ in $(seq 1 50); do
    in_ns "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  log "$2 is not reachable from $1"; return 1
}
reachable "$ov1" 172.30.2.2
reachable "$h1" "$underlay2"
reachable "$name-p-perf1" "$perf2_ip"

# --- 3. throughput -------------------------------------------------------------
# One iperf3 server per run (-1: it exits after one test), in the receiving
# namespace, bound to the address under test.
iperf() { # iperf KEY CLIENT_NETNS SERVER_NETNS SERVER_ADDRESS
  local key=$1 client=$2 server=$3 address=$4 pid
  in_ns "$server" iperf3 -s -1 -B "$address" -p 5201 >"$work/$key.server.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 50); do
    in_ns "$server" ss -Hltn "sport = :5201" | grep -q . && break
    sleep 0.1
  done
  if ! in_ns "$client" iperf3 -c "$address" -p 5201 -t "$seconds" -J >"$work/$key.json" 2>"$work/$key.err"; then
    log "iperf3 $key failed:"; cat "$work/$key.err" "$work/$key.json" >&2; return 1
  fi
  wait "$pid" || { log "iperf3 server for $key failed:"; cat "$work/$key.server.log" >&2; return 1; }
  local kept=() other
  for other in "${pids[@]}"; do [[ $other == "$pid" ]] || kept+=("$other"); done
  pids=("${kept[@]}")
}
vxlan_tx() { in_ns "$h1" cat "/sys/class/net/$vxlan/statistics/tx_bytes"; }
vxlan_before=$(vxlan_tx)
for ((round = 1; round <= rounds; round++)); do
  log "iperf3 round $round/$rounds: host-to-host, romana, vxlan (${seconds} s each)"
  iperf "host-$round" "$h1" "$h2" "$underlay2"
  iperf "romana-$round" "$name-p-perf1" "$name-p-perf2" "$perf2_ip"
  iperf "vxlan-$round" "$ov1" "$ov2" 172.30.2.2
  printf '    host %s  romana %s  vxlan %s Gbit/s\n' "$(py rate "$work/host-$round.json")" \
    "$(py rate "$work/romana-$round.json")" "$(py rate "$work/vxlan-$round.json")" >&2
done
# The overlay's traffic really went through the vxlan device.
vxlan_bytes=$(($(vxlan_tx) - vxlan_before))
if ((vxlan_bytes < 1000000)); then
  log "the vxlan runs sent only $vxlan_bytes bytes through $vxlan: the overlay is not in the path"
  exit 1
fi

# --- report ---------------------------------------------------------------------
echo
echo "Lab benchmark: lab $name, 2 hosts, underlay 192.168.$subnet.0/24 (veths on a bridge), $(nproc) cores"
echo
status=0
py report "$work" "$pods" "$rounds" "$seconds" "$retrans_ms" || status=$?
echo
echo "  ($((vxlan_bytes / 1048576)) MiB went through $vxlan on host1; client and server share the $(nproc) cores,"
echo "   so these figures measure the per-byte CPU cost of each path, not a wire speed)"
exit "$status"
