"""Where numba keeps the compiled decision path (scaler.kernel); settled before numba is imported.

numba reads and writes its cache in one directory and refuses one it cannot write to (then caching
functions fail to import). By default the cache sits in the package's __pycache__ (a checkout or a pip
install), else in the user's ~/.cache. The container image compiles it at build time into
NUMBA_CACHE_DIR; where that is read-only at run time (a read-only root filesystem), it is copied to a
writable temporary directory first, so the controller starts in a second instead of compiling for half a
minute. With nowhere writable, the decision path is compiled in memory at start-up and not cached.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path


def writable(path: Path) -> bool:
    """Whether files can be created in `path` (made if missing), tested as numba tests it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def configure(package: Path = Path(__file__).parent, env: dict[str, str] | None = None) -> bool:
    """Point numba at a cache directory it can use (setting NUMBA_CACHE_DIR in `env` when needed); False
    when there is none and functions must be compiled without caching."""
    env = os.environ if env is None else env
    given = env.get("NUMBA_CACHE_DIR")
    if given:
        if writable(Path(given)):
            return True
        copy = Path(tempfile.gettempdir()) / f"scaler-numba-cache-{os.getuid()}"
        try:
            shutil.copytree(given, copy, dirs_exist_ok=True)
        except OSError:
            pass
        if writable(copy):
            env["NUMBA_CACHE_DIR"] = str(copy)
            return True
        return False
    if writable(package / "__pycache__") or writable(Path.home() / ".cache"):
        return True  # numba's own choices: beside the source, else the user-wide cache
    fallback = Path(tempfile.gettempdir()) / f"scaler-numba-cache-{os.getuid()}"
    if writable(fallback):
        env["NUMBA_CACHE_DIR"] = str(fallback)
        return True
    return False


CACHE = configure()
if "numba" in sys.modules:  # imported before us: have it read NUMBA_CACHE_DIR again
    from numba.core import config as _config

    _config.reload_config()
