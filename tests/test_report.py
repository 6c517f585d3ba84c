"""The report renders data written by strangers (prompts, responses) as inert text."""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from weakalign.analysis.report import md, summary_markdown
from weakalign.records.schema import Pair, WeakLabel

HOSTILE = [
    "<script>alert('x')</script> and <img src=x onerror=alert(1)>",
    "![pixel](https://tracker.example/p.png) [click me](javascript:alert(1)) <https://evil.example>",
    "a | b | c -- breaks the table?",
    "`code` **bold** _em_ ~~gone~~ # heading\n\n- list\n| x |",
    "&lt;already escaped&gt; &amp; back\\slash \\| pipe",
]


def _render(text: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def test_md_text_renders_back_to_itself_and_nothing_else():
    for text in HOSTILE:
        out = _render(md(text, limit=10_000))
        assert not re.search(r"<(script|img|a|code|strong|em|h1|ul|li|table|s|del)\b", out), out
        shown = html.unescape(re.sub(r"</?p>", "", out)).strip()
        assert shown == " ".join(text.split())  # what a reader sees is the original text, on one line


def test_summary_table_survives_hostile_pairs():
    pairs = [Pair(id=f"x{i}", prompt_id=f"x{i}", prompt=t, response_1=t + " one", response_2=t + " two",
                  gold_1=0.1, gold_2=0.2, human=2) for i, t in enumerate(HOSTILE)]
    weak = [WeakLabel(pair_id=p.id, reward_1=1.0, reward_2=0.0, margin=1.0, label=1) for p in pairs]
    feedback = {"n_labeled": 3, "n_unlabeled": 5, "agreement_weak_human": 0.0, "accuracy_human_vs_gold": 1.0,
                "accuracy_weak_vs_gold": 0.0, "gold_backs_weak_when_disagree": 0.0, "n_disagree": 5}
    out = _render(summary_markdown(feedback, {"gold_judge": "vader"}, {}, list(zip(pairs, weak, strict=True))))
    assert "<script" not in out and "<img" not in out and "<a " not in out
    tables = out.split("<table>")[1:]
    rows = tables[-1].split("<tr>")[1:]
    assert len(rows) == 1 + len(HOSTILE)  # header + one row per pair: no row was split or swallowed
    assert all(r.count("<td>") == 5 for r in rows[1:])


AUTOLINKS = ["see www.example.com today", "WWW.EXAMPLE.ORG/x", "go to https://evil.example/p?q=1 now",
             "http://x.org", "ftp://files.example", "write to jane.doe+spam@example.co.uk", "mailto:a@b.com",
             "xmpp:me@chat.example/res", "(www.paren.example)"]


def test_no_autolinks_under_github_flavoured_markdown():
    # CommonMark has no bare-URL autolinks; GitHub's and GitLab's renderer (cmark-gfm) does.
    cmarkgfm = pytest.importorskip("cmarkgfm", reason="cmarkgfm (the test extra) renders GitHub-flavoured Markdown")
    for text in AUTOLINKS + HOSTILE:
        table = f"| a |\n|---|\n| {md(text, limit=10_000)} |\n"
        out = cmarkgfm.github_flavored_markdown_to_html(table)
        assert "<a " not in out and "<img" not in out and "<script" not in out, (text, out)
        cell = out.split("<td>")[1].split("</td>")[0]
        assert html.unescape(re.sub("<!--.*?-->", "", cell)) == " ".join(text.split())  # the text, nothing else


def test_bidirectional_controls_are_written_out():
    out = md("invoice_\u202egpj.exe and \u2066isolate\u2069")
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", out)
    assert "\\[U\\+202E\\]" in out and "\\[U\\+2066\\]" in out


def test_control_characters_are_written_out_not_passed_to_the_reader():
    """ESC (terminal escapes when the report is printed), BEL and NUL from data reached reports/summary.md."""
    out = md("clear\x1b[2Jscreen\x07 and\x00 \x9bmore")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", out)
    assert "\\[U\\+001B\\]" in out and "\\[U\\+0007\\]" in out and "\\[U\\+0000\\]" in out and "\\[U\\+009B\\]" in out


def test_the_summary_report_has_no_autolinks_under_github_flavoured_markdown():
    # The whole report, as the report stage writes it, with pairs whose texts are addresses and bidi tricks.
    cmarkgfm = pytest.importorskip("cmarkgfm", reason="cmarkgfm (the test extra) renders GitHub-flavoured Markdown")
    texts = AUTOLINKS + ["invoice_\u202egpj.exe"]
    pairs = [Pair(id=f"x{i}", prompt_id=f"x{i}", prompt=t, response_1=t + " one", response_2="two " + t,
                  gold_1=0.1, gold_2=0.2, human=2) for i, t in enumerate(texts)]
    weak = [WeakLabel(pair_id=p.id, reward_1=1.0, reward_2=0.0, margin=1.0, label=1) for p in pairs]
    feedback = {"n_labeled": 3, "n_unlabeled": 5, "agreement_weak_human": 0.0, "accuracy_human_vs_gold": 1.0,
                "accuracy_weak_vs_gold": 0.0, "gold_backs_weak_when_disagree": 0.0, "n_disagree": 5}
    report = summary_markdown(feedback, {"gold_judge": "vader"}, {}, list(zip(pairs, weak, strict=True)))
    out = cmarkgfm.github_flavored_markdown_to_html(report)
    assert "<a " not in out and "\u202e" not in out
    assert out.count("[U+202E]") >= 1 and "jane.doe+spam" in out and "evil.example/p" in out  # the texts are there


@pytest.mark.parametrize("agree, disagree, words", [
    (0.60, 0.40, "a smaller gap where they disagree"),
    (0.48, 0.55, "a larger gap where they disagree"),
    (0.50, 0.50, None),
    (None, 0.50, None),
])
def test_the_gold_gap_sentence_reads_its_own_numbers(agree, disagree, words):
    """The comparative word comes from the two numbers it sits beside (both orders), not from a fixed string."""
    from weakalign.analysis.report import _gap_reading

    text = _gap_reading(agree, disagree)
    assert (words in text) if words else text == ""
