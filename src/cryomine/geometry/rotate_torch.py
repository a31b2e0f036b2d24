"""Batched volume rotation in torch (CPU or CUDA), same convention as :func:`cryomine.geometry.rotate_volume`.

A matrix ``A`` acts on ``(x, y, z)`` offsets and rotates actively: the feature at offset ``r`` from the input's
centre voxel appears at ``A @ r + shift`` from the output's centre voxel. Centres are the voxel ``n // 2`` on each
axis. Trilinear interpolation; outside the input is 0. On CUDA (and for degenerate one-voxel axes) it runs as
``grid_sample``; on the CPU a compiled single-threaded loop (numba; ~2.5x faster than ``grid_sample`` on two cores) computes
the same samples.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F


def rotate_volumes(
    volumes: torch.Tensor,
    matrices_xyz: torch.Tensor,
    shifts_zyx: torch.Tensor | None = None,
    out_shape: tuple[int, int, int] | None = None,
    *,
    backend_torch: bool = False,
) -> torch.Tensor:
    """Rotate a batch of volumes.

    Args:
        volumes: ``(n, d, h, w)`` float tensor.
        matrices_xyz: ``(n, 3, 3)`` rotation matrices acting on ``(x, y, z)`` (RELION ``A`` convention).
        shifts_zyx: optional ``(n, 3)`` sub-voxel or integer shifts (voxels) applied after the rotation.
        out_shape: ``(d', h', w')`` of the output; defaults to the input shape.
        backend_torch: use ``grid_sample`` on the CPU too (the reference the compiled loop is tested against; also
            used whenever an input needs gradients).

    Returns:
        ``(n, d', h', w')`` rotated volumes.
    """
    n, d, h, w = volumes.shape
    od, oh, ow = out_shape if out_shape is not None else (d, h, w)
    grad = volumes.requires_grad or matrices_xyz.requires_grad or (shifts_zyx is not None and shifts_zyx.requires_grad)
    if volumes.device.type == "cpu" and volumes.dtype == torch.float32 and min(d, h, w, od, oh, ow) > 1 and not (backend_torch or grad):
        return _rotate_cpu(volumes, matrices_xyz, shifts_zyx, (od, oh, ow))
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


def _rotate_cpu(volumes: torch.Tensor, matrices_xyz: torch.Tensor, shifts_zyx: torch.Tensor | None,
                out_shape: tuple[int, int, int]) -> torch.Tensor:
    """The CPU path of :func:`rotate_volumes`: source index ``= A^T (out index - c_out - shift) + c_in`` (x, y, z)."""
    n = volumes.shape[0]
    vols = volumes.detach().contiguous().numpy()
    mats = matrices_xyz.detach().to(torch.float64).reshape(n, 3, 3).numpy()
    shifts = np.zeros((n, 3)) if shifts_zyx is None else shifts_zyx.detach().to(torch.float64).reshape(n, 3).numpy()
    out = np.empty((n, *out_shape), dtype=np.float32)
    _trilinear_rotate(vols, np.ascontiguousarray(mats.transpose(0, 2, 1)), np.ascontiguousarray(shifts[:, ::-1]), out)
    return torch.from_numpy(out)


@numba.njit(cache=True, nogil=True)  # one thread: safe to call from several threads at once
def _trilinear_rotate(vols, mats_t, shifts_xyz, out):  # pragma: no cover - compiled
    n, d, h, w = vols.shape
    _, od, oh, ow = out.shape
    for task in range(n * od):
        i, z = task // od, task % od
        m = mats_t[i]
        v = vols[i]
        rz = z - od // 2 - shifts_xyz[i, 2]
        for y in range(oh):
            ry = y - oh // 2 - shifts_xyz[i, 1]
            bx = m[0, 1] * ry + m[0, 2] * rz + w // 2
            by = m[1, 1] * ry + m[1, 2] * rz + h // 2
            bz = m[2, 1] * ry + m[2, 2] * rz + d // 2
            for x in range(ow):
                rx = x - ow // 2 - shifts_xyz[i, 0]
                sx, sy, sz = bx + m[0, 0] * rx, by + m[1, 0] * rx, bz + m[2, 0] * rx
                x0, y0, z0 = int(sx + 1.0) - 1, int(sy + 1.0) - 1, int(sz + 1.0) - 1  # floor for s > -1
                if sx <= -1.0 or sy <= -1.0 or sz <= -1.0 or x0 >= w or y0 >= h or z0 >= d:
                    out[i, z, y, x] = 0.0
                    continue
                fx, fy, fz = sx - x0, sy - y0, sz - z0
                if 0 <= x0 < w - 1 and 0 <= y0 < h - 1 and 0 <= z0 < d - 1:  # interior: all 8 taps inside
                    c00 = v[z0, y0, x0] + fx * (v[z0, y0, x0 + 1] - v[z0, y0, x0])
                    c01 = v[z0, y0 + 1, x0] + fx * (v[z0, y0 + 1, x0 + 1] - v[z0, y0 + 1, x0])
                    c10 = v[z0 + 1, y0, x0] + fx * (v[z0 + 1, y0, x0 + 1] - v[z0 + 1, y0, x0])
                    c11 = v[z0 + 1, y0 + 1, x0] + fx * (v[z0 + 1, y0 + 1, x0 + 1] - v[z0 + 1, y0 + 1, x0])
                    c0 = c00 + fy * (c01 - c00)
                    out[i, z, y, x] = c0 + fz * (c10 + fy * (c11 - c10) - c0)
                    continue
                acc = 0.0
                for cz in range(2):
                    zz = z0 + cz
                    if zz < 0 or zz >= d:
                        continue
                    wz = fz if cz else 1.0 - fz
                    for cy in range(2):
                        yy = y0 + cy
                        if yy < 0 or yy >= h:
                            continue
                        wy = wz * (fy if cy else 1.0 - fy)
                        for cx in range(2):
                            xx = x0 + cx
                            if 0 <= xx < w:
                                acc += wy * (fx if cx else 1.0 - fx) * v[zz, yy, xx]
                out[i, z, y, x] = acc
