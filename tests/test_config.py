"""Layered ini configuration: order, per-host overrides, every key's range (item 4),
warnings for unknown keys, encodings and line numbers, the sample file."""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from imaging.config import MAX_SECONDS, Config, key, keys, parse_seconds, sample_text
from imaging.errors import ConfigError
from imaging.transports import transport_for
from tests.conftest import Result

Runner = Callable[..., Result]
ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> str:
    """The one-line message with which the file holding ``text`` is refused."""
    file = write(tmp_path / "bad.conf", text)
    with pytest.raises(ConfigError) as info:
        Config.from_files([file])
    assert "\n" not in info.value.message
    return info.value.message


def test_defaults_only() -> None:
    config = Config.from_files([], )
    assert config.get_str("testbed", "regularname") == "fit"
    assert config.get_float("nodes", "cmc_timeout") == 3.0
    assert config.get_int("transport", "pattern_size") == 20
    assert config.get_path("pxelinux", "config_dir") == Path("/tftpboot/pxelinux.cfg")
    assert config.get_optional_path("networking", "ssh_key") is None
    assert config.origin("testbed", "regularname") == "(default)"
    assert config.warnings == []


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
    assert config.get_int("nodes", "bandwidth", host="FIT07") == 100  # ini keys are lower-cased, so hosts are
    assert config.get_int("nodes", "bandwidth", host="fit08") == 500
    config.server_host = "server1"
    assert config.get_int("nodes", "bandwidth") == 300
    assert config.get_int("nodes", "bandwidth", host="fit07") == 100
    assert config.get_int("nodes", "bandwidth", host="fit08") == 300


# item 4: for every key, a value the command line would refuse, and what the message says it wants
BAD: list[tuple[str, str, str, str]] = [
    ("testbed", "inventory", "", "is not a path"),
    ("testbed", "all_scope", "1-x", "'1-x' is not a node spec"),
    ("testbed", "regularname", "fit-", "is not a hostname prefix: ASCII letters only"),
    ("testbed", "rebootname", "réboot", "is not a hostname prefix"),
    ("nodes", "hard_drive", "sda", "is not an absolute path on the node"),
    ("nodes", "root_partition", "/dev/sda 1", "is not an absolute path on the node without spaces, or none"),
    ("nodes", "mount_point", "mnt", "is not an absolute path on the node"),
    ("nodes", "cmc_timeout", "inf", f"is not a number of seconds, more than 0 and at most {MAX_SECONDS:g}"),
    ("nodes", "cmc_port", "65536", "is not a whole number from 1 to 65535"),
    ("nodes", "idle_after_reset", "0", "is not a number of seconds"),
    ("nodes", "boot_timeout", "-1", "is not a number of seconds"),
    ("nodes", "load_timeout", "0", "is not a number of seconds"),
    ("nodes", "save_timeout", "nan", "is not a number of seconds"),
    ("nodes", "wait_timeout", "604801", "is not a number of seconds, more than 0 and at most 604800"),
    ("nodes", "stall_timeout", "0", "is not a number of seconds"),
    ("nodes", "bandwidth", "0", r"is not a whole number from 1 to 100000 \(Mibps\)"),
    ("nodes", "power", "snmp", "is not one of cmc, ipmi, redfish"),
    ("power", "credentials", "a\x02b", "holds a control character"),
    ("power", "ipmitool", "ipmitool -v", "is not one word"),
    ("power", "ipmi_port", "0", "is not a whole number from 1 to 65535"),
    ("power", "ipmi_cipher", "18", "is not a whole number from 0 to 17"),
    ("power", "redfish_url", "https://bmc01:8000", r"is not an http:// or https:// URL whose host is \{ip\}"),
    ("power", "redfish_verify", "maybe", "is not one of yes, no"),
    ("power", "redfish_system", "-1", "is not one word without spaces, not starting with '-', or empty"),
    ("pxelinux", "config_dir", "", "is not a path"),
    ("grub", "config_dir", "", "is not a path"),
    ("grub", "imaging_config", "grub/imaging.cfg", "is not a file name"),
    ("nodes", "boot", "ipxe", "is not one of pxelinux, grub"),
    ("pxelinux", "frisbee_image", "../pxefrisbee", "is not a file name"),
    ("images", "images_dir", "", "is not a path"),
    ("images", "default_image", "-i", "is not one word"),
    ("transport", "kind", "multicast", "is not one of frisbee, udpcast"),
    ("transport", "server_ip", "myserver", "is not an IPv4 address of this server, or empty"),
    ("transport", "pattern_multicast", "10.0.0.*", "gives 10.0.0.1, not a multicast address"),
    ("transport", "pattern_port", "65530 + *", "gives port 65536 for session 6"),
    ("transport", "pattern_size", "0", "is not a whole number from 1 to 1000"),
    ("frisbee", "server", "frisbeed -W 100", "is not one word: not empty, without spaces"),
    ("frisbee", "server_options", "-x 'a", "is not options that split into words as a shell would"
                                           r" \(no closing quotation\)"),
    ("frisbee", "client", "", "is not one word"),
    ("frisbee", "imagezip", "image zip", "is not one word"),
    ("frisbee", "netcat", "-nc", "is not one word"),
    ("frisbee", "imagedump", "", "is not one word"),
    ("udpcast", "sender", "udp-sender --nokbd", "is not one word"),
    ("udpcast", "receiver", "", "is not one word"),
    ("udpcast", "retries_until_drop", "0", "is not a whole number from 1 to 1000"),
    ("udpcast", "sender_options", '--log "x', r"is not options .* \(no closing quotation\)"),
    ("udpcast", "receiver_options", "--file x\\", r"is not options .* \(no escaped character\)"),
    ("networking", "telnet_port", "0", "is not a whole number from 1 to 65535"),
    ("networking", "telnet_timeout", "1e999", "is not a number of seconds"),
    ("networking", "telnet_backoff", "0", "is not a number of seconds"),
    ("networking", "ssh_port", "99999", "is not a whole number from 1 to 65535"),
    ("networking", "ssh_user", "root admin", "is not one word"),
    ("networking", "ssh_key", "a\x01b", "holds a control character"),
    ("networking", "ssh_timeout", "-inf", "is not a number of seconds"),
    ("networking", "ssh_backoff", "fast", "is not a number of seconds"),
    ("leases", "backend", "ldap", "is not one of none, file, r2labapi"),
    ("leases", "url", "api.example.org/leases", "is not an http:// or https:// URL, or empty"),
    ("leases", "file", "x\x7fy", "holds a control character"),
    ("leases", "privileged", "root admin", "is not comma-separated logins, without spaces"),
    ("leases", "slices", "alice", r"is not comma-separated login:slice pairs \('alice' is not login:slice\)"),
    ("leases", "timeout", "0", "is not a number of seconds"),
    ("logging", "file", "", "is not a path"),
    ("logging", "level", "verbose", "is not one of DEBUG, INFO, WARNING, ERROR"),
    ("logging", "transport_logs", "", "is not a path"),
    ("locks", "lock_dir", "", "is not a path"),
    ("monitor", "listen", "localhost:0", "is not an address and a port, e.g. 127.0.0.1:8090"),
    ("monitor", "cycle", "0", "is not a number of seconds"),
    ("monitor", "probe_timeout", "-1", "is not a number of seconds"),
]


def test_item4_every_key_has_a_range() -> None:
    """Item 4: each key of keys() (the product's and every backend's) has a refused value in the table,
    so a new key needs one too."""
    assert {(section, name) for section, name, _, _ in BAD} == {(k.section, k.name) for k in keys()}


@pytest.mark.parametrize(("section", "name", "value", "words"), BAD, ids=[f"{s}.{n}" for s, n, _, _ in BAD])
def test_item4_bad_value_names_file_line_section_key_value(tmp_path: Path, section: str, name: str, value: str,
                                                           words: str) -> None:
    """Item 4: a value out of its key's range fails when read, naming file:line, [section] key, value, range."""
    message = refused(tmp_path, f"[{section}]\n# a comment\n{name} = {value}\n")
    assert message.startswith(f"{tmp_path / 'bad.conf'}:3: [{section}] {name} = {value!r}")
    assert re.search(words, message), message


@pytest.mark.parametrize(("section", "name", "value", "expected"), [
    ("nodes", "bandwidth", "1", 1), ("nodes", "bandwidth", "100000", 100_000), ("nodes", "bandwidth", "+42", 42),
    ("nodes", "cmc_port", "1", 1), ("nodes", "cmc_port", "65535", 65535),
    ("transport", "pattern_size", "1", 1), ("udpcast", "retries_until_drop", "1000", 1000),
    ("nodes", "cmc_timeout", "0.001", 0.001), ("nodes", "load_timeout", "604800", 604800.0),
    ("nodes", "wait_timeout", "1e3", 1000.0), ("nodes", "wait_timeout", ".5", 0.5),
    ("transport", "server_ip", "", ""), ("transport", "server_ip", "192.168.3.100", "192.168.3.100"),
    ("nodes", "root_partition", "none", "none"), ("nodes", "root_partition", "", ""),
    ("leases", "url", "https://r2labapi.inria.fr:999/api", "https://r2labapi.inria.fr:999/api"),
    ("leases", "backend", "File", "file"), ("logging", "level", "info", "INFO"),
    ("leases", "privileged", "root, admin,", "root, admin,"), ("leases", "slices", "a:b, c:d", "a:b, c:d"),
    ("leases", "file", "~/leases.json", Path("~/leases.json").expanduser()),
    ("udpcast", "sender_options", '--log "/tmp/my log"', '--log "/tmp/my log"'),
    ("monitor", "listen", "0.0.0.0:80", "0.0.0.0:80"), ("monitor", "listen", "[::1]:8090", "[::1]:8090"),
    ("monitor", "listen", "monitor.r2lab.inria.fr:65535", "monitor.r2lab.inria.fr:65535"),
])
def test_item4_values_within_range_are_taken(tmp_path: Path, section: str, name: str, value: str,
                                             expected: object) -> None:
    """Item 4: the bounds are inclusive; choices are matched whatever their case and stored as declared."""
    config = Config.from_files([write(tmp_path / "ok.conf", f"[{section}]\n{name} = {value}\n")])
    assert config.get(section, name) == expected


@pytest.mark.parametrize("value", ["３", "٣", "٣٠٠", "1_000", "99999999999999", "-5", "1.0", "0x10", "²"])
def test_item4_integers_are_ascii_digits_in_range(tmp_path: Path, value: str) -> None:
    """Item 4: int() takes '３', '٣' and '1_000'; a config value is plain ASCII digits, in range."""
    message = refused(tmp_path, f"[nodes]\nbandwidth = {value}\n")
    assert message.endswith(f"bandwidth = {value!r} is not a whole number from 1 to 100000 (Mibps)")


@pytest.mark.parametrize("value", ["３", "1٫5", "inf", "infinity", "nan", "0", "-0.0", "1e-400", "1_0"])
def test_item4_seconds_are_finite_positive_ascii(tmp_path: Path, value: str) -> None:
    """Item 4: float() takes 'inf', 'nan' and non-ASCII digits; seconds are none of these, nor 0."""
    assert "is not a number of seconds" in refused(tmp_path, f"[nodes]\ncmc_timeout = {value}\n")
    with pytest.raises(ValueError):
        parse_seconds(value)
    assert parse_seconds(" 2.5 ") == 2.5


@pytest.mark.parametrize("value", ["0", "-3", "99999999999999", "３", "fast"])
def test_item4_per_host_overrides_are_checked_the_same(tmp_path: Path, value: str) -> None:
    """Item 4: ``bandwidth.fit07`` gets the range of ``bandwidth``."""
    message = refused(tmp_path, f"[nodes]\nbandwidth = 100\nbandwidth.fit07 = {value}\n")
    assert message == (f"{tmp_path / 'bad.conf'}:3: [nodes] bandwidth.fit07 = {value!r}"
                       " is not a whole number from 1 to 100000 (Mibps)")


def test_item4_server_ip_is_a_unicast_address(tmp_path: Path) -> None:
    """Item 4: neither a name, nor a multicast, broadcast or unspecified address, nor other digits."""
    for value in ("server", "192.168.3.256", "234.5.6.1", "0.0.0.0", "255.255.255.255", "１.2.3.4", "::1"):
        assert "is not an IPv4 address" in refused(tmp_path, f"[transport]\nserver_ip = {value}\n")


def test_item4_patterns_are_checked_against_pattern_size(tmp_path: Path) -> None:
    """Item 4: each session 1..pattern_size gets a valid group and port of its own."""
    big = refused(tmp_path, "[transport]\npattern_size = 300\n")
    assert big.startswith(f"{tmp_path / 'bad.conf'}:2: [transport] pattern_multicast = '234.5.6.*' gives"
                          " '234.5.6.256', not an IPv4 address (sessions run from 1 to pattern_size = 300, set in")
    same = refused(tmp_path, "[transport]\npattern_port = 10000\n")
    assert same.endswith("pattern_port = '10000' gives 10000 to sessions 1 and 2; each session needs its own:"
                         " use * in the pattern")
    assert "gives 234.5.6.1 to sessions 1 and 2" in refused(tmp_path, "[transport]\npattern_multicast = 234.5.6.1\n")
    wide = refused(tmp_path, "[transport]\npattern_port = ２０００ + *\n")
    assert "pattern_port = '２０００ + *' is not arithmetic over whole numbers" in wide
    assert "at most 64 ASCII characters" in refused(tmp_path, "[transport]\npattern_port = " + "(" * 70 + "\n")
    host = refused(tmp_path, "[transport]\npattern_size = 10\npattern_size.server1 = 260\n")
    assert "gives '234.5.6.256'" in host and "pattern_size.server1 = 260, set in" in host
    single = Config.from_files([write(tmp_path / "one.conf", "[transport]\npattern_size = 1\npattern_port = 9000\n")])
    assert single.get_str("transport", "pattern_port") == "9000"


def test_item4_all_scope_is_checked_with_the_prefixes(tmp_path: Path) -> None:
    """Item 4: all_scope must parse with regularname/rebootname, and select some node."""
    assert "selects no node" in refused(tmp_path, "[testbed]\nall_scope = 1-3,~1-3\n")
    assert "unknown prefix 'fit'" in refused(tmp_path, "[testbed]\nregularname = node\nall_scope = fit1-3\n")
    ok = write(tmp_path / "ok.conf", "[testbed]\nregularname = node\nall_scope = node1-3\n")
    assert Config.from_files([ok]).get_str("testbed", "all_scope") == "node1-3"


def test_item4_words_keys_must_split(tmp_path: Path) -> None:
    """Item 4: unbalanced quotes fail when read, naming the key; get_str keeps the text, get_words splits it."""
    message = refused(tmp_path, '[udpcast]\nreceiver_options = --nosync "\n')
    assert message == (f"{tmp_path / 'bad.conf'}:2: [udpcast] receiver_options = '--nosync \"' is not options that"
                       " split into words as a shell would (no closing quotation)")
    config = Config.from_files([write(tmp_path / "ok.conf", "[udpcast]\nsender_options = --log '/tmp/a b' -x\n"
                                                            "[frisbee]\nserver_options = \"-W 1\"\n")])
    assert config.get_str("udpcast", "sender_options") == "--log '/tmp/a b' -x"
    assert config.get_words("udpcast", "sender_options") == ["--log", "/tmp/a b", "-x"]
    assert shlex.split(config.get_str("frisbee", "server_options")) == config.get_words("frisbee", "server_options")
    assert config.get_words("udpcast", "receiver_options") == []
    assert config.warnings == []  # quotes mean something in options: no warning


def test_item4_inline_comment_and_continuation_lines_are_explained(tmp_path: Path) -> None:
    """Item 4: '100  # Mibps' and an indented key (read by ini as the value above going on) say why."""
    assert refused(tmp_path, "[nodes]\nbandwidth = 100  # Mibps\n").endswith(
        "is not a whole number from 1 to 100000 (Mibps) (comments go on a line of their own)")
    assert refused(tmp_path, "[nodes]\ncmc_timeout = 3\n  bandwidth = 0\n") == (
        f"{tmp_path / 'bad.conf'}:2: [nodes] cmc_timeout = '3\\nbandwidth = 0' goes on over an indented line"
        " (an indented line continues the value above it: unindent the line)")
    long = refused(tmp_path, "[nodes]\nbandwidth = " + "9" * 5000 + "\n")
    assert len(long) < 300 and "'999" in long


def test_item4_typo_is_a_warning_naming_the_nearest_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Item 4: unknown keys and sections are kept as warnings (and logged), with the nearest known name."""
    file = write(tmp_path / "imaging.conf", "[nodes]\nbandwith = 100\n[nodse]\nx = 1\n[transport]\nbandwidth = 5\n"
                                            "zzz = 1\n[images]\nfile = x\ndefault_image = \"ubuntu\"\n")
    with caplog.at_level(logging.WARNING, logger="imaging.config"):
        config = Config.from_files([file])
    assert config.warnings == [
        f"{file}:2: [nodes] bandwith is not a known key (did you mean bandwidth?); ignored",
        f"{file}:3: [nodse] is not a known section (did you mean [nodes]?); its keys are ignored",
        f"{file}:6: [transport] bandwidth is not a known key (it belongs in [nodes]); ignored",
        f"{file}:7: [transport] zzz is not a known key; ignored",
        f"{file}:9: [images] file is not a known key (it belongs in [leases] or [logging]); ignored",
        f"{file}:10: [images] default_image = \"ubuntu\": the quotes are kept as part of the value; remove them",
    ]
    assert config.get_int("nodes", "bandwidth") == 500
    assert [r.getMessage() for r in caplog.records] == config.warnings


def test_item4_per_host_key_needs_a_short_hostname(tmp_path: Path) -> None:
    """Item 4: ``bandwidth.fit07.example.org`` would never match a host: said, and ignored."""
    file = write(tmp_path / "h.conf", "[nodes]\nbandwidth.fit07.example.org = 100\n")
    config = Config.from_files([file])
    assert config.warnings == [f"{file}:2: [nodes] bandwidth.fit07.example.org: 'fit07.example.org' is not a short"
                               " hostname (write bandwidth.fit07); ignored"]
    assert config.get_int("nodes", "bandwidth", host="fit07") == 500


@pytest.mark.parametrize(("text", "words"), [
    ("bandwidth = 3\n", ":1: 'bandwidth = 3' comes before any [section]; put it under its section, e.g. [nodes]"),
    ("# intro\n[nodes\nbandwidth = 3\n", ":2: '[nodes' comes before any [section]; put it under its section,"
                                         " e.g. [nodes]"),
    ("[nodes]\nbandwidth = 3\nbandwidth\n", ":3: 'bandwidth' is neither a [section] nor key = value"),
    ("[nodes]\nbandwidth = 3\n\nBandwidth = 4\n", ":4: [nodes] bandwidth is set twice in this file; keep one"),
    ("[nodes]\n[images]\n[nodes]\n", ":3: [nodes] appears twice in this file; merge the two"),
])
def test_item4_ini_errors_say_file_and_line(tmp_path: Path, text: str, words: str) -> None:
    """Item 4: a file that is not ini is refused with ``file:line``."""
    assert refused(tmp_path, text) == f"{tmp_path / 'bad.conf'}{words}"


def test_item4_bom_and_crlf_are_read(tmp_path: Path) -> None:
    """Item 4: a file saved by an editor that writes a UTF-8 byte-order mark, or CRLF line ends."""
    bom = tmp_path / "bom.conf"
    bom.write_bytes(b"\xef\xbb\xbf[nodes]\r\nbandwidth = 42\r\n")
    config = Config.from_files([bom])
    assert config.get_int("nodes", "bandwidth") == 42 and config.warnings == []
    bom.write_bytes(b"\xef\xbb\xbf[nodes]\nbandwidth = 0\n")
    with pytest.raises(ConfigError, match=r"bom\.conf:2: \[nodes\] bandwidth = '0'"):
        Config.from_files([bom])


def test_item4_non_utf8_file_names_line_and_byte(tmp_path: Path) -> None:
    """Item 4: a Latin-1 file is one line naming the file, the line and the byte offset."""
    latin = tmp_path / "latin.conf"
    latin.write_bytes(b"[nodes]\n# caf\xe9\nbandwidth = 3\n")
    with pytest.raises(ConfigError) as info:
        Config.from_files([latin])
    assert info.value.message == f"{latin}:2: byte 13 (0xe9) is not UTF-8; save the file as UTF-8 text"
    latin.write_bytes(b"\xef\xbb\xbf[nodes]\n\xff\n")
    with pytest.raises(ConfigError, match=r"latin\.conf:2: byte 11 \(0xff\)"):
        Config.from_files([latin])


def test_item4_what_is_not_a_config_file(tmp_path: Path) -> None:
    """Item 4: a folder, or /dev/zero (which never ends), is refused, not read forever."""
    with pytest.raises(ConfigError, match=rf"cannot read config file {tmp_path} \(Is a directory\)"):
        Config.from_files([tmp_path])
    with pytest.raises(ConfigError, match="config file /dev/zero is larger than 1024 KiB"):
        Config.from_files(["/dev/zero"])


def test_percent_signs_are_not_interpolated(tmp_path: Path) -> None:
    file = write(tmp_path / "p.conf", "[udpcast]\nsender_options = --log %s\n")
    assert Config.from_files([file]).get_str("udpcast", "sender_options") == "--log %s"


def test_a_default_section_is_a_section_like_the_others(tmp_path: Path) -> None:
    """``[DEFAULT]`` does not leak its keys into every section: it is an unknown section."""
    file = write(tmp_path / "d.conf", "[DEFAULT]\nbandwidth = 0\n[nodes]\ncmc_timeout = 4\n")
    config = Config.from_files([file])
    assert config.get_int("nodes", "bandwidth") == 500
    assert config.warnings == [f"{file}:1: [DEFAULT] is not a known section; its keys are ignored"]


def test_every_key_has_a_valid_default() -> None:
    config = Config.from_files([])
    for k in keys():
        assert k.doc
        config.get(k.section, k.name)
        assert key(k.section, k.name) is k


def test_transport_kinds_are_the_transports() -> None:
    """The kinds the config accepts are the transports there are."""
    config = Config.from_files([])
    for kind in key("transport", "kind").choices:
        assert transport_for(kind, config).name == kind


def test_sample_file_is_generated_from_the_defaults() -> None:
    assert (ROOT / "imaging.conf.sample").read_text() == sample_text()
    for k in keys():
        assert f"# {k.name} = {k.default}".rstrip() in sample_text()
        assert f"({k.allowed()})\n# {k.name} =" in sample_text()


def test_config_command_lists_every_key_with_a_typo_in_a_file(cli: Runner, sandbox: Path) -> None:
    """`imaging-main config` still shows every key and its origin, and not the misspelt one."""
    (sandbox / "work" / "imaging.conf").write_text("[nodes]\nbandwith = 9\nbandwidth.fit07 = 42\n"
                                                   "[leases]\nbackend = File\n")
    result = cli("imaging-main", "config")
    assert result.code == 0
    assert "bandwidth.fit07 = 42    # ./imaging.conf" in result.out
    assert "backend = file    # ./imaging.conf" in result.out
    assert "bandwith" not in result.out
    shown = {line.split(" = ")[0] for line in result.out.splitlines() if " = " in line}
    assert {k.name for k in keys()} <= shown
