#!/usr/bin/env bash
# Every run behind experiments/text_transfer/README.md, one at a time on one CPU thread, then the
# table and plot. Run from the repository root:  bash experiments/text_transfer/run.sh
# Common recipe: MiniLM (backbone=minilm) on data=vader_polarity with 1,000 training texts
# (data.train_size, stratified), batch 32, AdamW (wd 0.01), cosine schedule with 5% warm-up,
# head LR 1e-3, backbone LR 5e-5 (backbone_lr_mult 0.05); the best epoch by val accuracy is scored.
set -euo pipefail
export OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
TRAIN=${TRAIN:-.venv/bin/transferlab-train}
OUT=${OUT:-outputs/text_transfer}
COMMON="backbone=minilm data.train_size=1000 trainer.accelerator=cpu trainer.enable_progress_bar=false print_config=false logger=none"
E=3        # epochs of every arm that trains the encoder
E_HEAD=20  # epochs of the linear head on the frozen encoder (on cached features: seconds)

run() {  # run NAME SEED OVERRIDES...: one framework run, checkpoints dropped (22M params each)
  local name=$1 seed=$2; shift 2
  local dir=$OUT/$name/s$seed
  [ -f "$dir/metrics.json" ] && return 0
  $TRAIN $COMMON seed=$seed hydra.run.dir=$dir "$@" > "$OUT/logs/${name}_s$seed.log" 2>&1
  rm -rf "$dir/checkpoints"
}
plain() {  # plain FILE ARGS...: the plain transformers + torch loop, unless FILE is there
  local file=$OUT/plain/$1.json; shift
  [ -f "$file" ] && return 0
  $PY experiments/text_transfer/plain_loop.py --out $OUT/plain "$@" >> "$OUT/logs/plain.log" 2>&1
}

mkdir -p $OUT/logs
for seed in 0 1 2; do
  run fe $seed data=vader_polarity strategy=feature_extraction trainer.max_epochs=$E_HEAD
  run full $seed data=vader_polarity strategy=full strategy.backbone_lr_mult=0.05 trainer.max_epochs=$E
  plain polarity_fe_n1000_s$seed --arm fe --seed $seed --epochs $E_HEAD
  plain polarity_full_n1000_s$seed --arm full --seed $seed --epochs $E
  plain polarity_logreg_n1000_s$seed --arm logreg --seed $seed
  run layer_decay $seed data=vader_polarity strategy=layer_decay strategy.layer_decay=0.95 \
    strategy.backbone_lr_mult=0.05 trainer.max_epochs=$E
  run gradual_unfreeze $seed data=vader_polarity strategy=gradual_unfreeze \
    strategy.unfreeze.groups_per_step=3 strategy.layer_decay=0.95 strategy.backbone_lr_mult=0.05 \
    trainer.max_epochs=$E
  run prompt_tuning $seed data=vader_polarity strategy=prompt_tuning \
    strategy.peft.num_virtual_tokens=10 optimizer.lr=5e-3 trainer.max_epochs=$E
  run scratch $seed data=vader_polarity strategy=scratch optimizer.lr=3e-4 trainer.max_epochs=$E
  # valence (regression, MSE): the same split and recipe
  run valence_fe $seed data=vader_valence strategy=feature_extraction trainer.max_epochs=$E_HEAD
  run valence_full $seed data=vader_valence strategy=full strategy.backbone_lr_mult=0.05 \
    trainer.max_epochs=$E
done
# sample efficiency E(n): transfer (feature extraction) against scratch at fewer texts
for n in 100 300; do
  for seed in 0 1 2; do
    run fe_n$n $seed data=vader_polarity data.train_size=$n strategy=feature_extraction \
      trainer.max_epochs=$E_HEAD
    run scratch_n$n $seed data=vader_polarity data.train_size=$n strategy=scratch \
      optimizer.lr=3e-4 trainer.max_epochs=$E
  done
done
# the plain loop clips the gradient norm at 1.0 like the framework's default trainer: equal work
$PY experiments/text_transfer/throughput.py --rounds 4 --plain-clip 1.0 --out $OUT/throughput.json \
  > "$OUT/logs/throughput.log" 2>&1
$PY experiments/text_transfer/table.py $OUT
# the README's two commands (all 4,512 training texts, the default recipe)
for s in feature_extraction full; do
  [ -f outputs/readme_text/$s/metrics.json ] || $TRAIN backbone=minilm data=vader_polarity \
    strategy=$s hydra.run.dir=outputs/readme_text/$s > "$OUT/logs/readme_$s.log" 2>&1
done
