"""The model group's schemas: one dataclass per option of `conf/model/`, each saying what the config
asks of its family (`check_input_size`, `run_name`); the other groups: `runner.schema.groups`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional

from omegaconf import MISSING

from unetlab.errors import ConfigError
from unetlab.geometry import (ENCODER_STRIDES, check_encoder_input_size, check_strided_input_size, stage_pairs,
                              unet_output_size)

from .groups import Block, Padding, Pooling, Upsampling, require


@dataclass
class ModelConfig:  # every model option: its name, and what the config asks of a family (its subclass)
    name: str = MISSING
    dims: Optional[int] = None  # 2 (images) or 3 (volumes); null: the data's
    VOLUMES = False  # whether the family builds 3D networks

    def check_input_size(self, shape: tuple[int, ...]) -> None:
        """A one-line ConfigError unless the network takes inputs of the spatial `shape` (one size per axis)."""
        raise NotImplementedError

    def size_multiple(self, dims: int) -> tuple[int, ...]:
        """Per spatial axis, the step between the input sizes the network takes (a planned patch's multiple)."""
        raise NotImplementedError

    def run_name(self) -> str:
        """What the network is, for a training run's name ('unet-d4-f32')."""
        raise NotImplementedError

    def frozen_encoder_epochs(self) -> int:
        """The first epochs that train with a frozen pretrained encoder (0: none, or no encoder)."""
        return 0


@dataclass
class UNetConfig(ModelConfig):  # model=unet (unetlab.models.unet), the base of model=unetpp
    VOLUMES = True
    depth: int = MISSING
    filters: int = MISSING
    batch_norm: bool = MISSING
    dropout: float = MISSING
    pooling: Pooling = MISSING
    upsampling: Upsampling = MISSING
    padding: Padding = MISSING
    kernel_initializer: str = MISSING
    block: Block = MISSING
    attention: bool = MISSING
    deep_supervision: bool = MISSING

    def __post_init__(self) -> None:
        require(self.depth >= 1, "model.depth", self.depth, ">= 1")
        require(self.filters >= 1, "model.filters", self.filters, ">= 1")
        require(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "in [0, 1)")
        require(not self.deep_supervision or self.padding is Padding.same, "model.deep_supervision",
                self.deep_supervision, "false with model.padding=valid (a cropped decoder level is no whole "
                "fraction of the labels)")

    def check_input_size(self, shape: tuple[int, ...]) -> None:
        for size in dict.fromkeys(shape):
            try:
                unet_output_size(size, self.depth, self.padding.value)
            except ConfigError as error:
                raise ConfigError(f"{error} (model.depth={self.depth}, model.padding={self.padding.value})") from None

    def size_multiple(self, dims: int) -> tuple[int, ...]:
        return (2**self.depth,) * dims

    def run_name(self) -> str:
        return f"{self.name}-d{self.depth}-f{self.filters}"


@dataclass
class UNetPlusPlusConfig(UNetConfig):  # model=unetpp: the U-Net's keys; same padding, no attention gates
    VOLUMES = False
    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.padding is Padding.same, "model.padding", self.padding.value, "same for model=unetpp")
        require(not self.attention, "model.attention", self.attention, "false for model=unetpp (a model=unet option)")



@dataclass
class EncoderUNetConfig(ModelConfig):  # model=encoder_unet (unetlab.models.encoder_unet)
    encoder: str = MISSING
    encoder_weights: str = MISSING
    decoder_filters: List[int] = MISSING
    deep_supervision: bool = MISSING
    freeze_encoder_epochs: int = MISSING  # a training setting (unetlab.finetune), not the builder's

    def __post_init__(self) -> None:  # the encoder and the weights file are checked when the model is built
        require(self.freeze_encoder_epochs >= 0, "model.freeze_encoder_epochs", self.freeze_encoder_epochs, ">= 0")
        stages = len(ENCODER_STRIDES)
        require(len(self.decoder_filters) == stages and min(self.decoder_filters) >= 1, "model.decoder_filters",
                list(self.decoder_filters), f"{stages} channel counts >= 1, one per decoder stage")

    def check_input_size(self, shape: tuple[int, ...]) -> None:
        for size in dict.fromkeys(shape):
            check_encoder_input_size(size)

    def size_multiple(self, dims: int) -> tuple[int, ...]:
        return (ENCODER_STRIDES[-1],) * dims

    def run_name(self) -> str:
        from unetlab.models.hub_encoder import display_name

        return f"{self.name}-{display_name(self.encoder)}"

    def frozen_encoder_epochs(self) -> int:
        return self.freeze_encoder_epochs


@dataclass
class NNUNetConfig(ModelConfig):  # model=nnunet (unetlab.models.nnunet): nnU-Net v2's PlainConvUNet
    VOLUMES = True
    strides: List[Any] = MISSING  # per stage: an int or a [height, width] pair
    kernel_sizes: List[Any] = MISSING
    filters: int = MISSING
    max_filters: int = MISSING
    convolutions_per_stage: int = MISSING
    deep_supervision: bool = MISSING

    def __post_init__(self) -> None:
        self._check_stages(self.dims or _listed_dims(self.strides, self.kernel_sizes))
        require(len(self.strides) >= 2, "model.strides", list(self.strides), "2 stages or more")
        require(self.filters >= 1, "model.filters", self.filters, ">= 1")
        require(self.max_filters >= self.filters, "model.max_filters", self.max_filters, ">= model.filters")
        require(self.convolutions_per_stage >= 1, "model.convolutions_per_stage", self.convolutions_per_stage, ">= 1")

    def _check_stages(self, dims: int) -> None:
        for key, stages in (("strides", None), ("kernel_sizes", len(self.strides))):
            try:
                stage_pairs(key, getattr(self, key), stages, dims)
            except ConfigError as error:
                raise ConfigError(f"model.{error}") from None

    def check_input_size(self, shape: tuple[int, ...]) -> None:
        self._check_stages(len(shape))
        for axis, size in enumerate(shape):
            try:
                check_strided_input_size(size, self.strides, axis, len(shape))
            except ConfigError as error:
                raise ConfigError(f"{error} (model.strides)") from None

    def size_multiple(self, dims: int) -> tuple[int, ...]:
        stages = stage_pairs("strides", self.strides, dims=dims)
        return tuple(math.prod(stage[axis] for stage in stages) for axis in range(dims))

    def run_name(self) -> str:
        return f"{self.name}-s{len(self.strides)}-f{self.filters}"


def _listed_dims(*stage_lists) -> int:
    """The rank that per-axis stage entries spell out (a [depth, height, width] triple: 3), else 2."""
    lengths = {len(entry) for values in stage_lists for entry in values if not isinstance(entry, int)}
    return 3 if lengths == {3} else 2
