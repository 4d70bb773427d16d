"""Hot standby (design 19): the witness that grants a leadership lease by compare-and-swap, and
the lease holder a server runs to know whether it may accept writes, and under which epoch.

It sits below the server (which asks its `Fence` before every write) and above the backends
(its client pins the witness's certificate like a Cairn server's)."""
