"""A template-matching search killed part-way continues with --resume and gives what an uninterrupted run gives."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest

from cryomine.errors import InputError
from cryomine.io import write_mrc
from cryomine.pick import PeakConfig, TemplateMatchConfig
from cryomine.pick.job import SearchJob
from cryomine.pick.template import match_template_file
from test_pick import _asymmetric_template, _plant


class _Killed(Exception):
    pass


def _inputs(tmp_path):
    rng = np.random.default_rng(12)
    template = _asymmetric_template(11, 1.0)
    vol = 0.3 * rng.standard_normal((22, 30, 26)).astype(np.float32)
    _plant(vol, template, (11, 9, 12), (20, 70, 140))
    _plant(vol, template, (10, 21, 14), (100, 30, 300))
    write_mrc(tmp_path / "tomo.mrc", vol, 10.0)
    write_mrc(tmp_path / "tmpl.mrc", template, 10.0)
    return tmp_path / "tomo.mrc", tmp_path / "tmpl.mrc"


@pytest.mark.parametrize("random_phase", [False, True])
def test_killed_search_resumes_to_the_same_result(tmp_path, monkeypatch, random_phase):
    tomo, tmpl = _inputs(tmp_path)
    config = TemplateMatchConfig(angular_step_deg=90.0, microscope=None, tile_vox=8, peaks=PeakConfig(top_n=4),
                                 random_phase_correction=random_phase)  # fmt: skip
    ref, _ = match_template_file(tomo, tmpl, tmp_path / "ref" / "picks.star", config)
    ref_scores = mrcfile.read(tmp_path / "ref" / "picks_scores.mrc").copy()
    out = tmp_path / "run" / "picks.star"
    record = SearchJob._record
    calls = {"n": 0}

    def dies_after_five_tiles(self, tile, sums, n):
        record(self, tile, sums, n)
        calls["n"] += tile is not None
        if calls["n"] == 5:
            raise _Killed

    monkeypatch.setattr(SearchJob, "_record", dies_after_five_tiles)
    with pytest.raises(_Killed):
        match_template_file(tomo, tmpl, out, config)
    monkeypatch.setattr(SearchJob, "_record", record)
    job = json.loads((tmp_path / "run" / "picks.job.json").read_text())
    assert len(job["done"]) == 5 and not out.exists() and (tmp_path / "run" / "picks_scores.mrc.part").exists()
    with pytest.raises(InputError, match="other inputs or parameters"):  # a resume with other parameters is refused
        match_template_file(tomo, tmpl, out, TemplateMatchConfig(angular_step_deg=60.0, microscope=None, tile_vox=8), resume=True)
    res, paths = match_template_file(tomo, tmpl, out, config, resume=True)
    np.testing.assert_array_equal(mrcfile.read(tmp_path / "run" / "picks_scores.mrc"), ref_scores)
    np.testing.assert_array_equal(res.picks.coords_zyx, ref.picks.coords_zyx)
    assert res.search == pytest.approx(ref.search, rel=1e-12)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(p.name for p in paths)  # no leftovers
    with pytest.raises(InputError, match="nothing to resume"):
        match_template_file(tomo, tmpl, out, config, resume=True)
