"""The LLM judge: verdict parsing, invalid verdicts dropped, the HF and OpenAI-compatible backends."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import compose_config
from omegaconf import OmegaConf

from latent_traits.errors import LatentTraitsError
from latent_traits.eval.judge import (
    HFJudge,
    OpenAIJudge,
    build_judge,
    judge_identity,
    judge_metrics,
    parse_verdict,
)
from latent_traits.eval.runner import evaluate_all

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("text", "verdict"), [
    ("<thinking>18 = 18</thinking><answer>yes</answer>", True),
    ("<thinking>no match</thinking><answer>no</answer>", False),
    ("<answer>  YES \n</answer>", True),
    ("<ANSWER>Correct</ANSWER>", True),
    ("<answer>incorrect</answer>", False),
    ("<answer>1</answer>", True),
    ("<answer>0</answer>", False),
    ("<answer>True.</answer>", True),
    ("<answer>'no'</answer>", False),
    ("<answer>**yes**</answer>", True),
    ("<thinking>it says <answer>no</answer> first</thinking><answer>yes</answer>", True),  # the last counts
    ("<answer>yes", True),                       # cut off before the closing tag
    ("<answer>maybe</answer>", None),
    ("<answer>yes and no</answer>", None),
    ("<answer></answer>", None),
    ("yes", None),                               # no answer tag: invalid
    ("<thinking>yes</thinking>", None),
    ("", None),
    (None, None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) is verdict


def test_invalid_verdicts_are_dropped_from_numerator_and_denominator():
    assert judge_metrics([True, False, None, True, None]) == {
        "judge_accuracy": 2 / 3, "judge_n_valid": 3, "n_invalid_verdicts": 2}
    assert judge_metrics([None, None]) == {"judge_accuracy": None, "judge_n_valid": 0, "n_invalid_verdicts": 2}
    assert judge_metrics([])["judge_accuracy"] is None


def test_hf_judge_on_the_tiny_model(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    judge = HFJudge({"name": "tiny_llama", "source": "tiny_random"}, cache_dir="", max_new_tokens=6,
                    batch_size=2, max_input_tokens=128, tokenizer=tokenizer, model=model)
    items = [{"question": f"What is {i} + {i}?", "reference": str(2 * i), "output": f"#### {2 * i}"} for i in range(3)]
    results = judge.judge(items)
    assert len(results) == 3 and all(set(r) == {"judge_verdict", "judge_output"} for r in results)
    # a random model's verdicts are garbage: whatever it said, unparseable ones are counted and dropped
    verdicts = [r["judge_verdict"] for r in results]
    assert verdicts == [parse_verdict(r["judge_output"]) for r in results]
    metrics = judge_metrics(verdicts)
    assert metrics["n_invalid_verdicts"] == sum(v is None for v in verdicts)
    assert metrics["judge_n_valid"] + metrics["n_invalid_verdicts"] == 3


class FakeChatServer:
    """A local OpenAI-compatible endpoint: canned chat completions, requests recorded."""

    def __init__(self, replies):
        self.replies, self.requests = replies, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if len(owner.requests) > 50:  # bounded: a runaway client gets errors, not answers
                    self.send_response(429)
                    self.end_headers()
                    return
                content = owner.replies(body)
                payload = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": content}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def canned(body) -> str:
    """yes when the output repeats the reference, an invalid verdict for 'unsure' outputs, else no."""
    prompt = body["messages"][-1]["content"]
    reference = prompt.split("Reference answer:\n")[1].split("\n\nModel output:")[0]
    output = prompt.split("Model output:\n")[1].split("\n\nIs the model")[0]
    if "unsure" in output:
        return "<thinking>hmm</thinking><answer>perhaps</answer>"
    return f"<thinking>compare</thinking><answer>{'Yes' if reference in output else 'no'}</answer>"


def test_openai_judge_against_a_local_server(monkeypatch):
    monkeypatch.setenv("LT_TEST_JUDGE_KEY", "sk-test-secret")
    items = [{"question": "2+2?", "reference": "4", "output": "It is 4"},
             {"question": "3+3?", "reference": "6", "output": "It is 7"},
             {"question": "5+5?", "reference": "10", "output": "unsure"}]
    with FakeChatServer(canned) as server:
        judge = build_judge({"backend": "openai", "base_url": server.url, "model": "judge-model",
                             "api_key_env": "LT_TEST_JUDGE_KEY", "max_tokens": 64, "timeout_s": 10,
                             "max_retries": 1, "concurrency": 2, "primary": False}, cache_dir="")
        assert isinstance(judge, OpenAIJudge)
        results = judge.judge(items)
    assert [r["judge_verdict"] for r in results] == [True, False, None]
    assert len(server.requests) == 3
    assert all(r["path"] == "/v1/chat/completions" and r["auth"] == "Bearer sk-test-secret" for r in server.requests)
    body = next(r["body"] for r in server.requests if "2+2?" in r["body"]["messages"][-1]["content"])
    assert body["model"] == "judge-model" and body["temperature"] == 0.0 and body["max_tokens"] == 64
    user = body["messages"][-1]["content"]
    assert "It is 4" in user and "<thinking>" in user and "<answer>" in user
    assert judge_metrics([r["judge_verdict"] for r in results])["judge_accuracy"] == 0.5


def test_openai_judge_failure_is_clear():
    judge = OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="m", api_key_env=None, timeout_s=2, max_retries=1)
    with pytest.raises(LatentTraitsError, match="judge endpoint"):
        judge.judge([{"question": "q", "reference": "r", "output": "o"}])


def test_judge_configs_and_identity():
    assert build_judge({"backend": "none"}, cache_dir="") is None
    with pytest.raises(LatentTraitsError, match="backend"):
        build_judge({"backend": "gpt"}, cache_dir="")
    identity = judge_identity({"backend": "openai", "base_url": "http://h/v1/", "model": "m",
                               "api_key_env": "OPENAI_API_KEY"})
    assert identity["base_url"] == "http://h/v1" and "api_key_env" not in identity
    assert judge_identity({"backend": "none"}) is None


# -- the judge inside an evaluation -----------------------------------------------------------

EVAL = ["model=tiny_llama", "target_task=[goat,imdb]", "eval.n=4", "eval.decoding.max_new_tokens_cap=4",
        "+eval.allow_base_only=true"]


def records(paths) -> dict[str, dict]:
    return {json.loads(p.read_text())["task"]["name"]: json.loads(p.read_text()) for p in paths}


def test_evaluation_with_the_openai_judge(tmp_path, monkeypatch):
    monkeypatch.setenv("LT_TEST_JUDGE_KEY", "sk-never-in-records")
    with FakeChatServer(canned) as server:
        cfg = compose_config("evaluate", [*EVAL, "judge=openai", f"judge.base_url={server.url}", "judge.model=j",
                                          "judge.api_key_env=LT_TEST_JUDGE_KEY", "judge.max_retries=1",
                                          "eval.judge_tasks=[goat]"], tmp_path)
        written = evaluate_all(cfg)
    assert len(server.requests) == 4  # goat only: imdb is not in judge_tasks
    by_task = records(written)
    goat, imdb = by_task["goat"], by_task["imdb"]
    assert goat["judge"]["backend"] == "openai" and goat["n_invalid_verdicts"] == 0
    assert goat["metrics"]["judge_n_valid"] == 4 and goat["primary_metric"] == "flexible_extract"
    assert "judge" not in imdb and "judge_accuracy" not in imdb["metrics"]
    rows = [json.loads(line) for line in
            (tmp_path / "eval/tiny_llama/base/goat.predictions.jsonl").read_text().splitlines()]
    assert all(r["judge_verdict"] in (True, False) and "<answer>" in r["judge_output"] for r in rows)
    for path in (tmp_path / "eval").rglob("*"):
        if path.is_file():
            assert "sk-never-in-records" not in path.read_text()


def test_evaluation_with_the_hf_judge_counts_invalid_verdicts(tmp_path, tiny_model_cfg):
    cfg = compose_config("evaluate", [*EVAL, "target_task=[goat]", "judge=hf", "judge.max_new_tokens=5",
                                      "judge.primary=true", "judge.max_input_tokens=96"], tmp_path)
    OmegaConf.set_struct(cfg, False)
    cfg.judge.model = tiny_model_cfg  # a random model: its verdicts are garbage
    OmegaConf.set_struct(cfg, True)
    (path,) = evaluate_all(cfg)
    record = json.loads(path.read_text())
    rows = [json.loads(line) for line in path.with_name("goat.predictions.jsonl").read_text().splitlines()]
    verdicts = [r["judge_verdict"] for r in rows]
    assert verdicts == [parse_verdict(r["judge_output"]) for r in rows]
    assert record["n_invalid_verdicts"] == sum(v is None for v in verdicts) == record["metrics"]["n_invalid_verdicts"]
    assert record["metrics"]["judge_n_valid"] == 4 - record["n_invalid_verdicts"]
    assert record["primary_metric"] == "judge_accuracy" and record["judge"]["model"]["name"] == "tiny_llama"
