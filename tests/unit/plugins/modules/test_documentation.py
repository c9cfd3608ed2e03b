"""Each fleet module's DOCUMENTATION describes exactly the options its argument spec takes (the shared ones from _module
included): names, types, defaults, choices, required, elements, suboptions. The options of the doc fragments (accounts,
retries, AWS connection) are the fragments' and are checked against _module in test_module."""

import pytest
import yaml

from ansible_collections.cms.patching.plugins.module_utils._module import FLEET_ARGUMENT_SPEC
from ansible_collections.cms.patching.plugins.modules import ami_backup_verified, ec2_patch_scan, ec2_rollback, ssm_patch_run

MODULES = [ami_backup_verified, ec2_patch_scan, ec2_rollback, ssm_patch_run]


def stated(options, nested):
    """Options as DOCUMENTATION states them, ansible-doc's defaults filled in (type str, not required, no default); the
    nested options are under `nested` (an argument spec's "options", DOCUMENTATION's "suboptions")."""
    return {
        name: {
            "type": option.get("type", "str"),
            "required": option.get("required", False),
            "default": option.get("default"),
            "choices": option.get("choices"),
            "elements": option.get("elements"),
            "suboptions": stated(option[nested], nested) if option.get(nested) else None,
        }
        for name, option in options.items()
    }


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_documentation_states_the_argument_spec(module):
    doc = stated(yaml.safe_load(module.DOCUMENTATION)["options"], "suboptions")
    spec = stated(module.argument_spec(), "options")
    for name in set(doc) & set(FLEET_ARGUMENT_SPEC):
        # A module may restate a fragment's option to change how it is given (ec2_patch_scan: accounts may be empty with an
        # organization source); its suboptions stay the fragment's, which test_module checks against _module.
        if doc[name]["suboptions"] is None:
            spec[name]["suboptions"] = None
    assert doc == spec
