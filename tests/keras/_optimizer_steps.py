"""Weights and gradients both optimizer comparisons with real Keras start from: three tensors,
one with gradients far below sqrt(epsilon), where epsilon's place decides the step size."""
import numpy as np

SHAPES = [(3, 3, 1, 4), (4,), (36, 10)]
SCALES = [1.0, 1e-5, 0.1]  # gradient sizes per tensor: the bias's are far below sqrt(eps)


def start_and_grads(steps: int):
    rng = np.random.default_rng(7)
    start = [rng.standard_normal(s).astype("float32") for s in SHAPES]
    grads = [[(rng.standard_normal(s) * k).astype("float32") for s, k in zip(SHAPES, SCALES)]
             for _ in range(steps)]
    return start, grads
