"""AWS's IAM policy evaluation for the local cloud's own principals: pure Python, no boto3 and no moto.

One request, one account: the role's identity-based policies plus at most one resource-based policy, as
the IAM User Guide's "Policy evaluation logic" describes. What is enforced and what is not modelled:
docs/LOCAL_IAM.md, "How a request is decided".
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import json
import operator
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, IntEnum
from typing import Any, Literal, NamedTuple

from localcloud.iam import Check, Context, ContextValue, Decision, Principal

__all__ = ["Condition", "PolicyError", "Statement", "evaluate", "message", "parse_policy"]


class PolicyError(ValueError):
    """A policy document IAM itself would refuse as MalformedPolicyDocument: refused here too, never guessed at."""


# ---------------------------------------------------------------------------------------------- patterns


class _Wild(Enum):
    STAR = "*"
    QMARK = "?"


@dataclass(frozen=True)
class _Var:
    key: str  # lower-cased: context keys are case-insensitive
    default: str | None


_Token = str | _Wild | _Var
_Tokens = tuple[_Token, ...]

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
# "${aws:username, 'default'}": a default in single quotes, '' for a quote inside it.
# IAM User Guide, "IAM policy elements: Variables and tags" (reference_policies_variables.html), "Specifying default
# values" and "Special characters": ${*}, ${?} and ${$} stand for the literal characters.
_VARIABLE_BODY = re.compile(r"\s*([^\s,']+)\s*(?:,\s*'((?:[^']|'')*)'\s*)?")


@functools.lru_cache(maxsize=8192)
def _tokens(text: str, variables: bool) -> _Tokens:
    """Split a pattern into literal text, ``*``/``?`` wildcards and (when the document allows them) variables."""
    out: list[_Token] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        found = _VARIABLE.match(text, i) if variables and char == "$" else None
        if found:
            body = found.group(1)
            parsed = _VARIABLE_BODY.fullmatch(body)
            if body in ("*", "?", "$"):
                literal.append(body)
            elif parsed:
                if literal:
                    out.append("".join(literal))
                    literal = []
                default = parsed.group(2)
                out.append(_Var(parsed.group(1).lower(), None if default is None else default.replace("''", "'")))
            else:
                literal.append(found.group(0))
            i = found.end()
            continue
        if char in "*?":
            if literal:
                out.append("".join(literal))
                literal = []
            out.append(_Wild.STAR if char == "*" else _Wild.QMARK)
        else:
            literal.append(char)
        i += 1
    if literal:
        out.append("".join(literal))
    return tuple(out)


def _resolve(tokens: _Tokens, context: Mapping[str, ContextValue]) -> _Tokens | None:
    """Substitute variables from the request context; None when one cannot be resolved (it then matches nothing).

    reference_policies_variables.html, "Policy variables with no value": a key absent from the request context has
    no equal or like value; a multivalued key cannot be a variable, so it resolves only through its default.
    """
    if not any(isinstance(token, _Var) for token in tokens):
        return tokens
    out: list[_Token] = []
    for token in tokens:
        if not isinstance(token, _Var):
            out.append(token)
            continue
        value = context.get(token.key)
        if isinstance(value, str):
            out.append(value)
        elif token.default is not None:
            out.append(token.default)
        else:
            return None
    return tuple(out)


def _text(tokens: _Tokens) -> str:
    return "".join(
        token.value if isinstance(token, _Wild) else token for token in tokens if not isinstance(token, _Var)
    )


_GlobMode = Literal["action", "resource", "like"]


@functools.lru_cache(maxsize=8192)
def _glob(tokens: _Tokens, mode: _GlobMode) -> re.Pattern[str]:
    """Compile resolved tokens to a regex for ``fullmatch``.

    Resource mode follows "IAM JSON policy elements: Resource" (reference_policies_elements_resource.html, "Using
    wildcards in resource ARNs"): wildcards work within an ARN segment (the parts between colons) and ``*`` also
    spans "/", but a ``*`` expands beyond the colon boundaries only when it is the last character of its segment.
    Action and StringLike wildcards match anything; actions are case-insensitive
    (reference_policies_elements_action.html).
    """
    parts: list[str] = []
    for i, token in enumerate(tokens):
        if token is _Wild.STAR:
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            segment_end = following is None or (isinstance(following, str) and following.startswith(":"))
            parts.append("[^:]*" if mode == "resource" and not segment_end else ".*")
        elif token is _Wild.QMARK:
            parts.append("[^:]" if mode == "resource" else ".")
        elif isinstance(token, str):
            parts.append(re.escape(token))
        else:
            raise TypeError(f"unresolved policy variable {token}")
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if mode == "action" else 0))


def _any_of(patterns: Sequence[re.Pattern[str]]) -> re.Pattern[str]:
    if not patterns:
        return re.compile("(?!)")
    return re.compile("|".join(f"(?:{p.pattern})" for p in patterns), patterns[0].flags)


# ---------------------------------------------------------------------------------------------- conditions


class _Family(NamedTuple):
    prepare: Callable[[_Tokens], Any]  # a policy value, ready to compare; None when it can never match
    test: Callable[[str, Any], bool]  # one request value against one prepared policy value
    variables: bool  # whether ${...} is substituted (reference_policies_elements_condition_operators.html)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _epoch(text: str) -> float | None:
    # Condition operators, "Date condition operators": W3C ISO 8601 dates or epoch (UNIX) time.
    text = text.strip()
    number = _number(text)
    if number is not None:
        return number
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    # "IP address condition operators": CIDR notation; an address without a prefix is a /32 (or /128).
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def _in_network(value: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(value.strip()) in network
    except ValueError:
        return False


def _binary(text: str) -> bytes:
    # "Binary condition operators": byte for byte against the base-64 value in the policy.
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text.encode()


def _split_tokens(tokens: _Tokens, parts: int) -> list[_Tokens]:
    """Split tokens on ":" into at most ``parts`` components (the last keeps any further colons)."""
    components: list[list[_Token]] = [[]]
    for token in tokens:
        if not isinstance(token, str):
            components[-1].append(token)
            continue
        pieces = token.split(":", max(parts - len(components), 0))
        for n, piece in enumerate(pieces):
            if n:
                components.append([])
            if piece:
                components[-1].append(piece)
    return [tuple(component) for component in components]


def _arn_pattern(tokens: _Tokens) -> tuple[re.Pattern[str], ...] | None:
    # "ARN condition operators": each of the six colon-delimited components is checked separately, each with its
    # own * and ? wildcards; ArnEquals and ArnLike behave identically. A lone "*" stands for any ARN.
    if tokens == (_Wild.STAR,):
        return (re.compile(".*", re.DOTALL),)
    components = _split_tokens(tokens, 6)
    if len(components) != 6:
        return None
    return tuple(_glob(component, "like") for component in components)


def _arn_test(value: str, pattern: tuple[re.Pattern[str], ...]) -> bool:
    if len(pattern) == 1:
        return True
    components = value.split(":", 5)
    return len(components) == 6 and all(p.fullmatch(c) for p, c in zip(pattern, components, strict=True))


def _numeric(compare: Callable[[float, float], bool]) -> _Family:
    return _Family(
        lambda tokens: _number(_text(tokens)),
        lambda value, policy: (number := _number(value)) is not None and compare(number, policy),
        variables=False,
    )


def _dated(compare: Callable[[float, float], bool]) -> _Family:
    return _Family(
        lambda tokens: _epoch(_text(tokens)),
        lambda value, policy: (moment := _epoch(value)) is not None and compare(moment, policy),
        variables=False,
    )


_FAMILIES: dict[str, _Family] = {
    # "String condition operators": StringEquals is case-sensitive, ...IgnoreCase is not, StringLike has * and ?.
    "exact": _Family(_text, lambda value, policy: value == policy, variables=True),
    "ignorecase": _Family(lambda t: _text(t).lower(), lambda value, policy: value.lower() == policy, variables=True),
    "like": _Family(lambda t: _glob(t, "like"), lambda value, policy: policy.fullmatch(value) is not None, True),
    "numeq": _numeric(operator.eq),
    "numlt": _numeric(operator.lt),
    "numle": _numeric(operator.le),
    "numgt": _numeric(operator.gt),
    "numge": _numeric(operator.ge),
    "dateeq": _dated(operator.eq),
    "datelt": _dated(operator.lt),
    "datele": _dated(operator.le),
    "dategt": _dated(operator.gt),
    "datege": _dated(operator.ge),
    # "Boolean condition operators": "true" or "false"; compared case-insensitively.
    "bool": _Family(lambda t: _text(t).lower(), lambda value, policy: value.lower() == policy, variables=True),
    "binary": _Family(lambda t: _binary(_text(t)), lambda value, policy: _binary(value) == policy, variables=False),
    "ip": _Family(lambda t: _network(_text(t)), _in_network, variables=False),
    "arn": _Family(_arn_pattern, _arn_test, variables=True),
}

# Operator name (lower-cased) -> (family, negated). IAM User Guide, "IAM JSON policy elements: Condition operators"
# (reference_policies_elements_condition_operators.html).
_OPERATORS: dict[str, tuple[str, bool]] = {
    "stringequals": ("exact", False),
    "stringnotequals": ("exact", True),
    "stringequalsignorecase": ("ignorecase", False),
    "stringnotequalsignorecase": ("ignorecase", True),
    "stringlike": ("like", False),
    "stringnotlike": ("like", True),
    "numericequals": ("numeq", False),
    "numericnotequals": ("numeq", True),
    "numericlessthan": ("numlt", False),
    "numericlessthanequals": ("numle", False),
    "numericgreaterthan": ("numgt", False),
    "numericgreaterthanequals": ("numge", False),
    "dateequals": ("dateeq", False),
    "datenotequals": ("dateeq", True),
    "datelessthan": ("datelt", False),
    "datelessthanequals": ("datele", False),
    "dategreaterthan": ("dategt", False),
    "dategreaterthanequals": ("datege", False),
    "bool": ("bool", False),
    "binaryequals": ("binary", False),
    "ipaddress": ("ip", False),
    "notipaddress": ("ip", True),
    "arnequals": ("arn", False),
    "arnlike": ("arn", False),
    "arnnotequals": ("arn", True),
    "arnnotlike": ("arn", True),
    "null": ("null", False),
}


_Qualifier = Literal["", "forallvalues", "foranyvalue"]
# "Conditions with multiple context keys or values" (reference_policies_multi-value-conditions.html).
_QUALIFIERS: dict[str, _Qualifier] = {"": "", "forallvalues": "forallvalues", "foranyvalue": "foranyvalue"}


class _Operator(NamedTuple):
    family: str
    negated: bool
    qualifier: _Qualifier
    if_exists: bool


@functools.lru_cache(maxsize=256)
def _operator(name: str) -> _Operator:
    prefix, colon, base = name.partition(":")
    if not colon:
        prefix, base = "", name
    qualifier = _QUALIFIERS.get(prefix.lower())
    if qualifier is None:
        raise PolicyError(f"unknown condition set operator in {name!r}")
    base = base.lower()
    # "...IfExists condition operators": any operator but Null takes the suffix.
    if_exists = base.endswith("ifexists") and base != "null"
    if if_exists:
        base = base.removesuffix("ifexists")
    if base not in _OPERATORS:
        raise PolicyError(f"unknown condition operator {name!r}")
    family, negated = _OPERATORS[base]
    return _Operator(family, negated, qualifier, if_exists)


class Condition(NamedTuple):
    """One key under one operator of a Condition block; ``values`` are ORed (NORed for a negated operator)."""

    operator: str
    key: str  # lower-cased
    values: tuple[str, ...]


@functools.lru_cache(maxsize=4096)
def _static_values(family: str, values: tuple[str, ...]) -> tuple[Any, ...]:
    prepare = _FAMILIES[family].prepare
    prepared = (prepare(_tokens(value, False)) for value in values)
    return tuple(p for p in prepared if p is not None)


def _policy_values(family: str, values: tuple[str, ...], variables: bool, context: Context) -> tuple[Any, ...]:
    if not (variables and _FAMILIES[family].variables and any("${" in value for value in values)):
        return _static_values(family, values)
    prepare = _FAMILIES[family].prepare
    out = []
    for value in values:
        tokens = _resolve(_tokens(value, True), context)
        prepared = None if tokens is None else prepare(tokens)
        if prepared is not None:
            out.append(prepared)
    return tuple(out)


def _condition_holds(condition: Condition, variables: bool, context: Mapping[str, ContextValue]) -> bool:
    """One key under one operator, as "Condition operators" and "Conditions with multiple context keys or values".

    (reference_policies_elements_condition_operators.html, reference_policies_multi-value-conditions.html)
    """
    op = _operator(condition.operator)
    raw = context.get(condition.key)
    if op.family == "null":
        # "Condition operator to check existence of condition keys": "true" = the key is absent (null).
        absent = raw is None or raw == ()
        return any((value.lower() == "true") == absent for value in condition.values)
    policy = _policy_values(op.family, condition.values, variables, context)
    test = _FAMILIES[op.family].test

    def matches(value: str) -> bool:  # several policy values are ORed
        return any(test(value, p) for p in policy)

    # A request value that resolves to an empty data set (an empty string) counts as missing for the set operators.
    if raw is None or raw == () or (op.qualifier != "" and raw == ""):
        if op.if_exists:  # "If the key is not present, evaluate the condition element as true."
            return True
        if op.qualifier == "forallvalues":  # "ForAllValues ... also returns true if there are no context keys"
            return True
        if op.qualifier == "foranyvalue":  # "... a condition operator modified by ForAnyValue returns false"
            return False
        # "If the key ... is not present in the request context, the values do not match and the condition is false.
        # If the policy condition requires that the key is not matched, such as StringNotLike ..., the condition is
        # true."
        return op.negated
    values: tuple[str, ...] = (raw,) if isinstance(raw, str) else raw
    if op.qualifier == "forallvalues":  # every request value must satisfy the (possibly negated) operator
        return all(matches(value) != op.negated for value in values)
    if op.qualifier == "foranyvalue":  # at least one request value must
        return any(matches(value) != op.negated for value in values)
    # No set operator: a negated operator is the negation (NOR) of the positive match over every value.
    return any(matches(value) for value in values) != op.negated


# ---------------------------------------------------------------------------------------------- statements


class _Grant(IntEnum):
    """How a resource-based policy statement names the principal."""

    NONE = 0
    ACCOUNT = 1  # the account: delegates to the account's IAM policies
    DIRECT = 2  # "*", the role, or the role session: grants on its own


_ACCOUNT_ROOT = re.compile(r"arn:[^:]+:iam::(\d{12}):root")


@dataclass(frozen=True)
class Statement:
    """One normalised policy statement: every list field is a tuple and every ``not_*`` flag names its Not form."""

    effect: Literal["Allow", "Deny"]
    actions: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)
    principals: tuple[tuple[str, str], ...] | None = None  # ("AWS", arn), ("Service", name), ("*", "*"); None: absent
    conditions: tuple[Condition, ...] = ()
    not_action: bool = False
    not_resource: bool = False
    not_principal: bool = False
    sid: str = ""
    variables: bool = True  # "Version": "2012-10-17"; older documents read ${...} literally
    _action_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _resource_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _dynamic_resources: tuple[_Tokens, ...] = field(init=False, repr=False, compare=False)
    _covers_star: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        set_("_action_re", _any_of([_glob(_tokens(a, False), "action") for a in self.actions]))
        static: list[_Tokens] = []
        dynamic: list[_Tokens] = []
        for resource in self.resources:
            tokens = _tokens(resource, self.variables)
            (dynamic if any(isinstance(t, _Var) for t in tokens) else static).append(tokens)
        set_("_resource_re", _any_of([_glob(tokens, "resource") for tokens in static]))
        set_("_dynamic_resources", tuple(dynamic))
        # An action without a resource type is checked against "*": only a Resource of "*" (all wildcards) grants it.
        # reference_policies_elements_resource.html: "you use the wildcard character (*) in the Resource element".
        set_("_covers_star", any(r and set(r) <= {"*", "?"} for r in self.resources))

    def _covers_action(self, action: str) -> bool:
        return (self._action_re.fullmatch(action) is not None) != self.not_action

    def _covers_resource(self, resource: str, context: Mapping[str, ContextValue]) -> bool:
        if resource == "*":
            hit = self._covers_star
        else:
            hit = self._resource_re.fullmatch(resource) is not None or any(
                (resolved := _resolve(tokens, context)) is not None and _glob(resolved, "resource").fullmatch(resource)
                for tokens in self._dynamic_resources
            )
        return hit != self.not_resource

    def _applies(self, action: str, resource: str, context: Mapping[str, ContextValue]) -> bool:
        return (
            self._covers_action(action)
            and self._covers_resource(resource, context)
            and all(_condition_holds(c, self.variables, context) for c in self.conditions)
        )

    def _grant(self, principal: Principal) -> _Grant:
        """How this resource-policy statement's Principal/NotPrincipal names ``principal``.

        "AWS JSON policy elements: Principal" (reference_policies_elements_principal.html): "*" and {"AWS": "*"}
        are everyone; an account ID or arn:aws:iam::ACCOUNT:root is the account; service principals are services,
        never our role sessions.
        """
        if self.principals is None:
            return _Grant.NONE
        named: set[str] = set()
        for kind, value in self.principals:
            if kind == "*" or (kind == "AWS" and value == "*"):
                named |= {"session", "role", "account"}
            elif kind == "AWS" and value == principal.arn:
                named.add("session")
            elif kind == "AWS" and value == principal.role_arn:
                named.add("role")
            elif kind == "AWS" and principal.account and principal.account in (value, _root_account(value)):
                named.add("account")
            elif kind == "Service" and not principal.role_arn and value == principal.service:
                named.add("session")  # a service acting on its own (EventBridge invoking a function), not a role
        if self.not_principal:
            # "AWS JSON policy elements: NotPrincipal" (reference_policies_elements_notprincipal.html): for an
            # assumed-role session AWS may evaluate the account, then the role, then the session, so a Deny spares
            # the session only when all three are listed. An Allow grants to everyone not listed.
            if self.effect == "Deny":
                return _Grant.NONE if named >= {"session", "role", "account"} else _Grant.DIRECT
            return _Grant.NONE if named else _Grant.DIRECT
        if named & {"session", "role"}:
            return _Grant.DIRECT
        return _Grant.ACCOUNT if named else _Grant.NONE


def _root_account(value: str) -> str | None:
    found = _ACCOUNT_ROOT.fullmatch(value)
    return found.group(1) if found else None


# ---------------------------------------------------------------------------------------------- parsing


def _strings(value: Any, element: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PolicyError(f"{element} must be a string or a list of strings, not {value!r}")


def _scalar(value: Any, element: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise PolicyError(f"{element} values must be strings, numbers or booleans, not {value!r}")


def _scalars(value: Any, element: str) -> tuple[str, ...]:
    return tuple(_scalar(v, element) for v in value) if isinstance(value, list) else (_scalar(value, element),)


def _either(raw: Mapping[str, Any], name: str, required: bool) -> tuple[tuple[str, ...] | None, bool]:
    """The Name or NotName element (never both) as (values, negated)."""
    if name in raw and f"Not{name}" in raw:
        raise PolicyError(f"a statement has both {name} and Not{name}")
    if name in raw:
        return _strings(raw[name], name), False
    if f"Not{name}" in raw:
        return _strings(raw[f"Not{name}"], f"Not{name}"), True
    if required:
        raise PolicyError(f"a statement needs {name} or Not{name}")
    return None, False


def _principal(value: Any, element: str) -> tuple[tuple[str, str], ...]:
    if value == "*":
        return (("*", "*"),)
    if isinstance(value, dict):
        return tuple((kind, v) for kind, values in value.items() for v in _scalars(values, element))
    raise PolicyError(f'{element} must be "*" or an object, not {value!r}')


def _conditions(value: Any) -> tuple[Condition, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise PolicyError(f"Condition must be an object, not {value!r}")
    out = []
    for name, keys in value.items():
        op = _operator(name)
        if op.family == "null" and name.lower().endswith("ifexists"):
            raise PolicyError("Null takes no IfExists suffix")
        if not isinstance(keys, dict):
            raise PolicyError(f"Condition {name} must map keys to values, not {keys!r}")
        # Condition keys are case-insensitive (reference_policies_elements_condition.html).
        out += [Condition(name, key.lower(), _scalars(values, f"Condition {name}")) for key, values in keys.items()]
    return tuple(out)


def _statement(raw: Any, variables: bool) -> Statement:
    if not isinstance(raw, dict):
        raise PolicyError(f"a statement must be an object, not {raw!r}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"Effect must be Allow or Deny, not {effect!r}")
    actions, not_action = _either(raw, "Action", required=True)
    resources, not_resource = _either(raw, "Resource", required=False)
    if "Principal" in raw and "NotPrincipal" in raw:
        raise PolicyError("a statement has both Principal and NotPrincipal")
    principal_element = "NotPrincipal" if "NotPrincipal" in raw else "Principal"
    principals = _principal(raw[principal_element], principal_element) if principal_element in raw else None
    return Statement(
        effect=effect,
        actions=actions or (),
        resources=resources if resources is not None else ("*",),  # trust policies carry no Resource
        principals=principals,
        conditions=_conditions(raw.get("Condition")),
        not_action=not_action,
        not_resource=not_resource,
        not_principal=principal_element == "NotPrincipal",
        sid=str(raw.get("Sid", "")),
        variables=variables,
    )


@functools.lru_cache(maxsize=2048)
def _parse_text(text: str) -> tuple[Statement, ...]:
    text = text.strip()
    if text.startswith("%"):
        # IAM's Get*Policy APIs return documents "URL-encoded compliant with RFC 3986" (IAM API Reference).
        text = urllib.parse.unquote(text)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise PolicyError(f"a policy document must be JSON: {error}") from error
    if not isinstance(document, dict) or "Statement" not in document:
        raise PolicyError("a policy document must be an object with a Statement")
    # "IAM JSON policy elements: Version" (reference_policies_elements_version.html): policy variables are
    # recognised only in 2012-10-17 documents; without a Version, 2008-10-17 applies and ${...} is literal text.
    variables = document.get("Version") == "2012-10-17"
    statements = document["Statement"]
    return tuple(_statement(s, variables) for s in (statements if isinstance(statements, list) else [statements]))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _statements(document: Mapping[str, Any] | str) -> tuple[Statement, ...]:
    if isinstance(document, str):
        return _parse_text(document)
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    except TypeError:
        try:
            text = json.dumps(_plain(document), sort_keys=True, separators=(",", ":"))
        except TypeError as error:
            raise PolicyError(f"a policy document must be JSON: {error}") from error
    return _parse_text(text)


def parse_policy(document: Mapping[str, Any] | str) -> list[Statement]:
    """Normalise a policy document (JSON text, URL-encoded JSON, or a dict) into its statements.

    A single Statement object becomes a one-element list and string-or-list fields become tuples. Raises PolicyError
    for a document IAM would refuse.
    """
    return list(_statements(document))


# ---------------------------------------------------------------------------------------------- evaluation


def _context(principal: Principal, *layers: Context | None) -> dict[str, ContextValue]:
    # "AWS global condition context keys" (reference_policies_condition-keys.html): for a role session,
    # aws:PrincipalArn is the role's ARN and aws:PrincipalType is AssumedRole. The caller's keys win.
    merged: dict[str, ContextValue] = {
        "aws:principalarn": principal.role_arn,
        "aws:principalaccount": principal.account,
        "aws:principaltype": "AssumedRole",
    }
    for layer in layers:
        for key, value in (layer or {}).items():
            merged[key.lower()] = value
    return merged


def _implicit(check: Check, policy: Literal["identity", "resource"]) -> Decision:
    # "Troubleshoot access denied error messages" (troubleshoot_access-denied.html): "because no type policy
    # allows the action action".
    return Decision(False, "implicit-deny", f"because no {policy}-based policy allows the {check.action} action")


def _explicit(policy: Literal["identity", "resource"]) -> Decision:
    # troubleshoot_access-denied.html: "with an explicit deny in a type policy".
    article = "an" if policy == "identity" else "a"
    return Decision(False, "explicit-deny", f"with an explicit deny in {article} {policy}-based policy")


_ALLOW = Decision(True, "allow")


def evaluate(
    principal: Principal,
    check: Check,
    identity_policies: Sequence[Mapping[str, Any] | str],
    resource_policy: Mapping[str, Any] | str | None = None,
    *,
    resource_policy_required: bool = False,
    context: Context | None = None,
) -> Decision:
    """Whether ``principal`` may perform ``check``, decided as AWS decides a request within one account.

    IAM User Guide, "Policy evaluation logic" and "How AWS enforcement code logic evaluates requests to allow or deny
    access" (reference_policies_evaluation-logic.html, reference_policies_evaluation-logic_policy-eval-denyallow.html).
    When both policy types deny explicitly, the reason names the identity-based policy (AWS names only one).
    """
    ctx = _context(principal, context, check.context)
    action, resource = check.action, check.resource

    # Deny evaluation: "If the enforcement code finds even one explicit deny that applies, the enforcement code
    # returns a final decision of Deny" -- whichever policy type holds it.
    identity_allows = False
    for document in identity_policies:
        for statement in _statements(document):
            # Principal and NotPrincipal have no place in an identity-based policy (reference_policies_elements_
            # principal.html); the statement is about the role it is attached to.
            if statement._applies(action, resource, ctx):
                if statement.effect == "Deny":
                    return _explicit("identity")
                identity_allows = True

    grant = _Grant.NONE
    if resource_policy is not None:
        for statement in _statements(resource_policy):
            named = statement._grant(principal)
            if named is _Grant.NONE or not statement._applies(action, resource, ctx):
                continue
            if statement.effect == "Deny":  # a Deny naming the account denies every principal in it
                return _explicit("resource")
            grant = max(grant, named)

    if resource_policy_required:
        # "Key policies in AWS KMS" (kms/latest/developerguide/key-policies.html): "Unless the key policy explicitly
        # allows it, you cannot use IAM policies to allow access to a KMS key." The statement naming the account
        # ("Default key policy", key-policy-default.html, "Allows access to the AWS account and enables IAM
        # policies") hands the decision to IAM; a statement naming the role (or "*") allows on its own.
        if grant is _Grant.DIRECT:
            return _ALLOW
        if grant is _Grant.ACCOUNT:
            return _ALLOW if identity_allows else _implicit(check, "identity")
        return _implicit(check, "resource")

    # policy-eval-denyallow.html, "Resource-based policies": within an account an Allow for the principal in either
    # policy type grants access. A resource-based policy that names the role session ARN grants to the session
    # directly, "not limited by an implicit deny in an identity-based policy, a permissions boundary, or session
    # policy"; one that names the role ARN "is limited by an implicit deny in a permissions boundary or session
    # policy" -- not by the identity-based policy -- and neither exists here, so both allow on their own. One that
    # names the account delegates to the account's IAM policies (reference_policies_elements_principal.html,
    # "AWS account principals"): it adds nothing to what the identity-based policy allows.
    if identity_allows or grant is _Grant.DIRECT:
        return _ALLOW
    # A service acting on its own has no identity-based policy: only the resource's could have allowed it.
    return _implicit(check, "identity" if principal.role_arn else "resource")


# Amazon S3 quotes the resource: "User user-arn is not authorized to perform action on "resource-arn" because
# context" (S3 User Guide, "Troubleshoot access denied (403 Forbidden) errors", troubleshoot-403-errors.html).
_QUOTED_RESOURCE = frozenset({"s3"})
# For an action without a resource type most services say "on resource: *" (ECR, Lambda); these omit the clause,
# as in troubleshoot_access-denied.html's codecommit:ListRepositories example and CloudWatch's PutMetricData denial.
_NO_RESOURCE_CLAUSE = frozenset({"cloudwatch", "codecommit"})


def message(principal: Principal, check: Check, decision: Decision) -> str:
    """AWS's whole AccessDenied sentence for a denied decision.

    troubleshoot_access-denied.html: "User user is not authorized to perform action on resource because context".
    """
    if decision.allowed:
        raise ValueError("an allowed decision has no AccessDenied message")
    service = check.action.partition(":")[0].lower()
    if check.resource == "*" and service in _NO_RESOURCE_CLAUSE:
        on = ""
    elif service in _QUOTED_RESOURCE:
        on = f' on resource: "{check.resource}"'
    else:
        on = f" on resource: {check.resource}"
    return f"User: {principal.arn} is not authorized to perform: {check.action}{on} {decision.reason}"
