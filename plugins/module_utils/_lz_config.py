# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Landing-zone configuration: find it, load it, validate it once, resolve defaults.

A landing zone lives in ``<search path>/<lz>/.landing_zone.yml`` under the key
``cms_patching_landing_zone``; ``<search path>/<lz>/`` is also the landing
zone's Ansible inventory (its ``*.aws_ec2.yml`` sources, an AWX inventory
source). The file's name starts with a dot because Ansible's inventory loader
skips such files (``IGNORED_ALWAYS`` in ansible/inventory/manager.py): the
configuration, external IDs included, never becomes inventory variables (as it
did from ``group_vars/all/``, which AWX imported as host variables of every
host) nor a bogus group (a plain ``landing_zone.yml`` there is parsed by the
``yaml`` inventory plugin). It is read by the ``config`` role alone.

The old place, ``<lz>/group_vars/all/landing_zone.yml``, is still read, with a
deprecation warning.

Validation happens before any AWS call and reports *every* problem of the
file at once, each naming the file, the key path and what was expected.
"""

import difflib
import os
import re

from ansible_collections.cms.patching.plugins.module_utils import _report_dest
from ansible_collections.cms.patching.plugins.module_utils import _organizations
from ansible_collections.cms.patching.plugins.module_utils import _validate as v
from ansible_collections.cms.patching.plugins.module_utils import _waves
from ansible_collections.cms.patching.plugins.module_utils._backup import template_error as ami_template_error

try:
    import yaml

    HAS_YAML = True
except ImportError:
    HAS_YAML = False

CONFIG_FILE = ".landing_zone.yml"
LEGACY_CONFIG_FILE = os.path.join("group_vars", "all", "landing_zone.yml")
LEGACY_NOTE = (
    "%s: landing zones in <lz>/group_vars/all/landing_zone.yml are deprecated: an inventory source on that directory (AWX) imports "
    "the whole configuration, external IDs included, as variables of every host; move it to %s"
)
ROOT_KEY = "cms_patching_landing_zone"
# A landing-zone name is one directory under a search path, nothing more: no '.', so neither '..' nor a hidden
# directory, and no path separator, so -e lz=../x cannot load a file outside the search paths.
LZ_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(Exception):
    """Raised with every problem found, one per line."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Field:
    """One key of the schema: its type, default, and an optional check returning an error sentence."""

    def __init__(self, kind, default=None, required=False, check=None, choices=None, minimum=None, maximum=None, fields=None, items=None):
        self.kind = kind
        self.default = default
        self.required = required
        self.check = check
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum
        self.fields = fields
        self.items = items


def _str_or_list(value):
    if isinstance(value, str):
        return None
    if isinstance(value, list) and value and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in value):
        return None
    return "expected a string or a non-empty list of strings, got %s" % _type_name(value)


def _positive_percent(value):
    return None if 0 <= value <= 100 else "expected a percentage between 0 and 100, got %s" % value


_TAG_MAP = Field("map", default={}, check=_str_or_list)

ACCOUNT = {
    "account_id": Field("str", required=True, check=v.account_id_error),
    "name": Field("str"),
    "role_arn": Field("str"),
    "external_id": Field("str", check=v.external_id_error),
    "session_name": Field("str", check=v.session_name_error),
    # AssumeRole DurationSeconds: 900 to 43,200 (the role's MaxSessionDuration, and 3,600 for role chaining, are AWS's to enforce).
    "duration_seconds": Field("int", minimum=900, maximum=43200),
}

# Accounts from AWS Organizations (see _organizations): the accounts of these OUs, the role to assume in each.
ORGANIZATION = {
    "ous": Field("list", required=True, items=Field("str", check=_organizations.parent_id_error)),
    "recursive": Field("bool", default=True),
    "role_name": Field("str", required=True, check=_organizations.role_name_error),
    "external_id": Field("str", check=v.external_id_error),
    "duration_seconds": Field("int", minimum=900, maximum=43200),
    "include_tags": _TAG_MAP,
    "exclude_tags": _TAG_MAP,
    "exclude_accounts": Field("list", default=[], items=Field("str", check=v.account_id_error)),
    "management_role_arn": Field("str", check=v.role_arn_error),
    "management_external_id": Field("str", check=v.external_id_error),
}

WAVE = {
    "name": Field("str", required=True),
    "percent": Field("int", minimum=1, maximum=100),
    "count": Field("int", minimum=1),
    "instance_ids": Field("list", items=Field("str", check=v.instance_id_error)),
    "names": Field("list", items=Field("str")),
}

SCHEMA = {
    "description": Field("str", default=""),
    # accounts, organization, or both (required together in _cross_checks).
    "accounts": Field("list", default=[], items=Field("dict", fields=ACCOUNT)),
    "organization": Field("dict", fields=ORGANIZATION),
    "regions": Field("list", required=True, items=Field("str", check=v.region_error)),
    "role_session_name": Field("str", default="cms-patching", check=v.session_name_error),
    "targets": Field(
        "dict",
        default={},
        fields={
            "filters": _TAG_MAP,
            "include_tags": _TAG_MAP,
            "exclude_tags": _TAG_MAP,
            "instance_states": Field(
                "list", default=["running"], items=Field("str", choices=["pending", "running", "stopping", "stopped", "shutting-down", "terminated"])
            ),
            "platforms": Field("list", default=["linux", "windows"], items=Field("str", choices=["linux", "windows"])),
            "require_ssm_online": Field("bool", default=True),
        },
    ),
    "backup": Field(
        "dict",
        default={},
        fields={
            "no_reboot": Field("bool", default=True),
            "name_template": Field("str", default="cms-patching-{instance_id}-{run_id}", check=ami_template_error),
            "description_template": Field(
                "str", default="Pre-patch backup of {instance_id} ({name}) for run {run_id} in landing zone {lz}", check=ami_template_error
            ),
            "tags": Field("map", default={}),
            "wait_timeout": Field("int", default=10800, minimum=60),
            "poll_interval": Field("int", default=15, minimum=1),
            "progress_interval": Field("int", default=60, minimum=0),
            "max_concurrent_creates": Field("int", default=10, minimum=1, maximum=100),
            "retention": Field(
                "dict",
                default={},
                fields={
                    "keep_last": Field("int", default=3, minimum=1),
                    "max_age_days": Field("int", default=30, minimum=1),
                },
            ),
        },
    ),
    "patching": Field(
        "dict",
        default={},
        fields={
            "operation": Field("str", default="Install", choices=["Install", "Scan"]),
            "reboot_option": Field("str", default="RebootIfNeeded", choices=["RebootIfNeeded", "NoReboot"]),
            "baseline_override": Field("str", check=v.s3_url_error),
            "install_override_list": Field("str", check=v.s3_url_error),
            "max_concurrency": Field("str", default="10%", check=v.rate_error),
            "max_errors": Field("str", default="10%", check=lambda x: v.rate_error(x, allow_zero=True)),
            "execution_timeout": Field("int", default=7200, minimum=60),
            "delivery_timeout": Field("int", default=600, minimum=30, maximum=2592000),
            "wait_timeout": Field("int", default=10800, minimum=60),
            "poll_interval": Field("int", default=30, minimum=1),
            "progress_interval": Field("int", default=60, minimum=0),
            "output_s3_bucket": Field("str"),
            "output_s3_prefix": Field("str"),
            "cloudwatch_output": Field("bool", default=False),
            "waves": Field("list", default=[{"name": "all"}], items=Field("dict", fields=WAVE)),
            "max_failure_rate": Field("int", default=0, check=_positive_percent),
            # Recovery: instances whose patch failed, timed out or failed its post-checks go back to their verified AMI right after their wave.
            "rollback_on_failure": Field("bool", default=False),
            "post_checks": Field(
                "dict",
                default={},
                fields={
                    "ssm_online": Field("bool", default=True),
                    "ec2_status": Field("bool", default=True),
                    "command": Field("str"),
                    "windows_command": Field("str"),
                    "timeout": Field("int", default=600, minimum=30),
                },
            ),
        },
    ),
    "report": Field(
        "dict",
        default={},
        fields={
            "dir": Field("str"),
            "file_name": Field("str", check=_report_dest.template_error),
            "s3": Field(
                "dict",
                default={},
                fields={
                    "bucket": Field("str"),
                    "prefix": Field("str", check=_report_dest.template_error),
                    "sse": Field("str", choices=list(_report_dest.SSE_CHOICES)),
                    "kms_key_id": Field("str"),
                    "account_id": Field("str", check=v.account_id_error),
                    "region": Field("str", check=v.region_error),
                },
            ),
        },
    ),
    # Recovery (--tags rollback, cms.patching.ec2_rollback).
    "rollback": Field(
        "dict",
        default={},
        fields={
            "max_concurrent": Field("int", default=5, minimum=1, maximum=50),
            "wait_timeout": Field("int", default=3600, minimum=60),
        },
    ),
}


def _type_name(value):
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


_EXPECTED = {"str": "a string", "int": "an integer", "bool": "true or false", "list": "a list", "dict": "a mapping", "map": "a mapping"}
_PY_TYPES = {"str": str, "list": list, "dict": dict, "map": dict}


def _type_ok(kind, value):
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, _PY_TYPES[kind])


def _validate(field, value, path, problems):
    """Return the resolved value, appending problems as 'path: message'."""
    if not _type_ok(field.kind, value):
        hint = ""
        if field.kind == "str" and isinstance(value, int) and not isinstance(value, bool):
            hint = ' (quote it, e.g. "%s", so YAML keeps it a string)' % value
        problems.append("%s: expected %s, got %s%s" % (path, _EXPECTED[field.kind], _type_name(value), hint))
        return None
    if field.choices is not None and value not in field.choices:
        problems.append("%s: %r is not one of %s" % (path, value, ", ".join(field.choices)))
        return None
    if field.kind == "int":
        if field.minimum is not None and value < field.minimum:
            problems.append("%s: %s is below the minimum %s" % (path, value, field.minimum))
        if field.maximum is not None and value > field.maximum:
            problems.append("%s: %s is above the maximum %s" % (path, value, field.maximum))
    if field.kind == "map":
        for key, item in value.items():
            error = field.check(item) if field.check else None
            if not isinstance(key, str):
                problems.append("%s: key %r must be a string" % (path, key))
            elif error:
                problems.append("%s.%s: %s" % (path, key, error))
        return {str(k): ([str(x) for x in i] if isinstance(i, list) else str(i)) for k, i in value.items()}
    if field.check is not None:
        error = field.check(value)
        if error:
            problems.append("%s: %s" % (path, error))
    if field.kind == "dict":
        return _validate_mapping(field.fields, value, path, problems)
    if field.kind == "list":
        if field.required and not value:
            problems.append("%s: must not be empty" % path)
        return [_validate(field.items, item, "%s[%d]" % (path, i), problems) for i, item in enumerate(value)]
    return value


def _validate_mapping(fields, data, path, problems):
    resolved = {}
    for key in data:
        if key not in fields:
            guess = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = " (did you mean %r?)" % guess[0] if guess else " (known keys: %s)" % ", ".join(sorted(fields))
            problems.append("%s.%s: unknown key%s" % (path, key, hint))
    for key, field in fields.items():
        if key in data and data[key] is not None:
            resolved[key] = _validate(field, data[key], "%s.%s" % (path, key), problems)
        elif field.required:
            problems.append("%s.%s: required key is missing" % (path, key))
        elif field.kind == "dict" and field.default is not None:
            resolved[key] = _validate_mapping(field.fields, {}, "%s.%s" % (path, key), problems)
        else:
            resolved[key] = _copy(field.default)
    return resolved


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(x) for k, x in value.items()}
    if isinstance(value, list):
        return [_copy(x) for x in value]
    return value


def _cross_checks(config, path, problems):
    """Rules that span keys: role ARNs match their account, IDs are unique, waves are sane."""
    seen = set()
    for i, account in enumerate(config.get("accounts") or []):
        if not account or not account.get("account_id"):
            continue
        if account["account_id"] in seen:
            problems.append("%s.accounts[%d].account_id: account %s is listed twice" % (path, i, account["account_id"]))
        seen.add(account["account_id"])
        if account.get("role_arn"):
            error = v.role_arn_error(account["role_arn"], account["account_id"])
            if error:
                problems.append("%s.accounts[%d].role_arn: %s" % (path, i, error))
        else:
            if account.get("external_id"):
                problems.append("%s.accounts[%d].external_id: an external ID needs a role_arn to go with it" % (path, i))
            if account.get("duration_seconds") is not None:
                problems.append("%s.accounts[%d].duration_seconds: only an assumed role has a session duration; give a role_arn or drop it" % (path, i))
    regions = [r for r in config.get("regions") or [] if r]
    _organization_checks(config, regions, path, problems)
    if len(set(regions)) != len(regions):
        problems.append("%s.regions: a region is listed twice" % path)
    _partition_checks(config, regions, path, problems)
    patching = config.get("patching") or {}
    for i, wave in enumerate(patching.get("waves") or []):
        if not wave:
            continue
        selectors = [k for k in ("percent", "count", "instance_ids", "names") if wave.get(k)]
        if len(selectors) > 1:
            problems.append("%s.patching.waves[%d]: choose one of percent, count, instance_ids, names (got %s)" % (path, i, ", ".join(selectors)))
    names = [w.get("name") for w in patching.get("waves") or [] if w]
    if len(set(names)) != len(names):
        problems.append("%s.patching.waves: wave names must be unique" % path)
    _check_wave_members([w for w in patching.get("waves") or [] if w], "%s.patching.waves" % path, problems)
    s3 = (config.get("report") or {}).get("s3") or {}
    if s3.get("account_id") and s3["account_id"] not in seen:
        known = ", ".join(sorted(seen))
        problems.append("%s.report.s3.account_id: account %s is not one of the landing zone's accounts (%s)" % (path, s3["account_id"], known))
    if patching.get("output_s3_prefix") and not patching.get("output_s3_bucket"):
        problems.append("%s.patching.output_s3_prefix: needs output_s3_bucket" % path)


def _organization_checks(config, regions, path, problems):
    """One of accounts / organization at least; the rules of an organization source that span its keys."""
    organization = config.get("organization")
    if not config.get("accounts") and not organization:
        problems.append("%s.accounts: must not be empty: list the accounts, or give an organization source (organization.ous, role_name)" % path)
    if not organization:
        return
    # Each key was checked by the schema; these rules span keys.
    where = "%s.organization" % path
    parents = [p for p in organization.get("ous") or [] if p]
    if len(set(parents)) != len(parents):
        problems.append("%s.ous: an OU is listed twice" % where)
    arn = organization.get("management_role_arn")
    if arn and not v.role_arn_error(arn) and regions:
        error = v.partition_error(arn, regions, v.ROLE_ARN_RE.match(arn).group(2))
        if error:
            problems.append("%s.management_role_arn: %s" % (where, error))
    if organization.get("management_external_id") and not arn:
        problems.append("%s.management_external_id: an external ID needs a management_role_arn to go with it" % where)


def _check_wave_members(waves, path, problems):
    """An instance (Name tag or ID) listed twice, in one wave or in two, is refused, naming both places.

    Planning would put it in whichever wave comes first, so the operator's intent (canary or not) is lost silently.
    The same instance once by name and once by ID is found after discovery (_waves.check_waves).
    """
    first = {}
    for i, wave in enumerate(waves):
        for key in ("names", "instance_ids"):
            for j, value in enumerate(wave.get(key) or []):
                if value is None:
                    continue
                where = "%s[%d].%s[%d]" % (path, i, key, j)
                if (key, value) in first:
                    problems.append("%s: %s is listed twice, here and at %s; an instance belongs to one wave, once" % (where, value, first[(key, value)]))
                else:
                    first[(key, value)] = where


def wave_warnings(config, source):
    """Waves that can never get an instance because percentages or a catch-all wave before them take everything: a warning, not an error.

    Instances named by instance_ids/names are reserved for their wave (see _waves), so only count/percent/catch-all
    waves can be starved; counts depend on the fleet's size and are checked after discovery (_waves.check_waves).
    """
    path = "%s.patching.waves" % ROOT_KEY
    warnings = []
    share, catch_all = 0, None
    for i, wave in enumerate((config.get("patching") or {}).get("waves") or []):
        kind = _waves.selector(wave)
        if kind in _waves.EXPLICIT:
            continue
        where = "%s: %s[%d] (wave %r): gets no instance" % (source, path, i, wave.get("name"))
        if catch_all is not None:
            warnings.append("%s: %s[%d] (wave %r) before it takes every instance left" % ((where, path) + catch_all))
        elif share >= 100:
            warnings.append("%s: the percent waves before it already take %d%% of the instances" % (where, share))
        if kind == "percent":
            share += int(wave["percent"])
        elif kind is None and catch_all is None:
            catch_all = (i, wave.get("name"))
    return warnings


def _partition_checks(config, regions, path, problems):
    """Every account works in every region of the zone, so the regions share one partition, and it is the role ARNs' partition."""
    partitions = {}
    for region in regions:
        partitions.setdefault(v.partition_of(region), []).append(region)
    partitions.pop(None, None)
    if len(partitions) > 1:
        problems.append(
            "%s.regions: the regions span partitions (%s); an account lives in one partition, so use one landing zone per partition"
            % (path, "; ".join("%s: %s" % (p, ", ".join(r)) for p, r in sorted(partitions.items())))
        )
        return
    for i, account in enumerate(config.get("accounts") or []):
        if account and account.get("role_arn") and not v.role_arn_error(account["role_arn"]):
            error = v.partition_error(account["role_arn"], regions, account.get("account_id"))
            if error:
                problems.append("%s.accounts[%d].role_arn: %s" % (path, i, error))


def validate(data, source):
    """Validate the parsed file content; return the resolved configuration or raise ConfigError."""
    problems = []
    if not isinstance(data, dict) or ROOT_KEY not in data:
        found = ", ".join(sorted(map(str, data))) if isinstance(data, dict) else _type_name(data)
        raise ConfigError(["%s: expected a mapping with the key %r at the top (found: %s)" % (source, ROOT_KEY, found or "nothing")])
    extra = sorted(str(k) for k in data if k != ROOT_KEY)
    if extra:
        problems.append("%s: unexpected top-level key(s) %s; everything belongs under %s" % (source, ", ".join(extra), ROOT_KEY))
    body = data[ROOT_KEY]
    if not isinstance(body, dict):
        raise ConfigError(["%s: %s: expected a mapping, got %s" % (source, ROOT_KEY, _type_name(body))])
    config = _validate_mapping(SCHEMA, body, ROOT_KEY, problems)
    _cross_checks(config, ROOT_KEY, problems)
    if problems:
        raise ConfigError(["%s: %s" % (source, p) if not p.startswith(source) else p for p in problems])
    return config


class _UniqueKeyLoader(yaml.SafeLoader if HAS_YAML else object):
    """A SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_unique_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, "duplicate key %r" % (key,), key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


if HAS_YAML:
    _UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def known_landing_zones(search_paths):
    """Names of every landing zone found under the search paths, sorted."""
    names = set()
    for root in search_paths:
        if not root or not os.path.isdir(root):
            continue
        for entry in os.listdir(root):
            if LZ_NAME.fullmatch(entry) and config_path(root, entry):
                names.add(entry)
    return sorted(names)


def config_path(root, name):
    """The landing zone's file under one search path: the current place first, then the deprecated one; None if neither."""
    for relative in (CONFIG_FILE, LEGACY_CONFIG_FILE):
        path = os.path.join(root, name, relative)
        if os.path.isfile(path):
            return path
    return None


def deprecation(path):
    """The deprecation note for a file found at the old place, else None."""
    if path.endswith(os.sep + LEGACY_CONFIG_FILE):
        return LEGACY_NOTE % (path, os.path.join(path[: -len(LEGACY_CONFIG_FILE)], CONFIG_FILE))
    return None


def lz_name_error(name):
    """Why a landing-zone name is refused, or None; checked before any file is looked at."""
    if isinstance(name, str) and LZ_NAME.fullmatch(name):
        return None
    return (
        "landing zone name %r is not valid: a landing zone is a plain directory name under the search paths, made of letters, digits, "
        "'-' and '_' (no '.', '/' or '\\'), e.g. -e lz=prod" % (name,)
    )


def find_config(name, search_paths):
    """Path of the landing zone's file, first match wins; ConfigError naming the known zones if absent."""
    if not name:
        known = known_landing_zones(search_paths)
        raise ConfigError(["no landing zone given: run with -e lz=<name> (known landing zones: %s)" % (", ".join(known) if known else "none")])
    error = lz_name_error(name)
    if error:
        raise ConfigError([error])
    for root in search_paths:
        path = config_path(root, name) if root else None
        if path:
            return path
    known = known_landing_zones(search_paths)
    where = ", ".join(p for p in search_paths if p) or "(no search paths)"
    raise ConfigError(
        ["unknown landing zone %r: known landing zones are %s (searched %s for <lz>/%s)" % (name, ", ".join(known) if known else "none", where, CONFIG_FILE)]
    )


def load(name, search_paths):
    """Find, parse and validate a landing zone; return (path, resolved configuration)."""
    path = find_config(name, search_paths)
    return path, load_file(path, name)


def load_file(path, name):
    """Parse and validate one landing-zone file; return the resolved configuration."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_UniqueKeyLoader)  # nosec B506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(["%s: not valid YAML: %s" % (path, str(exc).replace("\n", " "))]) from None
    except OSError as exc:
        raise ConfigError(["%s: cannot be read: %s" % (path, exc)]) from None
    config = validate(data, path)
    config["name"] = name
    return config


def redacted(config):
    """A copy fit for printing and for results: external IDs are shared secrets with the role owner."""
    copy = _copy(config)
    for account in copy.get("accounts", []):
        if account.get("external_id"):
            account["external_id"] = "********"
    for key in ("external_id", "management_external_id"):
        if (copy.get("organization") or {}).get(key):
            copy["organization"][key] = "********"
    return copy
