"""A dataset's properties: one pass over its cases, cached by content."""

import json

import numpy as np
import pytest

from helpers import write_nnunet_dataset
from unetlab.planning.cases import nnunet_cases
from unetlab.planning.properties import SAMPLES_PER_CASE, cached_properties, case_properties, dataset_properties


def test_a_cases_properties_give_its_crop_classes_objects_and_a_foreground_sample():
    image = np.zeros((20, 30, 2), np.float32)
    image[5:15, 10:25] = 1.0  # the non-zero region: 10 x 15
    label = np.zeros((20, 30), np.uint8)
    label[6:8, 11:13] = 1  # two objects of class 1 (4 and 6 pixels), one of class 2 (9)
    label[10:12, 20:23] = 1
    label[12:15, 12:15] = 2
    image[label > 0] = 7.0
    case = case_properties(image, label, (0.5, 0.5))
    assert case["shape"] == [20, 30] and case["cropped_shape"] == [10, 15] and case["spacing"] == [0.5, 0.5]
    assert case["voxels"] == {0: 600 - 19, 1: 10, 2: 9}
    assert sorted(case["object_sizes"][1]) == [4, 6] and case["object_sizes"][2] == [9]
    assert case["foreground_sample"].shape == (SAMPLES_PER_CASE, 2) and np.all(case["foreground_sample"] == 7.0)


def test_dataset_properties_pool_the_cases(tmp_path):
    cases = nnunet_cases(write_nnunet_dataset(tmp_path, cases=4, shape=(8, 24, 24), spacing=(3.0, 0.8, 0.8)))
    properties = dataset_properties(cases, workers=2)
    assert properties["num_cases"] == 4 and properties["dims"] == 3 and set(properties["cases"]) == set(cases.names)
    assert properties["median_spacing"] == pytest.approx([3.0, 0.8, 0.8])
    channel = properties["channels"][0]
    assert channel["name"] == "CT" and channel["modality"] == "ct"
    assert 20 < channel["mean"] < 80 and 15 < channel["std"] < 45  # the organ: 50 +- 30 HU
    assert channel["p005"] < channel["median"] < channel["p995"] and channel["min"] <= channel["p005"]
    organ = properties["classes"]["organ"]
    assert organ["cases_with"] == 4 and organ["objects"] >= 4 and 0 < organ["share"] < 0.5
    assert properties["median_relative_size_after_cropping"] == 1.0  # noise everywhere: no empty border
    json.dumps(properties)  # logged as dataset_properties.json


def test_properties_are_read_once_per_dataset_content(tmp_path):
    calls = []
    first = cached_properties(tmp_path, "abc", lambda: calls.append(1) or {"num_cases": 2})
    again = cached_properties(tmp_path, "abc", lambda: calls.append(1) or {"num_cases": 3})
    other = cached_properties(tmp_path, "def", lambda: calls.append(1) or {"num_cases": 4})
    assert first == again == {"num_cases": 2} and other == {"num_cases": 4} and len(calls) == 2
