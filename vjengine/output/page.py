"""The operator page served at the ``http://`` sink: the program output, tempo and beat lights,
preset and bank, and buttons that post commands; with ``--midi-in``, MIDI learn (a button per address
worth binding arms it, the next control moved is bound and written to the map). No external
resources: it works offline."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vjengine operator</title>
<style>
 body{margin:0;background:#111;color:#ddd;font:15px system-ui,sans-serif}
 header{display:flex;gap:1em;align-items:center;padding:.5em .8em;background:#1c1c1c;flex-wrap:wrap}
 #preview{display:block;width:100%;max-width:960px;background:#000;aspect-ratio:16/9;object-fit:contain}
 .light{display:inline-block;width:1.1em;height:1.1em;border-radius:50%;background:#333;vertical-align:middle}
 .light.on{background:#3f3}.light.bar.on{background:#f93}
 #level{display:inline-block;width:8em;height:.7em;background:#333;vertical-align:middle}
 #level>div{height:100%;width:0;background:#3c6}
 section{padding:.4em .8em} h2{font-size:.9em;margin:.6em 0 .3em;color:#999;text-transform:uppercase}
 button{font:inherit;margin:.2em;padding:.6em .9em;border:1px solid #444;border-radius:.4em;background:#262626;color:#eee}
 button.current{border-color:#3f3;color:#3f3} button#blackout.on{background:#a11;border-color:#f33}
 #outputs{font-size:.85em;color:#aaa;white-space:pre-wrap} #msg{color:#f66}
</style></head><body>
<header><strong id="show">vjengine</strong>
 <span><span class="light" id="beat"></span> <span class="light bar" id="bar"></span> <span id="bpm">-- BPM</span></span>
 <span>input <span id="level"><div></div></span></span>
 <span id="where"></span><span id="msg"></span></header>
<img id="preview" alt="program output">
<section><h2>Presets</h2><div id="presets"></div></section>
<section><h2>Banks</h2><div id="banks"></div></section>
<section><h2>Show</h2>
 <button id="tap">Tap</button><button id="resync">Resync</button><button id="blackout">Blackout</button></section>
<section id="learnbox" hidden><h2>MIDI learn</h2>
 <div id="learnmsg"></div><div id="learn"></div><button id="learnoff">Stop learning</button></section>
<section><h2>Outputs</h2><div id="outputs"></div></section>
<script>
const token = new URLSearchParams(location.search).get("token") || "";
const q = token ? "?token=" + encodeURIComponent(token) : "";
const $ = id => document.getElementById(id);
$("preview").src = "/stream.mjpg" + q;
let state = {};
async function send(address, args) {
  const r = await fetch("/api/command", {method: "POST", headers: {"Content-Type": "application/json",
    "X-VJ-Token": token}, body: JSON.stringify({address, args})});
  const reply = await r.json().catch(() => ({}));
  $("msg").textContent = r.ok ? "" : (reply.error || ("HTTP " + r.status));
  return r.ok;
}
function buttons(id, names, current, address) {
  const box = $(id);
  const key = JSON.stringify(names);
  if (box.dataset.key !== key) {
    box.dataset.key = key; box.textContent = "";
    names.forEach((name, i) => { const b = document.createElement("button");
      b.textContent = (i + 1) + " " + name; b.dataset.index = i;
      b.onclick = () => send(address, [i]); box.appendChild(b); });
  }
  for (const b of box.children) b.classList.toggle("current", Number(b.dataset.index) === current);
}
function learnButtons(ml) {
  const box = $("learn"), key = JSON.stringify(ml.addresses || []);
  if (box.dataset.key !== key) {
    box.dataset.key = key; box.textContent = "";
    (ml.addresses || []).forEach(a => { const b = document.createElement("button");
      b.textContent = a.replace("/vj/", ""); b.dataset.address = a;
      b.onclick = () => send("/vj/midi/learn", [a]); box.appendChild(b); });
  }
  for (const b of box.children) b.classList.toggle("current", b.dataset.address === ml.armed);
  $("learnmsg").textContent = ml.error ? "not saved: " + ml.error : ml.armed ? "move a control for " + ml.armed
    : (ml.learned || []).length ? "learned " + ml.learned[ml.learned.length - 1] + " (" + ml.map + ")" : "";
}
$("learnoff").onclick = () => send("/vj/midi/learn", [""]);
$("tap").onclick = () => send("/vj/tap", []);
$("resync").onclick = () => send("/vj/resync", []);
$("blackout").onclick = () => send("/vj/blackout", [!state.blackout]);
async function poll() {
  try {
    const r = await fetch("/api/status" + q);
    if (r.status === 401) { $("msg").textContent = "token required"; return; }
    state = await r.json();
    $("bpm").textContent = (state.bpm || 0).toFixed(1) + " BPM" + (state.locked ? "" : " ?");
    $("beat").classList.toggle("on", (state.beat_phase ?? 1) < 0.2);
    $("bar").classList.toggle("on", (state.bar_phase ?? 1) < 0.08);
    $("level").firstChild.style.width = Math.round(100 * Math.min(1, state.level || 0)) + "%";
    $("where").textContent = "preset " + (state.preset || "") + " \\u00b7 bank " + (state.bank || "");
    $("blackout").classList.toggle("on", !!state.blackout);
    buttons("presets", state.presets || [], state.preset_index, "/vj/preset");
    buttons("banks", state.banks || [], state.bank_index, "/vj/bank");
    $("learnbox").hidden = !state.midi_learn;
    if (state.midi_learn) learnButtons(state.midi_learn);
    $("outputs").textContent = (state.outputs || []).map(o =>
      o.url + ": " + o.state + ", sent " + o.sent + ", dropped " + o.dropped).join("\\n");
  } catch (e) { $("msg").textContent = "no connection"; }
}
setInterval(poll, 150); poll();
</script></body></html>
"""
