"""task=check_data, and the same integrity check refusing a broken dataset before training."""

import numpy as np
import pytest

from helpers import SHARED_DATA, TINY, run_runner, write_pairs

pytestmark = pytest.mark.slow


def test_check_data_lists_every_problem_and_exits_non_zero(tmp_path):
    from PIL import Image

    images, masks = write_pairs(tmp_path)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(masks / "s1.png")  # wrong size
    (masks / "s2.png").unlink()  # image without mask
    Image.fromarray(np.full((40, 40), 7, np.uint8)).save(masks / "s3.png")  # not a class of 3
    result = run_runner("task=check_data", "data=folder", f"data.images={images}", f"data.masks={masks}",
                        "data.num_classes=3", cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "size_mismatch" in result.stdout and "s1.png" in result.stdout
    assert "missing_mask" in result.stdout and "s2" in result.stdout
    assert "label_values" in result.stdout and "[7]" in result.stdout
    assert "pairs:" in result.stdout and "Traceback" not in result.stderr


def test_training_refuses_a_broken_dataset_before_tracking_anything(tmp_path):
    images, masks = write_pairs(tmp_path)
    (images / "s4.png").write_bytes(b"broken")
    tiny = [o for o in TINY if not o.startswith("data.num_")]
    result = run_runner("data=folder", f"data.images={images}", f"data.masks={masks}", *tiny, cwd=tmp_path,
                        timeout=120, with_store=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "undecodable" in errors[0] and "s4.png" in errors[0], result.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.skipif(not (SHARED_DATA / "isbi2012").is_dir(), reason="needs ../shared/data/isbi2012")
def test_isbi2012_config_checks_clean_on_the_shared_slices(tmp_path):
    result = run_runner("task=check_data", "data=isbi2012", f"data.root={SHARED_DATA / 'isbi2012'}", cwd=tmp_path,
                        timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pairs:             24" in result.stdout and "no problems found" in result.stdout


def test_check_data_reads_an_nnunet_dataset_and_lists_each_broken_case(tmp_path):
    """data=nnunet: every case read once; the summary, then one line per problem naming the case and file."""
    import nibabel as nib

    from helpers import write_nnunet_dataset

    root = write_nnunet_dataset(tmp_path, cases=3, shape=(4, 12, 12))
    result = run_runner("task=check_data", "data=nnunet", f"data.root={root}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Dataset001_Organ: 3 training and 0 test case(s), 3D, channels CT, labels background=0, organ=1: " \
           "0 problem(s)" in result.stdout
    label = root / "labelsTr" / "organ_002.nii.gz"
    nib.save(nib.Nifti1Image(np.full((12, 12, 4), 4, np.uint8), nib.load(label).affine), label)
    (root / "imagesTr" / "organ_000_0000.nii.gz").write_bytes(b"not a nifti")
    result = run_runner("task=check_data", "data=nnunet", f"data.root={root}", cwd=tmp_path)
    assert result.returncode == 1 and "2 problem(s)" in result.stdout
    assert "case organ_000: imagesTr/organ_000_0000.nii.gz" in result.stdout
    assert "case organ_002: labelsTr/organ_002.nii.gz has values [4] not in dataset.json labels [0, 1]" in result.stdout
