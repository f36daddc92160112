"""From the composed DictConfig to the validated, typed `Config` (once, in `app`), and config
errors as one line that names the key, also for errors the library raises in its own argument names."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import re
from enum import Enum
from typing import Any, Callable, Iterator

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from unetlab.errors import ConfigError, UnetlabError

from .schema import Config


STARTED_AT = "UNETLAB_STARTED_AT"  # the environment variable of when this command started (time.time()): time budgets count from it

def to_config(cfg: DictConfig) -> Config:
    """Check every key, value and cross-field rule; raise ConfigError naming the key."""
    refuse_undeclared_keys(cfg)
    return checked(lambda: OmegaConf.to_object(cfg))


def refuse_undeclared_keys(node: DictConfig, prefix: str = "") -> None:
    """A key no schema declares (`+model.filtres=64`, as Hydra's own hint suggests for a typo)
    is a mistake: OmegaConf would set it on the dataclass and nothing would ever read it."""
    schema = OmegaConf.get_type(node)
    for key in node.keys():
        name = f"{prefix}{key}"
        if declares(schema, str(key)) is False:  # None: a free-form mapping such as tracking.tags
            owner = prefix[:-1] if prefix else "the config"
            raise ConfigError(f"{name} is not a key of {owner}{expected_keys(schema, str(key), prefix)}")
        if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
            continue
        child = node[key]
        if isinstance(child, DictConfig):
            refuse_undeclared_keys(child, f"{name}.")


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
    """First line of an OmegaConf/Hydra error, plus the key it concerns (and, for a key the
    schema lacks, the key meant or the keys there are)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    if first.endswith(":") and len(lines) > 1:  # Hydra's "... raised while composing config:" and the reason
        first = f"{first} {lines[1]}"
    named = re.search(r"^\s*full_key: (\S+)$", str(error), re.MULTILINE)  # a composition error's key, on its own line
    full_key = getattr(error, "full_key", None) or (named.group(1) if named else None)
    line = f"{full_key}: {first}" if full_key and full_key not in first else first
    schema, key = getattr(error, "object_type", None), getattr(error, "key", None)
    unknown_key = isinstance(error, (ConfigAttributeError, ConfigKeyError)) and isinstance(key, str)
    if unknown_key and declares(schema, key) is False:
        prefix = full_key[: -len(key)] if isinstance(full_key, str) and full_key.endswith(key) else ""
        line += expected_keys(schema, key, prefix)
    return line


def declares(schema: Any, key: str) -> bool | None:
    """Whether the dataclass `schema` has the field `key` (None: not a dataclass, any key goes)."""
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        return None
    return key in {field.name for field in dataclasses.fields(schema)}


def expected_keys(schema: type, key: str, prefix: str) -> str:
    """` (did you mean model.filters?)` for a near miss, else ` (keys: ...)`: what the schema takes."""
    names = [field.name for field in dataclasses.fields(schema)]
    close = difflib.get_close_matches(key, names, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else f" (keys: {', '.join(names)})"
