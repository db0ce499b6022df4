"""Training recipes: each stage is a resumable step that writes safetensors + JSON config + metrics."""
