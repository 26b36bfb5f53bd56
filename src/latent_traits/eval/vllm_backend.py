"""The vLLM evaluation backend (eval.backend=vllm; GPU only, `pip install -e '.[vllm]'`).

One ``vllm.LLM`` holds the base model with LoRA enabled; every adapter is a ``LoRARequest`` on the
requests of its cells, so vLLM keeps several adapters on the GPU and switches per request.
Classification uses vLLM's guided choice over the label strings (``StructuredOutputsParams(choice=)``
in current vLLM, ``GuidedDecodingParams(choice=)`` in older releases) at temperature 0, which is
greedy among the allowed continuations, as the HF backend's constrained choice. Generation is greedy,
or sampled with a seed per example, with the task's max_new_tokens and stop strings (or until
end-of-text, eval.decoding.until). Prompts are the same token ids the HF backend feeds
(``encode_prompt``); rows, metrics and records come from the
same code (``latent_traits.eval.cells``), so both backends write the same files. vLLM computes no
per-label log-probabilities here: classification rows carry ``label_scores: null``.

Everything that builds requests is a pure function (tested without vLLM); only ``VllmEngine``
touches vLLM itself.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latent_traits.config import to_plain
from latent_traits.data.prompts import encode_prompt
from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError
from latent_traits.eval.cells import (
    cell_metrics,
    classification_row,
    generation_room,
    generation_row,
    generation_stop,
)
from latent_traits.eval.decoding import cut_at_stop
from latent_traits.io import atomic_path, stable_hash
from latent_traits.model.factory import (
    load_tokenizer,
    load_tokenizer_and_model,
    model_location,
    resolve_dtype,
)

INSTALL_HINT = "pip install -e '.[vllm]' on a machine with an NVIDIA GPU and CUDA"
LORA_RANKS = (8, 16, 32, 64, 128, 256, 512)  # the max_lora_rank values vLLM accepts
TORCH_DTYPE_NAMES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def missing_requirements(find_spec=importlib.util.find_spec, cuda_available=None) -> list[str]:
    """What eval.backend=vllm lacks on this machine, each with its fix; empty when it can run."""
    missing = []
    if find_spec("vllm") is None:
        missing.append(f"the vllm package is not installed ({INSTALL_HINT})")
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        missing.append("no CUDA GPU is visible (torch.cuda.is_available() is False): vLLM runs on GPUs")
    return missing


def check_vllm_backend(decoding: dict[str, Any], missing: list[str] | None = None) -> None:
    """Fail at startup, before any data or model loads, naming what is missing and the fix."""
    mode = decoding.get("classification", "constrained")
    if mode != "constrained":
        raise LatentTraitsError(
            f"eval.backend=vllm decodes classification by guided choice: set "
            f"eval.decoding.classification=constrained (got {mode!r}), or use eval.backend=hf for {mode}")
    missing = missing_requirements() if missing is None else missing
    if missing:
        raise LatentTraitsError("eval.backend=vllm cannot run here: " + "; ".join(missing)
                                + ". Or evaluate with the default eval.backend=hf")


def lora_ids(adapter_ids: Sequence[str]) -> dict[str, int]:
    """vLLM's integer LoRA ids (unique, from 1) for the adapters, in the order given."""
    if len(set(adapter_ids)) != len(adapter_ids):
        raise LatentTraitsError(f"duplicate adapter ids: {sorted(adapter_ids)}")
    return {adapter_id: i for i, adapter_id in enumerate(adapter_ids, start=1)}


def adapter_rank(adapter_dir: str | Path) -> int:
    config = Path(adapter_dir) / "adapter_config.json"
    if not config.is_file():
        raise LatentTraitsError(f"{adapter_dir} holds no adapter_config.json: not a PEFT adapter directory")
    return int(json.loads(config.read_text())["r"])


def max_lora_rank(ranks: Sequence[int]) -> int:
    """The smallest max_lora_rank vLLM accepts that covers every adapter's rank."""
    highest = max(ranks, default=1)
    for allowed in LORA_RANKS:
        if allowed >= highest:
            return allowed
    raise LatentTraitsError(f"LoRA rank {highest} exceeds vLLM's largest max_lora_rank {LORA_RANKS[-1]}")


def engine_kwargs(model_dir: str, dtype: str, ranks: Sequence[int], vllm_cfg: dict[str, Any],
                  seed: int) -> dict[str, Any]:
    """Arguments of the one vllm.LLM: the base model with LoRA enabled for every adapter's rank."""
    return {
        "model": model_dir, "tokenizer": model_dir, "dtype": TORCH_DTYPE_NAMES.get(dtype, dtype), "seed": int(seed),
        "enable_lora": bool(ranks), "max_lora_rank": max_lora_rank(ranks),
        "max_loras": max(1, min(len(ranks), int(vllm_cfg.get("max_loras", 4)))),
        "gpu_memory_utilization": float(vllm_cfg.get("gpu_memory_utilization", 0.85)),
        "max_model_len": int(vllm_cfg.get("max_model_len", 4096)),
        "enforce_eager": bool(vllm_cfg.get("enforce_eager", False)),
    }


def sampling_kwargs(spec: TaskSpec, decoding: dict[str, Any], example_index: int,
                    label_lengths: Sequence[int] = (), prompt_length: int = 0,
                    model_context: int | None = None) -> dict[str, Any]:
    """SamplingParams arguments of one request (`choice` becomes the guided-choice constraint).
    Classification: greedy guided choice over the labels. Generation: greedy, or sampled with the
    cell's seed plus the example's index (a resumed cell draws the same samples); its length and
    stop strings as cells.generation_room and generation_stop say (each row its own room)."""
    if spec.is_classification:
        return {"temperature": 0.0, "max_tokens": max(label_lengths, default=8) + 1,
                "choice": list(spec.labels)}
    kwargs: dict[str, Any] = {"max_tokens": generation_room(spec, decoding, prompt_length, model_context),
                              "stop": generation_stop(spec, decoding), "skip_special_tokens": True}
    if decoding.get("do_sample"):
        seed = decoding.get("seed")
        kwargs.update(temperature=float(decoding.get("temperature", 1.0)), top_p=float(decoding.get("top_p", 1.0)),
                      seed=None if seed is None else int(seed) + example_index)
    else:
        kwargs.update(temperature=0.0, top_p=1.0)
    return kwargs


def to_sampling_params(kwargs: dict[str, Any], sampling_module: Any) -> Any:
    """A vllm SamplingParams from sampling_kwargs, with the guided choice in whichever form this
    vLLM release has (`sampling_module` is vllm.sampling_params, or a stand-in in tests)."""
    kwargs = dict(kwargs)
    choice = kwargs.pop("choice", None)
    if choice is not None:
        if hasattr(sampling_module, "StructuredOutputsParams"):
            kwargs["structured_outputs"] = sampling_module.StructuredOutputsParams(choice=list(choice))
        elif hasattr(sampling_module, "GuidedDecodingParams"):
            kwargs["guided_decoding"] = sampling_module.GuidedDecodingParams(choice=list(choice))
        else:
            raise LatentTraitsError("this vLLM has neither StructuredOutputsParams nor GuidedDecodingParams "
                                    f"for guided choice: {INSTALL_HINT} (a release from 0.6 on)")
    return sampling_module.SamplingParams(**kwargs)


def rows_from_texts(spec: TaskSpec, examples: list[dict], texts: list[str], tokenizer,
                    code: dict[str, Any] | None = None, stop: list[str] | None = None) -> list[dict[str, Any]]:
    """Prediction rows from vLLM's output texts, built by the same code as the HF backend's
    (`stop`: the stop strings the requests had; default the task's)."""
    if len(texts) != len(examples):
        raise LatentTraitsError(f"vLLM returned {len(texts)} outputs for {len(examples)} prompts of {spec.name}")
    if not spec.is_classification:
        stop = list(spec.stop) if stop is None else stop
        return [generation_row(spec, e, cut_at_stop(t, stop), tokenizer, code)
                for e, t in zip(examples, texts, strict=True)]
    rows = []
    for example, text in zip(examples, texts, strict=True):
        if text not in spec.labels:
            raise LatentTraitsError(f"vLLM's guided choice returned {text!r} on {spec.name} example "
                                    f"{example['id']}, not one of {list(spec.labels)}: check the vLLM release")
        rows.append(classification_row(example, text, len(tokenizer(text, add_special_tokens=False)["input_ids"]),
                                       None))
    return rows


def vllm_model_dir(model_cfg: dict[str, Any], cache_dir: str | Path) -> str:
    """A folder vLLM can load: the model's own, or the tiny random test model saved once."""
    if model_cfg["source"] != "tiny_random":
        return model_location(model_cfg, cache_dir)
    target = Path(cache_dir) / "models" / f"{model_cfg['name']}-{stable_hash(model_cfg, 8)}"
    if not (target / "config.json").is_file():
        tokenizer, model = load_tokenizer_and_model(model_cfg, cache_dir)
        with atomic_path(target) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    return str(target)


class VllmEngine:
    """One vllm.LLM for the base model; each adapter a LoRARequest on its cells' requests."""

    def __init__(self, model_cfg: dict[str, Any], cache_dir: str | Path, adapters: Sequence[Any],
                 vllm_cfg: dict[str, Any], seed: int):
        check_vllm_backend({})
        import vllm

        self.tokenizer = load_tokenizer(model_cfg, cache_dir)
        dtype = str(resolve_dtype(model_cfg.get("dtype"))).removeprefix("torch.")
        ranks = [adapter_rank(a.path) for a in adapters if a.path is not None]
        self.engine_settings = engine_kwargs(vllm_model_dir(model_cfg, cache_dir), dtype, ranks, vllm_cfg, seed)
        self.llm = vllm.LLM(**self.engine_settings)
        self.lora_ids = lora_ids([a.id for a in adapters if a.path is not None])

    def lora_request(self, adapter: Any) -> Any:
        if adapter.path is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(adapter.id, self.lora_ids[adapter.id], str(adapter.path))

    def run_cell(self, adapter: Any, spec: TaskSpec, examples: list[dict], decoding: dict[str, Any],
                 max_input_tokens: int | None, code: dict[str, Any] | None = None) -> tuple[list[dict], dict, str, int]:
        """Returns what cells.run_cell returns: (rows, metrics, primary metric, number invalid)."""
        from vllm import sampling_params as sampling_module

        prompts = [encode_prompt(spec, e["input"], self.tokenizer, max_input_tokens) for e in examples]
        label_lengths = [len(self.tokenizer(label, add_special_tokens=False)["input_ids"])
                         for label in spec.labels or ()]
        context = self.engine_settings["max_model_len"]
        params = [to_sampling_params(sampling_kwargs(spec, decoding, i, label_lengths, len(prompts[i]), context),
                                     sampling_module) for i in range(len(examples))]
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params,
                                    lora_request=self.lora_request(adapter), use_tqdm=False)
        rows = rows_from_texts(spec, examples, [o.outputs[0].text for o in outputs], self.tokenizer, code,
                               stop=generation_stop(spec, decoding))
        return (rows, *cell_metrics(spec, rows))


BACKENDS = ("hf", "vllm")


def backend_name(eval_cfg: Any) -> str:
    backend = str((eval_cfg or {}).get("backend", "hf"))
    if backend not in BACKENDS:
        raise LatentTraitsError(f"eval.backend={backend!r} is not one of {BACKENDS}")
    return backend


def decode_with_vllm(cfg: Any, state: dict[str, Any], adapter: Any, spec: TaskSpec, examples: list[dict],
                     settings: dict[str, Any]) -> tuple[list[dict], dict, str, int, float]:
    """The vLLM counterpart of the HF decoding in runner.evaluate_cell: (rows, metrics, primary,
    n_invalid, seconds); the engine is built on first need for every adapter of the job."""
    if "vllm" not in state:
        state["vllm"] = VllmEngine(to_plain(cfg.model), cfg.paths.cache_dir, state.get("adapters", []),
                                   to_plain(cfg.eval.get("vllm")) or {}, cfg.seed)
    started = time.perf_counter()
    out = state["vllm"].run_cell(adapter, spec, examples, settings["decoding"], cfg.data.max_input_tokens,
                                 settings.get("code"))
    return (*out, time.perf_counter() - started)
