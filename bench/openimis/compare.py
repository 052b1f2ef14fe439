"""Correctness gate: line by line, openIMIS's values against our decisions, for the rules both
engines express (price list, co-insurance or fixed amount per unit, ceiling per insuree).

    python compare.py gate OI_GATE.json OURS_DECISIONS.jsonl
        every line: adjusted value (price_adjusted x qty / eligible), remunerated (remunerated_amount
        / supplementary.paid), over-ceiling (exceed_ceiling_amount / pre-ceiling value - paid, with
        PR-119 on our line exactly when it is > 0), deductible (0 on both), line passed on both;
        and the claim totals (openIMIS approved, ClaimDedRem rem_g) against our sum, reported
        apart (peers.md 8.3: openIMIS's claim total has a known bug).
    python compare.py timed OI_TIMED.json OURS_DECISIONS.jsonl
        after a submit + process run (1.11.0 writes no line remunerated there): price_adjusted per
        line and ClaimDedRem rem_g per claim against ours.
    python compare.py same EMBEDDED.jsonl WORKER.jsonl
        the worker's decisions equal the embedded ones (lines, payments), claim by claim.

Exit status 0 when nothing differs, 1 otherwise; every difference is printed.
"""

import json
import sys

import scenario as sc


def read_decisions(path):
    with open(path, encoding="utf-8") as f:
        decisions = [json.loads(line) for line in f if line.strip()]
    return {d["claim_id"]: d for d in decisions}


def pre_ceiling(scenario, claim, line_number, eligible):
    """What the product would pay on the line before the ceiling, by the scenario's own terms."""
    line = claim["lines"][line_number - 1]
    entry = next(e for e in scenario["items"] + scenario["services"] if e["code"] == line["code"])
    limit = entry["child"] if claim["insuree"]["child"] else entry["adult"]
    if entry["limitation"] == "F":
        return min(eligible, limit * line["quantity"])
    value = eligible * limit
    return value // 100 + (1 if value % 100 * 2 >= 100 else 0)


def gate(oi_path, ours_path):
    scenario = sc.load()
    with open(oi_path, encoding="utf-8") as f:
        oi = json.load(f)["claims"]
    ours = read_decisions(ours_path)
    differences, lines_checked, over_ceiling_lines, claim_total_differences = [], 0, 0, []
    for claim in sc.claims(scenario):
        code = claim["code"]
        if code not in oi or code not in ours:
            differences.append(f"{code}: missing on {'openIMIS' if code not in oi else 'our side'}")
            continue
        theirs, mine = oi[code], ours[code]
        paid_total = 0
        for number, (their_line, my_line) in enumerate(zip(theirs["lines"], mine["lines"]), start=1):
            lines_checked += 1
            eligible = my_line["eligible"]
            paid = (my_line.get("supplementary") or {}).get("paid", 0)
            paid_total += paid
            my_over = pre_ceiling(scenario, claim, number, eligible) - paid
            flagged = any(r["group"] == "PR" and r["code"] == "119" for r in my_line.get("reasons", []))
            over_ceiling_lines += my_over > 0
            pairs = {
                "line passed": (their_line["status"] == 1 and their_line["rejection_reason"] == 0,
                                not my_line.get("denied", False)),
                "adjusted value": (their_line["price_adjusted"] * their_line["qty"], eligible),
                "remunerated": (their_line["remunerated_amount"], paid),
                "over ceiling": (their_line["exceed_ceiling_amount"], my_over),
                "deductible": (their_line["deductable_amount"] or 0, 0),
                "PR-119 iff over ceiling": (True, flagged == (my_over > 0)),
            }
            for name, (their_value, my_value) in pairs.items():
                if their_value != my_value:
                    differences.append(f"{code} line {number} {their_line['code']}: {name}: openIMIS {their_value}, ours {my_value}")
        if len(theirs["lines"]) != len(mine["lines"]):
            differences.append(f"{code}: {len(theirs['lines'])} lines on openIMIS, {len(mine['lines'])} on ours")
        for name in ("approved", "rem_g"):
            if theirs[name] != paid_total:
                claim_total_differences.append(f"{code}: openIMIS claim {name} {theirs[name]}, sum of our lines {paid_total}")
    print(f"gate: {len(oi)} claims, {lines_checked} lines compared field by field, "
          f"{over_ceiling_lines} lines cut by the ceiling; {len(differences)} line differences")
    for difference in differences:
        print("  DIFF " + difference)
    print(f"claim totals: {len(claim_total_differences)} differences (reported, not gated)")
    for difference in claim_total_differences[:20]:
        print("  " + difference)
    return {"claims": len(oi), "lines": lines_checked, "lines_over_ceiling": over_ceiling_lines,
            "line_differences": differences, "claim_total_differences": claim_total_differences}


def timed(oi_path, ours_path):
    scenario = sc.load()
    with open(oi_path, encoding="utf-8") as f:
        oi = json.load(f)["values"]
    ours = read_decisions(ours_path)
    differences, approved_differences = [], []
    for claim in sc.claims(scenario):
        code = claim["code"]
        theirs, mine = oi[code], ours[code]
        paid_total = sum((line.get("supplementary") or {}).get("paid", 0) for line in mine["lines"])
        if theirs["status"] != 16:
            differences.append(f"{code}: openIMIS status {theirs['status']}, expected 16 (valuated)")
        if theirs["rem_g"] != paid_total:
            differences.append(f"{code}: openIMIS ClaimDedRem rem_g {theirs['rem_g']}, sum of our lines {paid_total}")
        # At submit, openIMIS's claim `approved` is the sum of the passed lines' adjusted values.
        eligible_total = sum(line["eligible"] for line in mine["lines"])
        if theirs["approved"] != eligible_total:
            approved_differences.append(f"{code} ({claim['shape']}): openIMIS approved {theirs['approved']}, "
                                        f"sum of the adjusted line values {eligible_total}")
        for number, (their_line, my_line) in enumerate(zip(theirs["lines"], mine["lines"]), start=1):
            if their_line["price_adjusted"] * their_line["qty"] != my_line["eligible"]:
                differences.append(f"{code} line {number}: adjusted value openIMIS "
                                   f"{their_line['price_adjusted'] * their_line['qty']}, ours {my_line['eligible']}")
    print(f"timed-run check: {len(oi)} claims, {len(differences)} differences in status, rem_g per claim, adjusted values")
    for difference in differences:
        print("  DIFF " + difference)
    print(f"claim 'approved' (submit path, approved_amount): {len(approved_differences)} claims differ from the sum "
          f"of their adjusted line values (reported, not gated; peers.md 8.3)")
    for difference in approved_differences[:5]:
        print("  " + difference)
    return {"differences": differences, "approved_differences": len(approved_differences)}


def same(embedded_path, worker_path):
    embedded, worker = read_decisions(embedded_path), read_decisions(worker_path)
    differences = []
    for claim_id, decision in embedded.items():
        other = worker.get(claim_id)
        if other is None:
            differences.append(f"{claim_id}: no decision from the worker")
            continue
        for key in ("outcome", "lines", "payments"):
            if decision.get(key) != other.get(key):
                differences.append(f"{claim_id}: {key} differs between embedded and worker")
    print(f"worker vs embedded: {len(embedded)} claims, {len(differences)} differences")
    for difference in differences[:20]:
        print("  DIFF " + difference)
    return {"differences": differences}


if __name__ == "__main__":
    commands = {"gate": (gate, "line_differences"), "timed": (timed, "differences"), "same": (same, "differences")}
    if len(sys.argv) != 4 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    function, key = commands[sys.argv[1]]
    report = function(sys.argv[2], sys.argv[3])
    sys.exit(1 if report[key] else 0)
