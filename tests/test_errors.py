"""The exception tree drawn in errors.py's docstring is the tree of its classes."""

from __future__ import annotations

import inspect
import re

from luxxon_agent import errors

_NODE = re.compile(r"^    (?P<indent>(?:[│ ]   )*)(?:[├└]── )?(?P<name>[A-Z]\w+)\s")


def _drawn_parents() -> dict[str, str | None]:
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    doc = errors.__doc__ or ""
    for line in doc.split("\n\n")[1].splitlines():
        match = _NODE.match(line)
        if match is None:
            continue  # a wrapped comment line
        depth = len(match["indent"]) // 4 + (1 if "──" in line else 0)
        del stack[depth:]
        parents[match["name"]] = stack[-1] if stack else None
        stack.append(match["name"])
    return parents


def _class_parents() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if cls.__module__ != errors.__name__ or not issubclass(cls, Exception):
            continue
        (base,) = cls.__bases__
        found[name] = None if base is Exception else base.__name__
    return found


def test_docstring_tree_matches_the_classes() -> None:
    drawn = _drawn_parents()
    assert "SignatureError" in drawn and drawn["RequestTimeout"] == "TransportError"
    assert drawn == _class_parents()


def test_exit_codes_are_the_documented_ones() -> None:
    assert errors.LuxxonError.exit_code == errors.EXIT_FAILURE == 1
    assert errors.ConfigError.exit_code == errors.EXIT_USAGE == 2
    assert errors.AuthError.exit_code == errors.EXIT_AUTH == 4
    assert (errors.EXIT_OK, errors.EXIT_STARTUP_FAILURE, errors.EXIT_INTERRUPTED) == (0, 3, 130)
