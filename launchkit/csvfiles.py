"""Reading the CSV files creators really export, and writing contact exports safely.

Contacts come from Kit/ConvertKit, Mailchimp, Substack or a spreadsheet saved by Excel in
a French locale (``;``, BOM, accented headers). Conversions come from Gumroad or Stripe sales
exports, or are typed by hand. Everything here is a pure function over files: no database.
"""

from __future__ import annotations

import csv
import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TextIO

from launchkit.errors import LaunchkitError

__all__ = [
    "ContactRow",
    "ContactsCsv",
    "ConversionRow",
    "ConversionsCsv",
    "CsvProblem",
    "escape_formula",
    "normalize_email",
    "read_contacts_csv",
    "read_conversions_csv",
    "write_csv",
]


@dataclass
class ContactRow:
    """One address from a contacts file, with duplicates already merged into it."""

    email: str  #: normalised: stripped, lower-cased whole address
    first_name: str | None
    last_name: str | None
    tags: set[str] = field(default_factory=set)
    fields: dict[str, str] = field(default_factory=dict)  #: other non-empty columns, by snake_case header
    line: int = 0  #: line in the file where this address first appeared
    #: What the file says of the person, in launchkit's words: ``unsubscribed``, ``bounced``,
    #: ``complained`` or ``pending``; None when it says subscribed, or nothing.
    status: str | None = None
    created_at: datetime | None = None  #: when they joined the list; naive when the file gives no offset
    consent_source: str | None = None
    consent_at: datetime | None = None  #: naive when the file gives no offset


@dataclass
class CsvProblem:
    """A row that was skipped, and why."""

    line: int
    message: str


@dataclass
class ContactsCsv:
    rows: list[ContactRow]  #: one per address, in first-seen order
    problems: list[CsvProblem]  #: rows skipped, with line numbers
    merged: int  #: duplicate rows merged into an earlier one


@dataclass
class ConversionRow:
    """One purchase (or refund) from a payment platform's export."""

    email: str
    product: str
    amount: Decimal
    currency: str | None
    occurred_at: datetime | None  #: naive when the file gives no offset, aware when it does
    external_id: str | None
    refunded: bool
    line: int


@dataclass
class ConversionsCsv:
    rows: list[ConversionRow]
    problems: list[CsvProblem]


# --- addresses --------------------------------------------------------------------------


def normalize_email(text: str) -> str:
    """Strip and lower-case an address, after checking its syntax (no DNS lookup).

    Raises ``ValueError`` carrying the validator's reason when the address is not valid.
    """
    # Imported here: email_validator costs ~20 ms, and `launchkit --help` should not pay it.
    from email_validator import EmailNotValidError, validate_email

    address = text.strip().lower()
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return address


# --- headers ----------------------------------------------------------------------------


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _header_key(header: str) -> str:
    """What a header is compared on: no case, accents, spaces or punctuation ("E-mail" == "email")."""
    return re.sub(r"[^a-z0-9]", "", _strip_accents(header).lower())


def _field_name(header: str) -> str:
    """The key a free column gets in ``ContactRow.fields``: "Ville de résidence" -> "ville_de_residence"."""
    return re.sub(r"[^a-z0-9]+", "_", _strip_accents(header).lower()).strip("_")


def _aliases(*names: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_header_key(n) for n in names))


_CONTACT_EMAIL = _aliases(
    "email", "e-mail", "email address", "adresse e-mail", "adresse email", "courriel", "mail"
)
_CONTACT_FIRST = _aliases("first_name", "firstname", "first name", "prénom", "prenom", "given name")
_CONTACT_LAST = _aliases("last_name", "lastname", "last name", "nom", "surname", "nom de famille")
_CONTACT_FULL = _aliases("name", "full name", "nom complet")
_CONTACT_TAGS = _aliases("tags", "tag", "étiquettes", "labels")
_CONTACT_STATUS = _aliases("status", "state", "statut", "subscription status", "subscriber status")
_CONTACT_CREATED = _aliases("created_at", "created at", "subscribed_at", "subscribed at", "date added")
_CONTACT_CONSENT_SOURCE = _aliases("consent_source", "consent source")
_CONTACT_CONSENT_AT = _aliases("consent_at", "consent at", "optin_time", "opt-in time")

#: A status column's words (compared like headers), and launchkit's for them: None is
#: subscribed. Exports say it in many ways (Kit "cancelled", Mailchimp "cleaned"); a word
#: not here skips its row, since it may mean someone who must not be written to.
_STATUSES: dict[str, str | None] = {
    **dict.fromkeys(_aliases("", "subscribed", "active", "confirmed", "subscriber", "abonné", "inscrit"), None),
    **dict.fromkeys(
        _aliases("unsubscribed", "unsubscribe", "cancelled", "canceled", "inactive", "opted out", "désabonné", "désinscrit"),
        "unsubscribed",
    ),
    **dict.fromkeys(_aliases("bounced", "bounce", "hard bounce", "cleaned"), "bounced"),
    **dict.fromkeys(_aliases("complained", "complaint", "spam", "spam complaint"), "complained"),
    **dict.fromkeys(_aliases("pending", "unconfirmed", "not confirmed"), "pending"),
}

_SALE_EMAIL = _aliases(
    "email", "e-mail", "email address", "customer email", "purchase_email", "purchase email",
    "buyer email", "purchaser email", "adresse e-mail", "courriel",
)
_SALE_PRODUCT = _aliases(
    "product", "product_id", "product name", "permalink", "variant", "variants", "price id", "produit"
)
_SALE_AMOUNT = _aliases("amount", "price", "total", "sale price", "net", "montant", "prix")
_SALE_CURRENCY = _aliases("currency", "devise")
_SALE_DATE = _aliases(
    "date", "created", "created (utc)", "created at", "purchased at", "purchase date", "sale date",
    "time",
)
_SALE_ID = _aliases(
    "id", "order id", "sale id", "charge id", "payment intent", "payment intent id", "transaction id"
)
_SALE_REFUNDED = _aliases("refunded", "rembourse")
_SALE_STATUS = _aliases("status", "statut")


def _find_column(headers: Sequence[str], aliases: tuple[str, ...]) -> int | None:
    """The column matching the earliest alias; a parenthesised note is ignored: "Price ($)" is a price."""
    keys = [_header_key(h) for h in headers]
    bare = [_header_key(re.sub(r"\(.*?\)", "", h)) for h in headers]
    for alias in aliases:
        for candidates in (keys, bare):
            if alias in candidates:
                return candidates.index(alias)
    return None


def _no_column_error(path: Path, what: str, headers: Sequence[str], expected: tuple[str, ...], hint: str = "") -> LaunchkitError:
    found = ", ".join(repr(h) for h in headers if h.strip()) or "none"
    return LaunchkitError(
        f"{path}: no {what} column. Headers found: {found}. "
        f"Rename the {what} column to one of: {', '.join(expected)}{hint}."
    )


# --- reading ----------------------------------------------------------------------------

_DELIMITERS = ",;\t"


def _detect_delimiter(header_line: str) -> str:
    """The header's delimiter: the sniffer's, else the most frequent candidate; "," for one column."""
    try:
        delimiter = csv.Sniffer().sniff(header_line, delimiters=_DELIMITERS).delimiter
    except csv.Error:  # a header of one column has nothing to sniff
        delimiter = None
    if delimiter is None or delimiter not in header_line:
        delimiter = max(_DELIMITERS, key=header_line.count)
    return delimiter if delimiter in header_line else ","


def _first_non_utf8_line(path: Path) -> tuple[int, int]:
    """Line number and value of the first byte that is not UTF-8.

    Decoding line by line is exact: a newline byte never occurs inside a UTF-8 sequence.
    """
    with path.open("rb") as raw:
        for number, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, line[exc.start]
    return 0, 0


def _not_utf8_error(path: Path) -> LaunchkitError:
    line, byte = _first_non_utf8_line(path)
    with path.open("rb") as raw:
        start = raw.read(2)
    what = "is UTF-16, not UTF-8" if start in (b"\xff\xfe", b"\xfe\xff") else "is not UTF-8"
    return LaunchkitError(
        f"{path} {what} (byte 0x{byte:02X} on line {line}); nothing was imported. "
        "Export or save it as UTF-8 (in Excel: Save As > \"CSV UTF-8 (Comma delimited)\") and import it again."
    )


@dataclass
class _Record:
    line: int  #: line the record starts on
    cells: list[str]


def _records(path: Path) -> Iterator[_Record]:
    """Yield the header record, then each non-empty record with the line it starts on.

    Streams the file; a file that is not UTF-8 raises LaunchkitError wherever the bad byte is.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as text:
            header_line = text.readline()
            if not header_line.strip():
                raise LaunchkitError(
                    f"{path}: the first line is empty; expected a header line naming the columns."
                )
            # The header line is read ahead to find the delimiter, then put back in front.
            reader = csv.reader(
                itertools.chain([header_line], text), delimiter=_detect_delimiter(header_line)
            )
            previous_end = 0
            try:
                for cells in reader:
                    start, previous_end = previous_end + 1, reader.line_num
                    if start == 1 or any(cell.strip() for cell in cells):
                        yield _Record(start, cells)
            except csv.Error as exc:
                raise LaunchkitError(f"{path}, line {reader.line_num}: unreadable CSV ({exc}).") from None
    except UnicodeDecodeError:
        raise _not_utf8_error(path) from None


def _read(path: Path) -> tuple[list[str], Iterator[_Record]]:
    """The header cells, and an iterator over the records after it."""
    records = _records(path)
    return next(records).cells, records


def _cell(cells: list[str], index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return cells[index].strip()


_TAG_SEPARATORS = re.compile(r"[,;|]")


def _split_tags(value: str) -> set[str]:
    # Mailchimp quotes each tag inside the cell: "Customer","VIP".
    return {tag for part in _TAG_SEPARATORS.split(value) if (tag := part.strip().strip('"').strip())}


def _email_problem(line: int, raw: str) -> CsvProblem | str:
    """The normalised address, or the problem that makes the row unusable."""
    if not raw:
        return CsvProblem(line, "no email address")
    try:
        return normalize_email(raw)
    except ValueError as exc:
        return CsvProblem(line, f"{raw!r} is not a valid email address: {exc}")


def read_contacts_csv(path: Path) -> ContactsCsv:
    """Read a contacts export: one row per address, invalid rows reported with their line."""
    path = Path(path)
    headers, records = _read(path)
    email_col = _find_column(headers, _CONTACT_EMAIL)
    if email_col is None:
        expected = ("email", "e-mail", "email address", "adresse e-mail", "courriel", "mail")
        raise _no_column_error(path, "email", headers, expected)
    first_col = _find_column(headers, _CONTACT_FIRST)
    last_col = _find_column(headers, _CONTACT_LAST)
    full_col = _find_column(headers, _CONTACT_FULL) if first_col is None and last_col is None else None
    tags_col = _find_column(headers, _CONTACT_TAGS)
    status_col = _find_column(headers, _CONTACT_STATUS)
    created_col = _find_column(headers, _CONTACT_CREATED)
    source_col = _find_column(headers, _CONTACT_CONSENT_SOURCE)
    consent_col = _find_column(headers, _CONTACT_CONSENT_AT)

    known = {email_col, first_col, last_col, full_col, tags_col, status_col, created_col, source_col, consent_col}
    field_cols: dict[int, str] = {}
    for index, header in enumerate(headers):
        if index in known:
            continue
        name = _field_name(header) or f"column_{index + 1}"
        unique, n = name, 2
        while unique in field_cols.values():
            unique, n = f"{name}_{n}", n + 1
        field_cols[index] = unique

    by_email: dict[str, ContactRow] = {}
    problems: list[CsvProblem] = []
    merged = 0
    for record in records:
        cells = record.cells
        email = _email_problem(record.line, _cell(cells, email_col))
        if isinstance(email, CsvProblem):
            problems.append(email)
            continue
        first, last = _cell(cells, first_col) or None, _cell(cells, last_col) or None
        if full_col is not None and (full := _cell(cells, full_col)):
            given, _, family = full.partition(" ")
            first, last = given, family.strip() or None
        status = _cell(cells, status_col)
        if _header_key(status) not in _STATUSES:
            problems.append(CsvProblem(record.line, f"status {status!r} is not one launchkit knows ({_KNOWN_STATUSES}): "
                                                    "skipped, in case it means someone who must not be written to"))
            continue
        try:
            created_at, consent_at = (_optional_datetime(_cell(cells, col)) for col in (created_col, consent_col))
        except ValueError as exc:
            problems.append(CsvProblem(record.line, str(exc)))
            continue
        row = ContactRow(
            email=email,
            first_name=first,
            last_name=last,
            tags=_split_tags(_cell(cells, tags_col)),
            fields={name: value for i, name in field_cols.items() if (value := _cell(cells, i))},
            line=record.line,
            status=_STATUSES[_header_key(status)],
            created_at=created_at,
            consent_source=_cell(cells, source_col) or None,
            consent_at=consent_at,
        )
        earlier = by_email.get(email)
        if earlier is None:
            by_email[email] = row
            continue
        merged += 1
        earlier.tags |= row.tags
        earlier.status = earlier.status or row.status  # one row saying they left is enough
        earlier.first_name = earlier.first_name or row.first_name
        earlier.last_name = earlier.last_name or row.last_name
        for name, value in row.fields.items():
            earlier.fields.setdefault(name, value)
    return ContactsCsv(rows=list(by_email.values()), problems=problems, merged=merged)


# --- conversions ------------------------------------------------------------------------

_SYMBOL_CURRENCIES = {"€": "EUR", "£": "GBP"}  # "$" is left unnamed: USD, CAD, AUD all use it
_AMOUNT_JUNK = re.compile(r"[\s\u00a0\u202f'’€$£]")
_ISO_CURRENCY = re.compile(r"^([A-Za-z]{3})\s*|\s*([A-Za-z]{3})$")


def _parse_amount(text: str) -> tuple[Decimal, str | None]:
    """Parse "297", "297,00", "1 297,50", "€297", "$1,297.50", "297 EUR"; also return a currency it names."""
    currency = next((code for symbol, code in _SYMBOL_CURRENCIES.items() if symbol in text), None)
    value = text.strip()
    if match := _ISO_CURRENCY.search(value):
        currency = (match.group(1) or match.group(2)).upper()
        value = _ISO_CURRENCY.sub("", value)
    value = _AMOUNT_JUNK.sub("", value)
    if "," in value and "." in value:
        # Whichever comes last is the decimal separator: 1,297.50 and 1.297,50.
        thousands = "," if value.rfind(",") < value.rfind(".") else "."
        value = value.replace(thousands, "")
    elif re.fullmatch(r"-?\d{1,3}(,\d{3})+", value):
        value = value.replace(",", "")  # 1,297 is a thousand and more, not 1.297
    elif re.fullmatch(r"-?\d{1,3}(\.\d{3}){2,}", value):
        value = value.replace(".", "")
    value = value.replace(",", ".")
    if not re.fullmatch(r"-?\d+(\.\d+)?", value):
        raise ValueError(f"{text!r} is not an amount")
    try:
        return Decimal(value), currency
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount") from None


_DAY_FIRST_FORMATS = ("%d/%m/%Y", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S")


_KNOWN_STATUSES = "subscribed, active, unsubscribed, cancelled, bounced, cleaned, complained, pending…"


def _optional_datetime(text: str) -> datetime | None:
    return _parse_datetime(text) if text else None


def _parse_datetime(text: str, *, utc: bool = False) -> datetime:
    """ISO 8601 (date, time, offset or Z optional), "YYYY-MM-DD HH:MM", or "DD/MM/YYYY [HH:MM]".

    ``utc`` says the column's header declares UTC ("Created (UTC)"), so a bare time is UTC.
    """
    value = text.strip()
    if value.upper().endswith((" UTC", " GMT")):
        value, utc = value[:-4].strip(), True
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        for fmt in _DAY_FIRST_FORMATS:
            try:
                parsed = datetime.strptime(value, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        raise ValueError(f"{text!r} is not a date (use 2024-03-05, 2024-03-05 14:30 or 05/03/2024 14:30)")
    if utc and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


_YES = {"true", "yes", "y", "1", "oui", "vrai", "x"}
_NO = {"", "false", "no", "n", "0", "non", "faux"}


def _parse_refunded(text: str) -> bool:
    value = text.strip().lower()
    if value in _YES or "refund" in value or "rembours" in value:
        return True
    if value in _NO:
        return False
    raise ValueError(f"refunded is {text!r}: expected yes or no")


def read_conversions_csv(path: Path, *, default_product: str | None = None) -> ConversionsCsv:
    """Read purchases from a payment platform export (Gumroad, Stripe) or a hand-typed sheet.

    ``default_product`` names the product when the file has no product column or an empty cell.
    """
    path = Path(path)
    headers, records = _read(path)
    email_col = _find_column(headers, _SALE_EMAIL)
    if email_col is None:
        raise _no_column_error(path, "email", headers, ("email", "customer email", "purchase_email", "buyer email"))
    product_col = _find_column(headers, _SALE_PRODUCT)
    if product_col is None and default_product is None:
        raise _no_column_error(
            path,
            "product",
            headers,
            ("product", "product_id", "product name", "permalink", "variant", "price id"),
            hint=", or give the product for every row with --product NAME",
        )
    amount_col = _find_column(headers, _SALE_AMOUNT)
    if amount_col is None:
        raise _no_column_error(path, "amount", headers, ("amount", "price", "total", "sale price", "net"))
    currency_col = _find_column(headers, _SALE_CURRENCY)
    date_col = _find_column(headers, _SALE_DATE)
    date_is_utc = date_col is not None and "utc" in _header_key(headers[date_col])
    id_col = _find_column(headers, _SALE_ID)
    refunded_col = _find_column(headers, _SALE_REFUNDED)
    status_col = _find_column(headers, _SALE_STATUS)

    rows: list[ConversionRow] = []
    problems: list[CsvProblem] = []
    for record in records:
        cells, line = record.cells, record.line
        email = _email_problem(line, _cell(cells, email_col))
        if isinstance(email, CsvProblem):
            problems.append(email)
            continue
        product = _cell(cells, product_col) or default_product
        if not product:
            problems.append(CsvProblem(line, "no product (pass a default product for rows without one)"))
            continue
        try:
            raw_amount = _cell(cells, amount_col)
            if not raw_amount:
                raise ValueError("no amount")
            amount, amount_currency = _parse_amount(raw_amount)
            raw_date = _cell(cells, date_col)
            occurred_at = _parse_datetime(raw_date, utc=date_is_utc) if raw_date else None
            refunded = _parse_refunded(_cell(cells, refunded_col))
        except ValueError as exc:
            problems.append(CsvProblem(line, str(exc)))
            continue
        status = _cell(cells, status_col).lower()
        rows.append(
            ConversionRow(
                email=email,
                product=product,
                amount=amount,
                currency=(_cell(cells, currency_col).upper() or amount_currency),
                occurred_at=occurred_at,
                external_id=_cell(cells, id_col) or None,
                refunded=refunded or "refund" in status,
                line=line,
            )
        )
    return ConversionsCsv(rows=rows, problems=problems)


# --- writing ----------------------------------------------------------------------------

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NEGATIVE_NUMBER = re.compile(r"-\d+([.,]\d+)?")


def escape_formula(value: str) -> str:
    """Make a cell inert in a spreadsheet (OWASP CSV injection): prefix ``'`` to a would-be formula.

    A plain negative number such as ``-12.5`` is data, not a formula, and is left alone.
    """
    if value.startswith(_FORMULA_STARTS) and not _PLAIN_NEGATIVE_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _export_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return escape_formula(value.isoformat())
    return escape_formula(str(value))


def write_csv(out: TextIO, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write a header and rows as CSV, every cell escaped against formula injection; return the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([_export_cell(h) for h in header])
    written = 0
    for row in rows:
        writer.writerow([_export_cell(cell) for cell in row])
        written += 1
    return written
