"""unetlab.finetune: a frozen encoder keeps its weights and batch-norm statistics while the decoder learns;
unfrozen, it learns under a new optimizer that carries the old one's state on; its learning rate scaled
exactly."""

import keras
import numpy as np
import pytest

from unetlab.finetune import (encoder_frozen, encoder_of, phases, scale_encoder_learning_rate, set_encoder_trainable,
                              transfer_state)
from unetlab.models.encoder_unet import build_encoder_unet
from unetlab.models.unet import build_unet


@pytest.mark.parametrize("first, epochs, frozen, expected", [
    (0, 10, 0, [(0, 10, False)]),
    (0, 10, 3, [(0, 3, True), (3, 10, False)]),
    (2, 10, 3, [(2, 3, True), (3, 10, False)]),  # resumed within the frozen epochs
    (3, 10, 3, [(3, 10, False)]),  # resumed at the unfreeze point
    (5, 10, 3, [(5, 10, False)]),
])
def test_phases_split_the_epochs_at_the_unfreeze_point(first, epochs, frozen, expected):
    assert phases(first, epochs, frozen) == expected


def small_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_encoder_unet((32, 32, 1), 1, encoder="mobilenetv2", decoder_filters=(16, 16, 8, 8, 8))


def batch(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.random((4, 32, 32, 1), dtype=np.float32)
    return images, (images > 0.5).astype("float32")


def values(variables) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def changed(before: list[np.ndarray], after: list[np.ndarray]) -> list[bool]:
    return [not np.array_equal(b, a) for b, a in zip(before, after)]


def test_a_frozen_encoder_keeps_weights_and_statistics_and_unfrozen_goes_on_from_the_optimizer_state():
    model = small_model()
    encoder = encoder_of(model)
    decoder = [v for v in model.weights if not any(v is w for w in encoder.weights)]
    set_encoder_trainable(model, False)
    assert encoder_frozen(model) and not encoder.trainable_weights
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", run_eagerly=True)
    encoder_before, decoder_before = values(encoder.weights), values(decoder)
    model.fit(*batch(), batch_size=4, epochs=2, verbose=0)
    assert not any(changed(encoder_before, values(encoder.weights)))  # moving means and variances included
    assert any(changed(decoder_before, values(decoder)))

    old = model.optimizer
    set_encoder_trainable(model, True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", run_eagerly=True)
    model.optimizer.build(model.trainable_variables)
    copied = transfer_state(old, model.optimizer)
    assert int(model.optimizer.iterations) == 2
    assert copied == len(old.variables)  # the step count, the learning rate and every decoder moment
    moments = {v.path.split("/", 1)[1]: v for v in model.optimizer.variables}
    for variable in old.variables[2:]:
        np.testing.assert_array_equal(values([moments[variable.path.split("/", 1)[1]]])[0], values([variable])[0])
    model.fit(*batch(), batch_size=4, epochs=1, verbose=0)
    moved = dict(zip((w.path for w in encoder.weights), changed(encoder_before, values(encoder.weights))))
    assert all(flag for path, flag in moved.items() if "moving" in path)  # batch norms in training mode again
    assert sum(moved.values()) > len(moved) // 2


def test_the_encoder_steps_at_the_scaled_learning_rate_and_the_decoder_at_the_full_one():
    """Plain SGD moves each weight by lr x gradient: the scaled model's encoder moves by exactly `scale` x what
    the unscaled one's does, from the same weights on the same batch; the decoder by the same."""
    steps = []
    for scale in (1.0, 0.25):
        model = small_model()
        optimizer = scale_encoder_learning_rate(keras.optimizers.SGD(0.1), model, scale)
        model.compile(optimizer=optimizer, loss="binary_crossentropy", run_eagerly=True)
        before = values(model.trainable_weights)
        model.fit(*batch(), batch_size=4, epochs=1, verbose=0, shuffle=False)
        steps.append([a - b for a, b in zip(values(model.trainable_weights), before)])
        paths = [w.path for w in model.trainable_weights]
        in_encoder = {w.path for w in encoder_of(model).weights}
    for path, full, scaled in zip(paths, *steps):
        expected = 0.25 * full if path in in_encoder else full
        np.testing.assert_allclose(scaled, expected, rtol=1e-4, atol=1e-7, err_msg=path)
    assert any(path in in_encoder for path in paths) and not all(path in in_encoder for path in paths)


def test_scaling_a_model_without_an_encoder_is_refused():
    model = build_unet((32, 32, 1), 1, depth=2, filters=4)
    assert encoder_of(model) is None and not encoder_frozen(model)
    assert scale_encoder_learning_rate(optimizer := keras.optimizers.Adam(), model, 1.0) is optimizer
    with pytest.raises(ValueError, match="no encoder"):
        scale_encoder_learning_rate(keras.optimizers.Adam(), model, 0.1)
    with pytest.raises(ValueError, match="no layer named 'encoder'"):
        set_encoder_trainable(model, False)
