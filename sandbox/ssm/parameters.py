"""Parameter Store's PutParameter as AWS answers it under concurrency and on the sandbox clock.

moto's ``put_parameter`` checks whether the name exists and then appends the new version, with nothing held between the
two: two creates with ``Overwrite=false`` racing on the threaded server can both succeed. AWS creates a name once and
answers every other create ``ParameterAlreadyExists`` (PutParameter, AWS Systems Manager API Reference), which the
collection's retention claim relies on; so every PutParameter runs under the sandbox's lock here. moto also stamps
``LastModifiedDate`` with the wall clock; here it is the sandbox clock, as CreationDate and the command times are, so
a client comparing it with AWS's time (the HTTP Date, also the sandbox clock) sees the age it would see on AWS.
"""

from __future__ import annotations

from typing import Any

from moto.ssm.models import SimpleSystemManagerBackend

from sandbox import moto_hooks, runtime
from sandbox.clock import to_datetime


def _put_parameter(backend: SimpleSystemManagerBackend, *args: Any, **kwargs: Any) -> Any:
    original = moto_hooks.original(SimpleSystemManagerBackend, "put_parameter")
    try:
        state = runtime.current()
    except RuntimeError:  # no sandbox serving in this process: moto as it is
        return original(backend, *args, **kwargs)
    with state.lock:
        parameter = original(backend, *args, **kwargs)
        parameter.last_modified_date = to_datetime(state.now())
        return parameter


def install() -> None:
    moto_hooks.replace(SimpleSystemManagerBackend, "put_parameter", _put_parameter)
