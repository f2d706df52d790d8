"""A tiny random-init Llama and a byte-level BPE tokenizer trained locally, fully offline.

    python -m training.tiny_model OUT_DIR

The tokenizer is trained on the bundled sample data and the prompt templates, so Korean text
tokenizes into a few hundred tokens per row, and it carries Llama-3's special tokens
(``<|begin_of_text|>`` is added as BOS, ``<|end_of_text|>`` is EOS and pad). The model has
Llama-3's shape features (GQA, untied head, rope_theta 500000) at toy size. Weights are seeded,
so the build is deterministic. Like ``beomi/Llama-3-Open-Ko-8B``, it ships a stale
``generation_config.json`` (Llama-2's bos 1, eos 2, pad 2), so the demo meets the real base's trap.
"""
import json
import sys
from pathlib import Path

from preprocess.prompts import card_prompt
from preprocess.sources import SOURCES

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
SPECIAL_TOKENS = [BOS, EOS, "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
STALE_GENERATION_IDS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}  # the base's generation_config.json


def training_corpus() -> list[str]:
    """The sample rows' texts, and the two templates (Axolotl's alpaca as trained, the card's)."""
    from axolotl.prompters import AlpacaPrompter

    alpaca = AlpacaPrompter()
    texts = [next(alpaca.build_prompt("q", "i")), next(alpaca.build_prompt("q", "")), card_prompt("q")] * 20
    for source in SOURCES.values():
        for line in source.sample_path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # the samples include broken lines on purpose
                continue
            if isinstance(row, dict):
                texts += [v for v in row.values() if isinstance(v, str)]
    return texts


TINY = {"vocab_size": None, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048}
# Llama-3-8B's shape (beomi/Llama-3-Open-Ko-8B's config.json), for random models of the real size.
LLAMA3_8B = {"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 8192}


def tokenizer(vocab_size: int = 3000):
    """The byte-level BPE tokenizer, trained on ``training_corpus`` with Llama-3's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(training_corpus(), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS,
                                   model_max_length=2048)


def build(out: Path, vocab_size: int = 3000, shape: dict = TINY, device: str = "cpu") -> None:
    """The tokenizer, and a seeded random model of ``shape`` (vocab_size None: the tokenizer's),
    built on ``device`` in bf16 unless it is the tiny CPU one."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    hf_tok = tokenizer(vocab_size)
    hf_tok.save_pretrained(out)

    config = LlamaConfig(**{**shape, "vocab_size": shape["vocab_size"] or len(hf_tok)}, rope_theta=500000.0,
                         bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                         pad_token_id=hf_tok.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    dtype = torch.float32 if shape is TINY else torch.bfloat16
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(**STALE_GENERATION_IDS)
    model.save_pretrained(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m training.tiny_model OUT_DIR")
    build(Path(sys.argv[1]))
    print(f"tiny Llama and tokenizer written to {sys.argv[1]}")
