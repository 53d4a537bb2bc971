#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for SECONDS each
# (default 120), from the committed seed corpus (fuzz/corpus/TARGET), and
# prints each target's executions and findings. New inputs go to
# fuzz/work/corpus/TARGET, crashes to fuzz/artifacts/TARGET (both ignored by
# git). Installs cargo-fuzz and the nightly toolchain when missing.
#
#   ./deploy/fuzz.sh            # 2 minutes per target
#   ./deploy/fuzz.sh 600        # 10 minutes per target
#   ./deploy/fuzz.sh 60 entry_decode policy_formats
#
# Exit status 1 if any target found a crash.
set -euo pipefail
seconds=${1:-120}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cni_config policy_formats entry_decode api_bodies)
cd "$(dirname "$0")/../fuzz"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
found=0
printf '%-16s %12s %8s %s\n' target executions seconds findings
for target in "${targets[@]}"; do
    mkdir -p "work/corpus/$target" "artifacts/$target"
    log="work/$target.log"
    status=0
    cargo +nightly fuzz run "$target" "work/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 \
        -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || status=$?
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -1 || true)
    if [ -z "$runs" ]; then
        runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
    fi
    crashes=$(find "artifacts/$target" -type f | wc -l)
    if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        found=1
        printf '%-16s %12s %8s %s\n' "$target" "${runs:-?}" "$seconds" "CRASH (exit $status; see $PWD/$log and artifacts/$target)"
    else
        printf '%-16s %12s %8s %s\n' "$target" "${runs:-?}" "$seconds" "0 crashes"
    fi
done
exit $found
