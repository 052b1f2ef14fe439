"""The openIMIS side: fixtures from scenario.json, the correctness run and the timed runs, all
through the openIMIS modules installed from PyPI (never vendored; AGPL-3.0).

    python oi_bench.py setup                 facility, price lists, product, insurees, policies
    python oi_bench.py gate OUT.json         enter every claim, process each in one step
                                             (processing_claim(is_process=True)), dump line values
    python oi_bench.py time OUT.json         enter every claim, then time submit + process per claim

Run with DJANGO_SETTINGS_MODULE=settings and the OI_DB_* variables (run.sh sets them).
"""

import datetime
import decimal
import json
import os
import statistics
import sys
import time

import django

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
django.setup()

from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

import scenario as sc  # noqa: E402
from claim.models import Claim, ClaimDedRem, ClaimItem, ClaimService  # noqa: E402
from claim.services import ClaimSubmitService, claim_create, processing_claim, update_sum_claims  # noqa: E402
from core.models import Language  # noqa: E402
from core.models.user import ClaimAdmin  # noqa: E402
from core.test_helpers import create_test_claim_admin, create_test_interactive_user  # noqa: E402
from insuree.models import Gender, Insuree  # noqa: E402
from insuree.test_helpers import create_test_insuree  # noqa: E402
from location.models import HealthFacility  # noqa: E402
from location.test_helpers import create_test_health_facility  # noqa: E402
from medical.models import Diagnosis, Item, Service  # noqa: E402
from medical.test_helpers import create_test_diagnosis, create_test_item, create_test_service  # noqa: E402
from medical_pricelist.test_helpers import add_item_to_hf_pricelist, add_service_to_hf_pricelist  # noqa: E402
from policy.test_helpers import create_test_policy2  # noqa: E402
from product.models import ProductItem  # noqa: E402
from product.test_helpers import create_test_product, create_test_product_item, create_test_product_service  # noqa: E402

USER_NAME = "oibench"
WARMUP_CHF = "W00000000"
WARMUP_CLAIMS = 10


def user():
    return create_test_interactive_user(username=USER_NAME)


def reference_rows():
    Language.objects.get_or_create(code="en", defaults={"name": "English", "sort_order": 1})
    for code, name in (("M", "Male"), ("F", "Female"), ("O", "Other")):
        Gender.objects.get_or_create(code=code, defaults={"gender": name, "sort_order": 1})


def setup():
    scenario = sc.load()
    year = scenario["year"]
    reference_rows()
    user()
    spec = scenario["facility"]
    facility = create_test_health_facility(
        custom_props={"code": spec["code"], "name": spec["name"], "level": spec["level"], "care_type": spec["care_type"]})
    create_test_claim_admin(custom_props={"code": "OIBCA", "health_facility": facility})
    create_test_diagnosis(custom_props={"code": "B54", "name": "Malaria"})
    product = create_test_product(custom_props={
        "code": scenario["product"]["code"], "name": scenario["product"]["name"][:100],
        "max_insuree": scenario["product"]["ceiling_per_insuree"],
        "date_from": f"{year - 1}-01-01", "date_to": f"{year + 10}-12-31"})
    for kind, entries in (("item", scenario["items"]), ("service", scenario["services"])):
        for entry in entries:
            terms = {"limitation_type": entry["limitation"], "limit_adult": entry["adult"], "limit_child": entry["child"],
                     "price_origin": ProductItem.ORIGIN_PRICELIST}
            overrule = {"price_overrule": entry["facility_price"]} if entry.get("facility_price") else None
            if kind == "item":
                item = create_test_item("D", custom_props={"code": entry["code"], "name": entry["name"], "price": entry["price"]})
                add_item_to_hf_pricelist(item, facility, custom_props=overrule)
                create_test_product_item(product, item, custom_props=terms)
            else:
                service = create_test_service(entry["category"], custom_props={
                    "code": entry["code"], "name": entry["name"], "price": entry["price"]})
                add_service_to_hf_pricelist(service, facility, custom_props=overrule)
                create_test_product_service(product, service, custom_props=terms)
    policy_dates = {"enroll_date": datetime.date(year, 1, 1), "start_date": datetime.date(year, 1, 1),
                    "effective_date": datetime.date(year, 1, 1), "expiry_date": datetime.date(year, 12, 31),
                    "validity_from": datetime.date(year, 1, 1)}
    people = [(p["chf_id"], p["birth_date"]) for p in sc.insurees(scenario)] + [(WARMUP_CHF, "1980-06-15")]
    for chf_id, birth_date in people:
        if Insuree.objects.filter(chf_id=chf_id, validity_to__isnull=True).exists():
            continue
        insuree = create_test_insuree(is_head=True, custom_props={"chf_id": chf_id, "dob": birth_date})
        create_test_policy2(product, insuree, custom_props=policy_dates)
    print(f"openIMIS fixtures: facility {facility.code}, product {product.code}, {len(people)} insurees with policies")


def clear_claims():
    with connection.cursor() as cursor:
        cursor.execute('TRUNCATE "tblClaimDedRem", "tblClaimItems", "tblClaimServices", "tblClaim" CASCADE')


def enter_claims(claims, the_user, chf_override=None):
    """Claims in status ENTERED, as the claim-entry screen or the FHIR create would leave them."""
    facility = HealthFacility.objects.get(code=sc.load()["facility"]["code"], validity_to__isnull=True)
    admin = ClaimAdmin.objects.get(code="OIBCA", validity_to__isnull=True)
    icd = Diagnosis.objects.get(code="B54", validity_to__isnull=True)
    insurees = {i.chf_id: i for i in Insuree.objects.filter(validity_to__isnull=True)}
    items = {i.code: i for i in Item.objects.filter(validity_to__isnull=True)}
    services = {s.code: s for s in Service.objects.filter(validity_to__isnull=True)}
    entered = []
    for claim in claims:
        day = datetime.date.fromisoformat(claim["date"])
        code = claim["code"] if chf_override is None else "W" + claim["code"][1:]
        record = claim_create({
            "code": code, "insuree": insurees[chf_override or claim["insuree"]["chf_id"]],
            "health_facility": facility, "admin": admin, "icd": icd, "date_from": day, "date_to": day,
            "date_claimed": day, "status": Claim.STATUS_ENTERED, "validity_from": day, "visit_type": "O",
        }, the_user)
        for line in claim["lines"]:
            model, field, register = ((ClaimItem, "item", items) if line["kind"] == "item"
                                      else (ClaimService, "service", services))
            extra = {"availability": True} if line["kind"] == "item" else {}
            model.objects.create(claim=record, **{field: register[line["code"]]}, qty_provided=line["quantity"],
                                 price_asked=line["unit_asked"], status=1, validity_from=day, audit_user_id=-1, **extra)
        update_sum_claims(record)
        entered.append(record)
    return entered


def as_number(value):
    if value is None:
        return None
    value = decimal.Decimal(value)
    return int(value) if value == value.to_integral_value() else float(value)


def dump(claims):
    """Line-level values in scenario order (items then services, as both sides number them)."""
    result = {}
    for claim in claims:
        record = Claim.objects.get(code=claim["code"], validity_to__isnull=True)
        lines = []
        for line in claim["lines"]:
            model, field = (ClaimItem, "item__code") if line["kind"] == "item" else (ClaimService, "service__code")
            detail = model.objects.get(claim=record, validity_to__isnull=True, **{field: line["code"]})
            lines.append({
                "code": line["code"], "status": detail.status, "rejection_reason": detail.rejection_reason,
                "qty": as_number(detail.qty_approved or detail.qty_provided),
                "price_adjusted": as_number(detail.price_adjusted),
                "deductable_amount": as_number(detail.deductable_amount),
                "exceed_ceiling_amount": as_number(detail.exceed_ceiling_amount),
                "remunerated_amount": as_number(detail.remunerated_amount),
                "limitation_value": as_number(detail.limitation_value),
            })
        dedrem = sum(d.rem_g or 0 for d in ClaimDedRem.objects.filter(claim=record))
        result[claim["code"]] = {"status": record.status, "approved": as_number(record.approved),
                                 "rem_g": as_number(dedrem), "lines": lines}
    return result


def gate(out_path):
    """One-step processing from ENTERED: in 1.11.0 only this path writes the line's remunerated and
    over-ceiling amounts (submit then process leaves them empty, peers.md 8.3)."""
    scenario = sc.load()
    claims = sc.claims(scenario)
    the_user = user()
    clear_claims()
    entered = enter_claims(claims, the_user)
    statements = {}
    for claim, record in zip(claims, entered):
        with transaction.atomic():
            if len(statements.setdefault(claim["shape"], [])) < 5:
                with CaptureQueriesContext(connection) as queries:
                    processing_claim(record, the_user, is_process=True)
                statements[claim["shape"]].append(len(queries))
            else:
                processing_claim(record, the_user, is_process=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"claims": dump(claims), "sql_statements_one_step": statements}, f, indent=1)
    print(f"openIMIS gate run: {len(claims)} claims processed in one step, values in {out_path}")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def timed(out_path):
    """What a claim costs through ClaimSubmitService.submit_claim (validation, product assignment,
    deductibles and ceilings) then processing_claim(is_process=True), one transaction per claim
    (a GraphQL mutation's unit), in one process, in scenario order."""
    scenario = sc.load()
    claims = sc.claims(scenario)
    the_user = user()
    service = ClaimSubmitService(the_user)
    # Warm-up on a separate insuree (imports, caches, connection), then a clean slate.
    clear_claims()
    for record in enter_claims(claims[:WARMUP_CLAIMS], the_user, chf_override=WARMUP_CHF):
        with transaction.atomic():
            service.submit_claim(record)
            processing_claim(record, the_user, is_process=True)
    clear_claims()
    entered = enter_claims(claims, the_user)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    per_shape = {}
    statements = {}
    started = time.perf_counter()
    for claim, record in zip(claims, entered):
        t0 = time.perf_counter()
        with transaction.atomic():
            if len(statements.setdefault(claim["shape"], [])) < 3:
                with CaptureQueriesContext(connection) as queries:
                    submitted, _errors = service.submit_claim(record)
                    processing_claim(submitted, the_user, is_process=True)
                statements[claim["shape"]].append(len(queries))
            else:
                submitted, _errors = service.submit_claim(record)
                processing_claim(submitted, the_user, is_process=True)
        per_shape.setdefault(claim["shape"], []).append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    shapes = {}
    for shape, seconds in per_shape.items():
        shapes[shape] = {
            "claims": len(seconds), "seconds": sum(seconds), "claims_per_second": len(seconds) / sum(seconds),
            "p50_ms": 1000 * statistics.median(seconds), "p95_ms": 1000 * percentile(seconds, 0.95),
            "p99_ms": 1000 * percentile(seconds, 0.99), "sql_statements": statements[shape],
        }
    result = {"claims": len(claims), "wall_seconds": wall, "claims_per_second": len(claims) / wall,
              "shapes": shapes, "values": dump(claims)}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"openIMIS timed run: {len(claims)} claims in {wall:.1f} s = {len(claims) / wall:.2f} claims/s; " + "; ".join(
        f"{shape} {s['claims_per_second']:.2f}/s p50 {s['p50_ms']:.0f} ms" for shape, s in shapes.items()))


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "setup" and len(sys.argv) == 2:
        setup()
    elif command == "gate" and len(sys.argv) == 3:
        gate(sys.argv[2])
    elif command == "time" and len(sys.argv) == 3:
        timed(sys.argv[2])
    else:
        sys.exit(__doc__)
