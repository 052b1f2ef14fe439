"""Our side of the benchmark, on the same PostgreSQL as openIMIS: the embedded mode
(`claimctl adjudicate`, no server) and the real queue path (`claimctl worker` consuming what
`claimctl submit --wait` publishes), each run on a fresh database so no claim is a repeat.

    python ours_bench.py INPUT_DIR OUT.json RUNS

INPUT_DIR holds what ours.py wrote. Needs CLAIMCTL (path to the release binary), PG_ADMIN_URL
(postgres://user@host:port, no database) and AMQP_URL.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid

import pika

import scenario as sc

HERE = os.path.dirname(os.path.abspath(__file__))
PACK = os.path.join(HERE, "pack")
CLAIMCTL = os.environ.get("CLAIMCTL", "claimctl")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def psql(admin_url, sql):
    subprocess.run(["psql", admin_url + "/postgres", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"))


def fresh_database(admin_url, name, registry):
    psql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(admin_url, f'CREATE DATABASE "{name}"')
    env = dict(os.environ, DATABASE_URL=f"{admin_url}/{name}")
    subprocess.run([CLAIMCTL, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([CLAIMCTL, "registry", "import", "--rules", PACK, registry], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return env


class Worker:
    """`claimctl worker` in the background on its own queue prefix, stopped with SIGTERM."""

    def __init__(self, env, prefix, port, log_path):
        self.env = dict(env, CLAIMS_PREFIX=prefix)
        self.port = port
        self.log = open(log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen([CLAIMCTL, "worker", "--rules", PACK, "--prefix", prefix,
                                         "--metrics", f"127.0.0.1:{port}"], env=self.env,
                                        stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited with {self.process.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the worker was not healthy within 60 s; see {log_path}")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def embedded(input_dir, out_dir, runs):
    registry = os.path.join(input_dir, "registry.json")
    result = {}
    for name in ("all", "2-line", "10-line"):
        claims = os.path.join(input_dir, f"claims-{name}.jsonl")
        count = sum(1 for _ in open(claims, encoding="utf-8"))
        seconds = []
        for _ in range(runs):
            out = os.path.join(out_dir, f"ours-embedded-{name}.jsonl")
            with open(out, "w", encoding="utf-8") as f:
                t0 = time.perf_counter()
                subprocess.run([CLAIMCTL, "adjudicate", "--rules", PACK, "--registry", registry, claims],
                               stdout=f, stderr=subprocess.DEVNULL, check=True)
                seconds.append(time.perf_counter() - t0)
        median = statistics.median(seconds)
        result[name] = {"claims": count, "runs_seconds": seconds, "median_seconds": median,
                        "claims_per_second": count / median}
    return result


def remove_topology(prefix):
    """Deletes what the worker declared under `prefix` (names as in claims-worker's
    `Topology::with_prefix`), so that runs leave no queues behind in the broker."""
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
    channel = connection.channel()
    for queue in ["claims.submit", "claims.dead"]:
        channel.queue_delete(queue=prefix + queue)
    for exchange in ["claims", "claims.decisions", "claims.payments", "claims.dlx"]:
        channel.exchange_delete(exchange=prefix + exchange)
    connection.close()


def queue_throughput(input_dir, out_dir, admin_url, run):
    """Burst: every claim of a shape published at once, wall time until the last decision."""
    env = fresh_database(admin_url, f"oibench_ours_{run}", os.path.join(input_dir, "registry.json"))
    prefix = f"oibench-{os.getpid()}-{run}-"
    worker = Worker(env, prefix, 19464 + run, os.path.join(out_dir, f"worker-{run}.log"))
    shapes = {}
    try:
        for name in [s["shape"] for s in sc.load()["claims"]]:
            claims = os.path.join(input_dir, f"claims-{name}.jsonl")
            count = sum(1 for _ in open(claims, encoding="utf-8"))
            out = os.path.join(out_dir, f"ours-worker-{name}.jsonl")
            with open(out, "w", encoding="utf-8") as f:
                t0 = time.perf_counter()
                subprocess.run([CLAIMCTL, "submit", "--wait", "--prefix", prefix, claims], env=env, stdout=f,
                               check=True)
                seconds = time.perf_counter() - t0
            shapes[name] = {"claims": count, "seconds": seconds, "claims_per_second": count / seconds}
    finally:
        worker.stop()
        remove_topology(prefix)
        psql(admin_url, f'DROP DATABASE IF EXISTS "oibench_ours_{run}" WITH (FORCE)')
    with open(os.path.join(out_dir, "ours-worker-all.jsonl"), "w", encoding="utf-8") as f:
        for name in shapes:
            with open(os.path.join(out_dir, f"ours-worker-{name}.jsonl"), encoding="utf-8") as part:
                f.write(part.read())
    return shapes


def queue_latency(input_dir, out_dir, admin_url, run):
    """Closed loop, one claim in flight: publish (with confirm), wait for its decision, next. The
    counterpart of openIMIS's per-claim time, with the broker round trips included (a lone claim
    does not wait for company: the worker's batches wait only while another is being decided)."""
    env = fresh_database(admin_url, f"oibench_lat_{run}", os.path.join(input_dir, "registry.json"))
    prefix = f"oibench-lat-{os.getpid()}-{run}-"
    worker = Worker(env, prefix, 19564 + run, os.path.join(out_dir, f"worker-latency-{run}.log"))
    per_shape = {}
    try:
        connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
        channel = connection.channel()
        channel.confirm_delivery()
        reply_queue = channel.queue_declare(queue="", exclusive=True, auto_delete=True,
                                            arguments={"x-queue-type": "classic"}).method.queue
        with open(os.path.join(input_dir, "claims-all.jsonl"), encoding="utf-8") as f:
            messages = [line.strip() for line in f if line.strip()]
        shapes = [c["shape"] for c in sc.claims(sc.load())]
        for body, shape in zip(messages, shapes):
            claim = json.loads(body)
            correlation = str(uuid.uuid4())
            t0 = time.perf_counter()
            channel.basic_publish(
                exchange=prefix + "claims", routing_key="claim", body=body.encode(),
                properties=pika.BasicProperties(
                    delivery_mode=2, content_type="application/json", correlation_id=correlation,
                    reply_to=reply_queue, message_id=f"{claim['provider_id']}:{claim['claim_id']}",
                    headers={"timestamp_in_ms": int(time.time() * 1000)}))
            for _method, properties, _body in channel.consume(reply_queue, auto_ack=True, inactivity_timeout=30):
                if properties is None:
                    raise RuntimeError(f"no decision for {claim['claim_id']} within 30 s")
                if properties.correlation_id == correlation:
                    break
            per_shape.setdefault(shape, []).append(time.perf_counter() - t0)
        channel.cancel()
        connection.close()
    finally:
        worker.stop()
        remove_topology(prefix)
        psql(admin_url, f'DROP DATABASE IF EXISTS "oibench_lat_{run}" WITH (FORCE)')
    return {shape: {"claims": len(s), "claims_per_second_one_in_flight": len(s) / sum(s),
                    "p50_ms": 1000 * statistics.median(s), "p95_ms": 1000 * percentile(s, 0.95),
                    "p99_ms": 1000 * percentile(s, 0.99)} for shape, s in per_shape.items()}


def main(input_dir, out_path, runs):
    admin_url = os.environ["PG_ADMIN_URL"]
    out_dir = os.path.dirname(os.path.abspath(out_path))
    result = {"embedded": embedded(input_dir, out_dir, runs), "queue_runs": [], "latency_runs": []}
    for run in range(runs):
        result["queue_runs"].append(queue_throughput(input_dir, out_dir, admin_url, run))
        print(f"ours queue run {run + 1}: " + "; ".join(
            f"{k} {v['claims_per_second']:.0f} claims/s" for k, v in result["queue_runs"][-1].items()), flush=True)
    for run in range(runs):
        result["latency_runs"].append(queue_latency(input_dir, out_dir, admin_url, run))
        print(f"ours latency run {run + 1}: " + "; ".join(
            f"{k} p50 {v['p50_ms']:.1f} ms p99 {v['p99_ms']:.1f} ms" for k, v in result["latency_runs"][-1].items()),
            flush=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
