"""How Hydra finds the Optuna sweeper: `register_sweeper()`, called by the app before composing.

Kept apart from `sweeper`: the Hydra-visible class in `hydra_plugins.unetlab_sweeper` is built
on `sweeper.OptunaSweeper`, and registering it means importing it, so the two cannot share a
module without an import cycle.
"""

from __future__ import annotations


def register_sweeper() -> None:
    """Store `hydra/sweeper=unetlab_optuna` (what conf/hparams_search/optuna.yaml selects) and
    register its class with Hydra by hand: Hydra's plugin scan misses editable installs."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from hydra_plugins.unetlab_sweeper import OptunaSweeper

    target = f"{OptunaSweeper.__module__}.{OptunaSweeper.__qualname__}"
    ConfigStore.instance().store(group="hydra/sweeper", name="unetlab_optuna", provider="unetlab",
                                 node={"_target_": target})
    Plugins.instance().register(OptunaSweeper)
