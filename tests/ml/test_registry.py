"""The model registry: a kind is found by name, an unknown name is one line with a hint, nothing loads early."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scalpbot.config import load_settings
from scalpbot.errors import ConfigError, ModelError
from scalpbot.ml.registry import (
    DEFAULT_MODEL_KIND,
    MODEL_KINDS,
    ModelKind,
    kind_names,
    lazy_kind,
    model_kind,
)

HEAVY = ("keras", "torch", "optuna")


def test_an_unknown_kind_is_one_config_error_line_with_the_known_kinds_and_the_closest_one() -> None:
    with pytest.raises(ConfigError) as error:
        model_kind("mpl")
    assert str(error.value) == "unknown model kind 'mpl' (did you mean 'mlp'?); known kinds: conv1d, mlp"
    with pytest.raises(ConfigError, match=r"^unknown model kind 'lightgbm'; known kinds: conv1d, mlp$"):
        model_kind("lightgbm")


@pytest.mark.parametrize("origin", ["file", "env"])
def test_train_model_is_checked_against_the_registry_when_the_settings_load(
    origin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(None, {}).train.model == DEFAULT_MODEL_KIND == "mlp"
    config = None
    if origin == "file":
        config = tmp_path / "scalpbot.toml"
        config.write_text('[train]\nmodel = "mlpp"\n')
    else:
        monkeypatch.setenv("SCALPBOT_TRAIN__MODEL", "mlpp")
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    message = str(error.value)
    assert message.startswith("invalid setting train.model: unknown model kind 'mlpp' (did you mean 'mlp'?)")
    assert "\n" not in message


def test_a_registered_kind_is_accepted_by_the_settings_and_found_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mlp = model_kind("mlp")
    monkeypatch.setitem(MODEL_KINDS, "other", lambda: mlp)
    assert kind_names() == ["conv1d", "mlp", "other"]
    assert load_settings(None, {"train": {"model": "other"}}).train.model == "other"
    with pytest.raises(ModelError, match="registered with a kind named 'mlp'"):
        model_kind("other")  # the entry and the kind disagree on the name


def test_the_mlp_kind_implements_the_protocol_and_a_module_without_a_kind_is_refused() -> None:
    mlp = model_kind("mlp")
    assert isinstance(mlp, ModelKind)
    assert (mlp.name, mlp.artifact, mlp.cannot_fine_tune) == ("mlp", "model.keras", None)
    with pytest.raises(ModelError, match="scalpbot.ml.registry.DEFAULT_MODEL_KIND does not implement"):
        lazy_kind("scalpbot.ml.registry", "DEFAULT_MODEL_KIND")()


@pytest.mark.slow
def test_the_registry_and_the_settings_naming_a_kind_load_no_model_library() -> None:
    code = (
        "import json, sys\n"
        "from scalpbot.config import load_settings\n"
        "from scalpbot.ml.registry import kind_names\n"
        "assert load_settings(None, {'train': {'model': 'mlp'}}).train.model == 'mlp' and kind_names()\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
