"""Retention once per run: the claim in SSM Parameter Store (module_utils/_run_claim.py) against the sandbox, whose
PutParameter with Overwrite=false lets exactly one of racing creates win, as AWS does.

Won, lost to a job that holds it, lost to a job that finished it, carried on by the same claimant, taken over when
stale or failed, check mode (no write), and AWS errors that name the parameter, the account/region and the permissions.
"""

import json
import re
import threading

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import DEMO_ACCOUNTS, OWN_ACCOUNT
from fleet_helpers import fleet_for

from ansible_collections.cms.patching.plugins.module_utils import _retention, _run_claim
from ansible_collections.cms.patching.plugins.module_utils._errors import FleetError
from ansible_collections.cms.patching.plugins.module_utils._retry import ServerClock
from ansible_collections.cms.patching.plugins.modules import ami_backup_verified

LOCATION = (OWN_ACCOUNT, "us-east-1")
RUN = "20261201-awx777"
BASE = "/cms-patching/demo/%s/retention" % RUN


@pytest.fixture
def fleet(aws):
    return fleet_for(aws)


def claim(fleet, claimant, **options):
    return _run_claim.RetentionClaim(fleet, LOCATION, "demo", RUN, claimant, sleep=lambda s: None, **options)


def parameters(aws):
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    found = ssm.get_parameters_by_path(Path="/cms-patching/demo", Recursive=True)["Parameters"]
    return {p["Name"]: json.loads(p["Value"]) for p in found}


def operations(aws):
    return [c["operation"] for c in aws.state.calls.log()]


def client_error(code, status=400, operation="PutParameter"):
    return ClientError({"Error": {"Code": code, "Message": "%s happened" % code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class Answering:
    """An SSM client whose put_parameter (and get_parameters) answer through given functions (real client, **kwargs)."""

    def __init__(self, client, **overrides):
        self._client, self._overrides = client, overrides

    def __getattr__(self, name):
        if name in self._overrides:
            return lambda **kwargs: self._overrides[name](self._client, **kwargs)
        return getattr(self._client, name)


def answering(fleet, **overrides):
    real = fleet.client

    def client(service, account_id, region):
        found = real(service, account_id, region)
        return Answering(found, **overrides) if service == "ssm" else found

    fleet.client = client


def test_the_first_job_claims_and_marks_the_claim_done(aws, fleet):
    mine = claim(fleet, "AWX job 801")
    info = mine.acquire()
    assert (info["won"], info["status"], info["parameter"]) == (True, "claimed", BASE + "/1")
    assert (info["account_id"], info["region"]) == LOCATION
    assert "this job (AWX job 801) claimed retention of run %s" % RUN in info["message"]
    [(name, value)] = parameters(aws).items()
    assert name == BASE + "/1" and (value["claimant"], value["state"], value["run_id"]) == ("AWX job 801", "started", RUN)
    assert mine.finish(True) is None
    assert parameters(aws)[BASE + "/1"]["state"] == "done" and info["state"] == "done"


def test_another_job_leaves_a_held_claim_to_its_holder_and_says_so(aws, fleet):
    claim(fleet, "AWX job 801").acquire()
    info = claim(fleet, "AWX job 802").acquire()
    assert (info["won"], info["status"], info["held_by"], info["state"]) == (False, "held", "AWX job 801", "started")
    assert info["message"].startswith("retention of run %s was claimed by AWX job 801" % RUN)
    assert "in progress" in info["message"] and BASE + "/1 in %s/us-east-1" % OWN_ACCOUNT in info["message"]
    # The loser wrote nothing: the claim is still the winner's.
    assert parameters(aws) == {BASE + "/1": parameters(aws)[BASE + "/1"]} and parameters(aws)[BASE + "/1"]["claimant"] == "AWX job 801"


def test_of_jobs_racing_for_the_claim_exactly_one_wins(aws, fleet):
    infos = {}

    def race(number):
        infos[number] = claim(fleet_for(aws), "AWX job %d" % number).acquire()

    threads = [threading.Thread(target=race, args=(800 + n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [n for n, info in infos.items() if info["won"]]
    assert len(infos) == 6 and len(winners) == 1, infos
    assert parameters(aws)[BASE + "/1"]["claimant"] == "AWX job %d" % winners[0]
    assert all(info["held_by"] == "AWX job %d" % winners[0] for n, info in infos.items() if n not in winners)


def test_a_finished_retention_is_not_repeated(aws, fleet):
    first = claim(fleet, "AWX job 801")
    first.acquire()
    first.finish(True)
    for claimant in ("AWX job 802", "AWX job 801"):
        info = claim(fleet, claimant).acquire()
        assert (info["won"], info["status"], info["state"]) == (False, "done", "done")
        assert "was claimed by AWX job 801 and carried out" in info["message"] and "does not repeat it" in info["message"]


def test_the_same_claimant_carries_on_with_its_own_started_claim(aws, fleet):
    claim(fleet, "cms@controller").acquire()
    again = claim(fleet, "cms@controller")
    info = again.acquire()
    assert (info["won"], info["status"], info["parameter"]) == (True, "resumed", BASE + "/1")
    again.finish(True)
    assert list(parameters(aws)) == [BASE + "/1"] and parameters(aws)[BASE + "/1"]["state"] == "done"


def test_a_stale_claim_is_taken_over_by_a_resumed_run(aws, fleet):
    claim(fleet, "AWX job 801", stale_after=600).acquire()
    # Younger than stale_after on AWS's clock: held.
    aws.state.clock.advance(500)
    assert claim(fleet, "AWX job 901", stale_after=600).acquire()["status"] == "held"
    # Older, and still started: its job was killed; the resumed run takes over with the next generation.
    aws.state.clock.advance(200)
    resumed = claim(fleet, "AWX job 901", stale_after=600)
    info = resumed.acquire()
    assert (info["won"], info["status"], info["parameter"]) == (True, "claimed", BASE + "/2")
    # Its age on AWS's clock (the Date header has one-second resolution).
    assert re.search(r"took over retention of run %s from AWX job 801, whose claim was not finished after (69\d|70\d)s " % RUN, info["message"])
    # A third job now sees the new, fresh claim.
    assert claim(fleet, "AWX job 902", stale_after=600).acquire()["held_by"] == "AWX job 901"
    resumed.finish(True)
    assert {n: v["state"] for n, v in parameters(aws).items()} == {BASE + "/1": "started", BASE + "/2": "done"}
    assert claim(fleet, "AWX job 903").acquire()["status"] == "done"


def test_a_failed_retention_is_taken_over_at_once(aws, fleet):
    first = claim(fleet, "AWX job 801")
    first.acquire()
    first.finish(False)
    info = claim(fleet, "AWX job 901").acquire()
    assert (info["won"], info["parameter"]) == (True, BASE + "/2") and "whose claim failed" in info["message"]


def test_check_mode_reads_the_claim_and_writes_nothing(aws, fleet):
    info = claim(fleet, "AWX job 801", check_mode=True).acquire()
    assert (info["won"], info["status"]) == (True, "would_claim") and info["message"].startswith("check mode: this job (AWX job 801) would claim")
    claim(fleet, "AWX job 801", check_mode=True).finish(True)
    assert parameters(aws) == {} and "ssm:PutParameter" not in operations(aws) and "ssm:GetParameters" in operations(aws)
    claim(fleet, "AWX job 700").acquire()
    assert claim(fleet, "AWX job 801", check_mode=True).acquire()["status"] == "held"


def test_an_aws_error_names_the_parameter_the_account_and_the_permissions(aws, fleet):
    def denied(_client, **_kwargs):
        raise client_error("AccessDeniedException", operation="GetParameters")

    answering(fleet, get_parameters=denied)
    with pytest.raises(FleetError) as raised:
        claim(fleet, "AWX job 801").acquire()
    message = str(raised.value)
    assert message.startswith("could not read the retention claim of run %s (SSM parameter %s/<n> in %s/us-east-1)" % (RUN, BASE, OWN_ACCOUNT))
    assert "AccessDeniedException" in message and "ssm:PutParameter" in message and "iam/retention.json" in message


def test_a_refused_create_is_a_fleet_error_not_a_loss(aws, fleet):
    def refused(_client, **_kwargs):
        raise client_error("AccessDeniedException")

    answering(fleet, put_parameter=refused)
    with pytest.raises(FleetError, match="could not create the retention claim .*AccessDeniedException"):
        claim(fleet, "AWX job 801").acquire()


def test_a_create_answered_by_a_server_error_is_sent_again_and_read_back(aws, fleet):
    """The first create was carried out but its answer was a 500: the second gets ParameterAlreadyExists, and the
    parameter's token is this job's own, so it won (not 'claimed by itself')."""
    sent = []

    def lost_answer(client, **kwargs):
        sent.append(kwargs["Overwrite"])
        if len(sent) == 1:
            client.put_parameter(**kwargs)
            raise client_error("InternalServerError", status=500)
        return client.put_parameter(**kwargs)

    answering(fleet, put_parameter=lost_answer)
    info = claim(fleet, "AWX job 801").acquire()
    assert sent == [False, False] and (info["won"], info["status"]) == (True, "claimed")


def test_a_claim_that_cannot_be_marked_done_is_a_warning(aws, fleet):
    mine = claim(fleet, "AWX job 801")
    mine.acquire()

    def refused(_client, **_kwargs):
        raise client_error("AccessDeniedException")

    answering(fleet, put_parameter=refused)
    warning = mine.finish(True)
    assert "could not be marked done" in warning and "AccessDeniedException" in warning and "takes it over after 3600s" in warning


def test_a_run_whose_retention_never_finishes_stops_claiming(aws, fleet):
    for number in range(_run_claim.MAX_GENERATIONS):
        taken = claim(fleet, "AWX job %d" % number)
        assert taken.acquire()["won"]
        taken.finish(False)
    with pytest.raises(FleetError, match="claimed 10 times and never finished"):
        claim(fleet, "AWX job 99").acquire()


def test_a_run_id_with_a_colon_gets_a_parameter_name_of_its_own():
    assert _run_claim.parameter_base("demo", "run:1") != _run_claim.parameter_base("demo", "run_1")
    assert _run_claim.parameter_base("demo", "run:1").startswith("/cms-patching/demo/run_1-")
    assert _run_claim.parameter_base("demo", "run_1") == "/cms-patching/demo/run_1/retention"


def test_module_claims_once_and_a_second_job_removes_nothing(aws, demo, run_module, monkeypatch):
    """Two jobs of one run with the module: the first claims and carries retention out, the second says who did."""
    monkeypatch.setattr(_retention, "_now", aws.state.now)
    monkeypatch.setattr(ServerClock, "now", lambda self: aws.state.now())
    args = dict(accounts=DEMO_ACCOUNTS, mode="retain", lz="demo", run_id=RUN, regions=["us-east-1", "eu-west-1"], claim=True)
    planned = run_module(ami_backup_verified, dict(args, claimant="AWX job 801"), check_mode=True)
    assert not planned.failed and planned["claim"]["status"] == "would_claim" and "ssm:PutParameter" not in operations(aws)
    first = run_module(ami_backup_verified, dict(args, claimant="AWX job 801"))
    assert not first.failed, first.get("msg")
    assert (first["claim"]["won"], first["claim"]["state"]) == (True, "done")
    scans = operations(aws).count("ec2:DescribeImages")
    second = run_module(ami_backup_verified, dict(args, claimant="AWX job 802"))
    assert not second.failed and second["changed"] is False
    assert (second["claim"]["won"], second["claim"]["status"], second["claim"]["held_by"]) == (False, "done", "AWX job 801")
    assert second["progress"]["line"] == second["claim"]["message"]
    # The second job did not even look at the images.
    assert operations(aws).count("ec2:DescribeImages") == scans
    without_run = run_module(ami_backup_verified, dict(args, run_id=None))
    assert without_run.failed and "claim=true claims the retention of a run; give its run_id" in without_run["msg"]
