"""SpokenQA: a spoken-dialogue data generator (queries in many voices, answers in the assistant voice)."""
