"""Names that become paths stay inside their root; no stage replaces a folder it did not write."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, compose_config
from eval_helpers import make_adapter
from test_analysis import records_from, small_matrix

from latent_traits.analysis.report import write_report
from latent_traits.analysis.run import analyze_records, run_analysis
from latent_traits.config import check_config
from latent_traits.errors import LatentTraitsError
from latent_traits.eval.records import record_path
from latent_traits.eval.runner import discover_adapters
from latent_traits.safe_paths import MARKER, check_adapter_id, check_name, inside


@pytest.mark.parametrize("bad", ["..", ".", "../../victim", "a/b", "", ".hidden", "x\x00y", "a\\b", "x" * 201])
def test_a_name_that_is_not_one_plain_component_is_refused(bad):
    with pytest.raises(LatentTraitsError, match="tag=.*cannot be used in a path"):
        check_name(bad, "tag")


@pytest.mark.parametrize("good", ["balanced", "noise30", "r8_s0", "v1.2", "a+b=c", "x" * 200])
def test_plain_names_pass(good):
    assert check_name(good, "tag") == good


@pytest.mark.parametrize("bad", ["imdb", "../x/y", "imdb/../../x", "a/b/c", "/etc/passwd"])
def test_adapter_ids_are_two_plain_components(bad):
    with pytest.raises(LatentTraitsError):
        check_adapter_id(bad)


def test_inside_refuses_dotdot_and_links_out(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    assert inside(root, "a", "b") == root / "a" / "b"
    for parts in (("..", "x"), ("a", "..", "..", "x"), ("out", "x")):
        with pytest.raises(LatentTraitsError, match="outside"):
            inside(root, *parts)


def write_small_report(folder):
    return write_report(analyze_records(records_from(small_matrix(1))), folder, meta={"records_dir": "x"})


def test_a_report_never_replaces_a_folder_it_did_not_write(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.md").write_text("mine")
    with pytest.raises(LatentTraitsError, match="did not write"):
        write_small_report(docs)
    assert [p.name for p in docs.iterdir()] == ["notes.md"] and (docs / "notes.md").read_text() == "mine"


def test_a_report_replaces_its_own_but_not_a_file_added_to_it(tmp_path):
    report = tmp_path / "report"
    write_small_report(report)
    assert (report / MARKER).is_file()
    write_small_report(report)  # its own: replaced
    (report / "my_notes.md").write_text("mine")
    with pytest.raises(LatentTraitsError, match="my_notes.md"):
        write_small_report(report)
    assert (report / "my_notes.md").read_text() == "mine"


def test_a_report_of_an_earlier_version_is_recognised_by_its_file_list(tmp_path):
    report = tmp_path / "report"
    write_small_report(report)
    (report / MARKER).unlink()  # as written before the marker existed: report.json lists the files
    write_small_report(report)
    assert (report / MARKER).is_file()


def test_analysis_refuses_a_foreign_report_dir_before_reading_anything(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("mine")
    with pytest.raises(LatentTraitsError, match="report_dir=.*did not write"):
        run_analysis(tmp_path / "no_records_here", docs)  # refused before the missing records are noticed
    assert [p.name for p in docs.iterdir()] == ["index.md"]


# -- the bad-input table of names that become paths: (case, entry, overrides, message) -------------

PATH_CASES = [
    ("tag_escapes_artifacts", "train", ["tag='../../../../victim'"],
     r"tag='\.\./\.\./\.\./\.\./victim' cannot be used"),
    ("tag_with_slash", "train", ["tag=a/b"], r"tag='a/b' cannot be used in a path"),
    ("tag_hidden", "train", ["tag=.x"], r"tag='\.x' cannot be used"),
    ("source_name_dotdot", "train", ["source_dataset.name=.."], r"source_dataset\.name='\.\.' cannot be used"),
    ("model_name_absolute", "evaluate", ["model.name=/tmp/x"], r"model\.name='/tmp/x' cannot be used"),
    ("lora_name_traversal", "train", ["lora.name=../x"], r"lora\.name='\.\./x' cannot be used"),
    ("experiment_name_slash", "train", ["experiment_name=a/../b"], r"experiment_name='a/\.\./b' cannot be used"),
    ("eval_adapter_traversal", "evaluate", ["eval.adapters=[imdb/../../x]"], r"eval\.adapters='imdb/\.\./\.\./x'"),
]


@pytest.mark.parametrize("case,entry,overrides,message", PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_unsafe_names_are_refused_before_anything_runs(case, entry, overrides, message, tmp_path):
    cfg = compose_config(entry, ["model=tiny_llama", *overrides], tmp_path / "artifacts")
    with pytest.raises(LatentTraitsError, match=message):
        check_config(cfg)


@pytest.mark.slow  # a subprocess: imports only, the check comes before any work
def test_a_tag_with_dotdot_leaves_the_victim_folder_and_writes_nothing(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    artifacts = tmp_path / "a" / "b" / "artifacts"
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "model=tiny_llama", "logger=none",
         f"paths.artifacts_dir={artifacts}", "tag='../../../../victim'"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "tag='../../../../victim' cannot be used in a path" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert not artifacts.exists()


def test_an_edited_adapter_id_in_train_result_is_refused_naming_the_file(tmp_path, tiny_model_cfg):
    adapters = tmp_path / "adapters"
    make_adapter(adapters, tiny_model_cfg, "imdb")
    result_path = next(adapters.rglob("train_result.json"))
    result = json.loads(result_path.read_text())
    result["adapter_id"] = "../../outside"
    result_path.write_text(json.dumps(result))
    (adapter,) = discover_adapters(adapters, tiny_model_cfg["name"])
    assert adapter.id == "imdb/lora_r4_s0"  # named by where it lies: its cells stay inside eval/
    assert "train_result.json names adapter '../../outside' but lies in 'imdb/lora_r4_s0'" in adapter.problem


def test_record_paths_stay_inside_the_eval_folder(tmp_path):
    assert record_path(tmp_path, "m", "imdb/lora_r8_s0", "imdb") == tmp_path / "m/imdb/lora_r8_s0/imdb.json"
    assert record_path(tmp_path, "m", "base", "imdb") == tmp_path / "m/base/imdb.json"
    for adapter, task in (("../x", "imdb"), ("imdb/../../x", "imdb"), ("a/b/c", "imdb"), ("base", "../x")):
        with pytest.raises(LatentTraitsError):
            record_path(tmp_path, "m", adapter, task)


def test_evaluation_refuses_a_test_split_that_could_hold_an_adapters_training_data(tmp_path, tiny_model_cfg):
    from latent_traits.eval.runner import evaluate_all

    path = make_adapter(tmp_path / "adapters", tiny_model_cfg, "imdb")
    result = json.loads((path / "train_result.json").read_text())
    result["settings"]["data"] = {"source": "offline", "test_fraction": 0.3}
    (path / "train_result.json").write_text(json.dumps(result))
    moved = compose_config("evaluate", ["model=tiny_llama", "target_task=[imdb]", "data.test_fraction=0.5"], tmp_path)
    with pytest.raises(LatentTraitsError, match=r"trained with data\.test_fraction=0\.3 .*evaluating with "
                                                r"data\.test_fraction=0\.5.*evaluate with data\.test_fraction=0\.3"):
        evaluate_all(moved)
    assert not (tmp_path / "eval").exists()
