"""The aggregator pins glibc's mmap threshold so freed fold buffers leave the process."""

from __future__ import annotations

import platform

import pytest

from tally.aggregator.allocator import pin_mmap_threshold


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_threshold_is_pinned_on_glibc():
    assert pin_mmap_threshold() is True  # mallopt found and accepted (False elsewhere)
