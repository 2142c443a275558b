"""A job for the worker-pool tests, importable by the pool's worker processes."""

from __future__ import annotations

import os
import signal


def where_am_i(job: str):
    """The job, its worker's CUDA_VISIBLE_DEVICES and process id; or a deliberate failure."""
    if job == "raise":
        raise ValueError("bad job")
    if job == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    return job, os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid()
