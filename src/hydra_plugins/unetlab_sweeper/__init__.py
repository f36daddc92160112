"""unetlab's Optuna sweeper, as Hydra sees it.

Hydra instantiates only plugin classes whose path starts with `hydra_plugins.`
(`hydra.core.plugins.Plugins.is_in_toplevel_plugins_module`), so the sweeper written in
`runner.sweeps.sweeper` is exposed here under that prefix; `runner.sweeps.plugin` registers
this class. Hydra's plugin scan imports this module at every start: nothing heavy here.
"""

from runner.sweeps import sweeper


class OptunaSweeper(sweeper.OptunaSweeper):
    """`runner.sweeps.sweeper.OptunaSweeper` under the `hydra_plugins` prefix Hydra requires."""
