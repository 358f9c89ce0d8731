"""`--metrics HOST:PORT`: the counters of a running tunnel or relay in
Prometheus' text format, read from the pump on each scrape (a custom
collector: nothing is copied between scrapes). Needs the optional extra:
pip install 'tunpump[metrics]'."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Tuple

from .endpoint import parse_address


class MetricsUnavailable(RuntimeError):
    pass


def _require():
    try:
        import prometheus_client   # noqa: F401
    except ImportError:
        raise MetricsUnavailable("--metrics needs prometheus_client: pip install 'tunpump[metrics]' "
                                 "(or pip install prometheus_client)") from None
    return prometheus_client


# per-direction counters: (stats key, metric name, help)
_DIR_COUNTERS = (
    ("packets_out", "tunpump_packets", "Packets forwarded (segments, not super-packets)"),
    ("bytes_out", "tunpump_bytes", "Bytes forwarded"),
    ("packets_in", "tunpump_received_packets", "Packets taken in from the source"),
    ("bytes_in", "tunpump_received_bytes", "Bytes taken in from the source"),
    ("read_calls", "tunpump_read_calls", "Read system calls"),
    ("write_calls", "tunpump_write_calls", "Write system calls"),
    ("gso_split", "tunpump_gso_split", "Super-packets cut into segments"),
    ("gso_passed", "tunpump_gso_passed", "Super-packets passed through whole"),
    ("gro_built", "tunpump_gro_built", "Super-packets built by coalescing"),
    ("gso_fallbacks", "tunpump_gso_fallbacks", "Batches sent one datagram at a time (UDP_SEGMENT refused)"),
)
_QUEUE_COUNTERS = (
    ("connects", "tunpump_connects", "TCP connections made or accepted, UDP peers taken"),
    ("connect_attempts", "tunpump_connect_attempts", "TCP connects begun by a client (retries included)"),
    ("disconnects", "tunpump_disconnects", "Connections lost"),
    ("protocol_errors", "tunpump_protocol_errors", "Bad frames (each closes a TCP connection)"),
    ("peers_learned", "tunpump_peers_learned", "UDP peers learned"),
    ("peers_moved", "tunpump_peers_moved", "UDP peers moved to a new address by a transform (roaming)"),
    ("roams_refused", "tunpump_roams_refused", "Roam requests from a transform that could not apply"),
    ("wakeups", "tunpump_wakeups", "Worker wakeups"),
)


class PumpCollector:
    """Reads `snapshot()` (tunpump.monitor.Monitor.snapshot) on every scrape."""

    def __init__(self, snapshot: Callable[[], Dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
        st = self.snapshot()
        name = st["name"]
        info = InfoMetricFamily("tunpump", "The running tunnel or relay", labels=["name"])
        info.add_metric([name], {"kind": st["kind"], "device": st["device"], "endpoint": st["endpoint"]})
        yield info
        up = GaugeMetricFamily("tunpump_uptime_seconds", "Seconds since the pump started", labels=["name"])
        up.add_metric([name], st["uptime"])
        yield up
        off = GaugeMetricFamily("tunpump_offload", "1 for each offload in force on a device",
                                labels=["name", "device", "offload"])
        for dev, names in (st.get("offloads") or {}).items():
            for o in names:
                off.add_metric([name, dev, o], 1)
        yield off
        queues = st.get("queues") or []
        for key, metric, helptext in _DIR_COUNTERS:
            fam = CounterMetricFamily(metric, helptext, labels=["name", "direction", "queue"])
            for i, q in enumerate(queues):
                for d in ("to_endpoint", "to_device"):
                    fam.add_metric([name, d, str(i)], q[d][key])
            yield fam
        drops = CounterMetricFamily("tunpump_drops", "Packets dropped, by reason",
                                    labels=["name", "direction", "queue", "reason"])
        for i, q in enumerate(queues):
            for d in ("to_endpoint", "to_device"):
                for reason, v in q[d]["drops"].items():
                    drops.add_metric([name, d, str(i), reason], v)
        yield drops
        for key, metric, helptext in _QUEUE_COUNTERS:
            fam = CounterMetricFamily(metric, helptext, labels=["name", "queue"])
            for i, q in enumerate(queues):
                fam.add_metric([name, str(i)], q[key])
            yield fam
        peers = GaugeMetricFamily("tunpump_peer_up", "1 while a peer is up", labels=["name", "queue", "peer"])
        for p in st.get("peers") or []:
            peers.add_metric([name, str(p["queue"]), p["address"]], 1 if p["up"] else 0)
        yield peers


def serve(addr: str, snapshot: Callable[[], Dict[str, Any]]) -> Tuple[Any, Any]:
    """Serve the metrics on http://HOST:PORT/metrics from a daemon thread, on
    a registry of their own. Returns (server, thread): server.shutdown() stops it."""
    pc = _require()
    host, port = parse_address(addr, "--metrics")
    registry = pc.CollectorRegistry(auto_describe=False)
    registry.register(PumpCollector(snapshot))
    return pc.start_http_server(port, addr=host, registry=registry)
