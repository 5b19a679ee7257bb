"""The one interface every runbook action implements, and the context the engine hands it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from scaler.clock import Clock
from scaler.errors import ScalerError
from scaler.runbook.records import ProviderCall
from scaler.yamlio import Strict


class Inputs(Strict):
    """Base of every action's inputs: unknown keys are errors, so a typo cannot be silently ignored."""

    # Inputs that name a resource which can be written more than one way, each with the function giving the
    # one spelling the action itself uses (route53: zone_id "/hostedzone/Z1" -> "Z1", name "App.example.com"
    # -> "app.example.com."). A run's concurrency scope spells parameters passed to these inputs this way
    # (scaler.runbook.scope); every other input, ARNs included, is taken as given.
    canonical: ClassVar[Mapping[str, Callable[[str], str]]] = {}


I = TypeVar("I", bound=Inputs)  # noqa: E741


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes


class ActionContext(Protocol):
    """What an action may use. Everything with an outside effect goes through here, so it is audited."""

    run_id: str
    step_id: str
    attempt: int
    clock: Clock
    deadline: float  # unix seconds by which the step must be done

    def aws(self, service: str, operation: str, /, **args: Any) -> dict[str, Any]:
        """Call boto3 `service.operation(**args)`: audited, retried when transient, errors classified."""

    def http(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        check: bool = True,
        retry: bool = True,
    ) -> HttpResponse:
        """An HTTP request (JSON body if given). check=True raises on non-2xx (429/5xx transient)."""

    def call(
        self,
        service: str,
        operation: str,
        fn: Callable[[], Any],
        /,
        *,
        args: Mapping[str, Any],
        classify: Callable[[Exception], ScalerError],
        describe: Callable[[Any], Mapping[str, Any]] | None = None,
    ) -> Any:
        """fn(), a call to a provider without a boto3 client (the Kubernetes API): audited as `service` and
        `operation` with `args` (and describe(answer), if given), retried when transient as aws() is, its
        errors classified by `classify`."""

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """compute() once per run and step, stored durably: a re-run after a crash gets the first answer."""

    def token(self, *parts: str) -> str:
        """A client token fixed by run, step and `parts`: the same on every retry and resume."""

    def secret(self, value: str) -> None:
        """Mark a value as secret: it is masked in the journal, audit trail, logs and output from now on."""

    def sleep(self, seconds: float) -> None:
        """Wait on the run's clock; raises StepTimeout instead of sleeping past the deadline."""

    def log(self, message: str) -> None:
        """A progress note (redacted) for the run log."""


class Action(ABC, Generic[I]):
    """One thing a step can do. Stateless: all state lives in the provider, the inputs and ctx.memo.

    `run` must be idempotent (client tokens where the API takes them, check-before-act otherwise) and
    return outputs a compensation can use (e.g. the previous value), never secret values.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    inputs: ClassVar[type[Inputs]]
    mutates: ClassVar[bool] = True  # False: safe in preconditions, verify and plans
    gate: ClassVar[bool] = False  # True only for `approve`: the engine waits instead of calling run

    @abstractmethod
    def plan(self, inputs: Mapping[str, Any]) -> list[ProviderCall]:
        """The provider calls run() would make. Inputs may still hold unresolved "{{ ... }}" text."""

    @abstractmethod
    def run(self, inputs: I, ctx: ActionContext) -> dict[str, Any]:
        """Do it (idempotently) and return outputs."""


def call(service: str, operation: str, mutates: bool = True, **args: Any) -> ProviderCall:
    """Shorthand for plans."""
    return ProviderCall(service=service, operation=operation, args=args, mutates=mutates)


def read(service: str, operation: str, **args: Any) -> ProviderCall:
    return ProviderCall(service=service, operation=operation, args=args, mutates=False)
