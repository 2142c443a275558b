"""``model_card.md``: what the exported model is, how it was made, how well it does and where
it should not be used. Built from plain data (the stored config, measured metrics)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from transferlab.export.parity import Parity
from transferlab.export.preprocess import Preprocess


@dataclass(frozen=True)
class TrainingRecord:
    """What the training run left beside its checkpoint (each part None when absent)."""

    command: str | None = None
    choices: dict | None = None
    metrics: dict | None = None
    run: str | None = None
    checkpoint: str | None = None

    def metrics_source(self) -> str:
        """Which weights the run's ``metrics.json`` scored, against the exported checkpoint's."""
        where = f"run dir `{self.run}`" if self.run else "the training run"
        if self.checkpoint == "best.ckpt":
            return f"{where}; scored on its best.ckpt, the checkpoint exported here"
        return (
            f"{where}; scored on that run's best checkpoint, not on the exported "
            f"`{self.checkpoint}`, so they may differ from the table above"
        )


def training_record(ckpt_path: str | Path) -> TrainingRecord:
    """The command, config-group choices and ``metrics.json`` of the run that wrote the
    checkpoint, read from its run dir (``<run>/checkpoints/<name>.ckpt``)."""
    run = Path(ckpt_path).resolve().parent.parent

    def read(name: str, parse):
        try:
            return parse((run / name).read_text())
        except (OSError, ValueError, yaml.YAMLError):
            return None

    overrides = read(".hydra/overrides.yaml", yaml.safe_load)
    hydra = read(".hydra/hydra.yaml", yaml.safe_load) or {}
    choices = (hydra.get("hydra") or {}).get("runtime", {}).get("choices")
    command = None
    if isinstance(overrides, list):
        command = shlex.join(["transferlab-train", *map(str, overrides)])
    metrics = read("metrics.json", json.loads)
    return TrainingRecord(command, choices, metrics, str(run), Path(ckpt_path).name)


def _weights(cfg: dict) -> str:
    backbone, strategy = cfg["backbone"], cfg.get("strategy", {})
    if strategy.get("reinit"):
        return "random initialisation (trained from scratch)"
    if backbone.get("pretrained"):
        return f"timm hub weights of `{backbone['name']}`"
    if backbone.get("weights"):
        return f"`{backbone['weights']}`"
    return "random initialisation"


def _metric_table(rows: dict[str, dict[str, float]], keys: list[str]) -> list[str]:
    lines = ["| split | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for split, metrics in rows.items():
        cells = [f"{metrics[k]:.4f}" if metrics.get(k) is not None else "–" for k in keys]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return lines


def model_card(
    config: dict,
    spec: Preprocess,
    params: int,
    measured: dict[str, float],
    export_command: str,
    parity: Parity,
    opset: int,
    training: TrainingRecord,
) -> str:
    """The card's markdown.

    Args:
        config: the resolved training config stored in the checkpoint.
        spec: the exported input spec (size, channels, classes, temperature).
        params: parameter count of the exported classifier.
        measured: ``val/…`` and ``test/…`` acc, ece (and ece_temperature) measured by the export.
        export_command: the command that measured them.
        parity: the ONNX parity check.
        opset: the ONNX opset.
        training: what the training run left beside the checkpoint.
    """
    data, choices = config["data"], training.choices or {}
    strategy = {k: v for k, v in config.get("strategy", {}).items() if k != "_target_"}
    optimizer = {k: v for k, v in config.get("optimizer", {}).items() if not k.startswith("_")}
    calibrated = spec.temperature != 1.0
    lines = [
        f"# Model card: {config['backbone']['name']} on {choices.get('data', data['_target_'])}",
        "",
        "## Model",
        "",
        f"- **Backbone**: `{config['backbone']['name']}` (timm) + `{choices.get('head', 'linear')}` "
        f"head, {params:,} parameters, {len(spec.class_names)} classes.",
        f"- **Source weights**: {_weights(config)}.",
        f"- **Strategy**: `{choices.get('strategy', '?')}` ({', '.join(f'{k}={v}' for k, v in strategy.items())}).",
        f"- **Data**: `{choices.get('data', data['_target_'])}` ({', '.join(f'{k}={v}' for k, v in data.items() if k != '_target_' and not isinstance(v, dict))}).",
        f"- **Classes**: {', '.join(spec.class_names)}.",
        f"- **Training**: {config['optimizer'].get('_target_', '?')}, "
        f"{', '.join(f'{k}={v}' for k, v in optimizer.items())}; scheduler "
        f"`{choices.get('scheduler', '?')}`, augmentation `{choices.get('augmentation', '?')}`, "
        f"{config['trainer'].get('max_epochs', '?')} epochs, seed {config.get('seed')}.",
        f"- **Trained by**: `{training.command or 'unknown (no .hydra/overrides.yaml beside the checkpoint)'}`",
        "",
        "## Metrics",
        "",
        f"Measured on this checkpoint's own held-out splits by `{export_command}`; ECE is the "
        "expected calibration error (15 equal-width bins, l1).",
        "",
    ]
    keys = ["acc", "ece"] + (["ece_temperature"] if calibrated else [])
    splits = {s: {k: measured.get(f"{s}/{k}") for k in keys} for s in ("val", "test")}
    lines += _metric_table(splits, keys)
    if training.metrics:
        lines += [
            "",
            f"The training run's own `metrics.json` ({training.metrics_source()}): "
            + ", ".join(
                f"{k} {training.metrics[k]:.4f}"
                for k in ("val/acc", "test/acc", "test/f1", "test/ece")
                if isinstance(training.metrics.get(k), float)
            )
            + ".",
        ]
    lines += [
        "",
        "## Calibration",
        "",
        (
            f"Temperature scaling fitted on the validation split: T = {spec.temperature:.4f}. "
            "Predictions use softmax(logits / T); the predicted class is unchanged."
            if calibrated
            else "Not calibrated (T = 1). Export with `calibrate=temperature` to fit a "
            "temperature on the validation split."
        ),
        "",
        "## Export",
        "",
        f"- `model.onnx`: ONNX opset {opset}, TorchScript-based exporter, dynamic batch axis; "
        f"input `images` uint8 [batch, {spec.channels}, {spec.crop}, {spec.crop}] "
        "(normalisation inside the graph), output `logits` float32 [batch, classes].",
        f"- Parity with PyTorch (onnxruntime CPU): {parity.describe()}.",
        "- `preprocess.json`: decoding, resize and crop, mean/std, class names, temperature.",
        "",
        "## Intended use and limits",
        "",
        f"- Classifies {spec.crop}x{spec.crop} {'greyscale' if spec.channels == 1 else 'RGB'} "
        f"images into the {len(spec.class_names)} classes above, as a research baseline.",
        "- The metrics hold for images like the held-out split: same source, resolution and "
        "class balance. Images from elsewhere (other cameras, scans, styles) or of classes not "
        "listed get one of these labels anyway, often with high confidence.",
        "- The confidence is calibrated only as far as the ECE above shows, on this data; "
        "re-check it on your own labelled sample before using it as a probability.",
        "- Not evaluated for fairness, robustness or adversarial inputs.",
        "",
        "<details><summary>Training config (resolved, as stored in the checkpoint)</summary>",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)
