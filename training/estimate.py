"""Wall time and GPU memory of a LoRA run, estimated from the token lengths before any GPU hour.

FLOP model, per token of a frozen base with LoRA (the accounting of PaLM's appendix B, less weight gradients):
forward 2·N and backward activation gradients 2·N (no weight gradients), so about 4·N, where N is
the matmul parameter count (lm_head included); LoRA's own weights add 6·N_lora; gradient
checkpointing recomputes the forward (+2·N). Attention adds 6·L·d·T² per sequence of T tokens
(causal, forward + backward; +2·L·d·T² with recompute). Flash attention skips padding in
attention, but the linear layers run on every padded position. Time = executed FLOPs /
(peak bf16 FLOP/s x utilisation); the utilisation is an assumption, stated in the report.
"""
from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

# Dense bf16 tensor peak (no sparsity; FP32 accumulate on the RTX card) and memory, from NVIDIA's
# datasheets: the cards a 24, 40, 48 or 80 GB budget means in practice.
GPUS = {"RTX-4090-24GB": (165e12, 24e9), "A100-40GB": (312e12, 40e9), "L40S-48GB": (362e12, 48e9),
        "A100-80GB": (312e12, 80e9), "H100-80GB": (989e12, 80e9)}
DEFAULT_UTILISATION = 0.40
RUNTIME_OVERHEAD_BYTES = 3e9  # CUDA context, allocator fragmentation, kernels' workspaces
LOGIT_BYTES = 10  # per token and vocab entry: bf16 logits, fp32 upcast, fp32 gradient
# NF4 with double quantization (QLoRA paper, section 3): 4 bits plus about 0.127 bits of constants
# per weight. Only the decoder's linear layers are quantized; embeddings and lm_head stay bf16.
NF4_BYTES = (4 + 0.127) / 8


@dataclass(frozen=True)
class Arch:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool = False

    @classmethod
    def from_config(cls, c) -> "Arch":
        return cls(c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
                   getattr(c, "num_key_value_heads", None) or c.num_attention_heads,
                   c.intermediate_size, c.vocab_size, bool(getattr(c, "tie_word_embeddings", False)))

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of the linear layers in one decoder layer: q, k, v, o, gate, up, down."""
        d, kv = self.hidden, self.hidden // self.heads * self.kv_heads
        return [(d, d), (d, kv), (d, kv), (d, d), (d, self.intermediate), (d, self.intermediate),
                (self.intermediate, d)]

    @property
    def decoder_params(self) -> int:
        """The decoder layers' linear weights (what QLoRA quantizes)."""
        return self.layers * sum(i * o for i, o in self.linear_shapes())

    @property
    def matmul_params(self) -> int:
        return self.decoder_params + self.hidden * self.vocab

    @property
    def total_params(self) -> int:
        """Matmul weights plus the embedding (and the norms' small vectors, ignored)."""
        return self.matmul_params + (0 if self.tied else self.hidden * self.vocab)

    def lora_params(self, r: int) -> int:
        return self.layers * sum(r * (i + o) for i, o in self.linear_shapes())


def padded_tokens(lengths: list[int], micro_batch: int, seed: int = 0) -> int:
    """Positions computed by the linear layers without packing: random micro batches, each padded
    to its longest row (the trainer's default sampler)."""
    order = lengths[:]
    random.Random(seed).shuffle(order)
    return sum(micro_batch * max(order[i:i + micro_batch]) for i in range(0, len(order), micro_batch))


def packed_sequences(lengths: list[int], sequence_len: int) -> int:
    """Bins of ``sequence_len`` tokens after best-fit-decreasing packing (an estimate of multipack)."""
    free: list[int] = []  # remaining room of each open bin, sorted
    for n in sorted(lengths, reverse=True):
        i = bisect.bisect_left(free, n)
        if i == len(free):
            bisect.insort(free, sequence_len - n)
        else:
            room = free.pop(i) - n
            bisect.insort(free, room)
    return len(free)


def run_flops(lengths: list[int], arch: Arch, r: int, micro_batch: int, sequence_len: int,
              packing: bool, checkpointing: bool, epochs: float, seed: int = 0) -> dict:
    """Executed FLOPs of the run and the token counts behind them."""
    per_token = 4 * arch.matmul_params + 6 * arch.lora_params(r)
    if checkpointing:
        per_token += 2 * arch.matmul_params + 2 * arch.lora_params(r)
    sequences = packed_sequences(lengths, sequence_len) if packing else len(lengths)
    positions = sequences * sequence_len if packing else padded_tokens(lengths, micro_batch, seed)
    attention = (6 + (2 if checkpointing else 0)) * arch.layers * arch.hidden * sum(t * t for t in lengths)
    return {"tokens": sum(lengths), "positions": positions, "sequences": sequences,
            "flops_per_epoch": positions * per_token + attention,
            "flops": epochs * (positions * per_token + attention)}


def peak_memory(arch: Arch, r: int, micro_batch: int, tokens_per_row: int, checkpointing: bool,
                four_bit: bool = False) -> dict:
    """Bytes on one GPU at the largest micro batch: bf16 weights (NF4 decoder weights for QLoRA),
    fp32 LoRA weights + gradients + two Adam moments, activations (34·d bytes per token and layer
    with flash attention, or only the layer inputs when checkpointing, plus one layer recomputed),
    logits, and a fixed overhead."""
    tokens = micro_batch * tokens_per_row
    per_layer = 34 * arch.hidden * tokens
    activations = (arch.layers * 2 * arch.hidden * tokens + per_layer) if checkpointing else arch.layers * per_layer
    decoder = arch.decoder_params
    weights = (NF4_BYTES * decoder + 2 * (arch.total_params - decoder)) if four_bit else 2 * arch.total_params
    parts = {"weights": weights, "lora_and_adam": 16 * arch.lora_params(r),
             "activations": activations, "logits": LOGIT_BYTES * tokens * arch.vocab,
             "overhead": RUNTIME_OVERHEAD_BYTES}
    parts["total"] = sum(parts.values())
    return parts


def estimate(lengths: list[int], arch: Arch, cfg: dict, utilisation: float = DEFAULT_UTILISATION) -> list[dict]:
    """One row per (GPU, packing) with hours and peak memory, for the config's settings. The peak
    is for one micro batch of the config's size, each row as long as the longest kept row (all
    sequence_len with packing)."""
    r, mb, seq = cfg["lora_r"], cfg["micro_batch_size"], cfg["sequence_len"]
    four_bit = bool(cfg.get("load_in_4bit")) or cfg.get("adapter") == "qlora"
    gc, epochs = bool(cfg.get("gradient_checkpointing")), float(cfg.get("num_epochs", 1))
    steps_per = mb * cfg.get("gradient_accumulation_steps", 1)
    rows = []
    for packing in (False, True):
        f = run_flops(lengths, arch, r, mb, seq, packing, gc, epochs, cfg.get("seed", 0) or 0)
        row_tokens = seq if packing else max(lengths)
        mem = peak_memory(arch, r, mb, row_tokens, gc, four_bit)
        for gpu, (peak, capacity) in GPUS.items():
            rows.append({"gpu": gpu, "packing": packing, "chosen": packing == bool(cfg.get("sample_packing")),
                         "optimizer_steps": math.ceil(f["sequences"] / steps_per) * math.ceil(epochs),
                         "positions_per_epoch": f["positions"], "flops": f["flops"],
                         "hours": f["flops"] / (peak * utilisation) / 3600,
                         "peak_memory_gb": mem["total"] / 1e9, "peak_at": f"{mb} x {row_tokens}",
                         "weights": "4-bit" if four_bit else "bf16", "fits": mem["total"] <= capacity})
    return rows
