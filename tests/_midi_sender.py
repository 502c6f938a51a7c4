"""A test MIDI controller / clock master in a process of its own: ``python _midi_sender.py CLIENT PORT``.

A JACK client (JACK-Client) with one MIDI output. It lives in its own process because its process
callback is Python: in the engine's process, JACK's graph thread would wait for the GIL while the
engine's thread held it inside a JACK call (rtmidi opening a client), and both would hang.
(python-rtmidi's own JACK output is no use as a sender: it duplicated and mangled messages sent in
bursts.) Commands come as JSON lines on stdin, each answered with one JSON line:

- ``{"op": "send", "data": [[b0, b1, ...], ...]}``: raw messages (garbage too) for the next cycles;
- ``{"op": "clock", "bpm": B, "ticks": N, "start": true}``: Start, then N clocks due at exact
  wall-clock times, each written by the process callback into the cycle where it falls (JACK's
  period, 2.7 ms here, is the sender's jitter, as a USB interface's frame is a controller's);
- ``{"op": "clock_sent"}``: when each clock was due (perf_counter seconds, the reference);
- ``{"op": "close"}``.
"""

from __future__ import annotations

import collections
import json
import sys
import time

import jack


def main() -> int:
    client_name, port_name = sys.argv[1], sys.argv[2]
    client = jack.Client(client_name, no_start_server=True)
    port = client.midi_outports.register(port_name)
    queue: collections.deque = collections.deque()
    clock: list = []  # [next clock's due time (perf_counter s), seconds per clock, clocks left]
    sent: list[float] = []
    stats = {"dropped": 0}

    def process(frames: int) -> None:
        t_cycle = time.perf_counter()
        port.clear_buffer()
        start = client.last_frame_time
        while queue:
            try:
                port.write_midi_event(0, queue[0])
            except jack.JackError:
                break  # the port buffer is full: the rest next cycle
            queue.popleft()
        rate = client.samplerate
        while clock and clock[2] > 0 and clock[0] < t_cycle + frames / rate:
            # due by the wall clock (a dummy driver's frames need not keep time): into this cycle at
            # the offset where it falls, or at its start if already due
            offset = min(frames - 1, max(0, int((clock[0] - t_cycle) * rate)))
            try:
                port.write_midi_event(offset, b"\xf8")
                sent.append(clock[0])
            except jack.JackError:
                stats["dropped"] += 1
            clock[0] += clock[1]
            clock[2] -= 1

    client.set_process_callback(process)
    client.activate()
    print(json.dumps({"ready": f"{client.name}:{port_name}"}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        reply: object = "ok"
        if op == "send":
            for data in cmd["data"]:
                queue.append(bytes(data))
        elif op == "clock":
            if cmd.get("start", True):
                queue.append(b"\xfa")
            clock[:] = [time.perf_counter() + float(cmd.get("lead_s", 0.02)), 60.0 / float(cmd["bpm"]) / 24.0,
                        int(cmd["ticks"])]
        elif op == "clock_sent":
            reply = {"sent": list(sent), "done": not clock or clock[2] <= 0, "dropped": stats["dropped"]}
        elif op == "close":
            print(json.dumps("ok"), flush=True)
            break
        print(json.dumps(reply), flush=True)
    client.deactivate()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
