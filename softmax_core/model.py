"""The softmax-regression model: parameters W (784, 10) and b (10,), predictions, and .npz files."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

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

    def image_logits(self, images: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Scores (n_images, n_classes) of uint8 images (n, 28, 28), exactly as training evaluates them.

        The 1/255 pixel scale is applied to the (n, 10) products rather than to the (n, 784) pixels:
        cheaper, and every page that reports an accuracy gets the same figures as the trainer.
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
        """Write the parameters to an .npz file at path."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, source: str | Path | bytes | BinaryIO, n_features: int = N_FEATURES, n_classes: int = N_CLASSES) -> SoftmaxRegression:
        """Read and check an .npz with W (n_features, n_classes) and b (n_classes,), finite floats; raise ModelFileError."""
        if isinstance(source, bytes):
            source = io.BytesIO(source)
        try:
            with np.load(source, allow_pickle=False) as npz:
                if not {"W", "b"} <= set(npz.files):
                    raise ModelFileError(f"the file must hold arrays named W and b; it holds {sorted(npz.files) or 'none'}")
                W, b = npz["W"], npz["b"]
        except ModelFileError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            # np.load raises ValueError for pickled object arrays, OSError/BadZipFile for non-npz bytes.
            raise ModelFileError(f"not a model file saved by this app (.npz with W and b, no pickles): {err}") from None
        for name, array, shape in (("W", W, (n_features, n_classes)), ("b", b, (n_classes,))):
            if array.shape != shape:
                raise ModelFileError(f"{name} has shape {array.shape}, expected {shape}")
            if not np.issubdtype(array.dtype, np.floating):
                raise ModelFileError(f"{name} has dtype {array.dtype}, expected a float type")
            if not np.isfinite(array).all():
                raise ModelFileError(f"{name} holds NaN or infinite values")
        return cls(W, b)
