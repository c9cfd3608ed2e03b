# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run independent AWS work concurrently and keep every outcome.

Accounts and regions are scanned side by side, AMIs are created a bounded
number at a time.  A failure of one item never hides the results of the
others: each item comes back with either its result or its exception, in the
order the items were given.

A cancel is not one item's failure: the run is over.  When an item raises
``_cancel.Cancelled`` no further item is started, the items already running
are waited for (they stop at their next AWS call, where the retry layer checks
the cancel) and the ``Cancelled`` is raised to the caller, so the module ends at
once instead of carrying on with the other items' results.
"""

from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from ansible_collections.cms.patching.plugins.module_utils._cancel import Cancelled


class Outcome:
    __slots__ = ("item", "result", "error")

    def __init__(self, item, result=None, error=None):
        self.item = item
        self.result = result
        self.error = error

    @property
    def ok(self):
        return self.error is None


def fan_out(func, items, max_workers):
    """Call func(item) for every item with at most max_workers threads; return Outcomes in item order.

    Raises Cancelled as soon as one item raised it (items not started yet are dropped).
    """
    items = list(items)
    if not items:
        return []

    def guarded(item):
        try:
            return Outcome(item, result=func(item))
        except Cancelled:
            raise  # the whole run stops, see the module docstring
        except Exception as exc:  # pylint: disable=broad-except  # reported per item by the caller
            return Outcome(item, error=exc)

    if max_workers <= 1 or len(items) == 1:
        return [guarded(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=min(max_workers, len(items)))
    try:
        futures = [pool.submit(guarded, item) for item in items]
        # guarded() lets only Cancelled escape, so the first exception is a cancel: stop waiting for the rest.
        done = wait(futures, return_when=FIRST_EXCEPTION).done
        for future in futures:
            if future in done and future.exception() is not None:
                raise future.exception()
        return [future.result() for future in futures]
    finally:
        # After a cancel, the queued items never start; the running ones end at their next AWS call.
        pool.shutdown(wait=True, cancel_futures=True)
