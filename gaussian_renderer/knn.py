"""Mean distance to the nearest neighbours (initial Gaussian scales), scipy cKDTree, any device."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor


def knn_mean_distance(points: Tensor, k: int = 3) -> Tensor:
    """Mean Euclidean distance [N] from each point to its k nearest *other* points.

    Args: points [N, 3] float tensor on any device (queried on the CPU, returned on the input's device and
    dtype; not differentiable); k >= 1. With N <= k every other point is used; a lone point gets 0.
    Duplicated points count as neighbours at distance 0.
    """
    if not isinstance(points, Tensor):
        raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}")
    if not points.is_floating_point():
        raise TypeError(f"points must be a floating-point tensor, got dtype {points.dtype}")
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape [N, 3], got {list(points.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError("points contains non-finite values (nan or inf)")
    n = points.shape[0]
    k_eff = min(k, n - 1)
    if k_eff <= 0:
        return torch.zeros(n, dtype=points.dtype, device=points.device)
    xyz = points.detach().cpu().double().numpy()
    dist, _ = cKDTree(xyz).query(xyz, k=k_eff + 1, workers=-1)  # exact: the same result on any number of cores
    # Column 0 is the point itself (distance 0), or an exact duplicate: either way one zero to drop.
    mean = np.asarray(dist, dtype=np.float64)[:, 1:].mean(axis=1)
    return torch.from_numpy(mean).to(device=points.device, dtype=points.dtype)
