"""softmax_core.data against the real Fashion-MNIST and MNIST files ($SOFTMAX_DATA_DIR), broken copies of them,
the Debian package layout and loopback download mirrors. Nothing here leaves the machine except the optional
`apt-get download dataset-fashion-mnist` (Debian's package registry), and only when $SOFTMAX_DEBIAN_DEB is unset.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from softmax_core import data
from softmax_core.data import FILES, DataError, load_dataset
from tests.conftest import as_other_user

REPO = Path(__file__).resolve().parents[1]
NAMES = tuple(FILES.values())  # the four .gz file names
OFFICIAL_MD5 = {  # the MD5s the upstream projects publish: the gold reference, not copied from data.py
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
}
ORIGINAL_SPECS = dict(data.DATASETS)
FIXTURE = {"fashion-mnist": "fashion", "mnist": "mnist"}  # data set -> the session fixture holding it loaded


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: the real data, isolation from this machine's data and from the internet


@pytest.fixture(scope="session")
def real_bytes(data_root: Path) -> dict[str, dict[str, bytes]]:
    """The eight official .gz files as bytes: {dataset: {file name: bytes}}."""
    return {ds: {f: (data_root / ds / f).read_bytes() for f in NAMES} for ds in data.DATASETS}


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every test starts with no data roots, an empty cache and no mirror outside this machine."""
    for var in ("SOFTMAX_DATA_DIR", "SOFTMAX_DATA_MIRRORS", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # loopback mirrors are reached directly
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    cache = tmp_path / "empty-cache"
    monkeypatch.setenv("SOFTMAX_CACHE_DIR", str(cache))
    monkeypatch.setattr(data, "SYSTEM_ROOTS", ())
    for name, spec in ORIGINAL_SPECS.items():  # the official mirrors are on the internet: never try them
        monkeypatch.setitem(data.DATASETS, name, dataclasses.replace(spec, mirrors=()))
    return cache


def _link_folder(folder: Path, source: Path, names=NAMES) -> Path:
    """folder/ with symlinks to the given real files of source/ (cheap copies of a data set)."""
    folder.mkdir(parents=True)
    for f in names:
        (folder / f).symlink_to(source / f)
    return folder


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# 1. The real data sets


def test_fashion_mnist_loads_with_official_shapes_labels_and_statistics(fashion, data_root):
    assert fashion.source == data_root / "fashion-mnist"
    assert fashion.title == "Fashion-MNIST"
    assert fashion.class_names == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                   "Sneaker", "Bag", "Ankle boot")
    assert fashion.train_images.shape == (60000, 28, 28)
    assert fashion.train_labels.shape == (60000,)
    assert fashion.test_images.shape == (10000, 28, 28)
    assert fashion.test_labels.shape == (10000,)
    assert fashion.train_labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert fashion.test_labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(fashion.train_labels, minlength=10).tolist() == [6000] * 10
    assert np.bincount(fashion.test_labels, minlength=10).tolist() == [1000] * 10
    assert round(float(fashion.train_images.mean()), 4) == 72.9404
    assert round(float(fashion.test_images.mean()), 4) == 73.1466


def test_mnist_loads_with_official_shapes_labels_and_statistics(mnist, data_root):
    assert mnist.source == data_root / "mnist"
    assert mnist.class_names == tuple("0123456789")
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.train_labels.shape == (60000,)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.test_labels.shape == (10000,)
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(mnist.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(mnist.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert round(float(mnist.train_images.mean()), 4) == 33.3184


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
@pytest.mark.parametrize("field", ["train_images", "train_labels", "test_images", "test_labels"])
def test_arrays_are_uint8_and_read_only(request, name, field):
    array = getattr(request.getfixturevalue(FIXTURE[name]), field)
    assert array.dtype == np.uint8
    assert not array.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        array[0] = 1


def test_specs_hold_the_official_md5s_which_the_real_files_match(real_bytes):
    assert {name: spec.md5 for name, spec in data.DATASETS.items()} == OFFICIAL_MD5
    for name, files in real_bytes.items():
        assert {f: hashlib.md5(raw).hexdigest() for f, raw in files.items()} == OFFICIAL_MD5[name]


def test_unknown_dataset_name_is_a_data_error_listing_the_choices():
    with pytest.raises(DataError, match="fashion-mnist, mnist"):
        load_dataset("cifar10", download=False)


# ---------------------------------------------------------------------------------------------------------------
# 2. Where the data is looked for


def test_search_order_explicit_root_then_env_then_system_then_cache(tmp_path, data_root, monkeypatch):
    roots = {k: tmp_path / k for k in ("explicit", "env", "system", "cache")}
    for root in roots.values():
        _link_folder(root / "mnist", data_root / "mnist")
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(roots["env"]))
    monkeypatch.setattr(data, "SYSTEM_ROOTS", (tmp_path / "system-without-data", roots["system"]))

    def source(root=None):
        return load_dataset("mnist", root, download=False, cache_dir=roots["cache"]).source

    assert source(roots["explicit"]) == roots["explicit"] / "mnist"
    assert source() == roots["env"] / "mnist"
    with pytest.raises(DataError, match="does not exist"):  # an explicit root is the only place read, never replaced
        source(tmp_path / "nowhere")
    monkeypatch.delenv("SOFTMAX_DATA_DIR")
    assert source() == roots["system"] / "mnist"  # the first system root has no mnist/: skipped
    monkeypatch.setattr(data, "SYSTEM_ROOTS", ())
    assert source() == roots["cache"] / "mnist"


def test_env_cache_dir_is_the_default_cache(tmp_path, data_root, monkeypatch):
    _link_folder(tmp_path / "my-cache" / "mnist", data_root / "mnist")
    monkeypatch.setenv("SOFTMAX_CACHE_DIR", str(tmp_path / "my-cache"))
    assert load_dataset("mnist", download=False).source == tmp_path / "my-cache" / "mnist"


@pytest.mark.parametrize("missing", ["train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"])
def test_folder_with_some_files_is_an_error_naming_the_missing_file(tmp_path, data_root, monkeypatch, missing):
    _link_folder(tmp_path / "partial" / "mnist", data_root / "mnist", [f for f in NAMES if f != missing])
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(data_root))  # complete, but after the partial root: not used
    with pytest.raises(DataError) as info:
        load_dataset("mnist", tmp_path / "partial", download=False)
    message = str(info.value)
    assert missing in message
    assert str(tmp_path / "partial" / "mnist") in message
    assert "Copy the missing file" in message
    assert all(f not in message for f in NAMES if f != missing)


def test_nothing_found_without_download_lists_the_places_looked_at(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", download=False, cache_dir=tmp_path / "cache")
    message = str(info.value)
    for looked in ("env", "cache"):
        assert str(tmp_path / looked / "fashion-mnist") in message
    assert "downloading is switched off" in message
    assert "SOFTMAX_DATA_DIR" in message and "apt install dataset-fashion-mnist" in message


# ---------------------------------------------------------------------------------------------------------------
# 3. The Debian package dataset-fashion-mnist: its .gz headers differ from upstream, its content does not


@pytest.fixture(scope="session")
def debian_datasets(tmp_path_factory) -> Path:
    """/usr/share/datasets of the extracted .deb ($SOFTMAX_DEBIAN_DEB, else `apt-get download`)."""
    tmp = tmp_path_factory.mktemp("debian")

    def unavailable(why: str):
        message = f"cannot get the Debian package dataset-fashion-mnist: {why}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: this test must run)", pytrace=False)
        pytest.skip(message + " (set SOFTMAX_DEBIAN_DEB=/path/to/the.deb)")

    if os.environ.get("SOFTMAX_DEBIAN_DEB"):
        deb = Path(os.environ["SOFTMAX_DEBIAN_DEB"])
        if not deb.is_file():  # a wrong setting is an error, not a reason to skip
            pytest.fail(f"SOFTMAX_DEBIAN_DEB={deb} is not a file", pytrace=False)
    else:
        if not shutil.which("apt-get"):
            unavailable("apt-get is not installed")
        try:
            run = subprocess.run(["apt-get", "download", "dataset-fashion-mnist"], cwd=tmp,
                                 capture_output=True, text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            unavailable("apt-get download timed out")
        debs = sorted(tmp.glob("dataset-fashion-mnist_*.deb"))
        if run.returncode != 0 or not debs:
            unavailable(f"apt-get download failed: {run.stderr.strip()[-500:]}")
        deb = debs[0]
    if not shutil.which("dpkg-deb"):
        unavailable("dpkg-deb is not installed")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], check=True, capture_output=True)
    return tmp / "root" / "usr" / "share" / "datasets"


def test_debian_package_layout_loads_the_same_arrays(debian_datasets, fashion, data_root, monkeypatch):
    folder = debian_datasets / "fashion-mnist"
    assert sorted(p.name for p in folder.glob("*.gz")) == sorted(NAMES)
    for f in NAMES:  # Debian rewrote the gzip headers, so the files are not the official bytes
        assert _md5(folder / f) != OFFICIAL_MD5["fashion-mnist"][f]
    monkeypatch.setattr(data, "SYSTEM_ROOTS", (debian_datasets,))
    debian = load_dataset("fashion-mnist", download=False)
    assert debian.source == folder
    for field in FILES:
        assert np.array_equal(getattr(debian, field), getattr(fashion, field)), field


# ---------------------------------------------------------------------------------------------------------------
# 4. Broken files: each is a DataError naming the file and saying what to do


def _gz(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=1, mtime=0)


def _with(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value):]


BROKEN = {  # case -> (file replaced, how to make it from the real .gz bytes, words the message must hold)
    "truncated gzip": ("train-images-idx3-ubyte.gz", lambda gz: gz[: len(gz) // 2], "not a complete gzip file"),
    "not gzip": ("t10k-labels-idx1-ubyte.gz", gzip.decompress, "not a complete gzip file"),
    "empty file": ("t10k-labels-idx1-ubyte.gz", lambda gz: b"", "too short"),
    "images where labels belong": ("t10k-labels-idx1-ubyte.gz", lambda gz: _gz(b"\0\0\x08\x03" + bytes(12)),
                                   "not an IDX labels file"),
    "wrong magic": ("t10k-images-idx3-ubyte.gz", lambda gz: _gz(_with(gzip.decompress(gz), 0, b"\0\0\x08\x01")),
                    "magic number 0x00000801, expected 0x00000803"),
    "59999 labels": ("train-labels-idx1-ubyte.gz",
                     lambda gz: _gz(_with(gzip.decompress(gz)[:-1], 4, (59999).to_bytes(4, "big"))),
                     "holds 59999 items, expected 60000"),
    "IDX shorter than its header": ("t10k-labels-idx1-ubyte.gz", lambda gz: _gz(gzip.decompress(gz)[:-100]),
                                    "should hold 10008 bytes for 10000 items but holds 9908"),
    "label 12": ("t10k-labels-idx1-ubyte.gz", lambda gz: _gz(_with(gzip.decompress(gz), 8 + 1234, b"\x0c")),
                 "label of 12"),
    "15x15 images": ("t10k-images-idx3-ubyte.gz",
                     lambda gz: _gz((0x803).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (10000, 15, 15))
                                    + bytes(10000 * 225)), "15x15 images, not 28x28"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_file_is_a_data_error_naming_it(case, tmp_path, data_root, real_bytes):
    bad_name, make, words = BROKEN[case]
    folder = _link_folder(tmp_path / "root" / "mnist", data_root / "mnist", [f for f in NAMES if f != bad_name])
    (folder / bad_name).write_bytes(make(real_bytes["mnist"][bad_name]))
    with pytest.raises(DataError) as info:  # any other exception type fails the test
        load_dataset("mnist", tmp_path / "root", download=False)
    message = str(info.value)
    assert words in message
    assert str(folder / bad_name) in message
    assert f"Replace {folder / bad_name} with the official file" in message  # not in the cache: no download cures it


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary folder the other user of as_other_user can enter (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="softmax-test-"))
    folder.chmod(0o755)
    yield folder
    for parent, dirs, _ in os.walk(folder):  # top-down: each folder is opened up before the walk enters it
        for name in dirs:
            os.chmod(os.path.join(parent, name), 0o755)
    shutil.rmtree(folder)


def test_unreadable_file_is_a_data_error_about_permissions(shared_tmp, data_root):
    folder = _link_folder(shared_tmp / "root" / "mnist", data_root / "mnist", NAMES[:3])
    (shared_tmp / "root").chmod(0o755)
    folder.chmod(0o755)
    unreadable = folder / NAMES[3]
    unreadable.write_bytes(b"")
    unreadable.chmod(0o000)
    with as_other_user(), pytest.raises(DataError) as info:
        load_dataset("mnist", shared_tmp / "root", download=False, cache_dir=shared_tmp / "cache")
    message = str(info.value)
    assert f"cannot read {unreadable}" in message
    assert "Permission denied" in message and "permissions" in message


def test_root_that_cannot_be_entered_is_a_data_error_naming_it(shared_tmp, data_root, monkeypatch):
    locked = shared_tmp / "locked"
    _link_folder(locked / "mnist", data_root / "mnist")
    locked.chmod(0o000)
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(locked))
    with as_other_user(), pytest.raises(DataError) as info:
        load_dataset("mnist", download=False, cache_dir=shared_tmp / "cache")
    message = str(info.value)
    assert f"cannot look into {locked / 'mnist'}" in message and "permissions" in message


# ---------------------------------------------------------------------------------------------------------------
# 5. Downloads through pooch, from mirrors on 127.0.0.1 serving the real files


class Mirror:
    """An HTTP server on 127.0.0.1. /good/<dataset>/<file> serves the real file, /bad/... a copy with one byte
    changed (wrong MD5), /drop/... the headers with the full Content-Length and half the body, then hangs up."""

    def __init__(self, files: dict[str, dict[str, bytes]]) -> None:
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                try:
                    _, mode, dataset, name = self.path.split("/")
                    body = files[dataset][name]
                except (ValueError, KeyError):
                    self.send_error(404)
                    return
                if mode == "bad":
                    body = _with(body, len(body) // 2, bytes([body[len(body) // 2] ^ 0xFF]))
                elif mode not in ("drop", "good"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "drop":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, mode: str, dataset: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{mode}/{dataset}/"

    def hits(self, mode: str) -> list[str]:
        return [p.rsplit("/", 1)[1] for p in self.requests if p.startswith(f"/{mode}/")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(real_bytes) -> Iterator[Mirror]:
    server = Mirror(real_bytes)
    yield server
    server.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _use_mirrors(monkeypatch, *urls: str) -> None:
    monkeypatch.setenv("SOFTMAX_DATA_MIRRORS", ",".join(urls))


def _assert_cache_holds_exactly(folder: Path, dataset: str, names=NAMES) -> None:
    """Only the named files, each with the official MD5: no partial file, no temporary left over."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    for f in names:
        assert _md5(folder / f) == OFFICIAL_MD5[dataset][f], f


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_download_from_a_good_mirror_fills_the_cache_once(dataset, request, mirror, monkeypatch, tmp_path, capfd):
    _use_mirrors(monkeypatch, mirror.url("good", dataset))
    cache = tmp_path / "cache"
    calls: list[tuple[str, int, int]] = []
    loaded = load_dataset(dataset, cache_dir=cache, progress=lambda *call: calls.append(call))

    assert loaded.source == cache / dataset
    _assert_cache_holds_exactly(cache / dataset, dataset)
    reference = request.getfixturevalue(FIXTURE[dataset])
    for field in FILES:
        assert np.array_equal(getattr(loaded, field), getattr(reference, field)), field
    assert sorted(mirror.hits("good")) == sorted(NAMES)

    for f in NAMES:  # per file: growing counts, the real total every time, the full size reported once at the end
        size = len(request.getfixturevalue("real_bytes")[dataset][f])
        counts = [done for name, done, _ in calls if name == f]
        assert len(counts) >= 2, f
        assert all(total == size for name, _, total in calls if name == f), f
        assert counts == sorted(counts) and len(set(counts)) == len(counts), f
        assert counts[-1] == size and counts[0] < size, f
    assert capfd.readouterr().err == ""  # the core does not print; progress goes to the callback

    again = load_dataset(dataset, cache_dir=cache)
    assert len(mirror.requests) == 4  # the second load reads the cache without asking the mirror
    assert np.array_equal(again.train_images, loaded.train_images)


def test_partial_cache_downloads_only_the_missing_files(mirror, monkeypatch, tmp_path, data_root):
    cache = tmp_path / "cache"
    (cache / "mnist").mkdir(parents=True)
    shutil.copy(data_root / "mnist" / NAMES[0], cache / "mnist" / NAMES[0])
    _use_mirrors(monkeypatch, mirror.url("good", "mnist"))
    assert load_dataset("mnist", cache_dir=cache).source == cache / "mnist"
    assert sorted(mirror.hits("good")) == sorted(NAMES[1:])
    _assert_cache_holds_exactly(cache / "mnist", "mnist")


def test_wrong_hash_mirror_is_passed_over_and_its_bytes_never_kept(mirror, monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    _use_mirrors(monkeypatch, mirror.url("bad", "mnist"))
    with pytest.raises(DataError) as info:  # only the bad mirror: nothing is accepted
        load_dataset("mnist", cache_dir=cache)
    assert "hash" in str(info.value) and NAMES[0] in str(info.value)
    _assert_cache_holds_exactly(cache / "mnist", "mnist", names=[])

    _use_mirrors(monkeypatch, mirror.url("bad", "mnist"), mirror.url("good", "mnist"))
    loaded = load_dataset("mnist", cache_dir=cache)
    assert loaded.source == cache / "mnist"
    assert sorted(mirror.hits("bad")) == sorted([NAMES[0], *NAMES])  # every file was tried there first
    assert sorted(mirror.hits("good")) == sorted(NAMES)
    _assert_cache_holds_exactly(cache / "mnist", "mnist")


def test_dropped_connection_leaves_nothing_half_written(mirror, monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    _use_mirrors(monkeypatch, mirror.url("drop", "mnist"))
    with pytest.raises(DataError) as info:
        load_dataset("mnist", cache_dir=cache)
    message = str(info.value)
    assert NAMES[0] in message and mirror.url("drop", "mnist") in message
    assert "IncompleteRead" in message  # the connection broke mid-file (not, say, a hash mismatch)
    _assert_cache_holds_exactly(cache / "mnist", "mnist", names=[])

    _use_mirrors(monkeypatch, mirror.url("drop", "mnist"), mirror.url("good", "mnist"))
    assert load_dataset("mnist", cache_dir=cache).source == cache / "mnist"
    assert sorted(mirror.hits("good")) == sorted(NAMES)
    _assert_cache_holds_exactly(cache / "mnist", "mnist")


def test_unwritable_cache_is_a_data_error_naming_the_setting(mirror, monkeypatch, tmp_path):
    (tmp_path / "afile").write_text("a file, so nothing can be created under it, not even by root")
    _use_mirrors(monkeypatch, mirror.url("good", "mnist"))
    with pytest.raises(DataError) as info:
        load_dataset("mnist", cache_dir=tmp_path / "afile" / "cache")
    message = str(info.value)
    assert "SOFTMAX_CACHE_DIR" in message and str(tmp_path / "afile" / "cache" / "mnist") in message
    assert mirror.requests == []


def test_no_reachable_mirror_says_how_to_get_the_data(closed_port, monkeypatch, tmp_path):
    dead = f"http://127.0.0.1:{closed_port}/fashion"
    _use_mirrors(monkeypatch, dead)
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "could not download train-images-idx3-ubyte.gz" in message
    assert dead + "/" in message  # the mirror tried, and why it failed
    assert "apt install dataset-fashion-mnist" in message
    assert "SOFTMAX_DATA_DIR" in message and "ROOT/fashion-mnist/" in message
    assert "connect to the internet" in message
    assert list((tmp_path / "cache" / "fashion-mnist").iterdir()) == []


def test_env_mirrors_come_first_then_the_data_sets_own(mirror, closed_port, monkeypatch, tmp_path):
    spec = data.DATASETS["mnist"]
    monkeypatch.setitem(data.DATASETS, "mnist", dataclasses.replace(spec, mirrors=(mirror.url("bad", "mnist"),)))
    _use_mirrors(monkeypatch, mirror.url("good", "mnist"))
    load_dataset("mnist", cache_dir=tmp_path / "cache1")
    assert mirror.hits("bad") == []  # the data set's own mirror is not asked once $SOFTMAX_DATA_MIRRORS served

    monkeypatch.setitem(data.DATASETS, "mnist", dataclasses.replace(spec, mirrors=(mirror.url("good", "mnist"),)))
    _use_mirrors(monkeypatch, f"http://127.0.0.1:{closed_port}/")
    assert load_dataset("mnist", cache_dir=tmp_path / "cache2").source == tmp_path / "cache2" / "mnist"
    assert sorted(mirror.hits("good")) == sorted([*NAMES, *NAMES])


def test_no_mirror_at_all_is_a_clear_data_error(tmp_path):
    with pytest.raises(DataError, match="no download mirror is known for MNIST digits .set SOFTMAX_DATA_MIRRORS"):
        load_dataset("mnist", cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------------------------------------
# 6. The command line's data errors: exit status 1, one message, no traceback


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SOFTMAX_DATA_DIR", "SOFTMAX_DATA_MIRRORS")}
    (tmp_path / "cli-cache").mkdir(exist_ok=True)
    env["SOFTMAX_CACHE_DIR"] = str(tmp_path / "cli-cache")
    return subprocess.run([sys.executable, "-m", "softmax_core", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


DEBIAN_ROOT = Path("/usr/share/datasets")  # where dataset-fashion-mnist puts fashion-mnist/*.gz
DEBIAN_MTIME = 1591347949  # the gzip header time of every file in dataset-fashion-mnist 0.0~git20200523.55506a9-1
OFFICIAL_MTIME = {"train": 0x59A7E9DE, "t10k": 0x59A7E9F3}  # the upstream files' gzip header times


def _debian_gzip(official: bytes) -> bytes:
    """The official .gz as Debian ships it: the same deflate stream, the header without the file name, Debian's mtime."""
    assert official[3] == 0x08, "the official files carry a file name (FNAME) and nothing else in the header"
    name_end = official.index(b"\0", 10) + 1
    return official[:3] + b"\0" + DEBIAN_MTIME.to_bytes(4, "little") + official[8:10] + official[name_end:]


def _official_gzip(debian: bytes, name: str) -> bytes:
    """Debian's .gz with the upstream header put back (file name, upstream mtime): byte for byte the official file."""
    assert debian[3] == 0, "Debian's files carry no file name in the header"
    mtime = OFFICIAL_MTIME[name.split("-", maxsplit=1)[0]]
    return debian[:3] + b"\x08" + mtime.to_bytes(4, "little") + debian[8:10] + name.removesuffix(".gz").encode() + b"\0" + debian[10:]


def _cli_with_system_roots(tmp_path: Path, system_roots: list[Path], *args: str) -> subprocess.CompletedProcess:
    """The command line with data.SYSTEM_ROOTS replaced (the place a subprocess would otherwise find Debian's data)."""
    code = ("import sys; from pathlib import Path; from softmax_core import cli, data; "
            "data.SYSTEM_ROOTS = tuple(Path(p) for p in sys.argv[1].split(':') if p); sys.exit(cli.main(sys.argv[2:]))")
    env = {k: v for k, v in os.environ.items() if k not in ("SOFTMAX_DATA_DIR", "SOFTMAX_DATA_MIRRORS")}
    (tmp_path / "cli-cache").mkdir(exist_ok=True)
    env["SOFTMAX_CACHE_DIR"] = str(tmp_path / "cli-cache")
    return subprocess.run([sys.executable, "-c", code, ":".join(map(str, system_roots)), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_without_data_and_without_download_fails_with_a_message(tmp_path):
    run = _cli_with_system_roots(tmp_path, [], "--no-download", "--epochs", "1")
    assert run.returncode == 1, run.stderr
    assert "SOFTMAX_DATA_DIR" in run.stderr and "downloading is switched off" in run.stderr
    assert "sudo apt install dataset-fashion-mnist" in run.stderr  # the Debian way is offered
    assert "Traceback" not in run.stderr + run.stdout
    assert list((tmp_path / "cli-cache").iterdir()) == []


def test_cli_trains_on_the_debian_package_layout(tmp_path, data_root, fashion, monkeypatch):
    """Debian's files (re-headered .gz, so not the official bytes) are found in the system root and give the same arrays."""
    if (DEBIAN_ROOT / "fashion-mnist").is_dir():  # the package is installed (scripts/test.sh installs it): the real thing
        system = DEBIAN_ROOT
        run = _cli(tmp_path, "--no-download", "--epochs", "1")  # nothing patched: the CLI's own search order
    else:  # a root laid out and re-headered as the package does it, from the official files
        system = tmp_path / "datasets"
        (system / "fashion-mnist").mkdir(parents=True)
        for f in NAMES:
            (system / "fashion-mnist" / f).write_bytes(_debian_gzip((data_root / "fashion-mnist" / f).read_bytes()))
        run = _cli_with_system_roots(tmp_path, [system], "--no-download", "--epochs", "1")
    folder = system / "fashion-mnist"
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".gz") == sorted(NAMES)
    for f in NAMES:  # other bytes than upstream's, only in the gzip header: with upstream's header back, upstream's MD5
        debian = (folder / f).read_bytes()
        assert hashlib.md5(debian).hexdigest() != OFFICIAL_MD5["fashion-mnist"][f]
        assert hashlib.md5(_official_gzip(debian, f)).hexdigest() == OFFICIAL_MD5["fashion-mnist"][f]
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"Fashion-MNIST from {folder}")
    assert lines[2].startswith("epoch 1, loss ") and "test acc 0." in lines[2]
    assert list((tmp_path / "cli-cache").glob("fashion-mnist/*.gz")) == []  # nothing downloaded
    monkeypatch.setattr(data, "SYSTEM_ROOTS", (system,))
    loaded = load_dataset("fashion-mnist", download=False, cache_dir=tmp_path / "cache")
    assert loaded.source == folder
    for field in FILES:
        assert np.array_equal(getattr(loaded, field), getattr(fashion, field)), field


def test_cli_with_a_partial_data_dir_names_the_missing_file(tmp_path, data_root):
    _link_folder(tmp_path / "root" / "mnist", data_root / "mnist", NAMES[:3])
    run = _cli(tmp_path, "--dataset", "mnist", "--data-dir", str(tmp_path / "root"), "--no-download")
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("error: ") and NAMES[3] in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_checked_arrays_are_kept_decoded_for_the_next_start(data_root, tmp_path):
    """The second load maps the checked arrays from the cache instead of decompressing; a changed file is read anew."""
    cache = tmp_path / "cache"
    first = load_dataset("mnist", data_root, download=False, cache_dir=cache)
    decoded = sorted((cache / "decoded").glob("*.npy"))
    assert len(decoded) == 4
    second = load_dataset("mnist", data_root, download=False, cache_dir=cache)
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
        assert not getattr(second, field).flags.writeable
    # A damaged decoded file is ignored, not trusted.
    for path in decoded:
        path.write_bytes(b"\x93NUMPY garbage")
    third = load_dataset("mnist", data_root, download=False, cache_dir=cache)
    np.testing.assert_array_equal(third.test_labels, first.test_labels)
    # The key follows the .gz file: a changed file (here: another copy with a label of 12) is checked again.
    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    for name in NAMES:
        (root / "mnist" / name).write_bytes((data_root / "mnist" / name).read_bytes())
    load_dataset("mnist", root, download=False, cache_dir=cache)
    labels = bytearray(gzip.decompress((root / "mnist" / NAMES[3]).read_bytes()))
    labels[8] = 12
    (root / "mnist" / NAMES[3]).write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(DataError, match="label of 12"):
        load_dataset("mnist", root, download=False, cache_dir=cache)
