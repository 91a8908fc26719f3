"""Write or verify the test pattern on a volume, inside the guest (stdlib only).

    pattern.py write|verify DEVICE NAME [KIB]

The first KIB (default 1024) KiB of the volume get one text line per 512-byte
sector, ``"<name> sector <8-digit sector> "`` repeated, cut to 511 bytes, then
``"\\n"`` (the golden images' pattern; NAME is the volume's name at
creation, which stays the same when mdadm names it differently on assembly), so every sector says where it belongs
and a wrong RAID mapping or a bad rebuild shows as a wrong line.  ``verify``
exits 1 naming the first bad sector.
"""

from __future__ import annotations

import os
import sys


def sector(name: str, n: int) -> bytes:
    txt = f"{name} sector {n:08d} ".encode()
    return (txt * (512 // len(txt) + 1))[:511] + b"\n"


def main() -> int:
    mode, dev, name = sys.argv[1:4]
    kib = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
    want = b"".join(sector(name, s) for s in range(kib * 2))
    if mode == "write":
        fd = os.open(dev, os.O_WRONLY)
        os.write(fd, want)
        os.fsync(fd)
        os.close(fd)
        return 0
    with open(dev, "rb") as f:
        got = f.read(len(want))
    if got == want:
        print(f"pattern ok: {dev} {kib} KiB")
        return 0
    bad = next(i for i in range(0, len(want), 512) if got[i : i + 512] != want[i : i + 512])
    print(f"pattern MISMATCH: {dev} sector {bad // 512}: {got[bad : bad + 40]!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
