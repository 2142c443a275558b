"""Frozen-backbone feature cache: compute backbone features once, train the head on them.

With every backbone group frozen (and BatchNorm statistics frozen), deterministic inputs (no
training augmentation, no batch mixing, no domain adaptation) and no stochastic layers in the
backbone, the backbone maps each image to the same features at every epoch. Paying that forward
pass once instead of once per epoch is the whole cost of a linear probe.

The cache files (one per split) are keyed by the backbone weights and config, the data config
(minus loader settings) and the input normalisation, so runs that differ only in head settings
(LR, head type, dropout, label smoothing, epochs) share them under ``paths.cache_dir``. A cached
run writes its checkpoints once, at the end of fitting (:class:`DeferredCheckpointIO`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.apply_func import move_data_to_device
from lightning_utilities.core.apply_func import apply_to_collection
from torch.utils.data import DataLoader, TensorDataset

from transferlab.data.sampling import EpochShuffle
from transferlab.errors import ConfigError
from transferlab.files import FileCheckpointIO
from transferlab.speed import channels_last_inference

log = logging.getLogger("transferlab")

# data settings that change how batches are served, not what the images are
LOADER_KEYS = {"batch_size", "num_workers", "pin_memory", "drop_last"}
# rows of cached features per evaluation batch
EVAL_BATCH = 1024


def why_not_cacheable(module, dm) -> list[str]:
    """Reasons the backbone's features could change between epochs (empty = cacheable): the
    module's own (:meth:`TransferModule.feature_cache_blockers`) and a random training pipeline."""
    augmented = ["training images are augmented (augmentation=none)"]
    return module.feature_cache_blockers() + (augmented if dm.augments_training() else [])


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


def cache_key(backbone_cfg: dict, data_cfg: dict, module) -> str:
    """Hash of the backbone (config and weights), the data and the input normalisation."""
    digest = hashlib.sha256()
    described = {
        "backbone": backbone_cfg,
        "data": {k: v for k, v in data_cfg.items() if k not in LOADER_KEYS},
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
    """(features, labels) of every batch (images or token dicts), with the backbone in eval
    mode, its convolutions in NHWC layout for the pass
    (:func:`transferlab.speed.channels_last_inference`)."""
    feats, labels = [], []
    with channels_last_inference(module.backbone):
        for x, y in loader:
            feats.append(module.image_features(move_data_to_device(x, device)).float().cpu())
            labels.append(y)
    return torch.cat(feats), torch.cat(labels)


class FeatureCache:
    """Backbone features of each split, computed on first use and kept on disk and in memory.

    Each split is its own file, ``<key>-<split>.pt`` under ``cache_dir``, computed when a loader
    first asks for it: training and validation features at the start of ``fit``, test features
    at ``test``. The pass runs on the module's device at that moment (inside ``fit`` the trainer
    has moved it there). ``seconds`` adds up the time spent computing, for the run's metrics.
    """

    def __init__(self, backbone_cfg: dict, data_cfg: dict, module, dm, cache_dir: Path):
        self.module, self.dm = module, dm
        self.prefix = Path(cache_dir) / cache_key(backbone_cfg, data_cfg, module)
        self.loaded: dict[str, tuple] = {}
        self.seconds = 0.0

    def path(self, split: str) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}-{split}.pt")

    def __getitem__(self, split: str) -> tuple:
        if split not in self.loaded:
            path = self.path(split)
            if path.is_file():
                log.info("feature cache: reusing %s", path)
                self.loaded[split] = torch.load(path, weights_only=True)
            else:
                self.loaded[split] = self.compute(split, path)
        return self.loaded[split]

    def compute(self, split: str, path: Path) -> tuple:
        module = self.module
        device = next(module.parameters()).device
        n = len(getattr(self.dm.splits, split)[1])
        log.info(
            "feature cache: computing backbone features of %d %s images (%s)", n, split, device
        )
        start = time.perf_counter()
        was_training = module.training
        module.eval()
        try:
            features = backbone_features(module, self.dm.eval_dataloader(split), device)
        finally:
            module.train(was_training)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(features, partial)
        os.replace(partial, path)  # atomic: parallel sweep jobs never read a half-written file
        self.seconds += time.perf_counter() - start
        log.info("feature cache: saved %s", path)
        return features


class FeatureData(pl.LightningDataModule):
    """Serves cached (features, label) batches in place of an image datamodule."""

    def __init__(self, features: FeatureCache, batch_size: int, seed: int, drop_last: bool = False):
        super().__init__()
        self.features, self.batch_size, self.seed = features, batch_size, seed
        self.drop_last = drop_last

    def _loader(self, split: str, train: bool) -> DataLoader:
        x, y = self.features[split]
        return DataLoader(
            TensorDataset(x, y),
            # evaluation batches do not change the scores; on features, large ones cost less
            batch_size=self.batch_size if train else max(self.batch_size, EVAL_BATCH),
            sampler=EpochShuffle(len(y), self.seed) if train else None,
            drop_last=train and self.drop_last,
            # its own generator: starting an epoch draws no number from the global RNG, so the
            # head's dropout masks depend only on the seed (transferlab.head_sweep relies on it)
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


class DeferredCheckpointIO(FileCheckpointIO):
    """Holds each checkpoint file's newest content in memory and writes it once, at the end of
    the trainer stage (``teardown``), or when the file is read.

    On cached features an epoch of head training takes milliseconds, less than writing the whole
    model to disk; writing ``best.ckpt`` on every improvement and ``last.ckpt`` every epoch
    would then cost more than the training. The files on disk after ``fit`` are the same.

    Args:
        fixed_prefix: state-dict keys under it hold tensors that never change during the stage
            (a cached run's ``backbone.``: the module no longer calls its backbone); they are
            copied once, not at every save, since copying the whole backbone at every epoch
            cost more than the epoch.
    """

    def __init__(self, fixed_prefix: str | None = None):
        super().__init__()
        self.fixed_prefix = fixed_prefix
        self.pending: dict[str, tuple] = {}
        self.fixed: dict[str, torch.Tensor] = {}

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        # a point-in-time copy: the module's tensors keep changing after this call
        copy = {k: _copied(v) for k, v in checkpoint.items() if k != "state_dict"}
        if "state_dict" in checkpoint:
            copy["state_dict"] = {
                k: self._copied_state(k, v) for k, v in checkpoint["state_dict"].items()
            }
        self.pending[str(path)] = (copy, storage_options)

    def _copied_state(self, key: str, value):
        if not (self.fixed_prefix and key.startswith(self.fixed_prefix)):
            return _copied(value)
        if key not in self.fixed:
            self.fixed[key] = _copied(value)
        return self.fixed[key]

    def remove_checkpoint(self, path) -> None:
        if self.pending.pop(str(path), None) is None:
            super().remove_checkpoint(path)

    def load_checkpoint(self, path, *args, **kwargs):
        self.teardown()
        return super().load_checkpoint(path, *args, **kwargs)

    def teardown(self) -> None:
        for path, (checkpoint, options) in self.pending.items():
            super().save_checkpoint(checkpoint, path, options)
        self.pending.clear()
        self.fixed.clear()


# leaves a checkpoint copy keeps as they are: immutable
_PLAIN = (int, float, str, bool, bytes, type(None))


def _copied(value):
    """``value`` with every tensor in it replaced by a detached copy.

    Plain dicts, lists and tuples (most of a checkpoint: the optimizer's param groups, the
    loops' progress, the resolved config) are walked here; Lightning's ``apply_to_collection``,
    which checks every node for dataclasses and named tuples, took about 11 ms a checkpoint for
    the same walk, more than an epoch of head training. Other containers go to it.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if kind is dict:
        return {k: _copied(v) for k, v in value.items()}
    if kind is list:
        return [_copied(v) for v in value]
    if kind is tuple:
        return tuple(_copied(v) for v in value)
    return apply_to_collection(value, torch.Tensor, lambda t: t.detach().clone())
