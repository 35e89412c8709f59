"""Embedders behind `core.protocols.Embedder`, one module per backend.

Each registers under the `feilun.embedders` entry-point group by file stem
(`sentence.py` → "sentence") and exposes `load_embedder(folder, *, name) -> Embedder`.
Importing this package stays light (no torch).
"""
