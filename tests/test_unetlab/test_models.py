"""Every family of `unetlab.models` trains, saves and reloads the same under TensorFlow and under JAX.

The backend is fixed when Keras is imported (KERAS_BACKEND), so each backend gets its own processes: one
trains every family for 3 epochs on the embedded synthetic data (`unetlab.data.SOURCES["synthetic"]`) and
saves the inference model (`unetlab.models.inference_model`) as .keras with its probabilities on the
validation images; a second, fresh process loads each file in safe mode and predicts the same images.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

# Run as `python -c SCRIPT train|load FOLDER`. `train`: each family of FAMILIES (built the same way in
# every process) trains 3 epochs and writes NAME.keras, NAME.npy (its probabilities on the validation
# images), images.npy and history.json (the per-epoch metrics of each family). `load`: each NAME.keras
# loaded with safe_mode=True predicts images.npy into NAME.loaded.npy.
SCRIPT = textwrap.dedent("""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    import keras
    import numpy as np

    from unetlab.losses import build_loss
    from unetlab.metrics import build_metrics
    from unetlab.models import MODELS, inference_model

    SIZE = 32  # the encoder U-Net needs multiples of 32
    HUB_PRESET = Path(sys.argv[2]) / "hub_preset"
    HUB = importlib.util.find_spec("keras_hub") is not None  # the Makefile installs it (pyproject: extra hub)
    SMALL = dict(filters=4, depth=2)
    FAMILIES = {
        "unet": lambda: MODELS["unet"]((SIZE, SIZE, 1), 1, **SMALL),
        "unet_residual_attention": lambda: MODELS["unet"]((SIZE, SIZE, 1), 1, block="residual", attention=True,
                                                          **SMALL),
        "unetpp": lambda: MODELS["unetpp"]((SIZE, SIZE, 1), 1, **SMALL),
        "encoder_unet": lambda: MODELS["encoder_unet"]((SIZE, SIZE, 1), 1, encoder="mobilenetv2",
                                                       decoder_filters=(8, 8, 8, 8, 8)),
        # a keras-hub backbone (a narrow ResNet saved as a preset by `train`), with the preset's weights
        **({"hub_encoder_unet": lambda: MODELS["encoder_unet"]((SIZE, SIZE, 1), 1, encoder=f"hub:{HUB_PRESET}",
                                                               encoder_weights="preset", decoder_filters=(8, 8, 8, 8, 8))}
           if HUB else {}),
        "nnunet": lambda: MODELS["nnunet"]((SIZE, SIZE, 1), 1, filters=4, max_filters=16, strides=[1, 2, 2, 2],
                                           kernel_sizes=[3, 3, 3, 3]),
        "unet_deep_supervision": lambda: MODELS["unet"]((SIZE, SIZE, 1), 1, filters=4, depth=3,
                                                        deep_supervision=True),
    }
    # Training images per family, 64 unless named: 8 steps an epoch lift every family's Dice off the
    # all-foreground start (32 left the deep-supervised U-Net there); the encoder's 154 layers learn in 4
    # steps and cost seconds an eager step here.
    TRAIN_IMAGES = {"encoder_unet": 32, "hub_encoder_unet": 32}


    def arrays(dataset):
        images, masks = zip(*dataset.as_numpy_iterator())
        return np.stack(images), np.stack(masks)


    def train(folder):
        from unetlab.data import SOURCES  # TensorFlow, for tf.data: `load` runs without it under JAX

        splits = SOURCES["synthetic"](image_size=SIZE, channels=1, num_classes=1, seed=0, num_train=64, num_val=8)
        images, masks = arrays(splits.train)
        val_images, _ = arrays(splits.val)
        np.save(folder / "images.npy", val_images)
        if HUB:
            import keras_hub

            keras_hub.models.ResNetBackbone(input_conv_filters=[64], input_conv_kernel_sizes=[7],
                                            stackwise_num_filters=[64, 16, 16, 32], stackwise_num_blocks=[1, 1, 1, 1],
                                            stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
                                            use_pre_activation=False).save_to_preset(HUB_PRESET)
        histories = {}
        for name, build in FAMILIES.items():
            count = TRAIN_IMAGES.get(name, len(images))
            keras.utils.set_random_seed(0)
            model = build()
            # TensorFlow eager: tracing a tf.function per model costs more than its 2 epochs here (as in
            # tests/helpers.TINY); JAX jitted, its compilations kept in the persistent cache (tests/conftest.py)
            model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=build_loss("dice"), metrics=build_metrics(1),
                          run_eagerly=keras.backend.backend() == "tensorflow")
            history = model.fit(images[:count], masks[:count], batch_size=8, epochs=3, shuffle=False, verbose=0)
            histories[name] = {key: [float(value) for value in values] for key, values in history.history.items()}
            network = inference_model(model)
            network.save(folder / f"{name}.keras")
            np.save(folder / f"{name}.npy", np.asarray(network.predict(val_images, verbose=0)))
        (folder / "history.json").write_text(json.dumps(histories))


    def load(folder):
        images = np.load(folder / "images.npy")
        for name in FAMILIES:
            network = keras.saving.load_model(folder / f"{name}.keras", safe_mode=True)
            np.save(folder / f"{name}.loaded.npy", np.asarray(network.predict(images, verbose=0)))


    {"train": train, "load": load}[sys.argv[1]](Path(sys.argv[2]))
    print("backend", keras.backend.backend())
""")

FAMILIES = ["unet", "unet_residual_attention", "unetpp", "encoder_unet", "nnunet", "unet_deep_supervision",
            *(["hub_encoder_unet"] if importlib.util.find_spec("keras_hub") else [])]  # make install installs it


def run_script(mode: str, folder, backend: str) -> subprocess.CompletedProcess:
    """SCRIPT in a fresh process under KERAS_BACKEND=`backend` (JAX's compilation cache: tests/conftest.py)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": backend}
    result = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(folder)], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, f"{mode} under {backend} failed:\n{result.stderr[-6000:]}"
    assert result.stdout.strip().endswith(f"backend {backend}")
    return result


# Under TensorFlow every family also trains, reloads in safe mode and logs its count in one process
# (tests/test_runner/tasks/test_train.py); the fresh-process TensorFlow check costs minutes on 2 cores.
TENSORFLOW_TOO = pytest.mark.skipif(os.environ.get("UNETLAB_BACKEND_TESTS") != "1",
                                    reason="TensorFlow in fresh processes (minutes): UNETLAB_BACKEND_TESTS=1")


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("tensorflow", marks=TENSORFLOW_TOO), "jax"])
def test_every_family_trains_with_dice_rising_and_reloads_in_safe_mode_predicting_the_same(tmp_path, backend):
    start = time.perf_counter()
    run_script("train", tmp_path, backend)
    trained = time.perf_counter()
    run_script("load", tmp_path, backend)
    print(f"{backend}: train {trained - start:.1f} s, load {time.perf_counter() - trained:.1f} s")

    histories = json.loads((tmp_path / "history.json").read_text())
    assert sorted(histories) == sorted(FAMILIES)
    for name, history in histories.items():
        assert len(history["dice"]) == 3, (name, history)
        assert history["dice"][-1] > history["dice"][0], (name, history)
        print(f"{backend} {name}: dice {history['dice'][0]:.4f} -> {history['dice'][-1]:.4f}")
    for name in FAMILIES:
        saved, loaded = np.load(tmp_path / f"{name}.npy"), np.load(tmp_path / f"{name}.loaded.npy")
        assert saved.shape == loaded.shape == (8, 32, 32, 1), name
        assert np.max(np.abs(saved - loaded)) < 1e-5, name
