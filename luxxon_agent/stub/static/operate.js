// Operate mode: publish this device's camera and microphone to the session's whipUrl.

import { api } from "./api.js";
import { deleteResource, negotiate } from "./whip.js";
import { $, every, notice, show } from "./ui.js";

const TERMINAL = new Set(["ENDED", "CANCELLED", "EXPIRED"]);

export class Operator {
  constructor(sessionId, ensureSignedIn) {
    this.sessionId = sessionId;
    this.ensureSignedIn = ensureSignedIn;
    this.state = "idle";
    this.pc = null;
    this.stream = null;
    this.resourceUrl = null;
    this.stopStats = null;
    this.lastBytes = null;
  }

  mount() {
    $("operate-panel").hidden = false;
    $("start").addEventListener("click", () => this.start());
    $("stop").addEventListener("click", () => this.stop());
    $("camera").addEventListener("change", () =>
      this.switchCamera($("camera").value).catch((error) => notice(error.message, true)),
    );
    // keepalive lets the DELETE outlive the closing tab: the endpoint is freed at once
    window.addEventListener("pagehide", () =>
      deleteResource(this.resourceUrl, { keepalive: true }).catch(() => {}),
    );
  }

  setState(state) {
    this.state = state;
    show("publish-state", state);
    $("start").disabled = state !== "idle" && state !== "failed";
    $("stop").disabled = state === "idle" || state === "stopping";
  }

  // Called by the page with each fresh copy of the session.
  onSession(session) {
    if (TERMINAL.has(session.state) && this.pc) {
      notice(`session is ${session.state}: publishing stopped`);
      this.stop();
    }
  }

  async openMedia(deviceId) {
    // rear camera preferred (phones); a picked camera is taken exactly
    const video = deviceId
      ? { deviceId: { exact: deviceId } }
      : { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } };
    try {
      return await navigator.mediaDevices.getUserMedia({ video, audio: true });
    } catch (error) {
      // a device without a microphone still publishes its picture
      if (error.name !== "NotFoundError" && error.name !== "NotReadableError") throw error;
      notice("no usable microphone: publishing video only");
      return navigator.mediaDevices.getUserMedia({ video, audio: false });
    }
  }

  async fillCameraPicker() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const cameras = devices.filter((d) => d.kind === "videoinput");
    const select = $("camera");
    const current = this.stream?.getVideoTracks()[0]?.getSettings().deviceId;
    select.replaceChildren(
      ...cameras.map((camera, index) => {
        const option = document.createElement("option");
        option.value = camera.deviceId;
        option.textContent = camera.label || `camera ${index + 1}`;
        option.selected = camera.deviceId === current;
        return option;
      }),
    );
    $("camera-picker").hidden = cameras.length < 2;
  }

  async start() {
    if (this.state !== "idle" && this.state !== "failed") return;
    this.setState("starting");
    notice("");
    try {
      await this.ensureSignedIn();
      const token = await api(
        "GET",
        `/sessions/${encodeURIComponent(this.sessionId)}/producer-token`,
      );
      this.stream = await this.openMedia(null);
      $("video").srcObject = this.stream;
      await this.fillCameraPicker();

      const pc = new RTCPeerConnection({ iceServers: [] });
      this.pc = pc;
      for (const track of this.stream.getTracks()) {
        pc.addTransceiver(track, { direction: "sendonly", streams: [this.stream] });
      }
      pc.addEventListener("connectionstatechange", () => this.onConnectionState(pc));
      this.setState("connecting");
      this.resourceUrl = await negotiate(pc, token.whipUrl);
      this.stopStats = every(1000, () => this.readStats());
    } catch (error) {
      notice(error.message, true);
      await this.teardown();
      this.setState("failed");
    }
  }

  onConnectionState(pc) {
    if (pc !== this.pc) return;
    const state = pc.connectionState;
    if (state === "connected") this.setState("publishing");
    else if (state === "failed") {
      notice("the connection to the ingest failed; press Start to publish again", true);
      this.teardown().then(() => this.setState("failed"));
    } else if (state === "disconnected") this.setState("reconnecting");
  }

  async readStats() {
    if (!this.pc) return;
    const report = await this.pc.getStats();
    for (const stats of report.values()) {
      if (stats.type !== "outbound-rtp" || stats.kind !== "video") continue;
      if (this.lastBytes) {
        const seconds = (stats.timestamp - this.lastBytes.timestamp) / 1000;
        const kbps = seconds > 0 ? ((stats.bytesSent - this.lastBytes.bytes) * 8) / 1000 / seconds : 0;
        show("bitrate", `${Math.round(kbps)} kbit/s`);
      }
      this.lastBytes = { bytes: stats.bytesSent, timestamp: stats.timestamp };
      show("framerate", stats.framesPerSecond ? `${Math.round(stats.framesPerSecond)} fps` : "–");
      if (stats.frameWidth) show("resolution", `${stats.frameWidth}×${stats.frameHeight}`);
    }
  }

  async switchCamera(deviceId) {
    if (!this.stream || !deviceId) return;
    const fresh = await navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: deviceId } } });
    const track = fresh.getVideoTracks()[0];
    const sender = this.pc?.getSenders().find((s) => s.track?.kind === "video");
    if (sender) await sender.replaceTrack(track);
    for (const old of this.stream.getVideoTracks()) {
      this.stream.removeTrack(old);
      old.stop();
    }
    this.stream.addTrack(track);
  }

  async stop() {
    if (this.state === "idle" || this.state === "stopping") return;
    this.setState("stopping");
    try {
      await deleteResource(this.resourceUrl);
    } catch (error) {
      notice(error.message, true);
    }
    await this.teardown();
    this.setState("idle");
  }

  async teardown() {
    this.stopStats?.();
    this.stopStats = null;
    this.pc?.close();
    this.pc = null;
    this.resourceUrl = null;
    this.lastBytes = null;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    $("video").srcObject = null;
    show("bitrate", "–");
    show("framerate", "–");
  }
}
