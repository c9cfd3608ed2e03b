"""cms.patching's local AWS sandbox: moto's server, extended to behave like AWS for the patching workflow.

See sandbox/README.md. Python entry point: ``sandbox.Sandbox.start()``; CLI: ``python -m sandbox``.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Imported on first use: ``python -m sandbox wait`` / ``stop`` need none of moto (importing it takes seconds).
    if name == "Sandbox":
        from sandbox.server import Sandbox  # pylint: disable=import-outside-toplevel

        return Sandbox
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
