"""PB2's time-varying squared-exponential kernel (Parker-Holder et al. 2020), for sklearn's GP."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.gaussian_process.kernels import RBF, Hyperparameter, Kernel


class TimeVaryingSE(Kernel):
    """``SE(x, x'; length_scale) * (1 - epsilon) ** (|t - t'| / 2)`` on inputs ``[t, x...]``.

    Column 0 is time, the other columns are the hyperparameters. The squared-exponential part is
    sklearn's :class:`~sklearn.gaussian_process.kernels.RBF` (isotropic); gradients are with respect
    to the log of both hyperparameters, as sklearn's optimiser expects.
    """

    def __init__(self, length_scale: float = 0.5, length_scale_bounds: Any = (0.2, 2.0),
                 epsilon: float = 0.1, epsilon_bounds: Any = (1e-3, 0.5)) -> None:
        self.length_scale = length_scale
        self.length_scale_bounds = length_scale_bounds
        self.epsilon = epsilon
        self.epsilon_bounds = epsilon_bounds

    @property
    def hyperparameter_length_scale(self) -> Hyperparameter:
        return Hyperparameter("length_scale", "numeric", self.length_scale_bounds)

    @property
    def hyperparameter_epsilon(self) -> Hyperparameter:
        return Hyperparameter("epsilon", "numeric", self.epsilon_bounds)

    def _rbf(self) -> RBF:
        return RBF(length_scale=self.length_scale, length_scale_bounds=self.length_scale_bounds)

    def __call__(self, X: Any, Y: Any = None, eval_gradient: bool = False) -> Any:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if Y is not None and eval_gradient:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        Yv = X if Y is None else np.atleast_2d(np.asarray(Y, dtype=float))
        dt = np.abs(X[:, :1] - Yv[:, :1].T)
        log_decay = math.log1p(-float(self.epsilon))
        k_time = np.exp(0.5 * dt * log_decay)
        if not eval_gradient:
            k_se = self._rbf()(X[:, 1:], None if Y is None else Yv[:, 1:])
            return k_se * k_time
        k_se, grad_se = self._rbf()(X[:, 1:], eval_gradient=True)
        K = k_se * k_time
        grads = []
        # theta is ordered by hyperparameter name: epsilon, then length_scale.
        if not self.hyperparameter_epsilon.fixed:
            eps = float(self.epsilon)
            # d/d(log eps) of (1 - eps) ** (dt / 2) = -(dt / 2) * eps / (1 - eps) * k_time
            grads.append(K * (-0.5 * dt * eps / (1.0 - eps)))
        if grad_se.shape[2]:
            grads.append(grad_se[:, :, 0] * k_time)
        grad = np.stack(grads, axis=2) if grads else np.empty((X.shape[0], X.shape[0], 0))
        return K, grad

    def diag(self, X: Any) -> Any:
        return np.ones(np.atleast_2d(X).shape[0])

    def is_stationary(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(length_scale={self.length_scale:.3g}, epsilon={self.epsilon:.3g})"
