"""produce.py - the compose file's sample producer: registers
schemas/customers-value.avsc with the Schema Registry (subject
customers-value) and produces synthetic customers (scripts/demo_produce.py's
generator) to `customers` in Confluent framing, COUNT at a time every
INTERVAL seconds. The data is made up; nothing here is real personal data.

Env: BOOTSTRAP (kafka:9092), REGISTRY (http://schema-registry:8081),
TOPIC (customers), COUNT (100), INTERVAL (10; 0 = produce once and exit).
"""
import json
import os
import random
import sys
import time
import urllib.request

sys.path.insert(0, "/app/scripts")
import demo_produce  # noqa: E402

BOOTSTRAP = os.environ.get("BOOTSTRAP", "kafka:9092")
REGISTRY = os.environ.get("REGISTRY", "http://schema-registry:8081").rstrip("/")
TOPIC = os.environ.get("TOPIC", "customers")
COUNT = int(os.environ.get("COUNT", "100"))
INTERVAL = float(os.environ.get("INTERVAL", "10"))


def register(schema_text, subject):
    body = json.dumps({"schema": schema_text}).encode()
    req = urllib.request.Request(
        f"{REGISTRY}/subjects/{subject}/versions", data=body, method="POST",
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    for attempt in range(60):
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.load(r)["id"]
        except OSError as e:
            print(f"produce: registry not ready ({e}); retrying", flush=True)
            time.sleep(2)
    raise SystemExit("produce: the schema registry did not answer")


def main():
    with open(demo_produce.SCHEMA_PATH) as f:
        schema_text = f.read()
    schema_id = register(schema_text, f"{TOPIC}-value")
    parsed = demo_produce.load_schema()
    rng = random.Random()
    n = 0
    while True:
        batch = []
        for _ in range(COUNT):
            c = demo_produce.customer(rng, n)
            batch.append((c["customer_id"].encode(),
                          demo_produce.frame(schema_id, parsed, c)))
            n += 1
        demo_produce.produce(BOOTSTRAP, TOPIC, batch)
        print(f"produce: {n} customers so far (schema id {schema_id})", flush=True)
        if INTERVAL <= 0:
            return
        time.sleep(INTERVAL)


if __name__ == "__main__":
    main()
