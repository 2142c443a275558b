"""The local parallel launcher: slots and their environments, the worker pool (one process per
slot, serving many jobs, surviving a job that raises or kills its worker), and a sweep on it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from transferlab import launcher
from transferlab.errors import ConfigError
from transferlab.launcher import (
    JobError,
    WorkerCrash,
    local_gpus,
    run_on_slots,
    slot_environments,
    visible_gpus,
)


def test_without_gpus_each_core_is_a_slot_with_one_thread():
    envs = slot_environments(None, None, gpus=[], cpus=2)
    assert envs == [{"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}] * 2


def test_with_gpus_each_slot_sees_one_gpu_and_a_share_of_the_cores():
    envs = slot_environments(None, None, gpus=["2", "5"], cpus=16)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["2", "5"]
    assert {e["OMP_NUM_THREADS"] for e in envs} == {"8"}
    # more slots than GPUs share them round robin; threads can be set
    envs = slot_environments(3, 2, gpus=["0", "1"], cpus=16)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0"]
    assert {e["OMP_NUM_THREADS"] for e in envs} == {"2"}


def test_zero_slots_is_refused():
    with pytest.raises(ConfigError, match=r"^hydra.launcher.slots=0 must be at least 1; leave it"):
        slot_environments(0, None, gpus=[], cpus=2)


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 1")
    assert visible_gpus(device_count=2) == ["3", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus(device_count=0) == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus(device_count=2) == ["0", "1"]


def test_gpus_are_counted_without_touching_cuda(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"  # what nvidia-smi prints on a 2-GPU machine
    fake.write_text("#!/bin/sh\nprintf '0\\n1\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert local_gpus() == ["0", "1"]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no driver tools: no GPUs
    assert local_gpus() == []


@pytest.fixture
def where_am_i(monkeypatch):
    """A job the workers can import (they start with this process's sys.path)."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "helpers"))
    from pool_jobs import where_am_i

    return where_am_i


def test_pool_runs_jobs_on_one_process_per_slot_with_the_slots_environment(where_am_i):
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    envs = [{"CUDA_VISIBLE_DEVICES": "7"}, {"CUDA_VISIBLE_DEVICES": "9"}]
    started, ended = [], []
    results = run_on_slots(
        where_am_i,
        ["a", "b", "c", "d", "e"],
        envs,
        on_start=lambda i, slot: started.append((i, slot)),
        on_end=lambda i, result, seconds: ended.append(i),
    )
    assert [r[0] for r in results] == ["a", "b", "c", "d", "e"]  # in job order
    assert {r[1] for r in results} == {"7", "9"}
    pids = {r[2] for r in results}
    assert len(pids) == 2 and os.getpid() not in pids  # two workers served all five jobs
    for (_, gpu, _), (_, slot) in zip(results, sorted(started), strict=True):
        assert gpu == envs[slot]["CUDA_VISIBLE_DEVICES"]
    assert sorted(ended) == [0, 1, 2, 3, 4]
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == before  # the parent's is left as it was


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_job_that_raises_or_kills_its_worker_costs_only_that_job(where_am_i, method, monkeypatch):
    monkeypatch.setattr(launcher, "start_method", lambda: method)
    results = run_on_slots(where_am_i, ["a", "raise", "die", "b", "c"], [{}, {}])
    assert isinstance(results[1], JobError) and "ValueError: bad job" in results[1].text
    assert results[2] == WorkerCrash(-signal.SIGKILL)
    assert str(results[2]) == "the job's worker process was killed by SIGKILL (out of memory?)"
    assert [results[i][0] for i in (0, 3, 4)] == ["a", "b", "c"]  # the jobs after it ran
