"""Benchmark: cryomine template matching against pyTME (issue: picking, item 6).

Both tools run on the same simulated tomogram, the same template (the bundled structure prepared at the tomogram's
voxel size), the same rotations (cryomine's ``angular_sampling(step)``, converted to pyTME's convention), the same
spherical mask and the same Fourier weighting of the template (missing wedge x -CTF, passed to pyTME as a raw
``template_filter``), with the same scoring (fast local correlation: pyTME ``FLCSphericalMask``) and trilinear
rotation (pyTME ``interpolation_order=1``), with two edge treatments, each tool in the same one: zero padding at
the tomogram's faces (cryomine's default ``--pad-edges``; pyTME ``pad_target_edges=True``) and circular correlation
(pyTME's default; cryomine ``--no-pad-edges``). Peaks of all score maps are extracted by the same code (cryomine's
exclusion-radius peak picking; automatic threshold, and top-N with N = the number of true particles of the
template's class) and scored against the truth (hit within half the particle radius).

pyTME (PyPI ``pytme``, module ``tme``) is NOT a cryomine dependency: install it in a throwaway environment, e.g.
``python -m venv /tmp/pytme-venv && /tmp/pytme-venv/bin/pip install pytme``, and pass ``--pytme-python``.

Usage::

    .venv/bin/python benchmarks/bench_template_matching.py --pytme-python /tmp/pytme-venv/bin/python \\
        [--shape 100,200,200] [--step 20] [--template 1bxn] [--threads 2] [--out /tmp/cryomine-bench/tm]

Results: ``benchmarks/results/template_matching.json`` (times, ratios, F1 scores, score-map agreement).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from _common import CRYOMINE, machine, save, timed_run

PYTME_RUNNER = r'''
import json, sys, time
import numpy as np
inp, outp, n_jobs, pad = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
t_start = time.perf_counter()
d = np.load(inp)
from tme.analyzer import MaxScoreOverRotations
from tme.matching_data import MatchingData
from tme.matching_exhaustive import MATCHING_EXHAUSTIVE_REGISTER, match_exhaustive
import tme
t0 = time.perf_counter()
md = MatchingData(d["target"].astype(np.float32), d["template"].astype(np.float32))
md.template_mask = d["mask"].astype(np.float32)
md.rotations = d["rotations"].astype(np.float32)
md.template_filter = d["weight"].astype(np.float32)
setup, score = MATCHING_EXHAUSTIVE_REGISTER["FLCSphericalMask"]
res = match_exhaustive(matching_data=md, matching_setup=setup, matching_score=score, callback_class=MaxScoreOverRotations,
                       job_schedule=(1, n_jobs), pad_target_edges=pad, interpolation_order=1)
seconds = time.perf_counter() - t0
scores, _, rot_idx, mapping = res[:4]
rot_idx = np.asarray(rot_idx)
lookup = {int(k): np.asarray(v) for k, v in mapping.items()} if isinstance(mapping, dict) else {}
mats = np.stack([lookup[k] for k in sorted(lookup)]) if lookup else np.zeros((0, 3, 3))
np.savez(outp, scores=np.asarray(scores, np.float32), rot_idx=rot_idx, rot_keys=np.array(sorted(lookup)), rot_mats=mats)
print(json.dumps({"match_seconds": seconds, "process_seconds": time.perf_counter() - t_start, "pytme_version": tme.__version__}))
'''


def _shape(text: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in text.split(","))  # type: ignore[return-value]


def _f1(coords_zyx: np.ndarray, truth, radius_vox: float) -> dict:
    from cryomine.pick.evaluate import PointSet, evaluate_point_sets

    rep = evaluate_point_sets(PointSet(coords_zyx), truth, {str(n): radius_vox for n in set(truth.class_names)})
    return {k: rep["localisation"][k] for k in ("tp", "fp", "fn", "precision", "recall", "f1")}


def _peaks(scores: np.ndarray, search: dict, config, radius_vox: float, top_n: int | None) -> np.ndarray:
    """cryomine's own pick extraction (extract_picks) on any score map: top-N, or its automatic threshold from
    the search statistics of cryomine's run (the maps agree, so the same statistics apply to pyTME's)."""
    from dataclasses import replace

    from cryomine.pick.template import extract_picks

    peaks = config.peaks if top_n is None else replace(config.peaks, top_n=top_n)
    return extract_picks(scores, search, peaks, radius_vox)[0].coords_zyx.astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryomine-bench/tm"))
    parser.add_argument("--shape", type=_shape, default=(100, 200, 200))
    parser.add_argument("--particles", type=int, default=80)
    parser.add_argument("--structures", default="1bxn,3j9i,1qvr,3cf3,4v4r")
    parser.add_argument("--template", default="1bxn")
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=2, help="cryomine --threads and pyTME inner jobs")
    parser.add_argument("--pytme-python", default="/tmp/pytme-venv/bin/python")
    parser.add_argument("--skip-pytme", action="store_true", help="time cryomine only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from cryomine.geometry import angular_sampling, euler_zyz_to_matrix, xyz_to_zyx_matrix
    from cryomine.io import read_mrc
    from cryomine.pick.config import TemplateMatchConfig
    from cryomine.pick.evaluate import PointSet, load_point_set
    from cryomine.pick.template import spherical_mask, template_weight
    from cryomine.simulate.templates import prepare_template

    results: dict[str, object] = {"machine": machine()}
    tomo = args.out / f"tomo_{'x'.join(map(str, args.shape))}_seed{args.seed}.mrc"
    if not tomo.exists():
        sim = timed_run([CRYOMINE, "simulate", "tomogram", str(tomo), "--shape", ",".join(map(str, args.shape)),
                         "--particles", str(args.particles), "--structures", args.structures, "--snr", str(args.snr),
                         "--seed", str(args.seed)])  # fmt: skip
        results["simulation"] = sim
    vol = read_mrc(tomo)
    truth_all = load_point_set(tomo.with_suffix(".star"))
    sel = truth_all.class_names == args.template
    truth = PointSet(truth_all.coords_zyx[sel], truth_all.class_names[sel])
    config = TemplateMatchConfig(angular_step_deg=args.step, threads=args.threads)
    tmpl = prepare_template(args.template, vol.voxel_size_a)
    m = tmpl.density.shape[0]
    radius = tmpl.radius_vox
    n_true = int(sel.sum())
    angles = angular_sampling(args.step)
    results["setup"] = {
        "tomogram_shape_zyx": list(vol.data.shape), "voxel_size_a": vol.voxel_size_a, "snr": args.snr,
        "particles": len(truth_all), "template": args.template, "template_particles": n_true, "template_box_vox": m,
        "radius_vox": round(radius, 3), "angular_step_deg": args.step, "n_orientations": len(angles),
        "mask": f"sphere of radius {min(radius, m / 2):.2f} voxels", "weighting": "missing wedge -60..60 x -CTF (5 um, 300 kV)",
        "threads": args.threads, "hit": "within 0.5 x radius",
        "peak_picking": "cryomine extract_picks (exclusion radius = template radius; automatic threshold from cryomine's search statistics)",
    }  # fmt: skip

    # ---- both tools, both edge treatments; the same peak picking and scoring for every score map
    runner = args.out / "run_pytme.py"
    runner.write_text(PYTME_RUNNER)
    inp = args.out / "pytme_input.npz"
    rot_zyx = np.swapaxes(xyz_to_zyx_matrix(euler_zyz_to_matrix(angles)), -1, -2)  # pyTME: out(x) = in(R (x - c) + c)
    np.savez(inp, target=vol.data, template=tmpl.density, mask=spherical_mask(m, min(radius, m / 2.0)),
             weight=template_weight(m, vol.voxel_size_a, config), rotations=rot_zyx)  # fmt: skip
    interior = tuple(slice(m, n - m) for n in vol.data.shape)

    def scored(scores: np.ndarray, search: dict) -> dict:
        return {"f1_auto_threshold": _f1(_peaks(scores, search, config, radius, None), truth, radius),
                "f1_top_n": _f1(_peaks(scores, search, config, radius, n_true), truth, radius)}  # fmt: skip

    for mode, pad_flag, pytme_pad in (("padded_edges", "--pad-edges", "1"), ("circular", "--no-pad-edges", "0")):
        picks = args.out / f"cryomine_{mode}.star"
        run = timed_run([CRYOMINE, "pick", str(tomo), "--template", args.template, "--angular-step", str(args.step),
                         "--threads", str(args.threads), pad_flag, "--out", str(picks)])  # fmt: skip
        meta = json.loads(picks.with_suffix(".json").read_text())
        ours = read_mrc(args.out / f"cryomine_{mode}_scores.mrc").data
        own = load_point_set(picks).coords_zyx  # the command's own picks (automatic threshold)
        mine = {"wall_s": run["wall_s"], "in_process_s": meta["seconds"], "peak_rss_gb": run["peak_rss_gb"],
                "command": run["command"], "threshold_rule": meta["threshold_rule"], "threshold": meta["threshold"],
                "f1_own_picks": _f1(own, truth, radius), **scored(ours, meta["search_space"])}  # fmt: skip
        results[f"cryomine_{mode}"] = mine
        print(mode, "cryomine", json.dumps(mine, indent=2), flush=True)
        if args.skip_pytme:
            continue
        outp = args.out / f"pytme_{mode}.npz"
        peer_run = timed_run([args.pytme_python, str(runner), str(inp), str(outp), str(args.threads), pytme_pad])
        wall = float(peer_run["wall_s"])
        info = json.loads(peer_run["stdout_tail"][-1])
        theirs = np.load(outp)["scores"]
        peer = {"wall_s": round(wall, 1), "match_s": round(info["match_seconds"], 1), "pytme_version": info["pytme_version"],
                "peak_rss_gb": peer_run["peak_rss_gb"], "pad_target_edges": pytme_pad == "1",
                **scored(theirs, meta["search_space"])}  # fmt: skip
        results[f"pytme_{mode}"] = peer
        results[f"comparison_{mode}"] = {
            "time_ratio_cryomine_over_pytme_wall": round(run["wall_s"] / wall, 3),
            "time_ratio_cryomine_over_pytme_matching": round(meta["seconds"] / info["match_seconds"], 3),
            "score_max_abs_diff_interior": float(np.abs(theirs[interior] - ours[interior]).max()),
            "score_max_abs_diff_whole_map": float(np.abs(theirs - ours).max()),
            "score_correlation_whole_map": float(np.corrcoef(theirs.ravel(), ours.ravel())[0, 1]),
        }  # fmt: skip
        print(mode, "pytme", json.dumps(peer, indent=2), json.dumps(results[f"comparison_{mode}"], indent=2), flush=True)
    results["machine_after"] = {"load_average_1_5_15": machine()["load_average_1_5_15"]}
    save("template_matching", results)


if __name__ == "__main__":
    main()
