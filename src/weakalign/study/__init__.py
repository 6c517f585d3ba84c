r"""The study: the whole pipeline over seeds, every feedback source beside its floor and ceiling, with seeds (training
runs), not test prompts, as the unit of analysis.

    make study                                  # run every missing run, then the report
    python -m weakalign.study plan              # the runs and their `dvc exp run -S` params
    python -m weakalign.study run [--commit] [--only s0 s1-dl_32]
    python -m weakalign.study report            # metrics/study.json, reports/study.md (+ .png), plots/study.json

`params.yaml: study` says what runs (weakalign.config.params.Study). Each run is one queued `dvc exp run` of the
pipeline with its params set (`--jobs` at a time), so DVC's run cache restores every stage a run shares with an earlier
one (the teacher runs of a seed reuse its pairs, labels and the human target). When a run ends its summary goes to
`study/runs/<params label>/<run>.json`, with a digest of its params and the code it ran (src/, stages/, dvc.yaml). A
summary is current while its params are today's and its code gives today's results: the same code, or code whose result
fingerprint (weakalign.fingerprint: a tiny-preset repro on the same machine kind) is the same, so a fix that changes no
result keeps the study. `run` measures the fingerprints it needs and skips current runs, so a killed study continues
where it stopped, and with `--commit` every summary is committed as it lands.
`report` reads only current summaries, lists missing and stale ones, and never reruns anything.

What the report computes, over seeds (weakalign.analysis.stats): per-seed paired contrasts on the same test prompts
(each source minus the base, each source minus the `random` target of its seed - the floor -, weak minus human), their
mean and 95% t-interval; gold reward per nat of drift; TOST of weak against human within a share of the human - random
gap (`equivalence`) and within `study.tost_margin` (`tost`); Holm-adjusted p-values over every contrast it reports; the
performance gap recovered against human and gold over the base and against human over the random floor (Fieller
intervals); the dose-response of gold reward on label accuracy (Spearman, and the per-seed slope over the calibration
sources); and the calibration checks that must pass before a weak-vs-human claim means anything.
"""

from weakalign.study.cli import main

__all__ = ["main"]
