"""Safe arithmetic over paths: ``success / count``, ``sqrt(sq / n - pow(s / n, 2))``.

A small tokenizer and recursive-descent parser build a tree of frozen nodes; nothing is ever
passed to ``eval``. Names are dotted paths (``duration.sum``; backquotes allow any other
characters: ```codes.not-found```). Evaluation is per bucket over ``float | None``: a missing
operand, a division by zero or ``sqrt`` of a negative number gives ``None`` (null), never an
exception or an infinity.

Grammar::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := "-" unary | atom
    atom   := NUMBER | PATH | FUNC "(" expr ("," expr)* ")" | "(" expr ")"
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tally.read.errors import BadExpression

MAX_LENGTH = 1000
MAX_DEPTH = 50

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_:]*(?:\.[A-Za-z0-9_:]+)*)"
    r"|`(?P<quoted>[^`]+)`"
    r"|(?P<op>[-+*/(),]))"
)

Number = float | None


def _sqrt(x: Number) -> Number:
    return None if x is None or x < 0 else math.sqrt(x)


def _pow(x: Number, y: Number) -> Number:
    if x is None or y is None:
        return None
    try:
        result = math.pow(x, y)
    except (OverflowError, ValueError, ZeroDivisionError):
        return None
    return result if math.isfinite(result) else None


def _present(args: tuple[Number, ...]) -> list[float]:
    return [a for a in args if a is not None]


def _min(*args: Number) -> Number:
    present = _present(args)
    return min(present) if present else None


def _max(*args: Number) -> Number:
    present = _present(args)
    return max(present) if present else None


def _fsum(values: list[float]) -> Number:
    try:
        return math.fsum(values)
    except OverflowError:  # an intermediate sum beyond float: no finite answer
        return None


def _sum(*args: Number) -> Number:
    present = _present(args)
    return _fsum(present) if present else None


def _mean(*args: Number) -> Number:
    total = _sum(*args)
    return None if total is None else total / len(_present(args))


def _abs(x: Number) -> Number:
    return None if x is None else abs(x)


def _coalesce(*args: Number) -> Number:
    return next((a for a in args if a is not None), None)


# name -> (function, minimum arity, maximum arity or None for variadic)
FUNCTIONS: Mapping[str, tuple[Callable[..., Number], int, int | None]] = {
    "sqrt": (_sqrt, 1, 1),
    "abs": (_abs, 1, 1),
    "pow": (_pow, 2, 2),
    "min": (_min, 1, None),
    "max": (_max, 1, None),
    "sum": (_sum, 1, None),
    "mean": (_mean, 1, None),
    "coalesce": (_coalesce, 1, None),
}


@dataclass(frozen=True, slots=True)
class Const:
    value: float

    def evaluate(self, env: Mapping[str, Number]) -> Number:
        return self.value


@dataclass(frozen=True, slots=True)
class Path:
    path: str

    def evaluate(self, env: Mapping[str, Number]) -> Number:
        return env.get(self.path)


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Node

    def evaluate(self, env: Mapping[str, Number]) -> Number:
        v = self.operand.evaluate(env)
        return None if v is None else -v


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str
    left: Node
    right: Node

    def evaluate(self, env: Mapping[str, Number]) -> Number:
        a, b = self.left.evaluate(env), self.right.evaluate(env)
        if a is None or b is None:
            return None
        if self.op == "+":
            r = a + b
        elif self.op == "-":
            r = a - b
        elif self.op == "*":
            r = a * b
        elif b == 0:
            return None  # division by zero is null, as in Trifle
        else:
            r = a / b
        return r if math.isfinite(r) else None


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]

    def evaluate(self, env: Mapping[str, Number]) -> Number:
        fn = FUNCTIONS[self.name][0]
        return fn(*(a.evaluate(env) for a in self.args))


Node = Const | Path | Neg | BinOp | Call


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed expression: its text, tree and the paths it reads."""

    text: str
    tree: Node
    paths: tuple[str, ...]

    def evaluate(self, env: Mapping[str, Number]) -> Number:
        """The value for one bucket, ``env`` mapping path -> value (missing -> None)."""
        return self.tree.evaluate(env)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            where = len(text[:pos]) + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise BadExpression(f"unexpected character {text[where]!r} at position {where}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "quoted":
            if "*" in value:
                raise BadExpression(f"wildcards are not allowed in expressions: {value!r}")
            kind = "name"
        out.append((kind, value, match.start(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0
        self.paths: list[str] = []
        self.depth = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise BadExpression("unexpected end of expression")
        self.i += 1
        return token

    def expect(self, op: str) -> None:
        token = self.peek()
        if token is None or token[1] != op or token[0] != "op":
            got = "end of expression" if token is None else repr(token[1])
            where = len(self.text) if token is None else token[2]
            raise BadExpression(f"expected {op!r} at position {where}, got {got}")
        self.i += 1

    def parse(self) -> Expression:
        if not self.tokens:
            raise BadExpression("empty expression")
        tree = self.expr()
        token = self.peek()
        if token is not None:
            raise BadExpression(f"unexpected {token[1]!r} at position {token[2]}")
        return Expression(self.text, tree, tuple(dict.fromkeys(self.paths)))

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise BadExpression(f"expression nested deeper than {MAX_DEPTH}")
        node = self.term()
        while (t := self.peek()) is not None and t[0] == "op" and t[1] in "+-":
            self.i += 1
            node = BinOp(t[1], node, self.term())
        self.depth -= 1
        return node

    def term(self) -> Node:
        node = self.unary()
        while (t := self.peek()) is not None and t[0] == "op" and t[1] in "*/":
            self.i += 1
            node = BinOp(t[1], node, self.unary())
        return node

    def unary(self) -> Node:
        signs = 0
        while (t := self.peek()) is not None and t[0] == "op" and t[1] == "-":
            self.i += 1
            signs += 1
            if signs > MAX_DEPTH:
                raise BadExpression(f"more than {MAX_DEPTH} minus signs in a row")
        node = self.atom()
        return Neg(node) if signs % 2 else node

    def atom(self) -> Node:
        kind, value, pos = self.take()
        if kind == "number":
            number = float(value)
            if not math.isfinite(number):
                raise BadExpression(f"number {value!r} at position {pos} is too large")
            return Const(number)
        if kind == "name":
            nxt = self.peek()
            if nxt is not None and nxt[0] == "op" and nxt[1] == "(":
                return self.call(value, pos)
            self.paths.append(value)
            return Path(value)
        if value == "(":
            node = self.expr()
            self.expect(")")
            return node
        raise BadExpression(f"unexpected {value!r} at position {pos}")

    def call(self, name: str, pos: int) -> Node:
        if name not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise BadExpression(f"unknown function {name!r} at position {pos} (known: {known})")
        self.expect("(")
        args = [self.expr()]
        while (t := self.peek()) is not None and t[0] == "op" and t[1] == ",":
            self.i += 1
            args.append(self.expr())
        self.expect(")")
        _, low, high = FUNCTIONS[name]
        if len(args) < low or (high is not None and len(args) > high):
            want = str(low) if low == high else f"at least {low}"
            raise BadExpression(f"{name}() takes {want} argument(s), got {len(args)}")
        return Call(name, tuple(args))


def parse(text: str) -> Expression:
    """Parse ``text`` into an :class:`Expression`; :class:`BadExpression` with the reason."""
    if not isinstance(text, str):
        raise BadExpression("an expression must be a string")
    if len(text) > MAX_LENGTH:
        raise BadExpression(f"expression longer than {MAX_LENGTH} characters")
    if re.search(r"\w\.\*", text):
        raise BadExpression("wildcards are not allowed in expressions; list the paths instead")
    return _Parser(text).parse()
