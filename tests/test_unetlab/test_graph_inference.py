import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from unetlab.errors import ConfigError
from unetlab.geometry import unet_output_size
from unetlab.graph_inference import _reflect, _window_starts, probability_graph, save_onnx, serving_function
from unetlab.inference import predict_image, window_starts
from unetlab.models import build_unet
from unetlab.preprocessing import Preprocessing

TILE = 32  # same-padding tiles (depth 2: a multiple of 4)
VALID_TILE = 60  # valid-padding tiles: 60 in, the centre 20 out, 20 pixels of context on each side
TOLERANCE = 1e-5  # measured: at most 4e-7 (the same arithmetic, summed in another order)


@pytest.fixture(scope="module")
def same_model():
    keras.utils.set_random_seed(0)
    return build_unet((None, None, 1), 2, depth=2, filters=4)


@pytest.fixture(scope="module")
def valid_model():
    keras.utils.set_random_seed(1)
    assert unet_output_size(VALID_TILE, 2, "valid") == 20
    return build_unet((VALID_TILE, VALID_TILE, 1), 2, depth=2, filters=4, padding="valid")


@pytest.fixture(scope="module")
def rgb_model():
    keras.utils.set_random_seed(2)
    return build_unet((None, None, 3), 3, depth=2, filters=4)


def raw_image(height, width, channels=1, dtype="uint8", seed=0):
    """A decoded image as a reader returns it: integers over their type's range, floats around [0, 1]."""
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        return rng.normal(0.5, 0.3, size=(height, width, channels)).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max, size=(height, width, channels), endpoint=True).astype(dtype)


GRAY = Preprocessing(channels=1, num_classes=2, tile_size=TILE)
CASES = {  # name: (model fixture, preprocessing, settings, input dtype, image sizes)
    "same_padding": ("same_model", GRAY, {}, "uint8", [(37, 53), (100, 333), (333, 517), (9, 13)]),
    "uint16_overlap_batch": ("same_model", GRAY, {"overlap": 0.25, "batch_size": 3}, "uint16",
                             [(37, 53), (100, 333)]),
    "flips": ("same_model", GRAY, {"tta": "flips", "batch_size": 8}, "uint8", [(37, 53), (100, 333)]),
    "d4": ("same_model", GRAY, {"tta": "d4", "batch_size": 8}, "uint8", [(37, 53), (1, 1)]),
    "other_tile_size": ("same_model", GRAY, {"tile_size": 48}, "float32", [(100, 333)]),
    "zscore": ("same_model", Preprocessing(channels=1, num_classes=2, normalize="zscore", tile_size=TILE), {},
               "uint16", [(37, 53)]),
    # The paper's overlap-tile setting; 9 x 13 needs the reflection repeated (a 20-pixel margin).
    "valid_padding": ("valid_model", Preprocessing(channels=1, num_classes=2, tile_size=VALID_TILE), {}, "float32",
                      [(37, 53), (100, 333), (9, 13)]),
    "valid_padding_d4": ("valid_model", Preprocessing(channels=1, num_classes=2, tile_size=VALID_TILE),
                         {"tta": "d4", "batch_size": 16}, "uint8", [(37, 53)]),
    "resize": ("same_model", Preprocessing(channels=1, num_classes=2, tile_size=48, resize=48), {}, "uint8",
               [(37, 53), (100, 333), (333, 517)]),
    "resize_in_tiles": ("same_model", Preprocessing(channels=1, num_classes=2, tile_size=64, resize=64),
                        {"tile_size": 32, "tta": "flips"}, "uint16", [(100, 333)]),
    "dataset_rgb": ("rgb_model", Preprocessing(channels=3, num_classes=3, normalize="dataset", mean=[0.2, 0.5, 0.7],
                                               std=[0.1, 0.2, 0.3], tile_size=TILE), {}, "uint8",
                    [(37, 53), (100, 333)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_serving_function_gives_predict_image_probabilities_for_unseen_sizes(case, request):
    fixture, preprocessing, settings, dtype, sizes = CASES[case]
    model = request.getfixturevalue(fixture)
    serve = serving_function(model, preprocessing, input_dtype=dtype, **settings)
    for seed, (height, width) in enumerate(sizes):
        image = raw_image(height, width, preprocessing.channels, dtype, seed)
        expected = predict_image(model, image, preprocessing, **settings)
        got = serve(image)["probabilities"].numpy()
        assert got.shape == expected.shape == (height, width, preprocessing.num_classes)
        assert got.dtype == np.float32
        assert np.abs(got - expected).max() < TOLERANCE, (case, height, width)


def test_probability_graph_takes_a_two_dimensional_image_as_predict_image_does(same_model):
    image = raw_image(37, 53)[..., 0]
    graph = tf.function(probability_graph(same_model, GRAY))
    got = graph(tf.constant(image)).numpy()
    assert np.abs(got - predict_image(same_model, image, GRAY)).max() < TOLERANCE


def test_window_starts_and_mirror_indices_equal_numpy_ones():
    for window, stride in [(20, 10), (32, 16), (32, 24), (7, 1), (16, 16)]:
        for length in range(window, 200):
            got = _window_starts(tf.constant(length), window, stride).numpy().tolist()
            assert got == window_starts(length, window, stride), (length, window, stride)
    for length in [1, 2, 3, 7, 30]:
        for before, after in [(0, 0), (2, 5), (20, 20), (75, 3)]:
            expected = np.pad(np.arange(length), (before, after), mode="reflect")
            got = _reflect(tf.range(length + before + after) - before, tf.constant(length)).numpy()
            assert got.tolist() == expected.tolist(), (length, before, after)


def test_settings_are_checked_when_the_graph_is_built(same_model, valid_model):
    with pytest.raises(ConfigError, match="tta"):
        serving_function(same_model, GRAY, tta="rotations")
    with pytest.raises(ConfigError, match="input_dtype"):
        serving_function(same_model, GRAY, input_dtype="int8")
    with pytest.raises(ConfigError, match="tile_size=32"):  # a fixed-size model: its own size, as predict_image
        probability_graph(valid_model, Preprocessing(channels=1, num_classes=2, tile_size=VALID_TILE), tile_size=32)


def run_python(script: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_saved_model_runs_without_unetlab_and_keras_and_gives_the_same_probabilities(same_model, tmp_path):
    settings = {"tta": "flips", "overlap": 0.25}
    serve = serving_function(same_model, GRAY, **settings)
    module = tf.Module()
    module.model, module.serve = same_model, serve
    tf.saved_model.save(module, str(tmp_path / "exported"), signatures={"serving_default": serve})
    image = raw_image(100, 333, seed=5)
    np.save(tmp_path / "image.npy", image)
    # A fresh interpreter in which unetlab and keras cannot be imported (as where neither is installed;
    # TensorFlow's own optional import of Keras then fails quietly), and which checks that neither was.
    result = run_python(f"""
        import json, sys
        for name in ("unetlab", "keras", "tf_keras"):
            sys.modules[name] = None
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(tmp_path / "exported")!r})
        image = np.load("image.npy")
        np.save("signature.npy", loaded.signatures["serving_default"](image=tf.constant(image))["probabilities"])
        np.save("function.npy", loaded.serve(image)["probabilities"])
        imported = [name for name, module in sys.modules.items()
                    if module is not None and name.split(".")[0] in ("unetlab", "keras", "tf_keras")]
        print(json.dumps(imported))
    """, tmp_path)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    expected = predict_image(same_model, image, GRAY, **settings)
    for name in ("signature", "function"):
        assert np.abs(np.load(tmp_path / f"{name}.npy") - expected).max() < TOLERANCE


def loop_kernels(path) -> tuple[list[str], set[str]]:
    """The names the convolutions inside the ONNX file's Loop read their kernels from (through the HWIO -> OIHW
    Transpose tf2onnx puts before each), and the names of the file's constants."""
    import onnx

    graph = onnx.load(str(path)).graph
    (loop,) = [node for node in graph.node if node.op_type == "Loop"]
    body = next(attribute.g for attribute in loop.attribute if attribute.name == "body")
    producers = {output: node for node in body.node for output in node.output}
    kernels = [producers[node.input[1]].input[0] if node.input[1] in producers else node.input[1]
               for node in body.node if node.op_type == "Conv"]
    return kernels, {initializer.name for initializer in graph.initializer}


@pytest.mark.parametrize("case", ["flips", "resize_valid_d4"])
def test_onnx_file_gives_predict_image_probabilities_in_onnxruntime(case, same_model, valid_model, tmp_path):
    import onnxruntime

    if case == "flips":
        model, preprocessing, dtype = same_model, GRAY, "uint16"
        settings = {"tile_size": 64, "tta": "flips", "batch_size": 8}
    else:  # bilinear resizes to and from 60 x 60 around valid-padding tiles
        model, preprocessing = valid_model, Preprocessing(channels=1, num_classes=2, tile_size=60, resize=60)
        settings, dtype = {"tta": "d4"}, "uint8"
    path = save_onnx(serving_function(model, preprocessing, input_dtype=dtype, **settings), tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    image = raw_image(333, 517, dtype=dtype, seed=7)
    expected = predict_image(model, image, preprocessing, **settings)
    (got,) = session.run(None, {"image": image})
    assert got.shape == expected.shape == (333, 517, 2)
    assert np.abs(got - expected).max() < 1e-4
    # One copy of the network (5 levels of two 3x3 convolutions and the head), whatever the TTA, reading
    # its kernels from constants, so onnxruntime prepares them once, not at every step of the loop.
    kernels, constants = loop_kernels(path)
    assert len(kernels) == 5 * 2 + 1
    assert set(kernels) <= constants, kernels


def test_onnx_probabilities_are_the_same_on_every_run(tmp_path):
    # onnxruntime's ScatterND adds the duplicate indices of one call from several threads at once and
    # loses some of the sums. Scattering a batch of overlapping 256-pixel tiles in one call gave wrong
    # probabilities (up to 0.1 off) in 3 of 5 runs here; a batch's tiles are now summed before the scatter.
    import onnxruntime

    keras.utils.set_random_seed(3)
    model = build_unet((None, None, 1), 2, depth=1, filters=2)
    preprocessing = Preprocessing(channels=1, num_classes=2, tile_size=256)
    path = save_onnx(serving_function(model, preprocessing), tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = raw_image(333, 517, seed=8)
    expected = predict_image(model, image, preprocessing)
    for _ in range(5):
        assert np.abs(session.run(None, {"image": image})[0] - expected).max() < 1e-4


def test_save_onnx_refuses_a_graph_tf2onnx_cannot_convert(tmp_path):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def unconvertible(x):
        return {"y": tf.math.igamma(x, x)}

    with pytest.raises(ConfigError, match="Igamma"):
        save_onnx(unconvertible, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_save_onnx_without_tf2onnx_names_the_install_command(tmp_path):
    result = run_python("""
        import sys
        sys.modules["tf2onnx"] = None  # as if tf2onnx were not installed
        from unetlab.errors import ConfigError
        from unetlab.graph_inference import save_onnx
        try:
            save_onnx(None, "model.onnx")
        except ConfigError as error:
            print(str(error))
        else:
            raise SystemExit("no ConfigError")
    """, tmp_path)
    message = result.stdout.strip()
    assert 'pip install "unetlab[onnx]"' in message
    assert len(message.splitlines()) == 1
    assert not (tmp_path / "model.onnx").exists()

