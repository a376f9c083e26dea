"""CLI command modules: each registers its sub-parsers cheaply and imports heavy code lazily."""
