"""``python -m sandbox serve | wait | stop``.

serve  start the sandbox, seed a scenario, print the environment to export (and
       write it to --env-file for ``source``), serve in the foreground until
       SIGINT/SIGTERM or ``stop``; exits 0.
wait   poll the health endpoint of the sandbox an env file points at until it answers.
stop   ask that sandbox to shut down.
"""

from __future__ import annotations

import argparse
import http.client
import json
import pathlib
import shlex
import signal
import sys
import time
import urllib.error
import urllib.request
from typing import Any

_SUMMARY_ROWS = 60


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Local AWS sandbox for cms.patching (moto, extended).")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the sandbox in the foreground")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument("--scenario", default="demo", help="demo | none | path to a scenario YAML")
    serve.add_argument("--env-file", type=pathlib.Path, help="also write the export lines here")
    serve.add_argument("--time-scale", type=float, default=None, help="sandbox seconds per wall second (default 1.0)")
    serve.add_argument("--profile", choices=("fast", "aws"), default=None,
                       help="realism profile: fast (default, kind) or aws (eventual consistency, 5xx, throttling, skew, real durations)")
    serve.add_argument("--region", default="us-east-1", help="AWS_DEFAULT_REGION to export")
    serve.add_argument("--full-ami-catalogue", action="store_true", help="also load moto's ~1,300 per-region AMIs (slower)")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    wait = commands.add_parser("wait", help="wait until the sandbox of an env file answers")
    wait.add_argument("--env-file", type=pathlib.Path, required=True)
    wait.add_argument("--timeout", type=float, default=30.0)
    stop = commands.add_parser("stop", help="stop the sandbox of an env file")
    stop.add_argument("--env-file", type=pathlib.Path, required=True)
    stop.add_argument("--timeout", type=float, default=10.0)
    return parser


def export_lines(env: dict[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def read_env_file(path: pathlib.Path) -> dict[str, str]:
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            env[name] = value
    return env


def _control_url(path: pathlib.Path) -> str:
    url = read_env_file(path).get("CMS_SANDBOX_URL")
    if not url:
        raise SystemExit(f"{path}: no CMS_SANDBOX_URL line")
    return url


def _call(url: str, method: str = "GET", timeout: float = 5.0) -> dict[str, Any]:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec - a loopback URL from our own env file
        return json.loads(response.read())


def _print_summary(summary: dict[str, Any]) -> None:
    rows = summary.get("instances", [])
    print(f"# scenario {summary.get('scenario')}: {len(rows)} instances", file=sys.stderr)
    for cell, counts in summary.get("counts", {}).items():
        print(f"#   {cell}: " + ", ".join(f"{key} {value}" for key, value in counts.items()), file=sys.stderr)
    if len(rows) <= _SUMMARY_ROWS:
        for row in rows:
            print(f"#   {row['instance_id']}  {row['name']:<16} {row['account']} {row['region']:<10} {row['os']:<15} {row['state']:<8} "
                  f"ssm={row.get('ping_status') or '-':<15} lz={'yes' if row['in_landing_zone'] else 'no'}", file=sys.stderr)
    for fault in summary.get("faults", []):
        print(f"#   fault {fault['kind']}: {fault.get('instance_name', '')} {fault.get('instance_id', fault.get('operation', ''))}", file=sys.stderr)


def serve(args: argparse.Namespace) -> int:
    from sandbox.server import Sandbox  # pylint: disable=import-outside-toplevel

    settings: dict[str, Any] = {}
    if args.profile is not None:
        settings["realism"] = args.profile
    if args.time_scale is not None:
        settings["time_scale"] = args.time_scale
    sandbox = Sandbox.start(host=args.host, port=args.port, settings=settings or None, verbose=args.verbose, full_ami_catalogue=args.full_ami_catalogue)
    try:
        summary = sandbox.seed(args.scenario)
    except BaseException:
        sandbox.stop()
        raise
    env = sandbox.env(args.region)
    if args.env_file:
        args.env_file.write_text(export_lines(env), encoding="utf-8")
    _print_summary(summary)
    sys.stdout.write(export_lines(env))
    sys.stdout.flush()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: sandbox.request_stop())
    while not sandbox.wait(0.5):
        pass
    print("# sandbox stopped", file=sys.stderr)
    return 0


def wait(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            if args.env_file.is_file():
                _call(_control_url(args.env_file) + "/health", timeout=2.0)
                return 0
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            print(f"sandbox of {args.env_file} did not answer within {args.timeout:g}s", file=sys.stderr)
            return 1
        time.sleep(0.2)


def stop(args: argparse.Namespace) -> int:
    url = _control_url(args.env_file)
    try:
        _call(url + "/shutdown", method="POST")
    except http.client.IncompleteRead:
        # The server accepted the shutdown (its answer began) and went down before the last bytes were read: the
        # health loop below tells whether it is really gone.
        pass
    except (OSError, ValueError) as error:
        print(f"sandbox at {url} did not accept the shutdown: {error}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            _call(url + "/health", timeout=1.0)
        except (OSError, ValueError):
            return 0
        except http.client.HTTPException:
            pass  # an answer cut short (IncompleteRead) by the server going down: the next probe tells
        time.sleep(0.1)
    print(f"sandbox at {url} is still answering after {args.timeout:g}s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return {"serve": serve, "wait": wait, "stop": stop}[args.command](args)
