"""Validate the numpydoc docstring of every public name of matderiv with numpydoc.validate.

usage: python .ci/numpydoc.py [--list]

Checked: the modules matderiv and matderiv.dask; every name of matderiv.__all__ and of
matderiv.dask.__all__ (but __version__, a string); and, for every public class, each
public method and property, under the first public class that defines it (an override
that carries no docstring of its own shows its base's, as help() and Sphinx do, and is
counted as checked there).  Data attributes (class constants, __slots__ entries, dataclass
fields, what instances store) have no docstring of their own: the class's Attributes
section documents them.

Besides numpydoc's checks, every See Also entry must name a public name (the
documentation site links them), and the reStructuredText that numpydoc makes of each
docstring must parse without a docutils warning (a `*` or `|` taken for markup).
--list prints every name checked.  Exit status 1, with one line per error, when any
docstring breaks a check that is not excluded below.
"""
from __future__ import annotations

import inspect
import io
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# this file is named like the package it uses: its folder must not come first on the path;
# the tree's matderiv (not an installed one) does
sys.path[0] = str(ROOT)

import docutils.core  # noqa: E402  (numpydoc's Sphinx brings it)
import numpydoc.validate as nv  # noqa: E402
from numpydoc.docscrape_sphinx import SphinxDocString  # noqa: E402

import matderiv  # noqa: E402
import matderiv.dask  # noqa: E402

#: Checks not applied anywhere, each with the reason.
EXCLUDED = {
    "ES01": "an extended summary is style: short properties and methods need none, and the "
            "details of the others are in their Notes",
    "SA04": "a See Also entry may stand without a description where its name says it all",
}
#: Checks not applied to properties: a property takes no arguments and returns nothing,
#: and its See Also would only name its own class.
PROPERTY_EXCLUDED = {"SA01"}
#: Classes whose instances come from constructor functions, never from the class itself:
#: their __init__ arguments are internal (the factors, the stored arrays), so the class
#: docstring documents its attributes instead of parameters (PR01, PR02 not applied).
FACTORY_MADE = {
    "ConvInputJacobian", "ConvWeightJacobian", "Jacobian", "JacobianCheck", "KroneckerJacobian",
    "StructuredJacobian", "TotalJacobian",
}
CHECKS = sorted(set(nv.ERROR_MSGS) - set(EXCLUDED))


class Validator(nv.Validator):
    """numpydoc's Validator, built from a dotted name as validate() builds it."""

    def __init__(self, obj_name: str) -> None:
        super().__init__(nv.get_doc_object(nv.Validator._load_obj(obj_name)))

    @property
    def source_file_def_line(self) -> int | None:
        # numpydoc looks for the first def or class line of the object's source: a
        # module that has none (matderiv.dask's __init__) would stop its search
        try:
            return super().source_file_def_line
        except StopIteration:
            return None


def own_doc(owner: type, name: str) -> str | None:
    """The docstring that `owner` itself gives `name` (a property's is its getter's)."""
    member = vars(owner)[name]
    return getattr(member, "__doc__", None)


def class_members(path: str, cls: type, seen: set[tuple[type, str]]) -> list[tuple[str, bool]]:
    """(dotted name, is_property) of the public methods and properties cls has, each once."""
    found = []
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next(k for k in cls.__mro__ if name in vars(k))
        if not owner.__module__.startswith("matderiv") or (owner, name) in seen:
            continue
        seen.add((owner, name))
        member = vars(owner)[name]
        if not (inspect.isfunction(member) or isinstance(member, (property, classmethod, staticmethod))):
            continue  # a data attribute (a class constant, a __slots__ entry): see the class's Attributes
        if own_doc(owner, name) is None and any(
            name in vars(k) and own_doc(k, name) for k in owner.__mro__[1:]
        ):
            continue  # the base's docstring, checked under the base
        found.append((f"{path}.{name}", isinstance(member, property)))
    return found


def names() -> list[tuple[str, bool, bool]]:
    """(dotted name, is_property, is_factory_made_class) of everything checked."""
    out = [("matderiv", False, False), ("matderiv.dask", False, False)]
    seen: set[tuple[type, str]] = set()
    for module in (matderiv, matderiv.dask):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, str):
                continue
            path = f"{module.__name__}.{name}"
            out.append((path, False, name in FACTORY_MADE))
            if inspect.isclass(obj):
                out += [(member, prop, False) for member, prop in class_members(path, obj, seen)]
    return out


def unknown_see_also(name: str) -> list[str]:
    """The See Also entries of `name` that name nothing: each must be a public name of
    matderiv (or of matderiv.dask, for its functions), a method or property of one
    ("Jacobian.tovec"), or a dotted name from matderiv ("matderiv.batch_grad"); the
    documentation site links them."""
    validator = Validator(name)
    homes = [matderiv.dask, matderiv] if name.startswith("matderiv.dask.") else [matderiv]
    missing = []
    for entry in validator.see_also:
        if entry.startswith("matderiv."):
            try:
                nv.Validator._load_obj(entry)
                continue
            except (ImportError, AttributeError):
                missing.append(entry)
                continue
        head, _, rest = entry.partition(".")
        obj = next((getattr(home, head) for home in homes if head in getattr(home, "__all__", ())), None)
        if obj is None or (rest and not hasattr(obj, rest)):
            missing.append(entry)
    return missing


#: What plain docutils cannot know: the roles and directives that Sphinx adds.
SPHINX_ONLY = re.compile(r"Unknown (interpreted text role|directive type)|No (role|directive) entry|Trying \"")


def rst_problems(name: str) -> list[str]:
    """docutils' warnings on the reStructuredText that numpydoc makes of the docstring (as
    the documentation site renders it): a `*` or `|` read as inline markup, a broken list."""
    text = str(SphinxDocString(inspect.getdoc(nv.Validator._load_obj(name)) or ""))
    stream = io.StringIO()
    docutils.core.publish_doctree(text, settings_overrides={"warning_stream": stream, "report_level": 2})
    return [line.split(": ", 1)[-1] for line in stream.getvalue().splitlines()
            if line.startswith("<string>:") and not SPHINX_ONLY.search(line)]


def main() -> int:
    checked = names()
    if "--list" in sys.argv:
        print("\n".join(name for name, _, _ in checked))
    problems = []
    for name, is_property, factory_made in checked:
        skip = (PROPERTY_EXCLUDED if is_property else set()) | ({"PR01", "PR02"} if factory_made else set())
        for code, message in nv.validate(name, Validator)["errors"]:
            if code in CHECKS and code not in skip:
                problems.append(f"{name}: {code} {message}")
        problems += [f"{name}: See Also names {entry!r}, which is no public name" for entry in unknown_see_also(name)]
        problems += [f"{name}: reStructuredText: {message}" for message in rst_problems(name)]
    print(f"numpydoc: {len(checked)} public names checked ({len(CHECKS)} checks; excluded: "
          f"{', '.join(sorted(EXCLUDED))}), {len(problems)} errors")
    for problem in problems:
        print(f"  {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
