"""unetlab: U-Net semantic segmentation building blocks for Keras 3.

The library is free of Hydra, OmegaConf and MLflow: every function takes plain
values, so it can be used from a notebook. Importing this package is cheap;
TensorFlow is imported by the submodules that need it (`unetlab.models`,
`unetlab.data`, `unetlab.losses`, ...).
"""

from importlib import metadata as _metadata

try:  # the version pyproject.toml declares, as installed (one place for it)
    __version__ = _metadata.version("unetlab")
except _metadata.PackageNotFoundError:  # the source tree on sys.path, not installed
    __version__ = "0+unknown"
