"""The shared steps built from a Config: every option of every group builds a model that trains a
step; the library's errors come back naming the config key."""

import io
import sys

import numpy as np
import pytest

from runner import builders
from unetlab.errors import ConfigError

from helpers import TINY, group_options, write_nnunet_dataset

# Keys each option needs beside its own defaults to form a valid config.
NEEDS = {
    ("loss", "ce"): ["data.num_classes=3"],
    ("loss", "ce_dice"): ["data.num_classes=3"],
    ("loss", "weighted_ce"): ["data.num_classes=3"],
    ("loss", "weighted_ce_dice"): ["data.num_classes=3"],
}


SMALL = {  # each model family at its smallest (the encoder U-Net and nnU-Net's network have no depth)
    ("model", "encoder_unet"): ["model.encoder=mobilenetv2", "model.decoder_filters=[4,4,4,4,4]"],
    ("model", "nnunet"): ["model.filters=2", "model.max_filters=4"],
}


@pytest.mark.parametrize("group, option", group_options())
def test_every_option_of_every_group_composes_and_builds(make_config, group, option, tmp_path):
    small = SMALL.get((group, option), ["model.depth=2", "model.filters=2"])
    overrides = [f"{group}={option}", "data.image_size=32", *small, f"output_dir={tmp_path}",
                 *NEEDS.get((group, option), [])]
    if (group, option) == ("data", "folder"):
        overrides += [f"data.images={tmp_path}", f"data.masks={tmp_path}"]
    if (group, option) == ("data", "isbi2012"):
        overrides += [f"data.root={tmp_path}"]
    if (group, option) == ("data", "nnunet"):  # 3D volumes, on patches of a given size
        overrides = [o for o in overrides if o != "data.image_size=32"] + [
            f"data.root={write_nnunet_dataset(tmp_path, cases=2, shape=(4, 8, 8))}", "data.patch_size=[8,32,32]"]
    config = make_config(overrides)
    builders.augment_settings(config)  # the library accepts the augmentation settings
    model = builders.build_model(config)
    builders.compile_model(model, config, total_steps=10)
    x = np.zeros((1, *config.input_shape()), np.float32)  # 32 x 32 images, or 32^3 volumes
    y = np.zeros(x.shape[:-1] + (1,), np.float32)
    assert np.isfinite(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])


@pytest.mark.parametrize("precision, scaled", [("mixed_float16", True), ("mixed_bfloat16", False),
                                               ("float32", False)])
def test_mixed_precision_computes_in_half_keeps_head_and_loss_in_float32_and_scales_float16_losses(
        make_config, tmp_path, precision, scaled):
    import keras

    config = make_config(TINY + [f"trainer.precision={precision}", f"output_dir={tmp_path}"])
    keras.mixed_precision.set_dtype_policy(precision)  # as task=train does
    try:
        model = builders.build_model(config)
        builders.compile_model(model, config, total_steps=10)
        x = np.random.default_rng(0).uniform(size=(2, 32, 32, 1)).astype(np.float32)
        y = (x > 0.5).astype(np.float32)
        history = model.fit(x, y, epochs=1, verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert model.layers[1].compute_dtype == {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}.get(
        precision, "float32")
    assert model.get_layer("head").compute_dtype == "float32" and model.output.dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == scaled
    assert np.isfinite(history.history["loss"][0])


def test_paper_preset_builds_the_paper_network(make_config, tmp_path):
    config = make_config(["+experiment=unet_paper", f"output_dir={tmp_path}"])
    model = builders.build_model(config)
    assert model.input_shape == (None, 572, 572, 1) and model.output_shape == (None, 388, 388, 2)
    assert builders.label_size(model) == 388


@pytest.mark.parametrize("overrides, build, message", [
    (["augment=paper", "augment.scale=[1.2,0.8]"], builders.augment_settings,
     r"^augment.scale must be \(low, high\) with 0 < low <= high. Received: scale=\(1.2, 0.8\)"),
    (["augment.rotation=200"], builders.augment_settings, r"^augment.rotation must be in \[0, 180\]"),
    (["model.kernel_initializer=nope"], builders.build_model, r"^model: .*nope"),
    (["data=folder", "data.images=/nowhere", "data.masks=/nowhere"], builders.make_splits,
     r"data.images='/nowhere' is not a directory"),
])
def test_library_errors_name_the_config_key(make_config, overrides, build, message, tmp_path):
    config = make_config([*overrides, f"output_dir={tmp_path}"])
    with pytest.raises(Exception) as error:
        build(config)
    assert error.type.__name__ in ("ConfigError", "DataError")
    assert error.match(message)


def test_training_batches_apply_patches_from_the_data_config(make_config, tmp_path):
    from PIL import Image

    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 48), 50 * i, np.uint8)).save(tmp_path / "images" / f"s{i}.png")
        Image.fromarray(np.zeros((40, 48), np.uint8)).save(tmp_path / "masks" / f"s{i}.png")
    config = make_config(["data=folder", f"data.images={tmp_path}/images", f"data.masks={tmp_path}/masks",
                          "data.patch_size=16", "data.val_fraction=0.34", f"output_dir={tmp_path}/out"])
    splits = builders.make_splits(config)
    images, masks = next(iter(builders.make_training_batches(config, splits, 2)))
    assert images.shape == (2, 16, 16, 1) and masks.shape == (2, 16, 16, 1)
    assert splits.preprocessing.tile_size == 16 and splits.preprocessing.resize is None
    assert builders.is_augmented(config)  # random patches: training sees other pairs than the files


def test_validation_batches_that_replicas_cannot_split_evenly_are_a_config_error(make_config, tmp_path):
    """Both backends: `task=train` builds them before it opens a run."""
    config = make_config([*TINY, "data.num_val=3", "trainer.distribution=data_parallel", f"output_dir={tmp_path}"])
    splits = builders.make_splits(config)
    assert len(list(builders.make_validation_batches(config, splits, 8, replicas=3))) == 1
    with pytest.raises(ConfigError, match=r"^trainer.distribution=data_parallel: the validation 3 pairs do not split "
                                          r"evenly over 2 replicas \(batches of 8, the last of 3\); make the number of "
                                          r"validation images \(or tiles\) a multiple of 2$"):
        builders.make_validation_batches(config, splits, 8, replicas=2)


def test_arguments_feed_the_library_by_name(make_config, tmp_path):
    config = make_config(["model.pooling=conv", f"output_dir={tmp_path}"])
    arguments = builders.arguments(config.model)
    assert arguments["pooling"] == "conv" and "name" not in arguments
    assert builders.prediction_settings(config) == {"tile_size": None, "overlap": 0.5, "batch_size": 4,
                                                    "tta": "none"}
    with pytest.raises(ConfigError):
        builders.compile_model(builders.build_model(config), make_config(
            ["optimizer.lr=-1", f"output_dir={tmp_path}"]), total_steps=1)


@pytest.mark.parametrize("verbose, terminal, expected", [("auto", True, 1), ("auto", False, 0), ("0", True, 0),
                                                          ("1", False, 1), ("2", True, 2)])
def test_fit_verbosity_auto_is_the_bar_on_a_terminal_only(make_config, monkeypatch, tmp_path, verbose, terminal,
                                                         expected):
    class Stdout(io.StringIO):
        def isatty(self) -> bool:
            return terminal

    config = make_config([f"trainer.verbose={verbose}", f"output_dir={tmp_path}"])
    monkeypatch.setattr(sys, "stdout", Stdout())
    assert builders.fit_verbosity(config) == expected


def test_training_checks_folder_data_once_per_content_and_check_data_always(make_config, monkeypatch, tmp_path):
    """What every sweep trial and every worker does: the second check of unchanged data is read
    from the cache; task=check_data's report (folder_reports without a cache) decodes again."""
    from helpers import write_pairs
    from unetlab.data import checks

    monkeypatch.setenv("UNETLAB_CACHE_DIR", str(tmp_path / "cache"))
    images, masks = write_pairs(tmp_path, count=3, size=32)
    config = make_config(["data=folder", f"data.images={images}", f"data.masks={masks}", f"output_dir={tmp_path}/out"])
    first = builders.checked_data(config)
    decoded = []
    original = checks._check_pair
    monkeypatch.setattr(checks, "_check_pair", lambda *args: decoded.append(args) or original(*args))
    assert builders.checked_data(config) == first and not decoded
    assert builders.folder_reports(config)[0].ok and len(decoded) == 3


@pytest.mark.parametrize("warps", [[], ["augment.rotation=20", "augment.scale=[0.9,1.1]", "augment.shift=0.1",
                                           "augment.elastic_grid=3", "augment.elastic_sigma=1.0"]])
def test_an_augmented_patch_stream_resumed_at_a_step_augments_as_the_uninterrupted_one(make_config, tmp_path, warps):
    """data=nnunet's patch stream gets `augment` per pair, keyed by its place in the stream: batches from step 2
    of a resumed run equal batches 2, 3 of the uninterrupted one, and differ from the unaugmented stream; with
    the warps too (rotation in the (H, W) planes, scale, shift, elastic: volumes take them)."""
    import tensorflow as tf

    config = make_config([*TINY, "data=synthetic3d", "augment=basic", *warps, f"output_dir={tmp_path}"])
    volumes = tf.reshape(tf.range(6 * 4 * 8 * 8, dtype=tf.float32), (6, 4, 8, 8, 1))

    def stream(first_step):  # batches of 2 volumes: step s holds volumes 2s % 6 and 2s % 6 + 1
        steps = tf.data.Dataset.range(first_step, 10)
        return steps.map(lambda step: (volumes[2 * step % 6:2 * step % 6 + 2], volumes[2 * step % 6:2 * step % 6 + 2]))

    whole = [batch[0].numpy() for batch in builders.augmented_stream(stream(0), 2, 0, config).take(4)]
    resumed = [batch[0].numpy() for batch in builders.augmented_stream(stream(2), 2, 2, config).take(2)]
    np.testing.assert_array_equal(np.stack(resumed), np.stack(whole[2:]))
    plain = [batch[0].numpy() for batch in stream(0).take(4)]
    assert any(not np.array_equal(a, b) for a, b in zip(whole, plain))


def test_a_keras_hub_preset_is_an_encoder_by_config_and_its_line_names_the_preset(make_config, tmp_path):
    """model.encoder=hub:DIR model.encoder_weights=preset builds from the preset and says so."""
    keras_hub = pytest.importorskip("keras_hub")  # the test extra installs it (Makefile)
    keras_hub.models.DenseNetBackbone(stackwise_num_repeats=[1, 1, 1, 1], growth_rate=4).save_to_preset(
        tmp_path / "densenet_tiny")
    config = make_config(["model=encoder_unet", f"model.encoder=hub:{tmp_path / 'densenet_tiny'}",
                          "model.encoder_weights=preset", "model.decoder_filters=[4,4,4,4,4]", "data.image_size=32",
                          f"output_dir={tmp_path}"])
    model = builders.build_model(config)
    assert builders.describe_model(model, config).startswith("U-Net hub:densenet_tiny encoder (preset weights): ")
    assert model.output_shape == (None, 32, 32, 1)
