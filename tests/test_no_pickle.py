"""No code path can unpickle: source, benchmarks, scripts, README and docs are scanned.

Unpickling runs arbitrary code from the file, so nanovla never does it: checkpoints are
safetensors + JSON, datasets parquet + PNG. Flagged: `torch.load(` without `weights_only=True`,
the `pickle` / `cPickle` / `dill` / `joblib` / `shelve` modules, `np.load(..., allow_pickle=True)`
and pandas' `read_pickle`. Docs and docstring examples count too: users copy them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("src", "benchmarks", "scripts", "docs", "examples", "README.md")
SUFFIXES = {".py", ".md", ".rst", ".txt", ".sh", ".ipynb", ".toml", ".cfg"}

MODULES = re.compile(
    r"\b(?:import\s+(?:(?:c?pickle|cPickle)|dill|joblib|shelve|cloudpickle)\b"
    r"|from\s+(?:(?:c?pickle|cPickle)|dill|joblib|shelve|cloudpickle)\b\s+import"
    r"|(?:(?:c?pickle|cPickle)|dill|joblib|cloudpickle)\.loads?\s*\("
    r"|shelve\.open\s*\("
    r"|read_pickle\s*\()"
)
CALLS = re.compile(r"\b(?:torch\.load|torch\.serialization\.load|np\.load|numpy\.load)\s*\(")


def _call_arguments(text: str, start: int) -> str:
    """The text between the parenthesis opening at `start - 1` and its match (or line end)."""
    depth, index = 1, start
    while index < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        index += 1
    return text[start : index - 1]


def unpickling_calls(text: str) -> list[str]:
    """Every construct in `text` that can unpickle, as `line N: <code>`."""
    found = []
    for match in MODULES.finditer(text):
        found.append((match.start(), match.group(0)))
    for match in CALLS.finditer(text):
        arguments = re.sub(r"\s+", "", _call_arguments(text, match.end()))
        name = match.group(0).split("(")[0].strip()
        if name.endswith("np.load") or name.endswith("numpy.load"):
            if "allow_pickle=True" in arguments:
                found.append((match.start(), f"{name}(... allow_pickle=True)"))
        elif "weights_only=True" not in arguments:
            found.append((match.start(), f"{name}(...) without weights_only=True"))
    return [f"line {text.count(chr(10), 0, at) + 1}: {code}" for at, code in sorted(found)]


def _files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in sorted(path.rglob("*")) if p.suffix in SUFFIXES and p.is_file()]
    return files


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "import cPickle as p",
        "from pickle import loads",
        "data = pickle.load(f)",
        "import dill",
        "joblib.load('m.pkl')",
        "import joblib",
        "df = pd.read_pickle('x')",
        "shelve.open('db')",
        "state = torch.load(path)",
        "state = torch.load(\n    path,\n    map_location='cpu',\n)",
        "torch.load(path, weights_only=False)",
        "np.load('a.npy', allow_pickle=True)",
        "numpy.load(f, mmap_mode='r', allow_pickle = True)",
    ],
)
def test_scanner_flags_every_unpickling_construct(snippet: str) -> None:
    assert unpickling_calls(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "torch.load(path, weights_only=True)",
        "torch.load(\n    path, map_location='cpu', weights_only=True\n)",
        "np.load(path, mmap_mode='c')",
        "np.load(path, allow_pickle=False)",
        "# safetensors, never pickles",
    ],
)
def test_scanner_accepts_safe_loading(snippet: str) -> None:
    assert unpickling_calls(snippet) == []


def test_no_code_path_can_unpickle() -> None:
    files = _files()
    assert any(p.suffix == ".py" for p in files), "nothing scanned: the layout moved?"
    problems = [
        f"{path.relative_to(ROOT)} {hit}"
        for path in files
        for hit in unpickling_calls(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert problems == [], "unpickling found:\n" + "\n".join(problems)
