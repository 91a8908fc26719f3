"""The monitor: answers the kernel for each array, latency first."""
