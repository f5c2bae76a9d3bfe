"""Tests for worker.datasets: every loader reads small files in its real format, offline."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import math
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from keras.src.datasets.cifar import load_batch
from keras.utils import pad_sequences
from sklearn.model_selection import train_test_split

from hpo.core.errors import DatasetError
from hpo.core.schema import CNNConf, DatasetConf, DataSource, Modality, validate
from hpo.driver.cli import CONF_DIR
from tests.worker.conftest import GTSRB_COLOURS, write_gtsrb
from worker import datasets, gtsrb, keras_datasets
from worker.datasets import DatasetSplits, load_dataset

UNREACHABLE = "http://127.0.0.1:9/missing.npz"


def image_conf(name: str, shape: list[int], num_classes: int = 10, **kwargs: object) -> DatasetConf:
    source = DataSource.sklearn if name == "digits" else DataSource.keras
    return DatasetConf(
        name=name,
        modality=Modality.image,
        source=source,
        input_shape=shape,
        num_classes=num_classes,
        **kwargs,
    )


def text_conf(name: str, num_classes: int, length: int = 20, vocab_size: int = 50) -> DatasetConf:
    return DatasetConf(
        name=name,
        modality=Modality.text,
        source=DataSource.keras,
        input_shape=[length],
        num_classes=num_classes,
        vocab_size=vocab_size,
    )


def set_origin(monkeypatch: pytest.MonkeyPatch, name: str, origin: str, file_hash: str | None = None) -> None:
    """Point a single-file Keras dataset at another origin (and hash) for this test."""
    source = keras_datasets.KERAS_SOURCES[name]
    remote = dataclasses.replace(source.files[0], origin=origin, file_hash=file_hash)
    monkeypatch.setitem(keras_datasets.KERAS_SOURCES, name, dataclasses.replace(source, files=(remote,)))


def assert_splits(splits: DatasetSplits, n_train: int, validation_split: float, num_classes: int) -> None:
    n_val = math.ceil(n_train * validation_split)
    assert len(splits.x_val) == len(splits.y_val) == n_val
    assert len(splits.x_train) == len(splits.y_train) == n_train - n_val
    assert len(splits.x_test) == len(splits.y_test)
    assert splits.num_classes == num_classes
    for y in (splits.y_train, splits.y_val, splits.y_test):
        assert y.dtype == np.int32 and y.ndim == 1
        assert y.min() >= 0 and y.max() < num_classes


@pytest.mark.parametrize(
    ("name", "shape", "num_classes", "n_train"),
    [
        ("mnist", [28, 28, 1], 10, 50),
        ("fashion_mnist", [28, 28, 1], 10, 50),
        ("cifar10", [32, 32, 3], 10, 50),
        ("cifar100", [32, 32, 3], 100, 500),
    ],
)
def test_keras_images_load_from_cache(
    keras_cache: Path, name: str, shape: list[int], num_classes: int, n_train: int
) -> None:
    splits = load_dataset(image_conf(name, shape, num_classes), split_seed=0)
    assert_splits(splits, n_train, 0.2, num_classes)
    assert len(splits.x_test) == (100 if name == "cifar100" else 20)
    for x in (splits.x_train, splits.x_val, splits.x_test):
        assert x.dtype == np.float32 and list(x.shape[1:]) == shape
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert splits.x_train.max() == 1.0 and splits.x_train.min() == 0.0  # 0..255 scaled, not clipped


def test_cifar_channels_last_matches_keras_layout(keras_cache: Path) -> None:
    batch = load_batch(keras_cache / "datasets/cifar-10-batches-py-target/cifar-10-batches-py/test_batch")
    splits = load_dataset(image_conf("cifar10", [32, 32, 3]), split_seed=0)
    expected = batch[0].transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    np.testing.assert_array_equal(splits.x_test, expected)


@pytest.mark.parametrize(("name", "num_classes", "n_train"), [("imdb", 2, 40), ("reuters", 4, 64)])
def test_keras_text_loads_from_cache(keras_cache: Path, name: str, num_classes: int, n_train: int) -> None:
    splits = load_dataset(text_conf(name, num_classes), split_seed=0)
    assert_splits(splits, n_train, 0.2, num_classes)
    x = np.concatenate([splits.x_train, splits.x_val, splits.x_test])
    assert x.dtype == np.int32 and x.shape[1] == 20
    assert x.min() >= 0 and x.max() < 50
    assert (x == 2).any(), "raw ids >= vocab_size - 3 must become the OOV index 2"
    short = x[x[:, 0] == 0]  # pre-padded rows: zeros, then the start char 1
    assert len(short) and all(row[np.argmax(row != 0)] == 1 for row in short)


def test_text_encoding_matches_keras_conventions(keras_home: Path) -> None:
    datasets_dir = keras_home / "datasets"
    datasets_dir.mkdir()
    words = np.empty(4, dtype=object)
    words[:] = [[1, 2, 47], [5] * 30, [46, 47, 48], [7]]
    np.savez(
        datasets_dir / "imdb.npz",
        x_train=words[:2],
        y_train=np.array([0, 1]),
        x_test=words[2:],
        y_test=np.array([1, 0]),
    )
    raw = keras_datasets._parse_imdb([datasets_dir / "imdb.npz"])
    encoded = datasets._as_sequences(raw[0], text_conf("imdb", 2, length=5))
    np.testing.assert_array_equal(encoded, [[0, 1, 4, 5, 2], [8, 8, 8, 8, 8]])
    np.testing.assert_array_equal(
        datasets._as_sequences(raw[2], text_conf("imdb", 2, length=5)), [[0, 1, 49, 2, 2], [0, 0, 0, 1, 10]]
    )


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("mnist", image_conf("mnist", [28, 28, 1])),
        ("fashion_mnist", image_conf("fashion_mnist", [28, 28, 1])),
        ("cifar100", image_conf("cifar100", [32, 32, 3], num_classes=100)),
        ("imdb", text_conf("imdb", 2)),
        ("reuters", text_conf("reuters", 4)),
    ],
)
def test_test_split_agrees_with_keras_own_loader(
    keras_cache: Path, monkeypatch: pytest.MonkeyPatch, name: str, cfg: DatasetConf
) -> None:
    """Keras' load_data() on the same cached files (its get_file pointed at them) gives our test set."""
    module = importlib.import_module(f"keras.src.datasets.{name}")

    def cached(fname: str | None = None, origin: str | None = None, **kwargs: object) -> str:
        return str(keras_cache / str(kwargs.get("cache_subdir", "datasets")) / str(fname))

    monkeypatch.setattr(module, "get_file", cached)
    ours = load_dataset(cfg, split_seed=0)
    if cfg.modality == Modality.image:
        (_, _), (x_test, y_test) = module.load_data()
        expected = x_test.reshape(ours.x_test.shape).astype(np.float32) / 255.0
    else:
        (x_train, _), (x_test, y_test) = module.load_data(num_words=cfg.vocab_size)
        expected = pad_sequences(list(x_test), maxlen=cfg.input_shape[0])
        if name == "imdb":  # Keras shuffles imdb's test set after its train set; ours keeps file order
            rng = np.random.RandomState(113)
            rng.shuffle(np.arange(len(x_train)))
            order = np.arange(len(x_test))
            rng.shuffle(order)
            ours = dataclasses.replace(ours, x_test=ours.x_test[order], y_test=ours.y_test[order])
    np.testing.assert_array_equal(ours.x_test, expected)
    np.testing.assert_array_equal(ours.y_test, np.asarray(y_test).reshape(-1))


def test_digits_stratified_splits() -> None:
    splits = load_dataset(image_conf("digits", [8, 8, 1], validation_split=0.25), split_seed=3)
    assert len(splits.x_test) == 360  # fixed 20% of 1797
    assert_splits(splits, 1797 - 360, 0.25, 10)
    assert splits.x_train.dtype == np.float32 and splits.input_shape == (8, 8, 1)
    assert splits.x_train.max() == 1.0 and splits.x_train.min() == 0.0
    train_counts, val_counts = np.bincount(splits.y_train), np.bincount(splits.y_val)
    assert len(val_counts) == 10
    np.testing.assert_allclose(val_counts / (train_counts + val_counts), 0.25, atol=0.02)


def test_same_seed_same_split_and_test_set_fixed() -> None:
    cfg = image_conf("digits", [8, 8, 1])
    a, b, c = (load_dataset(cfg, split_seed=s) for s in (7, 7, 8))
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(a.x_test, c.x_test)
    assert not np.array_equal(a.y_val, c.y_val)


def test_keras_split_depends_only_on_seed(keras_cache: Path) -> None:
    cfg = image_conf("mnist", [28, 28, 1])
    a, b = load_dataset(cfg, split_seed=5), load_dataset(cfg, split_seed=5)
    np.testing.assert_array_equal(a.x_val, b.x_val)


def test_missing_dataset_unreachable_origin(keras_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_origin(monkeypatch, "mnist", UNREACHABLE, file_hash="0" * 64)
    target = keras_home / "datasets" / "mnist.npz"
    with pytest.raises(DatasetError) as info:
        load_dataset(image_conf("mnist", [28, 28, 1]), split_seed=0)
    message = str(info.value)
    assert "\n" not in message
    for part in ("'mnist'", str(target), UNREACHABLE, "network access", "copy the file", "KERAS_HOME"):
        assert part in message
    assert not target.exists()
    assert not list(keras_home.glob(".download-*")), "the staging dir must be removed"


def serve_from_file(keras_cache: Path, tmp_path: Path) -> tuple[Path, str]:
    """Move the cached mnist.npz out of the cache; return its new path and a file:// origin for it."""
    origin_file = tmp_path / "origin" / "mnist.npz"
    origin_file.parent.mkdir()
    shutil.move(keras_cache / "datasets" / "mnist.npz", origin_file)
    return origin_file, origin_file.as_uri()


def test_fresh_download_goes_through_get_file_and_is_verified(
    keras_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin_file, origin = serve_from_file(keras_cache, tmp_path)
    set_origin(monkeypatch, "mnist", origin, hashlib.sha256(origin_file.read_bytes()).hexdigest())
    splits = load_dataset(image_conf("mnist", [28, 28, 1]), split_seed=0)
    assert len(splits.x_test) == 20
    assert (keras_cache / "datasets" / "mnist.npz").read_bytes() == origin_file.read_bytes()


def test_download_failing_its_hash_leaves_nothing(
    keras_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, origin = serve_from_file(keras_cache, tmp_path)
    set_origin(monkeypatch, "mnist", origin, "0" * 64)
    with pytest.raises(DatasetError, match="hash"):
        load_dataset(image_conf("mnist", [28, 28, 1]), split_seed=0)
    assert not (keras_cache / "datasets" / "mnist.npz").exists()
    assert not list(keras_cache.glob(".download-*")), "the staging dir must be removed"


def test_cached_archive_is_extracted_by_get_file(keras_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_origin(monkeypatch, "cifar10", UNREACHABLE, "0" * 64)  # a cached archive needs no network or hash
    extracted = keras_cache / "datasets" / "cifar-10-batches-py-target"
    with tarfile.open(extracted.with_name("cifar-10-batches-py-target_archive"), "w:gz") as archive:
        archive.add(extracted / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    shutil.rmtree(extracted)
    splits = load_dataset(image_conf("cifar10", [32, 32, 3]), split_seed=0)
    assert len(splits.x_train) + len(splits.x_val) == 50
    assert (extracted / "cifar-10-batches-py" / "test_batch").is_file()
    assert extracted.with_name("cifar-10-batches-py-target_archive").is_file()


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(DatasetError, match=r"unknown dataset 'svhn'.*digits, mnist, fashion_mnist"):
        load_dataset(image_conf("svhn", [32, 32, 3]), split_seed=0)


def test_shape_mismatch(keras_cache: Path) -> None:
    with pytest.raises(DatasetError, match=r"shape \[28, 28, 1\] but dataset.input_shape is \[32, 32, 1\]"):
        load_dataset(image_conf("mnist", [32, 32, 1]), split_seed=0)


def test_num_classes_mismatch(keras_cache: Path) -> None:
    with pytest.raises(DatasetError, match=r"labels 0\.\.9 but dataset.num_classes is 100"):
        load_dataset(image_conf("cifar10", [32, 32, 3], num_classes=100), split_seed=0)


def test_modality_mismatch(keras_cache: Path) -> None:
    with pytest.raises(DatasetError, match="is text data from keras"):
        load_dataset(image_conf("imdb", [28, 28, 1], num_classes=2), split_seed=0)


def test_corrupt_cached_file(keras_cache: Path) -> None:
    target = keras_cache / "datasets" / "mnist.npz"
    target.write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match=f"cannot read the cached {target}.*delete {target}"):
        load_dataset(image_conf("mnist", [28, 28, 1]), split_seed=0)


def test_too_small_for_stratified_validation(keras_cache: Path) -> None:
    cfg = image_conf("mnist", [28, 28, 1], validation_split=0.1)  # 5 validation examples for 10 classes
    with pytest.raises(DatasetError, match="change dataset.validation_split"):
        load_dataset(cfg, split_seed=0)


def test_fraction_keeps_a_stratified_part_before_the_validation_split() -> None:
    full = load_dataset(image_conf("digits", [8, 8, 1]), split_seed=3)
    pool = np.concatenate([full.y_train, full.y_val])
    for fraction in (0.25, 0.5):
        part = load_dataset(image_conf("digits", [8, 8, 1], fraction=fraction), split_seed=3)
        kept = np.concatenate([part.y_train, part.y_val])
        assert abs(len(kept) - fraction * len(pool)) <= 1
        assert len(part.y_val) == math.ceil(len(kept) * 0.2)
        np.testing.assert_allclose(np.bincount(kept) / len(kept), np.bincount(pool) / len(pool), atol=0.01)
        np.testing.assert_array_equal(part.x_test, full.x_test)
        np.testing.assert_array_equal(part.y_test, full.y_test)


def test_fraction_depends_only_on_the_seed_and_one_changes_nothing() -> None:
    cfg = image_conf("digits", [8, 8, 1], fraction=0.3)
    a = load_dataset(cfg, split_seed=4)
    datasets._loaded.clear()
    b, c = load_dataset(cfg, split_seed=4), load_dataset(cfg, split_seed=5)
    assert a is not b
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.y_train, c.y_train)
    whole = load_dataset(image_conf("digits", [8, 8, 1], fraction=1.0), split_seed=4)
    raw = datasets._load_digits()
    x_train, x_val, _, _ = train_test_split(
        raw.x_train, raw.y_train, test_size=0.2, stratify=raw.y_train, random_state=4
    )
    np.testing.assert_array_equal(whole.x_train, x_train)
    np.testing.assert_array_equal(whole.x_val, x_val)


def test_fraction_too_small_to_keep_every_class(keras_cache: Path) -> None:
    cfg = image_conf("mnist", [28, 28, 1], fraction=0.1)  # 5 of 50 examples for 10 classes
    with pytest.raises(DatasetError, match=r"dataset.fraction=0.1 .*change dataset.fraction"):
        load_dataset(cfg, split_seed=0)


def test_loads_are_shared_and_read_only(keras_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = image_conf("mnist", [28, 28, 1])
    first = load_dataset(cfg, split_seed=0)
    (keras_cache / "datasets" / "mnist.npz").unlink()
    again = load_dataset(dataclasses.replace(cfg), split_seed=0)
    assert again is first, "the same config and seed must not read the files again"
    arrays = [first.x_train, first.y_train, first.x_val, first.y_val, first.x_test, first.y_test]
    assert not any(array.flags.writeable for array in arrays)
    with pytest.raises(ValueError, match="read-only"):
        first.x_train[0] = 0.0
    batch = next(iter(tf.data.Dataset.from_tensor_slices((first.x_train, first.y_train)).batch(8)))
    np.testing.assert_array_equal(batch[0].numpy(), first.x_train[:8])
    set_origin(monkeypatch, "mnist", UNREACHABLE)
    for other, seed in ((cfg, 1), (dataclasses.replace(cfg, fraction=0.8), 0)):
        with pytest.raises(DatasetError, match="not in the Keras cache"):
            load_dataset(other, seed)


def gtsrb_conf(shape: tuple[int, int] = (32, 32), num_classes: int = 3) -> DatasetConf:
    return DatasetConf(
        name="gtsrb",
        modality=Modality.image,
        source=DataSource.web,
        input_shape=[*shape, 3],
        num_classes=num_classes,
    )


def set_gtsrb_origins(monkeypatch: pytest.MonkeyPatch, origin: Callable[[str], str]) -> None:
    files = tuple(dataclasses.replace(r, origin=origin(r.fname)) for r in gtsrb.FILES)
    monkeypatch.setattr(gtsrb, "FILES", files)


@pytest.fixture(params=["downloaded", "archive_cached"])
def gtsrb_home(request: pytest.FixtureRequest, keras_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GTSRB's zips served from file:// origins, or already where get_file downloads them (no origin)."""
    zips = write_gtsrb(keras_home.parent / "origin")
    if request.param == "downloaded":
        set_gtsrb_origins(monkeypatch, lambda stem: zips[stem].as_uri())
    else:
        set_gtsrb_origins(monkeypatch, lambda stem: UNREACHABLE)
        folder = keras_home / "datasets" / "gtsrb"
        folder.mkdir(parents=True)
        for stem, path in zips.items():
            shutil.copy(path, folder / f"{stem}_archive")
    return keras_home


def test_gtsrb_fetches_crops_and_caches_the_decoded_images(gtsrb_home: Path) -> None:
    splits = load_dataset(gtsrb_conf(), split_seed=0)
    assert_splits(splits, 12, 0.2, 3)
    np.testing.assert_array_equal(splits.y_test, [0, 1, 2, 0, 1, 2])
    for x, y in (
        (splits.x_train, splits.y_train),
        (splits.x_val, splits.y_val),
        (splits.x_test, splits.y_test),
    ):
        assert x.dtype == np.float32 and x.shape[1:] == (32, 32, 3)
        colours = np.asarray(GTSRB_COLOURS, dtype=np.float32)[y] / 255.0
        np.testing.assert_array_equal(x, np.broadcast_to(colours[:, None, None, :], x.shape))
    folder = gtsrb_home / "datasets" / "gtsrb"
    assert (folder / "GTSRB_Final_Training_Images/GTSRB/Final_Training/Images/00002/GT-00002.csv").is_file()
    assert (folder / "GTSRB_Final_Test_Images/GTSRB/Final_Test/Images/00005.ppm").is_file()
    assert (folder / "GTSRB_Final_Test_GT/GT-final_test.csv").is_file()
    assert sorted(p.name for p in folder.glob("*.npz")) == ["gtsrb-32x32.npz"]
    assert (folder / "GTSRB_Final_Training_Images_archive").is_file()
    assert not list(gtsrb_home.glob(".download-*")) and not list(folder.glob(".*"))


def refuse_to_open(*args: object, **kwargs: object) -> None:
    raise AssertionError("an image was opened")


def test_gtsrb_later_loads_read_only_the_decoded_cache(
    gtsrb_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_dataset(gtsrb_conf(), split_seed=0)
    folder = gtsrb_home / "datasets" / "gtsrb"
    for path in folder.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.suffix != ".npz":
            path.unlink()
    set_gtsrb_origins(monkeypatch, lambda stem: UNREACHABLE)
    monkeypatch.setattr(gtsrb.Image, "open", refuse_to_open)
    again = load_dataset(gtsrb_conf(), split_seed=1)  # another seed: past the in-process memo
    np.testing.assert_array_equal(again.x_test, first.x_test)
    with pytest.raises(DatasetError, match="fetching it from"):  # the cache is per size
        load_dataset(gtsrb_conf(shape=(16, 16)), split_seed=0)


def test_gtsrb_missing_and_unreachable(keras_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_gtsrb_origins(monkeypatch, lambda stem: UNREACHABLE)
    with pytest.raises(DatasetError) as info:
        load_dataset(gtsrb_conf(), split_seed=0)
    message = str(info.value)
    assert "\n" not in message
    archive = keras_home / "datasets" / "gtsrb" / "GTSRB_Final_Training_Images_archive"
    for part in ("'gtsrb'", str(archive), UNREACHABLE, "network access", "KERAS_HOME"):
        assert part in message
    assert not list(keras_home.glob(".download-*")), "the staging dir must be removed"
    assert not archive.exists()


def test_gtsrb_corrupt_decoded_cache(keras_home: Path) -> None:
    decoded = keras_home / "datasets" / "gtsrb" / "gtsrb-32x32.npz"
    decoded.parent.mkdir(parents=True)
    decoded.write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match=f"cannot read the cached {decoded}.*delete {decoded}"):
        load_dataset(gtsrb_conf(), split_seed=0)


def test_gtsrb_config(hydra_restore_singletons: object) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed = compose(config_name="config", overrides=["dataset=gtsrb"])
    GlobalHydra.instance().clear()
    composed.launcher.backend = "local"
    cfg = validate(composed)
    assert cfg.dataset == gtsrb_conf(num_classes=43)
    assert isinstance(cfg.model, CNNConf)
