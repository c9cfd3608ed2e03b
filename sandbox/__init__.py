"""cms.patching's local AWS sandbox: moto's server, extended to behave like AWS for the patching workflow.

See sandbox/README.md. Python entry point: ``Sandbox.start()``; CLI: ``python -m sandbox``.
"""

from sandbox.server import Sandbox

__all__ = ["Sandbox"]
