"""Every collected test has exactly one tier (`pure`, `tiny`, `e2e`: tests/conftest.py), and the tier says what
the test needs: a test that requests a tiny checkpoint is not `pure`, a tests/e2e test is `e2e`."""
import os

from conftest import E2E_DIR, TIERS, TINY_FIXTURES, TINY_TESTS


def _tiers(item):
    return [tier for tier in TIERS if item.get_closest_marker(tier)]


def test_every_collected_test_has_exactly_one_tier(request):
    items = request.session.items
    assert request.node in items
    wrong = [(item.nodeid, _tiers(item)) for item in items if len(_tiers(item)) != 1]
    assert wrong == []


def test_the_tier_matches_what_the_test_needs(request):
    wrong = []
    for item in request.session.items:
        (tier,) = _tiers(item)
        in_e2e = str(item.path).startswith(E2E_DIR + os.sep)
        needs_more = TINY_FIXTURES & set(item.fixturenames) or item.nodeid.startswith(TINY_TESTS)
        if in_e2e != (tier == 'e2e') or (tier == 'pure' and needs_more):
            wrong.append((item.nodeid, tier))
    assert wrong == []


def test_every_named_tiny_test_exists(request):
    # A renamed test must not drop back to `pure` unnoticed: each name in TINY_TESTS whose file this run
    # collected names some collected test.
    ids = request.config.collected_before_selection  # `-m` deselects after the tiers are set
    files = {nodeid.split('::')[0] for nodeid in ids}
    stale = [name for name in TINY_TESTS
             if name.split('::')[0] in files and not any(nodeid.startswith(name) for nodeid in ids)]
    assert stale == []


def test_tiers_are_registered(pytestconfig):
    registered = {line.split(':')[0] for line in pytestconfig.getini('markers')}
    assert set(TIERS) <= registered


def test_a_pure_test_cannot_start_a_process(request):
    # This test is `pure`: a child process (here the smallest one) is refused, naming the tier to use.
    import subprocess
    import sys

    import pytest
    assert request.node.get_closest_marker('pure')
    with pytest.raises(RuntimeError, match='a `pure` test starts no process'):
        subprocess.run([sys.executable, '-c', 'pass'], check=True)
    with pytest.raises(RuntimeError, match='a `pure` test starts no process'):
        os.fork()
