"""Search that knows documents: cards (title, company, form, fiscal year), ranking that blends
passage relevance with how the query names a document, --doc globs, docs(query), the tiered
ranking of big indexes, and indexes made before any of it."""

from __future__ import annotations

import itertools
import json
import sqlite3
import sys
from pathlib import Path

import pytest

from rlmcli.workspace import query
from rlmcli.workspace.cards import make_card
from rlmcli.workspace.ingest import ingest
from rlmcli.workspace.query import Searcher
from rlmcli.workspace.reader import WorkspaceReader
from rlmcli.workspace.store import Workspace
from tests.conftest import CORPUS, FIXTURES, ROOT, corpus_file, run_rlm

sys.path.insert(0, str(ROOT / "bench"))
import filings

COVER = """UNITED STATES SECURITIES AND EXCHANGE COMMISSION
Washington, D.C. 20549
FORM 10-K
ANNUAL REPORT PURSUANT TO SECTION 13 OR 15(d) OF THE SECURITIES EXCHANGE ACT OF 1934
For the fiscal year ended September 28, 2024
Commission File Number 001-36743
Apple Inc.
(Exact name of Registrant as specified in its charter)
California"""


def test_a_filings_cover_gives_company_form_and_period() -> None:
    card = make_card("aapl-10k.pdf", {}, [], [COVER])
    assert card == {"title": "Apple Inc — Form 10-K, fiscal 2024", "form": "10-K", "company": "Apple Inc",
                    "aliases": "aapl", "period_end": "September 28, 2024", "fiscal_year": "2024", "version": "2"}
    quarterly = COVER.replace("FORM 10-K", "FORM 10-Q").replace("fiscal year ended September 28, 2024",
                                                                 "quarterly period ended March 30, 2024")
    # the quarter counts from the fiscal year's start, which the notes state
    q = make_card("q.pdf", {}, [], [quarterly + "\nour fiscal year ended September 30, 2023"])
    assert (q["form"], q["period_end"], q["fiscal_year"], q["quarter"]) == ("10-Q", "March 30, 2024", "2024", "Q2")
    nine = make_card("q.pdf", {}, [], [quarterly.replace("March 30", "June 29") + "\nthe nine months ended June 29, 2024"])
    assert (nine["fiscal_year"], nine["quarter"]) == ("2024", "Q3")
    assert make_card("r.pdf", {"title": "Unused"}, [(1, 3, "Preface")], ["R Internals\nVersion 4.2.2\n\n1 R Internal Structures"])["title"] == "R Internals — Version 4.2.2"
    assert make_card("mpl", {}, [], ["Mozilla Public License Version 2.0\n=====\n\n1. Definitions"])["title"] == "Mozilla Public License Version 2.0"


@pytest.fixture(scope="module")
def filings_ws(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]]]:
    tmp = tmp_path_factory.mktemp("filings")
    files, questions = filings.build(tmp / "pdf", companies=8)
    ingest([str(f) for f in files], tmp / "ws")
    return tmp / "ws", questions


def test_a_question_naming_a_company_and_year_finds_that_filing_among_lookalikes(filings_ws: tuple[Path, list]) -> None:
    ws, questions = filings_ws
    assert len(WorkspaceReader(ws).documents) == 56
    aware, blind = filings.measure(ws, questions, True), filings.measure(ws, questions, False)
    assert aware[1] == blind[1] == 1.0  # inside the right filing both find the page
    assert aware[0] >= 0.8 and aware[0] >= 2.5 * blind[0], (aware, blind)
    searcher = Searcher(WorkspaceReader(ws))
    top = searcher.search("What was Fabrikam Group Inc.'s total revenue in fiscal 2021?", k=3)
    assert (top[0].doc, top[0].page) in {("fabrikam-10k-2021.pdf", 4), ("fabrikam-10k-2021.pdf", 5)}
    docs = searcher.docs("Fabrikam 2021 annual report", k=3)
    assert docs[0].doc == "fabrikam-10k-2021.pdf" and docs[0].title == "Fabrikam Group Inc — Form 10-K, fiscal 2021"
    assert docs[0].score > docs[1].score


def test_a_title_named_in_the_query_ranks_its_document_first_every_time(tmp_path: Path) -> None:
    names = ["R-ints.pdf", "R-FAQ.pdf", "R-data.pdf", "R-exts.pdf", "R-intro.pdf", "R-admin.pdf", "R-lang.pdf",
             "Apache-2.0", "GPL-3", "LGPL-2.1", "MPL-2.0"]
    files = [str(corpus_file(n)) for n in names]
    ws, _ = ingest(files, tmp_path / "ws")
    titles = {"r-ints.pdf": "R Internals", "r-faq.pdf": "R FAQ", "r-data.pdf": "R Data Import/Export",
              "r-exts.pdf": "Writing R Extensions", "r-intro.pdf": "An Introduction to R",
              "r-admin.pdf": "R Installation and Administration", "r-lang.pdf": "R Language Definition",
              "apache-2.0": "Apache License", "gpl-3": "GNU General Public License version 3",
              "lgpl-2.1": "GNU Lesser General Public License", "mpl-2.0": "Mozilla Public License"}
    topics = ["how is memory allocated", "what are the conditions for distributing copies", "installing packages",
              "environment variables", "is there any warranty", "how are function arguments matched",
              "reading data from a file", "what happens on termination"]
    searcher = Searcher(ws.reader)
    missed = [(t, topic, searcher.search(f"{t}: {topic}", k=1)[0].doc) for (doc, t), topic in itertools.product(titles.items(), topics)
              if searcher.search(f"{t}: {topic}", k=1)[0].doc != doc]
    assert missed == []


def test_doc_globs_and_rank_documents_from_the_cli(filings_ws: tuple[Path, list]) -> None:
    ws, _ = filings_ws
    out = json.loads(run_rlm("search", "net income", "-w", str(ws), "--doc", "contoso-*2023*", "--json").stdout)
    assert out["passages"] and {p["doc"] for p in out["passages"]} == {"contoso-10k-2023.pdf"}
    two = json.loads(run_rlm("search", "revenue", "-w", str(ws), "--doc", "*10q*q1*", "--doc", "fabrikam-10k-2020.pdf",
                             "--json", "-k", "50").stdout)
    assert {p["doc"] for p in two["passages"]} == {f"{n}-10q-2024-q1.pdf" for n in ("northwind", "contoso", "fabrikam",
                                                    "tailspin", "litware", "proseware", "adatum", "woodgrove")} | {"fabrikam-10k-2020.pdf"}
    ranked = json.loads(run_rlm("search", "Tailspin quarterly report March 2024", "-w", str(ws), "--docs", "--json").stdout)
    assert ranked["schema"] == "rlm.doclist/1" and ranked["documents"][0]["doc"] == "tailspin-10q-2024-q1.pdf"
    bad = run_rlm("search", "x", "-w", str(ws), "--doc", "nothing-*")
    assert bad.returncode == 1 and b"no document matches 'nothing-*'" in bad.stderr


def test_tiered_ranking_gives_the_full_rankings_top_passages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a big index, rows with every term and with all but one are ranked first (their BM25 is
    the OR query's): the top rows match the full OR ranking's."""
    files = [str(FIXTURES / "contract.pdf"), str(FIXTURES / "contract.docx")]
    queries = ["termination notice days", "insolvency receiver", "payment invoice interest"]
    if (CORPUS / "R-intro.pdf").exists():  # more rows and more varied queries where the manuals are here
        files += [str(CORPUS / "R-intro.pdf"), str(CORPUS / "R-FAQ.pdf")]
        queries += ["generalized linear model binomial", "read csv file header", "plot histogram residuals",
                    "convert factor numeric"]
    ws, _ = ingest(files, tmp_path / "ws")
    searcher = Searcher(ws.reader)
    full = {q: [r[0] for r in searcher._ranked(query.fts_query(q), 10, None, None)] for q in queries}
    monkeypatch.setattr(query, "TIERED_ABOVE", 0)  # every query takes the tiered path
    for q in queries:
        tiered = [r[0] for r in searcher._ranked(query.fts_query(q), 10, None, None)]
        assert full[q] and tiered[:5] == full[q][:5], q


def test_cards_made_by_an_older_card_reader_are_made_again_at_the_next_write(tmp_path: Path) -> None:
    from rlmcli.workspace.cards import CARD_VERSION

    ws, _ = ingest([str(FIXTURES / "contract.pdf"), str(FIXTURES / "notes.md")], tmp_path / "ws")
    with sqlite3.connect(ws.index_path) as conn:  # as an older card reader left them: stale, and one missing
        conn.execute("UPDATE cards SET version = ?, card = '{}' WHERE doc = 'contract.pdf'", (CARD_VERSION - 1,))
        conn.execute("DELETE FROM doc_cards WHERE doc = 'contract.pdf'")
        conn.execute("DELETE FROM cards WHERE doc = 'notes.md'")
    assert Searcher(ws.reader).named("Master Services Agreement") == {}
    with Workspace.open(ws.root).writer():
        pass  # any write makes them again, from the first pages
    new = Searcher(Workspace.open(ws.root).reader)
    assert new.named("Master Services Agreement")["contract.pdf"] == 1.0
    with sqlite3.connect(ws.index_path) as conn:
        assert dict(conn.execute("SELECT doc, version FROM cards")) == {"contract.pdf": CARD_VERSION,
                                                                        "notes.md": CARD_VERSION}
