"""A pool of local worker processes, one per slot, for running sweep jobs side by side.

Each slot is a worker process with its own environment: ``CUDA_VISIBLE_DEVICES`` names the
slot's GPU on a GPU machine, and ``OMP_NUM_THREADS`` gives it its share of the CPU cores. Workers
are forked from the launching process, so they start with torch and Lightning already imported
(spawned instead where fork is unsafe: no fork on the platform, or CUDA already initialised
here), and each serves jobs until none are left. Nothing else, no scheduler daemons, shares the
machine with the jobs. A worker that dies mid-job (killed for memory, a segfault) costs that job
only: the job's result is a ``WorkerCrash`` and the slot gets a fresh worker.

The Hydra side (``hydra/launcher=parallel``) lives in ``hydra_plugins.transferlab_launcher``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import cloudpickle

from transferlab.errors import ConfigError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class WorkerCrash:
    """The result of a job whose worker process ended before the job returned."""

    exitcode: int | None

    def __str__(self) -> str:
        code = self.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if name == "SIGKILL" else ""
            return f"the job's worker process was killed by {name}{hint}"
        return f"the job's worker process exited with code {code} before the job returned"


@dataclass(frozen=True)
class JobError:
    """The result of a job that raised inside its worker: the formatted exception."""

    text: str


def visible_gpus(device_count: int) -> list[str]:
    """The GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else 0..count-1."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    return [str(i) for i in range(device_count)]


def local_gpus() -> list[str]:
    """The GPU ids this process may share out (none on a machine without NVIDIA GPUs).

    Counted by nvidia-smi, not torch: asking CUDA would initialise it in this process, and
    workers forked from a process with CUDA initialised cannot use their GPU.
    """
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        listed = ""
    return visible_gpus(len(listed.split()))


def check_slots(slots: int | None, threads: int | None) -> None:
    """Refuse a slot or thread count below 1 (None means: choose for this machine)."""
    named = {"slots": slots, "threads_per_job": threads}
    bad = [f"hydra.launcher.{k}={v}" for k, v in named.items() if v is not None and v < 1]
    if bad:
        raise ConfigError(
            f"{' and '.join(bad)} must be at least 1; leave it null for one slot per GPU (or CPU "
            "core) and the CPU cores shared out evenly."
        )


def slot_environments(
    slots: int | None, threads: int | None, gpus: Sequence[str], cpus: int
) -> list[dict[str, str]]:
    """The environment of each slot's worker.

    Args:
        slots: parallel jobs; None = one per GPU, or one per CPU core on a machine without GPUs.
        threads: CPU threads per job; None = the CPU cores shared out evenly over the slots.
        gpus: the GPU ids to share out, one per slot (round robin if there are more slots).
        cpus: the machine's CPU cores.
    """
    check_slots(slots, threads)
    slots = slots or len(gpus) or cpus
    threads = threads or max(1, cpus // slots)
    envs = []
    for slot in range(slots):
        env = dict.fromkeys(THREAD_VARIABLES, str(threads))
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        envs.append(env)
    return envs


def start_method() -> str:
    """``fork`` where it is safe (workers inherit this process's imports), else ``spawn``."""
    torch = sys.modules.get("torch")
    cuda_live = torch is not None and torch.cuda.is_initialized()
    return "fork" if "fork" in mp.get_all_start_methods() and not cuda_live else "spawn"


def _serve(conn, run: Callable[[Any], Any] | None) -> None:
    """A worker's life: get the job function (sent pickled if spawned), run jobs until told to
    stop."""
    if run is None:
        run = cloudpickle.loads(conn.recv_bytes())
    torch = sys.modules.get("torch")
    if torch is not None:  # imported before this slot's OMP_NUM_THREADS was set
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads()))
    while (message := conn.recv()) is not None:
        index, job = message
        try:
            result = run(job)
        except Exception:  # the parent turns it into that job's result; the worker goes on
            result = JobError(traceback.format_exc())
        try:
            conn.send((index, result))
        except Exception as e:  # a result that cannot be pickled still ends its job
            conn.send((index, JobError(f"the job's result could not be sent back: {e!r}")))


class _Worker:
    """One slot's process and the parent's end of its pipe."""

    def __init__(self, slot: int, env: dict[str, str], run: Callable[[Any], Any], method: str):
        self.slot, self.job, self.served = slot, None, 0
        self.conn, child = mp.Pipe()
        forked = method == "fork"
        # not a daemon: a job's DataLoader workers are child processes of this one
        self.process = mp.get_context(method).Process(
            target=_serve, args=(child, run if forked else None)
        )
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # a new process starts with this process's environment
        try:
            self.process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v
        child.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


def run_on_slots(
    run: Callable[[Any], Any],
    jobs: Sequence[Any],
    envs: Sequence[dict[str, str]],
    on_start: Callable[[int, int], None] = lambda index, slot: None,
    on_end: Callable[[int, Any, float], None] = lambda index, result, seconds: None,
) -> list[Any]:
    """``[run(job) for job in jobs]``, computed on ``len(envs)`` worker processes at once.

    Forked workers inherit ``run``; spawned ones get it pickled with cloudpickle, once each. A
    job's entry in the list is what ``run`` returned, a ``JobError`` if it raised, or a
    ``WorkerCrash`` if its worker died. ``on_start(index, slot)`` and
    ``on_end(index, result, seconds)`` report progress.
    """
    pool = _Pool(run, jobs, envs, on_start, on_end)
    try:
        while pool.pending or pool.busy():
            pool.give_out()
            wait(pool.busy() + [w.process.sentinel for w in pool.workers])
            pool.collect()
    except BaseException:  # Ctrl-C or a worker that cannot start: stop every job now
        for w in pool.workers:
            w.process.terminate()
        raise
    finally:
        for w in pool.workers:
            w.stop()
    return pool.results


class _Pool:
    """The workers, the jobs not yet given out, and the results so far."""

    def __init__(self, run, jobs, envs, on_start, on_end):
        self.run, self.jobs, self.envs = run, jobs, envs
        self.on_start, self.on_end = on_start, on_end
        self.method = start_method()
        self.payload = cloudpickle.dumps(run) if self.method == "spawn" else b""
        self.results: list[Any] = [None] * len(jobs)
        self.pending = deque(range(len(jobs)))
        self.started: dict[int, float] = {}
        self.workers = [self.start(slot) for slot in range(min(len(envs), len(jobs)))]
        for w in self.workers:  # after every start: spawned workers read it after their imports
            self.send_run(w)

    def start(self, slot: int) -> _Worker:
        return _Worker(slot, self.envs[slot], self.run, self.method)

    def send_run(self, worker: _Worker) -> None:
        if self.method == "spawn":
            worker.conn.send_bytes(self.payload)

    def busy(self) -> list:
        return [w.conn for w in self.workers if w.job is not None]

    def give_out(self) -> None:
        """The next pending jobs to the idle workers, one each."""
        for w in self.workers:
            if w.job is None and self.pending:
                w.job = self.pending.popleft()
                self.on_start(w.job, w.slot)
                self.started[w.job] = time.perf_counter()
                w.conn.send((w.job, self.jobs[w.job]))

    def finish(self, worker: _Worker, result: Any) -> None:
        index, worker.job = worker.job, None
        worker.served += 1
        self.results[index] = result
        self.on_end(index, result, time.perf_counter() - self.started[index])

    def collect(self) -> None:
        """Take in the results that arrived; a dead worker's job is a crash, its slot restarts."""
        ended = []
        for i, w in enumerate(self.workers):
            if w.job is not None and w.conn.poll():
                try:
                    _, result = w.conn.recv()
                except EOFError:  # it died after the poll: a crash, below
                    pass
                else:
                    self.finish(w, result)
            if w.process.is_alive():
                continue
            w.process.join()
            if w.job is None and not w.served:
                raise RuntimeError(
                    f"the worker for slot {w.slot} ended with exit code "
                    f"{w.process.exitcode} before its first job; its error is above."
                )
            if w.job is not None:
                self.finish(w, WorkerCrash(w.process.exitcode))
            if self.pending:
                self.workers[i] = self.start(w.slot)
                self.send_run(self.workers[i])
            else:
                ended.append(w)
        self.workers = [w for w in self.workers if w not in ended]
