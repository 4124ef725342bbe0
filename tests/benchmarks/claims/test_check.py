"""What the claims check says beside its verdicts."""

from __future__ import annotations


def test_quick_mode_explains_its_inconclusive_claims(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from estibench.benchmarks.claims.check import quick_note
    from estibench.benchmarks.results import rundir

    results = [SimpleNamespace(index=0, verdict="reproduced"),
               SimpleNamespace(index=3, verdict="inconclusive"),
               SimpleNamespace(index=5, verdict="inconclusive")]
    for mode, expected in (("quick", True), ("full", False)):
        monkeypatch.setattr(rundir, "stored_suite", lambda _, m=mode: SimpleNamespace(mode=m))
        note = quick_note(tmp_path, results)
        assert bool(note) is expected
    monkeypatch.setattr(rundir, "stored_suite", lambda _: SimpleNamespace(mode="quick"))
    assert "claims that need precision inconclusive: #3, #5" in quick_note(tmp_path, results)
    assert quick_note(tmp_path, results[:1]) == ""  # nothing undecided: nothing to explain
