"""Bucket lifecycle rules (pure): the AWS LifecycleConfiguration schema,
parsed and validated, written back, and evaluated against a key's versions.

Rules this file keeps:
- Parsing refuses what AWS refuses, with AWS's codes: a body that is not a
  LifecycleConfiguration of known elements is ``MalformedXML``; values out
  of range (non-positive days, a date not at midnight UTC, too many rules,
  a duplicate ID) are ``InvalidArgument``; combinations AWS forbids
  (ExpiredObjectDeleteMarker with Days/Date, AbortIncompleteMultipartUpload
  or ExpiredObjectDeleteMarker with a tag or size filter, a rule with no
  action) are ``InvalidRequest`` or ``InvalidArgument`` as AWS answers them.
  Transitions move objects between storage classes, and this store has one:
  a rule with a transition is ``NotImplemented``, never accepted and
  ignored.
- A lifecycle "day" is ``day_ns`` nanoseconds (86,400 s in production; the
  test-only time scale shortens it). As AWS does, a time "N days after T"
  is rounded up to the next day boundary (midnight UTC when days are real).
- Evaluation is a function of the rules, one key's versions (newest first)
  and the time: the caller (the maintenance process) turns the actions into
  ordinary writer mutations, so running a plan twice is harmless — an
  action on a version that is gone is simply not planned again.
"""

from __future__ import annotations

import calendar
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final
from xml.etree.ElementTree import Element

from seglake.errors import S3Error
from seglake.protocol.xml import document, el, http_date
from seglake.protocol.xml_requests import children_by_name, document_root, local_name

NS_PER_DAY: Final = 86_400 * 1_000_000_000
MAX_RULES: Final = 1000  # AWS's limit per configuration
MAX_ID_CHARS: Final = 255
MAX_NEWER_NONCURRENT: Final = 100
# 1000 rules with long prefixes and a few tags each fit well under this.
MAX_BODY_BYTES: Final = 1024 * 1024
_DATE_RE: Final = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:T00:00:00(?:\.0+)?(?:Z|\+00:00))?")


# ---- the configuration --------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_greater_than: int | None = None
    size_less_than: int | None = None
    # How it was written, so GET answers with the same shape.
    form: str = "filter"  # "legacy-prefix" | "filter" | "and" | "empty"

    def matches(self, key: str, size: int | None, tags: Mapping[str, str]) -> bool:
        if not key.startswith(self.prefix):
            return False
        if any(tags.get(k) != v for k, v in self.tags):
            return False
        if size is not None:
            if self.size_greater_than is not None and not size > self.size_greater_than:
                return False
            if self.size_less_than is not None and not size < self.size_less_than:
                return False
        return True


@dataclass(frozen=True)
class Rule:
    id: str
    enabled: bool
    filter: Filter
    expiration_days: int | None = None
    expiration_date_ns: int | None = None
    expired_object_delete_marker: bool | None = None
    noncurrent_days: int | None = None
    newer_noncurrent_versions: int | None = None
    abort_mpu_days: int | None = None


@dataclass(frozen=True)
class Configuration:
    rules: tuple[Rule, ...] = field(default_factory=tuple)


# ---- parsing --------------------------------------------------------------------------


def _one(found: dict[str, list[Element]], name: str) -> Element | None:
    items = found.get(name, [])
    if len(items) > 1:
        raise S3Error("MalformedXML", message=f"{name} given more than once")
    return items[0] if items else None


def _text(node: Element | None) -> str | None:
    if node is None:
        return None
    if len(node):
        raise S3Error("MalformedXML", message=f"{local_name(node.tag)} must hold text")
    return (node.text or "").strip()


def _positive(node: Element | None, what: str) -> int | None:
    raw = _text(node)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise S3Error("InvalidArgument", message=f"'{what}' must be a positive integer")
    return int(raw)


def _size(node: Element | None, what: str) -> int | None:
    raw = _text(node)
    if raw is None:
        return None
    if not raw.isdigit():
        raise S3Error("InvalidArgument", message=f"{what} must be a non-negative integer")
    return int(raw)


def _tag(node: Element) -> tuple[str, str]:
    parts = children_by_name(node, ("Key", "Value"))
    key, value = _text(_one(parts, "Key")), _text(_one(parts, "Value"))
    if key is None or value is None or not key:
        raise S3Error("MalformedXML", message="a Tag needs a Key and a Value")
    if len(key) > 128 or len(value) > 256:
        raise S3Error("InvalidArgument", message="tag keys are at most 128, values 256 characters")
    return key, value


def _date_ns(raw: str) -> int:
    found = _DATE_RE.fullmatch(raw)
    if not found:
        raise S3Error("InvalidArgument", message="'Date' must be at midnight GMT")
    try:
        day = datetime(int(found[1]), int(found[2]), int(found[3]), tzinfo=UTC)
    except ValueError:
        raise S3Error("InvalidArgument", message="'Date' is not a calendar date") from None
    return calendar.timegm(day.timetuple()) * 1_000_000_000


def _filter(rule: dict[str, list[Element]]) -> Filter:
    legacy = _one(rule, "Prefix")
    node = _one(rule, "Filter")
    if legacy is not None and node is not None:
        raise S3Error("MalformedXML", message="a rule has either Prefix or Filter, not both")
    if legacy is not None:
        return Filter(prefix=_text(legacy) or "", form="legacy-prefix")
    if node is None:
        raise S3Error("MalformedXML", message="a rule needs a Filter (or the older Prefix)")
    allowed = ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And")
    parts = children_by_name(node, allowed)
    if sum(len(v) for v in parts.values()) == 0:
        return Filter(form="empty")
    if sum(len(v) for v in parts.values()) > 1:
        raise S3Error("MalformedXML", message="a Filter holds one predicate; use And for more")
    and_node = _one(parts, "And")
    if and_node is not None:
        inner = children_by_name(and_node, allowed[:4])
        tags = tuple(_tag(t) for t in inner.get("Tag", []))
        if sum(len(found) for found in inner.values()) < 2:
            raise S3Error("MalformedXML", message="And combines two or more predicates")
        if len({k for k, _ in tags}) != len(tags):
            raise S3Error("InvalidArgument", message="duplicate tag keys in And")
        return _bounded(
            Filter(
                prefix=_text(_one(inner, "Prefix")) or "",
                tags=tags,
                size_greater_than=_size(
                    _one(inner, "ObjectSizeGreaterThan"), "ObjectSizeGreaterThan"
                ),
                size_less_than=_size(_one(inner, "ObjectSizeLessThan"), "ObjectSizeLessThan"),
                form="and",
            )
        )
    tag = _one(parts, "Tag")
    return _bounded(
        Filter(
            prefix=_text(_one(parts, "Prefix")) or "",
            tags=(_tag(tag),) if tag is not None else (),
            size_greater_than=_size(_one(parts, "ObjectSizeGreaterThan"), "ObjectSizeGreaterThan"),
            size_less_than=_size(_one(parts, "ObjectSizeLessThan"), "ObjectSizeLessThan"),
        )
    )


def _bounded(f: Filter) -> Filter:
    if (
        f.size_greater_than is not None
        and f.size_less_than is not None
        and f.size_greater_than >= f.size_less_than
    ):
        raise S3Error(
            "InvalidRequest", message="ObjectSizeGreaterThan must be less than ObjectSizeLessThan"
        )
    return f


def _rule(node: Element) -> Rule:
    parts = children_by_name(
        node,
        ("ID", "Status", "Filter", "Prefix", "Expiration", "NoncurrentVersionExpiration",
         "AbortIncompleteMultipartUpload", "Transition", "NoncurrentVersionTransition"),
    )  # fmt: skip
    if parts.get("Transition") or parts.get("NoncurrentVersionTransition"):
        raise S3Error(
            "NotImplemented",
            message="lifecycle transitions are not implemented: this store has one storage class",
        )
    rule_id = _text(_one(parts, "ID")) or ""
    if len(rule_id) > MAX_ID_CHARS:
        raise S3Error("InvalidArgument", message="ID length should not exceed allowed limit of 255")
    status = _text(_one(parts, "Status"))
    if status not in ("Enabled", "Disabled"):
        raise S3Error("MalformedXML", message="Status must be Enabled or Disabled")
    flt = _filter(parts)
    rule = Rule(id=rule_id, enabled=status == "Enabled", filter=flt)
    exp = _one(parts, "Expiration")
    if exp is not None:
        e = children_by_name(exp, ("Days", "Date", "ExpiredObjectDeleteMarker"))
        days = _positive(_one(e, "Days"), "Days")
        date_raw = _text(_one(e, "Date"))
        marker_raw = _text(_one(e, "ExpiredObjectDeleteMarker"))
        given = sum(x is not None for x in (days, date_raw, marker_raw))
        if given != 1:
            raise S3Error(
                "MalformedXML",
                message="Expiration holds exactly one of Days, Date, ExpiredObjectDeleteMarker",
            )
        marker: bool | None = None
        if marker_raw is not None:
            if marker_raw not in ("true", "false"):
                raise S3Error("MalformedXML", message="ExpiredObjectDeleteMarker is true or false")
            marker = marker_raw == "true"
            if flt.tags:
                raise S3Error(
                    "InvalidRequest",
                    message="ExpiredObjectDeleteMarker cannot be specified with object tags",
                )
        rule = _replace(
            rule,
            expiration_days=days,
            expiration_date_ns=None if date_raw is None else _date_ns(date_raw),
            expired_object_delete_marker=marker,
        )
    nve = _one(parts, "NoncurrentVersionExpiration")
    if nve is not None:
        n = children_by_name(nve, ("NoncurrentDays", "NewerNoncurrentVersions"))
        noncurrent_days = _positive(_one(n, "NoncurrentDays"), "NoncurrentDays")
        if noncurrent_days is None:
            raise S3Error(
                "MalformedXML", message="NoncurrentVersionExpiration needs NoncurrentDays"
            )
        newer = _positive(_one(n, "NewerNoncurrentVersions"), "NewerNoncurrentVersions")
        if newer is not None and newer > MAX_NEWER_NONCURRENT:
            raise S3Error("InvalidArgument", message="NewerNoncurrentVersions must be 1..100")
        rule = _replace(rule, noncurrent_days=noncurrent_days, newer_noncurrent_versions=newer)
    abort = _one(parts, "AbortIncompleteMultipartUpload")
    if abort is not None:
        a = children_by_name(abort, ("DaysAfterInitiation",))
        days_after = _positive(_one(a, "DaysAfterInitiation"), "DaysAfterInitiation")
        if days_after is None:
            raise S3Error(
                "MalformedXML", message="AbortIncompleteMultipartUpload needs DaysAfterInitiation"
            )
        if flt.tags or flt.size_greater_than is not None or flt.size_less_than is not None:
            raise S3Error(
                "InvalidRequest",
                message="AbortIncompleteMultipartUpload cannot be specified with tags or sizes",
            )
        rule = _replace(rule, abort_mpu_days=days_after)
    if exp is None and nve is None and abort is None:
        raise S3Error(
            "InvalidRequest", message="At least one action needs to be specified in a rule"
        )
    return rule


def _replace(rule: Rule, **changes: object) -> Rule:
    return dataclasses.replace(rule, **changes)  # type: ignore[arg-type]


def parse_configuration(body: bytes) -> Configuration:
    """``PutBucketLifecycleConfiguration``'s body → a validated Configuration."""
    root = document_root(body, "LifecycleConfiguration", MAX_BODY_BYTES)
    nodes = children_by_name(root, ("Rule",)).get("Rule", [])
    if not nodes:
        raise S3Error("MalformedXML", message="a LifecycleConfiguration holds one or more Rule")
    if len(nodes) > MAX_RULES:
        raise S3Error("InvalidArgument", message=f"at most {MAX_RULES} rules")
    rules = tuple(_rule(n) for n in nodes)
    ids = [r.id for r in rules if r.id]
    if len(set(ids)) != len(ids):
        raise S3Error(
            "InvalidArgument",
            message="Rule ID must be unique. Found same ID for more than one rule",
        )
    return Configuration(rules)


# ---- writing back (GetBucketLifecycleConfiguration) -----------------------------------


def _filter_xml(f: Filter) -> str:
    """The filter in the shape it was given (GET answers what PUT said)."""
    if f.form == "legacy-prefix":
        return el("Prefix", f.prefix)
    if f.form == "empty":
        return "<Filter></Filter>"
    sized = f.size_greater_than is not None or f.size_less_than is not None
    preds = []
    if f.prefix or not (f.tags or sized):  # a lone Prefix, even an empty one
        preds.append(el("Prefix", f.prefix))
    preds += ["<Tag>" + el("Key", k) + el("Value", v) + "</Tag>" for k, v in f.tags]
    if f.size_greater_than is not None:
        preds.append(el("ObjectSizeGreaterThan", f.size_greater_than))
    if f.size_less_than is not None:
        preds.append(el("ObjectSizeLessThan", f.size_less_than))
    if f.form == "and":
        return "<Filter><And>" + "".join(preds) + "</And></Filter>"
    return "<Filter>" + "".join(preds) + "</Filter>"


def configuration_xml(cfg: Configuration) -> bytes:
    out = []
    for r in cfg.rules:
        parts = [el("ID", r.id)] if r.id else []
        parts.append(_filter_xml(r.filter))
        parts.append(el("Status", "Enabled" if r.enabled else "Disabled"))
        if r.expiration_days is not None:
            parts.append("<Expiration>" + el("Days", r.expiration_days) + "</Expiration>")
        elif r.expiration_date_ns is not None:
            day = datetime.fromtimestamp(r.expiration_date_ns // 1_000_000_000, UTC)
            parts.append(
                "<Expiration>"
                + el("Date", day.strftime("%Y-%m-%dT00:00:00.000Z"))
                + "</Expiration>"
            )
        elif r.expired_object_delete_marker is not None:
            value = "true" if r.expired_object_delete_marker else "false"
            parts.append("<Expiration>" + el("ExpiredObjectDeleteMarker", value) + "</Expiration>")
        if r.noncurrent_days is not None:
            inner = el("NoncurrentDays", r.noncurrent_days)
            if r.newer_noncurrent_versions is not None:
                inner += el("NewerNoncurrentVersions", r.newer_noncurrent_versions)
            parts.append(f"<NoncurrentVersionExpiration>{inner}</NoncurrentVersionExpiration>")
        if r.abort_mpu_days is not None:
            parts.append(
                "<AbortIncompleteMultipartUpload>"
                + el("DaysAfterInitiation", r.abort_mpu_days)
                + "</AbortIncompleteMultipartUpload>"
            )
        out.append("<Rule>" + "".join(parts) + "</Rule>")
    return document("LifecycleConfiguration", out)


# ---- time ------------------------------------------------------------------------------


def due_ns(start_ns: int, days: int, day_ns: int = NS_PER_DAY) -> int:
    """``days`` lifecycle days after ``start_ns``, rounded up to a day boundary."""
    raw = start_ns + days * day_ns
    return -(-raw // day_ns) * day_ns


# ---- evaluation -----------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """What the evaluator needs of one version or delete marker of a key."""

    version_id: str
    created_ns: int
    size: int
    delete_marker: bool
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    kind: str  # "expire-current" | "delete-version" | "remove-marker"
    version_id: str
    rule_id: str


def plan_key(
    cfg: Configuration, key: str, versions: Sequence[Version], now_ns: int,
    day_ns: int = NS_PER_DAY,
) -> list[Action]:  # fmt: skip
    """What the rules do to one key now. ``versions`` newest first; the first
    one is current. At most one action per version; the first rule in
    configuration order that acts on a version wins."""
    if not versions:
        return []
    rules = [r for r in cfg.rules if r.enabled]
    actions: list[Action] = []
    current = versions[0]
    if not current.delete_marker:
        for r in rules:
            if not r.filter.matches(key, current.size, current.tags):
                continue
            if (r.expiration_days is not None and now_ns >= due_ns(
                    current.created_ns, r.expiration_days, day_ns)) or (
                    r.expiration_date_ns is not None and now_ns >= r.expiration_date_ns):  # fmt: skip
                actions.append(Action("expire-current", current.version_id, r.id))
                break
    elif len(versions) == 1:
        # A delete marker with nothing under it: expired object delete marker.
        for r in rules:
            if not r.filter.matches(key, None, {}):
                continue
            if r.expired_object_delete_marker or r.expiration_days is not None:
                actions.append(Action("remove-marker", current.version_id, r.id))
                break
    # Noncurrent versions: each became noncurrent when its successor was made.
    noncurrent = list(zip(versions[1:], versions[:-1], strict=True))
    for index, (v, successor) in enumerate(noncurrent):
        newer = index  # noncurrent versions newer than this one
        for r in rules:
            if r.noncurrent_days is None:
                continue
            size = None if v.delete_marker else v.size
            if not r.filter.matches(key, size, {} if v.delete_marker else v.tags):
                continue
            if r.newer_noncurrent_versions is not None and newer < r.newer_noncurrent_versions:
                continue
            if now_ns >= due_ns(successor.created_ns, r.noncurrent_days, day_ns):
                actions.append(Action("delete-version", v.version_id, r.id))
                break
    return actions


def plan_upload(
    cfg: Configuration, key: str, initiated_ns: int, now_ns: int, day_ns: int = NS_PER_DAY
) -> str | None:
    """The ID of the rule that aborts this multipart upload now, if any."""
    for r in cfg.rules:
        if (
            r.enabled
            and r.abort_mpu_days is not None
            and key.startswith(r.filter.prefix)
            and now_ns >= due_ns(initiated_ns, r.abort_mpu_days, day_ns)
        ):
            return r.id
    return None


def expiration_header(
    cfg: Configuration, key: str, size: int, tags: Mapping[str, str], created_ns: int,
    day_ns: int = NS_PER_DAY,
) -> str | None:  # fmt: skip
    """``x-amz-expiration`` of a current object: the earliest expiry a rule
    gives it, as AWS writes it (``expiry-date="…", rule-id="…"``)."""
    best: tuple[int, str] | None = None
    for r in cfg.rules:
        if not r.enabled or not r.filter.matches(key, size, tags):
            continue
        when = None
        if r.expiration_days is not None:
            when = due_ns(created_ns, r.expiration_days, day_ns)
        elif r.expiration_date_ns is not None:
            when = r.expiration_date_ns
        if when is not None and (best is None or when < best[0]):
            best = (when, r.id)
    if best is None:
        return None
    return f'expiry-date="{http_date(best[0])}", rule-id="{best[1]}"'
