#!/usr/bin/env bash
# The offline demo: install, build a real dataset that ships in a pip package, and run a
# submission on it under a time budget.   Usage: bash scripts/demo.sh [DATASET] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
dataset="${1:-digits}"
budget="${2:-60}"
bash scripts/install.sh
. .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=3
python -m autodl.datasets build "$dataset" --out data/zoo
code_dir=autodl/reference_submission
[ -f model.py ] && code_dir=.
python autodl/run_local_test.py -dataset_dir="data/zoo/$dataset" -code_dir="$code_dir" \
  -time_budget="$budget"
mkdir -p results && cp autodl/AutoDL_scoring_output/learning-curve-*.png results/
echo "learning curve: results/learning-curve-$dataset.png"
