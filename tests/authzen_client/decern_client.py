"""One Access Evaluation through decern's AuthZEN 1.0 client (a client
written by others), for tests/authzen.rs.

Usage: decern_client.py BASE_URL SUBJECT ACTION RESOURCE CONTEXT
(each entity as JSON). Prints the client's Decision as JSON, or
`error STATUS BODY` when the PDP answered an error.
"""

import json
import sys

from decern import Client, DecernError


def main() -> None:
    base, subject, action, resource, context = sys.argv[1:6]
    client = Client(base_url=base, timeout=10)
    try:
        d = client.evaluate(
            json.loads(subject),
            json.loads(action),
            json.loads(resource),
            json.loads(context),
        )
    except DecernError as e:
        print(f"error {e.status_code} {e.body}")
        return
    print(json.dumps({"allowed": d.allowed, "reasons": d.reasons, "context": d.context}))


if __name__ == "__main__":
    main()
