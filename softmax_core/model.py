"""The softmax-regression model: parameters W (784, 10) and b (10,), predictions, and .npz files."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import secrets
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from .functional import cross_entropy, softmax

N_FEATURES = 28 * 28
N_CLASSES = 10
SIGMA = 0.01  # the lesson's init scale: W ~ Normal(0, 0.01)


class ModelFileError(ValueError):
    """A model file that cannot be used: not an .npz, wrong shapes or dtypes, non-finite values."""


def features(images: np.ndarray) -> np.ndarray:
    """Flatten uint8 images (n, 28, 28) to float32 rows (n, 784) scaled to [0, 1]."""
    flat = np.asarray(images).reshape(len(images), -1)
    return flat.astype(np.float32) * np.float32(1 / 255)


@dataclass
class SoftmaxRegression:
    """Linear scores X @ W + b turned into class probabilities by softmax."""

    W: np.ndarray  # (n_features, n_classes) float32
    b: np.ndarray  # (n_classes,) float32

    def __post_init__(self) -> None:
        self.W = np.ascontiguousarray(self.W, dtype=np.float32)
        self.b = np.ascontiguousarray(self.b, dtype=np.float32)
        if self.W.ndim != 2 or self.b.shape != (self.W.shape[1],):
            raise ModelFileError(f"W must be (features, classes) and b (classes,); got {self.W.shape} and {self.b.shape}")

    @classmethod
    def init(
        cls,
        rng: np.random.Generator,
        sigma: float = SIGMA,
        n_features: int = N_FEATURES,
        n_classes: int = N_CLASSES,
    ) -> SoftmaxRegression:
        """The lesson's initialisation: W ~ Normal(0, sigma), b = 0."""
        if not (np.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"init scale sigma must be a finite number >= 0, got {sigma}")
        W = rng.normal(0.0, sigma, size=(n_features, n_classes)).astype(np.float32)
        return cls(W, np.zeros(n_classes, dtype=np.float32))

    def copy(self) -> SoftmaxRegression:
        """An independent copy of the parameters."""
        return SoftmaxRegression(self.W.copy(), self.b.copy())

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Scores of shape (n_samples, n_classes) for float rows X of shape (n_samples, n_features)."""
        return X @ self.W + self.b

    def image_logits(self, images: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Scores (n_images, n_classes) of uint8 images (n, 28, 28), exactly as training evaluates them.

        The 1/255 pixel scale is applied to the (n, 10) products rather than to the (n, 784) pixels:
        cheaper, and every page that reports an accuracy gets the same figures as the trainer. Chunks of
        256 images stay in the core's cache while they are converted and multiplied: twice as fast as 4096.
        """
        flat = np.asarray(images).reshape(len(images), -1)
        out = np.empty((len(flat), self.W.shape[1]), dtype=np.float32)
        for start in range(0, len(flat), chunk):
            z = np.matmul(flat[start : start + chunk].astype(np.float32), self.W, out=out[start : start + chunk])
            z *= np.float32(1 / 255)
            z += self.b
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities of shape (n_samples, n_classes); each row sums to 1."""
        return softmax(self.logits(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class of each row, of shape (n_samples,)."""
        return np.argmax(self.logits(X), axis=1)

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy loss and accuracy on (X, y)."""
        z = self.logits(X)
        return float(np.mean(cross_entropy(z, y), dtype=np.float64)), float(np.mean(np.argmax(z, axis=1) == y))

    def is_finite(self) -> bool:
        """True when every parameter is a finite number."""
        return bool(np.isfinite(self.W).all() and np.isfinite(self.b).all())

    def to_bytes(self) -> bytes:
        """The parameters as an .npz file (arrays W and b, no pickles)."""
        buffer = io.BytesIO()
        np.savez(buffer, W=self.W, b=self.b)
        return buffer.getvalue()

    def save(self, path: str | Path) -> None:
        """Write the parameters to an .npz file at path; a failed write leaves any earlier file as it was."""
        target = Path(os.path.realpath(path))  # through a symlink to its file, which os.replace would drop
        temporary = temporary_path(target)
        # O_EXCL: never write through a file planted under the temporary name; 0o666 lets the umask decide.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(self.to_bytes())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    @classmethod
    def load(
        cls,
        source: str | Path | bytes | BinaryIO,
        n_features: int = N_FEATURES,
        n_classes: int = N_CLASSES,
        *,
        name: str | None = None,
    ) -> SoftmaxRegression:
        """Read and check an .npz with W (n_features, n_classes) and b (n_classes,); raise ModelFileError.

        The file is checked before anything in it is inflated (size, member names, each .npy header's shape
        and dtype), so a hostile file costs at most the model's own size in memory. name is what messages
        call the file: the path for a path, else "the file".
        """
        arrays = read_model_file(source, {"W": (n_features, n_classes), "b": (n_classes,)}, name)
        return cls(arrays["W"], arrays["b"])


def temporary_path(target: Path) -> Path:
    """A unique name beside target for writing it atomically (the folder must let us create files)."""
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


# ---------------------------------------------------------------------------------------------------------------
# Reading a model file that may be hostile: every size is known and bounded before bytes are inflated.

_HEADER_MAX = 1024  # bytes allowed for a member's .npy header; numpy writes 128 for these arrays
_ZIP_SLACK = 8192  # local and central zip headers, names, zip64 records around the members
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,40}")  # member names shown in messages (they may reach a web page)
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error, NotImplementedError, RuntimeError)


def read_model_file(source: str | Path | bytes | BinaryIO, shapes: dict[str, tuple[int, ...]], name: str | None = None) -> dict[str, np.ndarray]:
    """The float32 arrays named in shapes, read from an .npz that must hold exactly them; raise ModelFileError."""
    member_limit = {key: _HEADER_MAX + math.prod(shape) * 8 for key, shape in shapes.items()}  # float64 is allowed
    size_limit = sum(member_limit.values()) + _ZIP_SLACK
    label = name or (str(source) if isinstance(source, (str, Path)) else "the file")
    data = _read_bounded(source, size_limit, label)
    if not data:
        raise ModelFileError(f"{label} is empty")
    if data.startswith(b"\x93NUMPY"):
        raise ModelFileError(f"{label} is a single .npy array, not an .npz (zip) file holding {_and(shapes)}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS:
        if data.startswith(b"PK"):
            raise ModelFileError(f"{label} is a damaged or incomplete .npz (zip) file") from None
        raise ModelFileError(f"{label} is not an .npz (zip) file") from None
    where = "" if label == "the file" else f" in {label}"
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        if len(members) != len(archive.infolist()):
            raise ModelFileError(f"{label} holds two arrays with the same name; a model file holds {_and(shapes)} once each")
        wanted = {f"{key}.npy": key for key in shapes}
        if set(members) != set(wanted):
            raise ModelFileError(f"{label} holds {_listing(members)}; a model file holds exactly {_and(shapes)}")
        return {
            key: _read_member(archive, members[member], key, shapes[key], member_limit[key], where)
            for member, key in wanted.items()
        }


def _read_bounded(source: str | Path | bytes | BinaryIO, limit: int, label: str) -> bytes:
    """At most limit bytes of the source; a longer source is refused without reading the rest."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > limit:
            raise ModelFileError(f"{label} is {_bytes(len(source))}; a model file is at most {_bytes(limit)}")
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        try:
            with open(source, "rb") as file:
                size = os.fstat(file.fileno()).st_size  # 0 for a pipe or a device: then only the read tells
                if size > limit:
                    raise ModelFileError(f"{label} is {_bytes(size)}; a model file is at most {_bytes(limit)}")
                data = file.read(limit + 1)
        except FileNotFoundError:
            raise ModelFileError(f"{label} does not exist") from None
        except IsADirectoryError:
            raise ModelFileError(f"{label} is a folder, not a model file") from None
        except OSError as err:
            raise ModelFileError(f"cannot read {label} ({err.strerror or err})") from None
    else:
        try:
            data = source.read(limit + 1)
        except (OSError, ValueError) as err:
            raise ModelFileError(f"cannot read {label} ({err})") from None
        if not isinstance(data, bytes):
            raise ModelFileError(f"{label} was opened as text; open it in binary mode ('rb')")
    if len(data) > limit:  # a stream, a pipe or a file that grew: its whole size is not known, nor read
        raise ModelFileError(f"{label} is larger than {_bytes(limit)}, the most a model file can be")
    return data


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, shape: tuple[int, ...], limit: int, where: str) -> np.ndarray:
    """One member's array, after its zip entry and .npy header were checked; float32, C order, writable."""
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{key}{where} is encrypted; a model file is not")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ModelFileError(f"{key}{where} uses zip compression method {info.compress_type}; a model file uses none or deflate")
    # Deflate may grow incompressible bytes by a few per 16 kB block.
    if info.file_size > limit or info.compress_size > limit + limit // 1000 + 64:
        raise ModelFileError(f"{key}{where} declares {_bytes(max(info.file_size, info.compress_size))}; {key} of shape {shape} takes at most {_bytes(limit)}")
    try:
        with archive.open(info) as stream:
            head = stream.read(_HEADER_MAX)  # zipfile inflates at most this much (and never past file_size)
            array_dtype, fortran, header_size = _npy_header(head, key, shape, where)
            need = math.prod(shape) * array_dtype.itemsize
            if info.file_size != header_size + need:
                raise ModelFileError(
                    f"{key}{where} holds {info.file_size - header_size} bytes of values; its header declares {need}"
                )
            body = head[header_size:] + stream.read(need - (len(head) - header_size) + 1)  # +1 reaches EOF: CRC check
    except ModelFileError:
        raise
    except _ZIP_ERRORS as err:
        if "CRC" in str(err):
            raise ModelFileError(f"{key}{where} is damaged: its bytes do not match the zip file's checksum") from None
        raise ModelFileError(f"{key}{where} is damaged or cut short") from None
    if len(body) != need:
        raise ModelFileError(f"{key}{where} holds {len(body)} bytes of values; its header declares {need}")
    values = np.frombuffer(body, array_dtype, count=math.prod(shape))
    values = values.reshape(shape[::-1]).T if fortran else values.reshape(shape)
    if not np.isfinite(values).all():
        raise ModelFileError(f"{key}{where} holds NaN or infinite values")
    largest = float(np.max(np.abs(values), initial=0.0))
    if largest > _FLOAT32_MAX:
        raise ModelFileError(f"{key}{where} holds values too large for float32 (up to {largest:.0e})")
    return np.array(values, dtype=np.float32, order="C")  # a copy: frombuffer's view is read-only


def _npy_header(head: bytes, key: str, shape: tuple[int, ...], where: str) -> tuple[np.dtype, bool, int]:
    """(dtype, fortran_order, header length) of an .npy member, checked against the model's shape and dtypes."""
    stream = io.BytesIO(head)
    try:
        version = npy_format.read_magic(stream)
        read_header = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ModelFileError(f"{key}{where} uses .npy format version {version[0]}.{version[1]}; a model file uses 1.0 or 2.0")
        found, fortran, array_dtype = read_header(stream, max_header_size=_HEADER_MAX)
    except ModelFileError:
        raise
    except Exception:  # noqa: BLE001 -- a parser fed hostile bytes: any failure means a broken header
        raise ModelFileError(f"{key}{where} is not a valid .npy array") from None
    if array_dtype.hasobject:
        raise ModelFileError(f"{key}{where} holds Python objects (pickled data); a model file holds only numbers")
    if found != shape:
        raise ModelFileError(f"{key}{where} has shape {_short(found)}; a model has {key} of shape {shape}")
    if array_dtype.kind != "f" or array_dtype.itemsize not in (2, 4, 8) or array_dtype.fields or array_dtype.subdtype:
        raise ModelFileError(f"{key}{where} has dtype {_short(array_dtype)}; a model holds float16, float32 or float64 values")
    return array_dtype, bool(fortran), stream.tell()


def _and(shapes: dict[str, tuple[int, ...]]) -> str:
    keys = list(shapes)
    return " and ".join([", ".join(keys[:-1]), keys[-1]]) if len(keys) > 1 else keys[0]


def _listing(members: dict[str, zipfile.ZipInfo]) -> str:
    """The member names for a message: safe ones as they are (without .npy), at most five."""
    if not members:
        return "no arrays"
    names = [n.removesuffix(".npy") if _SAFE_NAME.fullmatch(n) else "(an oddly named entry)" for n in sorted(members)]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"array{'s' if len(names) > 1 else ''} {', '.join(names[:5])}{more}"


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _bytes(size: int) -> str:
    return f"{size} bytes" if size < 10_000 else f"{size / 1e3:.0f} kB" if size < 1_000_000 else f"{size / 1e6:.1f} MB"
