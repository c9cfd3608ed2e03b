"""The shipped IAM policies (iam/*.json), Resource and Condition elements included, evaluated against what a sandbox run
touched: the AMIs and snapshots a backup made (ARNs and tags read back from the sandbox), the commands a patch run sent,
the roles the caller assumes - and against what the policies must refuse.

moto, which enforces the policies in the integration test, evaluates only their Action elements. Here a small evaluator
does the rest. It is NOT a general IAM engine: it knows exactly what these policies use - Allow statements, Action and
Resource with ``*``/``?`` wildcards, policy variables ``${aws:PrincipalTag/...}``, and the condition operators
StringEquals, StringLike, ForAllValues:StringEquals and Null, with AWS's rules for them (keys in one operator AND-ed,
values of one key OR-ed; a missing key fails StringEquals/StringLike; ForAllValues is true for a missing or empty key,
hence the Null guard next to it; Null "false" means "the key is present"). A request is allowed when every resource it
touches is allowed by some statement (EC2 and SSM authorise each resource of a request). Anything else in a policy
(Deny, NotAction, another operator) fails the test rather than being evaluated wrongly.

The request contexts follow the Service Authorization Reference (docs.aws.amazon.com/service-authorization/latest/
reference/list_amazonec2.html, list_awssystemsmanager.html, list_awssecuritytokenservice.html): CreateImage authorises
the instance, the image and each snapshot, with aws:RequestTag/* from TagSpecifications; tags given at creation are
authorised as ec2:CreateTags with ec2:CreateAction = CreateImage; a later CreateTags sees the resource's own tags as
aws:ResourceTag/* and the keys it adds as aws:TagKeys; SendCommand authorises the document and each instance.
"""

import json
import pathlib
import re

import boto3
import pytest
from demo_fleet import BACKUP_OPTIONS, DEMO_RULES, PATCH_OPTIONS, ROLLBACK_OPTIONS

from ansible_collections.cms.patching.plugins.module_utils._backup import BackupRun
from ansible_collections.cms.patching.plugins.module_utils._patch import PatchRun
from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy
from ansible_collections.cms.patching.plugins.module_utils._rollback import RollbackRun
from ansible_collections.cms.patching.plugins.module_utils._run_claim import RetentionClaim
from ansible_collections.cms.patching.plugins.module_utils._scan import scan
from ansible_collections.cms.patching.plugins.module_utils._session import FleetSession
from sandbox import Sandbox

REPO = pathlib.Path(__file__).resolve().parents[2]
IAM = REPO / "iam"
LZ_TAG = "cms:patching:lz"
PRINCIPAL = {"aws:PrincipalTag/cms:patching:lz": "demo"}
OWN = "123456789012"
REGION = "us-east-1"

# Actions with resource-level permissions (the reference's "Resource types" column is not empty), as the policies use
# them; every other action must be granted on "*" or it is never allowed.
RESOURCE_LEVEL = {
    "ec2:CreateImage": ("instance", "image", "snapshot"),
    "ec2:CreateTags": ("image", "snapshot", "volume", "replace-root-volume-task"),
    "ec2:CreateReplaceRootVolumeTask": ("instance", "replace-root-volume-task", "volume", "image", "snapshot"),
    "ec2:CreateVolume": ("volume", "snapshot"),
    "ec2:StartInstances": ("instance",),
    "ec2:StopInstances": ("instance",),
    "ec2:AttachVolume": ("instance", "volume"),
    "ec2:DetachVolume": ("instance", "volume"),
    "kms:CreateGrant": ("key",),
    "kms:Decrypt": ("key",),
    "kms:DescribeKey": ("key",),
    "kms:GenerateDataKeyWithoutPlaintext": ("key",),
    "kms:ReEncryptFrom": ("key",),
    "kms:ReEncryptTo": ("key",),
    "ec2:DeregisterImage": ("image",),
    "ec2:DeleteSnapshot": ("snapshot",),
    "ssm:SendCommand": ("document", "instance"),
    "ssm:GetParameters": ("parameter",),
    "ssm:PutParameter": ("parameter",),
    "sts:AssumeRole": ("role",),
}
SUPPORTED_OPERATORS = {"StringEquals", "StringLike", "ForAllValues:StringEquals", "Null"}


# -- the evaluator --------------------------------------------------------------------------------------------------


def policy(name):
    return json.loads((IAM / ("%s.json" % name)).read_text())


def _listed(value):
    return value if isinstance(value, list) else [value]


def _wildcard(pattern, value, case_sensitive=True):
    """IAM's matching: ``*`` any run of characters (including none, and ':' or '/'), ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


def _substitute(value, context):
    def variable(match):
        if match.group(1) not in context:
            raise KeyError("policy variable %s has no value in this request" % match.group(1))
        return context[match.group(1)]

    return re.sub(r"\$\{([^}]+)\}", variable, value)


def _condition_holds(operator, key, expected, context):
    expected = [_substitute(v, context) for v in _listed(expected)]
    actual = context.get(key)
    if operator == "Null":
        return (actual is None) == (expected[0] == "true")
    if operator == "ForAllValues:StringEquals":
        return all(value in expected for value in _listed(actual or []))
    if actual is None:
        return False
    if operator == "StringEquals":
        return any(value in expected for value in _listed(actual))
    if operator == "StringLike":
        return any(_wildcard(pattern, value) for pattern in expected for value in _listed(actual))
    raise AssertionError("operator %s is not supported by this evaluator" % operator)


def statement_allows(statement, action, resource, context):
    assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement, statement
    if not any(_wildcard(a, action, case_sensitive=False) for a in _listed(statement["Action"])):
        return False
    if not any(_wildcard(_substitute(r, context), resource) for r in _listed(statement["Resource"])):
        return False
    for operator, keys in statement.get("Condition", {}).items():
        assert operator in SUPPORTED_OPERATORS, operator
        if not all(_condition_holds(operator, key, expected, context) for key, expected in keys.items()):
            return False
    return True


def allowed(policies, action, resources, context=None):
    """True when, for every (resource ARN, its own context), some statement of ``policies`` allows ``action``."""
    for resource, own in resources:
        merged = dict(PRINCIPAL, **(context or {}), **(own or {}))
        if not any(statement_allows(s, action, resource, merged) for p in policies for s in p["Statement"]):
            return False
    return True


def resource_tags(tags):
    return {"aws:ResourceTag/%s" % t["Key"]: t["Value"] for t in tags or []}


def request_tags(tags):
    return dict({"aws:RequestTag/%s" % t["Key"]: t["Value"] for t in tags}, **{"aws:TagKeys": [t["Key"] for t in tags]})


def image_arn(image_id, region=REGION):
    return "arn:aws:ec2:%s::image/%s" % (region, image_id)


def snapshot_arn(snapshot_id, region=REGION):
    return "arn:aws:ec2:%s::snapshot/%s" % (region, snapshot_id)


def instance_arn(instance_id, account=OWN, region=REGION):
    return "arn:aws:ec2:%s:%s:instance/%s" % (region, account, instance_id)


def volume_arn(volume_id, account=OWN, region=REGION):
    return "arn:aws:ec2:%s:%s:volume/%s" % (region, account, volume_id)


def document_arn(name, region=REGION):
    return "arn:aws:ssm:%s::document/%s" % (region, name)


# -- what a sandbox run touched ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serving(request):
    """The sandbox this process already serves (tests/unit/sandbox's conftest may have started it), else the session's."""
    return Sandbox.running() or request.getfixturevalue("sandbox")


@pytest.fixture(scope="module")
def touched(serving):
    """Back up web-01 (two volumes) and web-02 and patch them with a health command, as the modules do; then read back
    the images and snapshots the run made, with their tags, and the commands it sent."""
    sandbox = serving
    sandbox.reset()
    sandbox.seed("demo")
    connection = dict(region=REGION, endpoint_url=sandbox.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    fleet = FleetSession(connection, [{"account_id": OWN}], policy=RetryPolicy(base_delay=0.01, max_delay=0.02, sleep=lambda s: None))
    records, _errors = scan(fleet, [OWN], [REGION], {"tag:Environment": "demo"}, DEMO_RULES)
    targets = [r for r in records if r["name"] in ("web-01", "web-02", "app-win-01")]
    results = BackupRun(fleet, targets, "run-1", "demo", BACKUP_OPTIONS, clock=sandbox.state.now, sleep=sandbox.state.clock.advance).run()
    assert {r["backup_status"] for r in results} == {"verified"}
    patch_options = dict(
        PATCH_OPTIONS,
        lz="demo",
        post_checks={"command": "echo healthy", "windows_command": "Write-Output healthy", "timeout": 120},
        run_started=sandbox.state.now() - 3600,
    )
    patched = PatchRun(fleet, targets, "run-1", patch_options, False, sandbox.state.now, sandbox.state.clock.advance).run()
    assert {r["patch_status"] for r in patched} == {"success"}, [(r["patch_status"], r["error"]) for r in patched]
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=sandbox.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    images = ec2.describe_images(Owners=["self"])["Images"]
    snapshot_ids = [m["Ebs"]["SnapshotId"] for i in images for m in i["BlockDeviceMappings"] if "Ebs" in m]
    snapshots = ec2.describe_snapshots(SnapshotIds=snapshot_ids)["Snapshots"]
    foreign_image = ec2.describe_images(Owners=["amazon"])["Images"][0]
    # Someone else's snapshot in the same account: no tags at all.
    foreign_snapshot = ec2.create_snapshot(VolumeId=ec2.describe_volumes()["Volumes"][0]["VolumeId"])
    # Roll web-01 (root and data volume) back to its verified AMI of run-1, as ec2_rollback does; then read back the volumes
    # it made (restored) and the ones it took off (replaced), with their tags.
    web01 = [t for t in targets if t["name"] == "web-01"]
    rolled = RollbackRun(fleet, [dict(i) for i in web01], "run-1", ROLLBACK_OPTIONS, False, sandbox.state.now, sandbox.state.clock.advance).run()
    assert [r["rollback_status"] for r in rolled] == ["rolled_back"], rolled
    volumes = ec2.describe_volumes(Filters=[{"Name": "tag-key", "Values": ["cms:patching:rollback-run-id"]}])["Volumes"]
    # Retention's claim of the run, as a job claims it; its ARN read back from Parameter Store.
    claim = RetentionClaim(fleet, (OWN, REGION), "demo", "run-1", "AWX job 801", sleep=lambda s: None)
    assert claim.acquire()["won"]
    ssm = boto3.client("ssm", region_name=REGION, endpoint_url=sandbox.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    [claim_parameter] = ssm.get_parameters(Names=[claim.name])["Parameters"]
    return {
        "claim_arn": claim_parameter["ARN"],
        "targets": targets,
        "volumes": volumes,
        "images": images,
        "snapshots": snapshots,
        "commands": sandbox.state.describe()["commands"],
        "foreign_image": foreign_image,
        "foreign_snapshot": foreign_snapshot,
    }


def our_tags(touched):
    """The tags CreateImage put on the run's images and snapshots (TagSpecifications): what they carry minus verified-at."""
    return [t for t in touched["images"][0]["Tags"] if t["Key"] != "cms:patching:verified-at"]


def test_the_run_made_what_the_conditions_rely_on(touched):
    assert len(touched["images"]) == 3 and len(touched["snapshots"]) == 4  # web-01 has a data volume
    for resource in touched["images"] + touched["snapshots"]:
        tags = {t["Key"]: t["Value"] for t in resource["Tags"]}
        assert tags["cms:patching"] == "pre-patch" and tags[LZ_TAG] == "demo"
    assert all("cms:patching:verified-at" in {t["Key"] for t in i["Tags"]} for i in touched["images"])


# -- backup ----------------------------------------------------------------------------------------------------------------


def test_backup_allows_each_create_image_the_run_made(touched):
    backup = [policy("backup")]
    context = request_tags(our_tags(touched))
    for image in touched["images"]:
        instance_id = {t["Key"]: t["Value"] for t in image["Tags"]}["cms:patching:instance-id"]
        snaps = [snapshot_arn(m["Ebs"]["SnapshotId"]) for m in image["BlockDeviceMappings"] if "Ebs" in m]
        resources = [(instance_arn(instance_id), None), (image_arn(image["ImageId"]), None)] + [(s, None) for s in snaps]
        assert allowed(backup, "ec2:CreateImage", resources, context)
        # The tags given in TagSpecifications: authorised as CreateTags during CreateImage.
        creating = dict(context, **{"ec2:CreateAction": "CreateImage"})
        assert allowed(backup, "ec2:CreateTags", [(image_arn(image["ImageId"]), None)] + [(s, None) for s in snaps], creating)


def test_backup_refuses_an_image_not_tagged_as_ours_or_for_another_landing_zone(touched):
    backup = [policy("backup")]
    image = (image_arn("ami-0123456789abcdef0"), None)
    untagged = {"aws:TagKeys": []}
    assert not allowed(backup, "ec2:CreateImage", [image], untagged)
    other_lz = request_tags([dict(t, Value="prod") if t["Key"] == LZ_TAG else t for t in our_tags(touched)])
    assert not allowed(backup, "ec2:CreateImage", [image], other_lz)


def test_backup_marks_only_its_own_images_verified(touched):
    backup = [policy("backup")]
    verified_at = request_tags([{"Key": "cms:patching:verified-at", "Value": "2026-12-01T12:00:00Z"}])
    for image in touched["images"]:
        assert allowed(backup, "ec2:CreateTags", [(image_arn(image["ImageId"]), resource_tags(image["Tags"]))], verified_at)
    # A foreign, untagged image or snapshot: refused, whatever the tag.
    foreign = [
        (image_arn(touched["foreign_image"]["ImageId"]), resource_tags(touched["foreign_image"].get("Tags"))),
        (snapshot_arn(touched["foreign_snapshot"]["SnapshotId"]), resource_tags(touched["foreign_snapshot"].get("Tags"))),
    ]
    for resource in foreign:
        assert not allowed(backup, "ec2:CreateTags", [resource], verified_at)
        # Tagging it as ours (so that retention would then delete it) is refused too.
        assert not allowed(backup, "ec2:CreateTags", [resource], request_tags(our_tags(touched)))
    # Our own image: no other key may be added or rewritten after creation (e.g. moving it to another landing zone).
    ours = [(image_arn(touched["images"][0]["ImageId"]), resource_tags(touched["images"][0]["Tags"]))]
    assert not allowed(backup, "ec2:CreateTags", ours, request_tags([{"Key": LZ_TAG, "Value": "prod"}]))
    assert not allowed(backup, "ec2:CreateTags", ours, request_tags([{"Key": "Owner", "Value": "me"}]))
    # An instance is never taggable by the backup policy.
    assert not allowed(
        backup, "ec2:CreateTags", [(instance_arn(touched["targets"][0]["instance_id"]), None)], dict(verified_at, **{"ec2:CreateAction": "CreateImage"})
    )


def test_backup_marks_no_image_of_another_landing_zone(touched):
    backup = [policy("backup")]
    image = touched["images"][0]
    theirs = [dict(t, Value="prod") if t["Key"] == LZ_TAG else t for t in image["Tags"]]
    verified_at = request_tags([{"Key": "cms:patching:verified-at", "Value": "2026-12-01T12:00:00Z"}])
    assert not allowed(backup, "ec2:CreateTags", [(image_arn(image["ImageId"]), resource_tags(theirs))], verified_at)


# -- retention ---------------------------------------------------------------------------------------------------------


def test_retention_may_retire_every_image_and_snapshot_the_run_made(touched):
    retention = [policy("retention")]
    for image in touched["images"]:
        assert allowed(retention, "ec2:DeregisterImage", [(image_arn(image["ImageId"]), resource_tags(image["Tags"]))])
    for snap in touched["snapshots"]:
        assert allowed(retention, "ec2:DeleteSnapshot", [(snapshot_arn(snap["SnapshotId"]), resource_tags(snap["Tags"]))])


def test_retention_claims_only_its_landing_zones_parameters(touched):
    retention = [policy("retention")]
    claim = touched["claim_arn"]
    assert claim == "arn:aws:ssm:%s:%s:parameter/cms-patching/demo/run-1/retention/1" % (REGION, OWN)
    for action in ("ssm:PutParameter", "ssm:GetParameters"):
        assert allowed(retention, action, [(claim, None)])
    for other in ("cms-patching/prod/run-1/retention/1", "cms-patching/demo-eu/run-1/retention/1", "golden/web-ami", "cms-patching/demo"):
        assert not allowed(retention, "ssm:PutParameter", [("arn:aws:ssm:%s:%s:parameter/%s" % (REGION, OWN, other), None)]), other
    # A role of another landing zone cannot claim (or overwrite the claim of) this one's run.
    assert not allowed(retention, "ssm:PutParameter", [(claim, {"aws:PrincipalTag/cms:patching:lz": "prod"})])
    for name in ("backup", "patching", "discovery", "rollback"):
        assert not allowed([policy(name)], "ssm:PutParameter", [(claim, None)]), name


def test_retention_refuses_foreign_and_other_landing_zone_resources(touched):
    retention = [policy("retention")]
    foreign_image = touched["foreign_image"]
    assert not allowed(retention, "ec2:DeregisterImage", [(image_arn(foreign_image["ImageId"]), resource_tags(foreign_image.get("Tags")))])
    snap = touched["foreign_snapshot"]
    assert not allowed(retention, "ec2:DeleteSnapshot", [(snapshot_arn(snap["SnapshotId"]), resource_tags(snap.get("Tags")))])
    image = touched["images"][0]
    other_lz = [dict(t, Value="prod") if t["Key"] == LZ_TAG else t for t in image["Tags"]]
    assert not allowed(retention, "ec2:DeregisterImage", [(image_arn(image["ImageId"]), resource_tags(other_lz))])
    not_pre_patch = [dict(t, Value="golden") if t["Key"] == "cms:patching" else t for t in image["Tags"]]
    assert not allowed(retention, "ec2:DeregisterImage", [(image_arn(image["ImageId"]), resource_tags(not_pre_patch))])
    # Nothing else of the run is deletable either: an instance is not an image.
    assert not allowed(retention, "ec2:DeregisterImage", [(instance_arn(touched["targets"][0]["instance_id"]), None)])


# -- rollback ----------------------------------------------------------------------------------------------------------


def _tags_of(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def test_rollback_allows_what_the_sandbox_rollback_did(touched):
    rollback = [policy("rollback")]
    web01 = [t for t in touched["targets"] if t["name"] == "web-01"][0]
    instance = (instance_arn(web01["instance_id"]), None)
    image = [i for i in touched["images"] if _tags_of(i)["cms:patching:instance-id"] == web01["instance_id"]][0]
    restored = [v for v in touched["volumes"] if "cms:patching:restored-by-rollback" in _tags_of(v)]
    replaced = [v for v in touched["volumes"] if "cms:patching:replaced-by-rollback" in _tags_of(v)]
    assert restored and replaced  # the data volume: one made from its snapshot, the old one kept and marked
    # Root volume: a task from our own verified image.
    task = "arn:aws:ec2:%s:%s:replace-root-volume-task/replacevol-1" % (REGION, OWN)
    task_tags = request_tags([{"Key": "cms:patching:rollback-run-id", "Value": "run-1"}, {"Key": "cms:patching:instance-id", "Value": web01["instance_id"]}])
    resources = [instance, (task, None), (image_arn(image["ImageId"]), resource_tags(image["Tags"]))]
    assert allowed(rollback, "ec2:CreateReplaceRootVolumeTask", resources, task_tags)
    assert allowed(rollback, "ec2:CreateTags", [(task, None)], dict(task_tags, **{"ec2:CreateAction": "CreateReplaceRootVolumeTask"}))
    snapshots = {s["SnapshotId"]: s for s in touched["snapshots"]}
    for volume in restored:
        tags = _tags_of(volume)
        source = snapshots[volume["SnapshotId"]]
        assert tags["cms:patching:rollback-source"] == volume["SnapshotId"]
        created = request_tags(list(volume["Tags"]))
        resources = [(volume_arn(volume["VolumeId"]), None), (snapshot_arn(source["SnapshotId"]), resource_tags(source["Tags"]))]
        assert allowed(rollback, "ec2:CreateVolume", resources, created)
        assert allowed(rollback, "ec2:CreateTags", [(volume_arn(volume["VolumeId"]), None)], dict(created, **{"ec2:CreateAction": "CreateVolume"}))
        assert allowed(rollback, "ec2:AttachVolume", [instance, (volume_arn(volume["VolumeId"]), resource_tags(volume["Tags"]))])
    for volume in replaced:
        # Marked before anything changed (mark_old), then detached, then marked replaced: each with the rollback keys only.
        mark_old = ("cms:patching:rollback-run-id", "cms:patching:original-of-rollback", "cms:patching:instance-id", "cms:patching:rollback-device")
        mark_replaced = ("cms:patching:replaced-by-rollback", "cms:patching:replaced-at")
        for keys in (mark_old, mark_replaced):
            marks = request_tags([t for t in volume["Tags"] if t["Key"] in keys])
            assert allowed(rollback, "ec2:CreateTags", [(volume_arn(volume["VolumeId"]), None)], marks)
        assert allowed(rollback, "ec2:DetachVolume", [instance, (volume_arn(volume["VolumeId"]), resource_tags(volume["Tags"]))])
    for action in ("ec2:StopInstances", "ec2:StartInstances"):
        assert allowed(rollback, action, [instance])


def test_rollback_refuses_foreign_sources_unmarked_volumes_and_other_tags(touched):
    rollback = [policy("rollback")]
    instance = (instance_arn(touched["targets"][0]["instance_id"]), None)
    volume = touched["volumes"][0]
    restored_tags = request_tags([{"Key": "cms:patching:restored-by-rollback", "Value": "run-1"}, {"Key": "cms:patching:rollback-run-id", "Value": "run-1"}])
    new_volume = (volume_arn("vol-0123456789abcdef0"), None)
    # A volume from someone else's snapshot, from another landing zone's, or a volume not tagged as restored: refused.
    foreign = touched["foreign_snapshot"]
    assert not allowed(rollback, "ec2:CreateVolume", [new_volume, (snapshot_arn(foreign["SnapshotId"]), resource_tags(foreign.get("Tags")))], restored_tags)
    ours = touched["snapshots"][0]
    other_lz = [dict(t, Value="prod") if t["Key"] == LZ_TAG else t for t in ours["Tags"]]
    assert not allowed(rollback, "ec2:CreateVolume", [new_volume, (snapshot_arn(ours["SnapshotId"]), resource_tags(other_lz))], restored_tags)
    assert not allowed(rollback, "ec2:CreateVolume", [new_volume, (snapshot_arn(ours["SnapshotId"]), resource_tags(ours["Tags"]))], {"aws:TagKeys": []})
    # A root volume replaced from a foreign image: refused.
    image = touched["foreign_image"]
    assert not allowed(rollback, "ec2:CreateReplaceRootVolumeTask", [instance, (image_arn(image["ImageId"]), resource_tags(image.get("Tags")))])
    # Tags: never our backup tags (which would make retention delete the resource), never on images, snapshots or instances.
    volume_resource = (volume_arn(volume["VolumeId"]), None)
    assert not allowed(rollback, "ec2:CreateTags", [volume_resource], request_tags([{"Key": "cms:patching", "Value": "pre-patch"}]))
    marks = request_tags([{"Key": "cms:patching:rollback-run-id", "Value": "run-1"}])
    for resource in ((snapshot_arn(ours["SnapshotId"]), None), (image_arn(touched["images"][0]["ImageId"]), None), instance):
        assert not allowed(rollback, "ec2:CreateTags", [resource], marks)
    # Attach / detach only volumes the rollback marked first: an application's own volume stays where it is.
    assert not allowed(rollback, "ec2:DetachVolume", [instance, (volume_arn("vol-0fedcba9876543210"), resource_tags([{"Key": "Name", "Value": "db"}]))])
    # Rollback deletes nothing and sends no other document.
    actions = {a for st in rollback[0]["Statement"] for a in _listed(st["Action"])}
    assert not [a for a in actions if a.split(":")[1].startswith(("Delete", "Deregister", "Terminate", "Modify"))]
    assert not allowed(rollback, "ssm:SendCommand", [(document_arn("AWS-RunRemoteScript"), None)])


# -- patching ----------------------------------------------------------------------------------------------------------


def _command_resources(command):
    return [(document_arn(command["document"], command["region"]), None)] + [
        (instance_arn(i, command["account"], command["region"]), None) for i in command["invocations"]
    ]


def test_patching_allows_every_command_the_run_sent(touched):
    patching = [policy("patching")]
    documents = {c["document"] for c in touched["commands"]}
    assert documents == {"AWS-RunPatchBaseline", "AWS-RunShellScript", "AWS-RunPowerShellScript"}
    for command in touched["commands"]:
        assert allowed(patching, "ssm:SendCommand", _command_resources(command))


def test_health_command_documents_come_from_their_own_statement(touched):
    """Without a health command the statement can go: AWS-RunPatchBaseline still works, shell scripts no longer do."""
    without = policy("patching")
    without["Statement"] = [s for s in without["Statement"] if s["Sid"] != "SendHealthCheckCommandsOnlyWhenACommandIsConfigured"]
    for command in touched["commands"]:
        assert allowed([without], "ssm:SendCommand", _command_resources(command)) == (command["document"] == "AWS-RunPatchBaseline")


def test_patching_refuses_other_documents(touched):
    patching = [policy("patching")]
    instance = (instance_arn(touched["targets"][0]["instance_id"]), None)
    for document in ("AWS-ApplyPatchBaseline", "AWS-RunRemoteScript", "AWS-RunPatchBaselineAssociation"):
        assert not allowed(patching, "ssm:SendCommand", [(document_arn(document), None), instance])
    # A customer document of the same name is not Amazon's (its ARN has an account).
    assert not allowed(patching, "ssm:SendCommand", [("arn:aws:ssm:us-east-1:%s:document/AWS-RunPatchBaseline" % OWN, None), instance])


# -- every scoped statement is used ----------------------------------------------------------------------------------------


def run_requests(touched):
    """(policy, action, [(resource, its context)], request context) of every scoped write the run made."""
    created = request_tags(our_tags(touched))
    verified_at = request_tags([{"Key": "cms:patching:verified-at", "Value": "2026-12-01T12:00:00Z"}])
    requests = []
    for image in touched["images"]:
        instance_id = {t["Key"]: t["Value"] for t in image["Tags"]}["cms:patching:instance-id"]
        snaps = [(snapshot_arn(m["Ebs"]["SnapshotId"]), None) for m in image["BlockDeviceMappings"] if "Ebs" in m]
        requests.append(("backup", "ec2:CreateImage", [(instance_arn(instance_id), None), (image_arn(image["ImageId"]), None)] + snaps, created))
        requests.append(("backup", "ec2:CreateTags", [(image_arn(image["ImageId"]), None)] + snaps, dict(created, **{"ec2:CreateAction": "CreateImage"})))
        requests.append(("backup", "ec2:CreateTags", [(image_arn(image["ImageId"]), resource_tags(image["Tags"]))], verified_at))
        requests.append(("retention", "ec2:DeregisterImage", [(image_arn(image["ImageId"]), resource_tags(image["Tags"]))], None))
    for snap in touched["snapshots"]:
        requests.append(("retention", "ec2:DeleteSnapshot", [(snapshot_arn(snap["SnapshotId"]), resource_tags(snap["Tags"]))], None))
    for command in touched["commands"]:
        requests.append(("patching", "ssm:SendCommand", _command_resources(command), None))
    # Not made by this run (no launch template names its AMI as resolve:ssm:<parameter>): what retention reads when one
    # does, an AWS public parameter (no account in its ARN) and the customer's own.
    for parameter in (
        "arn:aws:ssm:us-east-1::parameter/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2",
        "arn:aws:ssm:us-east-1:%s:parameter/golden/web-ami" % OWN,
    ):
        requests.append(("retention", "ssm:GetParameters", [(parameter, None)], None))
    for action in ("ssm:GetParameters", "ssm:PutParameter"):
        requests.append(("retention", action, [(touched["claim_arn"], None)], None))
    for role in ("CmsPatchingRole", "CmsInventoryReadOnly"):
        requests.append(("caller-assume-role", "sts:AssumeRole", [("arn:aws:iam::210987654321:role/%s" % role, None)], None))
    return requests


def test_every_scoped_statement_allows_something_the_run_did(touched):
    """No dead statement: each statement with resource ARNs or conditions allows at least one resource of a request the
    run made (a statement whose ARN pattern or condition never matches what the collection does would be a silent gap)."""
    requests = run_requests(touched)
    for name in ("backup", "patching", "retention", "caller-assume-role"):
        for statement in policy(name)["Statement"]:
            if _listed(statement["Resource"]) == ["*"] and "Condition" not in statement:
                continue
            used = [
                (action, resource)
                for phase, action, resources, context in requests
                if phase == name
                for resource, own in resources
                if statement_allows(statement, action, resource, dict(PRINCIPAL, **(context or {}), **(own or {})))
            ]
            assert used, "%s: statement %s allows nothing the run did" % (name, statement["Sid"])


def test_every_scoped_request_of_the_run_is_allowed_by_its_phase_policy(touched):
    for phase, action, resources, context in run_requests(touched):
        assert allowed([policy(phase)], action, resources, context), (phase, action, resources)


# -- the caller, the roles and the shape of every policy -------------------------------------------------------------------


def test_the_caller_assumes_only_the_landing_zone_roles():
    caller = [policy("caller-assume-role")]
    assert allowed(caller, "sts:AssumeRole", [("arn:aws:iam::210987654321:role/CmsPatchingRole", None)])
    assert allowed(caller, "sts:AssumeRole", [("arn:aws:iam::210987654321:role/CmsInventoryReadOnly", None)])
    assert not allowed(caller, "sts:AssumeRole", [("arn:aws:iam::210987654321:role/OrganizationAccountAccessRole", None)])
    assert not allowed(caller, "sts:AssumeRole", [("arn:aws:iam::210987654321:role/CmsPatchingRoleAdmin", None)])


def test_read_only_policies_grant_only_reads():
    for name in ("discovery", "inventory-read-only"):
        actions = {a for s in policy(name)["Statement"] for a in _listed(s["Action"])}
        assert all(a.split(":")[1].startswith(("Describe", "List", "Get")) for a in actions), actions


@pytest.mark.parametrize("path", sorted(IAM.glob("*.json")), ids=lambda p: p.name)
def test_policy_shape(path):
    """Valid JSON, unique Sids, no wildcard actions, and an action without resource-level permissions on "*" only (a
    statement scoping it to ARNs would never allow it); a resource-level action only on ARNs of its resource types."""
    document = json.loads(path.read_text())
    assert document["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in document["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in document["Statement"]:
        for action in _listed(statement["Action"]):
            assert "*" not in action and "?" not in action
            resources = _listed(statement["Resource"])
            if action not in RESOURCE_LEVEL:
                assert resources == ["*"], (path.name, statement["Sid"], action)
                continue
            for arn in resources:
                kind = re.match(r"arn:aws:[a-z0-9-]+:[^:]*:[^:]*:([a-z-]+)/", arn)
                assert kind and kind.group(1) in RESOURCE_LEVEL[action], (path.name, statement["Sid"], arn)


def test_readmes_point_at_every_policy_file():
    explained = (IAM / "README.md").read_text()
    pointed = (REPO / "README.md").read_text()
    for path in IAM.glob("*.json"):
        assert "`%s`" % path.name in explained and "iam/%s" % path.name in pointed, path.name


# -- the evaluator itself ------------------------------------------------------------------------------------------------


def test_evaluator_operators():
    assert _wildcard("arn:aws:ec2:*::image/*", "arn:aws:ec2:eu-west-1::image/ami-1")
    assert not _wildcard("arn:aws:ec2:*::image/*", "arn:aws:ec2:eu-west-1:123456789012:instance/i-1")
    assert _wildcard("arn:aws:iam::*:role/Cms?atchingRole", "arn:aws:iam::1:role/CmsPatchingRole")
    assert _condition_holds("StringEquals", "k", ["a", "b"], {"k": "b"})
    assert not _condition_holds("StringEquals", "k", "a", {})
    assert _condition_holds("StringEquals", "k", "${aws:PrincipalTag/x}", {"k": "v", "aws:PrincipalTag/x": "v"})
    with pytest.raises(KeyError):
        _condition_holds("StringEquals", "k", "${aws:PrincipalTag/x}", {"k": "v"})
    assert _condition_holds("StringLike", "k", "cms:*", {"k": "cms:patching"})
    assert _condition_holds("ForAllValues:StringEquals", "k", ["a"], {"k": ["a", "a"]})
    assert not _condition_holds("ForAllValues:StringEquals", "k", ["a"], {"k": ["a", "b"]})
    assert _condition_holds("ForAllValues:StringEquals", "k", ["a"], {})  # vacuously true: why the policies add Null
    assert _condition_holds("Null", "k", "false", {"k": ["a"]}) and not _condition_holds("Null", "k", "false", {})
    with pytest.raises(AssertionError):
        _condition_holds("DateGreaterThan", "k", "x", {"k": "y"})
