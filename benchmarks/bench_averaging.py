"""Benchmark of subtomogram averaging (issue: alignment and averaging): cryomine vs acryo on the same input.

Input: 500 simulated subtomograms of one complex (3j9i, 40³ at 10 Å, SNR 0.06, tilt ±60°, CTF at 5 µm defocus,
crowded), made with ``cryomine simulate subtomograms`` unless the file exists.

1. ``cryomine average DATA --iterations N --out OUT/cryomine`` (reference-free, gold-standard), timed in a fresh
   process.
2. acryo (PyPI ``acryo``), run by ``--acryo-python`` (a separate virtual environment with acryo: it is never a
   dependency of cryomine), timed inside its process: the same subtomograms, the same missing wedge. acryo has
   no initial-model step, so it starts like cryomine from the wedge-weighted average of the particles in random
   orientations; its FFT-per-orientation search costs ~30-100 ms per particle and orientation here, so a global
   search like cryomine's (thousands of orientations per particle) would take days: it gets a budget of
   ``--acryo-global`` random orientations (binned x2) and ``--acryo-local`` local rounds of 27 orientations
   (binned x2, ±``--acryo-local-step``°), then a full-size wedge-weighted average (acryo's own). Its measured
   cost per particle and orientation is reported too.
3. Both averages are compared with the true structure (``load_structure``) after bringing the truth into each
   map's frame (global + local alignment of the truth to the map): FSC under a soft sphere, resolution at 0.143
   and 0.5 (Å). Also reported: cryomine's averages with the TRUE poses (the alignment-free upper bound).

Usage::

    .venv/bin/python benchmarks/bench_averaging.py --acryo-python /tmp/acryo_venv/bin/python

(make that environment with ``python -m venv /tmp/acryo_venv && /tmp/acryo_venv/bin/pip install acryo h5py``).
Results: ``benchmarks/results/averaging.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from _common import CRYOMINE, machine, save, timed_run

ACRYO_DRIVER = textwrap.dedent(
    '''
    """acryo on pre-extracted subtomograms: random-rotation start, coarse global + local search (binned), average."""
    import json, sys, time
    import numpy as np
    import dask.array as da
    from scipy.spatial.transform import Rotation
    import acryo
    from acryo import Molecules
    from acryo.loader import ExtractedSubvolumeLoader
    from acryo.alignment import ZNCCAlignment
    from acryo.tilt import single_axis

    args = json.loads(sys.argv[1])
    vols = np.load(args["particles"])
    n_part, n = len(vols), vols.shape[-1]
    scale = args["voxel_size_a"] / 10.0  # nm
    tilt = single_axis(tuple(args["tilt"]))

    def sphere(size, radius, edge=3.0):
        c = size // 2
        z, y, x = np.ogrid[:size, :size, :size]
        r = np.sqrt((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2)
        t = np.clip((r - radius) / edge, 0, 1)
        return (0.5 + 0.5 * np.cos(np.pi * t)).astype(np.float32)

    known = {}
    if args.get("true_matrices_zyx"):  # averaging alone, with the true poses (rotation convention tried both ways)
        mats = np.load(args["true_matrices_zyx"])
        shifts = np.load(args["true_shifts_zyx"]) * scale
        for name, rot in (("R", Rotation.from_matrix(mats)), ("R_inv", Rotation.from_matrix(mats).inv())):
            for sign in (1, -1):
                mol = Molecules(sign * shifts, rot, features={"subvolume_index": np.arange(n_part)})
                ld = ExtractedSubvolumeLoader(da.from_array(vols, chunks=(32, n, n, n)), mol, order=1, scale=scale, tilt_model=tilt,
                                              extracted_molecules=Molecules(np.zeros((n_part, 3)), features={"subvolume_index": np.arange(n_part)}))
                key = f"{name}_{'plus' if sign > 0 else 'minus'}"
                np.save(args["out"] + f"/acryo_known_{key}.npy", ld.average(wedge_weighting=True).astype(np.float32))
                known[key] = args["out"] + f"/acryo_known_{key}.npy"

    t0 = time.perf_counter()
    start = Rotation.random(n_part, random_state=args["seed"])
    mole = Molecules(np.zeros((n_part, 3)), start, features={"subvolume_index": np.arange(n_part)})
    full = ExtractedSubvolumeLoader(da.from_array(vols, chunks=(32, n, n, n)), mole, order=1, scale=scale, tilt_model=tilt)
    binned = full.binning(2)
    offset = binned.molecules.pos - full.molecules.pos  # binning translates the molecules
    nb = binned.output_shape[0]
    mask_b = sphere(nb, 0.3 * nb, 1.5)
    max_shift = args["max_shift_vox"] * scale
    template = binned.average(wedge_weighting=True)  # reference-free start: random orientations
    timings = {}
    t1 = time.perf_counter()
    rots = Rotation.random(args["global"], random_state=args["seed"] + 1)
    model = ZNCCAlignment.with_params(rotations=rots, cutoff=0.5, tilt=tilt)
    binned = binned.align(template, mask=mask_b, max_shifts=max_shift, alignment_model=model)
    timings["global_s"] = time.perf_counter() - t1
    timings["orientations_global"] = args["global"]
    step = args["local_step"]
    for i in range(args["local"]):
        template = binned.average(wedge_weighting=True)
        model = ZNCCAlignment.with_params(rotations=((step, step),) * 3, cutoff=0.5, tilt=tilt)
        t1 = time.perf_counter()
        binned = binned.align(template, mask=mask_b, max_shifts=max_shift, alignment_model=model)
        timings[f"local_{i + 1}_s"] = time.perf_counter() - t1
    mol = binned.molecules
    final = full.replace(molecules=Molecules(mol.pos - offset, mol.rotator, features=mol.features.select("subvolume_index")))
    avg = final.average(wedge_weighting=True)
    halves = final.average_split(n_set=1, seed=0, wedge_weighting=True)
    total = time.perf_counter() - t0
    n_orient = n_part * (args["global"] + 27 * args["local"])
    np.save(args["out"] + "/acryo_average.npy", avg.astype(np.float32))
    np.save(args["out"] + "/acryo_halves.npy", np.asarray(halves, np.float32))
    print(json.dumps({"acryo_version": acryo.__version__, "wall_s": total, "timings": timings, "known_pose_maps": known,
                      "s_per_particle_orientation": (total) / max(n_orient, 1), "particle_orientations": n_orient}))
    '''
)


def truth_map(structure: str, voxel_size_a: float, box: int) -> np.ndarray:
    from cryomine.structures import load_structure
    from cryomine.structures.maps import pad_to_cube

    data = load_structure(structure, voxel_size_a).data
    if data.shape[0] > box:
        c, h = data.shape[0] // 2, box // 2
        data = data[c - h : c - h + box, c - h : c - h + box, c - h : c - h + box]
    return pad_to_cube(data, box)


def versus_truth(volume: np.ndarray, truth: np.ndarray, voxel_size_a: float) -> dict:
    """FSC of ``volume`` with the truth brought into its frame (a reference-free map's frame is arbitrary)."""
    from cryomine.average import AlignConfig, align_subtomogram, soft_sphere_mask
    from cryomine.evaluate.fsc import fsc
    from cryomine.geometry import rotate_volume

    found = align_subtomogram(volume, truth, (-90.0, 90.0), AlignConfig(angular_step_deg=10, local_step_deg=0.5), cutoff=0.3, whiten=False)
    moved = rotate_volume(truth, found.matrices_xyz[0], shift_zyx=found.shifts_zyx[0], order=3)
    n = volume.shape[0]
    r = fsc(volume, moved, voxel_size_a=voxel_size_a, mask=soft_sphere_mask(n, 0.35 * n, 3.0))
    return {"resolution_fsc0143_a": round(r.resolution_0143_a, 2), "resolution_fsc05_a": round(r.resolution_05_a, 2),
            "fsc_sum": round(r.fsc_sum, 3), "fsc": [round(float(v), 3) for v in r.fsc]}  # fmt: skip


def half_map_resolution(a: np.ndarray, b: np.ndarray, voxel_size_a: float) -> float:
    from cryomine.average import soft_sphere_mask
    from cryomine.evaluate.fsc import fsc

    n = a.shape[0]
    return round(fsc(a, b, voxel_size_a=voxel_size_a, mask=soft_sphere_mask(n, 0.3 * n, 3.0)).resolution_0143_a, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("/tmp/cryomine-bench/avg_3j9i_snr006.h5"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryomine-bench/averaging"))
    parser.add_argument("--structure", default="3j9i")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--acryo-python", type=Path, default=None, help="python of a venv with acryo installed")
    parser.add_argument("--acryo-global", type=int, default=40, help="random orientations of acryo's global search")
    parser.add_argument("--acryo-local", type=int, default=1, help="acryo local rounds (27 orientations each)")
    parser.add_argument("--acryo-local-step", type=float, default=10.0, help="acryo local step (degrees)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"machine": machine()}
    if not args.data.exists():
        sim = timed_run([CRYOMINE, "simulate", "subtomograms", str(args.data), "--structures", args.structure,
                         "--per-class", "500", "--snr", "0.06", "--seed", "0"])  # fmt: skip
        results["simulation"] = sim

    from cryomine.average import average_particles
    from cryomine.average.averaging import phase_flip
    from cryomine.average.particles import load_dataset
    from cryomine.geometry import euler_zyz_to_matrix
    from cryomine.io.mrc import read_mrc
    from cryomine.io.subtomo_h5 import read_rows

    data = load_dataset(args.data)
    vs, box = data.voxel_size_a, data.box
    tilt = list(data.tilt_range_deg or (-60.0, 60.0))
    truth = truth_map(args.structure, vs, box)
    results["input"] = {"file": str(args.data), "particles": len(data.particles), "box": box, "voxel_size_a": vs,
                        "tilt_range_deg": tilt, "snr": 0.06, "structure": args.structure}  # fmt: skip

    # the alignment-free upper bound: averages with the true poses
    true_shifts = read_rows(args.data, ("shifts_zyx",))["shifts_zyx"]
    true_mats = euler_zyz_to_matrix(data.true_eulers_zyz)
    flipped = phase_flip(data.particles, vs, data.microscope)
    results["true_poses"] = {
        "no_ctf_correction": versus_truth(average_particles(data.particles, true_mats, true_shifts, tuple(tilt)), truth, vs),
        "phase_flipped": versus_truth(average_particles(flipped, true_mats, true_shifts, tuple(tilt)), truth, vs),
    }

    run_dir = args.out / "cryomine"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    cmd = [CRYOMINE, "average", str(args.data), "--iterations", str(args.iterations), "--out", str(run_dir), "--quiet"]
    run = timed_run(cmd)
    ours = read_mrc(run_dir / "average.mrc").data
    summary = json.loads((run_dir / "summary.json").read_text())
    results["cryomine"] = {**run, "half_map_resolution_a": summary["classes"][0]["resolution_fsc0143_a"],
                           "versus_truth": versus_truth(ours, truth, vs), "iterations": args.iterations,
                           "history_seconds": [round(h["seconds"], 1) for h in summary["history"]]}  # fmt: skip

    if args.acryo_python is not None and args.acryo_python.exists():
        raw = read_rows(args.data, ("subtomograms",))["subtomograms"].astype(np.float32)
        np.save(args.out / "particles.npy", raw)
        driver = args.out / "acryo_driver.py"
        driver.write_text(ACRYO_DRIVER)
        from cryomine.geometry import xyz_to_zyx_matrix

        np.save(args.out / "true_matrices_zyx.npy", xyz_to_zyx_matrix(true_mats))
        np.save(args.out / "true_shifts_zyx.npy", np.asarray(true_shifts, np.float64))
        params = {"particles": str(args.out / "particles.npy"), "out": str(args.out), "voxel_size_a": vs, "tilt": tilt,
                  "true_matrices_zyx": str(args.out / "true_matrices_zyx.npy"), "true_shifts_zyx": str(args.out / "true_shifts_zyx.npy"),
                  "seed": 0, "global": args.acryo_global, "local": args.acryo_local, "local_step": args.acryo_local_step,
                  "max_shift_vox": 4.0}  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run([str(args.acryo_python), str(driver), json.dumps(params)], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            results["acryo"] = {"error": proc.stderr[-2000:]}
        else:
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            avg = np.load(args.out / "acryo_average.npy")
            halves = np.load(args.out / "acryo_halves.npy").reshape(2, box, box, box)
            known = {k: versus_truth(np.load(v), truth, vs) for k, v in info.pop("known_pose_maps").items()}
            best = max(known, key=lambda k: known[k]["fsc_sum"])  # the convention that matches
            results["acryo"] = {**info, "process_wall_s": round(wall, 1), "protocol": params,
                                "half_map_resolution_a": half_map_resolution(halves[0], halves[1], vs),
                                "versus_truth": versus_truth(avg, truth, vs),
                                "true_poses_no_ctf_correction": {"convention": best, **known[best]}}  # fmt: skip
        (args.out / "particles.npy").unlink(missing_ok=True)
    else:
        results["acryo"] = {"error": "no --acryo-python given (or it does not exist): acryo not run"}
    results["command"] = " ".join([sys.executable, *sys.argv])
    save("averaging", results)


if __name__ == "__main__":
    main()
