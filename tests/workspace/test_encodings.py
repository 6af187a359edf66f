"""Legacy encodings from real bytes: each file is text encoded by Python's own codec, ingested by
`rlm ingest` (or extracted), and must read back exactly, with a warning naming the codec chosen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlmcli.workspace.extract.csvfile import extract as extract_csv
from rlmcli.workspace.extract.text import STREAM_BYTES, extract_text
from tests.conftest import run_rlm

FRENCH = ("Contrat de prestation. La société Café Crème SARL livre à réception de la commande ; il ne faut pas "
          "être naïf : où que l'on soit, le préavis est de trois mois.\nFait à Genève, le 3 février 2024.\n") * 4
CZECH_POLISH = ("Smlouva o dílo: zhotovitel provede dílo řádně a včas, cena činí 5 000 Kč.\n"
                "Umowa zawarta w Łodzi; płatność w ciągu 14 dni, kara umowna wynosi 5 %. Zażółć gęślą jaźń.\n") * 4
JAPANESE = "本契約は、甲と乙の間で締結される。支払いは請求書受領後三十日以内に行う。\n" * 4
WESTERN = ("Invoice “final” — total €1,250 for the café; the naïve résumé costs 3½ hours.\n"
           "Größe und Maß geprüft; Grüße aus München.\n") * 4


def _pages(ws: Path) -> tuple[str, list[str]]:
    manifest = json.loads((ws / "manifest.json").read_text())
    doc, rec = next(iter(manifest["documents"].items()))
    pages = sorted((ws / "docs" / doc / "pages").glob("*.txt"))
    return "".join(p.read_text(encoding="utf-8") for p in pages), rec["warnings"]


@pytest.mark.parametrize(("text", "codec", "chosen"), [
    (FRENCH, "latin-1", {"iso8859-15", "cp1252", "iso8859-1"}),
    (WESTERN, "cp1252", {"cp1252"}),
    (CZECH_POLISH, "cp1250", {"cp1250"}),
    (JAPANESE, "shift_jis", {"shift_jis", "cp932"}),
])
def test_a_legacy_file_reads_back_exactly_and_the_warning_names_the_codec(
        tmp_path: Path, text: str, codec: str, chosen: set[str]) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes(text.encode(codec))
    done = run_rlm("ingest", str(path), "-w", str(tmp_path / "ws"))
    assert done.returncode == 0, done.stderr
    got, warnings = _pages(tmp_path / "ws")
    assert got == text
    assert len(warnings) == 1 and warnings[0].removeprefix("not UTF-8: decoded as ") in chosen, warnings


def test_the_french_contract_of_the_issue_is_found_by_its_words(tmp_path: Path) -> None:
    path = tmp_path / "contrat.txt"
    path.write_bytes(FRENCH.encode("latin-1"))
    assert run_rlm("ingest", str(path), "-w", str(tmp_path / "ws")).returncode == 0
    found = run_rlm("search", "crème réception", "-w", str(tmp_path / "ws"), "--json")
    passages = json.loads(found.stdout)["passages"]
    assert passages and "Café Crème SARL livre à réception" in passages[0]["text"]
    for wrong in ("Crčme", "ŕ réception", "ętre", "naďf", "oů"):  # what cp1250 made of it
        assert wrong not in _pages(tmp_path / "ws")[0]


def test_a_few_accented_words_are_not_read_as_cyrillic(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_bytes("Café Crème à réception\n".encode("latin-1"))  # too short for statistics alone
    result = extract_text(path)
    assert result.pages == ["Café Crème à réception\n"] and result.warnings == ["not UTF-8: decoded as cp1252"]


def test_cyrillic_is_still_cyrillic(tmp_path: Path) -> None:
    path = tmp_path / "ru.txt"
    text = "Договор поставки товара между сторонами. Оплата в течение тридцати дней.\n" * 3
    path.write_bytes(text.encode("cp1251"))
    result = extract_text(path)
    assert result.pages == [text] and result.warnings == ["not UTF-8: decoded as cp1251"]


def test_utf16_with_a_bom_needs_no_warning(tmp_path: Path) -> None:
    path = tmp_path / "utf16.txt"
    path.write_bytes(FRENCH.encode("utf-16"))  # Python writes the BOM
    result = extract_text(path)
    assert "".join(result.pages) == FRENCH and result.warnings == []


def test_a_mixed_file_keeps_its_utf8_and_decodes_the_rest(tmp_path: Path) -> None:
    utf8 = "Résumé en UTF-8 : déjà vu, naïve café.\n" * 5
    latin = "Ligne exportée en Latin-1 : élève à Genève.\n" * 3
    path = tmp_path / "mixed.txt"
    path.write_bytes(utf8.encode("utf-8") + latin.encode("latin-1") + utf8.encode("utf-8"))
    result = extract_text(path)
    assert "".join(result.pages) == utf8 + latin + utf8
    assert result.warnings == ["mixed encodings: mostly UTF-8; 3 lines that are not were decoded as cp1252"]


def test_a_streamed_file_is_decoded_with_the_codec_of_its_first_mb(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    block = FRENCH.encode("latin-1")
    path.write_bytes(block * (STREAM_BYTES // len(block) + 2))
    result = extract_text(path)
    pages = list(result.pages)
    assert "".join(pages) == FRENCH * (STREAM_BYTES // len(block) + 2)
    assert result.warnings[0].startswith("not UTF-8: decoded as ") and "(judged from the first MB)" in result.warnings[0]


def test_legacy_bytes_after_a_utf8_first_mb_are_decoded_and_warned(tmp_path: Path) -> None:
    path = tmp_path / "late.txt"
    head = ("plain UTF-8 déjà\n" * (STREAM_BYTES // 17 + 10)).encode("utf-8")
    path.write_bytes(head + "tardive: élève à Genève\n".encode("latin-1"))
    result = extract_text(path)
    text = "".join(result.pages)  # the warning is known once the stream has been read
    assert text.endswith("tardive: élève à Genève\n")
    assert result.warnings == ["mixed encodings: UTF-8 in the first MB, but 4 byte runs after it were not UTF-8 "
                               "and were decoded as cp1252"]


def test_a_latin1_csv_reads_its_cells(tmp_path: Path) -> None:
    path = tmp_path / "clients.csv"
    rows = "nom;ville;montant\nLefèvre;Genève;1200\nMüller;Zürich;300\nCafé Crème;Orléans;45\n"
    path.write_bytes(rows.encode("latin-1"))
    result = extract_csv(path, None, None, "csv")
    text = "".join(result.pages)
    assert "Lefèvre | Genève | 1200" in text and "Café Crème | Orléans | 45" in text
    assert len(result.warnings) == 1 and "decoded as" in result.warnings[0]
