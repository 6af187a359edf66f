"""A document's card: what names it. For filings that is the company, the form and the fiscal
period, read from what a filing says about itself: the SEC cover page ("Exact name of registrant
as specified in its charter", "For the fiscal year ended", "For the quarterly period ended",
"Date of Report"), a press release's headline and dateline ("Intel Reports Fourth-Quarter and
Full-Year 2022 Financial Results", "Johnson & Johnson (NYSE: JNJ)"), and the file name's words
when the text says nothing (`NETFLIX_2022_10K.pdf`). Other documents get a title from their
cover lines. Search ranks documents by their cards (query.py), so a question that names a
filing ("3M's 2018 10-K", "Amcor Q2 2023 10-Q") finds its passages there.

Standard library only: the sandbox imports the search that reads these.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

FIRST_CHARS = 30_000  # the cover and the first pages: where filings say who, what and when
CARD_VERSION = 2  # cards made by an older version are made again from the pages

_MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_MONTH = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|" \
         r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
_DATE = rf"({_MONTH}\s+\d{{1,2}}\s*,?\s*(?:19|20)\d\d)"
_YEAR = r"((?:19|20)\d\d)"

_SEC_FORM = re.compile(r"\bFORM\s+(10-K|10-Q|8-K|20-F|40-F|6-K|11-K|10-KT|10-QT|S-1|S-4|DEF\s*14A)\b", re.I)
_REGISTRANT = re.compile(r"^([^\n]{2,160}?)[ \t]*\n[ \t(]*exact name of (?:the )?registrant as specified in its charter", re.I | re.M)
_FILE_NUMBER_THEN_NAME = re.compile(r"commission file (?:number|no\.?)[^\n]*\n([^\n]{2,80})\n", re.I)
_FISCAL_YEAR_ENDED = re.compile(rf"fiscal\s+year\s+ended:?\s+{_DATE}", re.I)
_QUARTER_ENDED = re.compile(rf"quarterly\s+period\s+ended:?\s+{_DATE}", re.I)
_FISCAL_YEAR_END = re.compile(rf"fiscal\s+year\s+(?:end(?:s|ed|ing)?|to\s+end)\s+(?:on\s+)?{_DATE}", re.I)
_REPORT_DATE = re.compile(rf"date\s+of\s+report[^:\n]{{0,60}}:?\s*{_DATE}", re.I)
_MONTHS_ENDED = re.compile(r"\b(three|six|nine|twelve|13|26|39|twenty-six|thirty-nine)\s+(?:months|weeks)\s+ended", re.I)
_RELEASE = re.compile(r"\b(?:news|press|earnings)\s+release\b|\bfor\s+immediate\s+release\b", re.I)
_RESULTS = re.compile(r"\b(?:reports?|reported|announce[sd]?)\b[^.\n]{0,120}\bresults\b", re.I)
_ORDINAL = {"first": "Q1", "1st": "Q1", "second": "Q2", "2nd": "Q2", "third": "Q3", "3rd": "Q3",
            "fourth": "Q4", "4th": "Q4"}
_QUARTER_WORDS = re.compile(
    rf"(?:\b{_YEAR}\s+)?\b(first|second|third|fourth|1st|2nd|3rd|4th)[\s-]+quarter\b(?:[^.\n]{{0,50}}?\b{_YEAR}\b)?"
    rf"|\bQ([1-4])\s*(?:fiscal\s*(?:year\s*)?)?'?{_YEAR}?\b|\b{_YEAR}\s*Q([1-4])\b", re.I)
_ANNUAL_REPORT = re.compile(rf"(?:{_YEAR}\s+annual\s+report|annual\s+report\s+{_YEAR})", re.I)
_TICKER = re.compile(r"\((?:NYSE|NASDAQ|Nasdaq)(?:\s*[A-Z]{1,2})?\s*:\s*([A-Z]{1,5}(?:\.[A-Z])?)\s*\)")
_LISTED_AS = re.compile(r"([A-Z][\w&.,'’ -]{1,60}?)\s*(?:\([“\"][^)]{0,40}\)\s*)?\((?:NYSE|NASDAQ|Nasdaq)(?:\s*[A-Z]{1,2})?\s*:")
_TODAY = re.compile(r"\b([A-Z][\w&.'’-]*(?:\s+[A-Z&][\w&.'’-]*){0,4})\s+today\s+(?:reported|announced)\b")
_SUFFIX = r"(?:Inc\.?|Incorporated|Corporation|Corp\.?|Company|plc|PLC|N\.V\.|S\.A\.|Ltd\.?|Limited|LLC|L\.P\.|AG|SE)"
_CORPORATE = re.compile(
    rf"\b((?:The\s+)?(?:[A-Z0-9][\w&'’.-]*\s+){{0,3}}[A-Z0-9][\w&'’.-]*),?\s+{_SUFFIX}(?![\w])")
_LEGAL_WORDS = frozenset("the inc incorporated corporation corp company co plc nv sa ltd limited llc lp ag se "
                         "holdings group".split())
_NOT_NAMES = frozenset("the company our company this company such company each company a company".split("  "))


def make_card(name: str, metadata: dict[str, Any], outline: Iterable[tuple[int, int, str]],
              first_pages: Iterable[str]) -> dict[str, str]:
    """Fields that name the document; only those found. Values are strings; `aliases` holds
    other names separated by '; ' (a ticker, a short name from the file name)."""
    text = ""
    for page in first_pages:
        text += page + "\n"
        if len(text) >= FIRST_CHARS:
            break
    text = text[:FIRST_CHARS]
    card: dict[str, str] = {}
    head = text[:6000]
    sec = _SEC_FORM.search(head)
    release = _RELEASE.search(text[:2500]) is not None and _RESULTS.search(text[:4000]) is not None
    annual = _ANNUAL_REPORT.search(text[:600])
    if annual and (sec is None or annual.start() < sec.start()):  # a report around its 10-K
        card["form"] = "annual report"
    elif sec is not None and (not release or sec.start() < 1500):
        card["form"] = " ".join(sec.group(1).upper().split())
    elif release:
        card["form"] = "earnings release"
    if company := _company(text):
        card["company"] = company
    _period(card, text, annual)
    if tickers := list(dict.fromkeys(_TICKER.findall(text)))[:2]:
        card["ticker"] = " ".join(tickers)
    _from_file_name(card, name)
    if card.get("form") and (alias := _file_company(name, card.get("company", ""))):
        card["aliases"] = alias  # a filing's file name often says its company: FOOTLOCKER_2023Q3_10Q
    card["title"] = _title(card, text, metadata, list(outline))
    card["version"] = str(CARD_VERSION)
    return {k: v for k, v in card.items() if v}


# ---- who ----------------------------------------------------------------------------------------

def _clean_name(raw: str) -> str:
    name = " ".join(raw.replace("_", " ").split()).strip(" .,:;|-—*")
    name = re.sub(r"^(?:\(?mark one\)?|☒|☐|ý|¨)\s*", "", name, flags=re.I)
    return name.rstrip(",")


def _plausible(name: str) -> bool:
    lowered = name.lower()
    return (2 <= len(name) <= 90 and any(c.isalpha() for c in name) and not name.startswith("(")
            and not lowered.startswith(("commission", "form ", "for the", "securities", "united states",
                                        "state of", "washington", "table of contents", "delaware"))
            and lowered not in _NOT_NAMES and len(name.split()) <= 10)


def _company(text: str) -> str:
    """The registrant's exact name from the cover; else the name a press release gives with its
    ticker or 'today reported'; else the corporate name the first pages use most."""
    head = text[:8000]
    if (found := _REGISTRANT.search(head)) and _plausible(name := _clean_name(found.group(1))):
        return name
    if (found := _FILE_NUMBER_THEN_NAME.search(head)) and _plausible(name := _clean_name(found.group(1))) \
            and re.search(rf"{_SUFFIX}\W*$|^[A-Z0-9&.,' -]+$", name):
        return name  # 3M's cover: "Commission file number 1-3285" then "3M COMPANY"
    for pattern in (_LISTED_AS, _TODAY):
        if (found := pattern.search(text[:4000])) and _plausible(name := _clean_name(found.group(1))):
            return re.sub(r"^(?:.*\s)?(?:--|–|—)\s*", "", name)  # "SANTA CLARA, Calif., Jan. 26, 2023 -- Intel"
    counts = Counter(_clean_name(m.group(0)) for m in _CORPORATE.finditer(text))
    for name, _ in counts.most_common(5):
        words = _name_words(name)
        if words and _plausible(name) and not name.lower().startswith(("the company", "our company")):
            return name
    return ""


_FILE_STOP = re.compile(r"(?:19|20)\d\d.*|10-?[kq]|8-?k|20-?f|q[1-4]|dated|earnings|annual.*|quarterly|report|\d+", re.I)


def _file_company(file_name: str, company: str) -> str:
    """The company a file name gives before its year or form: `FOOTLOCKER_2023Q3_10Q` -> FOOTLOCKER."""
    words = []
    for word in re.split(r"[_\s.-]+", _stem(file_name)):
        if _FILE_STOP.fullmatch(word):
            break
        words.append(word)
    short = " ".join(words)
    return short if short and short.lower() != company.lower() and len(short) <= 40 else ""


@functools.lru_cache(maxsize=1 << 16)
def _name_words(name: str) -> frozenset[str]:
    """A name's words without legal ones; cached: every search weighs every card's names."""
    return frozenset(w for w in re.findall(r"[^\W_]+", name.lower()) if w not in _LEGAL_WORDS)


# ---- when ---------------------------------------------------------------------------------------

def _date(text: str) -> datetime.date | None:
    match = re.match(r"([A-Za-z]+)\.?\s+(\d{1,2})\s*,?\s*(\d{4})", text.strip())
    if not match:
        return None
    month = _MONTHS.get(match.group(1)[:3].lower())
    try:
        return datetime.date(int(match.group(3)), month, int(match.group(2))) if month else None
    except ValueError:
        return None


def _period(card: dict[str, str], text: str, annual: re.Match[str] | None) -> None:
    """fiscal_year, quarter and period_end (or the 8-K's report date). A fiscal year is named by
    the calendar year it ends in; a quarter counts from the fiscal year's start."""
    form = card.get("form", "")
    if form in ("10-Q", "10-QT") and (found := _QUARTER_ENDED.search(text)):
        card["period_end"] = _tidy_date(found.group(1))
        end = _date(found.group(1))
        if end is None:
            return
        year_end = _fiscal_year_end(text, end)
        if year_end is not None:
            months = (year_end.year - end.year) * 12 + year_end.month - end.month
            card["quarter"] = f"Q{min(4, max(1, 4 - round(months / 3)))}"
        elif quarter := _quarter_from_months(text):  # "thirty-nine weeks ended": the third quarter
            card["quarter"] = quarter
            later = end.month + 3 * (4 - int(quarter[1]))
            year_end = datetime.date(end.year + (later - 1) // 12, (later - 1) % 12 + 1, 1)
        card["fiscal_year"] = str(year_end.year if year_end is not None else end.year)
        return
    if form == "8-K" and (found := _REPORT_DATE.search(text)):
        card["report_date"] = _tidy_date(found.group(1))
        card["fiscal_year"] = card["report_date"][-4:]
        return
    if form == "earnings release":
        for found in _QUARTER_WORDS.finditer(text[:3000]):
            year = found.group(1) or found.group(3) or found.group(5) or found.group(6)
            quarter = _ORDINAL.get((found.group(2) or "").lower()) or (f"Q{found.group(4) or found.group(7)}")
            if quarter != "QNone":
                card["quarter"] = quarter
                if year:
                    card["fiscal_year"] = year
                    break
        return
    if found := _FISCAL_YEAR_ENDED.search(text):
        card["period_end"] = _tidy_date(found.group(1))
        card["fiscal_year"] = card["period_end"][-4:]
    elif annual is not None:
        card["fiscal_year"] = annual.group(1) or annual.group(2)


def _tidy_date(raw: str) -> str:
    parsed = _date(raw)
    return f"{parsed:%B} {parsed.day}, {parsed.year}" if parsed else " ".join(raw.split())


def _fiscal_year_end(text: str, period_end: datetime.date) -> datetime.date | None:
    """The end of the fiscal year a quarter belongs to: the first day after the quarter's end
    that falls on a fiscal year end the text states ("fiscal year ended June 30, 2022" says
    every fiscal year ends on June 30)."""
    ends = {(d.month, d.day) for m in _FISCAL_YEAR_END.finditer(text) if (d := _date(m.group(1))) is not None}
    candidates = []
    for month, day in ends:
        for year in (period_end.year, period_end.year + 1):
            try:
                date = datetime.date(year, month, day)
            except ValueError:
                continue
            if period_end < date <= period_end + datetime.timedelta(days=371):
                candidates.append(date)
    return min(candidates, default=None)


def _quarter_from_months(text: str) -> str:
    found = {m.group(1).lower() for m in _MONTHS_ENDED.finditer(text[:FIRST_CHARS])}
    if found & {"nine", "39", "thirty-nine"}:
        return "Q3"
    if found & {"six", "26", "twenty-six"}:
        return "Q2"
    if found & {"three", "13"}:
        return "Q1"
    return ""


# ---- the file name, when the text is silent ----------------------------------------------------------

_FILE_FORMS = (("10k", "10-K"), ("10q", "10-Q"), ("8k", "8-K"), ("earnings", "earnings release"),
               ("annualreport", "annual report"), ("pressrelease", "earnings release"))


def _stem(file_name: str) -> str:
    base = re.split(r"[/\\]", file_name)[-1]
    return re.sub(r"\.[A-Za-z0-9]{1,5}$", "", base)


def _from_file_name(card: dict[str, str], file_name: str) -> None:
    """`NETFLIX_2022_10K.pdf`, `AMCOR_2023Q2_10Q`: a form, year and quarter for the fields the
    text left empty."""
    stem = _stem(file_name)
    squashed = re.sub(r"[\W_]+", "", stem.lower())
    if not card.get("form"):
        for word, form in _FILE_FORMS:
            if word in squashed:
                card["form"] = form
                break
    if not card.get("fiscal_year") and (year := re.search(r"(?<!\d)((?:19|20)\d\d)(?!\d)", stem)):
        card["fiscal_year"] = year.group(1)
    if not card.get("quarter") and (quarter := re.search(r"(?:(?<=\d)|(?<![A-Za-z]))Q([1-4])(?!\d)", stem, re.I)):
        card["quarter"] = f"Q{quarter.group(1)}"


# ---- the title --------------------------------------------------------------------------------------

def _title(card: dict[str, str], text: str, metadata: dict[str, Any], outline: list[tuple[int, int, str]]) -> str:
    if card.get("company") and card.get("form"):
        when = " ".join(x for x in (card.get("quarter"), f"fiscal {card['fiscal_year']}" if card.get("fiscal_year") else "")
                        if x)
        return f"{card['company']} — {_form_label(card['form'])}" + (f", {when}" if when else "")
    # A cover's first lines name the document ("R Internals / Version 4.2.2"); a PDF's metadata
    # title is often empty or a tool's default; the outline's first entry is often "Preface".
    title = _cover(text) or str(metadata.get("title") or "").strip() or (outline[0][2] if outline else "")
    return " ".join(title.split())[:200]


def _form_label(form: str) -> str:
    return f"Form {form}" if form[:1].isdigit() or form.startswith(("S-", "DEF")) else form


def _cover(text: str) -> str:
    """The first line with letters, and the next one too when both are short (a title and its
    subtitle or version)."""
    lines = [ln.strip(" #*=-_\t") for ln in text.split("\n")[:40]]
    lines = [ln for ln in lines if len(ln) >= 3 and sum(c.isalpha() for c in ln) >= 3]
    if not lines:
        return ""
    if len(lines) > 1 and len(lines[0]) <= 60 and len(lines[1]) <= 60 and not re.match(r"\d+(\.\d+)*\.?\s", lines[1]):
        return f"{lines[0]} — {lines[1]}"
    return lines[0][:200]


# ---- what the index holds ---------------------------------------------------------------------------

def card_text(card: dict[str, str]) -> str:
    """The card as words for the documents index: 'fiscal 2023 FY2023' lets either phrasing match."""
    parts = [card.get("company", ""), card.get("aliases", "").replace(";", " "), card.get("ticker", ""), card.get("form", ""),
             card.get("quarter", ""), card.get("period_end", ""), card.get("report_date", "")]
    if year := card.get("fiscal_year"):
        parts += [f"fiscal {year}", f"FY{year}"]
    parts += FORM_WORDS.get(card.get("form", ""), ())
    return " ".join(p for p in parts if p)


# What a question may call each form besides its name.
FORM_WORDS: dict[str, tuple[str, ...]] = {
    "10-K": ("annual report", "10K"),
    "annual report": ("10-K", "10K"),
    "10-Q": ("quarterly report", "10Q"),
    "8-K": ("current report", "8K"),
    "earnings release": ("press release", "news release", "earnings", "results"),
}


def name_words(doc: str, name: str) -> str:
    """The file name as words, letters apart from figures: 'AMCOR_2023Q2_10Q.pdf' ->
    'amcor 2023 q2 10 q pdf'."""
    words = re.findall(r"[^\W\d_]+|\d+", f"{doc} {name}".lower())
    return " ".join(dict.fromkeys(words))


# ---- how a query names a card ----------------------------------------------------------------------

_QUERY_FORMS = (
    (re.compile(r"\b10-?\s?k\b|\bannual\s+report", re.I), {"10-K", "annual report"}),
    (re.compile(r"\b10-?\s?q\b|\bquarterly\s+report", re.I), {"10-Q"}),
    (re.compile(r"\b8-?\s?k\b|\bcurrent\s+report", re.I), {"8-K"}),
    (re.compile(r"\b(?:earnings|press|news)\s+release|\bearnings\b", re.I), {"earnings release"}),
)
_QUERY_QUARTER = re.compile(r"\bQ([1-4])\b|\b([1-4])Q\b|(?<=\d)Q([1-4])\b|\b(first|second|third|fourth|1st|2nd|3rd|4th)[\s-]+quarter", re.I)
_QUERY_YEAR = re.compile(r"(?<![\d-])((?:19|20)\d\d)(?![\d-])|\bFY\s?'?(\d\d)\b", re.I)
_QUERY_SKIP = frozenset("a an and are as at be by can could did do does for from had has have how i if in into is it its "
                        "may might of on or our shall should so than that the their them then there these they this those "
                        "to was we were what when where which who whom why will with would you your fiscal year quarter "
                        "report form annual quarterly current earnings release press news results filing filings".split())


class Asked:
    """What a query says about the document it wants: company words, years, forms, a quarter."""

    def __init__(self, query: str) -> None:
        self.years = {m.group(1) or f"20{m.group(2)}" for m in _QUERY_YEAR.finditer(query)}
        self.forms: set[str] = set()
        for pattern, forms in _QUERY_FORMS:
            if pattern.search(query):
                self.forms |= forms
        quarters = {_ORDINAL.get((m.group(4) or "").lower()) or f"Q{m.group(1) or m.group(2) or m.group(3)}"
                    for m in _QUERY_QUARTER.finditer(query)}
        self.quarter = quarters.pop() if len(quarters) == 1 else ""
        self.dates = {_tidy_date(m.group(1)) for m in re.finditer(_DATE, query, re.I)}  # "the quarter ended June 30, 2024"
        self.words = {w for w in re.findall(r"[^\W_]+", query.lower().replace("'s", " "))
                      if w not in _QUERY_SKIP and not w.isdigit()}
        self.squashed = re.sub(r"[\W_]+", "", query.lower())
        self.tokens = set(re.findall(r"[A-Z][A-Z.]{0,5}", query))  # tickers count in capitals only: COST, KO


def naming_weight(card: dict[str, str], asked: Asked) -> tuple[float, bool]:
    """How strongly a query names a document by its card, in [0, 1], and whether it names its
    company. The company must be named for a strong weight; a year, form or quarter the query
    names and the card lacks or contradicts weakens it."""
    company = _company_named(card, asked) if card.get("company") or card.get("form") else 0.0
    checks = []
    if asked.years:
        checks.append(1.0 if card.get("fiscal_year", "") in asked.years else 0.0)
    if asked.forms:
        form = card.get("form", "")
        checks.append(1.0 if form in asked.forms else 0.0)
    if asked.quarter:
        checks.append(1.0 if card.get("quarter") == asked.quarter else 0.0)
    if asked.dates and (card.get("period_end") or card.get("report_date")):
        checks.append(1.0 if {card.get("period_end"), card.get("report_date")} & asked.dates else 0.0)
    fit = sum(checks) / len(checks) if checks else 1.0
    if company > 0:
        return company * (0.4 + 0.6 * fit), True
    if checks and fit == 1.0 and (card.get("form") or card.get("fiscal_year")):
        return 0.2, False  # "the 2018 10-K": every such filing, weakly (unless a company is named)
    return 0.0, False


def _company_named(card: dict[str, str], asked: Asked) -> float:
    """The share of the company's name (or of a shorter name it goes by) the query holds."""
    if set(card.get("ticker", "").split()) & asked.tokens:
        return 1.0
    best = 0.0
    for name in [card.get("company", "")] + [a for a in card.get("aliases", "").split("; ") if a]:
        words = _name_words(name)
        if not words:
            continue
        squashed = re.sub(r"[\W_]+", "", name.lower())
        if words <= asked.words or (len(squashed) > 3 and squashed in asked.squashed):
            return 1.0
        best = max(best, len(words & asked.words) / len(words))
    return best
