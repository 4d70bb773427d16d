"""Snapshots as users see them: selecting by ID, alias and filters; walking and comparing trees."""
