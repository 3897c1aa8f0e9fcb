"""The real server's error shape and the texts its remote commands produce.

FirecREST v2 answers every error as
`{"errorType": "error", "message": ..., "causedBy": null, "data": null, "user": ...}`
(src/lib/models/apis/api_response_model.py); Slurm command failures become
500 "Unexpected Slurm command response. exit_status:N std_err:..." and file
commands "Remote process failed with exit status:N and error message:..."
with a status picked from the stderr text (base_command_error_handling.py).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered with the real server's status, text and shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "error",
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.data = data
        self.headers = headers or {}


def error_body(message: str, user: str | None, error_type: str = "error", data: Any = None) -> dict[str, Any]:
    return {"errorType": error_type, "message": message, "causedBy": None, "data": data, "user": user}


def slurm_error(stderr: str, exit_status: int = 1) -> ApiError:
    """What the real server answers when an sbatch/scancel call fails."""
    return ApiError(500, f"Unexpected Slurm command response. exit_status:{exit_status} std_err:{stderr}")


def remote_error(stderr: str, exit_status: int = 1) -> ApiError:
    """A failed file command: the status follows the stderr text, as on the real server."""
    message = f"Remote process failed with exit status:{exit_status}"
    if stderr:
        message += f" and error message:{stderr.strip()}"
    if exit_status == 124:
        return ApiError(408, message)
    for needle, status in (
        ("No such file or directory", 404),
        ("Permission denied", 403),
        ("Operation not permitted", 403),
        ("File exists", 400),
        ("invalid user", 400),
    ):
        if needle in stderr:
            return ApiError(status, message)
    return ApiError(500, message)


def validation_error(location: str, name: str, message: str) -> ApiError:
    """A request the real server's pydantic models reject: 400 with errorType "validation"."""
    return ApiError(
        400,
        f"1 validation error: {location}.{name}: {message}",
        error_type="validation",
        data={"fields": [{"location": location, "name": name, "message": message}]},
    )


#: Answered when a command's output reaches the SSH read buffer (max_ops_file_size).
OUTPUT_LIMIT = ApiError(413, "Command output exceeded buffer limit.")
