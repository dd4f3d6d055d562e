#!/usr/bin/env bash
# Deploy orchestration benchmark: a real hub process, 50 simulated hosts
# (agents in one process, each with the activator), trivial closures built
# beforehand. Prints the time to read the fleet (one nix eval), nix's own
# build time (excluded), and the time from publishing the 50 requests to
# the last 'activated' event.
#
#   scripts/bench/deploy.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v nix >/dev/null || { echo "deploy bench: nix is missing (apt-get install -y nix-bin)" >&2; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
PINKIE_DEPLOY_BENCH=1 PINKIE_DEPLOY_BENCH_OUT="$out" go test ./tests/ -run '^TestDeployBench50Hosts$' -count=1 -timeout 10m >/dev/null
cat "$out"
echo "read the 6-host test flake of deploy/fleet (one nix eval):"
NIX_CONFIG=$'experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false' \
  go test ./deploy/fleet -run '^$' -bench '^BenchmarkRead$' -benchtime 20x | grep Benchmark
