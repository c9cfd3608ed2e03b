"""A synthetic fleet served by `python -m sandbox serve` in its own process, with a landing zone for ansible-playbook.

The playbook benchmarks run ansible-playbook against a sandbox in another process (the controller's cost is what they
measure, so the sandbox must not share its process); this starts it, waits until it answers, and gives the
environment ansible-playbook runs with: the sandbox's endpoint and credentials, the landing zone and the report directory.
"""

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"
REGION = "us-east-1"
# The landing zone "bench": the sandbox's account and region, the instances tagged Environment=bench; each benchmark adds
# its phases' settings (indented two spaces, under cms_patching_landing_zone).
LANDING_ZONE = """---
cms_patching_landing_zone:
  accounts:
    - account_id: "{account}"
  regions: [{region}]
  targets:
    filters:
      "tag:Environment": bench
"""


@contextlib.contextmanager
def serving(tmp, count, managed_ratio, phases, lz_file, start_timeout=300):
    """In `tmp`: the landing zone `bench` (LANDING_ZONE and the YAML `phases` at lzs/bench/<lz_file>)
    and a sandbox serving `count` instances tagged Environment=bench in ACCOUNT/REGION, `managed_ratio` of them SSM-managed.
    Yields the environment for ansible-playbook (os.environ plus the sandbox's env file, CMS_PATCHING_LZ_PATH,
    CMS_PATCHING_REPORT_DIR and ANSIBLE_CONFIG); the server is stopped on leaving."""
    path = tmp / "lzs" / "bench" / lz_file
    path.parent.mkdir(parents=True)
    path.write_text(LANDING_ZONE.format(account=ACCOUNT, region=REGION) + phases)
    scenario = tmp / "scenario.json"
    spec = {"count": count, "accounts": [ACCOUNT], "regions": [REGION], "reservations": 10, "managed_ratio": managed_ratio, "environment": "bench"}
    scenario.write_text(json.dumps({"synthetic": spec}))
    env_file = tmp / "sandbox.env"
    server = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "sandbox", "serve", "--scenario", str(scenario), "--env-file", str(env_file)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait = [sys.executable, "-m", "sandbox", "wait", "--env-file", str(env_file), "--timeout", str(start_timeout)]
        subprocess.run(wait, cwd=REPO, check=True)
        env = dict(os.environ, CMS_PATCHING_LZ_PATH=str(tmp / "lzs"), CMS_PATCHING_REPORT_DIR=str(tmp / "reports"), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
        env["CMS_PATCHING_CREDENTIAL_CACHE"] = str(tmp / "sts-cache")  # an empty STS credential cache, as a new AWX job has
        for line in env_file.read_text().splitlines():
            name, _sep, value = line.replace("export ", "", 1).partition("=")
            env[name] = value.strip("'")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=60)


def post(env, path, body):
    """POST `body` to the sandbox's control API (CMS_SANDBOX_URL + '/' + path, e.g. calls/reset, settings)."""
    request = urllib.request.Request(
        env["CMS_SANDBOX_URL"] + "/" + path, method="POST", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=30).close()  # nosec - loopback
