"""nlpai-lab/openassistant-guanaco-ko -> Alpaca JSONL, one example per conversation.

Column: text, turns run together as ``### Human: ...### Assistant: ...`` with no separator.
The target is the last assistant answer; earlier turns and the last question become the user
text (``prompts.render_dialogue``), placed like a KoAlpaca question: after the system
instruction with probability P, otherwise as the instruction. A trailing Human turn with no
answer is removed (counted in the report's notes).

    python -m preprocess.guanaco_ko [--input SRC] [--output PATH] [--seed N] [--system-rate P]
"""
import re
import sys

from preprocess.convert import Dropped, RowContext, blank, converter_main
from preprocess.prompts import alpaca_row, render_dialogue
from preprocess.sources import GUANACO_KO

TURN_MARKER = re.compile(r"### (Human|Assistant):")


def parse_turns(text: str, ctx: RowContext) -> list[tuple[str, str]]:
    """(role, message) pairs, strictly Human/Assistant alternating and ending with Assistant."""
    lead, *rest = TURN_MARKER.split(text)
    if not rest:
        raise Dropped("no_assistant_turn")
    if not blank(lead):
        raise Dropped("broken_alternation")
    turns = [(rest[i], rest[i + 1].strip()) for i in range(0, len(rest), 2)]
    if any(role != ("Human", "Assistant")[i % 2] for i, (role, _) in enumerate(turns)):
        raise Dropped("broken_alternation")
    if turns[-1][0] == "Human":
        turns.pop()
        ctx.note("trailing_human_turn_removed")
    if not turns:
        raise Dropped("no_assistant_turn")
    if any(blank(message) for _, message in turns):
        raise Dropped("empty_field")
    return turns


def convert(row: dict, ctx: RowContext) -> dict:
    messages = [message for _, message in parse_turns(row["text"], ctx)]
    history = list(zip(messages[0:-2:2], messages[1:-2:2]))
    user_text = render_dialogue(history, messages[-2])
    return alpaca_row(user_text, messages[-1], ctx.coin(row["text"]))


if __name__ == "__main__":
    sys.exit(converter_main(GUANACO_KO, convert, __doc__.splitlines()[0]))
