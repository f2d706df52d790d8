"""Standalone converters: each Hub source to Alpaca JSONL (instruction / input / output)."""
