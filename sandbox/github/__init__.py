"""A local stand-in for GitHub's REST API, for tests and the demo (see app.py)."""
