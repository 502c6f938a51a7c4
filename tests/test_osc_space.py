"""The declared address space: argument coercion, routing, wildcards, and the generated doc."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from vjengine.control.commands import KINDS
from vjengine.control.osc_space import (
    IGNORED,
    INPUTS,
    OUTPUTS,
    REJECT_REASONS,
    AddressSpace,
    ArgError,
    coerce_args,
    render_markdown,
)

SPEC = {s.template: s for s in INPUTS}


def test_every_input_is_a_known_command_kind_and_required_addresses_exist() -> None:
    assert all(s.kind in KINDS for s in INPUTS)
    required = {"/vj/axis/{axis}", "/vj/axis/{axis}/release", "/vj/preset", "/vj/bank", "/vj/fx/{effect}/{param}",
                "/vj/intensity", "/vj/blackout", "/vj/tap", "/vj/bpm", "/vj/resync", "/vj/crossfade", "/vj/status"}
    assert required <= set(SPEC)
    assert {o.template for o in OUTPUTS} >= {"/vj/audio/rms", "/vj/audio/onset", "/vj/audio/kick", "/vj/beat/pulse",
                                             "/vj/beat/phase", "/vj/beat/bar_phase", "/vj/beat/bpm", "/vj/coord/{axis}"}


@pytest.mark.parametrize(
    "template,tags,args,value,clamped",
    [
        ("/vj/intensity", "f", (0.5,), 0.5, False),
        ("/vj/intensity", "d", (0.25,), 0.25, False),
        ("/vj/intensity", "i", (1,), 1.0, False),
        ("/vj/intensity", "h", (0,), 0.0, False),
        ("/vj/intensity", "T", (True,), 1.0, False),
        ("/vj/intensity", "s", (" 0.75 ",), 0.75, False),
        ("/vj/intensity", "f", (7.0,), 1.0, True),
        ("/vj/intensity", "i", (-3,), 0.0, True),
        ("/vj/bpm", "f", (128.0,), 128.0, False),
        ("/vj/bpm", "i", (1000,), 300.0, True),
        ("/vj/crossfade", "s", ("4",), 4.0, False),
        ("/vj/blackout", "T", (True,), True, False),
        ("/vj/blackout", "F", (False,), False, False),
        ("/vj/blackout", "i", (1,), True, False),
        ("/vj/blackout", "f", (0.0,), False, False),
        ("/vj/blackout", "s", ("On",), True, False),
        ("/vj/blackout", "s", ("off",), False, False),
        ("/vj/preset", "s", ("calm",), "calm", False),
        ("/vj/preset", "s", ("3",), 3, False),
        ("/vj/preset", "i", (2,), 2, False),
        ("/vj/preset", "f", (2.0,), 2, False),
        ("/vj/preset", "i", (-1,), 0, True),
        ("/vj/bank", "S", ("club",), "club", False),
        ("/vj/tap", "", (), None, False),
        ("/vj/tap", "i", (1,), None, False),
        ("/vj/tap", "T", (True,), None, False),
        ("/vj/tap", "I", (math.inf,), None, False),
        ("/vj/tap", "N", (None,), None, False),
        ("/vj/tap", "f", (0.0,), IGNORED, False),
        ("/vj/tap", "F", (False,), IGNORED, False),
        ("/vj/status", "", (), None, False),
        ("/vj/status", "i", (9001,), 9001, False),
    ],
)
def test_coerce_accepts_what_touchdesigner_and_resolume_send(template, tags, args, value, clamped) -> None:
    got, was_clamped = coerce_args(SPEC[template], template, tags, args)
    assert got is value if value is IGNORED else got == value
    assert type(got) is type(value)
    assert was_clamped is clamped


@pytest.mark.parametrize(
    "template,tags,args,reason",
    [
        ("/vj/intensity", "", (), "wrong_count"),
        ("/vj/intensity", "ff", (0.1, 0.2), "wrong_count"),
        ("/vj/intensity", "s", ("loud",), "wrong_type"),
        ("/vj/intensity", "b", (b"x",), "wrong_type"),
        ("/vj/intensity", "f", (math.nan,), "not_finite"),
        ("/vj/intensity", "d", (math.inf,), "not_finite"),
        ("/vj/bpm", "s", ("nan",), "not_finite"),
        ("/vj/bpm", "s", ("-inf",), "not_finite"),
        ("/vj/blackout", "s", ("maybe",), "wrong_type"),
        ("/vj/blackout", "f", (math.nan,), "not_finite"),
        ("/vj/preset", "f", (1.5,), "wrong_type"),
        ("/vj/preset", "s", ("",), "wrong_type"),
        ("/vj/preset", "", (), "wrong_count"),
        ("/vj/tap", "ii", (1, 1), "wrong_count"),
        ("/vj/tap", "s", ("go",), "wrong_type"),
        ("/vj/status", "i", (70000,), "wrong_type"),
        ("/vj/status", "ii", (1, 2), "wrong_count"),
    ],
)
def test_coerce_refuses_with_a_reason(template, tags, args, reason) -> None:
    with pytest.raises(ArgError) as info:
        coerce_args(SPEC[template], template, tags, args)
    assert info.value.reason == reason
    assert reason in REJECT_REASONS


def test_resolve_concrete_wildcards_and_unknown() -> None:
    space = AddressSpace(["mood", "warp", "detail"], ["bloom/amount", "feedback/amount", "feedback/zoom"])
    (route,) = space.resolve("/vj/axis/mood")
    assert (route.spec.kind, route.target) == ("axis", "mood")
    (route,) = space.resolve("/vj/axis/warp/release")
    assert (route.spec.kind, route.target) == ("axis_release", "warp")
    assert {r.target for r in space.resolve("/vj/axis/*")} == {"mood", "warp", "detail"}
    assert {r.target for r in space.resolve("/vj/axis/*/release")} == {"mood", "warp", "detail"}
    assert {r.target for r in space.resolve("/vj/fx/*/amount")} == {"bloom.amount", "feedback.amount"}
    assert {r.target for r in space.resolve("/vj/fx/feedback/*")} == {"feedback.amount", "feedback.zoom"}
    assert {r.spec.kind for r in space.resolve("/vj/{tap,resync}")} == {"tap", "resync"}
    assert space.resolve("/vj/axis/nope") == []
    assert space.resolve("/vj/fx/bloom/zoom") == []
    assert space.resolve("/composition/layers/1/video/opacity") == []
    assert space.resolve("/vj/axis/[bad") == []


def test_resolve_without_names_accepts_any_well_formed_name() -> None:
    space = AddressSpace()
    (route,) = space.resolve("/vj/axis/anything_1")
    assert (route.spec.kind, route.target) == ("axis", "anything_1")
    (route,) = space.resolve("/vj/axis/x/nudge")
    assert route.spec.kind == "axis_nudge"
    (route,) = space.resolve("/vj/fx/glow/size")
    assert (route.spec.kind, route.target) == ("fx", "glow.size")
    assert space.resolve("/vj/axis/*") == []  # wildcards need known names
    assert space.resolve("/vj/axis/a/b/c") == []


def test_docs_osc_md_is_up_to_date(repo_root: Path) -> None:
    committed = (repo_root / "docs" / "osc.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), (
        "docs/osc.md is stale: run `python -m vjengine.control.osc_space --write docs/osc.md`"
    )
    for spec in INPUTS:
        assert f"`{spec.template}`" in committed
    for reason in REJECT_REASONS:
        assert f"`{reason}`" in committed
