"""The show: state that applies Commands, cue sheets, setlists, and the record/replay log."""

from vjengine.show.cues import Cue, CueRunner, load_cues
from vjengine.show.setlist import Setlist, load_setlist
from vjengine.show.state import BankEntry, FrameState, ShowState

__all__ = ["Cue", "CueRunner", "load_cues", "Setlist", "load_setlist", "BankEntry", "FrameState", "ShowState"]
