"""Principal component analysis from scratch: the top-k singular vectors by subspace iteration.

    X (N, D) -> centre: Xc = X - mean
    the right singular vectors of Xc are the eigenvectors of C = Xc^T Xc (D, D), and its
    singular values are sqrt(eigenvalues of C). For the top k:
        Q (D, k) random orthonormal; repeat: Q <- orthonormalise(C Q)   (block power iteration)
        then Rayleigh-Ritz: T = Q^T C Q (k, k), diagonalised by cyclic Jacobi rotations,
        V = Q @ eigenvectors(T) sorted by eigenvalue
    components = V^T (k, D), singular values = sqrt(eigenvalues), explained variance =
    eigenvalues / (N - 1), scores = Xc @ V (N, k)

The seed's Phase 2 math (SVD, PCA) used for real: `nanovla lab clip` projects image and text
embeddings with it. Orthonormalisation is modified Gram-Schmidt and the small eigenproblem is
Jacobi's method, both written out here, so nothing but matrix products comes from numpy;
tests/test_clip_lab.py checks the result against `numpy.linalg.svd` (singular values, and the
vectors up to sign). Signs are fixed so that each component's largest-magnitude entry is
positive (as scikit-learn's `svd_flip` does), which makes runs comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nanovla.errors import InputError


@dataclass
class PCAResult:
    """mean (D,), components (k, D) orthonormal rows, singular_values (k,) descending,
    explained_variance (k,) = singular_values**2 / (N - 1), scores (N, k)."""

    mean: np.ndarray
    components: np.ndarray
    singular_values: np.ndarray
    explained_variance: np.ndarray
    scores: np.ndarray

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(M, D) -> (M, k) coordinates in the principal axes."""
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T


def gram_schmidt(matrix: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning `matrix`'s columns (modified Gram-Schmidt, (D, k))."""
    q = np.array(matrix, dtype=np.float64, copy=True)
    for j in range(q.shape[1]):
        for i in range(j):
            q[:, j] -= (q[:, i] @ q[:, j]) * q[:, i]
        norm = np.sqrt(q[:, j] @ q[:, j])
        q[:, j] = q[:, j] / norm if norm > 1e-300 else 0.0
    return q


def jacobi_eigh(
    matrix: np.ndarray, sweeps: int = 100, tol: float = 1e-15
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (k,) and eigenvectors (k, k columns) of a small symmetric matrix by cyclic
    Jacobi rotations: each rotation zeroes one off-diagonal pair, until they are all ~0."""
    a = np.array(matrix, dtype=np.float64, copy=True)
    k = a.shape[0]
    vectors = np.eye(k)
    scale = max(np.abs(a).max(), 1e-300)
    for _ in range(sweeps):
        off = np.sqrt(2.0 * (np.triu(a, 1) ** 2).sum())  # not sum - diag: that cancels to < 0
        if off <= tol * scale:
            break
        for p in range(k - 1):
            for q in range(p + 1, k):
                if abs(a[p, q]) <= 1e-300:
                    continue
                theta = (a[q, q] - a[p, p]) / (2.0 * a[p, q])
                if abs(theta) > 1e100:  # theta**2 would overflow; t ~ 1 / (2 theta)
                    t = 1.0 / (2.0 * theta)
                else:
                    t = (
                        np.sign(theta) / (abs(theta) + np.sqrt(theta * theta + 1.0))
                        if theta
                        else 1.0
                    )
                c = 1.0 / np.sqrt(t * t + 1.0)
                s = t * c
                rotation = np.eye(k)
                rotation[p, p] = rotation[q, q] = c
                rotation[p, q], rotation[q, p] = s, -s
                a = rotation.T @ a @ rotation
                vectors = vectors @ rotation
    return np.diag(a).copy(), vectors


def pca(
    x: np.ndarray, k: int = 2, iterations: int = 300, tol: float = 1e-12, seed: int = 0
) -> PCAResult:
    """The top-`k` principal components of `x` (N, D) (see the module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"pca: x must be (N, D) with N >= 2, got shape {x.shape}")
    if not 1 <= k <= min(x.shape):
        raise InputError(f"pca: k must be in [1, {min(x.shape)}], got {k}")
    if not np.isfinite(x).all():
        raise InputError("pca: x contains NaN or inf")
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred  # (D, D)
    # A few extra vectors speed up convergence of the k-th (the gap to the (k+p)-th counts).
    width = min(k + 4, x.shape[1])
    q = gram_schmidt(np.random.default_rng(seed).standard_normal((x.shape[1], width)))
    for _ in range(iterations):
        new = gram_schmidt(cov @ q)
        change = 1.0 - np.abs((new * q).sum(axis=0)).min()
        q = new
        if change < tol:
            break
    eigenvalues, rotation = jacobi_eigh(q.T @ cov @ q)
    order = np.argsort(eigenvalues)[::-1][:k]
    vectors = (q @ rotation)[:, order]  # (D, k)
    flip = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(k)])
    vectors = vectors * np.where(flip == 0, 1.0, flip)
    values = np.clip(eigenvalues[order], 0.0, None)
    return PCAResult(
        mean=mean,
        components=vectors.T,
        singular_values=np.sqrt(values),
        explained_variance=values / (x.shape[0] - 1),
        scores=centred @ vectors,
    )
