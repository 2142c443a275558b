"""Predict image classes: ``transferlab-predict model=DIR/model.onnx inputs=PATH [out=OUT]``
(or ``ckpt_path=FILE`` instead of ``model=``) writes ``OUT/predictions.csv``.

Inputs are image files, folders (searched recursively) or globs. Each image gets the transform
the model's evaluation used (:mod:`transferlab.export.preprocess`); a file that cannot be
decoded is skipped with one warning line and listed at the end. The CSV holds one row per readable image: path,
predicted class, confidence and the top-k classes, from ``softmax(logits / temperature)``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from transferlab.build import load_module, require_image_model
from transferlab.config import CONF_DIR
from transferlab.errors import ConfigError, run_or_explain
from transferlab.export.inference import (
    Logits,
    find_inputs,
    predict_files,
    prediction_rows,
    torch_logits,
    write_predictions,
)
from transferlab.export.onnx import ExportedClassifier, onnx_session, run_onnx
from transferlab.export.preprocess import Preprocess, preprocess_for, read_preprocess

log = logging.getLogger("transferlab")


@dataclass
class Predictions:
    """What a prediction run produced: readable paths, their logits, the skipped files."""

    paths: list[Path]
    logits: torch.Tensor
    skipped: list[tuple[Path, str]]
    temperature: float
    csv: Path


def open_model(cfg: DictConfig) -> tuple[Logits, Preprocess, str]:
    """(logits function, input spec, description) of ``model=`` (ONNX) or ``ckpt_path=``."""
    if bool(cfg.model) == bool(cfg.ckpt_path):
        raise ConfigError(
            "Give the model to predict with as either model=<export dir>/model.onnx or "
            "ckpt_path=<run dir>/checkpoints/best.ckpt (one of them)."
        )
    if cfg.ckpt_path:
        module, _ = load_module(cfg.ckpt_path)
        require_image_model(module, "transferlab-predict")
        model = ExportedClassifier(module).eval().to(cfg.device)
        return torch_logits(model), preprocess_for(module, None), f"checkpoint {cfg.ckpt_path}"
    path = Path(cfg.model)
    if not path.is_file():
        raise ConfigError(
            f"Model file '{path}' does not exist; pass model=<export dir>/model.onnx written by "
            "transferlab-export."
        )
    spec = read_preprocess(
        Path(cfg.preprocess) if cfg.preprocess else path.parent / "preprocess.json"
    )
    session = onnx_session(str(path))
    return (lambda images: run_onnx(session, images, len(images))), spec, f"ONNX {path}"


def check_options(cfg: DictConfig) -> float | None:
    """The ``temperature=`` override (None: the model's own), refused before any image is read
    when it is not a positive number, as a ``top_k`` below 1 is."""
    top_k = cfg.top_k
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ConfigError(f"top_k must be a whole number >= 1, got {top_k!r}; use top_k=5.")
    if cfg.temperature is None:
        return None
    try:
        temperature = float(cfg.temperature)
    except (TypeError, ValueError):
        temperature = float("nan")
    if isinstance(cfg.temperature, bool) or not 0 < temperature < float("inf"):
        raise ConfigError(
            f"temperature must be a positive number, got {cfg.temperature!r}; use temperature=1 "
            "or leave it out for the exported one."
        )
    return temperature


def predict(cfg: DictConfig) -> Predictions:
    override = check_options(cfg)
    logits_of, spec, what = open_model(cfg)
    if override is None and cfg.ckpt_path:
        log.info(
            "no softmax temperature is applied to checkpoint predictions (T = 1); for calibrated "
            "confidences export with calibrate=temperature and predict with model=<export "
            "dir>/model.onnx (or pass temperature=T)"
        )
    inputs = cfg.inputs
    inputs = OmegaConf.to_container(inputs) if OmegaConf.is_list(inputs) else str(inputs)
    paths = find_inputs(inputs)
    kept, logits, skipped = predict_files(
        paths, spec, logits_of, batch_size=cfg.batch_size, progress_from=cfg.progress_from
    )
    if not kept:
        raise ConfigError(
            f"None of the {len(paths)} input files could be read as an image (see the warnings "
            "above); point inputs= at image files."
        )
    temperature = override if override is not None else spec.temperature
    rows = prediction_rows(kept, logits, spec.class_names, temperature, cfg.top_k)
    csv = write_predictions(Path(cfg.out) / "predictions.csv", rows)
    print_summary(rows, skipped, what, temperature, csv)
    return Predictions(kept, logits, skipped, temperature, csv)


def print_summary(rows: list[dict], skipped: list, what: str, temperature: float, csv: Path):
    counts = Counter(r["prediction"] for r in rows).most_common()
    mean_conf = sum(float(r["confidence"]) for r in rows) / len(rows)
    lines = [
        f"  {'images':<16}{len(rows)} predicted, {len(skipped)} skipped",
        f"  {'model':<16}{what} (temperature {temperature:.4g})",
        f"  {'predicted':<16}" + ", ".join(f"{name}: {n}" for name, n in counts[:10]),
        f"  {'mean confidence':<16}{mean_conf:.4f}",
        f"  {'predictions':<16}{csv}",
    ]
    if skipped:
        lines.append(f"  skipped files ({len(skipped)}):")
        lines += [f"    {path}  ({reason})" for path, reason in skipped]
    log.info("transferlab predictions\n%s", "\n".join(lines))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    run_or_explain(predict, cfg)


if __name__ == "__main__":
    main()
