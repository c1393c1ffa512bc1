# ruff: noqa: RUF001  (multilingual texts on purpose)
"""Lexical intent classifier: both twins (fixture ``intent``) against a naive reference scan, and the
compiled twin against the pure one on random and sampled texts."""

from __future__ import annotations

import importlib
from collections import Counter
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omen._fast.intent_py import ALPHA, CAP, DIGIT, FEATURES, LEFT, LEFT_ASCII, RIGHT
from tests.fast.conftest import compiled_or_skip

PURE = importlib.import_module("omen._fast.intent_py")


@pytest.fixture(scope="session", params=["compiled", "pure"])
def intent(request: pytest.FixtureRequest) -> ModuleType:
    return compiled_or_skip("intent") if request.param == "compiled" else PURE


@pytest.fixture(scope="session")
def compiled() -> ModuleType:
    return compiled_or_skip("intent")


INDEX = {(f[0], f[1]): j for j, f in enumerate(FEATURES)}


def hits(module: ModuleType, text: str, pattern: str, category: int = 0) -> int:
    return module.scan(text)[INDEX[pattern, category]]


# ---- a reference written from the spec in intent_py's docstring, one position at a time ------------------


def _char_matches(p: str, t: str) -> bool:
    if p == DIGIT:
        return "0" <= t <= "9"
    if p == ALPHA:
        return "a" <= t <= "z"
    return p == t


def _no_space_script(o: int) -> bool:
    ranges = [(0x0E00, 0x0E7F), (0x2E80, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF)]
    return any(lo <= o <= hi for lo, hi in [*ranges, (0x20000, 0x3FFFF)])


def _word(t: str) -> bool:
    return (t.isalnum() or t == "_") and not _no_space_script(ord(t))


def reference_scan(text: str) -> list[int]:
    low = text.lower()
    out = []
    for pattern, _category, _weight, _label, flags in FEATURES:
        n = 0
        for i in range(len(low) - len(pattern) + 1):
            if not all(_char_matches(p, t) for p, t in zip(pattern, low[i : i + len(pattern)], strict=True)):
                continue
            before = low[i - 1] if i else None
            after = low[i + len(pattern)] if i + len(pattern) < len(low) else None
            if flags & LEFT and before is not None and _word(before):
                continue
            if flags & RIGHT and after is not None and _word(after):
                continue
            if flags & LEFT_ASCII and before is not None and before in "abcdefghijklmnopqrstuvwxyz0123456789_.":
                continue
            n += 1
        out.append(min(n, CAP))
    return out


# ---- the table ----------------------------------------------------------------------------------------------


def test_table_is_well_formed():
    assert len(FEATURES) > 500
    duplicates = [k for k, n in Counter((f[0], f[1]) for f in FEATURES).items() if n > 1]
    assert duplicates == []
    for pattern, category, weight, label, flags in FEATURES:
        assert pattern == pattern.lower() and category in (0, 1, 2) and weight in (1, 2, 3, 4) and label
        assert flags in (0, LEFT, RIGHT, LEFT | RIGHT, LEFT_ASCII, LEFT_ASCII | RIGHT)


def test_compiled_twin_uses_the_same_table(compiled):
    assert compiled.FEATURES is FEATURES
    assert len(compiled.scan("")) == len(FEATURES)


# ---- behaviour, both twins ----------------------------------------------------------------------------------


def test_word_boundaries(intent):
    assert hits(intent, "There is a bug in the parser.", "bug") == 1
    assert hits(intent, "Attach the debugger, then ladybugs.", "bug") == 0
    assert hits(intent, "Баг в коде", "баг") == 1
    assert hits(intent, "Мой багаж потерялся", "баг") == 0
    assert hits(intent, "improve it", "prove", 1) == 0 and hits(intent, "prove it", "prove", 1) == 1


def test_words_glued_to_chinese_are_still_words(intent):
    assert hits(intent, "帮我写一个python脚本", "python") == 1
    assert hits(intent, "用Java实现", "java") == 1
    assert hits(intent, "pythonic", "python") == 0


def test_numbers_and_wildcards(intent):
    assert hits(intent, "小明有5个苹果", DIGIT, 1) == 1  # glued to Chinese: counts
    assert hits(intent, "x2 and v3.11", DIGIT, 1) == 0  # inside an identifier or after a dot: does not
    assert hits(intent, "2024", DIGIT, 1) == 1
    assert hits(intent, "3 + 4 = 7", DIGIT + " + " + DIGIT, 1) == 1
    assert hits(intent, "git reset --hard", " --" + ALPHA) == 1
    assert hits(intent, "user_id", ALPHA + "_" + ALPHA) == 1 and hits(intent, "__init__", ALPHA + "_" + ALPHA) == 0


def test_overlapping_hits_are_capped(intent):
    assert hits(intent, "a == b", "==") == 1
    assert hits(intent, "====", "==") == 3  # positions 0, 1, 2
    assert hits(intent, "bug bug bug bug bug", "bug") == CAP


def test_text_is_lower_cased(intent):
    assert hits(intent, "PYTHON and Python", "python") == 2
    assert intent.classify_text("PROVE THAT √2 IS IRRATIONAL")[0] == "reasoning"


def test_decisions_and_reasons(intent):
    assert intent.classify_text("") == ("chat", "no code or reasoning signals")
    reason = "10 code signals: code fence, backticks, 'python', ... (scores: code 26, reasoning 1, chat 0)"
    assert intent.classify_text("```python\ndef f():\n    return 1\n```") == ("code", reason)
    assert intent.classify_text("Prove that the sum of two odd numbers is even.")[0] == "reasoning"
    assert intent.classify_text("Write a poem about the sea.") == (
        "chat", "1 chat signal: 'poem' (scores: code 0, reasoning 0, chat 4)")  # fmt: skip
    name, reason = intent.classify_text("What is an API?")
    assert name == "chat" and reason.startswith("weak signals, below 4")


def test_weighted(intent):
    text = "Fix this bug in my Python script"
    assert intent.classify_weighted([(text, 1.0)]) == intent.classify_text(text)
    assert intent.classify_weighted([(text, 0.5), (text, 0.5)]) == intent.classify_text(text)
    assert intent.classify_weighted([(text, 0.0), ("", 1.0)]) == ("chat", "no code or reasoning signals")
    name, reason = intent.classify_weighted([(text, 0.25)])
    assert (name, reason) == ("chat", "weak signals, below 4 (scores: code 2.5, reasoning 0, chat 0)")


def test_rejects_non_text(intent):
    for bad in (b"def f(): pass", None, 3):
        with pytest.raises(TypeError):
            intent.scan(bad)


def test_odd_unicode_does_not_break(intent):
    for text in ("\ud800 lone surrogate def ", "İstanbul ﬁle 𝔡𝔢𝔣", "\x00\x01 bug", "👨‍👩‍👧 bug", "ǅ" * 50):
        assert intent.scan(text) == reference_scan(text)


# ---- against the reference, and compiled vs pure --------------------------------------------------------------

_PATTERN_CHARS = sorted({ch for f in FEATURES for ch in f[0] if ch not in (DIGIT, ALPHA)})
_FRAGMENTS = [f[0].replace(DIGIT, "7").replace(ALPHA, "q") for f in FEATURES]
_SEPARATORS = [" ", "", "\n", "_", "x", "中", "я", "9", ".", "-", "İ", "\ud83d", "é"]

random_text = st.text(alphabet=st.sampled_from(_PATTERN_CHARS) | st.characters(), max_size=300)
sampled_text = st.lists(st.sampled_from(_FRAGMENTS) | st.sampled_from(_SEPARATORS), max_size=40).map("".join)
surrogate_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=60)  # lone surrogates too


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.text(alphabet=st.sampled_from(_PATTERN_CHARS), max_size=60), sampled_text.map(lambda t: t[:80])))
def test_property_matches_reference(intent, text):
    assert intent.scan(text) == reference_scan(text)


@settings(max_examples=400, deadline=None)
@given(st.one_of(random_text, sampled_text, surrogate_text))
def test_property_compiled_and_pure_agree(compiled, text):
    assert compiled.scan(text) == PURE.scan(text)
    assert compiled.classify_text(text) == PURE.classify_text(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(random_text, sampled_text), st.floats(0, 2)), max_size=5))
def test_property_weighted_agree(compiled, parts):
    assert compiled.classify_weighted(parts) == PURE.classify_weighted(parts)
