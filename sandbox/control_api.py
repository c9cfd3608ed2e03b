"""HTTP JSON control API under ``/_sandbox/`` (same port as the AWS endpoint).

Every endpoint is a thin layer over ``SandboxState`` so Python callers
(``sb.state``) and HTTP callers (shell scripts, playbooks) see the same thing.
Bad input answers 400 ``{"error": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from sandbox.server import Sandbox

Handler = Callable[[Request], Any]


class ControlApi:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._state = sandbox.state
        self._routes: dict[tuple[str, str], Handler] = {
            ("GET", "health"): self._health,
            ("GET", "settings"): lambda request: self._state.settings.as_dict(),
            ("POST", "settings"): lambda request: self._state.update_settings(**_body(request)).as_dict(),
            ("GET", "faults"): lambda request: {"faults": self._state.faults.list()},
            ("POST", "faults"): self._add_fault,
            ("DELETE", "faults"): self._remove_faults,
            ("POST", "managed"): self._register_managed,
            ("POST", "agent"): self._set_agent,
            ("GET", "calls"): lambda request: self._state.calls.snapshot(),
            ("GET", "calls/log"): self._calls_log,
            ("POST", "calls/reset"): self._reset_calls,
            ("GET", "commands/log"): lambda request: {"commands": self._state.command_log()},
            ("GET", "concurrency"): lambda request: self._state.peak_in_progress(request.args.get("comment_contains")),
            ("POST", "reset"): self._reset,
            ("POST", "seed"): self._seed_scenario,
            ("GET", "describe"): lambda request: self._state.describe(),
            ("POST", "clock/advance"): lambda request: {"now": self._state.clock.advance(float(_body(request)["seconds"]))},
            ("POST", "shutdown"): self._stop,
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        name = request.path[len("/_sandbox/"):].strip("/")
        try:
            handler = self._routes.get((request.method, name))
            if handler is None:
                if any(route == name for _method, route in self._routes):
                    raise MethodNotAllowed()
                raise NotFound()
            response = _json(handler(request))
            if name == "shutdown":
                # Stop only once this answer has been sent: the CLI exits as soon as the server is down.
                response.call_on_close(self._sandbox.request_stop)
        except HTTPException as error:
            response = _json({"error": error.description}, error.code or 500)
        except KeyError as error:
            response = _json({"error": f"missing field {error}"}, 400)
        except (ValueError, TypeError) as error:
            response = _json({"error": str(error)}, 400)
        return response(environ, start_response)

    def _health(self, request: Request) -> dict[str, Any]:
        return {"status": "ok", "endpoint": self._sandbox.endpoint, "now": self._state.now(), "time_scale": self._state.settings.time_scale}

    def _add_fault(self, request: Request) -> dict[str, Any]:
        body = _body(request)
        kind = body.pop("kind")
        return self._state.faults.add(kind, **body).as_dict()

    def _remove_faults(self, request: Request) -> dict[str, Any]:
        criteria = {**request.args.to_dict(), **_body(request)}
        if "id" in criteria:
            criteria["fault_id"] = int(criteria.pop("id"))
        return {"removed": self._state.faults.remove(**criteria)}

    def _register_managed(self, request: Request) -> dict[str, Any]:
        body = _body(request)
        ping = body.get("ping_status", "Online")
        if ping not in ("Online", "ConnectionLost"):
            raise ValueError("ping_status must be Online or ConnectionLost")
        options = {"agent_version": body["agent_version"]} if "agent_version" in body else {}
        entries = self._state.register_managed(list(body["instance_ids"]), online=ping == "Online", **options)
        return {"registered": [entry.instance_id for entry in entries]}

    def _set_agent(self, request: Request) -> dict[str, Any]:
        body = _body(request)
        online = body["online"]
        if not isinstance(online, bool):
            raise ValueError("online must be true or false")
        self._state.set_agent(body["instance_id"], online)
        return {"instance_id": body["instance_id"], "online": online}

    def _calls_log(self, request: Request) -> dict[str, Any]:
        since = request.args.get("since")
        return {"calls": self._state.calls.log(float(since) if since is not None else None)}

    def _reset_calls(self, request: Request) -> dict[str, Any]:
        self._state.calls.reset()
        return self._state.calls.snapshot()

    def _reset(self, request: Request) -> dict[str, Any]:
        self._state.reset()
        return {"status": "reset"}

    def _seed_scenario(self, request: Request) -> dict[str, Any]:
        body = _body(request)
        if "scenario" in body:
            return self._sandbox.seed(body["scenario"])
        if "spec" in body:
            return self._sandbox.seed(body["spec"])
        raise ValueError('seed needs {"scenario": "demo" | "<path>"} or {"spec": {...}}')

    def _stop(self, request: Request) -> dict[str, Any]:
        return {"status": "stopping"}


def _body(request: Request) -> dict[str, Any]:
    """The JSON object in the body, whatever Content-Type the client claimed (curl and urllib default to a form)."""
    data = request.get_data(cache=True)
    if not data:
        return {}
    try:
        body = json.loads(data)
    except json.JSONDecodeError as error:
        raise ValueError(f"request body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise ValueError("request body must be a JSON object")
    return body


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, default=str, indent=1), status=status, mimetype="application/json")
