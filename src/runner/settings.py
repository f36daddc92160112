"""From the composed DictConfig to validated, typed settings."""

from __future__ import annotations

import dataclasses
import re
from enum import Enum
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from unetlab.errors import ConfigError

from .schema import Config


def to_config(cfg: DictConfig) -> Config:
    """Check every value and cross-field rule; raise ConfigError naming the key."""
    return checked(lambda: OmegaConf.to_object(cfg))


def checked(convert: Callable[[], Any]) -> Any:
    """Run an OmegaConf conversion to dataclasses; its errors become one ConfigError naming the key."""
    try:
        return convert()
    except MissingMandatoryValue as error:
        raise ConfigError(f"{error.full_key} is required: set it on the command line ({error.full_key}=...)") from None
    except OmegaConfBaseException as error:
        missing = re.search(r"Missing mandatory value: ([\w.]+)", str(error))
        if missing:  # reached through an interpolation such as ${.root}/image
            key = missing.group(1)
            raise ConfigError(f"{key} is required: set it on the command line ({key}=...)") from None
        cause = error.__cause__ or error.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(one_line(error)) from None


def without(settings: Any, *keys: str) -> dict[str, Any]:
    """A settings dataclass as keyword arguments, less `keys`."""
    return {key: value.value if isinstance(value, Enum) else value
            for key, value in dataclasses.asdict(settings).items() if key not in keys}


def data_params(config: Config) -> dict[str, Any]:
    """Keyword arguments of the data source: the data group minus `name` and `cache`."""
    return without(config.data, "name", "cache", "root")


def one_line(error: BaseException) -> str:
    """First line of an OmegaConf/Hydra error, plus the key it concerns."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    full_key = getattr(error, "full_key", None)
    return f"{full_key}: {first}" if full_key and full_key not in first else first
