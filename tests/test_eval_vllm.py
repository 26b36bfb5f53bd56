"""The vLLM backend (eval.backend=vllm). vLLM and a GPU are missing here, so: the request building as
pure functions, the clear startup error, and the whole backend run against a stand-in `vllm` module
whose engine decodes with the tiny HF model (guided choice as constrained choice): records and
predictions must equal the HF backend's. The real backend runs only in the `gpu` test."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch
from conftest import compose_config
from eval_helpers import make_adapter, read_cells
from omegaconf import OmegaConf

from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError
from latent_traits.eval import runner, vllm_backend
from latent_traits.eval.runner import evaluate_all
from latent_traits.eval.vllm_backend import (
    backend_name,
    check_vllm_backend,
    engine_kwargs,
    lora_ids,
    max_lora_rank,
    missing_requirements,
    rows_from_texts,
    sampling_kwargs,
    to_sampling_params,
)

pytestmark = pytest.mark.usefixtures("one_thread")
CONF = "conf/tasks"
EVAL = ["model=tiny_llama", "target_task=[imdb,goat]", "eval.n=4", "eval.decoding.max_new_tokens_cap=6"]
HAS_VLLM = importlib.util.find_spec("vllm") is not None


def spec(name: str) -> TaskSpec:
    return TaskSpec.from_config(OmegaConf.load(f"{CONF}/{name}.yaml"))


def test_missing_requirements_name_the_fix():
    missing = missing_requirements(find_spec=lambda name: None, cuda_available=False)
    assert len(missing) == 2 and ".[vllm]" in missing[0] and "CUDA" in missing[1]
    assert missing_requirements(find_spec=lambda name: object(), cuda_available=True) == []
    with pytest.raises(LatentTraitsError, match=r"cannot run here: the vllm package.*eval.backend=hf"):
        check_vllm_backend({}, missing)
    with pytest.raises(LatentTraitsError, match="classification=constrained"):
        check_vllm_backend({"classification": "loglik"}, missing=[])
    with pytest.raises(LatentTraitsError, match="is not one of"):
        backend_name({"backend": "tgi"})
    assert backend_name({}) == "hf"


@pytest.mark.skipif(HAS_VLLM and torch.cuda.is_available(), reason="vLLM and a GPU are here: no error to see")
def test_vllm_backend_fails_at_startup_before_loading_anything(tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("data loaded before the backend was checked")

    monkeypatch.setattr(runner, "load_examples", no_loading)
    monkeypatch.setattr(runner, "discover_adapters", no_loading)
    cfg = compose_config("evaluate", [*EVAL, "eval.backend=vllm"], tmp_path)
    with pytest.raises(LatentTraitsError, match=r"eval.backend=vllm cannot run here") as error:
        evaluate_all(cfg)
    assert (".[vllm]" in str(error.value)) == (not HAS_VLLM) and "eval.backend=hf" in str(error.value)
    assert not (tmp_path / "eval").exists()


def test_lora_ids_ranks_and_engine_arguments():
    assert lora_ids(["imdb/lora_r8_s0", "goat/lora_r8_s0"]) == {"imdb/lora_r8_s0": 1, "goat/lora_r8_s0": 2}
    with pytest.raises(LatentTraitsError, match="duplicate"):
        lora_ids(["a", "a"])
    assert [max_lora_rank(r) for r in ([4], [4, 8], [9], [64], [100])] == [8, 8, 16, 64, 128]
    with pytest.raises(LatentTraitsError, match="exceeds"):
        max_lora_rank([1024])
    kwargs = engine_kwargs("/m", "bfloat16", [4, 16, 8], {"max_loras": 2, "gpu_memory_utilization": 0.5}, 3)
    assert kwargs["enable_lora"] and kwargs["max_lora_rank"] == 16 and kwargs["max_loras"] == 2
    assert kwargs["model"] == kwargs["tokenizer"] == "/m" and kwargs["dtype"] == "bfloat16" and kwargs["seed"] == 3
    assert engine_kwargs("/m", "float32", [], {}, 0)["enable_lora"] is False  # base model alone


def test_sampling_kwargs_per_task_and_mode():
    imdb, gsm8k = spec("imdb"), spec("gsm8k")
    assert sampling_kwargs(imdb, {}, 0, [1, 1]) == {"temperature": 0.0, "max_tokens": 2, "choice": ["0", "1"]}
    greedy = sampling_kwargs(gsm8k, {"max_new_tokens_cap": 96}, 5)
    assert greedy == {"max_tokens": 96, "stop": ["\n\n"], "skip_special_tokens": True, "temperature": 0.0,
                      "top_p": 1.0}
    assert sampling_kwargs(gsm8k, {}, 0)["max_tokens"] == gsm8k.max_new_tokens  # no cap: the task's own
    sampled = [sampling_kwargs(gsm8k, {"do_sample": True, "temperature": 0.7, "top_p": 0.95, "seed": 100}, i)
               for i in (0, 3)]
    assert [s["seed"] for s in sampled] == [100, 103] and sampled[0]["temperature"] == 0.7
    assert sampled[0]["top_p"] == 0.95


def fake_sampling_module(kind: str) -> types.SimpleNamespace:
    module = types.SimpleNamespace(SamplingParams=lambda **kw: ("params", kw))
    if kind == "structured":
        module.StructuredOutputsParams = lambda choice: ("structured", tuple(choice))
    elif kind == "guided":
        module.GuidedDecodingParams = lambda choice: ("guided", tuple(choice))
    return module


def test_guided_choice_in_current_and_older_vllm():
    kwargs = sampling_kwargs(spec("imdb"), {}, 0, [1, 1])
    _, new = to_sampling_params(kwargs, fake_sampling_module("structured"))
    assert new == {"temperature": 0.0, "max_tokens": 2, "structured_outputs": ("structured", ("0", "1"))}
    _, old = to_sampling_params(kwargs, fake_sampling_module("guided"))
    assert old["guided_decoding"] == ("guided", ("0", "1")) and "choice" not in old
    with pytest.raises(LatentTraitsError, match="guided choice"):
        to_sampling_params(kwargs, fake_sampling_module("none"))
    assert kwargs["choice"] == ["0", "1"]  # the caller's dict is left alone


def test_rows_from_texts(tiny_tokenizer_and_model):
    tokenizer, _ = tiny_tokenizer_and_model
    goat, imdb = spec("goat"), spec("imdb")
    examples = [{"id": "a", "input": "1 + 1", "target": "1 + 1 = 2", "answer": "2"}]
    rows = rows_from_texts(goat, examples, ["1 + 1 = 2\n\nmore"], tokenizer)
    assert rows[0]["raw_output"] == "1 + 1 = 2" and rows[0]["correct"] and rows[0]["parsed"] == "2"
    rows = rows_from_texts(imdb, [{"id": "b", "input": "good", "label": "1"}], ["1"], tokenizer)
    assert rows[0] | {"output_tokens": None} == {"id": "b", "reference": "1", "raw_output": "1", "parsed": "1",
                                                 "correct": True, "output_chars": 1, "output_tokens": None,
                                                 "label_scores": None}
    with pytest.raises(LatentTraitsError, match="not one of"):
        rows_from_texts(imdb, [{"id": "b", "input": "good", "label": "1"}], ["positive"], tokenizer)
    with pytest.raises(LatentTraitsError, match="1 outputs for 2 prompts"):
        rows_from_texts(imdb, [{"id": "b", "label": "1"}] * 2, ["1"], tokenizer)


def install_fake_vllm(monkeypatch, calls: list) -> None:
    """A stand-in `vllm` whose engine decodes with the tiny HF model and the LoRA at each request's
    path: guided choice as constrained choice, greedy generation with stop strings."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from latent_traits.eval.decoding import constrained_choice, generate, score_labels

    class LLM:
        def __init__(self, **kwargs):
            calls.append(("LLM", kwargs))
            self.tokenizer = AutoTokenizer.from_pretrained(kwargs["tokenizer"])
            self.base = AutoModelForCausalLM.from_pretrained(kwargs["model"], dtype=torch.float32).eval()

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            calls.append(("generate", prompts, params, lora_request))
            model = self.base if lora_request is None else PeftModel.from_pretrained(
                self.base, lora_request.lora_path).eval()
            texts = []
            for prompt, (_, p) in zip(prompts, params, strict=True):
                ids = prompt["prompt_token_ids"]
                if "structured_outputs" in p:
                    labels = list(p["structured_outputs"][1])
                    label_ids = [self.tokenizer(x, add_special_tokens=False)["input_ids"] for x in labels]
                    scores = score_labels(model, [ids], label_ids, self.tokenizer.pad_token_id,
                                          self.tokenizer.eos_token_id)
                    texts.append(labels[constrained_choice(label_ids, scores[0])])
                else:
                    texts.append(generate(model, self.tokenizer, [ids], p["max_tokens"], p["stop"])[0])
            if lora_request is not None:
                model.unload()  # the base model stays clean for the next request
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=t)]) for t in texts]

    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM
    vllm.sampling_params = fake_sampling_module("structured")
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, lora_id, path: types.SimpleNamespace(lora_name=name, lora_int_id=lora_id,
                                                                            lora_path=path)
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request),
                         ("vllm.sampling_params", vllm.sampling_params)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(vllm_backend, "missing_requirements", lambda: [])


def test_vllm_backend_writes_the_hf_backends_records(tmp_path, tiny_model_cfg, monkeypatch):
    make_adapter(tmp_path / "hf" / "adapters", tiny_model_cfg, "imdb")
    evaluate_all(compose_config("evaluate", EVAL, tmp_path / "hf"))
    hf = read_cells(tmp_path / "hf" / "eval")

    calls: list = []
    install_fake_vllm(monkeypatch, calls)
    make_adapter(tmp_path / "vllm" / "adapters", tiny_model_cfg, "imdb")
    evaluate_all(compose_config("evaluate", [*EVAL, "eval.backend=vllm"], tmp_path / "vllm"))
    got = read_cells(tmp_path / "vllm" / "eval")
    assert set(got) == set(hf) == {"base/imdb", "base/goat", "imdb/lora_r4_s0/imdb", "imdb/lora_r4_s0/goat"}
    for key, (record, rows) in got.items():
        hf_record, hf_rows = hf[key]
        assert record["decoding"].pop("backend") == "vllm" and record["settings_hash"] != hf_record["settings_hash"]
        for r in (record, hf_record):  # the settings and how the job was invoked differ by the backend
            for key_ in ("settings_hash", "eval_config", "rerun"):
                r.pop(key_, None)
        assert record == hf_record, key  # the same metrics, schema and provenance fields
        for row, hf_row in zip(rows, hf_rows, strict=True):
            assert row.pop("label_scores", None) is None
            hf_row.pop("label_scores", None)
            assert row == hf_row, key

    (_, engine), *generations = calls
    assert engine["enable_lora"] and engine["max_lora_rank"] == 8 and engine["dtype"] == "float32"
    assert len(generations) == 4 and all(len(c[1]) == 4 for c in generations)  # one request batch per cell
    requests = {c[3].lora_name if c[3] else "base": c[3] for c in generations}
    assert requests["base"] is None and requests["imdb/lora_r4_s0"].lora_int_id == 1
    assert requests["imdb/lora_r4_s0"].lora_path.endswith("tiny_llama/imdb/lora_r4_s0")


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_VLLM and torch.cuda.is_available()),
                    reason="needs vllm (pip install -e '.[vllm]') and a CUDA GPU")
def test_real_vllm_backend_on_the_tiny_model(tmp_path, tiny_model_cfg):
    # head size 64 (hidden 128, 2 heads): vLLM's attention kernels do not take the default tiny head size 16
    wide = {**tiny_model_cfg, "hidden_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1}
    make_adapter(tmp_path / "adapters", wide, "imdb")
    shape = ["model.hidden_size=128", "model.num_attention_heads=2", "model.num_key_value_heads=1"]
    evaluate_all(compose_config("evaluate", [*EVAL, *shape], tmp_path / "hf_run"))
    hf = read_cells(tmp_path / "hf_run" / "eval")
    evaluate_all(compose_config("evaluate", [*EVAL, *shape, "eval.backend=vllm"], tmp_path))
    got = read_cells(tmp_path / "eval")
    assert set(got) == set(hf)
    for key, (record, rows) in got.items():
        assert record["decoding"]["backend"] == "vllm" and record["status"] == "complete"
        if record["task"]["type"] == "classification":
            assert all(r["parsed"] in record["task"]["labels"] for r in rows)
        same = sum(r["raw_output"] == h["raw_output"] for r, h in zip(rows, hf[key][1], strict=True))
        assert same >= len(rows) // 2, f"{key}: vLLM and HF agree on {same} of {len(rows)} greedy outputs"


def test_until_end_of_text_gives_each_row_the_context_left_after_its_prompt(tiny_tokenizer_and_model):
    """The study's generation: no stop string, up to the context length (each vLLM request its own room)."""
    gsm8k = spec("gsm8k")
    study = {"until": "end_of_text", "context_length": 2048, "max_new_tokens_cap": 96}
    kwargs = [sampling_kwargs(gsm8k, study, i, prompt_length=n, model_context=4096) for i, n in enumerate((100, 300))]
    assert [(k["max_tokens"], k["stop"]) for k in kwargs] == [(1948, []), (1748, [])]
    assert sampling_kwargs(gsm8k, study, 0, prompt_length=100, model_context=1024)["max_tokens"] == 924
    with pytest.raises(LatentTraitsError, match=r"a prompt of 2048 tokens leaves no room within "
                                                r"eval.decoding.context_length=2048"):
        sampling_kwargs(gsm8k, study, 0, prompt_length=2048, model_context=4096)
    texts = ["4 + 4 = 8\n\nQuestion: more", "#### 8"]
    examples = [{"id": "a", "input": "q", "target": "#### 8"}] * 2
    rows = rows_from_texts(gsm8k, examples, texts, tiny_tokenizer_and_model[0], stop=[])
    assert [r["raw_output"] for r in rows] == texts  # nothing cut: only end-of-text ended them


def test_until_joins_the_cell_settings_only_when_not_the_default():
    """Cells decoded before eval.decoding.until existed keep their settings hash."""
    default = runner.decoding_settings(compose_config("evaluate", []), "imdb/lora_r8_s0", "gsm8k")
    paper = runner.decoding_settings(compose_config("evaluate", ["experiment=paper"]), "imdb/lora_r64_s0", "gsm8k")
    assert "until" not in default and "context_length" not in default
    assert (paper["until"], paper["context_length"], paper["do_sample"]) == ("end_of_text", 2048, True)
