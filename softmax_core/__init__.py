"""Softmax regression from scratch in NumPy: data, model and training, with no user interface."""

from .data import DATASETS, DataError, Dataset, load_dataset
from .functional import accuracy, cross_entropy, log_softmax, logsumexp, naive_softmax, softmax
from .model import ModelFileError, SoftmaxRegression, features
from .training import ConfigError, EpochProgress, EpochRecord, TrainConfig, Trainer, TrainingDiverged, TrainState

__all__ = [
    "DATASETS",
    "ConfigError",
    "DataError",
    "Dataset",
    "EpochProgress",
    "EpochRecord",
    "ModelFileError",
    "SoftmaxRegression",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "TrainingDiverged",
    "accuracy",
    "cross_entropy",
    "features",
    "load_dataset",
    "log_softmax",
    "logsumexp",
    "naive_softmax",
    "softmax",
]
