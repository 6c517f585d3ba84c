"""The docs stay true to the code: every stage, module and metric file is where the docs say."""

import yaml


def test_architecture_names_every_stage_and_module(root):
    text = (root / "docs/ARCHITECTURE.md").read_text()
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    for name in stages:
        assert f"`{name}" in text, f"docs/ARCHITECTURE.md does not mention stage {name}"
    for module in (root / "src/weakalign").glob("*.py"):
        if module.name != "__init__.py":
            assert f"`{module.name}`" in text, f"docs/ARCHITECTURE.md does not mention {module.name}"


def test_readme_starts_with_the_two_commands(root):
    text = (root / "README.md").read_text()
    quick = text[text.index("## Quick start"):]
    block = quick[quick.index("```"):quick.index("```", quick.index("```") + 3)]
    assert "make repro" in block and "make test" in block
    assert "RESULTS_PLACEHOLDER" not in text


def test_every_metrics_file_is_declared(root):
    dvc = (root / "dvc.yaml").read_text()
    for name in ("pairs", "annotate", "train_weak", "label_weak", "feedback", "alignment"):
        assert f"${{paths.metrics}}/{name}.json" in dvc


def test_performance_doc_quotes_the_benchmark_results(root):
    """docs/PERFORMANCE.md must show the figures of benchmarks/results.json (rerun `make bench`, then update it)."""
    import json

    results = json.loads((root / "benchmarks/results.json").read_text())
    text = (root / "docs/PERFORMANCE.md").read_text()
    assert f"{results['cases']['matmul_peak']['bf16']['rate']} TFLOP/s" in text
    for case in ("labeling", "training", "generation"):
        c = results["cases"][case]
        assert f"**{c['speedup']:.2f}×**" in text, case
        for side in ("ours", "baseline"):
            assert f"{c[side]['rate']} {c[side]['unit']}" in text, (case, side)
    assert f"{results['cases']['dvc_repro_noop']['ours']['seconds']} s" in text
