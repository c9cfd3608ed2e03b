"""How often a patch run asks for patch states: every other round while the wave still runs, every round at its end."""

from ansible_collections.cms.patching.plugins.module_utils._patch import PatchRun

LOCATION = ("111111111111", "eu-west-1")


class FakeBatch:
    """i-done has finished (success, no patch state of this command yet); i-running is still running."""

    def __init__(self):
        self.invocations = {"i-done": {"InstanceId": "i-done", "Status": "Success"}}
        self.by_instance = {"i-done": "c-1", "i-running": "c-2"}
        self.running = 1

    def outcome(self, instance_id):
        return ("success", "", "c-1") if instance_id in self.invocations else ("pending", "", "c-2")

    def in_flight(self):
        return self.running

    def requested_at(self, _instance_id):
        return 1000.0


class FakeFleet:
    def __init__(self):
        self.asked = []  # the InstanceIds of every DescribeInstancePatchStates

        class Clock:
            @staticmethod
            def now():
                return 2000.0

        self.server_clock = Clock()

    def client(self, _service, *_location):
        fleet = self

        class Ssm:
            @staticmethod
            def describe_instance_patch_states(InstanceIds, **_kwargs):  # pylint: disable=invalid-name
                fleet.asked.append(sorted(InstanceIds))
                return {"InstancePatchStates": []}

        return Ssm()


def make_run():
    fleet = FakeFleet()
    instances = [{"instance_id": i, "account_id": LOCATION[0], "region": LOCATION[1]} for i in ("i-done", "i-running")]
    options = {"wave": "w", "operation": "Install", "reboot_option": "RebootIfNeeded", "lz": "lz", "compliance_wait": 10**6, "max_workers": 1}
    run = PatchRun(fleet, instances, "20261201T000000Z-abcdef", options, False, lambda: 0.0, lambda _s: None)
    run.batch = FakeBatch()
    return run, fleet


def rounds(run, count):
    for _i in range(count):
        run.rounds += 1
        run._read_compliance()  # pylint: disable=protected-access


def test_patch_states_are_asked_every_other_round_while_the_wave_runs_and_every_round_at_its_end():
    run, fleet = make_run()
    rounds(run, 4)
    # Round 1: the finished one, and once the state from before the operation of the running one; then every other round.
    assert fleet.asked == [["i-done", "i-running"], ["i-done"]]
    run.batch.running = 0  # nothing runs any more: the wave's end waits only for this state
    rounds(run, 2)
    assert fleet.asked[2:] == [["i-done"], ["i-done"]]
