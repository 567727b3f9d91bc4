"""Compiled twins of pure-Python modules, built from ext/*.pyx.

Never import from here directly: go through netplane.fastpath, which falls
back to the pure-Python module when an extension is missing or disabled.
"""
