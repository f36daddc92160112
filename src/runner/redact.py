"""Credentials stay out of MLflow, Optuna and the logs.

Two kinds of secret are masked as `***`:

- the password of a URL (`postgresql://user:***@host/db`, `http://user:***@host:5000`),
  wherever it appears in a text: a tracking URI, a study storage, a command-line override,
  an error message;
- the values a config reads from the environment (`${oc.env:NAME}`): Hydra hands the app the
  unresolved config, so `remember_env_secrets(cfg)` notes which keys read one and what they
  resolve to; `masked(tree)` then shows those keys as written (`${oc.env:DB_URL}`: where the
  value comes from, and what a logged config.yaml resolves again when a run is reproduced),
  and `mask_secrets` masks their values (4 characters or longer) in any text.

`install_log_filter()` masks both in every log record of the process.
"""

from __future__ import annotations

import logging
import re
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf

MASK = "***"
_MIN_SECRET = 4  # shorter environment values ("0", "on") are masked by key only, not in free text

# scheme://[user]:PASSWORD@host: the password runs to the last '@' of the word, so one with an
# unescaped '@' or '/' is masked whole (SQLAlchemy's own rendering would show its tail).
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)[^\s'\"]+@")


class _EnvSecrets(NamedTuple):
    written: dict[str, str]  # dotted key -> its unresolved value
    values: tuple[str, ...]  # resolved, longest first, so a value containing another is masked whole


_remembered = _EnvSecrets({}, ())


def mask_secrets(text: str) -> str:
    """`text` with every URL password, and every remembered environment value, replaced by `***`."""
    text = _URL_PASSWORD.sub(lambda match: f"{match['head']}{MASK}@", text)
    for value in _remembered.values:
        text = text.replace(value, MASK)
    return text


def env_interpolations(cfg: DictConfig) -> dict[str, str]:
    """The dotted keys of `cfg` (list items by index) whose unresolved value reads
    `${oc.env:...}`, with that value; Hydra's own `hydra` node is left out."""
    raw = OmegaConf.to_container(cfg, resolve=False)

    def walk(node: Any, prefix: str) -> dict[str, str]:
        if isinstance(node, (dict, list)):
            items = node.items() if isinstance(node, dict) else enumerate(node)
            return {key: value for k, v in items for key, value in walk(v, f"{prefix}{k}.").items()}
        return {prefix[:-1]: node} if isinstance(node, str) and "${oc.env:" in node else {}

    return walk({key: value for key, value in raw.items() if key != "hydra"}, "")


def remember_env_secrets(cfg: DictConfig) -> None:
    """Note the keys of `cfg` that read the environment, and their values, for `masked` and
    `mask_secrets` in this process (replacing what an earlier config noted)."""
    global _remembered
    written = env_interpolations(cfg)
    values = set()
    for key in written:
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except Exception:  # an unset variable without a default: there is no value to leak
            continue
        if isinstance(value, str) and len(value) >= _MIN_SECRET:
            values.add(value)
    _remembered = _EnvSecrets(written, tuple(sorted(values, key=len, reverse=True)))


def masked(tree: Any, at: str = "") -> Any:
    """A copy of plain config data (dicts, lists, scalars) for MLflow: remembered environment
    keys as written (`${oc.env:NAME}`), and strings through `mask_secrets`. `at` is the dotted
    key of `tree` in the whole config (`tracking.tags` for that group's tags)."""
    if at in _remembered.written:
        return mask_secrets(_remembered.written[at])
    prefix = f"{at}." if at else ""
    if isinstance(tree, dict):
        return {key: masked(value, f"{prefix}{key}") for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [masked(value, f"{prefix}{index}") for index, value in enumerate(tree)]
    return mask_secrets(tree) if isinstance(tree, str) else tree


def install_log_filter() -> None:
    """Mask secrets in every log record this process creates from now on (its message, and the
    traceback it carries). Idempotent. A record factory rather than a handler filter: Hydra
    replaces the handlers each time it configures a job's logging."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "masks_secrets", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            record.msg, record.args = mask_secrets(record.getMessage()), ()
            if record.exc_info and not record.exc_text:
                record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
        except Exception:  # a bad format string: logging reports it when the record is emitted
            pass
        return record

    factory.masks_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
