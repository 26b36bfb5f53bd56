"""lm-evaluation-harness (0.4.13) custom tasks holding exactly the framework's prompts and examples,
and the predictions read back from its sample logs (--log_samples). Used by eval_throughput.py.

Each target task becomes a local jsonl plus a task YAML (``lt_<task>``): the document's ``prompt``
is the framework's prompt string (instruction, input truncated to data.max_input_tokens, cue),
whose tokens equal what evaluate.py feeds the model. Classification tasks are ``multiple_choice``
over the label strings with no target delimiter (the label follows the prompt's newline, as in
training), so lm-eval ranks the labels by log-likelihood; generation tasks are ``generate_until``
with the task's stop strings and max_new_tokens, greedy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

PREFIX = "lt_"


def task_name(task: str) -> str:
    return f"{PREFIX}{task}"


def write_tasks(tasks: list[tuple[Any, list[dict], list[str]]], max_tokens: dict[str, int], out_dir: Path) -> list[str]:
    """tasks: (spec, examples, prompt strings); writes <out_dir>/<lt_task>.{jsonl,yaml}; returns task names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for spec, examples, prompts in tasks:
        name = task_name(spec.name)
        data = out_dir / f"{name}.jsonl"
        with data.open("w") as f:
            for example, prompt in zip(examples, prompts, strict=True):
                doc = {"id": example["id"], "prompt": prompt}
                if spec.is_classification:
                    doc["label_index"] = list(spec.labels).index(example["label"])
                else:
                    doc["target"] = str(example.get("target", ""))
                f.write(json.dumps(doc) + "\n")
        config: dict[str, Any] = {
            "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "doc_to_text": "{{prompt}}", "target_delimiter": "",
            "metadata": {"version": 1.0},
        }
        if spec.is_classification:
            config.update(output_type="multiple_choice", doc_to_choice=list(spec.labels),
                          doc_to_target="{{label_index}}",
                          metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}])
        else:
            config.update(output_type="generate_until", doc_to_target="{{target}}",
                          generation_kwargs={"until": list(spec.stop), "do_sample": False,
                                             "max_gen_toks": int(max_tokens[spec.name])},
                          metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}])
        (out_dir / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        names.append(name)
    return names


def read_predictions(output_dir: Path, labels: dict[str, list[str] | None]) -> dict[str, dict[str, str]]:
    """{task: {example id: prediction}} from the sample logs under output_dir: the chosen label
    (highest log-likelihood) for multiple_choice, the generated text for generate_until."""
    out: dict[str, dict[str, str]] = {}
    for task, task_labels in labels.items():
        files = sorted(output_dir.rglob(f"samples_{task_name(task)}_*.jsonl"))
        if not files:
            raise FileNotFoundError(f"no lm-eval sample log for {task_name(task)} under {output_dir}")
        predictions = {}
        with files[-1].open() as f:  # by "\n" only: outputs may hold other line separators
            samples = [json.loads(line) for line in f if line.strip()]
        for sample in samples:
            response = sample["filtered_resps"]
            if task_labels:  # [[loglik, is_greedy], ...] per choice
                scores = [float(r[0]) for r in response]
                predictions[sample["doc"]["id"]] = task_labels[max(range(len(scores)), key=scores.__getitem__)]
            else:
                predictions[sample["doc"]["id"]] = response[0] if isinstance(response, list) else response
        out[task] = predictions
    return out
