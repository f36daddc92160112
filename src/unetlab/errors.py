"""Exceptions for user mistakes (bad config values, broken data).

Their message is a single line that names the config key or file and what was
expected; the command-line runner prints it without a traceback.
"""


class UnetlabError(Exception):
    """A mistake in the user's input, reported as one line."""


class ConfigError(UnetlabError, ValueError):
    """A config value, or a combination of values, that cannot work."""


class DataError(UnetlabError):
    """A dataset that is missing, empty, or inconsistent with the config."""
