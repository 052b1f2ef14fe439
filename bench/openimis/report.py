"""Puts the openIMIS runs, our runs and the gate together: medians, the ratio ours / openIMIS,
written to results/latest.json and printed.

    python report.py WORK_DIR RESULT.json
"""

import glob
import json
import os
import platform
import statistics
import subprocess
import sys


def median_of(runs, shape, key):
    return statistics.median(run[shape][key] for run in runs)


def main(work_dir, out_path):
    oi_runs = []
    for path in sorted(glob.glob(os.path.join(work_dir, "oi-time-*.json"))):
        with open(path, encoding="utf-8") as f:
            oi_runs.append(json.load(f)["shapes"])
    with open(os.path.join(work_dir, "ours.json"), encoding="utf-8") as f:
        ours = json.load(f)
    with open(os.path.join(work_dir, "gate.json"), encoding="utf-8") as f:
        gate = json.load(f)
    with open(os.path.join(work_dir, "oi-gate.json"), encoding="utf-8") as f:
        oi_gate = json.load(f)
    shapes = {}
    for shape in oi_runs[0]:
        oi = {key: median_of(oi_runs, shape, key) for key in ("claims_per_second", "p50_ms", "p95_ms", "p99_ms")}
        oi["sql_statements_submit_process"] = oi_runs[0][shape]["sql_statements"]
        oi["sql_statements_one_step"] = oi_gate["sql_statements_one_step"][shape]
        queue = {"claims_per_second": median_of(ours["queue_runs"], shape, "claims_per_second")}
        queue.update({key: median_of(ours["latency_runs"], shape, key)
                      for key in ("p50_ms", "p95_ms", "p99_ms", "claims_per_second_one_in_flight")})
        embedded = ours["embedded"][shape]["claims_per_second"]
        shapes[shape] = {
            "claims": oi_runs[0][shape]["claims"],
            "openimis": oi,
            "ours_queue": queue,
            "ours_embedded_claims_per_second": embedded,
            "ratio_queue_over_openimis": queue["claims_per_second"] / oi["claims_per_second"],
            "ratio_one_in_flight_over_openimis": queue["claims_per_second_one_in_flight"] / oi["claims_per_second"],
            "ratio_embedded_over_openimis": embedded / oi["claims_per_second"],
        }
    load = os.getloadavg()
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_at_report": load,
                    "postgres": subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()},
        "settings": {"synchronous_commit": os.environ.get("OI_SYNCHRONOUS_COMMIT", "on"),
                     "openimis_runs": len(oi_runs), "ours_runs": len(ours["queue_runs"])},
        "gate": {"claims": gate["claims"], "lines": gate["lines"], "lines_over_ceiling": gate["lines_over_ceiling"],
                 "line_differences": len(gate["line_differences"]),
                 "claim_total_differences": len(gate["claim_total_differences"])},
        "shapes": shapes,
        "raw": {"openimis": oi_runs, "ours": ours},
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print()
    print(f"gate: {gate['lines']} lines, {len(gate['line_differences'])} differences "
          f"({gate['lines_over_ceiling']} lines cut by the ceiling)")
    print(f"{'shape':8} {'openIMIS/s':>10} {'p50 ms':>7} {'p95':>6} {'p99':>6} | {'ours queue/s':>12} "
          f"{'1-in-flight/s':>13} {'p50 ms':>7} {'p95':>6} {'p99':>6} | {'embedded/s':>10} | ratio queue (1-in-flight)")
    for shape, s in shapes.items():
        oi, q = s["openimis"], s["ours_queue"]
        print(f"{shape:8} {oi['claims_per_second']:10.2f} {oi['p50_ms']:7.0f} {oi['p95_ms']:6.0f} {oi['p99_ms']:6.0f} | "
              f"{q['claims_per_second']:12.0f} {q['claims_per_second_one_in_flight']:13.0f} {q['p50_ms']:7.1f} "
              f"{q['p95_ms']:6.1f} {q['p99_ms']:6.1f} | {s['ours_embedded_claims_per_second']:10.0f} | "
              f"{s['ratio_queue_over_openimis']:.0f}x ({s['ratio_one_in_flight_over_openimis']:.0f}x)")
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs; "
          f"written to {out_path}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
