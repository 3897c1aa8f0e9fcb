"""Server-rendered pages: blueprints, templates and static files; no logic of their own."""
