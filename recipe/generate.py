"""Answer one question with a (merged) model in the card's prompt format.

    python -m recipe.generate MODEL_DIR "질문" [--max-new-tokens N]

Greedy decoding. The eos and pad ids come from the tokenizer: the published generation configs of
the base and AOG models carry stale Llama-2 ids (eos 2), which in Llama-3's vocabulary is a byte.
"""
import argparse
import sys

from preprocess.prompts import card_prompt


def generate(model_dir: str, question: str, max_new_tokens: int = 64) -> tuple[str, str]:
    """(prompt, answer) for ``question``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt = card_prompt(question)
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    return prompt, tok.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir")
    p.add_argument("question")
    p.add_argument("--max-new-tokens", type=int, default=64)
    args = p.parse_args()
    try:
        prompt, answer = generate(args.model_dir, args.question, args.max_new_tokens)
    except OSError as e:  # transformers' error for a missing or incomplete model folder
        print(f"error: cannot load a model from {args.model_dir}: {e}", file=sys.stderr)
        return 2
    print(prompt + answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
