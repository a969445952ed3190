"""Report sections: FINDINGS and IMPRESSION in their real spellings (any case, with or without a
colon, CONCLUSION or SUMMARY for the impression, FINDINGS AND IMPRESSION), and addenda.

``impression`` follows the MIMIC-CXR convention (the official section parser's order): the
impression, else the findings, else the last paragraph. ``findings,impression`` joins both (else
the last paragraph); ``all`` is the whole text. An addendum (an ``ADDENDUM`` header, or the part
after a line of underscores) is appended to whatever was chosen, since it amends the report.
"""

from __future__ import annotations

import re

CHOICES = ("impression", "findings,impression", "all")
_HEADER = re.compile(
    r"(?im)^[ \t]*(?P<name>final report|examination|exam|indications?|history|clinical (?:history|information)|"
    r"reason for (?:exam|examination)|technique|procedure|comparisons?|findings and impressions?|findings|"
    r"impressions?|conclusions?|summary|opinion|recommendations?|notification|wet read|addendum)\b[ \t]*:?")
# A header inside a line, as when a report's sections are joined on one line ("FINDINGS: ... IMPRESSION:
# ..."; OpenI and the CheXpert labeler's CSV): only in capitals, only with its colon, and only at the
# start of a word (checked in _inline: a leading look-behind would make the scan 3x slower).
_INLINE = re.compile(r"(?P<name>FINDINGS AND IMPRESSIONS?|FINDINGS|IMPRESSIONS?|CONCLUSIONS?|SUMMARY|"
                     r"COMPARISONS?|INDICATIONS?|HISTORY|TECHNIQUE|ADDENDUM)[ \t]*:")
_NOT_BEFORE = re.compile(r"[\w/]")
_ADDENDUM_LINE = re.compile(r"(?m)^[ \t]*_{8,}[ \t]*$")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_KIND = {"findings": "findings", "findings and impression": "impression", "findings and impressions": "impression",
         "impression": "impression", "impressions": "impression", "conclusion": "impression",
         "conclusions": "impression", "summary": "impression", "opinion": "impression", "addendum": "addendum"}


def _inline(text: str) -> list[re.Match]:
    """Inline headers that start a word."""
    return [h for h in _INLINE.finditer(text) if not (h.start() and _NOT_BEFORE.match(text, h.start() - 1))]


def split(text: str) -> dict[str, str]:
    """The text of each section kind found (``findings``, ``impression``, ``addendum``, ``other``)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    parts = _ADDENDUM_LINE.split(text) if "________" in text else [text]
    main, addenda = parts[0], [p for p in parts[1:] if p.strip()]
    out: dict[str, list[str]] = {}
    heads = sorted({h.end(): h for h in [*_inline(main), *_HEADER.finditer(main)]}.values(),
                   key=lambda h: h.start())
    if not heads:
        out["other"] = [main]
    else:
        if main[: heads[0].start()].strip():
            out.setdefault("other", []).append(main[: heads[0].start()])
        for h, nxt in zip(heads, heads[1:] + [None]):
            body = main[h.end(): nxt.start() if nxt else len(main)]
            kind = _KIND.get(h["name"].lower(), "other")
            out.setdefault(kind, []).append(body)
    if addenda:
        out.setdefault("addendum", []).extend(addenda)
    return {k: "\n".join(v).strip() for k, v in out.items() if "\n".join(v).strip()}


def last_paragraph(text: str) -> str:
    """The last non-empty paragraph of the report's main part."""
    text = text.replace("\r\n", "\n")
    main = _ADDENDUM_LINE.split(text)[0] if "________" in text else text
    paragraphs = [p.strip() for p in _PARAGRAPH.split(main) if p.strip()]
    return paragraphs[-1] if paragraphs else ""


def select(text: str, sections: str = "impression") -> str:
    """The text to label for a :data:`CHOICES` value (see the module doc)."""
    if sections == "all":
        return text
    if sections not in CHOICES:
        from cxr_tf.core.errors import CxrConfigError
        raise CxrConfigError(f"unknown sections {sections!r}", key="sections", choices=CHOICES)
    found = split(text)
    if sections == "impression":
        chosen = found.get("impression") or found.get("findings")
    else:
        chosen = "\n\n".join(found[k] for k in ("findings", "impression") if k in found)
    if not chosen:      # a structured report without either section: its last paragraph; free text: all
        chosen = last_paragraph(text) if _HEADER.search(text) or _inline(text) else text
    if found.get("addendum"):
        chosen = f"{chosen}\n\n{found['addendum']}"
    return chosen
