"""``document_fields``: a dataclass's attribute docstrings, written into its ``__doc__`` so that ``help()`` shows them.

Python keeps no string that follows a class attribute (``x: int = 1`` then ``\"\"\"What x is.\"\"\"``): Sphinx
and IDEs read it from the source, ``help()`` never sees it.  The decorator reads it from the source once,
when the class is created, and appends a Google-style ``Attributes:`` section listing every field (its own
and inherited ones, in ``dataclasses.fields`` order) with its type, default and that docstring::

    @document_fields
    @dataclasses.dataclass(frozen=True)
    class Config:
        \"\"\"What the class is.\"\"\"

        tolerance: float = 1e-6
        \"\"\"When to stop.\"\"\"

Fields are found by ``dataclasses.fields``, so a field added later needs nothing else; one without a
docstring is listed with its type and default only.  Where the source cannot be read (a frozen
application, an interactive session) the class is returned as it is.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
from typing import Any, TypeVar

T = TypeVar("T", bound=type)

__all__ = ["document_fields", "attribute_docstrings"]


def document_fields(cls: T) -> T:
    """Append an ``Attributes:`` section built from the fields' docstrings to ``cls.__doc__``; returns ``cls``.

    Apply it above ``@dataclasses.dataclass`` (the fields must exist).  A docstring that already has an
    ``Attributes:`` section is left alone.
    """
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"document_fields decorates a dataclass (put it above @dataclasses.dataclass), got {cls!r}")
    doc = inspect.cleandoc(cls.__doc__ or "")
    if "\nAttributes:\n" in f"\n{doc}\n":
        return cls
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's docstring for a field wins over its base's
        docs.update(attribute_docstrings(klass))
    entries = []
    for field in dataclasses.fields(cls):
        head = f"    {field.name} ({_describe(field)})"
        text = docs.get(field.name)
        lines = text.splitlines() if text else []
        if len(lines) == 1:
            entries.append(f"{head}: {lines[0]}")
        else:  # none, or a paragraph: below the name, indented
            entries.append("\n".join([f"{head}:" if lines else head, *(f"        {line}" if line else "" for line in lines)]))
    if entries:
        cls.__doc__ = (f"{doc}\n\n" if doc else "") + "Attributes:\n" + "\n".join(entries)
    return cls


def attribute_docstrings(cls: type) -> dict[str, str]:
    """``{name: docstring}`` of the annotated attributes that ``cls``'s own body follows with a string
    (cleaned by ``inspect.cleandoc``); empty where the source cannot be read."""
    return dict(_attribute_docstrings(cls))


@functools.lru_cache(maxsize=None)
def _attribute_docstrings(cls: type) -> tuple[tuple[str, str], ...]:
    if cls.__module__ == "builtins":
        return ()
    try:
        node = _module_classes(inspect.getsourcefile(cls) or "").get(cls.__qualname__)
        if node is None:  # e.g. a class defined in a function: inspect finds it (parsing the module again)
            node = next(n for n in ast.parse(textwrap.dedent(inspect.getsource(cls))).body if isinstance(n, ast.ClassDef))
    except (OSError, TypeError, ValueError, SyntaxError, StopIteration):  # no source: C extensions, interactive, frozen
        return ()
    body = node.body
    out = []
    for statement, following in zip(body, body[1:]):
        if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            out.append((statement.target.id, inspect.cleandoc(following.value.value)))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _module_classes(filename: str) -> dict[str, ast.ClassDef]:
    """The classes of a source file by qualified name (nested classes too, not those in functions), parsed once."""
    with open(filename, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename)
    out: dict[str, ast.ClassDef] = {}

    def visit(nodes: list[ast.stmt], prefix: str) -> None:
        for node in nodes:
            if isinstance(node, ast.ClassDef):
                out[prefix + node.name] = node
                visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return out


def _describe(field: dataclasses.Field[Any]) -> str:
    """``type, default: value`` of a field (the annotation as written, under ``from __future__ import annotations``)."""
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", repr(field.type))
    if field.default is not dataclasses.MISSING:
        return f"{kind}, default: {field.default!r}"
    if field.default_factory is not dataclasses.MISSING:
        return f"{kind}, default: {getattr(field.default_factory, '__name__', 'factory')}()"
    return kind
