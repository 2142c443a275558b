"""Logger factories for the ``logger=`` config group."""

from __future__ import annotations

import csv
import logging
import netrc
import os
import secrets
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from pytorch_lightning.loggers import CSVLogger, WandbLogger

log = logging.getLogger("transferlab")


def wandb_has_credentials() -> bool:
    """True when an API key is set in the environment or stored by ``wandb login``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc(Path.home() / ".netrc").authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError):
        return False
    return auth is not None


def wandb_server_reachable(timeout: float = 3.0) -> bool:
    """True when a TCP connection to the W&B server (``WANDB_BASE_URL``) opens within timeout."""
    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_offline_reason() -> str | None:
    """Why this run must log offline (no key, no server, or WANDB_MODE), or None to go online."""
    if os.environ.get("WANDB_MODE") in ("offline", "dryrun"):
        return f"WANDB_MODE={os.environ['WANDB_MODE']}"
    if not wandb_has_credentials():
        return "no W&B API key (wandb login)"
    if not wandb_server_reachable():
        return "the W&B server cannot be reached"
    return None


def resume_step(ckpt_path: str | None) -> int | None:
    """The global step a resumed run starts from (its checkpoint's), or None for a fresh run."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None
    return int(torch.load(ckpt_path, map_location="cpu", weights_only=True).get("global_step", 0))


class HistoryCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a resumed run keeps the rows logged before its
    checkpoint (Lightning's deletes ``metrics.csv`` when the run dir already holds one).

    Rows at or after the checkpoint's step are dropped: the resumed run logs them again.

    Args:
        resume_from: the checkpoint the run resumes from (``${ckpt_path}``), or None.
        *args, **kwargs: see :class:`~pytorch_lightning.loggers.CSVLogger`.
    """

    def __init__(self, *args, resume_from: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.resume_from = resume_from

    @property
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        start = resume_step(self.resume_from)
        earlier = self._rows_before(start) if start is not None else []
        writer = super().experiment  # this removes the old file
        writer.metrics[:0] = earlier
        return writer

    def _rows_before(self, step: int) -> list[dict]:
        path = Path(self.log_dir) / "metrics.csv"
        if not path.is_file():
            return []
        with path.open(newline="") as f:
            # values stay the text they were written as; the step decides what to keep
            rows = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
        return [r for r in rows if int(float(r.get("step", 0))) < step]


def wandb_run_id(save_dir: str, resume_from: str | None) -> str | None:
    """The W&B run id this run dir used before, when the run resumes (so W&B continues it)."""
    path = Path(save_dir) / "wandb_run_id.txt"
    return path.read_text().strip() if resume_from and path.is_file() else None


def wandb_logger(
    project: str,
    save_dir: str,
    offline: bool | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    resume_from: str | None = None,
    **kwargs,
) -> WandbLogger:
    """A W&B logger that falls back to offline mode without credentials or network.

    Args:
        project: W&B project name.
        save_dir: where the local W&B run folder goes (the run dir).
        offline: force offline (true) or online (false); null goes offline when ``WANDB_MODE``
            says so, no API key is stored, or the server does not answer within 3 seconds.
            Offline runs lose nothing: ``wandb sync <dir>`` uploads them later.
        group: W&B group; null groups the runs of one configuration (its overrides, seed
            dropped), so the dashboard averages over seeds.
        tags: extra tags; every config-group choice is added as ``group:choice``.
        resume_from: the checkpoint a resumed run starts from (``${ckpt_path}``): the W&B run
            this run dir logged to before is continued (same id), online or offline.
        **kwargs: passed to :class:`~pytorch_lightning.loggers.WandbLogger`.
    """
    from transferlab.sweep import config_choices, configuration_key, job_overrides

    if offline is None:
        reason = wandb_offline_reason()
        offline = reason is not None
        if offline:
            log.info("W&B logs offline: %s", reason)
    choices = config_choices()
    tags = [*(tags or []), *(f"{k}:{v}" for k, v in choices.items())]
    group = group or configuration_key(job_overrides())
    # the choices go into the run config too, so the dashboard can group by choices.strategy
    config = {"choices": choices, **kwargs.pop("config", {})}
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    run_id = kwargs.pop("id", None) or wandb_run_id(save_dir, resume_from)
    if run_id is None:
        run_id = secrets.token_hex(4)  # W&B run ids are lowercase letters and digits
    (Path(save_dir) / "wandb_run_id.txt").write_text(run_id + "\n")
    return WandbLogger(
        project=project,
        save_dir=save_dir,
        offline=offline,
        group=group,
        tags=list(dict.fromkeys(tags)),
        config=config,
        id=run_id,
        resume="allow",
        **kwargs,
    )


def finish_loggers(loggers) -> None:
    """Close W&B runs (so the next job of a sweep starts a fresh one) and say how to upload
    offline runs."""
    for lg in loggers:
        if not isinstance(lg, WandbLogger) or lg._experiment is None:
            continue
        run = lg.experiment
        offline = run.settings.mode in ("offline", "dryrun") if run.settings else False
        run_dir = Path(run.dir).parent
        run.finish()
        if offline:
            print(f"W&B run saved offline; upload it with: wandb sync {run_dir}")
