"""runner.reference: docs/configuration.md is rendered from conf/, the schema and runner.schema.help,
covers every key of every option, and is the page in the repository."""

import subprocess
import sys
import typing

import pytest

from runner import reference
from runner.schema.groups import Padding
from runner.schema.help import KEY_HELP, OPTION_HELP


@pytest.fixture(scope="module")
def composed(compose):
    """(group, option) -> the leaf keys of that option's composed config; ("", "") is the default config."""
    return reference.collect(compose)


@pytest.fixture(scope="module")
def page(composed):
    return reference.render(composed)


def test_every_leaf_key_of_every_option_has_help(composed):
    groups = reference.groups()
    for (group, option), leaves in composed.items():
        for leaf in leaves:
            if leaf.key in groups:
                continue  # a group that is null by default (hparams_search): its options have help
            where = f" (with {group}={option})" if group else ""
            assert leaf.key in KEY_HELP, f"{leaf.key}{where} has no help: add it to KEY_HELP in runner/schema/help.py"


def test_every_help_entry_names_a_real_key(composed):
    keys = {leaf.key for leaves in composed.values() for leaf in leaves}
    dead = sorted(set(KEY_HELP) - keys)
    assert not dead, f"KEY_HELP names keys that no config option has: {', '.join(dead)}"


def test_every_group_option_has_help_and_every_option_help_names_an_option():
    options = {(group, option) for group, names in reference.groups().items() for option in names}
    assert not options - set(OPTION_HELP), f"options without OPTION_HELP: {sorted(options - set(OPTION_HELP))}"
    assert not set(OPTION_HELP) - options, f"OPTION_HELP names no option: {sorted(set(OPTION_HELP) - options)}"


def test_committed_page_is_the_rendered_page(page):
    assert reference.PAGE.read_text() == page, "docs/configuration.md is stale: run python -m runner.reference"


def test_page_lists_per_option_defaults_where_options_differ(page):
    assert "| `data.image_size` | int | `256` (folder, isbi2012); `128` (nnunet); `64` (synthetic); `32` (synthetic3d) |" in page
    assert "| `data.root` | str | *required* (isbi2012, nnunet) |" in page
    assert "| `loss.name` | str | the option's name |" in page


def test_types_read_as_a_reader_says_them():
    assert reference.type_name(typing.Optional[int]) == "int or null"
    assert reference.type_name(typing.List[typing.List[int]]) == "list of list of int"
    assert reference.type_name(typing.Dict[str, str]) == "mapping of str to str"
    assert reference.type_name(Padding) == "`same`, `valid`"
    assert reference.value_text([1.0, None, True]) == "[1.0, null, true]"


def test_preset_settings_are_read_from_the_preset_yaml():
    text = "# @package _global_\ndefaults:\n  - isbi2012\n  - override /loss: bce\nmodel:\n  filters: 16\n"
    assert reference.preset_settings(text) == "everything of `+experiment=isbi2012`, `loss=bce`, `model.filters=16`"


@pytest.mark.slow
def test_check_exits_1_with_one_line_on_a_stale_page_writes_nothing_and_never_imports_tensorflow(tmp_path):
    page = tmp_path / "configuration.md"
    page.write_text("# an old page\n")
    script = ("import sys\n"
              "sys.modules.update(tensorflow=None, keras=None, mlflow=None, jax=None)  # importing them fails\n"
              "from runner.reference import main\n"
              f"sys.exit(main(['--check', '--output', {str(page)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"{page} is stale: run python -m runner.reference"]
    assert page.read_text() == "# an old page\n"
