"""Config composition through Hydra's compose API: every option composes, presets extend each
other, and the cross-field rules of `Config` name the key."""

import pytest
from omegaconf import OmegaConf

from runner.schema import SCHEMAS, Config
from runner.schema import groups, inference
from unetlab import names
from unetlab.errors import ConfigError

from helpers import group_options


def test_every_schema_option_has_a_yaml_file():
    assert {(group, option) for group, option in group_options()} == {
        (group, option) for group, options in SCHEMAS.items() for option in options}


@pytest.mark.parametrize("enum, choices", [
    (groups.Pooling, names.POOLING), (groups.Upsampling, names.UPSAMPLING), (groups.Padding, names.PADDING),
    (groups.Normalize, names.NORMALIZE), (groups.Schedule, names.SCHEDULES), (inference.TestTimeAugmentation, names.TTA),
    (inference.Postprocess, names.POSTPROCESS), (inference.PredictFormat, names.PREDICT_FORMATS)])
def test_config_choices_are_the_library_choices(enum, choices):
    assert [member.value for member in enum] == list(choices)


@pytest.mark.parametrize("preset, filters", [("unet_paper", 64), ("classic_keras_unet", 64), ("isbi2012", 64),
                                             ("isbi2012_cpu", 16)])
def test_experiment_presets_compose_and_validate(make_config, preset, filters, tmp_path):
    config = make_config([f"+experiment={preset}", f"output_dir={tmp_path}"]
                         + (["data.root=/isbi"] if preset.startswith("isbi") else []))
    assert isinstance(config, Config) and config.model.filters == filters


def test_isbi2012_is_folder_data_under_one_root(compose, tmp_path):
    folder = compose(["data=folder", "data.images=x", "data.masks=y", f"output_dir={tmp_path}"]).data
    isbi = compose(["data=isbi2012", "data.root=/isbi", "data.image_size=128", f"output_dir={tmp_path}"]).data
    assert isbi.images == "/isbi/image" and isbi.masks == "/isbi/label" and isbi.image_size == 128
    assert isbi.invert_masks and isbi.objects.value == "background"  # membranes positive, cells the objects
    same = {key: value for key, value in OmegaConf.to_container(folder).items()
            if key not in ("images", "masks", "image_size", "invert_masks", "objects")}
    assert {key: OmegaConf.to_container(isbi)[key] for key in same} == same


@pytest.mark.parametrize("preset, switched_on", [("none", set()), ("basic", {"flip", "rotate90"}),
                                                 ("paper", {"rotation", "shift", "elastic_grid", "elastic_sigma",
                                                            "brightness", "contrast", "gamma"})])
def test_augment_presets_switch_on_only_their_own_transforms(compose, preset, switched_on, tmp_path):
    none = OmegaConf.to_container(compose(["augment=none", f"output_dir={tmp_path}"]).augment)
    chosen = OmegaConf.to_container(compose([f"augment={preset}", f"output_dir={tmp_path}"]).augment)
    assert {key for key in none if key != "name" and chosen[key] != none[key]} == switched_on


def test_monitor_direction_follows_the_metric_unless_set(make_config, tmp_path):
    assert make_config([f"output_dir={tmp_path}"]).monitor_direction() == "max"  # val_dice
    assert make_config(["trainer.monitor=val_loss", f"output_dir={tmp_path}"]).monitor_direction() == "min"
    assert make_config(["trainer.monitor=val_loss", "trainer.monitor_mode=max",
                        f"output_dir={tmp_path}"]).monitor_direction() == "max"


@pytest.mark.parametrize("overrides, message", [
    (["data.image_size=100"], "data.image_size=100: image size 100 is not divisible by 2**depth=16"),
    (["loss=ce"], "loss=ce needs data.num_classes >= 2"),
    (["loss=bce", "data.num_classes=3"], "loss=bce needs data.num_classes=1"),
    (["loss=weighted_ce"], "loss=weighted_ce needs data.num_classes >= 2 (softmax); with data.num_classes=1 "
                           "(sigmoid) use loss=weighted_bce"),
    (["loss=weighted_bce_dice", "data.num_classes=2"], "use loss=weighted_ce_dice"),
    (["trainer.monitor=val_f1"], "trainer.monitor='val_f1' is not a reported metric"),
    (["model.dropout=1.0"], "model.dropout must be in [0, 1). Received: dropout=1.0"),
    (["data=folder"], "data.images is required"),
    (["data=isbi2012"], "data.root is required"),
    (["data=folder", "data.images=a", "data.masks=b", "data.val_images=c"], "data.val_images and data.val_masks"),
    (["run_id=[a,b,a]"], "run_id names run a twice: the runs of an ensemble must differ. Received: run_id="),
    (["run_id=[a,'']"], "run_id must be a run id or a list of run ids (run_id=[A,B]), each a non-empty string"),
    (["run_id=[]"], "Received: run_id=[]"),
    (["task=export", "export.name=x", "run_id=[a,b,c]"], "task=export takes one model: run_id=[a,b,c] names 3"),
    (["config_version=2"], "config_version=2: it is written by unetlab, not set"),  # its run could not be read back
    (["evaluate.thresholds=[0.0,1.0]"], "evaluate.thresholds must be [MIN, MAX, STEP]. Received: thresholds=[0.0, 1.0]"),
    (["evaluate.thresholds=[0.5,0.4,0.1]"], "evaluate.thresholds must be [MIN, MAX, STEP] with 0 <= MIN <= MAX <= 1"),
    (["model=encoder_unet", "data.image_size=48"], "data.image_size=48: input size 48 does not fit an encoder U-Net "
                                                   "(multiples of 32): the nearest valid sizes are 32 or 64"),
    (["model=encoder_unet", "model.decoder_filters=[8]"], "model.decoder_filters must be 5 channel counts >= 1"),
    (["model=unetpp", "model.padding=valid"], "model.padding must be same for model=unetpp. Received: padding='valid'"),
    (["model=unetpp", "model.attention=true"], "model.attention must be false for model=unetpp"),
    (["model.deep_supervision=true", "model.padding=valid"], "model.deep_supervision must be false with "
                                                             "model.padding=valid"),
    (["model=nnunet", "data.image_size=48"], "data.image_size=48: image size 48 is not a multiple of 32 (the product of "
                                             "the strides [1, 2, 2, 2, 2, 2]); nearest valid sizes: 32, 64 (model.strides)"),
    (["model=nnunet", "model.strides=[1,2,0]", "model.kernel_sizes=[3,3,3]"],
     "model.strides must be a list with an int >= 1 or a [height, width] pair per stage. Received: strides=[1, 2, 0]"),
    (["model=nnunet", "model.strides=[1,[2,2,2]]", "model.kernel_sizes=[3,3]"], "model.strides must be a list"),
    (["model=nnunet", "model.kernel_sizes=[3,3]"], "model.kernel_sizes must have one entry per stage (6, as many as "
                                                  "strides). Received: kernel_sizes=[3, 3]"),
    (["model=nnunet", "model.strides=[1]", "model.kernel_sizes=[3]"], "model.strides must be 2 stages or more"),
    (["trainer.time_limit=0"], "trainer.time_limit must be > 0 (minutes) or null. Received: time_limit=0.0"),
    (["trainer.validation_steps=0"], "trainer.validation_steps must be >= 1 or null. Received: validation_steps=0"),
    (["plan.memory_budget=8"], "plan.memory_budget must be a size such as 4GB or 512MB. Received: memory_budget='8'"),
    (["plan.optimizer=lion"], "plan.optimizer must be auto or one of sgd, adam. Received: optimizer='lion'"),
    (["model=nnunet", "model.max_filters=16"], "model.max_filters must be >= model.filters. Received: max_filters=16"),
    (["predict.watershed.h=0"], "predict.watershed.h must be > 0 (pixels). Received: h=0.0"),
    (["predict.watershed.candidates.h=[]"], "predict.watershed.candidates.h must be a non-empty list. Received: h=[]"),
    (["predict.watershed.candidates.threshold=[0.5,1.0]"],
     "predict.watershed.candidates.threshold must be in [0, 1). Received: threshold=1.0"),
])
def test_cross_field_rules_name_the_key(make_config, overrides, message, tmp_path):
    with pytest.raises(ConfigError) as error:
        make_config([*overrides, f"output_dir={tmp_path}"])
    assert message in str(error.value)


def test_monitor_accepts_every_metric_the_library_reports(make_config, tmp_path):
    for monitor in names.metric_names(3):
        make_config(["loss=ce", "data.num_classes=3", f"trainer.monitor={monitor}", f"output_dir={tmp_path}"])


def test_run_id_names_one_run_or_an_ensemble_of_runs(make_config, tmp_path):
    def run_id(value):
        config = make_config(["task=predict", "predict.input=x", f"run_id={value}", f"output_dir={tmp_path}"])
        return config.run_id, config.run_ids()

    assert run_id("a") == run_id("[a]") == ("a", ["a"])
    assert run_id("[a,b]") == (["a", "b"], ["a", "b"])


def test_the_loss_options_are_unetlabs_registered_losses_each_with_a_yaml_of_its_name(compose, tmp_path):
    assert list(SCHEMAS["loss"]) == list(names.LOSS_NAMES)
    assert {option for group, option in group_options() if group == "loss"} == set(names.LOSS_NAMES)
    for name in names.LOSS_NAMES:
        assert compose([f"loss={name}"]).loss.name == name
