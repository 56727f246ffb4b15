"""The embedded mini-world: a seeded synthetic world, its pre-training corpus and task datasets, a tokenizer
trained on the corpus, and a tiny OLMo-architecture model pre-trained into intermediate checkpoints."""
