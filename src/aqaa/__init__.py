"""aqaa: Audio Query -> Audio Answer, an open end-to-end speech-to-speech LM toolkit."""

__version__ = "0.1.0"
