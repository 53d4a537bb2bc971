#!/usr/bin/env bash
# Policy benchmarks: a three-host romana-lab (network namespaces on a bridged
# underlay, a romana-node in each, pods wired by the real CNI plugin) and a
# scratch network namespace of its own.
#
# 1. Propagation. Tenants t1 and t2, segments t1/backend and t2/frontend; a
#    t1/backend pod on each host runs a TCP listener (accepting repeatedly),
#    a t2/frontend pod on each host is a client. Three probe pairs, each
#    across hosts: host2 -> host1, host3 -> host2, host1 -> host3, so every
#    host's firewall is crossed once as the source's and once as the
#    destination's. N rounds (plus one untimed warm-up); in round r, port
#    P = 31000 + r, fresh per round so that earlier rounds' rules and
#    conntrack entries do not count:
#      - the pairs are probed for 30 ms first: no connection may get
#        through (isolation holds; otherwise the run fails);
#      - the clock starts, `romanactl policy apply` (host1's socket) opens
#        t2/frontend -> t1/backend on TCP P, and each pair attempts a fresh
#        non-blocking connect to port P every millisecond (an attempt not
#        answered within 50 ms was dropped and is closed), until all three
#        have connected once;
#      - enforced = the last pair's connect, measured from the clock start;
#      - the policy is deleted and the script waits until no host's chain
#        holds its rule any more (`iptables -S`, polled).
#    Reported: p50/p99 (nearest rank) and max of `policy apply` (the
#    command's own wall clock) and of apply start -> enforced on all three
#    hosts. Target: p99 under 200 ms.
#
# 2. Apply cost, in a scratch namespace (no lab host involved). N distinct
#    rules (default 1000) in the shape the node renders a policy rule:
#      -A ROMANA-FORWARD -s 10.0.X.0/255.0.255.0 -d 10.0.Y.0/255.0.255.0
#         -p tcp -m tcp --dport P -m comment --comment "policy pI" -j ACCEPT
#    timed (wall clock, spawning to reaping; median of a few repeats):
#      a  one `iptables-restore -w --noflush` declaring the chain, flushing
#         it and filling it with all N rules (the node's transaction), into
#         an empty chain; and again over a chain that already holds them
#         (flush + refill, what every later change costs);
#      b  the same rules as N `iptables -w -A` invocations, one each, into
#         an empty chain.
#    Both must leave the identical chain (checked). Target: b/a >= 20x.
#
# 3. Data path. iperf3 TCP throughput from a t1 pod on host1 to a t1 pod on
#    host2, interleaved over a few rounds (median reported), with
#      none        isolation only (no policies);
#      policies    100 policies installed (applies of 50: the node takes at
#                  most 64 at once) that do not match the flow: each opens
#                  t1 -> t1 on another TCP port (20001..20100), so the
#                  flow's addresses match every rule and each one is
#                  evaluated up to its port match before the tenant accept;
#                  removed again after the run (100 deletes);
#      bypassed    for reference, an ACCEPT inserted at the top of FORWARD
#                  on both hosts, ahead of the jump to ROMANA-FORWARD (the
#                  node leaves other rules alone; removed right after).
#    The order of the three rotates from round to round. The chain's first
#    rule accepts RELATED,ESTABLISHED, so policy rules are walked by each
#    connection's first packet, not by every packet.
#    Target: policies >= 98% of none.
#
# Missed targets are reported, they do not fail the run; the exit status is
# non-zero only on a real error (a step that failed, isolation not holding,
# a policy never enforced).
#
#   deploy/bench-policy.sh [--rounds N] [--rules N] [--repeats N]
#                          [--seconds S] [--iperf-rounds R] [--subnet X]
#
#   --rounds N        propagation rounds (default 20)
#   --rules N         rules of the apply-cost test (default 1000)
#   --repeats N       repeats of the apply-cost test, median (default 3)
#   --seconds S       length of each iperf3 run (default 5)
#   --iperf-rounds R  interleaved rounds of the iperf3 runs (default 3)
#   --subnet X        third octet of the lab's underlay 192.168.X.0/24
#                     (default 223)
#
# Run as root on Debian; installs what it needs and builds the release
# binaries. The lab has a name of its own (bp + this script's pid), its own
# directory under /run and its own subnet, so it can run next to other labs;
# the scratch namespace is named after the lab too. Everything it creates
# (the lab, the scratch namespace, listeners, iperf3 processes, temporary
# files) is removed on exit, also on failure or Ctrl-C. Traffic flows only
# between namespaces the script made.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib/prerequisites.sh

rounds=20
rules=1000
repeats=3
seconds=5
iperf_rounds=3
subnet=223
usage() {
  echo "usage: $0 [--rounds N] [--rules N] [--repeats N] [--seconds S] [--iperf-rounds R] [--subnet X]" >&2
  exit 2
}
number() { [[ ${1:-} =~ ^[1-9][0-9]*$ ]] || usage; }
while (($#)); do
  case "$1" in
    --rounds) number "${2:-}"; rounds=$2; shift 2 ;;
    --rules) number "${2:-}"; rules=$2; shift 2 ;;
    --repeats) number "${2:-}"; repeats=$2; shift 2 ;;
    --seconds) number "${2:-}"; seconds=$2; shift 2 ;;
    --iperf-rounds) number "${2:-}"; iperf_rounds=$2; shift 2 ;;
    --subnet) number "${2:-}"; subnet=$2; shift 2 ;;
    *) usage ;;
  esac
done
# Propagation ports are 31000 + round: keep them below the ephemeral range.
((rounds <= 1000)) || { echo "--rounds is at most 1000" >&2; exit 2; }
((rules <= 10000)) || { echo "--rules is at most 10000" >&2; exit 2; }
((repeats <= 20)) || { echo "--repeats is at most 20" >&2; exit 2; }
((seconds <= 120)) || { echo "--seconds is at most 120" >&2; exit 2; }
((iperf_rounds <= 20)) || { echo "--iperf-rounds is at most 20" >&2; exit 2; }
((subnet <= 254)) || { echo "--subnet is at most 254" >&2; exit 2; }

[[ $(id -u) -eq 0 ]] || { log "run as root (network namespaces)"; exit 1; }
install_prerequisites
log "building (release)"
cargo build --release --locked -p romana-node -p romana-cni -p simulation
bin=$PWD/target/release
# The interpreter itself (not a version manager's shim): started often.
python=$(python3 -c 'import sys; print(sys.executable)')

name="bp$$"
name=${name:0:8}
lab_dir=/run/romana-bench-policy-$$
work=$(mktemp -d /tmp/romana-bench-policy.XXXXXX)
scratch=$name-fw
hosts=(host1 host2 host3)
policy_port_base=31000
datapath_policies=100
datapath_port_base=20000
bypass=(FORWARD -m comment --comment "bench-policy bypass" -j ACCEPT)
pids=()
bypassed=()

lab() { "$bin/romana-lab" --name "$name" --dir "$lab_dir" "$@"; }
ctl() { local host=$1; shift; "$bin/romanactl" --socket "$lab_dir/$host/romana.sock" "$@"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
py() { "$python" "$work/driver.py" "$@"; }
netns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

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
  for ns in "${bypassed[@]}"; do in_ns "$ns" iptables -w -D "${bypass[@]}" 2>/dev/null; done
  netns_exists "$scratch" && ip netns del "$scratch"
  if [[ -e $lab_dir/lab.json ]] || netns_exists "$name-h1" || ip link show "$name-br" >/dev/null 2>&1; then
    lab down >/dev/null 2>"$work/down.err" || true
    if [[ -s $work/down.err ]]; then
      log "lab down reported:"
      cat "$work/down.err" >&2
    fi
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

if [[ -e $lab_dir ]] || ip link show "$name-br" >/dev/null 2>&1 || netns_exists "$scratch"; then
  log "$lab_dir, the bridge $name-br or the namespace $scratch exists already: another run with this pid's name?"
  exit 1
fi

cat >"$work/driver.py" <<'PY'
import ctypes, errno, json, math, os, select, shlex, socket, subprocess, sys, time

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, "setns: " + os.strerror(error))


def fail(message):
    sys.stderr.write(message.rstrip() + "\n")
    sys.exit(1)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


# --- the listener of a backend pod -------------------------------------------

def serve(base, count, ready):
    """Listens on ports base .. base+count-1; accepts and closes, forever."""
    poller = select.epoll()
    listeners = {}
    for port in range(base, base + count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(512)
        sock.setblocking(False)
        listeners[sock.fileno()] = sock
        poller.register(sock.fileno(), select.EPOLLIN)
    with open(ready, "w") as marker:
        marker.write("ready\n")
    while True:
        for fd, _ in poller.poll():
            while True:
                try:
                    connection, _ = listeners[fd].accept()
                except OSError:
                    break
                connection.close()


# --- 1. propagation ---------------------------------------------------------------

class Namespaces:
    """Creates sockets inside other network namespaces (a socket stays in the
    namespace it was made in); the process itself stays in its own."""

    def __init__(self, names):
        self.own = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.fds = {name: os.open(f"/run/netns/{name}", os.O_RDONLY) for name in names}

    def tcp_socket(self, name):
        setns(self.fds[name])
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            setns(self.own)
        sock.setblocking(False)
        return sock


class Prober:
    """Fresh non-blocking TCP connects from each pair's client namespace to
    its server, one per interval per pair, until each pair has connected."""

    def __init__(self, namespaces, pairs, interval=0.001, attempt_timeout=0.05):
        self.namespaces = namespaces
        self.pairs = pairs
        self.interval = interval
        self.attempt_timeout = attempt_timeout
        self.poller = select.epoll()
        self.pending = {}  # fd -> (socket, pair index, sent), oldest first
        self.attempts = 0

    def _close(self, fd):
        sock, _, _ = self.pending.pop(fd)
        self.poller.unregister(fd)
        sock.close()

    def run(self, port, until, process=None):
        """Returns (connect time per pair or None, pairs refused, time the
        process exited or None)."""
        reached = [None] * len(self.pairs)
        refused = set()
        next_send = [0.0] * len(self.pairs)
        exited = None
        pidfd = None
        if process is not None:
            pidfd = os.pidfd_open(process.pid)
            self.poller.register(pidfd, select.EPOLLIN)
        try:
            while True:
                now = time.perf_counter()
                waiting = [i for i in range(len(self.pairs)) if reached[i] is None]
                if not waiting or now >= until:
                    break
                for i in waiting:
                    if now < next_send[i]:
                        continue
                    client, address = self.pairs[i]
                    sock = self.namespaces.tcp_socket(client)
                    code = sock.connect_ex((address, port))
                    self.attempts += 1
                    next_send[i] = now + self.interval
                    if code not in (0, errno.EINPROGRESS):
                        sock.close()  # e.g. no route yet: try again
                        continue
                    self.pending[sock.fileno()] = (sock, i, now)
                    self.poller.register(sock.fileno(), select.EPOLLOUT)
                for fd in list(self.pending):
                    if now - self.pending[fd][2] < self.attempt_timeout:
                        break  # the rest are younger
                    self._close(fd)
                wake = min([next_send[i] for i in waiting] + [until])
                events = self.poller.poll(max(0.0, wake - time.perf_counter()))
                now = time.perf_counter()
                for fd, _ in events:
                    if fd == pidfd:
                        exited = now
                        self.poller.unregister(pidfd)
                        continue
                    if fd not in self.pending:
                        continue
                    sock, i, _ = self.pending[fd]
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code == 0 and reached[i] is None:
                        reached[i] = now
                    elif code == errno.ECONNREFUSED:
                        refused.add(i)
                    self._close(fd)
        finally:
            for fd in list(self.pending):
                self._close(fd)
            if pidfd is not None:
                if exited is None:  # probing ended first: wait for the exit
                    select.select([pidfd], [], [], 30)
                    exited = time.perf_counter()
                try:
                    self.poller.unregister(pidfd)
                except (OSError, KeyError, ValueError):
                    pass
                os.close(pidfd)
        return reached, refused, exited


def hosts_holding(host_namespaces, policy):
    """The hosts whose chain still holds a rule of the policy (all listed at
    once, one `iptables -S` per host)."""
    listings = [(host, subprocess.Popen(["ip", "netns", "exec", host, "iptables", "-w", "-S"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                for host in host_namespaces]
    holding = []
    for host, listing in listings:
        output, errors = listing.communicate()
        if listing.returncode != 0:
            fail(f"iptables -S in {host}: {errors.strip()}")
        if f'"policy {policy}"' in output:
            holding.append(host)
    return holding


def propagate(ctl, socket_path, directory, rounds, port_base, pairs_text, host_namespaces, out):
    pairs = []
    labels = []
    for item in pairs_text.split(","):
        client, address, label = item.split("=")
        pairs.append((client, address))
        labels.append(label)
    hosts = host_namespaces.split(",")
    namespaces = Namespaces({client for client, _ in pairs})
    prober = Prober(namespaces, pairs)
    base = [ctl, "--socket", socket_path]
    records = []
    for r in range(rounds + 1):
        port = port_base + r
        name = f"prop-{r}"
        path = os.path.join(directory, f"{name}.json")
        with open(path, "w") as policy_file:
            json.dump({"securitypolicies": [{
                "name": name,
                "direction": "ingress",
                "applied_to": [{"tenant": "t1", "segment": "backend"}],
                "peers": [{"tenant": "t2", "segment": "frontend"}],
                "rules": [{"protocol": "tcp", "ports": [port]}],
            }]}, policy_file)
        # Isolation holds: nothing gets through to the fresh port.
        reached, refused, _ = prober.run(port, time.perf_counter() + 0.03)
        leaked = [labels[i] for i in range(len(pairs)) if reached[i] is not None or i in refused]
        if leaked:
            fail(f"round {r}: t2/frontend reached t1/backend port {port} before any policy "
                 f"opened it ({', '.join(leaked)}): isolation is not in effect")
        start = time.perf_counter()
        process = subprocess.Popen(base + ["policy", "apply", "-f", path],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        reached, refused, exited = prober.run(port, start + 10, process)
        output, errors = process.communicate()
        if exited is None:
            exited = time.perf_counter()
        if process.returncode != 0:
            fail(f"round {r}: policy apply failed: {errors.decode(errors='replace').strip()}")
        if refused:
            fail(f"round {r}: connection refused by {', '.join(labels[i] for i in sorted(refused))}: "
                 f"no listener on port {port}")
        missing = [labels[i] for i in range(len(pairs)) if reached[i] is None]
        if missing:
            fail(f"round {r}: policy {name} not enforced within 10 s ({', '.join(missing)})")
        # Every host enforces it now (each is crossed by a pair): its rule
        # must be listed, or the wait for its removal below proves nothing.
        listed = hosts_holding(hosts, name)
        if listed != hosts:
            fail(f"round {r}: policy {name} is enforced but not listed in the chains of "
                 f"{', '.join(h for h in hosts if h not in listed)}")
        # Delete it, and wait until no host enforces it any more.
        deleting = time.perf_counter()
        deleted = subprocess.run(base + ["policy", "delete", name], capture_output=True, text=True)
        delete_done = time.perf_counter()
        if deleted.returncode != 0:
            fail(f"round {r}: policy delete failed: {deleted.stderr.strip()}")
        remaining = list(hosts)
        while remaining:
            remaining = hosts_holding(remaining, name)
            if remaining and time.perf_counter() - deleting > 10:
                fail(f"round {r}: policy {name} still in the chain of {', '.join(remaining)} 10 s after its delete")
            if remaining:
                time.sleep(0.005)
        gone = time.perf_counter()
        if r == 0:
            continue  # warm-up
        records.append({
            "round": r, "port": port,
            "apply_ms": (exited - start) * 1e3,
            "enforced_ms": (max(reached) - start) * 1e3,
            "pairs_ms": {labels[i]: (reached[i] - start) * 1e3 for i in range(len(pairs))},
            "delete_ms": (delete_done - deleting) * 1e3,
            "gone_ms": (gone - deleting) * 1e3,
        })
        sys.stderr.write(f"    round {r:>3}: apply {records[-1]['apply_ms']:7.2f} ms, "
                         f"enforced everywhere {records[-1]['enforced_ms']:7.2f} ms\n")
    json.dump({"records": records, "labels": labels, "attempts": prober.attempts}, open(out, "w"))


# --- 2. apply cost ------------------------------------------------------------------

def iptables(*args, check=True):
    result = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        fail(f"iptables {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def applycost(count, repeats, out):
    """Runs inside the scratch namespace."""
    rules = []
    for i in range(count):
        x = 16 + i % 240
        y = 16 + (i * 7 + i // 240) % 240
        rules.append(f"-A ROMANA-FORWARD -s 10.0.{x}.0/255.0.255.0 -d 10.0.{y}.0/255.0.255.0 "
                     f"-p tcp -m tcp --dport {10000 + i} -m comment --comment \"policy p{i}\" -j ACCEPT")
    restore = "*filter\n:ROMANA-FORWARD - [0:0]\n-F ROMANA-FORWARD\n" + "\n".join(rules) + "\nCOMMIT\n"

    def reset():
        iptables("-F", "ROMANA-FORWARD", check=False)
        iptables("-X", "ROMANA-FORWARD", check=False)

    def listing():
        return [line for line in iptables("-S", "ROMANA-FORWARD").splitlines() if line.startswith("-A ")]

    def transaction():
        start = time.perf_counter()
        result = subprocess.run(["iptables-restore", "-w", "--noflush"], input=restore,
                                capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            fail(f"iptables-restore refused the rules: {result.stderr.strip()}")
        return elapsed

    results = {"empty": [], "full": [], "single": []}
    reference = None
    for repeat in range(repeats):
        reset()
        results["empty"].append(transaction())
        after_restore = listing()
        if len(after_restore) != count:
            fail(f"iptables-restore left {len(after_restore)} rules, expected {count}")
        results["full"].append(transaction())
        if listing() != after_restore:
            fail("the refill left a different chain")
        reset()
        iptables("-N", "ROMANA-FORWARD")
        arguments = [shlex.split(rule) for rule in rules]
        start = time.perf_counter()
        for args in arguments:
            result = subprocess.run(["iptables", "-w", *args], capture_output=True)
            if result.returncode != 0:
                fail(f"iptables {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
        results["single"].append(time.perf_counter() - start)
        if listing() != after_restore:
            fail("the single iptables calls left a different chain than iptables-restore")
        reference = after_restore
        sys.stderr.write(f"    repeat {repeat + 1}/{repeats}: restore {results['empty'][-1] * 1e3:.1f} ms "
                         f"(refill {results['full'][-1] * 1e3:.1f} ms), {count} x iptables "
                         f"{results['single'][-1] * 1e3:.0f} ms\n")
    reset()
    version = subprocess.run(["iptables", "-V"], capture_output=True, text=True).stdout.strip()
    json.dump({"count": count, "results": results, "version": version,
               "sample": reference[0] if reference else ""}, open(out, "w"))


# --- 3. data path ----------------------------------------------------------------------

def datapath_policies(prefix, count, port_base):
    """Writes PREFIX-1.json, PREFIX-2.json, ...: the node takes at most 64
    policies per apply."""
    policies = [{
        "name": f"dp-{i:03d}",
        "direction": "ingress",
        "applied_to": [{"tenant": "t1"}],
        "peers": [{"tenant": "t1"}],
        "rules": [{"protocol": "tcp", "ports": [port_base + i]}],
    } for i in range(1, count + 1)]
    for number, first in enumerate(range(0, count, 50), start=1):
        json.dump({"securitypolicies": policies[first:first + 50]}, open(f"{prefix}-{number}.json", "w"))


def rate(path):
    return json.load(open(path))["end"]["sum_received"]["bits_per_second"] / 1e9


# --- report -------------------------------------------------------------------------------

def report(directory, rounds, iperf_rounds, seconds, policies):
    data = json.load(open(os.path.join(directory, "propagation.json")))
    records = data["records"]
    rank = math.ceil(0.99 * len(records))
    print(f"1. Propagation: {len(records)} rounds (+1 warm-up), policy t2/frontend -> t1/backend on a fresh")
    print("   TCP port per round, applied on host1; probed with fresh connects (one per ms per pair) from")
    print("   t2/frontend pods to t1/backend listeners: host2->host1, host3->host2, host1->host3.")
    print(f"   p99 is nearest rank (of {len(records)}: the {rank}th from the bottom"
          f"{', i.e. the max' if rank == len(records) else ''})")
    print()
    print(f"     {'interval':<44} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    rows = [("apply_ms", "policy apply (romanactl, wall clock)"),
            ("enforced_ms", "apply start -> enforced on all 3 hosts")]
    for field, label in rows:
        values = [r[field] for r in records]
        print(f"     {label:<44} {percentile(values, 50):>8.2f} {percentile(values, 99):>8.2f} {max(values):>8.2f}")
    for label in data["labels"]:
        values = [r["pairs_ms"][label] for r in records]
        text = f"  of which {label} connected"
        print(f"     {text:<44} {percentile(values, 50):>8.2f} {percentile(values, 99):>8.2f} {max(values):>8.2f}")
    values = [r["delete_ms"] for r in records]
    print(f"     {'policy delete (romanactl, wall clock)':<44} {percentile(values, 50):>8.2f} "
          f"{percentile(values, 99):>8.2f} {max(values):>8.2f}")
    values = [r["gone_ms"] for r in records]
    print(f"     {'policy delete -> rule gone on all 3 (coarse)':<44} {percentile(values, 50):>8.2f} "
          f"{percentile(values, 99):>8.2f} {max(values):>8.2f}")
    p99 = percentile([r["enforced_ms"] for r in records], 99)
    print(f"   target: p99 apply start -> enforced everywhere < 200 ms: {p99:.2f} ms  "
          f"{'met' if p99 < 200 else 'NOT met'}")
    print(f"   ({data['attempts']} connect attempts in all; none got through in the 30 ms before any apply;")
    print("   rule gone: polled with `iptables -S`, the three hosts at once, every 5 ms: coarse)")
    print()

    cost = json.load(open(os.path.join(directory, "applycost.json")))
    count = cost["count"]
    empty = median(cost["results"]["empty"]) * 1e3
    full = median(cost["results"]["full"]) * 1e3
    single = median(cost["results"]["single"]) * 1e3
    repeats = len(cost["results"]["empty"])
    print(f"2. Apply cost: {count} policy rules in a scratch namespace, {cost['version']};")
    print(f"   wall clock, median of {repeats} repeat(s); both ways leave the identical chain")
    print()
    print(f"     {'how':<58} {'ms':>9} {'per rule':>9}")
    print(f"     {'one iptables-restore -w --noflush, into an empty chain':<58} {empty:>9.1f} {empty / count:>9.3f}")
    print(f"     {'one iptables-restore -w --noflush, flush + refill':<58} {full:>9.1f} {full / count:>9.3f}")
    text = f"{count} x iptables -w -A, into an empty chain"
    print(f"     {text:<58} {single:>9.1f} {single / count:>9.3f}")
    ratio = single / empty
    print(f"   one call each / one transaction: {ratio:.1f}x (against the refill: {single / full:.1f}x)   "
          f"target >= 20x: {'met' if ratio >= 20 else 'NOT met'}")
    print()

    configs = (("none", "isolation only, no policies"),
               ("policies", f"isolation + {policies} policies"),
               ("bypassed", "ROMANA-FORWARD bypassed (reference)"))
    print(f"3. Data path: iperf3 TCP, t1 pod on host1 -> t1 pod on host2, one stream, {seconds} s per run,")
    print(f"   {iperf_rounds} round(s) interleaved; receiver-side throughput, median (min-max) over the rounds")
    print()
    print(f"     {'configuration':<38} {'Gbit/s':>8} {'min-max':>13} {'retr':>6}")
    medians = {}
    for key, label in configs:
        runs = [json.load(open(os.path.join(directory, f"{key}-{r}.json"))) for r in range(1, iperf_rounds + 1)]
        rates = [run["end"]["sum_received"]["bits_per_second"] / 1e9 for run in runs]
        retransmits = sum(run["end"]["sum_sent"].get("retransmits", 0) for run in runs)
        medians[key] = median(rates)
        spread = f"{min(rates):.2f}-{max(rates):.2f}"
        print(f"     {label:<38} {medians[key]:>8.2f} {spread:>13} {retransmits:>6}")
    share = medians["policies"] / medians["none"]
    print(f"   {policies} policies / none: {share * 100:.1f}%   target >= 98%: {'met' if share >= 0.98 else 'NOT met'}"
          f"   (bypassed / none: {medians['bypassed'] / medians['none'] * 100:.1f}%)")
    return 0


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif command == "propagate":
        ctl, socket_path, directory, rounds, port_base, pairs, hosts, out = sys.argv[2:]
        propagate(ctl, socket_path, directory, int(rounds), int(port_base), pairs, hosts, out)
    elif command == "applycost":
        applycost(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif command == "datapath-policies":
        datapath_policies(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif command == "rate":
        print(f"{rate(sys.argv[2]):.2f}")
    elif command == "report":
        directory, rounds, iperf_rounds, seconds, policies = sys.argv[2:]
        sys.exit(report(directory, int(rounds), int(iperf_rounds), int(seconds), int(policies)))
    else:
        fail(f"unknown command {command}")
PY

# --- 2. apply cost (first: no lab nodes running iptables meanwhile) ------------
log "apply cost: $rules rules in the scratch namespace $scratch, $repeats repeat(s)"
ip netns add "$scratch"
in_ns "$scratch" "$python" "$work/driver.py" applycost "$rules" "$repeats" "$work/applycost.json"
ip netns del "$scratch"

# --- the lab ----------------------------------------------------------------
log "lab $name: three hosts on 192.168.$subnet.0/24 (state in $lab_dir)"
lab up --hosts 3 --subnet "$subnet" >/dev/null
ctl host1 tenant create t1 >/dev/null
ctl host1 tenant create t2 >/dev/null
ctl host1 segment create t1 backend >/dev/null
ctl host1 segment create t2 frontend >/dev/null
for i in 1 2 3; do
  lab pod add "host$i" t1 "be$i" --segment backend >/dev/null
  lab pod add "host$i" t2 "fe$i" --segment frontend >/dev/null
done
lab pod add host1 t1 perf1 >/dev/null
lab pod add host2 t1 perf2 >/dev/null
ip_of() { lab pod list | awk -v pod="$1" '$1 == pod { print $4 }'; }

# The backend listeners: ports 31000 .. 31000+rounds (round 0 is the warm-up).
for i in 1 2 3; do
  ip netns exec "$name-p-be$i" "$python" "$work/driver.py" serve "$policy_port_base" $((rounds + 1)) \
    "$work/ready-be$i" >"$work/serve-be$i.log" 2>&1 &
  pids+=("$!")
done
for i in 1 2 3; do
  for _ in $(seq 1 100); do [[ -e $work/ready-be$i ]] && break; sleep 0.1; done
  [[ -e $work/ready-be$i ]] || { log "the listener in be$i did not start:"; cat "$work/serve-be$i.log" >&2; exit 1; }
done

# --- 1. propagation --------------------------------------------------------------
# Pairs CLIENT_NETNS=SERVER_IP=LABEL: each backend probed from the next host.
pairs="$name-p-fe2=$(ip_of be1)=host2->host1,$name-p-fe3=$(ip_of be2)=host3->host2,$name-p-fe1=$(ip_of be3)=host1->host3"
log "propagation: $rounds rounds (+1 warm-up), policy applied on host1, probed $pairs"
py propagate "$bin/romanactl" "$lab_dir/host1/romana.sock" "$work" "$rounds" "$policy_port_base" \
  "$pairs" "$name-h1,$name-h2,$name-h3" "$work/propagation.json"

# --- 3. data path -------------------------------------------------------------------
perf2_ip=$(ip_of perf2)
for _ in $(seq 1 50); do
  in_ns "$name-p-perf1" ping -c 1 -W 1 "$perf2_ip" >/dev/null 2>&1 && break
  sleep 0.1
done
in_ns "$name-p-perf1" ping -c 1 -W 1 "$perf2_ip" >/dev/null 2>&1 || { log "perf2 ($perf2_ip) is not reachable from perf1"; exit 1; }
py datapath-policies "$work/datapath-policies" "$datapath_policies" "$datapath_port_base"

policy_rules() { # policy_rules HOST_NETNS: data-path policies with a rule in its chains
  # (a policy may render into both the ingress and the egress chain)
  { in_ns "$1" iptables -w -S | grep -o '"policy dp-[^"]*"' || true; } | sort -u | wc -l
}
wait_policy_rules() { # wait_policy_rules N: until every host's chain holds N of them
  local want=$1 i count
  for i in 1 2 3; do
    for _ in $(seq 1 200); do
      count=$(policy_rules "$name-h$i")
      ((count == want)) && break
      sleep 0.05
    done
    ((count == want)) || { log "host$i holds $count data-path policy rules, expected $want"; return 1; }
  done
}
install_policies() { # in applies of up to 50 (the node takes at most 64 at once)
  local file
  for file in "$work"/datapath-policies-*.json; do
    ctl host1 policy apply -f "$file" >/dev/null
  done
  wait_policy_rules "$datapath_policies"
}
remove_policies() {
  local i
  for ((i = 1; i <= datapath_policies; i++)); do
    ctl host1 policy delete "$(printf 'dp-%03d' "$i")" >/dev/null
  done
  wait_policy_rules 0
}
set_bypass() { # set_bypass on|off: the reference ACCEPT on host1 and host2
  local ns
  for ns in "$name-h1" "$name-h2"; do
    if [[ $1 == on ]]; then
      in_ns "$ns" iptables -w -I "${bypass[@]:0:1}" 1 "${bypass[@]:1}"
      bypassed+=("$ns")
    else
      in_ns "$ns" iptables -w -D "${bypass[@]}"
    fi
  done
  [[ $1 == on ]] || bypassed=()
}
# One iperf3 server per run (-1: it exits after one test), in the receiving
# pod, bound to the address under test.
iperf() { # iperf KEY
  local key=$1 pid
  ip netns exec "$name-p-perf2" iperf3 -s -1 -B "$perf2_ip" -p 5201 >"$work/$key.server.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 50); do
    in_ns "$name-p-perf2" ss -Hltn "sport = :5201" | grep -q . && break
    sleep 0.1
  done
  if ! in_ns "$name-p-perf1" iperf3 -c "$perf2_ip" -p 5201 -t "$seconds" -J >"$work/$key.json" 2>"$work/$key.err"; then
    log "iperf3 $key failed:"; cat "$work/$key.err" "$work/$key.json" >&2; return 1
  fi
  wait "$pid" || { log "iperf3 server for $key failed:"; cat "$work/$key.server.log" >&2; return 1; }
  local kept=() other
  for other in "${pids[@]}"; do [[ $other == "$pid" ]] || kept+=("$other"); done
  pids=("${kept[@]}")
}
# The order of the three configurations rotates from round to round, so that
# none of them always runs first (or right after the policies changed).
configurations=(none policies bypassed)
for ((round = 1; round <= iperf_rounds; round++)); do
  order=()
  for ((k = 0; k < 3; k++)); do order+=("${configurations[(round - 1 + k) % 3]}"); done
  log "iperf3 round $round/$iperf_rounds: ${order[*]} (${seconds} s each)"
  for configuration in "${order[@]}"; do
    case $configuration in
      none) iperf "none-$round" ;;
      policies) install_policies; iperf "policies-$round"; remove_policies ;;
      bypassed) set_bypass on; iperf "bypassed-$round"; set_bypass off ;;
    esac
  done
  printf '    none %s  policies %s  bypassed %s Gbit/s\n' "$(py rate "$work/none-$round.json")" \
    "$(py rate "$work/policies-$round.json")" "$(py rate "$work/bypassed-$round.json")" >&2
done

# --- report ---------------------------------------------------------------------------
echo
echo "Policy benchmark: lab $name, 3 hosts, underlay 192.168.$subnet.0/24 (veths on a bridge), $(nproc) cores"
echo
py report "$work" "$rounds" "$iperf_rounds" "$seconds" "$datapath_policies"
