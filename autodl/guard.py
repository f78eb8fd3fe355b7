"""Refuse destructive steps whose target holds something the user would lose.

A folder the harness or a tool empties or overwrites must not be, contain or lie inside a
folder it reads from (a dataset, source images, the submission, this repository).
"""
import os


def _real(path):
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def relation(target, protected):
    """'is', 'contains', 'is inside' or None: how target stands to protected."""
    t, p = _real(target), _real(protected)
    if t == p:
        return "is"
    if p.startswith(os.path.join(t, "")):
        return "contains"
    if t.startswith(os.path.join(p, "")):
        return "is inside"
    return None


def refuse_overlap(what, target, protected, error, allow_inside=False):
    """Raise error(message) when target is, contains or (unless allowed) lies in protected."""
    for name, path in protected:
        if path is None:
            continue
        how = relation(target, path)
        if how is None or (how == "is inside" and allow_inside):
            continue
        raise error(f"{os.fspath(target)}: {what} {how} the {name} ({os.fspath(path)}); "
                    "refusing to overwrite or delete it, choose another folder")
