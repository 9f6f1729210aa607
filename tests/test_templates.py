"""Email bodies: Markdown or HTML with Jinja inside, compiled once, rendered per contact."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from jinja2.exceptions import SecurityError

from launchkit.templates import (
    CompiledBody,
    TemplateError,
    compile_body,
    compile_subject,
    make_environment,
    render_subject,
    specialize,
    split_front_matter,
)

CHECKOUT = "https://buy.example.com/academy?ref=mail&utm=launch"
UNSUBSCRIBE = "https://go.example.com/u/TOKEN123"
POSTAL_ADDRESS = "12 rue des Lilas, 69003 Lyon, France"


def context(**contact: object) -> dict[str, object]:
    return {
        "contact": {"first_name": "Élise", "email": "elise@example.com", **contact},
        "launch": {"name": "Micropreneure Academy"},
        "links": {"checkout": CHECKOUT, "sales_page": "https://example.com/academy"},
        "unsubscribe_url": UNSUBSCRIBE,
        "sender": {"postal_address": POSTAL_ADDRESS},
    }


def body_only(compiled: CompiledBody, ctx: dict[str, object]) -> str:
    """The HTML of the body without its layout."""
    return compiled.html.render(ctx)


def text_before_footer(text: str) -> str:
    return text.split("\n\n-- \n")[0]


# --- Markdown with Jinja inside -------------------------------------------------------------


def test_markdown_variables_and_filters_are_rendered_per_contact():
    compiled = compile_body("# Bonjour {{ contact.first_name|upper }}\n\nTu es inscrite.\n", kind="md")

    html, text = compiled.render(context(first_name="Zoé"))

    assert "<h1>Bonjour ZOÉ</h1>" in html
    assert "<p>Tu es inscrite.</p>" in html
    assert text.startswith("Bonjour ZOÉ\n\nTu es inscrite.")


def test_jinja_with_quotes_survives_markdown():
    compiled = compile_body('Salut {{ contact.first_name or "toi" }} !\n', kind="md")

    assert body_only(compiled, context(first_name=None)).strip() == "<p>Salut toi !</p>"
    assert body_only(compiled, context()).strip() == "<p>Salut Élise !</p>"


def test_a_link_whose_href_is_a_jinja_expression():
    compiled = compile_body("Réserve ta place : [le lien]({{ links.checkout }})\n", kind="md")

    html, text = compiled.render(context())

    # autoescape turns & into &amp; inside the attribute, which is correct HTML
    assert '<a href="https://buy.example.com/academy?ref=mail&amp;utm=launch">le lien</a>' in html
    assert f"Réserve ta place : le lien ({CHECKOUT})" in text


def test_a_link_whose_text_is_its_url_is_written_once_in_text():
    compiled = compile_body("Le site : <https://example.com/academy>\n", kind="md")

    _, text = compiled.render(context())

    assert "Le site : https://example.com/academy\n" in text + "\n"
    assert "(https://example.com/academy)" not in text


def test_if_blocks_spanning_paragraphs_leave_no_empty_paragraph():
    source = (
        "Bonjour {{ contact.first_name }},\n"
        "\n"
        "{% if contact.vip %}\n"
        "\n"
        "Tu as un accès anticipé.\n"
        "\n"
        "Profites-en bien.\n"
        "\n"
        "{% endif %}\n"
        "\n"
        "À demain.\n"
    )
    compiled = compile_body(source, kind="md")

    html_vip = body_only(compiled, context(vip=True))
    html_other = body_only(compiled, context(vip=False))

    assert "<p></p>" not in html_vip and "<p></p>" not in html_other
    assert "<p>Tu as un accès anticipé.</p>" in html_vip
    assert "accès anticipé" not in html_other
    assert html_other.count("<p>") == 2
    _, text_other = compiled.render(context(vip=False))
    assert text_before_footer(text_other) == "Bonjour Élise,\n\nÀ demain."


def test_block_tags_on_lines_of_their_own_inside_a_paragraph_still_give_whole_paragraphs():
    source = "{% if contact.vip %}\nBienvenue, VIP.\n{% else %}\nBienvenue.\n{% endif %}\n"
    compiled = compile_body(source, kind="md")

    assert body_only(compiled, context(vip=True)).split() == ["<p>Bienvenue,", "VIP.</p>"]
    assert body_only(compiled, context(vip=False)).split() == ["<p>Bienvenue.</p>"]


def test_for_loops_over_context_lists():
    source = "Tes bonus :\n\n{% for bonus in contact.bonuses %}\n\n- {{ bonus }}\n\n{% endfor %}\n"
    compiled = compile_body(source, kind="md")

    html, text = compiled.render(context(bonuses=["Atelier", "Modèles"]))

    assert "<li>Atelier</li>" in html and "<li>Modèles</li>" in html
    assert "- Atelier\n\n- Modèles" in text


def test_contact_names_are_escaped_in_html_but_not_in_text():
    compiled = compile_body("Salut **{{ contact.first_name }}**\n", kind="md")

    html, text = compiled.render(context(first_name="<script>alert(1)</script>"))

    assert "<script>" not in html
    assert "<strong>&lt;script&gt;alert(1)&lt;/script&gt;</strong>" in html
    assert text.startswith("Salut <script>alert(1)</script>")


def test_text_version_of_markdown_reads_like_a_plain_email():
    source = (
        "# Les portes sont ouvertes\n"
        "\n"
        "Tu peux *enfin* rejoindre **l'Academy** et ~~attendre~~ commencer.\n"
        "Deuxième ligne du paragraphe.\n"
        "\n"
        "- [la page]({{ links.sales_page }})\n"
        "- le paiement en 3 fois\n"
        "\n"
        "1. Choisis\n"
        "2. Paie\n"
        "\n"
        "> Meilleure formation de l'année\n"
        "\n"
        "| offre | prix |\n"
        "|---|---|\n"
        "| Academy | 297 € |\n"
    )
    _, text = compile_body(source, kind="md").render(context())

    assert text_before_footer(text) == (
        "Les portes sont ouvertes\n"
        "\n"
        "Tu peux enfin rejoindre l'Academy et attendre commencer.\n"
        "Deuxième ligne du paragraphe.\n"
        "\n"
        "- la page (https://example.com/academy)\n"
        "- le paiement en 3 fois\n"
        "\n"
        "1. Choisis\n"
        "2. Paie\n"
        "\n"
        "> Meilleure formation de l'année\n"
        "\n"
        "offre | prix\n"
        "Academy | 297 €"
    )


def test_french_text_and_emoji_come_through_intact():
    source = "Élise t’écrit : « Ça y est » — l’Academy ouvre 🎉🚀 à 9 h.\n"
    html, text = compile_body(source, kind="md").render(context())

    assert "Élise t’écrit : « Ça y est » — l’Academy ouvre 🎉🚀 à 9 h." in html
    assert text.startswith("Élise t’écrit : « Ça y est » — l’Academy ouvre 🎉🚀 à 9 h.")


def test_missing_contact_fields_render_empty():
    compiled = compile_body("Ville : {{ contact.city }}{{ contact.address.street }}.\n", kind="md")

    assert body_only(compiled, context()).strip() == "<p>Ville : .</p>"


def test_datetime_filter_formats_aware_datetimes_and_none():
    ends = datetime(2027, 3, 14, 23, 59, tzinfo=ZoneInfo("Europe/Paris"))
    compiled = compile_body(
        'Fin : {{ phase.ends|datetime("%d/%m à %Hh%M") }}.{{ phase.starts|datetime }}\n', kind="md"
    )

    html = body_only(compiled, {**context(), "phase": {"ends": ends, "starts": None}})

    assert "<p>Fin : 14/03 à 23h59.</p>" in html


# --- front matter ---------------------------------------------------------------------------


def test_front_matter_with_a_list_of_subjects_is_returned_and_not_part_of_the_body():
    source = (
        "+++\n"
        'subject = ["Les portes sont ouvertes", "C\'est parti, {{ contact.first_name }}"]\n'
        'preheader = "Jusqu\'à dimanche seulement"\n'
        "+++\n"
        "Bonjour.\n"
    )
    compiled = compile_body(source, kind="md")

    assert compiled.front_matter == {
        "subject": ["Les portes sont ouvertes", "C'est parti, {{ contact.first_name }}"],
        "preheader": "Jusqu'à dimanche seulement",
    }
    html, text = compiled.render(context())
    assert "+++" not in html and "subject" not in text
    assert "Jusqu&#39;à dimanche seulement</span>" in html  # the hidden preheader
    subjects = [render_subject(compile_subject(s), context()) for s in compiled.front_matter["subject"]]
    assert subjects == ["Les portes sont ouvertes", "C'est parti, Élise"]


def test_split_front_matter_counts_the_lines_it_removes():
    front_matter, body, removed = split_front_matter('+++\nsubject = "Salut"\n+++\nLigne 4\n')

    assert (front_matter, body, removed) == ({"subject": "Salut"}, "Ligne 4\n", 3)
    assert split_front_matter("Pas de front matter\n") == ({}, "Pas de front matter\n", 0)


def test_malformed_front_matter_names_its_line():
    with pytest.raises(TemplateError) as error:
        compile_body('+++\nsubject = "Salut"\npreheader = \n+++\nCorps\n', kind="md")

    assert error.value.line == 3
    assert "front matter" in error.value.message


def test_unclosed_front_matter_is_an_error():
    with pytest.raises(TemplateError, match="never closed"):
        split_front_matter('+++\nsubject = "Salut"\nCorps\n')


# --- layouts --------------------------------------------------------------------------------


def test_default_layout_carries_unsubscribe_link_and_postal_address_in_both_parts():
    html, text = compile_body("Bonjour.\n", kind="md").render(context())

    assert f'href="{UNSUBSCRIBE}"' in html
    assert ">Unsubscribe</a>" in html
    assert POSTAL_ADDRESS in html
    assert '<html lang="en">' in html
    assert "max-width:600px" in html
    assert text.endswith(f"Bonjour.\n\n-- \n{POSTAL_ADDRESS}\nUnsubscribe: {UNSUBSCRIBE}")


def test_default_layout_speaks_the_context_language():
    ctx = {**context(), "lang": "fr", "unsubscribe_text": "Se désinscrire"}

    html, text = compile_body("Bonjour.\n", kind="md").render(ctx)

    assert '<html lang="fr">' in html
    assert ">Se désinscrire</a>" in html
    assert text.endswith(f"Se désinscrire: {UNSUBSCRIBE}")


def test_custom_layouts_wrap_the_body():
    layout_html = (
        '<html><body><div class="brand">{{ content }}</div>'
        '<a href="{{ unsubscribe_url }}">Stop</a> {{ sender.postal_address }}</body></html>'
    )
    layout_text = "{{ content }}\n\n~ Élise\nStop : {{ unsubscribe_url }}"
    compiled = compile_body(
        "Salut **{{ contact.first_name }}**\n", kind="md", layout_html=layout_html, layout_text=layout_text
    )

    html, text = compiled.render(context(first_name="<b>Zoé</b>"))

    assert html.startswith('<html><body><div class="brand"><p>Salut <strong>&lt;b&gt;Zoé&lt;/b&gt;</strong></p>')
    assert f'<a href="{UNSUBSCRIBE}">Stop</a> {POSTAL_ADDRESS}</body></html>' in html
    assert text == f"Salut <b>Zoé</b>\n\n~ Élise\nStop : {UNSUBSCRIBE}"


def test_a_layout_without_an_unsubscribe_link_is_refused():
    with pytest.raises(TemplateError, match="unsubscribe"):
        compile_body("Salut\n", kind="md", layout_html="<div>{{ content }}</div>")


def test_a_layout_without_content_is_refused():
    with pytest.raises(TemplateError, match="content"):
        compile_body("Salut\n", kind="md", layout_html='<a href="{{ unsubscribe_url }}">x</a>')


# --- HTML bodies ----------------------------------------------------------------------------


def test_html_body_with_its_own_text_version():
    compiled = compile_body(
        '<p>Salut {{ contact.first_name }}, <a href="{{ links.checkout }}">c\'est ici</a>.</p>',
        kind="html",
        text_source="Salut {{ contact.first_name }}, c'est ici : {{ links.checkout }}",
    )

    html, text = compiled.render(context(first_name="<Zoé>"))

    assert "<p>Salut &lt;Zoé&gt;, <a href=" in html
    assert text.startswith(f"Salut <Zoé>, c'est ici : {CHECKOUT}\n\n-- \n{POSTAL_ADDRESS}")


def test_html_body_without_text_gets_a_text_version_derived_once():
    source = (
        "<h1>Dernier appel</h1>\n"
        '<p>Plus que 3 heures, {{ contact.first_name or "toi" }} : '
        '<a href="{{ links.checkout }}">je rejoins</a>.</p>\n'
        "{% if contact.vip %}<p>Ton bonus VIP t'attend.</p>{% endif %}\n"
        "<ul><li>Accès à vie</li><li>Communauté</li></ul>\n"
        '<p>À bientôt,<br>Élise</p><img src="https://go.example.com/o/x.gif" alt="">'
    )
    compiled = compile_body(source, kind="html")

    _, text_vip = compiled.render(context(first_name=None, vip=True))
    _, text_other = compiled.render(context(vip=False))

    assert text_before_footer(text_vip) == (
        "Dernier appel\n"
        "\n"
        f"Plus que 3 heures, toi : je rejoins ({CHECKOUT}).\n"
        "\n"
        "Ton bonus VIP t'attend.\n"
        "\n"
        "- Accès à vie\n"
        "- Communauté\n"
        "\n"
        "À bientôt,\n"
        "Élise"
    )
    assert "bonus VIP" not in text_other
    assert text_other.endswith(f"-- \n{POSTAL_ADDRESS}\nUnsubscribe: {UNSUBSCRIBE}")


def test_html_body_is_wrapped_in_the_default_layout():
    html, _ = compile_body("<p>Bonjour</p>", kind="html").render(context())

    assert html.startswith("<!DOCTYPE html>")
    assert "<p>Bonjour</p>" in html and f'href="{UNSUBSCRIBE}"' in html


def test_a_whole_html_document_is_not_wrapped_in_another_one():
    source = '<!DOCTYPE html><html><body><p>Salut</p><a href="{{ unsubscribe_url }}">Stop</a></body></html>'

    html, text = compile_body(source, kind="html").render(context())

    assert html.count("<html") == 1 and f'href="{UNSUBSCRIBE}"' in html
    assert text.endswith(f"Unsubscribe: {UNSUBSCRIBE}")


def test_a_whole_html_document_without_an_unsubscribe_link_is_refused():
    with pytest.raises(TemplateError, match="unsubscribe"):
        compile_body("<html><body><p>Salut</p></body></html>", kind="html")


# --- the sandbox ----------------------------------------------------------------------------


class Contact:
    def __init__(self) -> None:
        self.first_name = "Élise"
        self._password_hash = "s3cr3t-hash"


@pytest.mark.parametrize(
    "expression",
    [
        "{{ contact.__class__ }}",
        "{{ contact.__class__.__mro__ }}",
        "{{ contact._password_hash }}",
        "{{ contact.__init__.__globals__ }}",
        "{{ contact.__class__.__mro__[1].__subclasses__() }}",
        "{{ links.update({'checkout': 'https://evil.example'}) }}{{ links.checkout }}",
    ],
)
def test_the_sandbox_blocks_private_attributes(expression):
    compiled = compile_body(f"Salut {expression} fin\n", kind="md")
    ctx = {**context(), "contact": Contact()}

    try:
        html, text = compiled.render(ctx)
    except SecurityError:
        return
    for leak in ("class", "s3cr3t", "__", "object", "evil"):
        assert leak not in text_before_footer(text)


def test_make_environment_autoescapes_only_html():
    html_env = make_environment(autoescape=True)
    text_env = make_environment(autoescape=False)

    assert html_env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    assert text_env.from_string("{{ x }}").render(x="<b>") == "<b>"
    assert text_env.from_string("[{{ contact.missing }}]").render(contact={}) == "[]"


# --- errors ---------------------------------------------------------------------------------


def test_syntax_errors_name_their_line():
    with pytest.raises(TemplateError) as error:
        compile_body("Bonjour\n\n{% if contact.vip %}\n{% endfi %}\n", kind="md")

    assert error.value.line == 4
    assert "endfi" in error.value.message
    assert str(error.value).startswith("line 4: ")


def test_syntax_error_lines_count_the_front_matter():
    source = '+++\nsubject = "Salut"\n+++\nBonjour\n\nSalut {{ contact.first_name }\n'

    with pytest.raises(TemplateError) as error:
        compile_body(source, kind="md")

    assert error.value.line == 6


def test_syntax_error_in_an_html_body_names_its_line():
    with pytest.raises(TemplateError) as error:
        compile_body("<p>a</p>\n<p>{% for x in %}</p>\n", kind="html")

    assert error.value.line == 2


def test_an_unknown_filter_is_an_error_at_compile_time_even_inside_an_if():
    with pytest.raises(TemplateError) as error:
        compile_body("Bonjour\n\n{% if contact.vip %}\n{{ contact.first_name|uper }}\n{% endif %}\n", kind="md")

    assert error.value.line == 4
    assert "uper" in error.value.message and "upper" in error.value.message


# --- subjects -------------------------------------------------------------------------------


def test_subjects_render_on_one_line_and_are_not_escaped():
    subject = compile_subject("Tu es sur la liste, {{ contact.first_name or 'toi' }} !\n{{ extra }}  ")

    assert render_subject(subject, {**context(first_name="Zoé & Léo"), "extra": "ok"}) == (
        "Tu es sur la liste, Zoé & Léo ! ok"
    )
    assert render_subject(subject, context(first_name="A\r\nBcc: x@example.com")) == (
        "Tu es sur la liste, A Bcc: x@example.com !"
    )


def test_a_subject_syntax_error_is_a_template_error():
    with pytest.raises(TemplateError) as error:
        compile_subject("Salut {{ contact.first_name")

    assert error.value.line == 1


# --- compile once, render many --------------------------------------------------------------


def test_a_body_compiled_once_renders_ten_thousand_different_contacts():
    source = (
        "+++\n"
        'preheader = "Pour {{ contact.first_name }}"\n'
        "+++\n"
        "# Bonjour {{ contact.first_name }}\n"
        "\n"
        "{% if contact.vip %}\n"
        "\n"
        "Accès VIP n°{{ contact.number }}.\n"
        "\n"
        "{% endif %}\n"
        "\n"
        "[Je rejoins]({{ links.checkout }})\n"
    )
    compiled = compile_body(source, kind="md")

    for number in range(10_000):
        ctx = context(first_name=f"Contact{number}", number=number, vip=number % 2 == 0)
        ctx["unsubscribe_url"] = f"https://go.example.com/u/{number}"
        html, text = compiled.render(ctx)
        assert f"<h1>Bonjour Contact{number}</h1>" in html
        assert (f"Accès VIP n°{number}." in text) is (number % 2 == 0)
        assert f"Pour Contact{number}</span>" in html
        assert text.endswith(f"Unsubscribe: https://go.example.com/u/{number}")


class LaunchkitView:
    """Stands for launchkit's own context objects (contact, phase, sender), whose plain
    attributes skip the sandbox's checks: anything else must still go through them."""

    __module__ = "launchkit.views_for_tests"

    def __init__(self) -> None:
        self.name = "Élise"
        self.fmt = "{0.__class__.__mro__}".format  # a str.format bound method: sandboxed, never plain
        self._secret = "s3cr3t"


@pytest.mark.parametrize(
    "expression",
    ["{{ view.fmt(view) }}", "{{ view._secret }}", "{{ view.__class__ }}", "{{ links.update({'checkout': 'https://evil.example'}) }}{{ links.checkout }}"],
)
def test_launchkits_own_objects_skip_no_check_that_matters(expression):
    env = make_environment(autoescape=False)
    template = env.from_string(f"[{{{{ view.name }}}}|{{{{ links.checkout }}}}] {expression}")
    try:
        out = template.render(view=LaunchkitView(), links={"checkout": "https://ok.example"})
    except SecurityError:
        return
    assert out.startswith("[Élise|https://ok.example]")
    for leak in ("class", "object", "s3cr3t", "evil"):
        assert leak not in out


# --- specialised for one send ---------------------------------------------------------------

SHARED: dict[str, object] = {
    "launch": {"name": "Académie <Micro> & co", "price": 297, "ratio": 0.5, "open": True, "nothing": None, "html": "<b>gras</b>"},
    "links": {"checkout": CHECKOUT},
    "sender": {"postal_address": POSTAL_ADDRESS},
    "phase": {"ends": datetime(2030, 1, 13, 23, 59, tzinfo=ZoneInfo("Europe/Paris"))},
}

SPECIALISED_BODIES = [
    "<p>{{ links.checkout }} {{ launch.name | upper }} {{ launch.name ~ '!' }} {{ '%s?' % launch.name }}</p>",
    "<p>{{ launch.price * 2 }} {{ launch.ratio }} {{ launch.open }} [{{ launch.nothing }}] [{{ launch.missing }}] [{{ launch.missing.deeper }}]</p>",
    "<p>{{ launch.html | safe }} {{ launch.html }} {{ phase.ends | datetime('%d/%m à %H:%M') }}</p>",
    "<p>{% if launch.open and contact.vip %}VIP {{ contact.first_name }}{% else %}{{ contact.first_name or 'toi' }}{% endif %}</p>",
    "<p>{{ contact.first_name ~ ', ' ~ launch.name }} {{ range(launch.price // 100) | list }}</p>",
    '<p>{% set links = {"checkout": "https://other.example"} %}{{ links.checkout }}</p>',
    '<p>{% for launch in [{"name": contact.first_name}] %}{{ launch.name }}{% endfor %} {{ launch.name }}</p>',
    "<p>{% macro signed(sender) %}{{ sender.postal_address }}{% endmacro %}{{ signed({'postal_address': contact.first_name}) }} {{ sender.postal_address }}</p>",
]


@pytest.mark.parametrize("source", SPECIALISED_BODIES)
def test_a_specialised_body_renders_what_the_body_renders(source):
    compiled = compile_body("+++\npreheader = \"{{ launch.name }} pour {{ contact.first_name }}\"\n+++\n" + source, kind="html")
    specialised = compiled.specialize(SHARED)
    for number, first_name in enumerate(["Zoé", "", "<Jo>"]):
        ctx = {**context(first_name=first_name, vip=number % 2 == 0), **SHARED}
        assert specialised.render(ctx) == compiled.render(ctx)


def test_specialising_works_out_the_shared_values_once_and_leaves_the_personal_ones():
    compiled = compile_body("Hello {{ contact.first_name }}: [buy]({{ links.checkout }}) before {{ phase.ends | datetime('%d/%m') }}\n", kind="md")
    specialised = compiled.specialize(SHARED)
    # Rendered with other shared values, the specialised body still has the ones it was made for.
    other = {**context(first_name="Zoé"), **SHARED, "links": {"checkout": "https://changed.example"}, "phase": {"ends": None}}
    html, text = specialised.render(other)
    assert "Hello Zoé" in text and "before 13/01" in text and "changed" not in html + text
    assert f'href="{CHECKOUT.replace("&", "&amp;")}"' in html
    assert "changed" in "".join(compiled.render(other))


def test_specialising_keeps_the_sandbox_and_its_errors():
    compiled = compile_body("<p>{{ launch.__class__ }}{{ launch._secret }}{{ links.update({'checkout': 'x'}) }}</p>", kind="html")
    specialised = compiled.specialize(SHARED)
    for body in (compiled, specialised):
        with pytest.raises(SecurityError):
            body.render({**context(), **SHARED})


def test_specialised_subjects_render_what_the_subjects_render():
    subject = compile_subject("{{ contact.first_name or 'Vous' }}, {{ launch.name }} ferme le {{ phase.ends | datetime('%d/%m') }}")
    specialised = specialize(subject, SHARED)
    for first_name in ("Zoé", None):
        ctx = {**context(first_name=first_name), **SHARED}
        assert render_subject(specialised, ctx) == render_subject(subject, ctx)
