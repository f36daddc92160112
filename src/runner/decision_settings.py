"""The decision a task applies to a model's probabilities: the one its training fitted and stored
(`unetlab.decision`, `runner.decision_fit`), with the config's overrides (`decision.threshold`,
`decision.postprocess=none`), for one model or an ensemble; thresholds refused where the argmax decides."""

from __future__ import annotations

import dataclasses
import logging

from unetlab.decision import Decision
from unetlab.errors import ConfigError

from .schema import Config

log = logging.getLogger(__name__)


def decision(config: Config, preprocessing):
    """The `unetlab.decision.Decision` that turns a model's probabilities into its mask: the one fitted after
    training (`preprocessing.decision`), cut at `decision.threshold` when set, without its component rules
    under `decision.postprocess=none`. A threshold for a model it cannot cut is a one-line ConfigError."""
    check_threshold_applies(config, preprocessing)
    fitted = Decision.from_record(preprocessing.decision)
    if config.decision.threshold is not None:
        fitted = dataclasses.replace(fitted, threshold=config.decision.threshold)
    return fitted if config.decision.postprocess.value == "auto" else dataclasses.replace(fitted, rules=())


def ensemble_decision(config: Config, members):
    """`decision` of an ensemble's first member (the members' calibrated probabilities are averaged, then cut as
    it cuts them); a warning when the members' own thresholds or rules differ and `decision.threshold` does not
    settle it, since the result then depends on the order of run_id=[...]."""
    fitted = [Decision.from_record(member.preprocessing.decision) for member in members]
    if len({(d.threshold, d.rules) for d in fitted}) > 1 and config.decision.threshold is None:
        log.warning("the ensemble's members fitted different thresholds or rules (%s): the first member's decide; "
                    "set decision.threshold=T to choose", "; ".join(d.describe() for d in fitted))
    return decision(config, members[0].preprocessing)


def check_threshold_applies(config: Config, preprocessing) -> None:
    """`decision.threshold` cuts a binary 2D model's class-1 probability: refused for models of more classes
    (the argmax decides) and for planned (data=nnunet) models, whose cases take the argmax."""
    given = config.decision.threshold
    if given is None:
        return
    if preprocessing.planned or preprocessing.num_classes > 2:
        what = ("was trained on planned patches (data=nnunet)" if preprocessing.planned
                else f"has {preprocessing.num_classes} classes")
        raise ConfigError(f"decision.threshold={given} cuts a binary model's probability of class 1, and this model "
                          f"{what}: its masks take the argmax; leave decision.threshold=null")
