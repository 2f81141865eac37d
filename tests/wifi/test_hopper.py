"""The channel hopper: the exact `iw` commands, refused channels, and the thread loop."""

from __future__ import annotations

import threading

import pytest

from edge_agent.wifi.hopper import REFUSED_RETRY_S, ChannelHopper, CommandResult, check_channel, run_command


class RecordingRunner:
    """Records every argv; refuses the channels in ``refuse`` the way iw does (exit 1 + message)."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.commands: list[list[str]] = []
        self.refuse = set(refuse)

    def __call__(self, argv: list[str]) -> CommandResult:
        self.commands.append(argv)
        if int(argv[-1]) in self.refuse:
            return CommandResult(1, "command failed: Invalid argument (-22)")
        return CommandResult(0, "")


class Clock:
    def __init__(self) -> None:
        self.now_s = 1_000.0

    def __call__(self) -> float:
        return self.now_s


def test_hops_through_2_4_and_5_ghz_in_order_with_iw():
    runner = RecordingRunner()
    hopper = ChannelHopper("wlan1mon", [1, 6, 11, 36, 149], dwell_s=0.2, run=runner)
    assert [hopper.hop() for _ in range(7)] == [1, 6, 11, 36, 149, 1, 6]
    assert runner.commands[:2] == [
        ["iw", "dev", "wlan1mon", "set", "channel", "1"],
        ["iw", "dev", "wlan1mon", "set", "channel", "6"],
    ]
    assert [argv[-1] for argv in runner.commands] == ["1", "6", "11", "36", "149", "1", "6"]
    assert hopper.status().channel == 6 and hopper.status().hops == 7


def test_a_refused_channel_is_set_aside_named_and_retried_later():
    runner, clock = RecordingRunner(refuse=frozenset({36})), Clock()
    hopper = ChannelHopper("wlan1mon", [1, 36, 11], dwell_s=0.2, run=runner, clock=clock)
    assert [hopper.hop() for _ in range(4)] == [1, 11, 1, 11]  # 36 tried once, then skipped
    assert [argv[-1] for argv in runner.commands] == ["1", "36", "11", "1", "11"]
    assert hopper.status().refused == {36: "command failed: Invalid argument (-22)"}
    assert not hopper.all_refused
    runner.refuse.clear()
    clock.now_s += REFUSED_RETRY_S
    assert [hopper.hop() for _ in range(2)] == [1, 36]
    assert hopper.status().refused == {}


def test_when_the_driver_refuses_every_channel_the_hopper_says_so():
    runner = RecordingRunner(refuse=frozenset({1, 6}))
    hopper = ChannelHopper("wlan1mon", [1, 6], dwell_s=0.2, run=runner)
    assert hopper.hop() is None
    assert hopper.all_refused and set(hopper.status().refused) == {1, 6}


def test_one_channel_is_tuned_once_and_the_thread_ends():
    runner = RecordingRunner()
    ChannelHopper("wlan1mon", [6, 6], dwell_s=0.01, run=runner).run(threading.Event())
    assert runner.commands == [["iw", "dev", "wlan1mon", "set", "channel", "6"]]


def test_the_thread_hops_every_dwell_until_stopped():
    runner = RecordingRunner()
    hopper = ChannelHopper("wlan1mon", [1, 6, 11], dwell_s=0.01, run=runner)
    stop = threading.Event()
    thread = threading.Thread(target=hopper.run, args=(stop,))
    thread.start()
    while len(runner.commands) < 7:
        stop.wait(0.01)
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    assert [argv[-1] for argv in runner.commands[:7]] == ["1", "6", "11", "1", "6", "11", "1"]


def test_a_missing_iw_is_a_failed_command_with_the_fix_not_a_crash():
    result = run_command(["footfall-no-such-iw", "dev", "wlan1mon", "set", "channel", "1"])
    assert result.returncode == 127 and "not installed" in result.message


@pytest.mark.parametrize("channel", [0, 15, 34, 200])
def test_channels_outside_2_4_and_5_ghz_are_rejected(channel):
    with pytest.raises(ValueError, match="not a 2.4 GHz"):
        check_channel(channel)
    for valid in (1, 14, 36, 165):
        check_channel(valid)
