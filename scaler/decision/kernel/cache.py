"""Where numba keeps the compiled decision path (scaler.decision.kernel); settled before numba is imported.

numba checks a cached function only against its own source file's time stamp and size, not against the
other files it calls into or the types and constants it compiles in (the Params, State, Outputs and
Model tuples, the Reason bits). So the cache lives in a directory named after the content of all of them
(`tag`): a change to any of these files starts a new, empty cache instead of running stale machine code.

That directory goes under NUMBA_CACHE_DIR when it is set (the container image compiles into it at build
time), else beside the package (__pycache__), else in the user's cache directory, else in a private
temporary directory. A baked cache that is read-only at run time (a read-only root filesystem) is copied
once, atomically, to a private temporary directory, so the controller starts in a second instead of
compiling for half a minute. With nowhere writable, the decision path is compiled in memory at start-up
and not cached. The chosen directory is put in NUMBA_CACHE_DIR, so worker processes use the same one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

# Where compiled code lives (every module in a folder counts, so a new one is covered at once), and the
# modules whose types and constants it compiles in; paths inside the scaler package.
COMPILED = ("decision/kernel", "simulate/closedloop.py")
COMPILED_IN = ("decision/params.py", "decision/state.py", "decision/reasons.py", "simulate/world.py")


def sources(package: Path) -> list[str]:
    """Every module the compiled code depends on, as paths inside `package`, sorted."""
    names = set(COMPILED_IN)
    for place in COMPILED:
        folder = package / place
        if folder.is_dir():
            names.update(f"{place}/{f.name}" for f in folder.glob("*.py") if f.name != "cache.py")
        else:
            names.add(place)
    return sorted(names)


def tag(package: Path) -> str:
    """The cache directory's name: a digest of the sources' content (a missing file counts as empty)."""
    digest = hashlib.sha256()
    for name in sources(package):
        path = package / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return f"scaler-{digest.hexdigest()[:16]}"


def writable(path: Path) -> bool:
    """Whether files can be created in `path` (made if missing), tested as numba tests it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def private_temp() -> Path | None:
    """A temporary directory only this user can write to: /tmp/scaler-numba-<uid> when it is ours and
    closed to others (numba's cache files are pickles, so another user's directory could run their code
    here), else a new one for this process; None when there is no writable temporary directory."""
    mine = Path(tempfile.gettempdir()) / f"scaler-numba-{os.getuid()}"
    try:
        mine.mkdir(mode=0o700)
    except OSError:
        pass  # there already (checked next), or no temporary directory at all (mkdtemp fails too)
    try:
        st = os.lstat(mine)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077 == 0:
            return mine
    except OSError:
        pass
    try:
        return Path(tempfile.mkdtemp(prefix="scaler-numba-"))
    except OSError:
        return None


def copy_once(source: Path, dest: Path) -> None:
    """Copy the directory `source` to `dest` unless `dest` exists; readers never see half a copy (it is
    made beside `dest` and renamed into place; when another process wins the race, its copy stays)."""
    if dest.exists() or not source.is_dir():
        return
    part = Path(tempfile.mkdtemp(prefix=".part-", dir=dest.parent))
    try:
        shutil.copytree(source, part, dirs_exist_ok=True)
        os.rename(part, dest)
    except OSError:
        shutil.rmtree(part, ignore_errors=True)


def user_cache() -> Path | None:
    """The user's cache directory ($XDG_CACHE_HOME, else ~/.cache), None when there is no home."""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"])
    try:
        return Path.home() / ".cache"
    except (RuntimeError, KeyError):
        return None


def configure(package: Path = Path(__file__).parents[2], env: MutableMapping[str, str] | None = None) -> bool:
    """Set NUMBA_CACHE_DIR in `env` to a writable directory named `tag(package)`; False when there is none
    and functions must be compiled without caching."""
    env = os.environ if env is None else env
    name = tag(package)
    given = Path(env["NUMBA_CACHE_DIR"]) if env.get("NUMBA_CACHE_DIR") else None
    if given is not None:
        places = [given if given.name == name else given / name]  # the name: chosen by a parent process
    else:
        home = user_cache()
        places = [package / "__pycache__" / name] + ([home / "scaler" / name] if home else [])
    for place in places:
        if writable(place):
            env["NUMBA_CACHE_DIR"] = str(place)
            return True
    # The last resort: a private temporary directory, with a read-only baked cache copied into it.
    temp = private_temp()
    if temp is None:
        return False
    if given is not None:
        copy_once(places[0], temp / name)
    if writable(temp / name):
        env["NUMBA_CACHE_DIR"] = str(temp / name)
        return True
    return False


CACHE = configure()
if "numba" in sys.modules:  # imported before us: have it read NUMBA_CACHE_DIR again
    from numba.core import config as _config

    _config.reload_config()
