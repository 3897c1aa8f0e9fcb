"""The rows of issue 9 §7: requests sent to a real FirecREST v2 server and to the sandbox
answered differently; each test pins the real server's answer (see
data/firecrest-v2/README.md and real-responses.json)."""

from __future__ import annotations

import httpx

from tests.sandbox.conftest import configure, job_state, wait_done, wait_for, wait_state

SLURM_500 = "Unexpected Slurm command response. exit_status:1 std_err:"


def submit(api: httpx.Client, workdir: str, script: str | None, **fields: str) -> httpx.Response:
    job: dict[str, str] = {"workingDirectory": workdir, **fields}
    if script is not None:
        job["script"] = script
    return api.post("/compute/cluster/jobs", json={"job": job})


def test_unknown_sbatch_option_is_500_with_getopts_text(api, workdir):
    long_option = submit(api, workdir, "#!/bin/bash\n#SBATCH --frobnicate=3\ntrue\n")
    assert (long_option.status_code, long_option.json()["message"]) == (
        500,
        f"{SLURM_500}sbatch: unrecognized option '--frobnicate=3'\n"
        'Try "sbatch --help" for more information\n',
    )
    short_option = submit(api, workdir, "#!/bin/bash\n#SBATCH -Z\ntrue\n")
    assert short_option.status_code == 500
    assert "sbatch: invalid option -- 'Z'" in short_option.json()["message"]
    ambiguous = submit(api, workdir, "#!/bin/bash\n#SBATCH --ntasks-per 2\ntrue\n")
    assert ambiguous.status_code == 500 and "is ambiguous" in ambiguous.json()["message"]
    abbreviated = submit(api, workdir, "#!/bin/bash\n#SBATCH --job=short --ntasks 1\ntrue\n")
    assert abbreviated.status_code == 201  # getopt_long takes a unique prefix


def test_unknown_partition_is_500_invalid_partition(api, workdir):
    text = (
        f"{SLURM_500}sbatch: error: invalid partition specified: gpu-nope\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    by_field = submit(api, workdir, "#!/bin/bash\ntrue\n", partition="gpu-nope")
    assert (by_field.status_code, by_field.json()["message"]) == (500, text)
    by_directive = submit(api, workdir, "#!/bin/bash\n#SBATCH --partition=gpu-nope\ntrue\n")
    assert (by_directive.status_code, by_directive.json()["message"]) == (500, text)
    assert submit(api, workdir, "#!/bin/bash\ntrue\n", partition="debug").status_code == 201


def test_submit_without_a_script_is_408(api, workdir):
    for script in (None, ""):
        response = submit(api, workdir, script)
        assert (response.status_code, response.json()["message"]) == (
            408,
            "Command execution timeout limit exceeded.",
        )


def test_liveness_needs_no_token(box):
    response = httpx.get(f"{box.url}/status/liveness/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"healthcheckRuns", "lastUpdate"}
    assert set(body["healthcheckRuns"]) == {"cluster", "daint"} and isinstance(body["lastUpdate"], int)
    assert httpx.get(f"{box.url}/status/systems").status_code == 401  # the rest still needs one


def test_a_job_that_ended_within_a_second_may_show_the_placeholder(box, api, client, workdir):
    configure(box, placeholder_seconds=2)
    job_id = submit(api, workdir, "#!/bin/bash\ntrue\n", name="quick").json()["jobId"]
    job = wait_done(client, job_id)
    assert (job["name"], job["workingDirectory"], job["partition"]) == ("allocation", "", "")
    assert job["time"]["limit"] is None and job["status"]["state"] == "COMPLETED"
    listed = {j["jobId"]: j for j in client.job_info("cluster")}
    assert listed[job_id]["name"] == "allocation"
    assert job_id not in {j["jobId"] for j in client.job_info("cluster", name="quick")}  # sacct --name
    assert "true" in client.job_metadata("cluster", job_id)[0]["script"]  # scontrol still knows it
    wait_for(lambda: job_state(client, job_id)["name"] == "quick", 5)
    final = job_state(client, job_id)
    assert final["time"]["limit"] == 1800 and final["workingDirectory"] == workdir
    slow = submit(api, workdir, "#!/bin/bash\nsleep 1.2\n", name="slow").json()["jobId"]
    assert wait_done(client, slow)["name"] == "slow"  # only jobs under a second


def test_a_cancelled_job_reads_cancelled_by_its_users_uid(box, api, client, workdir, real_responses):
    uid = client.userinfo("cluster")["user"]["id"]
    assert uid != "0"  # a FirecREST user is never root
    running = submit(api, workdir, "#!/bin/bash\nsleep 30\n").json()["jobId"]
    wait_state(client, running, "RUNNING")
    client.cancel_job("cluster", running)
    job = client.job_info("cluster", running)[0]
    assert job["status"] == {
        "state": f"CANCELLED by {uid}",
        "stateReason": "None",
        "exitCode": 0,
        "interruptSignal": 0,
    }
    assert job["tasks"][0]["status"]["state"] == "CANCELLED"
    configure(box, pending_seconds=30)
    pending = submit(api, workdir, "#!/bin/bash\ntrue\n").json()["jobId"]
    client.cancel_job("cluster", pending)
    recorded = real_responses["info_final_cancel"]["body"]["jobs"][0]["status"]
    assert client.job_info("cluster", pending)[0]["status"] == {**recorded, "state": f"CANCELLED by {uid}"}


def test_204_answers_are_application_json(box, api, workdir):
    configure(box, pending_seconds=30)
    job_id = submit(api, workdir, "#!/bin/bash\ntrue\n").json()["jobId"]
    cancelled = api.delete(f"/compute/cluster/jobs/{job_id}")
    assert (cancelled.status_code, cancelled.headers["content-type"]) == (204, "application/json")
    uploaded = api.post(
        "/filesystem/cluster/ops/upload", params={"path": workdir}, files={"file": ("a.txt", b"x")}
    )
    assert (uploaded.status_code, uploaded.headers["content-type"]) == (204, "application/json")
    removed = api.delete("/filesystem/cluster/ops/rm", params={"path": f"{workdir}/a.txt"})
    assert (removed.status_code, removed.headers["content-type"]) == (204, "application/json")


def test_chmod_sets_numeric_modes_like_the_real_route(api, workdir):
    changed = api.put("/filesystem/cluster/ops/chmod", json={"path": workdir, "mode": "700"})
    assert changed.status_code == 200
    assert changed.json()["output"]["permissions"] == "rwx------"
    bad = api.put("/filesystem/cluster/ops/chmod", json={"path": workdir, "mode": "u+z9"})
    assert bad.status_code == 500 and "chmod: invalid mode: 'u+z9'" in bad.json()["message"]
    missing = api.put("/filesystem/cluster/ops/chmod", json={"path": f"{workdir}/nope", "mode": "600"})
    assert missing.status_code == 404


def test_scripted_faults_hit_the_next_matching_requests_only(box, api, workdir):
    control = f"{box.url}/_sandbox/faults"
    route = "POST /compute/{system}/jobs"
    assert httpx.post(control, json={"request": route, "faults": ["418"]}).status_code == 400
    queued = httpx.post(control, json={"request": route, "faults": ["502", "503-after-commit"]})
    assert queued.status_code == 200
    before = {j["jobId"] for j in httpx.get(f"{box.url}/_sandbox/jobs").json()["jobs"]}
    assert api.get("/status/systems").status_code == 200  # another route: untouched
    assert submit(api, workdir, "#!/bin/bash\ntrue\n").status_code == 502  # nothing created
    assert submit(api, workdir, "#!/bin/bash\ntrue\n").status_code == 503  # created, answer lost
    assert submit(api, workdir, "#!/bin/bash\ntrue\n").status_code == 201
    after = {j["jobId"] for j in httpx.get(f"{box.url}/_sandbox/jobs").json()["jobs"]}
    assert len(after - before) == 2
