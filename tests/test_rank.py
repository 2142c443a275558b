"""transferlab-rank: one frozen pass per candidate, every score in ranking.csv/.md/.png, the
features left in the cache for a later feature-extraction run, LEEP/NCE from a source head."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from transferlab.rank import rank, split_overrides
from transferlab.train import train

TARGET = ["data=synthetic", "data.num_samples=96", "trainer.accelerator=cpu"]


def candidate(name: str, *overrides: str, source: str | None = None) -> str:
    listed = ",".join(f"'{o}'" for o in overrides)
    return f"{{name:{name},overrides:[{listed}],source_ckpt:{source or 'null'}}}"


def test_rank_keys_go_to_the_ranking_and_the_rest_to_the_candidates():
    ours, target = split_overrides(["knn_k=3", "out=/x", "data=digits", "data.batch_size=8"])
    assert ours == ["knn_k=3", "out=/x"] and target == ["data=digits", "data.batch_size=8"]


def test_rank_scores_every_candidate_and_leaves_its_features_cached(make_cfg, tmp_path, caplog):
    source_run = make_cfg([*TARGET, "trainer.max_epochs=1"])
    train(source_run)  # a model with a head over the same classes: a source for LEEP and NCE
    source = Path(source_run.paths.output_dir, "checkpoints", "best.ckpt")
    cands = [
        candidate("tiny_a", "backbone=tiny", "backbone.weights=null", source=str(source)),
        candidate("tiny_b", "backbone=tiny", "backbone.weights=null", "seed=1"),
    ]
    out = tmp_path / "ranking"
    ranked = rank(
        [f"candidates=[{','.join(cands)}]", f"out={out}", *TARGET, f"paths.root_dir={tmp_path}"]
    )
    assert [r.name for r in ranked] == ["tiny_a", "tiny_b"]
    rows = list(csv.DictReader((out / "ranking.csv").open()))
    assert [r["name"] for r in rows] == ["tiny_a", "tiny_b"]
    for score in ("logme", "h_score", "transrate", "knn_acc"):
        assert all(r[score] != "" for r in rows), score
    assert rows[0]["leep"] != "" and rows[1]["leep"] == ""  # only tiny_a has a source head
    assert float(rows[0]["leep"]) <= 0 and float(rows[0]["nce"]) <= 0
    assert "| 1 |" in (out / "ranking.md").read_text()
    assert (out / "ranking.png").stat().st_size > 0
    # a feature-extraction run on the same backbone and data starts from the ranked features
    caplog.clear()
    caplog.set_level(logging.INFO, logger="transferlab")
    probe = make_cfg(
        [*TARGET, "strategy=feature_extraction", "trainer.max_epochs=1", "seed=1"],
    )
    train(probe)
    assert "feature cache: reusing" in caplog.text and "-train.pt" in caplog.text


def test_an_empty_candidate_list_is_one_sentence(tmp_path):
    from transferlab.errors import ConfigError

    with pytest.raises(ConfigError, match="candidates is empty"):
        rank(["candidates=[]", f"out={tmp_path}"])


def test_a_grey_source_head_scores_colour_target_images(make_cfg, tmp_path):
    source_run = make_cfg(
        ["data=synthetic", "data.num_samples=64", "data.channels=1", "trainer.max_epochs=1"]
    )
    train(source_run)
    source = Path(source_run.paths.output_dir, "checkpoints", "best.ckpt")
    cands = [candidate("tiny", "backbone=tiny", "backbone.weights=null", source=str(source))]
    out = tmp_path / "ranking"
    [ranked] = rank(
        [f"candidates=[{','.join(cands)}]", f"out={out}", *TARGET, f"paths.root_dir={tmp_path}"]
    )
    assert ranked.scores["leep"] <= 0 and ranked.scores["nce"] <= 0
