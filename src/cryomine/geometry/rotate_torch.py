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
    mats = matrices_xyz.to(device=dev, dtype=dt).reshape(n, 3, 3)
    zz, yy, xx = torch.meshgrid(
        torch.arange(od, device=dev, dtype=dt) - od // 2,
        torch.arange(oh, device=dev, dtype=dt) - oh // 2,
        torch.arange(ow, device=dev, dtype=dt) - ow // 2,
        indexing="ij",
    )
    offsets = torch.stack([xx, yy, zz], dim=-1).reshape(1, -1, 3)  # output offsets (x, y, z)
    if shifts_zyx is not None:
        shift_xyz = shifts_zyx.to(device=dev, dtype=dt).reshape(n, 3).flip(-1)
        offsets = offsets - shift_xyz[:, None, :]
    # inverse mapping: source offset = A^T (out offset - shift)  -> row vectors: p @ A
    src = offsets @ mats  # (n, m, 3) in (x, y, z)
    centre = torch.tensor([w // 2, h // 2, d // 2], device=dev, dtype=dt)
    size = torch.tensor([w, h, d], device=dev, dtype=dt)
    grid = (src + centre) * (2.0 / (size - 1).clamp(min=1)) - 1.0  # align_corners=True normalisation
    grid = grid.reshape(n, od, oh, ow, 3)
    out = F.grid_sample(volumes[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[:, 0]
