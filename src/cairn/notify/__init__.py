"""Telling people: e-mail and webhooks on failure, recovery and silence (design 15.6)."""
