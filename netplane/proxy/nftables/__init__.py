"""The nftables mode: every Service in one verdict-map lookup (see mode.py)."""
