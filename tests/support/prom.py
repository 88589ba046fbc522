"""Values of a Prometheus text exposition, parsed by prometheus_client (not by string matching:
`1`, `1.0` and `1e0` are the same sample)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name{labels}` (exactly those labels), None when absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None
