"""Frozen-backbone feature cache: compute backbone features once, train the head on them.

With every backbone group frozen (and BatchNorm statistics frozen), deterministic inputs (no
training augmentation, no batch mixing, no domain adaptation) and no stochastic layers in the
backbone, the backbone maps each image to the same features at every epoch. Paying that forward
pass once instead of once per epoch is the whole cost of a linear probe.

The cache file is keyed by the backbone weights and config, the data config (minus loader
settings) and the input normalisation, so runs that differ only in head settings (LR, head type,
dropout, label smoothing, epochs) share one file under ``paths.cache_dir``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transferlab.data.sampling import EpochShuffle
from transferlab.errors import ConfigError
from transferlab.module import TransferModule

log = logging.getLogger("transferlab")

# data settings that change how batches are served, not what the images are
LOADER_KEYS = {"batch_size", "num_workers", "pin_memory", "drop_last"}
SPLITS = ("train", "val", "test")


def why_not_cacheable(module, dm) -> list[str]:
    """Reasons the backbone's features could change between epochs (empty = cacheable)."""
    if type(module).training_step is not TransferModule.training_step:
        return ["a source/target pair trains on both domains (use single-domain data)"]
    reasons = []
    if any(m > 0 for m in module.lr_multipliers[:-1]) or module.strategy.unfreeze is not None:
        reasons.append("the backbone trains (use strategy=feature_extraction)")
    if module.strategy.bn != "frozen":
        reasons.append("BatchNorm statistics update during training (strategy.bn=train)")
    if getattr(dm, "augmentation", None) is not None and has_sample_transform(dm):
        reasons.append("training images are augmented (augmentation=none)")
    if module.batch_augment is not None:
        reasons.append("batches are mixed (augmentation=none)")
    if any(stochastic(m) for m in module.backbone.model.modules()):
        reasons.append("the backbone has active dropout or drop-path (set their rates to 0)")
    return reasons


def has_sample_transform(dm) -> bool:
    x = dm.splits.train[0]
    size = min(x.shape[-2:]) if dm.crop_size is None else dm.crop_size
    return dm.augmentation(size, x.shape[1], flip_safe=dm.flip_safe) is not None


def stochastic(m: nn.Module) -> bool:
    if isinstance(m, nn.modules.dropout._DropoutNd):
        return m.p > 0
    return type(m).__name__ == "DropPath" and getattr(m, "drop_prob", 0.0) > 0


def use_cache(setting, module, dm) -> bool:
    """Resolve ``strategy.cache_features`` (auto | true | false) for this run."""
    if setting in (False, "false"):
        return False
    reasons = why_not_cacheable(module, dm)
    if setting in (True, "true") and reasons:
        raise ConfigError(
            f"strategy.cache_features=true needs fixed backbone features, but {reasons[0]}; "
            "set strategy.cache_features=auto to cache only when valid."
        )
    if setting not in (True, "true", "auto"):
        raise ConfigError(f"strategy.cache_features must be auto, true or false, got {setting!r}.")
    return not reasons


def cache_key(cfg: DictConfig, module) -> str:
    """Hash of the backbone (config and weights), the data and the input normalisation."""
    digest = hashlib.sha256()
    data = OmegaConf.to_container(cfg.data, resolve=True)
    described = {
        "backbone": OmegaConf.to_container(cfg.backbone, resolve=True),
        "data": {k: v for k, v in data.items() if k not in LOADER_KEYS},
        "mean": module.mean.flatten().tolist(),
        "std": module.std.flatten().tolist(),
    }
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.backbone.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


@torch.inference_mode()
def backbone_features(module, loader: DataLoader, device: torch.device) -> tuple:
    """(features, labels) of every batch, with the backbone in eval mode."""
    feats, labels = [], []
    for x, y in loader:
        feats.append(module.features(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def load_or_compute(cfg: DictConfig, module, dm, cache_dir: Path) -> dict:
    """{split: (features, labels)} from ``cache_dir``, computing and saving them if missing."""
    path = Path(cache_dir) / f"{cache_key(cfg, module)}.pt"
    if path.is_file():
        log.info("feature cache: reusing %s", path)
        return torch.load(path, weights_only=True)
    accelerator = cfg.trainer.get("accelerator", "auto")
    device = torch.device(
        "cuda" if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda") else "cpu"
    )
    n = sum(len(getattr(dm.splits, s)[1]) for s in SPLITS)
    log.info("feature cache: computing backbone features of %d images once (%s)", n, device)
    was_training = module.training
    module.to(device).eval()
    features = {s: backbone_features(module, dm.eval_dataloader(s), device) for s in SPLITS}
    module.to("cpu").train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(features, partial)
    os.replace(partial, path)  # atomic: parallel sweep jobs never read a half-written file
    log.info("feature cache: saved %s", path)
    return features


class FeatureData(pl.LightningDataModule):
    """Serves cached (features, label) batches in place of an image datamodule."""

    def __init__(self, features: dict, batch_size: int, seed: int, drop_last: bool = False):
        super().__init__()
        self.features, self.batch_size, self.seed = features, batch_size, seed
        self.drop_last = drop_last

    def _loader(self, split: str, train: bool) -> DataLoader:
        x, y = self.features[split]
        return DataLoader(
            TensorDataset(x, y),
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(y), self.seed) if train else None,
            drop_last=train and self.drop_last,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


def maybe_cache_features(cfg: DictConfig, module, dm):
    """The datamodule to fit on: ``dm`` itself, or cached features of it (module switched over)."""
    if not use_cache(module.strategy.cache_features, module, dm):
        return dm
    features = load_or_compute(cfg, module, dm, Path(cfg.paths.cache_dir) / "features")
    module.inputs_are_features = True
    return FeatureData(features, dm.batch_size, dm.seed, dm.drop_last)
