"""fan_out: every item's outcome in order, except a cancel, which ends the whole call at once."""

import threading
import time

import pytest

from ansible_collections.cms.patching.plugins.module_utils._cancel import Cancelled
from ansible_collections.cms.patching.plugins.module_utils._errors import FleetError
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out


def test_outcomes_in_item_order_with_per_item_errors():
    def func(item):
        if item == 2:
            raise FleetError("item 2 is broken")
        return item * 10

    outcomes = fan_out(func, range(5), 3)
    assert [o.item for o in outcomes] == [0, 1, 2, 3, 4]
    assert [o.result for o in outcomes if o.ok] == [0, 10, 30, 40]
    assert str(outcomes[2].error) == "item 2 is broken" and not outcomes[2].ok


@pytest.mark.parametrize("max_workers", [1, 4])
def test_a_cancel_is_raised_not_returned_as_an_item_error(max_workers):
    def func(item):
        if item == "b":
            raise Cancelled("received SIGINT")
        return item

    with pytest.raises(Cancelled) as caught:
        fan_out(func, ["a", "b", "c"], max_workers)
    assert caught.value.reason == "received SIGINT"


def test_sequential_items_after_a_cancel_are_never_started():
    started = []

    def func(item):
        started.append(item)
        if item == 1:
            raise Cancelled("the controller is gone")

    with pytest.raises(Cancelled):
        fan_out(func, range(10), 1)
    assert started == [0, 1]


def test_queued_items_after_a_cancel_are_never_started():
    started = []
    lock = threading.Lock()

    def func(item):
        with lock:
            started.append(item)
        if item == 0:
            raise Cancelled("received SIGTERM")
        time.sleep(0.5)  # the others are slow, so the cancel is seen while most items still wait for a thread

    with pytest.raises(Cancelled):
        fan_out(func, range(20), 2)
    # Item 0 and the ones that had a thread when it raised (1, maybe 2 or 3); never the whole queue.
    assert 0 in started and len(started) <= 4


def test_a_cancel_behind_failed_items_is_still_raised():
    def func(item):
        if item == 3:
            raise Cancelled("received SIGINT")
        raise FleetError("item %d failed" % item)

    with pytest.raises(Cancelled):
        fan_out(func, range(4), 4)


def test_six_hundred_locations_share_one_bounded_pool():
    # 200 accounts x 3 regions: never a thread per account/region, never more than max_workers at once, every one done.
    lock = threading.Lock()
    state = {"running": 0, "peak": 0, "threads": set()}
    release = threading.Event()

    def work(location):
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
            state["threads"].add(threading.get_ident())
            if state["running"] == 8:
                release.set()
        # The first items wait until the pool is full, so the bound is really reached and checked.
        release.wait(timeout=10)
        with lock:
            state["running"] -= 1
        return location

    locations = [("3%011d" % (i // 3), ("us-east-1", "eu-west-1", "ap-southeast-2")[i % 3]) for i in range(600)]
    outcomes = fan_out(work, locations, 8)
    assert [o.result for o in outcomes] == locations
    assert state["peak"] == 8 and len(state["threads"]) <= 8
