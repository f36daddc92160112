"""nnU-Net v2's PlainConvUNet: its parameter count worked out from nnU-Net's definition, its blocks, stage
lists (anisotropic too), deep supervision, the input-size rule and a safe-mode reload."""

import math

import keras
import numpy as np
import pytest

from unetlab.errors import ConfigError
from unetlab.losses import build_loss
from unetlab.models import DeepSupervision, build_nnunet, inference_model


def plain_conv_unet_params(channels: int, classes: int, strides, kernels, filters=32, max_filters=512, convs=2,
                           dims=2) -> int:
    """PlainConvUNet's parameter count as dynamic_network_architectures builds it (conv_bias=True, affine
    InstanceNorm, a 1x1 seg layer with bias on every decoder stage), for stage lists of ints or per-axis lists."""
    width = [min(filters * 2**i, max_filters) for i in range(len(strides))]

    def volume(size):  # the voxels of a kernel (or of a transposed convolution's kernel = its stride)
        return size**dims if isinstance(size, int) else math.prod(size)

    def stacked(c_in, c_out, k):  # StackedConvBlocks: conv (+bias) and norm (scale, shift), `convs` times
        return sum(volume(k) * c_i * c_out + c_out + 2 * c_out for c_i in [c_in] + [c_out] * (convs - 1))

    encoder = sum(stacked(channels if i == 0 else width[i - 1], width[i], kernels[i]) for i in range(len(strides)))
    decoder = 0
    for s in range(1, len(strides)):
        below, skip = width[-s], width[-(s + 1)]
        decoder += volume(strides[-s]) * below * skip + skip  # transpconv, kernel = stride
        decoder += stacked(2 * skip, skip, kernels[-(s + 1)])
        decoder += skip * classes + classes  # seg layer
    return encoder + decoder


def seg_layer(width: int, classes: int) -> int:
    return width * classes + classes


@pytest.mark.parametrize("channels, classes, strides, filters, max_filters", [
    (1, 1, [1, 2, 2, 2, 2, 2], 32, 512),          # the model=nnunet defaults
    (1, 2, [1, 2, 2, 2, 2, 2, 2], 32, 512),       # nnU-Net's 2D plan of a 512x512 dataset: 7 stages
    (3, 4, [1, 2, 2, 2], 8, 32),
])
def test_the_count_is_nnunets_plain_conv_unet_less_the_lowest_seg_layer(channels, classes, strides, filters,
                                                                         max_filters):
    kernels = [3] * len(strides)
    model = build_nnunet((None, None, channels), classes, strides=strides, kernel_sizes=kernels, filters=filters,
                         max_filters=max_filters)
    reference = plain_conv_unet_params(channels, classes, strides, kernels, filters, max_filters)
    lowest = min(filters * 2 ** (len(strides) - 2), max_filters)  # the decoder stage just above the bottleneck
    assert model.count_params() == reference - seg_layer(lowest, classes)
    assert abs(model.count_params() - reference) / reference < 0.01  # the tolerance, far inside it
    heads = sum(seg_layer(min(filters * 2**i, max_filters), classes) for i in range(1, len(strides) - 2))
    assert inference_model(model).count_params() == reference - heads - seg_layer(lowest, classes)


def test_anisotropic_strides_and_kernels_shape_each_stage():
    model = build_nnunet((None, None, 1), 2, strides=[1, [2, 1], 2, [1, 2]], kernel_sizes=[[3, 1], 3, 3, [1, 3]],
                         filters=4, max_filters=16, deep_supervision=False)
    assert model.get_layer("enc1_conv1_conv").strides == (2, 1) and model.get_layer("enc3_conv1_conv").strides == (1, 2)
    assert model.get_layer("enc0_conv2_conv").kernel_size == (3, 1)
    assert model.get_layer("dec0_conv1_conv").kernel_size == (3, 1)  # the decoder stage takes its skip stage's kernel
    assert model.get_layer("dec2_up").kernel_size == (1, 2) == model.get_layer("dec2_up").strides
    assert model.predict(np.zeros((1, 8, 12, 1), "float32"), verbose=0).shape == (1, 8, 12, 2)
    with pytest.raises(ConfigError, match="image size 10 is not a multiple of 4 .*nearest valid sizes: 8, 12"):
        build_nnunet((10, 16, 1), strides=[1, [2, 1], 2, [1, 2]], kernel_sizes=[3] * 4)


def test_blocks_are_strided_convolutions_with_instance_norm_and_leaky_relu():
    model = build_nnunet((32, 32, 1), 1, strides=[1, 2, 2], kernel_sizes=[3, 3, 3], filters=4, max_filters=8)
    names = [layer.name for layer in model.layers]
    assert not any("pool" in name for name in names)
    assert model.get_layer("enc0_conv1_conv").strides == (1, 1) and model.get_layer("enc1_conv1_conv").strides == (2, 2)
    assert model.get_layer("enc1_conv2_conv").strides == (1, 1) and model.get_layer("enc1_conv1_conv").use_bias
    assert model.get_layer("enc2_conv1_relu").negative_slope == pytest.approx(0.01)
    # instance normalisation: each sample's each channel to mean 0, variance 1 (then the affine scale and shift)
    norm = model.get_layer("enc1_conv1_norm")
    x = np.random.default_rng(0).normal(3.0, 2.0, (2, 8, 8, 8)).astype("float32")
    x[1] *= 5
    y = keras.ops.convert_to_numpy(norm(x))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=1e-2)
    assert [w.shape for w in norm.weights] == [(8,), (8,)]


def test_deep_supervision_is_on_by_default_and_off_on_request():
    supervised = build_nnunet((64, 64, 1), 3, strides=[1, 2, 2, 2, 2], kernel_sizes=[3] * 5, filters=4, max_filters=16)
    assert isinstance(supervised, DeepSupervision)
    assert [tuple(o.shape)[1:] for o in supervised.outputs] == [(64, 64, 3), (32, 32, 3), (16, 16, 3)]
    plain = build_nnunet((64, 64, 1), 3, strides=[1, 2, 2, 2, 2], kernel_sizes=[3] * 5, filters=4, max_filters=16,
                         deep_supervision=False)
    assert len(plain.outputs) == 1 and plain.count_params() == inference_model(supervised).count_params()


@pytest.mark.parametrize("arguments, message", [
    (dict(strides=[1, 2, 0], kernel_sizes=[3, 3, 3]), "strides must be a list with an int >= 1 or a"),
    (dict(strides=[1, [2, 2, 2]], kernel_sizes=[3, 3]), "strides must be a list"),
    (dict(strides=[1, 2, 2], kernel_sizes=[3, 3]), "kernel_sizes must have one entry per stage \\(3"),
    (dict(strides=[1], kernel_sizes=[3]), "strides must list 2 stages or more"),
    (dict(filters=0), "filters must be >= 1. Received: filters=0"),
])
def test_bad_stage_lists_are_one_line_naming_the_argument(arguments, message):
    with pytest.raises(ConfigError, match=message):
        build_nnunet((32, 32, 1), **arguments)


def test_the_inference_network_reloads_in_safe_mode_and_predicts_the_same(tmp_path):
    model = build_nnunet((None, None, 2), 2, strides=[1, 2, 2], kernel_sizes=[3, 3, 3], filters=4, max_filters=8)
    network = inference_model(model)
    network.save(tmp_path / "nnunet.keras")
    loaded = keras.saving.load_model(tmp_path / "nnunet.keras", safe_mode=True)
    x = np.random.default_rng(1).random((2, 16, 24, 2), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), network.predict(x, verbose=0), atol=1e-5)


# --- 3D ------------------------------------------------------------------------------------------------------

ANISOTROPIC = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]  # depth x4, height and width x16


def test_3d_count_is_nnunets_plain_conv_unet_with_per_axis_strides_and_kernels():
    strides, kernels = ANISOTROPIC[:3], [[1, 3, 3], 3, [3, 1, 3]]
    model = build_nnunet((8, 32, 32, 2), 3, strides=strides, kernel_sizes=kernels, filters=4, max_filters=8)
    reference = plain_conv_unet_params(2, 3, strides, kernels, filters=4, max_filters=8, dims=3)
    assert model.count_params() == reference - seg_layer(8, 3)  # 3 stages: no auxiliary head; the lowest seg layer
    assert model.get_layer("enc0_conv1_conv").__class__.__name__ == "Conv3D"
    assert model.get_layer("enc0_conv1_conv").kernel_size == (1, 3, 3)
    assert model.get_layer("enc1_conv1_conv").strides == (1, 2, 2)
    assert model.get_layer("dec1_up").__class__.__name__ == "Conv3DTranspose"
    assert model.get_layer("dec1_up").kernel_size == (2, 2, 2) == model.get_layer("dec1_up").strides


def test_3d_anisotropic_network_keeps_the_input_size_and_heads_sit_at_each_stages_resolution():
    model = build_nnunet((8, 32, 32, 1), 2, strides=ANISOTROPIC, kernel_sizes=[3] * 5, filters=2, max_filters=320)
    assert isinstance(model, DeepSupervision)
    assert [tuple(o.shape)[1:] for o in model.outputs] == [(8, 32, 32, 2), (8, 16, 16, 2), (4, 8, 8, 2)]
    volumes = np.random.default_rng(0).random((2, 8, 32, 32, 1), np.float32)
    labels = (volumes > 0.5).astype("float32")
    loss = build_loss("ce_dice")
    model.compile(optimizer="adam", loss=loss)
    outputs = model(volumes)
    by_hand = sum(weight * float(loss(sampled, output)) for weight, sampled, output in zip(
        model.supervision_weights, [labels, labels[:, :, ::2, ::2], labels[:, ::2, ::4, ::4]], outputs))
    np.testing.assert_allclose(float(model.compute_loss(y=labels, y_pred=outputs)), by_hand, rtol=1e-5)


@pytest.mark.slow
def test_3d_anisotropic_network_with_deep_supervision_trains():
    model = build_nnunet((8, 32, 32, 1), 2, strides=ANISOTROPIC, kernel_sizes=[3] * 5, filters=2, max_filters=320)
    volumes = np.random.default_rng(0).random((2, 8, 32, 32, 1), np.float32)
    model.compile(optimizer="adam", loss=build_loss("ce_dice"))
    history = model.fit(volumes, (volumes > 0.5).astype("float32"), batch_size=2, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert inference_model(model).predict(volumes, verbose=0).shape == (2, 8, 32, 32, 2)


def test_deep_supervision_with_anisotropic_2d_strides_samples_labels_per_axis():
    model = build_nnunet((16, 16, 1), 1, strides=[1, [2, 1], [1, 2], 2], kernel_sizes=[3] * 4, filters=2, max_filters=8)
    assert [tuple(o.shape)[1:3] for o in model.outputs] == [(16, 16), (8, 16)]
    images = np.random.default_rng(1).random((2, 16, 16, 1), np.float32)
    labels, loss = (images > 0.5).astype("float32"), build_loss("bce_dice")
    model.compile(optimizer="adam", loss=loss)
    outputs = model(images)
    by_hand = 2 / 3 * float(loss(labels, outputs[0])) + 1 / 3 * float(loss(labels[:, ::2], outputs[1]))
    np.testing.assert_allclose(float(model.compute_loss(y=labels, y_pred=outputs)), by_hand, rtol=1e-5)


def test_3d_instance_norm_normalises_each_sample_and_channel_over_the_volume():
    model = build_nnunet((4, 8, 8, 1), 1, strides=[1, 2], kernel_sizes=[3, 3], filters=3, deep_supervision=False)
    x = np.random.default_rng(2).normal(3.0, 2.0, (2, 4, 8, 8, 3)).astype("float32")
    x[1] *= 5
    y = keras.ops.convert_to_numpy(model.get_layer("enc0_conv2_norm")(x))
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(1, 2, 3)), 1.0, atol=1e-2)


@pytest.mark.parametrize("arguments, message", [
    (dict(strides=[1, [2, 2]], kernel_sizes=[3, 3]),
     r"^strides must be a list with an int >= 1 or a \[depth, height, width\] triple per stage\. "
     r"Received: strides=\[1, \[2, 2\]\]$"),
    (dict(strides=[1, [2, 2, 2]], kernel_sizes=[3, [1, 3]]), r"^kernel_sizes must be a list .*\[depth, height"),
    (dict(strides=ANISOTROPIC, kernel_sizes=[3] * 5), r"^image size 6 is not a multiple of 4 .*valid sizes: 4, 8$"),
])
def test_3d_stage_lists_and_sizes_are_checked_per_axis(arguments, message):
    with pytest.raises(ConfigError, match=message):
        build_nnunet((6, 32, 32, 1), **arguments)
