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
  - Where the report goes, key by key, highest first; extra vars (C(-e cms_patching_report_dir=...)), the environment
    (C(CMS_PATCHING_REPORT_DIR=...)), the landing zone's C(report) section, then these options (ansible.cfg or their defaults).
    The keys are C(dir), C(file_name), C(s3_bucket), C(s3_prefix), C(s3_sse), C(s3_kms_key_id), C(s3_account_id) and C(s3_region);
    extra vars are named C(cms_patching_report_<key>), environment variables C(CMS_PATCHING_REPORT_<KEY>) (the file name's is
    C(CMS_PATCHING_REPORT_FILE)), the landing zone's C(report.dir), C(report.file_name) and C(report.s3.<key>).
  - Beside the CSV, a JSON file with the same base name holds the same rows as typed objects, plus the summary.
  - With an S3 bucket, both files are uploaded (C(s3://<bucket>/<prefix>/<file>), SSE-S3 or SSE-KMS) at the end of every phase (play)
    and when the run ends, also when it failed or was interrupted, through the collection's session layer; the bucket's account
    (C(s3_account_id), default the landing zone's first account) is reached as the modules reach it (own credentials or its role).
    A failed upload is a warning; the local files stay.
  - Under AWX / AAP (C(awx_job_id) given) a file name without C({job}), the default one included, gains C(-job<awx_job_id>) before
    its extension, so the jobs of one run (the slices of a sliced job template, workflow nodes) each keep their own report under the
    run's directory or S3 prefix. Outside AWX, a job told its slice (C(-e cms_patching_slice_count=<n> -e cms_patching_slice_number=<i>))
    gains C(-slice<i>) the same way, unless the name has C({slice}).
  - The JSON file's C(retention) key says who carried out the run's retention (the retention claim; see M(cms.patching.ami_backup_verified)),
    also when another job of the run did; the summary printed at the end says it too.
  - Under ansible-runner / AWX (C(AWX_ISOLATED_DATA_DIR) set), both files are also copied into the job's artifacts directory, under
    C(cms_patching/).
  - C(file_name) and C(s3_prefix) take the placeholders C({lz}), C({run_id}), C({job}) (the AWX job ID, C(local) outside AWX) and
    C({slice}) (the job slice's number given as extra vars, 1 otherwise); the C(config) phase refuses any other, naming
    where it was set. Should a bad name reach the callback anyway, it warns and writes C({lz}-{run_id}.csv) instead; the CSV is
    never lost.
requirements:
  - Enable it in ansible.cfg (C(callbacks_enabled = cms.patching.patch_report)); without it the C(config) phase warns once.
options:
  dir:
    description: The directory for the CSV and JSON files; created when missing.
    type: path
    default: ./reports
    env:
      - name: CMS_PATCHING_REPORT_DIR
    ini:
      - section: cms_patching_report
        key: dir
  file_name:
    description: The CSV file name; C({lz}), C({run_id}), C({job}) and C({slice}) are replaced. The JSON file has the same base name.
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
import shutil

from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.cms.patching.plugins.module_utils import _report_dest as dest
from ansible_collections.cms.patching.plugins.module_utils._report import RunReport, summary_line

try:
    from ansible_collections.cms.patching.plugins.module_utils import _report_upload

    HAS_UPLOAD = True
except ImportError:  # boto3 missing: the local report still works, an S3 destination says why it cannot
    HAS_UPLOAD = False

_CONFIG = "cms.patching.landing_zone"
_SCAN = "cms.patching.ec2_patch_scan"
_BACKUP = "cms.patching.ami_backup_verified"
_PATCH = "cms.patching.ssm_patch_run"
_ROLLBACK = "cms.patching.ec2_rollback"
_OURS = (_CONFIG, _SCAN, _BACKUP, _PATCH, _ROLLBACK)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "cms.patching.patch_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self.report = RunReport()
        self._lz_report = {}
        self._lz_file = None
        self._accounts = []
        self._session_name = None
        self._extra_vars = {}
        self._settings = None
        self._resolved = None
        self._path = None
        self._dirty = False
        # Written since the last upload / artifacts copy.
        self._unpublished = False
        self._warned = set()
        # What ended the run early, if anything: the last failure before Ansible had no host left to run on.
        self._last_failure = None
        self._stopped_by = None
        self._finished = False
        self._plays_total = None
        self._plays_started = 0
        atexit.register(self._at_exit)
        # A rollback (--tags rollback -e run_id=...) adds to its run's existing CSV instead of replacing it.
        self._keep_existing = "rollback" in (context.CLIARGS.get("tags") or ())

    # -- collecting -------------------------------------------------------------------------------

    def _action(self, result):
        task = result._task  # pylint: disable=protected-access
        return getattr(task, "resolved_action", None) or task.action

    def _collect(self, result, failed):
        action = self._action(result)
        data = result._result  # pylint: disable=protected-access
        if action == _CONFIG and not failed and "config" not in data:
            return  # the no_log task that hands the external IDs on: its result reaches callbacks censored
        if action == _CONFIG and not failed:
            self.report.set_run(data.get("lz"), data.get("run_id"))
            config = data.get("config") or {}
            self._lz_report = dest.flatten_lz(config.get("report"))
            self._lz_file = data.get("file")
            self._accounts = config.get("accounts") or []
            self._session_name = config.get("role_session_name")
            self._resolved = data.get("report") or None
            self._settings = self._path = None
        elif action == _SCAN and not data.get("accounts_only"):
            self.report.add_discovery(
                data.get("instances") or [],
                errors=data.get("errors") or [],
                skipped_accounts=data.get("skipped_accounts") or [],
                empty_accounts=data.get("empty_accounts") or [],
            )
        elif action == _BACKUP and data.get("mode", "create") in ("create", "verify"):
            self.report.add_backup(data.get("instances") or [])
        elif action == _BACKUP and data.get("claim"):
            self.report.set_retention(data["claim"], data.get("summary"))
        elif action == _PATCH:
            self.report.add_patch(data.get("instances") or [])
        elif action == _ROLLBACK:
            self.report.add_rollback(data.get("instances") or [])
        if failed:
            self._collect_failure(result, action, data)
        self._dirty = True
        # A phase module's result is written at once. Other failures come one host at a time (the outcome play fails every
        # held-back host): rewriting the whole CSV and JSON for each would cost O(instances) per failed host (about 90 ms
        # each at 4,000 instances), so they are written once, when the next task or play starts, or when the run ends.
        if action in _OURS:
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
        try:
            extra = play.get_variable_manager().extra_vars
        except Exception:  # pylint: disable=broad-except  # no variable manager (tests, odd plays): no extra vars
            extra = {}
        extra = {name: str(extra[name]) for name in dest.EXTRA_VARS.values() if extra.get(name) not in (None, "")}
        if extra != self._extra_vars and not self.report.run_id:
            self._extra_vars = extra
            self._settings = self._path = None
        # A new play is the end of the previous phase: the report as it stands leaves the controller.
        if self._plays_started > 1:
            self._publish()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._flush()

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

    def _warn_once(self, message):
        if message not in self._warned:
            self._warned.add(message)
            self._display.warning("cms.patching.patch_report: %s" % message)

    def _destination(self):
        """The resolved settings (extra vars > environment > landing zone > options); a bad value falls back, with a warning."""
        if self._settings is None:
            defaults = {"dir": self.get_option("dir"), "file_name": self.get_option("file_name")}
            if self._resolved:
                # The config phase resolved (and validated) them with the same code; only its defaults tier is ours (ansible.cfg).
                settings, origin = dict(self._resolved.get("settings") or {}), dict(self._resolved.get("origin") or {})
                for key in ("dir", "file_name"):
                    if origin.get(key, "default").startswith("default") and defaults.get(key):
                        settings[key], origin[key] = defaults[key], "the callback's option %s" % key
                problems = dest.check(settings, origin)
            else:
                tiers = dict(extra=self._extra_vars, environ=os.environ, lz=self._lz_report, lz_source=self._lz_file or "the landing zone")
                try:
                    settings, problems = dest.resolve(defaults=defaults, **tiers)[0], []
                except dest.DestinationError as exc:
                    problems = exc.problems
                    names = (dest.EXTRA_VARS["file_name"], dest.ENV_VARS["file_name"], "file_name")
                    tiers = {k: ({n: v for n, v in t.items() if n not in names} if isinstance(t, dict) else t) for k, t in tiers.items()}
                    try:
                        settings = dest.resolve(defaults=dict(defaults, file_name=dest.DEFAULT_FILE_NAME), **tiers)[0]
                    except dest.DestinationError:
                        settings = {"dir": defaults["dir"] or dest.DEFAULT_DIR}
            if problems:
                # The config phase refuses these; should one get here anyway, the CSV is still written under the default name.
                self._warn_once("%s; writing the report as %s instead" % ("; ".join(problems), dest.DEFAULT_FILE_NAME))
                settings["file_name"] = dest.DEFAULT_FILE_NAME
            self._settings = settings
        return self._settings

    def _job(self):
        """What names this job's report among the run's (the config phase resolved it): the AWX job ID, else a slice number."""
        resolved = self._resolved or {}
        return {"slice_number": resolved.get("slice"), "job_id": resolved.get("job")}

    def _report_path(self):
        if self._path is None:
            settings = self._destination()
            csv_name = dest.file_names(settings, self.report.lz, self.report.run_id, **self._job())[0]
            self._path = os.path.join(os.path.expanduser(settings["dir"]), csv_name)
        return self._path

    def _json_path(self):
        base = self._report_path()
        return (base[:-4] if base.lower().endswith(".csv") else base) + ".json"

    def _flush(self):
        # Nothing seen yet (e.g. a configuration error): there is no row to lose and no file to write.
        if not self._dirty or not self.report.rows or not self.report.run_id:
            return
        try:
            if self._keep_existing and os.path.exists(self._report_path()):
                self.report.keep_rows_of(self._report_path())
                self._keep_existing = False
            self.report.write(self._report_path())
            self.report.write_json(self._json_path())
            self._dirty = False
            self._unpublished = True
        except OSError as exc:
            self._display.warning("cms.patching.patch_report: could not write %s: %s" % (self._report_path(), exc))

    def _publish(self):
        """Copy what was written to the other destinations: the S3 bucket and the job's artifacts directory."""
        self._flush()
        if not self._unpublished or not os.path.isfile(self._report_path()):
            return
        self._unpublished = False
        self._copy_to_artifacts()
        self._upload()

    def _copy_to_artifacts(self):
        artifacts = os.environ.get("AWX_ISOLATED_DATA_DIR")
        if not artifacts:
            return
        target = os.path.join(artifacts, "cms_patching")
        try:
            os.makedirs(target, exist_ok=True)
            for path in (self._report_path(), self._json_path()):
                shutil.copyfile(path, os.path.join(target, os.path.basename(path)))
        except OSError as exc:
            self._warn_once("could not copy the report into the job's artifacts (%s): %s" % (target, exc))

    def _upload(self):
        settings = self._destination()
        keys = dest.s3_keys(settings, self.report.lz, self.report.run_id, **self._job())
        if not keys:
            return
        if not HAS_UPLOAD:
            self._warn_once("the report's S3 bucket needs boto3 on the controller; the report stays in %s" % self._report_path())
            return
        try:
            _report_upload.put_files(
                settings, [(self._report_path(), keys[0]), (self._json_path(), keys[1])], self._upload_accounts(), session_name=self._session_name
            )
        except Exception as exc:  # pylint: disable=broad-except  # never fail the run for its report: say it and keep the local files
            self._unpublished = True
            self._display.warning("cms.patching.patch_report: %s; the report stays in %s" % (exc, self._report_path()))

    def _upload_accounts(self):
        """The landing zone's accounts with their external IDs: the config result masks them, the file has them."""
        if self._lz_file and any(a.get("external_id") for a in self._accounts):
            try:
                from ansible_collections.cms.patching.plugins.module_utils import _lz_config  # pylint: disable=import-outside-toplevel

                return _lz_config.load_file(self._lz_file, self.report.lz)["accounts"]
            except Exception:  # pylint: disable=broad-except  # the upload then says which role it could not assume
                pass
        return self._accounts

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
        self._publish()

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
            self._display.display("JSON report: %s" % os.path.abspath(self._json_path()))
            if self.report.retention and self.report.retention.get("message"):
                self._display.display("Retention: %s" % self.report.retention["message"])
            keys = dest.s3_keys(self._destination(), self.report.lz, self.report.run_id, **self._job())
            if keys and not self._unpublished:
                self._display.display("S3 report: s3://%s/%s" % (self._destination()["s3_bucket"], keys[0]))
