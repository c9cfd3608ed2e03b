"""The AWS-owned SSM documents the patching workflow runs, and SendCommand's parameter checks.

moto ships no AWS documents. These carry the real documents' parameters
(names, types, defaults, allowedValues, allowedPattern) and step names; the
scripts themselves are placeholders because the sandbox computes outcomes
instead of running anything. They are put into every SSM backend moto creates
(including after a reset), owned by "Amazon", so DescribeDocument,
GetDocument and ListDocuments show them like AWS does.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from typing import Any

from moto.ssm.exceptions import InvalidDocument, InvalidDocumentVersion
from moto.ssm.models import Document, Documents, SimpleSystemManagerBackend

from sandbox.errors import ssm_error

_PLACEHOLDER = ["# cms.patching sandbox: the outcome of this step is computed by the sandbox, nothing runs."]
_URL_PATTERN = "(^$)|^https://.+$|^s3://([^/]+)/(.*?([^/]+))$"

RUN_PATCH_BASELINE = "AWS-RunPatchBaseline"
_DEFAULT_EXECUTION_TIMEOUT = 3600.0

_AWS_RUN_PATCH_BASELINE = {
    "schemaVersion": "2.2",
    "description": "Scans for or installs patches from a patch baseline to a Linux, Windows or MacOS operating system.",
    "parameters": {
        "Operation": {
            "type": "String",
            "description": "(Required) The update or configuration to perform on the instance. The system checks if patches specified in the patch "
                           "baseline are installed on the instance. The install operation installs patches missing from the baseline.",
            "allowedValues": ["Scan", "Install"],
        },
        "SnapshotId": {
            "type": "String",
            "description": "(Optional) The snapshot ID to use to retrieve a patch baseline snapshot.",
            "allowedPattern": "(^$)|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            "default": "",
        },
        "InstallOverrideList": {
            "type": "String",
            "description": "(Optional) An https URL or an Amazon S3 path-style URL to the list of patches to be installed. This patch installation "
                           "list overrides the patches specified by the default patch baseline.",
            "allowedPattern": _URL_PATTERN,
            "default": "",
        },
        "BaselineOverride": {
            "type": "String",
            "description": "(Optional) An https URL or an Amazon S3 path-style URL to a list of baseline objects. These baselines override the "
                           "default baseline and any baselines used by Patch Groups.",
            "allowedPattern": _URL_PATTERN,
            "default": "",
        },
        "RebootOption": {
            "type": "String",
            "description": "(Optional) Reboot behavior after a patch Install operation. If you choose NoReboot and patches are installed, the "
                           "instance is marked as non-compliant until a subsequent reboot and scan.",
            "allowedValues": ["RebootIfNeeded", "NoReboot"],
            "default": "RebootIfNeeded",
        },
    },
    "mainSteps": [
        {"precondition": {"StringEquals": ["platformType", "Windows"]}, "action": "aws:runPowerShellScript", "name": "PatchWindows",
         "inputs": {"timeoutSeconds": 7200, "runCommand": _PLACEHOLDER}},
        {"precondition": {"StringEquals": ["platformType", "Linux"]}, "action": "aws:runShellScript", "name": "PatchLinux",
         "inputs": {"timeoutSeconds": 7200, "runCommand": _PLACEHOLDER}},
        {"precondition": {"StringEquals": ["platformType", "MacOS"]}, "action": "aws:runShellScript", "name": "PatchMacOS",
         "inputs": {"timeoutSeconds": 7200, "runCommand": _PLACEHOLDER}},
    ],
}

_EXECUTION_TIMEOUT = {
    "type": "String",
    "default": "3600",
    "description": "(Optional) The time in seconds for a command to complete before it is considered to have failed. Default is 3600 (1 hour). "
                   "Maximum is 172800 (48 hours).",
    "allowedPattern": "([1-9][0-9]{0,4})|(1[0-6][0-9]{4})|(17[0-1][0-9]{3})|(172[0-7][0-9]{2})|(172800)",
}


def _script_document(plugin: str, description: str, commands_help: str) -> dict[str, Any]:
    return {
        "schemaVersion": "1.2",
        "description": description,
        "parameters": {
            "commands": {"type": "StringList", "description": commands_help, "minItems": 1, "displayType": "textarea"},
            "workingDirectory": {"type": "String", "default": "", "description": "(Optional) The path to the working directory on your instance.",
                                 "maxChars": 4096},
            "executionTimeout": _EXECUTION_TIMEOUT,
        },
        "runtimeConfig": {
            plugin: {
                "properties": [
                    {"id": "0.aws:runScript", "runCommand": "{{ commands }}", "workingDirectory": "{{ workingDirectory }}",
                     "timeoutSeconds": "{{ executionTimeout }}"},
                ],
            },
        },
    }


@dataclasses.dataclass(frozen=True)
class AwsDocument:
    name: str
    content: dict[str, Any]
    platform_types: tuple[str, ...]


AWS_DOCUMENTS = (
    AwsDocument(RUN_PATCH_BASELINE, _AWS_RUN_PATCH_BASELINE, ("Windows", "Linux", "MacOS")),
    AwsDocument("AWS-RunShellScript", _script_document("aws:runShellScript", "Run a shell script or specify the commands to run.",
                                                       "(Required) Specify a shell script or a command to run."), ("Linux", "MacOS")),
    AwsDocument("AWS-RunPowerShellScript", _script_document("aws:runPowerShellScript", "Run a PowerShell script or specify the paths to scripts to run.",
                                                            "(Required) Specify commands to run or the paths to existing scripts on the instance."),
                ("Windows", "Linux")),
)


def install_aws_documents(backend: SimpleSystemManagerBackend) -> None:
    """Add the AWS-owned documents to one moto SSM backend."""
    for spec in AWS_DOCUMENTS:
        document = Document(
            account_id=backend.account_id,
            name=spec.name,
            version_name="",
            content=json.dumps(spec.content, indent=2),
            document_type="Command",
            document_format="JSON",
            requires=[],
            attachments=[],
            target_type="/AWS::EC2::Instance",
        )
        document.owner = "Amazon"
        document.platform_types = list(spec.platform_types)
        backend._documents[spec.name] = Documents(document)  # pylint: disable=protected-access


@dataclasses.dataclass(frozen=True)
class Step:
    """One plugin of a Command document: its name and the platform its precondition requires (if any)."""

    name: str
    platform: str | None


@dataclasses.dataclass(frozen=True)
class ResolvedDocument:
    name: str
    version: str
    content: dict[str, Any]
    platform_types: tuple[str, ...]

    @functools.cached_property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return self.content.get("parameters") or {}

    @functools.cached_property
    def steps(self) -> list[Step]:
        """Plugins in document order: mainSteps (schema 2.x) or runtimeConfig (schema 1.2)."""
        if "mainSteps" in self.content:
            return [Step(step["name"], _precondition_platform(step)) for step in self.content["mainSteps"]]
        return [Step(name, None) for name in (self.content.get("runtimeConfig") or {})]

    def execution_timeout(self, parameters: dict[str, list[str]]) -> float:
        """The longest step timeout (``timeoutSeconds``, literal or a ``{{ parameter }}``), default 3,600 as the agent uses.

        AWS-RunPatchBaseline: 7,200; AWS-RunShellScript: its executionTimeout parameter (3,600 by default).
        """
        if "mainSteps" in self.content:
            values = [(step.get("inputs") or {}).get("timeoutSeconds") for step in self.content["mainSteps"]]
        else:
            values = [prop.get("timeoutSeconds") for plugin in (self.content.get("runtimeConfig") or {}).values()
                      for prop in plugin.get("properties") or []]
        timeouts = []
        for value in values:
            if isinstance(value, str) and value.strip().startswith("{{"):
                value = (parameters.get(value.strip()[2:-2].strip()) or [None])[0]
            try:
                timeouts.append(float(value))
            except (TypeError, ValueError):
                timeouts.append(_DEFAULT_EXECUTION_TIMEOUT)
        return max(timeouts, default=_DEFAULT_EXECUTION_TIMEOUT)

    def supports(self, platform_type: str) -> bool:
        return not self.platform_types or platform_type in self.platform_types


def _precondition_platform(step: dict[str, Any]) -> str | None:
    condition = (step.get("precondition") or {}).get("StringEquals") or []
    return condition[1] if len(condition) == 2 and condition[0] == "platformType" else None


def resolve_document(backend: SimpleSystemManagerBackend, name: str, version: str | None) -> ResolvedDocument:
    """The Command document SendCommand would run: by name or ARN, at $DEFAULT, $LATEST or a version number."""
    short_name = name.rpartition("document/")[2] if name.startswith("arn:") else name
    documents = backend._documents.get(short_name)  # pylint: disable=protected-access
    if documents is None:
        raise InvalidDocument("The specified document does not exist.")
    if version in (None, "", "$DEFAULT"):
        document = documents.get_default_version()
    else:
        document = documents.find(version, strict=False)
        if document is None:
            raise InvalidDocumentVersion("The document version is not valid or does not exist.")
    if document.document_type != "Command":
        raise InvalidDocument(f"Document {short_name} is of type {document.document_type}; SendCommand runs Command documents only.")
    declared = [platform for platform in document.platform_types if platform in ("Windows", "Linux", "MacOS")]
    return ResolvedDocument(short_name, document.document_version, document.content_json, tuple(declared))


def validate_parameters(document: ResolvedDocument, given: dict[str, list[str]]) -> dict[str, list[str]]:
    """Check ``given`` against the document's parameter definitions like SSM does; return them with defaults filled in."""
    definitions = document.parameters
    for name in given:
        if name not in definitions:
            raise ssm_error("InvalidParameters", f"Parameter \"{name}\" is not defined in document {document.name}.")
    resolved: dict[str, list[str]] = {}
    for name, definition in definitions.items():
        if name not in given:
            if "default" not in definition:
                raise ssm_error("InvalidParameters", f"Missing required parameter \"{name}\" for document {document.name}.")
            default = definition["default"]
            resolved[name] = default if isinstance(default, list) else [str(default)]
            continue
        values = given[name]
        if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
            raise ssm_error("InvalidParameters", f"Parameter \"{name}\" must be a list of strings.")
        if definition.get("type", "String") == "String" and len(values) != 1:
            raise ssm_error("InvalidParameters", f"Parameter \"{name}\" is of type String and takes exactly one value, got {len(values)}.")
        allowed = definition.get("allowedValues")
        pattern = definition.get("allowedPattern")
        for value in values:
            if allowed is not None and value not in allowed:
                raise ssm_error("InvalidParameters", f"Parameter \"{name}\" value \"{value}\" is not one of the allowed values {allowed}.")
            if pattern is not None and re.fullmatch(pattern, value) is None:
                raise ssm_error("InvalidParameters", f"Parameter \"{name}\" value \"{value}\" does not match the allowed pattern {pattern}.")
        resolved[name] = values
    return resolved
