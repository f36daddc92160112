"""Preprocessing at prediction time: scaled and normalised exactly as the training pipeline did."""

import numpy as np
import pytest

from unetlab.data.decode import decode_image
from unetlab.data.normalize import normalize_image
from unetlab.errors import ConfigError, DataError
from unetlab.names import NORMALIZE
from unetlab.preprocessing import Preprocessing, to_unit_range
from unetlab_samples import save


def test_preprocessing_scales_like_the_training_decoder_and_checks_channels(tmp_path):
    assert to_unit_range(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert to_unit_range(np.array([0, 65535], np.uint16)).tolist() == [0.0, 1.0]
    zscored = Preprocessing(channels=1, num_classes=1, normalize="zscore").apply(np.arange(6, dtype=np.float32)[None])
    assert abs(zscored.mean()) < 1e-6 and zscored.std() == pytest.approx(1.0, rel=1e-5)
    preprocessing = Preprocessing(channels=1, num_classes=1, tile_size=32)
    assert preprocessing.apply(np.zeros((5, 7), np.uint8)).shape == (5, 7, 1)
    with pytest.raises(DataError, match="image has 3 channels but the model expects 1"):
        preprocessing.apply(np.zeros((5, 7, 3), np.uint8))
    assert Preprocessing.load(preprocessing.save(tmp_path / "p.json")) == preprocessing


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_apply_gives_what_the_training_pipeline_gives(tmp_path, normalize):
    array = np.random.default_rng(0).integers(0, 65535, (9, 7, 2)).astype(np.uint16)
    path = save(tmp_path / "i.png", array[..., 0])
    statistics = dict(mean=[0.4], std=[0.2]) if normalize == "dataset" else {}
    training = np.asarray(normalize_image(decode_image(path, 1), normalize, **statistics))
    preprocessing = Preprocessing(channels=1, num_classes=1, normalize=normalize, **statistics)
    prepared = preprocessing.apply(array[..., 0])
    assert prepared.dtype == np.float32 and prepared.shape == (9, 7, 1)
    np.testing.assert_allclose(prepared, training, atol=1e-6)


def test_dataset_normalisation_without_statistics_names_them():
    with pytest.raises(ConfigError, match=r"^mean and std are the training statistics"):
        Preprocessing(channels=1, num_classes=1, normalize="dataset").apply(np.zeros((2, 2), np.uint8))
