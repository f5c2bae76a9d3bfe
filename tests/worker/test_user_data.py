"""Tests for a dataset config's own loader (worker.loader_contract) and the ready loaders (worker.user_data).

The loaders below are real importable callables named by ``_target_``; the ready loaders read tiny real
files written here: PNG and JPEG images with Pillow, CSV and Parquet tables with pandas, ``.npz`` with NumPy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from hpo.core.errors import ConfigError, DatasetError
from hpo.core.schema import DatasetConf, validate
from hpo.driver.cli import CONF_DIR
from worker import datasets, loader_contract
from worker.datasets import load_dataset

HERE = __name__


def blobs(
    n: int = 60, classes: int = 3, features: int = 4, validation: int = 0, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Gaussian blobs, one per class, in float64 (as users' NumPy code makes them)."""
    rng = np.random.default_rng(seed)

    def pair(size: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(size) % classes
        return rng.normal(size=(size, features)) + y[:, None], y

    splits = {"train": pair(n), "test": pair(n // 3)}
    if validation:
        splits["validation"] = pair(validation)
    return splits


def as_tf_data(batch: int = 0) -> dict[str, Any]:
    """``blobs`` as tf.data datasets of (x, y), batched by ``batch`` (0: one example per element)."""
    import tensorflow as tf

    def dataset(pair: tuple[np.ndarray, np.ndarray]) -> Any:
        data = tf.data.Dataset.from_tensor_slices(pair)
        return data.batch(batch) if batch else data

    return {split: dataset(pair) for split, pair in blobs().items()}


BAD_RETURNS: dict[str, Any] = {
    "list": [np.zeros((4, 2)), np.zeros(4)],
    "no_test": {"train": (np.zeros((4, 2)), np.arange(4) % 2), "val": (np.zeros((2, 2)), np.arange(2))},
    "array_split": {"train": np.zeros((4, 2)), "test": (np.zeros((2, 2)), np.arange(2))},
    "lengths": {"train": (np.zeros((10, 2)), np.arange(9) % 2), "test": (np.zeros((2, 2)), np.arange(2))},
    "string_labels": {
        "train": (np.zeros((4, 2)), np.array(["cat", "dog", "cat", "dog"])),
        "test": (np.zeros((2, 2)), np.array(["cat", "dog"])),
    },
    "one_hot": {
        "train": (np.zeros((4, 2)), np.eye(2)[[0, 1, 0, 1]]),
        "test": (np.zeros((2, 2)), np.arange(2)),
    },
    "flat_x": {"train": (np.zeros(4), np.arange(4) % 2), "test": (np.zeros(2), np.arange(2))},
    "shapes": {"train": (np.zeros((4, 2)), np.arange(4) % 2), "test": (np.zeros((2, 3)), np.arange(2))},
    "one_class": {"train": (np.zeros((4, 2)), np.zeros(4)), "test": (np.zeros((2, 2)), np.zeros(2))},
    "no_class_1": {
        "train": (np.zeros((4, 2)), np.array([0, 2, 0, 2])),
        "test": (np.zeros((3, 2)), np.arange(3)),
    },
}


def returning(what: str) -> Any:
    """A loader returning one of ``BAD_RETURNS``."""
    return BAD_RETURNS[what]


def missing_file(path: str) -> Any:
    """A loader that fails the way a user's does when its file is not there."""
    return np.load(path)


def loader_conf(target: str, **kwargs: Any) -> DatasetConf:
    """A loader dataset config, checked as the driver checks it."""
    settings = kwargs.pop("settings", {})
    return DatasetConf(name="mine", loader={"_target_": f"{HERE}.{target}", **kwargs}, **settings)


def load(target: str, split_seed: int = 0, **kwargs: Any) -> datasets.DatasetSplits:
    return load_dataset(loader_conf(target, **kwargs), split_seed=split_seed)


@pytest.fixture(autouse=True)
def _fresh_memo() -> Iterator[None]:
    datasets._loaded.clear()
    yield
    datasets._loaded.clear()


def one_line_error(target: str, **kwargs: Any) -> str:
    with pytest.raises(DatasetError) as info:
        load(target, **kwargs)
    message = str(info.value)
    assert "\n" not in message and f"loader {HERE}.{target}" in message
    return message


# --- the contract


def test_arrays_are_split_stratified_and_seeded_like_a_built_in_dataset() -> None:
    splits = load("blobs", split_seed=3)
    raw = blobs()
    assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (48, 12, 20)
    assert np.bincount(splits.y_val).tolist() == [4, 4, 4]
    assert splits.num_classes == 3 and splits.input_shape == (4,)
    assert splits.x_train.dtype == np.float32 and splits.y_train.dtype == np.int32
    np.testing.assert_array_equal(splits.x_test, raw["test"][0].astype(np.float32))
    assert load("blobs", split_seed=3) is splits, "the per-process memo covers loaders too"
    assert not splits.x_train.flags.writeable
    other = load("blobs", split_seed=4)
    assert not np.array_equal(other.y_val, splits.y_val) or not np.array_equal(other.x_val, splits.x_val)
    datasets._loaded.clear()
    np.testing.assert_array_equal(load("blobs", split_seed=3).x_val, splits.x_val)


def test_fraction_keeps_a_stratified_part_and_a_given_validation_split_is_used_whole() -> None:
    part = load("blobs", settings={"fraction": 0.5})
    assert len(part.y_train) + len(part.y_val) == 30 and np.bincount(part.y_val).tolist() == [2, 2, 2]
    given = load("blobs", validation=9, settings={"fraction": 0.5})
    assert (len(given.y_train), len(given.y_val), len(given.y_test)) == (30, 9, 20)
    np.testing.assert_array_equal(given.y_val, np.arange(9) % 3)


@pytest.mark.parametrize("batch", [0, 7])
def test_tf_data_datasets_are_read_into_the_same_arrays(batch: int) -> None:
    from_tf = load("as_tf_data", batch=batch)
    from_arrays = load("blobs")
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(from_tf, field), getattr(from_arrays, field))


def test_tf_data_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_contract, "MATERIALISE_LIMIT_BYTES", 1024)
    assert "tf.data.Dataset holds over" in one_line_error("as_tf_data", batch=8)


def test_num_classes_and_input_shape_when_given_are_checked() -> None:
    splits = load("blobs", settings={"num_classes": 3, "input_shape": [4]})
    assert splits.num_classes == 3
    message = one_line_error("blobs", classes=5, settings={"num_classes": 3})
    assert "labels run 0..4 but dataset.num_classes is 3; set it to 5" in message
    assert "shape [4] but dataset.input_shape is [2, 2]" in one_line_error(
        "blobs", settings={"input_shape": [2, 2]}
    )


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("list", "returned a list of 2 items; return {'train': (x, y), 'test': (x, y)}"),
        ("no_test", "returned a mapping with keys ['train', 'val']"),
        ("array_split", "its 'train' is a ndarray of shape (4, 2) and dtype float64; give an (x, y) pair"),
        ("lengths", "its train split has 10 examples in x but 9 labels in y"),
        (
            "string_labels",
            "its train labels are strings (the first: 'cat'); labels must be integer class ids",
        ),
        ("one_hot", "its train y is a ndarray of shape (4, 2) and dtype float64; give one integer class id"),
        ("flat_x", "its train x is a ndarray of shape (4,) and dtype float64; give one row of numbers"),
        ("shapes", "its splits' examples differ in shape: {'train': [2], 'test': [3]}"),
        ("one_class", "its labels hold one class (0); a classifier needs at least 2"),
        ("no_class_1", "class 1 has no training example (labels run 0..2)"),
    ],
)
def test_a_loader_breaking_the_contract_is_one_line_naming_what_it_returned(what: str, expected: str) -> None:
    assert expected in one_line_error("returning", what=what)


def test_a_failing_loader_is_one_line_with_its_own_error(tmp_path: Path) -> None:
    message = one_line_error("missing_file", path=str(tmp_path / "gone.npy"))
    assert (
        f"failed: FileNotFoundError: [Errno 2] No such file or directory: '{tmp_path / 'gone.npy'}'"
        in message
    )
    assert "unexpected keyword argument 'pth'" in one_line_error("missing_file", pth="x")


def test_the_driver_finds_the_loader_module_without_importing_it() -> None:
    with pytest.raises(ConfigError, match=r"^dataset.loader._target_=my_pkg.loaders.load: no module named"):
        DatasetConf(name="mine", loader={"_target_": "my_pkg.loaders.load"})
    with pytest.raises(ConfigError, match="dataset.loader._target_ must be a dotted path"):
        DatasetConf(name="mine", loader={"path": "x"})
    with pytest.raises(ConfigError, match="dataset.source must be left out with dataset.loader, got 'keras'"):
        DatasetConf(name="mine", loader={"_target_": f"{HERE}.blobs"}, source="keras")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"dataset.num_classes must be set \(or name a dataset.loader\)"):
        DatasetConf(name="digits", modality="image", source="sklearn", input_shape=[8, 8, 1])  # type: ignore[arg-type]


# --- the ready loaders

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def write_images(root: Path, per_class: int = 5, size: tuple[int, int] = (12, 10)) -> Path:
    """One folder per colour of solid images, PNG and JPEG alternating, sizes (width, height) given."""
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", size, colour).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / "red" / "notes.txt").write_text("not an image")
    return root


def image_conf(path: Path, **kwargs: Any) -> DatasetConf:
    return DatasetConf(
        name="colours",
        loader={
            "_target_": "worker.user_data.image_folder",
            "path": str(path),
            "image_size": [6, 8],
            **kwargs,
        },
    )


def test_image_folder_reads_resizes_and_numbers_classes_by_folder_name(tmp_path: Path) -> None:
    splits = load_dataset(image_conf(write_images(tmp_path / "images")), split_seed=0)
    assert splits.input_shape == (6, 8, 3) and splits.num_classes == 3
    assert len(splits.y_test) == 3 and len(splits.y_train) + len(splits.y_val) == 12
    ordered = [COLOURS[name] for name in sorted(COLOURS)]  # blue 0, green 1, red 2
    for x, y in ((splits.x_train, splits.y_train), (splits.x_test, splits.y_test)):
        assert x.dtype == np.float32
        np.testing.assert_allclose(x.mean(axis=(1, 2)), np.asarray(ordered)[y] / 255.0, atol=0.02)
    grey = load_dataset(image_conf(tmp_path / "images", color_mode="grayscale"), split_seed=0)
    assert grey.input_shape == (6, 8, 1)


def test_image_folder_with_a_test_folder(tmp_path: Path) -> None:
    cfg = image_conf(write_images(tmp_path / "train"), test_path=str(write_images(tmp_path / "test", 2)))
    splits = load_dataset(cfg, split_seed=0)
    assert np.bincount(splits.y_test).tolist() == [2, 2, 2] and len(splits.y_train) + len(splits.y_val) == 15


def test_image_folder_bad_input(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"no folder .*gone \(a relative path is read from the directory hpo"
    ):
        load_dataset(image_conf(tmp_path / "gone"), split_seed=0)
    (tmp_path / "one" / "cats").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"holds 1 class folder\(s\) \['cats'\]; it needs one subfolder"):
        load_dataset(image_conf(tmp_path / "one"), split_seed=0)
    (tmp_path / "one" / "dogs").mkdir()
    with pytest.raises(DatasetError, match=r"the class folder .*cats holds no PNG or JPEG images"):
        load_dataset(image_conf(tmp_path / "one"), split_seed=0)
    root = write_images(tmp_path / "broken")
    (root / "red" / "9.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"cannot read the image .*red/9.png"):
        load_dataset(image_conf(root), split_seed=0)
    with pytest.raises(
        DatasetError, match=r"dataset.loader.color_mode must be one of \['grayscale', 'rgb'\]"
    ):
        load_dataset(image_conf(root, color_mode="cmyk"), split_seed=0)


def write_table(path: Path, rows: int = 30, **extra: Any) -> Path:
    rng = np.random.default_rng(0)
    species = np.array(["setosa", "virginica", "versicolor"])[np.arange(rows) % 3]
    frame = pd.DataFrame(
        {
            "length": rng.normal(10.0, 2.0, rows) + (np.arange(rows) % 3),
            "count": np.arange(rows) % 5,
            "site": np.array(["north", "south"])[np.arange(rows) % 2],
            "species": species,
            **extra,
        }
    )
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


def table_conf(path: Path | str, target: str = "species", **kwargs: Any) -> DatasetConf:
    loader = {"_target_": "worker.user_data.table", "path": str(path), "target": target, **kwargs}
    return DatasetConf(name="flowers", loader=loader)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_maps_the_target_to_ids_one_hot_encodes_text_and_standardises_numbers(
    tmp_path: Path, suffix: str
) -> None:
    splits = load_dataset(table_conf(write_table(tmp_path / f"flowers{suffix}")), split_seed=0)
    assert splits.input_shape == (4,), "length, count, site=north, site=south"
    assert splits.num_classes == 3 and len(splits.y_test) == 6
    x = np.concatenate([splits.x_train, splits.x_val, splits.x_test])
    y = np.concatenate([splits.y_train, splits.y_val, splits.y_test])
    np.testing.assert_allclose(
        np.concatenate([splits.x_train, splits.x_val])[:, :2].mean(axis=0), 0, atol=1e-5
    )
    assert set(np.unique(x[:, 2:])) == {0.0, 1.0} and (x[:, 2:].sum(axis=1) == 1).all()
    assert np.bincount(y).tolist() == [10, 10, 10]  # setosa 0, versicolor 1, virginica 2


def test_table_with_a_test_table_and_raw_features(tmp_path: Path) -> None:
    cfg = table_conf(
        write_table(tmp_path / "train.csv"),
        test_path=str(write_table(tmp_path / "test.csv", 9)),
        standardize=False,
    )
    splits = load_dataset(cfg, split_seed=0)
    assert len(splits.y_test) == 9 and np.isin(splits.x_test[:, 1], np.arange(5)).all()


def test_table_bad_input(tmp_path: Path) -> None:
    path = write_table(tmp_path / "flowers.csv")
    with pytest.raises(
        DatasetError, match="has no target column 'label'; its columns are: length, count, site, species"
    ):
        load_dataset(table_conf(path, target="label"), split_seed=0)
    gaps = write_table(tmp_path / "gaps.csv", note=[1.0, np.nan] * 15)
    with pytest.raises(DatasetError, match=r"missing values in columns \['note'\]; fill or drop them"):
        load_dataset(table_conf(gaps), split_seed=0)
    (tmp_path / "flowers.xlsx").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"the suffix must be one of .csv, .parquet, .pq"):
        load_dataset(table_conf(tmp_path / "flowers.xlsx"), split_seed=0)
    with pytest.raises(DatasetError, match=r"no file .*missing.csv \(a relative path is read from"):
        load_dataset(table_conf(tmp_path / "missing.csv"), split_seed=0)
    with pytest.raises(DatasetError, match=r"cannot hold out test_split=0.2 stratified"):
        load_dataset(table_conf(write_table(tmp_path / "tiny.csv", 4)), split_seed=0)


def test_a_pkg_path_is_read_from_the_package_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pkg://`` finds data shipped inside the user's package, wherever hpo runs (a RunPod worker)."""
    (tmp_path / "flowerpkg" / "data").mkdir(parents=True)
    (tmp_path / "flowerpkg" / "__init__.py").write_text("")
    write_table(tmp_path / "flowerpkg" / "data" / "flowers.csv")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path / "flowerpkg" / "data")
    splits = load_dataset(table_conf("pkg://flowerpkg/data/flowers.csv"), split_seed=0)
    assert splits.num_classes == 3 and len(splits.y_test) == 6
    with pytest.raises(DatasetError, match=r"no file .*flowerpkg/data/gone.csv in the package 'flowerpkg'"):
        load_dataset(table_conf("pkg://flowerpkg/data/gone.csv"), split_seed=0)
    with pytest.raises(DatasetError, match=r"pkg://weedpkg/a.csv: no package 'weedpkg' to read it from"):
        load_dataset(table_conf("pkg://weedpkg/a.csv"), split_seed=0)


def npz_arrays(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """x_train, y_train, x_test, ... as ``np.savez`` takes them."""
    return {
        f"{part}_{split}": a for split, pair in splits.items() for part, a in zip("xy", pair, strict=True)
    }


def npz_conf(path: Path) -> DatasetConf:
    return DatasetConf(name="arrays", loader={"_target_": "worker.user_data.npz", "path": str(path)})


def test_npz_with_and_without_a_validation_split(tmp_path: Path) -> None:
    raw = blobs(validation=6)
    arrays = npz_arrays({"train": raw["train"], "test": raw["test"]})
    np.savez(tmp_path / "plain.npz", **arrays)
    assert len(load_dataset(npz_conf(tmp_path / "plain.npz"), split_seed=0).y_val) == 12
    np.savez(tmp_path / "val.npz", **arrays, x_val=raw["validation"][0], y_val=raw["validation"][1])
    splits = load_dataset(npz_conf(tmp_path / "val.npz"), split_seed=0)
    np.testing.assert_array_equal(splits.x_val, raw["validation"][0].astype(np.float32))
    (tmp_path / "text.npz").write_text("x,y\n1,0\n")
    with pytest.raises(DatasetError, match=r"text.npz is not an .npz file \(np.savez writes one\)"):
        load_dataset(npz_conf(tmp_path / "text.npz"), split_seed=0)
    np.savez(tmp_path / "half.npz", **arrays, x_val=raw["validation"][0])
    with pytest.raises(
        DatasetError, match=r"lacks \['y_val'\]; it holds \['x_test', 'x_train', 'x_val', 'y_test'"
    ):
        load_dataset(npz_conf(tmp_path / "half.npz"), split_seed=0)


def test_shipped_dataset_configs_need_only_their_paths(
    tmp_path: Path, hydra_restore_singletons: object
) -> None:
    """conf/dataset/{table,npz,image_folder}.yaml compose, validate and load with their paths set."""
    table = write_table(tmp_path / "flowers.csv")
    np.savez(tmp_path / "arrays.npz", **npz_arrays(blobs()))
    images = write_images(tmp_path / "images")
    cases = {
        "table": [f"dataset.loader.path={table}", "dataset.loader.target=species"],
        "npz": [f"dataset.loader.path={tmp_path / 'arrays.npz'}"],
        "image_folder": [f"dataset.loader.path={images}"],
    }
    for name, overrides in cases.items():
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            composed = compose(config_name="config", overrides=[f"dataset={name}", *overrides])
            unset = compose(config_name="config", overrides=[f"dataset={name}"])
        GlobalHydra.instance().clear()
        for cfg in (composed, unset):
            cfg.launcher.backend = "local"
        assert load_dataset(validate(composed).dataset, split_seed=0).num_classes == 3
        with pytest.raises(ConfigError, match=r"^dataset.loader.path: Missing mandatory value"):
            validate(unset)
