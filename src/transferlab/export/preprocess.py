"""``preprocess.json``: the evaluation transform and the label space of an exported model, as
plain data a runtime in any language can follow (and :func:`load_image_file` follows here).

Images go through exactly what the model's evaluation did to its images
(:func:`transferlab.data.decode.evaluation_image`), in one of two resize modes decided by the
training data: ``shorter_side`` for image folders (decode to the model's channels, resize the
shorter side to ``resize``, centre-crop it square) and ``stretch`` for array data (decode at the
file's own size, convert channels as a domain pair does, resize the whole image to ``resize`` x
``resize``); then centre-crop to ``crop``. The result is fed as uint8 ``[N, C, crop, crop]``.
Normalisation is inside the ONNX graph.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from transferlab.data.decode import RESIZE_MODES, evaluation_image
from transferlab.errors import ConfigError
from transferlab.files import strict_json

# /2 added resize_mode; a /1 file described every model as an image folder's, so it is refused
FORMAT = "transferlab-preprocess/2"
# data sources that decode files with load_image; every other source is built from arrays
FOLDER_SOURCES = ("ImageFolderData", "folder_domain")


@dataclass(frozen=True)
class Preprocess:
    """What a model expects and what its outputs mean.

    Attributes:
        channels: 1 (greyscale) or 3 (RGB); images of other modes are converted.
        resize: the loaded square side (see ``resize_mode``).
        crop: the centre crop the model sees (``crop <= resize``).
        mean, std: per-channel statistics in [0, 1], applied inside the model.
        class_names: the label of each logit, in order.
        temperature: divide the logits by it before the softmax (1.0: not calibrated).
        resize_mode: ``shorter_side`` (image folders: the shorter side resized, then
            centre-cropped square) or ``stretch`` (array data: the whole image resized to a
            square, float antialiased bilinear, rounded).
    """

    channels: int
    resize: int
    crop: int
    mean: list[float]
    std: list[float]
    class_names: list[str]
    temperature: float = 1.0
    resize_mode: str = "shorter_side"
    extra: dict = field(default_factory=dict)

    def steps(self) -> list[str]:
        """The transform in words, for a runtime in another language."""
        mode = "L" if self.channels == 1 else "RGB"
        if self.resize_mode == "shorter_side":
            return [
                f"decode, convert to {mode} (PIL convert)",
                f"resize the shorter side to {self.resize} on uint8 (antialiased bilinear), "
                f"centre-crop {self.resize}x{self.resize}",
                f"centre-crop {self.crop}x{self.crop}",
            ]
        return [
            "decode at the file's own size: greyscale files as L, any other as RGB",
            f"convert to {mode}: grey to RGB by copying, RGB to grey by 0.299 R + 0.587 G + "
            "0.114 B rounded",
            f"resize the whole image to {self.resize}x{self.resize} in float (antialiased "
            "bilinear, align_corners=false), round and clamp to uint8",
            f"centre-crop {self.crop}x{self.crop}",
        ]

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
            "transform": self.steps(),
            "normalization": "inside the model: (images / 255 - mean) / std",
            "output": {
                "name": "logits",
                "probabilities": "softmax(logits / temperature)",
            },
            **record,
            **extra,
        }

    def text(self) -> str:
        """The JSON file's text, as :func:`~transferlab.files.write_json` writes it."""
        return json.dumps(strict_json(self.to_json()), indent=2, allow_nan=False) + "\n"


def resize_mode_of(data: dict) -> str:
    """How the training data resized its images, from its stored config: ``shorter_side`` for
    image folders, ``stretch`` for array data; a pair's is its target domain's."""
    target = str(data.get("_target_", "")).rsplit(".", 1)[-1]
    if target == "DomainPair":
        return resize_mode_of(data.get("target") or {})
    return "shorter_side" if target in FOLDER_SOURCES else "stretch"


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
        resize_mode=resize_mode_of(data),
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
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            found = record.get("format") if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"format is {found!r}")
        names = ("channels", "resize", "crop", "mean", "std", "class_names", "temperature")
        spec = Preprocess(**{k: record[k] for k in names}, resize_mode=record["resize_mode"])
        check_spec(spec)
        return spec
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"'{path}' is not a {FORMAT} file ({type(e).__name__}: {e}); export the model again "
            "with transferlab-export."
        ) from e


def check_spec(spec: Preprocess) -> None:
    """Raise ValueError naming the first field of ``spec`` a runtime could not follow."""

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    def numbers(v) -> bool:
        return (
            isinstance(v, list)
            and len(v) == spec.channels
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        )

    checks = {
        "channels": spec.channels in (1, 3),
        "resize": whole(spec.resize),
        "crop": whole(spec.crop) and whole(spec.resize) and spec.crop <= spec.resize,
        "mean": numbers(spec.mean),
        "std": numbers(spec.std),
        "class_names": isinstance(spec.class_names, list)
        and len(spec.class_names) > 0
        and all(isinstance(c, str) for c in spec.class_names),
        "temperature": isinstance(spec.temperature, int | float)
        and not isinstance(spec.temperature, bool)
        and spec.temperature > 0,
        "resize_mode": spec.resize_mode in RESIZE_MODES,
    }
    bad = next((name for name, ok in checks.items() if not ok), None)
    if bad is not None:
        raise ValueError(f"{bad} is {getattr(spec, bad)!r}")


def load_image_file(path: str | Path, spec: Preprocess) -> torch.Tensor:
    """uint8 ``[C, crop, crop]`` of one image file, transformed as evaluation does."""
    return evaluation_image(path, spec.channels, spec.resize, spec.crop, spec.resize_mode)
