"""Speed switches (channels_last, torch.compile, bf16, loader workers), no per-step host sync,
the step timer, peak training memory, and the benchmark runner."""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from transferlab.backbones import create_backbone
from transferlab.build import build_datamodule, build_module
from transferlab.errors import ConfigError
from transferlab.speed import (
    StepTimer,
    apply_speed_settings,
    channels_last_inference,
    peak_training_memory,
    skip_needless_log_moves,
)
from transferlab.train import train

ROOT = Path(__file__).resolve().parents[1]
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny_backbone():
    return create_backbone("test_resnet", in_chans=3)


def test_channels_last_puts_weights_and_inputs_in_nhwc():
    torch.manual_seed(0)
    backbone = tiny_backbone().eval()
    x = torch.randn(2, 3, 32, 32)
    before = backbone(x)
    seen = []
    conv = next(m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    apply_speed_settings({"channels_last": True}, SimpleNamespace(backbone=backbone))
    after = backbone(x)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert seen[-1].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_an_inference_pass_in_nhwc_gives_the_same_features_and_restores_the_layout():
    """speed.channels_last_inference (the feature cache's pass): NHWC inside, the weights'
    own layout and values after, the same Parameter objects (an optimizer keeps its hold)."""
    torch.manual_seed(0)
    backbone = tiny_backbone().eval()
    x = torch.randn(4, 3, 32, 32)
    conv = next(m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d))
    weight, values = conv.weight, conv.weight.detach().clone()
    with torch.inference_mode():
        before = backbone(x)
        with channels_last_inference(backbone):
            assert conv.weight.is_contiguous(memory_format=torch.channels_last)
            inside = backbone(x)
    assert conv.weight is weight and conv.weight.is_contiguous()
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_inference()  # the weights can still train
    assert torch.equal(conv.weight, values)
    torch.testing.assert_close(inside, before, rtol=1e-5, atol=1e-5)
    convs = [m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    convs[-1].to(memory_format=torch.channels_last)  # a backbone partly in NHWC
    with channels_last_inference(backbone):
        assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert convs[-1].weight.is_contiguous(memory_format=torch.channels_last)  # as it went in
    assert convs[0].weight.is_contiguous() and len(convs) > 1
    apply_speed_settings({"channels_last": True}, SimpleNamespace(backbone=backbone))
    with channels_last_inference(backbone):
        pass
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # the user's setting


def test_self_log_skips_only_the_moves_that_change_nothing(monkeypatch):
    from pytorch_lightning.trainer.connectors.logger_connector import result

    assert skip_needless_log_moves() and skip_needless_log_moves()  # idempotent
    assert result._ResultMetric.to.skips_needless_moves
    walks = []
    real_walk = result.apply_to_collection
    monkeypatch.setattr(
        result, "apply_to_collection", lambda *a, **k: walks.append(1) or real_walk(*a, **k)
    )
    results = result._ResultCollection(training=True)
    for value, size in [(1.0, 4), (4.0, 2)]:  # the entry and the values are on the CPU
        results.log("training_step", "loss", torch.tensor(value), batch_size=size)
    assert walks == []
    entry = results["training_step.loss"]
    assert entry.compute().item() == pytest.approx((1.0 * 4 + 4.0 * 2) / 6)
    entry.to(torch.float64)  # a dtype change is a real move
    entry.to(torch.device("meta"))  # and so is another device: the states and their defaults
    assert len(walks) == 2
    assert entry.value.device.type == "meta" and entry._defaults["value"].device.type == "meta"
    entry.to("meta")  # now there
    assert len(walks) == 2


def test_compile_wraps_the_backbone_and_drops_the_last_partial_batch():
    backbone = tiny_backbone()
    dm = SimpleNamespace(drop_last=False)
    apply_speed_settings({"compile": True}, SimpleNamespace(backbone=backbone), dm)
    assert backbone._compiled_call_impl is not None  # compiled lazily, at the first call
    assert dm.drop_last is True


def test_unknown_compile_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="speed.compile_mode must be one of"):
        apply_speed_settings(
            {"compile": True, "compile_mode": "fastest"}, SimpleNamespace(backbone=tiny_backbone())
        )


def test_loaders_use_persistent_workers_and_pin_memory_only_on_a_gpu(make_cfg):
    dm = build_datamodule(make_cfg(["data=synthetic", "data.num_workers=2"]))
    loader = dm.train_dataloader()
    assert loader.num_workers == 2 and loader.persistent_workers
    assert loader.pin_memory == torch.cuda.is_available()


def test_training_steps_read_no_tensor_values_on_the_host(make_cfg, monkeypatch):
    """Lightning turns progress-bar values into Python numbers at every step (a sync on a GPU);
    only loggers may read values, every log_every_n_steps steps."""
    cfg = make_cfg(["data=synthetic", "data.num_samples=384"])  # 6 training batches
    dm = build_datamodule(cfg)
    dm.setup()
    module = build_module(cfg, dm.num_classes, dm.channels, *dm.normalization)
    reads, inside = [], [False]
    original = torch.Tensor.item

    def item(t):
        frames = traceback.extract_stack(limit=4)[:-1]
        # the optimizer's step counters are CPU scalars even on a GPU: no sync
        if inside[0] and not any("/torch/optim/" in f.filename for f in frames):
            reads.append(frames[-1])
        return original(t)

    class Window(pl.Callback):
        def on_train_batch_start(self, *args):
            inside[0] = True

        def on_train_epoch_end(self, *args):
            inside[0] = False

    monkeypatch.setattr(torch.Tensor, "item", item)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_val_batches=0,
        log_every_n_steps=3,
        callbacks=[Window()],
        logger=pl.loggers.CSVLogger(cfg.paths.output_dir),
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    steps = trainer.global_step
    assert steps == 6
    assert len(reads) <= steps // 3, reads  # one logged value per logging step at most


def test_step_timer_keeps_the_wait_apart_from_the_step(monkeypatch):
    clock = [0.0]  # a clock the test moves by hand: exact, whatever the machine's load
    monkeypatch.setattr("transferlab.speed.time.perf_counter", lambda: clock[0])
    timer, module = StepTimer(), SimpleNamespace(device=torch.device("cpu"))
    timer.on_train_epoch_start(None, module)
    clock[0] += 0.05  # first batch: starting the loader, reported apart
    for wait in (0.03, 0.0):
        timer.on_train_batch_start(None, module, None, 0)
        clock[0] += 0.02
        timer.on_train_batch_end(None, module, None, None, 0)
        clock[0] += wait
    timer.on_train_batch_start(None, module, None, 1)
    clock[0] += 0.01
    timer.on_train_batch_end(None, module, None, None, 1)
    summary = timer.summary()
    assert summary["steps"] == 2
    assert summary["first_wait_s"] == pytest.approx(0.05)
    assert [w for _, w, _ in timer.records] == pytest.approx([0.05, 0.03, 0.0])
    assert [c for _, _, c in timer.records] == pytest.approx([0.02, 0.02, 0.01])
    assert timer.step_times() == pytest.approx([0.05, 0.01])
    assert summary["wait_share"] == pytest.approx(0.03 / 0.06)


def test_step_timer_on_the_cpu_clock_counts_the_process_time(monkeypatch):
    clock = [10.0]
    monkeypatch.setattr("transferlab.speed.time.process_time", lambda: clock[0])
    timer, module = StepTimer(clock="cpu"), SimpleNamespace(device=torch.device("cpu"))
    timer.on_train_epoch_start(None, module)
    timer.on_train_batch_start(None, module, None, 0)
    clock[0] += 0.25
    timer.on_train_batch_end(None, module, None, None, 0)
    assert timer.records == [(True, 0.0, 0.25)]
    with pytest.raises(ConfigError, match="clock must be 'wall' or 'cpu'"):
        StepTimer(clock="gpu")


def test_peak_training_memory_counts_gradients_and_optimizer_state():
    model = torch.nn.Linear(512, 512)
    weights = sum(p.numel() * 4 for p in model.parameters())
    x = torch.randn(8, 512)

    def steps(params):
        optimizer = torch.optim.Adam(params)
        for _ in range(2):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()

    full = peak_training_memory(lambda: steps(model.parameters()))
    assert full >= 3 * weights  # gradients + Adam's two moments
    model.weight.requires_grad_(False)
    frozen = peak_training_memory(lambda: steps([model.bias]))
    assert frozen < 0.1 * full


@pytest.mark.slow
def test_bf16_and_channels_last_train_end_to_end_on_cpu(make_cfg):
    cfg = make_cfg(
        ["data=synthetic", "trainer.max_epochs=1", "trainer.precision=bf16-mixed"]
        + ["speed.channels_last=true", "logger=none"]
    )
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1


@pytest.mark.slow
def test_compiled_backbone_trains_end_to_end(make_cfg):
    cfg = make_cfg(["data=synthetic", "trainer.max_epochs=1", "speed.compile=true", "logger=none"])
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1


@needs_gpu
def test_gpu_bf16_channels_last_compiled_run(make_cfg):
    cfg = make_cfg(
        ["data=synthetic", "trainer=gpu", "trainer.accelerator=gpu", "trainer.max_epochs=1"]
        + ["speed.channels_last=true", "speed.compile=true", "logger=none"]
    )
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1


@pytest.mark.slow
def test_quick_benchmark_writes_results_and_table(tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)]
    subprocess.run([*cmd, "--parts", "overhead,memory,data_wait"], cwd=ROOT, check=True)
    results = json.loads((out / "results.json").read_text())
    overhead = results["overhead"]
    assert overhead["ratio_ci"][0] <= overhead["ratio"] <= overhead["ratio_ci"][1]
    assert len(overhead["per_pair"]["ratios"]) == overhead["epoch_pairs"] == 2  # 3 epochs - 1
    assert overhead["own_time"]["own_ms_ci"][0] <= overhead["own_time"]["own_ms"]
    assert results["memory"]["feature_extraction"]["memory_vs_full"] < 1
    assert "| (a) overhead |" in (out / "results.md").read_text()


def test_overhead_pairs_the_two_arms_step_by_step(tmp_path):
    """benchmarks.overhead runs a plain step before each of the run's steps: per epoch (the
    warm-up epoch left out) both arms have one time per step but one (see benchmarks.overhead)."""
    from benchmarks.overhead import QUICK, paired_epochs

    framework, plain = paired_epochs([*QUICK, "trainer.max_epochs=2"], tmp_path)
    assert len(framework) == len(plain) == 1
    # synthetic: 256 images, a quarter each for validation and test, batch 32: 4 steps an epoch
    assert len(framework[0]) == len(plain[0]) == 3
    assert all(t > 0 for t in framework[0] + plain[0])


def test_the_bare_lightning_arm_pairs_its_steps_with_the_plain_loop(tmp_path):
    """benchmarks.overhead.lightning_epochs: Lightning's loop alone over the plain loop's parts,
    paired step by step the same way as the run."""
    from benchmarks.overhead import QUICK, lightning_epochs

    framework, plain = lightning_epochs([*QUICK, "trainer.max_epochs=2"], tmp_path / "bare")
    assert len(framework) == len(plain) == 1 and len(framework[0]) == len(plain[0]) == 3
    assert all(t > 0 for t in framework[0] + plain[0])


FAULTS_SCRIPT = """
import mmap, resource, sys, torch
from transferlab.speed import keep_freed_memory

def counted():  # does this kernel count minor faults at all? (some sandboxes report 0)
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fresh = mmap.mmap(-1, 256 * mmap.PAGESIZE)
    for page in range(256):
        fresh[page * mmap.PAGESIZE] = 1
    fresh.close()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

def faults():  # minor page faults of 10 rounds of a step's worth of blocks, written and freed
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        held = [torch.ones(k * 256 * 1024) for k in (1, 3, 8, 2, 12, 5)]  # 1-12 MB each
        del held
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

probe = counted()
faults()
before = faults()
applied = keep_freed_memory()
faults()
print(probe, applied, before, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_keep_freed_memory_stops_page_faults_on_reused_blocks():
    """speed.keep_freed_memory: blocks freed by one step serve the next one, so fresh
    activations no longer fault in new pages (in a fresh process: the setting is global)."""
    # Under glibc's defaults this pattern returns its freed blocks to the kernel in most
    # processes but not in all (here about 1 in 3 kept them, varying from process to process
    # with the same environment): the first of a few processes that shows the faults decides.
    for _ in range(8):
        done = subprocess.run(
            [sys.executable, "-c", FAULTS_SCRIPT], capture_output=True, text=True, check=True
        )
        probe, applied, before, after = done.stdout.split()
        if int(probe) < 200:  # 256 fresh pages written: the kernel must have counted them
            pytest.skip("this kernel does not count minor page faults (getrusage ru_minflt)")
        if int(before) > 10 * 1000:  # glibc's default: 6,880 pages a round, faulted in again
            break
    else:
        pytest.skip("glibc kept the freed blocks by default in 8 processes: nothing to compare")
    assert applied == "True"
    assert int(after) < int(before) / 10


def test_checkpoint_write_benchmark_times_both_writers(tmp_path):
    from benchmarks.checkpoint_write import measure

    result = measure("test_resnet", rounds=2, work=tmp_path)
    assert set(result["median_s"]) == {"lightning", "transferlab"}
    assert all(s > 0 for s in result["median_s"].values()) and result["size_mb"] > 0
    lightning = torch.load(tmp_path / "lightning.ckpt", weights_only=True)
    ours = torch.load(tmp_path / "transferlab.ckpt", weights_only=True)
    assert lightning["state_dict"].keys() == ours["state_dict"].keys()
    assert all(torch.equal(v, ours["state_dict"][k]) for k, v in lightning["state_dict"].items())
