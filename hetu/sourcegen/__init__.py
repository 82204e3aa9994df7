"""Client source code for an app's components: ``hetu build`` writes C# or TypeScript.

The generators read the built clusters of a namespace (``SystemClusters().build_clusters``)
and describe each row a client can receive. :func:`client_components` picks those
components; :mod:`.csharp` and :mod:`.typescript` render them; :func:`write_if_changed`
leaves an up-to-date file alone, so build tools watching its mtime stay quiet.
"""

from __future__ import annotations

from pathlib import Path

from ..common.permission import Permission
from ..data.component import BaseComponent
from ..system.definer import SystemClusters

# every row has these; `id` is rendered by each generator, `_version` never leaves the server
SERVER_FIELDS = ("id", "_version")


def client_components(namespace: str) -> list[type[BaseComponent]]:
    """Components of every cluster of ``namespace`` that a client may read, sorted by name.

    Copies made by ``depends=["system:suffix"]`` count as their original (a client reads
    ``Item:suffix`` rows with the ``Item`` type), and ADMIN components are left out.
    """
    clusters = SystemClusters().get_clusters(namespace)
    if clusters is None:
        raise RuntimeError(f"the clusters of namespace {namespace!r} are not built; call build_clusters first")
    originals = {comp.master_ or comp for cluster in clusters for comp in cluster.components}
    readable = [comp for comp in originals if comp.permission_ != Permission.ADMIN]
    return sorted(readable, key=lambda comp: comp.name_)


def client_fields(comp: type[BaseComponent]) -> list[tuple[str, object]]:
    """``(name, dtype)`` of the fields a client receives besides ``id``, by name."""
    return [(name, comp.dtype_map_[name]) for name, _ in comp.properties_ if name not in SERVER_FIELDS]


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` (UTF-8, newlines as given) unless the file already holds it.

    Returns whether the file was written. Missing parent directories are created.
    """
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True
