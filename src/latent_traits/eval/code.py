"""Code scores for generation tasks such as Magicoder.

Default, ``code_match`` (no execution, ever): take the code out of the output (the first
```` ```python ```` fenced block, else the first fenced block, else the whole output; an unclosed
fence runs to the end), normalise it (newlines, tabs, common indentation) and check two things
with Python's ``ast`` module, without running anything:

- ``parses``: the code is syntactically valid Python;
- ``defines``: it defines the reference solution's entry names that the question mentions:
  the entry names are ``main_solution`` where the reference defines it (the CodeI/O convention
  of the offline stand-in), else every top-level function and class name of the reference; a
  name the question never mentions cannot be asked of the output, so it is not required. With no
  required name (the stand-in's questions do not name ``main_solution``), the output must
  define at least one function or class.

A row is correct when both hold. ``name_recall`` (the share of all the reference's top-level
function/class names that the output defines anywhere) is reported beside it. This is a PROXY:
it says the output is well-formed code with the expected interface, not that it works. The
study scored Magicoder with an LLM judge (eval/judge.py); functional correctness needs the
opt-in sandbox below.

Opt-in, ``eval.code_execution=sandboxed``: for examples whose reference carries test inputs
(the offline stand-in ships each task's input generator), generate ``n_tests`` inputs with a
seeded generator, compute the expected outputs by running the reference, then run the generated
code on the same inputs and compare. Every run (the reference's too) happens in a separate
``python -I`` subprocess in an empty temporary directory with an empty environment, CPU-time,
address-space, file-size and open-file limits (``resource.setrlimit``), a wall-clock timeout,
and no file system of the machine's to write or read: each run starts in new user, mount and network
namespaces (``unshare``), with a private empty working folder, empty folders over home, temporary
folders, the cache and the project, the Python installation read-only and the rest of the file
system read-only, and no network. Where such namespaces cannot be made it refuses to run.
Examples without tests (e.g. Magicoder's hub data, which has none) are not executed.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latent_traits.errors import LatentTraitsError

FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
PYTHON_FENCES = ("python", "py", "python3")
ENTRY_POINT = "main_solution"
EXECUTION_MODES = ("off", "sandboxed")


def extract_code(output: str) -> str:
    """The code in a model output: first ```python block, else the first fenced block, else all."""
    blocks = FENCE.findall(output)
    if blocks:
        chosen = next((code for lang, code in blocks if lang.lower() in PYTHON_FENCES), blocks[0][1])
    else:
        chosen = output
    return normalise_code(chosen)


def normalise_code(code: str) -> str:
    code = code.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4)
    lines = [line.rstrip() for line in code.split("\n")]
    return textwrap.dedent("\n".join(lines)).strip("\n")


def parse_python(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return None


def top_level_names(tree: ast.Module) -> list[str]:
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def defined_names(tree: ast.Module) -> set[str]:
    """Every function and class name defined anywhere in the code (methods and nested ones too)."""
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


@functools.lru_cache(maxsize=4096)
def reference_names(reference: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required entry names, all top-level function/class names) of a reference solution."""
    tree = parse_python(normalise_code(reference))
    if tree is None:
        return (), ()
    names = tuple(top_level_names(tree))
    required = (ENTRY_POINT,) if ENTRY_POINT in names else names
    return required, names


def mentioned(name: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def score_code_match(output: str, reference: str, question: str | None = None) -> dict[str, Any]:
    """The no-execution proxy (module docstring). Without a question every entry name is required."""
    code = extract_code(output)
    tree = parse_python(code) if code.strip() else None
    entry, all_names = reference_names(reference)
    required = [n for n in entry if question is None or mentioned(n, question)]
    defined = defined_names(tree) if tree is not None else set()
    missing = [n for n in required if n not in defined]
    return {
        "code": code,
        "parses": tree is not None,
        "required_names": required,
        "missing_names": missing,
        "name_recall": (sum(n in defined for n in all_names) / len(all_names)) if all_names else None,
        "correct": tree is not None and not missing and (bool(required) or bool(defined)),
    }


# -- opt-in sandboxed execution ------------------------------------------------------------------

# Runs inside the sandbox: reads a JSON job from stdin, prints one JSON line. Job kinds:
#   {"kind": "inputs", "generator": src, "n": k, "seed": s}   -> {"ok": true, "inputs": [...]}
#   {"kind": "call", "code": src, "entry": name, "inputs": [...]} -> {"ok": true, "outputs": [...]}
SANDBOX_SCRIPT = r'''
import json, sys
def main():
    job = json.loads(sys.stdin.read())
    sys.stdin = open(__import__("os").devnull)
    real_stdout = sys.stdout
    sys.stdout = open(__import__("os").devnull, "w")  # the code's own prints do not mix in
    try:
        if job["kind"] == "inputs":
            from random import Random
            ns = {"Random": Random, "__name__": "sandbox"}
            exec(job["generator"], ns)
            gen = [v for k, v in ns.items() if k.startswith("generate") and callable(v)][0]
            result = {"ok": True, "inputs": [gen(Random(job["seed"] + i)) for i in range(job["n"])]}
        else:
            ns = {"__name__": "sandbox"}
            exec(job["code"], ns)
            fn = ns[job["entry"]]
            result = {"ok": True, "outputs": [fn(**args) for args in job["inputs"]]}
        text = json.dumps(result, default=repr)
    except BaseException as err:
        text = json.dumps({"ok": False, "error": type(err).__name__ + ": " + str(err)[:300]})
    real_stdout.write(text + "\n")
    real_stdout.flush()
main()
'''


@dataclass(frozen=True)
class SandboxSettings:
    timeout_s: float = 5.0
    memory_mb: int = 1024
    n_tests: int = 3
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> SandboxSettings:
        cfg = dict(cfg or {})
        unknown = set(cfg) - set(cls.__dataclass_fields__)
        if unknown:
            raise LatentTraitsError(f"eval.code_sandbox: unknown keys {sorted(unknown)}; "
                                    f"valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**cfg)


# Runs first inside new user, mount and network namespaces (as their root, which owns only those
# namespaces): a private /tmp with an empty working folder, empty folders over home, the cache,
# the project and every folder named after the script, the Python installation bound back read-only,
# and the rest of the file system read-only. Then the interpreter, alone (-I -S: no site-packages).
ISOLATION_SHELL = r"""
set -e
base="$1"; script="$2"; shift 2
mount -t tmpfs -o size=64m,mode=755 tmpfs /tmp
mkdir /tmp/.python /tmp/work
mount --bind "$base" /tmp/.python
for d in "$@"; do if [ -d "$d" ]; then mount -t tmpfs -o size=1m,mode=755 tmpfs "$d"; fi; done
mkdir -p "$base"
mount --bind /tmp/.python "$base"
umount /tmp/.python
rmdir /tmp/.python
mount -o remount,bind,ro /
cd /tmp/work
unset PWD OLDPWD
exec "$base/bin/python3" -I -S -c "$script"
"""
UNSHARE_FLAGS = ("--user", "--map-root-user", "--mount", "--net")
SYSTEM_DIRS = frozenset(map(Path, ("/", "/usr", "/bin", "/lib", "/lib64", "/etc", "/proc", "/sys", "/dev")))


def hidden_dirs() -> list[str]:
    """Folders the sandboxed code must not see: homes, temporary folders, the cache, the project,
    the folder the job runs in and the environment the framework runs from."""
    cache = os.environ.get("LATENT_TRAITS_CACHE") or str(Path.home() / ".cache" / "latent_traits")
    candidates = ["/root", "/home", "/var/tmp", "/dev/shm", "/mnt", "/media", "/srv", str(Path.home()), cache,
                  os.getcwd(), str(Path(__file__).resolve().parents[3]), sys.prefix,
                  os.environ.get("LATENT_TRAITS_ARTIFACTS") or ""]
    found = []
    for candidate in candidates:
        path = Path(candidate).resolve() if candidate else None
        if path and path not in SYSTEM_DIRS and str(path) not in found:
            found.append(str(path))
    return sorted(found, key=len)  # parents first: a folder inside a hidden one needs nothing more


def python_prefix() -> str:
    return str(Path(sys.base_prefix).resolve())


def isolation_command(script: str) -> list[str]:
    unshare = shutil.which("unshare") or "unshare"
    return [unshare, *UNSHARE_FLAGS, "sh", "-c", ISOLATION_SHELL, "sandbox", python_prefix(), script,
            *hidden_dirs()]


@functools.lru_cache(maxsize=1)
def isolation_problem() -> str | None:
    """Why the sandbox cannot be isolated here, or None when a trial run works."""
    if not sys.platform.startswith("linux"):
        return f"it needs Linux namespaces (this is {sys.platform})"
    if shutil.which("unshare") is None:
        return "`unshare` (util-linux) is not installed"
    if python_prefix().startswith("/tmp/") or not (Path(python_prefix()) / "bin" / "python3").is_file():
        return f"no python3 under {python_prefix()} to run inside it"
    try:
        proc = subprocess.run(isolation_command("print('isolated')"), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return f"a trial run failed ({err})"
    if proc.stdout.strip() != "isolated":
        return f"a trial run of `unshare {' '.join(UNSHARE_FLAGS)}` failed: {proc.stderr.strip()[-300:]}"
    return None


def check_isolation() -> None:
    problem = isolation_problem()
    if problem:
        raise LatentTraitsError(
            f"eval.code_execution=sandboxed runs generated code only in an isolated sandbox (its own user, mount "
            f"and network namespaces: no network, a private empty folder, home, cache and project hidden, the "
            f"rest read-only), and {problem}. Allow unprivileged user namespaces (sysctl "
            f"kernel.unprivileged_userns_clone=1) or run elsewhere; or leave code execution off (the default)")


def _limits(settings: SandboxSettings):
    def apply():  # runs in the child before exec
        import resource

        cpu = max(1, math.ceil(settings.timeout_s))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        memory = settings.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()  # its own process group: a timeout kills everything it started

    return apply


def run_sandboxed(job: dict[str, Any], settings: SandboxSettings) -> dict[str, Any]:
    """Run one job in the sandbox; a crash, timeout or bad output becomes {"ok": False, "error"}."""
    check_isolation()
    with tempfile.TemporaryDirectory(prefix="lt-sandbox-") as workdir:  # never seen by the code: /tmp is private
        cmd = isolation_command(SANDBOX_SCRIPT)
        try:
            proc = subprocess.Popen(cmd, cwd=workdir, env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    preexec_fn=_limits(settings))
        except OSError as err:
            return {"ok": False, "error": f"sandbox failed to start: {err}"}
        try:
            stdout, _ = proc.communicate(json.dumps(job), timeout=settings.timeout_s * 2 + 1)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            proc.communicate()
            return {"ok": False, "error": "timeout"}
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return {"ok": False, "error": f"no result (exit status {proc.returncode})"}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"ok": False, "error": "unreadable result"}


def outputs_equal(a: Any, b: Any) -> bool:
    """Equal JSON values, floats within a relative 1e-6 (the same algorithm may round differently)."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(outputs_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(outputs_equal(a[k], b[k]) for k in a)
    return a == b


def candidate_entry(code: str) -> str:
    """The function to call in generated code: main_solution, else its only top-level function
    (the stand-in's questions do not name main_solution)."""
    tree = parse_python(code)
    if tree is None:
        return ENTRY_POINT
    functions = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if ENTRY_POINT in functions or len(functions) != 1:
        return ENTRY_POINT
    return functions[0]


def execute_against_reference(code: str, example: Mapping[str, Any], settings: SandboxSettings) -> dict[str, Any]:
    """Run generated code on the example's test inputs; compare with the reference's outputs."""
    generator, reference = example.get("input_generator"), example.get("target", "")
    required, _ = reference_names(reference)
    if not generator or required != (ENTRY_POINT,):
        return {"executed": False, "tests_passed": None, "tests_total": None, "execution_correct": None,
                "execution_error": "no tests for this example"}
    inputs = run_sandboxed({"kind": "inputs", "generator": generator, "n": settings.n_tests,
                            "seed": settings.seed}, settings)
    if not inputs.get("ok"):
        return {"executed": False, "tests_passed": None, "tests_total": None, "execution_correct": None,
                "execution_error": f"test inputs: {inputs.get('error')}"}
    expected = run_sandboxed({"kind": "call", "code": reference, "entry": ENTRY_POINT,
                              "inputs": inputs["inputs"]}, settings)
    if not expected.get("ok"):
        return {"executed": False, "tests_passed": None, "tests_total": None, "execution_correct": None,
                "execution_error": f"reference: {expected.get('error')}"}
    got = run_sandboxed({"kind": "call", "code": code, "entry": candidate_entry(code), "inputs": inputs["inputs"]},
                        settings)
    total = len(inputs["inputs"])
    if not got.get("ok"):
        return {"executed": True, "tests_passed": 0, "tests_total": total, "execution_correct": False,
                "execution_error": got.get("error")}
    passed = sum(outputs_equal(g, e) for g, e in zip(got["outputs"], expected["outputs"], strict=True))
    return {"executed": True, "tests_passed": passed, "tests_total": total, "execution_correct": passed == total,
            "execution_error": None}
