"""MindSpore's execution mode is process-wide: a fixture that switches it gives it back."""

import mindspore as ms


def switch_mode(request, mode):
    """Set MindSpore's mode for the requesting fixture's scope; its teardown restores the mode before."""
    before = ms.get_context("mode")
    ms.set_context(mode=mode)
    request.addfinalizer(lambda: ms.set_context(mode=before))
