"""Sliding-window prediction of cases of any size: Gaussian-weighted windows, mirroring, the training spacing."""

import keras
import numpy as np
import pytest

from unetlab.preprocessing import Preprocessing
from unetlab.volume_inference import gaussian_importance, predict_case, sliding_window


def identity_network(dims: int, channels: int = 1) -> keras.Model:
    """A 1x1(x1) convolution passing channel 0 through: every window predicts its own input."""
    inputs = keras.Input((None,) * dims + (channels,))
    conv = (keras.layers.Conv3D if dims == 3 else keras.layers.Conv2D)(1, 1, use_bias=False)
    model = keras.Model(inputs, conv(inputs))
    model.set_weights([np.eye(channels, 1, dtype=np.float32).reshape((1,) * dims + (channels, 1))])
    return model


def test_the_window_weights_peak_in_the_centre_and_are_never_zero():
    weights = gaussian_importance((8, 16, 16))
    assert weights.shape == (8, 16, 16) and weights.max() == pytest.approx(1.0) and weights.min() > 0
    assert weights[4, 8, 8] > weights[4, 8, 1] > weights[0, 0, 0]
    np.testing.assert_allclose(weights, weights[::-1, ::-1, ::-1])  # symmetric about the centre


@pytest.mark.parametrize("shape, patch, mirror", [((10, 37, 29), (8, 16, 16), False), ((10, 37, 29), (8, 16, 16), True),
                                                  ((5, 9, 40), (8, 16, 16), False), ((45, 33), (16, 16), False)])
def test_windows_blend_back_into_the_case_of_any_size(shape, patch, mirror):
    """An identity network returns the case itself: every voxel covered, the weights normalised, a case
    smaller than the patch padded and cropped back, flips undone."""
    image = np.random.default_rng(0).normal(size=shape + (1,)).astype(np.float32)
    probabilities = sliding_window(identity_network(len(patch)), image, patch, overlap=0.5, batch_size=3, mirror=mirror)
    assert probabilities.shape == shape + (1,)
    np.testing.assert_allclose(probabilities, image, atol=1e-5)


def test_a_case_is_predicted_at_the_training_spacing_and_returned_on_its_own_grid():
    """Normalised (z-score) and resampled to the training spacing, predicted, resampled back: a smooth case
    comes back as its z-score on its own grid."""
    z, y, x = np.meshgrid(np.linspace(0, 1, 6), np.linspace(0, 1, 20), np.linspace(0, 1, 22), indexing="ij")
    image = (100 + 20 * np.sin(2 * x + y + z))[..., None].astype(np.float32)
    preprocessing = Preprocessing(channels=1, num_classes=1, patch_size=[8, 16, 16], target_spacing=[1.0, 1.0, 1.0],
                                  normalization=["zscore"])
    probabilities = predict_case(identity_network(3), image, (2.0, 1.0, 1.0), preprocessing)
    assert probabilities.shape == (6, 20, 22, 1)
    expected = (image - image.mean()) / image.std()
    assert np.abs(probabilities - expected).max() < 0.1
