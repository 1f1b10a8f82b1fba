"""Plain ML functions (data in, data out). Nothing here imports Dagster."""
