"""Which host addresses aiortc offers as ICE candidates."""
from __future__ import annotations


def restrict_host_candidates(hosts: list[str]) -> None:
    """Offer only these host addresses as ICE candidates (process-wide).

    aioice never offers 127.0.0.1 on its own, and on the embedded default the
    browser is on this machine: loopback keeps the audio on it. An empty list
    leaves aioice's choice (every non-loopback interface).
    """
    import aioice.ice

    if not hosts:
        return
    v4 = [h for h in hosts if ":" not in h]
    v6 = [h for h in hosts if ":" in h]
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: (v4 if use_ipv4 else []) + (v6 if use_ipv6 else [])
