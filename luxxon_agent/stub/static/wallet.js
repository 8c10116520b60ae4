// SIWE sign-in with an injected EIP-1193 wallet (window.ethereum), as a browser extension provides.
// The stub builds the EIP-4361 message; the page signs it exactly as given.

import { api, ApiError } from "./api.js";

function utf8Hex(text) {
  const bytes = new TextEncoder().encode(text);
  return "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function hasWallet() {
  return typeof window.ethereum?.request === "function";
}

// Who the lx_session cookie belongs to, or null when there is no valid cookie.
export async function currentIdentity() {
  try {
    const me = await api("GET", "/me");
    return me.kind === "wallet_session" ? me : null;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return null;
    throw error;
  }
}

export async function signIn() {
  if (!hasWallet()) throw new Error("no wallet in this browser (window.ethereum is missing)");
  const accounts = await window.ethereum.request({ method: "eth_requestAccounts" });
  if (!accounts?.length) throw new Error("the wallet shared no account");
  const address = accounts[0];
  const challenge = await api("POST", "/auth/wallet/challenge", { walletAddress: address });
  const signature = await window.ethereum.request({
    method: "personal_sign",
    params: [utf8Hex(challenge.message), address],
  });
  return api("POST", "/auth/wallet/login", {
    walletAddress: address,
    nonce: challenge.nonce,
    signature,
  });
}

// Pin the wallet session to a workspace that can read `sessionId` (and, for the operator,
// publish it). Memberships are tried in order, the SUPPLIER ones first when operating.
export async function selectWorkspaceFor(sessionId, memberships, operate) {
  const rank = (membership) => (operate && membership.roles.includes("SUPPLIER") ? 0 : 1);
  const ordered = [...memberships].sort((a, b) => rank(a) - rank(b));
  let lastError = null;
  for (const membership of ordered) {
    await api("POST", "/auth/workspace/select", { workspaceId: membership.workspaceId });
    try {
      const session = await api("GET", `/sessions/${encodeURIComponent(sessionId)}`);
      if (!operate || session.operatorWorkspaceId === membership.workspaceId) return session;
    } catch (error) {
      if (!(error instanceof ApiError) || error.status >= 500) throw error;
      lastError = error;
    }
  }
  throw lastError ?? new Error("none of this wallet's workspaces can open this session");
}
