"""Logger factories for the ``logger=`` config group."""

from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from pytorch_lightning.loggers import WandbLogger

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


def wandb_logger(
    project: str,
    save_dir: str,
    offline: bool | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
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
    return WandbLogger(
        project=project,
        save_dir=save_dir,
        offline=offline,
        group=group,
        tags=list(dict.fromkeys(tags)),
        config=config,
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
