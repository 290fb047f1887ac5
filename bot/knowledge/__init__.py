"""The knowledge base: its typed model, the YAML loader with file and line for every problem,
the checks, and the establishments file."""
