"""Source groups: a union-find over names, shared by make-dataset (which writes groups) and the
detect dataset layouts (which read them), so neither imports the other."""

from __future__ import annotations


class Groups:
    """Union-find over names: items sharing any name end up in one group."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        """The representative name of ``name``'s group."""
        self.parent.setdefault(name, name)
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def join(self, names: list[str]) -> str:
        """Merge the groups of ``names``; returns the representative."""
        roots = sorted({self.find(n) for n in names})
        for other in roots[1:]:
            self.parent[other] = roots[0]
        return roots[0]
