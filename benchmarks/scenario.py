"""The launch the send benchmarks send, written into a new project: one place for all of them.

``python -m benchmarks.send`` and ``python -m benchmarks suite`` both measure this scenario:

- a project made by ``launchkit init``'s ``init_project`` (created on ``TODAY``, so the dates
  are fixed and runs compare), its example launch replaced by ``lancement-printemps``: one
  ``ouverture`` phase (the skeleton's open-cart dates) with one email, ``ouverture``, due at
  its start for the whole audience. A French body in Markdown personalised per contact
  (first name, city, a paragraph chosen by city, the phase's end and days left), four
  ``[launch.links]`` used in it, all tracked, a preheader, and two A/B subjects with
  accents and an emoji (``launch.lang = "fr"``: the footer is French too);
- delivery through ``postmark`` at a local Postmark-compatible server (``send.Server``),
  unpaced (the skeleton's ``rate`` is removed), with ``[tracking] base_url`` set, so every
  link, the open pixel and the unsubscribe link are signed URLs, as in a real launch;
- N contacts imported from a generated CSV (accented first names, French-speaking cities),
  tagged ``newsletter, waitlist``;
- ``plan``: a tick one minute before the phase starts plans the email for everyone:
  exactly N ``scheduled`` outbox rows (one per contact), nothing sent.

Functions with JSON-able arguments (``create``, ``plan``) are meant to run in a fresh child
process (``benchmarks.measure.run_child``), so each step's peak memory is its own.
"""

from __future__ import annotations

import re
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.measure import BenchmarkError, Stopwatch, outbox_rows, peak_rss_mb, progress

TODAY = date(2030, 1, 7)  #: the day the project is "created": the skeleton's dates follow from it
IMPORT_AT = f"{TODAY} 08:00"
TAGS = "newsletter, waitlist"
TOKEN = "bench-token"  #: the fake Postmark's server token
BASE_URL = "https://go.example.com"  #: [tracking] base_url: links are tracked, never followed
LAUNCH = "lancement-printemps"
EMAIL = "ouverture"
#: [launch.links], all four used in the body: the send tracks each per message.
LINKS = {
    "paiement": "https://atelier.example.fr/inscription/paiement",
    "programme": "https://atelier.example.fr/programme",
    "temoignages": "https://atelier.example.fr/temoignages",
    "questions": "https://atelier.example.fr/questions-frequentes",
}
FIRST_NAMES = ("Amélie", "Zoë", "Renée", "Jérôme", "Françoise", "Loïc", "Hélène", "Noël", "Camille", "Théo")
CITIES = ("Paris", "Lyon", "Marseille", "Bordeaux", "Lille", "Nantes", "Bruxelles", "Genève", "Montréal", "Québec")

LAUNCH_TOML = """\
# Written by benchmarks/scenario.py: the launch every send benchmark sends.
[launch]
name = "Atelier d’écriture — printemps"
product = "atelier-ecriture"
price = 297
currency = "EUR"
audience = "tagged('newsletter')"
lang = "fr"

[launch.links]
{links}

[[phase]]
name = "ouverture"
starts = "{starts}"
ends = "{ends}"

  [[phase.email]]
  id = "{email}"
  when = "start"
  subject = [
    "C’est ouvert, {{{{ contact.first_name or 'à vous' }}}} : l’atelier d’écriture commence 🎉",
    "Inscriptions ouvertes ✍️ jusqu’au {{{{ phase.ends | datetime('%d/%m') }}}} — places limitées",
  ]
  body = "{email}.md"
"""

BODY_MD = """\
+++
preheader = "{{ contact.first_name }}, les inscriptions ferment le {{ phase.ends | datetime('%d/%m à %H:%M') }}"
+++
Bonjour {{ contact.first_name or "à vous" }},

C’est le grand jour : **l’Atelier d’écriture de printemps est ouvert**. Pendant six semaines,
nous écrivons ensemble, un chapitre après l’autre, jusqu’à un premier manuscrit complet.

Au programme :

- **Semaine 1 :** trouver la voix de votre narratrice ou de votre narrateur, et s’y tenir ;
- **Semaines 2 et 3 :** construire l’intrigue sans perdre l’élan du premier jet ;
- **Semaines 4 et 5 :** réécrire — couper, déplacer, oser ;
- **Semaine 6 :** relire à voix haute et préparer l’envoi aux éditeurs.

Tout le détail, séance par séance, est sur [la page du programme]({{ links.programme }}).

{% if contact.city in ("Paris", "Lyon", "Bruxelles") %}
Bonne nouvelle pour {{ contact.city }} : une rencontre en personne aura lieu près de chez vous à la fin de l’atelier.
{% else %}
Vous êtes à {{ contact.city or "distance" }} ? Toutes les séances sont en ligne et enregistrées : vous suivez à votre rythme, où que vous soyez.
{% endif %}

L’inscription coûte **{{ launch.price }} {{ launch.currency }}**, satisfait ou remboursé pendant 14 jours.

👉 [Je m’inscris à l’atelier]({{ links.paiement }})

Ce qu’en disent les participantes et participants de l’automne : [leurs témoignages]({{ links.temoignages }}).
Une question sur le format, les horaires ou la facture ? [Les réponses sont ici]({{ links.questions }}).

Les inscriptions ferment le **{{ phase.ends | datetime("%d/%m à %H:%M") }}**, dans {{ phase.days_left }} jours.

À très vite,

{{ sender.name }}
"""


def moments() -> tuple[str, str]:
    """(planning tick, send tick): one minute before the cart opens, and the moment it opens."""
    from launchkit.scaffold import DATE_FORMAT, skeleton_dates

    opens = skeleton_dates(TODAY)["@CART_OPENS@"]
    before = (datetime.strptime(opens, DATE_FORMAT) - timedelta(minutes=1)).strftime(DATE_FORMAT)
    return before, opens


def write_audience_csv(path: Path, size: int) -> Path:
    """N distinct contacts with accented first names and a city, tagged newsletter and waitlist."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,first_name,last_name,city,tags\n")
        for i in range(size):
            out.write(f'person{i:07d}@example.com,{FIRST_NAMES[i % len(FIRST_NAMES)]},Nom{i},{CITIES[i % len(CITIES)]},"{TAGS}"\n')
    return path


def write_launch(root: Path) -> None:
    """Replace the skeleton's example launch by the benchmark's French launch."""
    from launchkit.scaffold import skeleton_dates

    sequences = root / "sequences"
    (sequences / "example-launch.toml").unlink()
    shutil.rmtree(sequences / "example-launch")
    dates = skeleton_dates(TODAY)
    links = "\n".join(f'{name} = "{url}"' for name, url in LINKS.items())
    text = LAUNCH_TOML.format(links=links, starts=dates["@CART_OPENS@"], ends=dates["@CART_CLOSES@"], email=EMAIL)
    (sequences / f"{LAUNCH}.toml").write_text(text, encoding="utf-8")
    (sequences / LAUNCH).mkdir()
    (sequences / LAUNCH / f"{EMAIL}.md").write_text(BODY_MD, encoding="utf-8")


def configure(root: Path, port: int) -> None:
    """Deliver through postmark at the local server, unpaced, with a tracking base URL."""
    config = root / "launchkit.toml"
    text = config.read_text(encoding="utf-8")
    text = re.sub(r'^provider\s*=\s*"maildir"', 'provider = "postmark"', text, count=1, flags=re.MULTILINE)
    text = re.sub(r"^rate\s*=.*$", "# rate: removed by the benchmark, which measures launchkit unpaced", text, count=1, flags=re.MULTILINE)
    text = re.sub(r'^base_url\s*=\s*""', f'base_url = "{BASE_URL}"', text, count=1, flags=re.MULTILINE)
    text += f'\n[delivery.postmark]\nserver_token = "{TOKEN}"\nbase_url = "http://127.0.0.1:{port}"\n'
    config.write_text(text, encoding="utf-8")


def create(folder: str, size: int, port: int) -> dict[str, Any]:
    """The project in ``folder`` (new) with the launch, delivery at ``port`` and N contacts imported."""
    from launchkit import audience
    from launchkit.project import Project
    from launchkit.scaffold import init_project

    root = Path(folder)
    init_project(root, TODAY)
    write_launch(root)
    configure(root, port)
    project = Project.open(root, now=IMPORT_AT)
    delivery = project.config.delivery
    if list(project.launches) != [LAUNCH] or delivery.provider != "postmark" or delivery.rate is not None or delivery.daily_cap is not None:
        raise BenchmarkError(f"expected the one launch {LAUNCH!r}, delivered by postmark unpaced; found {list(project.launches)}, {delivery!r}")
    csv_path = write_audience_csv(root / "benchmark-audience.csv", size)
    progress(size, "importing contacts")
    with Stopwatch() as imported:
        report = audience.import_csv(project, csv_path)
    project.store.close()
    if report.created != size or report.problems:
        raise BenchmarkError(f"imported {report.created} of {size} contacts ({len(report.problems)} problems)")
    return {"seconds": imported.wall, "cpu_seconds": imported.cpu, "created": report.created}


def plan(folder: str, size: int) -> dict[str, Any]:
    """The planning tick, timed in this (fresh) process: ``ouverture`` scheduled for all N, nothing sent."""
    from benchmarks.tick import timed_tick

    plan_at, _ = moments()
    progress(size, f"planning tick at {plan_at}")
    result = timed_tick(Path(folder), plan_at)
    result["rss_mb"] = peak_rss_mb()
    result["outbox_rows"] = rows = outbox_rows(Path(folder))
    if result["report"]["sent"] or rows != {"scheduled": {EMAIL: size}}:
        raise BenchmarkError(f"the planning tick sent {result['report']['sent']} and left {rows} in the outbox; expected {size} {EMAIL!r} scheduled")
    return result


def check_message(message: Any, contact: Any, link_ids: dict[str, int]) -> None:
    """The first message composed is the scenario's: personalised, four links tracked, French footer."""
    problems = []
    if set(link_ids) != set(LINKS.values()):
        problems.append(f"tracked links {sorted(link_ids)} instead of the four of [launch.links]")
    if contact.first_name not in message.text or contact.fields.get("city", "") not in message.text:
        problems.append(f"the text lacks the contact's first name or city ({contact.first_name}, {contact.fields.get('city')})")
    if message.html.count(f"{BASE_URL}/c/") < len(LINKS) or f"{BASE_URL}/o/" not in message.html:
        problems.append("the HTML lacks the tracked links or the open pixel")
    if "Se désinscrire" not in message.text:
        problems.append("the footer is not French")
    if problems:
        raise BenchmarkError(f"the composed {EMAIL!r} is not the scenario's: " + "; ".join(problems))
