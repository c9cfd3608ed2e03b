# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""One row per instance per run, merged from the results of the three phases.

Used on the controller by the ``patch_report`` callback (which writes the CSV)
and by the ``report_summary`` filter (which feeds ``set_stats``), so the CSV and
the AWX artifacts are computed by the same code from the same module results.

Besides the instances, an account/region that discovery could not scan (or
not fully) gets a row of its own, with an empty ``instance_id`` and the failure
in ``error``: its instances are unknown, so that row is all the report can say
about them.  An account of the landing zone's OUs that was left out (suspended,
excluded by an account tag) gets a row too, with the reason in ``skip_reason``, and
so does one that was scanned and holds no instance of the landing zone.
Check mode's "would do" goes to ``plan``, never to ``error``: a dry run reports
no errors.
"""

import csv
import datetime
import io
import json
import os
import tempfile

COLUMNS = (
    "run_id",
    "lz",
    "account_id",
    "region",
    "instance_id",
    "name",
    "platform",
    "instance_state",
    "ssm_status",
    "target",
    "skip_reason",
    "ami_id",
    "snapshot_ids",
    "backup_status",
    "patch_command_id",
    "patch_status",
    "patches_installed",
    "patches_failed",
    "reboot",
    "compliance",
    "error",
    "started_at",
    "finished_at",
    # Added after the original 23 columns; new columns only ever go at the end.
    "wave",
    "post_checks",
    "plan",
    # Recovery (cms.patching.ec2_rollback): rolled_back, failed, skipped, not_run; and "device: old -> new; ..." per volume.
    "rollback_status",
    "rollback_volumes",
)
BACKUP_STATUSES = ("verified", "failed", "skipped", "not_run")
PATCH_STATUSES = ("success", "failed", "timed_out", "cancelled", "undeliverable", "skipped", "not_run")
ROLLBACK_STATUSES = ("rolled_back", "failed", "skipped", "not_run")
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ERROR_MAX = 1000
# Until every module returns check mode's plan in its own ``plan`` field, a reason with this prefix is the plan.
CHECK_MODE_PREFIX = "check mode: "
PHASES = (("backup_status", "backup"), ("patch_status", "patching"))


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def neutralise(value):
    """Render a cell; text a spreadsheet would evaluate gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        value = ";".join(str(x) for x in value)
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def _unneutralise(text):
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_PREFIXES) else text


# The note explain_not_run leaves on a target whose phase was simply not selected (--tags): no error, so a real error
# replaces it - also one from a later run of the same run ID (a rollback adds to the patch run's CSV).
NOT_SELECTED = " phase not run: not part of this run"


def _is_note(error):
    return NOT_SELECTED in (error or "")


def _trim(text):
    text = " ".join(str(text or "").split())
    return text if len(text) <= ERROR_MAX else text[: ERROR_MAX - 3] + "..."


class RunReport:
    """Rows keyed by instance ID, in the order instances were first seen."""

    def __init__(self):
        self.lz = ""
        self.run_id = ""
        self.rows = {}
        # Run-level: who carried out the run's retention (the claim of ami_backup_verified mode=retain), when it ran.
        self.retention = None

    def set_run(self, lz, run_id):
        self.lz = lz or self.lz
        self.run_id = run_id or self.run_id
        for row in self.rows.values():
            row["lz"], row["run_id"] = self.lz, self.run_id

    def _row(self, instance_id, when):
        row = self.rows.get(instance_id)
        if row is None:
            row = {c: "" for c in COLUMNS}
            row.update(instance_id=instance_id, lz=self.lz, run_id=self.run_id, backup_status="not_run", patch_status="not_run", started_at=when)
            row["rollback_status"] = "not_run"
            self.rows[instance_id] = row
        row["finished_at"] = when
        return row

    def _set_error(self, row, message):
        if message and (not row["error"] or _is_note(row["error"])):
            row["error"] = _trim(message)

    @staticmethod
    def _add_plan(row, plan):
        if plan and plan not in row["plan"].split("; "):
            row["plan"] = _trim("; ".join(p for p in (row["plan"], plan) if p))

    @staticmethod
    def _plan_of(item, reason):
        """Check mode's plan: the module's ``plan`` field, or (modules not yet returning one) a reason starting "check mode: "."""
        if item.get("plan"):
            return item["plan"], reason
        if isinstance(reason, str) and reason.startswith(CHECK_MODE_PREFIX):
            return reason[len(CHECK_MODE_PREFIX) :], ""
        return "", reason

    def add_discovery(self, instances, when=None, errors=None, skipped_accounts=None, empty_accounts=None):
        when = when or now_iso()
        self.add_locations(errors or [], when)
        self.add_accounts(skipped_accounts or [], "account skipped: %s", when)
        self.add_accounts([dict(a, reason="no instance of the landing zone found in its regions") for a in empty_accounts or []], "account scanned: %s", when)
        for item in instances:
            row = self._row(item["instance_id"], when)
            row.update(
                account_id=item.get("account_id", ""),
                region=item.get("region", ""),
                name=item.get("name", ""),
                platform=item.get("platform", ""),
                instance_state=item.get("state", ""),
                ssm_status=item.get("ssm_status", ""),
                target=bool(item.get("target")),
                skip_reason=item.get("skip_reason", ""),
            )
            if not item.get("target"):
                row["backup_status"] = "skipped"
                row["patch_status"] = "skipped"

    def add_locations(self, errors, when=None):
        """A row per account/region discovery could not scan: empty instance_id, the failure in error."""
        when = when or now_iso()
        for item in errors:
            key = "location:%s/%s" % (item.get("account_id", ""), item.get("region", ""))
            row = self.rows.get(key)
            if row is None:
                row = {c: "" for c in COLUMNS}
                row.update(lz=self.lz, run_id=self.run_id, account_id=item.get("account_id", ""), region=item.get("region", ""), started_at=when)
                self.rows[key] = row
            row["finished_at"] = when
            row["error"] = _trim("discovery failed in %s/%s: %s" % (row["account_id"], row["region"], item.get("error") or "unknown error"))

    def add_accounts(self, accounts, template, when=None):
        """A row per account of the landing zone's OUs without instance rows (left out: suspended, excluded by tag; or empty):
        why, in skip_reason (``template % reason``); not an error."""
        when = when or now_iso()
        for item in accounts:
            key = "account:%s" % item.get("account_id", "")
            row = self.rows.get(key)
            if row is None:
                row = {c: "" for c in COLUMNS}
                row.update(lz=self.lz, run_id=self.run_id, account_id=item.get("account_id", ""), started_at=when)
                self.rows[key] = row
            row.update(finished_at=when, target=False, skip_reason=_trim(template % (item.get("reason") or "left out")))

    @staticmethod
    def is_location(key):
        """Rows of an account or account/region rather than of an instance."""
        return key.startswith(("location:", "account:"))

    def add_backup(self, instances, when=None):
        when = when or now_iso()
        for item in instances:
            row = self._row(item["instance_id"], when)
            for key in ("account_id", "region"):
                row[key] = row[key] or item.get(key, "")
            row["ami_id"] = item.get("ami_id") or row["ami_id"]
            row["snapshot_ids"] = ";".join(item.get("snapshot_ids") or []) or row["snapshot_ids"]
            status = item.get("backup_status")
            if status in BACKUP_STATUSES:
                row["backup_status"] = status
            plan, reason = self._plan_of(item, item.get("reason"))
            self._add_plan(row, plan)
            if status == "failed":
                self._set_error(row, "backup failed: %s" % (reason or "unknown reason"))
                if row["patch_status"] == "not_run":
                    row["patch_status"] = "skipped"

    def add_patch(self, instances, when=None):
        when = when or now_iso()
        for item in instances:
            row = self._row(item["instance_id"], when)
            for key in ("account_id", "region"):
                row[key] = row[key] or item.get(key, "")
            row["patch_command_id"] = item.get("command_id") or row["patch_command_id"]
            status = item.get("patch_status")
            if status in PATCH_STATUSES:
                row["patch_status"] = status
            for column, key in (("patches_installed", "installed_count"), ("patches_failed", "failed_count")):
                if item.get(key) is not None:
                    row[column] = item[key]
            row["reboot"] = item.get("reboot") or row["reboot"]
            row["compliance"] = item.get("compliance") or row["compliance"]
            row["wave"] = item.get("wave") or row["wave"]
            checks = item.get("post_checks") or {}
            if checks:
                row["post_checks"] = checks.get("status", "")
            plan, reason = self._plan_of(item, item.get("error") or item.get("reason"))
            self._add_plan(row, plan)
            if status == "skipped" and plan and not reason:
                pass  # check mode: what it would do is the plan, not an error
            elif status in PATCH_STATUSES and status not in ("success", "not_run"):
                self._set_error(row, reason or status)
            elif checks.get("status") == "failed":
                self._set_error(row, "post-patch check failed: %s" % checks.get("reason", ""))

    def add_rollback(self, instances, when=None):
        """Results of cms.patching.ec2_rollback; a failed or refused rollback's reason goes to error."""
        when = when or now_iso()
        for item in instances:
            row = self._row(item["instance_id"], when)
            for key in ("account_id", "region", "name"):
                row[key] = row[key] or item.get(key, "")
            status = item.get("rollback_status")
            if status in ROLLBACK_STATUSES:
                row["rollback_status"] = status
            row["rollback_volumes"] = item.get("rollback_volumes_text") or row["rollback_volumes"]
            if status in ("failed", "skipped") and item.get("error"):
                self._set_error(row, "rollback %s: %s" % (status, item["error"]))

    def keep_rows_of(self, path):
        """Merge the rows of an earlier CSV of this run (a rollback run adds its columns to the patch run's report).

        A cell this run knows nothing about (empty, or not_run) keeps the earlier value; rows of instances this run
        did not see are kept as they were.
        """
        with open(path, encoding="utf-8", newline="") as handle:
            earlier = list(csv.DictReader(handle))
        merged = {}
        for old in earlier:
            instance_id = old.get("instance_id")
            if not instance_id:
                continue
            row = {c: _unneutralise(old.get(c) or "") for c in COLUMNS}
            row["rollback_status"] = row["rollback_status"] or "not_run"
            new = self.rows.get(instance_id)
            if new is not None:
                for column in COLUMNS:
                    if column == "error" and _is_note(row["error"]) and new["error"]:
                        row["error"] = new["error"]
                    elif column == "error" and row["error"] and new["error"] and new["error"] not in row["error"] and not _is_note(new["error"]):
                        row["error"] = _trim("%s; %s" % (row["error"], new["error"]))
                    elif new[column] not in ("", "not_run", None) and not (column in ("error", "started_at") and row[column]):
                        row[column] = new[column]
            merged[instance_id] = row
        for instance_id, row in self.rows.items():
            merged.setdefault(instance_id, row)
        self.rows = merged

    def add_error(self, instance_ids, message, when=None):
        """A failure without per-instance results (an AWS error, a failed gate task) lands on each row it concerns."""
        when = when or now_iso()
        for instance_id in instance_ids:
            if instance_id in self.rows:
                self._set_error(self._row(instance_id, when), message)

    def explain_not_run(self, stopped_by=None, interrupted=False, selection=""):
        """When the run is over: every target with a phase still not_run says why, in error.

        ``stopped_by`` is what ended the run early ("discovery failed in 210987654321/eu-west-1"), ``interrupted``
        says it was cut short (Ctrl-C, a cancel); with neither, the phase was simply not part of this run
        (``selection``, e.g. "--tags discovery"): that is said too, but it is no error and is not counted as one.
        """
        for key, row in self.rows.items():
            if self.is_location(key) or row["target"] is not True or row["error"]:
                continue
            phase = next((name for column, name in PHASES if row[column] == "not_run"), None)
            if phase is None:
                continue
            if stopped_by:
                row["error"] = _trim("%s phase did not run: the run stopped after %s" % (phase, stopped_by))
            elif interrupted:
                row["error"] = "%s phase did not run: the run was interrupted before it" % phase
            else:
                row["error"] = "%s%s%s" % (phase, NOT_SELECTED, " (%s)" % selection if selection else "")

    def set_retention(self, claim, summary=None):
        """The retention claim's outcome (won or who has it) and, when this job carried retention out, its counts."""
        self.retention = dict(claim or {}, **({"summary": summary} if summary and (claim or {}).get("won", True) else {}))

    def summary(self):
        rows = [r for k, r in self.rows.items() if not self.is_location(k)]
        locations = [r for k, r in self.rows.items() if self.is_location(k)]
        backup = {s: 0 for s in BACKUP_STATUSES}
        patch = {s: 0 for s in PATCH_STATUSES}
        rollback = {s: 0 for s in ROLLBACK_STATUSES}
        for row in rows:
            backup[row["backup_status"]] = backup.get(row["backup_status"], 0) + 1
            patch[row["patch_status"]] = patch.get(row["patch_status"], 0) + 1
            rollback[row["rollback_status"]] = rollback.get(row["rollback_status"], 0) + 1
        return {
            "lz": self.lz,
            "run_id": self.run_id,
            "seen": len(rows),
            "targets": sum(1 for r in rows if r["target"] is True),
            "backup": backup,
            "patch": patch,
            "rollback": rollback,
            # Rows (instances and account/regions) with an error; a phase that was merely not selected is not one.
            "errors": sum(1 for r in self.rows.values() if r["error"] and not _is_note(r["error"])),
            "discovery_failed": ["%s/%s" % (r["account_id"], r["region"]) for r in locations if r["error"]],
        }

    def to_csv(self):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows.values():
            writer.writerow([neutralise(row[c]) for c in COLUMNS])
        return buffer.getvalue()

    def to_json(self):
        """The same rows as the CSV, one object per instance (and per account/region discovery could not scan), typed."""
        instances = []
        for row in self.rows.values():
            item = dict(row)
            item["target"] = row["target"] if isinstance(row["target"], bool) else None
            item["snapshot_ids"] = [s for s in str(row["snapshot_ids"]).split(";") if s]
            instances.append(item)
        document = {"lz": self.lz, "run_id": self.run_id, "summary": self.summary(), "instances": instances}
        if self.retention is not None:
            document["retention"] = self.retention
        return json.dumps(document, indent=1, sort_keys=True) + "\n"

    def write(self, path):
        """Write the CSV atomically."""
        write_atomically(path, self.to_csv())

    def write_json(self, path):
        write_atomically(path, self.to_json())


def write_atomically(path, text):
    """A reader (or an interrupted run) never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".report-", suffix=os.path.splitext(path)[1], dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def summary_line(summary):
    """One human line: the same numbers as the CSV and set_stats."""
    backup = ", ".join("%d %s" % (n, s) for s, n in summary["backup"].items() if n)
    patch = ", ".join("%d %s" % (n, s) for s, n in summary["patch"].items() if n)
    line = "%d seen, %d targets; backup: %s; patch: %s; %d with errors" % (
        summary["seen"],
        summary["targets"],
        backup or "none",
        patch or "none",
        summary["errors"],
    )
    if summary.get("discovery_failed"):
        line += "; discovery failed in %s" % ", ".join(summary["discovery_failed"])
    # Rollbacks only when one was attempted: a normal run's line stays as it was.
    rollback = ", ".join("%d %s" % (n, s) for s, n in (summary.get("rollback") or {}).items() if n and s != "not_run")
    return line + ("; rollback: %s" % rollback if rollback else "")
