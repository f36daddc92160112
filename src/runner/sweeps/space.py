"""The search space of an Optuna sweep, read from Hydra's sweep syntax, and a trial's values
written back as Hydra overrides."""

from __future__ import annotations

import re
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from unetlab.errors import ConfigError


def search_space(params: dict[str, str] | None, arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Distributions from `hparams_search.params` and the command line's sweep overrides
    (`model.filters=16,32` is a choice), and the command line's other overrides."""
    parser = OverridesParser.create()
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []

    def drop(override: Override) -> None:  # a key given again (also as +key / ++key) replaces the earlier one
        for name in [n for n in space if n.lstrip("+~") == override.key_or_group]:
            del space[name]

    for key, value in (params or {}).items():
        space[key] = distribution(parse(parser, f"{key}={value}", f"hparams_search.params.{key}"))
    for argument in arguments:
        override = parse(parser, argument, argument)
        drop(override)
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(argument)  # a fixed value on the command line wins over a dimension
    return space, fixed


def parse(parser: OverridesParser, text: str, where: str) -> Override:
    try:
        return parser.parse_override(text)
    except Exception as error:
        raise ConfigError(f"{where}: not valid sweep syntax ({' '.join(str(error).split())[:200]})") from None


def distribution(override: Override) -> BaseDistribution:
    """choice(...) -> categorical; range(a, b, step) -> int or stepped float; interval(a, b) -> float
    (tag `log` for a log scale, tag `int` for integers)."""
    key = override.get_key_element()
    try:
        return _distribution(key, override)
    except ConfigError:
        raise
    except ValueError as error:  # Optuna's checks, e.g. a log scale that includes 0
        raise ConfigError(f"{key}: {' '.join(str(error).split())}") from None


def _distribution(key: str, override: Override) -> BaseDistribution:
    sweep = override.value()
    tags = getattr(sweep, "tags", set())
    if isinstance(sweep, ChoiceSweep):
        choices = list(override.sweep_iterator())
        if any(isinstance(c, (list, dict)) for c in choices):
            raise ConfigError(f"{key}: choice() values must be numbers, strings or booleans")
        return CategoricalDistribution(choices)
    if isinstance(sweep, RangeSweep):
        values = [round(v, 10) for v in override.sweep_iterator()]
        if not values:
            raise ConfigError(f"{key}: range({sweep.start}, {sweep.stop}, {sweep.step}) is empty")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(min(values), max(values), step=abs(int(sweep.step)))
        return FloatDistribution(min(values), max(values), step=abs(float(sweep.step)))
    if isinstance(sweep, IntervalSweep):
        if sweep.start >= sweep.end:
            raise ConfigError(f"{key}: interval({sweep.start}, {sweep.end}) needs low < high")
        if "int" in tags:
            return IntDistribution(int(sweep.start), int(sweep.end), log="log" in tags)
        return FloatDistribution(sweep.start, sweep.end, log="log" in tags)
    return CategoricalDistribution([sweep])  # a single value: fixed, but recorded with the trial


def trial_overrides(trial) -> list[str]:
    """The parameters of `trial` (an optuna Trial or FrozenTrial) as Hydra overrides (strings
    quoted where Hydra would read them otherwise)."""
    return [f"{key}={override_value(value)}" for key, value in trial.params.items()]


def override_value(value: Any) -> str:
    if isinstance(value, str) and not (re.fullmatch(r"[A-Za-z_][\w./-]*", value)
                                       and value.lower() not in ("true", "false", "null", "nan", "inf")):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def sample_overrides(space: dict[str, BaseDistribution]) -> list[list[str]]:
    """Override sets that between them use every choice of every categorical dimension (the
    others at their low end): composing them finds a mistyped key or group option up front."""
    def first(dist: BaseDistribution) -> Any:
        return dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low

    base = {name: first(dist) for name, dist in space.items()}
    samples = [base] + [{**base, name: choice} for name, dist in space.items()
                        if isinstance(dist, CategoricalDistribution) for choice in dist.choices[1:]]
    return [[f"{name}={override_value(value)}" for name, value in sample.items()] for sample in samples]
