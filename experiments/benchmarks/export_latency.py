"""Latency per 512x512 image: task=predict's predictor against the self-contained exports (SavedModel and ONNX).

    python experiments/benchmarks/export_latency.py [--run-id RUN --tracking-uri sqlite:///mlflow.db]
        [--tta none flips] [--repeats 7]

A trained run's model (its best.keras and preprocessing.json, with its decision layer), or by default the
default config's U-Net (depth 4, 32 filters, 1 channel, sigmoid) with random weights and the training tile
size 256 (speed does not depend on training). For each TTA setting it times, on one 512x512 uint8 image
(slice_01 of the ISBI 2012 data beside the repository when present, else noise), the median of `--repeats`
calls after one warm-up:

  predict    - unetlab.inference.predict_image + the decision's mask: what task=predict does per image,
               without reading and writing files
  saved_model - the exported SavedModel's serving_default signature (tf.saved_model.load)
  onnx       - the exported ONNX model in onnxruntime (CPU execution provider)

and checks that the three masks agree. Put the figures beside `make benchmark`'s img/s of the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
IMAGE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "isbi2012" / "image" / "slice_01.png"


def timed(call, repeats: int) -> tuple[float, object]:
    """(median seconds of `repeats` calls after a warm-up, the last result)."""
    result = call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def load(args):
    """(model, preprocessing) of the run, or the default U-Net with random weights."""
    import keras

    from unetlab.models import build_unet, with_any_input_size
    from unetlab.preprocessing import Preprocessing

    if args.run_id:
        import mlflow

        client = mlflow.MlflowClient(args.tracking_uri)
        folder = Path(client.download_artifacts(args.run_id, "checkpoints", tempfile.mkdtemp()))
        model = keras.saving.load_model(folder / "best.keras", compile=False, safe_mode=True)
        return with_any_input_size(model), Preprocessing.load(folder / "preprocessing.json")
    keras.utils.set_random_seed(0)
    return build_unet((None, None, 1), 1, depth=4, filters=32), Preprocessing(channels=1, num_classes=1, tile_size=256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", help="a task=train run (default: an untrained default U-Net)")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--tta", nargs="+", default=["none", "flips"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import numpy as np
    import onnxruntime
    import tensorflow as tf

    from unetlab.decision import Decision
    from unetlab.graph_inference import frozen, save_onnx, serving_function
    from unetlab.inference import predict_image

    model, preprocessing = load(args)
    decision = Decision.from_record(preprocessing.decision)
    if IMAGE.is_file():
        from PIL import Image

        image = np.asarray(Image.open(IMAGE))[..., None]
    else:
        image = np.random.default_rng(0).integers(0, 256, (512, 512, 1), dtype=np.uint8)
    print(f"model: {'run ' + args.run_id if args.run_id else 'default U-Net, random weights'}; "
          f"image {'x'.join(map(str, image.shape))} uint8; decision: {decision.describe()}; median of {args.repeats}")
    print(f"{'tta':<6} {'predict s':>10} {'saved_model s':>14} {'onnx s':>8}  masks equal")
    for tta in args.tta:
        settings = {"tile_size": None, "overlap": 0.5, "batch_size": 4, "tta": tta}
        predict_seconds, probabilities = timed(lambda: predict_image(model, image, preprocessing, **settings),
                                               args.repeats)
        expected = decision.classes(probabilities)
        serve = serving_function(model, preprocessing, decision=decision, **settings)
        with tempfile.TemporaryDirectory() as folder:
            module = tf.Module()
            module.serve = frozen(serve)
            tf.saved_model.save(module, f"{folder}/sm", signatures={"serving_default": module.serve})
            signature = tf.saved_model.load(f"{folder}/sm").signatures["serving_default"]
            saved_seconds, saved = timed(lambda: signature(image=tf.constant(image))["mask"].numpy(), args.repeats)
            session = onnxruntime.InferenceSession(str(save_onnx(serve, f"{folder}/model.onnx")),
                                                   providers=["CPUExecutionProvider"])
            names = [output.name for output in session.get_outputs()]
            onnx_seconds, outputs = timed(lambda: session.run(None, {"image": image}), args.repeats)
        onnx_mask = outputs[names.index("mask")]
        equal = bool(np.array_equal(saved, expected) and np.array_equal(onnx_mask, expected))
        print(f"{tta:<6} {predict_seconds:>10.3f} {saved_seconds:>14.3f} {onnx_seconds:>8.3f}  {equal}")


if __name__ == "__main__":
    main()
