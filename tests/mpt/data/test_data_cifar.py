from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from mpt.data import load_cifar
from mpt.errors import DatasetError


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def _dump(path: Path, payload: object, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps(payload, protocol=protocol))


def test_load_cifar_reads_cifar10_batches(cifar10_dir: Path) -> None:
    dataset = load_cifar(cifar10_dir)
    assert dataset.classes == ["airplane", "automobile", "bird"]
    assert dataset.splits["train"].x.shape == (20, 3, 32, 32)
    assert len(dataset.splits["test"]) == 3
    assert dataset.augment == "crop_flip"


def test_load_cifar_keeps_row_major_channel_planes(cifar10_dir: Path) -> None:
    with (cifar10_dir / "data_batch_1").open("rb") as file:
        raw = pickle.load(file, encoding="bytes")
    first = load_cifar(cifar10_dir).splits["train"].x[0]
    assert np.array_equal(first.numpy(), raw[b"data"][0].reshape(3, 32, 32))


def test_load_cifar_reads_cifar100_fine_labels(cifar100_dir: Path) -> None:
    dataset = load_cifar(cifar100_dir)
    assert dataset.classes == ["apple", "bear", "bed", "bee"]
    assert len(dataset.splits["train"]) == 6


def test_load_cifar_reads_protocol_5_arrays(cifar10_dir: Path) -> None:
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    _dump(cifar10_dir / "test_batch", batch, protocol=5)
    assert load_cifar(cifar10_dir).splits["test"].y.tolist() == [0, 1]


def test_load_cifar_refuses_arbitrary_globals(cifar10_dir: Path) -> None:
    _dump(cifar10_dir / "data_batch_3", {b"data": _Exploit(), b"labels": []})
    with pytest.raises(DatasetError, match=r"refusing to load global (posix|nt)\.system"):
        load_cifar(cifar10_dir)


def test_load_cifar_names_missing_batch(cifar10_dir: Path) -> None:
    (cifar10_dir / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match="data_batch_4: missing CIFAR file"):
        load_cifar(cifar10_dir)


def test_load_cifar_rejects_wrong_data_shape(cifar10_dir: Path) -> None:
    _dump(cifar10_dir / "test_batch", {b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DatasetError, match=r"test_batch: 'data' must be uint8 \(N, 3072\)"):
        load_cifar(cifar10_dir)


def test_load_cifar_names_missing_key(cifar10_dir: Path) -> None:
    _dump(cifar10_dir / "test_batch", {b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(DatasetError, match="test_batch: missing key 'labels'"):
        load_cifar(cifar10_dir)


def test_load_cifar_rejects_labels_outside_classes(cifar10_dir: Path) -> None:
    _dump(cifar10_dir / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 9]})
    with pytest.raises(DatasetError, match=r"labels outside 0\.\.2"):
        load_cifar(cifar10_dir)


def test_load_cifar_rejects_truncated_pickle(cifar10_dir: Path) -> None:
    path = cifar10_dir / "data_batch_2"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="data_batch_2: not a CIFAR python-format pickle"):
        load_cifar(cifar10_dir)


def test_load_cifar_rejects_folder_without_meta(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a CIFAR python folder"):
        load_cifar(tmp_path)
