"""runner.redact: URL passwords and `${oc.env:...}` values masked in texts, config data and logs."""

import logging

import pytest
from omegaconf import OmegaConf
from sqlalchemy.engine import make_url

from runner.redact import env_interpolations, install_log_filter, mask_secrets, masked, remember_env_secrets
from runner.settings import plain, to_config


@pytest.fixture(autouse=True)
def nothing_remembered():
    """Each test starts and ends with no environment secrets noted."""
    remember_env_secrets(OmegaConf.create({}))
    yield
    remember_env_secrets(OmegaConf.create({}))


@pytest.fixture
def log_filter():
    """The log filter installed for one test; the record factory restored after it."""
    previous = logging.getLogRecordFactory()
    install_log_filter()
    yield
    logging.setLogRecordFactory(previous)


@pytest.mark.parametrize("url", [
    "postgresql+psycopg2://user:hunter2@db.example.com:5432/optuna",
    "mysql://root:hunter2@127.0.0.1/optuna?charset=utf8mb4",
    "mysql+pymysql://u:hunt%40er2@h/db",  # a percent-encoded '@' in the password
    "redis://:hunter2@cache:6379/0",  # a password without a user
])
def test_a_database_url_shows_its_password_as_sqlalchemy_hides_it(url):
    assert mask_secrets(url) == make_url(url).render_as_string(hide_password=True)
    assert "***" in mask_secrets(url) and "hunt" not in mask_secrets(url)


def test_an_http_url_keeps_its_user_host_port_and_path():
    assert mask_secrets("http://alice:hunter2@mlflow.example.com:5000/#/experiments/1") == (
        "http://alice:***@mlflow.example.com:5000/#/experiments/1")
    assert mask_secrets("https://alice:hunter2@host") == "https://alice:***@host"


def test_a_password_with_an_unescaped_at_sign_is_masked_whole():
    url = "postgresql://u:hunt@er2@host/db"
    assert "er2" in make_url(url).render_as_string(hide_password=True)  # SQLAlchemy shows the tail
    assert mask_secrets(url) == "postgresql://u:***@host/db"


@pytest.mark.parametrize("text", [
    "sqlite:///optuna.db", "sqlite:////tmp/mlflow.db", "http://127.0.0.1:5000", "postgresql://USER@DB_HOST/optuna",
    "model.filters=32 optimizer.lr=0.001", "mail alice@example.com: 50% done", "",
])
def test_text_without_a_password_is_unchanged(text):
    assert mask_secrets(text) == text


def test_every_password_in_free_text_is_masked():
    overrides = ("tracking.uri=http://u:pw1@h:5000 hparams_search.storage=postgresql://u:pw2@h/db "
                 "model.filters=8 tracking.tags.x='mysql://a:pw3@h/db'")
    assert mask_secrets(overrides) == (
        "tracking.uri=http://u:***@h:5000 hparams_search.storage=postgresql://u:***@h/db "
        "model.filters=8 tracking.tags.x='mysql://a:***@h/db'")
    swept = "hparams_search.storage=postgresql://u:pw1@h/a,postgresql://u:pw2@h/b"
    assert "pw1" not in mask_secrets(swept) and "pw2" not in mask_secrets(swept)
    assert mask_secrets(str({"storage": "postgresql://u:pw@h/db"})) == "{'storage': 'postgresql://u:***@h/db'}"


def test_keys_read_from_the_environment_are_found_in_the_unresolved_config(compose, monkeypatch):
    monkeypatch.setenv("UNETLAB_TEST_TOKEN", "hunter2-token")
    cfg = compose(["+tracking.tags.token=${oc.env:UNETLAB_TEST_TOKEN}", "tracking.experiment=${oc.env:USER,me}",
                   "+tracking.tags.plain=visible"])
    assert env_interpolations(cfg) == {"tracking.tags.token": "${oc.env:UNETLAB_TEST_TOKEN}",
                                       "tracking.experiment": "${oc.env:USER,me}"}
    cfg = OmegaConf.create({"a": ["x", "s3://${oc.env:UNETLAB_TEST_TOKEN}"], "hydra": {"b": "${oc.env:HOME}"}})
    assert env_interpolations(cfg) == {"a.1": "s3://${oc.env:UNETLAB_TEST_TOKEN}"}  # by index; `hydra` left out


def test_masked_config_data_shows_environment_keys_as_written_and_hides_url_passwords(compose, monkeypatch, tmp_path):
    monkeypatch.setenv("UNETLAB_TEST_TOKEN", "hunter2-token")
    monkeypatch.setenv("UNETLAB_TEST_SEED", "7")
    cfg = compose(["+tracking.tags.token=${oc.env:UNETLAB_TEST_TOKEN}", "seed=${oc.env:UNETLAB_TEST_SEED}",
                   "+tracking.tags.copy=${tracking.tags.token}", "tracking.uri=http://u:hunter2@h:5000",
                   f"output_dir={tmp_path}"])
    remember_env_secrets(cfg)
    tree = masked(plain(to_config(cfg)))
    assert tree["tracking"]["tags"] == {"token": "${oc.env:UNETLAB_TEST_TOKEN}", "copy": "***"}  # a copy: by value
    assert tree["seed"] == "${oc.env:UNETLAB_TEST_SEED}"  # a short value: by its key
    assert tree["tracking"]["uri"] == "http://u:***@h:5000"
    assert tree["model"] == plain(to_config(cfg))["model"]  # everything else as it was
    assert masked({"token": "hunter2-token", "n": 7}, at="tracking.tags") == {
        "token": "${oc.env:UNETLAB_TEST_TOKEN}", "n": 7}
    assert mask_secrets("logged in with hunter2-token, seed 7") == "logged in with ***, seed 7"


def test_the_log_filter_masks_messages_and_tracebacks_through_any_handler(log_filter, caplog):
    factory = logging.getLogRecordFactory()
    install_log_filter()  # again: the same factory, not one wrapped in another
    assert logging.getLogRecordFactory() is factory
    caplog.set_level("INFO")
    log = logging.getLogger("runner.test")
    log.info("study at %s (%d trials)", "postgresql://u:hunter2@h/db", 3)
    try:
        raise RuntimeError("cannot reach http://u:hunter2@h:5000")
    except RuntimeError:
        log.exception("the store failed")
    assert "hunter2" not in caplog.text
    assert "study at postgresql://u:***@h/db (3 trials)" in caplog.text
    assert "RuntimeError: cannot reach http://u:***@h:5000" in caplog.text
