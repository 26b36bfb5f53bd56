"""LLM judge, following the study's protocol.

The judge sees the question, the reference answer and the model's output; it reasons inside
<thinking> tags and gives its verdict inside <answer> tags. A verdict is yes/no, correct/
incorrect, true/false or 1/0 (any case, surrounding whitespace, quotes or a final period
tolerated); anything else, or no <answer> tag at all, is an INVALID verdict. Invalid verdicts are
counted (``n_invalid_verdicts``) and dropped from numerator and denominator: ``judge_accuracy``
is the share of correct verdicts among the valid ones.

Backends (conf/judge/): ``hf``, any local Hugging Face causal LM (loaded once, greedy decoding,
its chat template when it has one); ``openai``, any OpenAI-compatible chat-completions endpoint
(``base_url``, ``model``; the API key is read from the environment variable named by
``api_key_env``, never from the config, and never written anywhere).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from latent_traits.data.catalog import conf_dir
from latent_traits.errors import LatentTraitsError
from latent_traits.eval.cells import longest_first
from latent_traits.eval.decoding import Batching, generate
from latent_traits.model.factory import load_tokenizer_and_model
from latent_traits.redact import redact_text, secret_values, without_url_credentials

log = logging.getLogger(__name__)
PROMPT_VERSION = "1"
JUDGE_BACKENDS = ("none", "hf", "openai")
MAX_STORED_JUDGE_CHARS = 4000

SYSTEM_PROMPT = (
    "You are a strict grader. You compare a model's output with the reference answer to a question "
    "and decide whether the output's final answer is correct."
)
USER_TEMPLATE = """Question:
{question}

Reference answer:
{reference}

Model output:
{output}

Is the model output's final answer correct, that is, does it agree with the reference answer? \
Think step by step inside <thinking></thinking> tags, then give your verdict inside \
<answer></answer> tags as exactly one word: yes or no."""

ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.IGNORECASE | re.DOTALL)
VERDICTS = {"yes": True, "correct": True, "true": True, "1": True,
            "no": False, "incorrect": False, "false": False, "0": False}


def parse_verdict(text: str | None) -> bool | None:
    """True / False from the judge's last <answer> tag; None for an invalid verdict."""
    if not text:
        return None
    found = ANSWER_TAG.findall(text)
    if not found:
        return None
    answer = found[-1].strip().strip("\"'`*").strip().rstrip(".!").strip().lower()
    return VERDICTS.get(answer)


def judge_messages(question: str, reference: str, output: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(question=question, reference=reference, output=output)}]


def judge_metrics(verdicts: Sequence[bool | None]) -> dict[str, Any]:
    valid = [v for v in verdicts if v is not None]
    return {
        "judge_accuracy": sum(valid) / len(valid) if valid else None,
        "judge_n_valid": len(valid),
        "n_invalid_verdicts": len(verdicts) - len(valid),
    }


class Judge:
    """A judge backend: `complete` turns chat messages into the judge's raw texts."""

    def complete(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        raise NotImplementedError

    secret_env_names: tuple[str, ...] = ()  # variables whose values must never be stored

    def judge(self, items: Sequence[Mapping[str, str]], desc: str = "judge") -> list[dict[str, Any]]:
        """items: {question, reference, output}; returns per item {judge_verdict, judge_output}. The
        stored text is redacted: a judge can echo what it was sent, a key in a header included."""
        texts = self.complete([judge_messages(i["question"], i["reference"], i["output"]) for i in items])
        secrets = secret_values(self.secret_env_names)
        return [{"judge_verdict": parse_verdict(t),
                 "judge_output": redact_text((t or "")[:MAX_STORED_JUDGE_CHARS], secrets)}
                for t in texts]


class HFJudge(Judge):
    """A local Hugging Face causal LM, loaded once, decoding greedily in batches."""

    def __init__(self, model_cfg: Mapping[str, Any], cache_dir: str, max_new_tokens: int = 512,
                 batch_size: int = 8, max_input_tokens: int = 2048, tokenizer=None, model=None):
        self.model_cfg = dict(model_cfg)
        self.max_new_tokens, self.batch_size, self.max_input_tokens = max_new_tokens, batch_size, max_input_tokens
        if model is None:
            tokenizer, model = load_tokenizer_and_model(self.model_cfg, cache_dir)
            model.eval()
        tokenizer.padding_side = "left"
        self.tokenizer, self.model = tokenizer, model

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, Mapping) else list(ids)
        else:
            text = "\n\n".join(m["content"] for m in messages) + "\n\n<thinking>"
            ids = self.tokenizer(text)["input_ids"]
        return ids[-self.max_input_tokens:]

    def complete(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        prompts = [self.encode(m) for m in conversations]
        order = longest_first([len(p) for p in prompts])
        with tqdm(total=len(prompts), desc="judge", unit="row", leave=False) as bar:
            outputs = generate(self.model, self.tokenizer, [prompts[i] for i in order],
                               max_new_tokens=self.max_new_tokens, stop=["</answer>"],
                               batching=Batching(self.batch_size), on_row_done=bar.update)
        texts: list[str] = [""] * len(prompts)
        for i, text in zip(order, outputs, strict=True):
            # the stop string is cut off: put the closing tag back where an answer was opened
            texts[i] = text + "</answer>" if "<answer>" in text.lower() else text
        return texts


class OpenAIJudge(Judge):
    """An OpenAI-compatible /chat/completions endpoint (OpenAI, vLLM's server, ...), temperature 0."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY",
                 max_tokens: int = 512, timeout_s: float = 120.0, max_retries: int = 3, concurrency: int = 4):
        if not base_url or not model:
            raise LatentTraitsError("judge=openai needs judge.base_url=<http://host:port/v1> and judge.model=<name>")
        # credentials in the URL travel as a Basic header, never in a message, log line or record
        parts = urllib.parse.urlsplit(base_url.rstrip("/"))
        self.basic_auth = None
        if parts.username or parts.password:
            user_pass = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
            self.basic_auth = "Basic " + base64.b64encode(user_pass.encode()).decode()
            parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
        self.base_url, self.model, self.api_key_env = urllib.parse.urlunsplit(parts), model, api_key_env
        self.secret_env_names = (api_key_env,) if api_key_env else ()
        self.max_tokens, self.timeout_s = max_tokens, timeout_s
        self.max_retries, self.concurrency = max(1, max_retries), max(1, concurrency)
        if api_key_env and not os.environ.get(api_key_env):
            log.warning("judge: environment variable %s is not set; calling %s without an API key",
                        api_key_env, self.base_url)

    def request(self, messages: list[dict[str, str]]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0.0,
                           "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif self.basic_auth:
            headers["Authorization"] = self.basic_auth
        error: Exception | None = None
        for attempt in range(self.max_retries):
            try:
                req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers)
                with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                    payload = json.loads(response.read())
                return payload["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as err:
                error = err
                if err.code in (400, 401, 403, 404):  # will not get better by retrying
                    break
            except (urllib.error.URLError, OSError, KeyError, IndexError, ValueError) as err:
                error = err
            time.sleep(min(2.0**attempt * 0.5, 10.0))
        raise LatentTraitsError(f"judge endpoint {self.base_url} (model {self.model!r}) failed: "
                                f"{redact_text(str(error), secret_values(self.secret_env_names))}")

    def complete(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(tqdm(pool.map(self.request, conversations), total=len(conversations),
                             desc="judge", unit="request", leave=False))


def build_judge(judge_cfg: Mapping[str, Any] | None, cache_dir: str) -> Judge | None:
    """The judge of conf/judge/<backend>.yaml, or None for judge=none."""
    cfg = dict(judge_cfg or {})
    backend = cfg.pop("backend", "none")
    if backend not in JUDGE_BACKENDS:
        raise LatentTraitsError(f"judge.backend={backend!r} is not one of {JUDGE_BACKENDS}")
    cfg.pop("primary", None)
    if backend == "none":
        return None
    if backend == "hf":
        return HFJudge(cfg.pop("model"), cache_dir, **cfg)
    return OpenAIJudge(**cfg)


def check_judge_ready(judge_cfg: Mapping[str, Any] | None) -> None:
    """Refuse, before anything is decoded or converted, a judge that cannot run: judge=openai whose
    key variable is unset, judge=hf naming a model that does not exist."""
    cfg = dict(judge_cfg or {})
    backend = cfg.get("backend", "none")
    if backend == "openai":
        env = cfg.get("api_key_env")
        if env and not os.environ.get(env):
            raise LatentTraitsError(
                f"judge=openai: the environment variable {env} (judge.api_key_env) is not set, so every cell "
                f"would be decoded and then fail at the judge {cfg.get('base_url')}; export {env}=<key>, or set "
                "judge.api_key_env=null for an endpoint that needs no key (e.g. a local vLLM server)")
    elif backend == "hf":
        check_model_exists(dict(cfg.get("model") or {}), "judge.model")


def check_model_exists(model: dict[str, Any], key: str) -> None:
    """A model config names a model that is there: an offline GGUF model must be one of conf/model/
    (its name keys the converted copy in the cache, so a misspelt name would convert another copy),
    a local one a folder."""
    name, source = model.get("name"), model.get("source")
    if source == "offline_gguf":
        known = sorted(p.stem for p in (conf_dir() / "model").glob("*.yaml"))
        if name not in known:
            raise LatentTraitsError(f"{key}.name={name}: no such model; the models are {', '.join(known)} "
                                    f"(conf/model/), e.g. {key}.name=smollm2_135m (a model of your own: add "
                                    f"conf/model/{name}.yaml)")
    elif source == "local" and not (Path(str(model.get("path"))) / "config.json").is_file():
        raise LatentTraitsError(f"{key}.path={model.get('path')}: no model folder there (no config.json); "
                                f"point {key}.path at a saved Hugging Face model")


def judge_identity(judge_cfg: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What identifies a judge's verdicts, from its config alone (no model load, no key)."""
    cfg = dict(judge_cfg or {})
    backend = cfg.get("backend", "none")
    if backend == "none":
        return None
    if backend == "hf":
        model = dict(cfg.get("model") or {})
        return {"backend": "hf", "model": {k: model.get(k) for k in ("name", "source", "hub_id", "path", "dtype")},
                "max_new_tokens": cfg.get("max_new_tokens", 512), "prompt_version": PROMPT_VERSION}
    return {"backend": "openai", "base_url": without_url_credentials(str(cfg.get("base_url", "")).rstrip("/")),
            "model": cfg.get("model"),
            "max_tokens": cfg.get("max_tokens", 512), "prompt_version": PROMPT_VERSION}
