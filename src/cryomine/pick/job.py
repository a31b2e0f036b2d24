"""A resumable template-matching search: the score and angle maps being filled, and a job file of finished tiles.

While ``cryomine pick --method template`` runs, three files sit beside its output ``<stem>.star``:
``<stem>_scores.mrc.part`` and ``<stem>_angles.mrc.part`` (the maps, memory-mapped, filled tile by tile) and
``<stem>.job.json`` (what was asked, the tiles finished, the running sums of the search statistics); with
random-phase correction the scores part holds ``raw - noise`` and the corrected map is written at the end into
``<stem>_scores_corrected.mrc.part`` (made afresh each time, so a search killed while correcting redoes only
that). After each
tile the maps are flushed and the job file is rewritten atomically, so a search killed at any moment has lost at
most the tile it was on. Rerun with ``--resume`` (same inputs and parameters, checked), it continues after the
last finished tile and gives the same result as an uninterrupted run; at the end the parts become the final
maps and the job file goes. Without ``--resume``, leftovers of an earlier search are removed first.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np

from cryomine.errors import InputError
from cryomine.io.atomic import atomic_output

__all__ = ["SearchJob", "TileProgress"]


@dataclass
class TileProgress:
    """What a search has done so far and whom to tell after each tile: ``done`` tile indices, running ``sums``
    (sum and sum of squares of the scores; sum and count of the phase-randomised template's maxima) and ``n``
    (scores counted); ``on_tile(index, sums, n)`` is called after each finished tile."""

    done: set[int] = field(default_factory=set)
    sums: np.ndarray = field(default_factory=lambda: np.zeros(4))
    n: int = 0
    on_tile: Callable[[int, np.ndarray, int], None] | None = None


def _file_identity(path: str | os.PathLike[str]) -> dict[str, object]:
    p = Path(path)
    if not p.is_file():  # a bundled structure id, not a file
        return {"name": str(path)}
    st = p.stat()
    return {"path": str(p.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


class SearchJob:
    """The files of one search (module docstring). ``key``: everything that determines the result (inputs by
    path, size and modification time; parameters); a resume is refused when it differs."""

    def __init__(self, stem: Path, key: dict, shape: tuple[int, int, int]) -> None:
        self.stem, self.key, self.shape = Path(stem), json.loads(json.dumps(key, sort_keys=True, default=str)), tuple(shape)
        self.scores_part = Path(f"{self.stem}_scores.mrc.part")
        self.angles_part = Path(f"{self.stem}_angles.mrc.part")
        self.corrected_part = Path(f"{self.stem}_scores_corrected.mrc.part")
        self.job_file = Path(f"{self.stem}.job.json")
        self.progress = TileProgress(on_tile=self._record)

    @staticmethod
    def key_of(inputs: dict[str, str | os.PathLike[str] | None], parameters: dict) -> dict:
        """The job key from input files (identified by path, size and mtime) and parameters."""
        return {"inputs": {k: None if v is None else _file_identity(v) for k, v in inputs.items()}, "parameters": parameters}

    def start(self, resume: bool) -> None:
        """Continue the job on disk (``resume``) or start afresh (removing any leftovers)."""
        if resume:
            self._load()
            return
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        for p in (self.scores_part, self.angles_part, self.corrected_part, self.job_file):
            p.unlink(missing_ok=True)
        for p in (self.scores_part, self.angles_part):
            with mrcfile.new_mmap(p, self.shape, mrc_mode=2, overwrite=True):
                pass
        self._record(None, np.zeros(4), 0)

    def _load(self) -> None:
        if not self.job_file.is_file():
            raise InputError(f"nothing to resume: no {self.job_file.name} beside the output (run without --resume)", "--resume")
        try:
            state = json.loads(self.job_file.read_text())
            done, sums, n = set(map(int, state["done"])), np.asarray(state["sums"], np.float64), int(state["n"])
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError("the job file is unreadable: run without --resume to start again", self.job_file) from None
        if state.get("key") != self.key:
            raise InputError("the interrupted search was made with other inputs or parameters: run without --resume to "
                             "start again", self.job_file)  # fmt: skip
        for p in (self.scores_part, self.angles_part):
            try:
                with mrcfile.mmap(p, mode="r") as mrc:
                    ok = tuple(mrc.data.shape) == self.shape
            except (OSError, ValueError):
                ok = False
            if not ok:
                raise InputError("the partial map is missing or damaged: run without --resume to start again", p)
        self.progress.done, self.progress.sums, self.progress.n = done, sums, n

    def _record(self, tile: int | None, sums: np.ndarray, n: int) -> None:
        if tile is not None:
            self.progress.done.add(int(tile))
        state = {"key": self.key, "done": sorted(self.progress.done), "sums": [float(v) for v in sums], "n": int(n)}
        with atomic_output(self.job_file) as tmp:
            tmp.write_text(json.dumps(state))

    @contextlib.contextmanager
    def maps(self, corrected: bool = False) -> Iterator[tuple[mrcfile.mrcfile.MrcFile, mrcfile.mrcfile.MrcFile, mrcfile.mrcfile.MrcFile | None]]:
        """The two partial maps, open read-write (memory maps), and with ``corrected`` a fresh map for the
        random-phase corrected scores (else None)."""
        with contextlib.ExitStack() as stack:
            ms = stack.enter_context(mrcfile.mmap(self.scores_part, mode="r+"))
            ma = stack.enter_context(mrcfile.mmap(self.angles_part, mode="r+"))
            mc = stack.enter_context(mrcfile.new_mmap(self.corrected_part, self.shape, mrc_mode=2, overwrite=True)) if corrected else None
            yield ms, ma, mc

    def discard(self) -> None:
        """Remove the job's files (a search refused before its first tile leaves nothing behind)."""
        for p in (self.scores_part, self.angles_part, self.corrected_part, self.job_file):
            p.unlink(missing_ok=True)

    def finish(self, scores_path: Path, angles_path: Path) -> None:
        """Move the completed maps into place (the corrected scores, when there are some) and drop the job file."""
        if self.corrected_part.is_file():
            os.replace(self.corrected_part, scores_path)
            self.scores_part.unlink()
        else:
            os.replace(self.scores_part, scores_path)
        os.replace(self.angles_part, angles_path)
        self.job_file.unlink(missing_ok=True)
