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


def test_stage_lists_take_an_int_or_a_height_width_pair_per_stage():
    from unetlab.geometry import stage_pairs

    assert stage_pairs("strides", [1, [2, 1], (2, 2)]) == [(1, 1), (2, 1), (2, 2)]
    for bad in ([], [0], [1, [2, 2, 2]], [1, "2"], 3, [True]):
        with pytest.raises(ConfigError, match="strides must be a list with an int >= 1 or a \\[height, width\\] pair"):
            stage_pairs("strides", bad)
    with pytest.raises(ConfigError, match="kernel_sizes must have one entry per stage \\(2, as many as strides\\)"):
        stage_pairs("kernel_sizes", [3, 3, 3], 2)


@pytest.mark.parametrize("size, axis, ok", [(32, 0, True), (40, 0, False), (40, 1, True), (20, 1, False)])
def test_a_strided_network_takes_multiples_of_the_strides_product_per_axis(size, axis, ok):
    from unetlab.geometry import check_strided_input_size

    strides = [1, [2, 2], [2, 1], [2, 2], [2, 2]]  # height: 16, width: 8
    if ok:
        check_strided_input_size(size, strides, axis)
    else:
        with pytest.raises(ConfigError, match=f"image size {size} is not a multiple of {16 if axis == 0 else 8}"):
            check_strided_input_size(size, strides, axis)


def test_3d_stage_lists_take_an_int_or_a_depth_height_width_triple_per_stage():
    from unetlab.geometry import axis_words, stage_pairs

    assert stage_pairs("strides", [1, [1, 2, 2], (2, 2, 2)], dims=3) == [(1, 1, 1), (1, 2, 2), (2, 2, 2)]
    for bad in ([1, [2, 2]], [[1, 2, 2, 2]], [[1, 0, 2]], [[1, True, 2]]):
        with pytest.raises(ConfigError, match=r"^strides must be a list with an int >= 1 or a \[depth, height, width\] "
                                              r"triple per stage\. Received: strides="):
            stage_pairs("strides", bad, dims=3)
    assert (axis_words(2), axis_words(3)) == ("height and width", "depth, height and width")


@pytest.mark.parametrize("size, axis, ok", [(4, 0, True), (6, 0, False), (48, 1, True), (40, 2, False)])
def test_a_3d_strided_network_takes_multiples_of_the_strides_product_per_axis(size, axis, ok):
    from unetlab.geometry import check_strided_input_size

    strides = [1, [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]  # depth: 4, height and width: 16
    if ok:
        check_strided_input_size(size, strides, axis, dims=3)
    else:
        with pytest.raises(ConfigError, match=f"image size {size} is not a multiple of {4 if axis == 0 else 16}"):
            check_strided_input_size(size, strides, axis, dims=3)
