// Watch mode: play the session over WHEP from its whepUrl, with state, position and meter.

import { api } from "./api.js";
import { deleteResource, negotiate } from "./whip.js";
import { $, formatDuration, formatMicroUsdc, notice, show } from "./ui.js";

const RETRY_MS = 3000;

export class Watcher {
  constructor(sessionId) {
    this.sessionId = sessionId;
    this.pc = null;
    this.resourceUrl = null;
    this.retryAt = 0;
  }

  mount() {
    $("watch-panel").hidden = false;
    // keepalive lets the DELETE outlive the closing tab
    window.addEventListener("pagehide", () =>
      deleteResource(this.resourceUrl, { keepalive: true }).catch(() => {}),
    );
  }

  onSession(session) {
    if (session.state === "LIVE" && session.whepUrl) {
      if (!this.pc && Date.now() >= this.retryAt) this.play(session.whepUrl);
      return;
    }
    if (this.pc) this.close();
    show("play-state", session.state === "LIVE" ? "waiting for video" : `session ${session.state}`);
  }

  async play(whepUrl) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.addEventListener("track", (event) => {
      stream.addTrack(event.track);
      const video = $("video");
      if (video.srcObject !== stream) video.srcObject = stream;
      video.play().catch((error) => notice(`autoplay: ${error.message}`, true));
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.pc) return;
      show("play-state", pc.connectionState === "connected" ? "playing" : pc.connectionState);
      if (pc.connectionState === "failed") this.close(true);
    });
    show("play-state", "connecting");
    try {
      this.resourceUrl = await negotiate(pc, whepUrl);
    } catch (error) {
      notice(error.message, true);
      this.close(true);
    }
  }

  close(retry = false) {
    // best effort: the server drops a viewer whose connection closed anyway
    deleteResource(this.resourceUrl).catch((error) => console.warn("WHEP DELETE", error));
    this.pc?.close();
    $("video").srcObject = null;
    this.pc = null;
    this.resourceUrl = null;
    // a failed playback is tried again by the next session poll, no sooner than RETRY_MS
    this.retryAt = retry ? Date.now() + RETRY_MS : 0;
    if (retry) show("play-state", "retrying");
  }

  // The page-data endpoint: latest telemetry position and the running meter.
  async refreshLive() {
    const live = await api("GET", `/sessions/${encodeURIComponent(this.sessionId)}/live.json`, undefined, {
      prefix: "",
    });
    const position = live.position;
    show(
      "position",
      position
        ? `${position.lat.toFixed(6)}, ${position.lng.toFixed(6)} ±${Math.round(position.accuracyMeters)} m` +
            ` (${position.source}, ${new Date(position.capturedAt).toLocaleTimeString()})`
        : "no telemetry yet",
    );
    const meter = live.meter;
    show(
      "meter",
      meter.startedAt
        ? `${formatDuration(meter.cleanSeconds)} clean of ${formatDuration(meter.elapsedSeconds)} (${meter.mode})`
        : "not started",
    );
    show("charged", formatMicroUsdc(meter.chargedMicroUsdc));
    const ingest = live.ingest;
    show(
      "ingest",
      ingest?.frames
        ? `${ingest.width}×${ingest.height}, ${Math.round(ingest.bitrateBps / 1000)} kbit/s, ${ingest.frames} frames`
        : "no frames yet",
    );
  }
}
