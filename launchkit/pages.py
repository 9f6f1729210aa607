"""The few pages people see from the tracking server: unsubscribe, signup, confirmation.

Plain HTML, no scripts, no external assets, readable on a phone; in the project's language.
"""

from __future__ import annotations

from markupsafe import escape

WORDS = {
    "en": {
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_ask": "Stop receiving emails from {project} at {address}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed": "{address} will receive no more emails from {project}.",
        "invalid_title": "This link does not work",
        "invalid": "It may have been copied incompletely, or it is no longer valid.",
        "thanks_title": "Thank you",
        "thanks_pending": "Check your inbox: click the link in the email we just sent to confirm.",
        "thanks": "You are on the list.",
        "confirmed_title": "Confirmed",
        "confirmed": "Thank you: {address} is on the list of {project}.",
        "expired": "This confirmation link has expired: please sign up again.",
        "error_title": "Something is missing",
        "limited_title": "Please try again later",
        "limited": "Too many signups from here; please try again in a while.",
    },
    "fr": {
        "unsubscribe_title": "Désinscription",
        "unsubscribe_ask": "Ne plus recevoir les emails de {project} à l'adresse {address} ?",
        "unsubscribe_button": "Me désinscrire",
        "unsubscribed_title": "Tu es désinscrit·e",
        "unsubscribed": "{address} ne recevra plus d'emails de {project}.",
        "invalid_title": "Ce lien ne fonctionne pas",
        "invalid": "Il a peut-être été copié en partie, ou il n'est plus valable.",
        "thanks_title": "Merci",
        "thanks_pending": "Regarde ta boîte mail : clique sur le lien de l'email que nous venons d'envoyer pour confirmer.",
        "thanks": "Tu es sur la liste.",
        "confirmed_title": "C'est confirmé",
        "confirmed": "Merci : {address} est sur la liste de {project}.",
        "expired": "Ce lien de confirmation a expiré : inscris-toi à nouveau.",
        "error_title": "Il manque quelque chose",
        "limited_title": "Réessaie plus tard",
        "limited": "Trop d'inscriptions d'ici ; réessaie dans un moment.",
    },
}


def words(lang: str) -> dict[str, str]:
    return WORDS.get(lang.split("-")[0], WORDS["en"])


def page(lang: str, title: str, paragraph: str, *, form_action: str | None = None, button: str | None = None) -> str:
    """A whole page; ``title`` and ``paragraph`` are escaped here."""
    form = ""
    if form_action and button:
        form = f'<form method="post" action="{escape(form_action)}"><button type="submit">{escape(button)}</button></form>'
    return f"""<!DOCTYPE html>
<html lang="{escape(lang)}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{escape(title)}</title>
<style>
body{{font:17px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;background:#f9fafb;margin:0;padding:2rem 1rem}}
main{{max-width:32rem;margin:auto;background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:1.5rem}}
h1{{font-size:1.4rem;margin-top:0}}
button{{font:inherit;background:#1d4ed8;color:#fff;border:0;border-radius:6px;padding:.6rem 1.2rem;cursor:pointer}}
button:focus{{outline:3px solid #93c5fd}}
</style></head>
<body><main><h1>{escape(title)}</h1><p>{escape(paragraph)}</p>{form}</main></body></html>
"""


def mask(address: str) -> str:
    """``e***@example.com``: enough for its owner to recognise, little for anyone else."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"
