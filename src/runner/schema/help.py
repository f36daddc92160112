"""The one-line meaning of every config key and of every group option, in one place.

Types and defaults are not repeated here: they come from the schema (`runner.schema.groups`) and
from `conf/*.yaml`. `python -m runner.reference` renders the three into docs/configuration.md,
and tests/test_runner/test_reference.py fails on a key without help or help without a key.
A key whose meaning depends on the option says so (`loss.alpha`).
"""

from __future__ import annotations

from typing import Dict, Tuple

from unetlab.names import LOSS_NAMES

KEY_HELP: Dict[str, str] = {
    # ------------------------------------------------------------ the main config
    "task": "what to run (see the tasks above)",
    "seed": "seeds Python, NumPy, TensorFlow, the data split, synthetic data and augmentation",
    "output_dir": "checkpoints and pictures of this run (`outputs/DATE/TIME-UNIQUE`; sweeps: `multirun/...`)",
    "resume": "RUN_ID of a task=train run to continue, with its own config (see Resume, reproduce, stop)",
    "config_version": "the layout of the config, written into a run's `config.yaml` so that later releases read it "
                      "(a file without it is version 1); set by unetlab, not by hand",
    "run_id": "the model of evaluate / predict / export: an MLflow task=train run, or `[A,B,C]`: an ensemble; "
              "task=compare: `[A,B]`, the two runs whose evaluations it pairs",
    "model_uri": "the model of evaluate / predict / export: `models:/NAME/VERSION`, `models:/NAME@ALIAS` or "
                 "`models:/NAME/latest`",
    "checkpoint": "the model of evaluate / predict / export: a `.keras` file (exactly one of run_id, model_uri, "
                  "checkpoint)",
    "predict.input": "task=predict: an image file or a directory of images",
    "predict.output": "task=predict: where the masks go (PNG class ids; 0/255 for a binary model)",
    "predict.tile_size": "sliding-window tile size (any size the network takes: a multiple of 2**depth for same padding); "
                         "null = the training image size; a model trained on resized images tiles the resized image",
    "predict.overlap": "tile overlap; tiles blend with Gaussian weights (sigma = tile/8)",
    "predict.batch_size": "tiles per batch",
    "predict.tta": "test-time augmentation: the mean over 4 flipped (`flips`) or 8 flipped and turned (`d4`) views",
    "predict.save_probabilities": "also write `NAME.npy`, the (H, W, K) float32 class probabilities (K = 1: of class 1, the sigmoid)",
    "predict.save_overlay": "also write `NAME_overlay.png`",
    "predict.format": "`masks`: a mask PNG per image; `challenge`: `challenge.tif`, the ISBI 2012 submission (one float32 page per image in name order, the cell probability: 0 membrane, 1 cell)",
    "predict.postprocess": "`watershed`: a binary cell/membrane model's cells cut apart where a membrane has a gap (`unetlab.postprocess`; predict and evaluate); "
                           "`auto`: task=train tries `predict.watershed.candidates` on its validation images and records the one of lowest challenge Rand error (or none), which predict and evaluate then apply",
    "predict.watershed.threshold": "watershed: the cells are the smoothed cell probability above this",
    "predict.watershed.h": "watershed: seeds are the h-maxima, in pixels, of the distance to the membranes; a larger h splits less",
    "predict.watershed.sigma": "watershed: Gaussian smoothing of the probability, in pixels (0: none)",
    "predict.watershed.candidates.threshold": "postprocess=auto: the thresholds training tries (each with every h and sigma)",
    "predict.watershed.candidates.h": "postprocess=auto: the h values training tries",
    "predict.watershed.candidates.sigma": "postprocess=auto: the sigmas training tries",
    "evaluate.output": "task=evaluate: where `metrics.json`, `per_image.csv` and `worst.png` go",
    "evaluate.num_worst": "rows of `worst.png`: the images with the lowest Dice",
    "evaluate.thresholds": "the ISBI 2012 challenge's threshold grid `[MIN, MAX, STEP]` of the cell probability "
                           "(its default: Fiji's 0.0 to 1.0 by 0.1); the challenge's scores are computed for a "
                           "binary model on `data.objects=background` (cells between membranes)",
    "decision.calibrate": "after training: `temperature` fits one temperature per class on the validation split (least NLL; "
                          "kept only where it lowers the expected calibration error, logged as `val_ece` -> `val_ece_calibrated` "
                          "with `reliability.png`); evaluate, predict, the registered model and the export apply it (`unetlab.decision`)",
    "decision.objective": "after training: a binary model's threshold of class 1 is the one of 0.01 ... 0.99 that maximises this on "
                          "the validation split (`dice`: the mean image Dice, `f1`: pooled pixels, `rand`: the ISBI 2012 Rand error of "
                          "the objects, `youden`: sensitivity + specificity - 1, `accuracy`: 1 - pixel error); `none`: 0.5",
    "decision.postprocess": "`auto`: after training, per class (both of a binary model), keep-largest, remove components under N "
                            "(`decision.min_sizes`) and fill holes are tried on the validation split, each kept where it raises "
                            "the class's mean Dice (nnU-Net's search; `unetlab.components`); data=nnunet: on the validation "
                            "cases predicted whole, foreground classes only (`runner.case_postprocess`); evaluate, predict, export "
                            "and the registered model apply the stored rules; `none`: training chooses none, inference skips them",
    "decision.min_sizes": "postprocess=auto: the sizes N, in pixels (voxels), tried for removing a class's small components",
    "decision.threshold": "evaluate, predict and export: cut a binary model's masks here instead of at its fitted threshold "
                          "(null: the fitted one, 0.5 for a model without one)",
    "compare.metric": "task=compare: the per-case score of the two runs' evaluations to pair (a column of their "
                      "`per_image.csv` / `per_case.csv`; lower is better for errors, VI and HD95)",
    "compare.experiment": "task=compare without run_id: the two runs of this experiment whose newest evaluations "
                          "score best by `eval_<metric>`, the runner-up as A and the best as B",
    "compare.resamples": "task=compare: bootstrap resamples of the cases (the confidence interval of the mean difference)",
    "compare.confidence": "task=compare: the confidence of that interval",
    "compare.output": "task=compare: where `comparison.txt`, `comparison.csv` and `paired.png` go (also logged)",
    "export.name": "task=export: the registered model name in the MLflow Model Registry",
    "export.format": "`mlflow`: a registered MLflow pyfunc model that predicts in tiles; `saved_model` (TF Serving) or "
                     "`onnx` (tf2onnx, `pip install \"unetlab[onnx]\"`): the whole of task=predict in one graph (normalisation, "
                     "tiling with blending, TTA, calibration, threshold, component rules) that takes a raw image of any size "
                     "and returns its `mask` and `probabilities`; `network`: a SavedModel of the bare network",
    "export.output": "format=saved_model / network: the SavedModel directory; onnx: the folder of `model.onnx`; "
                     "`metadata.json` beside (classes, channels, run id, decision)",
    "export.input_dtype": "saved_model / onnx: the raw image's type: integers are scaled by their maximum as training "
                          "decoded them, float32 is used as given",
    # ------------------------------------------------------------ plan
    "plan.name": "task=plan: the plan's file, OUTPUT/NAME.yaml (`+experiment=plans/NAME`); null = the dataset's name",
    "plan.output": "task=plan: the folder plans are written to (./plans is where `+experiment=plans/NAME` finds them)",
    "plan.memory_budget": "peak memory of training, e.g. 8GB (a unit is required); null = half this machine's "
                          "memory, 90% of a GPU's",
    "plan.time_budget": "all of training, e.g. 15m, 90s, 1.5h (a number: minutes); +experiment=auto counts planning "
                        "too; null = nnU-Net's 1000 x 250 steps",
    "plan.min_steps": "with a time budget: the patch shrinks until this many training steps fit in it",
    "plan.optimizer": "`auto` (Adam under 25000 steps, else nnU-Net's SGD), `sgd` or `adam`; poly decay either way",
    "plan.probe_steps": "timed training steps per probe, after two to trace and settle",
    # ------------------------------------------------------------ data
    "data.name": "the kind of source, set by the option (`isbi2012` is a `folder` source)",
    "data.image_size": "square size the model sees; divisible by 2^depth (`model.padding=same`); nnunet: the longest patch edge",
    "data.channels": "image channels (folder: must match the files)",
    "data.num_classes": "1 = binary (sigmoid head); K > 1 = softmax over K classes",
    "data.cache": "cache decoded data in memory",
    "data.objects": "the objects of the border weights and the Rand error: connected components of the "
                    "`foreground`, or of the `background` (cells between membranes)",
    "data.num_train": "synthetic: training images",
    "data.num_val": "synthetic: validation images",
    "data.max_shapes": "synthetic: shapes per image, at most",
    "data.noise": "synthetic: Gaussian noise std",
    "data.dims": "synthetic: 2 = images, 3 = volumes of image_size^3 voxels (`data=synthetic3d`)",
    "data.images": "directory of images",
    "data.masks": "directory of masks, paired with the images by file stem",
    "data.val_images": "validation images; null = a seeded `val_fraction` split",
    "data.val_masks": "validation masks (set with `val_images`)",
    "data.val_fraction": "validation share when no validation directories are given",
    "data.folds": "k-fold cross-validation: k folds (replaces `val_fraction`); null = off",
    "data.fold": "with `folds`: the fold validated on, 0..k-1",
    "data.ignore_index": "mask value left out of the loss and the metrics (e.g. 255)",
    "data.palette": "RGB colour masks: `[[r, g, b], ...]`, index = class id",
    "data.normalize": "`scale`: to [0, 1] by bit depth; `minmax`, `zscore`: per image; `dataset`: by the "
                      "training mean/std per channel",
    "data.mean": "normalize=dataset: per-channel mean; null = computed from the training images",
    "data.std": "normalize=dataset: per-channel std; null = computed from the training images",
    "data.patch_size": "train on random patches of this size at full resolution (validate on a fixed tiling); "
                       "null = whole resized images (nnunet: one size per axis; null = planned)",
    "data.target_spacing": "nnunet: resample every case to this spacing, one per axis (z, y, x); null = the "
                           "median (the 10th percentile on an axis over 3x coarser than the finest)",
    "data.max_patch_voxels": "nnunet: a planned patch holds at most this many voxels",
    "data.normalization": "nnunet: per channel `zscore`, `zscore_nonzero` (inside the non-zero region) or `ct`; "
                          "null = `ct` for CT channels, else `zscore` (task=plan sets it)",
    "data.patches_per_epoch": "nnunet: training patches per epoch, streamed from the preprocessed cases",
    "data.foreground_oversample": "with `patch_size`: share of patches centred on foreground (nnU-Net: 0.33)",
    "data.invert_masks": "binary masks: 0 is the positive class (ISBI 2012 labels membranes 0)",
    "data.root": "directory holding `image/` and `label/` (nnunet: the dataset folder with dataset.json, imagesTr/, "
                 "labelsTr/)",
    # ------------------------------------------------------------ model
    "model.name": "the network builder",
    "model.dims": "2D or 3D network; null = the data's (3 for volumes; `model=unet` and `model=nnunet` build both)",
    "model.depth": "down-sampling levels",
    "model.filters": "filters of the first level, doubled per level",
    "model.batch_norm": "batch norm after each convolution",
    "model.dropout": "dropout at the end of the contracting path",
    "model.pooling": "down-sampling: 2x2 max pooling, or a strided 2x2 convolution (`conv`)",
    "model.upsampling": "up-sampling: UpSampling2D (`nearest`), or a 2x2 up-convolution (`transpose`)",
    "model.padding": "`valid` is the paper's: unpadded convolutions, skips cropped, output smaller than input",
    "model.kernel_initializer": "any Keras initializer name",
    "model.block": "`plain`: two 3x3 convolutions per level; `residual`: with a shortcut (the identity, or a 1x1 convolution where the channels change) added before the second ReLU (ResUNet)",
    "model.encoder": "model=encoder_unet: the backbone (`unetlab.models.encoder_unet.BACKBONES`), e.g. resnet50, efficientnetb0, mobilenetv2, convnexttiny; or `hub:PRESET`, a keras-hub backbone with `pyramid_outputs` (a preset directory from `save_to_preset`, or a preset name or kaggle:// / hf:// handle that keras-hub downloads; extra `hub`)",
    "model.encoder_weights": "model=encoder_unet: `none` (random), `imagenet` (downloaded by Keras), `preset` (a `hub:PRESET` encoder's own weights) or a `.weights.h5` file saved from the same backbone (for the model's channels or RGB, adapted)",
    "model.decoder_filters": "model=encoder_unet: the channels of the five decoder stages, from stride 16 to full resolution",
    "model.attention": "an additive attention gate on every skip connection, gated by the coarser decoder level (Attention U-Net, Oktay et al. 2018)",
    "model.freeze_encoder_epochs": "model=encoder_unet: the first N epochs train the decoder alone (encoder weights fixed, its batch norms in inference mode), then everything; a resumed run unfreezes at the same epoch",
    "model.deep_supervision": "a head on every decoder level but the lowest, trained on labels sampled at its resolution, losses weighted 1, 1/2, 1/4 ... normalised (nnU-Net); the inference model keeps the full-resolution head only",
    "model.strides": "model=nnunet: per stage, the stride of its first convolution (an int or [height, width]; the first stage's is 1)",
    "model.kernel_sizes": "model=nnunet: per stage, the convolutions' kernel size (an int or [height, width])",
    "model.max_filters": "model=nnunet: the cap on a stage's channels (nnU-Net: 512 in 2D, 320 in 3D)",
    "model.convolutions_per_stage": "model=nnunet: conv + instance norm + LeakyReLU per stage, in the encoder and the decoder",
    # ------------------------------------------------------------ loss
    "loss.name": "the loss, set by the option",
    "loss.smooth": "smoothing term of the soft Dice / Tversky index",
    "loss.w0": "weight of the paper's border term w0 * exp(-(d1 + d2)^2 / (2 sigma^2))",
    "loss.sigma": "width of the border term, in pixels of the training resolution",
    "loss.class_balance": "add w_c = pixels / (classes x pixels of the class); false: w_c = 1",
    "loss.gamma": "focal: focusing power",
    "loss.alpha": "focal: weight of the positive class (sigmoid); tversky: weight of false positives",
    "loss.beta": "tversky: weight of false negatives",
    # ------------------------------------------------------------ optimizer
    "optimizer.name": "the Keras optimizer, set by the option",
    "optimizer.lr": "peak learning rate (the schedule starts there)",
    "optimizer.weight_decay": "decoupled weight decay; null = none",
    "optimizer.clipnorm": "gradient norm clipping; null = none",
    "optimizer.beta_1": "first-moment decay",
    "optimizer.beta_2": "second-moment decay",
    "optimizer.epsilon": "numerical stability term",
    "optimizer.momentum": "momentum",
    "optimizer.nesterov": "Nesterov momentum",
    # ------------------------------------------------------------ augment
    "augment.name": "the recipe, set by the option",
    "augment.flip": "random horizontal and vertical flips",
    "augment.rotate90": "random multiples of 90 degrees",
    "augment.rotation": "max rotation, degrees (a volume's (H, W) planes turn, about its depth axis)",
    "augment.scale": "`[low, high]` zoom factor (> 1 zooms in)",
    "augment.shift": "max translation, fraction of the image size",
    "augment.elastic_grid": "elastic deformation: coarse grid points per side, per axis of a volume (0 = off)",
    "augment.elastic_sigma": "elastic deformation: displacement std, pixels (voxels, on every axis of a volume)",
    "augment.brightness": "max added brightness offset (image only)",
    "augment.contrast": "max relative contrast change (image only)",
    "augment.gamma": "max |log gamma| (image only)",
    "augment.noise": "Gaussian noise std (image only)",
    "augment.blur": "max Gaussian blur sigma, pixels (image only; 2D only)",
    # ------------------------------------------------------------ trainer
    "trainer.epochs": "epochs",
    "trainer.batch_size": "images per step, per replica",
    "trainer.steps_per_epoch": "null = one pass over the training set; else repeat the data",
    "trainer.validation_steps": "validate on the first N batches of the validation set each epoch (a fixed subset); "
                                "null = all of it",
    "trainer.schedule": "learning rate: constant, cosine decay to `min_lr`, or ReduceLROnPlateau on `monitor`",
    "trainer.min_lr": "floor of the cosine and plateau schedules",
    "trainer.plateau_factor": "plateau: learning-rate factor",
    "trainer.plateau_patience": "plateau: epochs without improvement before a reduction",
    "trainer.early_stopping_patience": "epochs without improvement before stopping; null = off",
    "trainer.encoder_lr_scale": "model=encoder_unet: the pretrained encoder learns at this times the learning rate (0.1: a tenth), the decoder at the full one; AdamW's weight decay stays unscaled",
    "trainer.time_limit": "minutes of training and validation in this process (a resumed run starts a new count): training stops after the epoch past which another, at the mean pace, would overrun; the best checkpoint so far is the model",
    "trainer.monitor": "drives the best checkpoint, plateau and early stopping; the sweep objective",
    "trainer.monitor_mode": "which way `monitor` improves; `auto`: min for `*loss`, else max",
    "trainer.precision": "mixed precision computes in 16 bits; the head and the losses stay float32; `auto`: mixed_bfloat16 where the hardware has bfloat16 units (a GPU of compute capability >= 8.0, a CPU with AMX), else float32",
    "trainer.jit_compile": "null = Keras `auto` (XLA on a GPU), `true`, `false`",
    "trainer.distribution": "`data_parallel`: a replica per device, on every `TF_CONFIG` worker (see Scaling)",
    "trainer.run_eagerly": "no `tf.function`: for debugging; also skips the seconds of tracing tiny models pay",
    "trainer.deterministic": "TensorFlow op determinism: equal runs (and resumed runs) for one seed",
    "trainer.verbose": "Keras progress: `auto` (the bar on a terminal, else one line per epoch), `0`, `1`, `2`",
    "trainer.checkpoint_every": "write and upload the training state every N epochs (and at the end, and on "
                                "Ctrl-C/SIGTERM)",
    # ------------------------------------------------------------ tracking
    "tracking.uri": "MLflow store (relative to the launch directory) or `http://host:port`",
    "tracking.experiment": "MLflow experiment",
    "tracking.run_name": "null = named for what it trains, `unet-d4-f32-bce_dice-adam-7f3a`",
    "tracking.tags": "extra run tags, e.g. `+tracking.tags.owner=me`",
    "tracking.log_checkpoints": "upload best.keras and the training state as they are written (resume anywhere)",
    "tracking.log_predictions": "log `predictions.png`",
    "tracking.num_predictions": "rows of `predictions.png`",
    "tracking.log_system_metrics": "CPU/memory/GPU metrics (needs `psutil`)",
    "tracking.register_model": "NAME: register the best model in the MLflow Model Registry after training",
    # ------------------------------------------------------------ hparams_search
    "hparams_search.study_name": "null = `<tracking.experiment>-<hash>` of the search space, so the same space "
                                 "resumes its study",
    "hparams_search.storage": "the study's SQLAlchemy URL; null = in memory (basic launcher only)",
    "hparams_search.n_trials": "finished trials the study should have (a resumed study runs only the rest)",
    "hparams_search.n_jobs": "trials launched at once; null = the launcher's `n_jobs`",
    "hparams_search.sampler": "the Optuna sampler: TPE, or random search",
    "hparams_search.seed": "the sampler's seed",
    "hparams_search.n_startup_trials": "TPE: random trials before the model-based ones",
    "hparams_search.max_failure_rate": "stop when more than this share of `n_trials` failed",
    "hparams_search.heartbeat_interval": "seconds between the heartbeats a sweep records of each trial it runs",
    "hparams_search.grace_period": "seconds without a heartbeat after which a sweep on the study fails a "
                                   "RUNNING trial (its sweep died) and runs it again; a live sweep's trials are left alone",
    "hparams_search.params": "the search space in Hydra's sweep syntax; null = only the command line's sweeps",
    "hparams_search.trial_id": "set by the sweeper for each trial's job",
    "hparams_search.pruner.name": "the Optuna pruner, asked after every epoch of a trial",
    "hparams_search.pruner.n_startup_trials": "median, percentile: trials completed before any is pruned",
    "hparams_search.pruner.n_warmup_epochs": "median, percentile, threshold: epochs before a trial can be pruned",
    "hparams_search.pruner.percentile": "percentile: keep trials in the best N percent",
    "hparams_search.pruner.min_resource": "hyperband: epochs of the smallest bracket",
    "hparams_search.pruner.max_resource": "hyperband: epochs of a full trial",
    "hparams_search.pruner.reduction_factor": "hyperband: reduction factor between brackets",
    "hparams_search.pruner.lower": "threshold: prune when the monitored value is below this",
    "hparams_search.pruner.upper": "threshold: prune when the monitored value is above this",
}

OPTION_HELP: Dict[Tuple[str, str], str] = {
    ("data", "synthetic"): "textured shapes on a noisy background, rendered from `seed` (no files)",
    ("data", "synthetic3d"): "the 3D twin of `synthetic`: textured solids in noisy volumes of `image_size`^3 voxels (no files)",
    ("data", "folder"): "image and mask folders, paired by file stem",
    ("data", "nnunet"): "an nnU-Net v2 raw dataset (dataset.json, imagesTr/, labelsTr/), 2D or 3D: checked, planned, "
                        "preprocessed once, trained on patches",
    ("data", "isbi2012"): "the ISBI 2012 EM membranes of the U-Net paper: `folder` under one `root`",
    ("model", "unet"): "the U-Net: the classic Keras one by default, the paper's with `padding=valid`",
    ("model", "unetpp"): "UNet++ (Zhou et al. 2018): the U-Net's encoder with nested, densely connected skips (same padding)",
    ("model", "nnunet"): "nnU-Net v2's network (PlainConvUNet): strided convolutions, instance norm, LeakyReLU, deep supervision; stages as lists",
    ("model", "encoder_unet"): "a U-Net whose contracting path is a keras.applications backbone (ResNet, EfficientNet, MobileNetV2, ConvNeXt, DenseNet) or a keras-hub one, optionally pretrained",
    ("optimizer", "adam"): "Adam",
    ("optimizer", "adamw"): "AdamW: Adam with decoupled weight decay",
    ("optimizer", "sgd"): "SGD with momentum",
    ("augment", "none"): "no augmentation",
    ("augment", "basic"): "flips and 90-degree rotations: exact pixel permutations",
    ("augment", "paper"): "the U-Net paper's shifts, rotations, elastic deformation and gray values",
    ("trainer", "default"): "Keras `fit` with checkpoints, a schedule and early stopping",
    ("tracking", "mlflow"): "MLflow runs: params, metrics per epoch, checkpoints, the model, pictures",
    ("hparams_search", "optuna"): "with `-m`: an Optuna study (TPE, pruning, resumable)",
}
# the losses' lines come from unetlab's registry of them (unetlab.names.LOSS_NAMES), with the head they need
HEAD_HELP = {"sigmoid": "sigmoid", "softmax": "softmax", "any": "sigmoid or softmax"}
OPTION_HELP.update({("loss", name): f"{loss.help} ({HEAD_HELP[loss.head]})" for name, loss in LOSS_NAMES.items()})
