"""Calibration of the generator against the real KuaiRand-Pure sample (docs/data.md)."""

from __future__ import annotations

import pytest

from dv365.data.calibration import DEFAULT_KUAIRAND, kuairand_stats, main, markdown, synth_stats
from dv365.data.synth import SynthConfig, synthesize

needs_sample = pytest.mark.skipif(not DEFAULT_KUAIRAND.is_dir(),
                                  reason="the KuaiRand sample (../shared) is not here")


def test_missing_sample_is_a_clear_error(tmp_path, capsys):
    assert main(["--kuairand", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere" in err and "KuaiRand sample" in err and "\n" not in err


@needs_sample
def test_generated_rates_stay_near_kuairand(tmp_path):
    out = tmp_path / "synth"
    synthesize(out, SynthConfig(users=1_500, seed=2))
    real, synth = kuairand_stats(DEFAULT_KUAIRAND), synth_stats(out)
    for task in ("like", "profile_visit"):
        assert 0.5 < synth.action_rates[task] / real.action_rates[task] < 2.0, task
    assert abs(synth.complete_rate - real.complete_rate) < 0.05
    assert abs(synth.short_rate - real.short_rate) < 0.08
    assert abs(synth.surface_shares[0][1] - real.surface_shares[0][1]) < 0.08
    table = markdown(real, synth)
    assert table.count("\n") > 10 and "like per impression" in table
