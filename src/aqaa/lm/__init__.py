"""Backbone language models."""
