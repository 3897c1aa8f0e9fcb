"""Registrations: repositories a centre accepted, their pipelines, and the API to manage them."""
