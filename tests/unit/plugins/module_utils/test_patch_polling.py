"""How often a patch run asks for patch states: in full batches of 50 while the wave runs, every round once it has ended;
an instance is called stale only by a read made after its compliance_wait ran out."""

import datetime

from ansible_collections.cms.patching.plugins.module_utils._patch import PatchRun

LOCATION = ("111111111111", "eu-west-1")
REQUESTED = 1000.0


class FakeBatch:
    """``running`` instances still run; the others succeeded. Every instance was sent at REQUESTED."""

    def __init__(self, ids):
        self.by_instance = {i: "c-1" for i in ids}
        self.invocations = {}
        self.errors = {}
        self.undeliverable = {}
        self.uncertain = {}

    def finish(self, ids, ended=REQUESTED):
        stamp = datetime.datetime.fromtimestamp(ended, datetime.timezone.utc)
        for instance_id in ids:
            self.invocations[instance_id] = {"InstanceId": instance_id, "Status": "Success", "CommandPlugins": [{"ResponseFinishDateTime": stamp}]}

    def outcome(self, instance_id):
        return ("success", "", "c-1") if instance_id in self.invocations else ("pending", "", "c-1")

    def in_flight(self):
        return len(self.by_instance) - len(self.invocations)

    def requested_at(self, _instance_id):
        return REQUESTED


class FakeFleet:
    def __init__(self):
        self.asked = []  # the InstanceIds of every DescribeInstancePatchStates
        self.reported = set()  # instances whose patch state of this command AWS has
        self.time = 2000.0
        fleet = self

        class Clock:
            @staticmethod
            def now():
                return fleet.time

        self.server_clock = Clock()

    def client(self, _service, *_location):
        fleet = self
        ended = datetime.datetime.fromtimestamp(REQUESTED + 60, datetime.timezone.utc)

        class Ssm:
            @staticmethod
            def describe_instance_patch_states(InstanceIds, **_kwargs):  # pylint: disable=invalid-name
                fleet.asked.append(sorted(InstanceIds))
                states = [{"InstanceId": i, "OperationEndTime": ended, "InstalledCount": 1} for i in InstanceIds if i in fleet.reported]
                return {"InstancePatchStates": states}

        return Ssm()


def make_run(count, reboot_option="NoReboot", compliance_wait=10**6):
    fleet = FakeFleet()
    ids = ["i-%03d" % n for n in range(count)]
    instances = [{"instance_id": i, "account_id": LOCATION[0], "region": LOCATION[1]} for i in ids]
    options = {"wave": "w", "operation": "Install", "reboot_option": reboot_option, "lz": "lz", "compliance_wait": compliance_wait, "max_workers": 1}
    run = PatchRun(fleet, instances, "20261201T000000Z-abcdef", options, False, lambda: 0.0, lambda _s: None)
    run.batch = FakeBatch(ids)
    return run, fleet, ids


def rounds(run, count):
    for _i in range(count):
        run.rounds += 1
        run._read_compliance()  # pylint: disable=protected-access


def test_while_the_wave_runs_patch_states_wait_for_a_full_batch_of_fifty():
    run, fleet, ids = make_run(61)
    fleet.reported = set(ids)
    run.batch.finish(ids[:30])
    rounds(run, 3)
    assert fleet.asked == []  # 30 waiting, the wave still runs: no small batch every round
    run.batch.finish(ids[30:55])
    rounds(run, 1)
    # 55 waiting: one full batch, the longest waiting first; the other 5 wait for the next 50 or the wave's end.
    assert fleet.asked == [ids[:50]]
    assert set(ids[:50]) <= set(run.states) and not set(ids[50:]) & set(run.states)
    rounds(run, 2)
    assert len(fleet.asked) == 1


def test_once_nothing_of_the_wave_runs_the_rest_are_read_every_round():
    run, fleet, ids = make_run(8)
    run.batch.finish(ids[:7])
    rounds(run, 2)
    assert fleet.asked == []
    run.batch.finish(ids[7:])  # the wave has ended: only the patch states are awaited now
    fleet.reported = set(ids[:6])
    rounds(run, 1)
    assert fleet.asked == [ids]
    fleet.reported = set(ids)
    rounds(run, 1)
    assert fleet.asked[1:] == [ids[6:]]
    assert set(run.states) == set(ids) and not run.stale
    rounds(run, 2)
    assert len(fleet.asked) == 2  # nothing is awaited any more


def test_an_instance_is_called_stale_only_by_a_read_after_its_compliance_wait_ran_out():
    run, fleet, ids = make_run(3, compliance_wait=300)
    run.batch.finish(ids[:1], ended=1500.0)
    fleet.time = 1900.0  # its compliance_wait ran out mid-wave: nothing waits for its state before the wave's end
    rounds(run, 2)
    assert fleet.asked == [] and not run.stale
    assert run.status_of(ids[0])[0] == "pending"
    run.batch.finish(ids[1:], ended=1850.0)  # the wave has ended: everything waiting is read, every round
    rounds(run, 1)
    assert fleet.asked == [ids]
    assert list(run.stale) == [ids[0]] and "compliance_wait (300s)" in run.stale[ids[0]]
    assert run.status_of(ids[1])[0] == "pending"  # its own wait has not run out: read again next round
    fleet.reported = set(ids[1:])
    rounds(run, 1)
    assert fleet.asked[1:] == [ids[1:]]
    assert set(run.states) == set(ids[1:])


def test_states_from_before_the_patch_are_read_once_and_fill_the_batch():
    run, fleet, ids = make_run(6, reboot_option="RebootIfNeeded")
    run.batch.finish(ids[:2])
    rounds(run, 3)
    # Round 1: the running ones' states from before (what 'reboot' is measured against); the location is read anyway,
    # so the two waiting for their state after the patch come along. Nothing more while the wave runs.
    assert fleet.asked == [ids]


def test_a_round_checks_every_deadline_in_time_linear_in_the_wave():
    """A round looks at each instance's deadline, which depends on the wave's first command: read once per round, not
    once per instance (18,000 instances: a round was 3.2e8 look-ups, minutes of CPU, the whole wave's wall time)."""
    run, _fleet, ids = make_run(400)
    run.options.update(delivery_timeout=600, execution_timeout=7200, wait_timeout=10800)
    looked_up = []

    def requested_at(instance_id):
        looked_up.append(instance_id)
        return REQUESTED

    run.batch.requested_at = requested_at
    run._enforce_deadlines()  # pylint: disable=protected-access
    assert not run.timed_out  # every deadline is ahead: nothing given up
    assert len(looked_up) <= 2 * len(ids)
    # And the deadlines still follow the first command: once it is wait_timeout old, every instance still running is late.
    run.batch.commands = {"c-1": {"CommandId": "c-1"}}
    run.batch.read_running = lambda command: ids
    run.batch.cancel = lambda commands, instance_ids: None
    run.fleet.time = REQUESTED + 10800
    run._enforce_deadlines()  # pylint: disable=protected-access
    assert sorted(run.timed_out) == ids and set(run.late.values()) == {"undeliverable"}
