"""Pure checks of what a spec refers to: Secrets (by name and key) and other Recops objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from recops.conditions import Verdict


@dataclass(frozen=True)
class SecretNeed:
    """A Secret (and optionally a key in it) that a spec field needs."""

    field: str
    secret: str
    key: str | None = None


@dataclass(frozen=True)
class ObjectNeed:
    """Another object that a spec field refers to."""

    field: str
    kind: str
    name: str


def check_secrets(needs: list[SecretNeed], found: Mapping[str, frozenset[str] | None]) -> Verdict:
    """`found` maps a Secret name to its data keys, or None when the Secret does not exist."""
    for need in needs:
        keys = found.get(need.secret)
        if keys is None:
            return Verdict.fail("SecretNotFound", f"{need.field}: Secret {need.secret!r} does not exist in this "
                                f"namespace; create it or fix the name")
        if need.key is not None and need.key not in keys:
            return Verdict.fail("SecretKeyNotFound", f"{need.field}: Secret {need.secret!r} has no key "
                                f"{need.key!r}; add it or fix the key")
    return Verdict.ok("SecretsFound", "all referenced Secrets and keys exist")


def check_objects(needs: list[ObjectNeed], found: Mapping[tuple[str, str], bool]) -> Verdict:
    for need in needs:
        if not found.get((need.kind, need.name), False):
            return Verdict.fail(f"{need.kind}NotFound", f"{need.field}: {need.kind} {need.name!r} does not exist "
                                f"in this namespace; create it or fix the name")
    return Verdict.ok("ReferencesFound", "all referenced objects exist")
