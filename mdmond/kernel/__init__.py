"""The kernel's md interface, as the daemon sees it.

One vocabulary (``values``) for what md's sysfs attributes say; two drivers
(real sysfs and a simulated md) will speak it, so the monitor cannot tell
them apart.
"""
