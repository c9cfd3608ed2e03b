"""``Sandbox``: moto's server with the sandbox's extensions, in a background thread of this process.

    with Sandbox.start(port=0) as sb:
        os.environ.update(sb.env())        # AWS_ENDPOINT_URL etc.
        sb.seed("demo")
        sb.state.faults.add("ami_fail", instance_id=...)
        sb.reset()                          # between tests

The server is werkzeug's threaded WSGI server running moto's
DomainDispatcherApplication behind ``SandboxMiddleware``; one endpoint serves
every AWS service (moto routes by the SigV4 credential scope).
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from sandbox import extensions, organizations, runtime
from sandbox.clock import Settings
from sandbox.control_api import ControlApi
from sandbox.middleware import SandboxMiddleware
from sandbox.seeding import fleet, scenario
from sandbox.seeding.clients import TEST_CREDENTIALS
from sandbox.state import SandboxState


class _SandboxDateHandler(MotoRequestHandler):
    """The HTTP ``Date`` of every answer is the sandbox clock (scaled and skewed), as AWS's Date is AWS's time.

    Clients read AWS's time from this header (the collection's ``_retry.ServerClock``); http.server
    writes it in ``send_response`` from ``time.time()``, so it is replaced here rather than in the
    WSGI layer (a second Date header would be joined to the first by the client).
    """

    def date_time_string(self, timestamp: float | None = None) -> str:
        if timestamp is None:
            try:
                timestamp = runtime.current().clock.now()
            except RuntimeError:
                timestamp = time.time()
        return email.utils.formatdate(timestamp, usegmt=True)


class _QuietHandler(_SandboxDateHandler):
    """No per-request log line (werkzeug writes one per request by default)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class Sandbox:
    _running: Sandbox | None = None

    def __init__(self, state: SandboxState, host: str, port: int, verbose: bool) -> None:
        """Bind the server (not yet serving); use ``Sandbox.start``."""
        self.state = state
        self._stop_lock = threading.Lock()
        self._stopped = threading.Event()
        app = SandboxMiddleware(DomainDispatcherApplication(create_backend_app), ControlApi(self), state)
        logging.getLogger("werkzeug").setLevel(logging.INFO if verbose else logging.WARNING)
        self._server = make_server(host, port, app, threaded=True, request_handler=_SandboxDateHandler if verbose else _QuietHandler)
        bound_host, bound_port = self._server.server_address[:2]
        self.endpoint = f"http://{bound_host}:{bound_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="cms-sandbox", daemon=True)

    @classmethod
    def start(cls, host: str = "127.0.0.1", port: int = 0, settings: Settings | dict[str, Any] | None = None, verbose: bool = False,
              full_ami_catalogue: bool = False) -> Sandbox:
        """Start serving on ``host:port`` (0: a free port) with fresh moto state; returns once it accepts requests.

        ``settings`` may name a profile (``{"realism": "aws", ...}``): the profile's values, then the other keys.
        ``full_ami_catalogue`` loads moto's ~1,300 per-region AMIs too (see sandbox.ec2.catalogue).
        """
        if isinstance(settings, dict):
            settings = Settings().updated(settings)
        extensions.install(full_ami_catalogue)
        state = SandboxState(settings)
        runtime.activate(state)
        try:
            state.reset()
            sandbox = cls(state, host, port, verbose)
        except BaseException:
            runtime.deactivate(state)
            raise
        sandbox._thread.start()  # pylint: disable=protected-access
        cls._running = sandbox
        return sandbox

    @classmethod
    def running(cls) -> Sandbox | None:
        """The sandbox this process is serving, if any (moto's state is process-wide: there is at most one)."""
        return cls._running

    def env(self, region: str = "us-east-1") -> dict[str, str]:
        """The environment a client (boto3, the AWS CLI, ansible) needs to use this sandbox."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "CMS_SANDBOX_URL": f"{self.endpoint}/_sandbox",
        }

    def seed(self, spec: str | dict[str, Any] | None) -> dict[str, Any]:
        """Create a scenario ("demo", "none", a YAML path, or an inline/synthetic spec); returns its summary."""
        return fleet.seed(self.state, self.endpoint, scenario.load(spec))

    def seed_organization(self, spec: dict[str, Any]) -> dict[str, Any]:
        """An AWS Organizations tree alone (sandbox/organizations.py); a scenario's ``organization`` key does the same."""
        return organizations.seed(self.state, spec)

    def add_organization_account(self, spec: dict[str, Any], account: dict[str, Any], parent_id: str) -> str:
        """One more account in the organization of ``spec`` (e.g. one that joins between two runs)."""
        return organizations.add_account(self.state, spec, account, parent_id)

    def reset(self) -> None:
        self.state.reset()

    def request_stop(self) -> None:
        """Stop from another thread (a request handler cannot join the server it runs in)."""
        threading.Thread(target=self.stop, name="cms-sandbox-stop", daemon=True).start()

    def stop(self) -> None:
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            runtime.deactivate(self.state)
            if Sandbox._running is self:
                Sandbox._running = None
            self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the sandbox has stopped; False if ``timeout`` passed first."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
