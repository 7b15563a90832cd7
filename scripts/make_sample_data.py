"""Generate the bundled synthetic Korean dialogue-summarization sample.

    python scripts/make_sample_data.py [--seed 42] [--out raysum/resources/data]

writes train.csv and dev.csv (fname,dialogue,summary,topic) and test.csv
(fname,dialogue,summary1,summary2,summary3,topic) in the competition format, then
prints counts, lengths and the mean pairwise ROUGE-L between the three test
references. Output is a pure function of the seed: the shipped files are exactly
what `--seed 42` writes.

Each topic is a slot sampler, a few dialogue scripts and several summary templates.
A dialogue is one script filled with sampled slots (names, times, places, prices),
with alternative wordings, spoken fillers, optional small talk, an occasional
masked personal detail (#PhoneNumber#, #Address#, ...) and sometimes a third
speaker. Its summaries are report-style templates over the same slots, so a small
model can learn the mapping from a few hundred examples while the wording varies.

References are not all complete copies of the dialogue's facts, as human ones are not:
some are brief gists that leave most details out, some leave the aside (the masked
detail, the third speaker) unreported, and each writer puts some times, days and head
counts their own way ("네 명" for "4명"). Without that, the candidate that copies the
most of the dialogue is nearly always the best one, which made stacking look far better
on this sample than on human-written data.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import string
import sys
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Callable

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "raysum" / "resources" / "data"
SPLIT_SIZES = {"train": 1600, "dev": 220, "test": 220}
TEST_REFERENCES = 3
MASK_RATE = 0.08          # share of dialogues that mention a masked personal detail
GUEST_RATE = 0.35         # share of dialogues with a third speaker, where the topic allows one
SMALL_TALK_RATE = 0.25
FILLER_RATE = 0.2
ASIDE_REPORT_RATE = 0.75  # share of references that report the masked detail or the third speaker
REWORD_RATE = 0.4         # chance that a reference writes a time, day or head count its own way

# ---------------------------------------------------------------- Korean particles

# Particle pairs (after a final consonant, after a vowel). A template writes
# "{name:이에요}" and gets "김민수예요" or "이지은이에요".
_PARTICLE_PAIRS = [
    ("은", "는"), ("이", "가"), ("을", "를"), ("과", "와"), ("으로", "로"),
    ("이에요", "예요"), ("이요", "요"), ("이라고", "라고"), ("이죠", "죠"), ("이고", "고"),
    ("이다", "다"), ("이면", "면"), ("이며", "며"), ("이라서", "라서"), ("이고요", "고요"),
]
PARTICLES = {form: pair for pair in _PARTICLE_PAIRS for form in pair}
# How the competition's tags and digits are read aloud decides their particle.
_TAG_FINAL = {"#Person1#": True, "#Person2#": False, "#Person3#": False, "#PhoneNumber#": False,
              "#Address#": False, "#Email#": True, "#CardNumber#": False, "#CarNumber#": False,
              "#DateOfBirth#": False}
_DIGIT_FINAL = {"0": "ㅇ", "1": "ㄹ", "2": "", "3": "ㅁ", "4": "", "5": "", "6": "ㄱ", "7": "ㄹ",
                "8": "ㄹ", "9": ""}


def _final_consonant(word: str) -> str:
    """The final consonant ('' for none, 'ㄹ' for rieul, 'x' for another) of the last syllable."""
    for tag, has_final in _TAG_FINAL.items():
        if word.endswith(tag):
            return "x" if has_final else ""
    core = word.rstrip("』」'\" )")
    last = core[-1] if core else ""
    if "가" <= last <= "힣":
        jong = (ord(last) - ord("가")) % 28
        return "" if jong == 0 else ("ㄹ" if jong == 8 else "x")
    return _DIGIT_FINAL.get(last, "")


def attach(word: str, particle: str) -> str:
    """`word` followed by the form of `particle` that fits its last sound."""
    after_consonant, after_vowel = PARTICLES[particle]
    final = _final_consonant(word)
    if after_consonant == "으로":
        return word + ("으로" if final == "x" else "로")
    return word + (after_consonant if final else after_vowel)


class _KoreanFormatter(string.Formatter):
    def format_field(self, value, format_spec):
        if format_spec in PARTICLES:
            return attach(str(value), format_spec)
        return super().format_field(value, format_spec)


_FORMATTER = _KoreanFormatter()


def fill(template: str, slots: dict[str, str]) -> str:
    return _FORMATTER.format(template, **slots)


# ---------------------------------------------------------------- slot values

SURNAMES = "김 이 박 최 정 강 조 윤 장 임 한 오 서 신 권 황 안 송 류 홍".split()
GIVEN_NAMES = ("민수 지은 서연 도윤 하준 지우 수빈 현우 예린 준호 은지 태민 소연 지훈 유진 성민 다은 재원 "
               "하은 민재 수아 건우 채원 동현 나연 승우 보람 경민 혜진 우진 가은 상훈 미나 정호 윤서 시우 "
               "아름 진영 세영 한결").split()
WEEKDAYS = "월요일 화요일 수요일 목요일 금요일 토요일 일요일".split()


def person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES)


def day(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(["내일", "모레"])
    if roll < 0.6:
        return rng.choice(["이번 주 ", "다음 주 ", ""]) + rng.choice(WEEKDAYS)
    return f"{rng.randint(1, 12)}월 {rng.randint(1, 28)}일"


def clock(rng: random.Random, first: int = 9, last: int = 21) -> str:
    hour = rng.randint(first, last)
    minute = rng.choice(["", "", "", " 반", " 30분", " 10분", " 40분"])
    if hour < 12:
        period = "아침" if hour <= 8 else rng.choice(["오전", "아침"]) if hour == 9 else "오전"
        return f"{period} {hour}시{minute}"
    if hour == 12:
        return f"낮 12시{minute}"
    period = "오후" if hour < 18 else rng.choice(["저녁", "오후"])
    return f"{period} {hour - 12}시{minute}"


def won(rng: random.Random, low: int, high: int, step: int = 1000) -> str:
    amount = rng.randrange(low, high + 1, step)
    man, cheon = divmod(amount // 1000, 10)
    if man and cheon:
        return f"{man}만 {cheon}천 원"
    return f"{man}만 원" if man else f"{cheon}천 원"


def count(rng: random.Random, low: int, high: int, unit: str = "명") -> str:
    return f"{rng.randint(low, high)}{unit}"


# ---------------------------------------------------------------- topic schema


@dataclass(frozen=True)
class Turn:
    speaker: int
    lines: tuple[str, ...]     # alternative wordings, one is picked
    keep: float = 1.0          # probability that the turn appears at all
    closing: bool = False      # small talk and asides go before the first closing turn


def turn(speaker: int, *lines: str, keep: float = 1.0) -> Turn:
    return Turn(speaker, lines, keep)


def bye(speaker: int, *lines: str, keep: float = 1.0) -> Turn:
    return Turn(speaker, lines, keep, closing=True)


@dataclass(frozen=True)
class Aside:
    """Turns inserted before the closing turn, and the summary sentence that reports them."""
    turns: tuple[Turn, ...]
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class Topic:
    name: str
    slots: Callable[[random.Random], dict[str, str]]
    scripts: tuple[tuple[Turn, ...], ...]
    summaries: tuple[str, ...]   # every template uses only slots that every script mentions
    gists: tuple[str, ...] = ()  # brief summaries that leave most details out
    mask: Aside | None = None    # a masked personal detail
    guest: Aside | None = None   # a third speaker, for conversations among friends or colleagues


TOPICS: list[Topic] = []
_TAGS = {"P1": "#Person1#", "P2": "#Person2#", "P3": "#Person3#"}


def register_topic(name: str, slots, scripts, summaries, gists=(), mask=None, guest=None) -> None:
    topic = Topic(name, slots, tuple(tuple(s) for s in scripts), tuple(summaries), tuple(gists), mask, guest)
    _check_topic(topic)
    TOPICS.append(topic)


def _fields(template: str) -> set[str]:
    found = set()
    for _, field_name, spec, _ in string.Formatter().parse(template):
        if field_name is not None:
            if spec and spec not in PARTICLES:
                raise ValueError(f"unknown particle {spec!r} in {template!r}")
            found.add(field_name)
    return found


def _check_topic(topic: Topic) -> None:
    """Every slot a summary reports must be said in every script, whichever wording is picked
    (a slot `x` counts as said when its spoken paraphrase `x_talk` is)."""
    slots = set(topic.slots(random.Random(0))) | set(_TAGS)
    asides = [aside for aside in (topic.mask, topic.guest) if aside is not None]
    for text in [line for script in topic.scripts + tuple(a.turns for a in asides) for t in script for line in t.lines]:
        if not _fields(text) <= slots:
            raise ValueError(f"{topic.name}: {text!r} uses unknown slots {_fields(text) - slots}")
    for script in topic.scripts:
        said = set(_TAGS)
        for t in script:
            if t.keep >= 1.0:
                said |= set.intersection(*[_fields(line) for line in t.lines])
        said |= {name[:-len("_talk")] for name in said if name.endswith("_talk")}
        for template in topic.summaries + topic.gists:
            if missing := _fields(template) - said:
                raise ValueError(f"{topic.name}: {template!r} reports {missing}, not said in every script")
    for aside in asides:
        for text in aside.sentences:
            if not _fields(text) <= slots:
                raise ValueError(f"{topic.name}: {text!r} uses unknown slots")


def masked(tag: str, ask: tuple[str, ...], answer: tuple[str, ...], sentences: tuple[str, ...]) -> Aside:
    """#Person2# asks for a personal detail, #Person1# gives it as a competition mask tag."""
    if not all(tag in line for line in answer + sentences):
        raise ValueError(f"every answer and summary sentence must carry {tag}")
    return Aside((Turn(2, ask), Turn(1, answer)), sentences)


# ---------------------------------------------------------------- topics

register_topic(
    "식당 예약",
    lambda rng: dict(
        place=rng.choice(["바다횟집", "한옥정", "소담식당", "라 피아짜", "청담 스테이크하우스", "진미 중식당",
                          "하루 스시", "들꽃 한정식", "봄날 브런치", "장터 국밥"]),
        day=day(rng), time=clock(rng, 11, 21), n=count(rng, 2, 12), name=person(rng),
        req=rng.choice(["창가 자리", "룸", "조용한 안쪽 자리", "테라스 자리", "구석 자리", "단체석"])),
    [[turn(1, "여보세요, {place:이죠}? 예약 좀 하려고 하는데요.", "안녕하세요, {place:이죠}? 자리 예약하고 싶어서 전화했어요."),
      turn(2, "네, {place}입니다. 언제 방문하실 예정이세요?", "네, 맞습니다. 날짜랑 시간 말씀해 주시겠어요?"),
      turn(1, "{day} {time}에 가능할까요?", "{day} {time}쯤으로 하고 싶어요."),
      turn(2, "몇 분이서 오세요?", "인원은 몇 분이세요?"),
      turn(1, "{n:이에요}.", "저까지 해서 {n:이요}."),
      turn(2, "네, 그 시간에 자리 있습니다. 예약자 성함이 어떻게 되세요?", "확인해 보니 가능하네요. 성함 부탁드릴게요."),
      turn(1, "{name:이에요}. 그리고 혹시 {req:으로} 부탁드릴 수 있을까요?", "{name:이라고} 해 주세요. 가능하면 {req:으로} 해 주세요."),
      turn(2, "네, {req:으로} 준비해 두겠습니다.", "알겠습니다. {req:으로} 메모해 둘게요."),
      bye(1, "감사합니다. 그럼 그때 뵐게요.", "네, 고맙습니다.", keep=0.7)],
     [turn(2, "{place}입니다, 무엇을 도와드릴까요?", "감사합니다, {place}입니다."),
      turn(1, "안녕하세요. {day}에 예약 가능한지 여쭤보려고요.", "{day}에 자리 하나 예약하고 싶어서요."),
      turn(2, "네, 몇 시로 생각하세요?", "몇 시쯤 오실 건가요?"),
      turn(1, "{time:으로}요. 인원은 {n:이에요}.", "음, {time}쯤이요. {n} 갈 거예요."),
      turn(2, "{day} {time}, {n} 가능합니다. 성함이 어떻게 되시죠?", "잠시만요... 네, 됩니다. 성함 알려 주시겠어요?"),
      turn(1, "{name:이에요}. 아, 그리고 {req:이} 있으면 좋겠어요.", "{name:이요}. 혹시 {req:으로} 앉을 수 있을까요?"),
      turn(2, "{req:은} 지금 하나 남아 있어요. 그쪽으로 잡아 드릴게요.", "네, {req:으로} 배정해 드리겠습니다."),
      bye(1, "잘됐네요. 감사합니다.", "다행이다. 그럼 그날 갈게요.")]],
    ["{P1:은} {place}에 {day} {time}, {n} 자리를 예약하고 {req:을} 요청한다.",
     "{P1:은} {name} 이름으로 {day} {time}에 {n} 예약을 잡는다. {P2:는} {req:으로} 준비해 주기로 한다.",
     "{P2:는} {P1}의 요청에 따라 {day} {time}에 {n:이} 앉을 {req:을} 마련해 준다.",
     "{P1:은} {day} {time}에 {n:이} 방문하도록 {place}에 예약했고, {req:을} 부탁했다.",
     "{P1:은} {P2}에게 {req:을} 부탁하며 {name} 이름으로 {day} {time} {n} 예약을 마친다."],
    gists=["{P1:은} {place}에 전화해 {n} 식사 자리를 예약한다.",
           "{P1:은} {name} 이름으로 {place} 예약을 마친다."],
    mask=masked("#PhoneNumber#", ("혹시 연락 가능한 번호도 알려 주시겠어요?", "연락처 하나만 남겨 주시겠어요?"),
                ("네, #PhoneNumber#예요.", "#PhoneNumber#로 연락 주시면 돼요."),
                ("{P1:은} 연락처로 #PhoneNumber#를 남긴다.", "{P1}의 연락처는 #PhoneNumber#다.")),
)

_SYMPTOMS = {
    "내과": [("며칠째 열이 나고 기침이 심해서요", "기침과 열"), ("밥만 먹으면 속이 쓰려서요", "속쓰림")],
    "치과": [("어금니가 계속 욱신거려서요", "치통"), ("잇몸에서 자꾸 피가 나서요", "잇몸 출혈")],
    "피부과": [("팔에 두드러기가 올라와서요", "두드러기"), ("얼굴에 뾰루지가 너무 많이 나서요", "피부 트러블")],
    "정형외과": [("허리가 너무 아파서 잘 못 앉겠어요", "허리 통증"), ("운동하다가 발목을 삐었어요", "발목 부상")],
    "안과": [("눈이 빨갛게 충혈되고 따가워서요", "눈 충혈"), ("요즘 글씨가 흐릿하게 보여서요", "시력 저하")],
    "이비인후과": [("목이 붓고 침 삼키기가 힘들어서요", "목 통증"), ("귀가 먹먹하고 잘 안 들려서요", "귀 먹먹함")],
}


def _clinic_slots(rng: random.Random) -> dict[str, str]:
    dept = rng.choice(sorted(_SYMPTOMS))
    talk, noun = rng.choice(_SYMPTOMS[dept])
    return dict(dept=dept, symptom_talk=talk, symptom=noun, day=day(rng), time=clock(rng, 9, 17),
                name=person(rng), doctor=rng.choice(SURNAMES) + " 선생님",
                hospital=rng.choice(["한빛병원", "서울중앙의원", "새봄병원", "푸른병원", "온누리병원", "늘봄의원"]))


register_topic(
    "병원 예약", _clinic_slots,
    [[turn(1, "안녕하세요, {dept} 진료 예약을 하고 싶은데요.", "여보세요, {dept} 예약 좀 하려고요."),
      turn(2, "네, {hospital}입니다. 어디가 불편하세요?", "네, {hospital}입니다. 어떤 증상 때문에 그러세요?"),
      turn(1, "{symptom_talk}.", "음, {symptom_talk}."),
      turn(2, "그러시군요. {doctor} 진료로 {day} {time}에 자리가 있는데 괜찮으세요?",
           "{day} {time}에 {doctor} 진료가 비어 있어요. 그때 오시겠어요?"),
      turn(1, "네, 그때로 해 주세요.", "좋아요. 그 시간으로 할게요."),
      turn(2, "성함 알려 주시겠어요?", "예약하실 분 성함이 어떻게 되세요?"),
      turn(1, "{name:이에요}.", "{name:이요}."),
      turn(2, "네, {day} {time:으로} 예약해 드렸어요. 늦지 않게 와 주세요.", "{name} 님, 예약되었습니다. 10분 전까지 와 주세요."),
      bye(1, "감사합니다.", "네, 알겠습니다.", keep=0.7)],
     [turn(1, "{hospital} 맞죠? 진료 예약 때문에 전화드렸어요.", "안녕하세요, {hospital:이죠}? 예약하려고요."),
      turn(2, "네, 어느 과로 예약해 드릴까요?", "네, 어떤 과 진료를 원하세요?"),
      turn(1, "{dept:이요}. {symptom_talk}.", "{dept} 진료를 받고 싶어요. {symptom_talk}."),
      turn(2, "{doctor:이} {day} {time}에 진료 가능하세요.", "가장 빠른 건 {day} {time}, {doctor} 진료예요."),
      turn(1, "아, 그 시간 괜찮아요. 그럼 예약해 주세요.", "그럼 그걸로 잡아 주세요."),
      turn(2, "예약자 성함 말씀해 주세요.", "성함이 어떻게 되시죠?"),
      turn(1, "{name:이요}.", "{name:이에요}."),
      turn(2, "네, 예약 완료됐습니다. 오실 때 신분증 꼭 챙겨 오세요.", "예약됐습니다. 그날 뵙겠습니다."),
      bye(1, "네, 알겠습니다.", "감사합니다, 수고하세요.", keep=0.7)]],
    ["{P1:은} {symptom} 때문에 {dept} 진료를 받으려고 {day} {time}에 예약한다.",
     "{P2:는} {P1:이} {symptom:으로} {dept} 진료를 원하자 {day} {time}에 {doctor} 진료를 잡아 준다.",
     "{name:은} {hospital} {dept}에 {day} {time} 진료 예약을 했다. 증상은 {symptom:이다}.",
     "{P1:은} {P2}에게 {symptom:을} 설명하고 {doctor}에게 {day} {time}에 진료받기로 한다.",
     "{symptom:으로} 고생하는 {P1:은} {day} {time}에 {hospital} {dept} 진료를 예약한다."],
    gists=["{P1:은} {symptom:으로} 병원 진료 예약을 잡는다.",
           "{P1:은} {hospital}에 전화해 {dept} 진료 일정을 정한다."],
    mask=masked("#DateOfBirth#", ("본인 확인을 위해 생년월일도 말씀해 주시겠어요?", "생년월일 확인 부탁드릴게요."),
                ("#DateOfBirth#예요.", "네, #DateOfBirth#입니다."),
                ("{P1:은} 생년월일 #DateOfBirth#를 알려 준다.", "{P1}의 생년월일은 #DateOfBirth#다.")),
)

_REFUND_REASONS = [("사이즈가 너무 작더라고요", "작은 사이즈"), ("받아 보니 흠집이 나 있더라고요", "흠집"),
                   ("생각했던 색이랑 너무 다르더라고요", "색상 차이"), ("포장을 뜯었더니 불량이더라고요", "제품 불량"),
                   ("한 번 썼는데 벌써 고장이 났어요", "고장")]


def _refund_slots(rng: random.Random) -> dict[str, str]:
    item = rng.choice(["운동화", "청바지", "블루투스 이어폰", "전기포트", "가죽 가방", "겨울 코트", "무선 마우스",
                       "원피스", "텀블러", "헤어드라이어"])
    price = won(rng, 10000, 300000)
    outcome = rng.choice(["환불", "교환"])
    if outcome == "환불":
        answer = rng.choice([f"네, 결제하신 카드로 {price} 환불해 드릴게요. 며칠 걸릴 수 있어요.",
                             f"알겠습니다. {attach(price, '을')} 바로 환불 처리해 드릴게요."])
    else:
        answer = rng.choice([f"네, 같은 {attach(item, '으로')} 새 제품 교환해 드릴게요.",
                             "알겠습니다. 새 제품으로 바로 바꿔 드릴게요."])
    talk, noun = rng.choice(_REFUND_REASONS)
    when = rng.choice(["어제", "그저께", "지난주 토요일", "사흘 전", "지난 월요일", "일주일 전"])
    return dict(item=item, price=price, outcome=outcome, outcome_talk=answer, reason_talk=talk, reason=noun, when=when)


register_topic(
    "쇼핑 환불", _refund_slots,
    [[turn(1, "안녕하세요, {when} 여기서 {item:을} 샀는데요, {outcome}하고 싶어서 왔어요.",
           "저, {when} 산 {item} 때문에 왔는데요. {outcome:이} 될까요?"),
      turn(2, "네, 혹시 무슨 문제가 있으셨어요?", "아, 네. 어떤 점이 불편하셨을까요?"),
      turn(1, "{reason_talk}.", "음, {reason_talk}."),
      turn(2, "영수증 가지고 계세요?", "죄송합니다. 구매 내역 좀 확인할게요."),
      turn(1, "네, 여기요. {price} 결제했어요.", "카드로 {price} 냈어요."),
      turn(2, "{outcome_talk}"),
      bye(1, "네, 그렇게 해 주세요. 감사합니다.", "다행이네요. 고맙습니다.")],
     [turn(2, "어서 오세요. 뭘 도와드릴까요?", "안녕하세요, 무엇을 도와드릴까요?"),
      turn(1, "{when} {item:을} 샀는데, {reason_talk}.", "이 {item}, {when} 샀거든요. 그런데 {reason_talk}."),
      turn(2, "아이고, 죄송합니다. 얼마에 구매하셨어요?", "불편을 드려 죄송해요. 결제 금액이 어떻게 되세요?"),
      turn(1, "{price:이요}.", "영수증 보면 {price:이에요}."),
      turn(2, "확인됐습니다. 환불과 교환 중에 어떤 걸로 해 드릴까요?", "환불하실지 교환하실지 정해 주시겠어요?"),
      turn(1, "{outcome:으로} 해 주세요.", "음, 그냥 {outcome:으로} 할게요."),
      turn(2, "{outcome_talk}"),
      bye(1, "네, 감사합니다.", "알겠어요, 수고하세요.", keep=0.7)]],
    ["{P1:은} {when} {price:을} 주고 산 {item:을} {reason} 때문에 {outcome}하려 하고, {P2:는} {outcome:을} 해 준다.",
     "{P1:은} {reason} 때문에 {when} 산 {item}의 {outcome:을} 요청하고, {P2:는} {price} 결제 건을 {outcome} 처리해 준다.",
     "{P2:는} {reason:을} 이유로 {item} {outcome:을} 원하는 {P1}에게 {price} 결제 건을 {outcome:으로} 처리해 준다.",
     "{P1:은} {when} {price}에 산 {item}에 {reason} 문제가 있어 {P2}에게 {outcome:을} 받는다.",
     "{item}에 {reason} 문제가 생긴 {P1:은} {P2}에게 {outcome:을} 요청하고, {P2:는} {price} 결제 건의 {outcome:을} 진행한다."],
    gists=["{P1:은} 문제가 있는 {item} 때문에 매장을 찾아 {outcome:을} 요청한다.",
           "{P1:은} 얼마 전에 산 {item:을} {outcome}받는다."],
    mask=masked("#CardNumber#", ("결제하신 카드 번호 확인 부탁드려요.", "어느 카드로 결제하셨는지 번호 알려 주시겠어요?"),
                ("#CardNumber#예요.", "이 카드요, #CardNumber#예요."),
                ("{P1:은} 카드 번호 #CardNumber#를 알려 준다.", "결제 카드는 #CardNumber#다.")),
)

register_topic(
    "여행 계획",
    lambda rng: dict(
        dest=rng.choice(["제주도", "부산", "강릉", "경주", "여수", "전주", "속초", "통영", "남해", "춘천"]),
        nights=rng.choice(["1박 2일", "2박 3일", "3박 4일"]), depart=day(rng),
        transport=rng.choice(["KTX", "비행기", "고속버스", "렌터카"]),
        stay=rng.choice(["바닷가 근처 펜션", "시내 호텔", "한옥 게스트하우스", "리조트"]), budget=won(rng, 100000, 600000, 10000),
        activity=rng.choice(["시장 구경", "카약 체험", "야경 투어", "맛집 탐방", "자전거 여행"])),
    [[turn(1, "우리 이번에 여행 어디로 갈까요? 저는 {dest} 어때요?", "요즘 너무 지쳐서 {dest}에 다녀오고 싶어요."),
      turn(2, "오, {dest} 좋죠! 며칠 정도 생각해요?", "{dest}? 좋아요. 얼마나 있을 거예요?"),
      turn(1, "{nights} 정도면 딱 좋을 것 같아요.", "음, {nights:이면} 적당하지 않을까요?"),
      turn(2, "그럼 {depart}에 출발하는 건 어때요?", "{depart}에 떠나면 되겠네요."),
      turn(1, "좋아요. 교통편은 {transport:이} 편하겠죠?", "그래요. 가는 건 {transport:으로} 해요."),
      turn(2, "네, {transport:으로} 가요. 숙소는 {stay:으로} 알아볼게요.", "맞아요. 그리고 숙소는 {stay:이} 좋겠어요."),
      turn(1, "예산은 한 사람당 {budget} 정도로 잡을까요?", "돈은 1인당 {budget:이면} 될 것 같아요."),
      turn(2, "그 정도면 충분할 것 같아요. 제가 예약할게요.", "좋아요, 그렇게 정해요."),
      bye(1, "신난다, 벌써 기대돼요.", keep=0.6)],
     [turn(2, "휴가 계획 세웠어요?", "이번 휴가 때 뭐 해요?"),
      turn(1, "아직요. 같이 {dest} 갈래요?", "딱히 없어요. 우리 {dest} 갈까요?"),
      turn(2, "좋아요! {depart} 출발해서 {nights:으로} 다녀와요.", "완전 좋아요. {depart}에 가서 {nights:으로} 어때요?"),
      turn(1, "음, 가는 건 {transport:이} 제일 나을 것 같아요.", "그래요. 교통편은 {transport:으로} 하죠."),
      turn(2, "맞아요. 숙소는요?", "숙소는 어디로 할까요?"),
      turn(1, "{stay:이} 괜찮대요. 1인당 {budget:이면} 될 것 같아요.", "{stay:으로} 해요. 예산은 한 사람당 {budget} 정도요."),
      bye(2, "좋아요, 그럼 그렇게 정해요.", "오케이, 제가 바로 알아볼게요.")]],
    ["{P1:과} {P2:는} {depart}에 {transport:으로} 출발해 {nights} 동안 {dest} 여행을 하기로 하고, 숙소는 {stay:으로} 정한다.",
     "{P1:과} {P2:는} {dest} 여행을 {nights:으로} 계획하고 숙소는 {stay:으로} 정한다. 예산은 1인당 {budget:이다}.",
     "{P1:과} {P2:는} {depart}에 {dest:으로} {nights} 여행을 떠나기로 하며, 교통편은 {transport}, 숙소는 {stay:이다}.",
     "{P1:과} {P2:는} {transport:을} 타고 {dest}에 가서 {stay}에 묵기로 한다. 여행은 {nights}, 예산은 1인당 {budget:이다}.",
     "{P1:과} {P2:는} {depart}에 {transport:으로} 떠나 {dest}에서 {nights} 동안 {stay}에 묵기로 하고, 1인당 {budget:을} 쓰기로 한다."],
    gists=["{P1:과} {P2:는} 함께 {dest} 여행을 가기로 한다.",
           "{P1:과} {P2:는} {nights} {dest} 여행의 일정과 예산을 정한다."],
    guest=Aside((turn(3, "저도 끼워 줘요! 가면 {activity:은} 꼭 해 보고 싶어요.", "무슨 얘기해요? {dest}? 저도 갈래요. {activity}도 해요."),),
                ("{P3}도 함께 가서 {activity:을} 하자고 한다.", "{P3:는} 여행에 합류해 {activity:을} 제안한다.")),
    mask=masked("#Email#", ("예약 확인 메일은 어디로 받을까요?", "숙소 예약 내역은 어느 메일로 보내요?"),
                ("#Email#로 보내 줘요.", "제 메일 #Email#로 보내 주세요."),
                ("예약 내역은 #Email#로 받기로 한다.", "{P1:은} 예약 메일을 #Email#로 받는다.")),
)

_AREAS = ["마포구 합정동", "성남 분당", "수원 영통", "인천 송도", "부산 해운대", "대전 유성구", "서울 노원구", "일산",
          "용인 수지", "광주 상무지구"]


def _moving_slots(rng: random.Random) -> dict[str, str]:
    origin, target = rng.sample(_AREAS, 2)
    return dict(origin=origin, target=target, date=day(rng), time=clock(rng, 7, 10), cost=won(rng, 400000, 2000000, 10000),
                company=rng.choice(["한결 이사", "바른 익스프레스", "착한이사", "든든 이삿짐센터", "믿음 이사"]),
                size=rng.choice(["원룸", "투룸", "방 세 개짜리 아파트", "오피스텔"]))


register_topic(
    "이사", _moving_slots,
    [[turn(1, "안녕하세요, 이사 견적 좀 받아 보려고요.", "여보세요, 이사 예약 문의드리려고요."),
      turn(2, "네, {company}입니다. 어디에서 어디로 가세요?", "{company}입니다. 출발지랑 도착지가 어떻게 되세요?"),
      turn(1, "{origin}에서 {target:으로} 가요. 집은 {size:이에요}.", "{origin}에서 {target}까지요. {size:이에요}."),
      turn(2, "이사 날짜는 언제로 생각하세요?", "날짜는 정하셨어요?"),
      turn(1, "{date:이요}. 아침 일찍 시작하면 좋겠어요.", "{date}에 하려고요."),
      turn(2, "그럼 {date} {time}에 시작하는 걸로 하고, 포장이사 기준으로 {cost:이에요}.",
           "{time}부터 작업하면 되고요, 비용은 {cost:이에요}."),
      turn(1, "음, 생각보다 괜찮네요. 그걸로 예약할게요.", "알겠어요. 그렇게 해 주세요."),
      bye(2, "네, 예약 완료했습니다. 전날에 한 번 더 연락드릴게요.", "예약됐습니다. 감사합니다.")],
     [turn(1, "저 {date}에 이사해요.", "저 드디어 {date}에 이사 가요."),
      turn(2, "정말요? 어디로 가는데요?", "오, 어디로요?"),
      turn(1, "{origin}에서 {target:으로} 가요. 회사랑 가까워서요.", "{target:이요}. 지금 사는 {origin:은} 너무 멀어서요."),
      turn(2, "업체는 정했어요?", "이삿짐 업체는요?"),
      turn(1, "네, {company:으로} 했어요. {size:이라서} {cost} 달래요.", "{company}에 맡겼어요. {size}인데 {cost} 들어요."),
      turn(2, "몇 시에 시작해요? 제가 도와줄게요.", "그날 몇 시부터 해요?"),
      turn(1, "{time}부터요. 와 주면 정말 고맙죠.", "{time}에 시작한대요."),
      bye(2, "그럼 그날 봐요.", "알겠어요, 시간 맞춰 갈게요.", keep=0.7)]],
    ["{P1:은} {date}에 {origin}에서 {target:으로} 이사하며, {company}에 {cost:을} 내고 {time}부터 이사를 진행한다.",
     "{P1:은} {date} {time}부터 {company:을} 통해 {origin}에서 {target:으로} 이사한다. 비용은 {cost:이다}.",
     "{date} {time}, {P1:은} {origin}에서 {target:으로} 이사를 시작한다. {company}의 이사 비용은 {cost:이다}.",
     "{P1:은} {company:을} 이용해 {date}에 {target:으로} 이사하기로 하고, {size} 이사 비용으로 {cost:을} 낸다.",
     "{origin}에 사는 {P1:은} {date}에 {target:으로} 옮기며, {company:이} {cost:을} 받고 {time}부터 짐을 나른다."],
    gists=["{P1:은} {date}에 {target:으로} 이사할 업체를 정한다.",
           "{P1:은} {company}에 이사를 맡기고 비용을 {cost:으로} 정한다."],
    mask=masked("#Address#", ("새 집 주소가 어떻게 돼요?", "새로 가는 집 주소 알려 주시겠어요?"),
                ("#Address#예요.", "주소는 #Address#예요."),
                ("{P1}의 새 주소는 #Address#다.", "{P1:은} 새 집 주소 #Address#를 알려 준다.")),
)

register_topic(
    "회의 일정",
    lambda rng: dict(
        subject=rng.choice(["분기 실적 보고", "신제품 출시", "마케팅 전략", "예산 조정", "고객 불만 대응", "채용 계획",
                            "하반기 사업 계획", "웹사이트 개편"]),
        day=day(rng), time=clock(rng, 9, 17), n=count(rng, 3, 15),
        room=rng.choice(["3층 대회의실", "5층 소회의실", "본관 세미나실", "2층 회의실 B", "온라인 화상회의"]),
        prep=rng.choice(["지난달 매출 자료", "발표 슬라이드", "고객 설문 결과", "경쟁사 분석 자료", "예산안 초안"]),
        extra=rng.choice(["노트북과 프로젝터", "회의록 양식", "시안 출력본", "간식"])),
    [[turn(1, "팀장님, {subject} 회의 일정 잡아야 할 것 같아요.", "{subject} 회의 언제 할지 정해야죠?"),
      turn(2, "그래요. {day} {time} 어때요?", "음, {day} {time:은} 괜찮아요?"),
      turn(1, "좋아요. 장소는 {room:으로} 할게요.", "괜찮습니다. 그럼 {room:으로} 잡을게요."),
      turn(2, "참석 인원은 몇 명이죠?", "몇 명 들어와요?"),
      turn(1, "저희 팀까지 {n:이에요}.", "다 합쳐서 {n:이요}."),
      turn(2, "그럼 {prep:은} 준비해 줄 수 있어요?", "{prep:이} 꼭 필요할 것 같아요."),
      turn(1, "네, {prep:은} 제가 회의 전까지 정리해 둘게요.", "알겠습니다, {prep} 챙길게요."),
      bye(2, "고마워요. 그럼 {day}에 봐요.", "좋아요, 수고해요.", keep=0.7)],
     [turn(2, "혹시 {subject} 회의 시간 바꿀 수 있을까요? 원래 시간에 외근이 잡혀서요.",
           "{subject} 회의 말인데요, 일정 좀 옮겨도 될까요?"),
      turn(1, "아, 그래요? 그럼 {day} {time:은} 어때요?", "그럼 {day} {time:으로} 하죠."),
      turn(2, "그때 괜찮아요. 장소는 그대로인가요?", "좋아요. 장소는요?"),
      turn(1, "장소는 {room:으로} 옮겼어요. {n:이} 들어가야 해서요.", "{room:이요}. 참석자가 {n:이라서} 넓은 데로 했어요."),
      turn(2, "알겠어요. 제가 {prep}도 챙겨 갈게요.", "그럼 {prep:은} 제가 준비할게요."),
      bye(1, "좋아요, 참석자들한테는 제가 공지할게요.", "고마워요. 공지는 제가 돌릴게요.")]],
    ["{P1:과} {P2:는} {subject} 회의를 {day} {time}에 {room}에서 열기로 한다.",
     "{subject} 회의는 {day} {time}, {room}에서 {n:이} 참석해 진행된다.",
     "{P1:과} {P2:는} {subject} 회의 일정을 {day} {time:으로} 정하고, {prep} 준비도 논의한다.",
     "{day} {time}에 {subject} 회의가 잡힌다. 장소는 {room:이고} 참석 인원은 {n:이다}.",
     "{P1:과} {P2:는} {day} {time} {subject} 회의를 {room}에서 하고 {prep:을} 챙기기로 한다."],
    gists=["{P1:과} {P2:는} {subject} 회의 일정을 잡는다.",
           "{P1:과} {P2:는} 다음 회의의 시간과 장소를 정하고 준비할 일을 나눈다."],
    guest=Aside((turn(3, "저도 참석할게요. {extra:은} 제가 가져갈게요.", "저도 들어갈게요. {extra:은} 제가 챙길게요."),),
                ("{P3}도 참석해 {extra:을} 가져오기로 한다.", "{P3:는} {extra:을} 맡기로 한다.")),
    mask=masked("#Email#", ("회의 자료는 어디로 보내면 돼요?", "자료는 메일로 보낼게요. 주소가 뭐였죠?"),
                ("#Email#로 보내 주세요.", "#Email#로 주시면 돼요."),
                ("{P1:은} 자료를 #Email#로 받기로 한다.", "회의 자료는 #Email#로 전달된다.")),
)

register_topic(
    "택시 이동",
    lambda rng: dict(
        dest=rng.choice(["서울역", "강남역 2번 출구", "인천공항 제1터미널", "시청 앞", "코엑스", "김포공항", "홍대입구역",
                         "여의도 공원", "잠실 롯데월드", "부산역"]),
        minutes=count(rng, 10, 60, "분"), fare=won(rng, 8000, 60000),
        route=rng.choice(["강변북로", "올림픽대로", "내부순환로", "시내 도로", "고속도로"]),
        deadline=clock(rng, 7, 21), payment=rng.choice(["카드", "현금", "교통카드"])),
    [[turn(2, "어서 오세요, 어디로 모실까요?", "안녕하세요, 어디로 가세요?"),
      turn(1, "{dest}까지 가 주세요. {deadline}까지 도착해야 하는데 가능할까요?", "{dest} 가 주세요. {deadline} 전에는 꼭 가야 해요."),
      turn(2, "지금 차가 좀 막혀서 {route:으로} 돌아가면 {minutes} 정도 걸릴 거예요.", "{route:으로} 가면 {minutes:이면} 도착할 거예요."),
      turn(1, "네, 그 길로 가 주세요. 요금은 대충 얼마나 나올까요?", "다행이다. 요금은 얼마쯤 나와요?"),
      turn(2, "아마 {fare} 정도 나올 거예요.", "{fare} 안팎일 거예요."),
      turn(1, "알겠습니다. 조금만 서둘러 주세요.", keep=0.6),
      bye(2, "다 왔습니다. 결제는 어떻게 하시겠어요?", "도착했습니다. 계산은 뭘로 하세요?"),
      turn(1, "{payment:으로} 할게요.", "{payment:으로} 낼게요. 감사합니다.")],
     [turn(1, "기사님, {dest} 가려고 하는데요.", "안녕하세요, {dest:으로} 가 주세요."),
      turn(2, "네, 출발하겠습니다. 혹시 급하세요?", "네. 시간 여유는 있으세요?"),
      turn(1, "{deadline}까지 가야 해서 좀 급해요.", "사실 {deadline}까지 도착해야 해요."),
      turn(2, "그럼 {route:으로} 갈게요. {minutes:이면} 도착해요.", "{route:이} 안 막히니까 그쪽으로 가면 {minutes} 걸려요."),
      turn(1, "다행이네요. 요금은 {payment:으로} 내도 되죠?", "좋아요. 결제는 {payment:으로} 할게요."),
      turn(2, "네, 대략 {fare} 나올 거예요.", "네, 요금은 {fare} 정도 예상하세요."),
      bye(1, "네, 감사합니다.", "알겠습니다.", keep=0.7)]],
    ["{P1:은} {deadline}까지 {dest}에 가야 하고, {P2:는} {route:으로} 가면 {minutes} 걸리며 요금은 {fare} 정도라고 안내한다.",
     "{P1:은} 택시로 {dest}에 가며, {P2:는} {route:을} 타면 {minutes} 걸리고 요금은 약 {fare:이라고} 알려 준다.",
     "{P2:는} {deadline}까지 {dest}에 가야 하는 {P1:을} 태우고 {route:으로} 간다. 요금 {fare:은} {payment:으로} 계산한다.",
     "{P1:은} {dest}까지 택시를 타고, {P2:는} {route:으로} {minutes} 정도 걸린다고 말한다. 요금은 {fare} 정도다.",
     "{P1:은} {deadline}까지 {dest}에 가려고 택시를 타며, {P2:는} {route:으로} 가서 {minutes} 안에 도착하겠다고 한다."],
    gists=["{P1:은} 택시를 타고 {dest}까지 서둘러 간다.",
           "{P2:는} {dest}까지 가는 길과 요금을 {P1}에게 알려 준다."],
    mask=masked("#CarNumber#", ("혹시 차량 번호가 어떻게 되죠? 영수증에 필요해서요.",),
                ("#CarNumber#예요. 영수증에도 찍혀 나와요.", "차 번호는 #CarNumber#입니다."),
                ("{P2}의 택시 번호는 #CarNumber#다.", "{P1:은} 차량 번호 #CarNumber#를 확인한다.")),
)

register_topic(
    "은행 적금",
    lambda rng: dict(
        bank=rng.choice(["한빛은행", "미래은행", "하나로은행", "새봄은행", "푸른저축은행"]),
        product=rng.choice(["자유적금", "청년 희망적금", "정기적금", "여행 적금", "내집마련 적금"]),
        monthly=won(rng, 100000, 1000000, 10000), months=rng.choice(["6개월", "1년", "2년", "3년"]),
        rate=f"연 {rng.randint(25, 55) / 10:.1f}%", name=person(rng)),
    [[turn(2, "어서 오세요, {bank}입니다. 어떤 업무 보시겠어요?", "안녕하세요, {bank}입니다. 뭘 도와드릴까요?"),
      turn(1, "적금 하나 새로 들고 싶어서요.", "음, 적금 가입하려고 왔어요."),
      turn(2, "네, 요즘은 {product} 많이 하세요. 금리가 {rate:이에요}.", "{product:이} {rate:이라서} 인기가 많아요."),
      turn(1, "기간은 어떻게 돼요?", "좋네요. 기간은 정할 수 있어요?"),
      turn(2, "6개월부터 3년까지 고르실 수 있어요.", "원하시는 대로 정하시면 돼요."),
      turn(1, "그럼 {months:으로} 하고, 매달 {monthly}씩 넣을게요.", "{months:으로} 할게요. 한 달에 {monthly}씩이요."),
      turn(2, "신분증 주시겠어요? 성함 확인할게요.", "성함이 어떻게 되세요?"),
      turn(1, "여기요. {name:이에요}.", "{name:이에요}."),
      turn(2, "{name} 고객님, {product} 가입 완료됐습니다.", "네, 가입 처리됐습니다. 매달 자동이체 돼요."),
      bye(1, "감사합니다.", keep=0.7)],
     [turn(1, "안녕하세요, {bank} 적금 상품 좀 알아보러 왔어요.", "{bank:이죠}? 적금 상담 받고 싶어요."),
      turn(2, "네, {product} 어떠세요? {rate} 금리예요.", "{product:을} 추천드려요. 금리가 {rate:이에요}."),
      turn(1, "오, 좋네요. 한 달에 {monthly:이면} 부담이 없을 것 같아요.", "매달 {monthly}씩 넣어도 되죠?"),
      turn(2, "그럼요. 기간은 얼마나 생각하세요?", "네, 가능합니다. 기간은요?"),
      turn(1, "음, {months} 정도요.", "{months:으로} 할게요."),
      turn(2, "알겠습니다. 성함이 어떻게 되세요?", "가입자 성함 부탁드려요."),
      turn(1, "{name:이요}.", "{name:이에요}."),
      bye(2, "네, 처리해 드렸습니다.", "가입 완료됐습니다. 감사합니다.")]],
    ["{P1:은} {bank}에서 {rate} 금리의 {product}에 가입하고, 매달 {monthly}씩 {months} 동안 넣기로 한다.",
     "{P2:는} {rate} 금리의 {product:을} 추천하고, {P1:은} 매달 {monthly}씩 {months} 동안 넣기로 하고 가입한다.",
     "{name:은} {bank}에서 {product:을} 들기로 하고, 월 {monthly}씩 {months} 동안 납입한다.",
     "{P1:은} {P2}에게 {rate} 금리의 {product} 상담을 받고, {months} 동안 매달 {monthly:을} 저축하기로 한다.",
     "{bank}에서 {P1:이} {product}에 가입한다. 금리는 {rate}, 매달 {monthly}씩 {months} 동안 납입한다."],
    gists=["{P1:은} {bank}에서 적금 상품에 가입한다.",
           "{P1:은} 상담을 받은 뒤 {product:을} 들기로 한다."],
    mask=masked("#CardNumber#", ("체크카드도 같이 연결해 드릴까요? 카드 번호 불러 주세요.",),
                ("#CardNumber#예요.", "네, #CardNumber#로 해 주세요."),
                ("{P1:은} 체크카드 #CardNumber#를 연결한다.", "적금에는 카드 #CardNumber#가 연결된다.")),
)

register_topic(
    "도서관 대출",
    lambda rng: dict(
        book="『" + rng.choice(["작은 숲의 시간", "파란 달의 기억", "도시의 새벽", "경제학 첫걸음", "세계사 산책",
                                "우리가 사랑한 계절", "파이썬 입문", "별을 세는 밤", "바다를 건너는 법", "심리학의 모든 것"]) + "』",
        name=person(rng), period=rng.choice(["2주", "10일", "3주", "일주일"]),
        due=f"{rng.randint(1, 12)}월 {rng.randint(1, 28)}일", extend=rng.choice(["일주일", "3일", "5일"]),
        floor=rng.choice(["3층 인문학 코너", "2층 소설 서가", "4층 자료실", "1층 신간 코너"])),
    [[turn(1, "안녕하세요, 이 책 빌리고 싶은데요. {book:이요}.", "이 책 대출하려고요. {book:이에요}."),
      turn(2, "네, 회원증 보여 주시겠어요?", "회원 카드 있으세요?"),
      turn(1, "여기요. {name:이에요}.", "네, {name} 이름으로 돼 있어요."),
      turn(2, "{book:은} 대출 기간이 {period:이에요}. {due}까지 반납해 주세요.", "대출됐습니다. {period} 동안 보시고 {due}까지 돌려주세요."),
      turn(1, "혹시 연장도 되나요?", "다 못 읽으면 연장할 수 있어요?"),
      turn(2, "네, 예약자가 없으면 한 번 {extend} 연장할 수 있어요.", "예약이 없으면 {extend} 더 빌리실 수 있어요."),
      bye(1, "알겠습니다. 감사합니다.", keep=0.7)],
     [turn(1, "저기요, {book:을} 찾고 있는데 어디 있어요?", "혹시 {book} 있나요?"),
      turn(2, "그 책은 {floor}에 있어요. 지금 대출 가능하네요.", "{floor}에 한 권 남아 있어요."),
      turn(1, "그럼 빌려 갈게요. 대출 기간이 얼마나 되죠?", "잘됐다. 며칠 빌릴 수 있어요?"),
      turn(2, "{period:이고}, {due}까지 반납하시면 돼요.", "{period:이에요}. 반납일은 {due:이고요}."),
      turn(1, "네. 회원 이름은 {name:이에요}.", "아, {name} 이름으로 해 주세요."),
      bye(2, "처리됐습니다. 늦으면 연체료가 붙으니까 꼭 기한 지켜 주세요.", "네, 대출 완료입니다.")]],
    ["{P1:은} {book:을} {period} 동안 빌리고, {due}까지 반납하기로 한다.",
     "{P2:는} {name} 회원에게 {book:을} 대출해 주며 반납일이 {due:이라고} 알려 준다.",
     "{name:은} 도서관에서 {book:을} 빌린다. 대출 기간은 {period:이고} 반납 기한은 {due:이다}.",
     "{P1:은} {book} 대출을 요청하고, {P2:는} {due}까지 반납해야 한다고 안내한다.",
     "{due}까지 돌려줘야 하는 {book:을} {P1:이} {name} 이름으로 빌린다."],
    gists=["{P1:은} 도서관에서 {book:을} 빌린다.",
           "{P1:은} 책을 빌리고 {due}까지 반납하기로 한다."],
    mask=masked("#Email#", ("반납 알림은 어디로 보내 드릴까요?", "반납일 알림 받으실 메일 주소 있으세요?"),
                ("#Email#로 보내 주세요.", "네, #Email#로 해 주세요."),
                ("{P1:은} 반납 알림을 #Email#로 받기로 한다.", "반납 안내는 #Email#로 간다.")),
)

register_topic(
    "헬스장 등록",
    lambda rng: dict(
        gym=rng.choice(["튼튼 피트니스", "바디랩 짐", "온핏 센터", "파워 헬스클럽", "라인 스포츠센터"]),
        months=rng.choice(["1개월", "3개월", "6개월", "12개월"]), price=won(rng, 50000, 800000, 10000),
        pt=rng.choice(["PT 5회", "PT 10회", "PT 20회"]), trainer=person(rng), time=clock(rng, 6, 22), day=day(rng)),
    [[turn(1, "안녕하세요, 헬스장 등록하려고 왔어요.", "저기, 회원 등록 상담 받을 수 있을까요?"),
      turn(2, "네, {gym}에 오신 걸 환영합니다. 기간은 얼마나 생각하세요?", "{gym}입니다. 몇 개월 하실 거예요?"),
      turn(1, "{months} 정도요. 가격이 어떻게 돼요?", "음, {months:이요}. 얼마예요?"),
      turn(2, "{months} 기준으로 {price:이고}, 지금 등록하시면 {pt:을} 같이 드려요.", "{price:이에요}. 이번 달엔 {pt}도 무료로 드려요."),
      turn(1, "오, 좋네요. 주로 {time}에 올 것 같아요.", "괜찮네요. 저는 {time}쯤 운동할 거예요."),
      turn(2, "그 시간에는 {trainer} 트레이너가 계세요. 언제부터 시작하시겠어요?", "그럼 {trainer} 트레이너가 맡을 거예요. 시작은 언제부터요?"),
      turn(1, "{day}부터 할게요.", "{day}부터 나올게요."),
      bye(2, "네, 등록 완료됐습니다.", "알겠습니다. 그날 뵐게요.", keep=0.7)],
     [turn(2, "{gym}입니다. 상담 받으러 오셨어요?", "어서 오세요, {gym}입니다."),
      turn(1, "네, 퇴근하고 {time}쯤 운동하려고요. {months} 등록하면 얼마예요?", "{months} 등록하려는데요, {time}쯤 이용할 거예요."),
      turn(2, "{price}입니다. {pt}도 포함돼 있어요.", "{months:은} {price:이고}, {pt:이} 들어 있어요."),
      turn(1, "음, PT는 누가 해 주세요?", "PT 선생님은 누구예요?"),
      turn(2, "{trainer} 트레이너가 담당할 거예요.", "그 시간대는 {trainer} 트레이너예요."),
      turn(1, "알겠어요. {day}부터 바로 시작할게요.", "좋아요. 그럼 {day}부터 할게요."),
      bye(2, "네, 그럼 그날 뵐게요.", "등록해 드렸습니다.", keep=0.7)]],
    ["{P1:은} {gym}에 {months} 등록하고 {price:을} 낸다. {pt:은} {trainer} 트레이너가 맡는다.",
     "{P1:은} {price:을} 내고 {gym} {months} 회원권을 끊으며, {pt:을} 함께 받는다. 운동은 {day}부터 시작한다.",
     "{P2:는} {months} 이용료가 {price:이며} {pt:이} 포함된다고 설명하고, {P1:은} {day}부터 {gym}에 다니기로 한다.",
     "{P1:은} {gym}에서 {months} {price} 이용권과 {pt:을} 등록하고 {day}부터 {trainer} 트레이너에게 운동을 배운다.",
     "{P1:은} {gym}에 {months} 등록해 {price:을} 내고, {day}부터 {time}에 {trainer} 트레이너와 운동하기로 한다."],
    gists=["{P1:은} {gym}에 회원 등록을 한다.",
           "{P1:은} 운동을 시작하려고 {months} 헬스장 이용권을 끊는다."],
    mask=masked("#PhoneNumber#", ("연락처 하나 적어 주시겠어요?", "회원 등록하려면 전화번호가 필요해요."),
                ("#PhoneNumber#예요.", "네, #PhoneNumber#입니다."),
                ("{P1:은} 연락처로 #PhoneNumber#를 남긴다.", "{P1}의 전화번호는 #PhoneNumber#다.")),
)

register_topic(
    "생일 파티",
    lambda rng: dict(
        bday=person(rng), day=day(rng), time=clock(rng, 12, 21),
        place=rng.choice(["홍대 파스타집", "우리 집", "강남 루프탑 카페", "한강 공원", "동네 고깃집", "을지로 와인바"]),
        n=count(rng, 4, 15), gift=rng.choice(["블루투스 스피커", "향수", "꽃다발", "가죽 지갑", "머그컵 세트", "무선 충전기"]),
        share=won(rng, 10000, 50000, 5000), bring=rng.choice(["케이크", "풍선 장식", "축하 영상", "폴라로이드 카메라"])),
    [[turn(1, "{day:이} {bday} 생일이에요. 깜짝 파티 해 줄까요?", "혹시 {bday} 생일 알아요? {day:이에요}. 파티 해 줄까요?"),
      turn(2, "좋아요! 어디서 할까요?", "당연히 해야죠. 장소는요?"),
      turn(1, "{place}에서 {time}쯤 모이면 어때요?", "{place}에서 {time}에 만나요."),
      turn(2, "괜찮네요. 몇 명 부를 거예요?", "좋아요. 인원은요?"),
      turn(1, "우리 포함해서 {n} 정도요.", "다 해서 {n:이요}."),
      turn(2, "선물은 {gift:으로} 하고, 한 사람당 {share}씩 걷을까요?", "{gift} 어때요? 한 사람당 {share}씩 내고요."),
      bye(1, "좋아요, 제가 다른 사람들한테 연락할게요.", "그래요. 단톡방에 공지할게요.")],
     [turn(2, "{bday} 생일 파티 준비는 잘 돼 가요?", "{bday} 생일 파티 언제로 정했어요?"),
      turn(1, "{day} {time}에 {place}에서 하기로 했어요.", "{day} {time:이요}. 장소는 {place:이고요}."),
      turn(2, "와, 좋다. 몇 명 와요?", "오, 사람은 많이 와요?"),
      turn(1, "{n:이요}. 그리고 선물로 {gift:을} 사려고요.", "{n} 올 거예요. 선물은 {gift:으로} 정했어요."),
      turn(2, "그럼 저도 보탤게요. 얼마씩 내요?", "저도 돈 낼게요. 얼마예요?"),
      turn(1, "한 사람당 {share:이에요}.", "{share}씩 모으고 있어요."),
      bye(2, "알겠어요, 바로 보낼게요.", "오케이, 지금 보낼게요.", keep=0.7)]],
    ["{P1:과} {P2:는} {day} {time}에 {place}에서 {bday}의 생일 파티를 열고, 선물로 {gift:을} 사기로 한다.",
     "{P1:과} {P2:는} {bday}의 생일 파티를 {place}에서 {n:이} 모여 하기로 하고, 선물로 {gift:을} 준비한다.",
     "{P1:과} {P2:는} {place}에서 {bday} 생일 파티를 계획하고, {gift} 선물 비용으로 한 사람당 {share:을} 내기로 한다.",
     "{day} {time}, {place}에서 {bday}의 생일 파티가 열린다. {P1:과} {P2:는} {n:을} 모으고 {gift:을} 선물하기로 한다.",
     "{P1:과} {P2:는} 한 사람당 {share}씩 모아 {gift:을} 사고, {day}에 {place}에서 {bday}의 생일을 축하하기로 한다."],
    gists=["{P1:과} {P2:는} {bday}의 생일 파티를 준비한다.",
           "{P1:과} {P2:는} {bday}에게 줄 선물로 {gift:을} 고른다."],
    guest=Aside((turn(3, "무슨 얘기해요? 아, {bday} 생일? 저는 {bring:을} 준비할게요.", "저도 낄래요! {bring:은} 제가 맡을게요."),),
                ("{P3:는} {bring:을} 준비하기로 한다.", "{P3}도 파티에 참여해 {bring:을} 맡는다.")),
    mask=masked("#Address#", ("거기 주소가 어떻게 돼요?", "장소 주소 좀 보내 줘요."),
                ("#Address#예요. 지도 링크도 보낼게요.", "주소는 #Address#예요."),
                ("{P1:은} 주소 #Address#를 알려 준다.", "파티 장소 주소는 #Address#다.")),
)

_REPAIRS = [("보일러에서 뜨거운 물이 안 나와요", "보일러 고장"), ("싱크대 밑에서 물이 새요", "싱크대 누수"),
            ("화장실 변기가 막혔어요", "변기 막힘"), ("거실 전등이 자꾸 깜빡거려요", "전등 고장"),
            ("에어컨에서 찬바람이 안 나와요", "에어컨 고장"), ("현관문 도어락이 안 열려요", "도어락 고장")]


def _repair_slots(rng: random.Random) -> dict[str, str]:
    talk, noun = rng.choice(_REPAIRS)
    return dict(problem_talk=talk, problem=noun, day=day(rng), time=clock(rng, 9, 18),
                cost=won(rng, 30000, 300000, 5000), tech=rng.choice(SURNAMES) + " 기사님")


register_topic(
    "집 수리", _repair_slots,
    [[turn(1, "여보세요, 수리 접수 좀 하려고요. {problem_talk}.", "안녕하세요, 집에 문제가 생겨서요. {problem_talk}."),
      turn(2, "아이고, 불편하시겠어요. 언제 방문해 드리면 될까요?", "네, 접수해 드릴게요. 방문 가능한 시간이 언제세요?"),
      turn(1, "{day} {time} 괜찮으세요?", "음, {day} {time:이요}."),
      turn(2, "네, 그 시간에 {tech:이} 방문하실 거예요.", "그때 {tech:이} 가실 수 있어요."),
      turn(1, "비용은 대략 얼마나 나올까요?", "수리비는 얼마쯤 나와요?"),
      turn(2, "출장비 포함해서 {cost} 정도 예상하시면 돼요.", "보통 {cost} 정도 나와요."),
      bye(1, "알겠습니다. 그럼 기다릴게요.", "네, 그렇게 해 주세요.")],
     [turn(1, "관리실이죠? {problem_talk}.", "관리소장님, 저 502호인데요. {problem_talk}."),
      turn(2, "언제부터 그랬어요?", "아이고, 언제부터요?"),
      turn(1, "어제 저녁부터요. 빨리 좀 고쳐 주실 수 있을까요?", "오늘 아침부터요. 너무 불편해서요."),
      turn(2, "제가 {tech}한테 연락해서 {day} {time}에 가시라고 할게요.", "{day} {time}에 {tech:이} 들르실 거예요."),
      turn(1, "감사합니다. 수리비는 어떻게 해요?", "비용은 얼마나 들까요?"),
      turn(2, "{cost} 정도 나올 거예요.", "대략 {cost:이에요}."),
      bye(1, "네, 그럼 그 시간에 집에 있을게요.", "알겠어요, 기다릴게요.", keep=0.7)]],
    ["{P1:은} {problem} 때문에 수리를 요청하고, {tech:이} {day} {time}에 방문하기로 한다. 비용은 {cost} 정도다.",
     "{P1}의 {problem:을} 고치러 {day} {time}에 {tech:이} 방문하며, 비용은 {cost} 정도다.",
     "{P1:은} {P2}에게 {problem:을} 알리고, {P2:는} {day} {time}에 {tech}의 방문 수리를 잡아 준다. 예상 비용은 {cost:이다}.",
     "{day} {time}에 {tech:이} {P1}의 집을 찾아 {problem:을} 고친다. 비용은 약 {cost:이다}.",
     "{P1:은} {problem:으로} 수리를 부탁하고, {day} {time}에 {tech:이} 오며 약 {cost:이} 든다는 안내를 받는다."],
    gists=["{P1:은} {problem:을} 고치려고 수리 기사를 부른다.",
           "{P1:은} 집에 생긴 문제 때문에 방문 수리를 예약한다."],
    mask=masked("#Address#", ("방문할 주소 다시 한 번 불러 주시겠어요?", "주소 확인 좀 할게요."),
                ("#Address#예요.", "네, #Address#입니다."),
                ("방문 주소는 #Address#다.", "{P1:은} 주소 #Address#를 알려 준다.")),
)

register_topic(
    "취업 면접",
    lambda rng: dict(
        company=rng.choice(["한빛전자", "미래소프트", "푸른식품", "새길물산", "다온디자인", "하늘항공", "바른제약", "누리게임즈"]),
        position=rng.choice(["마케팅", "웹 개발", "회계", "영업 관리", "디자인", "인사", "데이터 분석"]),
        day=day(rng), time=clock(rng, 9, 17), name=person(rng),
        place=rng.choice(["본사 7층 면접실", "본사 2층 회의실", "판교 사옥 3층", "강남 지점 회의실"]),
        bring=rng.choice(["포트폴리오", "신분증", "자격증 사본", "졸업 증명서"])),
    [[turn(2, "안녕하세요, {company} 인사팀입니다. {name} 님 맞으시죠?", "{company} 채용 담당자입니다. {name} 님 되시나요?"),
      turn(1, "네, 맞습니다.", "아, 네. 제가 {name:이에요}."),
      turn(2, "{position} 직무 서류 전형에 합격하셔서 면접 안내드리려고요.", "{position} 직무 지원하셨죠? 서류 합격하셨어요."),
      turn(1, "아, 정말요? 감사합니다!", "와, 정말 감사합니다."),
      turn(2, "면접은 {day} {time}에 {place}에서 진행됩니다.", "{day} {time}까지 {place:으로} 오시면 돼요."),
      turn(1, "준비물이 따로 있을까요?", "혹시 챙겨 갈 게 있나요?"),
      turn(2, "{bring:을} 꼭 가져오세요.", "{bring} 하나만 챙겨 오시면 됩니다."),
      bye(1, "네, 꼭 챙기겠습니다.", "알겠습니다. 그날 뵙겠습니다.")],
     [turn(1, "저 {company} {position} 직무 면접 보게 됐어요!", "대박, 저 {company} 서류 붙었어요. {position} 직무로요!"),
      turn(2, "와, 축하해요! 언제예요?", "정말요? 면접은 언제예요?"),
      turn(1, "{day} {time:이요}. {place}에서 본대요.", "{day} {time}에 {place:으로} 오래요."),
      turn(2, "준비할 건 많아요?", "뭐 가져가야 돼요?"),
      turn(1, "{bring:을} 가져오래요. 오늘 밤에 챙겨 둬야죠.", "{bring:이} 필요하대요."),
      bye(2, "{name} 씨라면 잘 할 거예요. 힘내요!", "{name} 씨, 분명히 붙을 거예요.")]],
    ["{P1:은} {day} {time}에 {place}에서 {company} {position} 직무 면접을 보고, {bring:을} 챙겨 가야 한다.",
     "{P1:은} {day} {time} {company} {position} 면접에 {bring:을} 가지고 가기로 한다.",
     "{company} {position} 면접 일정은 {day} {time:이고}, 장소는 {place:이다}. {P1:은} {bring:을} 준비한다.",
     "{name:은} {day} {time}에 있을 {company}의 {position} 직무 면접을 앞두고 {bring:을} 챙기기로 한다.",
     "{company} {position} 직무 면접을 {day} {time}에 {place}에서 보게 된 {P1:은} {bring:을} 준비해야 한다."],
    gists=["{P1:은} {company} 면접 일정을 안내받는다.",
           "{P1:은} {position} 면접을 앞두고 준비물을 확인한다."],
    mask=masked("#Email#", ("자세한 안내 메일은 어디로 받아요?", "안내 메일 주소 확인할게요."),
                ("#Email#로 받기로 했어요.", "#Email#이에요."),
                ("{P1:은} 면접 안내를 #Email#로 받는다.", "면접 안내 메일은 #Email#로 간다.")),
)

_WEATHER = [("비가 엄청 많이 온대요", "비 예보"), ("태풍이 올라온대요", "태풍"), ("미세먼지가 최악이래요", "심한 미세먼지"),
            ("폭염 주의보가 내렸대요", "폭염"), ("눈이 많이 온대요", "폭설 예보")]


def _weather_slots(rng: random.Random) -> dict[str, str]:
    talk, noun = rng.choice(_WEATHER)
    return dict(weather_talk=talk, weather=noun, day=day(rng), time=clock(rng, 10, 19),
                before=rng.choice(["북한산 등산", "놀이공원", "한강 피크닉", "캠핑", "바다 낚시"]),
                after=rng.choice(["영화", "실내 클라이밍", "보드게임 카페", "미술 전시회", "방탈출 카페"]),
                meet=rng.choice(["강남역 11번 출구", "신촌 스타벅스 앞", "시청역 3번 출구", "합정역 2번 출구", "종로 보신각 앞"]))


register_topic(
    "날씨와 약속", _weather_slots,
    [[turn(1, "{day} 우리 {before} 가기로 했잖아요. 그런데 일기예보 봤어요?", "{day} {before} 말인데요, 날씨 확인했어요?"),
      turn(2, "아니요, 왜요?", "아직요. 무슨 일 있어요?"),
      turn(1, "{weather_talk}.", "음, {weather_talk}."),
      turn(2, "아, 그럼 야외는 좀 힘들겠네요. {after:은} 어때요?", "그럼 {before:은} 다음에 가고 {after} 갈까요?"),
      turn(1, "좋아요! 그럼 {time}에 {meet}에서 만나요.", "그래요. {time}까지 {meet:으로} 와요."),
      bye(2, "네, 늦지 않게 갈게요.", "알겠어요, 그때 봐요.")],
     [turn(2, "{day} 날씨 괜찮대요? {before} 가려면 날씨가 좋아야 하는데.", "{day} {before} 갈 수 있을까요?"),
      turn(1, "음, {weather_talk}.", "아, 그게요. {weather_talk}."),
      turn(2, "어쩌죠. 그럼 그냥 {after:으로} 바꿀까요?", "아쉽다. 대신 {after} 어때요?"),
      turn(1, "그래요. 시간은 그대로 {time}, 장소는 {meet:으로} 해요.", "좋아요. {meet}에서 {time}에 봐요."),
      bye(2, "좋아요. 그때 봐요.", "알겠어요, 이따 연락해요.", keep=0.7)]],
    ["{P1:과} {P2:는} {weather} 때문에 {day} {before} 계획을 {after:으로} 바꾸고 {time}에 {meet}에서 만나기로 한다.",
     "{weather:으로} {day} {before:이} 어려워지자 {P1:과} {P2:는} {after:으로} 계획을 바꾸고 {time}에 {meet}에서 보기로 한다.",
     "{P1:과} {P2:는} {day} {time}에 {meet}에서 만나기로 하고, {weather} 때문에 일정은 {before}에서 {after:으로} 변경한다.",
     "{day} {before} 약속이 {weather} 때문에 {after:으로} 바뀐다. {P1:과} {P2:는} {time}에 {meet}에서 만난다.",
     "{weather} 때문에 {P1:과} {P2:는} {before} 대신 {after:을} 택하고, {time}에 {meet}에서 보기로 한다."],
    gists=["{P1:과} {P2:는} 날씨 때문에 약속을 {after:으로} 바꾼다.",
           "{weather} 소식에 {P1:과} {P2:는} 야외 계획을 취소한다."],
    guest=Aside((turn(3, "{after:은} 저도 좋아요. 같이 갈게요.", "저도 끼워 줘요. {after} 가고 싶었어요."),),
                ("{P3}도 함께하기로 한다.", "{P3}도 {after}에 같이 가기로 한다.")),
    mask=masked("#PhoneNumber#", ("혹시 못 찾으면 어디로 전화해요?", "번호 바뀌었다고 했죠? 새 번호 알려 줘요."),
                ("#PhoneNumber#로 전화해요.", "#PhoneNumber#예요."),
                ("{P1:은} 연락처 #PhoneNumber#를 알려 준다.", "{P1}의 연락처는 #PhoneNumber#다.")),
)

# ---------------------------------------------------------------- assembling dialogues

# Said just before the conversation winds down, so they never split a question from its answer.
SMALL_TALK = [
    ((1, "아, 잠깐만요. 메모 좀 할게요."), (2, "네, 천천히 하세요.")),
    ((2, "더 정할 거 있어요?"), (1, "아니요, 이 정도면 충분해요.")),
    ((1, "요즘 정말 정신이 없네요."), (2, "다들 그렇죠, 뭐. 그래도 힘내요.")),
    ((2, "잠시만요, 다시 한 번 확인해 볼게요."), (1, "네, 기다릴게요.")),
    ((1, "혹시 제가 다시 연락드려야 하나요?"), (2, "아니요, 따로 연락 안 주셔도 돼요.")),
    ((1, "오늘 바쁘시죠?"), (2, "네, 좀 그렇네요. 그래도 괜찮아요.")),
]
FILLERS = ["음, ", "아, ", "어, ", "음, ", "아, ", "그럼 "]
_NO_FILLER = ("네", "음", "아", "어", "그럼", "와", "오,", "저", "좋아요", "정말", "대박")


@dataclass
class Example:
    """One row: a dialogue with one summary (train, dev) or several references (test)."""
    topic: str
    dialogue: str
    summaries: list[str]


def _speak(rng: random.Random, turns, slots) -> tuple[list[tuple[int, str]], int]:
    """The kept turns as (speaker, text), and where the closing turns begin."""
    kept = [t for t in turns if t.keep >= 1.0 or rng.random() < t.keep]
    cut = next((i for i, t in enumerate(kept) if t.closing), len(kept))
    return [(t.speaker, fill(rng.choice(t.lines), slots)) for t in kept], cut


def _merge_same_speaker(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """One turn per change of speaker: an inserted aside can end with the closing turn's speaker."""
    merged: list[tuple[int, str]] = []
    for speaker, text in lines:
        if merged and merged[-1][0] == speaker:
            merged[-1] = (speaker, merged[-1][1] + " " + text)
        else:
            merged.append((speaker, text))
    return merged


_NATIVE_COUNTS = dict(enumerate("한 두 세 네 다섯 여섯 일곱 여덟 아홉 열 열한 열두".split(), start=1))
_HEAD_COUNT = re.compile(r"^(\d+)명$")
_CLOCK = re.compile(r"^(?:오전|오후|아침|저녁|낮) (\d+시.*)$")


def reword(rng: random.Random, slots: dict[str, str]) -> dict[str, str]:
    """The slots as one reference writer puts them: sometimes "네 명" for "4명", "금요일" for
    "이번 주 금요일", "7시 반" for "오후 7시 반" (the same fact, not the dialogue's words)."""
    own = dict(slots)
    for key, value in slots.items():
        if rng.random() >= REWORD_RATE:
            continue
        if (m := _HEAD_COUNT.match(value)) and int(m.group(1)) in _NATIVE_COUNTS:
            own[key] = f"{_NATIVE_COUNTS[int(m.group(1))]} 명"
        elif value.startswith("이번 주 "):
            own[key] = value.removeprefix("이번 주 ")
        elif m := _CLOCK.match(value):
            own[key] = m.group(1)
    return own


def make_example(rng: random.Random, topic: Topic, n_summaries: int) -> Example:
    slots = {**_TAGS, **topic.slots(rng)}
    lines, cut = _speak(rng, rng.choice(topic.scripts), slots)
    roll = rng.random()
    aside = (topic.mask if topic.mask and roll < MASK_RATE
             else topic.guest if topic.guest and roll >= 1 - GUEST_RATE else None)
    extra = _speak(rng, aside.turns, slots)[0] if aside is not None else []
    if rng.random() < SMALL_TALK_RATE:
        # small talk must hand the word over to whoever speaks next
        following = (extra + lines[cut:])[0][0] if extra or cut < len(lines) else None
        extra = list(rng.choice([pair for pair in SMALL_TALK if pair[-1][0] != following])) + extra
    lines[cut:cut] = extra
    lines = _merge_same_speaker(lines)
    for i in range(1, len(lines)):
        speaker, text = lines[i]
        if rng.random() < FILLER_RATE and not text.startswith(_NO_FILLER):
            lines[i] = (speaker, rng.choice(FILLERS) + text)
    dialogue = "\n".join(f"#Person{speaker}#: {text}" for speaker, text in lines)
    summaries = []
    for template in rng.sample(topic.summaries + topic.gists, n_summaries):
        own = reword(rng, slots)
        sentences = [fill(template, own)]
        if aside is not None and rng.random() < ASIDE_REPORT_RATE:
            sentences.append(fill(rng.choice(aside.sentences), own))
        summaries.append(" ".join(sentences))
    return Example(topic.name, dialogue, summaries)


def generate(seed: int = 42) -> dict[str, list[Example]]:
    """All three splits; each split draws from its own stream so split sizes can change independently."""
    splits = {}
    for split, size in SPLIT_SIZES.items():
        rng = random.Random(f"raysum-sample-{seed}-{split}")
        n_summaries = TEST_REFERENCES if split == "test" else 1
        splits[split] = [make_example(rng, rng.choice(TOPICS), n_summaries) for _ in range(size)]
    return splits


def write_splits(splits: dict[str, list[Example]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, examples in splits.items():
        path = out / f"{split}.csv"
        n_refs = len(examples[0].summaries)
        header = ["summary"] if n_refs == 1 else [f"summary{i + 1}" for i in range(n_refs)]
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["fname", "dialogue", *header, "topic"])
            for i, ex in enumerate(examples):
                writer.writerow([f"{split}_{i}", ex.dialogue, *ex.summaries, ex.topic])
        paths.append(path)
    return paths


# ---------------------------------------------------------------- reference agreement

_TAG = re.compile(r"#(\w+)#")


def morphemes(kiwi, text: str) -> list[str]:
    """Kiwi morpheme forms, with each #Tag# kept as one token (digits spelled as letters so Kiwi
    does not split them off)."""
    protected = _TAG.sub(lambda m: "XTAG" + m.group(1).translate(str.maketrans("0123456789", "abcdefghij")), text)
    return [token.form for token in kiwi.tokenize(protected)]


def mean_pairwise_rouge_l(reference_sets: list[list[str]]) -> float:
    """Mean ROUGE-L F1 over all pairs of references of the same dialogue, on morpheme tokens."""
    from kiwipiepy import Kiwi
    from rouge_score.rouge_scorer import _score_lcs

    kiwi = Kiwi()
    scores = []
    for refs in reference_sets:
        tokens = [morphemes(kiwi, ref) for ref in refs]
        scores += [_score_lcs(a, b).fmeasure for a, b in combinations(tokens, 2)]
    return sum(scores) / len(scores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=42, help="random seed; 42 writes the shipped files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder for train/dev/test.csv")
    args = parser.parse_args(argv)

    splits = generate(args.seed)
    for path in write_splits(splits, args.out):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    everything = [ex for examples in splits.values() for ex in examples]
    summaries = [s for ex in everything for s in ex.summaries]
    print("dialogues: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + f"; topics: {len(TOPICS)}")
    print(f"mean dialogue length {sum(len(ex.dialogue) for ex in everything) / len(everything):.0f} chars "
          f"(max {max(len(ex.dialogue) for ex in everything)}), "
          f"mean summary length {sum(map(len, summaries)) / len(summaries):.0f} chars "
          f"(min {min(map(len, summaries))}, max {max(map(len, summaries))})")
    rouge = mean_pairwise_rouge_l([ex.summaries for ex in splits["test"]])
    print(f"test references: mean pairwise ROUGE-L F1 (kiwi morphemes) {rouge:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
