"""The suite's own scheduling: `xdist_group` keeps a group's tests on one worker (test.sh runs
--dist loadgroup), which the tests sharing a build and the bad-input catalogue rely on."""
import pytest


@pytest.mark.xdist_group("bad_inputs")
def test_xdist_groups_take_effect(request):
    # xdist groups a test by appending '@<group>' to its node id; pytest 9.2 keeps ids where that
    # append has no effect (requirements.txt pins below it)
    assert hasattr(request.node, "_nodeid"), "this pytest ignores xdist_group: install pytest<9.2"
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@bad_inputs"), request.node.nodeid
