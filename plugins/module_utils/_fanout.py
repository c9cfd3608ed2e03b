# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run independent AWS work concurrently and keep every outcome.

Accounts and regions are scanned side by side, AMIs are created a bounded
number at a time.  A failure of one item never hides the results of the
others: each item comes back with either its result or its exception, in the
order the items were given.
"""

from concurrent.futures import ThreadPoolExecutor


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
    """Call func(item) for every item with at most max_workers threads; return Outcomes in item order."""
    items = list(items)
    if not items:
        return []

    def guarded(item):
        try:
            return Outcome(item, result=func(item))
        except Exception as exc:  # pylint: disable=broad-except  # reported per item by the caller
            return Outcome(item, error=exc)

    if max_workers <= 1 or len(items) == 1:
        return [guarded(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
        return list(pool.map(guarded, items))
