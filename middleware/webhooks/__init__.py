"""Webhook intake: signature check, payload -> Event, dedup and the outbox."""
