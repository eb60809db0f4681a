"""Packet decoding: link layers, tunnels, IPv4/IPv6 (with fragments), TCP and UDP."""
