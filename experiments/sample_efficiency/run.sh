#!/usr/bin/env bash
# Every run behind experiments/sample_efficiency/README.md: experiment=sample_efficiency (each
# run until its validation accuracy stops improving) for n in {5, 10, 25, 50, 100, all} x
# {scratch, feature_extraction, full} x seeds {0, 1, 2}, one run per dir. A run whose
# metrics.json exists is skipped, so the script picks up where an interrupted one stopped.
# Run from the repository root (after `make pretrain`):
#   bash experiments/sample_efficiency/run.sh            # JOBS=2 runs at a time, one thread each
#   .venv/bin/python experiments/sample_efficiency/summarise.py $OUT experiments/sample_efficiency
set -euo pipefail
export OMP_NUM_THREADS=1
TRAIN=${TRAIN:-.venv/bin/transferlab-train}
OUT=${OUT:-outputs/multirun/sample_efficiency/resnet18_convergence}
JOBS=${JOBS:-2}

one() {  # one N STRATEGY SEED
  local dir=$OUT/n$1_$2_s$3
  [ -f "$dir/metrics.json" ] && return 0
  rm -rf "$dir"
  # shellcheck disable=SC2086
  $TRAIN experiment=sample_efficiency data.n_per_class=$1 strategy=$2 seed=$3 logger=csv \
    trainer.enable_progress_bar=false hydra.run.dir=$dir > /dev/null 2>&1 || echo "failed: $dir"
  rm -f "$dir"/checkpoints/*.ckpt  # 45-134 MB each; metrics.json and the CSV log stay
}
export -f one
export TRAIN OUT

for n in 5 10 25 50 100 null; do
  for strategy in scratch feature_extraction full; do
    for seed in 0 1 2; do
      echo "$n $strategy $seed"
    done
  done
done | xargs -P "$JOBS" -n 3 bash -c 'one "$@"' _
