"""Reads a .drv and, recursively, its input derivations from the local store, so that a
submission carries every text the coordinator might lack (as `kiln build submit` does).
Only what a submission needs is parsed out of the ATerm: input derivations and sources."""

import os

from kiln_sdk.errors import KilnError


def _parse_aterm(text, path):
    """The ATerm value of `text`: str, list (for [..] and (..)) or (name, args) for Name(..)."""
    pos = 0

    def fail(what):
        raise KilnError(f"{path} is not a valid derivation: {what} at byte {pos}")

    def value():
        nonlocal pos
        if pos >= len(text):
            fail("unexpected end")
        c = text[pos]
        if c == '"':
            pos += 1
            out = []
            while True:
                end = pos
                while end < len(text) and text[end] not in '"\\':
                    end += 1
                out.append(text[pos:end])
                if end >= len(text):
                    pos = end
                    fail("unterminated string")
                if text[end] == '"':
                    pos = end + 1
                    return "".join(out)
                escaped = text[end + 1 : end + 2]
                out.append({"n": "\n", "r": "\r", "t": "\t"}.get(escaped, escaped))
                pos = end + 2
        if c in "[(":
            close = "]" if c == "[" else ")"
            pos += 1
            items = []
            if text.startswith(close, pos):
                pos += 1
                return items
            while True:
                items.append(value())
                if text.startswith(",", pos):
                    pos += 1
                elif text.startswith(close, pos):
                    pos += 1
                    return items
                else:
                    fail(f"expected ',' or '{close}'")
        start = pos
        while pos < len(text) and (text[pos].isalnum() or text[pos] == "_"):
            pos += 1
        if pos == start or not text.startswith("(", pos):
            fail("expected a string, a list or a constructor")
        name = text[start:pos]
        return (name, value())

    result = value()
    if pos != len(text):
        fail("trailing bytes")
    return result


def derivation_inputs(text, path="derivation"):
    """(input derivation paths, input source paths) of a .drv's text."""
    term = _parse_aterm(text, path)
    if not isinstance(term, tuple) or term[0] != "Derive" or len(term[1]) < 3:
        raise KilnError(f"{path} is not a valid derivation: it does not start with Derive(")
    input_drvs, input_srcs = term[1][1], term[1][2]
    return [entry[0] for entry in input_drvs], list(input_srcs)


def read_derivation_closure(drv_path):
    """[(path, bytes)] of the derivation and its input derivations, root first, each once;
    and the input sources of all of them. Empty when the root is not on this machine (the
    coordinator may get it from an upstream cache)."""
    root = os.path.abspath(drv_path)
    if not root.endswith(".drv"):
        raise KilnError(f"{drv_path} is not a derivation (.drv) file")
    if not os.path.exists(root):
        return [], []
    closure, sources, seen, frontier = [], [], {root}, [root]
    while frontier:
        path = frontier.pop(0)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise KilnError(f"cannot read {path}, an input derivation: {err.strerror}") from err
        closure.append((path, data))
        drvs, srcs = derivation_inputs(data.decode("utf-8"), path)
        sources.extend(s for s in srcs if s not in sources)
        for drv in drvs:
            if drv not in seen:
                seen.add(drv)
                frontier.append(drv)
    return closure, sources
