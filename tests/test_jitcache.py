"""Where the compiled decision path is cached: a cache baked into a read-only image is copied, not lost."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from scaler import jitcache


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path


def read_only(monkeypatch, *paths: Path) -> None:
    """Make `writable` say no for these paths (tests run as root, which file modes do not stop)."""
    real = jitcache.writable
    monkeypatch.setattr(jitcache, "writable", lambda p: Path(p) not in paths and real(p))


def test_a_writable_cache_dir_is_used_as_it_is(tmp):
    env = {"NUMBA_CACHE_DIR": str(tmp / "cache")}
    assert jitcache.configure(tmp / "pkg", env) is True
    assert env == {"NUMBA_CACHE_DIR": str(tmp / "cache")}


def test_a_read_only_baked_cache_is_copied_to_a_writable_temp_dir(tmp, monkeypatch):
    baked = tmp / "image-cache"
    (baked / "scaler_abc").mkdir(parents=True)
    (baked / "scaler_abc" / "kernel.tick-1.py311.nbi").write_bytes(b"index")
    read_only(monkeypatch, baked)
    env = {"NUMBA_CACHE_DIR": str(baked)}
    assert jitcache.configure(tmp / "pkg", env) is True
    moved = Path(env["NUMBA_CACHE_DIR"])
    assert moved.parent == tmp / "tmp" and moved != baked
    assert (moved / "scaler_abc" / "kernel.tick-1.py311.nbi").read_bytes() == b"index"


def test_nowhere_writable_means_no_cache(tmp, monkeypatch):
    monkeypatch.setattr(jitcache, "writable", lambda p: False)
    env = {"NUMBA_CACHE_DIR": str(tmp / "image-cache")}
    assert jitcache.configure(tmp / "pkg", env) is False


def test_without_a_cache_dir_numba_caches_beside_the_package(tmp):
    env: dict[str, str] = {}
    assert jitcache.configure(tmp / "pkg", env) is True
    assert env == {} and (tmp / "pkg" / "__pycache__").is_dir()


def test_a_read_only_package_without_a_home_cache_falls_back_to_temp(tmp, monkeypatch):
    monkeypatch.setattr(Path, "home", staticmethod(lambda: tmp / "home"))
    read_only(monkeypatch, tmp / "pkg" / "__pycache__", tmp / "home" / ".cache")
    env: dict[str, str] = {}
    assert jitcache.configure(tmp / "pkg", env) is True
    assert Path(env["NUMBA_CACHE_DIR"]).parent == tmp / "tmp"
