#!/usr/bin/env python
"""What one module process pays to reach every account and region of an organization (issue 11 item 2).

The sandbox (fast profile) seeds an Organizations tree of --accounts members with the patching role; a fresh Python
process then makes an EC2 and an SSM client for every account x region through FleetSession and the module's bounded
pool (fan_out, 8 workers), as discovery, backup and patching do on their first round: one AssumeRole per account. Its
peak RSS and wall time are printed; with --against REV the same is measured with the collection's plugins of that git
revision (e.g. the commit before the shared loader and client classes) for comparison.

With --tls every client also makes one read (EC2 DescribeAvailabilityZones, SSM DescribeInstanceInformation) over
HTTPS, as against AWS: the sandbox is reached through a local TLS front (_tls_front.py) whose certificate the clients
verify against certifi's CA bundle plus the front's CA, so each new TLS context loads a full CA bundle.

Usage: python benchmarks/bench_sessions.py [--accounts 60,200] [--regions 3] [--against REV] [--tls]
"""

import argparse
import contextlib
import json
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from _tls_front import TlsFront  # noqa: E402  pylint: disable=wrong-import-position

PROBE = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._session import FleetSession
endpoint, accounts, regions = sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
verify = sys.argv[6] or None
members = [{"account_id": "3%011d" % i, "role_arn": "arn:aws:iam::3%011d:role/CmsPatchingRole" % i, "external_id": sys.argv[5]} for i in range(accounts)]
# The endpoint as the playbook's modules get it (AWS_ENDPOINT_URL), not as a client argument: botocore skips part of a
# client's set-up (the endpoint discovery check, which builds a model of every operation) for an explicit endpoint_url,
# never for AWS's own endpoints.
os.environ["AWS_ENDPOINT_URL"] = endpoint
connection = dict(region="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing", verify=verify)
fleet = FleetSession(connection, members)
started = time.monotonic()
locations = [(m["account_id"], r) for m in members for r in regions]

def reach(loc):
    ec2, ssm = fleet.client("ec2", *loc), fleet.client("ssm", *loc)
    if verify:
        ec2.describe_availability_zones()
        ssm.describe_instance_information(MaxResults=5)

outcomes = fan_out(reach, locations, 8)
print(json.dumps({"locations": len(locations), "seconds": round(time.monotonic() - started, 1),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "errors": sum(not o.ok for o in outcomes)}))
"""


def main():
    import bench_org  # pylint: disable=import-outside-toplevel

    from sandbox import Sandbox  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="60,200")
    parser.add_argument("--regions", type=int, default=3)
    parser.add_argument("--against", help="a git revision whose plugins are measured too (at the smallest --accounts only)")
    parser.add_argument("--tls", action="store_true", help="one read per client over HTTPS (a local TLS front verified against a full CA bundle)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.accounts.split(",")]
    regions = ",".join(bench_org.REGIONS[: args.regions])
    with tempfile.TemporaryDirectory() as tmp, Sandbox.start() as sandbox, contextlib.ExitStack() as stack:
        endpoint, verify = sandbox.endpoint, ""
        if args.tls:
            front = stack.enter_context(TlsFront(int(sandbox.endpoint.rsplit(":", 1)[1]), tmp))
            endpoint, verify = front.endpoint, front.ca_bundle
        sandbox.seed_organization(bench_org.organization_spec(max(sizes)))
        runs = [(str(REPO / "collections"), "this checkout", n) for n in sizes]
        if args.against:
            old = pathlib.Path(tmp) / "ansible_collections" / "cms" / "patching"
            old.mkdir(parents=True)
            archive = subprocess.run(["git", "archive", args.against, "plugins"], cwd=REPO, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            runs.insert(0, (tmp, args.against, min(sizes)))
        for path, label, accounts in runs:
            command = [sys.executable, "-c", PROBE, path, endpoint, str(accounts), regions, bench_org.EXTERNAL_ID, verify]
            proc = subprocess.run(command, capture_output=True, text=True, check=False)
            result = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-1500:]}
            print(json.dumps(dict(result, plugins=label, accounts=accounts, regions=args.regions)), flush=True)


if __name__ == "__main__":
    main()
