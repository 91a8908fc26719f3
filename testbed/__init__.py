"""The real-kernel test bed: Debian's kernel with the md driver, under qemu.

The development machines' kernel has no md driver, so nothing on the host can
show what the real kernel, mdadm and mdmon do.  This package boots Debian's own
kernel (``linux-image-amd64``, md as modules) in a throw-away qemu guest that
sees the host's root read-only, so the guest runs the host's mdadm, python and
the project itself, over small virtual disks.

* ``testbed.provision`` installs the Debian packages and prepares the kernel
  and the initramfs in a cache folder (idempotent).
* ``testbed.vm`` boots a guest, runs one script as root, and returns its exit
  status and output (``testbed.vm.run``).
* ``testbed.transcript`` turns what the guest recorded into the reference
  transcripts of ``tests/data/transcripts``; ``testbed.golden`` regenerates
  ``tests/data/golden``.

``python -m testbed --help`` is the command line.
"""

from __future__ import annotations
