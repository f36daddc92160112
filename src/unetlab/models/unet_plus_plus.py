"""UNet++ of Zhou, Rahman Siddiquee, Tajbakhsh and Liang (2018), "UNet++: A Nested U-Net Architecture
for Medical Image Segmentation", DLMIA, arXiv:1807.10165 (fig. 1a).

Nodes X(i, j), i the down-sampling level and j the node along the skip pathway of that level:
X(i, 0) is the U-Net's contracting path (`unetlab.models.unet.conv_block` after `down_block`); X(i, j)
for j > 0 is a convolution block on the concatenation of every earlier node of its level, X(i, 0..j-1),
and the up-sampled X(i+1, j-1), the dense skip connections. The head is on X(0, depth). Level i has
filters * 2**i channels, as in the U-Net, whose network is UNet++ without the nested nodes (for
depth=1 the two are the same). Options shared with the U-Net: `block` (residual), batch norm, dropout
(after X(depth, 0)), pooling, upsampling; same padding only, since the nested skips would need a crop at
every node, and no attention gates (an option of the U-Net, not of this paper).
Layers are named by node: `x1_0_conv1`, `x0_2_up`, `x0_2_concat`, `head`.
"""

from __future__ import annotations

import keras
from keras import layers

from ..errors import ConfigError
from ..geometry import unet_output_size
from .heads import supervised_model
from .unet import check_options, conv_block, down_block, upsample


def build_unet_plus_plus(input_shape: tuple[int | None, int | None, int] = (None, None, 1), num_classes: int = 1, *,
                         depth: int = 4, filters: int = 32, batch_norm: bool = False, dropout: float = 0.0,
                         pooling: str = "max", upsampling: str = "nearest", padding: str = "same",
                         kernel_initializer: str = "he_normal", block: str = "plain", attention: bool = False,
                         deep_supervision: bool = False, name: str = "unetpp") -> keras.Model:
    """Build a UNet++ (module docstring); arguments as `unetlab.models.build_unet`'s (`deep_supervision`: heads
    on the last node of every lower level, X(i, depth - i))."""
    check_options(num_classes, depth=depth, filters=filters, dropout=dropout, pooling=pooling, upsampling=upsampling,
                  padding=padding, block=block, attention=attention, deep_supervision=deep_supervision)
    if padding != "same":
        raise ConfigError(f"padding must be 'same' for UNet++ (its nested skips are not cropped). "
                          f"Received: padding={padding!r}")
    if attention:
        raise ConfigError("attention gates are an option of the U-Net (model=unet), not of UNet++. "
                          "Received: attention=True")
    for size in input_shape[:2]:
        if size is not None:
            unet_output_size(size, depth, padding)  # divisible by 2**depth
    common = dict(batch_norm=batch_norm, kernel_initializer=kernel_initializer, block=block)
    inputs = keras.Input(shape=input_shape, name="image")
    nodes = {}
    for i in range(depth + 1):  # each new encoder node X(i, 0), then the diagonal of nodes it completes
        x = inputs if i == 0 else down_block(nodes[i - 1, 0], filters * 2 ** (i - 1), f"down{i - 1}", pooling=pooling,
                                             kernel_initializer=kernel_initializer)
        x = conv_block(x, filters * 2**i, f"x{i}_0", **common)
        if i == depth and dropout:
            x = layers.Dropout(dropout, name=f"x{i}_0_dropout")(x)
        nodes[i, 0] = x
        for j in range(1, i + 1):
            level = i - j
            up = upsample(nodes[level + 1, j - 1], filters * 2**level, f"x{level}_{j}_up", upsampling=upsampling,
                          kernel_initializer=kernel_initializer)
            merged = layers.Concatenate(name=f"x{level}_{j}_concat")([*(nodes[level, k] for k in range(j)), up])
            nodes[level, j] = conv_block(merged, filters * 2**level, f"x{level}_{j}", **common)
    stages = [nodes[level, depth - level] for level in range(depth)]
    return supervised_model(inputs, stages, num_classes, deep_supervision, name)
