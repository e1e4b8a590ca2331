"""Loading ``fallback.yaml``: bytes in, validated :class:`PolicyParts` out.

The file is foreign input edited under pressure, so before anything walks it:
its size is capped, anchors and aliases are refused (a 306-byte alias bomb
expands to gigabytes), nesting depth is capped, and custom tags are refused.
Then it is built from the composed node tree, so every error names the file,
line and key; duplicate keys (which PyYAML accepts silently) are errors; all
problems are reported at once.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from stigg_cache.core.terms import Grant, Staleness
from stigg_cache.errors import PolicyError
from stigg_cache.policy.rules import FeaturePolicy, Meter, PolicyParts, Rule

MAX_POLICY_BYTES = 256 * 1024  # a real policy is a few kilobytes
MAX_DEPTH = 12  # the schema nests 5 deep; more is a mistake or an attack
MAX_EVENTS = 50_000
SUPPORTED_VERSION = 1
_DURATION = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}

Path_ = tuple[str | int, ...]


def policy_version(content: bytes) -> str:
    """The version of a policy: a short hash of its exact bytes."""
    return hashlib.sha256(content).hexdigest()[:12]


MAX_DURATION_S = 3650 * 86_400.0  # ten years: beyond it a duration is a typo, not a budget


def _finite(value: object) -> float | None:
    """A YAML number as a finite float; ``None`` for anything else (an int beyond a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _shown(value: object) -> str:
    """A value for a message: short, whatever it is (a 5,000-digit int has no repr)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}..."


class _Issues:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[Path_, int] = {}
        self.found: list[tuple[str, int | None, str, str]] = []

    def add(self, path: Path_, message: str) -> None:
        line = None
        for depth in range(len(path), -1, -1):
            line = self.lines.get(path[:depth])
            if line is not None:
                break
        key = ".".join(str(part) if isinstance(part, str) else f"[{part}]" for part in path)
        self.found.append((self.source, line, key.replace(".[", "["), message))


def _refusal(event: yaml.Event, count: int, depth: int) -> str | None:
    """Why one parse event must not be walked, if it must not."""
    tag = getattr(event, "tag", None)
    if count > MAX_EVENTS:
        return "file is too complex"
    if isinstance(event, yaml.DocumentStartEvent) and count > 1:
        return "one document only ('---' starts a second one)"
    if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
        return "anchors and aliases (&, *) are not allowed"
    if tag is not None and tag not in _PLAIN_TAGS:
        return f"tag {tag!r} is not allowed"
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    return None


def _screen(content: bytes, issues: _Issues) -> bool:
    """Refuse what must not be walked: several documents, aliases, anchors, tags, deep nesting."""
    depth = 0
    try:
        for count, event in enumerate(yaml.parse(content, Loader=yaml.SafeLoader)):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            refusal = _refusal(event, count, depth)
            if refusal is not None:
                line = None if event.start_mark is None else event.start_mark.line + 1
                issues.found.append((issues.source, line, "", refusal))
                return False
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        problem = getattr(error, "problem", None) or str(error)
        issues.found.append((issues.source, line, "", f"not valid YAML: {problem}"))
        return False
    return True


def _build(node: yaml.Node, path: Path_, issues: _Issues, scalars: yaml.SafeLoader) -> Any:
    issues.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = (
                _scalar(key_node, (*path, "?"), issues, scalars)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if not isinstance(key, str):
                issues.lines[(*path, "?")] = key_node.start_mark.line + 1
                issues.add((*path, "?"), "keys must be plain strings")
                continue
            if key in result:
                issues.lines[(*path, key)] = key_node.start_mark.line + 1
                issues.add((*path, key), "duplicate key (the earlier one would be silently lost)")
                continue
            result[key] = _build(value_node, (*path, key), issues, scalars)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), issues, scalars) for i, item in enumerate(node.value)]
    return _scalar(node, path, issues, scalars)


def _scalar(node: yaml.Node, path: Path_, issues: _Issues, scalars: yaml.SafeLoader) -> Any:
    try:
        return scalars.construct_object(node)
    except (ValueError, yaml.YAMLError) as error:  # 2001-13-45 reads as a date, "=" as a tag
        issues.lines.setdefault(path, node.start_mark.line + 1)
        problem = getattr(error, "problem", None) or str(error)
        issues.add(path, f"unreadable value {str(node.value)[:40]!r}: {problem}")
        return None


def load_policy(content: bytes, source: str = "<policy>") -> PolicyParts:
    """Parse and validate policy bytes.

    Raises:
        PolicyError: anything wrong, each issue with file, line and key.
    """
    issues = _Issues(source)
    if len(content) > MAX_POLICY_BYTES:
        raise PolicyError([(source, None, "", f"file is larger than {MAX_POLICY_BYTES} bytes")])
    if not _screen(content, issues):
        raise PolicyError(issues.found)
    try:
        root = yaml.compose(content, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:  # the screen parsed it: this is only a safety net
        raise PolicyError([(source, None, "", f"not valid YAML: {error}")]) from None
    if root is None:
        raise PolicyError([(source, 1, "", "file is empty: write at least 'version: 1'")])
    data = _build(root, (), issues, yaml.SafeLoader(""))
    policy = _Validator(issues).policy(data, policy_version(content), source)
    if issues.found:
        raise PolicyError(issues.found)
    return policy


def load_policy_dict(data: Mapping[str, Any], source: str = "<dict>") -> PolicyParts:
    """Validate a policy given as plain Python data (errors name keys, not lines)."""
    issues = _Issues(source)
    version = policy_version(repr(sorted(data.items(), key=str)).encode())
    policy = _Validator(issues).policy(dict(data), version, source)
    if issues.found:
        raise PolicyError(issues.found)
    return policy


def load_policy_file(path: str | os.PathLike[str]) -> PolicyParts:
    """Read and validate a policy file.

    Raises:
        PolicyError: the file cannot be read or is invalid.
    """
    file = Path(path)
    try:
        with file.open("rb") as handle:
            content = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as error:
        raise PolicyError([(str(file), None, "", f"cannot read: {error.strerror}")]) from None
    return load_policy(content, str(file))


class _Validator:
    """Turns plain data into a policy, recording every problem instead of stopping."""

    def __init__(self, issues: _Issues) -> None:
        self.issues = issues

    def policy(self, data: Any, version: str, source: str) -> PolicyParts:
        top = self._mapping(
            data, (), {"version", "staleness", "features", "rules", "default", "meters"}
        )
        if top.get("version") != SUPPORTED_VERSION:
            self.issues.add(("version",), f"must be {SUPPORTED_VERSION} (write 'version: 1' first)")
        staleness = self._staleness(top.get("staleness"), ("staleness",), Staleness())
        features = {
            str(name): self._feature(spec, ("features", str(name)), staleness)
            for name, spec in self._mapping(top.get("features", {}), ("features",), None).items()
        }
        rules = self._rules(top.get("rules", []))
        default = None if "default" not in top else self._grant(top["default"], ("default",))
        meters = {
            str(name): self._meter(spec, ("meters", str(name)))
            for name, spec in self._mapping(top.get("meters", {}), ("meters",), None).items()
        }
        return PolicyParts(
            staleness=staleness,
            features=features,
            rules=tuple(rules),
            default=default,
            meters=meters,
            version=version,
            source=source,
        )

    def _mapping(self, value: Any, path: Path_, allowed: set[str] | None) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.issues.add(path, f"expected a mapping, got {_kind(value)}")
            return {}
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    self.issues.add(
                        (*path, key), f"unknown key; expected one of {', '.join(sorted(allowed))}"
                    )
        return {k: v for k, v in value.items() if allowed is None or k in allowed}

    def _duration(self, value: Any, path: Path_) -> float | None:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            self.issues.add(path, f"expected a duration like 30s, 5m, 24h or 7d, got {value!r}")
            return None
        seconds = float(match["amount"]) * _UNIT_S[match["unit"]]
        if not seconds <= MAX_DURATION_S:  # inf and NaN too
            self.issues.add(path, f"expected a duration of at most 3650d, got {_shown(value)}")
            return None
        return seconds

    def _staleness(self, value: Any, path: Path_, base: Staleness) -> Staleness:
        if value is None:
            return base
        spec = self._mapping(value, path, {"fresh_for", "max_staleness"})
        fresh = (
            base.fresh_for_s
            if "fresh_for" not in spec
            else self._duration(spec["fresh_for"], (*path, "fresh_for"))
        )
        stale = (
            base.max_staleness_s
            if "max_staleness" not in spec
            else self._duration(spec["max_staleness"], (*path, "max_staleness"))
        )
        if fresh is None or stale is None:
            return base
        if fresh > stale:
            self.issues.add(path, "fresh_for must not exceed max_staleness")
        return Staleness(fresh, stale)

    def _feature(self, value: Any, path: Path_, base: Staleness) -> FeaturePolicy:
        spec = self._mapping(value, path, {"fresh_for", "max_staleness", "fallback"})
        own = self._staleness(
            {k: spec[k] for k in ("fresh_for", "max_staleness") if k in spec}, path, base
        )
        return FeaturePolicy(
            fresh_for_s=own.fresh_for_s if "fresh_for" in spec else None,
            max_staleness_s=own.max_staleness_s if "max_staleness" in spec else None,
            fallback=None
            if "fallback" not in spec
            else self._grant(spec["fallback"], (*path, "fallback")),
        )

    def _grant(self, value: Any, path: Path_) -> Grant:
        spec = self._mapping(
            value, path, {"has_access", "usage_limit", "value", "values", "is_unlimited"}
        )
        has_access = spec.get("has_access")
        if not isinstance(has_access, bool):
            self.issues.add((*path, "has_access"), "required: true or false")
            has_access = False
        limit = self._number(spec, "usage_limit", path)
        number = self._number(spec, "value", path)
        unlimited = spec.get("is_unlimited", False)
        if not isinstance(unlimited, bool):
            self.issues.add((*path, "is_unlimited"), "expected true or false")
            unlimited = False
        values = spec.get("values")
        if values is not None and not (
            isinstance(values, list) and all(isinstance(v, str) for v in values)
        ):
            self.issues.add((*path, "values"), "expected a list of strings, e.g. [gpt-4, claude]")
            values = None
        extras = [k for k in ("usage_limit", "value", "values", "is_unlimited") if k in spec]
        if has_access is False and extras:
            self.issues.add(
                path, f"a grant with has_access: false cannot also set {', '.join(extras)}"
            )
        if unlimited and limit is not None:
            self.issues.add(path, "is_unlimited: true contradicts usage_limit")
        return Grant(
            has_access=has_access,
            usage_limit=limit,
            value=number,
            enum_values=None if values is None else tuple(values),
            is_unlimited=unlimited,
        )

    def _number(self, spec: Mapping[str, Any], key: str, path: Path_) -> float | None:
        value = spec.get(key)
        if value is None:
            return None
        number = _finite(value)
        if number is None or number < 0:
            self.issues.add((*path, key), f"expected a number >= 0, got {_shown(value)}")
            return None
        return number

    def _rules(self, value: Any) -> list[Rule]:
        if not isinstance(value, list):
            self.issues.add(("rules",), f"expected a list of rules, got {_kind(value)}")
            return []
        rules: list[Rule] = []
        seen: set[str] = set()
        for index, item in enumerate(value):
            path: Path_ = ("rules", index)
            spec = self._mapping(item, path, {"name", "match", "grant"})
            name = spec.get("name")
            if not isinstance(name, str) or not name.strip():
                self.issues.add(
                    (*path, "name"), "every rule needs a name (it is shown in Decision.rule)"
                )
                name = f"rules[{index}]"
            elif name in seen:
                self.issues.add((*path, "name"), f"duplicate rule name {name!r}")
            seen.add(name)
            match = self._mapping(
                spec.get("match"), (*path, "match"), {"customers", "resources", "plans"}
            )
            lists = {k: self._patterns(k, match[k], (*path, "match", k)) for k in match}
            if not any(lists.values()):
                self.issues.add(
                    (*path, "match"),
                    "needs customers, resources or plans; use 'default' for a catch-all",
                )
            grants = self._mapping(spec.get("grant"), (*path, "grant"), None)
            if not grants:
                self.issues.add((*path, "grant"), 'grant at least one feature, or "*" for all')
            rules.append(
                Rule(
                    name=name,
                    grants={
                        str(f): self._grant(g, (*path, "grant", str(f))) for f, g in grants.items()
                    },
                    customers=lists.get("customers", ()),
                    resources=lists.get("resources", ()),
                    plans=lists.get("plans", ()),
                )
            )
        return rules

    def _patterns(self, key: str, value: Any, path: Path_) -> tuple[Any, ...]:
        """A matcher's ids or globs; ``resources`` may also hold ``null``: no resource."""
        if key != "resources":
            return self._strings(value, path)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(
            v is None or (isinstance(v, str) and v) for v in value
        ):
            self.issues.add(
                path,
                "expected a list of resource ids or glob patterns, e.g. [eu-*]: '*' is any "
                "resource, null a check that names no resource",
            )
            return ()
        return tuple(value)

    def _strings(self, value: Any, path: Path_) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.issues.add(path, "expected a list of ids or glob patterns, e.g. [acme, ent-*]")
            return ()
        return tuple(value)

    def _meter(self, value: Any, path: Path_) -> Meter:
        spec = self._mapping(value, path, {"event", "aggregate", "field"})
        event = spec.get("event")
        if not isinstance(event, str) or not event:
            self.issues.add((*path, "event"), "required: the raw event name to count")
            event = ""
        aggregate = spec.get("aggregate", "count")
        if aggregate not in ("count", "sum"):
            self.issues.add((*path, "aggregate"), f"expected count or sum, got {aggregate!r}")
            aggregate = "count"
        field = spec.get("field")
        if aggregate == "sum" and not isinstance(field, str):
            self.issues.add(path, "aggregate: sum needs field: the dimension to add up")
        if aggregate == "count" and field is not None:
            self.issues.add((*path, "field"), "only aggregate: sum reads a field")
        return Meter(
            event=event, aggregate=aggregate, field=field if isinstance(field, str) else None
        )


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


__all__ = ["load_policy", "load_policy_dict", "load_policy_file", "policy_version"]
