"""The WSGI layer in front of moto: the one place that counts AWS calls and injects throttling.

Requests under ``/_sandbox/`` go to the control API; every other request is
recognised (service, operation, account, region), counted, possibly answered
with the service's throttling error, and otherwise handed to moto's
DomainDispatcherApplication unchanged. The seeder marks its own requests with
``X-Cms-Sandbox-Internal`` so setting up a scenario is neither counted nor throttled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from moto.iam.models import get_account_id_from

from sandbox.aws_request import classify, throttling_response
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
        if call is not None and not environ.get(_INTERNAL_ENVIRON_KEY):
            # Authentication comes first: a call signed with expired temporary credentials is refused, never throttled (sandbox/credentials.py).
            expired = self._state.credentials.expired_response(call)
            throttled = expired is None and self._state.fault_store.should_throttle(call.key)
            self._state.calls.record(call.key, get_account_id_from(call.access_key), call.region, throttled)
            if expired is not None:
                status, headers, body = expired
                start_response(status, headers + [("Content-Length", str(len(body)))])
                return [body]
            if throttled:
                status, headers, body = throttling_response(call)
                start_response(status, headers + [("Content-Length", str(len(body)))])
                return [body]
        return self._moto(environ, start_response)
