"""The VQA questions' wording: training and held-out templates per language and type, and the
answer words (`data/vqa.py` asks the questions)."""

from __future__ import annotations

from nanovla.world.instructions import COLORS_KO

# language -> split -> type -> templates. {ref}: referring expression; {things}: what to count.
TEMPLATES: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "en": {
        "train": {
            "colour": ("what colour is {ref}?", "what color is {ref}?", "which colour is {ref}?",
                       "what is the colour of {ref}?", "what colour does {ref} have?",
                       "name the colour of {ref}.", "{ref} is which colour?",
                       "what is the color of {ref}?", "say which colour {ref} is."),
            "kind": ("what kind of object is {ref}?", "is {ref} a box or a ball?",
                     "what shape is {ref}?", "what type of object is {ref}?",
                     "is {ref} a ball or a box?", "which shape does {ref} have?",
                     "what is {ref}, a box or a ball?", "name the shape of {ref}.",
                     "say what kind of object {ref} is."),
            "size": ("what size is {ref}?", "how big is {ref}?",
                     "is {ref} small, medium or large?", "what is the size of {ref}?",
                     "how large is {ref}?", "which size is {ref}?",
                     "is {ref} large, medium or small?", "name the size of {ref}.",
                     "say how big {ref} is."),
            "count": ("how many {things} are there?", "count the {things}.",
                      "how many {things} are on the table?", "what is the number of {things}?",
                      "how many {things} can you count?", "count the {things} on the table.",
                      "how many {things} do you see?", "what number of {things} is there?",
                      "say how many {things} there are."),
            "position": ("where is {ref}?", "in which part of the table is {ref}?",
                         "where on the table is {ref}?", "where is {ref} on the table?",
                         "in which quadrant is {ref}?", "where can {ref} be found?",
                         "what part of the table holds {ref}?", "where does {ref} lie?",
                         "say where {ref} is."),
            "exists": ("is there {ref}?", "is there {ref} on the table?", "can you see {ref}?",
                       "is {ref} on the table?", "do you see {ref}?",
                       "does the scene contain {ref}?", "is {ref} visible?",
                       "can i find {ref} here?", "say if there is {ref}."),
            "bowl": ("what is in {ref}?", "what does {ref} hold?", "which object is in {ref}?",
                     "what is inside {ref}?", "what lies in {ref}?",
                     "what object does {ref} contain?", "what has been put in {ref}?",
                     "name the object in {ref}.", "say what is in {ref}."),
        },
        "heldout": {
            "colour": ("tell me the colour of {ref}.",),
            "kind": ("which kind of thing is {ref}?",),
            "size": ("tell me the size of {ref}.",),
            "count": ("tell me how many {things} you see.",),
            "position": ("which part of the table is {ref} in?",),
            "exists": ("does the table have {ref} on it?",),
            "bowl": ("what can you see in {ref}?",),
        },
    },
    "ko": {
        "train": {
            "colour": ("{ref}는 무슨 색이야?", "{ref}는 어떤 색이야?", "{ref}의 색깔은?",
                       "{ref}는 무슨 색깔이야?", "{ref}의 색상은 무엇이야?", "{ref}는 어떤 색깔이니?",
                       "{ref} 색깔 좀 말해 줘.", "{ref}는 무슨 색으로 칠해져 있어?"),
            "kind": ("{ref}는 무슨 종류야?", "{ref}는 상자야 공이야?", "{ref}는 어떤 모양이야?",
                     "{ref}는 어떤 종류의 물건이야?", "{ref}의 모양은?", "{ref}는 공이야 상자야?",
                     "{ref}는 무엇이야?", "{ref} 모양 좀 말해 줘."),
            "size": ("{ref}는 얼마나 커?", "{ref}의 크기는?", "{ref}는 어떤 크기야?",
                     "{ref}의 크기는 어때?", "{ref}는 얼마나 크니?", "{ref}는 큰 편이야 작은 편이야?",
                     "{ref}는 크기가 어느 정도야?", "{ref} 크기 좀 말해 줘."),
            "count": ("{things}는 몇 개 있어?", "{things}를 세어 봐.", "테이블 위에 {things}는 몇 개야?",
                      "{things}는 모두 몇 개야?", "{things}의 개수는?", "{things}가 몇 개 보여?",
                      "{things}는 몇 개니?", "{things} 개수 좀 말해 줘."),
            "position": ("{ref}는 어디에 있어?", "{ref}는 테이블의 어느 쪽에 있어?", "{ref}의 위치는?",
                         "{ref}는 어디 있니?", "{ref}는 테이블 어디에 있어?", "{ref}가 놓인 곳은 어디야?",
                         "{ref}의 자리는 어디야?", "{ref} 위치 좀 말해 줘."),
            "exists": ("{ref}가 있어?", "테이블 위에 {ref}가 있어?", "{ref}가 보여?",
                       "{ref}가 테이블에 있니?", "{ref}를 찾을 수 있어?", "{ref}가 있니?",
                       "테이블에 {ref}가 놓여 있어?", "{ref}가 있는지 말해 줘."),
            "bowl": ("{ref}에 뭐가 있어?", "{ref} 안에 무엇이 들어 있어?", "{ref}에 든 것은?",
                     "{ref} 속에 뭐가 있어?", "{ref}에는 무엇이 있니?", "{ref}에 들어 있는 것은 뭐야?",
                     "{ref} 안을 보면 뭐가 있어?", "{ref}에 뭐가 들었는지 말해 줘."),
        },
        "heldout": {
            "colour": ("{ref}의 색은 뭐야?",),
            "kind": ("{ref}의 종류를 알려 줘.",),
            "size": ("{ref}의 크기를 알려 줘.",),
            "count": ("{things}가 몇 개인지 알려 줘.",),
            "position": ("{ref}의 위치를 알려 줘.",),
            "exists": ("테이블에 {ref}가 보이니?",),
            "bowl": ("{ref} 안에는 뭐가 있니?",),
        },
    },
}  # fmt: skip

COLOUR_ANSWERS_KO = tuple(f"{c}색" for c in COLORS_KO)
SIZE_ANSWERS_KO = ("작다", "중간", "크다")
QUADRANTS = {"en": ("top left", "top right", "bottom left", "bottom right"),
             "ko": ("왼쪽 위", "오른쪽 위", "왼쪽 아래", "오른쪽 아래")}  # fmt: skip
YES_NO = {"en": ("yes", "no"), "ko": ("네", "아니요")}
NOTHING = {"en": "nothing", "ko": "없음"}
