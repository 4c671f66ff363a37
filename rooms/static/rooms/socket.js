// The room socket: the only module that knows the wire protocol (docs/protocol.md). It keeps
// the seq bookkeeping (gaps, catch-up), reconnects with backoff and jitter, and hands the page
// plain change objects. Every frame is re-dispatched as "chat:frame" for the bell.

// Close codes after which reconnecting cannot help.
const STOP = {
  4401: "Logged out: reload to log in again",
  4403: "You are no longer a member of this room",
  4404: "This room no longer exists",
};

function toMessage(frame) {
  return {
    id: frame.id,
    seq: frame.seq,
    user: frame.user,
    body: frame.body,
    html: frame.html || "",
    created: frame.created,
    clientId: frame.client_id || null,
    replyTo: frame.reply_to ?? null,
    reply: frame.reply || null,
    edited: frame.edited || null,
    reactions: frame.reactions || {},
  };
}

/**
 * Open the room socket and keep it open. ``on`` receives: state(state, text), ready() once a
 * (re)connect has caught up, message(msg), edited({id, body, html, edited}), deleted(id),
 * reactions(id, state), history({before|after, messages: [msg], more}),
 * error({code, detail, request}), presence({online, count}) and typing(username).
 */
export function roomSocket({ slug, lastSeq, on }) {
  let known = lastSeq; // highest seq with none missing below it
  const seen = new Set(); // seqs received above ``known``
  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let stopped = false;
  let syncing = false; // a catch-up is under way: the seqs it sends are not contiguous
  let ready = false; // the connect's own catch-up has ended
  let lastRequest = null;

  function isOpen() {
    return socket !== null && socket.readyState === WebSocket.OPEN;
  }

  function write(frame) {
    socket.send(JSON.stringify(frame));
  }

  // Error frames name no request; the server answers in order and the page sends one change
  // at a time (outbox.js sends messages one by one), so the latest request is the one refused.
  function request(description, frame) {
    if (!ready || !isOpen()) return false;
    lastRequest = description;
    write(frame);
    return true;
  }

  function requestSync() {
    if (syncing || !isOpen()) return;
    syncing = true;
    write({ type: "sync", after: known });
  }

  function advance() {
    for (const seq of seen) if (seq <= known) seen.delete(seq);
    while (seen.delete(known + 1)) known += 1;
  }

  function note(seq) {
    if (!Number.isInteger(seq) || seq <= known) return;
    seen.add(seq);
    advance();
    // A seq beyond the next one means changes were missed: fetch them from the database.
    if (seen.size) requestSync();
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "message":
        on.message(toMessage(frame));
        note(frame.seq);
        break;
      case "message.edited":
        on.edited({ id: frame.id, body: frame.body, html: frame.html || "", edited: frame.edited });
        note(frame.seq);
        break;
      case "message.deleted":
        on.deleted(frame.id);
        note(frame.seq);
        break;
      case "reactions":
        on.reactions(frame.id, frame.reactions || {});
        note(frame.seq);
        break;
      case "synced":
        // Everything stored up to last_seq has now been sent.
        syncing = false;
        known = Math.max(known, frame.last_seq);
        advance();
        if (frame.more || seen.size) requestSync();
        if (!ready && !syncing) {
          ready = true;
          on.ready();
        }
        break;
      case "error":
        if (frame.code === "rate_limited" && syncing && lastRequest === null) {
          // The catch-up was refused for now (the user's sync budget is spent): ask again
          // soon, or the gap would stay open until the next reconnect.
          syncing = false;
          setTimeout(requestSync, 1000 + Math.random() * 1000);
          break;
        }
        on.error({ code: frame.code, detail: frame.detail, request: lastRequest });
        lastRequest = null;
        break;
      case "history":
        // A page of stored messages asked for by history(): not live changes, so no seq
        // bookkeeping (a message's seq is its creation, not a change the socket has seen).
        on.history({
          before: frame.before ?? null,
          after: frame.after ?? null,
          messages: (frame.messages || []).map(toMessage),
          more: Boolean(frame.more),
        });
        break;
      case "member.removed":
        note(frame.seq); // someone else left: nothing to show, but the seq is the room's
        break;
      case "presence": // ephemeral: no seq, never in a catch-up
        if (on.presence) {
          const online = Array.isArray(frame.online) ? frame.online : [];
          const count = Number.isInteger(frame.count) ? frame.count : online.length;
          on.presence({ online: online, count: count });
        }
        break;
      case "typing":
        if (on.typing && typeof frame.user === "string") on.typing(frame.user);
        break;
      default:
        break; // room.added, notifications and unknown types: nothing for the room page
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const path = "/ws/rooms/" + encodeURIComponent(slug) + "/?presence=1&after=" + known;
    on.state("connecting", attempt ? "Reconnecting…" : "Connecting…");
    syncing = true; // the connect itself catches up; its synced frame ends that
    ready = false;
    const ws = new WebSocket(scheme + location.host + path);
    socket = ws;
    ws.addEventListener("open", function () {
      attempt = 0;
      on.state("open", "Connected");
      document.dispatchEvent(new CustomEvent("chat:open"));
    });
    ws.addEventListener("message", function (event) {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (!frame || typeof frame !== "object") return;
      onFrame(frame);
      // Other scripts of the page (the notifications bell) share this socket.
      document.dispatchEvent(new CustomEvent("chat:frame", { detail: frame }));
    });
    ws.addEventListener("close", function (event) {
      if (socket !== ws) return;
      socket = null;
      syncing = false;
      ready = false;
      lastRequest = null;
      if (STOP[event.code]) {
        stopped = true;
        on.state("closed", STOP[event.code]);
        return;
      }
      // 4429: too many frames or too many open tabs; come back slowly (7.5 to 15 s).
      if (event.code === 4429) attempt = Math.max(attempt, 5);
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (stopped) return;
    // Exponential backoff with jitter, so a restarted server is not hit by every tab at once.
    const ceiling = Math.min(15000, 500 * 2 ** attempt);
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    attempt += 1;
    on.state("offline", "Offline: reconnecting in " + Math.ceil(delay / 1000) + " s");
    retryTimer = setTimeout(connect, delay);
  }

  window.addEventListener("online", function () {
    if (!socket && !stopped) {
      attempt = 0;
      connect();
    }
  });

  connect();

  return {
    isReady: function () {
      return ready && isOpen();
    },
    /** Tell the room this user is typing (the caller throttles it). */
    typing: function () {
      if (!ready || !isOpen()) return false;
      write({ type: "typing" });
      return true;
    },
    post: function (entry) {
      const frame = { type: "message", body: entry.body, client_id: entry.clientId };
      if (entry.replyTo) frame.reply_to = entry.replyTo;
      return request({ kind: "message", clientId: entry.clientId }, frame);
    },
    edit: function (id, body) {
      return request({ kind: "edit", id: id, body: body }, { type: "edit", id: id, body: body });
    },
    remove: function (id) {
      return request({ kind: "delete", id: id }, { type: "delete", id: id });
    },
    /** Tell the server the user has seen the room up to ``seq``. */
    read: function (seq) {
      if (!ready || !isOpen()) return false;
      write({ type: "read", seq: seq });
      return true;
    },
    /** Ask for a page of messages: ``{before: seq}`` (older) or ``{after: seq}`` (newer). */
    history: function (cursor, limit) {
      if (!ready || !isOpen()) return false;
      write(Object.assign({ type: "history", limit: limit }, cursor));
      return true;
    },
    react: function (id, emoji, active) {
      const frame = { type: "react", id: id, emoji: emoji, on: active };
      return request({ kind: "react", id: id, emoji: emoji }, frame);
    },
  };
}
