"""A model file's limits, exactly at their edges, and every way a source can fail to be read.

The loader reads at most the model's own size (W and b as float64, their .npy headers, the zip's headers): 73,040
bytes for a (784, 10) model. A file of exactly that size loads; one byte more is refused, whatever the source
(bytes, a path, a pipe, an open file). Each zip member is bounded the same way before it is inflated.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from softmax_core import ModelFileError, SoftmaxRegression
from softmax_core.model import read_model_file

from .test_hostile_core import GOOD_B, _array_npy, _npz, _raw_zip

SHAPES = {"W": (784, 10), "b": (10,)}
W_LIMIT = 1024 + 7840 * 8  # a member: an .npy header of at most 1024 bytes, then float64 values
B_LIMIT = 1024 + 10 * 8
FILE_LIMIT = W_LIMIT + B_LIMIT + 8192  # the members and 8 kB of zip headers
W_COMPRESSED_LIMIT = W_LIMIT + W_LIMIT // 1000 + 64  # deflate's worst case grows a member by a few bytes per block

RNG = np.random.default_rng(11)
W64 = RNG.normal(0, 0.5, (784, 10))
B64 = RNG.normal(0, 0.5, 10)


def _padded_to(size: int) -> bytes:
    """A valid model file (float64 W and b, stored) of exactly size bytes: W's zip entry carries a comment.

    The comment sits in the central directory, before the zip's end record, so a loader that read one byte less
    than the file would find the end record cut and the zip damaged.
    """
    def build(comment_length: int) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            info = zipfile.ZipInfo("W.npy")
            info.comment = b"#" * comment_length
            archive.writestr(info, _array_npy(W64))
            archive.writestr("b.npy", _array_npy(B64))
        return buffer.getvalue()

    raw = build(size - len(build(0)))
    assert len(raw) == size
    return raw


@pytest.fixture
def source_as(tmp_path):
    """(kind, raw) -> raw as the app and the CLI pass it: bytes (an upload), a path, an open binary file (closed after)."""
    opened = []

    def make(kind: str, raw: bytes):
        if kind == "bytes":
            return raw
        path = tmp_path / "model.npz"
        path.write_bytes(raw)
        if kind == "path":
            return path
        opened.append(open(path, "rb"))  # noqa: SIM115 -- closed below
        return opened[-1]

    yield make
    for file in opened:
        file.close()


@pytest.mark.parametrize("kind", ["bytes", "path", "file object"])
def test_a_file_of_exactly_the_size_limit_loads_and_one_byte_more_is_refused(kind, source_as):
    model = SoftmaxRegression.load(source_as(kind, _padded_to(FILE_LIMIT)))
    np.testing.assert_array_equal(model.W, W64.astype(np.float32))
    np.testing.assert_array_equal(model.b, B64.astype(np.float32))

    too_long = source_as(kind, _padded_to(FILE_LIMIT + 1))
    with pytest.raises(ModelFileError) as info:
        SoftmaxRegression.load(too_long)
    label = str(too_long) if kind == "path" else "the file"
    if kind == "file object":  # only FILE_LIMIT + 1 bytes were read: the whole size is not known
        assert str(info.value) == "the file is larger than 73 kB, the most a model file can be"
    else:
        assert str(info.value) == f"{label} is 73 kB; a model file is at most 73 kB"


def _pipe(tmp_path: Path, payload: bytes) -> tuple[Path, threading.Thread]:
    """A named pipe that a thread fills with payload and closes (as `--load <(curl …)` would)."""
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(payload)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return fifo, writer


def _endless_pipe(tmp_path: Path) -> tuple[Path, list[int], threading.Thread]:
    """A named pipe fed zeros until its reader closes it (as `--load /dev/zero` would), and the bytes written so far.

    A loader that read to the end would never return: the writer gives up after 256 MB and then waits, open, for
    two minutes (the test's own limit on a broken loader).
    """
    fifo = tmp_path / "endless.fifo"
    os.mkfifo(fifo)
    written = [0]

    def write() -> None:
        chunk = bytes(1 << 16)
        try:
            with open(fifo, "wb") as pipe:
                while written[0] < 256 << 20:
                    pipe.write(chunk)
                    written[0] += len(chunk)
                pipe.flush()
                time.sleep(120)
        except BrokenPipeError:  # the loader stopped reading at its limit and closed the pipe, as it should
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return fifo, written, writer


def test_a_model_from_a_pipe_loads_and_an_endless_pipe_is_cut_at_the_limit(tmp_path):
    fifo, writer = _pipe(tmp_path, _padded_to(FILE_LIMIT))
    model = SoftmaxRegression.load(fifo)  # a pipe's size reads as 0 bytes: only the read can tell
    writer.join(timeout=30)
    np.testing.assert_array_equal(model.W, W64.astype(np.float32))

    fifo, written, writer = _endless_pipe(tmp_path)
    with pytest.raises(ModelFileError) as info:
        SoftmaxRegression.load(fifo)
    assert str(info.value) == f"{fifo} is larger than 73 kB, the most a model file can be"
    writer.join(timeout=30)
    assert not writer.is_alive()
    assert written[0] < 1 << 20, f"the loader took {written[0]:,} bytes from the pipe"  # the limit, the pipe's buffer


class _Failing(io.RawIOBase):
    """An open file whose read fails the way a lost network drive does."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise OSError(5, "Input/output error")


def test_every_source_that_cannot_be_read_says_why_in_one_line(tmp_path):
    cases = {
        "a folder": (tmp_path, f"{tmp_path} is a folder, not a model file"),
        "a name too long for the file system": (tmp_path / ("m" * 300), f"cannot read {tmp_path / ('m' * 300)} (File name too long)"),
        "a read that fails": (_Failing(), "cannot read the file ([Errno 5] Input/output error)"),
        "a closed file": (io.BytesIO(b"PK"), "cannot read the file (I/O operation on closed file.)"),
    }
    cases["a closed file"][0].close()
    (tmp_path / "m.npz").write_bytes(SoftmaxRegression(W64, B64).to_bytes())
    with open(tmp_path / "m.npz", encoding="latin1") as text:
        cases["a file opened as text"] = (text, "the file was opened as text; open it in binary mode ('rb')")
        for case, (source, message) in cases.items():
            with pytest.raises(ModelFileError) as info:
                SoftmaxRegression.load(source)
            assert str(info.value) == message, case


def test_messages_call_the_file_by_the_name_given():
    with pytest.raises(ModelFileError, match=r"^upload\.npz is empty$"):
        SoftmaxRegression.load(b"", name="upload.npz")
    with pytest.raises(ModelFileError, match=r"^W in upload\.npz has shape \(5, 5\); a model has W of shape \(784, 10\)$"):
        SoftmaxRegression.load(_npz({"W.npy": _array_npy(np.zeros((5, 5))), "b.npy": GOOD_B}), name="upload.npz")


def test_a_failed_save_raises_its_own_error_even_when_its_temporary_cannot_be_removed(tmp_path, monkeypatch):
    """The write fails (a full disk), then removing the half-written temporary fails too: the caller hears of the first."""
    def full_disk(self):
        raise OSError(28, "No space left on device")

    def stuck(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(SoftmaxRegression, "to_bytes", full_disk)
    monkeypatch.setattr(os, "unlink", stuck)
    with pytest.raises(OSError, match="No space left on device"):
        SoftmaxRegression(W64, B64).save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def _header_of(length: int, shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """An .npy 1.0 header padded with spaces to exactly length bytes (numpy writes 128; 1024 is the most we read)."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    text += b" " * (length - 10 - len(text) - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def _deflated(content: bytes, padding: int = 0) -> bytes:
    """content as a raw deflate stream, followed by padding bytes after its final block (an inflater stops there)."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    return squeeze.compress(content) + squeeze.flush() + b"\0" * padding


def _with_w(stream: bytes, content: bytes, size: int | None = None, crc: int | None = None, **zip_options: int) -> bytes:
    b_entry = ("b.npy", _deflated(GOOD_B), zlib.crc32(GOOD_B), len(GOOD_B))
    w_entry = ("W.npy", stream, zlib.crc32(content) if crc is None else crc, len(content) if size is None else size)
    return _raw_zip([w_entry, b_entry], **zip_options)


W_AT_ITS_LIMIT = _header_of(1024, (784, 10)) + W64.tobytes()  # exactly W_LIMIT bytes


def test_a_member_at_its_limits_loads_one_byte_over_is_refused():
    assert len(W_AT_ITS_LIMIT) == W_LIMIT
    plain = _deflated(W_AT_ITS_LIMIT)
    at_the_bound = _with_w(_deflated(W_AT_ITS_LIMIT, W_COMPRESSED_LIMIT - len(plain)), W_AT_ITS_LIMIT)
    arrays = read_model_file(at_the_bound, SHAPES)
    np.testing.assert_array_equal(arrays["W"], W64.astype(np.float32))

    over = _with_w(_deflated(W_AT_ITS_LIMIT, W_COMPRESSED_LIMIT + 1 - len(plain)), W_AT_ITS_LIMIT)
    with pytest.raises(ModelFileError, match=r"^W declares 64 kB; W of shape \(784, 10\) takes at most 64 kB$"):
        read_model_file(over, SHAPES)
    bigger = W_AT_ITS_LIMIT + b"\0"  # its zip entry declares one byte more than a W can take
    with pytest.raises(ModelFileError, match=r"^W declares 64 kB; W of shape \(784, 10\) takes at most 64 kB$"):
        read_model_file(_with_w(_deflated(bigger), bigger), SHAPES)


def test_zip_features_a_model_file_does_not_use_are_named():
    stream = _deflated(_array_npy(W64))
    cases = {
        "encrypted": (dict(flags=0x1), "W is encrypted; a model file is not"),
        "bzip2": (dict(method=zipfile.ZIP_BZIP2), "W uses zip compression method 12; a model file uses none or deflate"),
        "lzma": (dict(method=zipfile.ZIP_LZMA), "W uses zip compression method 14; a model file uses none or deflate"),
    }
    for case, (options, message) in cases.items():
        with pytest.raises(ModelFileError) as info:
            read_model_file(_with_w(stream, _array_npy(W64), **options), SHAPES)
        assert str(info.value) == message, case


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize != 16, reason="this platform's long double is not 16 bytes")
def test_a_float128_b_is_refused_by_its_dtype():
    """A float128 (long double) b fits the size a float64 b may take up, so only the dtype check can refuse it."""
    raw = _npz({"W.npy": _array_npy(W64), "b.npy": _array_npy(B64.astype(np.longdouble))})
    with pytest.raises(ModelFileError, match=r"^b has dtype float128; a model holds float16, float32 or float64 values$"):
        read_model_file(raw, SHAPES)


def test_values_cut_short_under_a_matching_checksum_are_counted():
    """The zip entry declares the full size, but its deflate stream ends 8 bytes early and its CRC is of what is there."""
    full = _array_npy(W64)
    short = full[:-8]
    raw = _with_w(_deflated(short), short, size=len(full))
    with pytest.raises(ModelFileError, match=r"^W holds 62712 bytes of values; its header declares 62720$"):
        read_model_file(raw, SHAPES)


def test_the_largest_float32_loads_and_arrays_come_back_float32_c_order_writable():
    W = np.asfortranarray(W64.copy())
    W[3, 4] = float(np.finfo(np.float32).max)  # exactly representable: not "too large for float32"
    W[5, 6] = -float(np.finfo(np.float32).max)
    raw = _npz({"W.npy": _array_npy(W), "b.npy": _array_npy(B64)}, zipfile.ZIP_DEFLATED)
    arrays = read_model_file(raw, SHAPES)
    for key, expected in (("W", W), ("b", B64)):
        got = arrays[key]
        assert got.dtype == np.float32 and got.flags.c_contiguous and got.flags.writeable, key
        np.testing.assert_array_equal(got, expected.astype(np.float32))
    assert arrays["W"][3, 4] == np.finfo(np.float32).max
