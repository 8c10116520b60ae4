// Small DOM helpers shared by both modes.

export const $ = (id) => document.getElementById(id);

export function show(id, text) {
  $(id).textContent = text;
}

export function notice(text, isError = false) {
  const element = $("notice");
  element.textContent = text;
  element.classList.toggle("error", isError);
}

export function formatMicroUsdc(value) {
  // µUSDC arrive as decimal strings: format with BigInt so no float rounding creeps in
  const micro = BigInt(value);
  const whole = micro / 1000000n;
  const fraction = (micro % 1000000n).toString().padStart(6, "0");
  return `${whole}.${fraction} USDC`;
}

export function formatDuration(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds));
  const hh = String(Math.floor(s / 3600)).padStart(2, "0");
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return `${hh}:${mm}:${ss}`;
}

// Call `fn` now and then every `ms`, one call at a time; returns a stop function.
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    try {
      await fn();
    } catch (error) {
      notice(error.message, true);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
