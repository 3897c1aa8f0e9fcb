"""What comes in over HTTP, stored before the answer: source webhooks, the managed GitLab's
pipeline hooks, the trigger API."""
