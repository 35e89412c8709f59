"""Knowledge stage: chunking, lexical and dense indexes, hybrid retrieval, citations."""
