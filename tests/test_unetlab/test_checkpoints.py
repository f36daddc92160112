"""Checkpoints and the training state, driven epoch by epoch on a tiny real Keras model."""

import json
import re

import keras
import numpy as np
import pytest

from unetlab.checkpoints import (BackgroundWriter, Checkpoints, TrainingState, latest_state, save_atomically,
                                 temporary_name)

X = np.random.default_rng(0).random((4, 4, 4, 1)).astype("float32")
Y = (X > 0.5).astype("float32")


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3, padding="same", activation="relu"),
                              keras.layers.Dropout(0.3), keras.layers.Conv2D(1, 1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    return model


def started(checkpoints, model, others=()):
    checkpoints.set_model(model)
    checkpoints.watch([*others, checkpoints])
    for callback in others:
        callback.set_model(model)
        callback.on_train_begin()
    checkpoints.on_train_begin()
    checkpoints.params = {"epochs": 10}
    return checkpoints


def test_best_is_written_when_the_monitor_improves_and_the_state_alternates_slots(tmp_path):
    written = []
    checkpoints = started(Checkpoints(tmp_path, "val_dice", "max", on_written=written.extend), tiny_model())
    checkpoints.on_epoch_end(0, {"val_dice": 0.5})
    checkpoints.on_epoch_end(1, {"val_dice": 0.4})  # worse: best.keras not written again
    checkpoints.on_epoch_end(2, {"val_dice": 0.7})
    checkpoints.close()
    names = [path.name for path in written]
    assert names == ["best.keras", "state-a.npz", "state-b.npz", "best.keras", "state-a.npz"]
    assert (checkpoints.best, checkpoints.best_epoch) == (0.7, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras", "state-a.npz", "state-b.npz"]  # no partials
    assert latest_state(checkpoints.state_paths).epoch == 2


def test_state_is_written_every_n_epochs_and_the_unwritten_latest_on_close(tmp_path):
    written = []
    checkpoints = started(Checkpoints(tmp_path, "loss", "min", every=3, on_written=written.extend), tiny_model())
    for epoch in range(4):
        checkpoints.on_epoch_end(epoch, {"loss": 1.0 - epoch / 10})
    checkpoints.writer.wait()
    assert [p.name for p in written if p.suffix == ".npz"] == ["state-a.npz"]  # after epoch 3 (index 2)
    checkpoints.close()  # an interruption after epoch 4: its state is kept
    assert latest_state(checkpoints.state_paths).epoch == 3


def test_best_model_loads_without_a_compile_config(tmp_path):
    model = tiny_model()
    model.fit(X, Y, epochs=1, verbose=0)
    checkpoints = started(Checkpoints(tmp_path, "val_dice", "max"), model)
    checkpoints.on_epoch_end(0, {"val_dice": 0.5})
    checkpoints.close()
    best = keras.saving.load_model(checkpoints.best_path)
    assert getattr(best, "optimizer", None) is None
    np.testing.assert_allclose(best.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-6)


def test_a_restored_state_continues_training_exactly_as_an_uninterrupted_model(tmp_path):
    """Weights, Adam moments and step, and the dropout seed state all come back."""
    reference = tiny_model()
    reference.fit(X, Y, epochs=4, batch_size=2, shuffle=False, verbose=0)

    first = tiny_model()
    checkpoints = started(Checkpoints(tmp_path, "loss", "min"), first)
    first.fit(X, Y, epochs=2, batch_size=2, shuffle=False, verbose=0, callbacks=[checkpoints])
    state = latest_state(checkpoints.state_paths)
    assert state.epoch == 1

    second = tiny_model(seed=1)  # other initial weights and seed: everything must come from the state
    resumed = Checkpoints(tmp_path / "resumed", "loss", "min")
    resumed.resume_from(second, state)
    second.fit(X, Y, epochs=4, initial_epoch=2, batch_size=2, shuffle=False, verbose=0, callbacks=[resumed])
    for ours, theirs in zip(second.weights + second.optimizer.variables,
                            reference.weights + reference.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))
    assert resumed.best == checkpoints.best or resumed.best < checkpoints.best


def test_counters_of_early_stopping_and_plateau_come_back_after_they_reset_themselves(tmp_path):
    early = keras.callbacks.EarlyStopping("loss", patience=5)
    checkpoints = started(Checkpoints(tmp_path, "loss", "min"), tiny_model(), [early])
    early.wait, early.best = 3, 0.25
    checkpoints.on_epoch_end(4, {"loss": 0.3})
    checkpoints.close()
    state = latest_state(checkpoints.state_paths)

    later = keras.callbacks.EarlyStopping("loss", patience=5)
    resumed = Checkpoints(tmp_path / "again", "loss", "min")
    model = tiny_model()
    resumed.resume_from(model, state)
    started(resumed, model, [later])  # EarlyStopping.on_train_begin resets wait and best first
    assert (later.wait, later.best) == (3, 0.25)
    assert (resumed.best, resumed.best_epoch) == (0.3, 4)


def test_a_second_fit_of_the_same_training_goes_on_from_the_counters_of_the_first(tmp_path):
    """A training in phases (a frozen encoder, then all) is two `fit`s: early stopping's patience and the best
    value carry over instead of starting again."""
    early = keras.callbacks.EarlyStopping("loss", patience=5)
    checkpoints = started(Checkpoints(tmp_path, "loss", "min"), tiny_model(), [early])
    early.wait, early.best = 2, 0.25
    checkpoints.on_epoch_end(1, {"loss": 0.3})
    checkpoints.on_train_end()
    early.on_train_begin()  # the second fit: Keras resets it
    checkpoints.on_train_begin()
    assert (early.wait, early.best) == (2, 0.25) and (checkpoints.best, checkpoints.best_epoch) == (0.3, 1)
    checkpoints.close()


def test_a_cut_short_state_file_is_skipped_for_the_other_slot(tmp_path, caplog):
    checkpoints = started(Checkpoints(tmp_path, "loss", "min"), tiny_model())
    checkpoints.on_epoch_end(0, {"loss": 0.5})
    checkpoints.on_epoch_end(1, {"loss": 0.4})
    checkpoints.close()
    newer = tmp_path / "state-b.npz"
    newer.write_bytes(newer.read_bytes()[:100])  # killed while copying
    assert latest_state(checkpoints.state_paths).epoch == 0
    assert "state-b.npz is not a readable training state" in caplog.text


def test_a_state_of_another_model_is_refused(tmp_path):
    checkpoints = started(Checkpoints(tmp_path, "loss", "min"), tiny_model())
    checkpoints.on_epoch_end(0, {"loss": 0.5})
    checkpoints.close()
    other = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 1)])
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="does not match this model"):
        TrainingState.load(checkpoints.state_paths[0]).restore(other)


def test_a_failed_save_leaves_the_previous_file_and_no_partial_file(tmp_path):
    path = tmp_path / "best.keras"
    path.write_text("previous")

    class Broken:
        def save(self, target):
            open(target, "w").write("half")
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_atomically(Broken(), path)
    assert path.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["best.keras"]


def test_temporary_names_are_unique_per_call_and_keep_the_suffix(tmp_path):
    names = {temporary_name(tmp_path / "best.keras") for _ in range(100)}
    assert len(names) == 100 and all(n.suffix == ".keras" and n.name.startswith(".best.") for n in names)


def test_a_failed_background_write_is_raised_in_the_training_thread():
    writer = BackgroundWriter()
    writer.submit(lambda: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        writer.wait()


def two_named_layers(first: str, second: str):
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 1, name=first),
                              keras.layers.Conv2D(2, 1, name=second)])
    model.compile(optimizer="adam", loss="mse")
    return model


def saved_state(tmp_path, model):
    checkpoints = started(Checkpoints(tmp_path, "loss", "min"), model)
    checkpoints.on_epoch_end(0, {"loss": 0.5})
    checkpoints.close()
    return checkpoints.state_paths[0]


def test_a_state_whose_variable_paths_differ_is_refused_naming_the_first_one(tmp_path):
    """The same shapes in the same order, but other variables: it used to load them silently."""
    state = TrainingState.load(saved_state(tmp_path, two_named_layers("left", "right")))
    other = two_named_layers("right", "left")
    with pytest.raises(ValueError) as error:
        state.restore(other)
    assert re.fullmatch(r"the saved training state does not match this model and optimizer: sequential\w*/left/kernel "
                        r"in the state is sequential\w*/right/kernel here \(14 saved variables, 14 here\)",
                        str(error.value))
    extra = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 1, name="left"),
                              keras.layers.Conv2D(2, 1, name="right"), keras.layers.Conv2D(2, 1, name="more")])
    extra.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match=r": adam\w*/iteration in the state is sequential\w*/more/kernel here "
                                         r"\(14 saved variables, 20 here\)$"):  # the model's variables come first
        state.restore(extra)


def test_paths_made_unique_by_keras_in_one_process_still_match(tmp_path):
    """Keras numbers auto-named layers, optimizers and seed generators per process (`adam_3`)."""
    first, second = tiny_model(), tiny_model()
    assert [v.path for v in second.variables] != [v.path for v in first.variables]
    TrainingState.load(saved_state(tmp_path, first)).restore(second)


def test_a_state_saved_before_paths_were_compared_is_matched_by_order_and_shape(tmp_path):
    model = tiny_model()
    model.fit(X, Y, epochs=1, verbose=0)
    new = TrainingState.load(saved_state(tmp_path, model))
    assert new.schedule_steps is None and new.names[0] == model.variables[0].path
    for info, name in [({"epoch": 0, "names": new.names, "counters": {}}, "format-1.npz"),  # no count, no schedule
                       ({"epoch": 0, "counters": {}}, "no-paths.npz")]:
        np.savez(tmp_path / name, *new.arrays, info=np.frombuffer(json.dumps(info).encode(), np.uint8))
        old = TrainingState.load(tmp_path / name)
        assert len(old.arrays) == len(new.arrays) and old.schedule_steps is None
        other = tiny_model(seed=1)
        old.restore(other)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(other.variables[0]), new.arrays[0])
    with pytest.raises(ValueError, match=r"variable 0 has shape \(3, 3, 1, 2\) in the state and \(1, 1, 1, 2\) here"):
        old.restore(two_named_layers("left", "right"))


def test_the_steps_the_schedule_spans_travel_with_the_state(tmp_path):
    checkpoints = Checkpoints(tmp_path, "loss", "min")
    checkpoints.schedule_steps = 12  # what the runner compiled the schedule for
    started(checkpoints, tiny_model())
    checkpoints.on_epoch_end(0, {"loss": 0.5})
    checkpoints.close()
    assert TrainingState.load(checkpoints.state_paths[0]).schedule_steps == 12
