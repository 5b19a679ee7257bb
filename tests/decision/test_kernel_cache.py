"""Where the compiled decision path is cached: never stale, never shared with another user, and a cache
baked into a read-only image is copied, not lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from scaler.decision.kernel import cache as jitcache

PACKAGE = Path(jitcache.__file__).parents[2]  # the scaler package
SOURCES = jitcache.sources(PACKAGE)


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path


@pytest.fixture
def pkg(tmp):
    """A copy of the sources the compiled code depends on."""
    p = tmp / "pkg"
    p.mkdir()
    for name in SOURCES:
        (p / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PACKAGE / name, p / name)
    return p


def read_only(monkeypatch, *paths: Path) -> None:
    """Make `writable` say no for these paths (tests run as root, which file modes do not stop)."""
    real = jitcache.writable
    monkeypatch.setattr(jitcache, "writable", lambda p: not any(Path(p).is_relative_to(x) for x in paths) and real(p))


def test_the_sources_are_every_module_with_compiled_code_and_what_it_compiles_in():
    """Every module that defines a compiled function is a source, and so is every module the compiled
    code takes a type or constant from (the tuples it reads by field, the reason bits)."""
    compiled = {str(f.relative_to(PACKAGE)) for f in PACKAGE.rglob("*.py") if "@njit" in f.read_text()}
    assert compiled <= set(SOURCES)
    assert {"decision/params.py", "decision/state.py", "decision/reasons.py", "decision/kernel/codes.py",
            "simulate/world.py"} <= set(SOURCES)


@pytest.mark.parametrize("name", SOURCES)
def test_the_cache_is_named_after_every_source_the_compiled_code_depends_on(pkg, name):
    before = jitcache.tag(pkg)
    assert jitcache.tag(pkg) == before
    (pkg / "unrelated.py").write_text("x = 1\n")
    assert jitcache.tag(pkg) == before
    (pkg / name).write_text((pkg / name).read_text() + "\n# changed\n")
    assert jitcache.tag(pkg) != before


def test_a_new_kernel_module_is_a_source_at_once(pkg):
    before = jitcache.tag(pkg)
    (pkg / "decision" / "kernel" / "new_step.py").write_text("x = 1\n")
    assert "decision/kernel/new_step.py" in jitcache.sources(pkg) and jitcache.tag(pkg) != before


def test_a_writable_cache_dir_gets_the_tagged_directory_and_a_worker_keeps_it(pkg):
    env = {"NUMBA_CACHE_DIR": str(pkg.parent / "cache")}
    assert jitcache.configure(pkg, env) is True
    chosen = Path(env["NUMBA_CACHE_DIR"])
    assert chosen == pkg.parent / "cache" / jitcache.tag(pkg) and chosen.is_dir()
    child = dict(env)  # a worker process inherits the environment and configures again
    assert jitcache.configure(pkg, child) is True
    assert child == env


def test_a_read_only_baked_cache_is_copied_once_to_a_private_temp_dir(pkg, monkeypatch):
    baked = pkg.parent / "image-cache" / jitcache.tag(pkg) / "scaler_abc"
    baked.mkdir(parents=True)
    (baked / "kernel.tick-1.py311.nbi").write_bytes(b"index")
    read_only(monkeypatch, pkg.parent / "image-cache")
    env = {"NUMBA_CACHE_DIR": str(pkg.parent / "image-cache")}
    assert jitcache.configure(pkg, env) is True
    moved = Path(env["NUMBA_CACHE_DIR"])
    assert moved == pkg.parent / "tmp" / f"scaler-numba-{os.getuid()}" / jitcache.tag(pkg)
    assert (moved / "scaler_abc" / "kernel.tick-1.py311.nbi").read_bytes() == b"index"
    assert oct((moved.parent).stat().st_mode & 0o777) == oct(0o700)
    # the process now compiles or saves more there; a second process starting later does not copy again
    (moved / "scaler_abc" / "kernel.tick-1.py311.nbi").write_bytes(b"newer index")
    again = {"NUMBA_CACHE_DIR": str(pkg.parent / "image-cache")}
    assert jitcache.configure(pkg, again) is True and again == env
    assert (moved / "scaler_abc" / "kernel.tick-1.py311.nbi").read_bytes() == b"newer index"


def test_a_copy_that_fails_leaves_nothing_half_written(tmp, monkeypatch):
    source = tmp / "baked"
    source.mkdir()
    (source / "a.nbi").write_bytes(b"index")

    def broken(src, dst, **kw):
        Path(dst, "a.nbi").write_bytes(b"ind")
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copytree", broken)
    jitcache.copy_once(source, tmp / "tmp" / "dest")
    assert list((tmp / "tmp").iterdir()) == []


def test_a_temp_dir_open_to_other_users_is_not_used(tmp):
    shared = tmp / "tmp" / f"scaler-numba-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    got = jitcache.private_temp()
    assert got is not None and got != shared and got.parent == tmp / "tmp"
    assert got.stat().st_mode & 0o077 == 0


def test_a_symlink_in_place_of_the_temp_dir_is_not_followed(tmp):
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp / "tmp" / f"scaler-numba-{os.getuid()}").symlink_to(elsewhere)
    got = jitcache.private_temp()
    assert got is not None and got.resolve() != elsewhere.resolve()


def test_nowhere_writable_means_no_cache(pkg, monkeypatch):
    monkeypatch.setattr(jitcache, "writable", lambda p: False)
    assert jitcache.configure(pkg, {"NUMBA_CACHE_DIR": str(pkg.parent / "image-cache")}) is False
    assert jitcache.configure(pkg, {}) is False


def test_without_a_cache_dir_the_cache_sits_beside_the_package(pkg):
    env: dict[str, str] = {}
    assert jitcache.configure(pkg, env) is True
    assert Path(env["NUMBA_CACHE_DIR"]) == pkg / "__pycache__" / jitcache.tag(pkg)


def test_a_read_only_package_uses_the_users_cache_directory(pkg, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(pkg.parent / "xdg"))
    read_only(monkeypatch, pkg / "__pycache__")
    env: dict[str, str] = {}
    assert jitcache.configure(pkg, env) is True
    assert Path(env["NUMBA_CACHE_DIR"]) == pkg.parent / "xdg" / "scaler" / jitcache.tag(pkg)


def test_without_a_home_directory_a_read_only_package_falls_back_to_temp(pkg, monkeypatch):
    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    read_only(monkeypatch, pkg / "__pycache__")
    env: dict[str, str] = {}
    assert jitcache.configure(pkg, env) is True
    assert Path(env["NUMBA_CACHE_DIR"]).parent == pkg.parent / "tmp" / f"scaler-numba-{os.getuid()}"


def test_importing_the_package_picks_a_new_cache_when_a_dependency_changes(tmp):
    """The real import: a copy of the package caches under its sources' tag, and editing params.py (whose
    tuple the compiled code reads by position) moves it to a new, empty directory."""
    copy = tmp / "src" / "scaler"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(copy.parent)
    show = "import os, scaler.decision.kernel.tick; print(os.environ['NUMBA_CACHE_DIR'])"

    def chosen() -> Path:
        out = subprocess.run([sys.executable, "-c", show], env=env, cwd=tmp, capture_output=True, text=True,
                             check=True)
        return Path(out.stdout.strip())

    first = chosen()
    assert first == copy / "__pycache__" / jitcache.tag(copy)
    (copy / "decision/params.py").write_text((copy / "decision/params.py").read_text() + "\n# reordered fields\n")
    second = chosen()
    assert second.parent == first.parent and second != first


def test_a_dangling_symlink_in_place_of_the_temp_dir_is_not_followed(tmp):
    (tmp / "tmp" / f"scaler-numba-{os.getuid()}").symlink_to(tmp / "nowhere")
    got = jitcache.private_temp()
    assert got is not None and got.is_dir() and not got.is_symlink() and not (tmp / "nowhere").exists()
