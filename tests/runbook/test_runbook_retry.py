"""Provider errors classified by code, retried with backoff on the run's clock, and botocore retries off."""

from __future__ import annotations

import types

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError

from scaler import retry
from scaler.aws import AwsClients, AwsSettings, call_timeout, classify
from scaler.clock import FakeClock
from scaler.errors import PermanentError, TransientError
from scaler.retry import RetryPolicy
from scaler.runbook.context import StepContext
from scaler.runbook.redact import Redactor


def client_error(code: str, status: int, message: str = "x") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "SomeOperation")


CODES = [
    ("Throttling", 400, TransientError),
    ("ThrottlingException", 400, TransientError),
    ("RequestLimitExceeded", 503, TransientError),
    ("TooManyRequestsException", 429, TransientError),
    ("PriorRequestNotComplete", 400, TransientError),
    ("InternalFailure", 500, TransientError),
    ("SomethingNew", 502, TransientError),  # any 5xx
    ("ValidationError", 400, PermanentError),
    ("AccessDeniedException", 403, PermanentError),
    ("ResourceNotFoundException", 404, PermanentError),
    ("ParameterNotFound", 400, PermanentError),
]


@pytest.mark.parametrize(("code", "status", "kind"), CODES, ids=[c[0] + f"-{c[1]}" for c in CODES])
def test_classified_by_code_and_status(code: str, status: int, kind: type) -> None:
    got = classify(client_error(code, status))
    assert type(got) is kind and got.code == code


def test_message_text_never_decides() -> None:
    # The message says "throttled", the code says validation: the code wins.
    assert isinstance(classify(client_error("ValidationError", 400, "Rate exceeded, throttled")), PermanentError)


OTHERS = [
    ("no connection", EndpointConnectionError(endpoint_url="http://x"), TransientError),
    ("read timeout", ReadTimeoutError(endpoint_url="http://x"), TransientError),
    ("bad parameters", ParamValidationError(report="bad"), PermanentError),
    ("unexpected", KeyError("x"), PermanentError),
]


@pytest.mark.parametrize(("error", "kind"), [o[1:] for o in OTHERS], ids=[o[0] for o in OTHERS])
def test_non_client_errors(error: Exception, kind: type) -> None:
    assert isinstance(classify(error), kind)


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def test_transient_retried_with_growing_delays_on_the_clock() -> None:
    clock = FakeClock(t=0.0)
    waits: list[float] = []
    fn = Flaky([TransientError("t1"), TransientError("t2"), TransientError("t3")])
    policy = retry.RetryPolicy(attempts=5, initial=1.0, max_delay=3.0, jitter=0.0)
    assert retry.call(fn, policy=policy, sleep=clock.sleep, on_retry=lambda n, e, d: waits.append(d)) == "done"
    # 1 s, 2 s, then 4 s capped at 3 s; nothing really slept.
    assert (fn.calls, waits, clock.t) == (4, [1.0, 2.0, 3.0], 6.0)


def test_permanent_not_retried() -> None:
    fn = Flaky([PermanentError("denied")])
    with pytest.raises(PermanentError):
        retry.call(fn, policy=retry.RetryPolicy(attempts=5), sleep=FakeClock().sleep)
    assert fn.calls == 1


def test_gives_up_after_attempts_with_last_error() -> None:
    fn = Flaky([TransientError(f"t{i}") for i in range(10)])
    with pytest.raises(TransientError, match="t2"):
        retry.call(fn, policy=retry.RetryPolicy(attempts=3, jitter=0.0), sleep=FakeClock().sleep)
    assert fn.calls == 3


def test_deadline_stops_before_a_sleep_would_pass_it() -> None:
    clock = FakeClock(t=0.0)
    fn = Flaky([TransientError(f"t{i}") for i in range(10)])
    policy = retry.RetryPolicy(attempts=10, initial=1.0, max_delay=100.0, jitter=0.0)
    with pytest.raises(TransientError):
        retry.call(fn, policy=policy, sleep=clock.sleep, deadline=5.0, now=clock.now)
    # t=0 try, sleep 1, t=1 try, sleep 2, t=3 try; the next 4 s sleep would end at 7 > 5: stop.
    assert (fn.calls, clock.t) == (3, 3.0)


def test_client_factory_sends_each_call_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore's own retries are off (total_max_attempts=1), so tenacity alone decides about retrying.
    sends = []

    def throttled(request: object, **_: object) -> AWSResponse:
        sends.append(request)

        class Raw:
            def stream(self) -> object:
                yield b'{"__type":"ThrottlingException","message":"slow down"}'

        return AWSResponse("http://fault", 400, {}, Raw())

    clients = AwsClients(AwsSettings(region="eu-west-1", endpoint_url="http://127.0.0.1:9"))
    ssm = clients.client("ssm")
    assert clients.client("ssm") is ssm and ssm.meta.region_name == "eu-west-1"
    assert clients.client("ssm", "us-west-2").meta.region_name == "us-west-2"
    ssm.meta.events.register("before-send.ssm.GetParameter", throttled)
    with pytest.raises(ClientError) as caught:
        ssm.get_parameter(Name="x")
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert len(sends) == 1


@pytest.mark.parametrize(("within", "timeout"), [
    (None, 15.0), (60.0, 15.0), (15.0, 15.0), (14.9, 10.0), (5.0, 5.0), (4.2, 3.0), (1.5, 1.0), (0.3, 1.0),
    (-2.0, 1.0),
])
def test_a_call_with_a_deadline_times_out_within_it(within: float | None, timeout: float) -> None:
    """A call that must end within `within` seconds gets the longest socket timeout that fits (at least 1 s), and
    a client of its own per timeout, connecting within it too; without a deadline, the settings' 15 s."""
    settings = AwsSettings(region="eu-west-1", endpoint_url="http://127.0.0.1:9")
    assert call_timeout(settings, within) == timeout
    clients = AwsClients(settings)
    ssm = clients.client("ssm", within=within)
    assert ssm.meta.config.read_timeout == timeout
    assert ssm.meta.config.connect_timeout == min(5.0, timeout)
    assert clients.client("ssm", within=within) is ssm
    assert (clients.client("ssm") is ssm) == (timeout == 15.0)


def test_each_try_of_a_step_call_gets_the_time_left_then() -> None:
    """ctx.aws asks for a client bounded by the step's deadline at every try, as the clock moves on."""
    clock = FakeClock(100.0)
    seen: list[float | None] = []

    class Clients:
        settings = AwsSettings()

        def client(self, service: str, region: str | None = None, *, within: float | None = None) -> object:
            seen.append(within)
            def describe(**_: object) -> dict:
                clock.advance(4.0)  # the call takes 4 s
                return {"ok": True}

            return types.SimpleNamespace(describe=describe)

    class NoAudit:
        def write(self, event: str, **fields: object) -> None:
            pass

    ctx = StepContext(env=types.SimpleNamespace(clients=Clients(), clock=clock, audit=NoAudit()), run_id="r",
                      step_id="s", phase="run", attempt=1, deadline=110.0, region=None, redactor=Redactor(),
                      call_policy=RetryPolicy(attempts=1))
    assert ctx.aws("ssm", "describe") == {"ok": True}
    assert ctx.aws("ssm", "describe") == {"ok": True}
    assert seen == [None, 10.0, None, 6.0]  # the operation looked up first; then each try's time left


def test_a_handler_registered_for_a_service_reaches_every_client_of_it() -> None:
    """clients.events(service, region).register(...) applies to the client made already, to each shorter-timeout
    client made later, and to no other service or region."""
    clients = AwsClients(AwsSettings(region="eu-west-1", endpoint_url="http://127.0.0.1:9"))
    before = clients.client("ssm")
    seen: list[str] = []

    def refuse(**kw: object) -> tuple[object, dict]:
        seen.append(str(kw["model"].name))
        return (AWSResponse("http://x", 400, {}, None), {"Error": {"Code": "AccessDenied", "Message": "no"}})

    clients.events("ssm").register("before-call.ssm.GetParameter", refuse)
    for client in (before, clients.client("ssm", within=4.0), clients.client("ssm", within=1.0)):
        with pytest.raises(ClientError):
            client.get_parameter(Name="x")
    assert seen == ["GetParameter"] * 3
    # another region: no handler, so the call goes out (to port 9, where nothing listens) and fails there
    with pytest.raises(EndpointConnectionError):
        clients.client("ssm", "us-west-2", within=4.0).get_parameter(Name="x")
    assert seen == ["GetParameter"] * 3
