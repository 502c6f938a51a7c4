"""The OSC worker's batches cross the pipe as tagged JSON, never pickle: every value an OSC message
can carry comes back equal and of the same type, and a pickle sent down the pipe is refused unrun."""

from __future__ import annotations

import math
import os
import pickle

import pytest

from vjengine.control.commands import Command
from vjengine.control.osc_server import OscEvent
from vjengine.control.osc_worker import decode_batch, encode_batch


def test_a_batch_comes_back_equal_with_its_types():
    cmds = [Command("axis", "0", 0.25, source="osc", received_s=12.5, apply_at_s=None),
            Command("fx", "flash", (1, 2.5, "x"), source="osc", received_s=1.0, apply_at_s=3.0),
            Command("preset", "", "chill", source="osc", received_s=2.0),
            Command("axis", "1", [0.1, [0.2]], source="osc", received_s=2.0)]
    event = OscEvent(5.0, ("127.0.0.1", 9000), "accepted", "clamped", "d", "/vj/axis/0", (1.5, b"\x00\xff", "s"),
                     tuple(cmds[:2]))
    batch = ("batch", cmds, [event], [("127.0.0.1", 5555)], [(30, "a warning")],
             {"packets": 3, "rejected": {"range": 2}, "held_dropped": 0})
    back = decode_batch(encode_batch(batch))
    assert back == batch
    assert isinstance(back[1][1].value, tuple) and isinstance(back[1][3].value, list)
    assert isinstance(back[2][0].args[1], bytes) and back[3][0] == ("127.0.0.1", 5555)
    nan = decode_batch(encode_batch(("batch", [Command("axis", "0", math.nan, received_s=0.0)], [], [], [], {})))
    assert math.isnan(nan[1][0].value)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED-osc-wire",))


@pytest.mark.parametrize("data", [pickle.dumps(("batch", [_Boom()], [], [], [], {})), b"[1, 2]",
                                  b'{"Z": 1}', b"\xff\xfe", b'{"T": ["batch", [], [], [], []]}'])
def test_anything_but_a_batch_is_refused_and_nothing_runs(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError):
        decode_batch(data)
    assert not (tmp_path / "PWNED-osc-wire").exists()
