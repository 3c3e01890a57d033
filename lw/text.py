r"""Text measures used across the kit.

``count_words`` is the paper's length measure (LongBench-Write, section 4 of arXiv 2408.07055,
and the official ``evaluation/pred.py``): English words are runs of ASCII letters standing
between word boundaries, Chinese is counted by character (CJK Unified Ideographs U+4E00-U+9FFF),
and the two counts are added. Digits and punctuation do not count.

The word boundary is Python's Unicode ``\b``, as in the official script, so a letter run glued to
a digit, an underscore, an accented letter or a Chinese character is not a word: ``"abc123"``,
``"café"`` and the ``AI`` in ``"AI模型"`` count 0. We keep that quirk so scores match the paper's.

    >>> count_words("Hello, world! 你好")
    4
"""

import re

_WORD = re.compile(r"\b[a-zA-Z]+\b")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def count_words(text: str) -> int:
    """Length of ``text`` as LongBench-Write measures it: English words plus Chinese characters."""
    if not text:
        return 0
    return len(_WORD.findall(text)) + len(_HAN.findall(text))


def language(text: str) -> str:
    """``"zh"`` if Chinese characters outnumber English words in ``text``, else ``"en"``.

    An empty text counts as English; callers that need to reject it do so themselves.
    """
    return "zh" if len(_HAN.findall(text or "")) > len(_WORD.findall(text or "")) else "en"


def repetition(text: str, n: int = 4) -> float:
    """Share of word n-grams in ``text`` that repeat an earlier one (0 = none, near 1 = a loop).

    Normal prose scores well under 0.1; a model stuck repeating a sentence approaches 1. Chinese
    is taken character by character. Texts shorter than ``n`` tokens score 0.
    """
    tokens = re.findall(r"[a-zA-Z]+|[\u4e00-\u9fff]", (text or "").lower())
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def loop_free(text: str, max_repeats: int = 2) -> str:
    """``text`` cut where it starts looping: at the first sentence (or line) that has already
    appeared ``max_repeats`` times. Text without such a loop comes back whole.

    Beside ``count_words`` (the paper's measure, which counts a loop's every word) this gives
    the length a reader would credit: ``count_words(loop_free(text))``.
    """
    seen: dict[str, int] = {}
    kept = 0
    for m in re.finditer(r"[^.!?。！？\n]+[.!?。！？]*\s*", text or ""):
        unit = re.sub(r"\W+", " ", m.group().lower()).strip()
        if unit:
            seen[unit] = seen.get(unit, 0) + 1
            if seen[unit] > max_repeats:
                return (text or "")[:kept].rstrip()
        kept = m.end()
    return text or ""



# --- Where a reply degenerates ---------------------------------------------------------------
# Thresholds, set on these cases (tokens as count_words counts them; measured 2026-11-26):
# - clean text, never cut: the Apache-2.0, GPL-2/3, LGPL-2.1/3, MPL-1.1/2.0, GFDL-1.3, Artistic,
#   BSD and CC0 licences (legal text repeating "of this License", "the Work or Derivative
#   Works"), Vim's help files (reference text, tables of option names), idlelib's NEWS and
#   CPython's Chinese and Japanese samples. The licences' 50-token windows have distinct
#   shares of 0.40 and more and repeated shares mostly under 0.5, but LGPL-3 reaches 0.76 and
#   CC0 1.0 (it restates a passage word for word), as do Vim's tables (distinct share down to
#   0.18); each text leaves such stretches again (STAYS), so none of these texts loses a word;
# - six clauses from one template that differ in a single verb ("The Licensee shall not sell /
#   rent / lend ... the Software except as permitted by the terms of this Agreement") have a
#   repeated share of 0.76: counted (``repetition`` and lw.data's bound flag such text);
# - degenerate text, cut: a window inside a loop of one sentence has repeated share 1.0;
#   two-word salad ("answer requested answer requested") has distinct share 0.04, and salad
#   drawn at random from four words stays under 0.25.
WINDOW = 50  # tokens per window: sees a 20-word loop twice, yet finds a short degenerate tail
NGRAM = 4  # a token is "repeated" where the 4-gram ending at it appeared earlier in the text
MAX_REPEATED = 0.85  # a window with a larger share of repeated tokens is degenerate (a loop)
MIN_DISTINCT = 0.3  # a window with fewer distinct tokens per token is degenerate (salad)
STAYS = 0.8  # degeneration starts where at least this share of all later tokens is degenerate
RECUR = 8  # a token "recurs" where it is among the 8 tokens before it: prose 0.03-0.28
#            of its tokens (an essay 0.06, legal text 0.2, a song 0.28), two-word salad 1.0
TAIL_REPEATS = 0.5  # the cut-off tail must repeat itself: this share of its 4-grams occur
#                     twice in it (3 copies of a loop give 0.65, a refrain sung once more 0),
#                     or this share of its tokens recur (salad)
_TOKEN = re.compile(r"\b[a-zA-Z]+\b|[\u4e00-\u9fff]")  # count_words's units, in text order


def usable_words(text: str) -> int:
    """Words ``text`` holds before it degenerates into a loop, a run of repeated n-grams or
    word salad ("answer requested answer requested ..."); clean text counts whole, as
    ``count_words`` counts it (English words plus Chinese characters).

    A scan over windows of ``WINDOW`` tokens marks a window degenerate when most of its tokens
    end a 4-gram seen earlier (``MAX_REPEATED``) or when it holds few distinct tokens
    (``MIN_DISTINCT``). Degeneration starts at the first marked token from which on the text
    stays mostly marked (``STAYS``) and the rest repeats itself (``TAIL_REPEATS``), so repeated
    clauses, lists, a refrain, or a paragraph copied once count, and a loop run to the end
    keeps only its first copy. A loop the text leaves again is counted (``repetition`` sees it).

        >>> usable_words("Intro. " + "The sky is blue today. " * 30)
        6
    """
    return degeneration_start(text)[0]


def usable_text(text: str) -> str:
    """``text`` up to where it degenerates (see ``usable_words``); clean text comes back whole."""
    return (text or "")[:degeneration_start(text)[1]].rstrip()


def degeneration_start(text: str) -> tuple[int, int]:
    """(usable words, character offset) where ``text`` starts to degenerate; for clean text
    ``(count_words(text), len(text))``."""
    matches = list(_TOKEN.finditer(text or ""))
    cut = _cut([m.group().lower() for m in matches])
    return (cut, matches[cut].start()) if cut < len(matches) else (len(matches), len(text or ""))


def _cut(tokens: list[str]) -> int:
    """Index of the first degenerate token (``len(tokens)`` where there is none)."""
    import numpy as np

    n = len(tokens)
    width = min(WINDOW, n)
    if width < 2 * NGRAM:  # too short to tell a loop from a phrase
        return n
    grams = [tuple(tokens[i:i + NGRAM]) for i in range(n - NGRAM + 1)]
    seen: set[tuple[str, ...]] = set()
    repeated = np.zeros(n, bool)  # ends a 4-gram that appeared earlier
    copied = np.zeros(n, bool)  # lies inside such a 4-gram
    for i, gram in enumerate(grams):
        if gram in seen:
            repeated[i + NGRAM - 1] = True
            copied[i:i + NGRAM] = True
        seen.add(gram)
    last: dict[str, int] = {}
    recur = np.zeros(n, bool)
    for i, t in enumerate(tokens):
        recur[i] = i - last.get(t, -RECUR - 1) <= RECUR
        last[t] = i
    sums = np.concatenate([[0], np.cumsum(repeated)])
    bad = (sums[width:] - sums[:-width]) > MAX_REPEATED * width  # one value per window start
    bad |= _distinct(tokens, width) < MIN_DISTINCT * width
    if not bad.any():
        return n
    # Tokens inside a degenerate window; then the first from which most later ones are.
    starts = np.concatenate([[0], np.cumsum(bad)])
    idx = np.arange(n)
    covered = starts[np.minimum(idx + 1, len(bad))] > starts[np.maximum(idx - width + 1, 0)]
    later = np.cumsum(covered[::-1])[::-1] / (n - idx)
    candidates = np.flatnonzero(covered & (later >= STAYS))
    if not len(candidates):
        return n
    cut = _refine(int(candidates[0]), copied | recur, width)
    tail = grams[cut:]
    loops = tail and 1 - len(set(tail)) / len(tail) >= TAIL_REPEATS
    return cut if loops or recur[cut:].mean() >= TAIL_REPEATS else n


def _distinct(tokens: list[str], width: int):
    """Distinct tokens in each window of ``width`` tokens (one value per window start)."""
    import numpy as np

    counts: dict[str, int] = {}
    for t in tokens[:width]:
        counts[t] = counts.get(t, 0) + 1
    out = [len(counts)]
    for i in range(width, len(tokens)):
        counts[tokens[i]] = counts.get(tokens[i], 0) + 1
        old = tokens[i - width]
        counts[old] -= 1
        if not counts[old]:
            del counts[old]
        out.append(len(counts))
    return np.array(out)


def _refine(first: int, repeating, width: int) -> int:
    """From ``first`` (a degenerate window's start, up to a quarter window early) to where the
    repeating starts: the first of ``NGRAM`` tokens in a row that copy an earlier 4-gram or
    recur (salad), so a loop keeps exactly its first copy. Stays within one window."""
    run = 0
    for i in range(first, min(first + width, len(repeating))):
        run = run + 1 if repeating[i] else 0
        if run == NGRAM:
            return i - NGRAM + 1
    return first
