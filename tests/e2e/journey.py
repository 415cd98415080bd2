"""Helpers for the end-to-end journeys: run the real tools as a user would."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_tool(args, cwd, expect_ok=True, timeout=900):
    """Run ``python <repo>/<args[0]> args[1:]`` in ``cwd``; return combined output."""
    cmd = [sys.executable, os.path.join(REPO, args[0])] + [str(a) for a in args[1:]]
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True,
                            timeout=timeout)
    output = result.stdout + result.stderr
    if expect_ok:
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-5000:]}"
    return output


def config(name):
    return os.path.join(REPO, "configs", name)
