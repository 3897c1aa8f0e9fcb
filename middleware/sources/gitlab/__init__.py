"""GitLab (gitlab.com or self-managed) as a source: webhook tokens, events, merge request
pinning, commit statuses, merge request notes and user look-ups."""
