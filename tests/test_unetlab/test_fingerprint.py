import shutil

from unetlab.data.checks import check_folders
from unetlab.data.fingerprint import fingerprint
from unetlab.data.folder import find_pairs
from unetlab_samples import make_dataset, three_class_mask


def test_fingerprint_is_the_same_for_copies_and_changes_with_one_byte(tmp_path):
    make_dataset(tmp_path / "one", {"a": three_class_mask(), "b": three_class_mask()})
    shutil.copytree(tmp_path / "one", tmp_path / "elsewhere" / "two")
    first = find_pairs(tmp_path / "one" / "images", tmp_path / "one" / "masks")
    copy = find_pairs(tmp_path / "elsewhere" / "two" / "images", tmp_path / "elsewhere" / "two" / "masks")
    assert fingerprint(first) == fingerprint(copy) == fingerprint(list(reversed(copy)))
    assert len(fingerprint(first)) == 16 and set(fingerprint(first)) <= set("0123456789abcdef")
    mask = tmp_path / "elsewhere" / "two" / "masks" / "b.png"
    data = bytearray(mask.read_bytes())
    data[-1] ^= 1
    mask.write_bytes(bytes(data))
    assert fingerprint(copy) != fingerprint(first)


def test_fingerprint_tells_images_from_masks_and_matches_the_report(tmp_path):
    images, masks = make_dataset(tmp_path, {"a": three_class_mask()})
    report = check_folders(images, masks, channels=1, num_classes=3)
    assert report.summary["fingerprint"] == fingerprint(report.pairs)
    assert fingerprint([(m, i) for i, m in report.pairs]) != fingerprint(report.pairs)
