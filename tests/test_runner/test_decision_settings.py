"""runner.decision_settings: the stored decision with the config's overrides, a threshold refused where the
argmax decides, and an ensemble's first member deciding with a warning when the members differ."""

import re

import pytest

from runner import decision_settings


@pytest.mark.parametrize("preprocessing, message", [
    (dict(num_classes=3), "decision.threshold=0.3 cuts a binary model's probability of class 1, and this model has 3 classes"),
    (dict(num_classes=2, patch_size=[16, 16, 16]), "this model was trained on planned patches (data=nnunet)"),
])
def test_a_threshold_is_refused_where_the_argmax_decides(make_config, tmp_path, preprocessing, message):
    from unetlab.errors import ConfigError
    from unetlab.preprocessing import Preprocessing

    config = make_config(["task=predict", "checkpoint=x.keras", "predict.input=in", "decision.threshold=0.3",
                          f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=re.escape(message)):
        decision_settings.decision(config, Preprocessing(channels=1, **preprocessing))
    binary = decision_settings.decision(config, Preprocessing(channels=1, num_classes=1))
    assert binary.threshold == 0.3


def test_an_ensemble_decides_as_its_first_member_and_warns_when_members_differ(make_config, tmp_path, caplog):
    from types import SimpleNamespace

    from unetlab.preprocessing import Preprocessing

    def member(threshold):
        decision = {"temperature": [1.0], "threshold": threshold, "objective": "dice", "rules": []}
        return SimpleNamespace(preprocessing=Preprocessing(channels=1, num_classes=1, decision=decision))

    config = make_config(["task=predict", "run_id=[a,b]", "predict.input=in", f"output_dir={tmp_path}"])
    with caplog.at_level("WARNING"):
        assert decision_settings.ensemble_decision(config, [member(0.3), member(0.3)]).threshold == 0.3
        assert not caplog.records
        assert decision_settings.ensemble_decision(config, [member(0.4), member(0.6)]).threshold == 0.4
    assert "the first member's decide" in caplog.text
