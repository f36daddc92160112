"""`python -m runner.reference [--check] [--output PATH]`: write docs/configuration.md, the
configuration reference, from the config itself, so that it cannot drift.

Every option of every config group is composed through Hydra's compose API, as `python -m runner`
composes it; each leaf key is listed with its type (from the schema, `runner.schema.groups`), its
default (from `conf/*.yaml`, per option where the options differ) and its one-line meaning (from
`runner.schema.help`, the only place it is written). `--check` writes nothing and exits 1, with one
line, when the page on disk is not the page this would write. Imports Hydra, never TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import typing
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import yaml
from omegaconf import DictConfig, OmegaConf

from .help import TASKS, config_groups, main_config
from .schema.help import KEY_HELP, OPTION_HELP

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"  # in a source checkout
COMMAND = "python -m runner.reference"
PRESETS = "experiment"  # the presets group (`+experiment=NAME`): global patches, not one group's keys

Compose = Callable[[Sequence[str]], DictConfig]


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One leaf key of one composed config: its schema type and its value as written in YAML."""

    key: str
    type: str
    value: Any


@contextlib.contextmanager
def composer() -> Iterator[Compose]:
    """compose(overrides) -> the composed config of the packaged conf/, as the app composes it."""
    from hydra import compose, initialize_config_module

    from .app import register

    register()
    with initialize_config_module(config_module="runner.conf", version_base="1.3"):
        yield lambda overrides=(): compose("config", overrides=list(overrides))


def groups() -> Dict[str, List[str]]:
    """Each config group (in the defaults list's order) with its options, presets left out."""
    found = {group: options for group, options in config_groups().items() if group != PRESETS}
    order = [next(iter(item)) for item in main_config()["defaults"] if isinstance(item, dict)]
    return {group: found[group] for group in order + sorted(set(found) - set(order)) if group in found}


def default_options() -> Dict[str, Optional[str]]:
    return {k: v for item in main_config()["defaults"] if isinstance(item, dict) for k, v in item.items()}


def leaves(cfg: DictConfig) -> List[Leaf]:
    """Every leaf key of a composed config, depth first in schema order. A node with a schema of its
    own (a dataclass) is descended into; a free-form mapping (`tracking.tags`) is one leaf."""
    plain = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    return list(_leaves(cfg, plain, ""))


def _leaves(node: DictConfig, plain: dict, prefix: str) -> Iterator[Leaf]:
    schema = OmegaConf.get_type(node)
    hints = typing.get_type_hints(schema) if dataclasses.is_dataclass(schema) else {}
    for key in node.keys():
        child_schema = OmegaConf.get_type(node, key)
        if isinstance(node._get_node(key), DictConfig) and dataclasses.is_dataclass(child_schema):
            yield from _leaves(node[key], plain[key], f"{prefix}{key}.")
        else:
            yield Leaf(f"{prefix}{key}", type_name(hints.get(key, Any)), plain[key])


def type_name(hint: Any) -> str:
    """A schema annotation as a reader says it: `int or null`, `list of float`, `max, conv`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        given = [arg for arg in args if arg is not type(None)]
        return " or ".join(type_name(arg) for arg in given) + (" or null" if len(given) < len(args) else "")
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(hint, type) and issubclass(hint, Enum):
        return ", ".join(f"`{member.name}`" for member in hint)
    return "any" if hint is Any else getattr(hint, "__name__", str(hint))


def value_text(value: Any) -> str:
    """A default as YAML would write it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {value_text(item)}" for key, item in value.items()) + "}"
    return str(value)


def default_text(value: Any) -> str:
    return "*required*" if value == "???" else f"`{value_text(value)}`"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def group_table(group: str, composed: Dict[str, List[Leaf]]) -> List[str]:
    """The key table of a group: each key once, its default per option where the options differ."""
    keys: Dict[str, List[Tuple[str, Leaf]]] = {}
    for option, found in composed.items():
        for leaf in found:
            if leaf.key.startswith(f"{group}."):
                keys.setdefault(leaf.key, []).append((option, leaf))
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, given in keys.items():
        by_value: Dict[str, List[str]] = {}
        for option, leaf in given:
            by_value.setdefault(default_text(leaf.value), []).append(option)
        if len(given) > 1 and all(leaf.value == option for option, leaf in given):
            default = "the option's name"
        elif len(by_value) == 1 and len(given) == len(composed):
            default = next(iter(by_value))
        else:
            default = "; ".join(f"{text} ({', '.join(options)})" for text, options in by_value.items())
        kinds = list(dict.fromkeys(leaf.type for _, leaf in given))
        lines.append(f"| `{key}` | {cell(' / '.join(kinds))} | {cell(default)} | {cell(KEY_HELP.get(key, ''))} |")
    return lines


def preset_settings(text: str) -> str:
    """What a `+experiment=NAME` preset sets, read from its YAML: group options, then keys."""
    preset = yaml.safe_load(text) or {}
    parts = []
    for item in preset.pop("defaults", []):
        if isinstance(item, str):
            parts.append(f"everything of `+{PRESETS}={item}`")
        else:
            for target, option in item.items():
                parts.append(f"`{target.replace('override ', '').lstrip('/')}={option}`")
    hydra = preset.pop("hydra", None)

    def flat(node: Any, prefix: str) -> Iterator[str]:
        if isinstance(node, dict):
            for key, child in node.items():
                yield from flat(child, f"{prefix}{key}.")
        else:
            yield f"`{prefix[:-1]}={value_text(node)}`"

    parts += list(flat(preset, ""))
    if hydra is not None:
        parts.append("Hydra settings (in the file)")
    return ", ".join(parts)


def presets() -> List[str]:
    folder = resources.files("runner.experiments")
    lines = ["| preset | sets |", "|---|---|"]
    for name in config_groups().get(PRESETS, []):
        lines.append(f"| `+{PRESETS}={name}` | {cell(preset_settings(folder.joinpath(name + '.yaml').read_text()))} |")
    return lines


def collect(compose: Compose) -> Dict[Tuple[str, str], List[Leaf]]:
    """(group, option) -> the leaf keys of the config composed with that option; ("", "") -> the default config."""
    found = {("", ""): leaves(compose([]))}
    for group, options in groups().items():
        for option in options:
            found[(group, option)] = leaves(compose([f"{group}={option}"]))
    return found


def render(composed: Optional[Dict[Tuple[str, str], List[Leaf]]] = None) -> str:
    """The whole page, from `collect`'s configs (None: compose them here)."""
    if composed is None:
        with composer() as compose:
            return render(collect(compose))
    found = groups()
    defaults = default_options()
    main = [leaf for leaf in composed[("", "")] if leaf.key.split(".")[0] not in found]
    main.sort(key=lambda leaf: "." in leaf.key)  # task, seed, ... before predict.*, evaluate.*, export.*
    lines = [
        "# Configuration reference",
        "",
        f"<!-- generated by `{COMMAND}` from conf/, src/runner/schema/ and src/runner/schema/help.py: "
        "edit those, then run it; tests/test_runner/test_reference.py fails when this page is stale -->",
        "",
        "Groups are picked with `group=option`, keys set with `group.key=value` (a key that is not in the "
        "config is added with `+key=value`). A typed schema (`src/runner/schema/`) checks every key and "
        "value when the config is composed: a mistyped key or a value of the wrong type is refused with "
        "one line naming it. `python -m runner --cfg job [overrides]` prints the composed config.",
        "",
        "| group | default | options |",
        "|---|---|---|",
    ]
    for group, options in found.items():
        default = defaults.get(group)
        lines.append(f"| [`{group}`](#{group}) | {f'`{default}`' if default else 'none'} | "
                     f"{', '.join(f'`{option}`' for option in options)} |")
    lines.append(f"| [`{PRESETS}`](#presets) | none | "
                 f"{', '.join(f'`{name}`' for name in config_groups().get(PRESETS, []))} (`+{PRESETS}=NAME`) |")
    lines += ["", "## Main config", "", "Tasks (`task=NAME`):", "", "| task | what it does |", "|---|---|"]
    lines += [f"| `{task.value}` | {cell(text)} |" for task, text in TASKS.items()]
    lines += ["", "| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{leaf.key}` | {cell(leaf.type)} | {cell(default_text(leaf.value))} | {cell(KEY_HELP.get(leaf.key, ''))} |"
              for leaf in main]
    for group, options in found.items():
        default = defaults.get(group)
        chosen = f"default `{default}`" if default else "none by default"
        lines += ["", f"## {group}", "", f"`{group}=OPTION`, {chosen}.", "", "| option | what |", "|---|---|"]
        lines += [f"| `{option}`{' (default)' if option == default else ''} | "
                  f"{cell(OPTION_HELP.get((group, option), ''))} |" for option in options]
        lines += ["", *group_table(group, {option: composed[(group, option)] for option in options})]
    lines += ["", "## Presets", "",
              f"`+{PRESETS}=NAME` patches the whole config with `experiments/NAME.yaml`; what each preset is "
              "for is told in [Experiments](experiments.md).", "", *presets()]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale; write nothing")
    parser.add_argument("--output", type=Path, default=PAGE, help=f"the page (default: {PAGE})")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        current = args.output.read_text() if args.output.is_file() else None
        if current != page:
            print(f"{args.output} is stale: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
