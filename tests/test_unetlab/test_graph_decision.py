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


def test_softmax_models_take_per_class_temperatures_and_the_argmax_then_rules():
    probabilities = smooth_map((41, 47), seed=1, channels=3)
    decision = Decision(temperature=(1.5, 0.8, 1.2), rules=(Rule("min_size", 2, 15), Rule("fill_holes", 1)))
    found = decided(calibrated(tf.constant(probabilities), decision.temperature), decision, 3).numpy()
    np.testing.assert_array_equal(found, decision.classes(decision.calibrated(probabilities)))


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
