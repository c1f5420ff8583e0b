"""A griffe extension for the API reference: asyncsnn's docstrings are free text with a little
reStructuredText (Sphinx roles such as :class:`Chip`, ``code``, ``>>>`` examples, ``::`` literal
blocks). This turns them into the Markdown that mkdocstrings renders, without touching the
Python sources:

* ``:class:`~a.b.C``` (any role) -> an optional cross-reference to ``a.b.C`` titled ``C``: a link
  where the target is documented on the site, plain code where it is not (never a warning);
  names without a dot are looked up from the documented object outward (its class, its module);
* ``>>>`` example blocks -> fenced ``pycon`` code;
* ``text::`` followed by an indented block -> ``text:`` and a fenced code block;
* ``x``\\ s (an RST escaped space after inline code) -> ``x``s;
* the compiled module ``asyncsnn._native``: each object gets the docstring of its hand-kept
  stub (``_native.pyi``) or, where the stub has none, the one compiled in (Rust doc comments).
"""

from __future__ import annotations

import html
import importlib
import re
import textwrap
from pathlib import Path
from typing import Any, Optional

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const)"
                  r":`(?P<tilde>~?)(?P<target>[^`<>]+?)`")


def _lookup(root: griffe.Object, path: str) -> Optional[griffe.Object]:
    if not path.startswith(root.path + "."):
        return None
    try:
        return root[path[len(root.path) + 1:]]
    except Exception:  # KeyError, alias resolution errors: not there
        return None


def _resolve(obj: griffe.Object, root: griffe.Object, target: str) -> str:
    """The dotted path a role's target most likely means, seen from ``obj``."""
    target = target.lstrip(".")
    scope: Optional[griffe.Object] = obj
    candidates = [target]
    while scope is not None:
        candidates.append(f"{scope.path}.{target}")
        scope = scope.parent
    for candidate in candidates:
        found = _lookup(root, candidate)
        if found is None:
            continue
        # a package that imports a function over its same-named module (``layers.run``): at run
        # time the name is the function
        name = candidate.rsplit(".", 1)[-1]
        inner = _lookup(root, f"{candidate}.{name}") if found.is_module else None
        if inner is not None and inner.is_function:
            return f"{candidate}.{name}"
        return candidate
    return target


def _role(obj: griffe.Object, root: griffe.Object):
    def repl(m: re.Match) -> str:
        target = m["target"].strip()
        title = target.rsplit(".", 1)[-1] if m["tilde"] else target
        ident = _resolve(obj, root, target)
        return (f'<autoref identifier="{html.escape(ident, quote=True)}" optional>'
                f"<code>{html.escape(title)}</code></autoref>")
    return repl


def _fence_blocks(text: str) -> str:
    """``>>>`` examples and ``::`` literal blocks as fenced code."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].strip())
                i += 1
            out += [indent + "```pycon", *(indent + b for b in block), indent + "```"]
            continue
        if line.rstrip().endswith("::") and not line.rstrip().endswith(":::"):
            # "text::" then a blank line (optional) and an indented block
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            base = len(line) - len(stripped)
            if j < len(lines) and len(lines[j]) - len(lines[j].lstrip()) > base:
                k = j
                while k < len(lines) and (not lines[k].strip()
                                          or len(lines[k]) - len(lines[k].lstrip()) > base):
                    k += 1
                while k > j and not lines[k - 1].strip():
                    k -= 1
                body = textwrap.dedent("\n".join(lines[j:k])).splitlines()
                head = line.rstrip()[:-1]
                out += [head if not head.endswith(" ") else head.rstrip(), "", "```text", *body, "```"]
                i = k
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def convert(text: str, obj: griffe.Object, root: griffe.Object) -> str:
    text = _fence_blocks(text)
    text = re.sub(r"``\\ ", "``", text)
    return ROLE.sub(_role(obj, root), text)


def _native_docstrings(pkg: griffe.Module) -> None:
    """Fill the docstrings of the compiled module from its stub, else from the compiled objects."""
    native = pkg.members.get("_native")
    if native is None or native.is_alias:
        return
    stub_path = Path(str(pkg.filepath)).parent / "_native.pyi" if not isinstance(pkg.filepath, list) else None
    stub = None
    if stub_path is not None and stub_path.exists():
        stub = griffe.visit("_native", filepath=stub_path, code=stub_path.read_text(), parent=None)
    try:
        runtime: Any = importlib.import_module(native.path)
    except ImportError:
        runtime = None

    def text_of(obj: Any) -> str:
        doc = getattr(obj, "__doc__", None) if obj is not None else None
        return textwrap.dedent(doc).strip() if isinstance(doc, str) else ""

    def fill(obj: griffe.Object, stub_obj: Optional[griffe.Object], live: Any) -> None:
        for name, member in list(obj.members.items()):
            if member.is_alias or name.startswith("__"):
                continue
            s = stub_obj.members.get(name) if stub_obj is not None else None
            s = None if s is None or s.is_alias else s
            value = getattr(live, name, None) if live is not None else None
            doc = (s.docstring.value.strip() if s is not None and s.docstring else "") or (
                text_of(value) if isinstance(value, type) or callable(value) else "")
            if doc and not (member.docstring and member.docstring.value.strip()):
                member.docstring = griffe.Docstring(doc, parent=member)
            if member.is_class:
                fill(member, s, value)

    fill(native, stub, runtime)


class RstDocstrings(griffe.Extension):
    """Rewrites every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _native_docstrings(pkg)
        seen: set[int] = set()

        def walk(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj, pkg)
            for member in list(obj.members.values()):
                if not member.is_alias:
                    walk(member)

        walk(pkg)
