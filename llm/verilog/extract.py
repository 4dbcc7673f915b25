"""Verilog code from a model's reply: fenced blocks or bare ``module ... endmodule`` text,
reduced to the requested top module and the helper modules it instantiates.

The reply is data: it is only searched with regular expressions here, never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"```[ \t]*([A-Za-z]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_VERILOG_TAGS = {"", "verilog", "systemverilog", "sv", "v", "vlog"}
_MODULE_START = re.compile(r"\b(?:macro)?module\s+([A-Za-z_][\w$]*)")
_END = re.compile(r"\bendmodule\b")
_DIRECTIVE = re.compile(r"^[ \t]*`(?:define|timescale|default_nettype)\b[^\n]*$", re.M)
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


@dataclass(frozen=True)
class Extraction:
    """Code taken from a reply.

    Args:
        code: the Verilog source to simulate, or None when the reply has none usable.
        reason: why ``code`` is None (``no module named X; found Y``), else None.
    """

    code: str | None
    reason: str | None


def _blank_comments(text: str) -> str:
    """``text`` with comments replaced by spaces (newlines kept), so offsets still match."""
    return _COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def split_modules(text: str) -> dict[str, str]:
    """The modules a source defines: name -> ``module ... endmodule`` text (first wins)."""
    blank = _blank_comments(text)
    found: dict[str, str] = {}
    pos = 0
    while m := _MODULE_START.search(blank, pos):
        end = _END.search(blank, m.end())
        stop = end.end() if end else len(text)
        found.setdefault(m.group(1), text[m.start() : stop].rstrip() + ("" if end else "\n"))
        pos = stop
    return found


def _code_texts(reply: str) -> list[str]:
    """The Verilog parts of a reply: fenced Verilog blocks, else the reply itself."""
    blocks = [body for tag, body in _FENCE.findall(reply) if tag.lower() in _VERILOG_TAGS]
    return blocks if blocks else [reply]


def _needed(top: str, modules: dict[str, str]) -> list[str]:
    """``top`` and the modules of ``modules`` it instantiates, transitively, in source order."""
    keep, todo = {top}, [top]
    while todo:
        body = _blank_comments(modules[todo.pop()])
        for name in modules:
            if name not in keep and re.search(
                rf"(?<![\w$.]){re.escape(name)}\s*(#|[A-Za-z_])", body
            ):
                keep.add(name)
                todo.append(name)
    return [n for n in modules if n in keep]


def extract_verilog(reply: str, top_module: str, header: str | None = None) -> Extraction:
    """The design in a reply.

    Args:
        reply: the model's reply (Markdown with fenced code, bare code, or a body completion).
        top_module: the module the test bench instantiates.
        header: the module header the prompt gave (VerilogEval v1); a reply that is only the
            module body is joined to it.

    Returns:
        Extraction(code, None), or Extraction(None, reason) when no usable code is found.
    """
    if not reply or not reply.strip():
        return Extraction(None, "empty reply: no Verilog code")
    texts = _code_texts(reply)
    modules: dict[str, str] = {}
    directives: list[str] = []
    for text in texts:
        for name, src in split_modules(text).items():
            modules.setdefault(name, src)
        for d in _DIRECTIVE.findall(_blank_comments(text)):
            if d.strip() not in directives:
                directives.append(d.strip())
    if top_module not in modules and texts != [reply]:
        # a fence opened mid-code (concatenated replies): read the whole reply, fences removed
        whole = re.sub(r"```[A-Za-z]*", "\n", reply)
        for name, src in split_modules(whole).items():
            modules.setdefault(name, src)
    if top_module in modules:
        parts = [modules[n] for n in _needed(top_module, modules)]
        code = "\n\n".join(([("\n".join(directives))] if directives else []) + parts) + "\n"
        return Extraction(code, None)
    if header is not None and not modules:
        body = texts[0].strip("\n")
        if not re.search(r"[;=]|\bendmodule\b", _blank_comments(body)):
            return Extraction(None, "no Verilog code in the reply (no module and no body)")
        code = header.rstrip() + "\n" + body + "\n"
        if not _END.search(_blank_comments(body)):
            code += "endmodule\n"
        return Extraction(code, None)
    if modules:
        return Extraction(None, f"no module named {top_module}; found {', '.join(modules)}")
    return Extraction(None, f"no Verilog code in the reply (no module {top_module} ... endmodule)")
