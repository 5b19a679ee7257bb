"""Provider errors classified by code, retried with backoff on the run's clock, and botocore retries off."""

from __future__ import annotations

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError

from scaler import retry
from scaler.aws import AwsClients, AwsSettings, classify
from scaler.clock import FakeClock
from scaler.errors import PermanentError, TransientError


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
