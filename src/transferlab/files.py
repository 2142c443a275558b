"""Writing run outputs safely: whole files or nothing (temp file + rename in the same dir), and
JSON that strict parsers accept (non-finite numbers become null, listed under ``non_finite``)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it over ``path``.

    A reader sees the old file or the whole new one, never a half-written file; when ``write``
    raises, nothing is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets open()'s mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def strict_json(record: dict) -> dict:
    """``record`` with NaN and ±inf values replaced by None, their keys under ``non_finite``."""
    bad = sorted(k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v))
    if not bad:
        return record
    return {**{k: (None if k in bad else v) for k, v in record.items()}, "non_finite": bad}


def write_json(path: str | Path, record: dict) -> Path:
    """``record`` as strict JSON (no NaN), indented, written atomically."""
    text = json.dumps(strict_json(record), indent=2, allow_nan=False) + "\n"
    return write_text_atomic(path, text)
