"""Shared test configuration: the tiers and how they are selected.

- unit:   no root, no kernel changes; the default for plain `pytest tests/unit`.
- kernel: root and throwaway network namespaces on this machine's kernel.
- vm:     another kernel booted with virtme-ng (none yet).
`make test` runs unit and kernel; kernel tests skip themselves without root.
"""
