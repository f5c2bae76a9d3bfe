"""The CLI as a user meets it: help, the composed config, and one clear line for every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import RunHPO


def test_help_lists_groups_and_options(run_hpo: RunHPO) -> None:
    out = run_hpo(["--help"])
    assert out.returncode == 0, out.stderr
    for line in (
        "dataset: cifar10, cifar100, digits, fashion_mnist, gtsrb, image_folder, imdb, mnist, npz, reuters, "
        "table",
        "hardware: cpu, local_1gpu, local_2gpu",
        "mode: health, simple",
        "model: cnn, lstm, mlp",
    ):
        assert line in out.stdout
    groups = out.stdout.split("== Config groups")[1].split("== Config (")[0]
    assert "schema" not in groups, "internal schema configs are not offered as options"


def test_cfg_job_prints_the_composed_config(run_hpo: RunHPO) -> None:
    out = run_hpo(["--cfg", "job", "dataset=imdb", "trainer.max_epochs=3", "launcher.workers=4"])
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["dataset"]["name"] == "imdb"
    assert cfg["model"]["_target_"] == "worker.models.lstm", "text data picks the lstm family"
    assert cfg["trainer"]["max_epochs"] == 3
    assert cfg["launcher"]["workers"] == 4


def test_model_override_beats_the_modality_default(run_hpo: RunHPO) -> None:
    out = run_hpo(["--cfg", "all", "--resolve", "dataset=mnist", "model=lstm", "launcher.workers=3"])
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["model"]["_target_"] == "worker.models.lstm"
    assert "model.units" in cfg["hydra"]["sweeper"]["params"], "the search space follows the model family"
    assert cfg["hydra"]["launcher"]["workers"] == 3
    assert cfg["hydra"]["sweeper"]["n_jobs"] == 3


@pytest.mark.parametrize(
    "args, expected",
    [
        (["dataset=imagenet"], "dataset/imagenet"),
        (["model=transformer"], "model/transformer"),
        (["-m", "model.filters=choice(8,16"], "model.filters=choice(8,16"),
        (["-m", "model.dropout=interval(0.5)"], "missing a required argument: 'end'"),
        (["-m", "launcher.workers=0"], "launcher.workers must be at least 1, got 0"),
        (["-m", "trainer.max_epochs=-2"], "trainer.max_epochs must be at least 1, got -2"),
        (["trainer.max_epochs=-2"], "trainer.max_epochs must be at least 1, got -2"),
        (["trainer.max_epoch=3"], "max_epoch"),
        (["trainer.max_epochs=three"], "three"),
        (["-m", "dataset.validation_split=1.5"], "dataset.validation_split"),
    ],
    ids=[
        "unknown-dataset",
        "unknown-model",
        "malformed-search-space",
        "bad-distribution",
        "zero-workers",
        "negative-epochs-sweep",
        "negative-epochs-run",
        "misspelt-key",
        "wrong-type",
        "out-of-range",
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(run_hpo: RunHPO, args: list[str], expected: str) -> None:
    out = run_hpo(args)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Traceback" not in out.stderr + out.stdout


def test_malformed_search_space_in_a_config_file(run_hpo: RunHPO, tmp_path: Path) -> None:
    space = tmp_path / "conf" / "search_space"
    space.mkdir(parents=True)
    (space / "broken.yaml").write_text("model.filters: choice(8, 16\nmodel.dropout: interval(0.1, 0.3)\n")
    out = run_hpo(["-m", "--config-dir", str(tmp_path / "conf"), "search_space@hydra.sweeper.params=broken"])
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: bad override 'model.filters=choice(8, 16': no viable alternative at input 'choice(8, 16' "
        "See https://hydra.cc/docs/1.2/advanced/override_grammar/basic for details"
    ]
    assert not (tmp_path / "mlflow.db").exists(), "nothing is recorded for a sweep that cannot start"


def test_debug_variable_shows_the_traceback(run_hpo: RunHPO) -> None:
    out = run_hpo(["trainer.max_epochs=-2"], HPO_DEBUG="1")
    assert out.returncode != 0
    assert "Traceback" in out.stderr
    assert "ConfigError" in out.stderr
