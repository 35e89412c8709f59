"""Models: the registry, weight sources, runtimes behind ChatModel, and the tiny-model factory."""
