"""`task=evaluate`: score a trained model on image/mask folders at full resolution (or, trained on planned patches,
on the labelled cases of an nnU-Net dataset, in millimetres), tracked in MLflow."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

import keras
import mlflow
import numpy as np

from unetlab import challenge
from unetlab.data.checks import check_folders, message_names, raise_if_broken
from unetlab.data.image_files import read_array
from unetlab.errors import ConfigError, DataError
from unetlab.evaluation import confusion_matrix, object_scores, scores
from unetlab.inference import predict_ensemble
from unetlab.visualize import prediction_grid, save_curves, save_png

from .. import builders, decision_fit, decision_settings, guards, tracking
from ..decision_fit import RULES, THRESHOLD
from ..model_source import describe, load_model_sources, source_tags
from ..schema import Config, NNUNetDataConfig, TrackingConfig
from ..settings import config_group

log = logging.getLogger(__name__)

SUMMARY = ("dice", "iou", "precision", "recall", "misclassified", "adapted_rand_error", "vi")
OBJECT_SCORES = ("adapted_rand_error", "vi", "vi_split", "vi_merge")  # per image; the summary holds their means
POSTPROCESSING = "postprocessing"  # param: the postprocessing applied (predict.postprocess=auto: the model's choice)
METRIC_PREFIX = "eval_"  # MLflow keys of the summary (eval_dice: never a training curve's key); metrics.json: dice


# The config keys an evaluation reads, and so logs as its params: the model source, the data, the
# prediction settings (`builders.prediction_settings`), its own group and where it is tracked. Not the
# model, loss, optimizer or trainer of the composed config: the source run's, which may differ.
EVALUATION_PARAMS = ("task", "run_id", "model_uri", "checkpoint", "config_version", "data", "predict.tile_size",
                     "predict.overlap", "predict.batch_size", "predict.tta", "predict.postprocess", "predict.watershed",
                     "evaluate", "decision.threshold", "tracking")


def evaluate(config: Config) -> dict:
    """Write metrics.json, per_image.csv and worst.png (image | truth | prediction | overlay of the
    lowest-Dice images), print a table, and log an evaluation run linked to its source run.
    Pixel scores are over all pixels of all images; the object scores (adapted Rand error, variation
    of information) are per image, and their means. A binary model of cells between membranes
    (`builders.challenge_applies`) also gets the ISBI 2012 challenge's scores (`unetlab.challenge`), per image and
    of the whole stack, and challenge_curves.csv/.png (each score against the threshold)."""
    members = load_model_sources(config)  # several run ids: an ensemble, its mean probabilities decide
    loaded, ensemble = members[0], [(member.model, member.preprocessing) for member in members]
    if loaded.preprocessing.planned != isinstance(config.data, NNUNetDataConfig):
        trained = "planned patches (data=nnunet)" if loaded.preprocessing.planned else "images (not data=nnunet)"
        wanted = "data=nnunet data.root=DIR" if loaded.preprocessing.planned else "data=folder data.images=DIR data.masks=DIR"
        raise ConfigError(f"{describe(members)} was trained on {trained}: evaluate it with {wanted}")
    log.info("evaluating %s", describe(members))
    if loaded.preprocessing.planned:
        decision_settings.check_threshold_applies(config, loaded.preprocessing)
        return evaluate_cases(config, members)
    pairs, image_digests = checked_pairs(config, loaded.preprocessing)
    num_classes = loaded.preprocessing.num_classes
    ignore_index = config.data.ignore_index
    output = Path(config.evaluate.output)
    output.mkdir(parents=True, exist_ok=True)

    total = 0
    rows, worst, tallies = [], [], []
    grid = challenge.thresholds(*config.evaluate.thresholds, key="evaluate.thresholds")
    scored_as_challenge = builders.challenge_applies(config, num_classes)
    watershed = builders.postprocessing(config, loaded.preprocessing)
    decision = decision_settings.ensemble_decision(config, members)
    log.info("postprocessing: %s; decision: %s", builders.describe_postprocessing(config, watershed),
             decision.describe())
    progress = keras.utils.Progbar(len(pairs), unit_name="image")
    for done, (image_path, mask_path) in enumerate(pairs, start=1):
        image = read_array(image_path)
        truth = builders.read_classes(mask_path, num_classes, config.data)
        probabilities = builders.postprocessed(
            predict_ensemble(ensemble, image, **builders.prediction_settings(config)), watershed)
        prediction = decision.classes(probabilities)
        if truth.shape != prediction.shape:
            raise DataError(f"{mask_path} is {truth.shape[0]}x{truth.shape[1]} but its image is "
                            f"{prediction.shape[0]}x{prediction.shape[1]}")
        confusion = confusion_matrix(truth, prediction, num_classes, ignore_index)
        total = total + confusion
        rows.append({"image": Path(image_path).name, **scores(confusion),
                     **object_scores(truth, prediction, config.data.objects.value, ignore_index)})
        if scored_as_challenge:  # tallied once per image: its own figures, and its share of the stack's
            cells = challenge.cell_probability(probabilities)
            tallies.append(challenge.tally(truth == 0, cells, grid, str(mask_path)))
            rows[-1].update(challenge_figures(challenge.scores_of(tallies[-1:])))
        worst = sorted(worst + [(rows[-1]["dice"], done, image, truth, prediction)], key=lambda w: w[:2])
        worst = worst[: config.evaluate.num_worst]
        progress.update(done)

    summary = {**scores(total), **{name: float(np.mean([row[name] for row in rows])) for name in OBJECT_SCORES},
               "num_images": len(rows), "mean_image_dice": float(np.mean([row["dice"] for row in rows]))}
    if tallies:  # the challenge's figures of the whole stack: counts pooled (errors), slices averaged (V scores)
        stack = challenge.scores_of(tallies)
        summary.update(challenge_figures(stack))
        write_challenge_curves(stack, output)
    (output / "metrics.json").write_text(json.dumps(summary, indent=2))
    with open(output / "per_image.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if worst:
        _, _, images, truths, predictions = zip(*worst)
        save_png(prediction_grid(images, truths, predictions, num_classes), output / "worst.png")
    log.info("%s", format_table(summary, rows))

    source_run_ids = [member.source_run_id for member in members if member.source_run_id]
    tags = {"task": "evaluate", **source_tags(members),
            **guards.check_overlap(source_run_ids, image_digests, config.tracking.uri)}
    home, parent_run_id, what = evaluation_home(config, [member.source_run_id for member in members])
    with tracking.tracked_run(home, tags, what=what, parent_run_id=parent_run_id):
        params = tracking.config_params(config, only=EVALUATION_PARAMS)
        tracking.retry_locked(mlflow.log_params, {**params, **tracking.backend_params(),
                                                  POSTPROCESSING: str(watershed or "none"),
                                                  THRESHOLD: decision_fit.threshold_param(decision, num_classes),
                                                  RULES: decision.describe_rules()})
        tracking.retry_locked(mlflow.log_metrics, {f"{METRIC_PREFIX}{key}": value for key, value in summary.items()})
        mlflow.log_artifacts(str(output), "evaluation")
    return summary


def evaluate_cases(config: Config, members) -> dict:
    """Models trained on planned patches: every labelled case of the nnU-Net dataset at data.root predicted as
    task=predict does (sliding window at the training spacing, mirroring with predict.tta) and scored in
    millimetres (`unetlab.volume_metrics.case_scores`: Dice, IoU, HD95, surface Dice per foreground class);
    metrics.json holds the means over cases, per_case.csv each case; an evaluation run is logged."""
    from unetlab.data.nnunet_raw import read_case, read_raw_dataset
    from unetlab.volume_inference import predict_case
    from unetlab.volume_metrics import case_scores

    dataset, preprocessing = read_raw_dataset(config.data.root), members[0].preprocessing
    if len(dataset.channel_names) != preprocessing.channels:
        raise DataError(f"data.root={config.data.root} has {len(dataset.channel_names)} channel(s) but the model "
                        f"expects {preprocessing.channels}")
    output = Path(config.evaluate.output)
    output.mkdir(parents=True, exist_ok=True)
    settings, rows = builders.case_prediction_settings(config), []
    decision = decision_settings.ensemble_decision(config, members)  # the component rules training chose
    log.info("postprocessing: %s", decision.describe_rules())
    progress = keras.utils.Progbar(len(dataset.cases), unit_name="case")
    for done, case in enumerate(dataset.cases, start=1):
        image, truth, spacing, _ = read_case(case, dataset)
        probabilities = sum(predict_case(member.model, image, spacing, member.preprocessing, **settings)
                            for member in members) / len(members)
        case_result = case_scores(decision.classes(probabilities), truth, spacing, preprocessing.num_classes)
        for name in ("dice", "iou"):  # several classes: their mean too, the figure to compare runs by
            case_result.setdefault(name, float(np.mean([v for k, v in case_result.items() if k.startswith(f"{name}_")])))
        rows.append({"case": case.name, **case_result})
        progress.update(done)
    summary = {key: float(np.mean([row[key] for row in rows])) for key in rows[0] if key != "case"}
    summary["num_cases"] = len(rows)
    (output / "metrics.json").write_text(json.dumps(summary, indent=2))
    with open(output / "per_case.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    log.info("%d case(s): %s", len(rows), ", ".join(f"{key} {value:.4f}" for key, value in summary.items()
                                                   if key != "num_cases"))
    tags = {"task": "evaluate", **source_tags(members)}
    home, parent_run_id, what = evaluation_home(config, [member.source_run_id for member in members])
    with tracking.tracked_run(home, tags, what=what, parent_run_id=parent_run_id):
        tracking.retry_locked(mlflow.log_params, {**tracking.config_params(config, only=EVALUATION_PARAMS),
                                                  **tracking.backend_params(), RULES: decision.describe_rules()})
        tracking.retry_locked(mlflow.log_metrics, {f"{METRIC_PREFIX}{key}": value for key, value in summary.items()
                                                   if np.isfinite(value)})
        mlflow.log_artifacts(str(output), "evaluation")
    return summary


def challenge_figures(scores_by_name: dict) -> dict[str, float]:
    """{pixel_error, rand_error, v_rand, v_info, and each one's `_threshold`} of challenge_scores."""
    figures = {name: score.value for name, score in scores_by_name.items()}
    return {**figures, **{f"{name}_threshold": score.threshold for name, score in scores_by_name.items()}}


def write_challenge_curves(scores_by_name: dict, output: Path) -> None:
    """challenge_curves.csv (every score at every threshold) and challenge_curves.png (their plot)."""
    grid = [threshold for threshold, _ in next(iter(scores_by_name.values())).curve]
    with open(output / "challenge_curves.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["threshold", *scores_by_name])
        writer.writerows([threshold, *(score.curve[index][1] for score in scores_by_name.values())]
                         for index, threshold in enumerate(grid))
    save_curves({name: score.curve for name, score in scores_by_name.items()}, output / "challenge_curves.png",
                xlabel="threshold of the cell probability")


def evaluation_home(config: Config, source_run_ids: list[str | None]) -> tuple[TrackingConfig, str | None, str]:
    """Where the evaluation run goes: (tracking settings, parent run id, what the run is for its name).
    One source run (run_id=, or model_uri= of a version registered from a run): nested under it, in its
    experiment, so the runs table lists training runs with their evaluations folded under them. An
    ensemble or a model from no run (checkpoint=) has no one run to hang under: the sibling experiment
    `<experiment>-eval` (of the ensemble's first run, else tracking.experiment), top-level there."""
    client = mlflow.MlflowClient(config.tracking.uri)
    if source_run_ids[0] is not None:
        first = tracking.retry_locked(client.get_run, source_run_ids[0]).info
        if len(source_run_ids) == 1:
            return config.tracking, first.run_id, f"eval-{first.run_name or first.run_id[:8]}"
        experiment = tracking.retry_locked(client.get_experiment, first.experiment_id).name
        what = "eval-ensemble-" + "+".join(run_id[:8] for run_id in source_run_ids)
    else:
        experiment = config.tracking.experiment
        what = f"eval-{config.model_uri.removeprefix('models:/') if config.model_uri else Path(config.checkpoint).stem}"
    return dataclasses.replace(config.tracking, experiment=f"{experiment}-eval"), None, what


def checked_pairs(config: Config, preprocessing) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The image/mask pairs of data.images/data.masks once they pass the integrity check that training
    runs, against the model's channels and classes (a one-line DataError naming the files otherwise):
    a binary model would count any non-zero mask pixel as foreground, so wrong masks give wrong scores.
    Also the sha256 of each image ({file name: digest}), to find images the model was trained on."""
    data = config.data
    trained = preprocessing.invert_masks  # None: a model saved before it was recorded
    if trained is not None and data.invert_masks != trained:  # class 1 must mean what it meant in training
        given, needed = str(data.invert_masks).lower(), str(trained).lower()
        raise ConfigError(f"data.invert_masks={given}, but the model was trained with invert_masks={needed}: "
                          f"set data.invert_masks={needed} so that masks are read as in training")
    names = {**{name: f"data.{name}" for name in message_names(None)},
             "channels": "the model's channels", "num_classes": "the model's num_classes"}
    with config_group("data"):  # data.palette / data.ignore_index that do not fit the model's classes
        report = check_folders(data.images, data.masks, channels=preprocessing.channels,
                               num_classes=preprocessing.num_classes, ignore_index=data.ignore_index,
                               palette=data.palette, names=names)
    report = raise_if_broken(report, more_help=f"task=check_data data.channels={preprocessing.channels} "
                                               f"data.num_classes={preprocessing.num_classes} lists them all")
    return report.pairs, report.summary["image_digests"]


def format_table(summary: dict, rows: list[dict]) -> str:
    """Per-image scores and the whole-set summary as an aligned text table."""
    names = SUMMARY + tuple(name for name in challenge.SCORES if name in summary)
    widths = [max(12, len(name) + 1) for name in names]

    def line(label: str, values, spec: str = ".4f") -> str:
        return f"{label[:28]:<28}" + "".join(f"{value:>{width}{spec}}" for value, width in zip(values, widths))

    lines = [line("image", names, ""), *(line(row["image"], [row[name] for name in names]) for row in rows),
             line("all pixels", [summary[name] for name in names])]
    return "evaluation\n" + "\n".join(lines)
