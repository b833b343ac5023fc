"""An English -> Korean parallel corpus generated from the world's instructions.

Every row is one scene and one task rendered in both languages: the world's scene sampler
(`nanovla.world.scene.sample_scenes`) draws the objects, bowls and zones, and the world's own
`instruction_text` fills an English template and its Korean translation with the same slots —
the same referring expressions ("the small blue ball" / "작은 파란 공") and the Korean particle
chosen from the last syllable's final consonant (상자를 / 공을, 그릇으로 / 모서리로).

Each English template of the world (`TEMPLATES["train"]` and `TEMPLATES["heldout"]`) is paired
with one Korean template below, so a sentence has exactly one reference translation. The world's
own Korean pools (`ko`, `ko_heldout`) are independent paraphrase sets, not translations of the
English ones, so the pairs are written here; the training Korean uses the world's `ko` wording
where it matches.

Splits (column `split`):

| split               | scenes   | English templates          | target (kind, color) pairs   |
|---------------------|----------|----------------------------|------------------------------|
| `train`             | stream 0 | train                      | all but `HELDOUT_COMBOS`     |
| `test`              | stream 1 | train                      | all but `HELDOUT_COMBOS`     |
| `heldout_templates` | stream 2 | held-out paraphrases       | all but `HELDOUT_COMBOS`     |
| `heldout_combos`    | stream 3 | train                      | only `HELDOUT_COMBOS`        |

"Held-out scenes" (`test`): any test sentence whose English also occurs in `train` is dropped,
so no test source was seen verbatim. Held-out paraphrases put unseen English wording in front
of the model; their Korean references are written in the training Korean vocabulary (the test
is about understanding new English, not producing Korean words it never saw). Held-out combos
("the green ball", "the purple box") never appear in any training sentence, in either language.

The corpus is written once as parquet (atomic: a temporary file, then a rename) and read back
with its columns checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nanovla.errors import InputError
from nanovla.io import atomic_path
from nanovla.world.instructions import TEMPLATES, instruction_text
from nanovla.world.scene import allowed_target_combos, sample_scenes
from nanovla.world.tasks import TASK_FAMILIES

# English template -> its Korean translation, per family, for the world's train English templates
KOREAN: dict[str, str] = {
    # reach
    "reach {object}": "{object}에 닿아",
    "move the gripper to {object}": "그리퍼를 {object}로 옮겨",
    "go to {object}": "{object} 쪽으로 가",
    "touch {object}": "{object}를 터치해",
    "put the gripper next to {object}": "그리퍼를 {object} 옆에 놓아",
    # push
    "push {object} to {place}": "{object}를 {place}로 밀어",
    "slide {object} into {place}": "{object}를 밀어서 {place}에 넣어",
    "push {object} into {place} without picking it up": "{object}를 잡지 말고 {place}로 밀어",
    "move {object} to {place} by pushing it": "{object}를 밀어서 {place}로 옮겨",
    "shove {object} toward {place}": "{object}를 {place} 쪽으로 밀어",
    # pick_place
    "put {object} in {place}": "{object}를 {place}에 넣어",
    "pick up {object} and place it in {place}": "{object}를 집어서 {place}에 놓아",
    "place {object} into {place}": "{object}를 {place} 안에 놓아",
    "move {object} into {place}": "{object}를 {place}로 옮겨",
    "drop {object} in {place}": "{object}를 {place}에 떨어뜨려",
    # sort
    "put {object} in {place} and {object2} in {place2}": (
        "{object}를 {place}에 넣고 {object2}를 {place2}에 넣어"
    ),
    "place {object} into {place}, then {object2} into {place2}": (
        "{object}를 {place}에 놓고, 그다음 {object2}를 {place2}에 놓아"
    ),
    "sort: {object} goes in {place}, {object2} goes in {place2}": (
        "정리해: {object}는 {place}에, {object2}는 {place2}에"
    ),
    "move {object} to {place} and {object2} to {place2}": (
        "{object}를 {place}로, {object2}를 {place2}로 옮겨"
    ),
    "pick up {object} and put it in {place}, then put {object2} in {place2}": (
        "{object}를 집어서 {place}에 넣고, 그다음 {object2}를 {place2}에 넣어"
    ),
    # held-out English paraphrases: references in the training Korean vocabulary
    "approach {object}": "{object} 쪽으로 가",
    "bring the gripper up against {object}": "그리퍼를 {object}로 옮겨",
    "make contact with {object}": "{object}에 닿아",
    "nudge {object} over to {place}": "{object}를 {place}로 밀어",
    "without grasping it, get {object} into {place}": "{object}를 잡지 말고 {place}로 밀어",
    "drive {object} into {place} with the gripper": "{object}를 밀어서 {place}에 넣어",
    "grab {object} and set it down in {place}": "{object}를 집어서 {place}에 놓아",
    "transfer {object} to {place}": "{object}를 {place}로 옮겨",
    "lift {object} and release it inside {place}": "{object}를 집어서 {place} 안에 놓아",
    "{object} belongs in {place} and {object2} belongs in {place2}": (
        "{object}를 {place}에 넣고 {object2}를 {place2}에 넣어"
    ),
    "first drop {object} into {place}, afterwards {object2} into {place2}": (
        "{object}를 {place}에 놓고, 그다음 {object2}를 {place2}에 놓아"
    ),
    "transfer {object} to {place} and {object2} to {place2}": (
        "{object}를 {place}로, {object2}를 {place2}로 옮겨"
    ),
}
SPLITS: tuple[str, ...] = ("train", "test", "heldout_templates", "heldout_combos")
"""corpus splits, in file order"""
EVAL_SPLITS: tuple[str, ...] = SPLITS[1:]
COLUMNS: tuple[str, ...] = ("split", "family", "template", "en", "ko")
# split -> (English template pool, target combos, scene stream)
_SPLIT_SOURCES = {
    "train": ("train", "train", 0),
    "test": ("train", "train", 1),
    "heldout_templates": ("heldout", "train", 2),
    "heldout_combos": ("train", "heldout", 3),
}


@dataclass(frozen=True)
class Pair:
    """One parallel sentence pair."""

    split: str
    family: str
    template: str
    en: str
    ko: str


def render_pairs(split: str, count: int, seed: int, round_: int = 0) -> list[Pair]:
    """`count` scenes of `split` (families uniform, templates uniform within the family), each
    rendered in English and Korean by the world's `instruction_text`; `round_` draws a further
    independent batch of the same split."""
    pool_name, targets, stream = _SPLIT_SOURCES[split]
    rng = np.random.default_rng([seed, stream, round_])
    families = rng.integers(0, len(TASK_FAMILIES), size=count)
    state = sample_scenes(rng, families, allowed_target_combos(targets))
    pairs = []
    for env, family_index in enumerate(families.tolist()):
        family = TASK_FAMILIES[family_index]
        pool = TEMPLATES[pool_name][family]
        template = pool[int(rng.integers(len(pool)))]
        en = instruction_text(state, env, template)
        ko = instruction_text(state, env, KOREAN[template])
        pairs.append(Pair(split, family, template, en, ko))
    return pairs


def _unseen_test(seen: set[str], size: int, seed: int, max_rounds: int = 50) -> list[Pair]:
    """`size` test pairs whose English is not in `seen` (drawn in rounds of fresh scenes)."""
    pairs: list[Pair] = []
    for round_ in range(max_rounds):
        pairs += [pair for pair in render_pairs("test", size, seed, round_) if pair.en not in seen]
        if len(pairs) >= size:
            return pairs[:size]
    return pairs  # the training set covers nearly every sentence: fewer test pairs


def build_corpus(train_size: int, eval_size: int, seed: int = 0) -> list[Pair]:
    """The four splits: `train_size` training pairs and `eval_size` pairs per evaluation split
    (`test` draws scenes until `eval_size` sentences unseen in training are found)."""
    if train_size < 1 or eval_size < 1:
        raise InputError(f"corpus sizes must be >= 1, got train {train_size}, eval {eval_size}")
    train = render_pairs("train", train_size, seed)
    corpus = train + _unseen_test({pair.en for pair in train}, eval_size, seed)
    for split in EVAL_SPLITS[1:]:
        corpus += render_pairs(split, eval_size, seed)
    return corpus


def write_corpus(path: Path, pairs: list[Pair]) -> Path:
    """Writes `pairs` as one parquet file at `path`, atomically."""
    table = pa.table({name: [getattr(pair, name) for pair in pairs] for name in COLUMNS})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)
    return path


def read_corpus(path: Path) -> list[Pair]:
    """Reads a corpus written by `write_corpus`; InputError names the file and what is wrong."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise InputError(f"{path}: not a readable parquet corpus ({error})") from error
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing columns {missing}; expected {list(COLUMNS)}")
    columns = [table.column(name).to_pylist() for name in COLUMNS]
    pairs = [Pair(*row) for row in zip(*columns, strict=True)]
    for line, pair in enumerate(pairs):
        if pair.split not in SPLITS:
            raise InputError(f"{path}: row {line} has unknown split {pair.split!r}")
    return pairs


def by_split(pairs: list[Pair]) -> dict[str, list[Pair]]:
    """split -> its pairs (every split in SPLITS present, possibly empty)."""
    out: dict[str, list[Pair]] = {split: [] for split in SPLITS}
    for pair in pairs:
        out[pair.split].append(pair)
    return out
