"""The one secret reader: a variable or a file, stripped; every failure names where it looked, never the value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scaler import secrets
from scaler.errors import ScalerError
from scaler.secrets import MAX_BYTES, SecretUnavailable, dereference, is_reference, read

SECRET = "hunter2-ünïcode-9c1f"  # non-ASCII on purpose: its UTF-8 and Latin-1 bytes differ


def assert_hidden(error: SecretUnavailable, *fragments: str) -> None:
    """The message carries none of the secret, in any spelling a broken decode could produce."""
    text = str(error)
    for fragment in (SECRET, SECRET[:7], SECRET.encode().decode("latin-1"), repr(SECRET.encode()), *fragments):
        assert fragment not in text, text


def test_a_variable_is_read_without_surrounding_whitespace() -> None:
    assert read(env="TOKEN", environ={"TOKEN": f"  {SECRET}\n"}) == SECRET


def test_a_file_is_read_relative_to_base_without_its_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(f"{SECRET}\n", encoding="utf-8")
    assert read(file="token", base=tmp_path) == SECRET
    assert read(file=tmp_path / "token", base=Path("/elsewhere")) == SECRET  # an absolute path ignores base


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * MAX_BYTES)
    assert len(read(file=tmp_path / "big")) == MAX_BYTES


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({}, "environment variable TOKEN is not set"),
        ({"TOKEN": ""}, "environment variable TOKEN is empty"),
        ({"TOKEN": " \n\t"}, "environment variable TOKEN is empty"),
        ({"TOKEN": SECRET * (MAX_BYTES // len(SECRET))}, f"environment variable TOKEN holds more than {MAX_BYTES} "
                                                         "bytes"),
        # os.environ hands bytes that are not UTF-8 over as lone surrogates ("\udce9" for a Latin-1 "é")
        ({"TOKEN": SECRET.encode("latin-1").decode("utf-8", "surrogateescape")},
         "environment variable TOKEN is not UTF-8 text"),
    ],
    ids=["not-set", "empty", "only-whitespace", "oversized", "not-utf-8"],
)
def test_a_variable_that_cannot_serve_is_named_without_its_value(environ: dict[str, str], says: str) -> None:
    with pytest.raises(SecretUnavailable) as caught:
        read(env="TOKEN", environ=environ)
    assert str(caught.value) == says
    assert_hidden(caught.value)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read {path}: No such file or directory"),
        (b"", "{path} is empty"),
        (b"\n  \n", "{path} is empty"),
        (SECRET.encode() * (MAX_BYTES // len(SECRET.encode()) + 1), f"{{path}} is larger than {MAX_BYTES} bytes"),
        (SECRET.encode("latin-1"), "{path} is not UTF-8 text"),
        (b"\xff\xfe" + SECRET.encode("utf-16-le"), "{path} is not UTF-8 text"),
    ],
    ids=["missing", "empty", "only-whitespace", "oversized", "latin-1", "utf-16"],
)
def test_a_file_that_cannot_serve_is_named_without_its_bytes(tmp_path: Path, content: bytes | None,
                                                             says: str) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SecretUnavailable) as caught:
        read(file="token", base=tmp_path)
    assert str(caught.value) == says.format(path=path)
    assert_hidden(caught.value)


def test_a_directory_is_not_a_secret_file(tmp_path: Path) -> None:
    with pytest.raises(SecretUnavailable, match=re.escape(f"cannot read {tmp_path}: Is a directory")):
        read(file=tmp_path)


def test_an_empty_name_is_refused_rather_than_looked_up() -> None:
    with pytest.raises(SecretUnavailable, match="the environment variable's name is empty"):
        read(env="", environ={"": "x"})
    with pytest.raises(SecretUnavailable, match="the file name is empty"):
        read(file="")


def test_exactly_one_place_must_be_given() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        read()
    with pytest.raises(ValueError, match="exactly one"):
        read(env="A", file="b")


def test_an_unavailable_secret_is_a_scaler_error() -> None:
    assert issubclass(SecretUnavailable, ScalerError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("env:TOKEN", True), ("file:/run/secrets/token", True), ("file:token", True), ("https://hooks/x", False),
     ("ENV:TOKEN", False), ("", False), (None, False), (7, False)],
    ids=["env", "absolute-file", "relative-file", "a-literal", "upper-case", "empty", "none", "number"],
)
def test_is_reference(value: object, expected: bool) -> None:
    assert is_reference(value) is expected


def test_dereference_reads_what_a_reference_points_at(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("https://hooks.example/abc\n")
    assert dereference("env:HOOK", environ={"HOOK": "https://hooks.example/env"}) == "https://hooks.example/env"
    assert dereference("file:url", base=tmp_path) == "https://hooks.example/abc"
    assert dereference(f"file:{tmp_path / 'url'}") == "https://hooks.example/abc"


@pytest.mark.parametrize(
    ("value", "says"),
    [("env:", "the environment variable's name is empty"), ("file:", "the file name is empty"),
     ("env:NOT_SET_ANYWHERE", "environment variable NOT_SET_ANYWHERE is not set")],
    ids=["env-without-name", "file-without-name", "env-not-set"],
)
def test_dereference_of_a_reference_to_nothing(value: str, says: str) -> None:
    with pytest.raises(SecretUnavailable) as caught:
        dereference(value, environ={})
    assert str(caught.value) == says


def test_dereference_refuses_a_literal() -> None:
    with pytest.raises(ValueError, match="starts with env: or file:"):
        dereference(SECRET)


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALER_TEST_SECRET", SECRET)
    assert secrets.read(env="SCALER_TEST_SECRET") == SECRET
