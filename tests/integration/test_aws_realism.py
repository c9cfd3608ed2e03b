"""The demo landing zone end to end on a sandbox as unkind as AWS (sandbox profile ``aws``).

On top of the profile (eventual consistency, token buckets, Delayed until expiry, long outputs, reboot re-runs,
compliance reported late, realistic durations on a scaled clock): 2 % server errors on every operation, 30 % of all
calls throttled, 15-minute credentials on a clock that makes the run last far longer, AWS's clock 10 minutes away
from the controller's, one canary's agent going offline during its wave and one instance terminated between
discovery and patching.

The assertions are the collection's invariants, counted from the sandbox's own state and logs, not timings:
no patch without a verified backup of this run, at most one AWS-RunPatchBaseline per instance per run, one CSV
row per instance seen with a reason for every failure, no AMI made twice or lost, no false backup failure.
"""

import collections
import os
import signal
import subprocess
import threading
import time

import yaml
from conftest import ANSIBLE_PLAYBOOK, REPO, Run, sessions

from sandbox.ec2.lookup import locate_by_name

# 1 wall second = 2 sandbox minutes: AMIs of 5-20 minutes, snapshots up to 30, patches of 3-15 and a command that
# stays Delayed for 2 h 10 min all fit in a few wall minutes, and 15-minute credentials expire several times.
TIME_SCALE = 120.0
CREDENTIAL_SECONDS = 900
FAILURE_STATUSES = ("failed", "timed_out", "cancelled", "undeliverable", "not_run")
OFFLINE_CANARY = "pay-eu-web-01"
TERMINATED = "pay-eu-app-01"


def realistic_landing_zone(tmp_path, max_failure_rate=50):
    """The demo landing zone with the timeouts a real one has (the demo's are sized for a sandbox that takes seconds)."""
    source = REPO / "inventories" / "demo" / ".landing_zone.yml"
    config = yaml.safe_load(source.read_text())
    lz = config["cms_patching_landing_zone"]
    lz["backup"].update(wait_timeout=7200, poll_interval=1, progress_interval=4)
    # Every wave runs to its end (the error budget and the stop rule are tested elsewhere): here the faults must not
    # stop the run before the instances they are meant to meet.
    lz["patching"].update(wait_timeout=10800, poll_interval=1, progress_interval=4, max_failure_rate=max_failure_rate, max_errors="100%")
    target = tmp_path / "lzs" / "realistic"
    target.mkdir(parents=True)
    (target / ".landing_zone.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp_path / "lzs"


def unkind(aws, skew):
    aws.state.update_settings(
        realism="aws",
        time_scale=TIME_SCALE,
        clock_skew_seconds=skew,
        server_error_rate=0.02,
        credential_max_seconds=CREDENTIAL_SECONDS,
    )
    aws.state.faults.add("throttle", operation="*", rate=0.3, seed=11)


def kind_again(aws):
    """Faults off, so the test's own reads of the outcome are not the thing under test."""
    aws.state.faults.remove(kind="throttle")
    aws.state.update_settings(server_error_rate=0.0, throttle_buckets=False, describe_visibility_seconds=0)


def start_playbook(env, *args):
    return subprocess.Popen(  # pylint: disable=consider-using-with
        [ANSIBLE_PLAYBOOK, "site.yml", "-e", "lz=realistic"] + list(args),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def follow(proc, on_line):
    """Read the playbook's output in a thread; on_line(line) may act on the sandbox. Returns the thread and the lines."""
    lines = []

    def pump():
        for line in proc.stdout:
            lines.append(line)
            on_line(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread, lines


def report_rows(lines, report_dir):
    output = "".join(lines)
    return Run(subprocess.CompletedProcess([], 0, stdout=output), report_dir).rows()


def install_commands(aws):
    return [c for c in aws.state.command_log() if c["document"] == "AWS-RunPatchBaseline" and c["parameters"].get("Operation") == ["Install"]]


def verified_backups(aws):
    """{instance_id: [image]} of every pre-patch AMI tagged verified-at, read from every demo account/region."""
    found = collections.defaultdict(list)
    for session in sessions(aws).values():
        for region in ("us-east-1", "eu-west-1"):
            ec2 = session.client("ec2", region_name=region, endpoint_url=aws.endpoint)
            for image in ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag-key", "Values": ["cms:patching:verified-at"]}])["Images"]:
                tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
                found[tags["cms:patching:instance-id"]].append(dict(image, _tags=tags))
    return found


def assert_invariants(aws, rows, run_id):
    instances = [r for r in rows if r["instance_id"]]
    # One row per instance seen (30 in the demo landing zone), each failure with its reason.
    assert len(instances) == 30 and len({r["instance_id"] for r in instances}) == 30, [r["name"] for r in instances]
    for row in instances:
        if row["backup_status"] == "failed" or (row["target"] == "true" and row["patch_status"] in FAILURE_STATUSES):
            assert row["error"].strip(), "no reason for %s: %s" % (row["name"], row)
    by_id = {r["instance_id"]: r for r in instances}
    # At most one AWS-RunPatchBaseline Install per instance per run, counted from the sandbox's own command log.
    sends = collections.Counter(i for c in install_commands(aws) for i in c["instance_ids"])
    assert sends and max(sends.values()) == 1, {by_id.get(i, {}).get("name", i): n for i, n in sends.items() if n > 1}
    # No patch without a verified backup of this run, made before the command was sent.
    images = aws.state.describe()["images"]
    backups = verified_backups(aws)
    for command in install_commands(aws):
        for instance_id in command["instance_ids"]:
            ours = [b for b in backups.get(instance_id, []) if b["_tags"].get("cms:patching:run-id") == run_id]
            assert ours, "%s was patched without a verified backup of run %s" % (instance_id, run_id)
            truth = [i for i in images if i["image_id"] == ours[0]["ImageId"]][0]
            assert truth["state"] == "available" and set(truth["snapshots"].values()) == {"completed"}, truth
            assert truth["created_at"] < command["requested_at"]
    # No AMI made twice, none lost: one image per instance that was backed up, every verified row names it.
    made = collections.Counter(i["instance_id"] for i in images)
    assert max(made.values()) == 1, {by_id.get(i, {}).get("name", i): n for i, n in made.items() if n > 1}
    for row in instances:
        if row["backup_status"] == "verified":
            assert made[row["instance_id"]] == 1 and row["ami_id"] in {i["image_id"] for i in images}
    # No false backup failure: no instance whose AMI the sandbox completed (image available, every snapshot
    # completed) is reported failed (a resumed run may skip an instance that is rebooting, never fail its backup).
    for image in images:
        if image["state"] == "available" and set(image["snapshots"].values()) == {"completed"}:
            assert by_id[image["instance_id"]]["backup_status"] != "failed", by_id[image["instance_id"]]
    return by_id


def test_the_demo_on_an_unkind_aws_keeps_every_invariant(aws, lz_env, tmp_path, skew=600):
    """AWS's clock 10 minutes ahead of the controller's here; the resume test below runs with it 10 minutes behind."""
    env = dict(lz_env, CMS_PATCHING_LZ_PATH=str(realistic_landing_zone(tmp_path)))
    unkind(aws, skew)
    started = aws.state.now()
    terminated = locate_by_name(TERMINATED)
    acted = []

    offline = locate_by_name(OFFLINE_CANARY).instance.id
    watcher_done = threading.Event()

    def during_the_canary():
        # The canary wave has one slot (50 % of 2). As soon as its first command is out, the other canary's agent goes
        # offline: without pre-checks nothing stops its command, and SSM keeps the invocation Delayed until the command
        # expires. At the same moment an instance of the next wave is terminated (its SendCommand is then refused with
        # InvalidInstanceId for the whole request).
        while not watcher_done.is_set():
            sent = [c for c in aws.state.command_log() if c["document"] == "AWS-RunPatchBaseline" and "wave=canary" in c["comment"]]
            if sent:
                assert offline not in sent[0]["instance_ids"], "the canary meant to go offline was sent first: %s" % sent
                aws.state.faults.add("agent_offline", instance_name=OFFLINE_CANARY)
                terminated.instance.ec2_backend.terminate_instances([terminated.instance.id])
                acted.append(sent[0])
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=during_the_canary, daemon=True)
    watcher.start()
    # No pre-checks, so the offline agent is sent its patch (with them, it is skipped with the reason: tested elsewhere).
    proc = start_playbook(env, "-e", '{"patching_pre_checks": {"ssm_online": false, "ec2_status": false}}')
    thread, lines = follow(proc, lambda line: None)
    try:
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    thread.join(timeout=30)
    watcher_done.set()
    output = "".join(lines)
    assert acted, output[-3000:]
    assert proc.returncode == 2, output[-4000:]
    kind_again(aws)
    rows = report_rows(lines, tmp_path / "reports")
    run_id = rows[0]["run_id"]
    by_name = {r["name"]: r for r in assert_invariants(aws, rows, run_id).values()}

    # The run outlived its credentials several times over, and none of its calls was refused for that in the end.
    assert aws.state.now() - started > 3 * CREDENTIAL_SECONDS
    assert "ExpiredToken" not in output and "RequestExpired" not in output
    counts = aws.state.calls.snapshot()
    assert counts["throttled_total"] > 0 and counts["server_errors_total"] > 0
    # The faults had their effect, each reported with its reason.
    assert by_name["web-03"]["backup_status"] == "failed" and by_name["web-03"]["patch_status"] != "success"
    outcomes = {n: (r["patch_status"], r["error"]) for n, r in by_name.items()}
    assert by_name["pay-web-02"]["patch_status"] == "failed" and by_name["pay-web-02"]["error"], outcomes
    offline_row = by_name[OFFLINE_CANARY]
    assert offline_row["patch_status"] in ("timed_out", "undeliverable", "cancelled") and offline_row["error"], offline_row
    assert by_name[TERMINATED]["patch_status"] == "undeliverable", by_name[TERMINATED]
    # Everything else with a verified backup was patched: the terminated instance did not take its 50-ID chunk down.
    healthy = [r for r in by_name.values() if r["backup_status"] == "verified" and r["name"] not in (OFFLINE_CANARY, TERMINATED, "pay-web-02")]
    assert healthy and all(r["patch_status"] == "success" for r in healthy), [(r["name"], r["patch_status"], r["error"]) for r in healthy]
    # Compliance belongs to this run's operation (never a stale scan read as this run's result).
    assert all(r["compliance"] in ("COMPLIANT", "NON_COMPLIANT") for r in healthy), [(r["name"], r["compliance"]) for r in healthy]


def test_a_run_and_two_resumes_under_skew_send_each_patch_once(aws, lz_env, tmp_path, skew=-600):
    """Interrupted twice (Ctrl-C during each wave), resumed twice: every instance gets AWS-RunPatchBaseline exactly once."""
    env = dict(lz_env, CMS_PATCHING_LZ_PATH=str(realistic_landing_zone(tmp_path, max_failure_rate=100)))
    aws.state.update_settings(realism="aws", time_scale=TIME_SCALE, clock_skew_seconds=skew, server_error_rate=0.02)
    run_id = "20261127T120000Z-skewed"
    for wave in ("canary", "rest"):
        proc = start_playbook(env, "-e", "run_id=" + run_id)
        seen = threading.Event()
        thread, lines = follow(proc, lambda line, w=wave: seen.set() if "TASK [cms.patching.patching : Patch wave %s]" % w in line else None)
        assert seen.wait(600), "".join(lines)[-3000:]
        time.sleep(3)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
        thread.join(timeout=30)
    proc = start_playbook(env, "-e", "run_id=" + run_id)
    thread, lines = follow(proc, lambda line: None)
    proc.wait(timeout=900)
    thread.join(timeout=30)
    assert proc.returncode == 2, "".join(lines)[-4000:]
    kind_again(aws)
    rows = report_rows(lines, tmp_path / "reports")
    by_id = assert_invariants(aws, rows, run_id)
    sends = collections.Counter(i for c in install_commands(aws) for i in c["instance_ids"])
    verified = [i for i, r in by_id.items() if r["backup_status"] == "verified"]
    # Exactly once: every instance behind the gate got its one patch across the three runs.
    assert sorted(sends) == sorted(verified) and set(sends.values()) == {1}
