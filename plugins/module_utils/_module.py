# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What the fleet modules share: the options that describe a landing zone's
accounts and the health checks, input validation that names the bad item, the
session factory, the cancel watch around the module's work, and the API-cost
report every result carries; run_module is their main()."""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cms.patching.plugins.module_utils import _cancel
from ansible_collections.cms.patching.plugins.module_utils import _validate as v
from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy, error_code
from ansible_collections.cms.patching.plugins.module_utils._session import MAX_DURATION, MIN_DURATION, FleetError, FleetSession, describe_aws_error

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # AnsibleAWSModule reports the missing library itself
    BotoCoreError = ClientError = ()

ACCOUNT_OPTIONS = dict(
    account_id=dict(type="str", required=True),
    role_arn=dict(type="str"),
    external_id=dict(type="str", no_log=True),  # a secret shared with the role owner: masked in -v output and results
    session_name=dict(type="str"),
    duration_seconds=dict(type="int"),
    name=dict(type="str"),
)

FLEET_ARGUMENT_SPEC = dict(
    accounts=dict(type="list", elements="dict", required=True, options=ACCOUNT_OPTIONS),
    role_session_name=dict(type="str", default="cms-patching"),
    retries=dict(
        type="dict",
        default={},
        options=dict(
            max_attempts=dict(type="int", default=10),
            base_delay=dict(type="float", default=1.0),
            max_delay=dict(type="float", default=30.0),
        ),
    ),
)

# The fields every module accepts per instance; extra keys (from discovery) are ignored.
INSTANCE_OPTIONS = dict(
    instance_id=dict(type="str", required=True),
    account_id=dict(type="str", required=True),
    region=dict(type="str", required=True),
)

# The health checks of ssm_patch_run (pre_checks, post_checks) and ec2_rollback (post_checks), run by _health; each module
# documents them (suboptions) in its DOCUMENTATION.
CHECK_OPTIONS = dict(
    ssm_online=dict(type="bool", default=False),
    ec2_status=dict(type="bool", default=False),
    command=dict(type="str"),
    windows_command=dict(type="str"),
    timeout=dict(type="int", default=600),
)


def round_options(wait_timeout, poll_interval):
    """The options of a module that works in poll rounds (ami_backup_verified, ssm_patch_run, ec2_rollback), with its
    own defaults for the timeout and the interval; each module documents them."""
    return dict(
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=wait_timeout),
        poll_interval=dict(type="int", default=poll_interval),
        progress_interval=dict(type="int", default=0),
        max_workers=dict(type="int", default=8),
    )


def run_module(argument_spec, input_problems, work):
    """A fleet module's main(): parse the options, fail naming every bad one (the accounts and run ID, then
    input_problems(params)), build the session, and run work(module, fleet) -> result under run_fleet_module."""
    module = fleet_module(argument_spec)
    fail_on_problems(module, common_problems(module.params) + input_problems(module.params))
    fleet = build_fleet(module)
    run_fleet_module(module, fleet, lambda: work(module, fleet))


def fleet_module(argument_spec, **kwargs):
    spec = dict(FLEET_ARGUMENT_SPEC)
    spec.update(argument_spec)
    return AnsibleAWSModule(argument_spec=spec, supports_check_mode=True, **kwargs)


def common_problems(params):
    """Problems of the options every fleet module has: the accounts and the run ID."""
    problems = account_problems(params["accounts"])
    if params.get("run_id") is not None:
        error = v.run_id_error(params["run_id"])
        if error:
            problems.append("run_id: %s" % error)
    return problems


def account_problems(accounts):
    problems, seen = [], set()
    for i, account in enumerate(accounts):
        where = "accounts[%d]" % i
        error = v.account_id_error(account["account_id"])
        if error:
            problems.append("%s.account_id: %s" % (where, error))
            continue
        if account["account_id"] in seen:
            problems.append("%s.account_id: %s is listed twice" % (where, account["account_id"]))
        seen.add(account["account_id"])
        if account.get("role_arn"):
            error = v.role_arn_error(account["role_arn"], account["account_id"])
            if error:
                problems.append("%s.role_arn: %s" % (where, error))
        if account.get("session_name"):
            error = v.session_name_error(account["session_name"])
            if error:
                problems.append("%s.session_name: %s" % (where, error))
        if account.get("duration_seconds") is not None:
            error = duration_error(account["duration_seconds"])
            if error:
                problems.append("%s.duration_seconds: %s" % (where, error))
            elif not account.get("role_arn"):
                problems.append("%s.duration_seconds: only an assumed role has a session duration; give a role_arn or drop it" % where)
    return problems


def duration_error(value):
    """AssumeRole's DurationSeconds range (the role's MaxSessionDuration, and 3,600 for role chaining, are AWS's to enforce)."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_DURATION <= value <= MAX_DURATION:
        return "%r is not a role session duration: expected seconds from %d to %d (e.g. 3600; at most 3600 when the caller is itself a role session)" % (
            value,
            MIN_DURATION,
            MAX_DURATION,
        )
    return None


def at_least_one(params, keys):
    return ["%s: must be at least 1" % key for key in keys if params[key] < 1]


def count_statuses(results, key, statuses=()):
    """How many results have each value of result[key]; the given statuses are always there (0 when none)."""
    counts = {status: 0 for status in statuses}
    for item in results:
        counts[item[key]] = counts.get(item[key], 0) + 1
    return counts


def region_problems(regions, option="regions"):
    return ["%s[%d]: %s" % (option, i, error) for i, error in enumerate(v.region_error(r) for r in regions) if error]


def instance_problems(instances, accounts, option="instances"):
    """Check each instance (a dict as discovery returns it): its ID, region, and account, which must be one of the accounts given."""
    known = {a["account_id"] for a in accounts}
    problems, seen = [], set()
    for i, item in enumerate(instances):
        where = "%s[%d]" % (option, i)
        missing = [k for k in ("instance_id", "account_id", "region") if not isinstance(item.get(k), str) or not item.get(k)]
        if missing:
            problems.append("%s: missing %s" % (where, ", ".join(missing)))
            continue
        for error in (v.instance_id_error(item["instance_id"]), v.region_error(item["region"])):
            if error:
                problems.append("%s: %s" % (where, error))
        if item["account_id"] not in known:
            problems.append("%s: account %s of %s is not in accounts (%s)" % (where, item["account_id"], item["instance_id"], ", ".join(sorted(known))))
        if item["instance_id"] in seen:
            problems.append("%s: %s is listed twice" % (where, item["instance_id"]))
        seen.add(item["instance_id"])
    return problems


def fail_on_problems(module, problems):
    if problems:
        echo = invocation_of(module.params)
        module.fail_json(msg="Invalid input: " + "; ".join(problems), problems=problems, **({} if echo is None else {"invocation": echo}))
    for note in region_notes(module.params):
        module.warn(note)


def region_notes(params):
    """Warnings for regions accepted only by their partition's name pattern (a typo, or a region newer than botocore)."""
    regions = list(params.get("regions") or [])
    regions += [i.get("region") for i in params.get("instances") or [] if isinstance(i, dict)]
    notes = []
    for region in regions:
        note = v.region_note(region)
        if note and note not in notes:
            notes.append(note)
    return notes


def build_fleet(module):
    retries = module.params.get("retries") or {}
    policy = RetryPolicy(
        max_attempts=retries.get("max_attempts") or 10,
        base_delay=retries.get("base_delay") if retries.get("base_delay") is not None else 1.0,
        max_delay=retries.get("max_delay") if retries.get("max_delay") is not None else 30.0,
    )
    return FleetSession.from_module(module, module.params["accounts"], session_name=module.params.get("role_session_name"), policy=policy)


def invocation_of(params):
    """What the result echoes of the module's arguments (ansible-core adds invocation.module_args to every result, shown with
    -vvv): the arguments, with each instance reduced to its instance_id, account_id and region.

    The whole batch would come back in every result: at 18,000 instances a second copy of the arguments in the module's
    JSON, in the worker that parses it and in the controller, on every progress return. None when there is no batch
    (ansible-core's own echo is kept).
    """
    instances = params.get("instances") if isinstance(params, dict) else None
    if not isinstance(instances, list):
        return None
    keys = tuple(INSTANCE_OPTIONS)
    reduced = [{k: item[k] for k in keys if k in item} if isinstance(item, dict) else item for item in instances]
    return {"module_args": dict(params, instances=reduced)}


def run_fleet_module(module, fleet, work):
    """Run work() under the cancel watch; a cancel, a FleetError or an AWS error nobody handled becomes a clean failure, never a traceback.

    A cancel (a signal to the module, or the controller gone) stops the work at its next AWS call or sleep. Work that
    caught the Cancelled per item and returned is still reported as cancelled, with what it had done.
    """
    result = failure = reason = None
    with _cancel.watching():
        try:
            result = work()
        except _cancel.Cancelled as exc:
            reason = exc.reason
        except FleetError as exc:
            failure = dict(msg=str(exc))
        except (ClientError, BotoCoreError) as exc:
            failure = dict(msg="AWS error: %s" % describe_aws_error(exc), error_code=error_code(exc))
        reason = _cancel.cancelled() or reason
    # What degraded without failing (e.g. a read that fell back to an older call) is shown whatever the outcome.
    for warning in fleet.warnings:
        module.warn(warning)
    echo = invocation_of(getattr(module, "params", None))
    extra = {} if echo is None else {"invocation": echo}
    if reason is not None:
        # However the work ended (the Cancelled itself, an error wrapping it, or results with per-item "cancelled" errors).
        result = dict(result or {}, **(failure or {}))
        result.pop("failed", None)
        result.update(msg=str(_cancel.Cancelled(reason)), cancelled=True, api_calls=fleet.stats.as_dict(), **extra)
        module.fail_json(**result)
    if failure is not None:
        module.fail_json(api_calls=fleet.stats.as_dict(), **dict(failure, **extra))
    result.update(api_calls=fleet.stats.as_dict(), **extra)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)
