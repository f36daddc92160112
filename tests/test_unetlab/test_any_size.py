"""unetlab.models.any_size: a trained model re-instantiated for any input height and width computes
what the fixed-size one does, on its own size and on others the network takes."""

import keras
import numpy as np
import pytest

from unetlab.geometry import unet_output_size
from unetlab.models import build_unet, with_any_input_size


@pytest.mark.parametrize("padding, size, other", [("same", 32, 48), ("valid", 92, 140)])
def test_the_open_model_computes_the_fixed_ones_outputs_and_takes_other_sizes(padding, size, other):
    fixed = build_unet((size, size, 1), 2, depth=2, filters=4, padding=padding)
    free = with_any_input_size(fixed)
    assert fixed.input_shape == (None, size, size, 1) and free.input_shape == (None, None, None, 1)
    image = np.random.default_rng(0).random((1, size, size, 1), np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(free(image)), keras.ops.convert_to_numpy(fixed(image)))
    out = unet_output_size(other, 2, padding)
    assert tuple(free(np.zeros((1, other, other, 1), np.float32)).shape) == (1, out, out, 2)
    # a valid-padding net's crops do not depend on the input size: the same as one built for `other`
    built = build_unet((other, other, 1), 2, depth=2, filters=4, padding=padding)
    built.set_weights(fixed.get_weights())
    wide = np.random.default_rng(1).random((1, other, other, 1), np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(free(wide)), keras.ops.convert_to_numpy(built(wide)),
                               atol=1e-6)


def test_a_sequential_model_is_opened_and_an_open_model_is_returned_as_it_is():
    sequential = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(1, 3, padding="same")])
    free = with_any_input_size(sequential)
    assert isinstance(free, keras.Sequential) and tuple(free(np.zeros((1, 40, 24, 1))).shape) == (1, 40, 24, 1)
    open_unet = build_unet((None, None, 1), 1, depth=2, filters=4)
    assert with_any_input_size(open_unet) is open_unet
