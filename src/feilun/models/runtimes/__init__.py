"""Runtimes behind `ChatModel`, one module per backend.

Each registers under the `feilun.runtimes` entry-point group by file stem
(`transformers.py` → "transformers").

Each module exposes `load_runtime(record: BaseModel, cache_dir: Path) -> ChatModel`, which loads
the weights the record names. Importing this package stays light (no torch).
"""
