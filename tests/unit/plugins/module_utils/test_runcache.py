"""The run cache file: private, atomic, and never a reason to fail - anything unusable reads as empty."""

import json
import os
import stat

from ansible_collections.cms.patching.plugins.module_utils._runcache import RunCache, cache_root


def test_saved_data_comes_back_and_the_file_is_private(tmp_path):
    root = tmp_path / "cache" / "cms-patching" / "runs"
    cache = RunCache("lz1", "20261201T000000Z-abcdef", "rest", root=str(root))
    cache.save({"since": {"111111111111/eu-west-1": 1.5}})
    assert cache.load()["since"] == {"111111111111/eu-west-1": 1.5}
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700 and stat.S_IMODE(os.stat(cache.path).st_mode) == 0o600
    assert os.listdir(root) == [os.path.basename(cache.path)]  # no temporary file left behind
    cache.remove()
    assert cache.load() == {}


def test_one_file_per_landing_zone_run_and_wave(tmp_path):
    paths = {RunCache(lz, run, wave, root=str(tmp_path)).path for lz, run, wave in [("a", "r", "w"), ("b", "r", "w"), ("a", "s", "w"), ("a", "r", "v")]}
    assert len(paths) == 4


def test_unusable_files_read_as_empty(tmp_path):
    cache = RunCache("lz1", "run", "rest", root=str(tmp_path))
    cache.save({"stale": {}})
    os.chmod(cache.path, 0o644)  # readable by others: not ours to trust
    assert cache.load() == {}
    os.chmod(cache.path, 0o600)
    with open(cache.path, "w", encoding="utf-8") as handle:
        handle.write("{not json")
    assert cache.load() == {}
    with open(cache.path, "w", encoding="utf-8") as handle:
        json.dump({"version": 1, "identity": {"lz": "other", "run_id": "run", "wave": "rest"}, "stale": {}}, handle)
    assert cache.load() == {}


def test_a_cache_that_cannot_be_written_is_no_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = RunCache("lz1", "run", "rest", root=str(blocker / "runs"))
    cache.save({"stale": {}})
    assert cache.load() == {}


def test_the_root_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == str(tmp_path / "cms-patching" / "runs")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == str(tmp_path / "home" / ".cache" / "cms-patching" / "runs")
