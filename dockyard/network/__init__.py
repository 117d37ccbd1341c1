"""Container networking: IPAM, bridge driver (netlink), nftables rules, embedded DNS, NetworkService."""

__all__: list[str] = []
