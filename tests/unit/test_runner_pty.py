"""ansible-runner's pty is closed without ptyprocess's 0.1 s sleep, and the exit status still arrives."""

from __future__ import annotations

import pexpect

from bkprov.runner import no_delay_after_close


def test_a_pty_child_closes_without_the_delay_and_keeps_its_exit_status() -> None:
    no_delay_after_close()
    no_delay_after_close()  # twice: still one wrapper, not a chain
    child = pexpect.spawn("sh", ["-c", "echo done; exit 3"])
    child.expect(pexpect.EOF, timeout=10)
    assert child.ptyproc.delayafterclose == 0.0
    child.close()
    assert child.exitstatus == 3
    assert b"done" in child.before
    assert getattr(pexpect.spawn._spawnpty, "no_delay_after_close", False)
