/*
 * VoiceSession: one user's voice session in the browser, in plain JavaScript.
 *
 * Lifecycle: get or create the room -> open the websocket -> microphone ->
 * POST /api/bot/join -> connect audio (SmallWebRTC for the local provider;
 * daily-js, loaded lazily, for the Daily provider) -> "active" when the
 * server says the bot has the user's media. stop() leaves the room, closes
 * the peer connection and releases the microphone; the bot tears down after
 * the persistence window, and a start() inside it reuses room and session.
 *
 * Mutual exclusion with other calls on the page: window events
 * `dailyCall.session.start` / `dailyCall.session.end` pause (mic muted,
 * connection kept) and resume the session.
 */
(function (global) {
  "use strict";

  const SESSION_STATUS = Object.freeze({
    INACTIVE: "inactive", CONNECTING: "connecting", ACTIVE: "active",
    PAUSED: "paused", UNAVAILABLE: "unavailable",
  });

  function cookie(name) {
    const match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, path, body, headers) {
    const response = await fetch(path, {
      method, credentials: "same-origin",
      headers: Object.assign({"Content-Type": "application/json", "X-CSRFToken": cookie("csrftoken")}, headers || {}),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { /* empty body */ }
    if (!response.ok) {
      const error = new Error((data && data.detail) || ("HTTP " + response.status));
      error.status = response.status; error.data = data;
      throw error;
    }
    return data;
  }

  class VoiceError extends Error {
    constructor(kind, message) { super(message); this.kind = kind; }
  }

  class VoiceSession extends EventTarget {
    constructor(options) {
      super();
      this.assistant = options.assistant;
      this.status = SESSION_STATUS.INACTIVE;
      this.config = null;
      this.room = null;
      this.sessionId = null;
      this.ws = null;
      this.pc = null;
      this.mic = null;
      this.daily = null;
      this.pingTimer = null;
      this.lastEventId = 0;
      this.pausedForDailyCall = false;
      this.joining = false;  // between the join request and its answer (see onEvent)
      this.early = [];
      try { this.microphoneId = localStorage.getItem("voice.microphone") || ""; } catch (e) { this.microphoneId = ""; }
      if (navigator.mediaDevices) navigator.mediaDevices.addEventListener("devicechange", () => this.emit("devices", {}));
      this._onCallStart = () => this.pauseForDailyCall();
      this._onCallEnd = () => this.resumeAfterDailyCall();
      global.addEventListener("dailyCall.session.start", this._onCallStart);
      global.addEventListener("dailyCall.session.end", this._onCallEnd);
      // A closed tab leaves the Daily call at once, instead of lingering until Daily times it out.
      global.addEventListener("pagehide", () => { if (this.daily) this.daily.leave(); });
    }

    // --- state -----------------------------------------------------------
    setStatus(status) {
      if (this.status === status) return;
      this.status = status;
      console.log("[VoiceSession] status", status);
      this.emit("status", {status});
    }
    emit(type, detail) { this.dispatchEvent(new CustomEvent(type, {detail})); }

    async loadConfig() {
      this.config = await api("GET", "/api/voice/config?assistant=" + encodeURIComponent(this.assistant));
      return this.config;
    }

    // --- start / stop ------------------------------------------------------
    async start() {
      if (this.status !== SESSION_STATUS.INACTIVE && this.status !== SESSION_STATUS.UNAVAILABLE) return;
      this.setStatus(SESSION_STATUS.CONNECTING);
      try {
        if (!this.config) await this.loadConfig();
        if (!this.config.usePipecatVoice) throw new VoiceError("not_enabled", "Voice is not enabled for this assistant.");
        this.room = await api("POST", "/api/voice/room", {assistant: this.assistant});
        console.log("[VoiceSession] room ready", {roomUrl: this.room.roomUrl, reused: this.room.reused});
        await this.openSocket();
        await this.openMicrophone();
        const cfg = this.config;
        this.joining = true;
        this.early = [];
        const join = await api("POST", "/api/bot/join", {
          room_url: this.room.roomUrl, assistant: this.assistant, personalityId: cfg.personalityId,
          persona: cfg.persona, voice: cfg.voice, voiceOnly: true,
          sessionPersistence: cfg.voiceSessionConfig.persistence,
        }).catch((e) => { throw new VoiceError("bot_join", "The assistant could not join: " + e.message); });
        this.sessionId = join.sessionId;
        this.joining = false;
        const early = this.early;
        this.early = [];
        early.filter((e) => e.sessionId === join.sessionId).forEach((e) => this.onEvent(e));
        console.log("[BotJoin] session", join.sessionId, "reused", join.reused);
        if (join.status === SESSION_STATUS.ACTIVE) this.setStatus(SESSION_STATUS.ACTIVE);
        if (this.room.provider === "daily") await this.connectDaily(); else await this.connectWebRTC();
      } catch (error) {
        this.joining = false;
        this.early = [];
        console.error("[VoiceSession] start failed", error);
        if (error.kind === "microphone") this.reportClientError("audio", "microphone_unavailable", error.message);
        await this.teardownMedia();
        this.setStatus(error.kind === "not_enabled" ? SESSION_STATUS.INACTIVE : SESSION_STATUS.UNAVAILABLE);
        this.emit("error", {kind: error.kind || "start", message: error.message});
      }
    }

    async stop() {
      if (this.status === SESSION_STATUS.INACTIVE) return;
      const persistence = this.config ? this.config.voiceSessionConfig.persistence : undefined;
      await this.teardownMedia();
      this.setStatus(SESSION_STATUS.INACTIVE);
      this.pausedForDailyCall = false;
      try {
        if (this.room) await api("DELETE", "/api/voice/room", {roomUrl: this.room.roomUrl, teardownDelay: persistence});
      } catch (e) { console.warn("[VoiceSession] leave failed", e); }
      this.sessionId = null;
      this.emit("speaking", {role: null});
    }

    toggle() {
      if (this.status === SESSION_STATUS.ACTIVE || this.status === SESSION_STATUS.PAUSED) return this.stop();
      if (this.status === SESSION_STATUS.INACTIVE || this.status === SESSION_STATUS.UNAVAILABLE) return this.start();
    }

    async teardownMedia() {
      clearInterval(this.pingTimer);
      if (this.pc) { this.pc.close(); this.pc = null; }
      if (this.daily) { try { await this.daily.leave(); await this.daily.destroy(); } catch (e) { /* gone */ } this.daily = null; }
      if (this.mic) { this.mic.getTracks().forEach((t) => t.stop()); this.mic = null; }
      this.emit("media", {stream: null, remote: null});
    }

    // --- microphone and audio transports -------------------------------------
    async openMicrophone() {
      try {
        this.mic = await this.getMicrophone(this.microphoneId);
      } catch (e) {
        throw new VoiceError("microphone", "Microphone access was denied or no microphone was found.");
      }
      this.emit("media", {stream: this.mic, remote: null});
    }

    // The chosen microphone (the picker's, remembered), or the default when it is gone (unplugged).
    async getMicrophone(deviceId) {
      const audio = {echoCancellation: true, noiseSuppression: true, autoGainControl: true};
      if (deviceId) {
        try {
          return await navigator.mediaDevices.getUserMedia({audio: {...audio, deviceId: {exact: deviceId}}, video: false});
        } catch (e) {
          if (e.name !== "OverconstrainedError" && e.name !== "NotFoundError") throw e;
          console.warn("[VoiceSession] the chosen microphone is gone; using the default");
        }
      }
      return navigator.mediaDevices.getUserMedia({audio, video: false});
    }

    // The microphones the browser offers (their names once the page may use the microphone).
    async listMicrophones() {
      if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return [];
      const devices = await navigator.mediaDevices.enumerateDevices();
      return devices.filter((d) => d.kind === "audioinput" && d.deviceId)
        .map((d, i) => ({deviceId: d.deviceId, label: d.label || "Microphone " + (i + 1)}));
    }

    // Switch microphones; during a call the new one's track replaces the old in the connection
    // (WebRTC's replaceTrack, or daily-js's input devices), so the call goes on without a rejoin.
    async useMicrophone(deviceId) {
      this.microphoneId = deviceId || "";
      try { localStorage.setItem("voice.microphone", this.microphoneId); } catch (e) { /* private mode */ }
      if (!this.mic) return;
      const old = this.mic;
      const enabled = old.getAudioTracks().every((t) => t.enabled);
      const stream = await this.getMicrophone(this.microphoneId);
      const track = stream.getAudioTracks()[0];
      track.enabled = enabled;  // a muted user stays muted
      if (this.pc) {
        const sender = this.pc.getSenders().find((s) => s.track && s.track.kind === "audio");
        if (sender) await sender.replaceTrack(track);
      }
      if (this.daily) await this.daily.setInputDevicesAsync({audioSource: track});
      this.mic = stream;
      old.getTracks().forEach((t) => t.stop());
      this.emit("media", {stream: null, remote: null});  // the level meter follows the new microphone
      this.emit("media", {stream, remote: null});
      console.log("[VoiceSession] microphone", track.label);
    }

    async connectWebRTC() {
      const pc = new RTCPeerConnection({iceServers: []});
      this.pc = pc;
      this.mic.getAudioTracks().forEach((track) => pc.addTrack(track, this.mic));
      pc.addTransceiver("video", {direction: "recvonly"}); // Pipecat maps audio, then video, by index
      const channel = pc.createDataChannel("chat");
      this.pingTimer = setInterval(() => { if (channel.readyState === "open") channel.send("ping"); }, 1000);
      pc.ontrack = (event) => {
        if (event.track.kind === "audio") this.emit("media", {stream: this.mic, remote: event.streams[0] || new MediaStream([event.track])});
      };
      pc.onconnectionstatechange = () => {
        if (pc === this.pc && pc.connectionState === "failed") {
          this.setStatus(SESSION_STATUS.UNAVAILABLE);
          this.reportClientError("audio", "ice_failed", "WebRTC connection failed");
          this.emit("error", {kind: "audio", message: "The audio connection to the assistant failed."});
        }
      };
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((resolve) => {  // no trickle: send the offer with its candidates
        if (pc.iceGatheringState === "complete") return resolve();
        const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
        pc.addEventListener("icegatheringstatechange", done);
        setTimeout(resolve, 2000);
      });
      const answer = await api("POST", "/api/voice/webrtc/offer",
        {sdp: pc.localDescription.sdp, type: "offer"}, {Authorization: "Bearer " + this.room.token})
        .catch((e) => { throw new VoiceError("bot_join", "The assistant is not available: " + e.message); });
      await pc.setRemoteDescription({sdp: answer.sdp, type: answer.type});
    }

    async connectDaily() {
      // daily-js is only fetched when a room actually lives at Daily (loaded lazily).
      const module = await import("/static/vendor/daily-js/daily-esm.js");
      const Daily = module.default;
      // allowMultipleCallInstances: the page's own DailyCall (video) lives beside this one;
      // without it daily-js refuses a second call object on the page.
      this.daily = Daily.createCallObject({audioSource: this.mic.getAudioTracks()[0], videoSource: false,
        subscribeToTracksAutomatically: true, allowMultipleCallInstances: true});
      this.daily.on("track-started", (e) => {
        if (e.track.kind === "audio" && !e.participant.local) this.emit("media", {stream: this.mic, remote: new MediaStream([e.track])});
      });
      this.daily.on("error", (e) => {
        // Daily's fatal error types: the token carries eject_at_token_exp, so Daily ends the
        // call at its expiry with "exp-token"; "exp-room", "ejected", "meeting-full"... otherwise.
        const type = (e && e.error && e.error.type) || "";
        const text = ((e && e.errorMsg) || type || "Daily error").slice(0, 150);
        if (type === "exp-token") this.reportClientError("token_expiry", "daily_token_expired", text);
        else this.reportClientError("audio", "daily_" + (type || "error").replace(/[^a-z-]/g, ""), text);
      });
      await this.daily.join({url: this.room.roomUrl, token: this.room.token, startVideoOff: true});
    }

    // Failures only the browser sees (microphone, ICE, Daily) are counted by the server too.
    reportClientError(kind, code, detail) {
      if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify({type: "client.error", kind, code, detail}));
    }

    // --- websocket --------------------------------------------------------------
    openSocket() {
      if (this.ws && this.ws.readyState <= 1) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const scheme = location.protocol === "https:" ? "wss://" : "ws://";
        const ws = new WebSocket(scheme + location.host + "/ws/voice/" + (this.lastEventId ? "?after=" + this.lastEventId : ""));
        this.ws = ws;
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new VoiceError("socket", "Could not reach the server."));
        ws.onmessage = (message) => this.onEvent(JSON.parse(message.data));
        ws.onclose = () => {
          if (this.ws !== ws) return;
          this.ws = null;
          if (this.status !== SESSION_STATUS.INACTIVE) setTimeout(() => this.openSocket().catch(() => {}), 1000);
        };
      });
    }

    sendSocket(message) {
      if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(message));
    }

    onEvent(event) {
      if (event.id) this.lastEventId = Math.max(this.lastEventId, event.id);
      if (event.type === "voice.connected") { this.lastEventId = Math.max(this.lastEventId, event.lastEventId || 0); return; }
      if (event.type === "voice.error" && !event.sessionId) { this.emit("error", {kind: event.payload.code, message: event.payload.detail}); return; }
      if (this.sessionId && event.sessionId !== this.sessionId) return;
      // Joining: which session is ours is not known until the join answers, and the room's
      // previous session may still be ending (its voice.session.end would end this start).
      // Its events wait, and those of the session the join names are played after it.
      if (this.joining) { this.early.push(event); return; }
      if (!this.sessionId && (!this.room || event.roomUrl !== this.room.roomUrl)) return;
      const p = event.payload || {};
      switch (event.type) {
        case "voice.session.status":
          if (p.status === "active" && this.pausedForDailyCall) break;
          if (this.status !== SESSION_STATUS.INACTIVE) this.setStatus(p.status === "inactive" ? SESSION_STATUS.CONNECTING : p.status);
          if (p.status === "unavailable") this.emit("error", {kind: "worker_lost", message: "The assistant stopped responding."});
          break;
        case "voice.session.end":
          if (this.status !== SESSION_STATUS.INACTIVE) { this.teardownMedia(); this.setStatus(SESSION_STATUS.INACTIVE); }
          this.emit("ended", {reason: p.reason || p.endReason || ""});
          break;
        case "voice.error":
          this.emit("error", {kind: p.code, message: p.message || p.detail || "Something went wrong."});
          break;
        case "voice.speech.start": this.emit("speaking", {role: "user"}); break;
        case "voice.speech.end": this.emit("speaking", {role: null}); break;
        case "voice.bot.speaking": this.emit("speaking", {role: p.speaking ? "assistant" : null}); break;
        case "voice.audio.level": this.emit("level", p); break;
        case "voice.transcript": this.emit("transcript", p); break;
        case "voice.tool.call": case "voice.tool.result": this.emit("tool", {type: event.type, ...p}); break;
      }
    }

    // --- messages and mutual exclusion -----------------------------------------------
    sendMessage(content) {
      if (this.status !== SESSION_STATUS.ACTIVE) { console.warn("[VoiceSession] not active"); return false; }
      this.sendSocket({type: "user-message", content, sessionId: this.sessionId});
      return true;
    }

    // Mute through Daily's own API in a Daily room, so Daily (and the bot) see the mic as off.
    setMicrophone(on) {
      if (this.daily) this.daily.setLocalAudio(on);
      else if (this.mic) this.mic.getAudioTracks().forEach((t) => { t.enabled = on; });
    }

    pauseForDailyCall() {
      if (this.status !== SESSION_STATUS.ACTIVE) return;
      console.log("[VoiceSession] DailyCall started - pausing voice session");
      this.pausedForDailyCall = true;
      this.setMicrophone(false);
      this.setStatus(SESSION_STATUS.PAUSED);
      this.sendSocket({type: "dailyCall.session.start"});
    }

    resumeAfterDailyCall() {
      if (!this.pausedForDailyCall) return;
      console.log("[VoiceSession] DailyCall ended - resuming voice session");
      this.pausedForDailyCall = false;
      this.setMicrophone(true);
      this.sendSocket({type: "dailyCall.session.end"});
    }
  }

  global.VoiceSession = VoiceSession;
  global.SESSION_STATUS = SESSION_STATUS;
})(window);
