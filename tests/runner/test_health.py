import copy

import pytest

from ci_runner.errors import InfrastructureError, UsageError
from ci_runner.health import describe_system


def systems(real):
    return copy.deepcopy(real["systems"]["body"]["systems"])


def test_reads_default_work_dir_and_transfer_limit(real_responses):
    info = describe_system("cluster-slurm-ssh", systems(real_responses), "http://f")
    assert info.default_work_dir == "/users"
    assert info.max_direct_transfer == 5242880


def test_unknown_system_lists_the_known_ones(real_responses):
    with pytest.raises(UsageError) as error:
        describe_system("daint", systems(real_responses), "http://f")
    assert "'daint' is not known" in error.value.message
    assert "cluster-slurm-ssh" in error.value.message


@pytest.mark.parametrize("service", ["scheduler", "filesystem"])
def test_unhealthy_service_is_named(real_responses, service):
    data = systems(real_responses)
    for entry in data[0]["servicesHealth"]:
        if entry["serviceType"] == service:
            entry["healthy"] = False
            entry["message"] = "slurmctld not responding"
    with pytest.raises(InfrastructureError) as error:
        describe_system("cluster-slurm-ssh", data, "http://f")
    assert f"{service} is unhealthy (slurmctld not responding)" in error.value.message
    assert "cluster-slurm-ssh" in error.value.message
    assert "Nothing was submitted" in error.value.message


def test_a_working_dir_must_be_on_a_served_file_system(real_responses):
    from ci_runner.health import check_working_dir

    info = describe_system("cluster-slurm-ssh", systems(real_responses), "http://f")
    check_working_dir(info, "/users/me/ci")
    check_working_dir(info, None)
    with pytest.raises(UsageError) as error:
        check_working_dir(info, "/etc/x")
    assert "working directory /etc/x is not on a file system" in error.value.message
    with pytest.raises(UsageError):
        check_working_dir(info, "/users-other/x")
