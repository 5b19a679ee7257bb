"""SSM Parameter Store actions: set or delete a String parameter (e.g. a maintenance flag); read one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from scaler.errors import PermanentError, ProviderError
from scaler.runbook.actions.base import Action, ActionContext, Inputs, call, read
from scaler.runbook.records import ProviderCall


def current(ctx: ActionContext, name: str) -> dict[str, Any] | None:
    """The parameter as SSM has it (no decryption), or None when it does not exist."""
    try:
        return ctx.aws("ssm", "get_parameter", Name=name)["Parameter"]
    except ProviderError as e:
        if e.code == "ParameterNotFound":
            return None
        raise


class SetInputs(Inputs):
    name: str = Field(description="Parameter name, e.g. /app/maintenance")
    value: str | None = Field(description="New value; null deletes the parameter")
    description: str | None = None


class SetParameter(Action[SetInputs]):
    name = "ssm.set_parameter"
    summary = "Set a String parameter (null value deletes it); outputs the previous value for compensation"
    inputs = SetInputs

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        found = read("ssm", "get_parameter", Name=inputs.get("name"))
        if inputs.get("value") is None:
            return [found, call("ssm", "delete_parameter", Name=inputs.get("name"))]
        return [
            found,
            call(
                "ssm",
                "put_parameter",
                Name=inputs.get("name"),
                Value=inputs.get("value"),
                Type="String",
                Overwrite=True,
            ),
        ]

    def run(self, inputs: SetInputs, ctx: ActionContext) -> dict[str, Any]:
        param = current(ctx, inputs.name)
        if param is not None and param.get("Type") != "String":
            # A SecureString's previous value would have to be kept for rollback; that is a secret.
            raise PermanentError(
                f"ssm parameter {inputs.name} is {param.get('Type')}; only String is managed",
                provider="ssm",
                code="UnsupportedType",
            )
        previous = ctx.memo("previous", lambda: None if param is None else param["Value"])
        now = None if param is None else param["Value"]
        out: dict[str, Any] = {"previous": previous, "value": inputs.value, "changed": False}
        if now == inputs.value:
            return out
        if inputs.value is None:
            ctx.aws("ssm", "delete_parameter", Name=inputs.name)
        else:
            args: dict[str, Any] = {
                "Name": inputs.name,
                "Value": inputs.value,
                "Type": "String",
                "Overwrite": True,
            }
            if inputs.description:
                args["Description"] = inputs.description
            ctx.aws("ssm", "put_parameter", **args)
        out["changed"] = True
        return out


class GetInputs(Inputs):
    name: str


class GetParameter(Action[GetInputs]):
    name = "ssm.get_parameter"
    summary = "Read a String parameter (for preconditions and verify): exists, value"
    inputs = GetInputs
    mutates = False

    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        return [read("ssm", "get_parameter", Name=inputs.get("name"))]

    def run(self, inputs: GetInputs, ctx: ActionContext) -> dict[str, Any]:
        param = current(ctx, inputs.name)
        if param is None:
            return {"exists": False, "value": None}
        plain = param.get("Type") == "String"
        return {"exists": True, "value": param["Value"] if plain else None}
