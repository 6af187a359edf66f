"""A many-document corpus whose documents look alike: 210 annual and quarterly reports (real PDFs)
of 30 companies over five years. Every filing has a revenue line, an employee count and an
income statement, so only the company, form and period that a question names tell the right
filing from the 209 others. Questions come with the document and pages that answer them.

This is the shape of the 10-K problem (hundreds of filings with the same sections), built here
because no filings can be downloaded on this machine."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))

NAMES = ["Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware", "Proseware", "Adatum", "Woodgrove", "Wingtip",
         "Alpine Ski", "Coho Vineyard", "Lucerne Publishing", "Margie Travel", "Trey Research", "Blue Yonder",
         "Fourth Coffee", "Humongous Insurance", "Wide World Importers", "Graphic Design Institute", "Southridge Video",
         "Relecloud", "VanArsdel", "Bellows College", "Consolidated Messenger", "First Up Consultants", "Lamna Healthcare",
         "Munson Pickles", "Nod Publishers", "Tasmanian Traders", "Woodgrove Bank"]
SUFFIX = ["Inc.", "Holdings Corp.", "Group Inc.", "Corporation", "Ltd."]
INDUSTRY = ["industrial software", "analytics services", "consumer electronics", "logistics services", "medical devices",
            "specialty foods", "travel services", "insurance products", "publishing", "cloud hosting"]
CITIES = ["Springfield, Ohio", "Austin, Texas", "Denver, Colorado", "Raleigh, North Carolina", "Portland, Oregon",
          "Madison, Wisconsin", "Boise, Idaho", "Tampa, Florida"]
YEARS = [2019, 2020, 2021, 2022, 2023]
RISKS = [
    "Our results may fluctuate significantly from quarter to quarter.",
    "We depend on a limited number of suppliers for key components.",
    "Competition in our markets is intense and could reduce our revenue.",
    "Changes in tax laws could adversely affect our financial results.",
    "Cybersecurity incidents could harm our reputation and revenue.",
    "We may not be able to attract and retain key employees.",
    "Our international operations expose us to currency risks.",
    "Economic downturns could reduce demand for our products.",
    "Regulatory changes may increase our costs of compliance.",
    "Our indebtedness could limit our operating flexibility.",
]


def _money(x: float) -> str:
    return f"{x:,.1f}"


def build(out: Path, seed: int = 11, companies: int = len(NAMES)) -> tuple[list[Path], list[dict[str, Any]]]:
    from pdfgen import make_pdf, table_stream

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    facts: list[dict[str, Any]] = []
    for i, name in enumerate(NAMES[:companies]):
        company = f"{name} {SUFFIX[i % len(SUFFIX)]}"
        industry, city = INDUSTRY[i % len(INDUSTRY)], CITIES[i % len(CITIES)]
        revenue = rng.uniform(200, 5000)
        employees = rng.randint(800, 40000)
        slug = name.lower().replace(" ", "-")
        for year in YEARS:
            prev, revenue = revenue, revenue * rng.uniform(0.9, 1.25)
            employees = int(employees * rng.uniform(0.95, 1.15))
            rd, net = revenue * rng.uniform(0.05, 0.2), revenue * rng.uniform(0.02, 0.15)
            prev_net = prev * rng.uniform(0.02, 0.15)
            growth = 100 * (revenue / prev - 1)
            cover = ["UNITED STATES SECURITIES AND EXCHANGE COMMISSION", "Washington, D.C. 20549", "", "FORM 10-K", "",
                     "ANNUAL REPORT PURSUANT TO SECTION 13 OR 15(d) OF THE SECURITIES EXCHANGE ACT OF 1934",
                     f"For the fiscal year ended December 31, {year}", f"Commission File Number 001-{30000 + i * 7}", "",
                     company, "(Exact name of registrant as specified in its charter)", "Delaware",
                     f"100 Main Street, {city}", ""]
            business = ["Item 1. Business", "",
                        f"{company} designs, builds and sells {industry} to customers in North America and Europe.",
                        f"Employees. As of December 31, {year}, we had {employees:,} full-time employees.",
                        f"Our headquarters are located in {city}.", ""]
            risks = ["Item 1A. Risk Factors", ""] + rng.sample(RISKS, 8)
            mdna = ["Item 7. Management's Discussion and Analysis of Financial Condition and Results of Operations", "",
                    f"Total revenue {'increased' if growth >= 0 else 'decreased'} {abs(growth):.1f}% to ${_money(revenue)} million "
                    f"in fiscal {year}, compared with ${_money(prev)} million in fiscal {year - 1}.",
                    f"Research and development expenses were ${_money(rd)} million.",
                    f"Net income was ${_money(net)} million.", ""]
            table = table_stream("Item 8. Consolidated Statements of Operations (in millions)", [
                ["", str(year), str(year - 1)],
                ["Total revenue", _money(revenue), _money(prev)],
                ["Cost of revenue", _money(revenue * 0.55), _money(prev * 0.56)],
                ["Research and development", _money(rd), _money(prev * 0.1)],
                ["Selling, general and administrative", _money(revenue * 0.12), _money(prev * 0.12)],
                ["Net income", _money(net), _money(prev_net)],
            ], [72, 330, 450])
            controls = ["Item 9A. Controls and Procedures", "",
                        "Management evaluated the effectiveness of our disclosure controls and procedures.",
                        "Based on this evaluation, they concluded that our controls were effective."]
            path = out / f"{slug}-10k-{year}.pdf"
            make_pdf(path, [cover, business, risks, mdna, table, controls],
                     outline=[("Item 1. Business", 2), ("Item 1A. Risk Factors", 3),
                              ("Item 7. Management's Discussion and Analysis of Financial Condition and Results of Operations", 4),
                              ("Item 8. Consolidated Statements of Operations (in millions)", 5),
                              ("Item 9A. Controls and Procedures", 6)])
            files.append(path)
            doc = path.name
            facts += [
                {"q": f"What was {company}'s total revenue in fiscal {year}?", "doc": doc, "pages": [4, 5],
                 "answer": _money(revenue)},
                {"q": f"How many full-time employees did {name} have at the end of {year}?", "doc": doc, "pages": [2],
                 "answer": f"{employees:,}"},
                {"q": f"{name} {year} annual report: net income", "doc": doc, "pages": [4, 5], "answer": _money(net)},
                {"q": f"How much did {company} spend on research and development in {year}?", "doc": doc, "pages": [4, 5],
                 "answer": _money(rd)},
            ]
        for quarter, ended in ((1, "March 31"), (2, "June 30")):
            q_revenue = revenue * rng.uniform(0.22, 0.3)
            cover = ["UNITED STATES SECURITIES AND EXCHANGE COMMISSION", "Washington, D.C. 20549", "", "FORM 10-Q", "",
                     "QUARTERLY REPORT PURSUANT TO SECTION 13 OR 15(d) OF THE SECURITIES EXCHANGE ACT OF 1934",
                     f"For the quarterly period ended {ended}, 2024", "", company,
                     "(Exact name of registrant as specified in its charter)", ""]
            body = ["Item 2. Management's Discussion and Analysis", "",
                    f"Revenue for the quarter was ${_money(q_revenue)} million.",
                    f"Net income for the quarter was ${_money(q_revenue * 0.08)} million.", ""]
            path = out / f"{slug}-10q-2024-q{quarter}.pdf"
            make_pdf(path, [cover, body, rng.sample(RISKS, 6)])
            files.append(path)
            facts.append({"q": f"What was {name}'s revenue for the quarter ended {ended}, 2024?", "doc": path.name,
                          "pages": [2], "answer": _money(q_revenue)})
    rng.shuffle(facts)
    return files, facts[:120]


def measure(ws: Path, questions: list[dict[str, Any]], doc_aware: bool) -> tuple[float, float]:
    """(recall@5 over the whole corpus, recall@5 inside the right filing)."""
    from rlmcli.workspace import query
    from rlmcli.workspace.reader import WorkspaceReader

    saved = query.DOC_BOOST, query.NAMED_DOCS
    if not doc_aware:
        query.DOC_BOOST, query.NAMED_DOCS = 0.0, 0
    try:
        reader = WorkspaceReader(ws)
        searcher = query.Searcher(reader)
        everywhere = inside = 0
        for item in questions:
            doc = reader.resolve(item["doc"])
            gold = {(doc, p) for p in item["pages"]}
            everywhere += any((p.doc, p.page) in gold for p in searcher.search(item["q"], k=5))
            inside += any((p.doc, p.page) in gold for p in searcher.search(item["q"], k=5, doc=doc))
        searcher.close()
    finally:
        query.DOC_BOOST, query.NAMED_DOCS = saved
    n = len(questions)
    return everywhere / n, inside / n


if __name__ == "__main__":
    import tempfile

    from rlmcli.workspace.ingest import ingest

    tmp = Path(tempfile.mkdtemp())
    files, questions = build(tmp / "filings")
    ingest([str(f) for f in files], tmp / "ws")
    print(json.dumps({"today": measure(tmp / "ws", questions, False), "doc-aware": measure(tmp / "ws", questions, True)}))
