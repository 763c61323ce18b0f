"""Who an erasure reaches, and who it leaves alone (storage.privacy), on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from storage import models as m
from storage.blobs import LocalBlobStore
from storage.privacy import erase_family, find_family, read_family
from storage.uow import UnitOfWorkFactory
from tests.builders import T0, add_staff
from workflows.clock import FixedClock
from workflows.errors import NotFound, PermissionDenied


async def _people(stores: UnitOfWorkFactory) -> dict[str, int]:
    """The Rivera family (Maria and José for Ana), Tom (Ana's and Ben's), and the other
    Riveras (Carlos for Lucía), who only share a last name."""
    async with stores() as store:
        s = store.session
        home, other_home = m.Household(name="Rivera family"), m.Household(name="Rivera household")
        s.add_all([home, other_home])
        await s.flush()
        people = {
            "maria": m.Guardian(
                sis_id="G1",
                first_name="Maria",
                last_name="Rivera",
                email="Maria@Example.org",
                phone="(555) 010-2233",
                household_id=home.id,
            ),
            "jose": m.Guardian(
                sis_id="G2",
                first_name="José",
                last_name="Rivera",
                email="jose@example.org",
                household_id=home.id,
            ),
            "tom": m.Guardian(
                sis_id="G3",
                first_name="Tom",
                last_name="Rivera",
                email="tom@example.org",
                household_id=other_home.id,
            ),
            "carlos": m.Guardian(
                sis_id="G4",
                first_name="Carlos",
                last_name="Rivera",
                email="carlos@example.org",
                household_id=other_home.id,
            ),
            "ana": m.Student(
                sis_id="S1", first_name="Ana", last_name="Rivera", grade="7", household_id=home.id
            ),
            "ben": m.Student(
                sis_id="S2",
                first_name="Ben",
                last_name="Rivera",
                grade="5",
                household_id=other_home.id,
            ),
            "lucia": m.Student(
                sis_id="S3",
                first_name="Lucía",
                last_name="Rivera",
                grade="5",
                household_id=other_home.id,
            ),
        }
        s.add_all(people.values())
        await s.flush()
        for guardian, student in (
            ("maria", "ana"),
            ("jose", "ana"),
            ("tom", "ana"),
            ("tom", "ben"),
            ("carlos", "lucia"),
        ):
            s.add(m.Guardianship(guardian_id=people[guardian].id, student_id=people[student].id))
        device = m.Device(serial="SN1", model="Chromebook", created_at=T0)
        s.add(device)
        await s.flush()
        incident = m.Incident(
            device_id=device.id,
            student_id=people["ana"].id,
            occurred_on=T0.date(),
            description="Ana dropped it; Rivera family told.",
            opened_at=T0,
        )
        s.add(incident)
        await s.flush()
        s.add(
            m.Note(
                device_id=device.id,
                incident_id=incident.id,
                author_label="Sam Rivera",
                body="Maria said she will pay Friday.",
                created_at=T0,
            )
        )
        ids = {name: p.id for name, p in people.items()} | {"incident": incident.id}
        await store.commit()
    async with stores() as store:
        from workflows.permissions import Actor

        actor = Actor.system("Sam Rivera")
        await store.activity.log(
            actor, "student", ids["ana"], "imported", after={"name": "Ana Rivera"}
        )
        await store.activity.log(
            actor,
            "device",
            device.id,
            "swapped",
            comment="Swapped with maria@example.org's spare; call (555) 010-2233.",
        )
        await store.activity.log(
            actor, "student", ids["lucia"], "imported", after={"name": "Lucía Rivera"}
        )
        await store.commit()
    return ids


async def test_erase_reaches_the_family_and_no_one_else(
    stores: UnitOfWorkFactory, clock: FixedClock, tmp_path: Path
) -> None:
    ids = await _people(stores)
    admin = await add_staff(stores, "Admin")
    technician = await add_staff(stores, "Technician")
    blobs = LocalBlobStore(tmp_path)

    async with stores() as store:
        family = await find_family(store.session, " maria@example.ORG ")
        assert sorted(family.guardian_ids) == sorted([ids["maria"], ids["jose"]])
        assert family.student_ids == [ids["ana"]]
        # An export is for the guardian who asked: José, Ana's other parent, isn't in it.
        data = await read_family(store.session, family)
        assert [g["first_name"] for g in data["guardians"]] == ["Maria"]
        assert {(r["guardian_id"], r["student_id"]) for r in data["guardianships"]} == {
            (ids["maria"], ids["ana"])
        }
        assert [st["first_name"] for st in data["students"]] == ["Ana"]
        assert [e["action"] for e in data["activity_log"]] == ["imported"]
        with pytest.raises(PermissionDenied, match="Manage Family Data"):
            await erase_family(store.session, clock, blobs, technician, family, force=False)
        await store.commit()
    async with stores() as store:
        family = await find_family(store.session, "maria@example.org")
        result = await erase_family(store.session, clock, blobs, admin, family, force=False)
        await store.commit()
    assert (result.pseudonym, result.guardians, result.students) == ("ERASED-00001", 2, 1)

    async with stores() as store:
        s = store.session
        names = {
            g.id: (g.first_name, g.last_name, g.email, g.phone, g.sis_id, g.erased_at is not None)
            for g in (await s.execute(select(m.Guardian))).scalars()
        }
        assert names[ids["maria"]] == (
            "Guardian",
            "ERASED-00001-G1",
            None,
            None,
            "ERASED-00001-G1",
            True,
        )
        assert names[ids["jose"]][:2] == ("Guardian", "ERASED-00001-G2")
        assert names[ids["tom"]] == ("Tom", "Rivera", "tom@example.org", None, "G3", False)
        assert names[ids["carlos"]][:2] == ("Carlos", "Rivera")
        students = {
            st.id: (st.first_name, st.last_name, st.sis_id)
            for st in (await s.execute(select(m.Student))).scalars()
        }
        assert students[ids["ana"]] == ("Student", "ERASED-00001-S1", "ERASED-00001-S1")
        assert students[ids["ben"]] == ("Ben", "Rivera", "S2")
        assert students[ids["lucia"]] == ("Lucía", "Rivera", "S3")
        households = sorted((await s.execute(select(m.Household.name))).scalars())
        assert households == ["Erased family ERASED-00001", "Rivera household"]
        incident = await s.get(m.Incident, ids["incident"])
        assert incident is not None
        assert incident.description == "Student dropped it; Erased family ERASED-00001 told."
        note = (await s.execute(select(m.Note))).scalar_one()
        assert (note.author_label, note.body) == (
            "Sam Rivera",
            "Guardian said she will pay Friday.",
        )
        log = [
            (e.actor_label, e.entity_type, e.after, e.comment)
            for e in (
                await s.execute(select(m.ActivityEntry).order_by(m.ActivityEntry.id))
            ).scalars()
        ]
        assert log[0] == ("Sam Rivera", "student", {"name": "Student ERASED-00001-S1"}, None)
        assert log[1][3] == ("Swapped with erased-00001-g1@erased.invalid's spare; call [erased].")
        assert log[2][2] == {"name": "Lucía Rivera"}  # another family's entry is theirs
        assert log[-1][1] == "privacy_erasure" and log[-1][2]["pseudonym"] == "ERASED-00001"
        erasure = (await s.execute(select(m.PrivacyErasure))).scalar_one()
        assert erasure.finished_at is not None and erasure.erased_by_id == admin.staff_id
        await store.commit()

    async with stores() as store:
        with pytest.raises(NotFound):
            await find_family(store.session, "maria@example.org")
        # Tom, who still has Ben, is a family of his own: Ana is no longer named in it.
        tom = await find_family(store.session, "tom@example.org")
        assert [g.first_name for g in tom.guardians] == ["Tom"]
        assert sorted(st.first_name for st in tom.students) == ["Ben", "Student"]
        await store.commit()
