"""Differentiable Gaussian rasterizer: pure-PyTorch reference (CPU/any device) and gsplat (CUDA)."""

from .knn import knn_mean_distance
from .rasterizer import RenderOutput, render, screen_grad_norm

__all__ = ["RenderOutput", "knn_mean_distance", "render", "screen_grad_norm"]
