"""Self-configuration: from a dataset to a plan, the nnU-Net recipe with measured memory and a time budget.

Three stages, each reading only the previous one's output, as nnU-Net v2 separates them:

1. `cases` + `properties`: the dataset's properties (shapes, spacings, intensities, classes, objects) as a
   plain dict, computed once per dataset content;
2. `planner`: a pure function of the properties and the device -> a `Plan` whose every decision carries a
   one-line reason;
3. `probe` + `budget`: real training steps on this device measure the plan's peak memory and speed; the plan
   shrinks until it fits the memory budget, and epochs x steps are set to fill the time budget.

The runner's `task=plan` writes the result as an ordinary Hydra experiment (`plans/NAME.yaml`).
"""
