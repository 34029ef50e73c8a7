"""The monitor's views in Prometheus' text format (``prometheus_client``), computed at each scrape from
what was last seen: a registry of the monitor's own, no global one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .state import Monitor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ViewsCollector(Collector):
    """Gauges per node: power, controller reachable, OS up (by kind), job progress, probe latencies."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges of every node's last view."""
        power = GaugeMetricFamily("imaging_node_power_on", "1 when the node's power controller says on",
                                  labels=["node"])
        reachable = GaugeMetricFamily("imaging_node_controller_reachable",
                                      "1 when the node's power controller answered", labels=["node"])
        os_up = GaugeMetricFamily("imaging_node_os_up", "1 when the node answers on that control interface"
                                  " (ssh: its installed OS, imaging: the imaging OS)", labels=["node", "os"])
        percent = GaugeMetricFamily("imaging_node_job_percent", "progress of the load or save running on the node",
                                    labels=["node", "command"])
        latency = GaugeMetricFamily("imaging_probe_latency_seconds", "how long the node's last probe took",
                                    labels=["node", "probe"])
        for view in self.monitor.views.values():
            if view.power == "unknown":
                continue
            power.add_metric([view.hostname], 1.0 if view.power == "on" else 0.0)
            reachable.add_metric([view.hostname], 0.0 if view.power == "unreachable" else 1.0)
            for kind in ("ssh", "imaging"):
                os_up.add_metric([view.hostname, kind], 1.0 if view.os == kind else 0.0)
            if view.job and view.job.get("percent") is not None:
                percent.add_metric([view.hostname, str(view.job.get("command", ""))], float(view.job["percent"]))
            for probe, seconds in view.latency.items():
                latency.add_metric([view.hostname, probe], seconds)
        yield from (power, reachable, os_up, percent, latency)


def registry_of(monitor: Monitor) -> CollectorRegistry:
    """A registry holding the monitor's gauges only."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ViewsCollector(monitor))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text a Prometheus scrape reads."""
    return generate_latest(registry)
