"""bindkit.progress: one rule for when a progress bar shows."""

from __future__ import annotations

from bindkit.progress import progress_bar


def test_bars_show_when_asked_and_stay_quiet_off_a_terminal():
    # under pytest stderr is captured, not a terminal: None (the default everywhere) must stay quiet
    for show, disabled in ((None, True), (False, True), (True, False)):
        with progress_bar(show, total=3, desc="t") as bar:
            assert bar.disable is disabled
            bar.update(3)
