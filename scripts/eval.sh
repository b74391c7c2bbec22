#!/usr/bin/env bash
# Scores `gatewatch replay` on the labelled datasets of ../shared/eval (see its README).
# Usage: scripts/eval.sh [DATASET…]   (default: every dataset gatewatch can parse)
set -euo pipefail
cd "$(dirname "$0")/.."
eval_dir=../shared/eval
bin=target/release/gatewatch
[ -x "$bin" ] || cargo build --release
datasets=("$@")
[ ${#datasets[@]} -gt 0 ] || datasets=(public-nginx-combined public-ingress-nginx public-traefik-json)
out=$(mktemp -d)
for name in "${datasets[@]}"; do
  data="$eval_dir/data/$name"
  "$bin" replay --no-progress "$data/access.log.gz" > "$out/$name.jsonl" 2> "$out/$name.err"
  echo "== $name: $(grep -E 'lines/s' "$out/$name.err")"
  python3 "$eval_dir/score.py" --labels "$data/labels.jsonl" --incidents "$out/$name.jsonl" ${SCORE_ARGS:-}
done
