"""Hostile input to the core: crafted model files, bad command-line arguments and data folders that are not what
they claim. Each case expects one clear line (never a traceback) and checks that nothing else changed."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from softmax_core import DataError, ModelFileError, SoftmaxRegression, cli, data
from softmax_core.data import FILES, load_dataset, load_folder

from .conftest import REPO, as_other_user
from .test_data import _link_folder

NAMES = tuple(FILES.values())

# ---------------------------------------------------------------------------------------------------------------
# Crafted .npz files, built here byte by byte


def _npy(shape: tuple, descr: str, body: bytes, fortran: bool = False, version: tuple[int, int] = (1, 0)) -> bytes:
    """An .npy file whose header declares shape and descr, followed by body (whatever its length)."""
    header = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode("latin1")
    size_format = "<H" if version == (1, 0) else "<I"
    prefix = 6 + 2 + struct.calcsize(size_format)
    header += b" " * (-(prefix + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(size_format, len(header)) + header + body


def _array_npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _npz(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _model_npz(W: np.ndarray, b: np.ndarray) -> bytes:
    return _npz({"W.npy": _array_npy(W), "b.npy": _array_npy(b)})


GOOD_B = _array_npy(np.zeros(10, np.float32))
ZERO_W = np.zeros((784, 10), np.float32)


def _raw_zip(entries: list[tuple[str, bytes, int, int]], flags: int = 0, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip written by hand: (name, raw deflate stream, CRC, uncompressed size) per entry, sizes in zip64 fields;
    flags and method: every entry's general purpose bits and compression method.

    zipfile cannot declare a size it did not compress itself; a bomb needs exactly that.
    """
    local, central = b"", b""
    for name, stream, crc, size in entries:
        encoded = name.encode()
        offset = len(local)
        extra = struct.pack("<HHQQ", 1, 16, size, len(stream))  # zip64: uncompressed, then compressed size
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, flags, method, 0, 0x21, crc,
                             0xFFFFFFFF, 0xFFFFFFFF, len(encoded), len(extra)) + encoded + extra + stream
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, flags, method, 0, 0x21, crc,
                               0xFFFFFFFF, 0xFFFFFFFF, len(encoded), len(extra), 0, 0, 0, 0, offset) + encoded + extra
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(local), 0)
    return local + central + end


def _deflated_zeros(prefix: bytes, megabytes: int) -> bytes:
    """A raw deflate stream of prefix and then megabytes MiB of zeros, made without compressing them all.

    After a full flush a deflate stream refers to nothing before it, so one compressed MiB can be repeated.
    """
    first = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = first.compress(prefix) + first.flush(zlib.Z_FULL_FLUSH)
    mib = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = mib.compress(bytes(1 << 20)) + mib.flush(zlib.Z_FULL_FLUSH)
    return head + chunk * megabytes + b"\x03\x00"  # the last: an empty final block


W_HEADER = _npy((784, 10), "<f4", b"")  # W.npy's header alone: the bombs claim to be an ordinary W


def zip_bomb(megabytes: int = 4400) -> bytes:
    """The measured bomb: W.npy declares (784, 10) float32, then 4.6 GB of deflated zeros (a 4.5 MB file).

    The CRC is left 0: computing it takes seconds, and a loader that inflates the member only finds out at the end.
    """
    stream = _deflated_zeros(W_HEADER, megabytes)
    return _raw_zip([("W.npy", stream, 0, len(W_HEADER) + (megabytes << 20)), ("b.npy", zlib.compress(GOOD_B)[2:-4],
                                                                              zlib.crc32(GOOD_B), len(GOOD_B))])


def honest_bomb(megabytes: int = 4400) -> bytes:
    """A 4.5 MB file whose W.npy declares the shape of its 4.6 GB of zeros: np.load would allocate and inflate them all."""
    header = _npy(((megabytes << 20) // 40, 10), "<f4", b"")
    stream = _deflated_zeros(header, megabytes)
    return _raw_zip([("W.npy", stream, 0, len(header) + (megabytes << 20)), ("b.npy", zlib.compress(GOOD_B)[2:-4],
                                                                            zlib.crc32(GOOD_B), len(GOOD_B))])


def small_bomb(declared: int | None = None) -> bytes:
    """A 50 kB file under the size limit whose W.npy inflates to 50 MB; declared: the size its zip entry claims."""
    stream = _deflated_zeros(W_HEADER, 50)
    crc = zlib.crc32(W_HEADER)
    for _ in range(50):  # the true CRC of the 50 MB, so only the sizes can give the bomb away
        crc = zlib.crc32(bytes(1 << 20), crc)
    return _raw_zip([("W.npy", stream, crc, declared or len(W_HEADER) + (50 << 20)),
                     ("b.npy", zlib.compress(GOOD_B)[2:-4], zlib.crc32(GOOD_B), len(GOOD_B))])


HUGE_SHAPE = _npz({"W.npy": _npy((10**6, 10**6), "<f4", b""), "b.npy": GOOD_B})  # declares 10^12 values


def _renamed_npy() -> bytes:
    return _array_npy(ZERO_W)


def _duplicate_w() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("W.npy", _array_npy(ZERO_W))
        archive.writestr("W.npy", _array_npy(ZERO_W))
        archive.writestr("b.npy", GOOD_B)
    return buffer.getvalue()


def _flip(raw: bytes, offset: int) -> bytes:
    return raw[:offset] + bytes([raw[offset] ^ 0xFF]) + raw[offset + 1 :]


# case -> (how to build the file, the words its one message must hold)
BAD_MODEL_FILES: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty file": (lambda: b"", "the file is empty"),
    "text, not a zip": (lambda: b"W = [[0.1, 0.2]]\n", "the file is not an .npz (zip) file"),
    ".npy renamed .npz": (_renamed_npy, "the file is a single .npy array, not an .npz (zip) file holding W and b"),
    "truncated zip": (lambda: SoftmaxRegression(ZERO_W, np.zeros(10)).to_bytes()[:20000],
                      "the file is a damaged or incomplete .npz (zip) file"),
    "zip cut before its end record": (lambda: SoftmaxRegression(ZERO_W, np.zeros(10)).to_bytes()[:-10],
                                      "the file is a damaged or incomplete .npz (zip) file"),
    "zip bomb 4.6 GB": (zip_bomb, "the file is 4.6 MB; a model file is at most 73 kB"),
    "zip bomb declaring its 4.6 GB": (honest_bomb, "the file is 4.6 MB; a model file is at most 73 kB"),
    "bomb under the size limit": (small_bomb, "W declares 52.4 MB; W of shape (784, 10) takes at most 64 kB"),
    "bomb lying about its size": (lambda: small_bomb(declared=len(W_HEADER) + 31360),
                                  "W is damaged: its bytes do not match the zip file's checksum"),
    "shape (10^6, 10^6)": (lambda: HUGE_SHAPE, "W has shape (1000000, 1000000); a model has W of shape (784, 10)"),
    "b of 10^12 values": (lambda: _npz({"W.npy": _array_npy(ZERO_W), "b.npy": _npy((10**12,), "<f4", b"")}),
                          "b has shape (1000000000000,); a model has b of shape (10,)"),
    "W of shape (5, 5)": (lambda: _model_npz(np.zeros((5, 5), np.float32), np.zeros(10, np.float32)),
                          "W has shape (5, 5); a model has W of shape (784, 10)"),
    "W transposed": (lambda: _model_npz(ZERO_W.T, np.zeros(10, np.float32)),
                     "W has shape (10, 784); a model has W of shape (784, 10)"),
    "pickled object array": (lambda: _npz({"W.npy": _array_npy(np.array([{"x": 1}] * 7840, dtype=object).reshape(784, 10),
                                                               allow_pickle=True), "b.npy": GOOD_B}),
                             "W holds Python objects (pickled data); a model file holds only numbers"),
    "integer W": (lambda: _model_npz(np.zeros((784, 10), np.int32), np.zeros(10, np.float32)),
                  "W has dtype int32; a model holds float16, float32 or float64 values"),
    "complex b": (lambda: _model_npz(ZERO_W, np.zeros(10, np.complex64)),
                  "b has dtype complex64; a model holds float16, float32 or float64 values"),
    "structured W": (lambda: _npz({"W.npy": _npy((784, 10), [("a", "<f4")], bytes(31360)), "b.npy": GOOD_B}),
                     "W has dtype [('a', '<f4')]; a model holds float16, float32 or float64 values"),
    "float64 W of 1e39": (lambda: _model_npz(np.full((784, 10), 1e39), np.zeros(10, np.float32)),
                          "W holds values too large for float32 (up to 1e+39)"),
    "NaN in b": (lambda: _model_npz(ZERO_W, np.array([0.0] * 9 + [np.nan], np.float32)), "b holds NaN or infinite values"),
    "inf in W": (lambda: _model_npz(np.full((784, 10), np.inf, np.float32), np.zeros(10, np.float32)),
                 "W holds NaN or infinite values"),
    "wrong names": (lambda: _npz({"weights.npy": _array_npy(ZERO_W), "bias.npy": GOOD_B}),
                    "the file holds arrays bias, weights; a model file holds exactly W and b"),
    "extra member": (lambda: _npz({"W.npy": _array_npy(ZERO_W), "b.npy": GOOD_B, "extra.npy": GOOD_B}),
                     "the file holds arrays W, b, extra; a model file holds exactly W and b"),
    "no b": (lambda: _npz({"W.npy": _array_npy(ZERO_W)}), "the file holds array W; a model file holds exactly W and b"),
    "name written as markup": (lambda: _npz({"W.npy": _array_npy(ZERO_W), "[x](http://h/)": GOOD_B}),
                               "the file holds arrays W, (an oddly named entry); a model file holds exactly W and b"),
    "W twice": (_duplicate_w, "the file holds two arrays with the same name"),
    "W shorter than its header says": (lambda: _npz({"W.npy": _npy((784, 10), "<f4", bytes(31356)), "b.npy": GOOD_B}),
                                       "W holds 31356 bytes of values; its header declares 31360"),
    "W longer than its header says": (lambda: _npz({"W.npy": _npy((784, 10), "<f4", bytes(31364)), "b.npy": GOOD_B}),
                                      "W holds 31364 bytes of values; its header declares 31360"),
    "npy format 3.0": (lambda: _npz({"W.npy": _npy((784, 10), "<f4", bytes(31360), version=(3, 0)), "b.npy": GOOD_B}),
                       "W uses .npy format version 3.0; a model file uses 1.0 or 2.0"),
    "garbage npy header": (lambda: _npz({"W.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': ((((\n" + bytes(31360),
                                         "b.npy": GOOD_B}), "W is not a valid .npy array"),
    "W's deflate stream cut short": (lambda: _raw_zip([("W.npy", zlib.compress(_array_npy(ZERO_W))[2:-4][:-20],
                                                         zlib.crc32(_array_npy(ZERO_W)), len(_array_npy(ZERO_W))),
                                                        ("b.npy", zlib.compress(GOOD_B)[2:-4], zlib.crc32(GOOD_B), len(GOOD_B))]),
                                     "W is damaged: its bytes do not match the zip file's checksum"),
    "W's deflate stream invalid": (lambda: _raw_zip([("W.npy", b"\xff" * 100, 0, len(W_HEADER) + 31360),
                                                      ("b.npy", zlib.compress(GOOD_B)[2:-4], zlib.crc32(GOOD_B), len(GOOD_B))]),
                                   "W is damaged or cut short"),
    "flipped byte (CRC)": (lambda: _flip(_npz({"W.npy": _array_npy(np.ones((784, 10), np.float32)), "b.npy": GOOD_B}), 5000),
                           "W is damaged: its bytes do not match the zip file's checksum"),
}


@pytest.mark.parametrize("case", list(BAD_MODEL_FILES))
def test_bad_model_file_is_one_model_file_error(case):
    make, words = BAD_MODEL_FILES[case]
    raw = make()
    with pytest.raises(ModelFileError) as info:  # any other exception type fails the test
        SoftmaxRegression.load(raw)
    message = str(info.value)
    assert message == words or message.startswith(words), message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("case", ["zip bomb 4.6 GB", "W of shape (5, 5)", "float64 W of 1e39", ".npy renamed .npz"])
def test_bad_model_file_on_disk_is_named_and_left_as_it_was(case, tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(raw := BAD_MODEL_FILES[case][0]())
    with pytest.raises(ModelFileError) as info:
        SoftmaxRegression.load(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message  # "W in .../model.npz has shape ...", ".../model.npz is ..."
    assert path.read_bytes() == raw and sorted(tmp_path.iterdir()) == [path]


def test_missing_model_file_says_it_is_missing(tmp_path):
    with pytest.raises(ModelFileError, match=r"^\S+/missing\.npz does not exist$"):
        SoftmaxRegression.load(tmp_path / "missing.npz")


@pytest.mark.parametrize(
    "how",
    ["to_bytes", "save", "savez_compressed", "float64 big-endian Fortran W", "float16", "npy 2.0 header", "file object"],
)
def test_files_a_model_may_come_in_load_exactly(how, tmp_path):
    rng = np.random.default_rng(7)
    model = SoftmaxRegression(rng.normal(0, 0.5, (784, 10)).astype(np.float16), rng.normal(0, 0.5, 10).astype(np.float16))
    W, b = model.W.copy(), model.b.copy()  # float16-exact values: every dtype below holds them exactly
    if how == "to_bytes":
        source = model.to_bytes()
    elif how == "save":
        model.save(tmp_path / "m.npz")
        source = tmp_path / "m.npz"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temporary left beside it
    elif how == "savez_compressed":
        buffer = io.BytesIO()
        np.savez_compressed(buffer, W=W, b=b)
        source = buffer.getvalue()
    elif how == "float64 big-endian Fortran W":
        source = _npz({"W.npy": _array_npy(np.asfortranarray(W.astype(">f8"))), "b.npy": _array_npy(b.astype(">f8"))})
    elif how == "float16":
        source = _model_npz(W.astype(np.float16), b.astype(np.float16))
    elif how == "npy 2.0 header":
        source = _npz({"W.npy": _npy((784, 10), "<f4", W.tobytes(), version=(2, 0)), "b.npy": _array_npy(b)})
    else:
        source = io.BytesIO(model.to_bytes())
    loaded = SoftmaxRegression.load(source)
    assert loaded.W.dtype == np.float32 and loaded.W.flags.c_contiguous and loaded.W.flags.writeable
    np.testing.assert_array_equal(loaded.W, W)
    np.testing.assert_array_equal(loaded.b, b)


MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys, tracemalloc
    from pathlib import Path
    from softmax_core import ModelFileError, SoftmaxRegression
    path = Path(sys.argv[1])
    source = path.read_bytes() if sys.argv[2] == "bytes" else path  # the page passes bytes, the CLI a path
    SoftmaxRegression.load(SoftmaxRegression.init(__import__("numpy").random.default_rng(0)).to_bytes())  # warm up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        SoftmaxRegression.load(source)
    except ModelFileError as err:
        message = str(err)
    else:
        message = "loaded"
    peak = tracemalloc.get_traced_memory()[1]
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # kB on Linux
    print(growth, peak, message, sep="\\t")
    """
)


@pytest.mark.parametrize(
    "case", ["zip bomb 4.6 GB", "zip bomb declaring its 4.6 GB", "bomb under the size limit", "bomb lying about its size", "shape (10^6, 10^6)"]
)
@pytest.mark.parametrize("kind", ["path", "bytes"])
def test_hostile_model_files_cost_little_memory(case, kind, tmp_path):
    path = tmp_path / "hostile.npz"
    path.write_bytes(BAD_MODEL_FILES[case][0]())
    run = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), kind], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    growth_kb, peak_bytes, message = run.stdout.strip().split("\t")
    assert message != "loaded"
    assert int(growth_kb) < 50_000, f"max RSS grew by {int(growth_kb) / 1e3:.1f} MB"
    assert int(peak_bytes) < 50_000_000, f"tracemalloc peak {int(peak_bytes) / 1e6:.1f} MB"
    print(f"{case} ({kind}): RSS +{int(growth_kb) / 1e3:.2f} MB, tracemalloc peak {int(peak_bytes) / 1e6:.2f} MB")


# ---------------------------------------------------------------------------------------------------------------
# The command line: every bad argument is refused (status 2, one line) before any data is loaded


def _cli(*args: str, data_dir: str | Path | None = "/nonexistent-data-root", timeout: int = 120) -> subprocess.CompletedProcess:
    """python -m softmax_core; by default with a SOFTMAX_DATA_DIR that does not exist and no download, so a
    run that got as far as loading data would end with status 1, not 2."""
    env = {k: v for k, v in os.environ.items() if k not in ("SOFTMAX_DATA_MIRRORS",)}
    if data_dir is not None:
        env["SOFTMAX_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "softmax_core", "--no-download", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _one_error_line(run: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in run.stderr + run.stdout
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    return lines[0]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "a-file").write_text("a regular file: nothing can be created under it, not even by root")
    (tmp_path / "bad.npz").write_bytes(zip_bomb(100))
    return tmp_path


BAD_ARGUMENTS = {  # case -> (arguments, with {tmp} for the work folder; words of the one error line)
    "negative seed": (["--seed", "-5"], "seed must be a whole number >= 0; got -5"),
    "batch size above the limit": (["--batch-size", "100000000"], "batch size must be a whole number from 1 to 10000000; got 100000000"),
    "batch size 0": (["--batch-size", "0"], "batch size must be a whole number from 1 to 10000000; got 0"),
    "step size above the limit": (["--step-size", "20000"], "step size must be a whole number from 1 to 10000; got 20000"),
    "sigma NaN": (["--sigma", "nan"], "sigma must be a number from 0 to 1; got nan"),
    "empty data dir": (["--data-dir", ""], "--data-dir needs a folder; got an empty path"),
    "save into a missing folder": (["--save", "{tmp}/missing/m.npz"], "--save {tmp}/missing/m.npz: the folder {tmp}/missing does not exist"),
    "save onto a folder": (["--save", "{tmp}"], "--save {tmp} is a folder; give a file name such as {tmp}/model.npz"),
    "save under a regular file": (["--save", "{tmp}/a-file/m.npz"], "--save {tmp}/a-file/m.npz: {tmp}/a-file is not a folder"),
    "save where nothing can be created": (["--save", "/proc/version"], "--save /proc/version: cannot create a file in /proc ("),
    "save onto a device": (["--save", "/dev/null"], "--save /dev/null is not a regular file"),
    "load a missing file": (["--load", "{tmp}/missing.npz"], "--load: {tmp}/missing.npz does not exist"),
    "load a zip bomb": (["--load", "{tmp}/bad.npz", "--save", "{tmp}/out.npz"], "--load: {tmp}/bad.npz is 104 kB; a model file is at most 73 kB"),
    "load a folder": (["--load", "{tmp}"], "--load: {tmp} is a folder, not a model file"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_argument_exits_2_with_one_line_before_loading_data(case, workdir):
    args, words = BAD_ARGUMENTS[case]
    proc_version = Path("/proc/version").read_bytes()
    before = sorted(p.name for p in workdir.iterdir())
    run = _cli(*(a.format(tmp=workdir) for a in args))
    assert run.returncode == 2, run.stderr
    line = _one_error_line(run)
    assert line.startswith("python -m softmax_core: error: " + words.format(tmp=workdir)), line
    assert sorted(p.name for p in workdir.iterdir()) == before  # no --save file, no temporary left
    assert Path("/proc/version").read_bytes() == proc_version


@pytest.mark.parametrize(
    ("mode", "words"),
    [(0o555, "cannot create a file in {folder} (Permission denied)"), (0o000, "cannot look there (Permission denied)")],
    ids=["read-only folder", "folder that cannot be entered"],
)
def test_save_where_we_may_not_write_is_refused_before_training(mode, words, capsys, monkeypatch):
    """In this process (nobody cannot run this interpreter), as nobody when the tests run as root."""
    shared = Path(tempfile.mkdtemp(prefix="softmax-test-"))
    try:
        shared.chmod(0o755)
        folder = shared / "locked"
        folder.mkdir()
        folder.chmod(mode)
        monkeypatch.setattr(cli, "load_dataset", lambda *a, **k: pytest.fail("the data was loaded"))
        with as_other_user(), pytest.raises(SystemExit) as info:
            cli.main(["--save", str(folder / "m.npz")])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"python -m softmax_core: error: --save {folder}/m.npz: " + words.format(folder=folder)]
        folder.chmod(0o755)
        assert list(folder.iterdir()) == []
    finally:
        (shared / "locked").chmod(0o755)
        shutil.rmtree(shared)


def test_explicit_data_dir_is_used_or_refused_never_replaced(tmp_path, data_root):
    only_fashion = tmp_path / "root"
    only_fashion.mkdir()
    (only_fashion / "fashion-mnist").symlink_to(data_root / "fashion-mnist")
    # SOFTMAX_DATA_DIR holds MNIST, but --data-dir was given: that folder or an error.
    run = _cli("--dataset", "mnist", "--data-dir", str(only_fashion), "--epochs", "1", data_dir=data_root)
    assert run.returncode == 1 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"error: {only_fashion / 'mnist'} (folder given with --data-dir) does not exist")
    run = _cli("--data-dir", "/nowhere", "--epochs", "1", data_dir=data_root)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip() == (
        "error: the data folder /nowhere (folder given with --data-dir) does not exist; give the folder that holds "
        "fashion-mnist/ with the four files of Fashion-MNIST, or leave --data-dir out to use the usual places."
    )


def test_cli_names_the_source_kind_and_continues_from_a_saved_model(tmp_path, data_root):
    start = tmp_path / "start.npz"
    SoftmaxRegression(np.zeros((784, 10)), np.zeros(10)).save(start)
    run = _cli("--data-dir", str(data_root), "--epochs", "1", "--load", str(start), "--save", str(tmp_path / "out.npz"),
               data_dir=None)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == f"Fashion-MNIST from {data_root / 'fashion-mnist'} (folder given with --data-dir)"
    assert "untrained test acc 0.100" in run.stdout
    assert SoftmaxRegression.load(tmp_path / "out.npz").is_finite()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz", "start.npz"]


# ---------------------------------------------------------------------------------------------------------------
# Data sources: an explicit root is the only place read; the kind of a source; a download a damaged folder cannot hide


@pytest.fixture
def places(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Path]:
    """Empty roots for $SOFTMAX_DATA_DIR, the system folder and the cache (no download mirror at all)."""
    roots = {k: tmp_path / k for k in ("explicit", "env", "system", "cache")}
    for var in ("SOFTMAX_DATA_MIRRORS", "SOFTMAX_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(roots["env"]))
    monkeypatch.setattr(data, "SYSTEM_ROOTS", (roots["system"],))
    for name, spec in list(data.DATASETS.items()):
        monkeypatch.setitem(data.DATASETS, name, dataclasses.replace(spec, mirrors=()))
    return roots


def _damage(folder: Path, data_root: Path, dataset: str, file_name: str) -> Path:
    """folder/ with the real files but file_name cut in half."""
    _link_folder(folder, data_root / dataset, [f for f in NAMES if f != file_name])
    (folder / file_name).write_bytes((data_root / dataset / file_name).read_bytes()[:1000])
    return folder / file_name


@pytest.mark.parametrize(
    ("where", "dataset", "kind"),
    [("explicit", "mnist", "folder given with --data-dir"), ("env", "mnist", "folder set by SOFTMAX_DATA_DIR"),
     ("system", "fashion-mnist", "Debian package dataset-fashion-mnist"), ("system", "mnist", "system folder /usr/share/datasets"),
     ("cache", "mnist", "download cache")],
)
def test_source_kind_says_which_place_without_the_path(where, dataset, kind, places, data_root):
    _link_folder(places[where] / dataset, data_root / dataset)
    loaded = load_dataset(dataset, places["explicit"] if where == "explicit" else None, download=False,
                          cache_dir=places["cache"])
    assert loaded.source == places[where] / dataset and loaded.source_kind == kind
    assert str(places[where]) not in loaded.source_kind


def test_explicit_root_missing_the_data_set_is_an_error_not_another_source(places, data_root):
    _link_folder(places["env"] / "mnist", data_root / "mnist")
    _link_folder(places["explicit"] / "fashion-mnist", data_root / "fashion-mnist")
    with pytest.raises(DataError) as info:
        load_dataset("mnist", places["explicit"], cache_dir=places["cache"])  # download=True: still not replaced
    assert str(info.value).startswith(f"{places['explicit'] / 'mnist'} (folder given with --data-dir) does not exist")
    assert not (places["cache"] / "mnist").exists()  # nothing was downloaded either


@pytest.mark.parametrize(
    ("where", "fix"),
    [("cache", "Delete {path} and run again to download a fresh copy."),
     ("env", "Replace {path} with the official file, or unset SOFTMAX_DATA_DIR to use the other places."),
     ("explicit", "Replace {path} with the official file, or leave --data-dir out to use the usual places.")],
)
def test_damaged_file_names_the_file_to_remove_or_replace(where, fix, places, data_root):
    bad = _damage(places[where] / "mnist", data_root, "mnist", NAMES[1])
    with pytest.raises(DataError) as info:
        load_dataset("mnist", places["explicit"] if where == "explicit" else None, download=False, cache_dir=places["cache"])
    message = str(info.value)
    assert message.startswith(f"{bad} is not a complete gzip file") and message.endswith(fix.format(path=bad))
    assert "\n" not in message


def test_a_fresh_download_is_not_hidden_by_a_damaged_folder_earlier_in_the_order(places, data_root):
    bad = _damage(places["env"] / "mnist", data_root, "mnist", NAMES[0])
    downloaded = _link_folder(places["cache"] / "mnist", data_root / "mnist")  # as fetch() leaves it
    with pytest.raises(DataError, match=f"^{bad} is not a complete gzip file"):
        load_dataset("mnist", download=False, cache_dir=places["cache"])
    preferred = load_dataset("mnist", download=False, cache_dir=places["cache"], prefer=downloaded)
    direct = load_folder("mnist", downloaded, cache_dir=places["cache"])
    for loaded in (preferred, direct):
        assert loaded.source == downloaded and loaded.source_kind == "download cache"
        assert loaded.train_images.shape == (60000, 28, 28)
    with pytest.raises(ValueError, match="root or prefer"):
        load_dataset("mnist", data_root, prefer=downloaded)


def test_load_folder_of_a_partial_folder_names_what_is_missing(places, data_root):
    folder = _link_folder(places["cache"] / "mnist", data_root / "mnist", NAMES[:3])
    with pytest.raises(DataError) as info:
        load_folder("mnist", folder, cache_dir=places["cache"])
    assert str(info.value) == (f"{folder} holds only part of MNIST digits; missing: {NAMES[3]}. "
                               "Copy the missing file(s) there, or download it again.")


def test_gzip_bomb_in_a_data_folder_is_refused_by_its_size(places, data_root, tmp_path):
    """Not a memory test (the files are 55 MB when whole): a label file claiming 10^9 items is a DataError."""
    folder = _link_folder(places["explicit"] / "mnist", data_root / "mnist", NAMES[:3])
    (folder / NAMES[3]).write_bytes(gzip.compress((0x801).to_bytes(4, "big") + (10**9).to_bytes(4, "big") + bytes(1000)))
    with pytest.raises(DataError, match="should hold 1000000008 bytes for 1000000000 items but holds 1008"):
        load_dataset("mnist", places["explicit"], download=False, cache_dir=places["cache"])
