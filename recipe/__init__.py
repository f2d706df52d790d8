"""Glue around Axolotl and transformers: config checks, the CPU demo model and generation."""
