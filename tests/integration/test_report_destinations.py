"""The report survives the job: site.yml uploads the CSV and the per-instance JSON to the sandbox's S3 after every phase
and at the end, also when the run fails mid-way, and publishes where they are in the job's artifacts (set_stats)."""

import csv
import io
import json

import boto3
from test_site import landing_zone, wrong_external_id


def s3_client(aws):
    return boto3.client("s3", region_name="us-east-1", endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")


def s3_report(aws, bucket, key):
    s3 = s3_client(aws)
    csv_object = s3.get_object(Bucket=bucket, Key=key)
    rows = list(csv.DictReader(io.StringIO(csv_object["Body"].read().decode("utf-8"))))
    document = json.loads(s3.get_object(Bucket=bucket, Key=key[: -len(".csv")] + ".json")["Body"].read())
    return csv_object, rows, document


def test_a_full_run_uploads_csv_and_json_with_sse_kms(aws, playbook):
    s3_client(aws).create_bucket(Bucket="cms-reports")
    run = playbook(
        "-e",
        "cms_patching_report_s3_bucket=cms-reports",
        "-e",
        "cms_patching_report_s3_prefix=runs/{lz}/{run_id}",
        "-e",
        "cms_patching_report_s3_kms_key_id=alias/cms-reports",
        env={"ANSIBLE_SHOW_CUSTOM_STATS": "true"},
    )
    assert run.rc == 2, run.output[-3000:]
    assert "Traceback" not in run.output
    local = run.csv_path
    run_id = local.stem.split("demo-", 1)[1]
    key = "runs/demo/%s/%s" % (run_id, local.name)
    csv_object, rows, document = s3_report(aws, "cms-reports", key)
    assert (csv_object["ServerSideEncryption"], csv_object["SSEKMSKeyId"]) == ("aws:kms", "alias/cms-reports")
    assert rows == run.rows() and len(rows) == 30
    assert len(document["instances"]) == 30 and document["run_id"] == run_id and document["summary"]["patch"]["success"] == 19
    assert local.with_suffix(".json").is_file()
    assert "S3 report: s3://cms-reports/%s" % key in run.output
    # The job's artifacts say where the report is.
    stats = run.output[run.output.index("CUSTOM STATS") :]
    assert '"s3_csv": "s3://cms-reports/%s"' % key in stats and '"csv": "%s"' % local in stats
    # Uploaded after every phase and at the end, through the collection's session layer (one account, its own credentials).
    puts = [c for c in aws.state.calls.log() if c["operation"] == "s3:PutObject"]
    assert len(puts) >= 8 and {c["account"] for c in puts} == {"123456789012"}


def test_a_run_that_fails_mid_way_still_leaves_its_report_in_s3(aws, playbook, tmp_path):
    s3_client(aws).create_bucket(Bucket="cms-reports")
    env = landing_zone(tmp_path, "refused", wrong_external_id)
    env.update(CMS_PATCHING_REPORT_S3_BUCKET="cms-reports", CMS_PATCHING_REPORT_S3_PREFIX="{lz}")
    run = playbook("-e", "discovery_on_error=stop", lz="refused", env=env)
    assert run.rc == 2, run.output[-3000:]
    csv_object, rows, document = s3_report(aws, "cms-reports", "refused/%s" % run.csv_path.name)
    assert csv_object["ServerSideEncryption"] == "AES256"
    assert rows == run.rows()
    reason = "backup phase did not run: the run stopped after discovery failed in 210987654321/us-east-1, 210987654321/eu-west-1"
    assert {r["error"] for r in rows if r["target"] == "true"} == {reason}
    assert document["summary"]["discovery_failed"] == ["210987654321/us-east-1", "210987654321/eu-west-1"]
