"""Atomic output directories: build in a temporary sibling, then swap it in with renames."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def replace_dir(tmp, out):
    """Put the finished directory ``tmp`` at ``out`` (a sibling), replacing any previous one.

    The previous ``out`` is moved aside first and deleted only after the swap; if the swap
    fails it is put back, so ``out`` is never left half-written or missing.
    """
    tmp, out = Path(tmp), Path(out)
    aside = None
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.rename(out, aside / "d")
    try:
        os.rename(tmp, out)
    except BaseException:
        if aside is not None and not out.exists():
            os.rename(aside / "d", out)
        raise
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out):
    """Yield a temporary directory beside ``out``; on success it replaces ``out``, on any
    failure (including Ctrl-C) it is removed and ``out`` is untouched."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
