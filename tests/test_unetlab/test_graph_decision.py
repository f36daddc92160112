"""unetlab.graph_decision: the decision layer in TensorFlow ops gives the NumPy decision's masks exactly, on
random maps of odd sizes, for every rule, calibration and threshold; and converts to ONNX with the same."""

import numpy as np
import pytest
import tensorflow as tf

from unetlab.components import Rule
from unetlab.decision import Decision
from unetlab.graph_decision import calibrated, decided


def smooth_map(shape, seed: int, channels: int = 1) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random((*shape, channels)), (2, 2, 0))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    if channels == 1:
        return noise.astype(np.float32)
    return (noise / noise.sum(axis=-1, keepdims=True)).astype(np.float32)


DECISIONS = [
    Decision(),
    Decision(temperature=(2.0,), threshold=0.45),
    Decision(threshold=0.5, rules=(Rule("min_size", 1, 20), Rule("fill_holes", 1))),
    Decision(temperature=(0.7,), threshold=0.55, rules=(Rule("keep_largest", 0), Rule("min_size", 0, 8))),
    Decision(rules=(Rule("keep_largest", 1),)),
]


@pytest.mark.parametrize("decision", DECISIONS, ids=range(len(DECISIONS)))
@pytest.mark.parametrize("shape", [(37, 53), (64, 29)])
def test_the_graph_decides_as_numpy_does(decision, shape):
    probabilities = smooth_map(shape, seed=shape[0])
    expected = decision.classes(decision.calibrated(probabilities))
    found = tf.function(lambda p: decided(calibrated(p, decision.temperature), decision, 1))(
        tf.constant(probabilities)).numpy()
    np.testing.assert_array_equal(found, expected)


def test_softmax_models_take_their_temperature_and_the_argmax_then_rules():
    probabilities = smooth_map((41, 47), seed=1, channels=3)
    decision = Decision(temperature=(1.5,), rules=(Rule("min_size", 2, 15), Rule("fill_holes", 1)))
    found = decided(calibrated(tf.constant(probabilities), decision.temperature), decision, 3).numpy()
    np.testing.assert_array_equal(found, decision.classes(decision.calibrated(probabilities)))


def test_ties_thin_images_and_pockets_of_other_classes_decide_as_numpy_does():
    """keep_largest of two equal components keeps the first in scan order, as scipy numbers them; a 1-pixel
    tall image; a background pocket inside class 2 is not a hole of class 1."""
    twins = np.zeros((9, 12), np.float32)
    twins[1:4, 1:4] = twins[5:8, 7:10] = 1.0  # two 3x3 components of class 1
    thin = (np.arange(17) % 3 == 0).astype(np.float32)[None, :]
    multi = np.zeros((12, 12, 3), np.float32)
    multi[..., 0] = 1.0
    multi[1:6, 1:6] = [0, 1, 0]  # class 1: a square with a background hole
    multi[3, 3] = [1, 0, 0]
    multi[6:11, 6:11] = [0, 0, 1]  # class 2 with a background pocket
    multi[8, 8] = [1, 0, 0]
    cases = [(twins[..., None], Decision(rules=(Rule("keep_largest", 1),)), 1),
             (thin[..., None], Decision(rules=(Rule("fill_holes", 1), Rule("min_size", 1, 2))), 1),
             (multi, Decision(rules=(Rule("fill_holes", 1), Rule("fill_holes", 2))), 3)]
    for probabilities, decision, channels in cases:
        found = decided(tf.constant(probabilities), decision, channels).numpy()
        np.testing.assert_array_equal(found, decision.classes(probabilities))
    filled = cases[2][1].classes(multi)
    assert filled[3, 3] == 1 and filled[8, 8] == 2


def test_the_onnx_conversion_decides_the_same(tmp_path):
    tf2onnx = pytest.importorskip("tf2onnx")
    import onnxruntime

    decision = DECISIONS[3]
    function = tf.function(lambda p: {"mask": decided(calibrated(p, decision.temperature), decision, 1)},
                           input_signature=[tf.TensorSpec([None, None, 1], tf.float32)])
    tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=17,
                                  output_path=str(tmp_path / "d.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "d.onnx"))
    probabilities = smooth_map((45, 61), seed=7)
    (found,) = session.run(None, {session.get_inputs()[0].name: probabilities})
    np.testing.assert_array_equal(found, decision.classes(decision.calibrated(probabilities)))
