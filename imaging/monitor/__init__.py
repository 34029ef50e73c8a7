"""``imaging-monitor``: the testbed at a glance, live.

Every node is probed in a loop of its own (:mod:`.probe`: its power controller, its control
interface, the image its installed OS says it runs); :mod:`.state` holds what was last seen and
tells the subscribers of each change; :mod:`.web` serves it as JSON, as server-sent events, as
Prometheus metrics (:mod:`.metrics`) and as a web page (``page.html``).
"""
