"""Config errors as one line that names the key."""

import pytest

from runner.settings import config_group, one_line, to_config
from unetlab.errors import ConfigError


@pytest.mark.parametrize("library_message, shown", [
    ("rotation must be in [0, 180] degrees. Received: rotation=200",
     "augment.rotation must be in [0, 180] degrees. Received: rotation=200"),
    ("palette[2] must be [r, g, b] with values 0..255. Received: [1, 2]",
     "data.palette[2] must be [r, g, b] with values 0..255. Received: [1, 2]"),
    ("image size 100 is not divisible by 2**depth=16; use 96 or 112",
     "data: image size 100 is not divisible by 2**depth=16; use 96 or 112"),
])
def test_config_group_adds_the_group_to_library_errors(library_message, shown):
    group = "augment" if library_message.startswith("rotation") else "data"
    with pytest.raises(ConfigError) as error:
        with config_group(group):
            raise ConfigError(library_message)
    assert str(error.value) == shown


def test_config_group_leaves_other_errors_alone():
    with pytest.raises(KeyError):
        with config_group("data"):
            raise KeyError("x")


def test_missing_value_names_the_key_and_how_to_set_it(compose, tmp_path):
    with pytest.raises(ConfigError, match=r"^data.masks is required: set it on the command line \(data.masks=...\)"):
        to_config(compose(["data=folder", "data.images=x", f"output_dir={tmp_path}"]))


def test_one_line_keeps_the_first_line_and_the_key():
    class Error(Exception):
        full_key = "model.filters"

    assert one_line(Error("bad value\nmore detail")) == "model.filters: bad value"
