"""The sandbox state the moto extensions serve.

moto's backends are process-wide, so the methods the sandbox adds to moto's
classes are too; they find the state of the running sandbox here. One sandbox
per process can be active at a time.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.state import SandboxState


class _Active:
    lock = threading.Lock()
    state: SandboxState | None = None


def activate(state: SandboxState) -> None:
    with _Active.lock:
        if _Active.state is not None and _Active.state is not state:
            raise RuntimeError("another sandbox is already running in this process (moto's state is process-wide)")
        _Active.state = state


def deactivate(state: SandboxState) -> None:
    with _Active.lock:
        if _Active.state is state:
            _Active.state = None


def current() -> SandboxState:
    state = _Active.state
    if state is None:
        raise RuntimeError("no sandbox is running in this process")
    return state
