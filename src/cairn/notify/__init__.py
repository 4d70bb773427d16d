"""Telling people: e-mail and webhooks on failure, recovery and silence; summary reports (design 15.6)."""
