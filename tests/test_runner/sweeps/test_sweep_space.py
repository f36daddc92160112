"""runner.sweeps.space: the search space from Hydra's sweep syntax, and trial values as overrides."""

import re

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from runner.sweeps.space import sample_overrides, search_space, trial_overrides
from unetlab.errors import ConfigError


def test_search_space_reads_hydra_sweep_syntax():
    space, fixed = search_space(
        {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "model.dropout": "interval(0.0, 0.3)",
         "model.depth": "range(2, 5)", "loss": "choice(dice, bce_dice)", "trainer.batch_size": "tag(int, interval(2, 8))"},
        [])
    assert space == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "model.dropout": FloatDistribution(0.0, 0.3),
        "model.depth": IntDistribution(2, 4),
        "loss": CategoricalDistribution(["dice", "bce_dice"]),
        "trainer.batch_size": IntDistribution(2, 8),
    }
    assert fixed == []


def test_command_line_sweeps_add_dimensions_and_plain_values_fix_them():
    params = {"model.filters": "choice(16, 32)", "model.depth": "choice(3, 4)"}
    space, fixed = search_space(params, ["hparams_search=optuna", "model.filters=8,16", "model.depth=2"])
    assert space == {"model.filters": CategoricalDistribution([8, 16])}  # the command line wins
    assert fixed == ["hparams_search=optuna", "model.depth=2"]


@pytest.mark.parametrize("value, message", [
    ("interval(0.3, 0.1)", "needs low < high"),
    ("choice([1, 2], [3])", "numbers, strings or booleans"),
    ("choice(1,", "not valid sweep syntax"),
    ("tag(log, interval(0, 1))", "low > 0"),
    ("range(3, 3)", "is empty"),
])
def test_search_space_mistakes_name_the_key(value, message):
    with pytest.raises(ConfigError, match=r"^hparams_search.params.model.dropout: .*" + re.escape(message)
                       + r"|^model.dropout: .*" + re.escape(message)):
        search_space({"model.dropout": value}, [])


def test_ranges_keep_their_last_value_and_go_either_way():
    space, _ = search_space({"model.dropout": "range(0, 1, 0.3)", "model.depth": "range(5, 1, -2)"}, [])
    assert space["model.dropout"] == FloatDistribution(0.0, 0.9, step=0.3)
    assert space["model.depth"] == IntDistribution(3, 5, step=2)


def test_a_plus_override_replaces_the_dimension_of_its_key():
    space, fixed = search_space({"model.filters": "choice(16, 32)"}, ["+model.filters=8"])
    assert space == {} and fixed == ["+model.filters=8"]


@pytest.mark.parametrize("value, override", [
    ("dice", "loss=dice"), ("a,b", "loss='a,b'"), ("1", "loss='1'"), ("true", "loss='true'"), (4, "loss=4")])
def test_trial_values_become_overrides_hydra_reads_back_as_the_same_value(value, override):
    class Trial:
        params = {"loss": value}

    assert trial_overrides(Trial()) == [override]
    assert OverridesParser.create().parse_override(override).value() == value


def test_sample_overrides_use_every_choice_once_so_composition_checks_them_all():
    space, _ = search_space({"loss": "choice(dice, bce_dice, focal)", "model.filters": "choice(2, 4)",
                             "optimizer.lr": "interval(0.001, 0.01)"}, [])
    samples = sample_overrides(space)
    assert samples[0] == ["loss=dice", "model.filters=2", "optimizer.lr=0.001"]
    assert {o for sample in samples for o in sample} == {
        "loss=dice", "loss=bce_dice", "loss=focal", "model.filters=2", "model.filters=4", "optimizer.lr=0.001"}
