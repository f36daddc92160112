"""Exceptions for user mistakes (bad config values, broken data).

Their message is a single line. A `ConfigError` about one argument starts with the
argument's name as the function receives it and repeats the value, Keras-style
(`rotation must be in [0, 180] degrees. Received: rotation=200`), so a caller that
maps its own settings onto the arguments can prefix its own names; a `DataError`
names the file or folder. The command-line runner prints them without a traceback.
`Interrupted` is not a mistake: a signal that stops training between steps.
"""

import signal


class UnetlabError(Exception):
    """A mistake in the user's input, reported as one line."""


class ConfigError(UnetlabError, ValueError):
    """A config value, or a combination of values, that cannot work."""


class DataError(UnetlabError):
    """A dataset that is missing, empty, or inconsistent with the config."""


class ClusterError(UnetlabError):
    """Another task of a training cluster (TF_CONFIG) stopped, so this one cannot go on."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM (docker stop, a preemption): a KeyboardInterrupt that knows its signal."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum, frame) -> None:
    """A signal handler that stops the main thread with `Interrupted` (SIGTERM as Python does SIGINT)."""
    raise Interrupted(signum)
