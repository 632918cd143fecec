"""Pipeline stages, one concern per file; ``resolver.pipeline`` decides their order."""
