"""fallback.yaml validation: every error class, with its file, line and key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stigg_cache import FallbackPolicy, PolicyError, Source
from stigg_cache.policy.loader import MAX_POLICY_BYTES

EXAMPLE = Path(__file__).parents[2] / "examples" / "fallback.yaml"


def _issues(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(PolicyError) as caught:
        FallbackPolicy.from_yaml(text, "fallback.yaml")
    assert all(file == "fallback.yaml" for file, *_ in caught.value.issues)
    return [(line, key, message) for _, line, key, message in caught.value.issues]


def test_the_shipped_example_is_valid_and_explicit() -> None:
    policy = FallbackPolicy.from_file(EXAMPLE)
    assert policy.staleness_for("api_calls").max_staleness_s == 7200
    assert policy.staleness_for("sso").max_staleness_s == 7 * 86400
    assert policy.staleness_for("other").fresh_for_s == 60
    assert policy.resolve("ent-9", None, "sso").rule == "enterprise"
    assert policy.resolve("x", None, "unlisted").grant.has_access is False
    assert policy.meters["api_calls"].event == "api.request"
    assert len(policy.version) == 12


# (document, expected (line, key, message fragment)) — one row per error class.
ERROR_CASES = [
    ("version: 2\n", (1, "version", "must be 1")),
    ("staleness: {}\n", (1, "version", "must be 1")),
    ("version: 1\ncolour: red\n", (2, "colour", "unknown key")),
    ("version: 1\nstaleness:\n  fresh_for: 10\n", (3, "staleness.fresh_for", "duration like 30s")),
    (
        "version: 1\nstaleness: {fresh_for: 2h, max_staleness: 1h}\n",
        (2, "staleness", "must not exceed"),
    ),
    ("version: 1\nversion: 1\n", (2, "version", "duplicate key")),
    (
        "version: 1\nfeatures:\n  sso: {fallback: {has_access: yes please}}\n",
        (3, "features.sso.fallback.has_access", "true or false"),
    ),
    (
        "version: 1\nfeatures:\n  f: {fallback: {has_access: true, usage_limit: -5}}\n",
        (3, "features.f.fallback.usage_limit", ">= 0"),
    ),
    (
        "version: 1\nfeatures:\n  f: {fallback: {has_access: false, usage_limit: 5}}\n",
        (3, "features.f.fallback", "cannot also set usage_limit"),
    ),
    (
        "version: 1\nfeatures:\n  f: {fallback: {has_access: true, is_unlimited: true, usage_limit: 5}}\n",
        (3, "features.f.fallback", "contradicts"),
    ),
    (
        "version: 1\nfeatures:\n  f: {fallback: {has_access: true, values: gpt}}\n",
        (3, "features.f.fallback.values", "list of strings"),
    ),
    ("version: 1\nfeatures:\n  f: [1, 2]\n", (3, "features.f", "expected a mapping")),
    (
        "version: 1\nrules:\n  - match: {customers: [a]}\n    grant: {f: {has_access: true}}\n",
        (3, "rules[0].name", "needs a name"),
    ),
    (
        "version: 1\nrules:\n  - name: r\n    match: {customers: [a]}\n    grant: {f: {has_access: true}}\n  - name: r\n    match: {customers: [b]}\n    grant: {f: {has_access: true}}\n",
        (6, "rules[1].name", "duplicate rule name"),
    ),
    (
        "version: 1\nrules:\n  - name: r\n    match: {}\n    grant: {f: {has_access: true}}\n",
        (4, "rules[0].match", "use 'default'"),
    ),
    (
        "version: 1\nrules:\n  - name: r\n    match: {customers: [a]}\n    grant: {}\n",
        (5, "rules[0].grant", "at least one feature"),
    ),
    (
        "version: 1\nrules:\n  - name: r\n    match: {customers: [a], tenants: [b]}\n    grant: {f: {has_access: true}}\n",
        (4, "rules[0].match.tenants", "unknown key"),
    ),
    ("version: 1\nrules: {name: r}\n", (2, "rules", "list of rules")),
    (
        "version: 1\nmeters:\n  f: {event: e, aggregate: avg}\n",
        (3, "meters.f.aggregate", "count or sum"),
    ),
    ("version: 1\nmeters:\n  f: {event: e, aggregate: sum}\n", (3, "meters.f", "needs field")),
    ("version: 1\nmeters:\n  f: {aggregate: count}\n", (3, "meters.f.event", "required")),
    ("version: 1\ndefault: {has_access: true, colour: 1}\n", (2, "default.colour", "unknown key")),
    ("", (1, "", "file is empty")),
    ("version: 1\n  bad: indent\n", (2, "", "not valid YAML")),
    ("- 1\n- 2\n", (1, "", "expected a mapping")),
    ("version: 1\nx: !!python/object:os.system {}\n", (2, "", "tag")),
    ("version: 1\ndefault: &d {has_access: true}\nother: *d\n", (2, "", "anchors and aliases")),
]


@pytest.mark.parametrize(("document", "expected"), ERROR_CASES)
def test_each_error_class_names_line_key_and_what_is_expected(
    document: str, expected: tuple[int | None, str, str]
) -> None:
    line, key, fragment = expected
    found = _issues(document)
    assert any(
        found_line == line and found_key == key and fragment in message
        for found_line, found_key, message in found
    ), found


def test_all_problems_are_reported_at_once() -> None:
    found = _issues("version: 3\ncolour: red\nstaleness: {fresh_for: soon}\n")
    assert [key for _, key, _ in found] == ["colour", "version", "staleness.fresh_for"]


def test_error_message_reads_file_line_key() -> None:
    with pytest.raises(PolicyError, match=r"fallback.yaml:2: colour: unknown key"):
        FallbackPolicy.from_yaml("version: 1\ncolour: red\n", "fallback.yaml")


def test_alias_bomb_is_rejected_quickly() -> None:
    bomb = "version: 1\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + n)}: &{chr(98 + n)} [*{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}]\n"
        for n in range(8)
    )
    started = time.perf_counter()
    found = _issues(bomb)
    assert time.perf_counter() - started < 0.5
    assert "anchors and aliases" in found[0][2]


def test_huge_file_is_rejected_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "fallback.yaml"
    path.write_text("version: 1\n" + "# padding\n" * (MAX_POLICY_BYTES // 5))
    started = time.perf_counter()
    with pytest.raises(PolicyError, match="larger than"):
        FallbackPolicy.from_file(path)
    assert time.perf_counter() - started < 0.5


def test_deep_nesting_is_rejected() -> None:
    found = _issues("version: 1\nx: " + "[" * 100 + "]" * 100 + "\n")
    assert "nested deeper" in found[0][2]


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        FallbackPolicy.from_file(tmp_path / "nope.yaml")


def test_from_dict_validates_like_the_file() -> None:
    policy = FallbackPolicy.from_dict(
        {
            "version": 1,
            "rules": [
                {"name": "r", "match": {"customers": ["a*"]}, "grant": {"*": {"has_access": True}}}
            ],
        }
    )
    assert policy.resolve("abc", None, "f").source is Source.POLICY
    with pytest.raises(PolicyError, match="staleness.fresh_for"):
        FallbackPolicy.from_dict({"version": 1, "staleness": {"fresh_for": "later"}})


def test_policy_version_is_the_content_hash() -> None:
    one = FallbackPolicy.from_yaml("version: 1\n")
    again = FallbackPolicy.from_yaml("version: 1\n")
    other = FallbackPolicy.from_yaml("version: 1  # edited\n")
    assert one.version == again.version != other.version
