"""Export a checkpoint: ``transferlab-export ckpt_path=FILE [format=onnx] [out=DIR]``.

Rebuild the model from the checkpoint's stored config -> export the whole classifier (uint8
images in, logits out) to ONNX -> check onnxruntime against PyTorch on held-out images (refused
when they differ) -> write ``model.onnx``, ``preprocess.json`` and ``model_card.md`` into DIR.
Nothing is written before the check has passed, and DIR is then written as one unit.
"""

from __future__ import annotations

import logging
import shlex

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from transferlab.build import build_datamodule, load_module, require_image_model
from transferlab.calibration import calibration_summary, fit_temperature
from transferlab.config import CONF_DIR
from transferlab.errors import ConfigError, run_or_explain
from transferlab.export.bundle import write_bundle
from transferlab.export.card import model_card, training_record
from transferlab.export.inference import loader_logits, torch_logits
from transferlab.export.onnx import ExportedClassifier, export_onnx, exportable, onnx_session
from transferlab.export.parity import (
    Parity,
    check_batch_sizes,
    measure_parity,
    require_parity,
)
from transferlab.export.preprocess import preprocess_for

log = logging.getLogger("transferlab")
FORMATS = ("onnx",)
CALIBRATIONS = ("none", "temperature")


def held_out_images(dm, n: int) -> torch.Tensor:
    """Up to ``n`` evaluation-transformed uint8 images: the test split first, then validation
    (for a source/target pair: the target's test split, then the source's validation)."""
    taken, count = [], 0
    for split in ("test", "val"):
        for x, _ in dm.eval_dataloader(split):
            taken.append(x[: n - count])
            count += len(taken[-1])
            if count >= n:
                return torch.cat(taken)
    return torch.cat(taken) if taken else torch.zeros(0, dtype=torch.uint8)


def command_line(default: str) -> str:
    if not HydraConfig.initialized():
        return default
    return shlex.join(["transferlab-export", *map(str, HydraConfig.get().overrides.task)])


def check_options(cfg: DictConfig) -> None:
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format} is not supported; use format=onnx.")
    if cfg.calibrate not in CALIBRATIONS:
        raise ConfigError(
            f"calibrate={cfg.calibrate} is unknown; use calibrate=none or temperature."
        )
    n = cfg.parity.num_images
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ConfigError(
            f"parity.num_images must be a whole number >= 2, got {n!r}; use parity.num_images=64."
        )
    check_batch_sizes(cfg.parity.batch_sizes)


def parity_images(dm, n: int) -> torch.Tensor:
    """``n`` held-out images to check the export on; fewer is refused, not passed silently."""
    images = held_out_images(dm, n)
    if len(images) < n:
        raise ConfigError(
            f"The checkpoint's data has {len(images)} held-out images, fewer than "
            f"parity.num_images={n}; set parity.num_images={len(images)} to check on "
            "those (or export a model trained with more validation or test images)."
            if len(images) >= 2
            else "The checkpoint's data has fewer than 2 held-out images to check the export "
            "on; export a model trained with validation or test images."
        )
    return images


def export(cfg: DictConfig) -> Parity:
    """Export ``cfg.ckpt_path`` into ``cfg.out``; returns the parity measured."""
    check_options(cfg)
    module, train_cfg = load_module(cfg.ckpt_path)
    require_image_model(module, "transferlab-export")
    dm = build_datamodule(train_cfg, train_augmentation=False)
    dm.setup()
    model = ExportedClassifier(module).eval()  # what evaluation computes: the parity reference
    logits_of = torch_logits(model)
    val = loader_logits(logits_of, dm.eval_dataloader("val"))
    test = loader_logits(logits_of, dm.eval_dataloader("test"))
    temperature = None
    if cfg.calibrate == "temperature":
        if len(val[1]) == 0:
            raise ConfigError(
                "calibrate=temperature fits on the validation split, which is empty for this "
                "checkpoint's data; use calibrate=none."
            )
        temperature = fit_temperature(*val)
    measured = {
        **calibration_summary(*val, "val", temperature),
        **calibration_summary(*test, "test", temperature),
    }

    images = parity_images(dm, cfg.parity.num_images)
    onnx_bytes = export_onnx(exportable(model, tuple(images.shape[-2:])), images[:2], cfg.opset)
    parity = measure_parity(
        onnx_session(onnx_bytes),
        images,
        logits_of(images),
        batch_sizes=list(cfg.parity.batch_sizes),
        tolerance=cfg.parity.tolerance,
    )
    log.info("ONNX parity on %d held-out images: %s", parity.num_images, parity.describe())
    require_parity(parity)

    spec = preprocess_for(
        module,
        loaded_size=int(dm.splits.train[0].shape[-1]),
        temperature=temperature or 1.0,
        extra={"opset": cfg.opset, "parity_max_abs_diff": parity.max_abs_diff},
    )
    card = model_card(
        module.extra["config"],
        spec,
        params=sum(p.numel() for p in model.parameters()),
        measured=measured,
        export_command=command_line(f"transferlab-export ckpt_path={cfg.ckpt_path}"),
        parity=parity,
        opset=cfg.opset,
        training=training_record(cfg.ckpt_path),
    )
    out = write_bundle(
        cfg.out,
        {
            "model.onnx": onnx_bytes,
            "preprocess.json": spec.text().encode(),
            "model_card.md": card.encode(),
        },
    )
    summary = [f"  {k:<22}{v:.4f}" for k, v in measured.items()]
    if temperature is not None:
        summary.append(f"  {'temperature':<22}{temperature:.4f}")
    summary.append(f"  {'parity max |Δlogit|':<22}{parity.max_abs_diff:.2e}")
    summary.append(f"  {'export dir':<22}{out}")
    log.info("transferlab export\n%s", "\n".join(summary))
    return parity


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    run_or_explain(export, cfg)


if __name__ == "__main__":
    main()
