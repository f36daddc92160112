"""From the composed DictConfig to the validated, typed `Config` (once, in `app`), and config
errors as one line that names the key, also for errors the library raises in its own argument names."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from enum import Enum
from typing import Any, Callable, Iterator

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from unetlab.errors import ConfigError, UnetlabError

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


def plain(settings: Any) -> dict[str, Any]:
    """A config dataclass (the whole Config or one group) as plain data, enums as their values:
    what the user wrote in YAML, and what the library's functions take as arguments."""
    return dataclasses.asdict(settings, dict_factory=lambda items: {
        key: value.value if isinstance(value, Enum) else value for key, value in items})


@contextlib.contextmanager
def config_group(group: str) -> Iterator[None]:
    """Name the config key in the library's errors: the library speaks of its arguments
    (`rotation must be in [0, 180]. Received: rotation=200`), the user set `augment.rotation`."""
    try:
        yield
    except UnetlabError as error:  # ConfigError or DataError, re-raised as the same kind
        message = str(error)
        # "rotation must ...", "palette[2] must ...", "mean and std ...", "images='x' is not a directory"
        argument = re.match(r"[a-z_]+(\[\d+\])?( must\b| and\b|=)", message)
        raise type(error)(f"{group}.{message}" if argument else f"{group}: {message}") from None


def one_line(error: BaseException) -> str:
    """First line of an OmegaConf/Hydra error, plus the key it concerns."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    full_key = getattr(error, "full_key", None)
    return f"{full_key}: {first}" if full_key and full_key not in first else first
