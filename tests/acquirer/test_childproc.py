"""How the host's child processes are scheduled (acquirer serve --children)."""
import os
import subprocess
import sys

import pytest

from acquirer import childproc


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_batch_policy_is_applied_to_a_child_and_normal_leaves_it_alone():
    batch = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    normal = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        childproc.apply_policy(batch.pid, "batch")
        childproc.apply_policy(normal.pid, "normal")
        assert os.sched_getscheduler(batch.pid) == os.SCHED_BATCH
        assert os.sched_getscheduler(normal.pid) == os.SCHED_OTHER
    finally:
        for proc in (batch, normal):
            proc.kill()
            proc.wait()


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="must be one of normal, batch"):
        childproc.apply_policy(os.getpid(), "realtime")
