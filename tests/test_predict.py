"""transferlab-predict: files, folders and globs through the evaluation transform, from a
checkpoint or an exported ONNX model; its logits on the test split are evaluation's; bad files
are skipped and listed, bad input is one sentence and leaves no CSV."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_export import export_cfg, refused, train_checkpoint
from transferlab import compose
from transferlab.build import build_datamodule, load_module
from transferlab.calibration import expected_calibration_error
from transferlab.evaluate import evaluate
from transferlab.export.cli import export
from transferlab.export.inference import evaluation_logits
from transferlab.predict import predict

CLASSES = ["cat", "dog", "owl"]
MODES = ["RGB", "L", "RGBA", "P"]  # converted to the model's channels, as in training


def write_images(folder: Path, n: int, seed: int) -> None:
    """``folder/<class>/img_NNN.png``: n images per class, mixed sizes and modes."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True)
        for i in range(n):
            h, w = 28 + 4 * (i % 3), 30 + 2 * (i % 4)
            arr = (rng.random((h, w, 3)) * 90 + 70 * c).astype(np.uint8)
            Image.fromarray(arr).convert(MODES[i % 4]).save(folder / name / f"img_{i:03d}.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data root, checkpoint, export dir) of a tiny model on a train/val/test image folder."""
    root = tmp_path_factory.mktemp("predict")
    data = root / "images"
    for split, n, seed in (("train", 16, 0), ("val", 6, 1), ("test", 8, 2)):
        write_images(data / split, n, seed)
    data_overrides = [
        "data=image_folder",
        f"data.root={data}",
        "data.image_size=32",
        "data.num_workers=0",
    ]
    ckpt = train_checkpoint(root, data=data_overrides)
    # every held-out image of this small set (test 24 + val 18), fewer than the default 64
    export(export_cfg(ckpt, root / "export", "calibrate=temperature", "parity.num_images=42"))
    return data, ckpt, root / "export"


def predict_cfg(out: Path, *overrides: str):
    return compose([f"out={out}", *overrides], "predict", root_dir=out.parent)


def read_rows(out: Path) -> list[dict]:
    with open(out / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_predict_logits_on_the_test_split_equal_evaluation(trained, tmp_path):
    data, ckpt, _ = trained
    result = predict(predict_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs={data / 'test'}"))
    module, train_cfg = load_module(str(ckpt))
    dm = build_datamodule(train_cfg, False)
    dm.setup()
    expected, labels = evaluation_logits(module, dm, "test")
    torch.testing.assert_close(result.logits, expected, atol=1e-5, rtol=0)
    # and against what transferlab-eval writes to metrics.json
    metrics = evaluate(
        compose(
            [f"ckpt_path={ckpt}", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"],
            "eval",
            run_dir=tmp_path / "eval",
            root_dir=tmp_path,
        )
    )
    rows = read_rows(tmp_path / "pred")
    truth = [Path(r["path"]).parent.name for r in rows]
    accuracy = np.mean([r["prediction"] == t for r, t in zip(rows, truth, strict=True)])
    assert accuracy == pytest.approx(metrics["test/acc"])
    assert expected_calibration_error(result.logits, labels) == pytest.approx(
        metrics["test/ece"], abs=1e-5
    )
    assert set(rows[0]) == {"path", "prediction", "confidence"} | {
        f"top{i}{s}" for i in (1, 2, 3) for s in ("", "_confidence")
    }


def test_onnx_predictions_match_the_checkpoint_and_use_the_stored_temperature(trained, tmp_path):
    data, ckpt, exported = trained
    onnx = predict(
        predict_cfg(tmp_path / "a", f"model={exported / 'model.onnx'}", f"inputs={data}")
    )
    torch_ = predict(predict_cfg(tmp_path / "b", f"ckpt_path={ckpt}", f"inputs={data}"))
    torch.testing.assert_close(onnx.logits, torch_.logits, atol=1e-4, rtol=0)
    stored = json.loads((exported / "preprocess.json").read_text())["temperature"]
    assert onnx.temperature == stored != 1.0 and torch_.temperature == 1.0
    rows = read_rows(tmp_path / "a")
    assert len(rows) == 3 * (16 + 6 + 8)  # the folder, searched recursively
    first = (onnx.logits[0].double() / stored).softmax(-1).max()
    assert float(rows[0]["confidence"]) == pytest.approx(float(first), abs=1e-6)


def test_unreadable_files_are_skipped_with_a_warning_and_listed(trained, tmp_path, caplog):
    data, _, exported = trained
    mixed = tmp_path / "mixed"
    (mixed / "nested").mkdir(parents=True)
    for src, dst in (("test/cat/img_000.png", "a.png"), ("test/owl/img_001.png", "nested/b.png")):
        (mixed / dst).write_bytes((data / src).read_bytes())
    (mixed / "notes.txt").write_text("not an image")
    (mixed / "broken.png").write_bytes((data / "test/dog/img_002.png").read_bytes()[:40])
    (mixed / ".hidden.png").write_text("ignored")
    with caplog.at_level(logging.INFO, logger="transferlab"):
        result = predict(
            predict_cfg(tmp_path / "out", f"model={exported / 'model.onnx'}", f"inputs={mixed}")
        )
    assert [p.name for p in result.paths] == ["a.png", "b.png"]
    assert sorted(p.name for p, _ in result.skipped) == ["broken.png", "notes.txt"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all(w.startswith("skipped ") for w in warnings)
    summary = next(
        r.getMessage() for r in caplog.records if "transferlab predictions" in r.getMessage()
    )
    assert "2 predicted, 2 skipped" in summary and "notes.txt" in summary
    assert len(read_rows(tmp_path / "out")) == 2


def test_a_glob_and_a_single_file(trained, tmp_path, capsys):
    data, _, exported = trained
    model = f"model={exported / 'model.onnx'}"
    pattern = f"inputs='{data}/*/owl/img_00[0-5].png'"
    glob = predict(predict_cfg(tmp_path / "g", model, pattern, "progress_from=10"))
    assert len(glob.paths) == 3 * 6  # img_000..img_005 of train, val and test
    assert "predict: 100%" in capsys.readouterr().err  # a progress bar from 10 files up
    one = predict(predict_cfg(tmp_path / "f", model, f"inputs={data / 'val/cat/img_000.png'}"))
    assert len(one.paths) == 1 and len(read_rows(tmp_path / "f")) == 1


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty_folder", "holds no files; put images in it"),
        ("no_images", "None of the 1 input files could be read as an image"),
        ("no_match", "matches no files as a glob"),
        ("missing_preprocess", "No preprocess.json at"),
        ("no_model", "either model=<export dir>/model.onnx or ckpt_path="),
        ("garbage_onnx", "onnxruntime cannot load"),
    ],
)
def test_bad_input_is_one_sentence_and_writes_no_csv(case, message, trained, tmp_path, capsys):
    data, _, exported = trained
    model = exported / "model.onnx"
    inputs = data / "test"
    if case == "empty_folder":
        inputs = tmp_path / "empty"
        inputs.mkdir()
    elif case == "no_images":
        inputs = tmp_path / "docs"
        inputs.mkdir()
        (inputs / "readme.txt").write_text("hello")
    elif case == "no_match":
        inputs = tmp_path / "nothing" / "*.png"
    elif case == "missing_preprocess":  # model.onnx copied away from its preprocess.json
        model = tmp_path / "model.onnx"
        model.write_bytes((exported / "model.onnx").read_bytes())
    elif case == "garbage_onnx":
        model = tmp_path / "model.onnx"
        model.write_bytes(b"garbage")
        (tmp_path / "preprocess.json").write_bytes((exported / "preprocess.json").read_bytes())
    chosen = [] if case == "no_model" else [f"model={model}"]
    out = tmp_path / "out"
    err = refused(predict, predict_cfg(out, *chosen, f"inputs={inputs}"), capsys)
    assert message in err
    assert not (out / "predictions.csv").exists()


def test_the_commands_export_then_predict(trained, tmp_path):
    from test_end_to_end import cli

    data, ckpt, _ = trained
    out = tmp_path / "export"
    res = cli(
        "transferlab-export",
        f"ckpt_path={ckpt}",
        f"out={out}",
        "parity.num_images=42",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ONNX parity on 42 held-out images: max |Δlogit|" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "export.log",
        "model.onnx",
        "model_card.md",
        "preprocess.json",
    ]
    pred = tmp_path / "pred"
    res = cli(
        "transferlab-predict",
        f"model={out / 'model.onnx'}",
        f"inputs={data / 'val'}",
        f"out={pred}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "18 predicted, 0 skipped" in res.stdout
    assert len(read_rows(pred)) == 18


def test_fewer_held_out_images_than_parity_num_images_are_refused(trained, tmp_path, capsys):
    _, ckpt, _ = trained
    out = tmp_path / "export"
    err = refused(export, export_cfg(ckpt, out), capsys)  # 42 held-out images, 64 asked for
    assert "has 42 held-out images, fewer than parity.num_images=64" in err
    assert "set parity.num_images=42 to check on those" in err
    assert not out.exists()


@pytest.fixture(scope="module")
def array_model(tmp_path_factory):
    """(folder of raw test PNGs, their evaluation logits, checkpoint, export dir) of a tiny model
    on array data: scikit-learn's 8 px digits stretched to 20 px at load time, then an 18 px
    crop (mnist_split, the default, loads its 28 px arrays the same way)."""
    root = tmp_path_factory.mktemp("arrays")
    data = ["data=digits", "data.image_size=20", "data.crop_size=18"]
    ckpt = train_checkpoint(root, data=data)
    module, train_cfg = load_module(str(ckpt))
    dm = build_datamodule(train_cfg, False)
    dm.setup()
    n = 96
    raw = dm.load().test[0][:n]  # the test split before setup's resize, in the same order
    assert raw.shape[1:] == (1, 8, 8) and dm.splits.test[0].shape[-1] == 20
    folder = root / "raw_test"
    folder.mkdir()
    for i, image in enumerate(raw):
        Image.fromarray(image[0].numpy()).save(folder / f"{i:03d}.png")
    expected = evaluation_logits(module, dm, "test")[0][:n]
    export(export_cfg(ckpt, root / "export"))
    return folder, expected, ckpt, root / "export"


def test_predict_on_array_data_applies_its_evaluation_transform(array_model, tmp_path):
    folder, expected, ckpt, exported = array_model
    spec = json.loads((exported / "preprocess.json").read_text())
    assert (spec["resize_mode"], spec["resize"], spec["crop"]) == ("stretch", 20, 18)
    from_ckpt = predict(predict_cfg(tmp_path / "c", f"ckpt_path={ckpt}", f"inputs={folder}"))
    torch.testing.assert_close(from_ckpt.logits, expected, atol=1e-6, rtol=0)
    onnx = predict(
        predict_cfg(tmp_path / "o", f"model={exported / 'model.onnx'}", f"inputs={folder}")
    )
    torch.testing.assert_close(onnx.logits, expected, atol=1e-4, rtol=0)


def test_an_image_folder_model_records_the_shorter_side_resize(trained):
    _, _, exported = trained
    spec = json.loads((exported / "preprocess.json").read_text())
    assert spec["resize_mode"] == "shorter_side"
    assert spec["transform"][1].startswith("resize the shorter side to 32")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("temperature=abc", "temperature must be a positive number, got 'abc'"),
        ("temperature=0", "temperature must be a positive number, got 0"),
        ("temperature=-1.5", "temperature must be a positive number, got -1.5"),
        ("top_k=0", "top_k must be a whole number >= 1, got 0"),
    ],
)
def test_bad_options_are_refused_before_any_image(override, message, tmp_path, capsys):
    # no model and no inputs exist: the option is the first thing checked
    cfg = predict_cfg(tmp_path / "out", "model=nowhere.onnx", "inputs=nothing/*.png", override)
    assert message in refused(predict, cfg, capsys)


def test_checkpoint_predictions_say_no_temperature_is_applied(trained, tmp_path, caplog):
    data, ckpt, _ = trained
    inputs = f"inputs={data / 'val/cat'}"
    with caplog.at_level(logging.INFO, logger="transferlab"):
        predict(predict_cfg(tmp_path / "a", f"ckpt_path={ckpt}", inputs))
    said = [r.getMessage() for r in caplog.records if "no softmax temperature" in r.getMessage()]
    assert len(said) == 1 and "export with calibrate=temperature" in said[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="transferlab"):
        predict(predict_cfg(tmp_path / "b", f"ckpt_path={ckpt}", inputs, "temperature=2"))
    assert not any("no softmax temperature" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("case", "content"),
    [
        ("garbage", b"\x00\xffnot json"),
        ("foreign", b'{"format": "someone-else/3", "channels": 3}'),
        ("old_format", None),
        ("a_list", b"[1, 2, 3]"),
        ("bad_channels", None),
        ("bad_resize_mode", None),
    ],
)
def test_a_garbage_or_foreign_preprocess_json_is_refused(case, content, trained, tmp_path, capsys):
    data, _, exported = trained
    model = tmp_path / "model.onnx"
    model.write_bytes((exported / "model.onnx").read_bytes())
    record = json.loads((exported / "preprocess.json").read_text())
    if case == "old_format":
        record["format"] = "transferlab-preprocess/1"
    elif case == "bad_channels":
        record["channels"] = 4
    elif case == "bad_resize_mode":
        record["resize_mode"] = "squash"
    (tmp_path / "preprocess.json").write_bytes(content or json.dumps(record).encode())
    out = tmp_path / "out"
    err = refused(predict, predict_cfg(out, f"model={model}", f"inputs={data / 'test'}"), capsys)
    assert "is not a transferlab-preprocess/2 file" in err
    assert "export the model again with transferlab-export" in err
    assert not (out / "predictions.csv").exists()
