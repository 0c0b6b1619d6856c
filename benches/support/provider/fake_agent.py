#!/usr/bin/env python3
"""An agent CLI that calls the mock provider ($MOCK_URL) once and answers as `claude -p
--output-format stream-json` does: a result object with a cost, or, for a 429, claude's
error result with `api_error_status` 429 and the provider's Retry-After in its message
(which orch reads as a retry-after). For benches/providers.sh."""
import time

STARTED = time.time()  # before the imports: how long they take is process start too

import json  # noqa: E402
import os
import re  # noqa: E402
import sys  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402

task = re.search(r"Task (\w+)\.", sys.stdin.read())
req = urllib.request.Request(os.environ["MOCK_URL"] + "/call", data=b"{}", method="POST",
                             headers={"X-Task": task.group(1) if task else "-",
                                      "X-Started": "%.4f" % STARTED})
try:
    with urllib.request.urlopen(req, timeout=600) as r:
        body = json.load(r)
    print(json.dumps({"type": "result", "subtype": "success", "is_error": False,
                      "result": body["text"], "session_id": "bench",
                      "total_cost_usd": body["cost_usd"]}))
except urllib.error.HTTPError as e:
    detail = e.read().decode(errors="replace")
    after = e.headers.get("Retry-After")
    message = f"API Error: {e.code} {detail}"
    if after:
        message += f" retry-after: {after}"
    print(json.dumps({"type": "result", "subtype": "error_during_execution", "is_error": True,
                      "result": message, "api_error_status": e.code,
                      "session_id": "bench", "total_cost_usd": 0}))
    sys.exit(1)
