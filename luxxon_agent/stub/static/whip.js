// WHIP (RFC 9725) and WHEP: one offer, POSTed as application/sdp once ICE gathering is
// complete (no trickle), a 201 answer and a Location naming the resource, DELETE to end.

const GATHERING_TIMEOUT_MS = 5000;

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    // bounded: publish with the candidates found so far rather than wait forever
    const timer = setTimeout(finish, GATHERING_TIMEOUT_MS);
    function finish() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onChange);
      resolve();
    }
    function onChange() {
      if (pc.iceGatheringState === "complete") finish();
    }
    pc.addEventListener("icegatheringstatechange", onChange);
  });
}

export class WhipError extends Error {
  constructor(method, status, text) {
    super(`${method} refused: HTTP ${status}: ${text.trim().slice(0, 200)}`);
    this.status = status;
  }
}

// Negotiate `pc` with a WHIP or WHEP endpoint; returns the absolute resource URL.
export async function negotiate(pc, endpointUrl) {
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc);
  const response = await fetch(endpointUrl, {
    method: "POST",
    headers: { "Content-Type": "application/sdp" },
    body: pc.localDescription.sdp,
  });
  const text = await response.text();
  if (response.status !== 201 && response.status !== 200) {
    throw new WhipError("POST", response.status, text || response.statusText);
  }
  const location = response.headers.get("Location");
  await pc.setRemoteDescription({ type: "answer", sdp: text });
  // a Location may be relative to the endpoint
  return location ? new URL(location, endpointUrl).href : null;
}

export async function deleteResource(resourceUrl, { keepalive = false } = {}) {
  if (!resourceUrl) return;
  const response = await fetch(resourceUrl, { method: "DELETE", keepalive });
  if (!response.ok && response.status !== 404) {
    throw new WhipError("DELETE", response.status, await response.text());
  }
}
