"""How a node's next boot is decided on the server: one interface (:mod:`.base`), one module per boot
loader (``pxelinux`` for BIOS, ``grub`` for UEFI), each with its line in :data:`imaging.registry.BOOT`;
:mod:`.nextboot` flips and restores the per-node files whichever loader reads them."""
