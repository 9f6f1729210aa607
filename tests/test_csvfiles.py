"""Reading the CSV files creators really export, and writing exports a spreadsheet cannot execute."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from launchkit.csvfiles import (
    escape_formula,
    normalize_email,
    read_contacts_csv,
    read_conversions_csv,
    write_csv,
)
from launchkit.errors import LaunchkitError


def write_file(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# --- addresses --------------------------------------------------------------------------


def test_normalize_email_lowercases_strips_and_accepts_example_com():
    assert normalize_email("  Jean.Dupont@Example.COM \n") == "jean.dupont@example.com"


def test_normalize_email_gives_the_validators_reason():
    with pytest.raises(ValueError, match="something after the @-sign"):
        normalize_email("jean.dupont@")


# --- contacts ---------------------------------------------------------------------------


def test_french_excel_export_with_bom_semicolons_and_accented_headers(tmp_path):
    path = write_file(
        tmp_path,
        "contacts-excel-fr.csv",
        "Adresse e-mail;Prénom;Nom de famille;Étiquettes;Ville de résidence\r\n"
        "Élodie.Martin@Example.fr;Élodie;Martin;clients;Lyon\r\n"
        "paul@example.fr;Paul;;;\r\n",
        encoding="utf-8-sig",
    )
    result = read_contacts_csv(path)

    assert [r.email for r in result.rows] == ["élodie.martin@example.fr", "paul@example.fr"]
    elodie, paul = result.rows
    assert (elodie.first_name, elodie.last_name) == ("Élodie", "Martin")
    assert elodie.tags == {"clients"}
    assert elodie.fields == {"ville_de_residence": "Lyon"}
    assert elodie.line == 2
    assert (paul.first_name, paul.last_name, paul.tags, paul.fields) == ("Paul", None, set(), {})
    assert result.problems == [] and result.merged == 0


def test_kit_convertkit_export_headers(tmp_path):
    path = write_file(
        tmp_path,
        "kit-subscribers.csv",
        "first_name,email_address,created_at,tags\n"
        'Ana,ana@example.com,2024-01-02 10:00:00,"Waitlist, Course buyer"\n',
    )
    [ana] = read_contacts_csv(path).rows
    assert ana.email == "ana@example.com"
    assert ana.first_name == "Ana" and ana.last_name is None
    assert ana.tags == {"Waitlist", "Course buyer"}
    assert ana.fields == {} and ana.created_at == datetime(2024, 1, 2, 10)  # when Ana joined the list


def test_mailchimp_export_headers_and_quoted_tags(tmp_path):
    path = write_file(
        tmp_path,
        "mailchimp-members.csv",
        '"Email Address","First Name","Last Name","MEMBER_RATING","TAGS"\n'
        '"bob@example.com","Bob","Stone","2","""Customer"",""VIP"""\n',
    )
    [bob] = read_contacts_csv(path).rows
    assert (bob.email, bob.first_name, bob.last_name) == ("bob@example.com", "Bob", "Stone")
    assert bob.tags == {"Customer", "VIP"}
    assert bob.fields == {"member_rating": "2"}


@pytest.mark.parametrize("text", ["email\none@example.com\ntwo@example.com\n", "Email Address\r\none@example.com\r\ntwo@example.com\r\n"])
def test_a_file_of_addresses_alone_is_read(tmp_path, text):
    result = read_contacts_csv(write_file(tmp_path, "list.csv", text))
    assert [r.email for r in result.rows] == ["one@example.com", "two@example.com"] and result.problems == []


def test_a_header_alone_imports_nothing_without_error(tmp_path):
    assert read_contacts_csv(write_file(tmp_path, "empty.csv", "email\n")).rows == []


def test_status_words_of_each_platform_become_launchkits(tmp_path):
    path = write_file(
        tmp_path,
        "members.csv",
        "Email Address,Status\n"
        "a@example.com,subscribed\nb@example.com,Cleaned\nc@example.com,unsubscribed\nd@example.com,spam complaint\n"
        "e@example.com,pending\nf@example.com,\ng@example.com,archived\nc@example.com,subscribed\n",
    )
    result = read_contacts_csv(path)
    assert {r.email: r.status for r in result.rows} == {
        "a@example.com": None, "b@example.com": "bounced", "c@example.com": "unsubscribed",
        "d@example.com": "complained", "e@example.com": "pending", "f@example.com": None,
    }
    assert [(p.line, p.message.split(" is not")[0]) for p in result.problems] == [(8, "status 'archived'")]
    assert all(r.fields == {} for r in result.rows)  # the status is no custom field


def test_dates_and_consent_of_a_launchkit_export_are_read(tmp_path):
    path = write_file(
        tmp_path,
        "export.csv",
        "email,status,created_at,consent_source,consent_at\n"
        "a@example.com,subscribed,2029-12-20T10:00:00+00:00,signup:form,2029-12-20T10:05:00+00:00\n"
        "b@example.com,subscribed,20/12/2029 11:00,,\n"
        "c@example.com,subscribed,last tuesday,,\n",
    )
    result = read_contacts_csv(path)
    a, b = result.rows
    assert a.created_at == datetime(2029, 12, 20, 10, tzinfo=timezone.utc) and a.consent_source == "signup:form"
    assert a.consent_at == datetime(2029, 12, 20, 10, 5, tzinfo=timezone.utc)
    assert b.created_at == datetime(2029, 12, 20, 11) and b.consent_at is None and b.consent_source is None
    assert [p.line for p in result.problems] == [4] and "'last tuesday' is not a date" in result.problems[0].message


def test_tab_separated_substack_export(tmp_path):
    path = write_file(
        tmp_path, "substack.tsv", "email\tactive_subscription\tplan\nzoe@example.com\ttrue\tfree\n"
    )
    [zoe] = read_contacts_csv(path).rows
    assert zoe.email == "zoe@example.com"
    assert zoe.fields == {"active_subscription": "true", "plan": "free"}


def test_duplicates_differing_in_case_and_whitespace_are_merged(tmp_path):
    path = write_file(
        tmp_path,
        "duplicates.csv",
        "email,first name,last name,tags,city\n"
        "ana@example.com,Ana,,waitlist,\n"
        "  ANA@Example.com ,Anna,Lopez,buyer,Porto\n"
        "bob@example.com,Bob,,,\n"
        "Ana@example.COM,,,waitlist|vip,Lisbon\n",
    )
    result = read_contacts_csv(path)

    assert [r.email for r in result.rows] == ["ana@example.com", "bob@example.com"]
    assert result.merged == 2
    ana = result.rows[0]
    assert ana.line == 2
    assert ana.first_name == "Ana"  # first value wins
    assert ana.last_name == "Lopez"  # a later value fills an empty one
    assert ana.tags == {"waitlist", "buyer", "vip"}
    assert ana.fields == {"city": "Porto"}


def test_invalid_and_missing_addresses_are_reported_with_their_line_after_a_multiline_cell(tmp_path):
    path = write_file(
        tmp_path,
        "with-errors.csv",
        "email,notes\n"  # line 1
        'ok@example.com,"first line\n'  # line 2
        'second line"\n'  # line 3
        "jean.dupont@,broken\n"  # line 4
        "\n"  # line 5: blank, ignored
        ",no address\n"  # line 6
        "not an address,x\n"  # line 7
        "last@example.com,fine\n",  # line 8
    )
    result = read_contacts_csv(path)

    assert [(r.email, r.line) for r in result.rows] == [("ok@example.com", 2), ("last@example.com", 8)]
    assert result.rows[0].fields == {"notes": "first line\nsecond line"}
    assert [p.line for p in result.problems] == [4, 6, 7]
    assert result.problems[0].message.startswith("'jean.dupont@' is not a valid email address: ")
    assert "after the @-sign" in result.problems[0].message
    assert result.problems[1].message == "no email address"


def test_rows_of_empty_cells_are_ignored_silently(tmp_path):
    path = write_file(tmp_path, "excel-trailing.csv", "email;name\r\na@example.com;A\r\n;\r\n;;\r\n")
    result = read_contacts_csv(path)
    assert [r.email for r in result.rows] == ["a@example.com"]
    assert result.problems == []


def test_latin1_file_is_refused_with_the_line_and_a_hint_and_nothing_imported(tmp_path):
    path = write_file(
        tmp_path,
        "export-latin1.csv",
        "email;prénom\na@example.com;Anne\nb@example.com;Hélène\n",
        encoding="latin-1",
    )
    with pytest.raises(LaunchkitError) as caught:
        read_contacts_csv(path)
    message = str(caught.value)
    assert str(path) in message
    assert "line 1" in message  # the é of "prénom"
    assert "UTF-8" in message and "nothing was imported" in message


def test_bad_byte_far_into_the_file_is_located(tmp_path):
    body = "".join(f"user{i}@example.com,x\n" for i in range(2, 5000))
    path = tmp_path / "long.csv"
    path.write_bytes(b"email,name\n" + body.encode() + b"late@example.com,Ren\xe9e\n")
    with pytest.raises(LaunchkitError, match="line 5000"):
        read_contacts_csv(path)


def test_no_email_column_lists_the_headers_found(tmp_path):
    path = write_file(tmp_path, "no-email.csv", "Prénom,Nom,Téléphone\nAnne,Roy,0600000000\n")
    with pytest.raises(LaunchkitError) as caught:
        read_contacts_csv(path)
    message = str(caught.value)
    assert str(path) in message
    assert "'Prénom'" in message and "'Nom'" in message and "'Téléphone'" in message


def test_tags_split_on_commas_semicolons_and_pipes(tmp_path):
    path = write_file(
        tmp_path, "tags.csv", 'email,tags\na@example.com," vip ; buyer,|  waitlist |"\n'
    )
    [row] = read_contacts_csv(path).rows
    assert row.tags == {"vip", "buyer", "waitlist"}


def test_a_full_name_column_is_split_on_the_first_space(tmp_path):
    path = write_file(
        tmp_path,
        "names.csv",
        "Email,Full Name\n"
        "a@example.com,Jean-Pierre de la Fontaine\n"
        "b@example.com,Cher\n",
    )
    first, second = read_contacts_csv(path).rows
    assert (first.first_name, first.last_name) == ("Jean-Pierre", "de la Fontaine")
    assert (second.first_name, second.last_name) == ("Cher", None)
    assert first.fields == {}


def test_a_name_column_is_kept_as_a_field_when_first_and_last_exist(tmp_path):
    path = write_file(tmp_path, "both.csv", "email,first name,last name,name\na@example.com,Ann,Lee,Ann L.\n")
    [row] = read_contacts_csv(path).rows
    assert (row.first_name, row.last_name) == ("Ann", "Lee")
    assert row.fields == {"name": "Ann L."}


# --- conversions ------------------------------------------------------------------------


def test_conversions_accept_the_amount_formats_creators_type(tmp_path):
    path = write_file(
        tmp_path,
        "sales.csv",
        "email;product;amount\n"
        "a@example.com;course;297\n"
        "b@example.com;course;297.00\n"
        "c@example.com;course;297,00\n"
        "d@example.com;course;1 297,50\n"
        "e@example.com;course;€297\n"
        "f@example.com;course;$1,297.50\n"
        "g@example.com;course;1\u202f297,50 €\n"
        "h@example.com;course;deux cents\n",
    )
    result = read_conversions_csv(path)
    assert [r.amount for r in result.rows] == [
        Decimal("297"),
        Decimal("297.00"),
        Decimal("297.00"),
        Decimal("1297.50"),
        Decimal("297"),
        Decimal("1297.50"),
        Decimal("1297.50"),
    ]
    assert result.rows[4].currency == "EUR" and result.rows[5].currency is None
    assert [(p.line, p.message) for p in result.problems] == [(9, "'deux cents' is not an amount")]


def test_conversions_accept_iso_and_day_first_dates(tmp_path):
    path = write_file(
        tmp_path,
        "dates.csv",
        "email,product,amount,date\n"
        "a@example.com,course,10,2024-03-05\n"
        "b@example.com,course,10,2024-03-05T14:30:00+01:00\n"
        "c@example.com,course,10,2024-03-05T14:30:00Z\n"
        "d@example.com,course,10,2024-03-05 14:30\n"
        "e@example.com,course,10,05/03/2024\n"
        "f@example.com,course,10,05/03/2024 14:30\n"
        "g@example.com,course,10,\n"
        "h@example.com,course,10,March 5th\n",
    )
    result = read_conversions_csv(path)
    assert [r.occurred_at for r in result.rows] == [
        datetime(2024, 3, 5),
        datetime(2024, 3, 5, 14, 30, tzinfo=timezone(timedelta(hours=1))),
        datetime(2024, 3, 5, 14, 30, tzinfo=timezone.utc),
        datetime(2024, 3, 5, 14, 30),
        datetime(2024, 3, 5),
        datetime(2024, 3, 5, 14, 30),
        None,
    ]
    assert result.rows[0].occurred_at.tzinfo is None
    assert result.rows[1].occurred_at.utcoffset() == timedelta(hours=1)
    assert [p.line for p in result.problems] == [9]
    assert "'March 5th' is not a date" in result.problems[0].message


def test_gumroad_sales_export_with_refunds(tmp_path):
    path = write_file(
        tmp_path,
        "gumroad-sales.csv",
        "Sale ID,Sale Date,Product Name,Purchase Email,Price ($),Currency,Refunded?\n"
        "s1,2024-03-05 14:30:00,Launch Course,Buyer@Example.com,297.00,usd,No\n"
        "s2,2024-03-06 09:00:00,Launch Course,other@example.com,297.00,usd,Yes\n",
    )
    first, second = read_conversions_csv(path).rows
    assert (first.email, first.product, first.amount, first.currency) == (
        "buyer@example.com",
        "Launch Course",
        Decimal("297.00"),
        "USD",
    )
    assert (first.external_id, first.refunded, first.line) == ("s1", False, 2)
    assert (second.external_id, second.refunded) == ("s2", True)


def test_stripe_payments_export_status_refunded_and_utc_created(tmp_path):
    path = write_file(
        tmp_path,
        "unified_payments.csv",
        "id,Created (UTC),Amount,Amount Refunded,Currency,Status,Customer Email,Price ID\n"
        "ch_1,2024-03-05 14:30:12,\"1,297.50\",0.00,eur,Paid,x@example.com,price_123\n"
        "ch_2,2024-03-05 15:00:00,297.00,297.00,eur,Refunded,y@example.com,price_123\n",
    )
    paid, refunded = read_conversions_csv(path).rows
    assert paid.external_id == "ch_1" and paid.product == "price_123"
    assert paid.amount == Decimal("1297.50") and paid.currency == "EUR"
    assert paid.occurred_at == datetime(2024, 3, 5, 14, 30, 12, tzinfo=timezone.utc)
    assert paid.refunded is False
    assert refunded.refunded is True


def test_conversions_without_product_column_use_the_default_product(tmp_path):
    path = write_file(tmp_path, "typed.csv", "email,total\na@example.com,49\nbad-address,49\n")
    result = read_conversions_csv(path, default_product="ebook")
    assert [(r.email, r.product, r.amount) for r in result.rows] == [("a@example.com", "ebook", Decimal(49))]
    assert [p.line for p in result.problems] == [3]

    with pytest.raises(LaunchkitError, match="no product column") as caught:
        read_conversions_csv(path)
    assert "'email', 'total'" in str(caught.value)


def test_conversion_with_empty_product_cell_and_no_default_is_a_problem(tmp_path):
    path = write_file(tmp_path, "gaps.csv", "email,product,amount\na@example.com,,10\nb@example.com,x,\n")
    result = read_conversions_csv(path)
    assert result.rows == []
    assert [(p.line, p.message) for p in result.problems] == [
        (2, "no product (pass a default product for rows without one)"),
        (3, "no amount"),
    ]


# --- export -----------------------------------------------------------------------------


def test_escape_formula_neutralises_formulas_but_not_negative_numbers():
    assert escape_formula('=HYPERLINK("http://evil.example","click")') == '\'=HYPERLINK("http://evil.example","click")'
    assert escape_formula("+1") == "'+1"
    assert escape_formula("@SUM(A1:A2)") == "'@SUM(A1:A2)"
    assert escape_formula("\t=1") == "'\t=1"
    assert escape_formula("\r=1") == "'\r=1"
    assert escape_formula("-1+2") == "'-1+2"
    assert escape_formula("-12.5") == "-12.5"
    assert escape_formula("Anne") == "Anne"


def test_written_csv_round_trips_with_formulas_escaped(tmp_path):
    rows = [
        ["a@example.com", '=HYPERLINK("http://evil.example","click")', Decimal("-12.5")],
        ["b@example.com", "+1", None],
        ["c@example.com", "@SUM(A1:A2)", -3],
        ["d@example.com", 'Line one\nline "two", three', datetime(2024, 3, 5, 14, 30)],
    ]
    out = io.StringIO()
    assert write_csv(out, ["email", "first_name", "balance"], iter(rows)) == 4

    text = out.getvalue()
    assert "\r\n" not in text
    assert list(csv.reader(io.StringIO(text))) == [
        ["email", "first_name", "balance"],
        ["a@example.com", '\'=HYPERLINK("http://evil.example","click")', "-12.5"],
        ["b@example.com", "'+1", ""],
        ["c@example.com", "'@SUM(A1:A2)", "-3"],
        ["d@example.com", 'Line one\nline "two", three', "2024-03-05T14:30:00"],
    ]

    # And launchkit reads its own export back.
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="utf-8")
    imported = read_contacts_csv(path)
    assert [r.first_name for r in imported.rows] == [
        '\'=HYPERLINK("http://evil.example","click")',
        "'+1",
        "'@SUM(A1:A2)",
        'Line one\nline "two", three',
    ]
    assert imported.rows[0].fields == {"balance": "-12.5"}
