"""SIGTERM, what a batch scheduler sends before it kills a job, stops a run as Ctrl-C does: the finished
folds stay saved, the lock is released, the command that resumes the run is printed, and the exit
status is 143 (128 + SIGTERM, as if the signal had ended the process; Ctrl-C gives 130)."""

import json
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, link_kaggle_subset

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_sigterm_saves_the_finished_folds_releases_the_lock_and_prints_the_resume_command(tmp_path):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 12, "PNEUMONIA": 12})
    out = tmp_path / "out"
    small = ["--archs", "baseline", "--folds", "3", "--epochs", "2", "--image-size", "32", "--no-save-models"]
    args = ["run", "--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), *small, "--overw"]
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    first = out / "baseline" / "fold-0" / "metrics.json"
    deadline = time.time() + 240
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before its first fold was saved"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert f"terminated (SIGTERM): finished folds are saved in {out}. Resume with the same command" in stderr
    assert "Traceback" not in stderr
    assert not list(out.glob(".lock*"))  # released, so the resume is not refused
    assert first.exists() and not (out / "baseline" / "fold-2" / "metrics.json").exists()
    saved = first.read_bytes()
    resume = shlex.split(stderr.splitlines()[-1])  # the printed command, as a shell reads it
    assert resume[0] == "benchmark" and "--overw" not in resume  # --overwrite (abbreviated) would start afresh
    again = subprocess.run([sys.executable, "-m", "benchmark.cli", *resume[1:]], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "baseline fold 1/3  (saved)" in again.stderr
    assert first.read_bytes() == saved  # resumed, not retrained
    assert json.loads((out / "results.json").read_text())["architectures"][0]["folds_done"] == 3
