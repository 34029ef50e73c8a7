"""The emulated testbed shipped with the product (``imaging-testbed``).

It stands in for hardware: every protocol the product speaks is answered by
a real program the product did not write (dnsmasq, busybox udhcpc, tftp and
telnetd, dropbear, udpcast); only the management cards and the nodes'
"firmware" decision are ours.  A package of its own beside the product, installed with it (its
Python dependencies by the ``[testbed]`` extra): it uses the product's errors only and imports
nothing from ``imaging.jobs`` or ``imaging.cli``; the product never imports it.

:mod:`~.handle` is its public handle, shared by tests and benchmarks; :mod:`~.cli` is
``imaging-testbed``.

Modules, one job each: :mod:`~.layout` (names, paths, addresses),
:mod:`~.lifecycle` (up, down, status, run, fault), :mod:`~.network`
(namespaces, bridge, dnsmasq, fault rules), :mod:`~.controller` (the
long-lived process), :mod:`~.cmc` (management cards), :mod:`~.node` (power
and boot), :mod:`~.firmware` (scripts run inside a node), :mod:`~.pxe`
(TFTP tree), :mod:`~.images` (test images), :mod:`~.faults`,
:mod:`~.control` (control channel), :mod:`~.state`, :mod:`~.procs`,
:mod:`~.files` (the product's config and inventory), :mod:`~.registry`
(running testbeds, recorded outside their folders), :mod:`~.discovery` (which
testbed a command acts on), :mod:`~.programs` (every external program run),
:mod:`~.bmc` and :mod:`~.redfish` (BMCs), :mod:`~.telnet_client` (a telnet client apart from the
product's), :mod:`~.vm` (the qemu tier, BIOS or UEFI).
"""
