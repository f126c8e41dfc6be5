"""``lb-operator simulator`` as a user runs it: a real process, spoken to over HTTP, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import urllib.error
from pathlib import Path

import aiohttp
import pytest

from lb_operator.testing.processes import SimulatorProcess, wait_for

DEADLINE = 30.0


def command() -> list[str]:
    """The installed ``lb-operator`` script next to this interpreter, else the same entry point via ``-c``."""
    script = Path(sys.executable).with_name("lb-operator")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from lb_operator.cli import main; sys.exit(main())"]


async def test_the_simulator_command_serves_http_until_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    process = await asyncio.create_subprocess_exec(
        *command(),
        "simulator",
        "--port", "0",
        "--latency", "0.01",
        "--lb-ready-delay", "0.05",
        "--token", "cli-token",
        "--state", str(state),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(DEADLINE):
            banner = (await process.stdout.readline()).decode()
        match = re.search(r"at (http://\S+/v1) ", banner)
        assert match, banner
        url = match.group(1)

        headers = {"Authorization": "Bearer cli-token"}
        async with aiohttp.ClientSession(headers=headers) as http:
            body = {"name": "from-cli", "flavor": "lb-standard", "zone": "rma1"}
            async with http.post(f"{url}/load-balancers", json=body) as response:
                assert response.status == 201
                lb = await response.json()
            async with http.get(f"{url.removesuffix('/v1')}/debug/stats") as response:
                stats = await response.json()
        assert (stats["mutations"], stats["objects"]["load_balancers"]) == (1, 1)

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE):
            returncode = await process.wait()
        assert returncode == 0
        saved = json.loads(state.read_text())
        assert [record["uuid"] for record in saved["objects"]["load_balancers"]] == [lb["uuid"]]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_simulator_command_refuses_impossible_settings() -> None:
    process = await asyncio.create_subprocess_exec(
        *command(),
        "simulator",
        "--fault-500", "0.7",
        "--fault-hang", "0.7",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(DEADLINE):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    assert "fault_500 + fault_hang + fault_lost must not exceed 1" in stderr.decode()


def test_faults_on_chosen_methods_from_the_command_line_and_set_while_running(tmp_path: Path) -> None:
    sim = SimulatorProcess(
        tmp_path / "simulator.log", latency=0, lb_ready_delay=0, fault_500=1, fault_methods=["DELETE"]
    )
    try:
        made = sim.request("POST", "load-balancers", {"name": "web", "flavor": "lb-standard", "zone": "lpg1"})
        lb = f"load-balancers/{made['uuid']}"
        wait_for("the load balancer to run", lambda: sim.request("GET", lb)["status"] == "running", DEADLINE)

        with pytest.raises(urllib.error.HTTPError) as failed:
            sim.request("DELETE", lb)
        assert failed.value.code == 500
        assert sim.set_faults(fault_500=0) == {
            "fault_500": 0.0,
            "fault_hang": 0.0,
            "fault_lost": 0.0,
            "hang_seconds": 30.0,
            "methods": ["DELETE"],
        }
        assert sim.request("DELETE", lb) is None  # 204
        with pytest.raises(urllib.error.HTTPError) as refused:
            sim.set_faults(methods=["FETCH"])
        assert refused.value.code == 400
        assert sim.stats()["objects"]["load_balancers"] == 0
    finally:
        sim.stop()
