#!/usr/bin/env bash
# `anomalyvae-tools bench score` of two builds in one run, alternating, on the same model (the bench trains it with a
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
# The benchmarks live in tools/AnomalyVae.Tools (anomalyvae-tools); builds before that had them in the CLI.
bench_program() { if [ -d "$1/tools/AnomalyVae.Tools" ]; then echo "$1/tools/AnomalyVae.Tools anomalyvae-tools"; else echo "$1/src/AnomalyVae.Cli anomalyvae"; fi; }
read -r old_project old_name <<<"$(bench_program "$WORK/old")"
read -r new_project new_name <<<"$(bench_program "$ROOT")"
dotnet build "$old_project" -c Release -v q -nologo -o "$WORK/old-out" >/dev/null
dotnet build "$new_project" -c Release -v q -nologo -o "$WORK/new-out" >/dev/null
old=(dotnet "$WORK/old-out/$old_name.dll")
new=(dotnet "$WORK/new-out/$new_name.dll")
# The one-VAE L=4, 1-thread ONNX Runtime line: "L=4  K=1 onnxruntime 1 thread(s):   1.234 µs/row ..." (builds before
# the ensemble print no "K=1").
row() { "$@" bench score | awk '/^L=4 +(K=1 )?onnxruntime 1 thread/ {for (i = 1; i < NF; i++) if ($(i + 1) == "µs/row") print $i}'; }
olds=(); news=()
for ((i = 1; i <= ROUNDS; i++)); do
  o=$(row "${old[@]}"); n=$(row "${new[@]}")
  olds+=("$o"); news+=("$n")
  printf 'round %d: old %s µs/row, new %s µs/row\n' "$i" "$o" "$n"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
mo=$(median "${olds[@]}"); mn=$(median "${news[@]}")
printf 'median: old (%s) %s µs/row, new %s µs/row, new/old = %.3f\n' "$OLD" "$mo" "$mn" "$(echo "$mn / $mo" | bc -l)"
