"""`python -m fleet.emulator --port 8780 --db fleet.db`: the emulator as its own process."""

import argparse

from fleet.emulator.app import serve

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the fleet emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8780)
    parser.add_argument("--db", default="fleet-emulator.db")
    args = parser.parse_args()
    serve(args.host, args.port, args.db)
