"""arxiv-embeddings: the Dagster code location."""
