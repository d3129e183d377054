#!/usr/bin/env bash
# `anomalyvae bench score` of two builds in one run, alternating, on the same model (the bench trains it with a
# fixed seed): the ONNX Runtime cost per row at batch 1024, L = 4, one intra-op thread.
#   deploy/local/bench-score-compare.sh OLD_COMMIT [ROUNDS]
# Builds OLD_COMMIT in a temporary worktree (its own set-up must have been run once, e.g. its ONNX Runtime library)
# and this tree, both in Release, then runs old, new, old, new, ... and prints each round and the medians.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OLD="${1:?usage: bench-score-compare.sh OLD_COMMIT [ROUNDS]}"
ROUNDS="${2:-3}"
WORK="$(mktemp -d /tmp/anomalyvae-bench-score.XXXXXX)"
trap 'git -C "$ROOT" worktree remove --force "$WORK/old" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
git -C "$ROOT" worktree add --detach "$WORK/old" "$OLD" >/dev/null
dotnet build "$WORK/old/src/AnomalyVae.Cli" -c Release -v q -nologo -o "$WORK/old-out" >/dev/null
dotnet build "$ROOT/src/AnomalyVae.Cli" -c Release -v q -nologo >/dev/null
old=(dotnet "$WORK/old-out/anomalyvae.dll")
new=(dotnet "$ROOT/src/AnomalyVae.Cli/bin/Release/net10.0/anomalyvae.dll")
# The L=4, 1-thread ONNX Runtime line: "L=4  onnxruntime 1 thread(s):   1.234 µs/row ..."
row() { "$@" bench score | awk '/^L=4 .*onnxruntime 1 thread/ {print $5}'; }
olds=(); news=()
for ((i = 1; i <= ROUNDS; i++)); do
  o=$(row "${old[@]}"); n=$(row "${new[@]}")
  olds+=("$o"); news+=("$n")
  printf 'round %d: old %s µs/row, new %s µs/row\n' "$i" "$o" "$n"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
mo=$(median "${olds[@]}"); mn=$(median "${news[@]}")
printf 'median: old (%s) %s µs/row, new %s µs/row, new/old = %.3f\n' "$OLD" "$mo" "$mn" "$(echo "$mn / $mo" | bc -l)"
