"""The angular-distance kernels against a float64 computation of the same angles."""
import numpy as np
import pytest
import torch

from interp.collectors import angle_kernels, kernels

pytestmark = pytest.mark.skipif(not kernels.ENABLED, reason="numba not installed")


def test_angular_matches_float64():
    from interp.collectors.effect import angular
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 5, 16, generator=g), torch.randn(3, 5, 16, generator=g)
    b[0, 0] = a[0, 0] * 2  # parallel: angle 0
    b[0, 1] = 0.0          # zero vector: orthogonal
    ang, bn = angle_kernels.angular(a, b)
    torch.testing.assert_close(ang, angular(a.double(), b.double()), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn, b.double().norm(dim=-1), rtol=1e-12, atol=1e-12)


def brute_angles(xs, n, l):
    """arccos(cos(x_l, x_{l+n})) / π per row, in float64."""
    a, b = xs[l].double().reshape(-1, xs[l].shape[-1]), xs[l + n].double().reshape(-1, xs[l].shape[-1])
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return torch.arccos(cos.clamp(-1, 1)) / torch.pi


@pytest.mark.parametrize("by_ref", [False, True])
def test_ring_and_by_reference_give_every_pair_of_depths(by_ref):
    """Depth after depth, each offset n's angle between depth l and l + n, whether the stream is copied into the
    ring or read where it lies (with or without the row norms handed in)."""
    g = torch.Generator().manual_seed(2)
    D, ns = 5, (1, 2, 4)
    xs = [torch.randn(2, 7, 16, generator=g) for _ in range(D)]
    st = angle_kernels.AngularRing(D, 14, 16, ns, np.float32)
    prev = {}
    for j, x in enumerate(xs):
        if by_ref:
            sq = x.double().square().sum(-1).reshape(-1).numpy() if j % 2 else None
            angle_kernels.angular_by_ref(x, j, st, prev, sq)
            prev[j] = x
        else:
            angle_kernels.angular_ring(x, j, st)
    for i, n in enumerate(ns):
        for l in range(D - n):
            np.testing.assert_allclose(st.out[i, l], brute_angles(xs, n, l).numpy(), rtol=1e-10, atol=1e-12)
