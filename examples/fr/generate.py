#!/usr/bin/env python3
"""Generates the French example claims (claim/v1 and cancellation/v1, one JSON message a line).

    python3 examples/fr/generate.py > examples/fr/claims.jsonl
    python3 examples/fr/generate.py --registry > examples/fr/registry.json
    python3 examples/fr/generate.py --count 100000 --seed 7 > /tmp/claims-100k.jsonl

Deterministic: the same --count and --seed give the same bytes (standard library only, one
random.Random, no iteration over sets). The claims are for the members and providers of the
registry this script also prints (--registry), with service dates in 2024-2026 and a realistic mix:
GP and specialist visits (sectors 1, 2 and 3, in and out of the care pathway, long-term illness,
maternity), pharmacy claims with several medicines, nurse and physiotherapy series that reach the
deductible caps, optics (class A, class B, a second pair too early), dental care and crowns,
hospital stays with daily charges and heavy acts, patient transport; third-party payment and
reimbursement; a few cancellations of earlier claims; and a few deliberately bad messages (a
date that does not exist, an unknown member, an unknown act, a negative amount, a claim filed
after the time limit, a duplicate) to show rejected decisions.
"""

import argparse
import datetime as dt
import json
import random
import sys

FIRST_DAY = dt.date(2024, 1, 2)
LAST_DAY = dt.date(2026, 5, 31)
BOTH = ["compulsory", "supplementary"]

# ------------------------------------------------------------------------------------------------
# Registry: 40 members in 22 households, 24 providers
# ------------------------------------------------------------------------------------------------

# (member number, household, birth date, ald, product or None, notes)
MEMBERS = [
    (1, 1, "1982-04-11", False, "CONFORT", ""),
    (2, 1, "1984-09-23", False, "CONFORT", ""),
    (3, 1, "2012-06-02", False, "CONFORT", "child"),
    (4, 1, "2008-01-17", False, "CONFORT", "teen: 18 on 2026-01-17"),
    (5, 2, "1957-02-28", True, "ESSENTIEL", "ald"),
    (6, 3, "1993-07-08", False, "INTEGRAL", "maternity 2025"),
    (7, 3, "1990-11-30", False, "INTEGRAL", ""),
    (8, 4, "1948-05-05", True, "CONFORT", "ald"),
    (9, 4, "1950-03-14", False, "CONFORT", ""),
    (10, 5, "1975-12-01", False, "ESSENTIEL", ""),
    (11, 5, "2015-03-22", False, "ESSENTIEL", "child"),
    (12, 6, "1988-08-19", False, None, "compulsory only"),
    (13, 7, "1969-10-10", True, "INTEGRAL", "ald"),
    (14, 8, "1999-01-25", False, "ESSENTIEL", ""),
    (15, 9, "1979-06-30", False, "CONFORT", ""),
    (16, 9, "1981-02-14", False, "CONFORT", "maternity 2024"),
    (17, 9, "2019-09-09", False, "CONFORT", "child"),
    (18, 10, "1960-04-04", False, "INTEGRAL", ""),
    (19, 11, "2001-12-12", False, "ESSENTIEL", ""),
    (20, 12, "1972-07-21", True, "ESSENTIEL", "ald"),
    (21, 12, "1974-03-03", False, "ESSENTIEL", ""),
    (22, 12, "2009-05-18", False, "ESSENTIEL", "teen"),
    (23, 13, "1986-11-11", False, "CONFORT", ""),
    (24, 14, "1995-02-02", False, None, "compulsory only"),
    (25, 15, "1966-09-27", False, "INTEGRAL", ""),
    (26, 15, "1968-01-08", True, "INTEGRAL", "ald"),
    (27, 16, "1991-05-29", False, "CONFORT", ""),
    (28, 16, "2017-10-01", False, "CONFORT", "child"),
    (29, 16, "2021-02-20", False, "CONFORT", "child"),
    (30, 17, "1953-08-15", True, "CONFORT", "ald"),
    (31, 18, "1984-12-24", False, "ESSENTIEL", ""),
    (32, 19, "1977-03-19", False, "INTEGRAL", ""),
    (33, 19, "2011-07-07", False, "INTEGRAL", "child"),
    (34, 20, "1998-06-16", False, "CONFORT", "maternity 2025"),
    (35, 20, "1997-04-01", False, "CONFORT", ""),
    (36, 21, "1963-10-31", False, "ESSENTIEL", ""),
    (37, 21, "1962-01-13", False, "ESSENTIEL", ""),
    (38, 22, "1989-09-02", False, "CONFORT", "product from 2025-01-01, waiting until 2025-03-31"),
    (39, 22, "1987-04-26", False, "ESSENTIEL", "compulsory cover ends 2025-09-30"),
    (40, 6, "2014-11-05", False, None, "child, compulsory only"),
]

# Maternity periods (pregnancy and birth stay) of the members marked "maternity".
MATERNITY = {6: (dt.date(2025, 2, 1), dt.date(2025, 9, 20)), 16: (dt.date(2024, 3, 1), dt.date(2024, 10, 5)),
             34: (dt.date(2025, 6, 1), dt.date(2026, 1, 10))}


# Copies of the 40 members above (--members): copy k of member n is member n + 40k, in household
# h + 22k, with the same birth date, cover and story. 1 (the default) is the registry above.
COPIES = 1


def archetype(number):
    """The member of the table above that member `number` is a copy of."""
    return (number - 1) % len(MEMBERS) + 1


def member_id(number):
    return f"M-{number:06d}"


def registry():
    members = []
    households = max(household for _, household, _, _, _, _ in MEMBERS)
    copies = [(number + len(MEMBERS) * copy, household + households * copy, birth, ald, product)
              for copy in range(COPIES) for number, household, birth, ald, product, _ in MEMBERS]
    for number, household, birth, ald, product in copies:
        rg_to = "2025-09-30" if archetype(number) == 39 else None
        coverages = [{"scheme": "compulsory", "plan": "RG", "from": "2015-01-01", "to": rg_to}]
        if product:
            start, waiting = "2020-01-01", None
            if archetype(number) == 38:
                start, waiting = "2025-01-01", "2025-03-31"
            coverages.append({"scheme": "supplementary", "plan": product, "from": start, "to": rg_to,
                              "waiting_until": waiting, "suspended": [], "unpaid_months": []})
        members.append({"member_id": member_id(number), "household_id": f"H-{household:04d}", "birth_date": birth,
                        "attributes": {"ald": ald}, "coverages": coverages})
    return {"members": members, "providers": [dict(provider) for provider in PROVIDERS]}


def _provider(provider_id, agreement, specialty, sector=None, optam=None, to=None, **extra):
    attributes = {"specialty": specialty}
    if sector is not None:
        attributes["sector"] = sector
    if optam is not None:
        attributes["optam"] = optam
    attributes.update(extra)
    # "guest" is the demo gateway: RabbitMQ's default user, which `claimctl submit` connects as
    # on a development broker. A real registry names each provider's own broker user(s).
    return {"provider_id": provider_id, "agreement": agreement, "from": "2010-01-01", "to": to,
            "attributes": attributes, "submitters": ["guest"]}


PROVIDERS = [
    _provider("P-GP-0001", "fr-medecins", "gp", 1, False),
    _provider("P-GP-0002", "fr-medecins", "gp", 1, False),
    _provider("P-GP-0003", "fr-medecins", "gp", 1, True),
    _provider("P-GP-0004", "fr-medecins", "gp", 2, True),
    _provider("P-GP-0005", None, "gp", 3, False),
    _provider("P-SPE-0001", "fr-medecins", "specialist", 1, False, discipline="cardiology"),
    _provider("P-SPE-0002", "fr-medecins", "specialist", 2, True, discipline="dermatology"),
    _provider("P-SPE-0003", "fr-medecins", "specialist", 2, False, discipline="ophthalmology"),
    _provider("P-SPE-0004", None, "specialist", 3, False, discipline="psychiatry"),
    _provider("P-SPE-0005", "fr-medecins", "specialist", 2, True, to="2025-06-30", discipline="gynaecology"),
    _provider("P-PHA-0001", "fr-pharmacies", "pharmacy"),
    _provider("P-PHA-0002", "fr-pharmacies", "pharmacy"),
    _provider("P-PHA-0003", "fr-pharmacies", "pharmacy"),
    _provider("P-NUR-0001", "fr-auxiliaires", "nurse"),
    _provider("P-NUR-0002", "fr-auxiliaires", "nurse"),
    _provider("P-PHY-0001", "fr-auxiliaires", "physio"),
    _provider("P-DEN-0001", "fr-dentistes", "dentist"),
    _provider("P-DEN-0002", "fr-dentistes", "dentist"),
    _provider("P-OPT-0001", "fr-optique", "optician"),
    _provider("P-OPT-0002", "fr-optique", "optician"),
    _provider("P-HOS-0001", "fr-hopitaux", "hospital", status="public"),
    _provider("P-HOS-0002", "fr-hopitaux", "hospital", status="private"),
    _provider("P-TRP-0001", "fr-transports", "transport"),
    _provider("P-TRP-0002", "fr-transports", "transport"),
]

PROVIDER_BY_ID = {provider["provider_id"]: provider for provider in PROVIDERS}
GPS = ["P-GP-0001", "P-GP-0001", "P-GP-0002", "P-GP-0002", "P-GP-0003", "P-GP-0004", "P-GP-0005"]
SPECIALISTS = ["P-SPE-0001", "P-SPE-0002", "P-SPE-0002", "P-SPE-0003", "P-SPE-0004", "P-SPE-0005"]


# ------------------------------------------------------------------------------------------------
# Claims
# ------------------------------------------------------------------------------------------------

def g_fee(day):
    if day >= dt.date(2024, 12, 22):
        return 3000
    if day >= dt.date(2023, 12, 22):
        return 2650
    return 2500


class Generator:
    def __init__(self, seed):
        self.random = random.Random(seed)
        self.seen = set()  # duplicate fingerprints: (member, provider, date, act, charged)
        self.claims = []   # (submitted_on, order, message)
        self.single_visits = []  # one-line GP visits, candidates for a duplicate

    # -- helpers ---------------------------------------------------------------------------------

    def day(self, start=FIRST_DAY, end=LAST_DAY):
        return start + dt.timedelta(days=self.random.randint(0, (end - start).days))

    def age(self, number, day):
        birth = dt.date.fromisoformat(MEMBERS[archetype(number) - 1][2])
        return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))

    def pick_member(self):
        return self.random.randint(1, len(MEMBERS) * COPIES)

    def member_day(self, number):
        end = dt.date(2025, 9, 30) if archetype(number) == 39 and self.random.random() < 0.9 else LAST_DAY
        return self.day(FIRST_DAY, end)

    def third_party(self, kind):
        roll = self.random.random()
        if kind == "pharmacy" or kind == "hospital":
            return list(BOTH) if roll < 0.8 else (["compulsory"] if roll < 0.9 else [])
        if kind == "auxiliary":
            return list(BOTH) if roll < 0.4 else (["compulsory"] if roll < 0.7 else [])
        return list(BOTH) if roll < 0.2 else (["compulsory"] if roll < 0.3 else [])

    def fresh(self, number, provider, day, act, charged):
        """The charged amount, nudged if the line would duplicate one already generated."""
        for _ in range(50):
            key = (number, provider, day.isoformat(), act, charged)
            if key not in self.seen:
                self.seen.add(key)
                return charged
            charged += 1
        return charged

    def line(self, number, provider, act, day, quantity, charged, attributes=None):
        charged = self.fresh(number, provider, day, act, charged)
        return {"act": act, "service_date": day.isoformat(), "quantity": quantity, "charged": charged,
                "attributes": attributes or {}}

    def add(self, number, provider, lines, third_party, delay=None, submitted=None):
        for index, line in enumerate(lines, 1):
            line_number = {"line": index}
            line_number.update(line)
            lines[index - 1] = line_number
        if submitted is None:
            last = max(dt.date.fromisoformat(line["service_date"]) for line in lines)
            if delay is None:
                delay = self.random.choice([0, 0, 1, 2, 3, 5, 7, 10, 14, 21, 30, 45])
            submitted = last + dt.timedelta(days=delay)
        message = {"schema": "claim/v1", "claim_id": None, "provider_id": provider,
                   "member_id": member_id(number) if isinstance(number, int) else number,
                   "submitted_on": submitted.isoformat(), "currency": "EUR",
                   "third_party_payment": third_party, "lines": lines}
        self.claims.append((submitted.isoformat(), len(self.claims), message))
        if len(lines) == 1 and lines[0]["act"] == "G" and isinstance(number, int) and _is_date(lines[0]["service_date"]):
            self.single_visits.append(message)
        return message

    def pathway(self, number, day):
        attributes = {"care_pathway": "out" if self.random.random() < 0.06 else "in"}
        if MEMBERS[archetype(number) - 1][3] and self.random.random() < 0.6:
            attributes["condition_related"] = True
        if archetype(number) in MATERNITY:
            start, end = MATERNITY[archetype(number)]
            if start <= day <= end and self.random.random() < 0.7:
                attributes["maternity"] = True
        return attributes

    # -- kinds of claims -------------------------------------------------------------------------

    def gp_visit(self, number):
        provider = self.random.choice(GPS)
        day = self.member_day(number)
        sector = PROVIDER_BY_ID[provider]["attributes"]["sector"]
        charged = g_fee(day)
        if sector == 2:
            charged += self.random.choice([0, 500, 1000, 1500])
        elif sector == 3:
            charged = self.random.choice([4000, 5000, 6000])
        lines = [self.line(number, provider, "G", day, 1, charged, self.pathway(number, day))]
        self.add(number, provider, lines, self.third_party("doctor"))

    def specialist_visit(self, number):
        provider = self.random.choice(SPECIALISTS)
        day = self.member_day(number)
        if provider == "P-SPE-0005" and day > dt.date(2025, 6, 30) and self.random.random() < 0.75:
            # Mostly the members know the gynaecologist left the agreement on 2025-06-30.
            provider = self.random.choice(SPECIALISTS[:-1])
        attributes = PROVIDER_BY_ID[provider]["attributes"]
        if attributes["sector"] == 1:
            charged = 3150
        elif attributes["sector"] == 3:
            charged = self.random.choice([7000, 8000, 10000, 12000])
        elif attributes["optam"]:
            charged = self.random.choice([3150, 4000, 4500, 5000, 6000])
        else:
            charged = self.random.choice([5000, 6000, 7000, 8000, 9000])
        lines = [self.line(number, provider, "CS", day, 1, charged, self.pathway(number, day))]
        self.add(number, provider, lines, self.third_party("doctor"))

    def pharmacy(self, number):
        provider = self.random.choice(["P-PHA-0001", "P-PHA-0002", "P-PHA-0003"])
        day = self.member_day(number)
        prices = {"PH1": (1500, 9000), "PH7": (250, 2500), "PH4": (200, 1200), "PH2": (200, 900)}
        codes = self.random.sample(["PH7", "PH7", "PH4", "PH1", "PH2"], self.random.randint(1, 4))
        lines = []
        for code in codes:
            low, high = prices[code]
            quantity = self.random.choice([1, 1, 1, 2, 3])
            price = self.random.randint(low // 10, high // 10) * 10
            attributes = {}
            if MEMBERS[archetype(number) - 1][3] and self.random.random() < 0.6:
                attributes["condition_related"] = True
            lines.append(self.line(number, provider, code, day, quantity, price * quantity, attributes))
        self.add(number, provider, lines, self.third_party("pharmacy"))

    def nurse_series(self, number):
        """Daily nurse visits: several acts a day for one to four weeks, one claim."""
        provider = self.random.choice(["P-NUR-0001", "P-NUR-0002"])
        start = self.member_day(number)
        days = self.random.randint(5, 28)
        per_act = self.random.choice([315, 473, 630, 945, 1200])
        lines = []
        for offset in range(days):
            day = start + dt.timedelta(days=offset)
            if day > LAST_DAY:
                break
            quantity = self.random.choice([1, 2, 3, 5])
            attributes = {"condition_related": True} if MEMBERS[archetype(number) - 1][3] else {}
            lines.append(self.line(number, provider, "AMI", day, quantity, per_act * quantity, attributes))
        self.add(number, provider, lines, self.third_party("auxiliary"))

    def physio_series(self, number):
        provider = "P-PHY-0001"
        start = self.member_day(number)
        lines = []
        day = start
        for session in range(self.random.randint(4, 12)):
            if session:
                day += dt.timedelta(days=self.random.choice([2, 3, 4]))
            if day > LAST_DAY:
                break
            lines.append(self.line(number, provider, "AMK", day, 1, self.random.choice([1613, 1720, 2150]), {}))
        self.add(number, provider, lines, self.third_party("auxiliary"))

    def optics(self, number, day=None, optical_class=None):
        provider = self.random.choice(["P-OPT-0001", "P-OPT-0002"])
        day = day or self.member_day(number)
        optical_class = optical_class or ("A" if self.random.random() < 0.35 else "B")
        if optical_class == "A":
            frame, lenses = self.random.choice([2500, 3000]), self.random.choice([4000, 6000, 9000])
        else:
            frame = self.random.randint(60, 250) * 100
            lenses = self.random.randint(80, 450) * 100
        lines = [
            self.line(number, provider, "FRAME", day, 1, frame, {"optical_class": optical_class, "optical_item": "frame"}),
            self.line(number, provider, "LENS", day, 2, lenses, {"optical_class": optical_class, "optical_item": "lens"}),
        ]
        self.add(number, provider, lines, self.third_party("optics"))
        return day

    def dental(self, number):
        provider = self.random.choice(["P-DEN-0001", "P-DEN-0002"])
        day = self.member_day(number)
        roll = self.random.random()
        if roll < 0.45:
            lines = [self.line(number, provider, "HBJD001", day, 1, 2892, {})]
        elif roll < 0.75:
            lines = [self.line(number, provider, "HBLD634", day, 1, self.random.choice([45000, 50000]),
                               {"no_cost_basket": True})]
        else:
            lines = [self.line(number, provider, "HBLD634", day, 1, self.random.randint(55, 95) * 1000, {})]
        self.add(number, provider, lines, self.third_party("dental"))

    def hospital_stay(self, number, start=None, maternity=False):
        provider = self.random.choice(["P-HOS-0001", "P-HOS-0002"])
        start = start or self.member_day(number)
        days = self.random.randint(1, 8)
        end = start + dt.timedelta(days=days - 1)
        ghs = {"end_date": end.isoformat()}
        fj = {"end_date": end.isoformat()}
        if maternity:
            ghs["maternity"] = fj["maternity"] = True
        elif self.random.random() < 0.45:
            ghs["heavy_act"] = True
        if MEMBERS[archetype(number) - 1][3] and not maternity and self.random.random() < 0.5:
            ghs["condition_related"] = True
        stay_price = self.random.randint(150, 900) * 1000
        daily = sum(2300 if start + dt.timedelta(days=d) >= dt.date(2026, 3, 1) else 2000 for d in range(days))
        lines = [self.line(number, provider, "GHS", start, 1, stay_price, ghs),
                 self.line(number, provider, "FJ", start, days, daily, fj)]
        product = MEMBERS[archetype(number) - 1][4]
        self.add(number, provider, lines, list(BOTH) if product else ["compulsory"],
                 delay=days + self.random.randint(1, 20))

    def transport(self, number):
        provider = self.random.choice(["P-TRP-0001", "P-TRP-0002"])
        day = self.member_day(number)
        if self.random.random() < 0.7:
            trips = self.random.choice([1, 2, 2, 4])
            lines = [self.line(number, provider, "VSL", day, trips, trips * self.random.randint(25, 80) * 100, {})]
        else:
            lines = [self.line(number, provider, "AMB", day, 1, self.random.randint(150, 400) * 100, {})]
        if MEMBERS[archetype(number) - 1][3]:
            lines[0]["attributes"]["condition_related"] = True
        self.add(number, provider, lines, self.third_party("transport"))

    # -- the file --------------------------------------------------------------------------------

    KINDS = [("gp", 30), ("specialist", 11), ("pharmacy", 27), ("nurse", 4), ("physio", 3),
             ("optics", 5), ("dental", 7), ("hospital", 4), ("transport", 3)]

    def regular(self):
        total = sum(weight for _, weight in self.KINDS)
        roll = self.random.randint(1, total)
        for kind, weight in self.KINDS:
            roll -= weight
            if roll <= 0:
                break
        number = self.pick_member()
        {"gp": self.gp_visit, "specialist": self.specialist_visit, "pharmacy": self.pharmacy,
         "nurse": self.nurse_series, "physio": self.physio_series, "optics": self.optics,
         "dental": self.dental, "hospital": self.hospital_stay, "transport": self.transport}[kind](number)

    def scripted(self):
        """Claims every file has, whatever its size: the stories the examples are meant to show."""
        # Maternity: births of the members marked "maternity".
        for number, (_, birth) in MATERNITY.items():
            self.hospital_stay(number, start=birth, maternity=True)
        # A long nurse series for a member in long-term illness: the deductible caps are reached.
        self.nurse_series(5)
        self.nurse_series(20)
        # A second class B pair within two years: the product pays 0 (PR-119).
        first = self.optics(15, day=dt.date(2024, 9, 12), optical_class="B")
        self.optics(15, day=first + dt.timedelta(days=400), optical_class="B")
        # A stay across the 2026-03-01 change of the daily hospital charge.
        self.hospital_stay(18, start=dt.date(2026, 2, 25))

    def invalid(self, count):
        """Deliberately bad messages: each gives a rejected (or partial) decision."""
        makers = [self.bad_date, self.unknown_member, self.unknown_act, self.negative_amount,
                  self.too_late, self.duplicate]
        for index in range(count):
            makers[index % len(makers)]()

    def bad_date(self):
        lines = [{"act": "G", "service_date": "2025-02-30", "quantity": 1, "charged": 3000,
                  "attributes": {"care_pathway": "in"}}]
        self.add(1, "P-GP-0001", lines, [], submitted=self.day(dt.date(2025, 3, 1), dt.date(2025, 3, 31)))

    def unknown_member(self):
        day = self.day()
        lines = [self.line("M-999999", "P-GP-0002", "G", day, 1, g_fee(day), {"care_pathway": "in"})]
        self.add("M-999999", "P-GP-0002", lines, [])

    def unknown_act(self):
        number = self.pick_member()
        day = self.member_day(number)
        lines = [self.line(number, "P-GP-0001", "G", day, 1, g_fee(day), {"care_pathway": "in"}),
                 self.line(number, "P-GP-0001", "GX", day, 1, 1500, {})]
        self.add(number, "P-GP-0001", lines, [])

    def negative_amount(self):
        number = self.pick_member()
        day = self.member_day(number)
        lines = [{"act": "PH7", "service_date": day.isoformat(), "quantity": 1, "charged": -500, "attributes": {}}]
        self.add(number, "P-PHA-0001", lines, [])

    def too_late(self):
        # Care in January 2024: the time limit ends on 2026-03-31 (2 years from 2024-04-01).
        number = self.pick_member()
        day = self.day(dt.date(2024, 1, 2), dt.date(2024, 1, 31))
        lines = [self.line(number, "P-GP-0002", "G", day, 1, g_fee(day), {"care_pathway": "in"})]
        self.add(number, "P-GP-0002", lines, [], submitted=dt.date(2026, 4, 2) + dt.timedelta(days=self.random.randint(0, 40)))

    def duplicate(self):
        # The same visit sent again under another claim id.
        if not self.single_visits:
            return
        original = self.random.choice(self.single_visits)
        copy = json.loads(json.dumps(original))
        copy["_duplicate"] = True
        submitted = dt.date.fromisoformat(original["submitted_on"]) + dt.timedelta(days=self.random.randint(3, 30))
        copy["submitted_on"] = submitted.isoformat()
        self.claims.append((copy["submitted_on"], len(self.claims), copy))

    def messages(self, count):
        specials = max(1, count // 60)
        self.scripted()
        while len(self.claims) < count - 2 * specials:
            self.regular()
        self.invalid(specials)
        ordered = [message for _, _, message in sorted(self.claims, key=lambda item: (item[0], item[1]))]
        for index, message in enumerate(ordered, 1):
            message["claim_id"] = f"C-{index:06d}"
        # Cancellations: a provider takes back an earlier, valid claim a few messages later.
        duplicates = [message.pop("_duplicate", False) for message in ordered]
        candidates = [index for index, message in enumerate(ordered)
                      if message["member_id"] != "M-999999" and not duplicates[index]
                      and message["provider_id"].startswith(("P-GP", "P-SPE", "P-PHA"))
                      and all(_is_date(line["service_date"]) and line["charged"] > 0 for line in message["lines"])]
        chosen = sorted(self.random.sample(candidates, min(specials, len(candidates))))
        after = {}
        for index in chosen:
            original = ordered[index]
            cancellation = {"schema": "cancellation/v1", "provider_id": original["provider_id"],
                            "claim_id": original["claim_id"],
                            "reason": self.random.choice(["billed in error", "wrong patient", "act not performed"])}
            position = min(len(ordered) - 1, index + self.random.randint(1, 15))
            after.setdefault(position, []).append(cancellation)
        output = []
        for index, message in enumerate(ordered):
            output.append(message)
            output.extend(after.get(index, []))
        return output


def _is_date(text):
    try:
        dt.date.fromisoformat(text)
        return True
    except ValueError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=360, help="number of messages (claims and cancellations)")
    parser.add_argument("--seed", type=int, default=2025, help="random seed")
    parser.add_argument("--registry", action="store_true", help="print the registry instead of the claims")
    parser.add_argument("--members", type=int, default=len(MEMBERS),
                        help=f"members, a multiple of {len(MEMBERS)}: copies of the {len(MEMBERS)} members (default)")
    arguments = parser.parse_args()
    if arguments.members < len(MEMBERS) or arguments.members % len(MEMBERS):
        parser.error(f"--members must be a positive multiple of {len(MEMBERS)}, got {arguments.members}")
    global COPIES
    COPIES = arguments.members // len(MEMBERS)
    out = sys.stdout
    if arguments.registry:
        json.dump(registry(), out, indent=2)
        out.write("\n")
        return
    for message in Generator(arguments.seed).messages(arguments.count):
        out.write(json.dumps(message, separators=(",", ":")))
        out.write("\n")


if __name__ == "__main__":
    main()
