import keras
import pytest

from unetlab.errors import ConfigError
from unetlab.optim import build_optimizer, learning_rate_schedule


def test_cosine_schedule_decays_to_min_lr_and_constant_keeps_the_rate():
    schedule = learning_rate_schedule(1e-3, "cosine", total_steps=10, min_lr=1e-4)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert float(schedule(10)) == pytest.approx(1e-4)
    assert learning_rate_schedule(1e-3, "plateau", total_steps=10) == 1e-3


def test_unknown_schedule_and_optimizer_name_the_argument():
    with pytest.raises(ConfigError, match=r"^schedule must be one of constant, cosine, poly, plateau\. "
                                          r"Received: schedule='x'$"):
        build_optimizer("adam", 1e-3, schedule="x")
    with pytest.raises(ConfigError, match=r"^name must be one of adam, adamw, sgd\. Received: name='lion'$"):
        build_optimizer("lion", 1e-3)


def test_poly_schedule_follows_nnunet_decay_to_min_lr():
    schedule = learning_rate_schedule(1e-2, "poly", total_steps=100, min_lr=0.0)
    assert float(schedule(0)) == pytest.approx(1e-2)
    assert float(schedule(50)) == pytest.approx(1e-2 * 0.5**0.9, rel=1e-5)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
