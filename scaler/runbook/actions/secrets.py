"""Secrets Manager rotation in the four re-entrant steps (create, set, test, finish), and its undo."""

from __future__ import annotations

import hmac
import secrets
import string
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from scaler.errors import PermanentError, ScalerError
from scaler.runbook.actions.base import Action, ActionContext, Inputs, call, read
from scaler.runbook.records import ProviderCall

CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
_ALPHABETS = {"alnum": string.ascii_letters + string.digits, "hex": "0123456789abcdef"}


def generate(length: int, alphabet: str) -> str:
    """A new secret from the OS CSPRNG. 'urlsafe' has 64 symbols, so 32 chars carry 192 bits."""
    if alphabet == "urlsafe":
        return secrets.token_urlsafe(length)[:length]
    chars = _ALPHABETS[alphabet]
    return "".join(secrets.choice(chars) for _ in range(length))


def stages(ctx: ActionContext, secret_id: str) -> dict[str, list[str]]:
    return ctx.aws("secretsmanager", "describe_secret", SecretId=secret_id).get("VersionIdsToStages", {})


def holder(versions: dict[str, list[str]], stage: str) -> str | None:
    return next((v for v, labels in versions.items() if stage in labels), None)


def value_of(ctx: ActionContext, secret_id: str, **which: str) -> str:
    got = ctx.aws("secretsmanager", "get_secret_value", SecretId=secret_id, **which)
    value = str(got.get("SecretString", ""))
    ctx.secret(value)
    return value


def apply_to_parameter(ctx: ActionContext, name: str, value: str) -> None:
    """setSecret: write the value where the service reads it, unless it is already there."""
    try:
        have = ctx.aws("ssm", "get_parameter", Name=name, WithDecryption=True)["Parameter"]["Value"]
    except PermanentError as e:
        if e.code != "ParameterNotFound":
            raise
        have = None
    if have is None or not hmac.compare_digest(have, value):
        ctx.aws("ssm", "put_parameter", Name=name, Value=value, Type="SecureString", Overwrite=True)


class RotateInputs(Inputs):
    secret_ids: list[str] = Field(min_length=1, description="Secrets to rotate, in order (names or ARNs)")
    length: int = Field(32, ge=16, le=4096, description="Characters in each new value")
    alphabet: Literal["urlsafe", "alnum", "hex"] = "urlsafe"
    apply_to_parameter: str | None = Field(
        None, description="setSecret: SSM SecureString to write the new value to; '{secret_id}' is replaced"
    )
    test_url: str | None = Field(
        None, description="testSecret: GET with 'Authorization: Bearer <new value>' must answer 2xx"
    )


class Rotate(Action[RotateInputs]):
    name = "secrets.rotate"
    summary = "Rotate secrets: new random value as AWSPENDING, apply, test, then move AWSCURRENT to it"
    inputs = RotateInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        out: list[ProviderCall] = []
        ids = inputs.get("secret_ids")
        for sid in ids if isinstance(ids, list) else [ids]:
            out += [
                read("secretsmanager", "describe_secret", SecretId=sid),
                call(
                    "secretsmanager",
                    "put_secret_value",
                    SecretId=sid,
                    VersionStages=[PENDING],
                    ClientRequestToken="<run+step+secret>",
                ),
            ]
            if inputs.get("apply_to_parameter"):
                out.append(call("ssm", "put_parameter", Name=inputs.get("apply_to_parameter"), Type="SecureString"))
            if inputs.get("test_url"):
                out.append(read("http", "GET", url=inputs.get("test_url")))
            out += [
                read("secretsmanager", "get_secret_value", SecretId=sid, VersionStage=PENDING),
                call("secretsmanager", "update_secret_version_stage", SecretId=sid, VersionStage=CURRENT),
            ]
        return out

    def run(self, inputs: RotateInputs, ctx: ActionContext) -> dict[str, Any]:
        return {"rotated": [self.rotate_one(sid, inputs, ctx) for sid in inputs.secret_ids]}

    def rotate_one(self, sid: str, inputs: RotateInputs, ctx: ActionContext) -> dict[str, Any]:
        # The token depends only on run, step and secret: a retry or resume finds its own version again
        # instead of creating a second pending one.
        token = ctx.token(sid)
        versions = stages(ctx, sid)
        previous = ctx.memo(f"previous:{sid}", lambda: holder(versions, CURRENT))
        param = inputs.apply_to_parameter.replace("{secret_id}", sid) if inputs.apply_to_parameter else None
        done = {"secret_id": sid, "version_id": token, "previous_version_id": previous, "parameter": param}
        if CURRENT in versions.get(token, []):
            self.drop_pending(ctx, sid, token, versions)
            return done

        # createSecret: check the stage labels first; moto (unlike AWS) would silently overwrite a
        # version when the same token comes with a different value, so never put twice.
        if token in versions:
            value = value_of(ctx, sid, VersionId=token)
        else:
            value = generate(inputs.length, inputs.alphabet)
            ctx.secret(value)
            ctx.aws(
                "secretsmanager",
                "put_secret_value",
                SecretId=sid,
                ClientRequestToken=token,
                SecretString=value,
                VersionStages=[PENDING],
            )

        # setSecret
        if param:
            apply_to_parameter(ctx, param, value)
        try:
            self.test_and_finish(ctx, sid, token, value, inputs.test_url)
        except ScalerError:
            # The service must keep working with the value that is still AWSCURRENT, so setSecret is
            # undone before the error goes up (a retry or a later run applies the pending value again).
            if param:
                try:
                    apply_to_parameter(ctx, param, value_of(ctx, sid, VersionStage=CURRENT))
                except ScalerError as e:
                    ctx.log(f"could not put the current value of {sid} back into {param}: {e}")
            raise
        return done

    def test_and_finish(self, ctx: ActionContext, sid: str, token: str, value: str, test_url: str | None) -> None:
        # testSecret: the pending value reads back intact, and (if configured) the service accepts it.
        pending = value_of(ctx, sid, VersionId=token, VersionStage=PENDING)
        if not hmac.compare_digest(pending, value):
            raise PermanentError(
                f"secret {sid}: pending version does not hold the new value",
                provider="secretsmanager",
                code="PendingMismatch",
            )
        if test_url:
            ctx.http("GET", test_url, headers={"Authorization": f"Bearer {value}"})

        # finishSecret: AWSCURRENT moves (the old version becomes AWSPREVIOUS by itself).
        current = holder(stages(ctx, sid), CURRENT)
        if current != token:
            move: dict[str, Any] = {"SecretId": sid, "VersionStage": CURRENT, "MoveToVersionId": token}
            if current:
                move["RemoveFromVersionId"] = current
            ctx.aws("secretsmanager", "update_secret_version_stage", **move)
        self.drop_pending(ctx, sid, token, stages(ctx, sid))
        # Read by stage, never without one: moto keeps answering the old version to a bare read.
        now = ctx.aws("secretsmanager", "get_secret_value", SecretId=sid, VersionStage=CURRENT)
        if now.get("VersionId") != token:
            raise PermanentError(
                f"secret {sid}: AWSCURRENT did not move to the new version",
                provider="secretsmanager",
                code="StageNotMoved",
            )

    @staticmethod
    def drop_pending(ctx: ActionContext, sid: str, token: str, versions: dict[str, list[str]]) -> None:
        """Clear AWSPENDING from the finished version so the next rotation starts clean."""
        if PENDING in versions.get(token, []):
            ctx.aws(
                "secretsmanager",
                "update_secret_version_stage",
                SecretId=sid,
                VersionStage=PENDING,
                RemoveFromVersionId=token,
            )


class RestoreInputs(Inputs):
    rotated: list[dict[str, Any]] = Field(description="The `rotated` output of a secrets.rotate step")


class Restore(Action[RestoreInputs]):
    name = "secrets.restore"
    summary = "Undo a rotation: AWSCURRENT back to the previous version (and its value back into SSM)"
    inputs = RestoreInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [
            read("secretsmanager", "describe_secret"),
            call("secretsmanager", "update_secret_version_stage", VersionStage=CURRENT),
        ]

    def run(self, inputs: RestoreInputs, ctx: ActionContext) -> dict[str, Any]:
        restored = []
        for item in reversed(inputs.rotated):
            sid, new, old = item["secret_id"], item["version_id"], item.get("previous_version_id")
            versions = stages(ctx, sid)
            if PENDING in versions.get(new, []):
                ctx.aws(
                    "secretsmanager",
                    "update_secret_version_stage",
                    SecretId=sid,
                    VersionStage=PENDING,
                    RemoveFromVersionId=new,
                )
            if not old:
                continue
            if holder(versions, CURRENT) == new:
                ctx.aws(
                    "secretsmanager",
                    "update_secret_version_stage",
                    SecretId=sid,
                    VersionStage=CURRENT,
                    MoveToVersionId=old,
                    RemoveFromVersionId=new,
                )
            if item.get("parameter"):
                apply_to_parameter(ctx, item["parameter"], value_of(ctx, sid, VersionId=old))
            restored.append(sid)
        return {"restored": restored}
