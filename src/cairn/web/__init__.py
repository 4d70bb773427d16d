"""The server console (design 18): pages the server serves to a browser, composed into the
server's app by `cairn server serve`. It acts through the server's admin operations and state,
never on storage (an import-linter contract)."""
