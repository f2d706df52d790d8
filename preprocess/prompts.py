"""The prompt facts of the recipe, defined once.

Training data (preprocess), configs, chat and evaluation import these; nothing else spells them out.
"""

# The model card's system instruction, added to KoAlpaca and guanaco rows with probability 0.8.
SYSTEM_INSTRUCTION = (
    "당신은 인공지능 비서입니다. "
    "사용자가 답을 이해하기 위해 외부에서 검색할 필요가 없도록 상세한 답변을 제공하세요."
)
DEFAULT_SYSTEM_RATE = 0.8

# The card's recommended inference markers.
QUESTION = "### Question:"
INSTRUCTION = "### Instruction:"
RESPONSE = "### Response:"


def render_dialogue(history: list[tuple[str, str]], question: str) -> str:
    """The user side of a conversation as one text: earlier turns, then the last question.

    Earlier turns are written with the card's markers, so the text shown under a leading
    ``### Question:`` header reads exactly like the card's multi-turn example::

        q1
        ### Response:
        a1
        ### Question:
        q2

    A single-turn conversation (empty history) is just the question.
    """
    parts = [f"{q}\n{RESPONSE}\n{a}" for q, a in history] + [question]
    return f"\n{QUESTION}\n".join(parts)


def alpaca_row(user_text: str, output: str, with_system: bool) -> dict[str, str]:
    """Place a user text in Alpaca fields.

    With the system instruction, it goes in ``instruction`` and the user text in ``input``;
    without it, the user text is the ``instruction`` and ``input`` is empty.
    """
    if with_system:
        return {"instruction": SYSTEM_INSTRUCTION, "input": user_text, "output": output}
    return {"instruction": user_text, "input": "", "output": output}


def card_prompt(question: str, instruction: str = SYSTEM_INSTRUCTION,
                history: list[tuple[str, str]] = ()) -> str:
    """The card's recommended inference prompt: Question, then Instruction, then Response.

    Earlier (question, answer) turns are rendered exactly as preprocessing renders guanaco rows.
    """
    return (f"{QUESTION}\n{render_dialogue(list(history), question)}\n\n"
            f"{INSTRUCTION}\n{instruction}\n\n{RESPONSE}\n")
