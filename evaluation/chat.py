"""Chat with a model in the card's prompt format, one-shot or interactive, streaming tokens.

    python -m evaluation.chat [MODEL] [--config CONFIG] [--adapter DIR] [--question Q] [--format card|alpaca] [--show-prompt]

Without MODEL, the model is the run of ``--config``: its merged model, else base + adapter.

Without --question it reads questions from stdin; /reset clears the history, /exit (or EOF) quits.
Earlier turns are rendered with the same markers preprocessing uses for guanaco rows
(``preprocess.prompts``). ``--format card`` (default) is the card's Question / Instruction /
Response layout; ``--format alpaca`` is Axolotl's alpaca template, exactly as in training.
The eos and pad ids come from the tokenizer: the published generation configs of the base and
AOG models carry stale Llama-2 ids (eos 2, a byte in Llama-3's vocabulary).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError, run_command
from common.files import missing_local
from preprocess.prompts import SYSTEM_INSTRUCTION, card_prompt, render_dialogue
from training.run import model_to_use

FORMATS = ("card", "alpaca")


def render(question: str, history: list[tuple[str, str]] = (), fmt: str = "card",
           instruction: str = SYSTEM_INSTRUCTION) -> str:
    """The prompt for ``question`` after ``history`` (pairs of question, answer)."""
    if fmt == "card":
        return card_prompt(question, instruction, list(history))
    from axolotl.prompters import AlpacaPrompter  # the template `type: alpaca` trains on

    return next(AlpacaPrompter().build_prompt(instruction, render_dialogue(list(history), question)))


@dataclass
class Answer:
    text: str
    stopped: bool  # the model emitted its eos before the token limit
    tokens: int  # generated tokens, eos excluded


def load(model: str, adapter: str | None = None):
    """(model, tokenizer) as chat, the behaviour task and lm-eval use them: bf16 on CUDA, the
    adapter applied without merging."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model)
        lm = AutoModelForCausalLM.from_pretrained(
            model, dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32,
            device_map="auto" if torch.cuda.is_available() else None)
        if adapter:
            from peft import PeftModel

            lm = PeftModel.from_pretrained(lm, adapter)
    except (OSError, ValueError) as e:  # transformers/peft errors for a missing or incomplete folder
        raise UserError(f"cannot load {model}{' + ' + adapter if adapter else ''}: {str(e).splitlines()[0]}") from None
    if tok.pad_token is None:  # Llama-3's tokenizer has none; batched prompts need one (masked out)
        tok.pad_token = tok.eos_token
    return lm.eval(), tok


class Chat:
    def __init__(self, model: str, adapter: str | None = None, fmt: str = "card",
                 instruction: str = SYSTEM_INSTRUCTION, max_new_tokens: int = 512, temperature: float = 0.0,
                 loaded=None):
        self.model, self.tok = loaded or load(model, adapter)
        self.fmt, self.instruction = fmt, instruction
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.history: list[tuple[str, str]] = []

    def complete(self, prompts: list[str], streamer=None) -> list[Answer]:
        """One generation per prompt, as one left-padded batch."""
        import torch

        eos = self.tok.eos_token_id
        batch = self.tok(prompts, return_tensors="pt", padding=len(prompts) > 1, padding_side="left").to(self.model.device)
        sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
        with torch.no_grad():
            out = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, streamer=streamer, eos_token_id=eos,
                                      pad_token_id=self.tok.pad_token_id if self.tok.pad_token_id is not None else eos,
                                      **sampling)
        answers = []
        for ids in out[:, batch.input_ids.shape[1]:].tolist():
            stopped = eos in ids
            ids = ids[:ids.index(eos)] if stopped else ids
            answers.append(Answer(self.tok.decode(ids, skip_special_tokens=True).strip(), stopped, len(ids)))
        return answers

    def ask(self, question: str, stream=sys.stdout, show_prompt: bool = False) -> str:
        from transformers import TextStreamer

        prompt = render(question, self.history, self.fmt, self.instruction)
        if show_prompt:
            print(prompt, end="", file=stream, flush=True)
        streamer = TextStreamer(self.tok, skip_prompt=True, skip_special_tokens=True) if stream is sys.stdout else None
        answer = self.complete([prompt], streamer)[0].text
        if streamer is None:
            print(answer, file=stream, flush=True)
        self.history.append((question, answer))
        return answer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", help="model folder or Hub id (a merged model, or the base with --adapter)")
    p.add_argument("--config", type=Path, help="chat with the run this Axolotl config trains (when MODEL is not given)")
    p.add_argument("--adapter", help="LoRA adapter folder, applied without merging")
    p.add_argument("--question", help="ask once and exit (default: interactive)")
    p.add_argument("--format", choices=FORMATS, default="card")
    p.add_argument("--instruction", default=SYSTEM_INSTRUCTION, help="the ### Instruction: text")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--show-prompt", action="store_true", help="print each rendered prompt before the answer")
    args = p.parse_args(argv)
    return run_command(lambda: chat(args))


def chat(args: argparse.Namespace) -> None:
    args.model, args.adapter, _ = model_to_use(args.config, args.model, args.adapter)
    for name in filter(None, (args.model, args.adapter)):
        if missing_local(name):
            raise UserError(f"{name}: folder not found (train and merge first, or give a Hub id)")
    session = Chat(args.model, args.adapter, args.format, args.instruction, args.max_new_tokens, args.temperature)
    if args.question:
        session.ask(args.question, show_prompt=args.show_prompt)
        return
    print("Type a question; /reset clears the history, /exit quits.", file=sys.stderr)
    for line in sys.stdin:
        question = line.strip()
        if question == "/exit":
            break
        if question == "/reset":
            session.history.clear()
        elif question:
            session.ask(question, show_prompt=args.show_prompt)

if __name__ == "__main__":
    sys.exit(main())
