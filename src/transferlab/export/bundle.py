"""An export dir written as one unit: ``model.onnx``, ``preprocess.json`` and ``model_card.md``
go into a temporary sibling dir that is renamed into place, so a reader never finds a new model
beside an old spec (a crash midway, or a re-export into an existing ``out=``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bundle(out: str | Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (name -> bytes) as the contents of ``out``, replacing an existing one.

    An existing ``out`` is renamed aside, the new dir renamed in, and the old one removed; what
    else the old dir held (the export's own log file, which Hydra opened there) is moved into
    the new one, open handles included. When anything raises, no new file is left behind.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the dir gets mkdir's mode
        if not out.exists():
            os.rename(tmp, out)
            return out
        aside = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, aside)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(aside, out)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for kept in aside.iterdir():
        if kept.name not in files:
            os.replace(kept, out / kept.name)
    shutil.rmtree(aside, ignore_errors=True)
    return out
