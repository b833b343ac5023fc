"""Question-answer pairs about world scenes, in English and Korean (the VQA half of issue 13's data).

Each scene comes from the world's own sampler (`world.scene.sample_scenes`: 3-5 boxes and balls in
five colours and three sizes, two coloured bowls, two marked zones, the gripper), and then each
bowl is filled, with probability `BOWL_FILL`, with one object dropped at its centre (so "what is
in the green bowl?" has an answer other than "nothing"). The scene is drawn by the world's
renderer, and for every scene one question of each type is asked, in a language drawn per
question:

    colour    "what colour is the small ball?"            -> "green"      / "초록색"
    kind      "what kind of object is the large red one?" -> "box"        / "상자"
    size      "how big is the blue ball?"                 -> "medium"     / "중간"
    count     "how many balls are there?"                 -> "3"          / "3개"
    position  "where is the red box?"                     -> "top left"   / "왼쪽 위"
    exists    "is there a purple ball?"                   -> "yes"/"no"   / "네"/"아니요"
    bowl      "what is in the green bowl?"                -> "red box"    / "빨간 상자" / "nothing"

Referring expressions never name the attribute asked for and are unique in the scene (a colour
question names size + kind, a kind question size + colour, a size question colour + kind; the
rest use the world's shortest unique description, `instructions.describe`). A position is the
quadrant of the table the object's centre lies in, and is only asked when the centre is at least
`POSITION_MARGIN` (4 px at 64 x 64) from both midlines, so the answer is never a coin toss.
"is there" questions are yes half the time.

Training templates: 9 per type in English and 8 in Korean (the first three of each were the
original set); every held-out template is at least two word edits from every training one
(tests/test_vlm_data.py), and the VQA lab never draws a held-out one.

Each row also carries its image's item table (`VQASet.items`, `item_table`: position, kind,
colour and size of every bowl and object), from which `nanovla lab vqa` derives per-cell
targets for its image tower.

Three generalization splits (`generate(..., templates=..., combos=...)`):
- held-out scenes: new seeds; the evaluation seeds start at `EVAL_SEED` so no training scene is
  ever drawn again (training uses seeds below it);
- held-out question templates (`templates="heldout"`): a paraphrase per type and language that
  training never shows;
- held-out attribute combinations (`combos="heldout"`): the (kind, colour) pairs of
  `world.scene.HELDOUT_COMBOS` (green balls, purple boxes). With `combos="train"` no question
  refers to or answers with such an object (they may still be seen in images and counted);
  with `combos="heldout"` every question except count is about one (count has no referent and
  is left out of that split).

Departure from "written once as a dataset": the lab draws fresh scenes on the fly (rendering is
~100x faster than a training step), so it never sees a scene twice; `write_parquet` writes a
fixed set (PNG bytes + text columns, LeRobot's conventions) for other tools, and `read_parquet`
reads it back.
"""

from __future__ import annotations

import functools
import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanovla.data.vqa_templates import (
    COLOUR_ANSWERS_KO,
    NOTHING,
    QUADRANTS,
    SIZE_ANSWERS_KO,
    TEMPLATES,
    YES_NO,
)
from nanovla.errors import InputError
from nanovla.world.instructions import BOWL_KO, COLORS_KO, KINDS_KO, SIZES_KO, describe, fill
from nanovla.world.render import Renderer
from nanovla.world.scene import (
    COLORS,
    HELDOUT_COMBOS,
    KINDS,
    SIZES,
    SceneState,
    allowed_target_combos,
    sample_scenes,
)

QUESTION_TYPES: tuple[str, ...] = ("colour", "kind", "size", "count", "position", "exists", "bowl")
LANGUAGES: tuple[str, ...] = ("en", "ko")
TEMPLATE_SPLITS: tuple[str, ...] = ("train", "heldout")
COMBO_SPLITS: tuple[str, ...] = ("train", "heldout")
BOWL_FILL = 0.75
"""probability that a bowl holds an object"""
POSITION_MARGIN = 0.0625
"""a position question needs the object's centre this far (table units) from both midlines"""
EVAL_SEED = 1_000_000
"""evaluation scenes use seeds from here on; training seeds stay below"""


@dataclass
class VQASet:
    """N question-answer pairs with their images (one row per question; a scene's image repeats)."""

    images: np.ndarray  # (N, H, W, 3) uint8
    questions: list[str]
    answers: list[str]
    types: list[str]  # each one of QUESTION_TYPES
    languages: list[str]  # each one of LANGUAGES
    scene: np.ndarray  # (N,) int64 index of the question's scene within the set
    items: np.ndarray | None = None
    """(N, M + B, 5) float32 what the question's image shows, for dense supervision of an
    image tower (`item_table`): x, y (table units), kind (KINDS index; len(KINDS) = a bowl;
    -1 = an empty slot), colour, size (-1 for a bowl); None when read from parquet"""

    def __len__(self) -> int:
        return len(self.questions)


BOWL_KIND = len(KINDS)
"""the kind index `item_table` gives a bowl"""


def item_table(state: SceneState) -> np.ndarray:
    """(N, B + M, 5) float32 rows (x, y, kind, colour, size) of every scene's bowls, then its
    objects in slot order (the renderer's drawing order, so a later row is on top); an empty
    object slot has kind -1, a bowl kind `BOWL_KIND` and size -1."""
    n, bowls = state.bowl_color.shape
    table_bowls = np.concatenate([state.bowl_pos, np.full((n, bowls, 1), BOWL_KIND),
                                  state.bowl_color[..., None], np.full((n, bowls, 1), -1)], axis=2)  # fmt: skip
    kind = np.where(state.obj_active, state.obj_kind, -1)[..., None]
    table_objects = np.concatenate([state.obj_pos, kind, state.obj_color[..., None],
                                    state.obj_size[..., None]], axis=2)  # fmt: skip
    return np.concatenate([table_bowls, table_objects], axis=1).astype(np.float32)


def _heldout_mask(state: SceneState) -> np.ndarray:
    """(N, M) bool: the object's (kind, colour) is one of HELDOUT_COMBOS."""
    mask = np.zeros(state.obj_kind.shape, dtype=bool)
    for kind, color in HELDOUT_COMBOS:
        mask |= (state.obj_kind == KINDS.index(kind)) & (state.obj_color == COLORS.index(color))
    return mask


def _fill_bowls(rng: np.random.Generator, state: SceneState, first: int) -> np.ndarray:
    """Drops one object at the centre of some bowls (in place); returns (N, B) slot or -1.

    Bowl b may get object slot `first + b` (slot order is random, so this is a random object;
    the held-out split passes first=1 so that bowl 0 may hold a held-out object, slot 1, while
    slot 0 stays on the table). A bowl under the gripper stays empty (it would hide the object)."""
    n, bowls = state.bowl_pos.shape[:2]
    content = np.full((n, bowls), -1, dtype=np.int64)
    for b in range(bowls):
        slot = first + b
        clear = np.linalg.norm(state.gripper - state.bowl_pos[:, b], axis=1) > 0.15
        fill_it = (rng.random(n) < BOWL_FILL) & state.obj_active[:, slot] & clear
        state.obj_pos[fill_it, slot] = state.bowl_pos[fill_it, b]
        content[fill_it, b] = slot
    return content


@functools.lru_cache(maxsize=4)
def _renderer(image_size: int) -> Renderer:
    return Renderer(image_size)


def render(state: SceneState, image_size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 frames of `state` drawn by the world's renderer."""
    renderer = _renderer(image_size)
    static, _ = renderer.static(state)
    return renderer.rgb(state, static)


def _name(lang: str, *, kind: int | None = None, color: int | None = None,
          size: int | None = None, article: str = "the") -> str:  # fmt: skip
    """ "the small red box" / "작은 빨간 상자" from the attributes given."""
    if lang == "ko":
        words = [SIZES_KO[size] if size is not None else None,
                 COLORS_KO[color] if color is not None else None,
                 KINDS_KO[kind] if kind is not None else "물건"]  # fmt: skip
        return " ".join(w for w in words if w)
    words = [SIZES[size] if size is not None else None,
             COLORS[color] if color is not None else None,
             KINDS[kind] if kind is not None else "object"]  # fmt: skip
    return " ".join([article] + [w for w in words if w])


def _unique(attrs: np.ndarray, active: np.ndarray, slot: int, columns: list[int]) -> bool:
    """True if no other active object shares object `slot`'s attributes in `columns`."""
    same = active & np.all(attrs[:, columns] == attrs[slot, columns], axis=1)
    return int(same.sum()) == 1


class _Scene:
    """One scene's attributes and the candidates questions may be about."""

    def __init__(self, state: SceneState, env: int, content: np.ndarray, referents: np.ndarray):
        self.state, self.env, self.content = state, env, content[env]
        self.attrs = np.stack(
            [state.obj_kind[env], state.obj_color[env], state.obj_size[env]], 1
        )  # (M, 3): kind, colour, size
        self.active = state.obj_active[env]
        self.referents = referents[env] & self.active  # objects questions may refer to

    def pick(self, rng: random.Random, columns: list[int]) -> int | None:
        """A random referable object, unique by `columns` (None when there is none)."""
        slots = [m for m in np.flatnonzero(self.referents) if _unique(self.attrs, self.active, m, columns)]  # fmt: skip
        return int(rng.choice(slots)) if slots else None


def _ask(scene: _Scene, qtype: str, lang: str, rng: random.Random, combos: str) -> tuple | None:
    """(values for the template, answer) of one `qtype` question, or None if none can be asked."""
    ko = lang == "ko"
    if qtype in ("colour", "kind", "size"):
        asked = {"colour": 1, "kind": 0, "size": 2}[qtype]
        named = [c for c in (0, 1, 2) if c != asked]
        slot = scene.pick(rng, named)
        if slot is None:
            return None
        kind, color, size = (int(v) for v in scene.attrs[slot])
        values = dict(kind=kind, color=color, size=size)
        del values[("kind", "color", "size")[asked]]
        value = int(scene.attrs[slot, asked])
        answers = {"colour": COLOUR_ANSWERS_KO if ko else COLORS,
                   "kind": KINDS_KO if ko else KINDS, "size": SIZE_ANSWERS_KO if ko else SIZES}  # fmt: skip
        return {"ref": _name(lang, **values)}, answers[qtype][value]
    if qtype == "count":
        return _ask_count(scene, lang, rng)
    if qtype == "position":
        slot = scene.pick(rng, [0, 1])
        if slot is None:
            return None
        x, y = scene.state.obj_pos[scene.env, slot]
        if min(abs(x - 0.5), abs(y - 0.5)) < POSITION_MARGIN:
            return None
        quadrant = int(y > 0.5) * 2 + int(x > 0.5)
        return {"ref": describe(scene.state, scene.env, slot, ko)}, QUADRANTS[lang][quadrant]
    if qtype == "exists":
        return _ask_exists(scene, lang, rng, combos)
    return _ask_bowl(scene, lang, rng, combos)


def _ask_count(scene: _Scene, lang: str, rng: random.Random) -> tuple:
    """How many objects of a colour, of a kind, or in all (0 to 5)."""
    what = rng.choice(("color", "kind", "all"))
    if what == "color":
        color = rng.randrange(len(COLORS))
        count = int((scene.active & (scene.attrs[:, 1] == color)).sum())
        things = f"{COLORS_KO[color]} 물건" if lang == "ko" else f"{COLORS[color]} objects"
    elif what == "kind":
        kind = rng.randrange(len(KINDS))
        count = int((scene.active & (scene.attrs[:, 0] == kind)).sum())
        things = KINDS_KO[kind] if lang == "ko" else KINDS[kind] + ("es" if kind == 0 else "s")
    else:
        count = int(scene.active.sum())
        things = "물건" if lang == "ko" else "objects"
    return {"things": things}, f"{count}개" if lang == "ko" else str(count)


def _ask_exists(scene: _Scene, lang: str, rng: random.Random, combos: str) -> tuple | None:
    """Is there an object of this (kind, colour)? Yes half the time."""
    present = {(int(k), int(c)) for k, c, _ in scene.attrs[scene.active]}
    heldout = {(KINDS.index(k), COLORS.index(c)) for k, c in HELDOUT_COMBOS}
    pairs = [(k, c) for k in range(len(KINDS)) for c in range(len(COLORS))]
    pairs = [p for p in pairs if (p in heldout) == (combos == "heldout")]
    want = rng.random() < 0.5
    pool = [p for p in pairs if (p in present) == want]
    if not pool:
        return None
    kind, color = rng.choice(pool)
    ref = _name(lang, kind=kind, color=color, article="a")
    return {"ref": ref}, YES_NO[lang][0 if want else 1]


def _ask_bowl(scene: _Scene, lang: str, rng: random.Random, combos: str) -> tuple | None:
    """What is in a bowl: "nothing" or the colour and kind of its object."""
    bowl = rng.randrange(len(scene.content))
    slot = int(scene.content[bowl])
    if combos == "heldout" and (slot < 0 or not scene.referents[slot]):
        return None  # the held-out split asks only about bowls holding a held-out object
    if slot >= 0 and not scene.referents[slot]:
        return None
    color = int(scene.state.bowl_color[scene.env, bowl])
    ref = f"{COLORS_KO[color]} {BOWL_KO}" if lang == "ko" else f"the {COLORS[color]} bowl"
    if slot < 0:
        return {"ref": ref}, NOTHING[lang]
    kind, obj_color = int(scene.attrs[slot, 0]), int(scene.attrs[slot, 1])
    return {"ref": ref}, _name(lang, kind=kind, color=obj_color, article="").strip()


def _check(templates: str, combos: str, languages: tuple[str, ...], types: tuple[str, ...]) -> None:
    if templates not in TEMPLATE_SPLITS:
        raise InputError(f"templates: unknown split {templates!r}; choose one of {TEMPLATE_SPLITS}")
    if combos not in COMBO_SPLITS:
        raise InputError(f"combos: unknown split {combos!r}; choose one of {COMBO_SPLITS}")
    for name, values, allowed in (("languages", languages, LANGUAGES), ("types", types, QUESTION_TYPES)):  # fmt: skip
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise InputError(f"{name}: {bad or 'empty'}; choose from {allowed}")


def generate(
    seed: int,
    num_scenes: int,
    image_size: int = 64,
    templates: str = "train",
    combos: str = "train",
    languages: tuple[str, ...] = LANGUAGES,
    types: tuple[str, ...] = QUESTION_TYPES,
) -> VQASet:
    """`num_scenes` fresh scenes from `seed` and up to one question per type on each.

    templates: "train" or "heldout" question templates; combos: "train" (questions avoid the
    held-out (kind, colour) pairs) or "heldout" (questions are about them). Each question's
    language is drawn from `languages`. The same arguments give the same set.
    """
    _check(templates, combos, languages, types)
    rng = np.random.default_rng(seed)
    mask = allowed_target_combos("heldout" if combos == "heldout" else "all")
    state = sample_scenes(rng, np.zeros(num_scenes, dtype=np.int64), mask)
    content = _fill_bowls(rng, state, 1 if combos == "heldout" else 2)
    heldout = _heldout_mask(state)
    referents = heldout if combos == "heldout" else ~heldout
    images = render(state, image_size)
    py_rng = random.Random(seed)
    rows: list[tuple[int, str, str, str, str]] = []
    for env in range(num_scenes):
        scene = _Scene(state, env, content, referents)
        for qtype in types:
            if combos == "heldout" and qtype == "count":
                continue
            lang = py_rng.choice(languages)
            asked = _ask(scene, qtype, lang, py_rng, combos)
            if asked is None:
                continue
            values, answer = asked
            template = py_rng.choice(TEMPLATES[lang][templates][qtype])
            rows.append((env, fill(template, values), answer, qtype, lang))
    scene_index = np.array([row[0] for row in rows], dtype=np.int64)
    return VQASet(
        images=images[scene_index],
        questions=[row[1] for row in rows],
        answers=[row[2] for row in rows],
        types=[row[3] for row in rows],
        languages=[row[4] for row in rows],
        scene=scene_index,
        items=item_table(state)[scene_index],
    )


def vocabulary_texts(seed: int = 0, num_scenes: int = 400) -> list[str]:
    """Questions and answers of a training-split sample plus every answer word: enough to build
    a tokenizer that knows every training template and answer (held-out wording stays unknown)."""
    sample = generate(seed, num_scenes)
    answers = [*COLORS, *KINDS, *SIZES, *COLOUR_ANSWERS_KO, *KINDS_KO, *SIZE_ANSWERS_KO]
    answers += [w for lang in LANGUAGES for w in (*QUADRANTS[lang], *YES_NO[lang], NOTHING[lang])]
    answers += [str(n) for n in range(6)] + [f"{n}개" for n in range(6)]
    return sample.questions + sample.answers + answers


def write_parquet(data: VQASet, path: str | Path) -> Path:
    """Writes `data` as one parquet file (columns image: PNG bytes, question, answer, type,
    language, scene), atomically (temporary file + rename)."""
    import imageio.v3 as iio
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    pngs = [iio.imwrite("<bytes>", image, extension=".png") for image in data.images]
    table = pa.table({
        "image": pa.array(pngs, type=pa.binary()), "question": data.questions,
        "answer": data.answers, "type": data.types, "language": data.languages,
        "scene": data.scene,
    })  # fmt: skip
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, temporary)
    temporary.replace(path)
    return path


def read_parquet(path: str | Path) -> VQASet:
    """Reads a file written by `write_parquet`; a missing file or column -> InputError naming it."""
    import imageio.v3 as iio
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(f"VQA parquet file not found: {path}")
    table = pq.read_table(path).to_pydict()
    missing = [c for c in ("image", "question", "answer", "type", "language", "scene") if c not in table]  # fmt: skip
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}")
    images = np.stack([iio.imread(io.BytesIO(png), extension=".png") for png in table["image"]])
    return VQASet(images, table["question"], table["answer"], table["type"],
                  table["language"], np.asarray(table["scene"], dtype=np.int64))  # fmt: skip
