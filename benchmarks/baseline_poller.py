"""The baseline: how published FirecREST CI examples follow a job.

Submit with pyfirecrest, sleep 10 s between status polls, print the whole
output file once at the end. Kept deliberately plain; it is what
`ci-runner` is measured against, not something to use.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from firecrest import ClientCredentialsAuth
from firecrest.v2 import Firecrest

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args()
    auth = ClientCredentialsAuth(
        os.environ["FIRECREST_CLIENT_ID"], os.environ["FIRECREST_CLIENT_SECRET"], os.environ["AUTH_TOKEN_URL"]
    )
    client = Firecrest(firecrest_url=os.environ["FIRECREST_URL"], authorization=auth)
    home = client.systems()[0]["fileSystems"][0]["path"]
    user = client.userinfo(args.system)["user"]["name"]
    workdir = f"{home}/{user}"
    job = client.submit(args.system, working_dir=workdir, script_str=f"#!/bin/bash\n{args.command}\n")
    job_id = job["jobId"]
    while True:
        time.sleep(args.interval)
        try:
            state = client.job_info(args.system, job_id)[0]["status"]["state"]
        except Exception:  # noqa: BLE001 - the examples ignore errors too
            continue
        if str(state).split()[0] in TERMINAL:
            break
    print(client.view(args.system, f"{workdir}/slurm-{job_id}.out"), end="")
    return 0 if state == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
