#!/usr/bin/env bash
# Evidence for transferlab-rank (experiments/transferability/README.md): make the candidates'
# source weights, rank the 7 candidates, then fine-tune each with the default recipe (3 seeds),
# one job at a time on one thread, and summarise (weighted Kendall tau, wall-time ratio).
#   bash experiments/transferability/run.sh        (from the repository root, after make pretrain)
set -euo pipefail
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore
OUT=outputs/transferability
T=.venv/bin/transferlab-train
Q=(print_config=false trainer.enable_progress_bar=false)
P=outputs/pretrained
mkdir -p "$OUT"
# source weights that `make pretrain` does not make
[ -f $P/mnist_source_test_resnet.safetensors ] || $T experiment=pretrain_source backbone=tiny "${Q[@]}"
[ -f $P/mnist_source_vit_tiny_patch16_224.safetensors ] || $T experiment=pretrain_source backbone=vit_tiny_32 "${Q[@]}"
[ -f $P/digits_resnet18.safetensors ] || $T backbone=resnet18 strategy=scratch data=digits \
  trainer.max_epochs=5 export_backbone=$P/digits_resnet18.safetensors "${Q[@]}" \
  hydra.run.dir=$OUT/pretrain_digits_resnet18
[ -f $P/mnist_m_resnet18.safetensors ] || $T backbone=resnet18 strategy=scratch data=mnist_m \
  trainer.max_epochs=3 export_backbone=$P/mnist_m_resnet18.safetensors "${Q[@]}" \
  hydra.run.dir=$OUT/pretrain_mnist_m_resnet18
# ranking: one frozen pass per candidate (its wall time is measured here, beside the fine-tuning)
# a fresh cache dir: the ranking pays its forward passes, nothing from earlier runs is reused
start=$(date +%s.%N)
rm -rf $OUT/cache
.venv/bin/transferlab-rank candidate_set=evidence out=$OUT/ranking paths.cache_dir=$OUT/cache
echo "rank_wall_s $(echo "$(date +%s.%N) - $start" | bc)" > $OUT/rank_wall.txt
# fine-tuning: the default recipe (strategy=full, 10 epochs, 50 images per class), 3 seeds
i=0
while IFS='|' read -r name overrides; do
  i=$((i + 1))
  $T -m $overrides seed=0,1,2 "${Q[@]}" logger=csv hydra.sweep.dir=$OUT/finetune/$i \
    > $OUT/finetune_$i.log 2>&1 || true
  echo "$i|$name" >> $OUT/finetune_index.txt
done < <(.venv/bin/python experiments/transferability/candidates.py)
.venv/bin/python experiments/transferability/summarise.py $OUT
