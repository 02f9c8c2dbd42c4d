"""A play started before its target exists (runner.PendingInventory): real ansible-playbook runs that
read their inventory from the FIFO once another thread gives it (installed.yml, read-only, on this machine)."""

from __future__ import annotations

import sys
import threading
import time

from bkprov.runner import PendingInventory, run_playbook

LOCAL = {"all": {"hosts": {"here": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}


def give_later(pending: PendingInventory, inventory: dict | None, delay: float) -> threading.Thread:
    def give() -> None:
        time.sleep(delay)
        pending.give(inventory)

    thread = threading.Thread(target=give)
    thread.start()
    return thread


def test_the_play_waits_for_the_inventory_and_runs_on_its_host() -> None:
    pending = PendingInventory()
    # Given well after ansible-playbook has started (its start-up takes ~1 s): the read blocks until then.
    giver = give_later(pending, LOCAL, 2.5)
    started = time.monotonic()
    result = run_playbook("installed.yml", pending, {})
    giver.join()
    assert time.monotonic() - started >= 2.5
    assert result.rc == 0, result.output_tail
    assert list(result.hosts) == ["here"]
    assert result.hosts["here"].published  # the play ran to its end on the host given late


def test_no_inventory_means_the_play_reaches_no_host() -> None:
    pending = PendingInventory()
    giver = give_later(pending, None, 0.5)  # the target could not be made
    result = run_playbook("installed.yml", pending, {})
    giver.join()
    assert result.rc == 0, result.output_tail
    assert result.hosts == {}


def test_the_first_inventory_given_stands() -> None:
    pending = PendingInventory()
    pending.give(LOCAL)
    pending.give(None)  # make_new's finally-clause after a success
    result = run_playbook("installed.yml", pending, {})
    assert list(result.hosts) == ["here"]


def test_a_play_that_never_reads_its_inventory_does_not_hang_the_writer() -> None:
    pending = PendingInventory()
    pending.give(LOCAL)
    # ansible-playbook exits before it parses the inventory: nothing ever opens the FIFO's read end.
    result = run_playbook("no-such-playbook.yml", pending, {})
    assert result.rc != 0
    assert "could not be found" in "\n".join(result.output_tail)
