"""ERP-facing code. Nothing in this package imports Flask or the database."""
