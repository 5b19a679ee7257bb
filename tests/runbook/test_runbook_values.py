"""Templates, parameters and redaction: the value plumbing between a run's inputs and what gets written."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from scaler import template
from scaler.runbook import params as P
from scaler.runbook.errors import ParamError
from scaler.runbook.model import Runbook
from scaler.runbook.redact import MASK, RedactingFilter, Redactor
from scaler.template import TemplateError

SCOPE = {
    "params": {"zone": "Z1", "n": 4, "ids": ["a", "b"], "empty": None},
    "steps": {"dns": {"change_id": "C9", "previous": [{"Name": "app."}]}},
    "run": {"id": "r-1", "trigger": {"who": "alice"}},
}

RENDER = [
    ("whole reference keeps type", "{{ params.n }}", 4),
    ("list stays a list", "{{ params.ids }}", ["a", "b"]),
    ("none stays none", "{{ params.empty }}", None),
    ("spaces optional", "{{params.zone}}", "Z1"),
    ("spliced into text", "zone {{ params.zone }} by {{ run.trigger.who }}", "zone Z1 by alice"),
    ("two references side by side", "{{ params.zone }}-{{ params.n }}", "Z1-4"),
    ("number spliced as text", "x{{ params.n }}", "x4"),
    ("list spliced as json", "ids={{ params.ids }}", 'ids=["a", "b"]'),
    ("index into list", "{{ steps.dns.previous.0.Name }}", "app."),
    ("nested structures", {"a": ["{{ steps.dns.change_id }}", 1]}, {"a": ["C9", 1]}),
    ("no template untouched", "plain {text}", "plain {text}"),
]


@pytest.mark.parametrize(("value", "want"), [r[1:] for r in RENDER], ids=[r[0] for r in RENDER])
def test_render(value: Any, want: Any) -> None:
    assert template.render(value, SCOPE) == want


BAD = [
    ("unknown param", "{{ params.nope }}", "nothing at 'params.nope'"),
    ("index out of range", "{{ steps.dns.previous.5 }}", "out of range"),
    ("look inside text", "{{ params.zone.x }}", "cannot look inside"),
    ("call attempt", "{{ params.zone.__class__() }}", "not a reference"),
    ("bare root", "{{ params }}", "names no field"),
    ("other root", "{{ os.environ }}", "must start with"),
]


@pytest.mark.parametrize(("value", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_render_refuses(value: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(")):
        template.render(value, SCOPE)


def test_plan_keeps_unresolved_references() -> None:
    got = template.render({"id": "{{ steps.later.change_id }}"}, SCOPE, missing=lambda e: f"<{e}>")
    assert got == {"id": "<steps.later.change_id>"}


RUNBOOK = Runbook.model_validate({
    "name": "p",
    "parameters": {
        "name": {},
        "count": {"type": "int", "default": 2},
        "ratio": {"type": "float", "required": False},
        "dry": {"type": "bool", "default": False},
        "ids": {"type": "list", "default": []},
        "mode": {"choices": ["on", "off"], "default": "on"},
        "token": {"secret": True, "required": False},
    },
    "steps": [{"id": "w", "action": "wait", "inputs": {"seconds": 1}}],
})

TYPED = [
    ("text stays text", {"name": "x"}, "name", "x"),
    ("int from text", {"name": "x", "count": " 7 "}, "count", 7),
    ("int default", {"name": "x"}, "count", 2),
    ("float from text", {"name": "x", "ratio": "0.5"}, "ratio", 0.5),
    ("optional absent is none", {"name": "x"}, "ratio", None),
    ("bool yes", {"name": "x", "dry": "yes"}, "dry", True),
    ("bool off", {"name": "x", "dry": "off"}, "dry", False),
    ("list comma separated", {"name": "x", "ids": "a, b,,c"}, "ids", ["a", "b", "c"]),
    ("list json", {"name": "x", "ids": '["a,1", "b"]'}, "ids", ["a,1", "b"]),
    ("list native", {"name": "x", "ids": ["q"]}, "ids", ["q"]),
    ("choice", {"name": "x", "mode": "off"}, "mode", "off"),
]


@pytest.mark.parametrize(("given", "name", "want"), [t[1:] for t in TYPED], ids=[t[0] for t in TYPED])
def test_typed_params(given: dict[str, Any], name: str, want: Any) -> None:
    assert P.typed(RUNBOOK, given)[name] == want


def test_param_problems_all_at_once_and_secret_not_echoed() -> None:
    with pytest.raises(ParamError) as caught:
        P.typed(RUNBOOK, {"count": "many", "dry": "perhaps", "mode": "sideways", "extra": "1"})
    where = [p.where for p in caught.value.problems]
    assert where == ["params.extra", "params.name", "params.count", "params.dry", "params.mode"]
    assert "runbook p" in str(caught.value)


def test_secret_reference_resolved_and_journal_shows_reference(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cr3t-from-env")
    typed = P.typed(RUNBOOK, {"name": "x", "token": "env:HOOK_TOKEN"})
    assert P.resolve_secrets(RUNBOOK, typed)["token"] == "s3cr3t-from-env"
    assert P.for_journal(RUNBOOK, typed)["token"] == "env:HOOK_TOKEN"  # a pointer, not the secret
    (tmp_path / "t").write_text("from-file\n")
    file_ref = P.typed(RUNBOOK, {"name": "x", "token": f"file:{tmp_path / 't'}"})
    assert P.resolve_secrets(RUNBOOK, file_ref)["token"] == "from-file"


def test_only_a_reference_typed_from_the_config_or_the_operator_is_read(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cr3t-from-env")
    (tmp_path / "t").write_text("s3cr3t-from-file\n")
    for text in ("env:HOOK_TOKEN", f"file:{tmp_path / 't'}"):
        from_alert = P.typed(RUNBOOK, {"name": "x", "token": P.Data(text)})
        assert from_alert["token"] == text and not isinstance(from_alert["token"], P.Ref)
        assert P.resolve_secrets(RUNBOOK, from_alert)["token"] == text  # the value itself, nothing read
        assert P.for_journal(RUNBOOK, from_alert)["token"] == MASK  # and a secret like any other value
        # plain text in the same place, as resolve_secrets could be handed it, is not read either
        assert P.resolve_secrets(RUNBOOK, {"token": text})["token"] == text


def test_a_stored_run_gets_its_references_back_and_held_values_stay_values() -> None:
    stored = P.for_journal(RUNBOOK, P.typed(RUNBOOK, {"name": "x", "token": "env:HOOK_TOKEN"}))
    assert isinstance(P.restored(RUNBOOK, stored, {})["token"], P.Ref)
    masked = P.for_journal(RUNBOOK, P.typed(RUNBOOK, {"name": "x", "token": P.Data("env:HOOK_TOKEN")}))
    assert masked["token"] == MASK
    again = P.restored(RUNBOOK, masked, {"token": "env:HOOK_TOKEN"})  # held in memory by the process
    assert again["token"] == "env:HOOK_TOKEN" and not isinstance(again["token"], P.Ref)


def test_literal_secret_masked_for_journal() -> None:
    typed = P.typed(RUNBOOK, {"name": "x", "token": "literal-secret"})
    assert P.for_journal(RUNBOOK, typed)["token"] == MASK


def test_missing_env_reference_is_a_param_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    typed = P.typed(RUNBOOK, {"name": "x", "token": "env:NOT_SET_ANYWHERE"})
    with pytest.raises(ParamError) as caught:
        P.resolve_secrets(RUNBOOK, typed)
    assert str(caught.value) == ("parameter token: invalid parameters: environment variable NOT_SET_ANYWHERE is "
                                 "not set")


FILE_SECRET = "s3cr3t-pässwörd"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (FILE_SECRET.encode("latin-1"), "is not UTF-8 text"),
        (FILE_SECRET.encode() * 5000, "is larger than 65536 bytes"),
        (b"\n", "is empty"),
    ],
    ids=["not-utf-8", "oversized", "empty"],
)
def test_a_file_reference_that_cannot_serve_names_the_parameter_not_the_bytes(
        tmp_path: Path, content: bytes, says: str) -> None:
    (tmp_path / "t").write_bytes(content)
    with pytest.raises(ParamError) as caught:
        P.resolve_secrets(RUNBOOK, P.typed(RUNBOOK, {"name": "x", "token": f"file:{tmp_path / 't'}"}))
    (problem,) = caught.value.problems
    assert (caught.value.source, problem.what) == ("parameter token", f"{tmp_path / 't'} {says}")
    assert "s3cr3t" not in str(caught.value)


def test_redactor_masks_values_keys_and_securestrings() -> None:
    r = Redactor(["hunter2-long"])
    got = r({
        "msg": "password hunter2-long rejected",
        "SecretString": "anything",
        "Parameter": {"Type": "SecureString", "Value": "encrypted-but-shown"},
        "plain": {"Type": "String", "Value": "fine"},
        "list": ["hunter2-long", 3],
    })
    assert got == {
        "msg": f"password {MASK} rejected",
        "SecretString": MASK,
        "Parameter": {"Type": "SecureString", "Value": MASK},
        "plain": {"Type": "String", "Value": "fine"},
        "list": [MASK, 3],
    }


def test_redacting_filter_masks_log_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redact")
    filt = RedactingFilter(Redactor(["tok-123456"]))
    caplog.handler.addFilter(filt)
    try:
        with caplog.at_level(logging.INFO, logger="test.redact"):
            logger.info("calling %s", "https://hooks/tok-123456")
    finally:
        caplog.handler.removeFilter(filt)
    assert "tok-123456" not in caplog.text and MASK in caplog.text
