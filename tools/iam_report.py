"""Least-privilege report per role from the local cloud's authorization logs: what each role used, what it was denied,
and what its policies grant that no decision needed.

Why: the cloud logs every decision it makes for its own principals (localcloud/iam/authorizer.py), and beside the log
it snapshots the roles' identity policies (authz-roles.json); a full test run thus shows which granted actions and
resources are never used. Statements are matched with localcloud/iam/policy.py's own matchers; Conditions are not
evaluated (a statement counts as used when its Action and Resource cover an allowed decision).
Usage: python tools/iam_report.py LOG_OR_DIR [LOG_OR_DIR ...] [--json OUT] [--markdown OUT] [--fail-on-deny]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.iam import ContextValue
from localcloud.iam.policy import PolicyError, Statement, parse_policy

LOG_GLOB = "authz*.jsonl"
ROLES_FILE = "authz-roles.json"
EXAMPLES = 3  # example resources per used action
PROBLEMS_PER_FILE = 20  # malformed lines reported one by one per file; the rest are only counted
DECISIONS = ("allow", "implicit-deny", "explicit-deny")


class InputError(Exception):
    """A path that names no log: the report would be silently empty, so it is refused (exit 2)."""


# ---------------------------------------------------------------------------------------------- collecting


@dataclass
class _Usage:
    """Everything the logs say about one role."""

    allowed: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (action, resource, principal)
    denies: Counter[tuple[str, str, str, str, bool]] = field(default_factory=Counter)  # action resource kind why enf.
    not_modelled: Counter[str] = field(default_factory=Counter)


@dataclass
class Collected:
    """The merged decisions of every log, and the merged policies of every roles file (None: none seen)."""

    logs: list[Path] = field(default_factory=list)
    roles_files: list[Path] = field(default_factory=list)
    decisions: int = 0
    skipped_lines: int = 0
    problems: list[str] = field(default_factory=list)
    usage: dict[str, _Usage] = field(default_factory=lambda: defaultdict(_Usage))
    policies: dict[str, list[str]] = field(default_factory=dict)


def log_files(paths: Iterable[Path]) -> list[Path]:
    """The logs the paths name: a file is a log, a directory every authz*.jsonl under it; each once, in order."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if path.is_dir():
            logs = sorted(p for p in path.rglob(LOG_GLOB) if p.is_file())
            if not logs:
                raise InputError(f"{path}: no {LOG_GLOB} under this directory")
            found.update(dict.fromkeys(p.resolve() for p in logs))
        else:
            found[path.resolve()] = None
    return list(found)


def _read_roles(path: Path, collected: Collected) -> None:
    """Merge one authz-roles.json into ``collected.policies``; a bad file or document is reported and skipped."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        collected.problems.append(f"{path}: unreadable roles file ({error}); granted actions unknown for its roles")
        return
    if not isinstance(data, dict):
        collected.problems.append(f"{path}: not an object of role ARN to policy documents; ignored")
        return
    collected.roles_files.append(path)
    for role, documents in data.items():
        if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
            collected.problems.append(f"{path}: {role}: policies are not a list of JSON texts; ignored")
            continue
        valid = []
        for n, document in enumerate(documents, 1):
            try:
                parse_policy(document)
            except PolicyError as error:
                collected.problems.append(f"{path}: {role}: policy {n} skipped: {error}")
                continue
            valid.append(document)
        known = collected.policies.get(role)
        if known is None:
            collected.policies[role] = list(dict.fromkeys(valid))
            continue
        if set(known) != set(valid):
            collected.problems.append(f"{path}: {role}: policies differ from another roles file's; merged")
        known.extend(d for d in valid if d not in known)


def _entry(line: str) -> dict[str, Any] | str:
    """One log line as its decision, or why it is malformed."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as error:
        return f"not JSON ({error})"
    if not isinstance(entry, dict):
        return "not a JSON object"
    for key in ("role", "action", "resource", "decision"):
        if not isinstance(entry.get(key), str):
            return f"no {key!r} string"
    if entry["decision"] not in DECISIONS:
        return f"unknown decision {entry['decision']!r}"
    if not isinstance(entry.get("enforced", True), bool):
        return "'enforced' is not a boolean"
    return entry


def _read_log(path: Path, collected: Collected) -> None:
    bad = 0
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                entry = _entry(line)
                if isinstance(entry, str):
                    bad += 1
                    if bad <= PROBLEMS_PER_FILE:
                        collected.problems.append(f"{path}:{number}: skipped: {entry}")
                    continue
                collected.decisions += 1
                usage = collected.usage[entry["role"]]
                action, resource = entry["action"], entry["resource"]
                if entry["decision"] == "allow":
                    usage.allowed[action, resource, str(entry.get("principal", ""))] += 1
                else:
                    reason = str(entry.get("reason", ""))
                    usage.denies[action, resource, entry["decision"], reason, entry.get("enforced", True)] += 1
                if entry.get("modelled", True) is False:
                    usage.not_modelled[action] += 1
    except OSError as error:
        collected.problems.append(f"{path}: unreadable log ({error})")
        return
    if bad > PROBLEMS_PER_FILE:
        collected.problems.append(f"{path}: {bad - PROBLEMS_PER_FILE} more malformed lines skipped")
    collected.skipped_lines += bad
    collected.logs.append(path)


def collect(paths: Iterable[Path]) -> Collected:
    """Read every log the paths name, with the roles file beside each (raises InputError for a path with none)."""
    collected = Collected()
    roles_files: dict[Path, None] = {}
    for log in log_files(paths):
        _read_log(log, collected)
        roles = log.parent / ROLES_FILE
        if roles.is_file():
            roles_files[roles] = None
        else:
            collected.problems.append(f"{log}: no {ROLES_FILE} beside it; granted actions unknown for its roles")
    for roles in roles_files:
        _read_roles(roles, collected)
    return collected


# ---------------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class UsedAction:
    action: str
    count: int
    examples: list[str]  # the most frequent resources, at most EXAMPLES


@dataclass(frozen=True)
class Deny:
    action: str
    resource: str
    decision: str
    reason: str
    enforced: bool
    count: int


@dataclass(frozen=True)
class UnusedGrant:
    """One Action pattern of an Allow statement that no allowed decision's action matched (a NotAction statement is
    one entry, its patterns joined, when it covered no used action)."""

    action: str
    resources: list[str]
    policy: int  # 1-based, in the role's merged list of policy documents
    sid: str
    not_action: bool = False
    not_resource: bool = False


@dataclass(frozen=True)
class Narrowing:
    """An Allow statement whose actions were used, with the Resource patterns no used resource of those actions
    matched (``all_unmatched``: none matched, so the statement granted nothing that was used)."""

    actions: list[str]
    resources: list[str]
    unmatched: list[str]
    used_actions: list[str]
    all_unmatched: bool
    policy: int
    sid: str
    not_action: bool = False
    not_resource: bool = False


@dataclass(frozen=True)
class NotModelled:
    action: str
    count: int


@dataclass(frozen=True)
class RoleReport:
    role: str
    name: str
    granted_known: bool
    used: list[UsedAction]
    denies: list[Deny]
    unused: list[UnusedGrant]
    narrowing: list[Narrowing]
    not_modelled: list[NotModelled]

    @property
    def deny_count(self) -> int:
        return sum(d.count for d in self.denies)

    def summary(self) -> str:
        unused = f"{len(self.unused)} granted patterns never used" if self.granted_known else "granted actions unknown"
        return f"{len(self.used)} actions used, {unused}, {self.deny_count} denies"


@dataclass(frozen=True)
class Report:
    logs: list[str]
    roles_files: list[str]
    decisions: int
    skipped_lines: int
    problems: list[str]
    roles: list[RoleReport]

    @property
    def enforced_denies(self) -> int:
        return sum(d.count for role in self.roles for d in role.denies if d.enforced)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for role, out in zip(self.roles, data["roles"], strict=True):
            out["summary"] = {
                "actions_used": len(role.used),
                "granted_never_used": len(role.unused) if role.granted_known else None,
                "denies": role.deny_count,
            }
        data["enforced_denies"] = self.enforced_denies
        return data


def role_name(role: str) -> str:
    """The role's name: the last path segment of arn:aws:iam::ACCOUNT:role/PATH/NAME."""
    return role.rsplit("/", 1)[-1] if ":role/" in role else role


def _context(role: str, principal: str) -> dict[str, ContextValue]:
    """The global keys policy variables in a Resource may name, as the authorizer sets them (lower-cased)."""
    parts = role.split(":")
    return {
        "aws:principalarn": role,
        "aws:principalaccount": parts[4] if len(parts) > 4 else "",
        "aws:principaltype": "AssumedRole",
        "aws:userid": f"{role_name(role)}:{principal.rsplit('/', 1)[-1]}",
    }


def _statements(documents: Sequence[str]) -> list[tuple[int, Statement]]:
    return [
        (n, statement)
        for n, document in enumerate(documents, 1)
        for statement in parse_policy(document)
        if statement.effect == "Allow"
    ]


def _unused(statements: Sequence[tuple[int, Statement]], used: Iterable[str]) -> list[UnusedGrant]:
    actions = sorted(set(used))
    out = []
    for n, statement in statements:
        if statement.not_action:
            patterns = [", ".join(statement.actions)] if not any(statement._covers_action(a) for a in actions) else []
        else:
            patterns = [
                pattern
                for pattern in statement.actions
                if not any(dataclasses.replace(statement, actions=(pattern,))._covers_action(a) for a in actions)
            ]
        out += [
            UnusedGrant(
                action=pattern,
                resources=list(statement.resources),
                policy=n,
                sid=statement.sid,
                not_action=statement.not_action,
                not_resource=statement.not_resource,
            )
            for pattern in patterns
        ]
    return out


def _narrowing(
    role: str, statements: Sequence[tuple[int, Statement]], allowed: Iterable[tuple[str, str, str]]
) -> list[Narrowing]:
    uses: dict[str, set[tuple[str, str]]] = defaultdict(set)  # action -> {(resource, principal)}
    for action, resource, principal in allowed:
        uses[action].add((resource, principal))
    contexts: dict[str, dict[str, ContextValue]] = {}

    def covers(statement: Statement, resource: str, principal: str) -> bool:
        if principal not in contexts:
            contexts[principal] = _context(role, principal)
        return statement._covers_resource(resource, contexts[principal])

    out = []
    for n, statement in statements:
        used_actions = sorted(a for a in uses if statement._covers_action(a))
        if not used_actions:
            continue  # its patterns are in the unused list
        resources = set().union(*(uses[a] for a in used_actions))
        if statement.not_resource:
            hit = any(covers(statement, r, p) for r, p in resources)
            unmatched = [] if hit else list(statement.resources)
        else:
            unmatched = [
                pattern
                for pattern in statement.resources
                if not any(covers(dataclasses.replace(statement, resources=(pattern,)), r, p) for r, p in resources)
            ]
        if unmatched:
            out.append(
                Narrowing(
                    actions=list(statement.actions),
                    resources=list(statement.resources),
                    unmatched=unmatched,
                    used_actions=used_actions,
                    all_unmatched=len(unmatched) == len(statement.resources),
                    policy=n,
                    sid=statement.sid,
                    not_action=statement.not_action,
                    not_resource=statement.not_resource,
                )
            )
    return out


def role_report(role: str, usage: _Usage, documents: Sequence[str] | None) -> RoleReport:
    per_action: dict[str, Counter[str]] = defaultdict(Counter)
    for (action, resource, _principal), count in usage.allowed.items():
        per_action[action][resource] += count
    used = [
        UsedAction(action, sum(resources.values()), [r for r, _ in resources.most_common(EXAMPLES)])
        for action, resources in sorted(per_action.items())
    ]
    denies = [
        Deny(action, resource, decision, reason, enforced, count)
        for (action, resource, decision, reason, enforced), count in sorted(usage.denies.items())
    ]
    statements = _statements(documents or [])
    return RoleReport(
        role=role,
        name=role_name(role),
        granted_known=documents is not None,
        used=used,
        denies=denies,
        unused=_unused(statements, per_action) if documents is not None else [],
        narrowing=_narrowing(role, statements, usage.allowed) if documents is not None else [],
        not_modelled=[NotModelled(a, c) for a, c in sorted(usage.not_modelled.items())],
    )


def build(collected: Collected) -> Report:
    """The report of every role that made a decision (a role only in a roles file made none and is left out)."""
    roles = [role_report(role, usage, collected.policies.get(role)) for role, usage in collected.usage.items()]
    return Report(
        logs=[str(p) for p in collected.logs],
        roles_files=[str(p) for p in collected.roles_files],
        decisions=collected.decisions,
        skipped_lines=collected.skipped_lines,
        problems=collected.problems,
        roles=sorted(roles, key=lambda r: (r.name, r.role)),
    )


# ---------------------------------------------------------------------------------------------- rendering


def _grant_text(patterns: str, not_action: bool, resources: Sequence[str], not_resource: bool) -> str:
    action = f"NotAction [{patterns}]" if not_action else patterns
    on = ", ".join(resources)
    return f"{action} on {'NotResource [' + on + ']' if not_resource else on}"


def _where(policy: int, sid: str) -> str:
    return f"policy {policy}" + (f", Sid {sid}" if sid else "")


def render_text(report: Report) -> str:
    lines = [
        f"IAM least-privilege report: {len(report.logs)} logs, {len(report.roles_files)} roles files, "
        f"{report.decisions} decisions, {len(report.roles)} roles"
        + (f", {report.skipped_lines} malformed lines skipped" if report.skipped_lines else ""),
    ]
    for role in report.roles:
        lines += ["", f"== {role.name}  ({role.role})", f"   {role.summary()}", "   Actions used:"]
        lines += [f"     {u.action}  x{u.count}  e.g. {', '.join(u.examples)}" for u in role.used] or ["     none"]
        lines.append("   Denies:")
        lines += [
            f"     {d.action} on {d.resource}  x{d.count}  {d.decision}"
            + ("" if d.enforced else " (not enforced)")
            + (f": {d.reason}" if d.reason else "")
            for d in role.denies
        ] or ["     none"]
        if not role.granted_known:
            lines.append(f"   Granted but never used: granted actions unknown (no {ROLES_FILE} names this role)")
        else:
            lines.append("   Granted but never used:")
            lines += [
                f"     {_grant_text(g.action, g.not_action, g.resources, g.not_resource)}  ({_where(g.policy, g.sid)})"
                for g in role.unused
            ] or ["     none"]
            lines.append("   Resource patterns no used resource matched (candidates for narrowing):")
            lines += [
                f"     {_grant_text(', '.join(g.actions), g.not_action, g.unmatched, g.not_resource)}"
                f"  (used: {', '.join(g.used_actions)}; {_where(g.policy, g.sid)}"
                + ("; no Resource of it matched" if g.all_unmatched else "")
                + ")"
                for g in role.narrowing
            ] or ["     none"]
        if role.not_modelled:
            lines.append("   Resource not modelled (its scoping was not checked):")
            lines += [f"     {m.action}  x{m.count}" for m in role.not_modelled]
    lines += ["", f"{report.enforced_denies} enforced denies"]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(items: Iterable[str]) -> str:
    return ", ".join(f"`{_cell(item)}`" for item in items)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], empty: str = "None.") -> list[str]:
    if not rows:
        return [empty, ""]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def render_markdown(report: Report) -> str:
    lines = [
        "# IAM least-privilege report",
        "",
        f"{len(report.logs)} logs, {report.decisions} decisions, {report.skipped_lines} malformed lines skipped, "
        f"{report.enforced_denies} enforced denies.",
        "",
    ]
    lines += _table(
        ["Role", "Actions used", "Granted, never used", "Denies", "Not modelled"],
        [
            [
                f"`{r.name}`",
                str(len(r.used)),
                str(len(r.unused)) if r.granted_known else "unknown",
                str(r.deny_count),
                str(sum(m.count for m in r.not_modelled)),
            ]
            for r in report.roles
        ],
        empty="No decisions.",
    )
    for r in report.roles:
        lines += [f"## {r.name}", "", f"`{r.role}`: {r.summary()}.", "", "### Actions used", ""]
        lines += _table(
            ["Action", "Decisions", "Example resources"],
            [[f"`{u.action}`", str(u.count), _code(u.examples)] for u in r.used],
        )
        lines += ["### Denies", ""]
        lines += _table(
            ["Action", "Resource", "Decision", "Reason", "Decisions"],
            [
                [
                    f"`{d.action}`",
                    f"`{_cell(d.resource)}`",
                    d.decision + ("" if d.enforced else " (not enforced)"),
                    _cell(d.reason),
                    str(d.count),
                ]
                for d in r.denies
            ],
        )
        lines += ["### Granted, never used", ""]
        if not r.granted_known:
            lines += [f"Granted actions unknown: no `{ROLES_FILE}` names this role.", ""]
        else:
            lines += _table(
                ["Action pattern", "Resource", "Policy", "Sid"],
                [
                    [
                        ("NotAction " if g.not_action else "") + _code(g.action.split(", ")),
                        ("NotResource " if g.not_resource else "") + _code(g.resources),
                        str(g.policy),
                        _cell(g.sid),
                    ]
                    for g in r.unused
                ],
            )
            lines += ["### Resource patterns never matched (candidates for narrowing)", ""]
            lines += _table(
                ["Actions used", "Unmatched resource patterns", "Policy", "Sid"],
                [
                    [
                        _code(g.used_actions),
                        ("NotResource " if g.not_resource else "") + _code(g.unmatched),
                        str(g.policy),
                        _cell(g.sid),
                    ]
                    for g in r.narrowing
                ],
            )
        if r.not_modelled:
            lines += ["### Resource not modelled (scoping not checked)", ""]
            lines += _table(["Action", "Decisions"], [[f"`{m.action}`", str(m.count)] for m in r.not_modelled])
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "paths", nargs="+", type=Path, metavar="LOG_OR_DIR", help=f"a log, or a directory of {LOG_GLOB}"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON to OUT")
    parser.add_argument("--markdown", type=Path, metavar="OUT", help="write the report as Markdown tables to OUT")
    parser.add_argument("--fail-on-deny", action="store_true", help="exit 1 when the logs hold an enforced deny")
    args = parser.parse_args(argv)
    try:
        collected = collect(args.paths)
    except InputError as error:
        print(f"iam_report: {error}", file=sys.stderr)
        return 2
    report = build(collected)
    for problem in report.problems:
        print(f"iam_report: {problem}", file=sys.stderr)
    sys.stdout.write(render_text(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(render_markdown(report), encoding="utf-8")
    return 1 if args.fail_on_deny and report.enforced_denies else 0


if __name__ == "__main__":
    sys.exit(main())
