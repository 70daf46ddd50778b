"""Every command block of README.md and docs/*.md is run by a test, or says why it cannot be
(tests/docblocks.py); and the check itself fails on documents that break the rule."""
import pytest

from tests import docblocks
from tests.docblocks import Block, console_steps, parse, problems, sh_commands, shown_matches

NOT_RUN = [b for b in docblocks.all_blocks() if b.is_command and b.not_run]


def test_every_command_block_is_run_by_a_test_or_says_why_not():
    found = problems(docblocks.all_blocks())
    assert not found, "\n".join(found)


@pytest.mark.parametrize("b", NOT_RUN, ids=[b.name for b in NOT_RUN])
def test_a_block_marked_not_run(b):
    """One skip per block that no test runs, with its reason, in every run's summary (-ra)."""
    # 9: four need Kubernetes, three are test suites that CI runs (the Docker suite, one file
    # of it, the simulation's tests beside its long run), two take minutes (chaos, bench)
    assert len(NOT_RUN) <= 9, "not-run blocks are to be kept few"
    pytest.skip(f"{b.where} <!-- {b.name} --> is not run: {b.not_run}")


# -- the check, on documents made to break each rule ------------------------------------------

def doc(text):
    return parse(text, "doc.md")


REG = {"ok": "tests/unit/test_docblocks.py::test_registered_block_passes"}


def test_registered_block_passes():
    assert "ok" in REG       # the block's name in this function: it "fetches" the block
    blocks = doc("<!-- ok -->\n```sh\necho hi\n```\n\n```text\noutput\n```\n")
    assert problems(blocks, REG) == []           # this function names the block "ok"


def test_an_unmarked_command_block_fails():
    blocks = doc("<!-- ok -->\n```sh\necho hi\n```\n\nthen\n\n```console\n$ echo hi\nhi\n```\n")
    assert problems(blocks, REG) == ["doc.md:8: a console block without a <!-- name --> "
                                     "marker on the line before it"]


def test_a_marker_no_test_runs_fails():
    found = problems(doc("<!-- ok -->\n```sh\nx\n```\n<!-- other -->\n```bash\ny\n```\n"), REG)
    assert len(found) == 1 and "other is run by no test" in found[0]


def test_a_registered_test_that_does_not_fetch_the_block_fails():
    reg = {"ok": "tests/unit/test_docblocks.py::test_an_unmarked_command_block_fails"}
    found = problems(doc("<!-- ok -->\n```sh\nx\n```\n"), reg)
    assert found == ["ok: tests/unit/test_docblocks.py::test_an_unmarked_command_block_fails "
                     "does not fetch the block (no string 'ok' in it)"]
    reg = {"ok": "tests/unit/test_docblocks.py::no_such_test"}
    assert "has no test function" in problems(doc("<!-- ok -->\n```sh\nx\n```\n"), reg)[0]


def test_not_run_needs_a_reason_and_is_not_also_registered():
    assert problems(doc("<!-- k8s: not-run: needs a cluster -->\n```sh\nkubectl x\n```\n"),
                    {}) == []
    assert "without a reason" in problems(doc("<!-- k8s: not-run: -->\n```sh\nx\n```\n"), {})[0]
    assert "but registered" in problems(doc("<!-- ok: not-run: why -->\n```sh\nx\n```\n"),
                                        REG)[0]


def test_a_fence_without_a_language_and_commands_in_an_indented_block_fail():
    found = problems(doc("```\npython -m nodes.certs\n```\n\ntext\n\n    docker compose up -d\n"),
                     {})
    assert len(found) == 2
    assert "a fence without a language" in found[0]
    assert "commands in an indented block" in found[1]
    # an indented block of output is fine
    assert problems(doc("text\n\n    [1] What we do:  send Msg1\n"), {}) == []


def test_stale_and_duplicate_markers_fail():
    found = problems(doc("<!-- ok -->\n```sh\nx\n```\n<!-- ok -->\n```sh\ny\n```\n"),
                     {**REG, "gone": REG["ok"]})
    assert any("the same marker on several blocks" in f for f in found)
    assert any("gone: registered" in f for f in found)


def test_a_fence_in_a_list_item_and_its_marker_are_found():
    blocks = doc("1. step:\n   <!-- ok -->\n   ```sh\n   docker node ls\n   ```\n")
    assert [(b.name, b.lang, b.text) for b in blocks] == [("ok", "sh", "docker node ls\n")]


# -- reading and comparing ------------------------------------------------------------------

def test_console_steps_split_commands_from_what_they_print():
    b = Block("d", 1, "console", "$ curl -s x   # a comment\n{\"a\": 1}    # or 2\n"
              "$ long \\\n    --flag\n$ quiet\n", "n", None)
    steps = console_steps(b)
    assert [(s.command, s.shown) for s in steps] == [
        ("curl -s x   # a comment", '{"a": 1}'), ("long \\\n    --flag", None), ("quiet", None)]


def test_sh_commands_keep_loops_and_continuations_whole():
    b = Block("d", 1, "sh", "# a comment\nA=1   # set\nfor n in a b; do\n  echo $n\ndone\n\n"
              "curl x \\\n  -d y\n", "n", None)
    assert sh_commands(b) == ["A=1   # set", "for n in a b; do\n  echo $n\ndone",
                              "curl x \\\n  -d y"]


def test_shown_matches_ignores_wrapping_and_takes_dots_for_anything():
    assert shown_matches('{"role": "master", "last_seq": 2, "x": 1}', '{"role": "master",\n ...}')
    assert shown_matches('{\n    "quorum": {\n        "size": 3\n    }\n}', '{"quorum": {"size": 3}}')
    assert not shown_matches('{"seq": 3}', '{"seq": 2}')
    assert shown_matches("anything", None)


def test_substitute_replaces_the_documents_ports_only():
    ports = {5000: 12000, 5001: 12001, 9090: 13000}
    assert docblocks.substitute("curl localhost:5000/x --http-port 5001 seq 15000 9090", ports) \
        == "curl localhost:12000/x --http-port 12001 seq 15000 13000"
