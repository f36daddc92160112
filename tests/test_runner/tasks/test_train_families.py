"""Every model family trains through `task=train`, says what it built and reloads in safe mode; a fine-tuned
encoder (frozen first, then unfrozen) resumes across its unfreezing exactly."""

import signal
import subprocess
import sys

import numpy as np
import pytest

from helpers import TINY, only_run, run_runner
from runner.tasks.train import train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("family, title", [
    (("model.block=residual", "model.attention=true"), "Residual Attention U-Net depth=2 filters=4"),
    (("model=unetpp",), "U-Net++ depth=2 filters=4"),
    (("model=encoder_unet", "model.encoder=mobilenetv2", "model.decoder_filters=[16,16,8,8,8]"),
     "U-Net mobilenetv2 encoder (random weights)"),
    (("model.deep_supervision=true", "model.depth=3", "loss=dice"), "U-Net depth=3 filters=4"),
    (("model=nnunet", "model.filters=4", "model.max_filters=8", "model.strides=[1,2,2,[2,1]]",
      "model.kernel_sizes=[3,3,[3,1],3]"), "nnU-Net PlainConvUNet 4 stages, 4-8 filters"),
    (("data=synthetic3d", "model.deep_supervision=true", "model.depth=3", "loss=dice"), "3D U-Net depth=3 filters=4"),
    (("data=synthetic3d", "model=nnunet", "model.filters=4", "model.max_filters=8", "model.strides=[1,2,[1,2,2],2]",
      "model.kernel_sizes=[3,[1,3,3],3,3]"), "3D nnU-Net PlainConvUNet 4 stages, 4-8 filters")])
def test_each_family_trains_logs_what_it_built_and_reloads_in_safe_mode(make_config, tmp_path, monkeypatch, caplog,
                                                                       family, title):
    """A U-Net family on the embedded data (images, and volumes for the 3D networks): Dice rises over its epochs, the log names the family and its
    size, the count is the run's `params`, and the best checkpoint loads in Keras safe mode; with deep
    supervision (nnU-Net's by default) the checkpoint is the network without its auxiliary heads, whose
    training count is `params_training`."""
    import keras

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    own_keys = "model=encoder_unet" in family or "model=nnunet" in family  # no depth (nor filters)
    overrides = [o for o in TINY if not o.startswith(("trainer.epochs", *(("model.",) if own_keys else ())))]
    with caplog.at_level("INFO", logger="runner.tasks.train"):
        train(make_config(overrides + [*family, "trainer.epochs=3", f"tracking.uri={uri}", f"output_dir={tmp_path}/out"]))
    client, run = only_run(uri)
    dice = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "dice"), key=lambda m: m.step)]
    assert len(dice) == 3 and dice[-1] > dice[0], dice
    built = keras.saving.load_model(client.download_artifacts(run.info.run_id, "checkpoints/best.keras", str(tmp_path)),
                                    safe_mode=True)
    assert f"{title}: {built.count_params() / 1e6:.1f}M params ({built.count_params():,})" in caplog.text
    assert run.data.metrics["params"] == built.count_params()
    dims = 3 if "data=synthetic3d" in family else 2
    assert len(built.outputs) == 1 and built.output_shape == (None, *[32] * dims, 1)
    supervised = "deep_supervision" in " ".join(family) or "model=nnunet" in family
    assert ("deep supervision: 1 auxiliary head" in caplog.text) == supervised
    assert (run.data.metrics.get("params_training", 0) > built.count_params()) == supervised


FINE_TUNING = [*(o for o in TINY if not o.startswith(("model.", "trainer.epochs", "trainer.verbose"))),
               "model=encoder_unet", "model.encoder=mobilenetv2", "model.decoder_filters=[16,16,8,8,8]",
               "model.freeze_encoder_epochs=1", "trainer.encoder_lr_scale=0.5", "trainer.epochs=2",
               "trainer.deterministic=true", "trainer.verbose=2"]


def test_a_run_stopped_while_its_encoder_is_frozen_resumes_to_the_state_of_an_uninterrupted_run(tmp_path):
    """model.freeze_encoder_epochs: stopped by SIGTERM after its first (frozen) epoch, resumed in another
    process, the run unfreezes at the same epoch, with the same optimizer state, as a run never stopped:
    the same weights, moments and step count at the end, and the same validation losses."""
    import os

    from helpers import final_state

    reference_dir, stopped_dir = tmp_path / "reference", tmp_path / "stopped"
    reference_dir.mkdir(), stopped_dir.mkdir()
    result = run_runner(*FINE_TUNING, cwd=reference_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "U-Net mobilenetv2 encoder (random weights, frozen 1 epoch): " in result.stdout + result.stderr
    assert "the encoder is frozen for epoch 1 (model.freeze_encoder_epochs=1)" in result.stdout + result.stderr
    assert "epoch 2 on: the encoder trains too (at 0.5 x the learning rate)" in result.stdout + result.stderr

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "runner", *FINE_TUNING], cwd=stopped_dir, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in process.stdout:
        if "epoch 1/2" in line:
            process.send_signal(signal.SIGTERM)  # stops at the next step: the state is epoch 1's
    assert process.wait(timeout=120) == 143
    store = f"sqlite:///{stopped_dir}/mlflow.db"
    client, run = only_run(store)
    assert final_state(client, run.info.run_id, tmp_path / "killed").epoch == 0  # inside the frozen epochs
    result = run_runner(f"resume={run.info.run_id}", cwd=stopped_dir)
    assert result.returncode == 0, result.stderr[-3000:]

    reference_client, reference = only_run(f"sqlite:///{reference_dir}/mlflow.db")
    ours = final_state(client, run.info.run_id, tmp_path / "ours")
    theirs = final_state(reference_client, reference.info.run_id, tmp_path / "theirs")
    assert ours.epoch == theirs.epoch == 1 and len(ours.arrays) == len(theirs.arrays)
    for mine, expected in zip(ours.arrays, theirs.arrays):
        np.testing.assert_array_equal(mine, expected)
    losses = [[m.value for m in c.get_metric_history(r.info.run_id, "val_loss")]
              for c, r in ((client, run), (reference_client, reference))]
    assert losses[0] == losses[1] and len(losses[0]) == 2


def test_an_nnunet_dataset_trains_a_3d_unet_that_predicts_nifti_in_the_inputs_geometry(make_config, tmp_path,
                                                                                      monkeypatch, caplog):
    """data=nnunet: dataset.json gives the channels and classes, the plan the patch (the median shape, a
    multiple of 2**depth), the cases are preprocessed once into the cache, and a 3D U-Net trains on them;
    task=predict segments NIfTI cases of another size and spacing and writes each in its input's geometry."""
    import keras
    import nibabel as nib

    from runner.tasks.predict import predict

    from helpers import write_nnunet_dataset

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNETLAB_CACHE_DIR", str(tmp_path / "cache"))
    root = write_nnunet_dataset(tmp_path, cases=4, shape=(8, 24, 24))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = [o for o in TINY if not o.startswith("data.")] + [
        "data=nnunet", f"data.root={root}", "data.patches_per_epoch=8", "data.val_fraction=0.25",
        f"tracking.uri={uri}", f"output_dir={tmp_path}/out"]
    with caplog.at_level("INFO", logger="runner"):
        train(make_config(overrides))
    assert "nnU-Net dataset Dataset001_Organ (3 train / 1 val cases, val_fraction=0.25; 3D, 1 channel(s), 2 classes; " \
           "spacing 3.00x0.80x0.80, patch 8x24x24 (median shape 8x24x24), normalisation ct" in caplog.text
    assert "3D U-Net depth=2 filters=4" in caplog.text
    client, run = only_run(uri)
    assert run.info.status == "FINISHED" and len(client.get_metric_history(run.info.run_id, "val_dice")) == 2
    assert "failed_end_steps" not in run.data.tags  # the postprocessing chosen on the validation case, among them
    assert "decision_postprocessing" in run.data.params and "val_case_dice_after_postprocessing" in run.data.metrics
    assert "postprocessing chosen on 1 validation case(s): " in caplog.text
    built = keras.saving.load_model(client.download_artifacts(run.info.run_id, "checkpoints/best.keras", str(tmp_path)),
                                    safe_mode=True)
    assert built.input_shape == (None, 8, 24, 24, 1) and built.output_shape == (None, 8, 24, 24, 1)
    assert len(list((tmp_path / "cache" / "volumes").glob("preprocessed-*/*.npy"))) == 8  # 4 images, 4 labels

    other = write_nnunet_dataset(tmp_path / "other", cases=2, shape=(6, 30, 20), spacing=(2.0, 0.7, 0.9), seed=1)
    with caplog.at_level("INFO", logger="runner"):
        predict(make_config(["task=predict", f"run_id={run.info.run_id}", f"predict.input={other}/imagesTr",
                             f"predict.output={tmp_path}/masks", "predict.tta=flips", "predict.save_probabilities=true",
                             f"tracking.uri={uri}", f"output_dir={tmp_path}/out"]))
    assert f"postprocessing: {run.data.params['decision_postprocessing']}" in caplog.text  # predict applies the rules
    for name in ("organ_000", "organ_001"):
        image, mask = nib.load(other / "imagesTr" / f"{name}_0000.nii.gz"), nib.load(tmp_path / "masks" / f"{name}.nii.gz")
        assert mask.shape == image.shape == (20, 30, 6) and np.array_equal(mask.affine, image.affine)
        assert mask.get_data_dtype() == np.uint8  # class ids, not the decision's int64
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
        assert np.load(tmp_path / "masks" / f"{name}.npy").shape == (6, 30, 20, 1)  # (z, y, x, K)
    from runner.tasks.evaluate import evaluate
    from runner.tasks.export import export
    from unetlab.errors import ConfigError

    common = [f"run_id={run.info.run_id}", f"tracking.uri={uri}", f"output_dir={tmp_path}/out"]
    with pytest.raises(ConfigError, match=r"trained on planned patches \(data=nnunet\): evaluate it with data=nnunet"):
        evaluate(make_config(["task=evaluate", "data=folder", f"data.images={tmp_path}", f"data.masks={tmp_path}",
                              *common]))
    summary = evaluate(make_config(["task=evaluate", "data=nnunet", f"data.root={other}",
                                    f"evaluate.output={tmp_path}/evaluation", *common]))
    assert summary["num_cases"] == 2 and 0.0 <= summary["dice"] <= 1.0 and "hd95" in summary  # in millimetres
    per_case = (tmp_path / "evaluation" / "per_case.csv").read_text().splitlines()
    assert per_case[0].startswith("case,dice") and len(per_case) == 3
    with pytest.raises(ConfigError, match="export.format=mlflow exports image models; .* use export.format=network"):
        export(make_config(["task=export", "export.format=mlflow", "export.name=organ", *common]))
