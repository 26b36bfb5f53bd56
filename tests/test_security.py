"""Security: no remote code unless asked, generated code never runs outside the opt-in sandbox,
no secret in anything written (configs, records, reports, W&B, Hydra's .hydra files)."""

from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CACHE_DIR, REPO, compose_config

import latent_traits.eval.code as code_mod
from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError
from latent_traits.eval.cells import score_generation
from latent_traits.model import factory
from latent_traits.redact import (
    REDACTED,
    RedactSecrets,
    is_secret_name,
    redact,
    redact_text,
    redact_yaml_file,
    refuse_secrets_in_config,
)

SRC = REPO / "src" / "latent_traits"
MODEL_CONFIGS = sorted((REPO / "conf" / "model").glob("*.yaml"))


# -- trust_remote_code -----------------------------------------------------------------------------

class LoadCalls:
    """Stands in for transformers' from_pretrained: records each call's kwargs, loads nothing."""

    def __init__(self, monkeypatch):
        import transformers

        self.calls: list[tuple[str, dict]] = []
        for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
            monkeypatch.setattr(cls, "from_pretrained", self.recorder(cls.__name__))

    def recorder(self, name):
        def from_pretrained(location, *args, **kwargs):
            self.calls.append((name, kwargs))
            raise _Loaded

        return from_pretrained


class _Loaded(Exception):
    pass


def model_configs() -> list[tuple[str, dict]]:
    configs = [(p.stem, yaml.safe_load(p.read_text())) for p in MODEL_CONFIGS]
    configs.append(("judge/hf", yaml.safe_load((REPO / "conf/judge/hf.yaml").read_text())["model"]))
    return configs


@pytest.mark.parametrize("name,model_cfg", model_configs(), ids=[n for n, _ in model_configs()])
def test_trust_remote_code_is_false_by_default_everywhere_a_model_loads(name, model_cfg, monkeypatch, tmp_path):
    assert model_cfg.get("trust_remote_code") is False, f"{name}: model.trust_remote_code must default to false"
    if model_cfg["source"] == "local":
        model_cfg["path"] = str(tmp_path)
    calls = LoadCalls(monkeypatch)
    for load in (factory.load_tokenizer, lambda cfg, cache: factory.load_model(cfg, cache)):
        try:
            load(model_cfg, CACHE_DIR)
        except _Loaded:
            pass
    # tiny_random builds its model in code: only its tokenizer is loaded
    assert len(calls.calls) == (1 if model_cfg["source"] == "tiny_random" else 2)
    assert all(kwargs.get("trust_remote_code", False) is False for _, kwargs in calls.calls), calls.calls


def test_trust_remote_code_is_passed_when_the_user_sets_it(monkeypatch):
    calls = LoadCalls(monkeypatch)
    cfg = {"name": "x", "source": "hub", "hub_id": "org/model", "dtype": "float32", "trust_remote_code": True}
    for load in (factory.load_tokenizer, factory.load_model):
        with pytest.raises(_Loaded):
            load(cfg, CACHE_DIR)
    assert [kwargs["trust_remote_code"] for _, kwargs in calls.calls] == [True, True]


def _calls(tree: ast.AST, names: set[str]) -> list[ast.Call]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in names:
                out.append(node)
    return out


def test_no_code_in_the_package_turns_trust_remote_code_on():
    for path in SRC.rglob("*.py"):
        for call in _calls(ast.parse(path.read_text()), {"from_pretrained", "load_dataset", "from_config"}):
            for kw in call.keywords:
                if kw.arg == "trust_remote_code":
                    assert not (isinstance(kw.value, ast.Constant) and kw.value.value is True), \
                        f"{path}:{call.lineno} sets trust_remote_code=True"


# -- generated code is never executed outside the sandbox ------------------------------------------

def test_only_the_sandbox_and_git_provenance_start_processes_or_exec_code():
    """exec/eval/compile and process spawns live in two reviewed places only."""
    allowed = {SRC / "eval" / "code.py", SRC / "io.py"}
    risky = {"exec", "eval", "compile", "system", "popen", "Popen", "run", "call", "check_output",
             "check_call", "spawn", "execv", "execve", "execvp", "posix_spawn", "fork"}
    for path in SRC.rglob("*.py"):
        if path in allowed:
            continue
        tree = ast.parse(path.read_text())
        for call in _calls(tree, risky):
            func = call.func
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
            if isinstance(func, ast.Name) and func.id in {"exec", "eval", "compile"}:
                pytest.fail(f"{path}:{call.lineno} calls {func.id}()")
            if owner in {"subprocess", "os", "pty"}:
                pytest.fail(f"{path}:{call.lineno} calls {owner}.{func.attr}()")


MALICIOUS = [
    "```python\nimport os\nos.system('touch {marker}')\ndef main_solution(x):\n    return x\n```",
    "```python\nopen('{marker}', 'w').write('ran')\ndef main_solution(x):\n    return x\n```",
    "def main_solution(x):\n    __import__('subprocess').run(['touch', '{marker}'])\n    return x",
]


def test_scoring_a_magicoder_cell_with_execution_off_runs_nothing(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("generated code must not run with eval.code_execution=off")

    for module, names in ((code_mod.subprocess, ("Popen", "run", "call", "check_output")),
                          (os, ("system", "fork", "execv", "execve", "posix_spawn", "popen"))):
        for name in names:
            monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr(code_mod, "run_sandboxed", forbidden)
    cfg = compose_config("evaluate", ["model=tiny_llama", "target_task=[magicoder]"], tmp_path)
    spec = TaskSpec.from_config(cfg.target_task.magicoder.task)
    from latent_traits.data.load import load_examples
    from latent_traits.eval.runner import code_settings

    example = load_examples(spec, split="test", n=1, seed=0)[0][0]
    assert example.get("input_generator"), "the stand-in ships tests: the sandbox could run them if asked"
    marker = tmp_path / "ran"
    for output in MALICIOUS:
        row = score_generation(spec, example, output.format(marker=marker), code_settings(cfg, spec))
        assert row["parses"] and "executed" not in row
    assert not marker.exists()


# -- secrets ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,secret", [
    ("api_key", True), ("judge.api_key", True), ("+judge.api_key", True), ("OPENAI_API_KEY", True),
    ("hf_token", True), ("token", True), ("HF_TOKEN", True), ("password", True), ("client_secret", True),
    ("WANDB_API_KEY", True), ("access_token", True),
    ("api_key_env", False), ("max_tokens", False), ("tokens_seen", False), ("max_new_tokens", False),
    ("eos_token", False), ("pad_token_id", False), ("tokenizer_from", False), ("output_tokens", False),
])
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


def test_redact_keys_values_environment_and_overrides(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "plain-looking-key-123")  # named only by judge.api_key_env
    monkeypatch.setenv("HF_TOKEN", "hub-token-value-456")         # a secret by its variable's name
    config = {
        "judge": {"api_key_env": "MY_JUDGE_KEY", "api_key": "anything", "note": "k=plain-looking-key-123"},
        "model": {"token": None, "name": "x", "hub_note": "uses hub-token-value-456"},
        "free_text": "pasted sk-abcdefghijklmnopqrstuv here",
        "overrides": ["+judge.api_key=abc", "lora.r=8", "x=1,client_secret=zzz"],
        "metrics": {"max_tokens": 5, "n": [1, 2]},
    }
    clean = redact(config)
    assert clean["judge"] == {"api_key_env": "MY_JUDGE_KEY", "api_key": REDACTED, "note": f"k={REDACTED}"}
    assert clean["model"] == {"token": None, "name": "x", "hub_note": f"uses {REDACTED}"}
    assert clean["free_text"] == f"pasted {REDACTED} here"
    assert clean["overrides"] == [f"+judge.api_key={REDACTED}", "lora.r=8", f"x=1,client_secret={REDACTED}"]
    assert clean["metrics"] == config["metrics"]


def test_no_shipped_config_holds_a_secret_and_a_secret_is_refused(tmp_path):
    for config_name in ("train", "evaluate", "analyze"):
        refuse_secrets_in_config(compose_config(config_name, ["model=tiny_llama"], tmp_path))
    cfg = compose_config("evaluate", ["judge=openai", "+judge.api_key=sk-do-not-store-this-1234"], tmp_path)
    with pytest.raises(LatentTraitsError, match="judge.api_key: .*api_key_env") as err:
        refuse_secrets_in_config(cfg)
    assert "sk-do-not-store" not in str(err.value)


def test_hydra_callback_redacts_the_files_hydra_wrote(tmp_path):
    from omegaconf import OmegaConf

    hydra_dir = tmp_path / "job" / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "overrides.yaml").write_text("- judge=openai\n- +judge.api_key=sk-abcdefghijklmnopqrstuvwx\n")
    (hydra_dir / "config.yaml").write_text("judge:\n  api_key: hunter2-hunter2\n  api_key_env: OPENAI_API_KEY\n")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: [+judge.api_key=hunter2-hunter2]\n")
    config = OmegaConf.create({"hydra": {"output_subdir": ".hydra", "runtime": {"output_dir": str(tmp_path / "job")},
                                         "mode": "MULTIRUN", "sweep": {"dir": str(sweep)}}})
    RedactSecrets().on_job_start(config)
    texts = [p.read_text() for p in (*hydra_dir.iterdir(), sweep / "multirun.yaml")]
    assert all("hunter2" not in t and "sk-abcdef" not in t for t in texts)
    assert yaml.safe_load((hydra_dir / "config.yaml").read_text())["judge"]["api_key_env"] == "OPENAI_API_KEY"
    assert redact_yaml_file(hydra_dir / "config.yaml") is False  # already clean: left as it is


def test_hydra_config_lists_the_callback(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model=tiny_llama"], return_hydra_config=True)
    assert cfg.hydra.callbacks.redaction._target_ == "latent_traits.redact.RedactSecrets"


def files_containing(root: Path, needle: str) -> list[str]:
    data = needle.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


def openai_judge(url: str) -> list[str]:
    """evaluate.py overrides: the OpenAI-compatible judge at `url`, its key in LT_TEST_JUDGE_KEY, on goat."""
    return ["judge=openai", f"judge.base_url={url}", "judge.model=j", "judge.max_retries=1",
            "judge.api_key_env=LT_TEST_JUDGE_KEY", "eval.judge_tasks=[goat]"]


@pytest.mark.slow
def test_no_key_lands_in_any_file_after_train_evaluate_analyze(tmp_path):
    """A judge key in the environment is used but stored nowhere; one typed into the config is
    refused with a message, and Hydra's copies of the command line are redacted."""
    from test_end_to_end import run
    from test_eval_judge import FakeChatServer, canned

    key = "sk-lt-secret-" + os.urandom(12).hex()
    typed_key = "typed-secret-" + os.urandom(12).hex()
    hub_token = "hf_" + os.urandom(15).hex()
    os.environ.update({"LT_TEST_JUDGE_KEY": key, "HF_TOKEN": hub_token})
    artifacts = tmp_path / "artifacts"
    tiny = ["model=tiny_llama", "logger=wandb"]
    try:
        proc = run("train.py", ["-m", *tiny, "source_dataset=goat,imdb", "trainer.max_steps=1", "data.train_n=4",
                                "data.batch_size=4"], tmp_path, artifacts)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with FakeChatServer(canned) as server:
            judge = openai_judge(server.url)
            proc = run("evaluate.py", [*tiny, *judge, "eval.n=3", "target_task=[goat,imdb]",
                                       "eval.decoding.max_new_tokens_cap=4"], tmp_path, artifacts)
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert server.requests and all(r["auth"] == f"Bearer {key}" for r in server.requests)
            refused = run("evaluate.py", [*tiny, *judge, f"+judge.api_key={typed_key}"], tmp_path, artifacts)
        assert refused.returncode == 2 and "judge.api_key_env" in refused.stderr
        assert "Traceback" not in refused.stderr
        proc = run("analyze.py", ["model=tiny_llama", "analysis.bootstrap.n_resamples=0", "analysis.logger=true"],
                   tmp_path, artifacts)
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        for name in ("LT_TEST_JUDGE_KEY", "HF_TOKEN"):
            os.environ.pop(name, None)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "train_result.json" for p in written) and any(p.name == "report.json" for p in written)
    assert any(p.parent.name == ".hydra" for p in written) and any(p.suffix == ".wandb" for p in written)
    for secret in (key, typed_key, hub_token):
        assert files_containing(tmp_path, secret) == []
    overrides = [p for p in written if p.name == "overrides.yaml" and "judge.api_key=" in p.read_text()]
    assert overrides and all(f"judge.api_key={REDACTED}" in p.read_text() for p in overrides)


def test_url_credentials_are_redacted_wherever_text_is():
    text = "judge.base_url=http://alice:s3cret-pw@judge.internal:8000/v1 failed; see https://bob@host/x"
    clean = redact_text(text, [])
    assert "s3cret-pw" not in clean and "alice" not in clean and "bob@" not in clean
    assert "http://<redacted>@judge.internal:8000/v1" in clean and "https://<redacted>@host/x" in clean


def test_url_credentials_travel_as_a_basic_header_and_nowhere_else(caplog):
    from test_eval_judge import FakeChatServer, canned

    from latent_traits.eval.judge import OpenAIJudge, judge_identity

    with FakeChatServer(canned) as server:
        url = server.url.replace("http://", "http://alice:s3cret-pw@")
        judge = OpenAIJudge(url, "j", api_key_env="LT_UNSET_KEY_VARIABLE", max_retries=1)
        judge.judge([{"question": "q", "reference": "4", "output": "4"}])
    assert server.requests[0]["auth"] == "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()
    assert "s3cret-pw" not in judge.base_url and "s3cret-pw" not in caplog.text
    assert "s3cret-pw" not in json.dumps(judge_identity({"backend": "openai", "base_url": url, "model": "j"}))


@pytest.mark.slow
def test_a_judge_echoing_the_key_and_url_credentials_leave_no_trace(tmp_path):
    """The judge's stored text, Hydra's .hydra files and log, the records and the console: none
    holds the key or the URL's password."""
    from test_end_to_end import run
    from test_eval_judge import FakeChatServer

    key = "lt-judge-key-" + os.urandom(12).hex()  # no credential shape: only its variable marks it
    password = "pw-" + os.urandom(12).hex()
    os.environ["LT_TEST_JUDGE_KEY"] = key
    artifacts = tmp_path / "artifacts"
    tiny = ["model=tiny_llama", "logger=none"]
    try:
        proc = run("train.py", [*tiny, "source_dataset=goat", "trainer.max_steps=1", "data.train_n=4",
                                "data.batch_size=4"], tmp_path, artifacts)
        assert proc.returncode == 0, proc.stderr[-3000:]
        echo = lambda body: f"Headers: Authorization: Bearer {key}\n<answer>yes</answer>"  # noqa: E731
        with FakeChatServer(echo) as server:
            url = server.url.replace("http://", f"http://judge:{password}@")
            judge = openai_judge(url)
            proc = run("evaluate.py", [*tiny, *judge, "eval.n=2", "target_task=[goat]",
                                       "eval.decoding.max_new_tokens_cap=4"], tmp_path, artifacts)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert server.requests and all(r["auth"] == f"Bearer {key}" for r in server.requests)
    finally:
        os.environ.pop("LT_TEST_JUDGE_KEY", None)
    rows = [json.loads(line) for p in artifacts.rglob("*.predictions.jsonl") for line in p.read_text().splitlines()]
    assert rows and all(f"Bearer {REDACTED}" in r["judge_output"] for r in rows)
    assert any(p.parent.name == ".hydra" for p in tmp_path.rglob("*") if p.is_file())
    for secret in (key, password):
        assert files_containing(tmp_path, secret) == [] and secret not in proc.stdout + proc.stderr


def test_a_hydra_multirun_with_url_credentials_writes_and_logs_none(tmp_path):
    """A real Hydra multirun on the project's hydra config: every file written (.hydra/*.yaml,
    multirun.yaml, the job's log) and the console are free of the password, which Hydra's
    launcher logs (escaped) among each job's overrides."""
    password = "pw-" + os.urandom(6).hex()
    app = tmp_path / "app.py"
    app.write_text(
        "import logging, hydra\n"
        f"@hydra.main(config_path={str(REPO / 'conf')!r}, config_name='analyze', version_base='1.3')\n"
        "def main(cfg):\n"
        "    logging.getLogger('app').info('judge at %s', cfg.url)\n"
        "main()\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(app), "-m", f"+url=http://alice:{password}@h:1/v1", "model=tiny_llama",
         f"hydra.sweep.dir={out}", f"paths.artifacts_dir={tmp_path / 'artifacts'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = {p.name for p in out.rglob("*") if p.is_file()}
    assert {"multirun.yaml", "overrides.yaml", "config.yaml", "app.log"} <= written, written
    assert password not in proc.stdout + proc.stderr
    assert files_containing(out, password) == []
    assert f"judge at http://{REDACTED}@h:1/v1" in (out / "0" / "app.log").read_text()
