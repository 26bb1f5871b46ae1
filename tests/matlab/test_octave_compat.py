"""Static checks that matlab/ uses only syntax both MATLAB and GNU Octave 7 accept.

Octave runs the test suite, which catches what Octave rejects; this file catches what
MATLAB would reject (and Octave happens to allow), by scanning the code with comments and
single-quoted strings removed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

MATLAB_DIR = Path(__file__).resolve().parents[2] / "matlab"
FILES = sorted(MATLAB_DIR.rglob("*.m"))

# (pattern on code with strings and comments removed, why it is refused)
FORBIDDEN = [
    (r'"', 'double-quoted string (a MATLAB string object; char differs): use single quotes'),
    (r"^\s*arguments\b\s*$", "arguments block (MATLAB only)"),
    (r"\bstrings?\s*\(", "string class (MATLAB only in Octave 7)"),
    (r"\b(isstring|convertStringsToChars|contains|newline)\s*\(", "function Octave 7 lacks"),
    (r"\bAbstract\b", "Abstract members"),
    (r"\bImmutable\b", "Immutable properties"),
    (r"#", "Octave-only comment or syntax"),
    (r"!", "Octave-only negation: use ~"),
    (r"\+\+|--|\+=|-=|\*=|/=|\^=", "Octave-only increment/assignment operator"),
    (r"\*\*", "Octave-only power operator: use ^"),
    (r"\bend(if|for|while|function|switch|_try_catch|_unwind_protect|classdef|methods|"
     r"properties)\b", "Octave-only end keyword: use end"),
    (r"\b(unwind_protect|do|until)\b", "Octave-only control flow"),
    (r"\b(printf|puts|fputs|fdisp|print_usage|nthargout|columns|rows|lookup|ifelse|merge|"
     r"postpad|prepad|idx_vector|isargout)\s*\(", "Octave-only function"),
    (r"(?<!\.)\.\.(?!\.)", "'..' is not MATLAB syntax"),
    (r"[(,]\s*[A-Za-z_]\w*\s*=(?!=)", "name=value argument (MATLAB R2021a+, not R2019b)"),
]


# where string() may be called: the Octave stand-in for MATLAB's string class and the one
# test helper that builds strings (MATLAB's class, or the stand-in under Octave)
STRING_ALLOWED = {Path("tests/string_double/string.m"), Path("tests/t_string.m")}


def strip_code(text: str) -> list[tuple[int, str]]:
    """(line number, code) with comments and single-quoted strings blanked out."""
    out = []
    in_block = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped == "%{":
            in_block = True
            continue
        if stripped == "%}":
            in_block = False
            continue
        if in_block:
            continue
        code = []
        i = 0
        in_string = False
        while i < len(line):
            c = line[i]
            if in_string:
                if c == "'":
                    if i + 1 < len(line) and line[i + 1] == "'":
                        i += 2
                        continue
                    in_string = False
                    code.append("S")
                i += 1
                continue
            if c == "%":
                break
            if c == "'":
                prev = line[i - 1] if i > 0 else " "
                if prev.isalnum() or prev in "_)]}.'":
                    code.append(c)  # transpose
                else:
                    in_string = True
                    code.append("S")
                i += 1
                continue
            if c == "." and line[i:i + 3] == "...":
                break  # continuation: the rest of the line is a comment
            code.append(c)
            i += 1
        out.append((number, "".join(code)))
    return out


def test_there_is_matlab_code():
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(MATLAB_DIR)))
def test_matlab_and_octave_both_accept(path: Path):
    problems = []
    for number, code in strip_code(path.read_text(encoding="utf-8")):
        for pattern, why in FORBIDDEN:
            if why.startswith("string class") and path.relative_to(MATLAB_DIR) in STRING_ALLOWED:
                continue
            if re.search(pattern, code):
                problems.append(f"{path.name}:{number}: {why}: {code.strip()}")
        # indexing the result of a call, f(a)(b), is Octave-only (@(x)(...) is fine)
        for m in re.finditer(r"\)\s*\(", code):
            depth, j = 0, m.start()
            while j >= 0:
                depth += code[j] == ")"
                depth -= code[j] == "("
                if depth == 0:
                    break
                j -= 1
            if j <= 0 or code[j - 1] != "@":
                problems.append(f"{path.name}:{number}: indexing a call result: {code.strip()}")
    assert not problems, "\n".join(problems)


def test_sources_are_ascii_with_no_machine_paths():
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        assert text.isascii(), f"{path}: keep .m sources ASCII (MATLAB reads them per locale)"
        assert "/work/" not in text and "/home/" not in text and "C:\\" not in text, path


def test_the_checker_catches_what_it_should():
    bad = 'x = "a"; % fine\ny++\nfunction r = f(x = 1)\nendfunction\nz = f(1)(2)\n'
    flagged = [code for _, code in strip_code(bad)]
    assert re.search(r'"', flagged[0])
    assert re.search(r"\+\+", flagged[1])
    assert "%" not in flagged[0]
    ok = [code for _, code in strip_code("s = 'it''s \"q\" #1'; t = x'; g = @(x)(x+1);")]
    assert '"' not in ok[0] and "#" not in ok[0]
