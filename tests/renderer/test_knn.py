"""Tests of gaussian_renderer.knn_mean_distance against brute force."""

from __future__ import annotations

import pytest
import torch

from gaussian_renderer import knn_mean_distance


def brute_force(points: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(points.double(), points.double())
    d.fill_diagonal_(float("inf"))
    k = min(k, len(points) - 1)
    return d.topk(k, dim=1, largest=False).values.mean(dim=1)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_brute_force(k):
    points = torch.randn(500, 3, generator=torch.Generator().manual_seed(k)) * torch.tensor([1.0, 2.0, 0.5])
    got = knn_mean_distance(points, k=k)
    assert got.shape == (500,) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), brute_force(points, k), rtol=1e-6, atol=1e-6)


def test_known_distances_on_a_line():
    points = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0], [7.0, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(knn_mean_distance(points, k=1), torch.tensor([1.0, 1.0, 2.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(knn_mean_distance(points, k=2), torch.tensor([2.0, 1.5, 2.5, 5.0], dtype=torch.float64))


def test_fewer_points_than_k_and_duplicates():
    two = torch.tensor([[0.0, 0, 0], [0.0, 3.0, 4.0]])
    torch.testing.assert_close(knn_mean_distance(two, k=3), torch.tensor([5.0, 5.0]))
    assert knn_mean_distance(torch.ones(1, 3), k=3).tolist() == [0.0]
    assert knn_mean_distance(torch.zeros(0, 3)).shape == (0,)
    dup = torch.tensor([[1.0, 1, 1], [1.0, 1, 1], [2.0, 1, 1]])
    torch.testing.assert_close(knn_mean_distance(dup, k=1), torch.tensor([0.0, 0.0, 1.0]))


def test_not_differentiable_and_keeps_device():
    points = torch.rand(20, 3, requires_grad=True)
    out = knn_mean_distance(points)
    assert not out.requires_grad and out.device == points.device


@pytest.mark.gpu
def test_cuda_tensors_round_trip():
    points = torch.rand(200, 3, device="cuda")
    out = knn_mean_distance(points)
    assert out.is_cuda
    torch.testing.assert_close(out.cpu().double(), brute_force(points.cpu(), 3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("points", "k", "error", "match"),
    [
        ([[0.0, 0.0, 0.0]], 3, TypeError, "points"),
        (torch.zeros(4, 3, dtype=torch.int32), 3, TypeError, "points"),
        (torch.zeros(4, 2), 3, ValueError, "points"),
        (torch.tensor([[0.0, 0.0, float("nan")]]), 3, ValueError, "points"),
        (torch.zeros(4, 3), 0, ValueError, "k"),
        (torch.zeros(4, 3), 2.5, ValueError, "k"),
    ],
)
def test_bad_inputs(points, k, error, match):
    with pytest.raises(error, match=match):
        knn_mean_distance(points, k=k)
