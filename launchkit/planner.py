"""Who gets which email when: the rules of a launch applied to one contact. No database here.

A contact enters a launch when its audience holds for them; the moment they entered is the
latest time a tag the audience asked about was added (or when the contact was created).
They join each phase whose audience holds, at the later of the phase start and that moment.
Each email's moment is resolved against the phase and the join; an email whose moment came
before the contact joined is not sent to them (no burst of past emails) unless it says
``catch_up``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from launchkit.conditions import Facts
from launchkit.spec import Email, Launch

#: The phase name under which a contact's entry into the launch itself is kept.
LAUNCH_JOIN = ""

SCHEDULED = "scheduled"
SKIPPED = "skipped"
LATE_JOINER = "joined after this email's moment (set catch_up = true to send it anyway)"


@dataclass
class Delivery:
    """One outbox row the plan calls for."""

    email: Email
    due_at: datetime
    status: str  # SCHEDULED or SKIPPED
    reason: str | None = None


@dataclass
class ContactPlan:
    joins: dict[str, datetime]  #: phase name -> joined at (LAUNCH_JOIN for the launch)
    deliveries: list[Delivery]


def plan_contact(launch: Launch, contact: Any, facts: Facts, known_joins: Mapping[str, datetime], now: datetime) -> ContactPlan:
    """Apply the launch to one contact. ``known_joins`` keeps earlier joins stable."""
    plan = ContactPlan({}, [])
    context = {"launch": launch.spec, "now": now}
    in_launch, since = launch.audience.evaluate(contact, facts, context)
    if not in_launch and not known_joins:
        return plan
    entered = known_joins.get(LAUNCH_JOIN) or since or contact.created_at
    plan.joins[LAUNCH_JOIN] = entered
    clock = entered if launch.evergreen else None

    for phase in launch.phases:
        start, end = launch.window(phase, clock)
        joined = known_joins.get(phase.name)
        if joined is None:
            if not in_launch:
                continue
            phase_since = None
            if phase.audience is not None:
                holds, phase_since = phase.audience.evaluate(contact, facts, context)
                if not holds:
                    continue
            joined = max(start, entered, phase_since or entered)
            if end is not None and joined >= end:
                continue  # arrived after the phase was over: nothing of it concerns them
        plan.joins[phase.name] = joined
        for email in phase.emails:
            moment = email.when.resolve(launch.tz, start=start, end=end, join=joined)
            if moment >= joined:
                plan.deliveries.append(Delivery(email, moment, SCHEDULED))
            elif email.catch_up:
                plan.deliveries.append(Delivery(email, joined, SCHEDULED))
            else:
                plan.deliveries.append(Delivery(email, moment, SKIPPED, LATE_JOINER))
    return plan
