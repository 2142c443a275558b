"""transferlab-export: the whole classifier to ONNX with a dynamic batch axis, checked against
PyTorch on held-out images (resnet, ViT and EfficientNet test models), written whole or not at
all, with preprocess.json and a model card; bad checkpoints refused in one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import calibrated_eval_config
from transferlab import TINY_CPU, compose
from transferlab.errors import run_or_explain
from transferlab.export import bundle as bundle_module
from transferlab.export import parity as parity_module
from transferlab.export.bundle import write_bundle
from transferlab.export.cli import export
from transferlab.export.onnx import onnx_session, run_onnx, torchscript_exporter
from transferlab.export.preprocess import read_preprocess
from transferlab.train import train

QUICK = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "logger=none"]
BACKBONES = {
    "test_resnet": ["backbone=tiny"],
    "test_vit": ["backbone=timm", "backbone.name=test_vit"],
    "test_efficientnet": ["backbone=timm", "backbone.name=test_efficientnet"],
}


def train_checkpoint(root: Path, overrides=(), data=("data=synthetic",)) -> Path:
    """A quickly trained tiny model's best.ckpt under ``root/run``."""
    cfg = compose([*TINY_CPU, *data, *QUICK, *overrides], run_dir=root / "run", root_dir=root)
    train(cfg)
    return root / "run" / "checkpoints" / "best.ckpt"


def export_cfg(ckpt: Path, out: Path, *overrides: str):
    return compose([f"ckpt_path={ckpt}", f"out={out}", *overrides], "export", root_dir=out.parent)


def refused(fn, cfg, capsys) -> str:
    """The one ``error: …`` line of a refused command (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        run_or_explain(fn, cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def resnet_ckpt(tmp_path_factory) -> Path:
    return train_checkpoint(tmp_path_factory.mktemp("resnet"))


@pytest.mark.parametrize("name", list(BACKBONES))
def test_onnx_matches_pytorch_on_held_out_images(name, tmp_path, resnet_ckpt):
    ckpt = resnet_ckpt if name == "test_resnet" else train_checkpoint(tmp_path, BACKBONES[name])
    out = tmp_path / "export"
    parity = export(export_cfg(ckpt, out))
    assert parity.ok and parity.num_images == 64 and parity.batch_sizes == (1, 7)
    assert parity.max_abs_diff <= 1e-4 and parity.argmax_mismatches == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "model.onnx",
        "model_card.md",
        "preprocess.json",
    ]
    # the written file, read back: dynamic batch axis, uint8 input, normalisation inside
    from transferlab.build import load_module

    module, _ = load_module(str(ckpt))
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = module.eval()(images)
    session = onnx_session(str(out / "model.onnx"))
    for batch in (1, 5):
        torch.testing.assert_close(run_onnx(session, images, batch), expected, atol=1e-4, rtol=0)
    spec = read_preprocess(out / "preprocess.json")
    assert (spec.channels, spec.resize, spec.crop) == (3, 32, 32)
    assert spec.class_names == module.extra["class_names"] and spec.temperature == 1.0
    assert spec.mean == pytest.approx(module.mean.flatten().tolist())
    card = (out / "model_card.md").read_text()
    assert name in card and "max |Δlogit|" in card and "## Intended use and limits" in card
    assert "scored on its best.ckpt, the checkpoint exported here" in card


def test_temperature_is_stored_with_the_export_as_eval_fits_it(resnet_ckpt, tmp_path):
    from transferlab.evaluate import evaluate

    out = tmp_path / "export"
    export(export_cfg(resnet_ckpt, out, "calibrate=temperature"))
    stored = json.loads((out / "preprocess.json").read_text())["temperature"]
    eval_cfg = calibrated_eval_config(resnet_ckpt, tmp_path)
    metrics = evaluate(eval_cfg)
    assert stored == pytest.approx(metrics["calibration/temperature"], rel=1e-6)
    assert {"val/ece", "test/ece", "val/ece_temperature", "test/ece_temperature"} <= set(metrics)
    assert (tmp_path / "eval" / "reliability_diagram.png").is_file()
    assert "ece_temperature" in (out / "model_card.md").read_text()


def test_failed_parity_is_refused_and_writes_nothing(resnet_ckpt, tmp_path, capsys, monkeypatch):
    real = parity_module.run_onnx
    monkeypatch.setattr(parity_module, "run_onnx", lambda s, x, b: real(s, x, b) + 1e-3)
    out = tmp_path / "export"
    err = refused(export, export_cfg(resnet_ckpt, out), capsys)
    assert "The ONNX model does not match PyTorch (max |Δlogit| 1.00e-03" in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("damage", ["garbage", "other_version", "missing"])
def test_bad_checkpoints_are_refused(damage, resnet_ckpt, tmp_path, capsys):
    ckpt = tmp_path / "bad.ckpt"
    if damage == "garbage":
        ckpt.write_bytes(b"not a checkpoint at all")
    elif damage == "other_version":  # its weights no longer fit the model its config builds
        saved = torch.load(resnet_ckpt, weights_only=True)
        saved["state_dict"] = {
            k.replace("head.", "classifier."): v for k, v in saved["state_dict"].items()
        }
        torch.save(saved, ckpt)
    out = tmp_path / "export"
    err = refused(
        export, export_cfg(ckpt if damage != "missing" else tmp_path / "no.ckpt", out), capsys
    )
    assert ("transferlab-train" if damage != "missing" else "pass ckpt_path=") in err
    assert not out.exists()


def test_a_parity_failure_of_the_argmax_alone_is_refused(
    resnet_ckpt, tmp_path, capsys, monkeypatch
):
    real = parity_module.run_onnx
    # every class moved one place on: a different argmax; a loose tolerance passes the values
    monkeypatch.setattr(parity_module, "run_onnx", lambda s, x, b: real(s, x, b).roll(1, -1))
    out = tmp_path / "export"
    err = refused(export, export_cfg(resnet_ckpt, out, "parity.tolerance=1000"), capsys)
    assert "The ONNX model does not match PyTorch" in err and "/64 identical argmax" in err
    assert "64/64 identical argmax" not in err
    assert not out.exists()


def test_a_card_of_another_checkpoint_says_whose_metrics_the_run_reports(resnet_ckpt, tmp_path):
    last = resnet_ckpt.with_name("last.ckpt")
    assert last.is_file()
    out = tmp_path / "export"
    export(export_cfg(last, out))
    card = (out / "model_card.md").read_text()
    assert "scored on that run's best checkpoint, not on the exported `last.ckpt`" in card
    assert "(same checkpoint)" not in card


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("parity.batch_sizes=[]", "parity.batch_sizes=[] must hold 1 and an odd size above 1"),
        ("parity.batch_sizes=[1,2]", "must hold 1 and an odd size above 1"),
        ("parity.batch_sizes=[7]", "must hold 1 and an odd size above 1"),
        ("parity.num_images=1", "parity.num_images must be a whole number >= 2"),
    ],
)
def test_bad_parity_settings_are_refused(override, message, tmp_path, capsys):
    cfg = export_cfg(tmp_path / "none.ckpt", tmp_path / "export", override)
    assert message in refused(export, cfg, capsys)  # before the checkpoint is even read


def test_an_export_dir_is_replaced_whole(tmp_path, monkeypatch):
    out = tmp_path / "export"
    out.mkdir()
    for name in ("model.onnx", "preprocess.json", "model_card.md"):
        (out / name).write_text("old")
    (out / "export.log").write_text("this export's log")  # Hydra opened it there
    new = {"model.onnx": b"new onnx", "preprocess.json": b"{}", "model_card.md": b"# new"}
    # a failure midway (the second file) leaves the old export as it was, and no temp dir
    real = bundle_module.Path.write_bytes
    calls = []

    def fail_second(path, data):
        calls.append(path.name)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(path, data)

    monkeypatch.setattr(bundle_module.Path, "write_bytes", fail_second)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(out, new)
    assert (out / "model.onnx").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [
        "export"
    ]
    monkeypatch.undo()
    write_bundle(out, new)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        **new,
        "export.log": b"this export's log",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # the old dir is gone
    fresh = tmp_path / "fresh"
    fresh.mkdir()  # the mode an ordinary mkdir gives, not mkdtemp's 0700
    assert out.stat().st_mode & 0o777 == fresh.stat().st_mode & 0o777


def test_the_torchscript_exporter_is_asked_for_only_where_torch_has_the_switch():
    def new_export(model, args, f, *, dynamo=True, opset_version=None): ...

    def old_export(model, args, f, opset_version=None, dynamic_axes=None): ...

    assert torchscript_exporter(new_export) == {"dynamo": False}
    assert torchscript_exporter(old_export) == {}
