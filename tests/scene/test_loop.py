"""scene/loop.py: the loop schedule shared by stage 1's video and the 4D model."""

from __future__ import annotations

import torch

from motion.animate import photo_threshold
from scene.loop import LoopSchedule, default_cycle, loop_record, loop_schedule


def test_schedule_hides_every_jump_and_starts_at_the_photo():
    schedule = LoopSchedule(48, cycle=12, transition=0.2, photo_size=(64, 48))
    threshold = photo_threshold(schedule, 48, 64)
    assert float(threshold.min()) >= 0.1 and float(threshold.max()) <= 0.4
    assert torch.equal(schedule.weight0(schedule.steps(0)[0], threshold, 0.0), torch.ones_like(threshold))
    for i in range(48):
        d0, d1 = schedule.steps(i)
        assert max(abs(d0), abs(d1)) <= 6 and abs(d0 - d1) == 6
        w0 = schedule.weight0(d0, threshold, i / 48)
        if abs(d0) == 6:  # layer 0 jumps between this frame and the next: it is not shown
            assert float(w0.max()) == 0.0
        if abs(d1) == 6:
            assert float(w0.min()) == 1.0
    assert schedule.steps(48) == schedule.steps(0) and schedule.displacements(1.0) == schedule.displacements(0.0)


def test_default_cycle_and_record_round_trip():
    assert default_cycle(120) == 40 and default_cycle(60) == 30 and default_cycle(7) == 7 and default_cycle(8) == 8
    schedule = LoopSchedule(60, cycle=20, transition=0.3, seed=5, photo_size=(100, 50))
    assert loop_schedule(loop_record(schedule)) == schedule


def test_crossfade_is_the_old_symmetric_scheme():
    schedule = LoopSchedule(10, "crossfade")
    assert schedule.steps(3) == (3, -7) and schedule.displacements(0.3) == (3.0, -7.0)
    w0 = schedule.weight0(3, torch.zeros(2), 0.3)
    assert torch.allclose(w0, torch.full((2,), 0.7))


def test_thresholds_are_smooth_seeded_and_evenly_spread():
    uv = torch.stack(torch.meshgrid(torch.arange(0.0, 640), torch.arange(0.0, 480), indexing="xy"), -1).reshape(-1, 2)
    a = LoopSchedule(12, cycle=4, seed=1, photo_size=(640, 480)).threshold(uv).reshape(480, 640)
    b = LoopSchedule(12, cycle=4, seed=2, photo_size=(640, 480)).threshold(uv).reshape(480, 640)
    assert not torch.equal(a, b)
    assert float((a[:, 1:] - a[:, :-1]).abs().max()) < 0.02  # smooth: neighbours switch at nearly the same time
    counts = torch.histc(a, 8, 0.055, 0.445)  # equalised: every switching moment is as common as any other
    assert float(counts.min()) > 0.8 * float(counts.mean())
