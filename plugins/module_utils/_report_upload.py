# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Upload a run's report (the CSV and the per-instance JSON) to S3 through the collection's session layer.

The bucket lives in one account of the landing zone (``s3_account_id``, default the first account): that account is
reached exactly as the modules reach it (FleetSession: the caller's own credentials, or the account's role and
external ID), with the same retry policy. Credentials come from the controller's environment (AWS_PROFILE, AWS_*
keys, an AWX AWS credential, an instance role), as for the modules.

PutObject of the same key with the same body is idempotent (the object is replaced), so unlike CreateImage or
SendCommand it is safely sent again after a transient error (S3 API reference, PutObject: "Amazon S3 never adds
partial objects; if you receive a success response, Amazon S3 added the entire object to the bucket").
Encryption: ``ServerSideEncryption`` ``AES256`` (SSE-S3) or ``aws:kms`` (SSE-KMS) with ``SSEKMSKeyId`` when a key is
given (PutObject request parameters x-amz-server-side-encryption, x-amz-server-side-encryption-aws-kms-key-id).
"""

import os

from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy, is_transient
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError, FleetSession, describe_aws_error

CONTENT_TYPES = {".csv": "text/csv; charset=utf-8", ".json": "application/json"}


def connection_from_env(environ=None, region=None):
    """The connection FleetSession needs, from the controller's environment; botocore reads AWS_ENDPOINT_URL itself."""
    environ = os.environ if environ is None else environ
    return {"region": region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"}


def put_files(settings, files, accounts, session_name=None, connection=None, policy=None):
    """PutObject each (local path, key); return the s3:// URIs. FleetError naming the bucket and key on failure."""
    account_id = str(settings.get("s3_account_id") or (accounts[0]["account_id"] if accounts else ""))
    if not account_id:
        raise FleetError("the report's S3 bucket needs an account: set report s3 account_id or give the landing zone an account")
    policy = policy or RetryPolicy(max_attempts=5)
    connection = connection or connection_from_env(region=settings.get("s3_region"))
    region = settings.get("s3_region") or connection.get("region")
    fleet = FleetSession(connection, accounts, session_name=session_name, policy=policy)
    s3 = fleet.client("s3", account_id, region)
    extra = {"ServerSideEncryption": settings.get("s3_sse") or "AES256"}
    if extra["ServerSideEncryption"] == "aws:kms" and settings.get("s3_kms_key_id"):
        extra["SSEKMSKeyId"] = settings["s3_kms_key_id"]
    uris = []
    for path, key in files:
        with open(path, "rb") as handle:
            body = handle.read()
        content_type = CONTENT_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")
        _put(s3, policy, dict(extra, Bucket=settings["s3_bucket"], Key=key, Body=body, ContentType=content_type))
        uris.append("s3://%s/%s" % (settings["s3_bucket"], key))
    return uris


def _put(s3, policy, request):
    attempt = 0
    while True:
        try:
            return s3.put_object(**request)
        except FleetError:
            raise
        except Exception as exc:  # pylint: disable=broad-except  # botocore errors, described below
            if is_transient(exc) and attempt + 1 < policy.max_attempts:
                policy.sleep(policy.delay(attempt))
                attempt += 1
                continue
            raise FleetError("could not upload the report to s3://%s/%s: %s" % (request["Bucket"], request["Key"], describe_aws_error(exc))) from None
