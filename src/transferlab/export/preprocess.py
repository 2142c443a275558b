"""``preprocess.json``: the evaluation transform and the label space of an exported model, as
plain data a runtime in any language can follow (and :func:`load_image_file` follows here).

Images go through exactly what evaluation does to an image folder: decode and convert to the
model's channels (greyscale ``L`` or ``RGB``, as in training), resize the shorter side to
``resize`` and centre-crop it square, then centre-crop to ``crop``; the result is fed as uint8
``[N, C, crop, crop]``. Normalisation is inside the ONNX graph.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as F

from transferlab.data.files import load_image
from transferlab.errors import ConfigError
from transferlab.files import write_json

FORMAT = "transferlab-preprocess/1"


@dataclass(frozen=True)
class Preprocess:
    """What a model expects and what its outputs mean.

    Attributes:
        channels: 1 (greyscale) or 3 (RGB); images of other modes are converted.
        resize: the shorter side is resized to this, then centre-cropped square.
        crop: the centre crop the model sees (``crop <= resize``).
        mean, std: per-channel statistics in [0, 1], applied inside the model.
        class_names: the label of each logit, in order.
        temperature: divide the logits by it before the softmax (1.0: not calibrated).
    """

    channels: int
    resize: int
    crop: int
    mean: list[float]
    std: list[float]
    class_names: list[str]
    temperature: float = 1.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        record = asdict(self)
        extra = record.pop("extra")
        return {
            "format": FORMAT,
            "input": {
                "name": "images",
                "dtype": "uint8",
                "layout": "NCHW",
                "shape": ["batch", self.channels, self.crop, self.crop],
                "value_range": [0, 255],
                "color_mode": "L" if self.channels == 1 else "RGB",
            },
            "transform": [
                f"decode, convert to {'L' if self.channels == 1 else 'RGB'}",
                f"resize the shorter side to {self.resize} (antialiased bilinear), centre-crop "
                f"{self.resize}x{self.resize}",
                f"centre-crop {self.crop}x{self.crop}",
            ],
            "normalization": "inside the model: (images / 255 - mean) / std",
            "output": {
                "name": "logits",
                "probabilities": "softmax(logits / temperature)",
            },
            **record,
            **extra,
        }

    def write(self, path: Path) -> Path:
        return write_json(path, self.to_json())


def preprocess_for(
    module, loaded_size: int | None, temperature: float = 1.0, extra: dict | None = None
) -> Preprocess:
    """The :class:`Preprocess` of a module rebuilt from a checkpoint.

    Args:
        module: a :class:`~transferlab.module.TransferModule` with its stored ``extra``.
        loaded_size: the side of the loaded evaluation images; None reads the stored
            ``data.image_size``.
        temperature: the fitted softmax temperature.
        extra: more fields for the JSON record (the exporter's provenance).
    """
    data = module.extra["config"]["data"]
    resize = loaded_size or data.get("image_size")
    if not resize:
        raise ConfigError(
            "This checkpoint's data config has no image size (data.image_size=null); export it "
            "with transferlab-export, which records the loaded size, and predict with model=."
        )
    crop = data.get("crop_size") or resize
    return Preprocess(
        channels=int(module.extra["in_chans"]),
        resize=int(resize),
        crop=int(crop),
        mean=[round(float(v), 8) for v in module.mean.flatten()],
        std=[round(float(v), 8) for v in module.std.flatten()],
        class_names=[str(c) for c in module.extra["class_names"]],
        temperature=float(temperature),
        extra=extra or {},
    )


def read_preprocess(path: Path) -> Preprocess:
    """The spec in ``path``; a missing or foreign file is refused with the fix."""
    if not path.is_file():
        raise ConfigError(
            f"No preprocess.json at '{path}'; keep the preprocess.json that transferlab-export "
            "wrote beside model.onnx, or pass preprocess=<its path>."
        )
    try:
        record = json.loads(path.read_text())
        if record.get("format") != FORMAT:
            raise ValueError(f"format is {record.get('format')!r}")
        names = ("channels", "resize", "crop", "mean", "std", "class_names", "temperature")
        return Preprocess(**{k: record[k] for k in names})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"'{path}' is not a {FORMAT} file ({type(e).__name__}: {e}); export the model again "
            "with transferlab-export."
        ) from e


def load_image_file(path: str | Path, spec: Preprocess) -> torch.Tensor:
    """uint8 ``[C, crop, crop]`` of one image file, transformed as evaluation does."""
    x = load_image(str(path), spec.channels, spec.resize)
    return x if spec.crop == spec.resize else F.center_crop(x, [spec.crop, spec.crop])
