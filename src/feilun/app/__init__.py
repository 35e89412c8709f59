"""Composition root: builds concrete objects from settings and wires the stages together."""
