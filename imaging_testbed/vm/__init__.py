"""The VM tier of the testbed: qemu machines booting over PXE."""
