"""Softmax regression from scratch, as the lesson writes it: the plain twin of the fast Trainer.

Trainer computes exactly this, only faster; tests/test_reference.py asserts that the two agree.
One difference is left on purpose: the lesson's cross_entropy takes -log of a probability, so a
probability that rounds to 0 gives an infinite loss, where Trainer's log-sum-exp stays finite.
"""

import numpy as np


def softmax(X: np.ndarray, stable: bool = True) -> np.ndarray:
    """Each row of scores X (batch, 10) turned into probabilities that sum to 1."""
    if stable:
        X = X - X.max(axis=1, keepdims=True)  # the same probabilities, but exp(<= 0) cannot overflow
    X_exp = np.exp(X)  # (batch, 10)
    partition = X_exp.sum(axis=1, keepdims=True)  # (batch, 1)
    return X_exp / partition


def net(X: np.ndarray, W: np.ndarray, b: np.ndarray, stable: bool = True) -> np.ndarray:
    """Class probabilities (batch, 10) of images X (batch, 784) or (batch, 28, 28)."""
    return softmax(X.reshape(-1, W.shape[0]) @ W + b, stable)


def cross_entropy(y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Loss of each sample (batch,): minus the log of the probability given to its true label."""
    return -np.log(y_hat[np.arange(len(y_hat)), y])


def accuracy(y_hat: np.ndarray, y: np.ndarray) -> int:
    """Number of samples whose most probable class is the true label."""
    return int((y_hat.argmax(axis=1) == y).sum())


def sgd(params: list[np.ndarray], grads: list[np.ndarray], lr: float, velocity: list[np.ndarray], momentum: float = 0.0) -> None:
    """One step downhill, in place; with momentum, along the running sum v = momentum * v + grad."""
    for param, grad, v in zip(params, grads, velocity):
        step = grad
        if momentum:
            v[:] = momentum * v + grad
            step = v
        param[:] = param - lr * step


def lr_at(epoch: int, lr: float, epochs: int, schedule: str = "constant", step_size: int = 5, gamma: float = 0.5) -> float:
    """Learning rate of the epoch-th epoch (from 0): constant, x gamma every step_size epochs, or cosine to 0."""
    if schedule == "step":
        return lr * gamma ** (epoch // step_size)
    if schedule == "cosine":
        return lr * 0.5 * (1 + float(np.cos(np.pi * epoch / epochs)))
    return lr


def train_epoch(
    images: np.ndarray, labels: np.ndarray, W: np.ndarray, b: np.ndarray, velocity: list[np.ndarray], rng: np.random.Generator,
    lr: float, batch_size: int, momentum: float = 0.0, weight_decay: float = 0.0, stable: bool = True,
) -> tuple[float, float]:
    """One pass over uint8 images in a new random order, updating W, b and velocity in place; returns (loss, accuracy)."""
    n = len(images)
    order = rng.permutation(n)  # a new order every epoch
    loss_sum, correct = 0.0, 0
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]  # the last batch may be smaller
        k = len(batch)
        X = images[batch].reshape(k, -1).astype(np.float32) / 255  # (k, 784) pixels in [0, 1]
        y = labels[batch]  # (k,)
        y_hat = net(X, W, b, stable)  # (k, 10)
        loss_sum += float(cross_entropy(y_hat, y).sum())  # measured before this batch's update
        correct += accuracy(y_hat, y)
        y_onehot = np.eye(10, dtype=np.float32)[y]  # (k, 10)
        dz = (y_hat - y_onehot) / k  # (k, 10): the gradient of the mean loss with respect to the scores
        grad_W = X.T @ dz + weight_decay * W  # (784, 10); weight decay pulls W, not b, towards 0
        grad_b = dz.sum(axis=0)  # (10,)
        sgd([W, b], [grad_W, grad_b], lr, velocity, momentum)
    return loss_sum / n, correct / n


def evaluate_accuracy(images: np.ndarray, labels: np.ndarray, W: np.ndarray, b: np.ndarray) -> float:
    """Fraction of the images whose most probable class is the true label."""
    X = images.reshape(len(images), -1).astype(np.float32) / 255  # (n, 784)
    return accuracy(net(X, W, b), labels) / len(labels)
