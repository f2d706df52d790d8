"""Stage 3, evaluation: benchmarks through lm-evaluation-harness, and chat in the card's format."""
