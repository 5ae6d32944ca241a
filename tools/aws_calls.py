"""The AWS client calls a Lambda handler's Python code can make, read from its source (nothing is imported or run).

Why: tools/check_iam.py compares them with the function's role. Reachability is by symbol: the handler, what it
names, what those name, module bodies on import; a method counts once reached code names it (a name that builtin
types share, such as ``get``, only on ``self``, a new instance or a parameter annotated with a class of the code).
A client is ``client("svc")``, ``boto3.client("svc")`` or ``*.create_client("svc")``, a name or ``self.x`` bound to
one, or a parameter a reached call passes one to; its operation is the method, ``get_paginator("op")``, or
``getattr(client, X)`` with X a string, a module-level dict or tuple of strings, or a parameter given strings.
``getattr(module, X)`` reaches the module's functions X can name (X unknown: any of the caller's module strings).
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import botocore.session

Def = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
Function = ast.FunctionDef | ast.AsyncFunctionDef
CLIENT_HELPERS = frozenset({"can_paginate", "close", "generate_presigned_url", "generate_presigned_post"})
# Method names that builtin types share: reached only through a receiver that can be one of the code's classes.
BUILTIN_NAMES = frozenset(n for t in (dict, list, set, str, bytes) for n in dir(t) if not n.startswith("_"))


class CodeError(Exception):
    """The handler cannot be found or read."""


@dataclass(frozen=True, order=True)
class AwsCall:
    """A client method call; ``method`` is None when the operation cannot be told statically."""

    path: Path
    line: int
    service: str
    method: str | None
    module: str
    # its keyword names (with those a **dict can pass), CopySource's and ExtraArgs' keys as CopySource.<key> and
    # ExtraArgs.<key>, and the kinds of part of its TransactItems
    details: frozenset[str] = frozenset()


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool
    defs: dict[str, Def] = field(default_factory=dict)
    imports: dict[str, str] = field(default_factory=dict)  # local name -> a dotted module, or module.attribute
    strings: dict[str, frozenset[str]] = field(default_factory=dict)  # module-level strings, dicts and tuples of them
    env_vars: frozenset[str] = frozenset()  # what it reads from os.environ


def _dict_keys(node: ast.AST | None) -> frozenset[str]:
    """The constant string keys of the dict displays in an expression (``{"VersionId": v} if v else {}``)."""
    if node is None:
        return frozenset()
    return frozenset(
        str(k.value)
        for d in ast.walk(node)
        if isinstance(d, ast.Dict)
        for k in d.keys
        if isinstance(k, ast.Constant) and isinstance(k.value, str)
    )


def _string_values(node: ast.AST | None) -> frozenset[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return frozenset({node.value})
    if isinstance(node, ast.Dict | ast.Tuple | ast.List | ast.Set):
        return frozenset().union(*map(_string_values, node.values if isinstance(node, ast.Dict) else node.elts))
    if isinstance(node, ast.Call) and len(node.args) == 1 and isinstance(node.func, ast.Name):
        return _string_values(node.args[0])  # frozenset({...}), tuple([...])
    return frozenset()


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


# shepherd.edge's readers of a function's environment: setting("NAME") reads os.environ["NAME"].
ENV_READERS = frozenset({"setting", "optional_setting", "list_setting"})


def _env_var(node: ast.AST) -> str | None:
    """The name in os.environ[...], os.environ.get(...), os.getenv(...) or a shepherd.edge reader."""
    key: ast.AST | None = None
    if isinstance(node, ast.Subscript) and _is_environ(node.value):
        key = node.slice
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
        key = node.args[0] if node.func.id in ENV_READERS else None
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        on_environ = _is_environ(node.func.value) and node.func.attr in ("get", "setdefault")
        key = node.args[0] if on_environ or node.func.attr in ("getenv", *ENV_READERS) else None
    return key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else None


def _assignments(nodes: Iterable[ast.AST]) -> Iterator[tuple[ast.expr, ast.expr]]:
    """(target, value) of each assignment, ``a, b = x, y`` pairwise."""
    for node in nodes:
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            yield node.target, node.value
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            value = node.value
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
                yield from zip(target.elts, value.elts, strict=True)
            else:
                yield target, value


def parse_module(name: str, path: Path, is_package: bool) -> Module:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    module = Module(name, path, tree, is_package, {n.name: n for n in tree.body if isinstance(n, Def)})
    package = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(tree):
        for alias in node.names if isinstance(node, ast.Import) else []:
            module.imports[alias.asname or alias.name.split(".")[0]] = (
                alias.name if alias.asname else alias.name.split(".")[0]
            )
        if isinstance(node, ast.ImportFrom):
            parent = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*parent, *filter(None, [node.module])])
            module.imports |= {a.asname or a.name: f"{base}.{a.name}".lstrip(".") for a in node.names}
    module.strings = {t.id: _string_values(v) for t, v in _assignments(tree.body) if isinstance(t, ast.Name)}
    module.env_vars = frozenset(v for v in map(_env_var, ast.walk(tree)) if v)
    return module


class CodeIndex:
    """Python modules by dotted name under a list of roots (each file parsed once)."""

    def __init__(self) -> None:
        self._parsed: dict[Path, Module] = {}
        self._found: dict[tuple[tuple[Path, ...], str], Module | None] = {}

    def find(self, roots: Iterable[Path], dotted: str) -> Module | None:
        key = (tuple(roots), dotted)
        if key not in self._found:
            self._found[key] = next(filter(None, (self._parse(root, dotted) for root in key[0])), None)
        return self._found[key]

    def _parse(self, root: Path, dotted: str) -> Module | None:
        base = root.joinpath(*dotted.split("."))
        for path, is_package in ((base.with_suffix(".py"), False), (base / "__init__.py", True)):
            if path.is_file():
                if path not in self._parsed:
                    self._parsed[path] = parse_module(dotted, path, is_package)
                return self._parsed[path]
        return None


Target = Module | tuple[Module, str]
Bindings = Mapping[str, set[str]]


class Reach:
    """What a handler can run (functions, methods, module bodies reached from it) and the AWS calls in it."""

    def __init__(self, index: CodeIndex, roots: list[Path], handler: str) -> None:
        self.index, self.roots = index, roots
        module_name, _, function = handler.rpartition(".")
        entry = index.find(roots, module_name)
        if entry is None or function not in entry.defs:
            raise CodeError(f"handler {handler} not found under {', '.join(map(str, roots))}")
        self.entry, self.modules = entry, dict[str, Module]()
        self.units, self.classes, self.attributes = {(module_name, function)}, set[tuple[str, str]](), set[str]()
        # (module, function or class or "", parameter or "self.x" or global) -> the clients' services, the strings
        self.clients: defaultdict[tuple[str, str, str], set[str]] = defaultdict(set)
        self.strings: defaultdict[tuple[str, str, str], set[str]] = defaultdict(set)
        self.returns: defaultdict[tuple[str, str], set[str]] = defaultdict(set)  # functions that return clients
        self.calls: set[AwsCall] = set()
        self.ports: set[str] = set()  # modules passed as values (a handler's Deps(bucket=s3)): reached by attribute
        self.passed: set[tuple[str, str, str]] = set()  # (module, function, parameter) some call gives a value
        # module -> the variables reached code passes its classes and functions: RolloutTable(setting("X")) names X
        self.given: defaultdict[str, set[str]] = defaultdict(set)
        self._load(entry)
        while True:  # to a fixpoint: each round sees what the earlier ones reached and bound
            before = self._size()
            for unit in sorted(self.units):
                self._scan(*unit)
            for module_name, class_name in sorted(self.classes):
                for method in _methods(self.modules[module_name].defs[class_name]):
                    if method.name.startswith("__") or method.name in self.attributes:
                        self.units.add((module_name, f"{class_name}.{method.name}"))
            for module_name in sorted(self.ports):  # deps.bucket.read_bytes(...) runs s3.read_bytes
                for name, node in self.modules[module_name].defs.items():
                    if isinstance(node, Function) and name in self.attributes:
                        self.units.add((module_name, name))
            if self._size() == before:
                return

    def env_vars(self, module_name: str) -> frozenset[str]:
        """The variables naming what a module's calls act on: those it reads, and those passed to its code."""
        return self.modules[module_name].env_vars | self.given.get(module_name, set())

    def _size(self) -> tuple[int, ...]:
        bound = sum(map(len, [*self.clients.values(), *self.strings.values(), *self.returns.values()]))
        return len(self.units), len(self.attributes), len(self.calls), bound, len(self.passed)

    def _load(self, module: Module) -> None:
        parts = module.name.split(".")
        for package in (self.index.find(self.roots, ".".join(parts[:n])) for n in range(1, len(parts) + 1)):
            if package is not None:  # importing a.b.c runs a and a.b first
                self.modules[package.name] = package
                self.units.add((package.name, ""))

    def resolve(self, module: Module, name: str, depth: int = 0) -> Target | None:
        if name in module.defs:
            return module, name
        if name in module.imports and depth < 10:
            dotted = module.imports[name]
            owner = self.index.find(self.roots, dotted.rpartition(".")[0])
            found = self.index.find(self.roots, dotted)
            if found is None and owner is not None and owner is not module:
                return self.resolve(owner, dotted.rpartition(".")[2], depth + 1)
            return found
        return self.index.find(self.roots, f"{module.name}.{name}") if module.is_package else None

    def resolve_expr(self, module: Module, node: ast.AST) -> Target | None:
        if isinstance(node, ast.Name):
            return self.resolve(module, node.id)
        base = self.resolve_expr(module, node.value) if isinstance(node, ast.Attribute) else None
        return self.resolve(base, node.attr) if isinstance(base, Module) and isinstance(node, ast.Attribute) else None

    def _is_class(self, module: Module, node: ast.AST) -> bool:
        target = self.resolve_expr(module, node)
        return isinstance(target, tuple) and isinstance(target[0].defs[target[1]], ast.ClassDef)

    def _mark(self, target: Target | None) -> None:
        if target is not None:
            self._load(target if isinstance(target, Module) else target[0])
        if isinstance(target, tuple):
            self.units.add((target[0].name, target[1]))
            if isinstance(target[0].defs[target[1]], ast.ClassDef):
                self.classes.add((target[0].name, target[1]))

    def _unit(self, module: Module, qualname: str) -> tuple[list[ast.AST], Function | None]:
        """The nodes a unit runs: a module body (with its decorators and bases), a class body, a function."""
        if not qualname:
            extra = [n for d in module.defs.values() for n in [*d.decorator_list, *getattr(d, "bases", [])]]
            return [*(n for n in module.tree.body if not isinstance(n, Def)), *extra], None
        owner, _, method = qualname.partition(".")
        node = module.defs[owner]
        if isinstance(node, ast.ClassDef) and not method:
            return [n for n in node.body if not isinstance(n, Function)], None
        found = next(m for m in _methods(node) if m.name == method) if method else node
        return ([found], found) if not isinstance(found, ast.ClassDef) else ([], None)

    def _scan(self, module_name: str, qualname: str) -> None:
        module = self.modules[module_name]
        nodes, function = self._unit(module, qualname)
        owner = qualname.partition(".")[0] if "." in qualname else ""
        clients: defaultdict[str, set[str]] = defaultdict(set)
        strings: defaultdict[str, set[str]] = defaultdict(set)
        keys: defaultdict[str, set[str]] = defaultdict(set)  # the constant keys of the dicts a name can hold
        ours = {"self"} if owner else set()  # names that can hold an instance of one of the code's classes
        for arg in _arguments(function) if function else []:
            clients[arg.arg] |= self.clients[(module_name, qualname, arg.arg)]
            strings[arg.arg] |= self.strings[(module_name, qualname, arg.arg)]
            if arg.annotation and any(self._is_class(module, n) for n in ast.walk(arg.annotation)):
                ours.add(arg.arg)
        for (m, c, name), services in list(self.clients.items()):  # the module's globals, the instance's attributes
            if m == module_name and (c, name.startswith("self.")) in (("", False), (owner, True)):
                clients[name] |= services
        walked = [n for node in nodes for n in ast.walk(node)]
        for target, value in _assignments(walked):  # bindings first: a walk does not follow the order of execution
            services = self.client_services(value, clients, module)
            if isinstance(target, ast.Name):
                clients[target.id] |= services
                if not qualname:
                    self.clients[(module_name, "", target.id)] |= services
                strings[target.id] |= _string_values(value)
                keys[target.id] |= _dict_keys(self._live(module_name, qualname, function, value))
                if isinstance(value, ast.Call) and self._is_class(module, value.func):
                    ours.add(target.id)
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                clients[f"self.{target.attr}"] |= services
                self.clients[(module_name, owner, f"self.{target.attr}")] |= services
        receivers = {id(n.value) for n in walked if isinstance(n, ast.Attribute)}
        for node in walked:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    self._mark(self.resolve(module, alias.asname or alias.name.split(".")[0]))
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                target = self.resolve(module, node.id)
                self._mark(target)
                if isinstance(target, Module) and id(node) not in receivers:
                    self.ports.add(target.name)
            elif isinstance(node, ast.Attribute):
                receiver = node.value
                new = isinstance(receiver, ast.Call) and self._is_class(module, receiver.func)
                if node.attr not in BUILTIN_NAMES or new or (isinstance(receiver, ast.Name) and receiver.id in ours):
                    self.attributes.add(node.attr)
                self._mark(self.resolve_expr(module, node))
            elif isinstance(node, ast.Call):
                self._call(module, node, clients, strings, keys)
            elif isinstance(node, ast.Return) and node.value is not None and function is not None:
                self.returns[(module_name, qualname)] |= self.client_services(node.value, clients, module)

    def client_services(self, node: ast.AST, clients: Bindings, module: Module) -> set[str]:
        """The services of the clients an expression can be."""
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name in ("client", "create_client") and node.args[0].value in services():
                return {str(node.args[0].value)}
        if isinstance(node, ast.Call):
            target = self.resolve_expr(module, node.func)
            return set(self.returns.get((target[0].name, target[1]), ())) if isinstance(target, tuple) else set()
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return set(clients.get(f"self.{node.attr}", ()))
        return set(clients.get(node.id, ())) if isinstance(node, ast.Name) else set()

    def _call(self, module: Module, node: ast.Call, clients: Bindings, strings: Bindings, keys: Bindings) -> None:
        func, found, operations = node.func, set[str](), set[str]()
        if isinstance(func, ast.Attribute) and func.attr not in CLIENT_HELPERS:
            found = self.client_services(func.value, clients, module)
            paginated = func.attr == "get_paginator" and node.args
            operations = self._strings(module, node.args[0], strings) if paginated else {func.attr}
        elif isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
            found = self.client_services(node.args[0], clients, module)
            operations = self._strings(module, node.args[1], strings)
            if isinstance(self.resolve_expr(module, node.args[0]), Module):  # getattr(steps, action): a dispatch
                self.attributes |= operations or set().union(*module.strings.values())
        details = {k.arg for k in node.keywords if k.arg}
        for keyword in node.keywords:  # **extra: the keys its dicts can hold; CopySource's as CopySource.<key>, ...
            if keyword.arg in (None, "CopySource", "ExtraArgs"):
                found_keys = _dict_keys(keyword.value) | {
                    k for n in ast.walk(keyword.value) if isinstance(n, ast.Name) for k in keys.get(n.id, ())
                }
                details |= {f"{keyword.arg}.{k}" if keyword.arg else k for k in found_keys}
        for keyword in (k for k in node.keywords if k.arg == "TransactItems"):
            dicts = [d for d in ast.walk(keyword.value) if isinstance(d, ast.Dict)]
            details |= {str(k.value) for d in dicts for k in d.keys if isinstance(k, ast.Constant)}
        told: list[str | None] = [*sorted(operations)] or [None]  # None: an operation that cannot be told
        for service in found:
            for operation in told:
                self.calls.add(AwsCall(module.path, node.lineno, service, operation, module.name, frozenset(details)))
        self._bind(module, node, clients)

    def _strings(self, module: Module, node: ast.AST, strings: Bindings) -> set[str]:
        """The strings an expression can be: a constant, or a parameter, local or module-level constant (by key)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        node = node.value if isinstance(node, ast.Subscript) else node
        return set(strings.get(node.id) or module.strings.get(node.id) or ()) if isinstance(node, ast.Name) else set()

    def _live(self, module_name: str, qualname: str, function: Function | None, value: ast.AST) -> ast.AST:
        """What ``x if parameter else y`` can be: only y when no call gives the function's parameter a value
        (``extra = {"VersionId": version_id} if version_id else {}`` in a function no caller gives a version)."""
        if isinstance(value, ast.IfExp) and isinstance(value.test, ast.Name) and function is not None:
            parameter = value.test.id
            if (
                parameter in {a.arg for a in _arguments(function)}
                and (module_name, qualname, parameter) not in self.passed
            ):
                return value.orelse
        return value

    def _bind(self, module: Module, node: ast.Call, clients: Bindings) -> None:
        """Bind the clients and strings a call passes to the parameters of each function it may call."""
        targets: list[tuple[str, str, Function, bool]] = []
        resolved = self.resolve_expr(module, node.func)
        if isinstance(resolved, tuple):
            owner, name = resolved
            d = owner.defs[name]
            inits = [(owner.name, f"{name}.{m.name}", m, True) for m in _methods(d) if m.name == "__init__"]
            targets += inits if isinstance(d, ast.ClassDef) else [(owner.name, name, d, False)]
        elif isinstance(node.func, ast.Attribute):
            for module_name, class_name in self.classes:
                methods = _methods(self.modules[module_name].defs[class_name])
                targets += [
                    (module_name, f"{class_name}.{m.name}", m, True) for m in methods if m.name == node.func.attr
                ]
            for module_name in self.ports:  # deps.bucket.read_bytes(...) on a module passed as a port
                d = self.modules[module_name].defs.get(node.func.attr)
                targets += [(module_name, node.func.attr, d, False)] if isinstance(d, Function) else []
        for owner_name, qualname, function, is_method in targets:
            positional = [a.arg for a in [*function.args.posonlyargs, *function.args.args]][int(is_method) :]
            given = [(p, a) for p, a in zip(positional, node.args, strict=False) if not isinstance(a, ast.Starred)]
            given += [(k.arg, k.value) for k in node.keywords if k.arg in {a.arg for a in _arguments(function)}]
            for parameter, value in given:
                if variable := _env_var(value):
                    self.given[owner_name].add(variable)
                if not (isinstance(value, ast.Constant) and value.value is None):
                    self.passed.add((owner_name, qualname, parameter))
                self.clients[(owner_name, qualname, parameter)] |= self.client_services(value, clients, module)
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    self.strings[(owner_name, qualname, parameter)].add(value.value)


def _methods(node: Def) -> list[Function]:
    return [n for n in node.body if isinstance(n, Function)] if isinstance(node, ast.ClassDef) else []


def _arguments(function: Function) -> list[ast.arg]:
    return [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]


@functools.cache
def session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def services() -> frozenset[str]:
    return frozenset(session().get_available_services())
