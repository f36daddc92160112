"""The README's configuration reference covers every key of every group option."""

import pytest
from omegaconf import OmegaConf

from helpers import ROOT
from runner.schema import SCHEMAS

README = (ROOT / "README.md").read_text()


def leaf_keys(node, prefix=""):
    for key, value in node.items_ex(resolve=False):
        if OmegaConf.is_dict(value) and len(value):
            yield from leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


@pytest.mark.parametrize("group, option", [(g, o) for g, options in SCHEMAS.items() for o in options])
def test_readme_documents_every_key_of_every_option(compose, group, option, tmp_path):
    cfg = compose([f"{group}={option}", f"output_dir={tmp_path}"])
    rows = [line for line in README.splitlines() if line.startswith("| `")]
    for key in leaf_keys(cfg):
        group_name, _, leaf = key.rpartition(".")
        if leaf == "name":
            continue  # the option itself: the groups table lists them
        prefixes = [key.rsplit(".", n)[0] for n in range(1, key.count(".") + 1)]
        documented = any((f"`{key}`" in row) or (group_name and f"`{group_name}." in row and f"{leaf}`" in row)
                         or any(f"| `{prefix}` |" in row for prefix in prefixes[:-1])  # a row for a whole dict
                         for row in rows)
        assert documented, f"README.md has no row for {key}"


def test_readme_shows_the_two_set_up_commands():
    assert "make train" in README and "make test" in README
