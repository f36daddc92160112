"""The cases a plan is made from: nnU-Net raw datasets and image/mask folders, checked."""

import numpy as np
import pytest

from helpers import write_nnunet_dataset, write_pairs
from unetlab.errors import DataError
from unetlab.planning.cases import folder_cases, nnunet_cases
from unetlab.planning.properties import dataset_properties


def test_folder_pairs_are_read_as_class_ids_at_unit_spacing(tmp_path):
    images, masks = write_pairs(tmp_path, count=3, size=40)
    cases = folder_cases(images, masks, channels=1, num_classes=1)
    assert cases.names == ["s0", "s1", "s2"] and cases.channel_names == ["gray"]
    image, label, spacing = cases.readers[0]()
    assert image.shape == (40, 40, 1) and set(np.unique(label)) == {0, 1} and spacing == (1.0, 1.0)
    assert len(cases.fingerprint) == 16


def test_one_case_is_refused_naming_the_data(tmp_path):
    root = write_nnunet_dataset(tmp_path, cases=1, shape=(4, 16, 16))
    with pytest.raises(DataError, match=r"^data.root='.*Dataset001_Organ' has 1 case\(s\); planning needs at least 2"):
        nnunet_cases(root)


def test_cases_with_different_channel_counts_are_refused(tmp_path):
    images, masks = write_pairs(tmp_path, count=3, size=40)
    from PIL import Image

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(images / "s1.png")
    cases = folder_cases(images, masks, channels=1, num_classes=1)
    with pytest.raises(DataError, match=r"^case s1.png has 3 channel\(s\) but the dataset has 1 .*same channels"):
        dataset_properties(cases)
