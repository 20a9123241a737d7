"""Fashion-MNIST and MNIST in the official IDX .gz format: find, download, check and load them."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENV_DATA_DIR = "SOFTMAX_DATA_DIR"  # a data root: one sub-folder per data set
ENV_CACHE_DIR = "SOFTMAX_CACHE_DIR"  # where downloads go (default: the user's cache folder)
ENV_MIRRORS = "SOFTMAX_DATA_MIRRORS"  # comma-separated base URLs tried before the official mirrors
SYSTEM_ROOTS = (Path("/usr/share/datasets"),)  # Debian/Ubuntu: package dataset-fashion-mnist

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_IMAGE_MAGIC, _LABEL_MAGIC = 0x00000803, 0x00000801
_EXPECTED_COUNT = {"train": 60000, "test": 10000}

ProgressCallback = Callable[[str, int, int], None]  # (file name, bytes done, bytes in all or 0 if unknown)

# What Dataset.source_kind says: where the data came from, without the server's own paths.
KIND_ROOT = "folder given with --data-dir"
KIND_ENV = f"folder set by {ENV_DATA_DIR}"
KIND_DEBIAN = "Debian package dataset-fashion-mnist"
KIND_SYSTEM = "system folder /usr/share/datasets"
KIND_CACHE = "download cache"
KIND_OTHER = "folder given by the caller"


@dataclass(frozen=True)
class DatasetSpec:
    """What identifies a data set: its classes, the official files' MD5s and the mirrors serving them."""

    title: str
    class_names: tuple[str, ...]
    md5: dict[str, str]  # file name -> MD5 of the official .gz
    mirrors: tuple[str, ...]


DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        title="Fashion-MNIST",
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
    ),
    "mnist": DatasetSpec(
        title="MNIST digits",
        class_names=tuple(str(digit) for digit in range(10)),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
    ),
}


class DataError(RuntimeError):
    """A data set that cannot be used; the message names the file or folder and says how to fix it."""


@dataclass(frozen=True)
class Dataset:
    """The four arrays of one data set, read-only, with its class names and where it came from."""

    name: str
    title: str
    class_names: tuple[str, ...]
    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8, 0-9
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8, 0-9
    source: Path  # the folder the files were read from (a server path: pages show source_kind instead)
    source_kind: str = KIND_OTHER  # which of the places it was, e.g. "download cache" (the KIND_* constants)


def default_cache_dir() -> Path:
    """The download cache: $SOFTMAX_CACHE_DIR, else the user's cache folder (e.g. ~/.cache/softmax-regression)."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    import platformdirs  # noqa: PLC0415 -- pooch's own choice of cache folder, without importing pooch

    return Path(platformdirs.user_cache_dir("softmax-regression"))


def search_roots(root: str | Path | None = None, cache_dir: str | Path | None = None) -> list[Path]:
    """The data roots looked at, in order: only root if given, else $SOFTMAX_DATA_DIR, /usr/share/datasets, the cache."""
    if root is not None:
        return [Path(root).expanduser()]
    roots = []
    if os.environ.get(ENV_DATA_DIR):
        roots.append(Path(os.environ[ENV_DATA_DIR]).expanduser())
    roots.extend(SYSTEM_ROOTS)
    roots.append(Path(cache_dir) if cache_dir else default_cache_dir())
    return roots


def load_dataset(
    name: str = "fashion-mnist",
    root: str | Path | None = None,
    *,
    download: bool = True,
    cache_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    prefer: str | Path | None = None,
) -> Dataset:
    """Check and load the data set from root/name if root is given, else from the first usual place holding it.

    An explicit root (the CLI's --data-dir) is the only place read: if root/name lacks a file, that is a
    DataError, never a silent switch to another source, and nothing is downloaded. Without root the places are
    prefer/ (a data set folder looked at first, e.g. the one `fetch` just filled, so that a damaged folder
    earlier in the order cannot hide it), then ROOT/name for $SOFTMAX_DATA_DIR, /usr/share/datasets and the
    cache; if none holds the data and download is True, it is downloaded into the cache.
    """
    spec = _spec(name)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if root is not None:
        if prefer is not None:
            raise ValueError("give root or prefer, not both: an explicit root is the only place read")
        return _load_explicit_root(name, spec, root, cache)
    places = _places(name, cache)
    if prefer is not None:
        places.insert(0, (Path(prefer), _kind_of(Path(prefer), name, cache)))
    for folder, kind in places:
        present = _present_files(folder)
        if len(present) == len(FILES):
            return _read_folder(name, spec, folder, cache, kind)
        if present and kind != KIND_CACHE:  # the cache is allowed to be partial: fetch fills it
            raise DataError(_partial(spec, folder, present, kind))
    if not download:
        raise DataError(_not_found(name, spec, [f for f, _ in places], reason="downloading is switched off"))
    folder = fetch(name, cache, progress)
    return _read_folder(name, spec, folder, cache, KIND_CACHE)


def load_folder(name: str, folder: str | Path, *, cache_dir: str | Path | None = None) -> Dataset:
    """Check and load the data set from exactly this folder (e.g. what `fetch` returned); DataError if it cannot."""
    spec = _spec(name)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = Path(folder)
    kind = _kind_of(folder, name, cache)
    present = _present_files(folder)
    if len(present) != len(FILES):
        raise DataError(_partial(spec, folder, present, kind))
    return _read_folder(name, spec, folder, cache, kind)


def _load_explicit_root(name: str, spec: DatasetSpec, root: str | Path, cache: Path) -> Dataset:
    if not str(root):
        raise DataError(f"the data folder given is an empty path; give the folder that holds {name}/")
    root = Path(root).expanduser()
    folder = root / name
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(
            f"the data folder {root} ({KIND_ROOT}) {what}; give the folder that holds {name}/ with the four "
            f"files of {spec.title}, or leave --data-dir out to use the usual places."
        )
    present = _present_files(folder)
    if len(present) != len(FILES):
        raise DataError(_partial(spec, folder, present, KIND_ROOT))
    return _read_folder(name, spec, folder, cache, KIND_ROOT)


def _places(name: str, cache: Path) -> list[tuple[Path, str]]:
    """The usual data set folders, in search order, each with its kind."""
    places = []
    if os.environ.get(ENV_DATA_DIR):
        places.append((Path(os.environ[ENV_DATA_DIR]).expanduser() / name, KIND_ENV))
    system = KIND_DEBIAN if name == "fashion-mnist" else KIND_SYSTEM
    places.extend((root / name, system) for root in SYSTEM_ROOTS)
    places.append((cache / name, KIND_CACHE))
    return places


def _kind_of(folder: Path, name: str, cache: Path) -> str:
    """Which usual place folder is, or KIND_OTHER."""
    for place, kind in _places(name, cache):
        with contextlib.suppress(OSError):
            if place.resolve() == folder.resolve():
                return kind
    return KIND_OTHER


def _partial(spec: DatasetSpec, folder: Path, present: list[str], kind: str) -> str:
    """The message for a data set folder missing some (or all) of the four files."""
    missing = ", ".join(f for f in FILES.values() if f not in present)
    if not present:
        if not folder.exists():
            return (f"{folder} ({kind}) does not exist; put the four files of {spec.title} there "
                    f"({missing}){_elsewhere(kind)}.")
        return f"{folder} ({kind}) holds none of the files of {spec.title} ({missing}){_elsewhere(kind)}."
    return (
        f"{folder} holds only part of {spec.title}; missing: {missing}. "
        f"Copy the missing file(s) there{_elsewhere(kind, 'or remove the folder to use another source')}."
    )


def _elsewhere(kind: str, default: str = "") -> str:
    """How to use another place instead of a folder of this kind (a clause starting ", or ...")."""
    ways = {
        KIND_ROOT: "or leave --data-dir out to use the usual places",
        KIND_ENV: f"or unset {ENV_DATA_DIR} to use the other places",
        KIND_CACHE: "or download it again",
        KIND_OTHER: "",  # a folder given on its own: there is no other place to point to
    }
    way = ways.get(kind, default)
    return f", {way}" if way else ""


def fetch(name: str, cache_dir: str | Path, progress: ProgressCallback | None = None) -> Path:
    """Download the data set's missing or damaged files into cache_dir/name, hash-checked; return that folder.

    Load the result with load_folder(name, folder) or load_dataset(name, prefer=folder): a damaged folder
    earlier in the search order would otherwise still be found first.
    """
    import pooch  # noqa: PLC0415 -- loading local files must not need the download stack

    spec = _spec(name)
    folder = Path(cache_dir) / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # a unique name: another process may be probing too
            pass
    except OSError as err:
        raise DataError(
            f"cannot write to the download folder {folder} ({err.strerror or err}). "
            f"Set {ENV_CACHE_DIR} to a writable folder, or put the data where it can be read (see --help)."
        ) from None
    extra = [m.strip() for m in os.environ.get(ENV_MIRRORS, "").split(",") if m.strip()]
    mirrors = [m if m.endswith("/") else m + "/" for m in (*extra, *spec.mirrors)]
    if not mirrors:
        raise DataError(f"no download mirror is known for {spec.title} (set {ENV_MIRRORS}).\n{_ways_to_get(name, spec)}")
    for file_name, md5 in spec.md5.items():
        failures = []
        for mirror in mirrors:
            try:
                # pooch writes to a temporary file in `folder` and renames it only once the MD5 matches.
                with _quiet(pooch.get_logger()):
                    pooch.retrieve(
                        mirror + file_name,
                        known_hash=f"md5:{md5}",
                        fname=file_name,
                        path=folder,
                        progressbar=_Progress(file_name, progress) if progress else False,
                    )
                break
            except Exception as err:  # noqa: BLE001 -- any mirror failure means: try the next one
                failures.append(f"{mirror}: {_short(err)}")
        else:
            raise DataError(
                f"could not download {file_name} of {spec.title}. Tried:\n  " + "\n  ".join(failures) + "\n"
                + _ways_to_get(name, spec)
            )
    return folder


def read_images(path: str | Path, expected: int | None = None) -> np.ndarray:
    """Read an IDX image file (.gz) into a read-only uint8 array (n, 28, 28), checking its header and size."""
    data = _decompress(Path(path))
    header = _header(path, data, _IMAGE_MAGIC, 16, "images")
    n, rows, cols = (int(v) for v in header[1:4])
    if (rows, cols) != (28, 28):
        raise _DamagedFile(path, f"{path} holds {rows}x{cols} images, not 28x28.")
    _check_length(path, data, 16 + n * rows * cols, n, expected)
    return _readonly(np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols))


def read_labels(path: str | Path, expected: int | None = None) -> np.ndarray:
    """Read an IDX label file (.gz) into a read-only uint8 array (n,), checking header, size and range 0-9."""
    data = _decompress(Path(path))
    header = _header(path, data, _LABEL_MAGIC, 8, "labels")
    n = int(header[1])
    _check_length(path, data, 8 + n, n, expected)
    labels = np.frombuffer(data, np.uint8, offset=8)
    if labels.size and labels.max() > 9:
        raise _DamagedFile(path, f"{path} has a label of {int(labels.max())}; labels must be 0-9.")
    return _readonly(labels)


def _present_files(folder: Path) -> list[str]:
    try:
        return [f for f in FILES.values() if (folder / f).is_file()]
    except OSError as err:  # e.g. a root we may not look into; a missing one is just skipped
        raise DataError(
            f"cannot look into {folder} ({err.strerror or err}). Check the folder's permissions, "
            f"or point {ENV_DATA_DIR} / --data-dir elsewhere."
        ) from None


def _read_folder(name: str, spec: DatasetSpec, folder: Path, cache: Path, kind: str) -> Dataset:
    def read(key: str):
        split = key.split("_", maxsplit=1)[0]
        path, expected = folder / FILES[key], _EXPECTED_COUNT[split]
        decoded = _decoded_path(path, cache)
        array = _load_decoded(decoded, expected, key.endswith("labels"))
        if array is None:
            reader = read_images if key.endswith("images") else read_labels
            try:
                array = reader(path, expected)
            except _DamagedFile as err:  # the cure depends on where the file is
                raise DataError(f"{err.problem} {_fix_damaged(err.path, kind)}") from None
            _save_decoded(decoded, array)
        return array

    # zlib releases the GIL, so the four files decompress side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = dict(zip(FILES, pool.map(read, FILES)))
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise DataError(
                f"{folder}: {len(arrays[split + '_images'])} {split} images but {len(arrays[split + '_labels'])} labels; "
                f"the files do not belong together. Replace them with the official files."
            )
    return Dataset(name, spec.title, spec.class_names, source=folder, source_kind=kind, **arrays)


def _decoded_path(path: Path, cache: Path) -> Path | None:
    """Where the checked, decompressed array of this very .gz file is kept (keyed by path, size and mtime)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|idx-v1".encode()).hexdigest()[:24]
    return cache / "decoded" / f"{path.name.split('-')[0]}-{key}.npy"


def _load_decoded(decoded: Path | None, expected: int, labels: bool) -> np.ndarray | None:
    """The array saved by an earlier load (memory-mapped, read-only), or None if there is none usable."""
    if decoded is None or not decoded.is_file():
        return None
    try:
        array = np.load(decoded, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    shape_ok = array.shape == ((expected,) if labels else (expected, 28, 28)) and array.dtype == np.uint8
    if not shape_ok or (labels and array.max() > 9):
        return None
    return array.view(np.ndarray)


def _save_decoded(decoded: Path | None, array: np.ndarray) -> None:
    """Keep the checked array for the next start (four times faster than gzip); never fails the load."""
    if decoded is None:
        return
    try:
        decoded.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=decoded.parent, suffix=".tmp", delete=False) as tmp:
            np.save(tmp, array, allow_pickle=False)
        os.replace(tmp.name, decoded)  # atomic: a reader sees the whole file or none
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp.name)


class _DamagedFile(DataError):
    """A data file whose content is wrong; _read_folder says how to cure it for the folder's kind."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(f"{problem} Replace {path} with the official file.")


def _fix_damaged(path: Path, kind: str) -> str:
    """What to do about a damaged file in a folder of this kind."""
    if kind == KIND_CACHE:
        return f"Delete {path} and run again to download a fresh copy."
    if kind == KIND_DEBIAN:
        return "Reinstall the package that holds it: sudo apt install --reinstall dataset-fashion-mnist."
    return f"Replace {path} with the official file{_elsewhere(kind)}."


def _decompress(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}. Check the file's permissions.") from None
    try:
        # Content is checked, not the .gz bytes: Debian's package re-writes the gzip header.
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise _DamagedFile(path, f"{path} is not a complete gzip file ({_short(err)}).") from None


def _header(path, data: bytes, magic: int, size: int, what: str) -> np.ndarray:
    if len(data) < size:
        raise _DamagedFile(path, f"{path} is too short to be an IDX {what} file.")
    header = np.frombuffer(data, ">u4", count=size // 4)
    if int(header[0]) != magic:
        raise _DamagedFile(path, f"{path} is not an IDX {what} file (magic number 0x{int(header[0]):08x}, expected 0x{magic:08x}).")
    return header


def _check_length(path, data: bytes, wanted: int, n: int, expected: int | None) -> None:
    if len(data) != wanted:
        raise _DamagedFile(path, f"{path} should hold {wanted} bytes for {n} items but holds {len(data)}.")
    if expected is not None and n != expected:
        raise _DamagedFile(path, f"{path} holds {n} items, expected {expected}.")


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def _ways_to_get(name: str, spec: DatasetSpec) -> str:
    lines = [f"To get {spec.title}, do one of these:"]
    if name == "fashion-mnist":
        lines.append("  - install the Debian/Ubuntu package: sudo apt install dataset-fashion-mnist")
    lines += [
        (
            f"  - put the four files ({', '.join(FILES.values())}) in ROOT/{name}/ and set {ENV_DATA_DIR}=ROOT "
            "(or pass --data-dir ROOT);"
        ),
        "  - connect to the internet and run again: the files are downloaded once into the cache.",
    ]
    return "\n".join(lines)


def _not_found(name: str, spec: DatasetSpec, roots: Sequence[Path], reason: str) -> str:
    looked = "\n  ".join(str(r / name) for r in roots)
    return f"{spec.title} was not found in:\n  {looked}\nand {reason}.\n{_ways_to_get(name, spec)}"


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Silence pooch's "Downloading data from ..." lines: the core never prints, progress goes to the callback."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class _Progress:
    """The progress-bar object pooch drives (total, update, reset, close), reported to a callback.

    pooch counts a whole chunk per update, so its count overshoots the size at the last chunk, and it then
    calls reset() and update(total). The callback sees only growing counts, never above the total, and the
    final (size, size) exactly once.
    """

    def __init__(self, file_name: str, callback: ProgressCallback) -> None:
        self.file_name, self.callback = file_name, callback
        self.total = 0  # set by pooch from Content-Length; 0 if the server did not say
        self.done, self.shown = 0, 0

    def update(self, n: int) -> None:
        self.done += n
        done = min(self.done, self.total) if self.total else self.done
        if done > self.shown and (not self.total or done < self.total):
            self.shown = done
            self.callback(self.file_name, done, self.total)

    def reset(self) -> None:
        if self.total:  # pooch follows with update(total); with an unknown total it would be update(0)
            self.done = 0

    def close(self) -> None:
        done = self.total or self.done
        self.callback(self.file_name, done, done)
