"""Counts the responses in a HAR file (an HTTP archive, as schemathesis writes one).

Usage: python3 har_counts.py FILE
Prints "TOTAL SERVER_ERRORS TOO_MANY_REQUESTS" on one line, and every 5xx (or unanswered) exchange (method,
URL, status) on stderr, so a failing fuzz run shows what to reproduce.
"""

import json
import sys


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        entries = json.load(f)["log"]["entries"]
    total = server_errors = too_many = 0
    for entry in entries:
        status = entry["response"]["status"]
        total += 1
        # 0: no response at all (the connection failed), which is no better than a 5xx.
        if status == 0 or 500 <= status <= 599:
            server_errors += 1
            request = entry["request"]
            print(f"5xx: {request['method']} {request['url']} -> {status}", file=sys.stderr)
        elif status == 429:
            too_many += 1
    print(total, server_errors, too_many)
    return 0


if __name__ == "__main__":
    sys.exit(main())
