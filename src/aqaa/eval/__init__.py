"""Evaluation: ASR judge, text normalization, speech-control metrics, harness and cascade baseline."""
