# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: patch_report
type: aggregate
short_description: Writes the CSV report of a patching run, one row per instance
version_added: 0.1.0
description:
  - Collects the results of C(cms.patching.landing_zone), C(cms.patching.ec2_patch_scan), C(cms.patching.ami_backup_verified) and
    C(cms.patching.ssm_patch_run) as they arrive, plus every failure of a task on an instance's host, and keeps one row per instance seen.
  - Rewrites the CSV atomically after every result that changes it, so a run that fails or is interrupted (Ctrl-C, AWX cancel) still
    leaves a complete report of everything known so far; writes it a last time when the playbook ends and prints a summary and its path.
  - Prints the progress of long waits (AMI verification, patch waves) each time a module returns to be polled again.
  - Columns, in order; C(run_id, lz, account_id, region, instance_id, name, platform, instance_state, ssm_status, target, skip_reason,
    ami_id, snapshot_ids, backup_status, patch_command_id, patch_status, patches_installed, patches_failed, reboot, compliance, error,
    started_at, finished_at, wave, post_checks, plan). New columns are only ever added at the end.
  - C(error) holds the reason whenever something failed. An account/region that discovery could not scan (or not fully) gets a row
    of its own with an empty C(instance_id) and the failure in C(error); the summary counts it among the errors and names it.
  - When the run ends, every target with a phase still C(not_run) says why in C(error); the run stopped after a failure (named),
    the run was interrupted, or the phase was not part of this run (C(--tags)); the last is not counted as an error.
  - In check mode, what the run would do (C(would create an AMI), C(would send AWS-RunPatchBaseline ...)) goes to C(plan), never
    to C(error); a dry run reports no errors.
  - Cells starting with C(=), C(+), C(-), C(@), a tab or a carriage return are prefixed with an apostrophe so a spreadsheet does not
    run them as formulas.
  - A landing zone's C(report.dir) and C(report.file_name) settings, when set, take precedence over these options.
requirements:
  - Enable it in ansible.cfg (C(callbacks_enabled = cms.patching.patch_report)).
options:
  dir:
    description: The directory for the CSV files; created when missing.
    type: path
    default: ./reports
    env:
      - name: CMS_PATCHING_REPORT_DIR
    ini:
      - section: cms_patching_report
        key: dir
  file_name:
    description: The CSV file name; C({lz}) and C({run_id}) are replaced.
    type: str
    default: "{lz}-{run_id}.csv"
    env:
      - name: CMS_PATCHING_REPORT_FILE
    ini:
      - section: cms_patching_report
        key: file_name
"""

import atexit
import os

from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.cms.patching.plugins.module_utils._report import RunReport, summary_line

_CONFIG = "cms.patching.landing_zone"
_SCAN = "cms.patching.ec2_patch_scan"
_BACKUP = "cms.patching.ami_backup_verified"
_PATCH = "cms.patching.ssm_patch_run"
_OURS = (_CONFIG, _SCAN, _BACKUP, _PATCH)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "cms.patching.patch_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self.report = RunReport()
        self._overrides = {}
        self._path = None
        self._dirty = False
        # What ended the run early, if anything: the last failure before Ansible had no host left to run on.
        self._last_failure = None
        self._stopped_by = None
        self._finished = False
        self._plays_total = None
        self._plays_started = 0
        atexit.register(self._at_exit)

    # -- collecting -------------------------------------------------------------------------------

    def _action(self, result):
        task = result._task  # pylint: disable=protected-access
        return getattr(task, "resolved_action", None) or task.action

    def _collect(self, result, failed):
        action = self._action(result)
        data = result._result  # pylint: disable=protected-access
        if action == _CONFIG and not failed:
            self.report.set_run(data.get("lz"), data.get("run_id"))
            self._overrides = (data.get("config") or {}).get("report") or {}
            self._path = None
        elif action == _SCAN and not data.get("accounts_only"):
            self.report.add_discovery(
                data.get("instances") or [],
                errors=data.get("errors") or [],
                skipped_accounts=data.get("skipped_accounts") or [],
                empty_accounts=data.get("empty_accounts") or [],
            )
        elif action == _BACKUP and data.get("mode", "create") in ("create", "verify"):
            self.report.add_backup(data.get("instances") or [])
        elif action == _PATCH:
            self.report.add_patch(data.get("instances") or [])
        if failed:
            self._collect_failure(result, action, data)
        self._dirty = True
        self._flush()

    def _collect_failure(self, result, action, data):
        message = data.get("msg") or self._gave_up(data) or "task failed"
        self._last_failure = self._cause(result, action, data, message)
        if action == _SCAN and data.get("errors"):
            # The failed account/regions have rows of their own; the instances that were scanned are not in error.
            return
        if action in _OURS:
            args = (data.get("invocation") or {}).get("module_args") or {}
            instances = args.get("instances") or []
            ids = [i.get("instance_id") for i in instances if isinstance(i, dict)] or args.get("instance_ids") or []
            self.report.add_error(ids, "%s: %s" % (action.rsplit(".", 1)[-1], message))
        else:
            host = result._host  # pylint: disable=protected-access
            instance_id = host.vars.get("instance_id") or host.get_name()
            self.report.add_error([instance_id], message)

    @staticmethod
    def _gave_up(data):
        """A polling task (until/retries) that ran out of rounds fails without a msg: say that, and what was still pending."""
        if data.get("attempts") and data.get("pending"):
            return "still %s pending after %s polls; the role's wait_timeout ran out" % (data["pending"], data["attempts"])
        return ""

    @staticmethod
    def _cause(result, action, data, message):
        """What a failure would have stopped the run by, in words for the rows it leaves not_run."""
        if action == _SCAN and data.get("errors"):
            return "discovery failed in %s" % ", ".join("%s/%s" % (e.get("account_id"), e.get("region")) for e in data["errors"])
        if action == _SCAN:
            return "discovery failed: %s" % message
        if action == _BACKUP:
            return "the backup failed: %s" % message
        if action == _PATCH:
            wave = ((data.get("invocation") or {}).get("module_args") or {}).get("wave")
            return "patch wave %s failed: %s" % (wave, message) if wave else "patching failed: %s" % message
        task = result._task  # pylint: disable=protected-access
        name = task.get_name() if hasattr(task, "get_name") else action
        return "task '%s' failed: %s" % (name, message)

    def v2_playbook_on_start(self, playbook):
        try:
            self._plays_total = len(playbook.get_plays())
        except Exception:  # pylint: disable=broad-except  # without the count every no-hosts-left counts as a stop
            self._plays_total = None

    def v2_playbook_on_play_start(self, play):
        self._plays_started += 1

    def _stopped(self):
        """Plays were left when the playbook ended: every host of one failed, so the later plays (phases) never ran.

        A failure in the last play stops nothing (e.g. the verdict that fails a run discovery could not finish).
        """
        if self._plays_total is not None and self._plays_started < self._plays_total:
            self._stopped_by = self._stopped_by or self._last_failure or "every host of a play failed"

    def v2_runner_on_ok(self, result):
        if self._action(result) in _OURS:
            self._collect(result, failed=False)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        last = self._last_failure
        self._collect(result, failed=True)
        if ignore_errors:
            self._last_failure = last

    def v2_runner_on_unreachable(self, result):
        self._collect(result, failed=True)

    def v2_runner_retry(self, result):
        progress = result._result.get("progress")  # pylint: disable=protected-access
        if self._action(result) in _OURS and isinstance(progress, dict) and progress.get("line"):
            self._display.display("cms.patching %s" % progress["line"])
        if self._action(result) in _OURS:
            self._collect(result, failed=False)

    # -- writing ----------------------------------------------------------------------------------

    def _report_path(self):
        if self._path is None:
            directory = self._overrides.get("dir") or self.get_option("dir")
            name = (self._overrides.get("file_name") or self.get_option("file_name")).format(lz=self.report.lz or "unknown", run_id=self.report.run_id)
            self._path = os.path.join(os.path.expanduser(directory), name)
        return self._path

    def _flush(self):
        # Nothing seen yet (e.g. a configuration error): there is no row to lose and no file to write.
        if not self._dirty or not self.report.rows or not self.report.run_id:
            return
        try:
            self.report.write(self._report_path())
            self._dirty = False
        except OSError as exc:
            self._display.warning("cms.patching.patch_report: could not write %s: %s" % (self._report_path(), exc))

    @staticmethod
    def _selection():
        """The tags that limited this run, for a phase that was not part of it."""
        tags = [t for t in context.CLIARGS.get("tags") or () if t != "all"]
        skipped = list(context.CLIARGS.get("skip_tags") or ())
        return " ".join(part for part in ("--tags %s" % ",".join(tags) if tags else "", "--skip-tags %s" % ",".join(skipped) if skipped else "") if part)

    def _finish(self, interrupted):
        if self._finished:
            return
        self._finished = True
        self.report.explain_not_run(self._stopped_by, interrupted=interrupted, selection="" if interrupted else self._selection())
        self._dirty = True
        self._flush()

    def _at_exit(self):
        # Reached without v2_playbook_on_stats: the run was interrupted (Ctrl-C, a cancel) or ended abnormally.
        self._finish(interrupted=True)

    def v2_playbook_on_stats(self, stats):
        self._stopped()
        self._finish(interrupted=False)
        if self.report.rows and self.report.run_id:
            self._display.banner("CMS PATCHING REPORT")
            self._display.display("%s run %s: %s" % (self.report.lz, self.report.run_id, summary_line(self.report.summary())))
            self._display.display("CSV report: %s" % os.path.abspath(self._report_path()))
