"""Paper sources: plain functions that return one month of papers in the schema of ``ml.schema``."""
