#!/usr/bin/env python3
"""Pod start latency: creates N pods at once and measures, for each, the
time from the apiserver's ADDED event to the first event that shows it
Running, both seen by one watch (one clock, no kubectl start-up in the
figure). Prints p50/p99/max in milliseconds and one JSON line.

usage: pod-start-latency.py --pods N --label L -- KUBECTL [ARGS...]
(KUBECTL ARGS... is how to run kubectl, e.g. `romana-lab --name x kubectl`)
"""
import argparse
import json
import subprocess
import sys
import threading
import time


def percentile(values, fraction):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=30)
    parser.add_argument("--label", default="bench")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("kubectl", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    kubectl = [a for a in args.kubectl if a != "--"]
    if not kubectl:
        sys.exit("pod-start-latency.py: give the kubectl command after --")

    selector = f"podstart={args.label}"
    watch = subprocess.Popen(
        kubectl + ["get", "pods", "-n", args.namespace, "-l", selector, "--watch",
                   "--output-watch-events", "-o", "json"],
        stdout=subprocess.PIPE, text=True)
    added, running = {}, {}
    done = threading.Event()

    def read_events():
        decoder = json.JSONDecoder()
        buffer = ""
        for line in watch.stdout:
            buffer += line
            while True:
                stripped = buffer.lstrip()
                if not stripped:
                    buffer = ""
                    break
                try:
                    event, end = decoder.raw_decode(stripped)
                except ValueError:
                    break
                buffer = stripped[end:]
                now = time.monotonic()
                pod = event.get("object", {})
                name = pod.get("metadata", {}).get("name")
                if not name:
                    continue
                added.setdefault(name, now)
                if pod.get("status", {}).get("phase") == "Running":
                    running.setdefault(name, now)
                if len(running) >= args.pods:
                    done.set()
                    return

    reader = threading.Thread(target=read_events, daemon=True)
    reader.start()
    time.sleep(1.0)  # the watch is established before the pods exist
    items = []
    for i in range(args.pods):
        items.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{args.label}-{i}", "namespace": args.namespace,
                         "labels": {"podstart": args.label}},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": "localhost/romana-test:latest",
                                "imagePullPolicy": "Never"}],
            },
        })
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    subprocess.run(kubectl + ["create", "-f", "-"], input=manifest, text=True, check=True,
                   stdout=subprocess.DEVNULL)
    finished = done.wait(args.timeout)
    watch.terminate()
    subprocess.run(kubectl + ["delete", "pods", "-n", args.namespace, "-l", selector,
                              "--wait=true", "--grace-period=0"],
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not finished:
        sys.exit(f"only {len(running)} of {args.pods} pods reached Running in {args.timeout} s")
    latencies = [(running[n] - added[n]) * 1000 for n in running]
    result = {
        "label": args.label,
        "pods": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
    }
    print(f"{args.label}: {len(latencies)} pods created at once, create -> Running "
          f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
