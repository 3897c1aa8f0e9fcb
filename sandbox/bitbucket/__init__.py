"""A local stand-in for Bitbucket Cloud's REST API 2.0 (and git over HTTP), for tests and the demo
(see app.py)."""
