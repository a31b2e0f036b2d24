"""Replay every failing case of a bad-input audit report against this checkout and say which now hold.

    python scripts/audit_replay.py ../shared/reports/bad-input-audit-2026-12-01.md --work runs/audit [--jobs 2]

The report lists cases as ``- `NAME` rc=N (cwd: fresh dir; setup: `SETUP`)`` followed by ``  - `COMMAND` ``.
This script builds the report's fixtures (``fx/``: a small tomogram, its picks, datasets, a tiny run, an
average, predictions, a discovery) with the installed ``cryomine``, generates the broken inputs (``bad/``, see
``tests/broken_inputs.py``), then runs each case once in a fresh folder under a 6 GiB address-space cap and a
timeout, and classifies it:

Cases whose setup changes permissions run as ``nobody`` when the script runs as root (permissions do not bind
root).

- ``ok``: exit 2, one line starting ``error:``, nothing new left in the folder (report cases: exit 0 is fine
  when the output names the file it could not read; security cases: the payload's marker was never written);
- otherwise the first promise it broke: ``traceback``, ``timeout``, ``exit 0``, ``exit N``, ``not one line``,
  ``left files``, ``payload ran``, ``data lost``.

Writes ``WORK/replay.json`` (one row per case) and prints a summary; cases already in it are skipped unless
``--rerun``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from broken_inputs import make_h5_files, make_model_files, make_mrc_files, make_star_files, tree_snapshot  # noqa: E402

CASE = re.compile(r"^- `(?P<name>[^`]+)` rc=(?P<rc>-?\d+)(?: \(cwd: fresh dir; setup: `(?P<setup>.*)`\))?\s*$")
COMMAND = re.compile(r"^  - `(?P<cmd>.*)`\s*$")
LINKS = ("fx", "bad", "markers", "mkevil.py", "nanckpt.py")

FIXTURES = [
    "cryomine structures show 1bxn --out fx/1bxn.mrc",
    "cryomine simulate tomogram fx/tomo.mrc --shape 32,64,64 --particles 4 --structures 1bxn,3gl1 --seed 1",
    "cryomine simulate subtomograms fx/ds.h5 --per-class 2 --size 24 --structures 1bxn,3gl1 --seed 2",
    "cryomine simulate subtomograms fx/tr.h5 --per-class 10 --size 24 --structures 1bxn,3gl1 --seed 3",
    "cryomine train fx/tr.h5 --out fx/run --epochs 2 --batch-size 4 --base-channels 4 --fc-units 16",
    "cryomine pick fx/tomo.mrc --template 1bxn --method dog --out fx/picks.star",
    "cryomine extract fx/tomo.mrc fx/picks.star --size 24 --out fx/ext.h5",
    "cryomine predict fx/run fx/ext.h5 --out fx/pred",
    "cryomine average fx/ds.h5 --iterations 2 --angular-step 45 -q --out fx/avg",
    "cryomine discover fx/run fx/tr.h5 --out fx/disc",
]

MKEVIL = '''"""mkevil.py MODE CHECKPOINT MARKER: a checkpoint that writes MARKER if anything unpickles it."""
import os, pickle, sys, torch
mode, path, marker = sys.argv[1:4]
class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {marker}",))
if mode == "raw":
    open(path, "wb").write(pickle.dumps({"model_state": Evil()}, protocol=4))
else:
    torch.save({"format": "cryomine-checkpoint", "model_state": Evil()}, path)
'''

NANCKPT = '''"""nanckpt.py CHECKPOINT: every floating-point weight of the checkpoint set to NaN."""
import sys, torch
d = torch.load(sys.argv[1], weights_only=True)
d["model_state"] = {k: (v.fill_(float("nan")) if v.is_floating_point() else v) for k, v in d["model_state"].items()}
torch.save(d, sys.argv[1])
'''


def parse_report(text: str) -> list[dict]:
    """Distinct cases ``{name, rc, setup, command}`` in report order."""
    cases: dict[str, dict] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = CASE.match(line)
        if m and i + 1 < len(lines) and (c := COMMAND.match(lines[i + 1])) and m["name"] not in cases:
            cases[m["name"]] = {"name": m["name"], "report_rc": int(m["rc"]), "setup": m["setup"] or "", "command": c["cmd"]}
    return list(cases.values())


def build_fixtures(work: Path) -> None:
    if (work / "fx" / "disc").is_dir() and (work / "bad" / "tr_nan.h5").exists():
        return
    shutil.rmtree(work / "fx", ignore_errors=True)
    (work / "fx").mkdir(parents=True)
    for cmd in FIXTURES:
        print(f"fixture: {cmd}", flush=True)
        subprocess.run(cmd, shell=True, cwd=work, check=True, stdout=subprocess.DEVNULL)
    bad = work / "bad"
    make_mrc_files(bad, work / "fx" / "tomo.mrc")
    make_model_files(bad)
    make_star_files(bad)
    make_h5_files(bad, work / "fx" / "ds.h5")
    make_h5_files(bad, work / "fx" / "tr.h5", prefix="tr_")
    (work / "markers").mkdir(exist_ok=True)
    (work / "mkevil.py").write_text(MKEVIL)
    (work / "nanckpt.py").write_text(NANCKPT)


def _limits() -> None:
    cap = 6 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def classify(case: dict, rc: int, out: str, new: list[str], changed: list[str], marker_hit: bool) -> str:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    name = case["name"]
    if marker_hit:
        return "payload ran"
    if "Traceback (most recent call last)" in out:
        return "traceback"
    if rc in (124, 137, -9):
        return "timeout"
    if name == "simsub-force-onto-dir" and "precious.txt" in changed:
        return "data lost"
    if name.startswith("report-") and rc == 0:
        target = Path(case["setup"].split(">")[-1].strip().split()[0]).name if ">" in case["setup"] else ""
        target = target or case["setup"].split()[-1].split("/")[-1]
        return "ok" if target and target in out else "exit 0 (says nothing)"
    if rc == 0:
        return "exit 0"
    if rc != 2:
        return f"exit {rc}"
    if len(lines) != 1 or not lines[0].startswith("error:"):
        return "not one line"
    if new:
        return "left files"
    return "ok"


def run_case(case: dict, work: Path, timeout: float) -> dict:
    d = work / "cases" / re.sub(r"[^A-Za-z0-9_.=-]", "_", case["name"]).replace("..", "__")  # names hold paths
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for name in LINKS:
        (d / name).symlink_to(work / name)
    security = case["name"].startswith("sec-")
    if security:
        for m in (work / "markers").glob("*"):
            m.unlink()
    if case["setup"]:
        subprocess.run(case["setup"], shell=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    before = tree_snapshot(d)
    command = case["command"].split("; ls -la")[0]
    if "chmod" in case["setup"] and os.getuid() == 0:  # permissions do not bind root: run as nobody
        d.chmod(0o777)
        exe = shutil.which("cryomine") or "cryomine"
        command = f"HOME=/tmp MPLCONFIGDIR=/tmp setpriv --reuid=65534 --regid=65534 --clear-groups {exe}{command.removeprefix('cryomine')}"
    t0 = time.perf_counter()
    try:
        p = subprocess.run(command, shell=True, cwd=d, capture_output=True, text=True, timeout=timeout, preexec_fn=_limits)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = 124, (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
    seconds = time.perf_counter() - t0
    after = tree_snapshot(d)
    new = sorted(set(after) - set(before))
    changed = sorted(k for k in before if k not in after or after[k] != before[k])
    marker_hit = security and any((work / "markers").glob("*"))
    verdict = classify(case, rc, out, new, changed, marker_hit)
    return {**case, "rc": rc, "verdict": verdict, "output": out[-600:], "new_files": new[:20], "seconds": round(seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--work", type=Path, default=Path("runs/audit"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=90.0)
    ap.add_argument("--only", default="", help="regular expression: replay only the matching case names")
    ap.add_argument("--rerun", action="store_true", help="replay cases already in replay.json")
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    build_fixtures(work)
    cases = [c for c in parse_report(args.report.read_text()) if re.search(args.only, c["name"])]
    results_path = work / "replay.json"
    done = {r["name"]: r for r in json.loads(results_path.read_text())} if results_path.exists() else {}
    todo = [c for c in cases if args.rerun or c["name"] not in done]
    # cases sharing the marker folder run one at a time: they would see each other's markers
    serial = [c for c in todo if c["name"].startswith("sec-")]
    parallel = [c for c in todo if not c["name"].startswith("sec-")]
    order = [c["name"] for c in parse_report(args.report.read_text())]

    def record(r: dict) -> None:  # after every case: an interrupted replay keeps what it finished
        done[r["name"]] = r
        print(f"{r['verdict']:>22}  {r['name']}  ({r['seconds']} s)", flush=True)
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps([done[n] for n in order if n in done], indent=1))
        os.replace(tmp, results_path)

    with ThreadPoolExecutor(args.jobs) as pool:
        for r in pool.map(lambda c: run_case(c, work, args.timeout), parallel):
            record(r)
    for c in serial:
        record(run_case(c, work, args.timeout))
    rows = [done[n] for n in order if n in done]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    print(f"{len(rows)} cases: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
