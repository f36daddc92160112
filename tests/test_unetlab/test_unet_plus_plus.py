"""unetlab.models.unet_plus_plus: UNet++'s nested nodes, counted by hand, and its one-line refusals."""

import keras
import numpy as np
import pytest

from unetlab.errors import ConfigError
from unetlab.models import build_unet, build_unet_plus_plus, describe


def test_depth_one_is_the_unet_and_depth_two_adds_the_nested_node_worked_out_by_hand():
    """filters=4, 1 channel, 1 class; a block of two 3x3 convs C_in -> C costs 9 C_in C + C + 9 C C + C.
    Depth 2: X(0,0) 1->4: 188; X(1,0) 4->8: 880; X(2,0) 8->16: 3488; X(0,1) 4+8->4: 584; X(1,1) 8+16->8:
    2320; X(0,2) 4+4+8->4: 728; head 4+1: 5. The U-Net has no X(0,1) and its last block is 4+8->4 (584)."""
    assert build_unet_plus_plus((32, 32, 1), depth=1, filters=4).count_params() == \
        build_unet((32, 32, 1), depth=1, filters=4).count_params() == 188 + 880 + 584 + 5
    assert build_unet_plus_plus((32, 32, 1), depth=2, filters=4).count_params() == 8193
    assert build_unet((32, 32, 1), depth=2, filters=4).count_params() == 8193 - 728


def test_each_node_concatenates_every_earlier_node_of_its_level_and_the_one_below():
    model = build_unet_plus_plus((32, 32, 3), 3, depth=3, filters=2, upsampling="transpose", block="residual",
                                 batch_norm=True, dropout=0.5)
    (concat,) = [layer for layer in model.get_config()["layers"] if layer["name"] == "x0_3_concat"]
    inbound = [tensor["config"]["keras_history"][0] for tensor in concat["inbound_nodes"][0]["args"][0]]
    assert inbound == ["x0_0_relu2", "x0_1_relu2", "x0_2_relu2", "x0_3_up"]
    assert model.output_shape == (None, 32, 32, 3) and model.name == "unetpp"
    assert describe(model, 3, 2, "residual").startswith("Residual U-Net++ depth=3 filters=2: ")


def test_it_saves_and_reloads_in_safe_mode_and_takes_any_multiple_of_2_pow_depth(tmp_path):
    model = build_unet_plus_plus((None, None, 1), 2, depth=2, filters=4)
    image = np.random.default_rng(0).random((1, 24, 40, 1)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(image)), np.asarray(model(image)), atol=1e-6)


@pytest.mark.parametrize("arguments, message", [
    (dict(padding="valid"), r"^padding must be 'same' for UNet\+\+ .*Received: padding='valid'$"),
    (dict(attention=True), r"^attention gates are an option of the U-Net \(model=unet\), not of UNet\+\+"),
    (dict(input_shape=(34, 34, 1)), r"34 is not divisible by 2\*\*depth=4"),
    (dict(block="dense"), r"^block must be one of"),
])
def test_options_it_cannot_take_are_one_line(arguments, message):
    with pytest.raises(ConfigError, match=message):
        build_unet_plus_plus(**{"depth": 2, "filters": 4, **arguments})
