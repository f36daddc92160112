import pytest

from unetlab.errors import ConfigError
from unetlab.geometry import unet_output_size


@pytest.mark.parametrize("size, depth, padding, expected", [(96, 4, "same", 96), (572, 4, "valid", 388),
                                                            (92, 2, "valid", 52)])
def test_unet_output_size(size, depth, padding, expected):
    assert unet_output_size(size, depth, padding) == expected


@pytest.mark.parametrize("size, depth, padding, message", [
    (100, 4, "same", r"^image size 100 is not divisible by 2\*\*depth=16; use 96 or 112$"),
    (96, 0, "same", r"^depth must be >= 1\. Received: depth=0$"),
    (96, 2, "full", r"^padding must be one of same, valid\. Received: padding='full'$"),
    (570, 4, "valid", r"^image size 570 does not fit a valid-padding U-Net of depth 4; nearest sizes that do: "
                      r"\[556, 572\]$"),
])
def test_sizes_that_do_not_fit_name_the_argument_and_suggest_sizes(size, depth, padding, message):
    with pytest.raises(ConfigError, match=message):
        unet_output_size(size, depth, padding)
