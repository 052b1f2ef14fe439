"""Expands scenario.json into the exact insurees and claims both engines see.

Pure Python, no Django: build.py (openIMIS fixtures) and ours.py (our pack parameters, registry,
claims) both call `expand`, so the two sides cannot drift apart.
"""

import datetime
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path=None):
    with open(path or os.path.join(HERE, "scenario.json"), encoding="utf-8") as f:
        return json.load(f)


def unit_price(entry):
    """The facility's price: its price-list overrule when set, else the register price."""
    return entry.get("facility_price") or entry["price"]


def insurees(scenario):
    spec = scenario["insurees"]
    result = []
    for index in range(spec["count"]):
        child = index % spec["every_nth_is_child"] == spec["every_nth_is_child"] - 1
        year = spec["child_birth_year"] if child else spec["adult_birth_year"]
        birth = datetime.date(year, index % 12 + 1, index % 28 + 1)
        result.append({"index": index, "chf_id": f"B{index:08d}", "member_id": f"M-OIB-{index:04d}",
                       "birth_date": birth.isoformat(), "child": child})
    return result


def claims(scenario):
    """Claims in processing order. Claim k belongs to insuree k mod M, on day first + k div M, so
    an insuree never has two claims on one day (our engine would deny a same-day repeat of the same
    act and amount as a duplicate; openIMIS has that check disabled)."""
    people = insurees(scenario)
    items, services = scenario["items"], scenario["services"]
    first = datetime.date.fromisoformat(scenario["first_service_date"])
    every = scenario["claimed_above_price_every_nth_line"]
    result = []
    line_counter = 0
    k = 0
    for shape in scenario["claims"]:
        for _ in range(shape["count"]):
            insuree = people[k % len(people)]
            day = first + datetime.timedelta(days=k // len(people))
            lines = []
            picks = [("item", items[(k + j) % len(items)], 1 + (k + j) % 3) for j in range(shape["items"])]
            picks += [("service", services[(3 * k + j) % len(services)], 1) for j in range(shape["services"])]
            for kind, entry, quantity in picks:
                line_counter += 1
                price = unit_price(entry)
                # Every n-th line is claimed 10 % above the price list: both engines pay on the list.
                asked = price + max(100, price // 1000 * 100) if line_counter % every == 0 else price
                lines.append({"kind": kind, "code": entry["code"], "quantity": quantity,
                              "unit_asked": asked, "unit_price": price})
            result.append({"index": k, "code": f"CB{k:06d}", "shape": shape["shape"], "insuree": insuree,
                           "date": day.isoformat(), "lines": lines})
            k += 1
    return result
