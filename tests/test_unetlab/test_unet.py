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


@pytest.mark.parametrize("key, value", [("pooling", "avg"), ("upsampling", "bilinear"), ("padding", "full"),
                                        ("block", "dense")])
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


# depth=2, filters=4, 1 channel in, 1 class: each residual block's 1x1 shortcut (weights + bias) where its
# channels change: enc0 1->4 (8), enc1 4->8 (40), bottleneck 8->16 (144), dec1 24->8 (200), dec0 12->4 (52);
# each attention gate, F_int = skip channels / 2: theta 2x2 without bias, phi 1x1 and psi 1x1 with bias:
# level 1 (skip 8, gate 16, F_int 4) 128 + 68 + 5, level 0 (skip 4, gate 8, F_int 2) 32 + 18 + 3.
@pytest.mark.parametrize("block, attention, extra", [("residual", False, 444), ("plain", True, 254),
                                                     ("residual", True, 698)])
def test_residual_blocks_and_attention_gates_add_the_parameters_worked_out_by_hand(block, attention, extra):
    plain = build_unet((32, 32, 1), 1, depth=2, filters=4).count_params()
    assert build_unet((32, 32, 1), 1, depth=2, filters=4, block=block, attention=attention).count_params() == plain + extra


def test_a_residual_block_adds_its_shortcut_and_a_gate_scales_its_skip_by_coefficients_in_0_1():
    import keras

    model = build_unet((32, 32, 1), 1, depth=2, filters=4, block="residual", attention=True)
    names = ["enc1_conv2", "enc1_shortcut", "enc1_add", "enc0_relu2", "up0_gate_alpha", "up0_gate"]
    probe = keras.Model(model.input, [model.get_layer(name).output for name in names])
    conv, shortcut, added, skip, alpha, gated = (np.asarray(t) for t in probe(np.random.default_rng(0).random(
        (2, 32, 32, 1)).astype(np.float32)))
    np.testing.assert_allclose(added, conv + shortcut, rtol=1e-5, atol=1e-6)
    assert alpha.shape == (2, 32, 32, 1) and 0.0 <= alpha.min() and alpha.max() <= 1.0
    np.testing.assert_allclose(gated, skip * alpha, rtol=1e-5, atol=1e-6)


def test_residual_attention_unet_keeps_the_papers_valid_geometry_and_reloads_in_safe_mode(tmp_path):
    import keras

    model = build_unet((572, 572, 1), 2, filters=2, padding="valid", upsampling="transpose", block="residual",
                       attention=True)
    assert model.output_shape == (None, 388, 388, 2)
    small = build_unet((None, None, 1), 1, depth=2, filters=4, block="residual", attention=True, batch_norm=True)
    image = np.random.default_rng(1).random((1, 48, 64, 1)).astype(np.float32)
    small.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(image)), np.asarray(small(image)), atol=1e-6)


# --- 3D: the same builder on (D, H, W, C) inputs --------------------------------------------------------------

def conv_params(c_in: int, c_out: int, kernel_volume: int = 27) -> int:
    """A convolution's weights and bias: 3x3x3 by default."""
    return kernel_volume * c_in * c_out + c_out


def test_3d_unet_has_the_parameter_count_worked_out_from_its_layer_shapes():
    model = build_unet((16, 16, 16, 1), 1, depth=2, filters=4)
    block = lambda c_in, c_out: conv_params(c_in, c_out) + conv_params(c_out, c_out)  # noqa: E731
    encoder = block(1, 4) + block(4, 8) + block(8, 16)  # enc0, enc1, bottleneck (pooling has no weights)
    decoder = block(16 + 8, 8) + block(8 + 4, 4)  # dec1, dec0 on [skip, nearest-upsampled] concatenations
    assert model.count_params() == encoder + decoder + conv_params(4, 1, kernel_volume=1) == 22_225
    assert model.get_layer("enc0_conv1").__class__.__name__ == "Conv3D"
    assert model.get_layer("down0").__class__.__name__ == "MaxPooling3D"
    assert model.get_layer("up1").__class__.__name__ == "UpSampling3D"


def test_3d_unet_trains_a_few_steps_on_random_volumes():
    rng = np.random.default_rng(0)
    volumes = rng.random((4, 16, 16, 16, 1), np.float32)
    model = build_unet((16, 16, 16, 1), 1, depth=2, filters=4)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(volumes, (volumes > 0.5).astype("float32"), batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert model.predict(volumes[:3], verbose=0).shape == (3, 16, 16, 16, 1)


@pytest.mark.parametrize("options", [
    dict(block="residual", attention=True, batch_norm=True),
    dict(pooling="conv", upsampling="transpose", dropout=0.2, deep_supervision=True, depth=3),
    dict(padding="valid", upsampling="transpose", block="residual", attention=True),
])
def test_3d_unet_has_the_layers_of_the_2d_one_with_every_option(options):
    size = 44 if options.get("padding") == "valid" else 16  # 44 -> 28 with valid padding at depth 1
    arguments = {"depth": 1 if size == 44 else 2, "filters": 2, **options}
    image, volume = build_unet((size, size, 1), 2, **arguments), build_unet((size, size, size, 1), 2, **arguments)
    assert [layer.name for layer in volume.layers] == [layer.name for layer in image.layers]
    image_sizes = [tuple(output.shape)[1:] for output in image.outputs]  # (H, W, K) per head
    assert [tuple(output.shape)[1:] for output in volume.outputs] == [(shape[0], *shape) for shape in image_sizes]
    assert not any("2D" in layer.__class__.__name__ for layer in volume.layers)


# The 3D twins of the 2D hand count above: the 1x1x1 shortcuts add what the 1x1 ones do (444); each gate's
# 2x2x2 theta has twice the weights of a 2x2 one: 254 + 128 + 32 = 414.
@pytest.mark.parametrize("block, attention, extra", [("residual", False, 444), ("plain", True, 414)])
def test_3d_residual_blocks_and_attention_gates_add_the_parameters_worked_out_by_hand(block, attention, extra):
    import keras

    plain = build_unet((16, 16, 16, 1), 1, depth=2, filters=4).count_params()
    gated = build_unet((16, 16, 16, 1), 1, depth=2, filters=4, block=block, attention=attention)
    assert gated.count_params() == plain + extra
    if attention:  # coefficients upsampled by nearest neighbour: constant over each 2x2x2 block, in [0, 1]
        probe = keras.Model(gated.input, gated.get_layer("up0_gate_alpha").output)
        alpha = np.asarray(probe(np.random.default_rng(2).random((1, 16, 16, 16, 1)).astype(np.float32)))
        assert 0.0 <= alpha.min() and alpha.max() <= 1.0
        coarse = alpha[:, ::2, ::2, ::2]
        np.testing.assert_array_equal(alpha, coarse.repeat(2, 1).repeat(2, 2).repeat(2, 3))


def test_3d_unet_says_so_and_checks_every_axis():
    from unetlab.models import describe

    model = build_unet((16, 16, 16, 1), 1, depth=2, filters=4, block="residual")
    assert describe(model, 2, 4, "residual").startswith("Residual 3D U-Net depth=2 filters=4: ")
    with pytest.raises(ConfigError, match=r"^image size 18 is not divisible by 2\*\*depth=4; use 16 or 20$"):
        build_unet((18, 16, 16, 1), depth=2)
    with pytest.raises(ConfigError, match=r"^padding='valid' needs a fixed input depth, height and width "):
        build_unet((None, 44, 44, 1), depth=1, padding="valid")
    with pytest.raises(ConfigError, match=r"^input_shape must be \(height, width, channels\) or"):
        build_unet((16, 1))
