"""Picture what an augmentation does: ``transferlab-augment-preview [hydra overrides] [--out PNG]``.

Writes a grid: one row per training image, the original first, then several outputs of the
per-image pipeline, then (for Mixup/CutMix) several mixed versions titled with their label
weights. The config is the training config, so any override of ``transferlab-train`` applies:

    transferlab-augment-preview augmentation=strong data=mnist_split --out strong.png
    transferlab-augment-preview augmentation=cutmix augmentation/image=basic data=synthetic
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig

from transferlab.augment import center_crop, crop_size_for
from transferlab.build import build_augmentation, build_datamodule
from transferlab.config import compose
from transferlab.errors import run_or_explain


def one_per_class(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of up to ``n`` images, taking classes in turn so rows show different classes."""
    firsts = [int(torch.nonzero(labels == c)[0]) for c in labels.unique()]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return torch.tensor((firsts + rest)[:n])


def preview_images(cfg, n_images: int, n_versions: int):
    """(originals, augmented [versions], mixed [(images, soft targets)], labels, class names)."""
    torch.manual_seed(cfg.seed)
    augmentation = build_augmentation(cfg)
    dm = build_datamodule(cfg, augmentation=augmentation)
    dm.setup()
    x, y = dm.splits.train
    pick = one_per_class(y, n_images)
    x, y = x[pick], y[pick]
    size = crop_size_for(min(x.shape[-2:]), dm.crop_size)
    crop = center_crop(size)
    transform = dm.training_transform(x) or crop
    originals = torch.stack([crop(img) for img in x])
    versions = [torch.stack([transform(img) for img in x]) for _ in range(n_versions)]
    mixer = augmentation.batch_transform(dm.num_classes, max(len(y), 2)) if augmentation else None
    mixed = [mixer(versions[k % n_versions], y) for k in range(n_versions)] if mixer else []
    return originals, versions, mixed, y, dm.class_names


def label_weights(soft: torch.Tensor, names: list[str]) -> str:
    """'7 0.68 / 3 0.32': the classes a soft target puts weight on, largest first."""
    top = [(float(w), names[int(c)]) for w, c in zip(*soft.sort(descending=True), strict=True)]
    return " / ".join(f"{name} {w:.2f}" for w, name in top if w > 0.005)


def save_grid(originals, versions, mixed, names, labels, title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [("original", originals, None)]
    columns += [(f"augmented {k + 1}", v, None) for k, v in enumerate(versions)]
    columns += [(f"mixed {k + 1}", m, soft) for k, (m, soft) in enumerate(mixed)]
    rows, cols = len(originals), len(columns)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False)
    for j, (heading, images, soft) in enumerate(columns):
        for i in range(rows):
            ax, img = axes[i, j], images[i]
            grey = img.shape[0] == 1
            ax.imshow(img[0] if grey else img.permute(1, 2, 0), cmap="gray" if grey else None)
            ax.set_xticks([]), ax.set_yticks([])
            caption = names[int(labels[i])] if soft is None else label_weights(soft[i], names)
            ax.set_title(caption if i else f"{heading}\n{caption}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> Path:
    cfg = compose(args.overrides)
    choices = HydraConfig.get().runtime.choices
    originals, versions, mixed, labels, names = preview_images(cfg, args.images, args.versions)
    title = (
        f"data={choices['data']}  augmentation={choices['augmentation']} "
        f"(image={choices['augmentation/image']}, batch={choices['augmentation/batch']})"
    )
    save_grid(originals, versions, mixed, names, labels, title, Path(args.out))
    print(f"augmentation preview written to {args.out}")
    return Path(args.out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write a PNG grid of training images: originals, augmented and mixed versions."
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for transferlab-train")
    parser.add_argument("--out", default="outputs/augment_preview.png", help="PNG to write")
    parser.add_argument("--images", type=int, default=5, help="rows (training images)")
    parser.add_argument("--versions", type=int, default=4, help="augmented versions per image")
    args = parser.parse_intermixed_args(argv)
    run_or_explain(run, args)


if __name__ == "__main__":
    main()
