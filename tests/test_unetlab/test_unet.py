import numpy as np
import pytest

from unetlab.errors import ConfigError
from unetlab.models import build_unet


@pytest.mark.parametrize("filters, expected", [(32, 7_846_081), (64, 31_377_793)])
def test_default_unet_matches_classic_keras_parameter_count(filters, expected):
    assert build_unet((256, 256, 1), 1, filters=filters).count_params() == expected


def test_paper_unet_maps_572_to_388_with_two_classes():
    model = build_unet((572, 572, 1), 2, filters=64, padding="valid", upsampling="transpose")
    assert model.output_shape == (None, 388, 388, 2)
    assert model.get_layer("up3").__class__.__name__ == "Conv2DTranspose"
    assert model.get_layer("up3_crop").cropping == ((4, 4), (4, 4))


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_output_has_input_size_and_one_channel_per_class(depth, channels):
    size = 2**depth * 3
    num_classes = 1 if channels == 1 else channels
    model = build_unet((size, size, channels), num_classes, depth=depth, filters=2)
    prediction = model.predict(np.zeros((2, size, size, channels), np.float32), verbose=0)
    assert prediction.shape == (2, size, size, num_classes)


def test_dynamic_input_accepts_non_square_multiples_of_2_pow_depth():
    model = build_unet((None, None, 1), 3, depth=2, filters=2, pooling="conv", upsampling="transpose",
                       batch_norm=True, dropout=0.2)
    prediction = model.predict(np.zeros((1, 20, 36, 1), np.float32), verbose=0)
    assert prediction.shape == (1, 20, 36, 3)
    np.testing.assert_allclose(prediction.sum(axis=-1), 1.0, rtol=1e-5)


def test_layers_are_named_by_level():
    names = {layer.name for layer in build_unet((64, 64, 1), depth=2, filters=2, batch_norm=True).layers}
    assert {"enc0_conv1", "enc0_bn1", "down0", "enc1_conv2", "down1", "bottleneck_conv1", "up1", "up1_concat",
            "dec1_conv1", "dec0_conv2", "head"} <= names


def test_head_stays_float32_under_mixed_precision():
    import keras

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_unet((32, 32, 1), depth=2, filters=2)
        assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_build_unet_rejects_size_not_divisible_by_2_pow_depth():
    with pytest.raises(ConfigError, match=r"^image size 100 is not divisible by 2\*\*depth=16; use 96 or 112$"):
        build_unet((100, 100, 1), depth=4)


def test_build_unet_rejects_valid_size_that_does_not_tile():
    with pytest.raises(ConfigError, match=r"570 does not fit.*\[556, 572\]"):
        build_unet((570, 570, 1), padding="valid")


@pytest.mark.parametrize("key, value", [("pooling", "avg"), ("upsampling", "bilinear"), ("padding", "full")])
def test_build_unet_rejects_unknown_choice_and_repeats_it(key, value):
    with pytest.raises(ConfigError, match=f"^{key} must be one of .* Received: {key}='{value}'$"):
        build_unet((32, 32, 1), depth=2, **{key: value})


@pytest.mark.parametrize("arguments, message", [
    (dict(depth=0), r"^depth must be >= 1\. Received: depth=0$"),
    (dict(filters=0), r"^filters must be >= 1\. Received: filters=0$"),
    (dict(num_classes=0), r"^num_classes must be >= 1\. Received: num_classes=0$"),
    (dict(dropout=1.0), r"^dropout must be in \[0, 1\)\. Received: dropout=1\.0$"),
    (dict(padding="valid"), r"^padding='valid' needs a fixed input height and width .*"
                            r"Received: input_shape=\(None, None, 1\)$"),
])
def test_build_unet_rejects_impossible_sizes_naming_the_argument(arguments, message):
    with pytest.raises(ConfigError, match=message):
        build_unet((None, None, 1), **arguments)
