"""Plain storage, no Dagster: versioned artifacts (``artifacts``) and the release pointer (``releases``).

The pipeline writes through these (its IO manager wraps ``ArtifactStore``); the service reads through
them, so it needs neither Dagster nor the instance.
"""
