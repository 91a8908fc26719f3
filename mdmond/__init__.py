"""mdmond: the metadata daemon for md arrays with external (IMSM, DDF) metadata.

This package knows the kernel's md interface and the daemon's behaviour; it
reaches the on-disk formats only through ``formats.base``.
"""

__version__ = "0.1.0"
