"""`POST /v1/embeddings` with the packaged sentence embedder."""
