"""amuro: pre-training checkpoints x fine-tuning study workflow."""
