"""The WSGI layer in front of moto: the one place that counts, logs, throttles and fails AWS calls.

Requests under ``/_sandbox/`` go to the control API; every other request is
recognised (service, operation, account, region) and then, in AWS's order:
refused (signature time, expired credentials, an ``access_denied`` fault), throttled (a ``throttle`` fault, or an empty token bucket when
``throttle_buckets`` is on), failed with a server error (``server_error_rate``;
for a share of the writes only after moto carried them out), or handed to
moto's DomainDispatcherApplication unchanged. A throttled call, or one failed
before acting, never reaches moto. Every call is counted and logged with the
HTTP status the client got. The seeder marks its own requests with
``X-Cms-Sandbox-Internal`` so setting up a scenario is neither counted,
logged, throttled nor failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.iam.models import get_account_id_from

from sandbox import credentials, server_errors, signature_time
from sandbox.aws_request import Answer, AwsCall, access_denied_response, classify, server_error_response, throttling_response
from sandbox.calls import is_write
from sandbox.state import SandboxState

INTERNAL_HEADER = "X-Cms-Sandbox-Internal"
_INTERNAL_ENVIRON_KEY = "HTTP_" + INTERNAL_HEADER.upper().replace("-", "_")
CONTROL_PREFIX = "/_sandbox/"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SandboxMiddleware:
    def __init__(self, moto_app: WsgiApp, control_app: WsgiApp, state: SandboxState) -> None:
        self._moto = moto_app
        self._control = control_app
        self._state = state

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(CONTROL_PREFIX):
            return self._control(environ, start_response)
        call = classify(environ)
        if call is None or environ.get(_INTERNAL_ENVIRON_KEY):
            return self._moto(environ, start_response)
        return self._aws_call(call, environ, start_response)

    def _aws_call(self, call: AwsCall, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        state = self._state
        settings = state.settings
        account = get_account_id_from(call.access_key)
        stamp = {"wall": time.time(), "sandbox_time": state.clock.now()}

        def record(status: str, injected: str | None) -> None:
            state.calls.record(call.key, account, call.region, injected == "throttled", status=_code(status), injected=injected, **stamp)

        # Authentication comes first: a call signed too far from AWS's time (sandbox/signature_time.py) or with expired temporary
        # credentials (sandbox/credentials.py) is refused, never throttled.
        refused = signature_time.refusal(call, environ, state.clock.skew, settings.signature_window_seconds)
        if refused is not None:
            return _answer(refused, start_response, lambda status: record(status, "request_expired"))
        expired = state.credentials.expired_response(call)
        if expired is not None:
            return _answer(expired, start_response, lambda status: record(status, "expired_credentials"))
        unknown = credentials.unknown_key_response(call, account)
        if unknown is not None:
            return _answer(unknown, start_response, lambda status: record(status, "unknown_credentials"))
        # Authorisation comes before throttling too: an ``access_denied`` fault is a policy that does not allow the action.
        if state.fault_store.should_deny(call.key):
            return _answer(access_denied_response(call, account), start_response, lambda status: record(status, "access_denied"))
        throttled = state.fault_store.should_throttle(call.key)
        if not throttled and settings.throttle_buckets:
            throttled = not state.buckets.admit(call.service, call.operation, account, call.region, call.params, settings.throttle_bucket_scale)
        if throttled:
            return _answer(throttling_response(call), start_response, lambda status: record(status, "throttled"))

        failure, draw = state.server_errors.decide(is_write(call.operation), settings.server_error_rate, settings.server_error_applied_ratio)
        if failure == server_errors.AFTER:
            _run_and_discard(self._moto, environ)
        if failure is not None:
            return _answer(server_error_response(call, draw), start_response, lambda status: record(status, failure))

        def logging_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            record(status, None)
            return start_response(status, headers, exc_info) if exc_info is not None else start_response(status, headers)

        return self._moto(environ, logging_start_response)


def _code(status: str) -> int:
    try:
        return int(status.split(None, 1)[0])
    except (ValueError, IndexError):
        return 0


def _answer(answer: Answer, start_response: Callable[..., Any], record: Callable[[str], None]) -> Iterable[bytes]:
    status, headers, body = answer
    record(status)
    start_response(status, headers + [("Content-Length", str(len(body)))])
    return [body]


def _run_and_discard(app: WsgiApp, environ: dict[str, Any]) -> None:
    """Let moto carry the request out; its answer is lost, as a 5xx after acting loses AWS's."""
    result = app(environ, lambda status, headers, exc_info=None: (lambda data: None))
    try:
        for _chunk in result:
            pass
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
