"""The landing_zone module: plain landing-zone names only, configuration warnings returned and shown."""

import textwrap

from ansible_collections.cms.patching.plugins.modules import landing_zone

CONFIG = """
cms_patching_landing_zone:
  accounts:
    - account_id: "123456789012"
  regions: [eu-west-1]
  patching:
    waves:
      - {name: everything}
      - {name: later, percent: 10}
"""


def write(path, text):
    path.mkdir(parents=True)
    (path / "landing_zone.yml").write_text(textwrap.dedent(text))


def test_dot_dot_is_refused_before_the_file_above_the_search_path_is_read(tmp_path, run_module):
    write(tmp_path / "group_vars" / "all", CONFIG)
    write(tmp_path / "zones" / "prod" / "group_vars" / "all", CONFIG)
    result = run_module(landing_zone, {"name": "..", "search_paths": [str(tmp_path / "zones")]})
    assert result.failed
    assert result["msg"].startswith("landing zone name '..' is not valid: a landing zone is a plain directory name")
    assert result["msg"].endswith("(known landing zones: prod)")
    assert "config" not in result


def test_a_wave_that_gets_nothing_is_a_warning_not_an_error(tmp_path, run_module):
    write(tmp_path / "prod" / "group_vars" / "all", CONFIG)
    result = run_module(landing_zone, {"name": "prod", "search_paths": [str(tmp_path)]})
    assert not result.failed
    expected = [
        "%s: cms_patching_landing_zone.patching.waves[1] (wave 'later'): gets no instance: cms_patching_landing_zone.patching.waves[0] "
        "(wave 'everything') before it takes every instance left" % result["file"]
    ]
    assert result["config_warnings"] == expected
    # ansible-core 2.19 wraps module warnings in events; Ansible prints their msg as [WARNING].
    assert [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]] == expected
