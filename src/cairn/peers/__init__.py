"""Peer mode (design 20): a machine that is a small Cairn server for its paired peers and backs
itself up onto `r` of them, each copy sealed with its owner's passphrase."""
