"""unetlab's Optuna sweeper, as Hydra sees it, and its registration.

Hydra instantiates only plugin classes whose path starts with `hydra_plugins.`
(`hydra.core.plugins.Plugins.is_in_toplevel_plugins_module`), so the sweeper written in
`runner.sweeps.sweeper` is exposed here under that prefix. Hydra's plugin scan imports this
module at every start: nothing heavy here.
"""

from runner.sweeps import sweeper


class OptunaSweeper(sweeper.OptunaSweeper):
    """`runner.sweeps.sweeper.OptunaSweeper` under the `hydra_plugins` prefix Hydra requires."""


def register_sweeper() -> None:
    """Store `hydra/sweeper=unetlab_optuna` (what conf/hparams_search/optuna.yaml selects) and
    register its class with Hydra by hand: Hydra's plugin scan misses editable installs."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    target = f"{OptunaSweeper.__module__}.{OptunaSweeper.__qualname__}"
    ConfigStore.instance().store(group="hydra/sweeper", name="unetlab_optuna", provider="unetlab",
                                 node={"_target_": target})
    Plugins.instance().register(OptunaSweeper)
