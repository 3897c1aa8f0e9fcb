"""GitHub as a source: signatures, events, pull request pinning, statuses and comments,
token and user look-ups."""
