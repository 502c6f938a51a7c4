"""--stats streams to its file: memory stays flat, the file reads back as columns, a stall drops samples."""

from __future__ import annotations

import json
import tracemalloc

from vjengine.show.statslog import StatsWriter, load_stats


def test_samples_stream_to_the_file_and_read_back(tmp_path):
    path = tmp_path / "stats.jsonl"
    w = StatsWriter(path, flush_s=0.01)
    for i in range(500):
        w.frame(100.0 + i / 60, None if i == 0 else 16.7, 5.0 + i % 3, 12.0 if i % 2 else None, i // 250,
                {"render": 1.5}, {"cpu": 4.0, "gc": float(i == 7)})
    w.close()
    st = load_stats(path)
    assert st["complete"] and st["frames"] == 500
    assert len(st["interval_ms"]) == 499 and len(st["latency_ms"]) == 250
    assert st["quality"][-1] == 1 and st["stages_ms"]["render"][0] == 1.5
    assert st["probes"][7] == {"cpu": 4.0, "gc": 1.0} and len(st["probes"]) == 500
    assert json.loads(path.read_text().splitlines()[0])["vj_stats"] == 1


def test_memory_stays_flat_over_a_long_show(tmp_path):
    w = StatsWriter(tmp_path / "s.jsonl", flush_s=0.005)
    tracemalloc.start()
    try:
        for i in range(2000):
            w.frame(i / 60, 16.7, 5.0, 10.0, 0, {"a": 1.0, "b": 2.0})
        w.flush()  # what the writer thread does
        base = tracemalloc.get_traced_memory()[0]
        for i in range(40_000):  # ~11 minutes at 60 fps
            w.frame(i / 60, 16.7, 5.0, 10.0, 0, {"a": 1.0, "b": 2.0})
            if i % 1000 == 0:
                w.flush()
        w.flush()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
        w.close()
    assert grown < 512 * 1024, grown  # the old in-memory lists grew ~100 bytes a frame: 4 MB here
    assert load_stats(tmp_path / "s.jsonl")["frames"] == 42_000


def test_a_stalled_writer_drops_the_oldest_samples_not_the_frame(tmp_path):
    w = StatsWriter(tmp_path / "s.jsonl", flush_s=3600, max_pending=100)
    for i in range(1000):
        w.frame(i / 60, 16.7, 5.0, None)
    assert w.pending == 100 and w.dropped == 900
    w.close()
    st = load_stats(tmp_path / "s.jsonl")
    assert st["frames"] == 100 and st["complete"]


def test_old_rows_without_probes_still_read(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text('{"vj_stats": 1, "started_unix": 5.0}\n[0.0, null, 5.0, null, 0, {"render": 1.0}]\n'
                    '[0.02, 16.7, 5.0, null, 0, {"render": 1.0}]\n{"end": true, "frames": 2}\n')
    st = load_stats(path)
    assert st["frames"] == 2 and st["probes"] == [{}, {}] and st["complete"]


def test_gc_timer_counts_collections_in_any_thread():
    import gc
    import threading

    from vjengine.frameloop import GcTimer

    timer = GcTimer.install()
    assert GcTimer.install() is timer  # once per process
    before_n, before_s = timer.collections, timer.total_s
    t = threading.Thread(target=gc.collect)
    t.start()
    t.join()
    gc.collect()
    assert timer.collections >= before_n + 2 and timer.total_s > before_s
