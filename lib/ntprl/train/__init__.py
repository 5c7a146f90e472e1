"""Trainers. They know nothing about the model beyond ``logits = model(tokens)``."""
