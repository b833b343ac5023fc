"""Image-caption pairs generated from world scenes, for CLIP and the captioning / VQA models.

    seeded scenes (world.scene.sample_scenes) -> attributes kept inside the split's combos
    -> world.render.Renderer frames (N, H, W, 3) uint8
    -> captions per style and language, filled from templates of the chosen template split

Caption styles (each image gets one caption of every style, in English and Korean):

- ``scene``: every object and bowl, in random order ("a table with a small red box, a large
  blue ball and a green bowl" / "테이블 위에 작은 빨간 상자, ... 있다");
- ``object``: one object, the *focus* (slot 0), named by size + colour + kind, colour + kind,
  size + kind or kind alone (`PHRASES`: "a photo of a red box", "a small ball");
- ``relation``: the focus object against another object or a bowl, along the axis where they
  are furthest apart ("the red box left of the blue bowl" / "빨간 상자는 파란 그릇의 왼쪽에
  있다"); with nothing else on the table, against the table ("the red box on the left side of
  the table"). The image's y axis points down, so "above" means a smaller y.

Held-out splits (compositional tests, as the world's instruction templates have):

- template splits ``train`` / ``heldout``: disjoint sets of caption templates per style and
  language (the held-out ones are never seen in training);
- data splits: ``train``, ``val`` and ``test`` draw fresh seeded scenes in which *no* object is
  one of the world's held-out (kind, color) combos (`world.scene.HELDOUT_COMBOS`: green ball,
  purple box); ``heldout_combos`` scenes have a held-out combo as the focus object (slot 0; the
  other objects are again from the training combos). Each split draws from its own seeded
  stream (`numpy.random.default_rng([seed, split index])`).
- ``single_object=True`` leaves only the focus object on the table (bowls removed): the images
  zero-shot classification is scored on.

Departure from the world's own `annotate.caption_en`: those captions also list the zones and the
gripper, ~3x longer; these name only what is asked about, so the text encoder trains faster.
`data/captions_parquet.write_captions` stores a set once as parquet (LeRobot-like conventions)
and `read_captions` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nanovla.errors import InputError
from nanovla.world.instructions import BOWL_KO, COLORS_KO, KINDS_KO, SIZES_KO, particle
from nanovla.world.render import Renderer
from nanovla.world.scene import (
    COLORS,
    COMBOS,
    KINDS,
    MAX_OBJECTS,
    SIZES,
    SceneState,
    allowed_target_combos,
    sample_scenes,
)

SPLITS: tuple[str, ...] = ("train", "val", "test", "heldout_combos")
STYLES: tuple[str, ...] = ("scene", "object", "relation")
LANGUAGES: tuple[str, ...] = ("en", "ko")
TEMPLATE_SPLITS: tuple[str, ...] = ("train", "heldout")
RELATIONS_EN: tuple[str, ...] = ("left of", "right of", "above", "below")
RELATIONS_KO: tuple[str, ...] = ("왼쪽", "오른쪽", "위", "아래")
SIDES_EN: tuple[str, ...] = ("left", "right", "top", "bottom")
SIDES_KO: tuple[str, ...] = ("왼쪽", "오른쪽", "위쪽", "아래쪽")

# template split -> style -> language -> templates. Slots: {np} (object noun phrase), {things},
# {subj}, {rel}, {ref}, {side}; a Korean slot may carry a particle as in world.instructions.
TEMPLATES: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "train": {
        "scene": {
            "en": ("a table with {things}", "on the table: {things}", "{things} on a table"),
            "ko": ("테이블 위에 {things}{가} 있다", "{things}{가} 놓인 테이블"),
        },
        "object": {
            "en": ("a {np}", "a photo of a {np}", "there is a {np} on the table"),
            "ko": ("{np}", "{np} 사진", "테이블 위에 {np}{가} 있다"),
        },
        "relation": {
            "en": ("the {subj} {rel} the {ref}", "the {subj} is {rel} the {ref}"),
            "ko": ("{ref}의 {rel}에 {subj}{가} 있다", "{subj}{는} {ref}의 {rel}에 있다"),
        },
        "side": {
            "en": ("the {subj} on the {side} side of the table",),
            "ko": ("테이블의 {side}에 {subj}{가} 있다",),
        },
    },
    "heldout": {
        "scene": {
            "en": ("this scene contains {things}", "we can see {things}"),
            "ko": ("이 장면에는 {things}{가} 있다",),
        },
        "object": {
            "en": ("an image showing a {np}", "a {np} can be seen"),
            "ko": ("{np}{가} 보이는 이미지", "{np} 하나"),
        },
        "relation": {
            "en": ("you can find the {subj} {rel} the {ref}",),
            "ko": ("{ref}{를} 기준으로 {rel}에 {subj}{가} 있다",),
        },
        "side": {
            "en": ("you can find the {subj} on the {side} side of the table",),
            "ko": ("{subj}{는} 테이블의 {side}에 놓여 있다",),
        },
    },
}


@dataclass
class CaptionSet:
    """N images with captions and the attributes they were generated from.

    images: (N, H, W, 3) uint8. captions[style][language]: N strings. focus: (N,) object slot
    the "object" caption names (always 0). reference: (N,) what the "relation" caption relates
    the focus to: an object slot 0..4, a bowl 5 + b, or -1 = the table. relation: (N,) index
    into RELATIONS_EN (or SIDES_EN when reference is -1). labels: "color", "kind", "size" of the
    focus object (N,) int64 indices into world.scene COLORS / KINDS / SIZES, and "num_objects"
    (N,). state: the full SceneState the images were rendered from (for VQA questions).
    """

    images: np.ndarray
    captions: dict[str, dict[str, list[str]]]
    labels: dict[str, np.ndarray]
    focus: np.ndarray
    reference: np.ndarray
    relation: np.ndarray
    state: SceneState
    split: str
    templates: str

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{name}: unknown value {value!r}; choose one of {', '.join(allowed)}")


def _recolor(
    state: SceneState, rng: np.random.Generator, slots: range, allowed: np.ndarray
) -> None:
    """Gives every active object in `slots` whose combo is not `allowed` a new colour that makes
    an allowed combo and keeps the scene's (kind, color, size) triples distinct. Sizes stay, so
    the sampled layout (which depends on sizes only) stays valid, unless no colour is left at
    that size (e.g. five medium boxes and four box colours): then the object shrinks to the
    largest smaller size that has one (its clearance only grows), and if none has, it keeps
    its size and shares a triple with another object."""
    combo = state.obj_kind * 15 + state.obj_color * 3 + state.obj_size  # (N, M)
    bad = ~allowed[combo] & state.obj_active
    bad[:, [m for m in range(MAX_OBJECTS) if m not in slots]] = False
    for env, slot in zip(*np.nonzero(bad), strict=True):
        kind, size = state.obj_kind[env, slot], state.obj_size[env, slot]
        taken = set(combo[env][state.obj_active[env]].tolist())
        colours = rng.permutation(len(COLORS)).tolist()
        choice = next(
            ((c, s) for s in range(size, -1, -1) for c in colours
             if allowed[kind * 15 + c * 3 + s] and kind * 15 + c * 3 + s not in taken),
            None,
        )  # fmt: skip
        if choice is None:  # every allowed triple of this kind is taken: share one
            choice = (next(c for c in colours if allowed[kind * 15 + c * 3 + size]), size)
        state.obj_color[env, slot], state.obj_size[env, slot] = choice
        combo[env, slot] = kind * 15 + choice[0] * 3 + choice[1]


def sample_caption_scenes(
    split: str, count: int, seed: int = 0, single_object: bool = False
) -> SceneState:
    """`count` seeded scenes of data split `split` (see the module docstring)."""
    _check("split", split, SPLITS)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputError(f"count: must be a positive integer, got {count!r}")
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 7919])
    train = allowed_target_combos("train")
    first = allowed_target_combos("heldout") if split == "heldout_combos" else train
    state = sample_scenes(rng, np.zeros(count, dtype=np.int64), first)
    start = 1 if split == "heldout_combos" else 0
    _recolor(state, rng, range(start, MAX_OBJECTS), train)
    if single_object:
        state.obj_active[:, 1:] = False
        state.obj_pos[:, 1:] = -1.0
        state.bowl_pos[:] = -1.0  # off the table: the renderer drops every bowl pixel
    return state


def _object_names(state: SceneState, env: int, korean: bool) -> list[str]:
    """Full noun phrases (size color kind) of every slot (inactive slots included)."""
    sizes, colors, kinds = (SIZES_KO, COLORS_KO, KINDS_KO) if korean else (SIZES, COLORS, KINDS)
    return [
        f"{sizes[s]} {colors[c]} {kinds[k]}"
        for k, c, s in zip(state.obj_kind[env], state.obj_color[env], state.obj_size[env])
    ]


def _short_name(state: SceneState, env: int, slot: int, korean: bool) -> str:
    """The shortest unique name of object `slot`: color + kind, or size + color + kind."""
    same = (
        state.obj_active[env]
        & (state.obj_kind[env] == state.obj_kind[env, slot])
        & (state.obj_color[env] == state.obj_color[env, slot])
    )
    if same.sum() > 1:
        return _object_names(state, env, korean)[slot]
    color, kind = state.obj_color[env, slot], state.obj_kind[env, slot]
    return f"{COLORS_KO[color]} {KINDS_KO[kind]}" if korean else f"{COLORS[color]} {KINDS[kind]}"


PHRASES: tuple[tuple[str, ...], ...] = (
    ("size", "color", "kind"),
    ("color", "kind"),
    ("size", "kind"),
    ("kind",),
)
"""the attribute subsets an "object" caption names its object by (drawn with PHRASE_WEIGHTS):
naming the kind alone or with the size only makes the models bind kind and size to the shape,
not to the colour that happens to go with it"""
PHRASE_WEIGHTS = np.array([0.45, 0.25, 0.2, 0.1])


def object_phrase(state: SceneState, env: int, slot: int, korean: bool, phrase: int = 0) -> str:
    """Object `slot` of env `env` named by the attributes of PHRASES[phrase] ("small box")."""
    words = {"size": SIZES_KO if korean else SIZES, "color": COLORS_KO if korean else COLORS}
    words["kind"] = KINDS_KO if korean else KINDS
    values = {"size": state.obj_size, "color": state.obj_color, "kind": state.obj_kind}
    return " ".join(words[name][int(values[name][env, slot])] for name in PHRASES[phrase])


def fill_caption(template: str, values: dict[str, str]) -> str:
    """Fills a caption template's `{slot}` and `{slot}{particle}` slots (see TEMPLATES)."""
    return _fill(template, values)


def _item_name(state: SceneState, env: int, item: int, korean: bool) -> str:
    if item < MAX_OBJECTS:
        return _short_name(state, env, item, korean)
    color = state.bowl_color[env, item - MAX_OBJECTS]
    return f"{COLORS_KO[color]} {BOWL_KO}" if korean else f"{COLORS[color]} bowl"


def _fill(template: str, values: dict[str, str]) -> str:
    """Fills `{slot}` and `{slot}{particle}` (the particle form chosen from the filled word)."""
    for name, word in values.items():
        for written in ("가", "는", "를"):
            template = template.replace(f"{{{name}}}{{{written}}}", word + particle(word, written))
        template = template.replace(f"{{{name}}}", word)
    return template


def _pick_references(state: SceneState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per env a reference item (another object, a bowl, or -1 = the table) and the relation of
    the focus object to it (RELATIONS_EN index; SIDES_EN index when the reference is the table)."""
    n = state.gripper.shape[0]
    on_table = np.concatenate(
        [state.obj_active, (state.bowl_pos >= 0).all(axis=-1)], axis=1
    )  # (N, M + B)
    on_table[:, 0] = False
    keys = np.where(on_table, rng.random(on_table.shape), -1.0)
    reference = np.where(on_table.any(axis=1), keys.argmax(axis=1), -1)
    positions = np.concatenate([state.obj_pos, state.bowl_pos], axis=1)  # (N, M + B, 2)
    centre = np.full((n, 2), 0.5)
    other = np.where((reference >= 0)[:, None], positions[np.arange(n), reference], centre)
    delta = state.obj_pos[:, 0] - other  # focus minus reference, (N, 2)
    horizontal = np.abs(delta[:, 0]) >= np.abs(delta[:, 1])
    relation = np.where(
        horizontal, np.where(delta[:, 0] < 0, 0, 1), np.where(delta[:, 1] < 0, 2, 3)
    )
    return reference, relation


def _captions_for(
    state: SceneState, env: int, reference: int, relation: int, korean: bool, rng, templates
) -> dict[str, str]:
    """The three captions of env `env` in one language."""
    lang = "ko" if korean else "en"
    names = _object_names(state, env, korean)
    active = np.flatnonzero(state.obj_active[env])
    things = [names[m] for m in active]
    if (state.bowl_pos[env] >= 0).all():
        things += [_item_name(state, env, MAX_OBJECTS + b, korean) for b in range(2)]
    if not korean:
        things = [f"a {thing}" for thing in things]
    things = [things[i] for i in rng.permutation(len(things))]
    listed = ", ".join(things) if korean else _join_en(things)
    focus_np = object_phrase(
        state, env, 0, korean, rng.choice(len(PHRASE_WEIGHTS), p=PHRASE_WEIGHTS)
    )
    subj = _short_name(state, env, 0, korean)
    if reference >= 0:
        rel = (RELATIONS_KO if korean else RELATIONS_EN)[relation]
        relation_values = {
            "subj": subj,
            "rel": rel,
            "ref": _item_name(state, env, reference, korean),
        }
        relation_style = "relation"
    else:
        relation_values = {"subj": subj, "side": (SIDES_KO if korean else SIDES_EN)[relation]}
        relation_style = "side"
    pick = lambda style: templates[style][lang][rng.integers(len(templates[style][lang]))]  # noqa: E731
    return {
        "scene": _fill(pick("scene"), {"things": listed}),
        "object": _fill(pick("object"), {"np": focus_np}),
        "relation": _fill(pick(relation_style), relation_values),
    }


def _join_en(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def make_captions(
    split: str,
    count: int,
    seed: int = 0,
    image_size: int = 64,
    single_object: bool = False,
    templates: str = "train",
) -> CaptionSet:
    """`count` image-caption pairs of data split `split` with captions from template split
    `templates` ("train" or "heldout"). The same arguments always give the same set."""
    _check("templates", templates, TEMPLATE_SPLITS)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
        raise InputError(f"image_size: must be an integer >= 16, got {image_size!r}")
    state = sample_caption_scenes(split, count, seed, single_object)
    renderer = Renderer(image_size)
    static, _ = renderer.static(state)
    images = renderer.rgb(state, static)
    rng = np.random.default_rng([int(seed), SPLITS.index(split), TEMPLATE_SPLITS.index(templates)])
    reference, relation = _pick_references(state, rng)
    captions: dict[str, dict[str, list[str]]] = {
        s: {lang: [] for lang in LANGUAGES} for s in STYLES
    }
    for env in range(count):
        for lang in LANGUAGES:
            texts = _captions_for(
                state, env, int(reference[env]), int(relation[env]), lang == "ko", rng,
                TEMPLATES[templates],
            )  # fmt: skip
            for style in STYLES:
                captions[style][lang].append(texts[style])
    labels = {
        "color": state.obj_color[:, 0].copy(),
        "kind": state.obj_kind[:, 0].copy(),
        "size": state.obj_size[:, 0].copy(),
        "num_objects": state.obj_active.sum(axis=1),
    }
    focus = np.zeros(count, dtype=np.int64)
    return CaptionSet(images, captions, labels, focus, reference, relation, state, split, templates)


def combo_index(kind: np.ndarray, color: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Index into world.scene.COMBOS of each (kind, color, size)."""
    return np.asarray(kind) * 15 + np.asarray(color) * 3 + np.asarray(size)


assert (COMBOS[combo_index(COMBOS[:, 0], COMBOS[:, 1], COMBOS[:, 2])] == COMBOS).all()
