"""Command-line flags generated from the library's own hyperparameter declarations.

:func:`add_arguments` turns the fields of a (frozen) config dataclass, or the keyword parameters of
a class's ``__init__``, into ``--flag-name`` options with the declared type and default and the
help text of the numpy-style docstring (``Attributes`` or ``Parameters`` section);
:func:`collect` builds the keyword arguments back.  Validation stays where it is declared: the
config's ``__post_init__`` or the class's ``__init__`` raises the one-line
:class:`~flowlearn._checks.UserInputError`, whose message names the field; the flag spelling is
derived from it (``batch_size`` <-> ``--batch-size``).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing

__all__ = ["add_arguments", "collect", "flag"]


def flag(name: str) -> str:
    """``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _doc_sections(obj) -> dict:
    """``{name: first sentence}`` from the ``Attributes``/``Parameters`` section of ``obj``'s docstring."""
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj) and not dataclasses.is_dataclass(obj):
        doc = (inspect.getdoc(obj) or "") + "\n" + (inspect.getdoc(obj.__init__) or "")
    out, current, lines = {}, None, []
    in_section = False
    for raw in doc.splitlines():
        if re.match(r"^(Attributes|Parameters)\s*$", raw.strip()):
            in_section = True
            continue
        if in_section and re.match(r"^-{3,}$", raw.strip()):
            continue
        if in_section and raw and not raw.startswith(" ") and re.match(r"^[A-Z][a-z]+\s*$", raw.strip()):
            in_section = False  # next section
        if not in_section:
            continue
        m = re.match(r"^([a-z_][a-z0-9_, ]*)\s*:\s*(.*)$", raw)
        if m and not raw.startswith(" "):
            if current:
                for n in current:
                    out[n] = " ".join(lines).strip()
            current = [n.strip() for n in m.group(1).split(",")]
            lines = [] if not m.group(2) or m.group(2).startswith(("int", "float", "str", "bool", "{")) \
                else [m.group(2)]
        elif current is not None and raw.strip():
            lines.append(raw.strip())
    if current:
        for n in current:
            out[n] = " ".join(lines).strip()
    return {k: v.split(". ")[0].rstrip(".") for k, v in out.items()}


def _base_type(annotation):
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "str": str, "bool": bool}.get(
            annotation.replace("Optional[", "").replace("]", "").replace(" | None", "").strip(), str)
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0]) if args else str
    return annotation if annotation in (int, float, str, bool) else str


def _fields(target):
    """``[(name, type, default)]`` of a dataclass or of a class's ``__init__`` keyword parameters."""
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target)
        return [(f.name, _base_type(hints.get(f.name, str)), f.default) for f in dataclasses.fields(target)
                if f.default is not dataclasses.MISSING]
    sig = inspect.signature(target.__init__)
    out = []
    for p in list(sig.parameters.values())[1:]:
        if p.default is inspect.Parameter.empty or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        ann = p.annotation if p.annotation is not inspect.Parameter.empty else type(p.default)
        out.append((p.name, _base_type(ann), p.default))
    return out


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_arguments(parser, target, *, skip=(), only=None, rename=None, help=None, defaults=None,
                  choices=None) -> list:
    """Add a flag per field of ``target`` (dataclass or class); returns the field names added.

    ``rename``: ``{field: flag}`` for a different spelling (e.g. ``{"iterations": "--iters"}``);
    ``defaults``: CLI defaults that differ from the library's; ``help``: extra help per field;
    ``choices``: ``{field: allowed values}`` (the library's own registries), checked by argparse.
    """
    docs = _doc_sections(target)
    rename, help, defaults = dict(rename or {}), dict(help or {}), dict(defaults or {})
    choices = dict(choices or {})
    added = []
    for name, typ, default in _fields(target):
        if name in skip or (only is not None and name not in only):
            continue
        default = defaults.get(name, default)
        text = help.get(name) or docs.get(name) or name.replace("_", " ")
        shown = "" if default is None or "default" in text.lower() else f" (default {default!r})"
        kw = {"default": default, "dest": name, "help": f"{plain(text)}{shown}".replace("%", "%%")}
        kw["type"] = _bool if typ is bool else typ
        kw["metavar"] = {int: "N", float: "X", bool: "BOOL"}.get(typ, "S")
        if name in choices:
            kw["choices"] = list(choices[name])
            kw["metavar"] = "{" + ",".join(map(str, kw["choices"])) + "}"
        parser.add_argument(rename.get(name, flag(name)), **kw)
        added.append(name)
    return added


_ROLE = re.compile(r":(?:math|class|func|meth|mod|data|attr|obj):`~?([^`]*)`")


def plain(text: str | None) -> str | None:
    """Help text without reStructuredText markup: ``x`` -> x, :class:`~a.B` -> B, :math:`x` -> x."""
    if not text:
        return text
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if "." in m.group(1) and " " not in m.group(1)
                     else m.group(1), text)
    return text.replace("``", "")


def collect(args, target, names=None) -> dict:
    """The keyword arguments for ``target`` from parsed ``args`` (the fields added by :func:`add_arguments`)."""
    names = names if names is not None else [n for n, _, _ in _fields(target)]
    return {n: getattr(args, n) for n in names if hasattr(args, n)}
