"""Dual-codebook audio tokenizer: linguistic 16.7 Hz (Whisper features + k-means) and semantic 25 Hz (FSQ)."""
