// Entry point of /sessions/<id>: picks the mode, signs in, polls the session.

import { api, ApiError } from "./api.js";
import { Operator } from "./operate.js";
import { Watcher } from "./watch.js";
import { currentIdentity, selectWorkspaceFor, signIn } from "./wallet.js";
import { $, every, notice, show } from "./ui.js";

const SESSION_POLL_MS = 2000;

const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const mode = new URLSearchParams(location.search).get("mode") === "watch" ? "watch" : "operate";

let identity = null;
let polling = null;
let signingIn = null;
let cookieRefused = false;

function showIdentity() {
  show("wallet", identity ? identity.walletAddress : "not signed in");
  $("sign-in").hidden = Boolean(identity);
}

async function loadSession() {
  return api("GET", `/sessions/${encodeURIComponent(sessionId)}`);
}

// Sign in once (SIWE) and pin a workspace that can open this session; reuses a valid cookie.
async function ensureSignedIn() {
  if (identity) return;
  signingIn ??= (async () => {
    let me = cookieRefused ? null : await currentIdentity();
    let memberships = me?.memberships ?? [];
    if (!me) {
      const login = await signIn();
      memberships = login.memberships;
      me = { walletAddress: login.walletAddress, memberships, workspaceId: login.selectedWorkspaceId };
    }
    try {
      const session = await loadSession();
      if (mode === "watch" || session.operatorWorkspaceId === me.workspaceId) {
        identity = me;
        return;
      }
    } catch (error) {
      if (!(error instanceof ApiError) || error.status >= 500) throw error;
    }
    try {
      await selectWorkspaceFor(sessionId, memberships, mode === "operate");
    } catch (error) {
      // this wallet cannot open the session: the next attempt asks the wallet again
      cookieRefused = true;
      throw error;
    }
    identity = me;
  })().finally(() => {
    signingIn = null;
  });
  await signingIn;
  showIdentity();
  notice("");
  startPolling();
}

const panel = mode === "operate" ? new Operator(sessionId, ensureSignedIn) : new Watcher(sessionId);

function startPolling() {
  if (polling) return;
  polling = every(SESSION_POLL_MS, async () => {
    const session = await loadSession();
    show("session-state", session.state);
    document.body.dataset.sessionState = session.state;
    panel.onSession(session);
    if (mode === "watch") await panel.refreshLive();
  });
}

async function main() {
  show("session-id", sessionId);
  document.body.dataset.mode = mode;
  $(`mode-${mode}`).setAttribute("aria-current", "page");
  panel.mount();
  $("sign-in").addEventListener("click", () =>
    ensureSignedIn().catch((error) => notice(error.message, true)),
  );
  if (await currentIdentity()) {
    await ensureSignedIn();
  } else {
    showIdentity();
    notice(mode === "operate" ? "press Start: your wallet signs you in" : "sign in with your wallet to watch");
  }
}

main().catch((error) => notice(error.message, true));
