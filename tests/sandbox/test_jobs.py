"""Jobs run for real, with Slurm's states, fields and errors as recorded from a real server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from firecrest.FirecrestException import FirecrestException

from sandbox.firecrest.server import run_sandbox
from sandbox.firecrest.state import RECORDED_UID
from tests.sandbox.conftest import (
    configure,
    control_jobs,
    job_state,
    keys,
    make_client,
    pid_alive,
    wait_done,
    wait_for,
    wait_state,
)

#: The user's uid as the sandbox reports it (a FirecREST user is never root).
UID = str(os.getuid() or RECORDED_UID)


def error_of(excinfo: pytest.ExceptionInfo[FirecrestException]) -> tuple[int, dict]:
    response = excinfo.value.responses[-1]
    return response.status_code, response.json()


def control_job(box, job_id: str) -> dict:
    return next(j for j in control_jobs(box) if j["jobId"] == job_id)


def test_lifecycle_pending_running_completed(client, box, workdir, real_responses):
    configure(box, pending_seconds=0.6)
    script = (
        "#!/bin/bash\n#SBATCH --job-name=ok\n#SBATCH --time=00:02:00\n"
        "echo hello $FOO\necho err >&2\necho id=$SLURM_JOB_ID name=$SLURM_JOB_NAME pwd=$(pwd)\nsleep 0.4\n"
    )
    submitted = client.submit("cluster", working_dir=workdir, script_str=script, env_vars={"FOO": "bar"})
    assert set(submitted) == {"jobId"} and isinstance(submitted["jobId"], str)
    job_id = submitted["jobId"]
    pending = job_state(client, job_id)
    assert pending["status"] == {
        "state": "PENDING",
        "stateReason": "None",
        "exitCode": None,
        "interruptSignal": None,
    }
    assert keys(pending) == keys(real_responses["info_immediately"]["body"]["jobs"][0])
    assert (pending["tasks"], pending["nodes"], pending["time"]["start"]) == ([], "", None)
    running = wait_state(client, job_id, "RUNNING")
    assert keys(running) == keys(real_responses["info_running"]["body"]["jobs"][0])
    assert running["status"]["exitCode"] == 0 and running["tasks"][0]["id"] == f"{job_id}.batch"
    final = wait_done(client, job_id)
    assert keys(final) == keys(real_responses["info_final_ok"]["body"]["jobs"][0])
    assert (final["status"]["state"], final["status"]["exitCode"], final["name"]) == ("COMPLETED", 0, "ok")
    assert final["time"]["limit"] == 120 and final["workingDirectory"] == workdir
    assert final["time"]["end"] >= final["time"]["start"]
    metadata = client.job_metadata("cluster", job_id)[0]
    assert keys(metadata) == keys(real_responses["metadata_final_ok"]["body"]["jobs"][0])
    output = f"{workdir}/slurm-{job_id}.out"
    assert metadata == {
        "jobId": job_id,
        "script": script,
        "standardInput": "/dev/null",
        "standardOutput": output,
        "standardError": output,
    }
    assert Path(output).read_text() == f"hello bar\nerr\nid={job_id} name=ok pwd={workdir}\n"


def test_ids_increase_and_are_strings(client, workdir):
    first = client.submit("cluster", working_dir=workdir, script_str="#!/bin/bash\ntrue\n")["jobId"]
    second = client.submit("cluster", working_dir=workdir, script_str="#!/bin/bash\ntrue\n")["jobId"]
    assert int(second) > int(first)


def test_exit_3_fails_with_exit_code_3_and_default_name(client, workdir, real_responses):
    job_id = client.submit("cluster", working_dir=workdir, script_str="#!/bin/bash\necho bad\nexit 3\n")[
        "jobId"
    ]
    job = wait_done(client, job_id)
    assert keys(job) == keys(real_responses["info_final_fail"]["body"]["jobs"][0])
    assert (job["status"]["state"], job["status"]["exitCode"], job["name"]) == ("FAILED", 3, "sbatch")
    assert job["tasks"][0]["status"]["exitCode"] == 3
    assert job["time"]["limit"] == 1800


def test_time_limit_gives_timeout_with_exit_code_0(client, box, workdir, real_responses):
    script = "#!/bin/bash\n#SBATCH --time=0:01\necho start\nsleep 30\necho never\n"
    job_id = client.submit("cluster", working_dir=workdir, script_str=script)["jobId"]
    job = wait_done(client, job_id)
    assert keys(job) == keys(real_responses["info_final_timeout"]["body"]["jobs"][0])
    assert (job["status"]["state"], job["status"]["exitCode"]) == ("TIMEOUT", 0)
    assert job["time"]["limit"] == 1
    assert (
        job["tasks"][0]["status"]["state"] == "CANCELLED"
        and job["tasks"][0]["status"]["interruptSignal"] == 15
    )
    pid = control_job(box, job_id)["pid"]
    wait_for(lambda: not pid_alive(pid), 5)
    assert Path(f"{workdir}/slurm-{job_id}.out").read_text() == "start\n"


def test_cancel_pending_job(client, box, workdir, real_responses):
    configure(box, pending_seconds=30)
    job_id = client.submit("cluster", working_dir=workdir, script_str="#!/bin/bash\ntouch ran\n")["jobId"]
    assert client.cancel_job("cluster", job_id) == {}
    job = job_state(client, job_id)
    assert keys(job) == keys(real_responses["info_final_cancel"]["body"]["jobs"][0])
    assert job["status"]["state"] == f"CANCELLED by {UID}"
    assert (job["tasks"], job["nodes"], job["allocationNodes"]) == ([], "None assigned", 0)
    configure(box, pending_seconds=0)
    time.sleep(0.2)
    assert not Path(workdir, "ran").exists()


def test_cancel_running_job_kills_its_process_group(client, box, workdir):
    # The job ignores SIGTERM and leaves a child behind: SIGKILL after the grace ends both.
    script = "#!/bin/bash\ntrap '' TERM\nsleep 60 &\necho $! > child.pid\nwhile true; do sleep 0.1; done\n"
    job_id = client.submit("cluster", working_dir=workdir, script_str=script)["jobId"]
    wait_state(client, job_id, "RUNNING")
    child = int(
        wait_for(lambda: Path(workdir, "child.pid").exists() and Path(workdir, "child.pid").read_text())
    )
    pid = control_job(box, job_id)["pid"]
    client.cancel_job("cluster", job_id)
    assert job_state(client, job_id)["status"]["state"] == f"CANCELLED by {UID}"
    wait_for(lambda: not pid_alive(pid) and not pid_alive(child), 5)
    job = job_state(client, job_id)
    assert job["status"]["state"] == f"CANCELLED by {UID}"
    assert job["tasks"][0]["status"]["state"] == "CANCELLED"


def test_cancel_finished_and_unknown_jobs_answer_500_with_scancel_text(client, workdir, real_responses):
    job_id = client.submit("cluster", working_dir=workdir, script_str="#!/bin/bash\ntrue\n")["jobId"]
    wait_done(client, job_id)
    with pytest.raises(FirecrestException) as finished:
        client.cancel_job("cluster", job_id)
    expected = real_responses["cancel_finished"]["body"]
    assert error_of(finished) == (
        500,
        {**expected, "message": expected["message"].replace(" 10", f" {job_id}")},
    )
    with pytest.raises(FirecrestException) as unknown:
        client.cancel_job("cluster", "999999")
    assert error_of(unknown) == (500, real_responses["cancel_unknown_job"]["body"])


def test_unknown_and_malformed_job_ids(client, api, real_responses):
    with pytest.raises(FirecrestException) as unknown:
        client.job_info("cluster", "424242")
    assert error_of(unknown) == (404, real_responses["unknown_job"]["body"])
    with pytest.raises(FirecrestException) as metadata:
        client.job_metadata("cluster", "424242")
    assert error_of(metadata) == (404, real_responses["unknown_job"]["body"])
    malformed = api.get("/compute/cluster/jobs/1-2")
    assert malformed.status_code == 400 and malformed.json()["errorType"] == "validation"


def test_sbatch_output_error_and_job_name_are_honoured(client, workdir):
    script = (
        "#!/bin/bash\n\n# a comment\n#SBATCH --job-name=named\n#SBATCH -o logs-%j-%x.out  # trailing\n"
        "#SBATCH --error=err-%x.log\necho out\necho err >&2\n#SBATCH --job-name=too-late\n"
    )
    Path(workdir).mkdir(exist_ok=True)
    job_id = client.submit("cluster", working_dir=workdir, script_str=script)["jobId"]
    job = wait_done(client, job_id)
    assert (job["name"], job["status"]["state"]) == ("named", "COMPLETED")
    metadata = client.job_metadata("cluster", job_id)[0]
    assert metadata["standardOutput"] == f"{workdir}/logs-{job_id}-named.out"
    assert metadata["standardError"] == f"{workdir}/err-named.log"
    assert Path(metadata["standardOutput"]).read_text() == "out\n"
    assert Path(metadata["standardError"]).read_text() == "err\n"


def test_request_fields_win_over_directives(api, workdir):
    body = {
        "job": {
            "workingDirectory": workdir,
            "name": "from-request",
            "account": "proj42",
            "standardOutput": "req.out",
            "script": "#!/bin/bash\n#SBATCH --job-name=from-script\n#SBATCH --output=script.out\necho hi\n",
        }
    }
    job_id = api.post("/compute/cluster/jobs", json=body).json()["jobId"]

    def ended() -> dict | None:
        job = api.get(f"/compute/cluster/jobs/{job_id}").json()["jobs"][0]
        return job if job["time"]["end"] else None

    job = wait_for(ended)
    assert (job["name"], job["account"]) == ("from-request", "proj42")
    assert Path(workdir, "req.out").read_text() == "hi\n"
    assert not Path(workdir, "script.out").exists()


def test_env_vars_reach_the_job_and_default_env(client, workdir):
    script = (
        "#!/bin/bash\necho A=$A B=$B F7T=$F7T_version SECRET=${FIRECREST_CLIENT_SECRET:-none} HOME=$HOME\n"
    )
    job_id = client.submit(
        "cluster", working_dir=workdir, script_str=script, env_vars={"A": "1", "B": "two words"}
    )["jobId"]
    wait_done(client, job_id)
    home = str(Path(workdir).parent)
    assert (
        Path(workdir, f"slurm-{job_id}.out").read_text() == f"A=1 B=two words F7T= SECRET=none HOME={home}\n"
    )
    plain = client.submit("cluster", working_dir=workdir, script_str=script)["jobId"]
    wait_done(client, plain)
    assert Path(workdir, f"slurm-{plain}.out").read_text().startswith("A= B= F7T=v2.0.0 ")


def test_job_in_missing_or_outside_directory_is_accepted_then_fails(client, home, tmp_path):
    for place in (f"{home}/does-not-exist", str(tmp_path)):
        job_id = client.submit("cluster", working_dir=place, script_str="#!/bin/bash\ntouch escaped\n")[
            "jobId"
        ]
        job = wait_done(client, job_id)
        assert (job["status"]["state"], job["status"]["exitCode"]) == ("FAILED", 1)
    assert not (tmp_path / "escaped").exists()
    assert not any(tmp_path.iterdir())


def test_sbatch_refusals(api, workdir):
    no_shebang = api.post(
        "/compute/cluster/jobs", json={"job": {"script": "echo hi\n", "working_directory": workdir}}
    )
    assert no_shebang.status_code == 500
    assert no_shebang.json()["message"].startswith(
        "Unexpected Slurm command response. exit_status:1 std_err:"
        "sbatch: error: This does not look like a batch script."
    )
    bad_time = api.post(
        "/compute/cluster/jobs",
        json={"job": {"script": "#!/bin/bash\n#SBATCH --time=soon\n", "working_directory": workdir}},
    )
    assert (bad_time.status_code, bad_time.json()["message"]) == (
        500,
        "Unexpected Slurm command response. exit_status:1 std_err:"
        "sbatch: error: Invalid --time specification\n",
    )
    missing = api.post("/compute/cluster/jobs", json={"job": {"script": "#!/bin/bash\n"}})
    assert missing.status_code == 400 and missing.json()["errorType"] == "validation"


def test_submit_from_a_remote_script_path(client, workdir):
    Path(workdir, "job.sh").write_text("#!/bin/bash\n#SBATCH -J remote\necho from file\n")
    job_id = client.submit("cluster", working_dir=workdir, script_remote_path=f"{workdir}/job.sh")["jobId"]
    assert wait_done(client, job_id)["name"] == "remote"
    with pytest.raises(FirecrestException) as missing:
        client.submit("cluster", working_dir=workdir, script_remote_path="/etc/passwd")
    assert error_of(missing)[1]["message"].endswith("sbatch: error: Unable to open file /etc/passwd\n")


def test_invisible_for_a_while_after_submit(client, api, box, workdir, real_responses):
    configure(box, job_invisible_seconds=1.5)
    job_id = client.submit("cluster", working_dir=workdir, script_str="#!/bin/bash\ntrue\n")["jobId"]
    hidden = api.get(f"/compute/cluster/jobs/{job_id}")
    assert (hidden.status_code, hidden.json()) == (404, real_responses["unknown_job"]["body"])
    assert api.get(f"/compute/cluster/jobs/{job_id}/metadata").status_code == 404
    assert job_id not in [j["jobId"] for j in client.job_info("cluster")]
    assert job_id in [j["jobId"] for j in control_jobs(box)]  # the controls see it at once
    shown = wait_for(lambda: api.get(f"/compute/cluster/jobs/{job_id}").status_code == 200, 5)
    assert shown
    assert wait_done(client, job_id)["status"]["state"] == "COMPLETED"


def test_metadata_vanishes_after_the_ttl_while_info_stays(client, api, box, workdir, real_responses):
    configure(box, metadata_ttl=0.3)
    job_id = client.submit("cluster", working_dir=workdir, script_str="#!/bin/bash\ntrue\n")["jobId"]
    wait_done(client, job_id)

    def metadata_gone() -> httpx.Response | None:
        response = api.get(f"/compute/cluster/jobs/{job_id}/metadata")
        return response if response.status_code != 200 else None

    gone = wait_for(metadata_gone, 5)
    assert (gone.status_code, gone.json()) == (404, real_responses["unknown_job"]["body"])
    assert job_state(client, job_id)["status"]["state"] == "COMPLETED"


def test_listing_filters_by_name_and_account(client, api, workdir):
    ids = []
    for name, account in (("alpha", "a1"), ("beta", "a1"), ("alpha", "a2")):
        body = {
            "job": {"workingDirectory": workdir, "name": name, "account": account, "script": "#!/bin/bash\n"}
        }
        ids.append(api.post("/compute/cluster/jobs", json=body).json()["jobId"])
    by_name = {j["jobId"] for j in client.job_info("cluster", name="alpha")}
    assert {ids[0], ids[2]} <= by_name and ids[1] not in by_name
    by_account = {j["jobId"] for j in client.job_info("cluster", account="a1")}
    assert {ids[0], ids[1]} <= by_account and ids[2] not in by_account
    assert ids[0] not in {j["jobId"] for j in client.job_info("daint")}
    assert api.get("/compute/cluster/jobs", params={"time_window": "2y"}).status_code == 400


def test_stopping_the_sandbox_kills_running_jobs(tmp_path):
    from sandbox.firecrest.config import SandboxConfig

    with run_sandbox(SandboxConfig(root=tmp_path / "fc", pending_seconds=0)) as handle:
        client = make_client(handle)
        home = str(handle.config.home("cluster"))
        job_id = client.submit("cluster", working_dir=home, script_str="#!/bin/bash\nsleep 60\n")["jobId"]
        wait_state(client, job_id, "RUNNING")
        pid = next(j["pid"] for j in httpx.get(f"{handle.url}/_sandbox/jobs").json()["jobs"])
        assert pid_alive(pid)
    assert not pid_alive(pid)
