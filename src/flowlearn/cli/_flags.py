"""Command-line flags generated from the library's own hyperparameter declarations.

:func:`add_arguments` turns the fields of a config dataclass, or the keyword parameters of a class's
``__init__``, into ``--flag-name`` options with the declared type, default and the first sentence of their
numpy-style docstring entry; :func:`collect` builds the keyword arguments back.  Validation stays where it is
declared (``__post_init__`` or ``__init__``), whose one-line error names the field (``batch_size`` for
``--batch-size``).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing

__all__ = ["add_arguments", "collect"]

_TYPES = ("int", "float", "str", "bool", "{")


def _doc_sections(obj) -> dict:
    """``{name: first sentence}`` from the ``Attributes``/``Parameters`` section of ``obj``'s docstring."""
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj) and not dataclasses.is_dataclass(obj):
        doc += "\n" + (inspect.getdoc(obj.__init__) or "")
    out, lines, in_section = {}, [], False
    for raw in doc.splitlines():
        line = raw.strip()
        if line in ("Attributes", "Parameters"):
            in_section = True
        elif in_section and raw[:1] not in ("", " ") and re.fullmatch(r"[A-Z][a-z]+", line):
            in_section = False   # the next section
        elif in_section and not re.fullmatch(r"-{3,}", line):
            m = re.match(r"^([a-z_][a-z0-9_, ]*)\s*:\s*(.*)$", raw)
            if m:   # "name : type" or "name : text" starts an entry (shared by "a, b : ...")
                lines = [] if not m.group(2) or m.group(2).startswith(_TYPES) else [m.group(2)]
                out.update({n.strip(): lines for n in m.group(1).split(",")})
            elif out and line:
                lines.append(line)
    return {k: " ".join(v).strip().split(". ")[0].rstrip(".") for k, v in out.items()}


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


def add_arguments(parser, target, *, only=None, rename=None, help=None, defaults=None, choices=None) -> None:
    """Add a flag per field of ``target`` (dataclass or class), or per field named in ``only``.

    ``rename``: ``{field: flag}`` for a different spelling (e.g. ``{"iterations": "--iters"}``);
    ``defaults``: CLI defaults that differ from the library's; ``help``: extra help per field;
    ``choices``: ``{field: allowed values}`` (the library's own registries), checked by argparse.
    """
    docs = _doc_sections(target)
    rename, help, defaults, choices = rename or {}, help or {}, defaults or {}, choices or {}
    for name, typ, default in _fields(target):
        if only is not None and name not in only:
            continue
        default = defaults.get(name, default)
        text = help.get(name) or docs.get(name) or name.replace("_", " ")
        shown = "" if default is None or "default" in text.lower() else f" (default {default!r})"
        kw = {"default": default, "dest": name, "help": f"{text}{shown}".replace("%", "%%"),
              "type": _bool if typ is bool else typ, "metavar": {int: "N", float: "X", bool: "BOOL"}.get(typ, "S")}
        if name in choices:
            kw["choices"] = list(choices[name])
            kw["metavar"] = "{" + ",".join(map(str, kw["choices"])) + "}"
        parser.add_argument(rename.get(name, "--" + name.replace("_", "-")), **kw)


def collect(args, target, names=None) -> dict:
    """The keyword arguments for ``target`` from parsed ``args`` (the fields added by :func:`add_arguments`)."""
    names = names if names is not None else [n for n, _, _ in _fields(target)]
    return {n: getattr(args, n) for n in names if hasattr(args, n)}
