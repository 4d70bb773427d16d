"""Cairn's tests: a package, so helpers are imported by their full name (`tests.support.x`)."""
