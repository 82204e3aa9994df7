"""Co-location clusters: systems that share components must share one transaction scope.

Two systems whose (full) component sets intersect land in the same cluster; a
cluster's id tags its tables (``{CLU<id>}`` in Redis keys), so every table a
transaction can touch lives in one Redis Cluster slot.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Cluster:
    """Systems that share components, and the components they share: one unit of
    transactions (one Redis Cluster hash tag)."""
    id: int
    components: set = field(default_factory=set)
    namespace: str = ""
    systems: set = field(default_factory=set)


def _sort_key(cluster: Cluster, systems: dict) -> str:
    if not cluster.components:
        return "00_" + min(cluster.systems)
    uses = Counter(
        comp for name in cluster.systems for comp in systems[name].full_components
    )
    # the hub is the component most systems use; ties go to the greatest class name
    hub = max(uses, key=lambda comp: (uses[comp], comp.__name__))
    return hub.__name__


def compute_clusters(namespace: str, systems: dict) -> list[Cluster]:
    """Clusters of ``systems`` (name -> SystemDefine with ``full_components``), numbered
    0..n-1 in a stable order (by hub component name)."""
    clusters: list[Cluster] = []
    for name, define in systems.items():
        merged = Cluster(-1, set(define.full_components), namespace, {name})
        rest = []
        for cluster in clusters:
            if cluster.components & merged.components:
                merged.components |= cluster.components
                merged.systems |= cluster.systems
            else:
                rest.append(cluster)
        clusters = rest + [merged]
    clusters.sort(key=lambda c: _sort_key(c, systems))
    for i, cluster in enumerate(clusters):
        cluster.id = i
    return clusters
