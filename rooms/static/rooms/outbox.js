// Messages written here and not stored yet, kept in sessionStorage (per tab, per room) so a
// reconnect or a reload sends them again with the same client id: the server stores each
// client id once and answers a repeat with the original message.

const RESEND_AFTER_MS = 5000;

/** A fresh client id: 32 hex digits (crypto.randomUUID needs a secure context). */
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function valid(entry) {
  return (
    entry && typeof entry.clientId === "string" && /^[A-Za-z0-9_-]{1,64}$/.test(entry.clientId) &&
    typeof entry.body === "string"
  );
}

export class Outbox {
  constructor(slug) {
    this.key = "chat-outbox:" + slug;
    this.entries = this.load();
    this.inFlight = null; // client id sent and awaiting its echo (or an error)
    this.timer = null;
  }

  load() {
    try {
      const data = JSON.parse(sessionStorage.getItem(this.key) || "[]");
      return Array.isArray(data) ? data.filter(valid) : [];
    } catch (err) {
      return [];
    }
  }

  save() {
    try {
      if (this.entries.length) sessionStorage.setItem(this.key, JSON.stringify(this.entries));
      else sessionStorage.removeItem(this.key);
    } catch (err) {
      // Storage full or disabled: the entries still live in memory until the tab closes.
    }
  }

  add(entry) {
    this.entries.push(entry);
    this.save();
  }

  has(clientId) {
    return this.entries.some((entry) => entry.clientId === clientId);
  }

  /** Forget an entry (stored, or refused); returns it, or null. */
  remove(clientId) {
    const index = this.entries.findIndex((entry) => entry.clientId === clientId);
    if (this.inFlight === clientId) this.reset();
    if (index < 0) return null;
    const [entry] = this.entries.splice(index, 1);
    this.save();
    return entry;
  }

  /** The server refused an entry: keep it (and its text) out of the queue until a retry. */
  fail(clientId, detail) {
    const entry = this.entries.find((e) => e.clientId === clientId);
    if (this.inFlight === clientId) this.reset();
    if (!entry) return;
    entry.failed = detail;
    this.save();
  }

  /** Queue a refused entry again; false if there is no such entry. */
  retry(clientId) {
    const entry = this.entries.find((e) => e.clientId === clientId);
    if (!entry) return false;
    delete entry.failed;
    this.save();
    return true;
  }

  /** The connection is gone: nothing is in flight any more. */
  reset() {
    this.inFlight = null;
    clearTimeout(this.timer);
  }

  /**
   * Send the oldest entry through ``post`` unless one is awaiting its echo. One at a time, in
   * order, so an error frame (which names no message) is known to be about it. With no answer
   * in a while the same entry is sent again: a repeat is harmless and fetches a lost echo.
   */
  pump(post) {
    const entry = this.entries.find((e) => !e.failed);
    if (this.inFlight || !entry || !post(entry)) return;
    this.inFlight = entry.clientId;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.inFlight = null;
      this.pump(post);
    }, RESEND_AFTER_MS);
  }
}
