"""Feilun (飞轮): an open base LLM plus your own data, made into a governed, served assistant."""

__version__ = "0.1.0"
