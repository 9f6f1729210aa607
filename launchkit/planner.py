"""Who gets which email when: the rules of a launch applied to one contact. No database here.

A contact **enters** a launch when its audience holds for them: at the latest time a tag the
audience asked about was added, or when the contact was created. They enter each phase
whose audience holds at the later of that moment and the time they got the phase's own
tags. They **join** the phase at the later of its start and their entry: that is the
``join`` anchor of ``when``.

Each email's moment is resolved against the phase and the join. An email whose moment came
before the contact entered is not sent to them (no burst of past emails) unless it says
``catch_up``; an email before the phase start (``start - 1d``) reaches everyone who was
already there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from launchkit.conditions import Facts
from launchkit.spec import Email, Launch

#: The phase name under which a contact's entry into the launch itself is kept.
LAUNCH_ENTRY = ""

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
    entries: dict[str, datetime]  #: phase name -> entered at (LAUNCH_ENTRY for the launch)
    deliveries: list[Delivery]


def plan_contact(launch: Launch, contact: Any, facts: Facts, known: Mapping[str, datetime], now: datetime) -> ContactPlan:
    """Apply the launch to one contact. ``known`` entries stay as first recorded."""
    plan = ContactPlan({}, [])
    context = {"launch": launch.spec, "now": now}
    in_launch, since = launch.audience.evaluate(contact, facts, context)
    if not in_launch and not known:
        return plan
    entered_launch = known.get(LAUNCH_ENTRY) or since or contact.created_at
    plan.entries[LAUNCH_ENTRY] = entered_launch
    clock = entered_launch if launch.evergreen else None

    for phase in launch.phases:
        start, end = launch.window(phase, clock)
        entered = known.get(phase.name)
        if entered is None:
            if not in_launch:
                continue
            phase_since = None
            if phase.audience is not None:
                holds, phase_since = phase.audience.evaluate(contact, facts, context)
                if not holds:
                    continue
            entered = max(entered_launch, phase_since or entered_launch)
            if end is not None and entered >= end:
                continue  # arrived after the phase was over: nothing of it concerns them
        plan.entries[phase.name] = entered
        joined = max(start, entered)
        for email in phase.emails:
            moment = email.when.resolve(launch.tz, start=start, end=end, join=joined)
            if moment >= entered:
                plan.deliveries.append(Delivery(email, moment, SCHEDULED))
            elif email.catch_up:
                plan.deliveries.append(Delivery(email, entered, SCHEDULED))
            else:
                plan.deliveries.append(Delivery(email, moment, SKIPPED, LATE_JOINER))
    return plan
