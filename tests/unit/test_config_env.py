"""A REPLOG_* environment value goes through the same conversion and choices check as the
flag it stands for, and a bad one fails the same clean way (argparse's one-line error, exit
status 2) naming the variable: for every flag of every entry point built on Parser."""
import re

import pytest

import nameserver.__main__ as nameserver
from nodes import launcher, master_node, secondary_node
from nodes.config import Parser, env_name

ENTRY_POINTS = {"secondary": secondary_node.parser, "master": master_node.parser,
                "nameserver": nameserver.parser, "launcher": launcher.parser}


def env_flags(kind):
    """(entry point, flag, env variable) for every flag Parser gives an env fallback, whose
    value is converted (kind "type": int or float) or checked (kind "choices")."""
    out = []
    for entry, make in ENTRY_POINTS.items():
        for action in make()._actions:
            m = re.search(r"\[env (\w+)\]", action.help or "")
            if not m or not action.option_strings:
                continue
            flag = action.option_strings[0]
            if m.group(1) != env_name(flag):
                continue   # the launcher's own _env_flag (another variable name): see report
            if kind == "type" and action.type in (int, float) or \
                    kind == "choices" and action.choices:
                out.append(pytest.param(entry, flag, m.group(1), id=f"{entry}{flag}"))
    return out


def fails_cleanly(capsys, make, argv=()):
    with pytest.raises(SystemExit) as exit_:
        make().parse_args(list(argv))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("entry,flag,env", env_flags("type"))
def test_a_value_that_does_not_convert_is_argparses_error_naming_the_variable(
        monkeypatch, capsys, entry, flag, env):
    monkeypatch.setenv(env, "abc")
    line = fails_cleanly(capsys, ENTRY_POINTS[entry])
    assert re.search(rf"error: argument {flag} \(from {env}\): invalid \w+ value: 'abc'$",
                     line), line


@pytest.mark.parametrize("entry,flag,env", env_flags("choices"))
def test_a_value_outside_the_choices_is_argparses_error_naming_the_variable(
        monkeypatch, capsys, entry, flag, env):
    monkeypatch.setenv(env, "bogus")
    line = fails_cleanly(capsys, ENTRY_POINTS[entry])
    assert f"error: argument {flag} (from {env}): invalid choice: 'bogus' (choose from " \
        in line, line


def test_every_entry_point_gives_flags_to_check():
    assert len(env_flags("type")) > 10 and len(env_flags("choices")) >= 3   # found them all


def test_the_messages_match_the_flags_own(monkeypatch, capsys):
    flag_line = fails_cleanly(capsys, secondary_node.parser, ["--fsync", "alwayz"])
    monkeypatch.setenv("REPLOG_FSYNC", "alwayz")
    env_line = fails_cleanly(capsys, secondary_node.parser)
    assert env_line == flag_line.replace("--fsync:", "--fsync (from REPLOG_FSYNC):")
    monkeypatch.setenv("REPLOG_HTTP_PORT", "abc")
    assert fails_cleanly(capsys, master_node.parser).endswith(
        "error: argument --http-port (from REPLOG_HTTP_PORT): invalid int value: 'abc'")


def test_a_good_value_is_converted_and_a_flag_overrides_the_variable(monkeypatch):
    monkeypatch.setenv("REPLOG_HTTP_PORT", "5005")
    monkeypatch.setenv("REPLOG_FSYNC", "interval")
    monkeypatch.setenv("REPLOG_FSYNC_INTERVAL", "20")
    args = secondary_node.parser().parse_args([])
    assert (args.http_port, args.fsync, args.fsync_interval) == (5005, "interval", 20.0)
    monkeypatch.setenv("REPLOG_HTTP_PORT", "abc")   # the flag wins; the variable is unused
    assert secondary_node.parser().parse_args(["--http-port", "7"]).http_port == 7


def test_help_shows_the_variables_value_as_the_default(monkeypatch, capsys):
    monkeypatch.setenv("REPLOG_HTTP_PORT", "5005")
    with pytest.raises(SystemExit):
        secondary_node.parser().parse_args(["--help"])
    assert re.search(r"\(default:\s+5005\)", capsys.readouterr().out)


def test_a_flag_can_name_its_own_variable(monkeypatch, capsys):
    monkeypatch.setenv("REPLOG_NODE_COUNT", "three")

    def make():
        p = Parser(prog="p")
        p.flag("--count", type=int, default=2, env="REPLOG_NODE_COUNT")
        return p

    assert fails_cleanly(capsys, make).endswith(
        "error: argument --count (from REPLOG_NODE_COUNT): invalid int value: 'three'")
    monkeypatch.setenv("REPLOG_NODE_COUNT", "3")
    assert make().parse_args([]).count == 3


def switches():
    """(entry point, flag, env variable) for every on/off switch of every entry point."""
    return [pytest.param(entry, a.option_strings[0], env_name(a.option_strings[0]),
                         id=f"{entry}{a.option_strings[0]}")
            for entry, make in ENTRY_POINTS.items() for a in make()._actions
            if len(a.option_strings) == 2 and a.option_strings[1].startswith("--no-")]


def test_every_switch_has_its_negation():
    assert {p.values[1] for p in switches()} >= {"--failover", "--allow-faults", "--new-log"}


@pytest.mark.parametrize("entry,flag,env", switches())
def test_a_switch_reads_on_and_off_words_and_its_negation_wins(monkeypatch, capsys, entry,
                                                              flag, env):
    dest = flag[2:].replace("-", "_")
    make = ENTRY_POINTS[entry]
    assert getattr(make().parse_args([]), dest) is False
    for word, value in (("1", True), ("on", True), ("TRUE", True), ("0", False), ("off", False),
                        ("", False)):
        monkeypatch.setenv(env, word)
        assert getattr(make().parse_args([]), dest) is value, word
    monkeypatch.setenv(env, "yes")     # e.g. REPLOG_FAILOVER=1 in compose, --no-failover given
    assert getattr(make().parse_args(["--no" + flag[1:]]), dest) is False
    monkeypatch.setenv(env, "alwayz")
    assert fails_cleanly(capsys, make).endswith(
        f"error: argument {flag}/--no{flag[1:]} (from {env}): 'alwayz' is not on or off "
        "(1, true, yes, on; 0, false, no, off)")


def test_the_launcher_negates_off_switches_except_for_an_older_tree(tmp_path):
    """An off switch goes out as --no-X (so that a REPLOG_* variable cannot turn it on); while
    bench/trees.py starts another tree's nodes, which may predate --no-X, it is left out."""
    from bench.common import REPO
    from bench.trees import rooted_at
    from nodes.launcher import procs

    opts = {"failover": False, "allow_faults": True, "http_port": 5000}
    assert procs._flags(opts) == ["--no-failover", "--allow-faults", "--http-port", "5000"]
    with rooted_at(tmp_path):
        assert procs._flags(opts) == ["--allow-faults", "--http-port", "5000"]
    with rooted_at(REPO):
        assert procs._flags(opts)[0] == "--no-failover"
    assert procs._flags(opts)[0] == "--no-failover" and procs.ROOT == REPO
