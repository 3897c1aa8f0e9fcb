"""A local stand-in for the managed GitLab, for tests and the demo (see app.py)."""
