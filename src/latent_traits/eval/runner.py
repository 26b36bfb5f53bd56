"""Fill the adapter x task matrix in one process: the base model stays resident, adapters switch in place."""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from latent_traits.config import check_against_model, model_record, model_settings, target_specs, to_plain
from latent_traits.contracts import TRAIN_RESULT
from latent_traits.data.load import load_examples
from latent_traits.data.spec import PromptFormat, TaskSpec
from latent_traits.errors import (
    ConfigError,
    CorruptArtifactError,
    LatentTraitsError,
    OutputWriteError,
)
from latent_traits.eval.cells import run_cell, run_cells
from latent_traits.eval.code import EXECUTION_MODES, SandboxSettings
from latent_traits.eval.failures import (
    CellsFailedError,
    adapter_problem,
    decoded_from_record,
    existing_record,
    record_failed_cell,
    retrain_hint,
    summary,
    unjudged_record,
)
from latent_traits.eval.judge import build_judge, check_judge_ready, judge_identity, judge_metrics
from latent_traits.eval.multi_lora import MixedModel, StackedAdapters, unstackable
from latent_traits.eval.records import (
    BASE_ADAPTER_ID,
    SCHEMA_VERSION,
    predictions_path,
    record_path,
)
from latent_traits.eval.vllm_backend import backend_name, check_vllm_backend, decode_with_vllm
from latent_traits.eval.wandb_log import EvalWandb, logger_kind
from latent_traits.io import (
    ensure_writable,
    provenance,
    read_json,
    stable_hash,
    write_json,
    write_jsonl,
)
from latent_traits.locks import exclusive_all
from latent_traits.model.factory import load_tokenizer_and_model, resolve_device
from latent_traits.model.transformers_shims import loaded_commit
from latent_traits.redact import redact
from latent_traits.rerun import CELL_SELECTION, cell_command, task_overrides

log = logging.getLogger(__name__)
TRAIN_COMMAND = "python train.py -m source_dataset=imdb,goat,gsm8k"


@dataclass
class Adapter:
    id: str
    path: Path | None
    train_result: dict[str, Any] | None
    problem: str | None = None  # its files are damaged: its cells are recorded as failed

    @property
    def is_base(self) -> bool:
        return self.path is None


BASE = Adapter(BASE_ADAPTER_ID, None, None)


class Cell(NamedTuple):
    """One (adapter or base) x task cell of the grid, with what evaluating it needs."""
    adapter: Adapter
    spec: TaskSpec
    examples: list[dict]
    data_prov: dict
    settings: dict[str, Any]  # cell_settings, with its "hash"
    finished: bool            # a record with these settings is already on disk
    unjudged: dict | None = None  # the failed record of a cell decoded before its judge failed


def discover_adapters(adapters_dir: str | Path, model_name: str, selection: Any = "all") -> list[Adapter]:
    """Finished adapters of this base model (a train_result.json with status complete). A damaged
    one (its train_result.json, config or weights) comes back with its `problem`, so that its
    cells are recorded as failed and the others still run."""
    root = Path(adapters_dir) / model_name
    found = []
    for result_path in sorted(root.glob(f"*/*/{TRAIN_RESULT}")):
        try:
            result = read_json(result_path, fix=retrain_hint(result_path.parent, None))
            if not isinstance(result, dict):
                raise CorruptArtifactError(f"{result_path} does not hold a JSON object; "
                                           f"{retrain_hint(result_path.parent, None)}")
        except CorruptArtifactError as err:
            found.append(Adapter(result_path.parent.relative_to(root).as_posix(), result_path.parent, None, str(err)))
            continue
        if result.get("status") != "complete":
            continue
        trained_on = result.get("model", {}).get("name")
        if trained_on != model_name:
            raise LatentTraitsError(
                f"adapter {result_path.parent} was trained on base model {trained_on!r}, not "
                f"{model_name!r}; evaluate it with model={trained_on}"
            )
        where = result_path.parent.relative_to(root).as_posix()
        problem = adapter_problem(result_path.parent, result)
        if result.get("adapter_id") != where:  # an edited or moved file: its id would lead elsewhere
            problem = (f"{result_path} names adapter {result.get('adapter_id')!r} but lies in {where!r}: the file "
                       "was edited or moved; move the folder back, or retrain it (python train.py ...)")
        found.append(Adapter(where, result_path.parent, result, problem))
    if selection not in (None, "all"):
        wanted = [selection] if isinstance(selection, str) else list(selection)  # one id, or a list
        unknown = sorted(set(wanted) - {a.id for a in found})
        if unknown:
            raise LatentTraitsError(f"eval.adapters: no finished adapters {unknown} under {root}; "
                                    f"trained: {[a.id for a in found]}")
        found = [a for a in found if a.id in wanted]
    return found


class ResidentModel:
    """One base model in memory; LoRA adapters are loaded into it and switched in place."""

    def __init__(self, base_model):
        self.base = base_model
        self.peft = None
        self.tainted = False  # a failed first adapter load may have changed the base model

    @contextlib.contextmanager
    def use(self, adapter: Adapter) -> Iterator[Any]:
        if adapter.is_base:
            if self.peft is None:
                yield self.base
            else:
                with self.peft.disable_adapter():
                    yield self.peft
            return
        name = self.load(adapter)
        self.peft.set_adapter(name)
        self.keep_only({name})
        self.peft.eval()
        yield self.peft

    def load(self, adapter: Adapter) -> str:
        """Load an adapter (once) beside those loaded; its peft name."""
        name = "adapter_" + stable_hash(adapter.id, 8)  # peft names cannot hold '/' or '.'
        first = self.peft is None
        try:
            if first:
                from peft import PeftModel

                self.peft = PeftModel.from_pretrained(self.base, str(adapter.path), adapter_name=name)
            elif name not in self.peft.peft_config:
                self.peft.load_adapter(str(adapter.path), adapter_name=name)
        except Exception as err:  # files that passed adapter_problem's checks and still fail
            if first:  # peft may have changed the base model's layers in place: reload it
                self.tainted = True
            elif name in self.peft.peft_config:  # never use a half-loaded adapter later
                self.peft.delete_adapter(name)
            raise CorruptArtifactError(f"adapter {adapter.id} could not be loaded from {adapter.path}: {err}; "
                                       f"{retrain_hint(adapter.path, adapter.train_result)}") from err
        return name

    @contextlib.contextmanager
    def use_mixed(self, adapters: list[Adapter]) -> Iterator[tuple[Any, list[str]]]:
        """The model with all these adapters loaded (no others), and each one's peft name for
        mixed adapter batches ("__base__": the base model's rows)."""
        names = ["__base__" if adapter.is_base else self.load(adapter) for adapter in adapters]
        loaded = [n for n in names if n != "__base__"]
        if not loaded:
            raise LatentTraitsError("mixed adapter batches need at least one adapter")
        self.peft.set_adapter(loaded[0])  # rows are routed by name; the active one is never deleted
        self.keep_only(set(loaded))
        self.peft.eval()
        why = unstackable(self.peft, loaded)
        if why is not None:  # peft's own per-adapter routing: slower, same cells
            log.info("Mixed adapter batches through peft's routing (not stacked: %s)", why)
            yield self.peft, names
            return
        with StackedAdapters(self.peft, loaded) as stacked:
            yield MixedModel(self.peft, stacked), names

    def keep_only(self, names: set[str]) -> None:
        """Unload every adapter but these (memory: one group's adapters at a time)."""
        if self.peft is None:
            return
        for other in [n for n in self.peft.peft_config if n not in names]:
            self.peft.delete_adapter(other)


def cell_seed(eval_seed: int, adapter_id: str, task: str) -> int:
    """The sampling seed of one cell, from the evaluation seed, the adapter id and the task: a rerun
    and a resumed run draw the same samples, whatever order the cells run in."""
    return int(stable_hash([int(eval_seed), adapter_id, task], 8), 16) % (2**31)


def decoding_settings(cfg: DictConfig, adapter_id: str, task: str) -> dict[str, Any]:
    decoding = {**to_plain(cfg.eval.decoding), "max_input_tokens": cfg.data.max_input_tokens}
    if decoding.get("until", "stop") == "stop":  # the default: cells made before the keys existed keep their hash
        decoding.pop("until", None)
        decoding.pop("context_length", None)
    if backend_name(cfg.eval) != "hf":  # another backend's predictions are other cells (hf's keep their hash)
        decoding["backend"] = backend_name(cfg.eval)
    if decoding.get("do_sample"):
        decoding["seed"] = cell_seed(cfg.seed, adapter_id, task)
    else:  # greedy: no seed, so greedy cells keep their settings hash
        decoding.pop("seed", None)
    return decoding


def code_settings(cfg: DictConfig, spec) -> dict[str, Any] | None:
    """How a code_match task is scored: never executed unless eval.code_execution=sandboxed."""
    if spec.scorer != "code_match":
        return None
    execution = str(cfg.eval.get("code_execution", "off"))
    if execution not in EXECUTION_MODES:
        raise LatentTraitsError(f"eval.code_execution={execution!r} is not one of {EXECUTION_MODES}")
    if execution == "off":
        return {"execution": "off"}
    sandbox = {"seed": int(cfg.seed), **to_plain(cfg.eval.get("code_sandbox") or {})}
    SandboxSettings.from_config(sandbox)  # unknown keys fail before any model loads
    return {"execution": execution, "sandbox": sandbox}


def judge_settings(cfg: DictConfig, spec) -> dict[str, Any] | None:
    """The judge that scores this task (eval.judge_tasks), or None; no secrets, only identities."""
    identity = judge_identity(to_plain(cfg.get("judge")))
    if identity is None or spec.name not in list(cfg.eval.get("judge_tasks") or []):
        return None
    return {**identity, "primary": bool(cfg.judge.get("primary", False))}


def cell_settings(cfg: DictConfig, adapter: Adapter, spec, data_prov: dict) -> dict[str, Any]:
    code = code_settings(cfg, spec)
    judge = judge_settings(cfg, spec)
    return {
        "model": model_settings(cfg.model),
        "adapter": {"id": adapter.id, "train_settings_hash": (adapter.train_result or {}).get("settings_hash")},
        "task": {**spec.to_record(), "max_new_tokens": spec.max_new_tokens, "stop": list(spec.stop),
                 "instruction": spec.instruction, "cue": spec.cue},
        "data": {k: data_prov[k] for k in ("source", "split", "n", "seed", "hash", "transforms")},
        "decoding": decoding_settings(cfg, adapter.id, spec.name),
        **({"code": code} if code else {}),
        **({"judge": judge} if judge else {}),
    }


def check_same_split(cfg: DictConfig, adapters: list[Adapter]) -> None:
    """Offline pools and single local files are split into train and test by a hash of each id and
    data.test_fraction: evaluating with another fraction than an adapter trained with would put some
    of its training examples into the test split. Refused, naming both settings."""
    source, fraction = cfg.data.source, float(cfg.data.test_fraction)
    for adapter in adapters:
        trained = ((adapter.train_result or {}).get("settings") or {}).get("data") or {}
        if trained.get("source") != source or source not in ("offline", "local") \
                or trained.get("test_fraction") is None or float(trained["test_fraction"]) == fraction:
            continue
        raise LatentTraitsError(
            f"adapter {adapter.id} was trained with data.test_fraction={trained['test_fraction']} "
            f"(data.source={source}); evaluating with data.test_fraction={fraction} would put some of its "
            f"training examples into the test split: evaluate with data.test_fraction={trained['test_fraction']}")


def warn_on_other_prompt_format(cfg: DictConfig, adapters: list[Adapter]) -> None:
    """An adapter evaluated with other prompts than it trained on (data.prompt) is a legitimate
    experiment, but rarely an intended one: said once per adapter."""
    evaluated = PromptFormat.from_config(to_plain(cfg.data.get("prompt")))
    for adapter in adapters:
        settings = (adapter.train_result or {}).get("settings")
        if settings is None:
            continue
        trained = PromptFormat.from_config((settings.get("data") or {}).get("prompt"))
        if trained != evaluated:
            log.warning("adapter %s trained with data.prompt=%s and is evaluated with data.prompt=%s: its prompts "
                        "are spelled otherwise than in training", adapter.id, asdict(trained), asdict(evaluated))


def is_finished(path: Path, settings_hash: str) -> bool:
    record = existing_record(path)
    return bool(record) and record.get("status") == "complete" and record.get("settings_hash") == settings_hash


def evaluate_all(cfg: DictConfig) -> list[Path]:
    """Evaluate the base model and every selected adapter on every target task; return record paths.
    A cell that fails (a damaged adapter, a decoding or judge error) is recorded as failed and the
    others go on; the job then ends with CellsFailedError listing them."""
    model_name = cfg.model.name
    if backend_name(cfg.eval) == "vllm":  # fail before any data or model loads
        check_vllm_backend(to_plain(cfg.eval.decoding))
    adapters = discover_adapters(cfg.paths.adapters_dir, model_name, cfg.eval.adapters)
    check_same_split(cfg, adapters)
    warn_on_other_prompt_format(cfg, adapters)
    if not adapters and not cfg.eval.get("allow_base_only", False):
        raise LatentTraitsError(
            f"no trained adapters for model {model_name!r} under {Path(cfg.paths.adapters_dir) / model_name}; "
            f"train some first, e.g. `{TRAIN_COMMAND}` (or evaluate the base model alone with "
            "+eval.allow_base_only=true)"
        )
    selected = target_specs(cfg)
    if any(judge_settings(cfg, spec) for spec, _ in selected):  # a missing key or model: before any decoding
        check_judge_ready(to_plain(cfg.judge))
    tasks = []
    for spec, entry in selected:
        examples, data_prov = load_examples(
            spec, split=entry.get("split", "test"), n=entry.get("n"), seed=cfg.seed,
            source=cfg.data.source, local_path=cfg.data.local_path, test_fraction=cfg.data.test_fraction,
            transforms=entry.get("transforms"),
        )
        tasks.append((spec, examples, data_prov))
    if not tasks:
        raise LatentTraitsError("no target tasks selected; e.g. 'target_task=[imdb,goat]'")

    grid = ([BASE] if cfg.eval.include_base else []) + adapters
    cells, n_pending = [], 0
    for adapter in grid:
        for spec, examples, data_prov in tasks:
            settings = cell_settings(cfg, adapter, spec, data_prov)
            settings["hash"] = stable_hash(settings)  # computed once; not part of what it hashes
            path = record_path(cfg.paths.eval_dir, model_name, adapter.id, spec.name)
            finished = is_finished(path, settings["hash"])
            unjudged = None if finished else unjudged_record(
                path, predictions_path(cfg.paths.eval_dir, model_name, adapter.id, spec.name), settings["hash"])
            if finished:
                log.info("Skipping %s x %s: finished with the same settings", adapter.id, spec.name)
            n_pending += not finished
            cells.append(Cell(adapter, spec, examples, data_prov, settings, finished, unjudged))
    log.info("%d of %d cells to evaluate (%d adapters incl. base x %d tasks)",
             n_pending, len(cells), len(grid), len(tasks))
    if n_pending:
        ensure_writable(Path(cfg.paths.eval_dir) / model_name)  # fail before the model loads
    tracker = eval_tracker(cfg)
    written: list[Path] = []
    # the model(s) and judge are loaded on first need; failed cells are listed in state["failed"]
    state: dict[str, Any] = {"adapters": [a for a in adapters if a.problem is None], "failed": []}
    ok = False
    try:
        for cell in cells:  # a damaged adapter: its pending cells fail without loading anything
            if cell.adapter.problem and not cell.finished:
                record_failed_cell(cfg, state, cell, "adapter", cell.adapter.problem)
        groups = cell_groups(cfg, [c for c in cells if not (c.adapter.problem and not c.finished)])
        deferred: list[list[Cell]] = []
        # groups another process is decoding are left for last, then waited for: never done twice
        for wait, todo in ((False, groups), (True, deferred)):
            for group in todo:
                with exclusive_all(pending_records(cfg, group), f"{group[0].spec.name} cells", wait) as held:
                    if not held:
                        deferred.append(group)
                        continue
                    written += evaluate_group(cfg, state, still_pending(cfg, group))
                for cell in group if tracker is not None else []:
                    path = record_path(cfg.paths.eval_dir, model_name, cell.adapter.id, cell.spec.name)
                    if (existing_record(path) or {}).get("status") == "complete":  # failed cells are not logged
                        tracker.log_cell(path, predictions_path(cfg.paths.eval_dir, model_name, cell.adapter.id,
                                                                cell.spec.name))
        ok = not state["failed"]
    finally:
        if tracker is not None:
            tracker.finish(exit_code=0 if ok else 1)
    if state["failed"]:
        raise CellsFailedError(summary(state["failed"], len(cells)))
    return written


def pending_records(cfg: DictConfig, group: list[Cell]) -> list[Path]:
    return [record_path(cfg.paths.eval_dir, cfg.model.name, c.adapter.id, c.spec.name) for c in group if not c.finished]


def still_pending(cfg: DictConfig, group: list[Cell]) -> list[Cell]:
    """The group's unfinished cells, checked again under their locks: another process may have
    finished some while this one waited."""
    return [c for c in group if not c.finished and not is_finished(
        record_path(cfg.paths.eval_dir, cfg.model.name, c.adapter.id, c.spec.name), c.settings["hash"])]


def evaluate_group(cfg: DictConfig, state: dict[str, Any], pending: list[Cell]) -> list[Path]:
    """Evaluate a group's pending cells; a cell (or group) that fails is recorded as failed and the
    job goes on. Config errors, full disks and interrupts still stop the job."""
    unjudged = [cell for cell in pending if cell.unjudged is not None]
    pending = [cell for cell in pending if cell.unjudged is None]
    written: list[Path | None] = []
    for cell in unjudged:
        try:
            written.append(evaluate_cell(cfg, state, cell, decoded=decoded_from_record(cfg, cell)))
        except (ConfigError, OutputWriteError):
            raise
        except Exception as err:  # e.g. its kept predictions are damaged: decode it again next time
            record_failed_cell(cfg, state, cell, "decoding", f"{type(err).__name__}: {err}")
    if backend_name(cfg.eval) == "hf" and pending:
        resident_model(cfg, state)  # the base model: its failure is no cell's, so it stops the job
        pending = [cell for cell in pending if adapter_loads(cfg, state, cell)]
    try:
        if len(pending) > 1:
            written += evaluate_mixed(cfg, state, pending)
        elif pending:
            written.append(evaluate_cell(cfg, state, pending[0]))
    except (ConfigError, OutputWriteError):
        raise
    except Exception as err:  # its traceback goes into the failed records, for a bug report
        for cell in pending:
            record_failed_cell(cfg, state, cell, "decoding", f"{type(err).__name__}: {err}",
                               {"traceback": traceback.format_exc(limit=20)})
    return [path for path in written if path is not None]  # None: a cell whose judge failed


def adapter_loads(cfg: DictConfig, state: dict[str, Any], cell: Cell) -> bool:
    """Load a cell's adapter into the resident model; one that fails is recorded as a failed cell."""
    if cell.adapter.is_base:
        return True
    try:
        resident_model(cfg, state).load(cell.adapter)
        return True
    except CorruptArtifactError as err:
        if state["resident"].tainted:
            state.pop("resident")  # loaded again, untouched, on next need
        record_failed_cell(cfg, state, cell, "adapter", str(err))
        return False


def mixes_adapters(cfg: DictConfig) -> bool:
    """Whether a task's cells share decoding batches across adapters: greedy hf decoding only
    (sampled cells draw from per-cell seeds; vLLM batches its LoRA requests itself)."""
    return (bool(cfg.eval.get("mixed_adapter_batches", True)) and backend_name(cfg.eval) == "hf"
            and not cfg.eval.decoding.get("do_sample", False))


# a prompt pass's fixed cost, in the tokens it could have computed instead. On a CPU, per thread: a
# pass's own cost (reading the weights, dispatch) stays as threads are added while each token's
# compute is shared among them (SmolLM2-135M: 26 tokens' worth at one thread, 60 at two;
# bench/eval_parts.py, BENCHMARKS.md). On a GPU a pass reads all the weights and
# launches every kernel whatever its size, so padding is cheap against it (an estimate, not measured)
PASS_COST_TOKENS = {"cpu": 32, "gpu": 256}


def batching(cfg: DictConfig, model) -> dict[str, Any]:
    """How the hf backend batches a task's rows: run_cells' batch_size, share_prefix (greedy
    decoding runs the prompt prefix a task's prompts share once per adapter), pass_cost (where
    padding costs more than another prompt pass; eval.pass_cost_tokens, null: by the model's
    device) and decode_rows (rows greedy generation decodes together)."""
    cost = cfg.eval.get("pass_cost_tokens")
    if cost is None:
        on_cpu = next(model.parameters()).device.type == "cpu"
        cost = PASS_COST_TOKENS["cpu"] * torch.get_num_threads() if on_cpu else PASS_COST_TOKENS["gpu"]
    return {"batch_size": int(cfg.eval.batch_size), "share_prefix": bool(cfg.eval.get("share_prompt_prefix", True)),
            "pass_cost": int(cost), "decode_rows": int(cfg.eval.get("decode_rows") or cfg.eval.batch_size)}


def cell_groups(cfg: DictConfig, cells: list[Cell]) -> list[list[Cell]]:
    """The order cells are decoded in: with mixed adapter batches, one task's pending cells
    together (up to eval.max_adapters_per_batch adapters, plus the base); else one at a time."""
    if not mixes_adapters(cfg):
        return [[cell] for cell in cells]
    limit = int(cfg.eval.get("max_adapters_per_batch", 8))
    groups: list[list[Cell]] = []
    for task in dict.fromkeys(cell.spec.name for cell in cells):
        mine = [cell for cell in cells if cell.spec.name == task]
        groups += [[cell] for cell in mine if cell.finished]  # nothing to decode
        pending = [cell for cell in mine if not cell.finished]
        group: list[Cell] = []
        for cell in pending:
            if not cell.adapter.is_base and sum(not c.adapter.is_base for c in group) == limit:
                groups.append(group)
                group = []
            group.append(cell)
        if group:
            groups.append(group)
    return groups


def eval_tracker(cfg: DictConfig):
    """The W&B logger of this job (logger=wandb), or None (logger=none, the default)."""
    logger_cfg = cfg.get("logger")
    if logger_kind(logger_cfg) == "none":
        return None
    # read key by key: the shared logger group also holds training-only fields (run names)
    plain = {k: to_plain(logger_cfg.get(k)) for k in ("project", "entity", "offline", "save_dir")}
    return EvalWandb.from_config(plain, str(cfg.get("experiment_name") or "default"),
                                 {"name": cfg.model.name, "source": cfg.model.source}, resolved_config(cfg))


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The job's config with interpolations resolved where they can be (outside a Hydra run,
    ${hydra:...} cannot: then unresolved)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:  # an interpolation that needs Hydra's runtime (tests, notebooks)
        return OmegaConf.to_container(cfg, resolve=False)


def decode_with_hf(cfg: DictConfig, state: dict[str, Any], adapter: Adapter, spec, examples: list[dict],
                   settings: dict[str, Any]) -> tuple[list[dict], dict, str, int, float]:
    """(rows, metrics, primary, n_invalid, seconds) of one cell on the resident HF model."""
    with resident_model(cfg, state).use(adapter) as model:
        started = time.perf_counter()
        out = run_cell(model, state["tokenizer"], spec, examples, max_input_tokens=cfg.data.max_input_tokens,
                       decoding=settings["decoding"], code=settings.get("code"), desc=f"{adapter.id} x {spec.name}",
                       **batching(cfg, model))
        return (*out, time.perf_counter() - started)


def judge_rows(cfg: DictConfig, state: dict[str, Any], examples: list[dict], rows: list[dict]) -> list[dict]:
    """The judge's verdicts on a cell's rows. After a first failure the judge is not called again in
    this job (each call would wait through its retries): the error is kept in state["judge_error"]."""
    if state.get("judge_error"):
        raise LatentTraitsError(state["judge_error"])
    try:
        if state.get("judge") is None:
            state["judge"] = build_judge(to_plain(cfg.judge), cfg.paths.cache_dir)
        return state["judge"].judge([{"question": e["input"], "reference": str(e.get("target", "")),
                                      "output": r["raw_output"]} for e, r in zip(examples, rows, strict=True)])
    except (ConfigError, OutputWriteError):
        raise
    except Exception as err:
        state["judge_error"] = (f"the judge failed ({type(err).__name__}: {err}); the predictions are kept and a "
                                "rerun only judges")
        raise


def resident_model(cfg: DictConfig, state: dict[str, Any]) -> ResidentModel:
    """The job's one base model, loaded on first need (with its tokenizer in state)."""
    if "resident" not in state:
        tokenizer, base_model = load_tokenizer_and_model(to_plain(cfg.model), cfg.paths.cache_dir)
        check_against_model(cfg, base_model)
        if not cfg.model.get("quantization"):  # a k-bit model is placed on its GPU when loaded
            base_model.to(resolve_device(cfg.eval.get("device", "auto")))
        base_model.eval()
        tokenizer.padding_side = "left"
        state["tokenizer"], state["resident"] = tokenizer, ResidentModel(base_model)
    return state["resident"]


def evaluate_mixed(cfg: DictConfig, state: dict[str, Any], group: list[Cell]) -> list[Path | None]:
    """One task's cells for several adapters, decoded in shared batches; each cell then scored
    and written as evaluate_cell writes it. Each cell's seconds are its share of the group's."""
    adapters = [cell.adapter for cell in group]
    spec, examples, settings = group[0].spec, group[0].examples, group[0].settings
    with resident_model(cfg, state).use_mixed(adapters) as (model, names):
        started = time.perf_counter()
        outs = run_cells(model, state["tokenizer"], spec, examples, names, max_input_tokens=cfg.data.max_input_tokens,
                         decoding=settings["decoding"], code=settings.get("code"),
                         desc=f"{len(adapters)} models x {spec.name}", **batching(cfg, model))
        share = (time.perf_counter() - started) / len(group)
    log.info("%s: %d cells decoded in shared batches (%s)", spec.name, len(group), ", ".join(a.id for a in adapters))
    return [evaluate_cell(cfg, state, cell, decoded=(*out, share), batched_cells=len(group))
            for cell, out in zip(group, outs, strict=True)]


def evaluate_cell(cfg: DictConfig, state: dict[str, Any], cell: Cell, decoded: tuple | None = None,
                  batched_cells: int = 1) -> Path | None:
    """Evaluate one (adapter or base) x task cell, or score one decoded in a group (`decoded`);
    write its predictions, then its record. When the judge fails, the predictions are kept beside a
    failed record (a rerun only judges) and None is returned."""
    adapter, spec, examples, data_prov, settings = cell.adapter, cell.spec, cell.examples, cell.data_prov, cell.settings
    model_name = cfg.model.name
    if decoded is not None:
        rows, metrics, primary, n_invalid, seconds = decoded
    elif backend_name(cfg.eval) == "vllm":
        rows, metrics, primary, n_invalid, seconds = decode_with_vllm(cfg, state, adapter, spec, examples, settings)
    else:
        rows, metrics, primary, n_invalid, seconds = decode_with_hf(cfg, state, adapter, spec, examples, settings)
    n_invalid_verdicts = None
    if settings.get("judge"):
        try:
            verdicts = judge_rows(cfg, state, examples, rows)
        except (ConfigError, OutputWriteError):
            raise
        except Exception as err:
            write_jsonl(predictions_path(cfg.paths.eval_dir, model_name, adapter.id, spec.name), rows)
            record_failed_cell(cfg, state, cell, "judge", state["judge_error"], extra={
                "metrics": metrics, "primary_metric": primary, "n_invalid": n_invalid, "decoding": settings["decoding"],
                "timing": {"seconds": round(seconds, 3)}})
            log.debug("judge failure", exc_info=err)
            return None
        for row, verdict in zip(rows, verdicts, strict=True):
            row.update(verdict)
        metrics.update(judge_metrics([v["judge_verdict"] for v in verdicts]))
        n_invalid_verdicts = metrics["n_invalid_verdicts"]
        if settings["judge"]["primary"]:
            primary = "judge_accuracy"
    record = {
        "schema_version": SCHEMA_VERSION, "status": "complete",
        "model": {**model_record(cfg.model), "name": model_name,
                  "loaded_commit": loaded_commit(state["resident"].base) if "resident" in state else None},
        "adapter": {
            "id": adapter.id, "path": str(adapter.path) if adapter.path else None,
            "source_dataset": (adapter.train_result or {}).get("source_dataset"),
            "train_config": (adapter.train_result or {}).get("settings"),
            "train_data": (adapter.train_result or {}).get("data"),
            "train_rerun": (adapter.train_result or {}).get("rerun"),
        },
        "eval_config": {"seed": cfg.seed, "data": to_plain(cfg.data), "eval": {
            k: v for k, v in to_plain(cfg.eval).items() if f"eval.{k}" not in CELL_SELECTION}},
        "rerun": cell_command(task_overrides(), adapter.id, spec.name, adapter.is_base,
                              by_name=bool(cfg.eval.get("tasks"))),
        "task": spec.to_record(), "data": data_prov, "decoding": settings["decoding"],
        **({"code_scoring": settings["code"]} if settings.get("code") else {}),
        "settings_hash": settings["hash"], "metrics": metrics, "primary_metric": primary,
        "n_invalid": n_invalid,
        **({"judge": settings["judge"], "n_invalid_verdicts": n_invalid_verdicts} if settings.get("judge") else {}),
        "timing": {"seconds": round(seconds, 3), "examples_per_second": round(len(rows) / max(seconds, 1e-9), 3),
                   "cells_decoded_together": batched_cells},
        **provenance(),
    }
    # predictions first, record last: a record on disk means its predictions are complete
    write_jsonl(predictions_path(cfg.paths.eval_dir, model_name, adapter.id, spec.name), rows)
    path = record_path(cfg.paths.eval_dir, model_name, adapter.id, spec.name)
    write_json(path, redact(record))  # no secret in a record (latent_traits.redact)
    log.info("%s x %s: %s = %s (%d examples, %.1f s)", adapter.id, spec.name, primary,
             "n/a" if metrics[primary] is None else f"{metrics[primary]:.3f}", len(rows), seconds)
    return path
