"""`make lab`: JupyterLab starts headless in the project's environment and serves the chapters."""

import json
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyterlab_serves_the_chapters(tmp_path):
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (requirements.txt)")
    port, token = free_port(), "ntprl-test"
    env = {"JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "HOME": str(tmp_path), "PATH": str(pathlib.Path(sys.executable).parent)}
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser",
                             f"--port={port}", "--ip=127.0.0.1", "--allow-root",
                             f"--IdentityProvider.token={token}",
                             f"--ServerApp.root_dir={ROOT}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, listing = time.time() + 60, None
        while time.time() < deadline and listing is None:
            try:
                with urllib.request.urlopen(f"{base}/api/contents/chapters?token={token}") as r:
                    listing = json.load(r)
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(proc.stderr.read().decode()[-2000:])
                time.sleep(0.5)
        assert listing is not None, "JupyterLab did not answer within 60 s"
        names = {c["name"] for c in listing["content"]}
        assert {p.name for p in (ROOT / "chapters").glob("0*.ipynb")} <= names
        with urllib.request.urlopen(f"{base}/lab?token={token}") as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
        with urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}") as r:
            assert "python3" in json.load(r)["kernelspecs"]  # the project's own Python
    finally:
        proc.terminate()
        proc.wait(timeout=20)
