"""The one table from spatial rank to Keras layer classes."""

import re

import keras
import pytest

from unetlab.errors import ConfigError
from unetlab.models.layers_nd import LAYERS, layers_for, spatial_dims


def test_the_rank_is_read_from_the_input_shape_and_anything_but_2d_or_3d_is_refused():
    assert spatial_dims((None, None, 1)) == 2 and spatial_dims((8, 32, 32, 1)) == 3
    for shape in [(32, 1), (1, 8, 8, 8, 1)]:
        message = (f"input_shape must be (height, width, channels) or (depth, height, width, channels). "
                   f"Received: input_shape={shape}")
        with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
            spatial_dims(shape)


def test_a_tensor_gets_the_layers_of_its_rank():
    image, volume = keras.Input((8, 8, 1)), keras.Input((4, 8, 8, 1))
    assert layers_for(image) is LAYERS[2] and layers_for(volume) is LAYERS[3]
    assert layers_for(volume).conv is keras.layers.Conv3D and layers_for(image).cropping is keras.layers.Cropping2D
    assert layers_for(image).smooth_upsampling(2).interpolation == "bilinear"
    assert layers_for(volume).smooth_upsampling(2)(volume).shape == (None, 8, 16, 16, 1)  # nearest: no trilinear
    for dims, table in LAYERS.items():
        assert table.dims == dims
        assert all(f"{dims}D" in cls.__name__ for cls in (table.conv, table.conv_transpose, table.max_pooling,
                                                          table.upsampling, table.cropping))
