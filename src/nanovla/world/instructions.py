"""Instruction templates (English and Korean, training and held-out paraphrases, and a `user`
split of plain-English requests no other template holds) and referring expressions.

Templates have `{object}` and `{place}` slots (sort also `{object2}` and `{place2}`). A slot may be
followed by a Korean particle written in either form (`{object}를`, `{place}로`): the right form
is chosen from the final syllable of the filled-in phrase (받침 -> 을/이/은/과/으로, none -> 를/가/
는/와/로; ㄹ takes 로). Referring expressions are the shortest unique ones in the scene: color +
kind ("the red box"), or size + color + kind ("the small blue ball") when two objects share color
and kind. Departure from a plain "shortest description": kind is always named and color is always
said, so every instruction exercises color grounding (scenes never repeat a full triple, so the
longest form is always unique).
"""

from __future__ import annotations

import re
import string

import numpy as np

from nanovla.errors import InputError
from nanovla.world.scene import COLORS, KINDS, SIZES, ZONES, SceneState
from nanovla.world.tasks import TASK_FAMILIES

COLORS_KO: tuple[str, ...] = ("빨간", "초록", "파란", "노란", "보라")
KINDS_KO: tuple[str, ...] = ("상자", "공")
SIZES_KO: tuple[str, ...] = ("작은", "중간 크기", "큰")
ZONES_KO: tuple[str, ...] = (
    "왼쪽 위 모서리",
    "오른쪽 위 모서리",
    "왼쪽 아래 모서리",
    "오른쪽 아래 모서리",
    "왼쪽 가장자리",
    "오른쪽 가장자리",
    "위쪽 가장자리",
    "아래쪽 가장자리",
)
BOWL_KO = "그릇"

# split -> family -> templates
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "reach": (
            "reach {object}",
            "move the gripper to {object}",
            "go to {object}",
            "touch {object}",
            "put the gripper next to {object}",
        ),
        "push": (
            "push {object} to {place}",
            "slide {object} into {place}",
            "push {object} into {place} without picking it up",
            "move {object} to {place} by pushing it",
            "shove {object} toward {place}",
        ),
        "pick_place": (
            "put {object} in {place}",
            "pick up {object} and place it in {place}",
            "place {object} into {place}",
            "move {object} into {place}",
            "drop {object} in {place}",
        ),
        "sort": (
            "put {object} in {place} and {object2} in {place2}",
            "place {object} into {place}, then {object2} into {place2}",
            "sort: {object} goes in {place}, {object2} goes in {place2}",
            "move {object} to {place} and {object2} to {place2}",
            "pick up {object} and put it in {place}, then put {object2} in {place2}",
        ),
    },
    "heldout": {
        "reach": (
            "approach {object}",
            "bring the gripper up against {object}",
            "make contact with {object}",
        ),
        "push": (
            "nudge {object} over to {place}",
            "without grasping it, get {object} into {place}",
            "drive {object} into {place} with the gripper",
        ),
        "pick_place": (
            "grab {object} and set it down in {place}",
            "transfer {object} to {place}",
            "lift {object} and release it inside {place}",
        ),
        "sort": (
            "{object} belongs in {place} and {object2} belongs in {place2}",
            "first drop {object} into {place}, afterwards {object2} into {place2}",
            "transfer {object} to {place} and {object2} to {place2}",
        ),
    },
    "ko": {
        "reach": (
            "{object}에 닿아",
            "그리퍼를 {object}로 옮겨",
            "{object}를 터치해",
            "{object} 쪽으로 가",
            "{object}까지 이동해",
        ),
        "push": (
            "{object}를 {place}로 밀어",
            "{object}를 밀어서 {place}에 넣어",
            "{object}를 잡지 말고 {place}로 밀어",
            "{object}를 {place} 쪽으로 밀어",
            "{place}까지 {object}를 밀어",
        ),
        "pick_place": (
            "{object}를 {place}에 넣어",
            "{object}를 집어서 {place}에 놓아",
            "{object}를 {place} 안에 놓아",
            "{object}를 {place}로 옮겨",
            "{object}를 {place}에 담아",
        ),
        "sort": (
            "{object}는 {place}에, {object2}는 {place2}에 넣어",
            "{object}를 {place}에 넣고 {object2}를 {place2}에 넣어",
            "{object}를 {place}에, {object2}를 {place2}에 놓아",
            "먼저 {object}를 {place}에 넣고, 그다음 {object2}를 {place2}에 넣어",
            "{object}를 {place}로, {object2}를 {place2}로 옮겨",
        ),
    },
    "ko_heldout": {
        "reach": ("{object}에 그리퍼를 대", "{object}에 접근해", "{object} 옆에 붙어"),
        "push": (
            "{object}를 {place}로 살살 밀어 옮겨",
            "잡지 않고 {object}를 {place}에 가져다 놓아",
            "그리퍼로 {object}를 {place}까지 밀어내",
        ),
        "pick_place": (
            "{object}를 들어 {place}에 내려놓아",
            "{place}에 {object}를 넣어 줘",
            "{object}를 잡아서 {place} 안으로 옮겨",
        ),
        "sort": (
            "{object}와 {object2}를 각각 {place}와 {place2}에 정리해",
            "{object}를 {place}에 담고 {object2}도 {place2}에 담아 줘",
            "{place}에는 {object}를, {place2}에는 {object2}를 넣어 줘",
        ),
    },
    # Plain-English requests as a user would type them: no template of any other split holds
    # them, and their verbs and fillers ("could you", "scoot", "tidy up") are words the training
    # templates never use. An evaluation split of their own (never recorded as demonstrations).
    "user": {
        "reach": (
            "could you move over to {object}",
            "hover right above {object} please",
            "go find {object} and stay by it",
        ),
        "push": (
            "please scoot {object} over into {place}",
            "can you get {object} to {place} but don't lift it",
            "keep it on the table and bump {object} into {place}",
        ),
        "pick_place": (
            "could you take {object} and drop it into {place}",
            "i'd like {object} sitting inside {place}",
            "grab {object} for me and leave it in {place}",
        ),
        "sort": (
            "tidy up please: {object} into {place} and {object2} into {place2}",
            "could you put away {object} in {place} and then {object2} in {place2}",
            "i want {object} inside {place} and {object2} inside {place2}",
        ),
    },
}
SPLITS: tuple[str, ...] = tuple(TEMPLATES)
SLOTS: dict[str, tuple[str, ...]] = {
    "reach": ("object",),
    "push": ("object", "place"),
    "pick_place": ("object", "place"),
    "sort": ("object", "place", "object2", "place2"),
}
"""the slots each family can fill"""

# (form after a final consonant, form after a vowel)
_PARTICLES = (("을", "를"), ("이", "가"), ("은", "는"), ("과", "와"), ("으로", "로"))
_SLOT_RE = re.compile(r"\{(\w+)\}(을|를|이|가|은|는|과|와|으로|로)?")


def is_korean(text: str) -> bool:
    """True if `text` contains a Hangul syllable."""
    return any("\uac00" <= ch <= "\ud7a3" for ch in text)


def particle(word: str, written: str) -> str:
    """The form of Korean particle `written` (either form) that follows `word`."""
    pair = next(p for p in _PARTICLES if written in p)
    last = word[-1] if word else ""
    if not "\uac00" <= last <= "\ud7a3":
        return pair[1]
    final = (ord(last) - 0xAC00) % 28  # 0 = no final consonant, 8 = ㄹ
    if pair[0] == "으로":
        return pair[1] if final in (0, 8) else pair[0]
    return pair[1] if final == 0 else pair[0]


def fill(template: str, values: dict[str, str]) -> str:
    """Fills the slots of `template`, fixing the Korean particle after each slot."""

    def replace(match: re.Match[str]) -> str:
        word = values[match.group(1)]
        return word + (particle(word, match.group(2)) if match.group(2) else "")

    return _SLOT_RE.sub(replace, template)


def template_slots(template: str) -> set[str]:
    """The slot names used by `template`."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def validate_templates(templates: list[str], families: tuple[str, ...]) -> None:
    """Raises ValueError unless every template has `{object}` and only slots its families fill."""
    if not templates:
        raise InputError("instructions: the template list is empty")
    for template in templates:
        slots = template_slots(template)
        if "object" not in slots:
            raise InputError(
                f"instructions: template {template!r} has no {{object}} slot; every template "
                "needs {object} (and may use {place}; sort also {object2}, {place2})"
            )
        for family in families:
            extra = slots - set(SLOTS[family])
            if extra:
                raise InputError(
                    f"instructions: template {template!r} uses slots {sorted(extra)} that task "
                    f"{family!r} cannot fill; allowed slots: {list(SLOTS[family])}"
                )


def resolve_templates(
    instructions: str | list[str] | tuple[str, ...], families: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    """Family -> template pool for a split name, "+"-joined split names, or a user list."""
    if isinstance(instructions, str):
        names = instructions.split("+")
        bad = [name for name in names if name not in SPLITS]
        if bad:
            raise InputError(
                f"instructions: unknown split {bad[0]!r}; choose one of {SPLITS}, several joined "
                "with '+' (e.g. 'train+ko'), or a list of templates"
            )
        return {f: tuple(t for name in names for t in TEMPLATES[name][f]) for f in families}
    templates = list(instructions)
    validate_templates(templates, families)
    return {f: tuple(templates) for f in families}


def describe(state: SceneState, env: int, slot: int, korean: bool) -> str:
    """The shortest unique referring expression for object `slot` of env `env`."""
    kind, color, size = (
        int(a[env, slot]) for a in (state.obj_kind, state.obj_color, state.obj_size)
    )
    same = state.obj_active[env] & (state.obj_kind[env] == kind) & (state.obj_color[env] == color)
    full = int(same.sum()) > 1
    if korean:
        words = [SIZES_KO[size]] if full else []
        return " ".join([*words, COLORS_KO[color], KINDS_KO[kind]])
    words = [SIZES[size]] if full else []
    return "the " + " ".join([*words, COLORS[color], KINDS[kind]])


def place_name(state: SceneState, env: int, k: int, korean: bool) -> str:
    """The name of target place k of env `env`: a colored bowl, or a zone for push."""
    place = int(state.target_place[env, k])
    if int(state.family[env]) == 1:  # push: a zone
        zone = int(state.zone_id[env, place])
        return ZONES_KO[zone] if korean else ZONES[zone]
    color = int(state.bowl_color[env, place])
    return f"{COLORS_KO[color]} {BOWL_KO}" if korean else f"the {COLORS[color]} bowl"


def instruction_text(state: SceneState, env: int, template: str) -> str:
    """Fills `template` for env `env` in the template's language."""
    korean = is_korean(template)
    values = {"object": describe(state, env, int(state.target_obj[env, 0]), korean)}
    if int(state.family[env]) != 0:
        values["place"] = place_name(state, env, 0, korean)
    if int(state.target_obj[env, 1]) >= 0:
        values["object2"] = describe(state, env, int(state.target_obj[env, 1]), korean)
        values["place2"] = place_name(state, env, 1, korean)
    return fill(template, values)


def sample_instructions(
    rng: np.random.Generator,
    state: SceneState,
    envs: np.ndarray,
    pools: dict[str, tuple[str, ...]],
) -> list[str]:
    """One instruction per env in `envs`, its template drawn uniformly from the family's pool.

    Strings cannot be vectorized; this loop runs once per *episode*, never per step.
    """
    sizes = np.array([len(pools[TASK_FAMILIES[int(f)]]) for f in state.family[envs]])
    picks = (rng.random(len(envs)) * sizes).astype(np.int64)
    texts = []
    for env, pick in zip(envs.tolist(), picks.tolist(), strict=True):
        family = TASK_FAMILIES[int(state.family[env])]
        texts.append(instruction_text(state, env, pools[family][pick]))
    return texts
