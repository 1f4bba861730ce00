"""`python -m fleet.emulator --port 8780 --db fleet.db`: the emulator as its own process, over
HTTPS with a local CA kept beside the database (see fleet/emulator/tls.py)."""

import argparse

from fleet.emulator.arm import RESOURCE_GROUP, SUBSCRIPTION
from fleet.emulator.server import serve
from fleet.emulator.tls import ca_file, ensure_certificates

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the fleet emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8780, help="HTTPS: ARM and /admin")
    parser.add_argument("--db", default="fleet-emulator.db")
    args = parser.parse_args()
    ensure_certificates(args.db, args.host)
    print(f"ARM endpoint:   https://{args.host}:{args.port}", flush=True)
    print(f"subscription:   {SUBSCRIPTION}", flush=True)
    print(f"resource group: {RESOURCE_GROUP}", flush=True)
    print(f"CA file:        {ca_file(args.db).resolve()}", flush=True)
    serve(args.host, args.port, args.db)
