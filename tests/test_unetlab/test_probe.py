"""The probes' measurements: a resettable peak of resident memory, and timed real training steps."""

import numpy as np

from unetlab.planning.probe import default_memory_budget, device_memory, measure, read_peak, reset_peak


def test_the_peak_is_reset_and_follows_what_is_allocated():
    block = np.ones(300 * 2**20 // 8)  # 300 MB resident
    high = read_peak()
    del block
    reset_peak()
    assert read_peak() < high - 250 * 2**20
    again = np.ones(200 * 2**20 // 8)
    assert read_peak() >= again.nbytes
    del again


def test_a_probe_times_real_training_steps_and_reads_their_peak():
    import keras

    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, padding="same"),
                              keras.layers.Conv2D(1, 1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((2, 16, 16, 1), np.float32), np.zeros((2, 16, 16, 1), np.float32)
    calls = []

    def train_steps(count):
        calls.append(count)
        for _ in range(count):
            model.train_on_batch(x, y)

    m = measure(train_steps, lambda: model.predict_on_batch(x), steps=3, save=lambda: calls.append("save"))
    assert calls == [1, 1, 3, "save"]  # traced, settled, timed; then saved
    assert m.peak_bytes > 50 * 2**20 and 0 < m.seconds_per_step < m.seconds_first_step
    assert m.seconds_per_inference > 0


def test_the_default_budget_is_a_stated_share_of_the_device():
    kind, memory, name = device_memory()
    assert kind in ("cpu", "gpu") and memory > 2**30 and name
    assert default_memory_budget("cpu", 16 * 2**30) == 8 * 2**30
    assert default_memory_budget("gpu", 10 * 2**30) == 9 * 2**30
