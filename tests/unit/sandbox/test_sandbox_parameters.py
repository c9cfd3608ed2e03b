"""Parameter Store's PutParameter as AWS answers it: one create of a name wins, however many race; LastModifiedDate on
the sandbox clock (what the collection's retention claim relies on)."""

from __future__ import annotations

import threading
import time
from typing import Any

import moto.ssm.models as ssm_models
import pytest
from botocore.exceptions import ClientError

NAME = "/cms-patching/demo/run-1/retention/1"


def test_only_one_of_racing_creates_of_a_name_wins(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # moto looks the name up, then stamps the time, then stores the version: a slow clock read widens that window,
    # in which every racing create would see the name free without the sandbox's lock.
    real = ssm_models.utcnow
    monkeypatch.setattr(ssm_models, "utcnow", lambda: (time.sleep(0.05), real())[1])
    outcomes: list[tuple[str, int]] = []
    lock = threading.Lock()

    def create(number: int) -> None:
        try:
            client("ssm").put_parameter(Name=NAME, Value="job %d" % number, Type="String", Overwrite=False)
            outcome = "created"
        except ClientError as error:
            outcome = error.response["Error"]["Code"]
        with lock:
            outcomes.append((outcome, number))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    codes = sorted(pair[0] for pair in outcomes)
    assert codes == ["ParameterAlreadyExists"] * 5 + ["created"], outcomes
    [winner] = [number for outcome, number in outcomes if outcome == "created"]
    parameter = client("ssm").get_parameter(Name=NAME)["Parameter"]
    assert parameter["Value"] == "job %d" % winner and parameter["Version"] == 1


def test_an_overwrite_makes_a_new_version(client: Any) -> None:
    ssm = client("ssm")
    ssm.put_parameter(Name=NAME, Value="started", Type="String", Overwrite=False)
    assert ssm.put_parameter(Name=NAME, Value="done", Type="String", Overwrite=True)["Version"] == 2
    with pytest.raises(ClientError) as raised:
        ssm.put_parameter(Name=NAME, Value="again", Type="String", Overwrite=False)
    assert raised.value.response["Error"]["Code"] == "ParameterAlreadyExists"
    assert ssm.get_parameter(Name=NAME)["Parameter"]["Value"] == "done"


def test_last_modified_date_is_on_the_sandbox_clock(sandbox: Any, client: Any) -> None:
    sandbox.state.clock.advance(10 * 86400)
    ssm = client("ssm")
    ssm.put_parameter(Name=NAME, Value="started", Type="String")
    parameter = ssm.get_parameters(Names=[NAME])["Parameters"][0]
    assert abs(parameter["LastModifiedDate"].timestamp() - sandbox.state.now()) < 60
    assert parameter["LastModifiedDate"].timestamp() > time.time() + 9 * 86400
