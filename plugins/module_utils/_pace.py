# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Client-side pacing: token buckets per (service, account, region, API action), as AWS meters requests.

EC2 throttles each account per Region with a token bucket per API action ("Request throttling for the Amazon
EC2 API", https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html): a request takes one token,
an empty bucket answers ``RequestLimitExceeded``, and buckets refill at a set rate up to their size.  Sending a
fleet's CreateImage calls as fast as threads allow empties the mutating bucket (50 tokens, 5 a second) in the
first second; every call after that is refused, retried after a backoff and refused again, so most of the calls
a run makes are wasted.  Pacing on the client spends each token once: a call waits here (on the wall clock, as
AWS refills) until its bucket holds a token, and is then sent.

* The documented EC2 sizes are the defaults, a little below AWS's (``HEADROOM``) so that network jitter never
  makes a request arrive a fraction of a token early.
* Services that document no rates (SSM Run Command, STS) are not paced: with no known rate to return to, a
  throttled call of theirs backs off with jitter as before (``RetryingClient``).
* For a paced action, an answer that the call was throttled means someone else (another tool, another run, a
  smaller quota) shares the bucket: this client's bucket for that action is emptied and its refill rate halved
  (at most once a second, down to ``MIN_RATE``); every call that then succeeds gives back a little of the rate, up
  to the default (additive increase, multiplicative decrease).  The throttled call is sent again when the bucket
  allows: that wait replaces the jittered backoff.
* Buckets are per account and Region, like AWS's: a location that is throttled slows only itself.  Callers that
  fan out over locations must give each location its own threads (a thread waiting for a token must not hold a
  slot another location could use; see ``BackupRun.create_missing``).

The clock and the sleep are injectable so tests can drive time without waiting.

``progress_ends`` paces the polling of the waiting modules: a call that returns for progress does not poll right
before returning, since the next call polls as it starts.
"""

import threading
import time

from ansible_collections.cms.patching.plugins.module_utils import _cancel

# A fraction of AWS's documented sizes and rates: requests leave here paced, but arrive with network jitter.
HEADROOM = 0.9
# Never slower than one call every 2 s after repeated throttling (a throttled call used to back off 0-1 s, then 0-2 s...).
MIN_RATE = 0.5
# What one successful call gives back of a halved rate, as a fraction of its default: 20 answered calls restore it all.
RECOVERY = 0.05

# "Request throttling for the Amazon EC2 API", request token bucket sizes and refill rates (tokens, per second).
EC2_NON_MUTATING = (100, 20)
EC2_MUTATING = (50, 5)
# Actions the page lists with their own sizes ("uncategorized") that this collection calls.
EC2_OWN = {
    "CopyImage": (100, 1),
    "CreateSnapshot": (100, 5),
    "CreateTags": (100, 10),
    "CreateVolume": (100, 5),
    "DeleteSnapshot": (100, 5),
    "DeleteTags": (100, 10),
    "DeleteVolume": (100, 5),
    "DeregisterImage": (100, 5),
    "RunInstances": (5, 2),
    "StartInstances": (5, 2),
    "TerminateInstances": (100, 5),
}
READ_ONLY_PREFIXES = ("Describe", "List", "Get", "Search")


def documented_rate(service, operation):
    """(bucket size, refill per second) AWS documents for an action, or None (not paced until throttled)."""
    if service != "ec2":
        return None
    if operation in EC2_OWN:
        return EC2_OWN[operation]
    return EC2_NON_MUTATING if operation.startswith(READ_ONLY_PREFIXES) else EC2_MUTATING


class _Bucket:
    __slots__ = ("capacity", "ceiling", "rate", "tokens", "stamp", "cut_at")

    def __init__(self, capacity, rate, now):
        self.capacity = max(1.0, float(capacity))
        self.ceiling = float(rate)  # the rate successes recover to
        self.rate = float(rate)
        self.tokens = self.capacity  # AWS's buckets start full
        self.stamp = now
        self.cut_at = None  # when the rate was last halved

    def refill(self, now):
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now


class Pacer:
    """Token buckets keyed (service, account, region, operation); thread-safe."""

    def __init__(self, headroom=HEADROOM, clock=time.monotonic, sleep=_cancel.sleep, rates=documented_rate):
        self.headroom = float(headroom)
        self._clock = clock
        self._sleep = sleep
        self._rates = rates
        self._lock = threading.Lock()
        self._buckets = {}

    def _bucket(self, key, now):
        bucket = self._buckets.get(key)
        if bucket is None:
            rate = self._rates(key[0], key[3])
            if rate is None:
                return None
            bucket = _Bucket(rate[0] * self.headroom, rate[1] * self.headroom, now)
            self._buckets[key] = bucket
        return bucket

    def reserve(self, key):
        """Take a token now or book the next one: the seconds to wait before sending (0 when a token was there)."""
        with self._lock:
            now = self._clock()
            bucket = self._bucket(key, now)
            if bucket is None:
                return 0.0
            bucket.refill(now)
            bucket.tokens -= 1.0  # may go negative: a debt later callers queue behind, in order
            if bucket.tokens >= 0:
                return 0.0
            return -bucket.tokens / bucket.rate

    def acquire(self, key):
        """Wait (interruptibly) until the call may be sent."""
        wait = self.reserve(key)
        if wait > 0:
            self._sleep(wait)

    def throttled(self, key):
        """AWS refused a call of this key as throttled: its bucket is empty there, and its rate too high for it.

        True when this key is paced (the next call waits for the slowed bucket), False when it is not (back off instead).
        """
        with self._lock:
            now = self._clock()
            bucket = self._bucket(key, now)
            if bucket is None:
                return False
            bucket.refill(now)
            # Calls in flight together are refused together: that is one signal, so the rate is halved at most once a second.
            if bucket.cut_at is None or now - bucket.cut_at >= 1.0:
                bucket.rate = max(MIN_RATE, bucket.rate / 2.0)
                bucket.cut_at = now
            bucket.tokens = min(bucket.tokens, 0.0)
            return True

    def succeeded(self, key):
        """A call of this key was answered: a slowed bucket gets back a little of its rate."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is not None and bucket.rate < bucket.ceiling:
                bucket.rate = min(bucket.ceiling, bucket.rate + bucket.ceiling * RECOVERY)

    def rate(self, key):
        """The current refill rate of a key's bucket (None when it is not paced)."""
        with self._lock:
            bucket = self._buckets.get(key)
            return None if bucket is None else bucket.rate


def progress_ends(elapsed, progress_interval, poll_interval, sleep):
    """Whether a waiting call returns now for progress (after sleeping out its progress_interval when that is due first).

    The next call (the role's until loop) reads everything as soon as it starts, so a poll right before returning would
    be read again at once: when the progress interval ends before the next poll, the call sleeps until then and returns
    without polling.  Without a progress_interval the call never returns for progress.
    """
    if not progress_interval:
        return False
    remaining = progress_interval - elapsed
    if remaining > poll_interval:
        return False
    if remaining > 0:
        sleep(remaining)
    return True
