"""Code scores for Magicoder: the no-execution proxy (default) and the opt-in sandbox."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import REPO, compose_config

from latent_traits.config import target_specs
from latent_traits.data.load import load_examples
from latent_traits.errors import LatentTraitsError
from latent_traits.eval import code as code_mod
from latent_traits.eval.cells import run_cell
from latent_traits.eval.code import (
    SandboxSettings,
    execute_against_reference,
    extract_code,
    outputs_equal,
    run_sandboxed,
    score_code_match,
)
from latent_traits.eval.runner import code_settings

pytestmark = pytest.mark.usefixtures("one_thread")

REFERENCE = "import math\n\ndef helper(x):\n    return x * 2\n\ndef main_solution(a, b):\n    return helper(a) + b\n"
GENERATOR = "def generate_inputs(rng: Random) -> dict:\n    return {'a': rng.randint(0, 9), 'b': rng.randint(0, 9)}\n"
EXAMPLE = {"id": "t", "input": "add", "target": REFERENCE, "input_generator": GENERATOR}
FAST = SandboxSettings(timeout_s=2, memory_mb=512, n_tests=3)


@pytest.mark.parametrize(("output", "expected"), [
    ("```python\ndef f():\n    return 1\n```\nThat is it.", "def f():\n    return 1"),
    ("Here:\n```\nx = 1\n```", "x = 1"),
    ("```js\nlet x;\n```\n```python\ny = 2\n```", "y = 2"),     # the python block wins
    ("```py\n\tif x:\n\t\ty = 1\n```", "if x:\n    y = 1"),        # tabs expanded
    ("```python\ndef g():\n    pass", "def g():\n    pass"),       # unclosed fence: to the end
    ("    def h():\n        return 3\n", "def h():\n    return 3"),  # no fence: all of it, dedented
    ("", ""),
])
def test_extract_code(output, expected):
    assert extract_code(output) == expected


@pytest.mark.parametrize(("output", "reference", "correct", "parses", "missing"), [
    ("```python\ndef main_solution(a, b):\n    return a + b\n```", REFERENCE, True, True, []),
    ("def main_solution(a, b):\n    return a +", REFERENCE, False, False, ["main_solution"]),
    ("def solve(a, b):\n    return a + b", REFERENCE, False, True, ["main_solution"]),
    # without main_solution every top-level function and class of the reference is required
    ("class Stack:\n    def push(self, x): ...\ndef peek(s): ...", "class Stack: pass\ndef peek(s): pass",
     True, True, []),
    ("class Stack:\n    def peek(self): ...", "class Stack: pass\ndef peek(s): pass", True, True, []),
    ("class Queue: pass", "class Stack: pass\ndef peek(s): pass", False, True, ["Stack", "peek"]),
    ("just words, no code", REFERENCE, False, False, ["main_solution"]),
    ("", REFERENCE, False, False, ["main_solution"]),
])
def test_code_match(output, reference, correct, parses, missing):
    scored = score_code_match(output, reference)
    assert (scored["correct"], scored["parses"], scored["missing_names"]) == (correct, parses, missing)


@pytest.mark.parametrize(("output", "question", "correct", "required"), [
    # the stand-in's questions do not name main_solution: any function or class will do
    ("def solve(a, b):\n    return a + b", "Given a and b, what is 2a + b?", True, []),
    ("x = 1", "Given a and b, what is 2a + b?", False, []),
    ("def solve(a, b):\n    return a +", "Given a and b, what is 2a + b?", False, []),
    # a question that names the entry point requires it
    ("def solve(a, b): ...", "Write `main_solution(a, b)` returning 2a + b.", False, ["main_solution"]),
    ("def main_solution(a, b): ...", "Write main_solution(a, b) returning 2a + b.", True, ["main_solution"]),
])
def test_code_match_requires_only_names_the_question_mentions(output, question, correct, required):
    scored = score_code_match(output, REFERENCE, question=question)
    assert (scored["correct"], scored["required_names"]) == (correct, required)
    hub_like = score_code_match("class Stack:\n    def push(self, x): ...", "class Stack: pass\ndef peek(s): pass",
                                question="Implement the Stack class with push and pop.")
    assert hub_like["correct"] and hub_like["required_names"] == ["Stack"]  # peek is not asked for


def test_name_recall_counts_all_reference_names():
    scored = score_code_match("def helper(x): ...\ndef main_solution(a, b): ...", REFERENCE)
    assert scored["name_recall"] == 1.0
    assert score_code_match("def main_solution(a, b): ...", REFERENCE)["name_recall"] == 0.5


def test_outputs_equal():
    assert outputs_equal({"a": [1, 2.0000000001]}, {"a": [1, 2.0]})
    assert not outputs_equal([1, 2], [1, 2, 3]) and not outputs_equal({"a": 1}, {"b": 1})
    assert not outputs_equal(1.0, "1.0") and outputs_equal("x", "x")


def test_code_execution_off_never_runs_anything(tiny_tokenizer_and_model, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("generated code must not run with code_execution off")

    monkeypatch.setattr(code_mod, "run_sandboxed", forbidden)
    monkeypatch.setattr(code_mod.subprocess, "Popen", forbidden)
    tokenizer, model = tiny_tokenizer_and_model
    cfg = compose_config("evaluate", ["model=tiny_llama", "target_task=[magicoder]"], tmp_path)
    ((spec, _),) = target_specs(cfg)  # magicoder is a scorable target now
    assert spec.scorer == "code_match" and code_settings(cfg, spec) == {"execution": "off"}
    examples, _ = load_examples(spec, split="test", n=3, seed=0)
    assert all(e.get("input_generator") for e in examples)  # the stand-in ships test-input generators
    rows, metrics, primary, n_invalid = run_cell(
        model, tokenizer, spec, examples, batch_size=3, max_input_tokens=64,
        decoding={"max_new_tokens_cap": 6}, code=code_settings(cfg, spec))
    assert primary == "code_match" and 0 <= metrics["code_match"] <= 1
    assert {"parses", "name_recall", "mean_output_chars"} <= set(metrics) and "execution_pass" not in metrics
    assert n_invalid == sum(not r["parses"] for r in rows)
    assert all("executed" not in r and r["reference"] == e["target"] for r, e in zip(rows, examples, strict=True))


def test_scorer_none_is_still_refused(tmp_path):
    cfg = compose_config("evaluate", ["model=tiny_llama", "target_task=[magicoder]",
                                      "target_task.magicoder.task.scorer=none"], tmp_path)
    with pytest.raises(LatentTraitsError, match="magicoder"):
        target_specs(cfg)


# -- sandbox ---------------------------------------------------------------------------------

def test_sandbox_passes_the_reference_and_fails_a_wrong_solution():
    right = execute_against_reference(REFERENCE, EXAMPLE, FAST)
    assert right == {"executed": True, "tests_passed": 3, "tests_total": 3, "execution_correct": True,
                     "execution_error": None}
    wrong = execute_against_reference("def main_solution(a, b):\n    return a + b", EXAMPLE, FAST)
    assert wrong["executed"] and wrong["execution_correct"] is False and wrong["tests_passed"] < 3
    crash = execute_against_reference("def main_solution(a, b):\n    raise KeyError('x')", EXAMPLE, FAST)
    assert crash["execution_correct"] is False and "KeyError" in crash["execution_error"]
    renamed = execute_against_reference("def double_plus(a, b):\n    return 2 * a + b", EXAMPLE, FAST)
    assert renamed["execution_correct"] is True  # its only function is called when main_solution is absent
    untested = execute_against_reference(REFERENCE, {**EXAMPLE, "input_generator": None}, FAST)
    assert untested["executed"] is False and untested["execution_correct"] is None


def test_sandbox_on_a_real_stand_in_example(tmp_path):
    cfg = compose_config("evaluate", ["model=tiny_llama", "target_task=[magicoder]"], tmp_path)
    ((spec, _),) = target_specs(cfg)
    (example,) = load_examples(spec, split="test", n=1, seed=0)[0]
    result = execute_against_reference(example["target"], example, SandboxSettings(timeout_s=5, n_tests=2))
    assert result["execution_correct"] is True, result


def call(code: str, settings: SandboxSettings = FAST) -> dict:
    return run_sandboxed({"kind": "call", "code": code, "entry": "main_solution", "inputs": [{}]}, settings)


def test_sandbox_limits_time_memory_network_and_files(tmp_path):
    started = time.monotonic()
    spin = call("def main_solution():\n    while True: pass")  # the CPU limit (2 s) kills it
    assert not spin["ok"] and time.monotonic() - started < FAST.timeout_s * 2 + 5
    memory = call("def main_solution():\n    return len(bytearray(2 * 1024 ** 3))")
    assert not memory["ok"] and "MemoryError" in memory["error"]
    network = call("import socket\ndef main_solution():\n    try:\n"
                   "        socket.create_connection(('1.1.1.1', 80), timeout=2)\n        return 'online'\n"
                   "    except OSError:\n        return 'offline'")
    assert network == {"ok": True, "outputs": ["offline"]}
    where = call("import os\ndef main_solution():\n    return [os.getcwd(), os.listdir('.'), dict(os.environ)]")
    cwd, listing, env = where["outputs"][0]
    assert listing == [] and str(tmp_path) not in cwd and set(env) <= {"PATH", "LC_CTYPE"}
    big = call("def main_solution():\n    open('f', 'w').write('x' * (4 << 20))\n    return 1")
    assert not big["ok"]


def test_sandbox_refuses_without_isolation(monkeypatch):
    monkeypatch.setattr(code_mod, "isolation_problem", lambda: "`unshare` (util-linux) is not installed")
    with pytest.raises(LatentTraitsError, match=r"isolated sandbox.*`unshare` \(util-linux\) is not installed"):
        call("def main_solution():\n    return 1")


def test_sandboxed_code_cannot_touch_the_machines_files(tmp_path, monkeypatch):
    """Write in its folder, read the cache and home, list the project, write outside: each is
    confined; the real folders are untouched."""
    cache = tmp_path / "cache"
    (cache / "assets").mkdir(parents=True)
    (cache / "assets" / "secret.txt").write_text("cache secret")
    home_secret = Path.home() / ".lt_sandbox_test_secret"
    home_secret.write_text("home secret")
    monkeypatch.setenv("LATENT_TRAITS_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    try:
        probe = call(
            "import os\n"
            "def attempt(fn):\n    try:\n        return fn()\n    except OSError as err:\n        return 'blocked'\n"
            f"def main_solution():\n    open('written.txt', 'w').write('x')\n"
            f"    return [os.listdir('.'), attempt(lambda: open({str(cache / 'assets' / 'secret.txt')!r}).read()),\n"
            f"            attempt(lambda: open({str(home_secret)!r}).read()),\n"
            f"            attempt(lambda: os.listdir({str(REPO)!r})), attempt(lambda: os.listdir({str(tmp_path)!r})),\n"
            f"            attempt(lambda: open('/usr/planted.txt', 'w').write('x')),\n"
            f"            attempt(lambda: open({str(tmp_path / 'planted.txt')!r}, 'w').write('x'))]")
    finally:
        home_secret.unlink()
    assert probe["ok"], probe
    own_folder, cache_read, home_read, project, job_folder, usr_write, outside_write = probe["outputs"][0]
    assert own_folder == ["written.txt"]  # its own empty folder, which it may write
    assert cache_read == "blocked" and home_read == "blocked"
    assert project in ("blocked", []) and job_folder in ("blocked", [])
    assert usr_write == "blocked" and outside_write == "blocked"
    assert not (tmp_path / "planted.txt").exists() and not (tmp_path / "written.txt").exists()
    assert not Path("/usr/planted.txt").exists()


def test_sandboxed_cell_records_execution(tiny_tokenizer_and_model, tmp_path):
    tokenizer, model = tiny_tokenizer_and_model
    cfg = compose_config("evaluate", ["model=tiny_llama", "target_task=[magicoder]", "eval.code_execution=sandboxed",
                                      "eval.code_sandbox.n_tests=1", "eval.code_sandbox.timeout_s=3"], tmp_path)
    ((spec, _),) = target_specs(cfg)
    code = code_settings(cfg, spec)
    assert code["execution"] == "sandboxed" and code["sandbox"]["n_tests"] == 1
    examples, _ = load_examples(spec, split="test", n=2, seed=0)
    rows, metrics, _, _ = run_cell(model, tokenizer, spec, examples, batch_size=2, max_input_tokens=64,
                                   decoding={"max_new_tokens_cap": 4}, code=code)
    assert all("executed" in r for r in rows)
    assert metrics["n_executed"] + metrics["n_without_tests"] == 2
    bad = compose_config("evaluate", ["model=tiny_llama", "target_task=[magicoder]", "eval.code_execution=yes"],
                         tmp_path)
    with pytest.raises(LatentTraitsError, match="code_execution"):
        code_settings(bad, spec)
