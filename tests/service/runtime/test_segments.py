"""Which segments of a sweep a resumed driver restores: one whose searcher state was cut short
(the driver killed while Tune copied it to storage) is set aside, not restored."""

from __future__ import annotations

import pickle
from pathlib import Path

from service.runtime.segments import existing_segments, searcher_state_readable


def _segment(root: Path, offset: int, size: int, state: bytes | None) -> Path:
    path = root / f"trials-{offset:04d}"
    path.mkdir(parents=True)
    (path / "tuner.pkl").write_bytes(b"tuner")  # what Tune.can_restore looks for
    (path / "extrap-segment.txt").write_text(str(size))
    if state is not None:
        (path / "searcher-state-2026-12-02_14-54-27.pkl").write_bytes(state)
    return path


def test_the_newest_searcher_state_must_unpickle(tmp_path: Path) -> None:
    good = _segment(tmp_path / "a", 0, 3, pickle.dumps({"study": 1}))
    assert searcher_state_readable(str(good))
    (good / "searcher-state-2026-12-02_15-00-00.pkl").write_bytes(b"")  # newer, and empty
    assert not searcher_state_readable(str(good))
    assert not searcher_state_readable(str(_segment(tmp_path / "b", 0, 3, None)))


def test_an_unreadable_segment_is_set_aside_and_ends_the_list(tmp_path: Path) -> None:
    first = _segment(tmp_path, 0, 3, pickle.dumps({"study": 1}))
    cut = _segment(tmp_path, 3, 2, b"")  # the kill landed while it was copied
    assert existing_segments(str(tmp_path)) == [(0, str(first))]
    assert not cut.exists() and (tmp_path / "trials-0003.unrestorable-1").is_dir()
    _segment(tmp_path, 3, 2, b"\x80")  # cut again on the next attempt
    assert existing_segments(str(tmp_path)) == [(0, str(first))]
    assert (tmp_path / "trials-0003.unrestorable-2").is_dir()
