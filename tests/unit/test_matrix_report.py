"""matrix: the host-room check for systemd targets (inotify) and refusals before anything is made."""

from __future__ import annotations

from bkprov import cli
from bkprov.targets.container import INOTIFY_PER_TARGET, INOTIFY_WATCHES_PER_TARGET, InotifyUse, inotify_use


def test_room_counts_targets_under_both_limits():
    assert InotifyUse(instances=42, watches=140, max_instances=128, max_watches=192536).room() == 86 // 7
    assert InotifyUse(instances=0, watches=8000, max_instances=1024, max_watches=8192).room() == 192 // 32
    assert InotifyUse(instances=127, watches=0, max_instances=128, max_watches=8192).room() == 0


def test_shortfall_names_the_sysctl_and_a_value_that_fits():
    use = InotifyUse(instances=42, watches=140, max_instances=128, max_watches=192536)
    assert use.shortfall(12) == ""
    advice = use.shortfall(27)
    assert "fs.inotify.max_user_instances is 128: root holds 42 and 27 systemd target(s) need about 189 more" in advice
    assert "`sysctl -w fs.inotify.max_user_instances=512`" in advice  # 42 + 189 = 231, twice that fits 512
    assert "/etc/sysctl.d/60-bkprov-inotify.conf" in advice
    assert "max_user_watches" not in advice


def test_shortfall_for_watches_alone():
    use = InotifyUse(instances=0, watches=8000, max_instances=1024, max_watches=8192)
    advice = use.shortfall(10)
    assert advice.startswith("fs.inotify.max_user_watches is 8192")
    assert f"need about {10 * INOTIFY_WATCHES_PER_TARGET} more" in advice
    assert "sysctl -w fs.inotify.max_user_watches=65536" in advice


def test_verdict_blames_the_limit_only_when_it_is_used_up():
    full = InotifyUse(instances=124, watches=400, max_instances=128, max_watches=8192)
    assert "too few for another systemd container: that is why it died" in full.verdict()
    assert "sysctl -w fs.inotify.max_user_instances=512" in full.verdict()
    roomy = InotifyUse(instances=10, watches=40, max_instances=128, max_watches=8192)
    assert roomy.verdict().endswith(f"room for {118 // INOTIFY_PER_TARGET} more systemd containers, so not the cause.")


def test_this_hosts_counts_are_read_from_proc():
    use = inotify_use()
    with open("/proc/sys/fs/inotify/max_user_instances", encoding="utf-8") as handle:
        assert use.max_instances == int(handle.read())
    assert use.instances >= 0 and use.watches >= 0


def test_a_bad_prefix_is_refused_before_anything(tmp_path, capsys):
    code = cli.main(["matrix", "v0.10.6", "--prefix", "-bad name", "--report", str(tmp_path / "r")])
    message = capsys.readouterr().err
    assert code == 2 and "--prefix '-bad name' is not a valid container name start" in message
    assert not (tmp_path / "r.json").exists()
