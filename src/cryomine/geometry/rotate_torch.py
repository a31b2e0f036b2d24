"""Batched volume rotation in torch (CPU or CUDA), same convention as :func:`cryomine.geometry.rotate_volume`.

A matrix ``A`` acts on ``(x, y, z)`` offsets and rotates actively: the feature at offset ``r`` from the input's
centre voxel appears at ``A @ r + shift`` from the output's centre voxel. Centres are the voxel ``n // 2`` on each
axis. Trilinear interpolation (``grid_sample``); outside the input is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rotate_volumes(
    volumes: torch.Tensor,
    matrices_xyz: torch.Tensor,
    shifts_zyx: torch.Tensor | None = None,
    out_shape: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """Rotate a batch of volumes.

    Args:
        volumes: ``(n, d, h, w)`` float tensor.
        matrices_xyz: ``(n, 3, 3)`` rotation matrices acting on ``(x, y, z)`` (RELION ``A`` convention).
        shifts_zyx: optional ``(n, 3)`` sub-voxel or integer shifts (voxels) applied after the rotation.
        out_shape: ``(d', h', w')`` of the output; defaults to the input shape.

    Returns:
        ``(n, d', h', w')`` rotated volumes.
    """
    n, d, h, w = volumes.shape
    od, oh, ow = out_shape if out_shape is not None else (d, h, w)
    dev, dt = volumes.device, volumes.dtype
    mats_t = matrices_xyz.to(device=dev, dtype=dt).reshape(n, 3, 3).transpose(1, 2)  # A^T: inverse mapping
    # affine_grid works in normalised coordinates u in [-1, 1] (align_corners=True): index = s * (u + 1)
    s_out = torch.tensor([(ow - 1) / 2, (oh - 1) / 2, (od - 1) / 2], device=dev, dtype=dt).clamp(min=0.5)
    s_in = torch.tensor([(w - 1) / 2, (h - 1) / 2, (d - 1) / 2], device=dev, dtype=dt).clamp(min=0.5)
    c_out = torch.tensor([ow // 2, oh // 2, od // 2], device=dev, dtype=dt)
    c_in = torch.tensor([w // 2, h // 2, d // 2], device=dev, dtype=dt)
    offset = (s_out - c_out).expand(n, 3)
    if shifts_zyx is not None:
        offset = offset - shifts_zyx.to(device=dev, dtype=dt).reshape(n, 3).flip(-1)
    # source index = A^T (s_out * u + s_out - c_out - shift) + c_in ; source u' = index / s_in - 1
    linear = mats_t * s_out[None, None, :] / s_in[None, :, None]
    translation = ((mats_t @ offset[..., None])[..., 0] + c_in) / s_in - 1.0
    theta = torch.cat([linear, translation[..., None]], dim=-1)  # (n, 3, 4) acting on (x, y, z, 1)
    grid = _affine_grid(theta, (od, oh, ow))
    out = F.grid_sample(volumes[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[:, 0]


def _affine_grid(theta: torch.Tensor, shape_zyx: tuple[int, int, int]) -> torch.Tensor:
    """``F.affine_grid(theta, (n, 1, d, h, w), align_corners=True)`` built by broadcasting (much faster on CPU)."""
    od, oh, ow = shape_zyx
    dev, dt = theta.device, theta.dtype

    def axis(n: int) -> torch.Tensor:
        return torch.linspace(-1.0, 1.0, n, device=dev, dtype=dt) if n > 1 else torch.zeros(1, device=dev, dtype=dt)

    ux, uy, uz = axis(ow)[None, None, None, :], axis(oh)[None, None, :, None], axis(od)[None, :, None, None]
    comps = []
    for j in range(3):  # output component j = x, y, z of the sampling position
        t = theta[:, j].reshape(-1, 4, 1, 1, 1)
        comps.append(t[:, 0] * ux + t[:, 1] * uy + t[:, 2] * uz + t[:, 3])
    return torch.stack(comps, dim=-1)
