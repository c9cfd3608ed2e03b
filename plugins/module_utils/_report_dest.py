# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Where a run's report goes: one resolution shared by the ``landing_zone`` module and the ``patch_report`` callback.

Both compute the destinations from the same four tiers, highest first, key by key:

1. extra vars (``-e cms_patching_report_dir=...``, an AWX survey), see ``EXTRA_VARS``;
2. the environment (``CMS_PATCHING_REPORT_DIR=...``, an AWX credential or EE), see ``ENV_VARS``;
3. the landing zone's ``report`` section;
4. defaults (the callback's options: ansible.cfg ``[cms_patching_report]`` or the built-in ones).

The module validates them before any AWS call (a bad template is a configuration error naming where it came from);
the callback uses the same code at the end, and falls back to the default file name instead of losing the CSV.
"""

import os
import string

DEFAULT_DIR = "./reports"
DEFAULT_FILE_NAME = "{lz}-{run_id}.csv"
# Placeholders of report.file_name and report.s3.prefix. {slice} is the job slice's number given as extra vars (1 when not
# given); {job} the AWX / AAP job ID (awx_job_id), NO_JOB outside AWX.
FIELDS = ("lz", "run_id", "slice", "job")
NO_JOB = "local"
SSE_CHOICES = ("AES256", "aws:kms")
KEYS = ("dir", "file_name", "s3_bucket", "s3_prefix", "s3_sse", "s3_kms_key_id", "s3_account_id", "s3_region")
EXTRA_VARS = {key: "cms_patching_report_%s" % key for key in KEYS}
ENV_VARS = {key: "CMS_PATCHING_REPORT_%s" % key.upper() for key in KEYS}
# The file name's variable has been CMS_PATCHING_REPORT_FILE since 0.1.0.
ENV_VARS["file_name"] = "CMS_PATCHING_REPORT_FILE"


class DestinationError(Exception):
    """Every problem found, one per line, each naming where the bad value came from."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def template_error(template, fields=FIELDS):
    """None when ``template`` only uses known placeholders, else a sentence naming the bad one."""
    try:
        names = [name for _text, name, _spec, _conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return "is not a valid template: %s" % exc
    for name in names:
        if name not in fields:
            return "unknown placeholder {%s} (known: %s)" % (name, ", ".join("{%s}" % f for f in fields))
    return None


def flatten_lz(report):
    """The landing zone's ``report`` section ({dir, file_name, s3: {...}}) as flat keys."""
    report = report or {}
    flat = {"dir": report.get("dir"), "file_name": report.get("file_name")}
    for key, value in (report.get("s3") or {}).items():
        flat["s3_%s" % key] = value
    return {k: v for k, v in flat.items() if v is not None}


def _given(value):
    return value is not None and value != {}


def resolve(extra=None, environ=None, lz=None, defaults=None, lz_source="the landing zone"):
    """The resolved settings {key: value} and where each came from {key: label}; DestinationError on a bad value.

    ``extra`` holds extra vars by their names (EXTRA_VARS), ``environ`` the environment (ENV_VARS), ``lz`` the flat
    landing-zone keys (flatten_lz), ``defaults`` the callback's dir/file_name.
    """
    extra, environ, lz, defaults = extra or {}, environ or {}, lz or {}, defaults or {}
    tiers = (
        ({k: extra.get(v) for k, v in EXTRA_VARS.items()}, "extra var %s"),
        ({k: environ.get(v) for k, v in ENV_VARS.items()}, "environment variable %s"),
        (lz, lz_source + ": cms_patching_landing_zone.report.%s"),
        (defaults, "default %s"),
    )
    names = (EXTRA_VARS, ENV_VARS, {k: k.replace("s3_", "s3.") for k in KEYS}, {k: k for k in KEYS})
    settings, origin = {}, {}
    for key in KEYS:
        for (values, label), name in zip(tiers, names):
            if _given(values.get(key)):
                settings[key], origin[key] = values[key], label % name[key]
                break
    settings.setdefault("dir", DEFAULT_DIR)
    settings.setdefault("file_name", DEFAULT_FILE_NAME)
    origin.setdefault("dir", "default dir")
    origin.setdefault("file_name", "default file_name")
    problems = check(settings, origin)
    if problems:
        raise DestinationError(problems)
    if settings.get("s3_bucket") and settings.get("s3_kms_key_id") and not settings.get("s3_sse"):
        settings["s3_sse"] = "aws:kms"
    if settings.get("s3_bucket"):
        settings.setdefault("s3_sse", "AES256")
    return settings, origin


def check(settings, origin):
    problems = []
    for key in ("file_name", "s3_prefix"):
        value = settings.get(key)
        if value is None:
            continue
        error = template_error(str(value))
        if error:
            problems.append("%s: %s" % (origin[key], error))
        elif key == "file_name" and (not str(value).strip() or "/" in str(value) or "\\" in str(value)):
            problems.append("%s: %r must be a plain file name (no directory)" % (origin[key], value))
    sse = settings.get("s3_sse")
    if sse and sse not in SSE_CHOICES:
        problems.append("%s: %r is not one of %s" % (origin["s3_sse"], sse, ", ".join(SSE_CHOICES)))
    if settings.get("s3_kms_key_id") and sse == "AES256":
        problems.append("%s: a KMS key needs s3 sse aws:kms, not AES256" % origin["s3_kms_key_id"])
    for key in ("s3_prefix", "s3_sse", "s3_kms_key_id", "s3_account_id", "s3_region"):
        if settings.get(key) and not settings.get("s3_bucket"):
            problems.append("%s: set without an S3 bucket (report s3 bucket / %s / %s)" % (origin[key], EXTRA_VARS["s3_bucket"], ENV_VARS["s3_bucket"]))
            break
    return problems


def slice_error(number, count):
    """None when (number, count) is a job slice (1 <= number <= count) or no slice at all (both None), else a sentence."""
    if number is None and count is None:
        return None
    try:
        number, count = int(number if number is not None else 1), int(count if count is not None else 1)
    except (TypeError, ValueError):
        return "the job slice must be whole numbers, got number %r of count %r" % (number, count)
    if count < 1 or not 1 <= number <= count:
        return "the job slice number must be between 1 and the slice count, got %d of %d" % (number, count)
    return None


def render(template, lz, run_id, slice_number=None, job_id=None):
    return str(template).format(lz=lz or "unknown", run_id=run_id or "unknown", slice=slice_number or 1, job=job_id or NO_JOB)


def _suffixed(template, suffix):
    stem, dot, ext = template.rpartition(".") if "." in template else (template, "", "")
    return "%s-%s%s%s" % (stem, suffix, dot, ext)


def file_names(settings, lz, run_id, slice_number=None, job_id=None):
    """(csv name, json name): the JSON sits beside the CSV, same base name.

    The jobs of one run share its run ID and usually the directory or S3 prefix, so each names its report after itself:
    ``job_id`` (the AWX job ID, which AWX gives every job and every slice of a sliced job template) makes a name without
    {job} (the default one included) gain ``-job<id>`` before its extension. Outside AWX, ``slice_number`` (given only
    in a job told it is a slice) makes a name without {slice} gain ``-slice<N>``. Without either, the name is as set.
    """
    template = str(settings["file_name"])
    if job_id and "{job}" not in template:
        template = _suffixed(template, "job{job}")
    elif slice_number and not job_id and "{slice}" not in template:
        template = _suffixed(template, "slice{slice}")
    name = render(template, lz, run_id, slice_number, job_id)
    base = name[:-4] if name.lower().endswith(".csv") else name
    return name, base + ".json"


def s3_keys(settings, lz, run_id, slice_number=None, job_id=None):
    """(csv key, json key) under the prefix, or None without a bucket."""
    if not settings.get("s3_bucket"):
        return None
    prefix = render(settings.get("s3_prefix") or "", lz, run_id, slice_number, job_id).strip("/")
    return tuple("%s/%s" % (prefix, name) if prefix else name for name in file_names(settings, lz, run_id, slice_number, job_id))


def describe(settings, lz, run_id, slice_number=None, job_id=None):
    """What the job's artifacts say about the report: absolute local paths and S3 URIs."""
    csv_name, json_name = file_names(settings, lz, run_id, slice_number, job_id)
    directory = os.path.abspath(os.path.expanduser(settings["dir"]))
    result = {"csv": os.path.join(directory, csv_name), "json": os.path.join(directory, json_name)}
    keys = s3_keys(settings, lz, run_id, slice_number, job_id)
    if keys:
        result["s3_csv"] = "s3://%s/%s" % (settings["s3_bucket"], keys[0])
        result["s3_json"] = "s3://%s/%s" % (settings["s3_bucket"], keys[1])
    return result
