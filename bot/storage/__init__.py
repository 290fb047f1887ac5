"""What is kept: the contracts (``base``) and their implementations (memory, SQLite)."""
