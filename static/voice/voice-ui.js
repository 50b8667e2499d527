/* The assistant page: the start/stop button and the transcript views, bound to a VoiceSession. */
(function () {
  "use strict";
  const root = document.getElementById("voice");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const name = root.dataset.name;
  const session = new VoiceSession({assistant: root.dataset.assistant});
  window.voiceSession = session; // for the console and the browser tests

  const toggle = $("toggle"), videoCall = $("video-call"), statusEl = $("status");
  const text = $("text"), sendButton = $("send-button");
  const LABELS = {inactive: "Start voice", connecting: "Connecting…", active: "Stop voice",
                  paused: "Stop voice", unavailable: "Start voice"};

  // The user's own mute: the microphone track is switched off (the connection stays).
  const mute = $("mute");
  let muted = false;
  function setMuted(on) {
    muted = on;
    session.setMicrophone(!on);
    mute.textContent = on ? "Unmute" : "Mute";
    mute.setAttribute("aria-pressed", String(on));
  }
  mute.addEventListener("click", () => setMuted(!muted));

  function render(status) {
    mute.disabled = status !== "active";
    if (status === "inactive" && muted) setMuted(false); // a new call starts unmuted
    if (status === "active" && muted) session.setMicrophone(false); // still muted after a video call's resume
    statusEl.textContent = status;
    statusEl.dataset.status = status;
    toggle.textContent = LABELS[status];
    toggle.disabled = status === "connecting";
    toggle.setAttribute("aria-pressed", String(status === "active" || status === "paused"));
    const live = status === "active";
    text.disabled = sendButton.disabled = !live;
    videoCall.disabled = !(status === "active" || status === "paused");
    if (status === "active" || status === "inactive") hideError();
  }

  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }
  function hideError() { $("error").hidden = true; }

  // Why a call ended, for the reasons the assistant (or the clock) ended it; the user's own stop says nothing.
  const ENDED = {
    end_call_tool: " ended the call.", end_call_phrase: " ended the call.",
    silence_timeout: " ended the call after a long silence.", max_duration: " ended the call: its time was up.",
  };
  session.addEventListener("ended", (e) => {
    const text = ENDED[e.detail.reason];
    $("ended").hidden = !text;
    $("ended").textContent = text ? name + text : "";
    $("ended").dataset.reason = e.detail.reason;
  });

  function addMessage(role, textContent, kind) {
    const item = document.createElement("li");
    item.className = "message " + role;
    item.dataset.role = role;
    if (kind) item.dataset.kind = kind; // firstMessage, silencePrompt, endCallMessage, durationWarning; a tool's startMessage, delayedMessage, failedMessage
    const who = document.createElement("strong");
    who.textContent = role === "user" ? "You: " : name + ": ";
    item.append(who, document.createTextNode(textContent));
    $("messages").append(item);
    item.scrollIntoView({block: "nearest"});
  }

  session.addEventListener("status", (e) => {
    render(e.detail.status);
    if (e.detail.status === "connecting") $("ended").hidden = true; // a new call
  });
  session.addEventListener("error", (e) => showError(e.detail.message));
  session.addEventListener("speaking", (e) => {
    const role = e.detail.role;
    $("speaking").textContent = role === "user" ? "You are speaking" : role === "assistant" ? name + " is speaking" : "";
    $("speaking").dataset.role = role || "";
  });
  let botLevel = 0; // from the server's voice.audio.level events, decaying between them
  session.addEventListener("level", (e) => { if (e.detail.source === "bot") botLevel = e.detail.level; });
  session.addEventListener("transcript", (e) => {
    const p = e.detail;
    if (p.final) {
      $("interim").textContent = "";
      addMessage(p.role === "user" ? "user" : "assistant", p.text.trim(), p.kind);
    } else {
      $("interim").textContent = (p.role === "user" ? "You: " : name + ": ") + p.text;
    }
  });
  session.addEventListener("tool", (e) => {
    const p = e.detail;
    const item = document.createElement("li");
    item.textContent = p.type === "voice.tool.call"
      ? "Calling " + p.name + " " + JSON.stringify(p.arguments || {})
      : p.name + " → " + JSON.stringify(p.result);
    $("tools").append(item);
  });

  // The user's own level, measured locally so the meter moves without a round trip.
  let analyser = null;
  session.addEventListener("media", (e) => {
    const {stream, remote} = e.detail;
    if (remote) { $("bot-audio").srcObject = remote; $("bot-audio").play().catch(() => {}); }
    if (stream && !analyser) {
      const context = new AudioContext();
      analyser = context.createAnalyser();
      analyser.fftSize = 512;
      context.createMediaStreamSource(stream).connect(analyser);
      const data = new Float32Array(analyser.fftSize);
      const tick = () => {
        if (!analyser) return;
        analyser.getFloatTimeDomainData(data);
        let sum = 0;
        for (const v of data) sum += v * v;
        botLevel *= 0.97;
        if (session.status === "active") $("level").value = Math.min(1, Math.max(Math.sqrt(sum / data.length) * 3, botLevel));
        requestAnimationFrame(tick);
      };
      tick();
    }
    if (!stream) { analyser = null; $("level").value = 0; }
  });

  // The microphone picker: the browser's microphones, named once the page may use one.
  const picker = $("microphone");
  async function refreshMicrophones() {
    const mics = await session.listMicrophones().catch(() => []);
    picker.replaceChildren(...[{deviceId: "", label: "Default microphone"}, ...mics].map((m) => {
      const option = new Option(m.label, m.deviceId);
      option.selected = m.deviceId === session.microphoneId;
      return option;
    }));
    picker.disabled = mics.length === 0;
  }
  picker.addEventListener("change", () => session.useMicrophone(picker.value).catch((e) => {
    showError("Could not use that microphone: " + e.message);
  }));
  session.addEventListener("devices", refreshMicrophones);
  session.addEventListener("status", (e) => { if (e.detail.status === "active") refreshMicrophones(); });
  refreshMicrophones();

  toggle.addEventListener("click", () => session.toggle());
  $("retry").addEventListener("click", async () => { hideError(); await session.stop(); await session.start(); });
  // Stands in for the host app's DailyCall feature. In a Daily room it makes a second daily-js
  // call object beside the voice session's, as the real feature would: both must coexist.
  let otherCall = null;
  videoCall.addEventListener("click", async () => {
    const joining = videoCall.getAttribute("aria-pressed") !== "true";
    videoCall.setAttribute("aria-pressed", String(joining));
    videoCall.textContent = joining ? "Leave video call" : "Join video call";
    if (session.daily && joining) {
      const Daily = (await import("/static/vendor/daily-js/daily-esm.js")).default;
      otherCall = Daily.createCallObject({allowMultipleCallInstances: true});
    } else if (otherCall && !joining) {
      await otherCall.destroy();
      otherCall = null;
    }
    window.dispatchEvent(new CustomEvent(joining ? "dailyCall.session.start" : "dailyCall.session.end"));
  });
  $("send").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = text.value.trim();
    if (value && session.sendMessage(value)) text.value = "";
  });

  render("inactive");
  toggle.disabled = true;
  session.loadConfig().then((config) => {
    if (!config.usePipecatVoice) {
      $("not-enabled").hidden = false;
      toggle.disabled = true;
      return;
    }
    toggle.disabled = false;
    $("recorded").hidden = !(config.conversation && config.conversation.recordCalls);
    if (config.voiceSessionConfig.autoStart) session.start();
  }).catch((error) => showError("Could not load the voice settings: " + error.message));
})();
