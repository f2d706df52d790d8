"""Synthetic source rows in the real schemas and at the real sizes, for the benchmarks and the tests.

Deterministic for a given seed. The text is not data: words drawn from a vocabulary written for this
benchmark (common nouns with particles, rarer and short words, inflected verbs, numbers, a few
Latin-script terms) in proportions that give the real Llama-3 tokenizer what real Korean gives it.

Measured with the Llama-3 tokenizer (Meta's tiktoken ``tokenizer.model``, 128,000 BPE ranks):

    real KoBEST test texts (skt/kobest_v1)     0.65-0.72 tokens per character, 2.83 per word
    this generator, 2,000 rows per source      0.66 tokens per character, 3.0 per word
    the previous 30-noun filler                0.36 tokens per character, 1.07 per word

Row lengths are an assumption, not a measurement: KoAlpaca answers are long (Naver KiN answers),
OpenOrca-KO instructions range from one line to a passage, and guanaco conversations run one to
four exchanges, some ending in an unanswered question.
"""
import random

# Train-split sizes of the pinned revisions (the dataset viewer's row counts).
REAL_SIZES = {"koalpaca": 21_155, "openorca_ko": 21_632, "guanaco_ko": 9_846}

NOUNS = ("학교 회사 사람 질문 답변 방법 이유 설명 데이터 모델 서울 음식 건강 운동 공부 시간 문제 결과 과정 생각 "
         "경우 정보 사용 필요 가능 가족 친구 여행 경제 사회 문화 역사 과학 기술 환경 정부 시장 가격 "
         "소비자 생산 교육 학생 선생님 병원 의사 치료 증상 날씨 계절 바다 산책 도서관 컴퓨터 프로그램 "
         "인공지능 언어 번역 문장 단어 의미 표현 감정 관계 대화 상황 조건 규칙 계획 목표 전략 효과 영향 "
         "원인 해결 방안 차이 특징 장점 단점 예시 기준 단계 부분 전체 수준 범위 비율 증가 감소 변화 발전 "
         "연구 실험 분석 자료 통계 조사 보고서 기록 관리 운영 서비스 제품 개발 투자 예산 비용 수익").split()
RARE = ("된장찌개 비빔밥 불고기 한복 명절 추석 설날 지하철 주차장 아파트 동네 이웃 고양이 강아지 식물 "
        "꽃잎 햇빛 빗물 미세먼지 배터리 반도체 스마트폰 온실가스 재생에너지 탄소중립 저출산 고령화 "
        "자율주행 블록체인 유전자 면역력 혈압 당뇨병 골다공증 우울감 수면장애 편의점 택배 중고거래 "
        "전세보증금 월세 청약 연말정산 건강보험 국민연금 소상공인 자영업자 창업 채용공고 면접 이력서 "
        "맞춤법 띄어쓰기 사자성어 속담 판소리 고려청자 조선왕조 훈민정음 거북선 독립운동 민주화 "
        "한라산 제주도 경복궁 해운대 전주 한옥마을 떡볶이 삼계탕 김장 장독대 막걸리 호떡 붕어빵").split()
SHORT = ("뇌 폐 꿀 숲 곰 빚 늪 볕 뼈 흙 굴 떡 죽 젓 밧줄 엿 삯 넋 옻 쑥 팥 콩 깨 밤 잣 귤 배추 무 파 "
         "짓는 젓고 붓고 엮어 꿰매 볶아 데친 삶은 찐 굽는 썰어 다져 빻은 헹궈 널어 갠 개켜 "
         "붐빈 한적한 눅눅한 촉촉한 바삭한 쫄깃한 얼큰한 담백한 싱거운 짭짤한 떫은 "
         "쬐는 뙤약볕 여쭈어 뵙고 여읜 닮은 낡은 헐은 곪은 붓기 저린 쑤시는 결린 "
         "텃밭 논밭 두렁 고랑 이랑 울타리 처마 툇마루 아궁이 부뚜막 솥뚜껑 가마솥").split()
VERBS = ("합니다 했습니다 하는 하면 해서 하고 하지만 하려면 되었다 됩니다 되는 있습니다 있는 있어서 없는 없습니다 "
         "만들어 만든 보면 보았다 알려면 받았다 받는 주세요 주는 써야 쓰는 읽고 읽으면 먹으면 먹는 가는 가서 "
         "와서 오는 살면서 배워야 배우는 가르치는 바꾸면 줄이려면 늘리는 지키는 찾아보세요 물어보면 "
         "설명하면 이해하기 사용하는 준비해야 확인했습니다 비교하면 선택할 유지하려면 추천합니다 발표했다 "
         "정리하면 계산하는 중요합니다 중요한 필요한 필요합니다 가능한 어려운 쉬운 좋은 좋습니다 많이 많은 "
         "적은 큰 작은 빠르게 느린 새로운 다양한 복잡한 간단한 늘어났습니다 줄어들었다 달라집니다 "
         "나타납니다 생각됩니다 알려져 권장됩니다 주의해야").split()
ADVERBS = "또한 그리고 하지만 따라서 특히 매우 가장 보통 먼저 다음으로 마지막으로 즉 반면 대부분 흔히 꾸준히 적절히".split()
PARTICLES = "은 는 이 가 을 를 에 에서 에게 으로 로 와 과 의 도 만 까지 부터 보다 처럼 이나 라도 마다 에는 으로는 과의".split()
UNITS = ("년", "개", "명", "%", "원", "일", "월", "km", "")
LATIN = ("AI", "GPU", "API", "OECD", "K-pop", "SNS", "IT", "PDF", "USB", "CO2", "Wi-Fi", "ChatGPT", "Python")
# (share of words, word list, chance of a particle after it); the rest are numbers and Latin terms
MIX = ((0.15, NOUNS, 0.75), (0.25, RARE, 0.6), (0.25, SHORT, 0.3), (0.20, VERBS, 0.0), (0.05, ADVERBS, 0.0))


def _word(rng: random.Random) -> str:
    r = rng.random()
    for share, words, particle in MIX:
        if r < share:
            return rng.choice(words) + (rng.choice(PARTICLES) if rng.random() < particle else "")
        r -= share
    if r < 0.05:
        return f"{rng.randint(1, 2024)}{rng.choice(UNITS)}"
    return rng.choice(LATIN)


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    words = [_word(rng) for _ in range(rng.randint(lo, hi))]
    for i in range(3, len(words) - 1, rng.randint(4, 9)):
        words[i] += ","
    return " ".join(words) + rng.choice((".", ".", ".", "?", "!"))


def text(rng: random.Random, lo: int, hi: int) -> str:
    """About ``lo``..``hi`` words (drawn log-uniformly: most texts short, a long tail), in sentences."""
    target = round(lo * (hi / lo) ** rng.random())
    parts, n = [], 0
    while n < target:
        k = min(rng.randint(6, 18), target - n)
        parts.append(sentence(rng, k, k))
        n += k
    return " ".join(parts)


def koalpaca_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"instruction": text(rng, 5, 60) + f" ({i})", "output": text(rng, 40, 400),
             "url": f"https://kin.naver.com/qna/detail.naver?docId={i}"} for i in range(n)]


def openorca_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    prefixes = ("flan", "t0", "niv", "cot", "KoCoT")
    return [{"id": f"{prefixes[i % 5]}.{i}", "instruction": text(rng, 8, 150),
             "input": "" if i % 4 == 0 else text(rng, 6, 25), "output": text(rng, 3, 250)}
            for i in range(n)]


def guanaco_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        turns = rng.choice((2, 2, 2, 2, 4, 4, 6, 8, 3))  # 3: ends with an unanswered Human turn
        body = "".join(f"### {'Human' if t % 2 == 0 else 'Assistant'}: "
                       + (text(rng, 4, 50) if t % 2 == 0 else text(rng, 30, 300))
                       for t in range(turns))
        rows.append({"text": body + f" ({i})"})
    return rows


ROWS = {"koalpaca": koalpaca_rows, "openorca_ko": openorca_rows, "guanaco_ko": guanaco_rows}
