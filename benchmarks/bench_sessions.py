#!/usr/bin/env python
"""What one module process pays to reach every account and region of an organization (issue 11 item 2).

The sandbox (fast profile) seeds an Organizations tree of --accounts members with the patching role; a fresh Python
process then makes an EC2 and an SSM client for every account x region through FleetSession and the module's bounded
pool (fan_out, 8 workers), as discovery, backup and patching do on their first round: one AssumeRole per account. Its
peak RSS and wall time are printed; with --against REV the same is measured with the collection's plugins of that git
revision (e.g. the commit before the shared loader and client classes) for comparison.

Usage: python benchmarks/bench_sessions.py [--accounts 60,200] [--regions 3] [--against REV]
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

PROBE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._session import FleetSession
endpoint, accounts, regions = sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
members = [{"account_id": "3%011d" % i, "role_arn": "arn:aws:iam::3%011d:role/CmsPatchingRole" % i, "external_id": sys.argv[5]} for i in range(accounts)]
connection = dict(region="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
fleet = FleetSession(connection, members)
started = time.monotonic()
locations = [(m["account_id"], r) for m in members for r in regions]
outcomes = fan_out(lambda loc: (fleet.client("ec2", *loc), fleet.client("ssm", *loc)), locations, 8)
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
    args = parser.parse_args()
    sizes = [int(n) for n in args.accounts.split(",")]
    regions = ",".join(bench_org.REGIONS[: args.regions])
    with tempfile.TemporaryDirectory() as tmp, Sandbox.start() as sandbox:
        sandbox.seed_organization(bench_org.organization_spec(max(sizes)))
        runs = [(str(REPO / "collections"), "this checkout", n) for n in sizes]
        if args.against:
            old = pathlib.Path(tmp) / "ansible_collections" / "cms" / "patching"
            old.mkdir(parents=True)
            archive = subprocess.run(["git", "archive", args.against, "plugins"], cwd=REPO, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            runs.insert(0, (tmp, args.against, min(sizes)))
        for path, label, accounts in runs:
            command = [sys.executable, "-c", PROBE, path, sandbox.endpoint, str(accounts), regions, bench_org.EXTERNAL_ID]
            proc = subprocess.run(command, capture_output=True, text=True, check=False)
            result = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-1500:]}
            print(json.dumps(dict(result, plugins=label, accounts=accounts, regions=args.regions)), flush=True)


if __name__ == "__main__":
    main()
