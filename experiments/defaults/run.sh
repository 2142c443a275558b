#!/usr/bin/env bash
# The validation sweep behind each strategy's default recipe (experiments/defaults/README.md).
# Class-split task (data=mnist_split), ResNet-18 from stage 1 (`make pretrain`), 20 labelled
# images per class, 20 epochs (40 steps), seeds 0 and 1; two jobs at a time, one thread each.
# Selection uses val/acc only. Run from the repository root:  bash experiments/defaults/run.sh
# Then the table:  .venv/bin/python experiments/defaults/summarise.py
set -euo pipefail
export OMP_NUM_THREADS=1
TRAIN=${TRAIN:-.venv/bin/transferlab-train}
OUT=${OUT:-outputs/multirun/defaults}
COMMON="data.n_per_class=20 trainer.max_epochs=20 seed=0,1 trainer.accelerator=cpu logger=none
  print_config=false trainer.enable_progress_bar=false hydra/launcher=parallel
  hydra.launcher.slots=2 hydra.launcher.threads_per_job=1"

sweep() {  # sweep NAME OVERRIDES...: one multirun, skipped when its dir is there
  local dir=$OUT/$1; shift
  [ -f "$dir/multirun.yaml" ] && return 0
  # shellcheck disable=SC2086
  $TRAIN -m $COMMON hydra.sweep.dir=$dir "$@" || true  # a failed job is reported, not fatal
  find "$dir" -name '*.ckpt' -delete  # 45 MB each; the metrics are what the table reads
}

# the backbone's LR multiplier x precise BN at the head's LR 1e-3, then the base LR
for s in full partial; do
  sweep ${s}_mult strategy=$s strategy.backbone_lr_mult=0.01,0.1,0.3,1.0 strategy.precise_bn=false,true
  sweep ${s}_lr strategy=$s strategy.backbone_lr_mult=0.1,1.0 strategy.precise_bn=true \
    optimizer.lr=3e-4,3e-3
done
sweep partial_bn strategy=partial strategy.backbone_lr_mult=0.1,1.0 strategy.precise_bn=true strategy.bn=train
sweep scratch strategy=scratch optimizer.lr=3e-4,1e-3,3e-3 strategy.precise_bn=false,true
sweep feature_extraction strategy=feature_extraction optimizer.lr=1e-3,3e-3,1e-2 \
  loss.label_smoothing=0.0,0.1
# label smoothing 0.1 (the plain loop's) on the backbone-training recipes
sweep smoothing strategy=full,partial,scratch strategy.backbone_lr_mult=1.0 strategy.precise_bn=true \
  loss.label_smoothing=0.1
# the head's LR was best at the top of the first grid: extend it upwards
sweep feature_extraction_hi strategy=feature_extraction optimizer.lr=3e-2,1e-1 \
  loss.label_smoothing=0.0,0.1
# does the lower backbone LR win with more steps? full fine-tuning for 100 epochs (200 steps)
sweep full_long strategy=full strategy.backbone_lr_mult=0.1,1.0 strategy.precise_bn=true \
  trainer.max_epochs=100
