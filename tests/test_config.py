"""Layered ini configuration: order, per-host overrides, types, errors, the sample file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from imaging.config import KEYS, Config, sample_text
from imaging.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_only() -> None:
    config = Config.from_files([], )
    assert config.get_str("testbed", "regularname") == "fit"
    assert config.get_float("nodes", "cmc_timeout") == 3.0
    assert config.get_int("transport", "pattern_size") == 20
    assert config.get_path("pxelinux", "config_dir") == Path("/tftpboot/pxelinux.cfg")
    assert config.get_optional_path("networking", "ssh_key") is None
    assert config.origin("testbed", "regularname") == "(default)"


def test_later_files_win_key_by_key(tmp_path: Path) -> None:
    first = write(tmp_path / "a.conf", "[nodes]\nbandwidth = 100\ncmc_timeout = 5\n")
    second = write(tmp_path / "b.conf", "[nodes]\nbandwidth = 200\n")
    config = Config.from_files([first, tmp_path / "missing.conf", second])
    assert config.get_int("nodes", "bandwidth") == 200
    assert config.origin("nodes", "bandwidth") == str(second)
    assert config.get_float("nodes", "cmc_timeout") == 5.0
    assert config.origin("nodes", "cmc_timeout") == str(first)
    assert config.files == [str(first), str(second)]


def test_standard_files_then_env_then_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    write(home / ".imaging.conf", "[nodes]\nbandwidth = 1\nwait_timeout = 7\n")
    write(work / "imaging.conf", "[nodes]\nbandwidth = 2\n")
    env = write(tmp_path / "env.conf", "[nodes]\nbandwidth = 3\n")
    extra = write(tmp_path / "extra.conf", "[leases]\nbackend = file\n")
    config = Config.load(extra=[extra], environ={"IMAGING_CONFIG": str(env)})
    assert config.get_int("nodes", "bandwidth") == 3
    assert config.get_float("nodes", "wait_timeout") == 7.0
    assert config.get_str("leases", "backend") == "file"
    assert config.files[-2:] == [str(env), str(extra)]


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(extra=[tmp_path / "nope.conf"], environ={})


def test_per_host_override(tmp_path: Path) -> None:
    file = write(tmp_path / "c.conf", "[nodes]\nbandwidth = 500\nbandwidth.fit07 = 100\n"
                                      "bandwidth.server1 = 300\n")
    config = Config.from_files([file])
    config.server_host = "elsewhere"
    assert config.get_int("nodes", "bandwidth", host="fit07") == 100
    assert config.get_int("nodes", "bandwidth", host="fit07.example.org") == 100
    assert config.get_int("nodes", "bandwidth", host="fit08") == 500
    config.server_host = "server1"
    assert config.get_int("nodes", "bandwidth") == 300
    assert config.get_int("nodes", "bandwidth", host="fit07") == 100
    assert config.get_int("nodes", "bandwidth", host="fit08") == 300


@pytest.mark.parametrize(("text", "words"), [
    ("[nodes]\nbandwidth = fast\n", r"\[nodes\] bandwidth = 'fast' is not a valid int"),
    ("[nodes]\ncmc_timeout = -1\n", "not a valid float"),
    ("[nodes]\nbandwidth.fit03 = x\n", r"bandwidth.fit03 = 'x'"),
    ("bandwidth = 3\n", "not valid ini"),
    ("[nodes\n", "not valid ini"),
])
def test_bad_values_name_file_section_key(tmp_path: Path, text: str, words: str) -> None:
    file = write(tmp_path / "bad.conf", text)
    with pytest.raises(ConfigError, match=words) as info:
        Config.from_files([file])
    assert str(file) in str(info.value)
    assert "\n" not in str(info.value)


def test_quotes_are_kept_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = write(tmp_path / "q.conf", "[testbed]\nregularname = \"fit\"\nfoo = 1\n")
    with caplog.at_level(logging.WARNING):
        config = Config.from_files([file])
    assert config.get_str("testbed", "regularname") == '"fit"'
    assert "quotes are kept" in caplog.text
    assert "unknown key [testbed] foo" in caplog.text


def test_percent_signs_are_not_interpolated(tmp_path: Path) -> None:
    file = write(tmp_path / "p.conf", "[udpcast]\nsender_options = --log %s\n")
    assert Config.from_files([file]).get_str("udpcast", "sender_options") == "--log %s"


def test_every_key_has_a_valid_default() -> None:
    config = Config.from_files([])
    for key in KEYS:
        assert key.doc
        config.get(key.section, key.name)


def test_sample_file_is_generated_from_the_defaults() -> None:
    assert (ROOT / "imaging.conf.sample").read_text() == sample_text()
    for key in KEYS:
        assert f"# {key.name} = {key.default}".rstrip() in sample_text()
